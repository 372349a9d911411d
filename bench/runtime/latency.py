"""Latency of an early-exit model against its original in ONNX Runtime,
side by side in one process: default session options (CPU, ORT_ENABLE_ALL),
intra_op_num_threads 1, runs interleaved (original, early-exit, alternating
which goes first), medians.

usage: latency.py ORIGINAL.onnx EARLY_EXIT.onnx [--batch N] [--runs R]
                  [--scenario none|exit:K|dist:P1,...,PK]... [--json OUT]

Scenarios set the early-exit model's threshold knobs per run:
- none: every threshold 2 (no confidence reaches it): nothing exits;
- exit:K: every row leaves at exit K (threshold -1 there, 2 before);
- dist:P1,...,PK: each run draws its path from this distribution (seeded),
  the rest of the runs take the full path; the median and the mean are
  reported (a mixture's median is not its expected time, the mean is).
Each scenario prints the speed ratio original/early-exit (> 1: faster) for
medians and means, and the machine's load average.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort

NEVER, ALWAYS = 2.0, -1.0


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def data_feed(sess, batch, rng):
    feeds = {}
    for i in sess.get_inputs():
        if i.name.startswith("eexc_"):
            continue
        shape = [batch if not isinstance(d, int) or j == 0 else d for j, d in enumerate(i.shape)]
        elem = np.int64 if "int64" in i.type else np.float32
        feeds[i.name] = rng.standard_normal(shape).astype(elem)
    return feeds


def thresholds(exits, path):
    """Knobs that send every row to `path` (1..K exits, K+1 the full path)."""
    return {f"eexc_threshold_{k}": np.array(ALWAYS if k == path else NEVER, np.float32) for k in range(1, exits + 1)}


def measure(original, early, exits, batch, runs, paths):
    rng = np.random.default_rng(0)
    so, se = session(original), session(early)
    x = data_feed(so, batch, rng)
    xe = {**data_feed(se, batch, np.random.default_rng(0))}
    for _ in range(20):  # warm-up both, every path
        so.run(None, x)
        for p in set(paths):
            se.run(None, {**xe, **thresholds(exits, p)})
    t_o, t_e = [], []
    for r in range(runs):
        feeds = {**xe, **thresholds(exits, paths[r % len(paths)])}
        order = [(so, x, t_o), (se, feeds, t_e)]
        if r % 2:
            order.reverse()
        for s, f, out in order:
            start = time.perf_counter()
            s.run(None, f)
            out.append((time.perf_counter() - start) * 1000.0)
    return t_o, t_e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("early")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--json")
    a = ap.parse_args()
    meta = [p.value for p in onnx.load(a.early, load_external_data=False).metadata_props if p.key == "eexc.exits"]
    # A second model that is no eexc model (a quantized original): no knobs.
    exits = len(json.loads(meta[0])["exits"]) if meta else 0
    results = []
    for sc in a.scenario or ["none"]:
        if sc == "none":
            paths = [exits + 1]
        elif sc.startswith("exit:"):
            paths = [int(sc[5:])]
        elif sc.startswith("dist:"):
            p = [float(v) for v in sc[5:].split(",")]
            rng = np.random.default_rng(1)
            paths = list(rng.choice(np.arange(1, exits + 2), size=a.runs, p=p + [1 - sum(p)]))
        else:
            raise SystemExit(f"unknown scenario {sc}")
        t_o, t_e = measure(a.original, a.early, exits, a.batch, a.runs, paths)
        r = {
            "original": os.path.basename(a.original),
            "scenario": sc,
            "batch": a.batch,
            "runs": a.runs,
            "original_p50_ms": statistics.median(t_o),
            "early_exit_p50_ms": statistics.median(t_e),
            "original_mean_ms": statistics.fmean(t_o),
            "early_exit_mean_ms": statistics.fmean(t_e),
            "load": os.getloadavg()[0],
        }
        r["speed_ratio_p50"] = r["original_p50_ms"] / r["early_exit_p50_ms"]
        r["speed_ratio_mean"] = r["original_mean_ms"] / r["early_exit_mean_ms"]
        r["time_saving_mean"] = 1 - r["early_exit_mean_ms"] / r["original_mean_ms"]
        results.append(r)
        print(
            f"{r['original']:22} {sc:24} batch {a.batch:3}  original p50 {r['original_p50_ms']:8.3f} ms  "
            f"early-exit p50 {r['early_exit_p50_ms']:8.3f} ms  ratio p50 {r['speed_ratio_p50']:.3f}  "
            f"mean {r['speed_ratio_mean']:.3f} (saving {100 * r['time_saving_mean']:.1f}%)  load {r['load']:.2f}",
            flush=True,
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
