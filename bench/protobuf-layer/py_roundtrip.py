"""The Python reference for pb-bench: onnx.load + onnx.save, timed the same way.

Usage:
    python bench/protobuf-layer/py_roundtrip.py IN.onnx OUT.onnx [--repeat N]

Each iteration: model = onnx.load(IN); onnx.save(model, OUT); del model.
Prints one JSON line like the Rust binaries: per-iteration wall load/save times in
ms, the best (minimum) load+save, per-iteration CPU time (user + system) of
load+save and its minimum, VmRSS after `import onnx` (rss_start_kib) and the
process's peak RSS (VmHWM) at the end (peak_rss_kib).
"""

import argparse
import json
import time

import onnx
from google.protobuf.internal import api_implementation


def rss_kib():
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(rest.split()[0])
    return fields.get("VmHWM", 0), fields.get("VmRSS", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    rss_start = rss_kib()[1]
    runs = []
    cpu = []
    for _ in range(max(1, args.repeat)):
        c0 = time.process_time()  # CLOCK_PROCESS_CPUTIME_ID, like the Rust binaries
        t0 = time.perf_counter()
        model = onnx.load(args.input)
        t1 = time.perf_counter()
        onnx.save(model, args.output)
        t2 = time.perf_counter()
        del model
        cpu.append((time.process_time() - c0) * 1e3)
        runs.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
    best = min(runs, key=lambda r: r[0] + r[1])
    print(json.dumps({
        "candidate": f"python onnx {onnx.__version__} (protobuf {api_implementation.Type()})",
        "input": args.input,
        "repeat": len(runs),
        "best_load_ms": round(best[0], 1),
        "best_save_ms": round(best[1], 1),
        "best_total_ms": round(best[0] + best[1], 1),
        "load_ms": [round(r[0], 1) for r in runs],
        "save_ms": [round(r[1], 1) for r in runs],
        "best_cpu_ms": round(min(cpu), 1),
        "cpu_ms": [round(c, 1) for c in cpu],
        "rss_start_kib": rss_start,
        "peak_rss_kib": rss_kib()[0],
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
