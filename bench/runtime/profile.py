"""Where an (early-exit) model spends its time in ONNX Runtime: per-node
profile (enable_profiling) at default session options, CPU, 1 thread.

usage: profile.py MODEL.onnx [--runs N] [--threshold T] [--feeds NPZ] [--json OUT]

Feeds a seeded random input of the model's declared shape (symbolic dims
as 1) and, for eexc models, every threshold knob = T (default 2: nothing
exits); with --feeds, the first row of each array of an .npz sample file
(named as the model's inputs) instead. Prints per op type and per graph level the median time per run,
and for each If the time it takes beyond its branch's nodes (the cost of
the If call itself: feeds, frame, fetches).
"""

import argparse
import collections
import json
import os
import statistics
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

TYPES = {1: np.float32, 7: np.int64, 6: np.int32, 9: np.bool_, 10: np.float16}


def feeds_for(model, threshold):
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        if i.name.startswith("eexc_threshold_"):
            feeds[i.name] = np.array(threshold, np.float32)
            continue
        if i.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
        feeds[i.name] = rng.standard_normal(shape).astype(TYPES[t.elem_type])
    return feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=2.0)
    ap.add_argument("--feeds", help=".npz sample file; its first row feeds the model")
    ap.add_argument("--json")
    a = ap.parse_args()
    model = onnx.load(a.model, load_external_data=False)
    feeds = feeds_for(model, a.threshold)
    if a.feeds:
        rows = np.load(a.feeds)
        feeds.update({k: rows[k][:1] for k in rows.files if k in feeds})
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        so.log_severity_level = 3
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        for _ in range(20):
            sess.run(None, feeds)
        for _ in range(a.runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        events = json.load(open(path))
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    timed = runs[-a.runs:]
    t0 = timed[0]["ts"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["ts"] >= t0 and e["name"].endswith("_kernel_time")]
    per_run_total = statistics.median(e["dur"] for e in timed)
    n = len(timed)
    # Per node: the median over runs (a node runs at most once a run; one
    # that runs in fewer runs, inside a branch not always taken, counts 0
    # in the others).
    durations = collections.defaultdict(list)
    for e in nodes:
        durations[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
    by_node = {}
    for key, d in durations.items():
        d = d + [0] * (n - len(d))
        by_node[key] = statistics.median(d)
    by_op = collections.defaultdict(float)
    for (_, op), us in by_node.items():
        by_op[op] += us
    print(f"{a.model}: median run {per_run_total:.1f} us over {n} runs (threshold {a.threshold}); profiled, so slower than unprofiled runs")
    print("per op type, sum of per-node medians, us per run:")
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:28} {us:9.2f}")
    print("nodes at 1 us or more (median per run):")
    for (name, op), us in sorted(by_node.items(), key=lambda kv: -kv[1]):
        if us >= 1.0:
            print(f"  {op:20} {name[:70]:70} {us:9.2f}")
    if a.json:
        nodes_out = {f"{op} {name}": us for (name, op), us in by_node.items()}
        json.dump({"median_run_us": per_run_total, "runs": n, "by_op_us": by_op, "by_node_us": nodes_out},
                  open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
