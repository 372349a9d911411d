"""Build a ~100 MB ResNet-50 with real-size float32 weights, for benchmarks.

Usage:
    python bench/make_resnet50_weights.py OUT.onnx [--source LIGHT.onnx] [--seed N]

The source is the "light" ResNet-50 of the ONNX model zoo test set
(/work/shared/models/onnx-light/light_resnet50.onnx, IR 3, opset 9, 80 KB): its
239 weight tensors are not stored but built at run time, each by a
ConstantOfShape node from an int64 shape initializer `<W>__SHAPE`. This script
replaces every such node with a float32 initializer `<W>` of that shape (raw_data,
random values from a seeded generator), and drops the node, the `<W>__SHAPE`
initializer and its graph input. The new initializer takes the place of the shape
initializer in the initializer list, and (IR 3 wants every initializer to be a
graph input) a graph input `<W>` of type float[shape] takes the place of the
shape input. Everything else (nodes, names, IR/opset, the 30 initializers that
were already stored) is kept as it is.

Values, by what reads each weight: conv/FC weights ~ N(0, 2/fan_in) (He), BN
scale ~ U(0.5, 1.5), BN bias and running mean ~ N(0, 0.1), BN running variance
~ U(0.5, 1.5) (> 0), a per-channel Mul's vector ~ U(0.5, 1.5) and an Add's
~ N(0, 0.1) (DenseNet's affine step after BN), FC bias ~ N(0, 0.01). Same seed
-> byte-identical file (no timestamps, no uuids). Other light zoo models work
too (--source light_densenet121.onnx, ...).

The result (25.6 M float32 parameters, about 102 MB) is checked with
onnx.checker.check_model (full check) and run once in onnxruntime on a seeded
random input; the script fails unless the output is finite and, where the model
ends in Softmax, each row sums to 1.
"""

import argparse
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_SOURCE = "/work/shared/models/onnx-light/light_resnet50.onnx"


def weight_values(role, shape, rng):
    """Plausible float32 values for a weight, by what reads it (see roles())."""
    shape = tuple(int(d) for d in shape)
    if role in ("bn_var", "bn_scale", "scale"):  # positive: variance must be, scales near 1
        v = rng.uniform(0.5, 1.5, shape)
    elif role in ("bn_bias", "bn_mean", "shift"):
        v = rng.normal(0.0, 0.1, shape)
    elif len(shape) >= 2:  # conv [out, in, kh, kw] or FC [out, in]
        fan_in = int(np.prod(shape[1:]))
        v = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    else:  # FC bias
        v = rng.normal(0.0, 0.01, shape)
    return v.astype(np.float32)


def roles(graph):
    """Tensor name -> role, from the node that reads it: BatchNormalization's
    scale/bias/mean/var, or the vector of a per-channel Mul (scale) or Add
    (shift), as DenseNet's exports write an affine step after BN."""
    bn = {1: "bn_scale", 2: "bn_bias", 3: "bn_mean", 4: "bn_var"}
    out = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if node.op_type == "BatchNormalization" and i in bn:
                out.setdefault(name, bn[i])
            elif node.op_type == "Mul" and i == 1:
                out.setdefault(name, "scale")
            elif node.op_type == "Add" and i == 1:
                out.setdefault(name, "shift")
    return out


def materialize(model, seed):
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    rng = np.random.default_rng(seed)
    role_of = roles(g)
    replaced = {}  # shape initializer name -> (weight name, float initializer)
    keep_nodes = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape_name, weight_name = node.input[0], node.output[0]
            shape = numpy_helper.to_array(inits[shape_name])
            arr = weight_values(role_of.get(weight_name, "weight"), shape, rng)
            replaced[shape_name] = (weight_name, numpy_helper.from_array(arr, weight_name))
        else:
            keep_nodes.append(node)
    if not replaced:
        sys.exit("no ConstantOfShape weight found: is this a 'light' model?")

    new_inits = [replaced[t.name][1] if t.name in replaced else t for t in g.initializer]
    new_inputs = []
    for vi in g.input:
        if vi.name in replaced:
            weight_name, t = replaced[vi.name]
            new_inputs.append(helper.make_tensor_value_info(weight_name, TensorProto.FLOAT, list(t.dims)))
        else:
            new_inputs.append(vi)
    del g.node[:]
    g.node.extend(keep_nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.input[:]
    g.input.extend(new_inputs)
    return len(replaced)


def run_once(path, seed):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warning about the unused initializer the source already has
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(seed + 1)
    # Only real inputs (IR 3 lists initializers as inputs too; ORT exposes only the
    # ones without an initializer).
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    (out,) = sess.run(None, feeds)
    if not np.all(np.isfinite(out)):
        sys.exit("onnxruntime output is not finite")
    ends_in_softmax = onnx.load(path, load_external_data=False).graph.node[-1].op_type == "Softmax"
    sums = out.reshape(out.shape[0], -1).sum(axis=1)
    if ends_in_softmax and not np.allclose(sums, 1.0, atol=1e-3):
        sys.exit(f"softmax rows do not sum to 1: {sums}")
    return list(feeds), out.shape, int(out.argmax())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output .onnx file")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="light ResNet-50 (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = ap.parse_args()

    model = onnx.load(args.source)
    n = materialize(model, args.seed)
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save(model, args.out)
    # The checker again on the file, as other tools will read it.
    onnx.checker.check_model(args.out, full_check=True)
    inputs, shape, top = run_once(args.out, args.seed)
    size = os.path.getsize(args.out)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()[:16]
    print(f"{args.out}: {size} bytes ({size / 1e6:.1f} MB), {n} weights materialized, "
          f"{params} float32 parameters, {len(model.graph.node)} nodes; "
          f"onnxruntime ran: inputs {inputs} -> output {list(shape)} (argmax {top}); sha256 {digest}")


if __name__ == "__main__":
    main()
