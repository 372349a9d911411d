"""Measure the constants of the cost model's time term on this machine
(passes/runtime/onnxruntime-cpu.json; docs/runtime-cost.md defines them).

usage: time_constants.py [--eexc target/debug/eexc] [--runs R]

ONNX Runtime CPU, default session options, 1 intra-op thread, batch 1;
medians of interleaved runs. Prints the constants as the profile's JSON,
next to the shipped values:
- node_us, node_byte_us: slopes of chains of Relu nodes (1 vs 201 nodes)
  on [1, 64] and on [1, 16384] floats: the per-node cost and the cost per
  byte written of a compute node;
- view_us: slope of a chain of Reshape nodes on [1, 64];
- kernel_us: slope of a chain of MatMul nodes [1, 64] x [64, 64], its MACs
  taken out;
- head_weight_bytes_per_us: 1000-class heads on 1024 features (Gemm, 4 MB
  each; 16 of them, so that the weights come from memory, not the caches);
- exit_us: what one exit adds on the digits model (three exits, nothing
  exits), less what the cost model charges its head and decision nodes
  (`eexc cost --json`: the If call and the exit index are what is left);
- split_element_us: what one exit adds on a synthetic CNN at a
  256×56×56 tensor that feeds a residual Add, less exit_us, its head and
  decision, per element of the tensor;
- macs_per_us: that CNN's MACs over its latency.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def interleaved(pairs, runs):
    """pairs: [(session, feeds)]; median µs of each, runs interleaved."""
    for s, f in pairs:
        for _ in range(20):
            s.run(None, f)
    times = [[] for _ in pairs]
    for r in range(runs):
        order = list(enumerate(pairs))
        if r % 2:
            order.reverse()
        for i, (s, f) in order:
            t0 = time.perf_counter()
            s.run(None, f)
            times[i].append((time.perf_counter() - t0) * 1e6)
    return [statistics.median(t) for t in times]


def model(nodes, inputs, outputs, inits=()):
    g = h.make_graph(nodes, "m", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def chain(n, width=64, op="Relu"):
    """n nodes of `op` in a row on [1, width] floats."""
    nodes, inits, cur = [], [], "x"
    if op == "Reshape":
        # Alternate [width] and [1, width], so that no two are the same.
        inits = [nh.from_array(np.array([width], np.int64), "flat"),
                 nh.from_array(np.array([1, width], np.int64), "row")]
    if op == "MatMul":
        inits = [nh.from_array(np.eye(width, dtype=np.float32), "w")]
    for i in range(n):
        extra = {"Relu": [], "Reshape": ["flat" if i % 2 == 0 else "row"], "MatMul": ["w"]}[op]
        nodes.append(h.make_node(op, [cur] + extra, [f"r{i}"]))
        cur = f"r{i}"
    if op == "Reshape" and n % 2:
        nodes.append(h.make_node("Reshape", [cur, "row"], ["back"]))
        cur = "back"
    nodes.append(h.make_node("Identity", [cur], ["y"]))
    io = lambda name: h.make_tensor_value_info(name, T.FLOAT, [1, width])
    return model(nodes, [io("x")], [io("y")], inits)


def slope(op, width, runs):
    """µs one more node of `op` costs: 1 against 201 nodes, interleaved."""
    x = np.ones((1, width), np.float32)
    t1, t201 = interleaved([(session(chain(1, width, op)), {"x": x}), (session(chain(201, width, op)), {"x": x})], runs)
    return (t201 - t1) / 200


HEADS = 16


def heads(features, classes, rng):
    """HEADS separate heads on one input: 64 MB of weights, more than the
    caches hold, so each head reads its weights from memory as a head inside
    a network does (one head run alone would find them cached)."""
    nodes, inits, outputs = [], [], []
    for i in range(HEADS):
        inits.append(nh.from_array((rng.standard_normal((classes, features)) * 0.01).astype(np.float32), f"w{i}"))
        inits.append(nh.from_array(np.zeros(classes, np.float32), f"b{i}"))
        nodes.append(h.make_node("Gemm", ["x", f"w{i}", f"b{i}"], [f"y{i}"], transB=1))
        outputs.append(h.make_tensor_value_info(f"y{i}", T.FLOAT, [1, classes]))
    return model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, features])], outputs, inits)


def residual_cnn(rng):
    """3×56×56 → Conv 3×3 to 256 → Relu (the cut) → 1×1 Conv → Add(cut) →
    Relu → 1×1 Conv → GAP → Flatten → Gemm 10. Returns the model and its MACs."""
    c, hw = 256, 56
    def conv_w(name, o, i, k):
        return nh.from_array((rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(np.float32), name)
    inits = [conv_w("w1", c, 3, 3), conv_w("w2", c, c, 1), conv_w("w3", c, c, 1),
             nh.from_array((rng.standard_normal((10, c)) * 0.05).astype(np.float32), "fw"),
             nh.from_array(np.zeros(10, np.float32), "fb")]
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["cut"]),
             h.make_node("Conv", ["cut", "w2"], ["c2"]),
             h.make_node("Add", ["c2", "cut"], ["a"]),
             h.make_node("Relu", ["a"], ["r"]),
             h.make_node("Conv", ["r", "w3"], ["c3"]),
             h.make_node("GlobalAveragePool", ["c3"], ["g"]),
             h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    m = model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, hw, hw])],
              [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)
    macs = hw * hw * c * (3 * 9 + c + c) + 10 * c
    return m, macs, c * hw * hw, 10 * c * 4


def exit_overhead(eexc, original, at, tmp, runs, x_shape, rng):
    """µs one nothing-exits early-exit model adds over its original, and
    the cost model's report of that model (`eexc cost --json`)."""
    ee = os.path.join(tmp, "ee.onnx")
    subprocess.run([eexc, "insert-exits", original, "--at", at, "--threshold", "2", "-o", ee],
                   check=True, capture_output=True)
    x = rng.standard_normal(x_shape).astype(np.float32)
    so, se = session(original), session(ee)
    name = so.get_inputs()[0].name
    knobs = {i.name: np.array(2.0, np.float32) for i in se.get_inputs() if i.name.startswith("eexc_threshold_")}
    t_orig, t_ee = interleaved([(so, {name: x}), (se, {name: x, **knobs})], runs)
    report = json.loads(subprocess.run([eexc, "cost", ee, "--json"], check=True, capture_output=True, text=True).stdout)
    return t_orig, t_ee - t_orig, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eexc", default=os.path.join(REPO, "target", "debug", "eexc"))
    ap.add_argument("--runs", type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    shipped = json.load(open(os.path.join(REPO, "passes", "runtime", "onnxruntime-cpu.json")))
    node_us = slope("Relu", 64, a.runs)
    wide = 16384
    node_byte_us = max(slope("Relu", wide, a.runs) - node_us, 0.0) / ((wide - 64) * 4)
    node_us -= 64 * 4 * node_byte_us
    view_us = slope("Reshape", 64, a.runs)
    kernel_us = slope("MatMul", 64, a.runs) - 64 * 64 / shipped["macs_per_us"]
    hm = heads(1024, 1000, rng)
    # The one-Relu chain's time is a run's fixed cost plus one node.
    x64 = np.ones((1, 64), np.float32)
    t_base, t_heads = interleaved(
        [(session(chain(1)), {"x": x64}), (session(hm), {"x": np.ones((1, 1024), np.float32)})],
        max(a.runs // 10, 50),
    )
    head_bw = HEADS * 1000 * 1024 * 4 / max(t_heads - t_base + node_us - HEADS * kernel_us, 1e-9)

    def charged(report):
        """Per exit, what the cost model charges beyond exit_us."""
        return [o - shipped["exit_us"] for o in report["time"]["exit_overhead_us"]]

    digits = os.path.join(REPO, "testdata", "digits", "digits_resnet.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        _, digits_over, report = exit_overhead(a.eexc, digits, "stem_out,block1_out,block2_out", tmp, a.runs,
                                               (1, 1, 8, 8), rng)
        exit_us = (digits_over - sum(charged(report))) / 3
        cnn, macs, elements, _ = residual_cnn(rng)
        path = os.path.join(tmp, "cnn.onnx")
        onnx.save(cnn, path)
        t_cnn, cnn_over, report = exit_overhead(a.eexc, path, "cut", tmp, max(a.runs // 20, 50), (1, 3, 56, 56), rng)
    # The report's charge for the CNN's exit holds its split term at the
    # shipped constant; take that out to keep heads and decisions only.
    heads_and_decision = charged(report)[0] - elements * shipped["split_element_us"]
    split = max(cnn_over - exit_us - heads_and_decision, 0.0) / elements
    measured = {
        "macs_per_us": round(macs / t_cnn),
        "kernel_us": round(kernel_us, 3),
        "view_us": round(view_us, 3),
        "node_us": round(node_us, 3),
        "node_byte_us": round(node_byte_us, 7),
        "exit_us": round(exit_us, 2),
        "head_weight_bytes_per_us": round(head_bw),
        "split_element_us": round(split, 6),
    }
    print(f"ONNX Runtime {ort.__version__}, 1 thread, load {os.getloadavg()[0]:.2f}")
    for k, v in measured.items():
        print(f"  {k:26} measured {v:>12}   shipped {shipped[k]:>12}")
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
