"""Loop-mode numbers in ONNX Runtime (CPU): graph size and per-batch latency of the
original, `if` and `loop` forms of a repeated-layer model, by exit layer.

Usage:
    python bench/loop/latency.py --original O.onnx --if I.onnx --loop L.onnx
        [--batch 1] [--runs 200] [--int-high 100] [--seq 32] [--seed 0]

Integer inputs get random ids below --int-high, except an input whose name has "mask"
in it, which gets ones (every token attended).

The heads are untrained; the exit layer is forced with the thresholds (0 at the
wanted exit, 1.5 before it), which both early-exit forms read the same way. Latency
is the median of --runs runs of one batch after 10 warm-up runs. Prints Markdown.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def count_nodes(graph):
    n = 0
    for node in graph.node:
        n += 1
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                n += count_nodes(sub)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in ("original", "if", "loop"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--int-high", type=int, default=100)
    ap.add_argument("--seq", type=int, default=32, help="value of a symbolic dimension other than the batch")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = {k: ort.InferenceSession(getattr(a, k), opts, providers=["CPUExecutionProvider"])
         for k in ("original", "if", "loop")}
    models = {k: onnx.load(getattr(a, k)) for k in ("original", "if", "loop")}
    exits = json.loads({p.key: p.value for p in models["loop"].metadata_props}["eexc.exits"])["exits"]
    rng = np.random.default_rng(a.seed)
    inputs = {}
    for inp in s["original"].get_inputs():
        # The leading symbolic dimension is the batch, any other is --seq.
        shape = [d if isinstance(d, int) else (a.batch if i == 0 else a.seq) for i, d in enumerate(inp.shape)]
        if "mask" in inp.name:
            inputs[inp.name] = np.ones(shape, dtype=np.int64)
        elif "int" in inp.type:
            inputs[inp.name] = rng.integers(0, a.int_high, size=shape).astype(np.int64)
        else:
            inputs[inp.name] = rng.normal(size=shape).astype(np.float32)

    def latency(model, knobs):
        sess = s[model]
        wanted = {i.name for i in sess.get_inputs() + sess.get_overridable_initializers()}
        feed = {k: v for k, v in {**inputs, **knobs}.items() if k in wanted}
        for _ in range(10):
            sess.run(None, feed)
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    print(f"ONNX Runtime {ort.__version__}, CPU, {os.cpu_count()} cores; batch {a.batch}; "
          f"median of {a.runs} runs\n")
    print("| form | nodes (all graphs) | initializers | file bytes |")
    print("|---|---|---|---|")
    for k in ("original", "if", "loop"):
        g = models[k].graph
        print(f"| {k} | {count_nodes(g)} | {len(g.initializer)} | {os.path.getsize(getattr(a, k))} |")
    base = latency("original", {})
    print(f"\nOriginal: {base:.3f} ms per batch.\n")
    print("| exit | if ms | loop ms | loop / if | loop / original |")
    print("|---|---|---|---|---|")
    k_count = len(exits)
    for k in range(1, k_count + 2):
        thr = [1.5] * k_count
        if k <= k_count:
            thr[k - 1] = 0.0
        knobs = {e["threshold_input"]: np.array(t, dtype=np.float32) for e, t in zip(exits, thr)}
        for form in ("if", "loop"):
            sess = s[form]
            wanted = {i.name for i in sess.get_inputs() + sess.get_overridable_initializers()}
            got = sess.run(["exit_index"], {k: v for k, v in {**inputs, **knobs}.items() if k in wanted})[0]
            assert set(got.tolist()) == {k}, f"{form}: exit indices {set(got.tolist())}, wanted {k}"
        t_if, t_loop = latency("if", knobs), latency("loop", knobs)
        label = f"{k}" if k <= k_count else f"{k} (final)"
        print(f"| {label} | {t_if:.3f} | {t_loop:.3f} | {t_loop / t_if:.2f}x | {t_loop / base:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
