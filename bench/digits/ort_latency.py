"""Per-row latency in ONNX Runtime (CPU, one thread) of an early-exit model and its original.

Usage: python bench/digits/ort_latency.py --original O.onnx --ee EE.onnx --data X.npy [--repeats 5]

Each row runs alone (batch 1), as a latency-bound service runs it; every row is timed
--repeats times after one warm-up pass and its median is kept. Prints the mean per-row
latency of both models, the measured speedup and the exit histogram.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))
from eexc_ort import run  # noqa: E402


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def per_row_ms(sess, x, repeats):
    name = sess.get_inputs()[0].name
    for r in range(len(x)):
        run(sess, {name: x[r:r + 1]})
    out = []
    for r in range(len(x)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(sess, {name: x[r:r + 1]})
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times) * 1e3)
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True)
    ap.add_argument("--ee", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    x = np.load(a.data)
    orig, ee = session(a.original), session(a.ee)
    t_orig = per_row_ms(orig, x, a.repeats)
    t_ee = per_row_ms(ee, x, a.repeats)
    name = ee.get_inputs()[0].name
    exits = np.array([int(run(ee, {name: x[r:r + 1]})["exit_index"][0]) for r in range(len(x))])
    print(f"ONNX Runtime {ort.__version__}, CPU, 1 thread, batch 1, {len(x)} rows, median of {a.repeats} per row")
    print(f"original   mean {t_orig.mean():.4f} ms per row")
    print(f"early-exit mean {t_ee.mean():.4f} ms per row")
    for k in range(1, exits.max() + 1):
        sel = exits == k
        if sel.any():
            print(f"  exit {k}: {int(sel.sum())} rows, mean {t_ee[sel].mean():.4f} ms")
    print(f"measured speedup {t_orig.mean() / t_ee.mean():.2f}x")


if __name__ == "__main__":
    main()
