"""Write image classifiers whose height and width are symbols (H, W), as
torch.onnx.export writes them with dynamic axes on the image sides: strided
convolutions and pooling, an upsampling, a stepped slice, and a patch grid
whose shape arithmetic divides the input's sides.

Usage:
    python tests/python/make_dynamic_image_models.py OUTDIR

Files (deterministic: seeded numpy; weights are initializers; opset 17, IR 8):

  dynamic_cnn.onnx      x float [batch,3,H,W] -> logits [batch,10]
      stem:  Conv 8x3x7x7, stride 2, pads 3; Relu
      pool:  MaxPool 3x3, stride 2, pads 1
      down:  Conv 16x8x3x3, stride 2, pads 1; Relu
      up:    Resize (nearest, scales [1,1,2,2])
      mix:   Conv 16x16x1x1
      every_other: Slice starts [1,1], ends [max,max], axes [2,3], steps [2,2]
      mix2:  Conv 16x16x1x1; GlobalAveragePool; Flatten; Gemm 10x16 -> logits

  patch_grid.onnx       x float [batch,3,H,W] -> logits [batch,10]
      patches: Conv 32x3x8x8, stride 8
      tokens:  Reshape to Concat(batch, 32, -1) (from Shape), Transpose to
               [batch, P, 32]; proj: MatMul 32x32
      grid:    Reshape to Concat(batch, Div(H, 8), Div(W, 8), 32), the sides
               read from Shape(x); ReduceMean over axes 1, 2; Gemm 10x32

Each model is checked with onnx.checker (full_check) and run in onnxruntime at
batch 1 on 67x45 and 64x48 images (odd sides, so every floor matters), every
intermediate tensor an output; referee.json holds, per model and size, the
MACs counted from the shapes ONNX Runtime produced (Conv: output elements x
input channels x kernel area; MatMul and Gemm: output elements x K).
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def weight(rng, name, *shape):
    fan_in = int(np.prod(shape[1:]))
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def model(nodes, inits, name):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eexc-tests")
    m.ir_version = 8
    return m


def dynamic_cnn():
    rng = np.random.default_rng(11)
    n = helper.make_node
    big = np.iinfo(np.int64).max
    inits = [
        weight(rng, "w_stem", 8, 3, 7, 7),
        weight(rng, "w_down", 16, 8, 3, 3),
        weight(rng, "w_mix", 16, 16, 1, 1),
        weight(rng, "w_mix2", 16, 16, 1, 1),
        weight(rng, "w_fc", 10, 16),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ints("starts", [1, 1]),
        ints("ends", [big, big]),
        ints("axes", [2, 3]),
        ints("steps", [2, 2]),
    ]
    nodes = [
        n("Conv", ["x", "w_stem"], ["stem"], name="stem", strides=[2, 2], pads=[3, 3, 3, 3]),
        n("Relu", ["stem"], ["stem_relu"], name="stem_relu"),
        n("MaxPool", ["stem_relu"], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Conv", ["pool", "w_down"], ["down"], name="down", strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Relu", ["down"], ["down_relu"], name="down_relu"),
        n("Resize", ["down_relu", "", "scales"], ["up"], name="up", mode="nearest"),
        n("Conv", ["up", "w_mix"], ["mix"], name="mix"),
        n("Slice", ["mix", "starts", "ends", "axes", "steps"], ["every_other"], name="every_other"),
        n("Conv", ["every_other", "w_mix2"], ["mix2"], name="mix2"),
        n("GlobalAveragePool", ["mix2"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["flat"], name="flat"),
        n("Gemm", ["flat", "w_fc"], ["logits"], name="fc", transB=1),
    ]
    return model(nodes, inits, "dynamic_cnn")


def patch_grid():
    rng = np.random.default_rng(12)
    n = helper.make_node
    inits = [
        weight(rng, "w_patch", 32, 3, 8, 8),
        weight(rng, "w_proj", 32, 32),
        weight(rng, "w_fc", 10, 32),
        ints("zero", 0),
        ints("one", 1),
        ints("two", 2),
        ints("three", 3),
        ints("eight", 8),
        ints("axes0", [0]),
        ints("rest", [-1]),
        ints("width", [32]),
        ints("grid_axes", [1, 2]),
    ]

    def side(index, out):
        # Gather(Shape(x), index) / 8, unsqueezed for the Concat.
        return [
            n("Gather", ["x_shape", index], [f"{out}_side"], name=f"{out}_side", axis=0),
            n("Div", [f"{out}_side", "eight"], [f"{out}_q"], name=f"{out}_q"),
            n("Unsqueeze", [f"{out}_q", "axes0"], [out], name=out),
        ]

    nodes = [
        n("Conv", ["x", "w_patch"], ["patches"], name="patches", strides=[8, 8]),
        n("Shape", ["patches"], ["p_shape"], name="p_shape"),
        n("Gather", ["p_shape", "zero"], ["p_batch"], name="p_batch", axis=0),
        n("Gather", ["p_shape", "one"], ["p_chan"], name="p_chan", axis=0),
        n("Unsqueeze", ["p_batch", "axes0"], ["p_batch1"], name="p_batch1"),
        n("Unsqueeze", ["p_chan", "axes0"], ["p_chan1"], name="p_chan1"),
        n("Concat", ["p_batch1", "p_chan1", "rest"], ["flat_shape"], name="flat_shape", axis=0),
        n("Reshape", ["patches", "flat_shape"], ["flat"], name="flat"),
        n("Transpose", ["flat"], ["tokens"], name="tokens", perm=[0, 2, 1]),
        n("MatMul", ["tokens", "w_proj"], ["proj"], name="proj"),
        n("Shape", ["x"], ["x_shape"], name="x_shape"),
        *side("two", "rows"),
        *side("three", "cols"),
        n("Concat", ["p_batch1", "rows", "cols", "width"], ["grid_shape"], name="grid_shape", axis=0),
        n("Reshape", ["proj", "grid_shape"], ["grid"], name="grid"),
        n("ReduceMean", ["grid", "grid_axes"], ["pooled"], name="pooled", keepdims=0),
        n("Gemm", ["pooled", "w_fc"], ["logits"], name="fc", transB=1),
    ]
    # ReduceMean takes its axes as an input from opset 18; at 17 they are an attribute.
    reduce = next(node for node in nodes if node.op_type == "ReduceMean")
    del reduce.input[1]
    reduce.attribute.append(helper.make_attribute("axes", [1, 2]))
    inits = [i for i in inits if i.name != "grid_axes"]
    return model(nodes, inits, "patch_grid")


SIZES = [(67, 45), (64, 48)]


def referee_macs(m, path, height, width):
    """MACs of one image, from the shapes ONNX Runtime gives every tensor."""
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    inits = {i.name: numpy_helper.to_array(i) for i in probe.graph.initializer}
    seen = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for o in node.output:
            if o not in seen:
                probe.graph.output.append(helper.make_empty_tensor_value_info(o))
                seen.add(o)
    probe_path = path.with_suffix(".probe.onnx")
    onnx.save(probe, probe_path)
    session = ort.InferenceSession(str(probe_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    shapes = dict(zip([o.name for o in session.get_outputs()], [v.shape for v in session.run(None, {"x": x})]))
    probe_path.unlink()
    shapes["x"] = x.shape
    macs = 0
    for node in m.graph.node:
        out = int(np.prod(shapes[node.output[0]]))
        if node.op_type == "Conv":
            w = inits[node.input[1]].shape
            macs += out * int(np.prod(w[1:]))
        elif node.op_type == "MatMul":
            macs += out * shapes[node.input[0]][-1]
        elif node.op_type == "Gemm":
            macs += out * shapes[node.input[0]][1]
    return macs


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    referee = {}
    for name, m in [("dynamic_cnn", dynamic_cnn()), ("patch_grid", patch_grid())]:
        onnx.checker.check_model(m, full_check=True)
        path = out / f"{name}.onnx"
        onnx.save(m, path)
        referee[name] = {f"H={h},W={w}": referee_macs(m, path, h, w) for h, w in SIZES}
    (out / "referee.json").write_text(json.dumps(referee, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
