"""Head + decision overhead before and after fusion, from insert-exits reports.

Usage: python summarize.py REPORT.json...

One row per report: the fusion regions' ops and FLOPs summed over exits.
"""

import json
import os
import sys

print("| model | exits | ops before → after | FLOPs before → after | FLOPs saved | rules |")
print("| --- | --- | --- | --- | --- | --- |")
for path in sys.argv[1:]:
    r = json.load(open(path))["fusion"]["regions"]
    ops = (sum(x["before"]["ops"] for x in r), sum(x["after"]["ops"] for x in r))
    flops = (sum(x["before"]["flops"] for x in r), sum(x["after"]["flops"] for x in r))
    rules = sorted({k for x in r for k in x["rules"]})
    saved = 100 * (flops[0] - flops[1]) / flops[0] if flops[0] else 0
    name = os.path.basename(path).removesuffix(".json")
    print(f"| {name} | {len(r)} | {ops[0]} → {ops[1]} | {flops[0]:,} → {flops[1]:,} | {saved:.1f}% | {', '.join(rules)} |")
