"""Compare eexc's textual printout of a model with onnx's own printer.

Usage:
    python tests/python/check_printer.py EEXC_TEXT_FILE MODEL.onnx
    python tests/python/check_printer.py --write-models OUTDIR

The first form compares the file (the output of `eexc print MODEL.onnx`) byte for
byte with `onnx.printer.to_text(onnx.load(MODEL.onnx))` (external data is not
loaded: the printer shows only its location), allowing one trailing newline more.
Exit 0 when they match, 1 with a unified diff (reference first) and the first
differing position when they differ.

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


def _valid_utf8(data):
    return data.decode("utf-8", "replace").encode("utf-8")


def replace_invalid_utf8(message):
    """In place, in every nested message: invalid UTF-8 in text bytes -> U+FFFD."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                replace_invalid_utf8(item)
        elif field.type == field.TYPE_BYTES and field.name in TEXT_BYTES_FIELDS:
            if field.is_repeated:
                value[:] = [_valid_utf8(b) for b in value]
            else:
                setattr(message, field.name, _valid_utf8(value))


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
    # to_text ends without a newline; a command printing it may add one.
    if ours in (reference, reference + "\n"):
        return 0
    diff = difflib.unified_diff(
        reference.splitlines(keepends=True),
        ours.splitlines(keepends=True),
        fromfile=f"onnx.printer.to_text({model_file})",
        tofile=text_file,
    )
    sys.stdout.writelines(diff)
    # Initializer lines can be megabytes long: point at the first difference.
    pairs = enumerate(zip(reference, ours))
    at = next((i for i, (a, b) in pairs if a != b), min(len(reference), len(ours)))
    line = reference.count("\n", 0, at) + 1
    column = at - (reference.rfind("\n", 0, at) + 1) + 1
    context = slice(max(0, at - 40), at + 40)
    print(
        f"\nprinter output differs from onnx.printer for {model_file}, "
        f"first at line {line} column {column}:\n"
        f"  onnx: {reference[context]!r}\n  eexc: {ours[context]!r}",
        file=sys.stderr,
    )
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


# Element sizes of the data types whose raw_data the printer decodes (it prints
# `...` for the others).
RAW_ITEMSIZE = {
    TensorProto.FLOAT: 4, TensorProto.UINT8: 1, TensorProto.INT8: 1, TensorProto.UINT16: 2,
    TensorProto.INT16: 2, TensorProto.INT32: 4, TensorProto.INT64: 8, TensorProto.BOOL: 1,
    TensorProto.FLOAT16: 2, TensorProto.DOUBLE: 8, TensorProto.UINT32: 4, TensorProto.UINT64: 8,
    TensorProto.BFLOAT16: 2, TensorProto.FLOAT8E4M3FN: 1, TensorProto.FLOAT8E4M3FNUZ: 1,
    TensorProto.FLOAT8E5M2: 1, TensorProto.FLOAT8E5M2FNUZ: 1, TensorProto.FLOAT8E8M0: 1,
}


def dtype_model():
    """Every data type code (plus unknown ones), raw and typed."""
    inits = []
    rng = np.random.default_rng(1)
    for name, code in sorted(TensorProto.DataType.items(), key=lambda kv: kv[1]):
        for size in (3, 16):  # an odd size for packed types
            raw = TensorProto(name=f"raw_{name}_{size}", data_type=code, dims=[size])
            # onnx raises unless decoded raw data fits the dims exactly.
            nbytes = size * RAW_ITEMSIZE.get(code, 1)
            raw.raw_data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
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
    T = TensorProto
    info = helper.make_tensor_value_info
    opset = helper.make_opsetid
    neg = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["z"])], "neg", [], [info("z", T.FLOAT, ["N"])]
    )
    inner_if = helper.make_node("If", ["c"], ["t"], then_branch=neg, else_branch=neg)
    inner_if.name = ""  # present but empty: printed as [""]
    then = helper.make_graph(
        [inner_if],
        "then",
        [],
        [info("t", T.FLOAT, ["N"])],
        initializer=[helper.make_tensor("k", T.FLOAT, [2], [1.0, 2.0])],
        value_info=[info("tmp 1", T.INT64, [3, "M", None])],
    )
    body = helper.make_graph(
        [
            helper.make_node("If", ["cond_in"], ["v"], then_branch=then, else_branch=neg),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "loop body",
        [info("i", T.INT64, []), info("cond_in", T.BOOL, [])],
        [info("cond_out", T.BOOL, []), info("v", T.FLOAT, ["N"])],
    )
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("vals", T.FLOAT, [2], [1.0, 2.0]),
        helper.make_tensor("idx", T.INT64, [2], [0, 3]),
        [5],
    )
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.FLOAT, ["a", 2]))
    map_type = helper.make_map_type_proto(T.INT64, helper.make_tensor_type_proto(T.FLOAT, None))
    attrs = [
        helper.make_attribute(name, value)
        for name, value in [
            ("f", 0.5),
            ("i", -3),
            ("s", b'quote " and \\ backslash\nnewline'),
            ("t", helper.make_tensor("cst", T.INT32, [2, 1], [4, 5])),
            ("g", neg),
            ("sp", sparse),
            ("tp", seq_type),
            ("fs", [1.0, 2.5]),
            ("is", [1, -2, 3]),
            ("ss", [b"a", b"b c"]),
            ("ts", [helper.make_tensor("", T.FLOAT, [], [1.0]),
                    helper.make_tensor("u", T.UINT8, [2], b"\x01\xff", raw=True)]),
            ("gs", [neg, body]),
            ("sps", [sparse]),
            ("tps", [seq_type, map_type]),
        ]
    ]
    attrs.append(helper.make_attribute("empty_ints", [], attr_type=onnx.AttributeProto.INTS))
    attrs.append(onnx.AttributeProto(name="undef"))  # no type at all
    custom = helper.make_node(
        "Everything", ["x", "", "x"], ["e1", "e 2"], domain="my.domain", name="every thing"
    )
    custom.attribute.extend(attrs)

    ref = helper.make_node("Scaled", ["b"], ["c"], domain="local")
    ref.attribute.append(
        onnx.AttributeProto(name="alpha", type=onnx.AttributeProto.FLOAT, ref_attr_name="alpha")
    )
    function = helper.make_function(
        "local",
        "Square",
        ["a"],
        ["c"],
        [helper.make_node("Mul", ["a", "a"], ["b"]), ref],
        [opset("", 21), opset("local", 1)],
        attributes=["alpha", "beta"],
    )
    function.attribute_proto.append(helper.make_attribute("gamma", 2.0))  # not printed
    overloaded = helper.make_function(
        "local",
        "Scaled",
        ["x"],
        ["y"],
        [helper.make_node("Identity", ["x"], ["y"])],
        [opset("", 21)],
        overload="v2",
    )
    call = helper.make_node("Square", ["x"], ["sq"], domain="local")
    call.overload = "v2"

    nodes = [
        helper.make_node("Loop", ["trip", "cond"], ["loop_out"], name="loop/0", body=body),
        custom,
        call,
        helper.make_node("Cast", ["x"], ["xc"], to=T.DOUBLE),
    ]
    Type = onnx.TypeProto
    inputs = [
        info("trip", T.INT64, []),
        info("cond", T.BOOL, []),
        info("x", T.FLOAT, ["N", "my dim", None, 4]),
        helper.make_value_info(
            "opt", helper.make_optional_type_proto(helper.make_tensor_type_proto(T.FLOAT, [1]))
        ),
        helper.make_value_info("notype", Type()),
        helper.make_value_info("sp", Type(sparse_tensor_type=Type.SparseTensor(elem_type=1))),
        helper.make_value_info("op", Type(opaque_type=Type.Opaque(domain="d", name="n"))),
        helper.make_value_info("op2", Type(opaque_type=Type.Opaque(name="n"))),
        helper.make_value_info("seq", seq_type),
    ]
    graph = helper.make_graph(
        nodes,
        "main",
        inputs,
        [info("loop_out", T.FLOAT, None)],
        sparse_initializer=[sparse],  # not printed
    )
    model = helper.make_model(
        graph,
        opset_imports=[opset("", 21), opset("local", 1), opset("my.domain", 3)],
        functions=[function, overloaded],
        producer_name="check_printer",
        producer_version='1.0 "beta"',
        domain="org.test",
        model_version=7,
        doc_string="multi\nline",
    )
    helper.set_model_props(model, {"author": "me", "license": "MIT"})
    return model


def bare_models():
    """Almost nothing set: no graph, empty names, present-but-empty fields."""
    bare = onnx.ModelProto(ir_version=0)
    empty = onnx.ModelProto(ir_version=10, producer_name="", graph=onnx.GraphProto())
    empty.graph.node.add(op_type="", name="", input=[""])
    return {"bare": bare, "empty_fields": empty}


def write_models(outdir):
    os.makedirs(outdir, exist_ok=True)
    models = {
        "printer_floats": float_model(),
        "printer_dtypes": dtype_model(),
        "printer_subgraphs": subgraph_model(),
        **{f"printer_{name}": model for name, model in bare_models().items()},
    }
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
