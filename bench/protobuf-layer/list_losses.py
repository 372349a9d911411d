"""List every difference between an original ONNX model and its round-tripped copy.

Usage:
    python bench/protobuf-layer/list_losses.py ORIGINAL.onnx ROUNDTRIP.onnx

tests/python/compare_models.py stops at the first differing field; this walks the
whole message (both parsed with the onnx package's classes, external data not read)
and prints one line per kind of difference, grouped by message type and field,
with a count and the first path where it occurs:

    <count> x <Message>.<field>: <what> -- e.g. <path> (<value>)

Kinds: "present only in original" (a field, often one holding its default value,
lost its presence), "present only in round trip", "value differs", "N elements
in original, M in round trip", and for fields the schema does not know,
"unknown field <number> lost" / "unknown fields reordered". Prints "no
difference" and exits 0 when there is none, else exits 1.
"""

import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))

import onnx  # noqa: E402
from compare_models import label, same_scalar, short  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor  # noqa: E402
from google.protobuf.unknown_fields import UnknownFieldSet  # noqa: E402


def walk(a, b, path, out):
    """Appends (key, path, detail) for every difference between messages a and b."""
    name = a.DESCRIPTOR.name
    fa = {f.number: (f, v) for f, v in a.ListFields()}
    fb = {f.number: (f, v) for f, v in b.ListFields()}
    for num in sorted(set(fa) | set(fb)):
        f = (fa.get(num) or fb.get(num))[0]
        key = f"{name}.{f.name}"
        sub = f"{path}.{f.name}"
        if num not in fb:
            out.append((f"{key}: present only in original", sub, short(fa[num][1])))
            continue
        if num not in fa:
            out.append((f"{key}: present only in round trip", sub, short(fb[num][1])))
            continue
        va, vb = fa[num][1], fb[num][1]
        is_msg = f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        if f.is_repeated:
            for i, (x, y) in enumerate(zip(va, vb)):
                if is_msg:
                    walk(x, y, sub + label(x, i), out)
                elif not same_scalar(x, y, f):
                    out.append((f"{key}: value differs", f"{sub}[{i}]", f"{short(x)} != {short(y)}"))
            if len(va) != len(vb):
                out.append((f"{key}: {len(va)} elements in original, {len(vb)} in round trip", sub, ""))
        elif is_msg:
            walk(va, vb, sub, out)
        elif (va != vb) if isinstance(va, bytes) else not same_scalar(va, vb, f):
            out.append((f"{key}: value differs", sub, f"{short(va)} != {short(vb)}"))
    ua = [(u.field_number, u.wire_type, u.data) for u in UnknownFieldSet(a)]
    ub = [(u.field_number, u.wire_type, u.data) for u in UnknownFieldSet(b)]
    if ua != ub:
        lost = collections.Counter(ua) - collections.Counter(ub)
        added = collections.Counter(ub) - collections.Counter(ua)
        for (number, wire, data), n in sorted(lost.items(), key=lambda kv: kv[0][:2]):
            for _ in range(n):
                out.append((f"{name}: unknown field {number} (wire type {wire}) lost", path, short(data)))
        for (number, wire, data), n in sorted(added.items(), key=lambda kv: kv[0][:2]):
            for _ in range(n):
                out.append((f"{name}: unknown field {number} (wire type {wire}) added", path, short(data)))
        if not lost and not added:
            out.append((f"{name}: unknown fields reordered", path,
                        f"{[u[0] for u in ua]} -> {[u[0] for u in ub]}"))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    models = []
    for p in sys.argv[1:]:
        with open(p, "rb") as fh:
            models.append(onnx.ModelProto.FromString(fh.read()))
    diffs = []
    walk(models[0], models[1], "model", diffs)
    if not diffs:
        print("no difference")
        return 0
    groups = collections.OrderedDict()
    for key, path, detail in diffs:
        groups.setdefault(key, []).append((path, detail))
    for key, items in groups.items():
        path, detail = items[0]
        print(f"{len(items)} x {key} -- e.g. {path}" + (f" ({detail})" if detail else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
