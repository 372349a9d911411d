"""Small MLPs for the edges of `insert-exits --mode compact` (exit tensor: h1).

Usage: python tests/python/make_compact_edge_models.py OUT_DIR

  fixed_batch4.onnx  x [4,16] -> logits [4,10]: the batch is fixed at 4, so the graph
                     cannot run on fewer rows: refused.
  shape_crosses.onnx x [batch,16]: Shape(x) is taken before the exit and read after it by
                     a Reshape; a shape vector has no rows, so compact mode recomputes it
                     from the compacted x.
  batch_mean.onnx    x [batch,16]: the mean over the batch is taken before the exit and
                     added after it; rows are not independent: refused.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def weights(rng, name, shape):
    return numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32), name)


def mlp(batch, name, shape_crosses, batch_mean=False):
    rng = np.random.default_rng(11)
    inits = [weights(rng, f"w{i}", (16, 16)) for i in (1, 2)] + [weights(rng, "w3", (16, 10))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
    ]
    if shape_crosses:
        nodes += [
            helper.make_node("Shape", ["x"], ["x_shape"]),
            helper.make_node("Reshape", ["r1", "x_shape"], ["h1"]),
        ]
    elif batch_mean:
        nodes += [
            helper.make_node("ReduceMean", ["x"], ["x_mean"], axes=[0], keepdims=1),
            helper.make_node("Add", ["r1", "x_mean"], ["h1"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["r1"], ["h1"]))
    nodes += [
        helper.make_node("MatMul", ["h1", "w2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["r2"]),
    ]
    if shape_crosses:
        nodes.append(helper.make_node("Reshape", ["r2", "x_shape"], ["h2"]))
    elif batch_mean:
        nodes.append(helper.make_node("Add", ["r2", "x_mean"], ["h2"]))
    else:
        nodes.append(helper.make_node("Identity", ["r2"], ["h2"]))
    nodes.append(helper.make_node("MatMul", ["h2", "w3"], ["logits"]))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(mlp(4, "fixed_batch4", False), out / "fixed_batch4.onnx")
    onnx.save(mlp("batch", "shape_crosses", True), out / "shape_crosses.onnx")
    onnx.save(mlp("batch", "batch_mean", False, batch_mean=True), out / "batch_mean.onnx")


if __name__ == "__main__":
    main()
