"""The peer of `eexc insert-exits --mode if` (seeded heads), in Python with
onnx-graphsurgeon: the benchmark's point of comparison.

Usage (in bench/.venv-peer, see requirements.txt):
    python bench/insert-exits/peer_graphsurgeon.py IN.onnx OUT.onnx --at T1,T2,T3
        [--seed 0] [--threshold 0.9] [--temperature 1.0]

Loads with onnx, rewrites with onnx-graphsurgeon, saves with onnx. It emits the
graph docs/output-graph.md describes for `--mode if` (4-D exit tensors,
`maxprob`, opset < 12), with the same interface names as eexc:

- per exit k (tensor T_k, in the order given): head GlobalAveragePool ->
  Flatten(axis 1) -> Gemm(transB 1) with classes x features weights from the
  same seeded SplitMix64 initialiser as eexc (so, for the same seed, the
  exits compute the same logits as eexc's); decision Div(temperature) ->
  Softmax(axis 1) -> ReduceMax(axes [1], keepdims 0) -> Not(Less(., threshold))
  -> Cast(float) -> ReduceMin(axes [0], keepdims 0) -> Cast(bool), a 0-D bool;
- nested If: If_k's then-branch returns the exit's prediction (the logits
  through a copy of the original's post-logits ops, here Softmax) and
  exit_index = k; its else-branch runs stage k+1 (the nodes T_{k+1} needs that
  earlier stages did not compute), head k+1, decision k+1 and If_{k+1}; the
  innermost else runs the rest of the network and returns exit_index = K+1;
- inputs: the original ones plus eexc_threshold_k / eexc_temperature_k (float
  scalars that are also initializers holding the defaults); outputs: the
  original output (same name, type, shape) and exit_index (int64 [N]).
  The model moves to IR 4, as eexc's does, so initializers need not be inputs.

Not byte-identical to eexc: node names and the order of initializers differ,
no eexc.exits metadata is written, and graphsurgeon drops an initializer that
no node uses (the original has one). Like eexc, it keeps every initializer
in the main graph (see the end of main() for why that needs care in gs).
bench/insert-exits/check_equivalent.py checks both models side by side.
"""

import argparse
import sys

import numpy as np
import onnx
import onnx_graphsurgeon as gs

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def seeded_weights(seed, exit_k, classes, features):
    """eexc's seeded head initialiser (src/exits/head.rs), vectorised:
    SplitMix64 from seed ^ (k * golden), uniform in +-1/sqrt(features);
    the weight (classes x features, row-major) first, then the bias."""
    n = classes * features + classes
    state = np.uint64((seed ^ (exit_k * GOLDEN)) & MASK64)
    with np.errstate(over="ignore"):
        z = state + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    bound = 1.0 / np.sqrt(float(features))
    u = ((z >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0) * bound
    u = u.astype(np.float32)
    return u[: classes * features].reshape(classes, features), u[classes * features :]


def channels(model, names):
    """Channel count (dim 1) of each tensor in `names`, by ONNX shape inference
    on a weightless skeleton of the model (initializers become typed inputs),
    so the 100 MB of weights are not serialised once more for the C++ pass."""
    g = model.graph
    skel = onnx.GraphProto(name=g.name)
    skel.node.extend(g.node)
    skel.input.extend(g.input)
    skel.output.extend(g.output)
    listed = {i.name for i in g.input}
    for t in g.initializer:
        if t.name not in listed:
            skel.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    m = onnx.helper.make_model(skel, opset_imports=model.opset_import, ir_version=max(model.ir_version, 4))
    inferred = onnx.shape_inference.infer_shapes(m).graph
    shapes = {}
    for v in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    out = []
    for name in names:
        s = shapes.get(name)
        if s is None or len(s) != 4 or s[1] is None:
            sys.exit(f"peer: exit tensor {name!r}: need a 4-D N x C x H x W shape, inferred {s}")
        out.append(s[1])
    return out


class Builder:
    """Appends new nodes to a list, making their output Variables."""

    def __init__(self, nodes):
        self.nodes = nodes

    def op(self, op_type, name, inputs, attrs=None, dtype=None, shape=None):
        out = gs.Variable(name, dtype=dtype, shape=shape)
        self.nodes.append(gs.Node(op_type, name=f"{name}_{op_type}", attrs=attrs or {}, inputs=inputs, outputs=[out]))
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("output")
    ap.add_argument("--at", required=True, help="exit tensors, comma-separated, in network order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    at = args.at.split(",")

    model = onnx.load(args.model)
    features = channels(model, at)
    graph = gs.import_onnx(model)
    if graph.opset >= 12:
        sys.exit("peer: written for opset < 12 (Not(Less) stands for GreaterOrEqual)")
    tensors = graph.tensors()
    missing = [t for t in at if t not in tensors]
    if missing:
        sys.exit(f"peer: no tensor named {missing}")
    K = len(at)

    # The classifier: the original output, the ops after the last Gemm/MatMul
    # that feeds it (the tail, replicated on every exit's logits), the logits.
    (out,) = graph.outputs
    tail = []
    t = out
    while t.inputs and t.inputs[0].op not in ("Gemm", "MatMul"):
        node = t.inputs[0]
        tail.insert(0, node)
        t = node.inputs[0]
    logits = t
    classes = int(logits.shape[-1]) if logits.shape else int(out.shape[-1])
    batch = out.shape[0] if out.shape else None
    idx_shape = [batch]

    # Stages: stage k = ancestors of T_k not computed by an earlier stage;
    # the last one is everything else. Node order stays the original's.
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    constant_nodes = [n for n in graph.nodes if n.op == "Constant"]
    assigned = {id(n) for n in constant_nodes}
    stages = []
    for name in at:
        found, stack = [], [tensors[name]]
        while stack:
            x = stack.pop()
            for p in x.inputs:  # the producer, if any
                if id(p) not in assigned:
                    assigned.add(id(p))
                    found.append(p)
                    stack.extend(p.inputs)
        stages.append(sorted(found, key=lambda n: order[id(n)]))
    stages.append([n for n in graph.nodes if id(n) not in assigned])

    # Knobs: scalar inputs with initializer defaults (gs exports a Constant
    # graph input as both an input and an initializer).
    knobs = []
    for k in range(1, K + 1):
        th = gs.Constant(f"eexc_threshold_{k}", np.array(args.threshold, dtype=np.float32))
        te = gs.Constant(f"eexc_temperature_{k}", np.array(args.temperature, dtype=np.float32))
        knobs.append((th, te))

    def head(b, k):
        base = f"ee{k}"
        w, bias = seeded_weights(args.seed, k, classes, features[k - 1])
        pooled = b.op("GlobalAveragePool", f"{base}_pool", [tensors[at[k - 1]]])
        flat = b.op("Flatten", f"{base}_flat", [pooled], {"axis": 1})
        wc = gs.Constant(f"eexc_exit{k}_weight", w)
        bc = gs.Constant(f"eexc_exit{k}_bias", bias)
        return b.op("Gemm", f"eexc_exit_{k}_logits", [flat, wc, bc], {"transB": 1})

    def decision(b, k, z):
        base = f"ee{k}"
        th, te = knobs[k - 1]
        if k > 1:
            # Inside a branch a Constant would be exported as that branch's
            # own initializer, shadowing the main graph's input (so feeding a
            # threshold would do nothing): refer to the input by name instead.
            th, te = gs.Variable(th.name), gs.Variable(te.name)
        scaled = b.op("Div", f"{base}_scaled", [z, te])
        probs = b.op("Softmax", f"{base}_probs", [scaled], {"axis": 1})
        conf = b.op("ReduceMax", f"{base}_conf", [probs], {"axes": [1], "keepdims": 0})
        lt = b.op("Less", f"{base}_lt", [conf, th])
        ok = b.op("Not", f"{base}_ok", [lt])
        ok_f = b.op("Cast", f"{base}_ok_f", [ok], {"to": onnx.TensorProto.FLOAT})
        all_f = b.op("ReduceMin", f"{base}_all_f", [ok_f], {"axes": [0], "keepdims": 0})
        return b.op("Cast", f"{base}_all_ok", [all_f], {"to": onnx.TensorProto.BOOL})

    def exit_index(b, zeros, k):
        kc = gs.Constant(f"ee_index_{k}", np.array(k, dtype=np.int64))
        return b.op("Add", f"ee_exit_index_{k}", [zeros, kc], dtype=np.int64, shape=idx_shape)

    def apply_tail(b, k, z, name):
        cur = z
        for i, node in enumerate(tail):
            last = i + 1 == len(tail)
            nm = name if last else f"ee{k}_tail{i}"
            cur = b.op(node.op, nm, [cur] + node.inputs[1:], dict(node.attrs),
                       dtype=out.dtype if last else None, shape=out.shape if last else None)
        if not tail:
            cur = b.op("Identity", name, [cur], dtype=out.dtype, shape=out.shape)
        return cur

    def level(nodes, k, outputs, zeros):
        """Stage k, head k, decision k and If_k (whose outputs are `outputs`)."""
        b = Builder(nodes)
        nodes.extend(stages[k - 1])
        z = head(b, k)
        cond = decision(b, k, z)
        if zeros is None:
            rows = b.op("ArgMax", "ee_rows", [z], {"axis": 1, "keepdims": 0})
            zero = gs.Constant("ee_zero", np.array(0, dtype=np.int64))
            zeros = b.op("Mul", "ee_row_zeros", [rows, zero])

        then_nodes = []
        tb = Builder(then_nodes)
        pred = apply_tail(tb, k, z, f"ee{k}_prediction")
        idx = exit_index(tb, zeros, k)
        then_g = gs.Graph(nodes=then_nodes, outputs=[pred, idx], name=f"ee{k}_then", opset=graph.opset)

        else_nodes = []
        if k < K:
            else_out = [gs.Variable(f"ee_after{k}_prediction", dtype=out.dtype, shape=out.shape),
                        gs.Variable(f"ee_after{k}_index", dtype=np.int64, shape=idx_shape)]
            level(else_nodes, k + 1, else_out, zeros)
        else:
            # The rest of the network; its output is renamed, as the name
            # belongs to If_1's output now.
            else_nodes.extend(stages[K])
            out.name = f"{out.name}__final"
            else_out = [out, exit_index(Builder(else_nodes), zeros, K + 1)]
        else_g = gs.Graph(nodes=else_nodes, outputs=else_out, name=f"ee{k}_else", opset=graph.opset)
        nodes.append(gs.Node("If", name=f"ee{k}_If", attrs={"then_branch": then_g, "else_branch": else_g},
                             inputs=[cond], outputs=outputs))

    prediction = gs.Variable(out.name, dtype=out.dtype, shape=out.shape)
    index = gs.Variable("exit_index", dtype=np.int64, shape=idx_shape)
    main_nodes = list(constant_nodes)
    level(main_nodes, 1, [prediction, index], None)
    graph.nodes = main_nodes

    # graphsurgeon exports a Constant as an initializer of the graph whose
    # nodes use it: the weights of stages 2.. would move into the If
    # branches, and protobuf would copy them once more per nesting level on
    # export. Keep every initializer in the main graph, as eexc does: branch
    # nodes refer to them by name, and the main graph lists them as inputs
    # (gs exports a Constant graph input as input + initializer); those input
    # entries are dropped after export (IR 4 does not need them).
    used_in_main = {t.name for n in main_nodes for t in n.inputs}
    hoisted, outer = {}, {}

    def hoist(g):
        for node in g.nodes:
            for i, t in enumerate(node.inputs):
                if isinstance(t, gs.Constant):
                    hoisted.setdefault(t.name, t)
                    node.inputs[i] = outer.setdefault(t.name, gs.Variable(t.name))
            for a in node.attrs.values():
                if isinstance(a, gs.Graph):
                    hoist(a)

    for node in main_nodes:
        for a in node.attrs.values():
            if isinstance(a, gs.Graph):
                hoist(a)
    extra = [t for name, t in hoisted.items() if name not in used_in_main]
    graph.inputs = list(graph.inputs) + [t for pair in knobs for t in pair] + extra
    graph.outputs = [prediction, index]
    graph.ir_version = max(graph.ir_version or 0, 4)

    result = gs.export_onnx(graph)
    drop = {t.name for t in extra}
    kept = [v for v in result.graph.input if v.name not in drop]
    del result.graph.input[:]
    result.graph.input.extend(kept)
    onnx.save(result, args.output)


if __name__ == "__main__":
    main()
