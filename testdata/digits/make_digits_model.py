#!/usr/bin/env python3
"""Build eexc's small *trained* test classifier: a residual CNN on 8x8 digits.

What this makes (all under ``testdata/digits/``, next to this script)
--------------------------------------------------------------------
* ``digits_resnet.onnx`` -- the trained network, opset 17, IR version 8.
  Input ``image`` float32 ``[batch, 1, 8, 8]`` (already standardized, see
  below), output ``logits`` float32 ``[batch, 10]`` (raw scores, no softmax).
  Ops: Conv, Relu, Add, GlobalAveragePool, Flatten, Gemm.  The outputs of the
  stem and of the three residual blocks carry fixed names -- ``stem_out``,
  ``block1_out``, ``block2_out``, ``block3_out`` -- so tests can put early
  exits there by name.
* ``{train,calib,test}_x.npy`` float32 ``[n, 1, 8, 8]`` and
  ``{train,calib,test}_y.npy`` int64 ``[n]`` -- the three disjoint splits,
  already standardized, i.e. exactly what the model takes.

Data
----
``sklearn.datasets.load_digits()``: 1797 grey-scale 8x8 images of the digits
0-9, integer pixels 0..16.  It ships inside scikit-learn (no download).  It is
a copy of the test set of the UCI ML "Optical Recognition of Handwritten
Digits" data set (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0).

Preprocessing: pixels / 16 -> [0, 1], then ``(x - MEAN) / STD`` with a single
scalar MEAN and STD computed on the *train* split only (their values are
printed, stored in the model's ``metadata_props`` and its doc string).  The
normalization is *not* part of the ONNX graph: callers feed standardized
images, as stored in the ``*_x.npy`` files.

Splits: one permutation of the 1797 indices from ``numpy.random.default_rng``
seeded with ``SEED``; the first 1000 are ``train``, the next 397 ``calib``, the
last 400 ``test``.  No sample is in two splits.  Only ``train`` is used for
training (no early stopping, a fixed number of epochs), so ``calib`` and
``test`` are genuinely held out.

Network (all convolutions 3x3 with padding 1 unless stated, all with bias, no
BatchNorm):

    image [N,1,8,8]
    stem:   Conv(1->16) Relu                                   -> stem_out   [N,16,8,8]
    block1: Conv(16->16) Relu Conv(16->16) + stem_out, Relu    -> block1_out [N,16,8,8]
    block2: Conv(16->32, stride 2) Relu Conv(32->32)
            + Conv1x1(16->32, stride 2)(block1_out), Relu      -> block2_out [N,32,4,4]
    block3: Conv(32->32) Relu Conv(32->32) + block2_out, Relu  -> block3_out [N,32,4,4]
    head:   GlobalAveragePool Flatten Gemm(32->10)             -> logits     [N,10]

Training: the forward pass is written with ``autograd.numpy`` (convolution as
im2col -- the 9 shifted views of a zero-padded input, stacked, then one matrix
product) and differentiated with ``autograd``.  Loss: mean softmax
cross-entropy on the final logits only (no auxiliary losses, so the early
blocks are naturally weaker classifiers than the full network) plus a small L2
penalty on conv / Gemm weights.  Adam, mini-batches of BATCH, EPOCHS epochs,
cosine learning-rate decay.  He-normal initialization, biases zero.  Training
runs in float64; the final weights are rounded to float32 for export.

Determinism: every random draw comes from ``default_rng(SEED)`` (split,
init, batch order); BLAS is pinned to one thread (set below, before numpy is
imported) so reductions happen in the same order on every run.  The ONNX file
has no timestamps and the ``.npy`` files are plain ``np.save`` output, so two
runs with the pinned package versions (``requirements.txt``) on the same
machine give byte-identical files.  Another CPU (a different OpenBLAS kernel)
may round differently and so train to slightly different weights.

Checks before it exits 0
------------------------
* ``onnx.checker.check_model(model, full_check=True)``;
* ONNX Runtime (CPU) logits on the test split equal this script's float32
  numpy forward pass with the exported weights (rtol 1e-4, atol 1e-4 -- an
  absolute floor for logits near zero);
* train / calib / test accuracy from ONNX Runtime is printed, and the script
  exits non-zero if test accuracy is below MIN_TEST_ACC (0.95).

Reproduce (from the repository root)::

    python3 -m venv /tmp/digits-venv
    /tmp/digits-venv/bin/pip install -r testdata/digits/requirements.txt
    /tmp/digits-venv/bin/python testdata/digits/make_digits_model.py
"""

import os

# Pin BLAS / OpenMP to one thread before numpy loads, for bit-reproducible
# training (multi-threaded BLAS may split sums differently).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import time  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from autograd import grad  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = "digits_resnet.onnx"

SEED = 20240611
N_TRAIN, N_CALIB, N_TEST = 1000, 397, 400
EPOCHS = 60
BATCH = 50
LR = 3e-3
L2 = 1e-4
MIN_TEST_ACC = 0.95

# (name, out_channels, in_channels, kernel, stride); padding is kernel // 2.
CONVS = [
    ("stem.conv", 16, 1, 3, 1),
    ("block1.conv1", 16, 16, 3, 1),
    ("block1.conv2", 16, 16, 3, 1),
    ("block2.conv1", 32, 16, 3, 2),
    ("block2.conv2", 32, 32, 3, 1),
    ("block2.skip", 32, 16, 1, 2),
    ("block3.conv1", 32, 32, 3, 1),
    ("block3.conv2", 32, 32, 3, 1),
]
N_CLASSES = 10
FC_IN = 32


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def make_splits(rng):
    """Load digits, split by one seeded permutation, standardize with train stats."""
    digits = load_digits()
    images = digits.images.astype(np.float64) / 16.0  # [1797, 8, 8] in [0, 1]
    labels = digits.target.astype(np.int64)
    assert images.shape == (1797, 8, 8) and N_TRAIN + N_CALIB + N_TEST == 1797
    perm = rng.permutation(len(labels))
    idx = {
        "train": perm[:N_TRAIN],
        "calib": perm[N_TRAIN:N_TRAIN + N_CALIB],
        "test": perm[N_TRAIN + N_CALIB:],
    }
    mean = float(images[idx["train"]].mean())
    std = float(images[idx["train"]].std())
    splits = {}
    for name, ix in idx.items():
        x = ((images[ix] - mean) / std).astype(np.float32)[:, None, :, :]
        splits[name] = (np.ascontiguousarray(x), np.ascontiguousarray(labels[ix]))
    return splits, np.float32(mean), np.float32(std)


# --------------------------------------------------------------------------
# Model (works on numpy or autograd.numpy arrays via the `xp` module)
# --------------------------------------------------------------------------
def init_params(rng):
    params = {}
    for name, cout, cin, k, _ in CONVS:
        fan_in = cin * k * k
        params[name + ".weight"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (cout, cin, k, k))
        params[name + ".bias"] = np.zeros(cout)
    params["fc.weight"] = rng.normal(0.0, np.sqrt(1.0 / FC_IN), (N_CLASSES, FC_IN))
    params["fc.bias"] = np.zeros(N_CLASSES)
    return params


def conv2d(xp, x, w, b, stride):
    """ONNX-style Conv (NCHW, weights [O,C,k,k], pad k//2 on every side)."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    p = k // 2
    if p:
        x = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant")  # autograd needs mode
    ho = (h + 2 * p - k) // stride + 1
    wo = (wd + 2 * p - k) // stride + 1
    # im2col: the k*k shifted (and strided) views, stacked -> [N, C, k*k, Ho, Wo]
    views = [
        x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
        for i in range(k)
        for j in range(k)
    ]
    cols = xp.stack(views, axis=2)
    cols = xp.reshape(xp.transpose(cols, (0, 3, 4, 1, 2)), (n * ho * wo, c * k * k))
    out = xp.dot(cols, xp.reshape(w, (o, c * k * k)).T) + b  # [N*Ho*Wo, O]
    return xp.transpose(xp.reshape(out, (n, ho, wo, o)), (0, 3, 1, 2))


def relu(xp, x):
    return xp.maximum(x, 0.0)


def forward(xp, params, x, taps=None):
    """Logits [N,10]; if `taps` is a dict, the named block outputs go into it."""
    def conv(name, t):
        stride = {c[0]: c[4] for c in CONVS}[name]
        return conv2d(xp, t, params[name + ".weight"], params[name + ".bias"], stride)

    stem = relu(xp, conv("stem.conv", x))
    b1 = relu(xp, conv("block1.conv2", relu(xp, conv("block1.conv1", stem))) + stem)
    b2 = relu(xp, conv("block2.conv2", relu(xp, conv("block2.conv1", b1))) + conv("block2.skip", b1))
    b3 = relu(xp, conv("block3.conv2", relu(xp, conv("block3.conv1", b2))) + b2)
    pooled = xp.mean(b3, axis=(2, 3))  # GlobalAveragePool + Flatten
    logits = xp.dot(pooled, params["fc.weight"].T) + params["fc.bias"]
    if taps is not None:
        taps.update(stem_out=stem, block1_out=b1, block2_out=b2, block3_out=b3)
    return logits


def loss_fn(params, x, y):
    logits = forward(anp, params, x)
    m = anp.max(logits, axis=1, keepdims=True)
    logz = anp.log(anp.sum(anp.exp(logits - m), axis=1)) + m[:, 0]
    picked = logits[anp.arange(len(y)), y]
    ce = anp.mean(logz - picked)
    reg = sum(anp.sum(params[k] ** 2) for k in sorted(params) if k.endswith(".weight"))
    return ce + 0.5 * L2 * reg


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def train(params, x, y, rng):
    x = x.astype(np.float64)
    g = grad(loss_fn)
    keys = sorted(params)
    m = {k: np.zeros_like(params[k]) for k in keys}
    v = {k: np.zeros_like(params[k]) for k in keys}
    b1, b2, eps = 0.9, 0.999, 1e-8
    steps_per_epoch = len(y) // BATCH
    total = EPOCHS * steps_per_epoch
    t = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(y))
        for s in range(steps_per_epoch):
            bi = order[s * BATCH:(s + 1) * BATCH]
            grads = g(params, x[bi], y[bi])
            t += 1
            lr = LR * 0.5 * (1.0 + np.cos(np.pi * (t - 1) / total))
            for k in keys:
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                mhat = m[k] / (1 - b1 ** t)
                vhat = v[k] / (1 - b2 ** t)
                params[k] = params[k] - lr * mhat / (np.sqrt(vhat) + eps)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            acc = float(np.mean(np.argmax(forward(np, params, x), axis=1) == y))
            print(f"  epoch {epoch + 1:3d}: loss {loss_fn(params, x, y):.4f}  train acc {acc:.4f}", flush=True)
    return params


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------
def export(params, doc, metadata):
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(params[k], dtype=np.float32), k)
        for k in sorted(params)
    ]
    nodes = []

    def conv(name, inp, out):
        stride = {c[0]: c[4] for c in CONVS}[name]
        k = {c[0]: c[3] for c in CONVS}[name]
        p = k // 2
        nodes.append(helper.make_node(
            "Conv", [inp, name + ".weight", name + ".bias"], [out], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p],
            dilations=[1, 1], group=1))
        return out

    def relu_node(name, inp, out):
        nodes.append(helper.make_node("Relu", [inp], [out], name=name))
        return out

    def add(name, a, b, out):
        nodes.append(helper.make_node("Add", [a, b], [out], name=name))
        return out

    t = conv("stem.conv", "image", "stem.conv_out")
    stem = relu_node("stem.relu", t, "stem_out")

    t = relu_node("block1.relu1", conv("block1.conv1", stem, "block1.conv1_out"), "block1.relu1_out")
    t = add("block1.add", conv("block1.conv2", t, "block1.conv2_out"), stem, "block1.add_out")
    b1 = relu_node("block1.relu2", t, "block1_out")

    t = relu_node("block2.relu1", conv("block2.conv1", b1, "block2.conv1_out"), "block2.relu1_out")
    t = conv("block2.conv2", t, "block2.conv2_out")
    s = conv("block2.skip", b1, "block2.skip_out")
    b2 = relu_node("block2.relu2", add("block2.add", t, s, "block2.add_out"), "block2_out")

    t = relu_node("block3.relu1", conv("block3.conv1", b2, "block3.conv1_out"), "block3.relu1_out")
    t = add("block3.add", conv("block3.conv2", t, "block3.conv2_out"), b2, "block3.add_out")
    b3 = relu_node("block3.relu2", t, "block3_out")

    nodes.append(helper.make_node("GlobalAveragePool", [b3], ["head.pool_out"], name="head.pool"))
    nodes.append(helper.make_node("Flatten", ["head.pool_out"], ["head.flat_out"], name="head.flatten", axis=1))
    nodes.append(helper.make_node(
        "Gemm", ["head.flat_out", "fc.weight", "fc.bias"], ["logits"], name="head.fc",
        alpha=1.0, beta=1.0, transA=0, transB=1))

    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "digits_resnet",
        inputs=[helper.make_tensor_value_info("image", f, ["batch", 1, 8, 8])],
        outputs=[helper.make_tensor_value_info("logits", f, ["batch", N_CLASSES])],
        initializer=inits,
        value_info=[
            helper.make_tensor_value_info("stem_out", f, ["batch", 16, 8, 8]),
            helper.make_tensor_value_info("block1_out", f, ["batch", 16, 8, 8]),
            helper.make_tensor_value_info("block2_out", f, ["batch", 32, 4, 4]),
            helper.make_tensor_value_info("block3_out", f, ["batch", 32, 4, 4]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="eexc testdata/digits/make_digits_model.py",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = 8
    for k, val in metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, val
    return model


def accuracy(logits, y):
    return float(np.mean(np.argmax(logits, axis=1) == y))


def main():
    rng = np.random.default_rng(SEED)
    splits, mean, std = make_splits(rng)
    print(f"splits: train {N_TRAIN}, calib {N_CALIB}, test {N_TEST}; "
          f"train mean {float(mean)!r}, std {float(std)!r}")

    params = init_params(rng)
    t0 = time.perf_counter()
    params = train(params, *splits["train"], rng)
    train_s = time.perf_counter() - t0
    print(f"training took {train_s:.1f} s")

    params32 = {k: v.astype(np.float32) for k, v in params.items()}

    # float32 numpy forward pass with the weights as exported: the reference
    # for ONNX Runtime and the source of the accuracies in the doc string.
    ref = {name: forward(np, params32, x) for name, (x, _) in splits.items()}
    ref_acc = {name: accuracy(ref[name], y) for name, (_, y) in splits.items()}

    doc = (
        "Residual CNN trained on scikit-learn's load_digits (8x8 handwritten digits, "
        "10 classes; a copy of the UCI 'Optical Recognition of Handwritten Digits' test set, "
        "Alpaydin & Kaynak 1998, CC BY 4.0). "
        f"Input: pixels/16 standardized with train mean {float(mean):.8g} and std {float(std):.8g}. "
        f"Splits from seed {SEED}: train {N_TRAIN} / calib {N_CALIB} / test {N_TEST}, "
        "trained on train only. "
        f"Accuracy: train {ref_acc['train']:.4f}, calib {ref_acc['calib']:.4f}, test {ref_acc['test']:.4f}. "
        "Block outputs: stem_out, block1_out, block2_out, block3_out. "
        "Made by eexc testdata/digits/make_digits_model.py."
    )
    metadata = [
        ("dataset", "sklearn.datasets.load_digits"),
        ("input_mean", f"{float(mean):.9g}"),
        ("input_std", f"{float(std):.9g}"),
        ("seed", str(SEED)),
        ("splits", f"train={N_TRAIN},calib={N_CALIB},test={N_TEST}"),
    ]
    model = export(params32, doc, metadata)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    model_path = os.path.join(OUT_DIR, MODEL_FILE)
    with open(model_path, "wb") as fh:
        fh.write(data)
    onnx.checker.check_model(model_path, full_check=True)

    for name, (x, y) in splits.items():
        np.save(os.path.join(OUT_DIR, f"{name}_x.npy"), x)
        np.save(os.path.join(OUT_DIR, f"{name}_y.npy"), y)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    ort_acc = {}
    for name, (x, y) in splits.items():
        (out,) = sess.run(["logits"], {"image": x})
        assert out.shape == (len(y), N_CLASSES) and out.dtype == np.float32
        if name == "test":
            np.testing.assert_allclose(out, ref[name], rtol=1e-4, atol=1e-4)
            print(f"ORT vs numpy on test: max abs diff {float(np.max(np.abs(out - ref[name]))):.3g}")
        ort_acc[name] = accuracy(out, y)
    print("accuracy (ONNX Runtime): " + ", ".join(f"{k} {v:.4f}" for k, v in ort_acc.items()))
    # The doc string quotes the numpy reference's accuracies; they must be ORT's.
    assert ort_acc == ref_acc, (ort_acc, ref_acc)
    print(f"wrote {model_path} ({len(data)} bytes) and the split .npy files")
    if ort_acc["test"] < MIN_TEST_ACC:
        print(f"FAIL: test accuracy {ort_acc['test']:.4f} < {MIN_TEST_ACC}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
