"""Throughput of the original, `if` and `compact` models in ONNX Runtime (CPU) at one batch size.

Usage:
    python bench/compact/throughput.py --original O.onnx --multi M.onnx --if I.onnx
        --compact C.onnx [--batch 32] [--batches 4] [--repeats 3]
        [--dist 0,0,0 --dist 0.5,0.2,0.1 ...] [--seed 0]

Rows are random (N(0,1) noise plus a per-row, per-channel offset, so rows differ).
The heads are untrained, so "easy" and "hard" rows are made by the thresholds: for a
target distribution (the share of all rows leaving at exits 1..K), each exit's
threshold is placed between rows' confidences (read off MULTI's exit logits) so that
that share of the pool leaves there. Every model runs the same `--batches` batches of
`--batch` rows; after one warm-up pass, the pass is timed `--repeats` times and the
median is reported as rows per second. The exit histogram printed is what COMPACT
returned. Prints a Markdown table.
"""

import argparse
import os
import statistics
import time

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))
from eexc_ort import confidence, exits_metadata, run, session, threshold_knobs  # noqa: E402


def thresholds_for(dist, conf):
    rows = conf[0].shape[0]
    alive = np.ones(rows, dtype=bool)
    out = []
    for share, c in zip(dist, conf):
        n = int(round(share * rows))
        values = np.sort(c[alive])[::-1]
        if n <= 0 or len(values) == 0:
            t = 1.5
        elif n >= len(values):
            t = 0.0
        else:
            t = float(values[n - 1] + values[n]) / 2
        out.append(t)
        alive &= c < t
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in ("original", "multi", "if", "compact"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dist", action="append", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    exits = exits_metadata(onnx.load(a.compact, load_external_data=False))["exits"]
    s = {k: session(getattr(a, k)) for k in ("original", "multi", "if", "compact")}
    inp = s["original"].get_inputs()[0]
    rng = np.random.default_rng(a.seed)
    shape = [a.batch if not isinstance(d, int) else d for d in inp.shape]
    batches = []
    for _ in range(a.batches):
        x = rng.normal(size=shape)
        if len(shape) >= 3:
            x = x + rng.normal(size=shape[:2] + [1] * (len(shape) - 2))
        batches.append({inp.name: x.astype(np.float32)})
    logits = [[] for _ in exits]
    for f in batches:
        out = run(s["multi"], f)
        for i, e in enumerate(exits):
            logits[i].append(out[e["logits_output"]] / e["temperature"])
    conf = [confidence(e["confidence"], np.concatenate(z)) for e, z in zip(exits, logits)]

    def timed(model, knobs):
        for f in batches:
            run(s[model], {**f, **knobs})
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            for f in batches:
                run(s[model], {**f, **knobs})
            times.append(time.perf_counter() - t0)
        return a.batch * a.batches / statistics.median(times)

    base = timed("original", {})
    print(f"ONNX Runtime {ort.__version__}, CPU, {os.cpu_count()} cores; batch {a.batch}, "
          f"{a.batches} batches, median of {a.repeats}\n")
    print(f"original: {base:.1f} rows/s\n")
    print("| target exit shares | thresholds | exits seen (1..K+1) | if rows/s | compact rows/s | "
          "compact / original | compact / if |")
    print("|---|---|---|---|---|---|---|")
    for d in a.dist:
        dist = [float(v) for v in d.split(",")]
        thr = thresholds_for(dist, conf)
        knobs = threshold_knobs(exits, thr)
        idx = np.concatenate([run(s["compact"], {**f, **knobs})["exit_index"] for f in batches])
        hist = np.bincount(idx, minlength=len(exits) + 2)[1:].tolist()
        r_if = timed("if", knobs)
        r_c = timed("compact", knobs)
        print(f"| {d} | {', '.join(f'{t:.3f}' for t in thr)} | {hist} | {r_if:.1f} | {r_c:.1f} | "
              f"{r_c / base:.2f}x | {r_c / r_if:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
