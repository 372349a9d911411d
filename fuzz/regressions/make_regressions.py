"""Regenerates the hand-minimised reproducers in this folder.

Run with the test venv (needs the `onnx` package):
    .venv/bin/python fuzz/regressions/make_regressions.py [OUT_DIR]
Each model is tiny and hand-built; the comments name the crash site as of
the fuzzing run recorded in docs/fuzzing.md.
"""

import string
import sys
from pathlib import Path

from onnx import TensorProto as T
from onnx import ValueInfoProto
from onnx import helper as h

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
vi = h.make_tensor_value_info


def save(name, nodes, inputs, outputs, inits=(), opset=13):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    (OUT / f"{name}.onnx").write_bytes(model.SerializeToString())


# What the fuzzer found: a ConstantOfShape fed a huge shape constant (the seed
# models build their weights this way) makes a float "weight" of 2^62
# elements; ElemType::bytes_for multiplies elements by bits unchecked
# (dtype.rs:67, called from cost.rs:131).
save(
    "cost-overflow-constantofshape-weight",
    [
        h.make_node("ConstantOfShape", ["s"], ["w"], value=h.make_tensor("v", T.FLOAT, [1], [0.0])),
        h.make_node("Add", ["x", "w"], ["y"]),
    ],
    [vi("x", T.FLOAT, [1])],
    [vi("y", T.FLOAT, None)],
    [h.make_tensor("s", T.INT64, [1], [2**62])],
    opset=9,
)

# Initializer dims whose product saturates num_elements at u64::MAX, then
# bytes_for overflows (dtype.rs:67 via cost.rs:131).
w = T()
w.name, w.data_type = "w", T.FLOAT
w.dims[:] = [1, 2**40, 2**40]
save(
    "cost-overflow-weight-dims",
    [h.make_node("Conv", ["x", "w"], ["y"])],
    [vi("x", T.FLOAT, [1, 1, 4])],
    [vi("y", T.FLOAT, None)],
    [w],
)

# Two float initializers of 2^80 elements each: num_elements saturates both
# at u64::MAX, and their sum overflows (`cost.params += n` in node_cost and
# `unique_params +=` in graph_cost), even once bytes_for is fixed.
big = []
for name in ("p", "q"):
    t = T()
    t.name, t.data_type = name, T.FLOAT
    t.dims[:] = [2**40, 2**40]
    big.append(t)
save(
    "cost-overflow-params-sum",
    [h.make_node("Sum", ["x", "p", "q"], ["y"])],
    [vi("x", T.FLOAT, [1])],
    [vi("y", T.FLOAT, None)],
    big,
)

# Activation of 2^62 floats: bytes_per_sample -> bytes_for
# (dtype.rs:67 via types.rs:78, cost.rs:134-138).
save(
    "cost-overflow-activation-bytes",
    [h.make_node("Relu", ["x"], ["y"])],
    [vi("x", T.FLOAT, [2**62])],
    [vi("y", T.FLOAT, None)],
)

# Gemm MACs = out elements (2^40) x K (2^30): cost.rs:265 `out * k`.
save(
    "cost-overflow-gemm-macs",
    [h.make_node("Gemm", ["a", "b"], ["y"])],
    [vi("a", T.FLOAT, [2**20, 2**30]), vi("b", T.FLOAT, [2**30, 2**20])],
    [vi("y", T.FLOAT, [2**20, 2**20])],
)

# Pool window = product of kernel_shape (2^80): Iterator::product in
# cost.rs:277-282.
save(
    "cost-overflow-pool-window",
    [h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2**40, 2**40])],
    [vi("x", T.FLOAT, [1, 1, 4, 4])],
    [vi("y", T.FLOAT, [1, 1, 1, 1])],
)

# Ten Relus of 2^61-1 uint8 elements each: every node fits, the graph total
# does not (Cost::add_assign, cost.rs:39-43, reached from cost.rs:96).
n = 2**61 - 1
save(
    "cost-overflow-graph-total",
    [h.make_node("Relu", [f"v{i}"], [f"v{i + 1}"]) for i in range(10)],
    [vi("v0", T.UINT8, [n])],
    [vi("v10", T.UINT8, [n])],
)


# Time, not a panic: a chain of 2000 Relus with its output listed 2001 times.
# narrow_cuts calls `graph.outputs.contains` for every value of every prefix
# (cuts.rs:37 and cuts.rs:100), so the work is nodes^2 x outputs.
def short(i):
    s = ""
    while True:
        s = string.ascii_letters[i % 52] + s
        i //= 52
        if i == 0:
            return s


k = 2000
save(
    "timeout-narrow-cuts-outputs",
    [h.make_node("Relu", [short(i)], [short(i + 1)]) for i in range(k)],
    [ValueInfoProto(name=short(0))],
    [ValueInfoProto(name=short(k))] * (k + 1),
)
