"""Classifiers past, or near, protobuf's 2 GiB limit, for bench/large-model/run.sh:
an MLP on 4096 features with hidden layers of the given widths (Gemm + Relu) and
CLASSES outputs.

  make_mlp.py OUT.onnx external [WIDTHS] [CLASSES]   weights in OUT.onnx.data (any size)
  make_mlp.py OUT.onnx inline   [WIDTHS] [CLASSES]   weights in the file (must stay under 2 GiB)

WIDTHS is comma-separated (default 16384,16384,16384,16384; CLASSES 10). In external
mode each weight is generated and appended to the data file one at a time, so making
the model takes about one layer's memory, not the model's.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    path, mode = sys.argv[1], sys.argv[2]
    widths = [int(w) for w in (sys.argv[3] if len(sys.argv) > 3 else "16384,16384,16384,16384").split(",")]
    classes = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    data_name = os.path.basename(path) + ".data"
    rng = np.random.default_rng(0)
    initializers, nodes = [], []
    offset = 0
    data = open(os.path.join(os.path.dirname(path) or ".", data_name), "wb") if mode == "external" else None

    def weight(name, shape, scale):
        nonlocal offset
        values = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
        if data is None:
            initializers.append(numpy_helper.from_array(values, name))
            return
        raw = values.tobytes()
        data.write(raw)
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        offset += len(raw)
        initializers.append(t)

    dims = [4096] + widths + [classes]
    previous = "x"
    layers = len(dims) - 1
    for i in range(layers):
        weight(f"fc{i}.weight", (dims[i], dims[i + 1]), 1.0 / np.sqrt(dims[i]))
        weight(f"fc{i}.bias", (dims[i + 1],), 0.01)
        out = "logits" if i == layers - 1 else f"fc{i}_out"
        nodes.append(helper.make_node("Gemm", [previous, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}"))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"relu{i}"))
            previous = f"relu{i}"
    if data is not None:
        data.close()
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4096])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, path)
    onnx.checker.check_model(path, full_check=True)
    print(f"{path}: {os.path.getsize(path)} bytes" + (f"; {data_name}: {offset} bytes" if mode == "external" else ""))


if __name__ == "__main__":
    main()
