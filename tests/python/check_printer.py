"""Compare eexc's textual printout of a model with onnx's own printer.

Usage:
    python tests/python/check_printer.py EEXC_TEXT_FILE MODEL.onnx
    python tests/python/check_printer.py --write-models OUTDIR

The first form compares the file (the output of `eexc print MODEL.onnx`) byte for
byte with `onnx.printer.to_text(onnx.load(MODEL.onnx))` (external data is not
loaded: the printer shows only its location). Exit 0 when they match, 1 with a
unified diff (reference first) when they differ.

onnx's printer cannot print a model with non-UTF-8 string attributes or string
tensors (its output fails to decode); eexc replaces such bytes with U+FFFD, so for
those models the reference is the printout of a copy with the same replacement.

The second form writes synthetic models aimed at the printer's corners, which the
models of make_synthetic_models.py do not stress: every attribute kind, nested
subgraphs (If in Loop, graph lists), local functions with overloads and attribute
references, symbolic/unknown dims, non-tensor types, every data type in raw and
typed storage, external data, quoting and escaping, and floats whose shortest
form is hard (fixed against scientific notation, large integers, subnormals,
NaN/inf signs, random bit patterns).
"""

import argparse
import difflib
import os
import sys

import numpy as np
import onnx
import onnx.printer
from onnx import TensorProto, helper


# Bytes fields the printer shows as quoted text.
TEXT_BYTES_FIELDS = {"s", "strings", "string_data"}


def replace_invalid_utf8(message):
    """In place, in every nested message: invalid UTF-8 in text bytes -> U+FFFD."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                replace_invalid_utf8(item)
        elif field.type == field.TYPE_BYTES and field.name in TEXT_BYTES_FIELDS:
            fix = lambda b: b.decode("utf-8", "replace").encode("utf-8")  # noqa: E731
            if field.is_repeated:
                value[:] = [fix(b) for b in value]
            else:
                setattr(message, field.name, fix(value))


def reference_text(model):
    try:
        return onnx.printer.to_text(model)
    except UnicodeDecodeError:
        replace_invalid_utf8(model)
        return onnx.printer.to_text(model)


def compare(text_file, model_file):
    with open(text_file, encoding="utf-8", newline="") as f:
        ours = f.read()
    model = onnx.load(model_file, load_external_data=False)
    reference = reference_text(model)
    if ours == reference:
        return 0
    diff = difflib.unified_diff(
        reference.splitlines(keepends=True),
        ours.splitlines(keepends=True),
        fromfile=f"onnx.printer.to_text({model_file})",
        tofile=text_file,
    )
    sys.stdout.writelines(diff)
    print(f"\nprinter output differs from onnx.printer for {model_file}", file=sys.stderr)
    return 1


# Values whose shortest round-trip form exercises every branch of the float
# formatting: ties between fixed and scientific, exponents of 2 and 3 digits,
# integers past 2^24 / 2^53 (printed exactly), subnormals, signed zero/NaN/inf,
# and exact ties between two shortest candidates (f32: 1762400.25, f64:
# 2^49 + 0.25 and + 0.75), which to_chars rounds to even.
SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 1e-4, 1e-3, 1e-5, 1e4, 1e5, 123456.0,
    1.25e5, 1e6, 1e10, 1e13, 1.5e13, 1e14, 1e15, 1.23e12, 12345678.0,
    16777216.0, 16777217.0, 50331648.0, 4294967296.0, 99999999488.0, 2.5e-7,
    3.4028235e38, 1e-45, 1e-38, 1e-300, 5e-324, 1e300, 1.7976931348623157e308,
    9007199254740993.0, 123456789012345678.0, 1762400.25, -43286.0625,
    562949953421312.25, 562949953421312.75, float("inf"), float("-inf"),
    float("nan"), -float("nan"),
]


def random_floats(seed, count):
    """Random bit patterns: every exponent, NaN payloads included."""
    rng = np.random.default_rng(seed)
    f32 = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f64 = rng.integers(0, 2**63, count, dtype=np.uint64).view(np.float64)
    return f32, f64


def float_model():
    f32, f64 = random_floats(0, 20000)
    with np.errstate(over="ignore"):  # 1e300 and up become inf
        special32 = np.array(SPECIAL_FLOATS, dtype=np.float32)
    special64 = np.array(SPECIAL_FLOATS, dtype=np.float64)
    inits = [
        helper.make_tensor("s32", TensorProto.FLOAT, [len(special32)], special32),
        helper.make_tensor("s64", TensorProto.DOUBLE, [len(special64)], special64),
        helper.make_tensor("r32", TensorProto.FLOAT, [len(f32)], f32.tobytes(), raw=True),
        helper.make_tensor("r64", TensorProto.DOUBLE, [len(f64)], f64.tobytes(), raw=True),
    ]
    # The same values through typed fields and float attributes.
    t32 = TensorProto(name="t32", data_type=TensorProto.FLOAT, dims=[1000])
    t32.float_data.extend(f32[:1000].tolist())
    t64 = TensorProto(name="t64", data_type=TensorProto.DOUBLE, dims=[1000])
    t64.double_data.extend(f64[:1000].tolist())
    inits += [t32, t64]
    node = helper.make_node(
        "Floats", [], ["y"], domain="test", f=float(special32[6]), fs=special32.tolist()
    )
    graph = helper.make_graph(
        [node], "floats", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("test", 1)])


def dtype_model():
    """Every data type code (plus unknown ones), raw and typed."""
    inits = []
    rng = np.random.default_rng(1)
    for name, code in sorted(TensorProto.DataType.items(), key=lambda kv: kv[1]):
        for size in (3, 16):  # an odd size for packed types
            raw = TensorProto(name=f"raw_{name}_{size}", data_type=code, dims=[size])
            raw.raw_data = rng.integers(0, 256, size * 16, dtype=np.uint8).tobytes()
            # Trim raw data to the exact size of its element type when known.
            itemsize = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8,
                        12: 4, 13: 8, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 24: 1}.get(code)
            if itemsize:
                raw.raw_data = raw.raw_data[: size * itemsize]
            inits.append(raw)
        typed = TensorProto(name=f"typed_{name}", data_type=code, dims=[2])
        typed.int32_data.extend([-7, 300])
        typed.int64_data.extend([-(2**63), 2**63 - 1])
        typed.uint64_data.extend([0, 2**64 - 1])
        typed.float_data.extend([0.5, -2.0])
        typed.double_data.extend([0.25, 1e100])
        typed.string_data.extend([b"a\"b", b"c\\d"])
        inits.append(typed)
    inits += [
        TensorProto(name="unknown_code", data_type=99, dims=[1], int32_data=[1]),
        TensorProto(name="scalar", data_type=TensorProto.INT64, int64_data=[5]),
        TensorProto(name="raw_scalar", data_type=TensorProto.INT32, raw_data=b"\x01\0\0\0"),
        TensorProto(name="empty", data_type=TensorProto.FLOAT, dims=[0], raw_data=b""),
        TensorProto(name="empty_strings", data_type=TensorProto.STRING, dims=[0]),
        TensorProto(name="no data", data_type=TensorProto.FLOAT, dims=[2, 0, 3]),
        TensorProto(data_type=TensorProto.INT8, dims=[2], int32_data=[1, -1]),  # no name
    ]
    ext = TensorProto(name="ext", data_type=TensorProto.FLOAT, dims=[4, 4])
    ext.data_location = TensorProto.EXTERNAL
    for key, value in [("location", "data/w.bin"), ("offset", "64"), ("length", "64")]:
        ext.external_data.add(key=key, value=value)
    inits.append(ext)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["scalar"], ["y"])],
        "dtypes",
        [],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def subgraph_model():
    """Nested control flow, every attribute kind, functions, types, quoting."""
    float_info = helper.make_tensor_value_info
    neg = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["z"])], "neg", [], [float_info("z", TensorProto.FLOAT, ["N"])]
    )
    then = helper.make_graph(
        [helper.make_node("If", ["c"], ["t"], name="", then_branch=neg, else_branch=neg)],
        "then",
        [],
        [float_info("t", TensorProto.FLOAT, ["N"])],
        initializer=[helper.make_tensor("k", TensorProto.FLOAT, [2], [1.0, 2.0])],
        value_info=[float_info("tmp 1", TensorProto.INT64, [3, "M", None])],
    )
    body = helper.make_graph(
        [
            helper.make_node("If", ["cond_in"], ["v"], then_branch=then, else_branch=neg),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "loop body",
        [float_info("i", TensorProto.INT64, []), float_info("cond_in", TensorProto.BOOL, [])],
        [float_info("cond_out", TensorProto.BOOL, []), float_info("v", TensorProto.FLOAT, ["N"])],
    )
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("vals", TensorProto.FLOAT, [2], [1.0, 2.0]),
        helper.make_tensor("idx", TensorProto.INT64, [2], [0, 3]),
        [5],
    )
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["a", 2]))
    attrs = dict(
        f=0.5,
        i=-3,
        s=b'quote " and \\ backslash\nnewline',
        t=helper.make_tensor("cst", TensorProto.INT32, [2, 1], [4, 5]),
        g=neg,
        sp=sparse,
        tp=seq_type,
        fs=[1.0, 2.5],
        is_=[1, -2, 3],
        ss=[b"a", b"b c"],
        ts=[helper.make_tensor("", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("u", TensorProto.UINT8, [2], b"\x01\xff", raw=True)],
        gs=[neg, body],
        sps=[sparse],
        tps=[seq_type, helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, None))],
        empty_ints=helper.make_attribute("empty_ints", [], attr_type=onnx.AttributeProto.INTS),
    )
    custom = helper.make_node("Everything", ["x", "", "x"], ["e1", "e 2"], domain="my.domain", name="every thing")
    for key, value in attrs.items():
        custom.attribute.append(value if isinstance(value, onnx.AttributeProto) else helper.make_attribute(key, value))
    undefined = onnx.AttributeProto(name="undef")  # no type at all
    custom.attribute.append(undefined)

    fn_node = helper.make_node("Mul", ["a", "a"], ["b"])
    ref = helper.make_node("Scaled", ["b"], ["c"], domain="local")
    ref.attribute.append(onnx.AttributeProto(name="alpha", type=onnx.AttributeProto.FLOAT, ref_attr_name="alpha"))
    function = helper.make_function(
        "local", "Square", ["a"], ["c"], [fn_node, ref],
        [helper.make_opsetid("", 21), helper.make_opsetid("local", 1)], attributes=["alpha", "beta"],
    )
    function.attribute_proto.append(helper.make_attribute("gamma", 2.0))
    overloaded = helper.make_function(
        "local", "Scaled", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_opsetid("", 21)], overload="v2",
    )
    call = helper.make_node("Square", ["x"], ["sq"], domain="local")
    call.overload = "v2"

    nodes = [
        helper.make_node("Loop", ["trip", "cond"], ["loop_out"], name="loop/0", body=body),
        custom,
        call,
        helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.DOUBLE),
    ]
    opt_type = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [1]))
    inputs = [
        float_info("trip", TensorProto.INT64, []),
        float_info("cond", TensorProto.BOOL, []),
        float_info("x", TensorProto.FLOAT, ["N", "my dim", None, 4]),
        helper.make_value_info("opt", opt_type),
        helper.make_value_info("notype", onnx.TypeProto()),
        helper.make_value_info("sp", onnx.TypeProto(sparse_tensor_type=onnx.TypeProto.SparseTensor(elem_type=1))),
        helper.make_value_info("op", onnx.TypeProto(opaque_type=onnx.TypeProto.Opaque(domain="d", name="n"))),
        helper.make_value_info("op2", onnx.TypeProto(opaque_type=onnx.TypeProto.Opaque(name="n"))),
        helper.make_value_info("seq", seq_type),
    ]
    graph = helper.make_graph(
        nodes, "main", inputs, [float_info("loop_out", TensorProto.FLOAT, None)],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1), helper.make_opsetid("my.domain", 3)],
        functions=[function, overloaded],
        producer_name="check_printer",
        producer_version='1.0 "beta"',
        domain="org.test",
        model_version=7,
        doc_string="multi\nline",
    )
    helper.set_model_props(model, {"author": "me", "license": "MIT"})
    return model


def bare_model():
    """Almost nothing set: no graph, empty names, present-but-empty fields."""
    model = onnx.ModelProto(ir_version=0)
    empty = onnx.ModelProto(ir_version=10, producer_name="", graph=onnx.GraphProto())
    empty.graph.node.add(op_type="")
    return {"bare": model, "empty_fields": empty}


def write_models(outdir):
    os.makedirs(outdir, exist_ok=True)
    models = {"printer_floats": float_model(), "printer_dtypes": dtype_model(),
              "printer_subgraphs": subgraph_model()}
    models.update({f"printer_{k}": v for k, v in bare_model().items()})
    for name, model in models.items():
        path = os.path.join(outdir, f"{name}.onnx")
        onnx.save(model, path)
        print(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text_file", nargs="?")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--write-models", metavar="OUTDIR")
    args = parser.parse_args()
    if args.write_models:
        write_models(args.write_models)
        return 0
    if not (args.text_file and args.model):
        parser.error("need EEXC_TEXT_FILE and MODEL.onnx, or --write-models OUTDIR")
    return compare(args.text_file, args.model)


if __name__ == "__main__":
    sys.exit(main())
