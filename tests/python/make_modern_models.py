"""Write small modern classifiers (ResNet-style CNNs, MLPs) with real float weights.

Usage:
    python tests/python/make_modern_models.py OUTDIR

Files (deterministic: seeded numpy, no uuids, no timestamps; weights are initializers):

  resnet_op13.onnx  input [1,3,32,32]        -> logits [1,10]          opset 13, IR 7
  resnet_op17.onnx  input [batch,3,32,32]    -> logits [batch,10]      opset 17, IR 8
  resnet_op21.onnx  input [N,3,32,32]        -> probs [N,10] (Softmax) opset 21, IR 10
      stem Conv(3->16)+BatchNormalization+Relu; block1 (16, identity skip), block2
      (16->32, stride 2, 1x1 projection Conv+BN on the skip), block3 (32, identity),
      block4 (32->64, stride 2, projection); every block is Conv+BN+Relu, Conv+BN, Add,
      Relu; then GlobalAveragePool, Flatten, Gemm(transB=1) -> "logits".
  mlp_op13.onnx     x [1,64]     -> logits [1,10]            Gemm layers,       opset 13
  mlp_op17.onnx     x [batch,64] -> logits [batch,10]        MatMul+Add layers, opset 17
  mlp_op21.onnx     x [4,64]     -> probs [4,10] (Softmax)   Gemm layers,       opset 21
      4 hidden layers of width 128 (linear + Relu: h1..h4), then linear -> "logits".
  exit_points.json  {file name: [block-output tensors that are good exit points, in
                     order]}: the narrow cuts between blocks (resnet: block1_out,
                     block2_out, block3_out; mlp: h1, h2, h3). The last block's output
                     feeds the classifier directly and is not listed.

In the Softmax models "logits" is the tensor before the Softmax, the graph output is
"probs" (Softmax over the last axis; at opset >= 13 that is the class axis only).

Inputs the weights are calibrated for (and that check_exits.py feeds by default): MLPs
N(0,1); ResNets N(0,1) noise plus a per-row, per-channel N(0,1) offset, so that pooled
features differ between inputs (with white noise alone every global average is nearly the
same and every classifier on top of it predicts one class).

Weights: He-normal convolution/linear weights; BatchNormalization running mean and
variance are the per-channel statistics of the layer input over a fixed calibration
batch (so activations stay O(1), as in a trained network); the classifier is
centred and scaled on the calibration features (logits ~ N(bias, 2.5^2) per class),
so max-softmax over those random inputs spreads roughly over 0.2..0.99 and
threshold tests are meaningful. The calibration runs in float64 numpy, and
calibrated values are rounded to 4 significant digits, so the files do not depend
on BLAS summation order. After writing, each model is checked with
onnx.checker.check_model(full_check=True), run in onnxruntime against the numpy
reference, and its max-softmax spread is checked.

Prints one line per model: `PATH exit_points=a,b,c max_softmax=p5..p95`, then the
JSON sidecar's path. Exit 0 on success, 1 with a one-line reason otherwise.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
IR_FOR_OPSET = {13: 7, 17: 8, 21: 10}
CLASSES = 10
CALIB = 64        # calibration rows
LOGIT_SCALE = 2.5  # std of the centred logits


def sig(a, digits=4):
    """Round float64 values to `digits` significant digits (determinism across BLAS)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(a == 0, 0, np.floor(np.log10(np.abs(a))))
    scale = 10.0 ** (digits - 1 - mag)
    return np.round(a * scale) / scale


class Builder:
    """Collects nodes and initializers; mirrors every op in float64 numpy."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


# ---------------------------------------------------------------- numpy reference

def np_conv(x, w, stride, pad):
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # B, Cin, H', W', kh, kw
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # B, H', W', Cout
    return y.transpose(0, 3, 1, 2)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- layers (graph + numpy)

def conv_bn(b, name, x, xv, cin, cout, k, stride, relu):
    """Conv (no bias) + BatchNormalization (+ Relu); BN statistics from the calibration batch."""
    w = b.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
    w = w.astype(np.float32).astype(np.float64)
    pad = k // 2
    conv = b.node("Conv", [x, b.init(f"{name}_w", w)], f"{name}_conv",
                  kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
    cv = np_conv(xv, w, stride, pad)
    mean = sig(cv.mean(axis=(0, 2, 3)))
    var = sig(cv.var(axis=(0, 2, 3)) + 1e-3)
    gamma = sig(b.rng.uniform(0.8, 1.2, cout))
    beta = sig(b.rng.normal(0.0, 0.1, cout))
    eps = 1e-5
    bn = b.node("BatchNormalization",
                [conv, b.init(f"{name}_gamma", gamma), b.init(f"{name}_beta", beta),
                 b.init(f"{name}_mean", mean), b.init(f"{name}_var", var)],
                f"{name}_bn", epsilon=eps)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # what the file holds
    bv = (cv - f32(mean)[None, :, None, None]) / np.sqrt(f32(var)[None, :, None, None] + eps) \
        * f32(gamma)[None, :, None, None] + f32(beta)[None, :, None, None]
    if not relu:
        return bn, bv
    return b.node("Relu", [bn], f"{name}_relu"), np.maximum(bv, 0)


def res_block(b, name, x, xv, cin, cout, stride):
    h, hv = conv_bn(b, f"{name}_a", x, xv, cin, cout, 3, stride, relu=True)
    h, hv = conv_bn(b, f"{name}_b", h, hv, cout, cout, 3, 1, relu=False)
    if stride != 1 or cin != cout:
        skip, sv = conv_bn(b, f"{name}_proj", x, xv, cin, cout, 1, stride, relu=False)
    else:
        skip, sv = x, xv
    add = b.node("Add", [h, skip], f"{name}_add")
    return b.node("Relu", [add], f"{name}_out"), np.maximum(hv + sv, 0)


def classifier(b, feat, fv, in_dim, matmul):
    """Linear layer centred/scaled on the calibration features -> "logits"."""
    w = b.rng.standard_normal((CLASSES, in_dim)) / np.sqrt(in_dim)
    mu, sd = fv.mean(axis=0), fv.std(axis=0) + 1e-3
    w = sig(LOGIT_SCALE * w / sd[None, :])
    bias = sig(-(w @ mu) + b.rng.normal(0.0, 0.3, CLASSES))
    return linear(b, "fc_out", feat, fv, w, bias, matmul, out="logits")


def linear(b, name, x, xv, w, bias, matmul, out=None):
    """y = x @ w.T + bias; Gemm(transB=1) or MatMul (weights stored [in,out]) + Add."""
    out = out or f"{name}_out"
    w32 = w.astype(np.float32).astype(np.float64)
    b32 = bias.astype(np.float32).astype(np.float64)
    if matmul:
        mm = b.node("MatMul", [x, b.init(f"{name}_w", w.T)], f"{name}_mm")
        y = b.node("Add", [mm, b.init(f"{name}_b", bias)], out)
    else:
        y = b.node("Gemm", [x, b.init(f"{name}_w", w), b.init(f"{name}_b", bias)], out, transB=1)
    return y, xv @ w32.T + b32


# ---------------------------------------------------------------- models

def finish(b, name, opset, x_name, x_shape, logits, lv, softmax_out, doc):
    if softmax_out:
        out = b.node("Softmax", [logits], "probs", axis=-1)
        ov, out_shape = softmax(lv), [x_shape[0], CLASSES]
    else:
        out, ov, out_shape = logits, lv, [x_shape[0], CLASSES]
    graph = helper.make_graph(b.nodes, name, [helper.make_tensor_value_info(x_name, FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, FLOAT, out_shape)],
                              initializer=b.inits)
    model = helper.make_model(graph, ir_version=IR_FOR_OPSET[opset],
                              opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="eexc-tests", doc_string=doc)
    return model, ov


def image_inputs(rng, n):
    """N(0,1) noise plus a per-row, per-channel N(0,1) offset: check_exits.py's default inputs."""
    return rng.standard_normal((n, 3, 32, 32)) + rng.standard_normal((n, 3, 1, 1))


def make_resnet(opset, batch, softmax_out, seed):
    rng = np.random.default_rng(seed)
    calib = image_inputs(rng, CALIB).astype(np.float32).astype(np.float64)
    b = Builder(rng)
    h, hv = conv_bn(b, "stem", "input", calib, 3, 16, 3, 1, relu=True)
    exits = []
    for i, (cin, cout, stride) in enumerate([(16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2)], 1):
        h, hv = res_block(b, f"block{i}", h, hv, cin, cout, stride)
        exits.append(h)
    gap = b.node("GlobalAveragePool", [h], "gap")
    flat = b.node("Flatten", [gap], "flat", axis=1)
    logits, lv = classifier(b, flat, hv.mean(axis=(2, 3)), 64, matmul=False)
    model, ov = finish(b, f"resnet_op{opset}", opset, "input", [batch, 3, 32, 32], logits, lv,
                       softmax_out, "ResNet-style CNN, 4 residual blocks, random calibrated weights")
    return model, exits[:-1], calib, ov


def make_mlp(opset, batch, softmax_out, matmul, seed):
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((CALIB, 64)).astype(np.float32).astype(np.float64)
    b = Builder(rng)
    h, hv, d = "x", calib, 64
    exits = []
    for i in range(1, 5):
        w = sig(rng.standard_normal((128, d)) * np.sqrt(2.0 / d))
        bias = sig(rng.normal(0.0, 0.1, 128))
        lin, lv = linear(b, f"fc{i}", h, hv, w, bias, matmul)
        h, hv, d = b.node("Relu", [lin], f"h{i}"), np.maximum(lv, 0), 128
        exits.append(h)
    logits, lv = classifier(b, h, hv, 128, matmul)
    kind = "MatMul+Add" if matmul else "Gemm"
    model, ov = finish(b, f"mlp_op{opset}", opset, "x", [batch, 64], logits, lv, softmax_out,
                       f"MLP 64-128x4-10 ({kind}), random calibrated weights")
    return model, exits[:-1], calib, ov


def make_tokens(opset, batch, seed):
    """A token model (N x 8 x 32): three per-token MatMul+Add+Relu layers, mean
    pooling over tokens, linear classifier. Exits sit on 3-D tensors, so eexc
    builds token heads (token-cls / token-mean)."""
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((CALIB, 8, 32)).astype(np.float32).astype(np.float64)
    b = Builder(rng)
    h, hv, d = "tokens", calib, 32
    exits = []
    for i in range(1, 4):
        w = sig(rng.standard_normal((64, d)) * np.sqrt(2.0 / d))
        bias = sig(rng.normal(0.0, 0.1, 64))
        lin, lv = linear(b, f"layer{i}", h, hv, w, bias, matmul=True)
        h, hv, d = b.node("Relu", [lin], f"t{i}"), np.maximum(lv, 0), 64
        exits.append(h)
    if opset >= 18:
        b.inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "pool_axes"))
        pooled = b.node("ReduceMean", [h, "pool_axes"], "pooled", keepdims=0)
    else:
        pooled = b.node("ReduceMean", [h], "pooled", axes=[1], keepdims=0)
    logits, lv = classifier(b, pooled, hv.mean(axis=1), 64, matmul=False)
    model, ov = finish(b, f"tokens_op{opset}", opset, "tokens", [batch, 8, 32], logits, lv, False,
                       "token model 8x32, 3 per-token layers, mean pooling, random calibrated weights")
    return model, exits[:-1], calib, ov


MODELS = [
    ("resnet_op13.onnx", lambda: make_resnet(13, 1, False, 1301)),
    ("resnet_op17.onnx", lambda: make_resnet(17, "batch", False, 1701)),
    ("resnet_op21.onnx", lambda: make_resnet(21, "N", True, 2101)),
    ("mlp_op13.onnx", lambda: make_mlp(13, 1, False, False, 1302)),
    ("mlp_op17.onnx", lambda: make_mlp(17, "batch", False, True, 1702)),
    ("mlp_op21.onnx", lambda: make_mlp(21, 4, True, False, 2102)),
    ("tokens_op17.onnx", lambda: make_tokens(17, "batch", 1703)),
    ("tokens_op21.onnx", lambda: make_tokens(21, 2, 2103)),
]


def verify(path, model, calib, expected):
    """ORT matches the float64 reference; max-softmax over fresh inputs is spread out."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    rows = fixed or 16

    def run(x):
        return np.concatenate([sess.run(None, {inp.name: x[i:i + rows].astype(np.float32)})[0]
                               for i in range(0, len(x), rows)])

    got = run(calib)
    err = np.max(np.abs(got - expected)) / max(1.0, np.max(np.abs(expected)))
    if err > 1e-3:
        raise RuntimeError(f"{path}: onnxruntime differs from the numpy reference (rel {err:.2e})")
    r = np.random.default_rng(12345)
    fresh = image_inputs(r, 256) if calib.ndim == 4 else r.standard_normal((256,) + calib.shape[1:])
    out = run(fresh)
    probs = out if model.graph.output[0].name == "probs" else softmax(out.astype(np.float64))
    mp = probs.max(axis=-1)
    lo, hi = np.percentile(mp, 5), np.percentile(mp, 95)
    if not (lo < 0.5 and hi > 0.85 and mp.min() > 0.1):
        raise RuntimeError(f"{path}: degenerate max-softmax spread p5={lo:.3f} p95={hi:.3f}")
    return f"{lo:.2f}..{hi:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="folder to write the models into (created if missing)")
    args = ap.parse_args()
    lines, sidecar = [], {}
    try:
        os.makedirs(args.outdir, exist_ok=True)
        for fname, build in MODELS:
            model, exits, calib, expected = build()
            onnx.checker.check_model(model, full_check=True)
            path = os.path.join(args.outdir, fname)
            onnx.save(model, path)
            onnx.checker.check_model(path, full_check=True)
            spread = verify(path, model, calib, expected)
            sidecar[fname] = exits
            lines.append(f"{path} exit_points={','.join(exits)} max_softmax={spread}")
        side = os.path.join(args.outdir, "exit_points.json")
        with open(side, "w") as f:
            json.dump(sidecar, f, indent=2)
            f.write("\n")
    except Exception as e:  # one line for the calling test
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"make_modern_models: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
