"""What a quantized exit head's global average pool costs in ONNX Runtime
(CPU, default session options, 1 thread), on one 1×28×28×512 feature map
(ResNet-50's first exit), in each form eexc could emit: float ReduceMean
over the middle axes of NHWC, the same after a Reshape, a float product with
a row of 1/(H·W), dequantize then NCHW GlobalAveragePool (with and without
the transpose ONNX Runtime puts before it on a channels-last tensor), and
dequantize then the float product. Medians of 300 runs each; the numbers
behind src/exits/head.rs `quantized_mean` and docs/quantized.md.

usage: pooling_cost.py
"""

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx.numpy_helper import from_array as tensor

H = W = 28
C = 512
SCALE = tensor(np.array(0.1, np.float32), "scale")
ZERO = tensor(np.array(3, np.uint8), "zero")
ROWS = tensor(np.array([1, H * W, C], np.int64), "rows")
MEAN_ROW = tensor(np.full((1, H * W), 1 / (H * W), np.float32), "mean_row")


def median_us(name, nodes, inits, shape, elem=T.FLOAT):
    g = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", elem, shape)],
        [h.make_tensor_value_info("y", T.FLOAT, None)],
        inits,
    )
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).random(shape) * 200).astype(np.uint8 if elem == T.UINT8 else np.float32)
    for _ in range(20):
        s.run(None, {"x": x})
    runs = []
    for _ in range(300):
        t = time.perf_counter()
        s.run(None, {"x": x})
        runs.append(time.perf_counter() - t)
    print(f"{name:45} {np.median(runs) * 1e6:8.1f} us")


nhwc, nchw = [1, H, W, C], [1, C, H, W]
dq = h.make_node("DequantizeLinear", ["x", "scale", "zero"], ["d"])
median_us("float ReduceMean axes 1,2 (NHWC)", [h.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)], [], nhwc)
median_us(
    "float Reshape + ReduceMean axis 1 (NHWC)",
    [h.make_node("Reshape", ["x", "rows"], ["r"]), h.make_node("ReduceMean", ["r"], ["y"], axes=[1], keepdims=0)],
    [ROWS],
    nhwc,
)
median_us(
    "float product with a row of 1/(H·W) (NHWC)",
    [h.make_node("Reshape", ["x", "rows"], ["r"]), h.make_node("MatMul", ["mean_row", "r"], ["y"])],
    [ROWS, MEAN_ROW],
    nhwc,
)
median_us(
    "uint8: dequantize + GlobalAveragePool (NCHW)",
    [dq, h.make_node("GlobalAveragePool", ["d"], ["y"])],
    [SCALE, ZERO],
    nchw,
    T.UINT8,
)
median_us(
    "uint8: transpose + dequantize + GlobalAveragePool",
    [
        h.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        h.make_node("DequantizeLinear", ["t", "scale", "zero"], ["d"]),
        h.make_node("GlobalAveragePool", ["d"], ["y"]),
    ],
    [SCALE, ZERO],
    nhwc,
    T.UINT8,
)
median_us(
    "uint8: dequantize + float product (NHWC)",
    [dq, h.make_node("Reshape", ["d", "rows"], ["r"]), h.make_node("MatMul", ["mean_row", "r"], ["y"])],
    [SCALE, ZERO, ROWS, MEAN_ROW],
    nhwc,
    T.UINT8,
)
median_us(
    "uint8: MatMulInteger with ones, then scale (eexc)",
    [
        h.make_node("Reshape", ["x", "rows"], ["r"]),
        h.make_node("MatMulInteger", ["ones", "r", "", "zero"], ["s"]),
        h.make_node("Cast", ["s"], ["f"], to=T.FLOAT),
        h.make_node("Mul", ["f", "step"], ["y"]),
    ],
    [ROWS, ZERO, tensor(np.ones((1, H * W), np.uint8), "ones"), tensor(np.array(0.1 / (H * W), np.float32), "step")],
    nhwc,
    T.UINT8,
)
