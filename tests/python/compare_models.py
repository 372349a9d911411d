"""Check that two ONNX files hold the same ModelProto, unknown fields included.

Usage:
    python tests/python/compare_models.py A.onnx B.onnx [--external | --content-only]

Default: both files are parsed with onnx's protobuf classes (ModelProto.FromString;
external data is not read, so the external_data references themselves are compared),
and the models are equal when their deterministic serializations are byte-equal and
`==` agrees. Python protobuf keeps fields its schema does not know as unknown fields,
so this also checks that fields newer than a reader's schema survived.

--external      additionally load each model's external data (relative to its own
                folder) and compare again, so the tensor bytes are compared too.
--content-only  like --external but skip the stored comparison: only the loaded
                content must match (data may live inline, or in other files/offsets).

Exit 0 when equal (prints `equal`); 1 with a one-line description of the first
differing field path (on stderr) when not; 2 when a file cannot be read.
"""

import argparse
import struct
import sys

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.unknown_fields import UnknownFieldSet


def short(value, limit=60):
    """A readable, bounded, single-line rendering of a field value."""
    if isinstance(value, bytes):
        text = repr(value[:limit]) + (f"... ({len(value)} bytes)" if len(value) > limit else "")
    elif hasattr(value, "ListFields"):
        text = type(value).__name__ + "{" + " ".join(str(value).split())[:limit] + "}"
    elif isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
        items = list(value)
        first = f", first {short(items[0], limit // 2)}" if items else ""
        text = f"{len(items)} element{'s' if len(items) != 1 else ''}{first}"
    else:
        text = repr(value)
    return text if len(text) <= limit + 20 else text[: limit + 20] + "..."


def bytes_diff(x, y):
    """Where two byte strings first differ, with a little context."""
    i = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    lo = max(0, i - 4)
    return (f"first difference at byte {i} of {len(x)} (A) / {len(y)} (B): "
            f"A[{lo}:{i + 8}]={x[lo:i + 8].hex()} B[{lo}:{i + 8}]={y[lo:i + 8].hex()}")


def same_scalar(x, y, field):
    # Bitwise for floats: NaN must equal NaN and -0.0 must differ from 0.0.
    if field.cpp_type == FieldDescriptor.CPPTYPE_FLOAT:
        return struct.pack("<f", x) == struct.pack("<f", y)
    if field.cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        return struct.pack("<d", x) == struct.pack("<d", y)
    return type(x) is type(y) and x == y


def label(msg, index):
    """`[i]` plus the element's name/key (and a node's op) to make paths readable."""
    parts = [str(index)]
    for attr in ("name", "key", "tensor_name"):
        if attr in msg.DESCRIPTOR.fields_by_name and getattr(msg, attr):
            parts.append(repr(getattr(msg, attr)))
            break
    if isinstance(msg, onnx.NodeProto):
        parts.append(f"op={msg.domain + '::' if msg.domain else ''}{msg.op_type}")
    return "[" + " ".join(parts) + "]"


def first_diff(a, b, path):
    """Path and description of the first difference between messages a and b, or None."""
    fa = {f.number: (f, v) for f, v in a.ListFields()}
    fb = {f.number: (f, v) for f, v in b.ListFields()}
    for num in sorted(set(fa) | set(fb)):
        if num not in fa or num not in fb:
            f, v = (fb if num not in fa else fa)[num]
            where = "A" if num in fa else "B"
            return f"{path}.{f.name}: present only in {where} ({short(v)})"
        f, va = fa[num]
        _, vb = fb[num]
        sub = f"{path}.{f.name}"
        is_msg = f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        if f.is_repeated:
            for i, (x, y) in enumerate(zip(va, vb)):
                if is_msg:
                    d = first_diff(x, y, sub + label(x, i))
                    if d:
                        return d
                elif not same_scalar(x, y, f):
                    return f"{sub}[{i}]: {short(x)} != {short(y)}"
            if len(va) != len(vb):
                return f"{sub}: {len(va)} elements in A, {len(vb)} in B"
        elif is_msg:
            d = first_diff(va, vb, sub)
            if d:
                return d
        elif isinstance(va, bytes) and va != vb:
            return f"{sub}: {bytes_diff(va, vb)}"
        elif not same_scalar(va, vb, f):
            return f"{sub}: {short(va)} != {short(vb)}"
    ua = [(u.field_number, u.wire_type, u.data) for u in UnknownFieldSet(a)]
    ub = [(u.field_number, u.wire_type, u.data) for u in UnknownFieldSet(b)]
    for i, (x, y) in enumerate(zip(ua, ub)):
        if x != y:
            return (f"{path}.<unknown field #{i}>: (number {x[0]}, wire type {x[1]}, "
                    f"{short(x[2])}) != (number {y[0]}, wire type {y[1]}, {short(y[2])})")
    if len(ua) != len(ub):
        extra = (ua if len(ua) > len(ub) else ub)[min(len(ua), len(ub))]
        return (f"{path}: {len(ua)} unknown fields in A, {len(ub)} in B "
                f"(first extra: number {extra[0]}, wire type {extra[1]})")
    return None


def compare(a, b):
    """None if equal, else a one-line description."""
    bytes_equal = a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    if bytes_equal:
        # Equal encodings mean equal content; `==` may only disagree through NaN != NaN.
        return None
    d = first_diff(a, b, "model")
    if d is None:
        # Same fields and values, different bytes: e.g. unknown fields in another order.
        d = "model: serializations differ but no field-level difference was found"
    return d


def load(path, external):
    if external:
        return onnx.load(path, load_external_data=True)
    with open(path, "rb") as f:
        return onnx.ModelProto.FromString(f.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="first .onnx file")
    ap.add_argument("b", help="second .onnx file")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--external", action="store_true",
                      help="also compare after loading external data (tensor bytes)")
    mode.add_argument("--content-only", action="store_true",
                      help="only compare after loading external data")
    args = ap.parse_args()

    passes = []
    if not args.content_only:
        passes.append((False, "stored"))
    if args.external or args.content_only:
        passes.append((True, "with external data loaded"))
    for external, what in passes:
        try:
            a, b = load(args.a, external), load(args.b, external)
        except Exception as e:
            lines = str(e).strip().splitlines()
            print(f"cannot read models ({what}): {type(e).__name__}: {lines[0] if lines else ''}",
                  file=sys.stderr)
            return 2
        d = compare(a, b)
        if d:
            print(" ".join(f"models differ ({what}): {d}".split())[:500], file=sys.stderr)
            return 1
    same_file_bytes = open(args.a, "rb").read() == open(args.b, "rb").read()
    print("equal" + ("" if same_file_bytes else " (files are not byte-identical)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
