"""Does ONNX Runtime run an early-exit quantized model on the same int8
kernels as the quantized original?

usage: check_qdq_fusion.py ORIGINAL.onnx EARLY_EXIT.onnx EXITS [--json]

Each model gets a session with ONNX Runtime's default options (CPU,
ORT_ENABLE_ALL) that saves its optimised graph (optimized_model_filepath).
Per graph level (main graph, each If branch) the script counts the fused
int8 kernels (QLinearConv, QGemm, QLinearAdd, MatMulInteger, ...), the
QuantizeLinear/DequantizeLinear nodes left unfused, and the float compute
ops (Conv, Gemm, MatMul and their fused forms). It fails unless the
early-exit model has exactly the original's int8 kernels (whatever level
they ended in) plus its heads' integer pooling products, no more Q/DQ nodes than the original (the exits' heads
pool the quantized tensor without dequantizing it), at least one int8
kernel inside a branch, and at most one float compute op per exit (its
head's Gemm) beyond the original's; EXITS is that allowance (0 for int8
heads, `--quantize-heads`, which add one int8 Gemm and one QuantizeLinear
each instead).
"""

import collections
import json
import os
import sys
import tempfile

import onnx

from check_nchwc import levels, optimised

INT8_KERNELS = {
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearConcat",
    "QLinearSoftmax",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "MatMulInteger",
    "ConvInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "NhwcMaxPool",
}
FLOAT_COMPUTE = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}


def counts(model):
    """Per level: Counter of int8 / qdq / float ops."""
    table = {}
    for path, g in levels(model.graph):
        c = collections.Counter()
        for n in g.node:
            if n.op_type in INT8_KERNELS and n.domain in ("", "com.microsoft"):
                c["int8"] += 1
            elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                c["qdq"] += 1
            elif n.op_type in FLOAT_COMPUTE:
                c["float"] += 1
        if c:
            table[path] = dict(c)
    return table


def quantized_heads(path):
    """eexc heads with int8 weights (`--quantize-heads`): one int8 Gemm each."""
    model = onnx.load(path, load_external_data=False)
    return sum(
        1
        for _, g in levels(model.graph)
        for n in g.node
        if n.op_type == "DequantizeLinear" and n.output[0].startswith("eexc_exit") and n.output[0].endswith("_weight")
    )


def pooling_kernels(path):
    """eexc heads that pool a quantized exit tensor with an integer product
    (MatMulInteger) before ONNX Runtime renames or fuses them."""
    model = onnx.load(path, load_external_data=False)
    return sum(
        1 for _, g in levels(model.graph) for n in g.node if n.op_type == "MatMulInteger" and "_pool_sums" in n.output[0]
    )


def total(table, key):
    return sum(v.get(key, 0) for v in table.values())


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    original, early, exits = args[0], args[1], int(args[2])
    pooling = pooling_kernels(early)
    heads = quantized_heads(early)
    with tempfile.TemporaryDirectory() as tmp:
        flat = counts(optimised(original, os.path.join(tmp, "original.opt.onnx")))
        ee = counts(optimised(early, os.path.join(tmp, "early.opt.onnx")))
    report = {
        "original": {k: total(flat, k) for k in ("int8", "qdq", "float")} | {"levels": flat},
        "early_exit": {k: total(ee, k) for k in ("int8", "qdq", "float")} | {"levels": ee, "pooling": pooling, "quantized_heads": heads},
    }
    if "--json" in sys.argv:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        for name, t in (("original", flat), ("early-exit", ee)):
            for path, c in sorted(t.items()):
                print(f"{name:10} {path:70} {c}")
    o, e = report["original"], report["early_exit"]
    problems = []
    if o["int8"] == 0:
        problems.append("the original runs no int8 kernel: not a quantized model ONNX Runtime fuses")
    if e["int8"] != o["int8"] + pooling + heads:
        problems.append(
            f"int8 kernels: early-exit {e['int8']}, original {o['int8']} (+{pooling} head pooling, +{heads} int8 heads)"
        )
    # An int8 head quantizes its pooled feature (a QuantizeLinear per head).
    if e["qdq"] > o["qdq"] + heads:
        problems.append(f"unfused Q/DQ nodes: early-exit {e['qdq']}, original {o['qdq']} (+{heads} int8 heads)")
    if e["float"] > o["float"] + exits:
        problems.append(f"float compute ops: early-exit {e['float']}, original {o['float']} + {exits} heads")
    if not any(c.get("int8") for path, c in ee.items() if path != "main"):
        problems.append("no int8 kernel inside any branch")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
