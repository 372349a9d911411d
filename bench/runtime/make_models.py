"""Real-size ONNX classifiers with seeded random weights, for latency benchmarks.

usage: make_models.py OUT_DIR [--models mobilenet_v2,efficientnet_b0,vit_s16,bert_encoder] [--seed 0]

Writes OUT_DIR/<name>.onnx for each model asked for (default: all four):

  mobilenet_v2     MobileNet-V2 1.0, float[batch,3,224,224] -> logits float[batch,1000]
  efficientnet_b0  EfficientNet-B0,  float[batch,3,224,224] -> logits float[batch,1000]
  vit_s16          ViT-S/16 (pre-LN, d 384, 12 layers, 6 heads, MLP 1536),
                   float[batch,3,224,224] -> logits float[batch,1000]
  bert_encoder     BERT-style encoder over float embeddings (post-LN, d 768,
                   6 layers, 12 heads, FFN 3072, pooler + Tanh),
                   float[batch,128,768] -> logits float[batch,2]

All: opset 17, IR 8, float32, graph input `input` with symbolic batch dim
`batch`, one output `logits`, weights as raw_data initializers. The CNNs have
no BatchNormalization node: BN is taken as folded into the convolution
(eval-mode folding), so every conv that had a BN carries a bias; the SE convs
carry their own bias. The weights are RANDOM (numpy.random.default_rng(seed),
fresh per model): conv/linear weights He-normal N(0, 2/fan_in) (depthwise:
fan_in = k*k), biases N(0, 0.01), LayerNorm scale 1 / bias 0, CLS token and
position embeddings N(0, 0.02). The models compute finite, non-degenerate
values, but they classify nothing: they are for latency benchmarks only.

For each model: onnx.checker.check_model(full_check=True); save; run once in
onnxruntime (CPU, default session options) on a seeded random batch-1 input,
failing (exit 1) unless `logits` has shape [1, classes] and is finite; then
time it in a session with intra_op_num_threads = 1 (one warm-up run, median of
20). MACs are counted from the shape-inferred graph (Conv: output elements *
in_ch/group * kh * kw; MatMul/Gemm: M*N*K, batch dim taken as 1) and compared
with the published figures (printed, never fatal). Same seed -> byte-identical
files (no timestamps, no random names).
"""

import argparse
import hashlib
import math
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "eexc bench/runtime/make_models.py"
LATENCY_RUNS = 20


class Graph:
    """Collects nodes and initializers for one model, with a seeded generator."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.init_names = set()
        self.n_params = 0
        self.used = {}

    # -- initializers ------------------------------------------------------
    def param(self, name, array):
        """A trainable weight: counted as parameters."""
        if name in self.init_names:
            raise ValueError(f"duplicate parameter {name}")
        arr = np.ascontiguousarray(array, dtype=np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        self.init_names.add(name)
        self.n_params += arr.size
        return name

    def const(self, name, array):
        """A constant (shape, scalar): not counted as a parameter; shared by name."""
        if name not in self.init_names:
            self.inits.append(numpy_helper.from_array(np.asarray(array), name))
            self.init_names.add(name)
        return name

    def f32(self, name, value):
        return self.const(name, np.array(value, dtype=np.float32))

    def i64(self, name, values):
        return self.const(name, np.array(values, dtype=np.int64))

    # -- random values -----------------------------------------------------
    def normal(self, shape, std):
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def he(self, shape, fan_in):
        return self.normal(shape, math.sqrt(2.0 / fan_in))

    def bias(self, n):
        return self.normal((n,), 0.01)

    # -- nodes -------------------------------------------------------------
    def op(self, op_type, inputs, scope, out=None, **attrs):
        base = f"/{scope}/{op_type}"
        k = self.used.get(base, 0)
        self.used[base] = k + 1
        name = base if k == 0 else f"{base}_{k}"
        output = out or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name, **attrs))
        return output

    def conv(self, x, scope, cin, cout, k, stride=1, group=1, pad=None):
        cin_g = cin // group
        w = self.param(f"{scope}.weight", self.he((cout, cin_g, k, k), cin_g * k * k))
        b = self.param(f"{scope}.bias", self.bias(cout))
        p = k // 2 if pad is None else pad
        return self.op("Conv", [x, w, b], scope, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[p, p, p, p], dilations=[1, 1], group=group)

    def relu6(self, x, scope):
        return self.op("Clip", [x, self.f32("relu6_min", 0.0), self.f32("relu6_max", 6.0)], scope)

    def silu(self, x, scope):
        return self.op("Mul", [x, self.op("Sigmoid", [x], scope)], scope)

    def gemm(self, x, scope, k, n, out=None):
        """2-D head: Gemm with the weight stored [out, in] (transB = 1), as exporters do."""
        w = self.param(f"{scope}.weight", self.he((n, k), k))
        b = self.param(f"{scope}.bias", self.bias(n))
        return self.op("Gemm", [x, w, b], scope, out=out, alpha=1.0, beta=1.0, transB=1)

    def linear(self, x, scope, k, n):
        """Linear over a [batch, seq, k] tensor: MatMul (weight stored [k, n]) + Add bias."""
        w = self.param(f"{scope}.weight", self.he((k, n), k))
        b = self.param(f"{scope}.bias", self.bias(n))
        return self.op("Add", [self.op("MatMul", [x, w], scope), b], scope)

    def layernorm(self, x, scope, d, eps):
        s = self.param(f"{scope}.weight", np.ones(d, np.float32))
        b = self.param(f"{scope}.bias", np.zeros(d, np.float32))
        return self.op("LayerNormalization", [x, s, b], scope, axis=-1, epsilon=eps)

    def gelu(self, x, scope):
        """x * 0.5 * (1 + erf(x / sqrt 2)), the way the exporters write the exact Gelu."""
        e = self.op("Erf", [self.op("Div", [x, self.f32("gelu_sqrt2", math.sqrt(2.0))], scope)], scope)
        e1 = self.op("Add", [e, self.f32("gelu_one", 1.0)], scope)
        return self.op("Mul", [self.op("Mul", [x, e1], scope), self.f32("gelu_half", 0.5)], scope)

    def attention(self, x, scope, d, heads):
        """Multi-head self-attention as the exporters write it (separate Q/K/V projections)."""
        hd = d // heads
        split = self.i64(f"attn_split_{heads}x{hd}", [0, -1, heads, hd])
        merge = self.i64(f"attn_merge_{d}", [0, -1, d])
        q = self.linear(x, f"{scope}.query", d, d)
        k = self.linear(x, f"{scope}.key", d, d)
        v = self.linear(x, f"{scope}.value", d, d)
        q = self.op("Transpose", [self.op("Reshape", [q, split], scope)], scope, perm=[0, 2, 1, 3])
        k = self.op("Transpose", [self.op("Reshape", [k, split], scope)], scope, perm=[0, 2, 3, 1])
        v = self.op("Transpose", [self.op("Reshape", [v, split], scope)], scope, perm=[0, 2, 1, 3])
        s = self.op("MatMul", [q, k], scope)  # [b, h, s, s]
        s = self.op("Div", [s, self.f32(f"attn_scale_{hd}", math.sqrt(hd))], scope)
        p = self.op("Softmax", [s], scope, axis=-1)
        o = self.op("MatMul", [p, v], scope)  # [b, h, s, hd]
        o = self.op("Transpose", [o], scope, perm=[0, 2, 1, 3])
        o = self.op("Reshape", [o, merge], scope)
        return self.linear(o, f"{scope}.output", d, d)

    def mlp(self, x, scope, d, dff):
        h = self.gelu(self.linear(x, f"{scope}.fc1", d, dff), scope)
        return self.linear(h, f"{scope}.fc2", dff, d)

    def model(self, name, in_shape, n_classes):
        g = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes])],
            initializer=self.inits)
        m = helper.make_model(g, producer_name=PRODUCER, producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = IR_VERSION
        return m


# -- the four models -------------------------------------------------------

MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]  # (t, c, n, s)


def mobilenet_v2(g):
    x = g.relu6(g.conv("input", "features.0", 3, 32, 3, stride=2), "features.0")
    cin, idx = 32, 1
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            sc = f"features.{idx}"
            y = x
            if t != 1:  # the t = 1 block has no expansion conv (as published)
                y = g.relu6(g.conv(y, f"{sc}.expand", cin, hidden, 1), sc)
            y = g.relu6(g.conv(y, f"{sc}.depthwise", hidden, hidden, 3, stride=stride, group=hidden), sc)
            y = g.conv(y, f"{sc}.project", hidden, c, 1)
            if stride == 1 and cin == c:
                y = g.op("Add", [x, y], sc)
            x, cin, idx = y, c, idx + 1
    x = g.relu6(g.conv(x, f"features.{idx}", cin, 1280, 1), f"features.{idx}")
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "pool")], "pool", axis=1)
    g.gemm(x, "classifier", 1280, 1000, out="logits")
    return g.model("mobilenet_v2", [3, 224, 224], 1000)


EFFICIENTNET_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                   (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # (expand, k, s, c, n)


def efficientnet_b0(g):
    x = g.silu(g.conv("input", "stem", 3, 32, 3, stride=2), "stem")
    cin, idx = 32, 0
    for e, k, s, c, n in EFFICIENTNET_B0:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * e
            sc = f"blocks.{idx}"
            y = x
            if e != 1:
                y = g.silu(g.conv(y, f"{sc}.expand", cin, hidden, 1), sc)
            y = g.silu(g.conv(y, f"{sc}.depthwise", hidden, hidden, k, stride=stride, group=hidden), sc)
            # squeeze-and-excitation, squeeze to a quarter of the block's input channels
            sq = max(1, cin // 4)
            z = g.op("GlobalAveragePool", [y], f"{sc}.se")
            z = g.silu(g.conv(z, f"{sc}.se.reduce", hidden, sq, 1), f"{sc}.se")
            z = g.op("Sigmoid", [g.conv(z, f"{sc}.se.expand", sq, hidden, 1)], f"{sc}.se")
            y = g.op("Mul", [y, z], f"{sc}.se")
            y = g.conv(y, f"{sc}.project", hidden, c, 1)
            if stride == 1 and cin == c:
                y = g.op("Add", [x, y], sc)
            x, cin, idx = y, c, idx + 1
    x = g.silu(g.conv(x, "head", cin, 1280, 1), "head")
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "pool")], "pool", axis=1)
    g.gemm(x, "classifier", 1280, 1000, out="logits")
    return g.model("efficientnet_b0", [3, 224, 224], 1000)


def vit_s16(g, d=384, layers=12, heads=6, dff=1536, patch=16, image=224, classes=1000):
    n_patch = (image // patch) ** 2
    x = g.conv("input", "patch_embed", 3, d, patch, stride=patch, pad=0)  # [b, d, 14, 14]
    x = g.op("Reshape", [x, g.i64("patch_flatten_shape", [0, d, -1])], "patch_embed")
    x = g.op("Transpose", [x], "patch_embed", perm=[0, 2, 1])  # [b, 196, d]
    # CLS token: Expand the [1, 1, d] initializer to [batch, 1, d], Concat in front
    cls = g.param("cls_token", g.normal((1, 1, d), 0.02))
    pos = g.param("pos_embed", g.normal((1, n_patch + 1, d), 0.02))
    b = g.op("Shape", ["input"], "cls", start=0, end=1)  # [batch]
    shape = g.op("Concat", [b, g.i64("cls_tail_shape", [1, d])], "cls", axis=0)
    x = g.op("Concat", [g.op("Expand", [cls, shape], "cls"), x], "cls", axis=1)  # [b, 197, d]
    x = g.op("Add", [x, pos], "pos_embed")
    for i in range(layers):
        sc = f"blocks.{i}"
        h = g.attention(g.layernorm(x, f"{sc}.norm1", d, 1e-6), f"{sc}.attn", d, heads)
        x = g.op("Add", [x, h], sc)
        h = g.mlp(g.layernorm(x, f"{sc}.norm2", d, 1e-6), f"{sc}.mlp", d, dff)
        x = g.op("Add", [x, h], sc)
    x = g.layernorm(x, "norm", d, 1e-6)
    x = g.op("Gather", [x, g.i64("token0", 0)], "cls_out", axis=1)  # [b, d]
    g.gemm(x, "head", d, classes, out="logits")
    return g.model("vit_s16", [3, image, image], classes)


def bert_encoder(g, seq=128, d=768, layers=6, heads=12, dff=3072, classes=2):
    x = "input"
    for i in range(layers):
        sc = f"encoder.layer.{i}"
        h = g.attention(x, f"{sc}.attention", d, heads)
        x = g.layernorm(g.op("Add", [x, h], sc), f"{sc}.attention.norm", d, 1e-12)
        h = g.mlp(x, f"{sc}.ffn", d, dff)
        x = g.layernorm(g.op("Add", [x, h], sc), f"{sc}.output.norm", d, 1e-12)
    x = g.op("Gather", [x, g.i64("token0", 0)], "pooler", axis=1)  # [b, d]
    x = g.op("Tanh", [g.gemm(x, "pooler.dense", d, d)], "pooler")
    g.gemm(x, "classifier", d, classes, out="logits")
    return g.model("bert_encoder", [seq, d], classes)


def bert_macs(seq=128, d=768, layers=6, dff=3072, classes=2):
    return layers * (seq * (4 * d * d + 2 * d * dff) + 2 * seq * seq * d) + d * d + d * classes


# name -> (builder, classes, (published params, published MACs, where the figures come from))
MODELS = {
    "mobilenet_v2": (mobilenet_v2, 1000, (3.5e6, 300e6, "published (Sandler et al. 2018)")),
    "efficientnet_b0": (efficientnet_b0, 1000, (5.3e6, 390e6, "published (Tan & Le 2019)")),
    "vit_s16": (vit_s16, 1000, (22e6, 4.6e9, "published (timm vit_small_patch16_224)")),
    "bert_encoder": (bert_encoder, 2, (43.1e6, float(bert_macs()), "formula (no published figure)")),
}


# -- checks ----------------------------------------------------------------

def count_macs(model):
    """MACs of Conv/MatMul/Gemm from the shape-inferred graph, symbolic dims as 1."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    g = inferred.graph
    shapes = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else
                           (1 if d.HasField("dim_param") else None) for d in dims]
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    macs = {}

    def shape(name):
        s = shapes.get(name)
        if s is None or any(v is None or v <= 0 for v in s):
            raise RuntimeError(f"MAC count: no static shape for {name!r}: {s}")
        return s

    for node in g.node:
        if node.op_type == "Conv":
            w = shape(node.input[1])
            n = math.prod(shape(node.output[0])) * math.prod(w[1:])
        elif node.op_type == "MatMul":
            n = math.prod(shape(node.output[0])) * shape(node.input[0])[-1]
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            a = shape(node.input[0])
            n = math.prod(shape(node.output[0])) * (a[0] if trans_a else a[-1])
        else:
            continue
        macs[node.op_type] = macs.get(node.op_type, 0) + n
    return sum(macs.values()), macs


def seeded_input(sess, seed):
    (i,) = sess.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    return {i.name: np.random.default_rng(seed + 1).standard_normal(shape, dtype=np.float32)}


def check_output(out, classes, what):
    if out.shape != (1, classes):
        raise RuntimeError(f"{what}: logits shape {out.shape}, want (1, {classes})")
    if not np.all(np.isfinite(out)):
        raise RuntimeError(f"{what}: logits not finite")


def run_and_time(path, classes, seed):
    """One run in a default CPU session; then the median of 20 runs on 1 thread."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = seeded_input(sess, seed)
    (out,) = sess.run(None, feeds)
    check_output(out, classes, "default session")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess1 = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    (out1,) = sess1.run(None, feeds)  # warm-up
    check_output(out1, classes, "1-thread session")
    times = []
    for _ in range(LATENCY_RUNS):
        t0 = time.perf_counter()
        sess1.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return out, statistics.median(times)


def near(got, want, tol=0.10):
    return f"{(got / want - 1) * 100:+.1f}% {'ok' if abs(got / want - 1) <= tol else 'OFF'}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of: %(default)s")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        sys.exit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    os.makedirs(a.out_dir, exist_ok=True)

    t_all = time.perf_counter()
    failed = []
    print(f"{'model':<16} {'MB':>7} {'params':>11} {'MACs':>14} {'ORT 1-thr ms':>13}  "
          f"{'gen s':>5}  sha256[:16]")
    notes = []
    for name in names:
        build, classes, (pub_params, pub_macs, source) = MODELS[name]
        t0 = time.perf_counter()
        g = Graph(np.random.default_rng(a.seed))
        model = build(g)
        path = os.path.join(a.out_dir, f"{name}.onnx")
        try:
            onnx.checker.check_model(model, full_check=True)
            macs, by_op = count_macs(model)
            onnx.save(model, path)
            gen_s = time.perf_counter() - t0
            out, ms = run_and_time(path, classes, a.seed)
        except Exception as e:  # report every model, then fail
            print(f"{name:<16} FAILED: {type(e).__name__}: {e}")
            failed.append(name)
            continue
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        print(f"{name:<16} {size / 1e6:7.1f} {g.n_params:11,} {macs:14,} {ms:13.1f}  "
              f"{gen_s:5.1f}  {digest}", flush=True)
        notes.append(f"  {name}: params {g.n_params / 1e6:.2f} M vs {pub_params / 1e6:.1f} M "
                     f"({near(g.n_params, pub_params)}), MACs {macs / 1e6:,.0f} M vs "
                     f"{pub_macs / 1e6:,.0f} M ({near(macs, pub_macs)}) [{source}]; "
                     f"MACs by op {by_op}; logits std {float(out.std()):.3g}, "
                     f"max |logit| {float(np.abs(out).max()):.3g}")
    print("\n".join(["vs expected figures (not checked: printed only):", *notes]))
    print(f"total {time.perf_counter() - t_all:.1f} s for {len(names)} model(s)")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
