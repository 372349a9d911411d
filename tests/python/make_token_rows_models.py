"""Write token classifiers whose linear layers read the tokens of every row side by
side, as torch.onnx.export writes attention's projections: Shape, Gather, Mul and Concat
of the input's dims give a Reshape to [batch*seq, d], a Gemm runs on it, and a second
Reshape gives [batch, seq, d] back.

Usage:
    python tests/python/make_token_rows_models.py OUTDIR

Files (deterministic: seeded numpy; weights are initializers; opset 17, IR 8):

  rows_fixed_seq.onnx     x float [batch,16,32] -> logits [batch,10]   (seq fixed, as ViT's 197)
  rows_sym_seq.onnx       x float [batch,seq,32] -> logits [batch,10]  (seq symbolic too)
  rows_declared_seq.onnx  as rows_sym_seq, with a value_info that declares "tokens" as
                          [batch,16,32]: the model itself says what seq is
  class_token_seq.onnx    x float [batch,seq,32] -> logits [batch,10]: a class token
                          Expand(cls [1,1,32], Concat(batch,1,32)) is concatenated in
                          front (axis 1, seq+1 tokens); rows = Mul(batch, Gather(Shape(.),1));
                          Reshape to [rows,32], Gemm(W1) + Relu, Reshape to [batch,-1,32];
                          Slice [:,1:] drops the class token again; ReduceMean over axis 1;
                          Gemm(W2) -> "logits"

  Both: rows = Mul(Gather(Shape(x), 0), Gather(Shape(x), 1)); Reshape(x, Concat(rows, 32));
  Gemm(W1 [32,32], transB=1) + Relu; Reshape(., Concat(batch, seq, 32)); ReduceMean over
  axis 1 (the tokens); Gemm(W2 [10,32], transB=1) -> "logits".

Each model is checked with onnx.checker (full_check) and run in onnxruntime at batch 3.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def shared_initializers(rng):
    """The two linear layers and the index constants both builders read."""
    w1 = (rng.standard_normal((32, 32)) / np.sqrt(32)).astype(np.float32)
    w2 = (rng.standard_normal((10, 32)) / np.sqrt(32)).astype(np.float32)
    return [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(np.zeros(32, np.float32), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.zeros(10, np.float32), "b2"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([32], np.int64), "width"),
    ]


def build(seq, declare_tokens=False):
    inits = shared_initializers(np.random.default_rng(7))
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shape"], name="shape"),
        n("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
        n("Gather", ["shape", "one"], ["seq"], name="seq", axis=0),
        n("Mul", ["batch", "seq"], ["rows"], name="rows"),
        n("Unsqueeze", ["rows", "axes0"], ["rows_1"], name="rows_1"),
        n("Concat", ["rows_1", "width"], ["flat_shape"], name="flat_shape", axis=0),
        n("Reshape", ["x", "flat_shape"], ["flat"], name="flat"),
        n("Gemm", ["flat", "w1", "b1"], ["proj"], name="proj", transB=1),
        n("Relu", ["proj"], ["proj_relu"], name="proj_relu"),
        n("Unsqueeze", ["batch", "axes0"], ["batch_1"], name="batch_1"),
        n("Unsqueeze", ["seq", "axes0"], ["seq_1"], name="seq_1"),
        n("Concat", ["batch_1", "seq_1", "width"], ["tokens_shape"], name="tokens_shape", axis=0),
        n("Reshape", ["proj_relu", "tokens_shape"], ["tokens"], name="tokens"),
        n("ReduceMean", ["tokens"], ["pooled"], name="pooled", axes=[1], keepdims=0),
        n("Gemm", ["pooled", "w2", "b2"], ["logits"], name="classifier", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "token_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    if declare_tokens:
        graph.value_info.append(helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", 16, 32]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eexc-tests")
    model.ir_version = 8
    return model


def build_class_token():
    rng = np.random.default_rng(9)
    inits = shared_initializers(rng) + [
        numpy_helper.from_array((0.1 * rng.standard_normal((1, 1, 32))).astype(np.float32), "cls"),
        numpy_helper.from_array(np.array([1], np.int64), "one_1d"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([1], np.int64), "slice_start"),
        numpy_helper.from_array(np.array([2**62], np.int64), "slice_end"),
        numpy_helper.from_array(np.array([1], np.int64), "slice_axis"),
    ]
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["x_shape"], name="x_shape"),
        n("Gather", ["x_shape", "zero"], ["batch"], name="batch", axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch_1"], name="batch_1"),
        n("Concat", ["batch_1", "one_1d", "width"], ["cls_shape"], name="cls_shape", axis=0),
        n("Expand", ["cls", "cls_shape"], ["cls_rows"], name="cls_rows"),
        n("Concat", ["cls_rows", "x"], ["tokens"], name="tokens", axis=1),
        n("Shape", ["tokens"], ["tokens_shape"], name="tokens_shape"),
        n("Gather", ["tokens_shape", "one"], ["count"], name="count", axis=0),
        n("Mul", ["batch", "count"], ["rows"], name="rows"),
        n("Unsqueeze", ["rows", "axes0"], ["rows_1"], name="rows_1"),
        n("Concat", ["rows_1", "width"], ["flat_shape"], name="flat_shape", axis=0),
        n("Reshape", ["tokens", "flat_shape"], ["flat"], name="flat"),
        n("Gemm", ["flat", "w1", "b1"], ["proj"], name="proj", transB=1),
        n("Relu", ["proj"], ["proj_relu"], name="proj_relu"),
        n("Concat", ["batch_1", "minus_one", "width"], ["back_shape"], name="back_shape", axis=0),
        n("Reshape", ["proj_relu", "back_shape"], ["mixed"], name="mixed"),
        n("Slice", ["mixed", "slice_start", "slice_end", "slice_axis"], ["patches"], name="patches"),
        n("ReduceMean", ["patches"], ["pooled"], name="pooled", axes=[1], keepdims=0),
        n("Gemm", ["pooled", "w2", "b2"], ["logits"], name="classifier", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "class_token",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eexc-tests")
    model.ir_version = 8
    return model


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, seq, declare in [
        ("rows_fixed_seq", 16, False),
        ("rows_sym_seq", "seq", False),
        ("rows_declared_seq", "seq", True),
        ("class_token_seq", "seq", False),
    ]:
        model = build(seq, declare) if name != "class_token_seq" else build_class_token()
        onnx.checker.check_model(model, full_check=True)
        path = out / f"{name}.onnx"
        onnx.save(model, path)
        x = np.random.default_rng(1).standard_normal((3, 16, 32)).astype(np.float32)
        logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert logits.shape == (3, 10), logits.shape
        print(path)


if __name__ == "__main__":
    main()
