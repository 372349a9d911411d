"""The confidence measures alone, as insert-exits writes them and as the
decision rules rewrite them, in ONNX Runtime (CPU, 1 thread): do the forms
without Softmax run faster there? 10 to 1000 classes, batch 1 and 32.

Usage: python decision_micro.py
"""

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h

N = h.make_node
R = dict(axes=[1], keepdims=0)


def forms(kind):
    """(as written, as rewritten): nodes from z to the confidence c."""
    if kind == "maxprob":
        return ([N("Softmax", ["z"], ["p"], axis=1), N("ReduceMax", ["p"], ["c"], **R)],
                [N("ReduceMax", ["z"], ["m"], **R), N("ReduceLogSumExp", ["z"], ["l"], **R),
                 N("Sub", ["m", "l"], ["d"]), N("Exp", ["d"], ["c"])])
    if kind == "entropy":
        return ([N("Softmax", ["z"], ["p"], axis=1), N("LogSoftmax", ["z"], ["lp"], axis=1),
                 N("Mul", ["p", "lp"], ["pl"]), N("ReduceSum", ["pl", "ax"], ["c"], keepdims=0)],
                [N("Softmax", ["z"], ["p"], axis=1), N("Mul", ["p", "z"], ["pz"]),
                 N("ReduceSum", ["pz", "ax"], ["s"], keepdims=0), N("ReduceLogSumExp", ["z"], ["l"], **R),
                 N("Sub", ["s", "l"], ["c"])])
    return ([N("Softmax", ["z"], ["p"], axis=1), N("TopK", ["p", "k"], ["c", "i"], axis=1)],
            [N("TopK", ["z", "k"], ["t", "i"], axis=1), N("ReduceLogSumExp", ["z"], ["l"], axes=[1]),
             N("Sub", ["t", "l"], ["d"]), N("Exp", ["d"], ["c"])])


def session(nodes, classes):
    z = h.make_tensor_value_info("z", T.FLOAT, ["N", classes])
    c = h.make_tensor_value_info("c", T.FLOAT, None)
    inits = [h.make_tensor("ax", T.INT64, [1], [1]), h.make_tensor("k", T.INT64, [1], [2])]
    m = h.make_model(h.make_graph(nodes, "d", [z], [c], inits), opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])


print("| confidence | classes | batch | as written (µs) | rewritten (µs) |")
print("| --- | --- | --- | --- | --- |")
for kind in ("maxprob", "entropy", "margin"):
    for classes in (10, 1000):
        for batch in (1, 32):
            feeds = {"z": np.random.default_rng(0).standard_normal((batch, classes)).astype(np.float32)}
            sessions = [session(f, classes) for f in forms(kind)]
            a, b = (s.run(None, feeds)[0] for s in sessions)
            assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (kind, classes, batch)
            times = [[], []]
            for _ in range(100):
                for s in sessions:
                    s.run(None, feeds)
            for _ in range(2000):
                for k, s in enumerate(sessions):
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    times[k].append((time.perf_counter() - t0) * 1e6)
            print(f"| {kind} | {classes} | {batch} | {np.median(times[0]):.1f} | {np.median(times[1]):.1f} |")
