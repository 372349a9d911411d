#!/usr/bin/env python3
# Usage: .venv/bin/python bench/loop/scan_vs_loop.py [RUNS]
"""Does ONNX Runtime's Scan hand a body its per-iteration weight slices
without a kernel call each (as Loop + Gather needs)? A stack of L layers, each
reading 16 weight tensors (8 MatMul weights [D,D], 8 biases [D]), as
flat (unrolled, initializers), Loop + 16 Gathers per iteration, and Scan (the
16 stacks as scan inputs, x as state)."""
import sys, time
import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, numpy_helper as nh, TensorProto as T

L, D, S, J = 4, 64, 32, 8
rng = np.random.default_rng(0)
W = (rng.standard_normal((L, J, D, D)) / np.sqrt(D)).astype(np.float32)
B = (rng.standard_normal((L, J, D)) * 0.1).astype(np.float32)
xin = h.make_tensor_value_info("x", T.FLOAT, [1, S, D])
yout = h.make_tensor_value_info("y", T.FLOAT, [1, S, D])

def layer(prefix, x, w, b):
    nodes = []
    for j in range(J):
        nodes += [h.make_node("MatMul", [x, w(j)], [f"{prefix}m{j}"]),
                  h.make_node("Add", [f"{prefix}m{j}", b(j)], [f"{prefix}a{j}"]),
                  h.make_node("Relu", [f"{prefix}a{j}"], [f"{prefix}r{j}"])]
        x = f"{prefix}r{j}"
    return nodes, x

def model(g):
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]); m.ir_version = 8
    onnx.checker.check_model(m); return m

def flat():
    inits, nodes, x = [], [], "x"
    for l in range(L):
        for j in range(J):
            inits += [nh.from_array(W[l, j], f"w{l}_{j}"), nh.from_array(B[l, j], f"b{l}_{j}")]
        n, x = layer(f"l{l}_", x, lambda j, l=l: f"w{l}_{j}", lambda j, l=l: f"b{l}_{j}")
        nodes += n
    nodes.append(h.make_node("Identity", [x], ["y"]))
    return model(h.make_graph(nodes, "flat", [xin], [yout], inits))

def stacks():
    return [nh.from_array(np.ascontiguousarray(W[:, j]), f"W{j}") for j in range(J)] + \
           [nh.from_array(np.ascontiguousarray(B[:, j]), f"B{j}") for j in range(J)]

def loop():
    body_nodes = []
    for j in range(J):
        body_nodes += [h.make_node("Gather", [f"W{j}", "i"], [f"w{j}"], axis=0),
                       h.make_node("Gather", [f"B{j}", "i"], [f"b{j}"], axis=0)]
    n, x = layer("", "xs", lambda j: f"w{j}", lambda j: f"b{j}")
    body_nodes += n + [h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Identity", [x], ["xs_out"])]
    body = h.make_graph(body_nodes, "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
         h.make_tensor_value_info("xs", T.FLOAT, [1, S, D])],
        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("xs_out", T.FLOAT, [1, S, D])])
    inits = stacks() + [nh.from_array(np.array(L, np.int64), "L"), nh.from_array(np.array(True), "true")]
    nodes = [h.make_node("Loop", ["L", "true", "x"], ["y"], body=body)]
    return model(h.make_graph(nodes, "loop", [xin], [yout], inits))

def scan():
    n, x = layer("", "xs", lambda j: f"w{j}", lambda j: f"b{j}")
    n.append(h.make_node("Identity", [x], ["xs_out"]))
    ins = [h.make_tensor_value_info("xs", T.FLOAT, [1, S, D])] + \
          [h.make_tensor_value_info(f"w{j}", T.FLOAT, [D, D]) for j in range(J)] + \
          [h.make_tensor_value_info(f"b{j}", T.FLOAT, [D]) for j in range(J)]
    body = h.make_graph(n, "body", ins, [h.make_tensor_value_info("xs_out", T.FLOAT, [1, S, D])])
    nodes = [h.make_node("Scan", ["x"] + [f"W{j}" for j in range(J)] + [f"B{j}" for j in range(J)], ["y"],
                         body=body, num_scan_inputs=2 * J)]
    return model(h.make_graph(nodes, "scan", [xin], [yout], stacks()))

def loop_const():
    # Timing reference only (its output differs): the Loop with layer 0's
    # weights as initializers of the body, so no iteration reads a stack.
    body_inits = [nh.from_array(W[0, j], f"w{j}") for j in range(J)] + \
                 [nh.from_array(B[0, j], f"b{j}") for j in range(J)]
    n, x = layer("", "xs", lambda j: f"w{j}", lambda j: f"b{j}")
    n += [h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Identity", [x], ["xs_out"])]
    body = h.make_graph(n, "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
         h.make_tensor_value_info("xs", T.FLOAT, [1, S, D])],
        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("xs_out", T.FLOAT, [1, S, D])],
        body_inits)
    inits = [nh.from_array(np.array(L, np.int64), "L"), nh.from_array(np.array(True), "true")]
    nodes = [h.make_node("Loop", ["L", "true", "x"], ["y"], body=body)]
    return model(h.make_graph(nodes, "loopconst", [xin], [yout], inits))

def weights_of(l):
    # A branch that outputs layer l's 16 weights, held as its own initializers.
    names = [f"w{j}" for j in range(J)] + [f"b{j}" for j in range(J)]
    inits = [nh.from_array(W[l, j], f"w{j}_l{l}") for j in range(J)] + \
            [nh.from_array(B[l, j], f"b{j}_l{l}") for j in range(J)]
    nodes = [h.make_node("Identity", [i.name], [f"{n}_of{l}"]) for i, n in zip(inits, names)]
    outs = [h.make_tensor_value_info(f"{n}_of{l}", T.FLOAT, [D, D] if n[0] == "w" else [D]) for n in names]
    return h.make_graph(nodes, f"weights{l}", [], outs, inits)

def select_weights(lo, hi):
    # Layers lo..hi-1 as a binary tree of Ifs on the iteration number.
    if hi - lo == 1:
        return weights_of(lo)
    mid = (lo + hi) // 2
    outs = [f"w{j}_in{lo}_{hi}" for j in range(J)] + [f"b{j}_in{lo}_{hi}" for j in range(J)]
    nodes = [h.make_node("Less", ["i", f"mid{lo}_{hi}"], [f"low{lo}_{hi}"]),
             h.make_node("If", [f"low{lo}_{hi}"], outs,
                         then_branch=select_weights(lo, mid), else_branch=select_weights(mid, hi))]
    vouts = [h.make_tensor_value_info(n, T.FLOAT, [D, D] if n[0] == "w" else [D]) for n in outs]
    return h.make_graph(nodes, f"select{lo}_{hi}", [], vouts, [nh.from_array(np.array(mid, np.int64), f"mid{lo}_{hi}")])

def loop_switch():
    # The Loop choosing each iteration's weights with Ifs whose branches hold
    # them as initializers (no stack, no Gather): is an If output a view?
    sel = select_weights(0, L)
    n, x = layer("", "xs", lambda j: sel.output[j].name, lambda j: sel.output[J + j].name)
    n = list(sel.node) + n + [h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Identity", [x], ["xs_out"])]
    body = h.make_graph(n, "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
         h.make_tensor_value_info("xs", T.FLOAT, [1, S, D])],
        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("xs_out", T.FLOAT, [1, S, D])],
        list(sel.initializer))
    inits = [nh.from_array(np.array(L, np.int64), "L"), nh.from_array(np.array(True), "true")]
    nodes = [h.make_node("Loop", ["L", "true", "x"], ["y"], body=body)]
    return model(h.make_graph(nodes, "loopswitch", [xin], [yout], inits))

sess = {}
# "nopack": the flat graph with ONNX Runtime's weight pre-packing switched
# off, which is what every kernel of a body whose weights are not constant
# initializers gets (ORT pre-packs only constant initializers).
for name, m in [("flat", flat()), ("nopack", flat()), ("loop", loop()), ("scan", scan()), ("switch", loop_switch()), ("loopconst", loop_const())]:
    o = ort.SessionOptions(); o.intra_op_num_threads = 1
    if name == "nopack":
        o.add_session_config_entry("session_state.disable_prepacking", "1")
    sess[name] = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
x = rng.standard_normal((1, S, D)).astype(np.float32)
def inputs(k):
    return {"x": x}
ref = sess["flat"].run(None, {"x": x})[0]
for k, s in sess.items():
    if k == "loopconst":
        continue
    assert np.allclose(s.run(None, inputs(k))[0], ref, rtol=1e-4, atol=1e-5), k
t = {k: [] for k in sess}
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 400
for k in sess:
    for _ in range(30): sess[k].run(None, inputs(k))
for r in range(runs):
    order = list(sess) if r % 2 == 0 else list(sess)[::-1]
    for k in order:
        f = inputs(k); a = time.perf_counter(); sess[k].run(None, f); t[k].append(time.perf_counter() - a)
med = {k: np.median(v) * 1e6 for k, v in t.items()}
print(f"L={L} D={D} tokens={S}, {J} MatMul+Add+Relu per layer, 16 weights per layer, {runs} interleaved runs")
for k in sess: print(f"  {k:9s} median {med[k]:8.1f} us  /flat {med[k]/med['flat']:.3f}")
print(f"  per iteration: nopack - flat {(med['nopack']-med['flat'])/L:.1f} us, loop - flat {(med['loop']-med['flat'])/L:.1f} us, loopconst - flat {(med['loopconst']-med['flat'])/L:.1f} us, scan - flat {(med['scan']-med['flat'])/L:.1f} us, switch - flat {(med['switch']-med['flat'])/L:.1f} us")
