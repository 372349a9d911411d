"""Independent reference MAC counter for ONNX models (Conv, Gemm, MatMul).

Usage:
    python tests/python/reference_macs.py MODEL.onnx [--dim-value N]

Shapes come from onnx.shape_inference.infer_shapes(data_prop=True) after two small
preparations: symbolic dims of graph inputs are fixed to --dim-value (default 1),
and ConstantOfShape nodes fed by a constant (initializer or Constant node; the
model-zoo test models build their weights this way) get their output shape written
as value_info, in case inference cannot see the constant.

Counting convention (one MAC = one multiply-accumulate; bias adds are not counted):
    Conv    prod(Y.shape) * prod(W.shape[1:])   = N*Cout*Hout*Wout*(Cin/group)*kh*kw
    Gemm    M * N * K                           (transA/transB honoured)
    MatMul  prod(Y.shape) * K                   (batch dims broadcast; 1-D operands ok)
Only the main graph is counted: nodes inside control-flow bodies (If/Loop/Scan) run
a data-dependent number of times; those ops appear in uncounted_ops.

Prints JSON: {"total_macs": int, "by_op": {op: int}, "uncounted_ops": [op, ...]}.
Exit 0 on success, 1 with a one-line reason (e.g. a Conv whose shapes are unknown).
"""

import argparse
import json
import math
import sys

import onnx
from onnx import numpy_helper, shape_inference

COUNTED = ("Conv", "Gemm", "MatMul")


def fix_symbolic_inputs(graph, value):
    inits = {t.name for t in graph.initializer}
    for vi in graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = value  # also clears dim_param (oneof)


def fold_constant_of_shape(graph):
    """Add value_info for ConstantOfShape outputs whose shape input is a constant."""
    consts = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    known = {vi.name for vi in graph.value_info} | {vi.name for vi in graph.output}
    for n in graph.node:
        if n.op_type != "ConstantOfShape" or n.output[0] in known or n.input[0] not in consts:
            continue
        dims = [int(d) for d in numpy_helper.to_array(consts[n.input[0]]).ravel()]
        value = next((a.t for a in n.attribute if a.name == "value"), None)
        elem = value.data_type if value is not None else onnx.TensorProto.FLOAT
        graph.value_info.append(onnx.helper.make_tensor_value_info(n.output[0], elem, dims))


def static_shapes(model):
    """name -> list of ints, for every value whose shape is fully known."""
    g = model.graph
    shapes = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(
            d.HasField("dim_value") for d in tt.shape.dim
        ):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    for n in g.node:  # Constant nodes: shape from the tensor itself
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            shapes[n.output[0]] = list(n.attribute[0].t.dims)
    return shapes


def node_macs(node, shapes):
    def shape(name):
        if name not in shapes:
            raise ValueError(
                f"{node.op_type} node {node.name or node.output[0]!r}: shape of {name!r} unknown")
        return shapes[name]

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        return math.prod(shape(node.output[0])) * math.prod(shape(node.input[1])[1:])
    if node.op_type == "Gemm":
        a, b = shape(node.input[0]), shape(node.input[1])
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
        n = b[0] if attrs.get("transB", 0) else b[1]
        return m * n * k
    if node.op_type == "MatMul":
        k = shape(node.input[0])[-1]
        return math.prod(shape(node.output[0])) * k
    raise AssertionError(node.op_type)


def count(model, dim_value):
    fix_symbolic_inputs(model.graph, dim_value)
    fold_constant_of_shape(model.graph)
    inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False,
                                            data_prop=True)
    shapes = static_shapes(inferred)
    by_op, uncounted = {}, set()
    for node in inferred.graph.node:
        if node.op_type in COUNTED and node.domain in ("", "ai.onnx"):
            by_op[node.op_type] = by_op.get(node.op_type, 0) + node_macs(node, shapes)
        else:
            uncounted.add(node.op_type if node.domain in ("", "ai.onnx")
                          else f"{node.domain}::{node.op_type}")
    return {"total_macs": sum(by_op.values()), "by_op": dict(sorted(by_op.items())),
            "uncounted_ops": sorted(uncounted)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="path to the .onnx file")
    ap.add_argument("--dim-value", type=int, default=1,
                    help="value for symbolic/unknown input dims (default 1)")
    args = ap.parse_args()
    try:
        result = count(onnx.load(args.model), args.dim_value)
    except Exception as e:
        lines = str(e).strip().splitlines()
        print(f"reference_macs: {type(e).__name__}: {lines[0] if lines else ''}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
