"""The head and exit-condition rewrites of the default families, alone, in
ONNX Runtime (CPU, 1 thread): GlobalAveragePool + Flatten against one
ReduceMean at ResNet-50's exit shapes, and the single-row exit condition
(Cast, ReduceMin, Cast) against one Squeeze. Median microseconds.

Usage: python head_micro.py
"""

import time, numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T
def sess(nodes, ins, outs, opset=17):
    m = h.make_model(h.make_graph(nodes, "g", ins, outs), opset_imports=[h.make_opsetid("", opset)]); m.ir_version = 8
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
def bench(sessions, feeds, n=300):
    t = [[] for _ in sessions]
    for _ in range(30):
        for s in sessions: s.run(None, feeds)
    for _ in range(n):
        for k, s in enumerate(sessions):
            a = time.perf_counter(); s.run(None, feeds); t[k].append((time.perf_counter()-a)*1e6)
    return [np.median(x) for x in t]
print("| rewrite | input | before (µs) | after (µs) |")
print("| --- | --- | --- | --- |")
for (c, hw, b) in [(256, 56, 1), (512, 28, 1), (1024, 14, 1), (512, 28, 8)]:
    x = h.make_tensor_value_info("x", T.FLOAT, [b, c, hw, hw]); y = h.make_tensor_value_info("y", T.FLOAT, [b, c])
    a = sess([h.make_node("GlobalAveragePool", ["x"], ["p"]), h.make_node("Flatten", ["p"], ["y"], axis=1)], [x], [y])
    r = sess([h.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)], [x], [y])
    f = {"x": np.random.default_rng(0).standard_normal((b, c, hw, hw)).astype(np.float32)}
    before, after = bench([a, r], f)
    print(f"| GlobalAveragePool + Flatten → ReduceMean | {b}×{c}×{hw}×{hw} | {before:.1f} | {after:.1f} |")
ok = h.make_tensor_value_info("ok", T.BOOL, [1]); al = h.make_tensor_value_info("all", T.BOOL, [])
a = sess([h.make_node("Cast", ["ok"], ["f"], to=1), h.make_node("ReduceMin", ["f"], ["m"], axes=[0], keepdims=0), h.make_node("Cast", ["m"], ["all"], to=9)], [ok], [al])
axes = h.make_tensor("ax", T.INT64, [1], [0])
m = h.make_model(h.make_graph([h.make_node("Squeeze", ["ok", "ax"], ["all"])], "g", [ok], [al], [axes]), opset_imports=[h.make_opsetid("", 17)]); m.ir_version=8
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.log_severity_level = 3
s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
before, after = bench([a, s], {"ok": np.array([True])}, 3000)
print(f"| Cast, ReduceMin, Cast → Squeeze | 1 | {before:.1f} | {after:.1f} |")
