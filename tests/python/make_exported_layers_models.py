"""Write token classifiers with repeated layers whose weights reach the layers the way
torch.onnx.export writes them: not as plain initializers but through load-time ops.

Usage:
    python tests/python/make_exported_layers_models.py OUT_DIR

Files (deterministic: seeded numpy; opset 17, IR 8; x float [batch,8,32] -> logits [batch,10]):

  exported_layers.onnx
      Stem: MatMul(x, stem_w [32,32]) + stem_b -> "embedded".
      Four layers i = 1..4, each (nodes and tensors named "layer{i}_..."):
          MatMul(h, layer{i}_w1) with layer{i}_w1 = Transpose(layer{i}_w1_stored [out,in])
              (a Linear weight stored as torch keeps it)
          Add(layer{i}_b1) with layer{i}_b1 = Reshape(layer{i}_b1_stored [32], [1,1,32])
          Relu
          MatMul(., layer{i}_w2) with layer{i}_w2 = Cast(layer{i}_w2_stored float16, to float)
          Add(h) (residual)
          LayerNormalization(layer{i}_gamma, layer{i}_beta, axis -1) -> "layer{i}_out"
      layer1_gamma is an initializer; layer{2,3,4}_gamma = Identity(layer1_gamma): the
      alias torch.onnx writes for a weight equal to an earlier one (ViT's ln_1.weight).
      Head: ReduceMean over the tokens (axis 1) -> Gemm(cls_w, cls_b, transB=1) -> "logits".
  scaled_layers.onnx
      As exported_layers, but layer{i}_w1 = Mul(layer{i}_w1_stored, 0.5) (untransposed):
      a weight computed by an op eexc does not evaluate at load time.

Checks: onnx.checker full_check, and onnxruntime at batch 3 matches a float64 numpy
implementation (rtol 1e-4, atol 1e-4). Prints each path.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LAYERS, D, SEQ, CLASSES = 4, 32, 8, 10


def params(seed=11):
    rng = np.random.default_rng(seed)
    p = {"gamma": rng.uniform(0.8, 1.2, D).astype(np.float32)}
    p["stem_w"] = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
    p["stem_b"] = (0.1 * rng.standard_normal(D)).astype(np.float32)
    for i in range(1, LAYERS + 1):
        p[f"w1t{i}"] = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
        p[f"b1{i}"] = (0.1 * rng.standard_normal(D)).astype(np.float32)
        p[f"w2{i}"] = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float16)
        p[f"beta{i}"] = (0.1 * rng.standard_normal(D)).astype(np.float32)
    p["cls_w"] = (2.0 * rng.standard_normal((CLASSES, D)) / np.sqrt(D)).astype(np.float32)
    p["cls_b"] = (0.1 * rng.standard_normal(CLASSES)).astype(np.float32)
    return p


def layer_norm(x, g, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * g + b


def reference(p, x, scaled):
    h = x.astype(np.float64) @ p["stem_w"] + p["stem_b"]
    for i in range(1, LAYERS + 1):
        w1 = p[f"w1t{i}"].astype(np.float64)
        w1 = 0.5 * w1 if scaled else w1.T
        a = np.maximum(h @ w1 + p[f"b1{i}"], 0)
        h = layer_norm(a @ p[f"w2{i}"].astype(np.float64) + h, p["gamma"], p[f"beta{i}"])
    return h.mean(1) @ p["cls_w"].T.astype(np.float64) + p["cls_b"]


def build(scaled):
    p = params()
    n = helper.make_node
    inits = [
        numpy_helper.from_array(p["gamma"], "layer1_gamma"),
        numpy_helper.from_array(np.array([1, 1, D], np.int64), "bias_shape"),
        numpy_helper.from_array(p["cls_w"], "cls_w"),
        numpy_helper.from_array(p["cls_b"], "cls_b"),
        numpy_helper.from_array(p["stem_w"], "stem_w"),
        numpy_helper.from_array(p["stem_b"], "stem_b"),
    ]
    if scaled:
        inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    nodes = [
        n("MatMul", ["x", "stem_w"], ["stem_mm"], name="stem_mm"),
        n("Add", ["stem_mm", "stem_b"], ["embedded"], name="embedded"),
    ]
    h = "embedded"
    for i in range(1, LAYERS + 1):
        L = f"layer{i}"
        inits += [
            numpy_helper.from_array(p[f"w1t{i}"], f"{L}_w1_stored"),
            numpy_helper.from_array(p[f"b1{i}"], f"{L}_b1_stored"),
            numpy_helper.from_array(p[f"w2{i}"], f"{L}_w2_stored"),
            numpy_helper.from_array(p[f"beta{i}"], f"{L}_beta"),
        ]
        if scaled:
            nodes.append(n("Mul", [f"{L}_w1_stored", "half"], [f"{L}_w1"], name=f"{L}_w1"))
        else:
            nodes.append(n("Transpose", [f"{L}_w1_stored"], [f"{L}_w1"], name=f"{L}_w1", perm=[1, 0]))
        nodes += [
            n("Reshape", [f"{L}_b1_stored", "bias_shape"], [f"{L}_b1"], name=f"{L}_b1"),
            n("Cast", [f"{L}_w2_stored"], [f"{L}_w2"], name=f"{L}_w2", to=TensorProto.FLOAT),
        ]
        if i > 1:
            nodes.append(n("Identity", ["layer1_gamma"], [f"{L}_gamma"], name=f"{L}_gamma"))
        nodes += [
            n("MatMul", [h, f"{L}_w1"], [f"{L}_mm1"], name=f"{L}_mm1"),
            n("Add", [f"{L}_mm1", f"{L}_b1"], [f"{L}_fc1"], name=f"{L}_fc1"),
            n("Relu", [f"{L}_fc1"], [f"{L}_relu"], name=f"{L}_relu"),
            n("MatMul", [f"{L}_relu", f"{L}_w2"], [f"{L}_mm2"], name=f"{L}_mm2"),
            n("Add", [f"{L}_mm2", h], [f"{L}_res"], name=f"{L}_res"),
            n("LayerNormalization", [f"{L}_res", f"{L}_gamma", f"{L}_beta"], [f"{L}_out"],
              name=f"{L}_ln", axis=-1, epsilon=1e-5),
        ]
        h = f"{L}_out"
    nodes += [
        n("ReduceMean", [h], ["pooled"], name="pooled", axes=[1], keepdims=0),
        n("Gemm", ["pooled", "cls_w", "cls_b"], ["logits"], name="classifier", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "exported_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, D])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eexc-tests")
    model.ir_version = 8
    return model, p


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, scaled in [("exported_layers", False), ("scaled_layers", True)]:
        model, p = build(scaled)
        onnx.checker.check_model(model, full_check=True)
        path = out / f"{name}.onnx"
        onnx.save(model, path)
        x = np.random.default_rng(1).standard_normal((3, SEQ, D)).astype(np.float32)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, reference(p, x, scaled), rtol=1e-4, atol=1e-4)
        print(path)


if __name__ == "__main__":
    main()
