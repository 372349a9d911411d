"""Does ONNX Runtime lay out the Convs of an early-exit model in NCHWc, as it
does for the original?

usage: check_nchwc.py ORIGINAL.onnx EARLY_EXIT.onnx [--json]

Each model gets a session with ONNX Runtime's default options (CPU,
ORT_ENABLE_ALL) that saves its optimised graph (optimized_model_filepath);
the script counts, per graph level (main graph, each If branch, each Loop
body), the Convs that ended in the NCHWc layout (domain com.microsoft.nchwc)
and those that did not. It fails unless the early-exit model has exactly as
many NCHWc Convs as the original (plus its layout anchors, the identity
depthwise Convs eexc puts where a branch starts) and no Conv left outside
that layout that the original converted, i.e. unless the layout optimiser
reached every branch. Exit code 3: this CPU has no NCHWc kernels (the original gets none),
so nothing can be checked here.
"""

import json
import os
import sys
import tempfile

import onnx
import onnxruntime as ort

NCHWC = "com.microsoft.nchwc"


def optimised(path, out):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3  # the 'hardware specific' warning of saving NCHWc graphs
    so.optimized_model_filepath = out
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return onnx.load(out, load_external_data=False)


def levels(graph, path="main"):
    """Yields (path, graph) for a graph and every subgraph inside it."""
    yield path, graph
    for node in graph.node:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for i, g in enumerate(subs):
                name = f"{node.name or node.op_type}.{a.name}" + (f"[{i}]" if len(subs) > 1 else "")
                yield from levels(g, f"{path}/{name}")


def conv_counts(model):
    """Per level: (NCHWc Convs, other Convs). ORT may fuse a Conv with its
    activation (FusedConv) without the layout change; those count as other."""
    table = {}
    for path, g in levels(model.graph):
        nchwc = sum(1 for n in g.node if n.domain == NCHWC and n.op_type == "Conv")
        plain = sum(1 for n in g.node if n.domain != NCHWC and n.op_type in ("Conv", "FusedConv"))
        if nchwc or plain:
            table[path] = (nchwc, plain)
    return table


def anchors(path):
    """eexc's layout anchors in a model (before ONNX Runtime renames them)."""
    model = onnx.load(path, load_external_data=False)
    return sum(
        1 for _, g in levels(model.graph) for n in g.node if n.op_type == "Conv" and "__layout_anchor" in n.output[0]
    )


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    original, early = args
    n_anchors = anchors(early)
    with tempfile.TemporaryDirectory() as tmp:
        flat = conv_counts(optimised(original, os.path.join(tmp, "original.opt.onnx")))
        ee = conv_counts(optimised(early, os.path.join(tmp, "early.opt.onnx")))
    total = lambda t, i: sum(v[i] for v in t.values())
    report = {
        "original": {"nchwc": total(flat, 0), "other": total(flat, 1), "levels": flat},
        "early_exit": {"nchwc": total(ee, 0), "other": total(ee, 1), "levels": ee, "anchors": n_anchors},
    }
    if "--json" in sys.argv:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        for name, t in (("original", flat), ("early-exit", ee)):
            for path, (n, p) in sorted(t.items()):
                print(f"{name:10} {path:60} nchwc {n:4} other {p:4}")
    if total(flat, 0) == 0:
        print("this CPU gets no NCHWc Convs even for the original model", file=sys.stderr)
        sys.exit(3)
    branch_nchwc = sum(n for path, (n, _) in ee.items() if path != "main")
    problems = []
    if total(ee, 0) != total(flat, 0) + n_anchors:
        problems.append(f"NCHWc Convs: early-exit {total(ee, 0)}, original {total(flat, 0)} (+{n_anchors} anchors)")
    if total(ee, 1) > total(flat, 1):
        problems.append(f"Convs outside NCHWc: early-exit {total(ee, 1)}, original {total(flat, 1)}")
    if len(ee) > 1 and branch_nchwc == 0:
        problems.append("no NCHWc Conv inside any branch")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
