"""Median ONNX Runtime latency (CPU) of several models on the same input.

Usage: python latency.py [--runs N] [--opt all|basic|disable] [--knob NAME=V ...] MODEL...

Feeds one random input (seed 0) to each model's real inputs (symbolic dims as
1); knobs given with --knob are fed where a model has that input. Prints one
line per model: median and 10th/90th percentile milliseconds over --runs runs
after 20 warm-up runs, interleaved across models so drift hits all alike.
"""

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--opt", default="all", choices=LEVELS)
    p.add_argument("--knob", action="append", default=[])
    a = p.parse_args()
    knobs = {k: np.array(float(v), dtype=np.float32) for k, v in (s.split("=") for s in a.knob)}
    sessions, feeds = [], []
    for path in a.models:
        o = ort.SessionOptions()
        o.graph_optimization_level = LEVELS[a.opt]
        o.intra_op_num_threads = 1
        o.log_severity_level = 3
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        m = onnx.load(path, load_external_data=False)
        inits = {t.name for t in m.graph.initializer}
        f = {}
        for i in m.graph.input:
            if i.name in knobs:
                f[i.name] = knobs[i.name]
            elif i.name not in inits:
                shape = [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
                f[i.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        sessions.append(s)
        feeds.append(f)
    times = [[] for _ in sessions]
    for _ in range(20):
        for s, f in zip(sessions, feeds):
            s.run(None, f)
    for _ in range(a.runs):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            t = time.perf_counter()
            s.run(None, f)
            times[k].append((time.perf_counter() - t) * 1e3)
    for path, t in zip(a.models, times):
        q = np.percentile(t, [10, 50, 90])
        print(f"{q[1]:9.3f} ms  (p10 {q[0]:.3f}, p90 {q[2]:.3f})  {path}")


if __name__ == "__main__":
    main()
