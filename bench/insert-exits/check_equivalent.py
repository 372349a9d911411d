"""Checks that eexc's and the peer's early-exit models are the same model.

    .venv/bin/python bench/insert-exits/check_equivalent.py ORIGINAL.onnx EEXC.onnx PEER.onnx --at T1,T2,T3

1. onnx.checker.check_model(full_check=True) on both files.
2. Structure: the same inputs and outputs (names, types, shapes), and at each
   nesting level (main graph, then/else of each If) the same multiset of op
   types; every initializer in the main graph. Node names may differ.
3. Heads: the peer's seeded head weights equal eexc's, bit for bit.
4. ONNX Runtime (CPU), on seeded random inputs:
   - thresholds 2 (above any probability): both outputs equal the original
     model's, exit_index = K+1;
   - for each exit k, thresholds 2 before k and 0 at k: both return exit k's
     prediction, checked against a NumPy reference (the original run up to
     T_k, then global average pool, the head's Gemm, Softmax), exit_index = k;
   - temperatures 1e9, thresholds 0.5: nothing exits (the temperature inputs
     are live);
   - default knobs (nothing fed): both agree with each other.
"""

import argparse
import collections

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper


def all_graphs(g, path="main"):
    yield path, g
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                branch = "then" if a.name == "then_branch" else "else"
                yield from all_graphs(a.g, f"{path}/{n.op_type}.{branch}")


def structure(m):
    levels = {}
    for path, g in all_graphs(m.graph):
        levels[path] = collections.Counter(n.op_type for n in g.node)
    return levels


def io(m):
    def sig(v):
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim)
        return (v.name, t.elem_type, dims)

    inits = {t.name for t in m.graph.initializer}
    return ([sig(i) for i in m.graph.input if i.name not in inits or i.name.startswith("eexc_")],
            [sig(o) for o in m.graph.output])


def initializers(m):
    out = {}
    for _, g in all_graphs(m.graph):
        for t in g.initializer:
            out[t.name] = onnx.numpy_helper.to_array(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("eexc")
    ap.add_argument("peer")
    ap.add_argument("--at", required=True)
    args = ap.parse_args()
    at = args.at.split(",")
    K = len(at)
    ort.set_default_logger_severity(3)

    models = {}
    for label, path in (("eexc", args.eexc), ("peer", args.peer)):
        onnx.checker.check_model(path, full_check=True)
        models[label] = onnx.load(path)
        print(f"ok: {label}: onnx.checker full_check")

    se, sp = structure(models["eexc"]), structure(models["peer"])
    assert se == sp, f"op types per level differ:\neexc {se}\npeer {sp}"
    assert io(models["eexc"]) == io(models["peer"]), f"interfaces differ:\n{io(models['eexc'])}\n{io(models['peer'])}"
    # eexc puts each constant in the innermost graph that reads it (so that
    # ONNX Runtime's layout transformer sees the branches' weights); the peer
    # keeps them all in the main graph. The weights are compared by name below.
    nested = [path for path, g in all_graphs(models["peer"].graph) if path != "main" and len(g.initializer)]
    assert not nested, f"peer: initializers inside branches {nested}"
    placed = sum(1 for path, g in all_graphs(models["eexc"].graph) if path != "main" and len(g.initializer))
    print(f"ok: same interface and op types at each of {len(se)} graph levels "
          f"({sum(sum(c.values()) for c in se.values())} nodes); "
          f"eexc's initializers in {placed} branch graphs where they are read, the peer's all in the main graph")

    ie, ip = initializers(models["eexc"]), initializers(models["peer"])
    heads = []
    for k in range(1, K + 1):
        w, b = ie[f"eexc_exit{k}_weight"], ie[f"eexc_exit{k}_bias"]
        assert np.array_equal(w, ip[f"eexc_exit{k}_weight"]) and np.array_equal(b, ip[f"eexc_exit{k}_bias"]), k
        heads.append((w, b))
    print(f"ok: the peer's seeded head weights equal eexc's ({', '.join(str(w.shape) for w, _ in heads)})")
    del models, ie, ip

    # The original, also returning the exit tensors, for the references.
    orig = onnx.load(args.original)
    for t in at:
        orig.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    s0 = ort.InferenceSession(orig.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del orig
    inp = s0.get_inputs()[0]
    sessions = {label: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                for label, path in (("eexc", args.eexc), ("peer", args.peer))}

    def knobs(exit_at):
        return {f"eexc_threshold_{j}": np.array(0.0 if j == exit_at else 2.0, np.float32) for j in range(1, K + 1)}

    for seed in (0, 1):
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        ref, *feats = s0.run(None, {inp.name: x})
        expect = {}
        for k, (f, (w, b)) in enumerate(zip(feats, heads), 1):
            z = f.mean(axis=(2, 3)) @ w.T + b
            e = np.exp(z - z.max(axis=1, keepdims=True))
            expect[k] = e / e.sum(axis=1, keepdims=True)
        got = {}
        for label, s in sessions.items():
            y, idx = s.run(None, {inp.name: x, **knobs(None)})
            assert np.allclose(y, ref, rtol=1e-5, atol=1e-6), f"{label}: differs from the original"
            assert (idx == K + 1).all(), f"{label}: exit_index {idx}, expected {K + 1}"
            for k in range(1, K + 1):
                y, idx = s.run(None, {inp.name: x, **knobs(k)})
                assert (idx == k).all(), f"{label}: exit_index {idx}, expected {k}"
                err = np.abs(y - expect[k]).max()
                assert err < 1e-5, f"{label}: exit {k} output off by {err}"
            # Temperature inputs: a huge temperature flattens every softmax,
            # so a threshold of 0.5 lets nothing exit.
            flat = {f"eexc_{n}_{j}": np.array(v, np.float32)
                    for j in range(1, K + 1) for n, v in (("threshold", 0.5), ("temperature", 1e9))}
            y, idx = s.run(None, {inp.name: x, **flat})
            assert (idx == K + 1).all() and np.allclose(y, ref, rtol=1e-5, atol=1e-6), f"{label}: temperature"
            got[label] = s.run(None, {inp.name: x})
        (ye, ie_), (yp, ip_) = got["eexc"], got["peer"]
        assert np.array_equal(ie_, ip_) and np.allclose(ye, yp, rtol=1e-5, atol=1e-6), "default knobs disagree"
        print(f"ok: input seed {seed}: nothing exits -> original output, exit_index {K + 1}; "
              f"exit k forced -> exit k's reference output, exit_index k (k = 1..{K}); T=1e9 -> no exit; "
              f"defaults agree (exit_index {int(ie_[0])})")


if __name__ == "__main__":
    main()
