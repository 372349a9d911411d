"""Small models for the fusion rules in passes/: for each rule, graphs it must
rewrite and near misses it must leave alone (wrong axis, non-constant
operand, another opset's form, a different attribute).

Usage: python make_fusion_cases.py OUT_DIR

Writes OUT_DIR/<case>.onnx and OUT_DIR/manifest.json, a list of
{"file", "rule", "fires"}: `fires` says whether `eexc optimize` must apply
that rule to the model (tests/fusion.rs checks it; check_fusion.py checks
that the optimized model computes the same outputs).
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h

rng = np.random.default_rng(7)
cases = []


def const(name, array):
    array = np.asarray(array)
    dtype = {np.dtype("float32"): T.FLOAT, np.dtype("int64"): T.INT64, np.dtype("bool"): T.BOOL}[array.dtype]
    return h.make_tensor(name, dtype, array.shape, array.flatten().tolist())


def f32(*shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def model(name, rule, fires, nodes, inputs, outputs, inits=(), opset=17):
    ir = {9: 4, 11: 6, 13: 7, 17: 8, 18: 8, 20: 9}.get(opset, 8)
    g = h.make_graph(nodes, name, inputs, outputs, list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], producer_name="make_fusion_cases")
    m.ir_version = ir
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, os.path.join(out_dir, name + ".onnx"))
    cases.append({"file": name + ".onnx", "rule": rule, "fires": fires})


def vi(name, dtype, shape):
    return h.make_tensor_value_info(name, dtype, shape)


def axes_input(opset, op, axes, name):
    """Reduce/Squeeze axes as an input where the opset wants one."""
    since = 13 if op in ("ReduceSum", "Squeeze", "Unsqueeze") else 18
    if opset >= since:
        return [name], {}, [const(name, np.array(axes, dtype=np.int64))]
    return [], {"axes": axes}, []


def temperature_cases():
    w, b = f32(4, 8), f32(4)
    x = vi("x", T.FLOAT, ["N", 8])
    y = vi("y", T.FLOAT, ["N", 4])
    gemm = h.make_node("Gemm", ["x", "w", "b"], ["z"], transB=1)
    model("temperature_div", "temperature-div-into-gemm", True,
          [gemm, h.make_node("Div", ["z", "t"], ["y"])], [x], [y],
          [const("w", w), const("b", b), const("t", np.float32(2.5))])
    # The temperature is an input the caller feeds: nothing to fold.
    model("temperature_div_live", "temperature-div-into-gemm", False,
          [gemm, h.make_node("Div", ["z", "t"], ["y"])], [x, vi("t", T.FLOAT, [])], [y],
          [const("w", w), const("b", b)])
    # One temperature per class is not a scalar.
    model("temperature_div_vector", "temperature-div-into-gemm", False,
          [gemm, h.make_node("Div", ["z", "t"], ["y"])], [x], [y],
          [const("w", w), const("b", b), const("t", f32(4, low=0.5, high=2.0))])
    model("temperature_mul", "temperature-mul-into-gemm", True,
          [gemm, h.make_node("Mul", ["z", "s"], ["y"])], [x], [y],
          [const("w", w), const("b", b), const("s", np.float32(0.4))])
    # Weights fed at run time: not constant.
    model("temperature_mul_live_weights", "temperature-mul-into-gemm", False,
          [gemm, h.make_node("Mul", ["z", "s"], ["y"])], [x, vi("w", T.FLOAT, [4, 8])], [y],
          [const("b", b), const("s", np.float32(0.4))])
    model("temperature_matmul_add", "temperature-div-into-matmul-add", True,
          [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["z"]),
           h.make_node("Div", ["z", "t"], ["y"])], [x], [y],
          [const("w", f32(8, 4)), const("b", b), const("t", np.float32(3.0))])


def softmax_cases():
    for opset in (13, 18):
        ins, attrs, inits = axes_input(opset, "ReduceMax", [1], "axes")
        nodes = [h.make_node("Softmax", ["z"], ["p"], axis=1),
                 h.make_node("ReduceMax", ["p"] + ins, ["c"], keepdims=0, **attrs),
                 h.make_node("GreaterOrEqual", ["c", "t"], ["ok"])]
        outs = [vi("c", T.FLOAT, ["N"]), vi("ok", T.BOOL, ["N"])]
        model(f"maxprob_op{opset}", "maxprob-without-softmax", True, nodes,
              [vi("z", T.FLOAT, ["N", 10]), vi("t", T.FLOAT, [])], outs, inits, opset)
    # Softmax over the batch axis is another function.
    ins, attrs, inits = axes_input(17, "ReduceMax", [1], "axes")
    model("maxprob_wrong_axis", "maxprob-without-softmax", False,
          [h.make_node("Softmax", ["z"], ["p"], axis=0), h.make_node("ReduceMax", ["p"], ["c"], keepdims=0, axes=[1])],
          [vi("z", T.FLOAT, ["N", 10])], [vi("c", T.FLOAT, ["N"])], opset=17)
    model("maxprob_keepdims", "maxprob-without-softmax", False,
          [h.make_node("Softmax", ["z"], ["p"], axis=1), h.make_node("ReduceMax", ["p"], ["c"], axes=[1])],
          [vi("z", T.FLOAT, ["N", 10])], [vi("c", T.FLOAT, ["N", 1])], opset=17)

    for opset in (11, 13):
        ins, attrs, inits = axes_input(opset, "ReduceSum", [1], "axes")
        nodes = [h.make_node("Softmax", ["z"], ["p"], axis=1),
                 h.make_node("LogSoftmax", ["z"], ["lp"], axis=1),
                 h.make_node("Mul", ["p", "lp"], ["plp"]),
                 h.make_node("ReduceSum", ["plp"] + ins, ["neg_h"], keepdims=0, **attrs)]
        model(f"entropy_op{opset}", "entropy-closed-form", True, nodes,
              [vi("z", T.FLOAT, ["N", 10])], [vi("neg_h", T.FLOAT, ["N"])], inits, opset)
    # log p of other logits: not an entropy.
    model("entropy_two_tensors", "entropy-closed-form", False,
          [h.make_node("Softmax", ["z"], ["p"], axis=1), h.make_node("LogSoftmax", ["u"], ["lp"], axis=1),
           h.make_node("Mul", ["p", "lp"], ["plp"]), h.make_node("ReduceSum", ["plp", "axes"], ["s"], keepdims=0)],
          [vi("z", T.FLOAT, ["N", 10]), vi("u", T.FLOAT, ["N", 10])], [vi("s", T.FLOAT, ["N"])],
          [const("axes", np.array([1], dtype=np.int64))], 13)

    for opset, k in ((9, 2), (17, 2), (17, 3)):
        if opset < 10:
            topk = h.make_node("TopK", ["p"], ["top", "idx"], axis=1, k=k)
            inits = []
        else:
            topk = h.make_node("TopK", ["p", "k"], ["top", "idx"], axis=1)
            inits = [const("k", np.array([k], dtype=np.int64))]
        nodes = [h.make_node("Softmax", ["z"], ["p"], axis=1), topk]
        name = f"margin_op{opset}" + ("" if k == 2 else f"_k{k}")
        model(name, "margin-topk-on-logits", k == 2, nodes,
              [vi("z", T.FLOAT, ["N", 10])], [vi("top", T.FLOAT, ["N", k])], inits, opset)


def batch_cases():
    def all_rows(name, rule, fires, batch, opset, flags_out=True):
        nodes = [h.make_node("ReduceMax", ["z"], ["c"], keepdims=0, axes=[1]) if opset < 18 else
                 h.make_node("ReduceMax", ["z", "ax1"], ["c"], keepdims=0),
                 h.make_node("GreaterOrEqual", ["c", "t"], ["ok"]),
                 h.make_node("Cast", ["ok"], ["okf"], to=T.FLOAT),
                 h.make_node("ReduceMin", ["okf"], ["allf"], keepdims=0, axes=[0]) if opset < 18 else
                 h.make_node("ReduceMin", ["okf", "ax0"], ["allf"], keepdims=0),
                 h.make_node("Cast", ["allf"], ["all"], to=T.BOOL)]
        inits = [] if opset < 18 else [const("ax1", np.array([1], dtype=np.int64)),
                                       const("ax0", np.array([0], dtype=np.int64))]
        outputs = [vi("all", T.BOOL, [])] + ([vi("ok", T.BOOL, [batch])] if flags_out else [])
        model(name, rule, fires, nodes, [vi("z", T.FLOAT, [batch, 10]), vi("t", T.FLOAT, [])],
              outputs, inits, opset)
    all_rows("all_rows_batch1", "all-rows-single-row", True, 1, 17)
    all_rows("all_rows_batchN", "all-rows-single-row", False, "N", 17)
    all_rows("all_rows_op20", "all-rows-bool-reducemin", True, "N", 20)
    all_rows("all_rows_op18", "all-rows-bool-reducemin", False, "N", 18)
    # As in if mode: nothing else reads the per-row flags (compact mode does,
    # and there the rule matches but the region is kept: one more FLOP).
    all_rows("least_confident_batchN", "all-rows-least-confident", True, "N", 17, flags_out=False)
    all_rows("least_confident_op18", "all-rows-least-confident", True, "N", 18, flags_out=False)

    def least_confident_not_less(name, fires, t_shape):
        # Opset 11: c >= t written as Not(c < t); the threshold must be a scalar.
        nodes = [h.make_node("ReduceMax", ["z"], ["c"], keepdims=0, axes=[1]),
                 h.make_node("Less", ["c", "t"], ["lt"]),
                 h.make_node("Not", ["lt"], ["ok"]),
                 h.make_node("Cast", ["ok"], ["okf"], to=T.FLOAT),
                 h.make_node("ReduceMin", ["okf"], ["allf"], keepdims=0, axes=[0]),
                 h.make_node("Cast", ["allf"], ["all"], to=T.BOOL)]
        model(name, "all-rows-least-confident-not-less", fires, nodes,
              [vi("z", T.FLOAT, ["N", 10]), vi("t", T.FLOAT, t_shape)],
              [vi("all", T.BOOL, [])], (), 11)
    least_confident_not_less("least_confident_not_less", True, [])
    # A per-row threshold vector: min over rows no longer answers "every row".
    least_confident_not_less("least_confident_per_row_t", False, ["N"])


def linear_cases():
    x = vi("x", T.FLOAT, ["N", 8])
    y = vi("y", T.FLOAT, ["N", 4])
    w, b = f32(8, 4), f32(4)
    model("matmul_add", "matmul-add-to-gemm", True,
          [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["y"])], [x], [y],
          [const("w", w), const("b", b)])
    model("add_matmul", "add-matmul-to-gemm", True,
          [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["b", "m"], ["y"])], [x], [y],
          [const("w", w), const("b", b)])
    # A 3-D activation is not a Gemm operand.
    model("matmul_add_3d", "matmul-add-to-gemm", False,
          [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["y"])],
          [vi("x", T.FLOAT, ["N", 5, 8])], [vi("y", T.FLOAT, ["N", 5, 4])], [const("w", w), const("b", b)])

    def bn_params(c):
        return [const("s", f32(c, low=0.5, high=1.5)), const("o", f32(c)), const("mean", f32(c)),
                const("var", f32(c, low=0.2, high=2.0))]
    xin = vi("x", T.FLOAT, ["N", 3, 8, 8])
    yout = vi("y", T.FLOAT, ["N", 4, 8, 8])
    bn = h.make_node("BatchNormalization", ["c", "s", "o", "mean", "var"], ["y"], epsilon=1e-3)
    model("bn_conv", "batchnorm-into-conv", True,
          [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), bn], [xin], [yout],
          [const("w", f32(4, 3, 3, 3)), const("b", f32(4))] + bn_params(4))
    model("bn_conv_nobias", "batchnorm-into-conv-without-bias", True,
          [h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), bn], [xin], [yout],
          [const("w", f32(4, 3, 3, 3))] + bn_params(4))
    # Statistics fed at run time: nothing to fold.
    params = bn_params(4)
    model("bn_conv_live_mean", "batchnorm-into-conv", False,
          [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), bn], [xin, vi("mean", T.FLOAT, [4])], [yout],
          [const("w", f32(4, 3, 3, 3)), const("b", f32(4))] + [p for p in params if p.name != "mean"])
    bn2 = h.make_node("BatchNormalization", ["g", "s", "o", "mean", "var"], ["y"])
    model("bn_gemm", "batchnorm-into-gemm", True,
          [h.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), bn2], [x], [y],
          [const("w", f32(4, 8)), const("b", f32(4))] + bn_params(4))
    model("bn_gemm_untransposed", "batchnorm-into-gemm", False,
          [h.make_node("Gemm", ["x", "w", "b"], ["g"]), bn2], [x], [y],
          [const("w", f32(8, 4)), const("b", f32(4))] + bn_params(4))


def layout_cases():
    relu = lambda src: h.make_node("Relu", [src], ["y"])  # noqa: E731
    model("identity", "identity", True, [h.make_node("Identity", ["x"], ["i"]), relu("i")],
          [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])])
    model("dropout_op11", "dropout-inference", True,
          [h.make_node("Dropout", ["x"], ["d"], ratio=0.3), relu("d")],
          [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])], opset=11)
    model("dropout_op13", "dropout-ratio-input", True,
          [h.make_node("Dropout", ["x", "r"], ["d"]), relu("d")],
          [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])], [const("r", np.float32(0.3))], 13)
    model("dropout_training_off", "dropout-training-off", True,
          [h.make_node("Dropout", ["x", "r", "tm"], ["d"]), relu("d")],
          [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])],
          [const("r", np.float32(0.0)), const("tm", np.array(False))], 13)
    # Training mode on is not an identity (ratio 0 keeps it deterministic).
    model("dropout_training_on", "dropout-training-off", False,
          [h.make_node("Dropout", ["x", "r", "tm"], ["d"]), relu("d")],
          [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])],
          [const("r", np.float32(0.0)), const("tm", np.array(True))], 13)

    x24 = vi("x", T.FLOAT, [2, 12])
    shape = lambda n, v: const(n, np.array(v, dtype=np.int64))  # noqa: E731
    model("reshape_reshape", "reshape-of-reshape", True,
          [h.make_node("Reshape", ["x", "s1"], ["r1"]), h.make_node("Reshape", ["r1", "s2"], ["r2"]), relu("r2")],
          [x24], [vi("y", T.FLOAT, [3, 8])], [shape("s1", [4, 6]), shape("s2", [3, 8])])
    # A 0 copies a dimension of the (changed) input.
    model("reshape_reshape_zero", "reshape-of-reshape", False,
          [h.make_node("Reshape", ["x", "s1"], ["r1"]), h.make_node("Reshape", ["r1", "s2"], ["r2"]), relu("r2")],
          [x24], [vi("y", T.FLOAT, [4, 6])], [shape("s1", [4, 6]), shape("s2", [0, 6])])
    model("reshape_flatten", "reshape-of-flatten", True,
          [h.make_node("Flatten", ["x"], ["f"], axis=1), h.make_node("Reshape", ["f", "s"], ["r"]), relu("r")],
          [vi("x", T.FLOAT, [2, 3, 4])], [vi("y", T.FLOAT, [4, 6])], [shape("s", [4, 6])])
    model("flatten_flatten", "flatten-of-flatten", True,
          [h.make_node("Flatten", ["x"], ["f1"], axis=1), h.make_node("Flatten", ["f1"], ["f2"], axis=1), relu("f2")],
          [vi("x", T.FLOAT, ["N", 3, 4])], [vi("y", T.FLOAT, ["N", 12])])
    model("reshape_own_shape", "reshape-to-own-shape", True,
          [h.make_node("Reshape", ["x", "s"], ["r"]), relu("r")],
          [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])], [shape("s", [2, 3])])
    model("reshape_other_shape", "reshape-to-own-shape", False,
          [h.make_node("Reshape", ["x", "s"], ["r"]), relu("r")],
          [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [3, 2])], [shape("s", [3, 2])])
    model("flatten_matrix", "flatten-of-matrix", True,
          [h.make_node("Flatten", ["x"], ["f"], axis=1), relu("f")],
          [vi("x", T.FLOAT, ["N", 5])], [vi("y", T.FLOAT, ["N", 5])])
    model("pool_flatten", "pool-and-flatten-as-mean", True,
          [h.make_node("GlobalAveragePool", ["x"], ["p"]), h.make_node("Flatten", ["p"], ["f"], axis=1), relu("f")],
          [vi("x", T.FLOAT, ["N", 3, 4, 4])], [vi("y", T.FLOAT, ["N", 3])])
    model("pool_flatten_axis2", "pool-and-flatten-as-mean", False,
          [h.make_node("GlobalAveragePool", ["x"], ["p"]), h.make_node("Flatten", ["p"], ["f"], axis=2), relu("f")],
          [vi("x", T.FLOAT, [2, 3, 4, 4])], [vi("y", T.FLOAT, [6, 1])])
    for opset in (11, 13):
        ui, ua, uinit = axes_input(opset, "Unsqueeze", [1], "ax")
        si, sa, _ = axes_input(opset, "Squeeze", [1], "ax")
        model(f"unsqueeze_squeeze_op{opset}", "unsqueeze-then-squeeze", True,
              [h.make_node("Unsqueeze", ["x"] + ui, ["u"], **ua), h.make_node("Squeeze", ["u"] + si, ["s"], **sa),
               relu("s")], [vi("x", T.FLOAT, ["N", 3])], [vi("y", T.FLOAT, ["N", 3])], uinit, opset)
    model("unsqueeze_squeeze_other_axis", "unsqueeze-then-squeeze", False,
          [h.make_node("Unsqueeze", ["x", "a1"], ["u"]), h.make_node("Squeeze", ["u", "a2"], ["s"]), relu("s")],
          [vi("x", T.FLOAT, [1, 3])], [vi("y", T.FLOAT, [1, 3])],
          [shape("a1", [1]), shape("a2", [0])], 13)
    model("squeeze_unsqueeze", "squeeze-then-unsqueeze", True,
          [h.make_node("Squeeze", ["x", "a"], ["s"]), h.make_node("Unsqueeze", ["s", "a"], ["u"]), relu("u")],
          [vi("x", T.FLOAT, ["N", 1, 3])], [vi("y", T.FLOAT, ["N", 1, 3])], [shape("a", [1])], 13)
    model("transpose_pair", "transpose-pair", True,
          [h.make_node("Transpose", ["x"], ["t1"], perm=[1, 2, 0]), h.make_node("Transpose", ["t1"], ["t2"], perm=[2, 0, 1]),
           relu("t2")], [vi("x", T.FLOAT, [2, 3, 4])], [vi("y", T.FLOAT, [2, 3, 4])])
    model("transpose_pair_not_inverse", "transpose-pair", False,
          [h.make_node("Transpose", ["x"], ["t1"], perm=[1, 2, 0]), h.make_node("Transpose", ["t1"], ["t2"], perm=[1, 2, 0]),
           relu("t2")], [vi("x", T.FLOAT, [2, 3, 4])], [vi("y", T.FLOAT, [4, 2, 3])])


if __name__ == "__main__":
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    temperature_cases()
    softmax_cases()
    batch_cases()
    linear_cases()
    layout_cases()
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(f"{len(cases)} cases")
