"""The same job as `eexc insert-exits --mode if --at T1,T2,...` with seeded
heads, done in Python with onnx-graphsurgeon: the peer eexc is benchmarked
against (docs/benchmarks.md).

    python peer_graphsurgeon.py IN.onnx OUT.onnx --at T1,T2,T3 [--threshold 0.9]

For a classifier whose output is Softmax(Gemm(...)) (the model-zoo ResNet-50):
per exit a GlobalAveragePool/Flatten/Gemm head, a max-softmax decision against
threshold and temperature inputs (opset-9 forms: Not(Less), attribute axes),
and nested If: `then` returns the head's Softmax and exit_index, `else` runs the
next stage. Load and save with onnx, surgery with graphsurgeon.
"""

import argparse

import numpy as np
import onnx
import onnx_graphsurgeon as gs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--at", required=True)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = onnx.load(args.input)
    # Head sizes need shapes; the zoo files carry none, so infer them as eexc does.
    model = onnx.shape_inference.infer_shapes(model)
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    out = graph.outputs[0]
    softmax = out.inputs[0]
    logits = softmax.inputs[0]
    classes = logits.shape[1]
    rng = np.random.default_rng(args.seed)
    exits = [tensors[t] for t in args.at.split(",")]

    # Stage k: ancestors of exit k not in earlier stages (constants stay global).
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    assigned, stages = set(), []
    for t in exits:
        stack, members = [t], set()
        while stack:
            v = stack.pop()
            for p in v.inputs:
                if id(p) not in members and id(p) not in assigned:
                    members.add(id(p))
                    stack.extend(p.inputs)
        assigned |= members
        stages.append([n for n in graph.nodes if id(n) in members])
    stages.append([n for n in graph.nodes if id(n) not in assigned])
    for s in stages:
        s.sort(key=lambda n: order[id(n)])

    def const(name, arr):
        return gs.Constant(name, np.asarray(arr))

    knobs = []
    batch = out.shape[0]

    def level(k, nodes_out, outputs, zeros):
        """Stage k, head k, decision k and If_k appended to nodes_out."""
        nodes_out.extend(stages[k])
        feat = exits[k]
        c = feat.shape[1]
        bound = 1.0 / np.sqrt(c)
        w = rng.uniform(-bound, bound, (classes, c)).astype(np.float32)
        b = rng.uniform(-bound, bound, (classes,)).astype(np.float32)
        p = f"peer_exit{k + 1}"
        gap = gs.Variable(f"{p}_gap", np.float32)
        flat = gs.Variable(f"{p}_flat", np.float32)
        z = gs.Variable(f"{p}_logits", np.float32, (batch, classes))
        thr = gs.Variable(f"peer_threshold_{k + 1}", np.float32, ())
        temp = gs.Variable(f"peer_temperature_{k + 1}", np.float32, ())
        knobs.append((thr, temp))
        scaled, probs, conf, okf, allf = (
            gs.Variable(f"{p}_{n}", np.float32) for n in ("scaled", "probs", "conf", "okf", "allf"))
        lt, ok, cond = (gs.Variable(f"{p}_{n}", np.bool_) for n in ("lt", "ok", "cond"))
        nodes_out += [
            gs.Node("GlobalAveragePool", inputs=[feat], outputs=[gap]),
            gs.Node("Flatten", attrs={"axis": 1}, inputs=[gap], outputs=[flat]),
            gs.Node("Gemm", attrs={"transB": 1}, inputs=[flat, const(f"{p}_w", w), const(f"{p}_b", b)], outputs=[z]),
            gs.Node("Div", inputs=[z, temp], outputs=[scaled]),
            gs.Node("Softmax", attrs={"axis": 1}, inputs=[scaled], outputs=[probs]),
            gs.Node("ReduceMax", attrs={"axes": [1], "keepdims": 0}, inputs=[probs], outputs=[conf]),
            gs.Node("Less", inputs=[conf, thr], outputs=[lt]),
            gs.Node("Not", inputs=[lt], outputs=[ok]),
            gs.Node("Cast", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[ok], outputs=[okf]),
            gs.Node("ReduceMin", attrs={"axes": [0], "keepdims": 0}, inputs=[okf], outputs=[allf]),
            gs.Node("Cast", attrs={"to": onnx.TensorProto.BOOL}, inputs=[allf], outputs=[cond]),
        ]
        if zeros is None:
            rows = gs.Variable("peer_rows", np.int64)
            zeros = gs.Variable("peer_zeros", np.int64)
            nodes_out += [
                gs.Node("ArgMax", attrs={"axis": 1, "keepdims": 0}, inputs=[z], outputs=[rows]),
                gs.Node("Mul", inputs=[rows, const("peer_zero", np.array(0, np.int64))], outputs=[zeros]),
            ]

        def index(name, value, into):
            v = gs.Variable(name, np.int64, (batch,))
            into.append(gs.Node("Add", inputs=[zeros, const(f"{name}_k", np.array(value, np.int64))], outputs=[v]))
            return v

        then_nodes = []
        pred = gs.Variable(f"{p}_prediction", np.float32, tuple(out.shape))
        then_nodes.append(gs.Node("Softmax", attrs=dict(softmax.attrs), inputs=[z], outputs=[pred]))
        then_idx = index(f"{p}_index", k + 1, then_nodes)
        then_g = gs.Graph(nodes=then_nodes, outputs=[pred, then_idx], name=f"{p}_then")

        else_nodes = []
        if k + 1 < len(exits):
            nxt = [gs.Variable(f"peer_after{k + 1}_prediction", np.float32, tuple(out.shape)),
                   gs.Variable(f"peer_after{k + 1}_index", np.int64, (batch,))]
            level(k + 1, else_nodes, nxt, zeros)
        else:
            # The rest of the network; its output gets a branch-local name.
            final = gs.Variable(f"{out.name}__final", np.float32, tuple(out.shape))
            softmax.outputs = [final]
            else_nodes.extend(stages[-1])
            nxt = [final, index("peer_index_final", len(exits) + 1, else_nodes)]
        else_g = gs.Graph(nodes=else_nodes, outputs=nxt, name=f"{p}_else")
        nodes_out.append(gs.Node("If", attrs={"then_branch": then_g, "else_branch": else_g},
                                 inputs=[cond], outputs=outputs))

    exit_index = gs.Variable("exit_index", np.int64, (batch,))
    new_out = gs.Variable(out.name, np.float32, tuple(out.shape))
    main_nodes = []
    level(0, main_nodes, [new_out, exit_index], None)
    graph.nodes = main_nodes
    graph.outputs = [new_out, exit_index]
    graph.inputs = [i for i in graph.inputs if not isinstance(i, gs.Constant)] + [v for pair in knobs for v in pair]
    result = gs.export_onnx(graph)
    result.opset_import[0].version = model.opset_import[0].version
    result.ir_version = max(model.ir_version, 4)
    # Defaults for the knobs: initializers that are also graph inputs.
    for thr, temp in knobs:
        result.graph.initializer.append(onnx.numpy_helper.from_array(np.array(args.threshold, np.float32), thr.name))
        result.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), temp.name))
    onnx.save(result, args.output)


if __name__ == "__main__":
    main()
