"""What an ONNX Runtime `If` costs around real work (CPU, default session
options, 1 thread): a chain of N 3×3 Convs (C channels, H×W, weights as
initializers of the graph that runs them) flat, and in the else branch of
an If whose condition is computed (false) and whose branch reads the input
from the outer scope. Interleaved runs, medians. The companion of
if_cost.py (Relu chains): docs/quantized.md and docs/runtime-cost.md.

usage: if_conv_cost.py
"""

import numpy as np, onnx, onnxruntime as ort, time, sys
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng = np.random.default_rng(0)
def chain(n, c, hw, prefix=''):
    nodes, inits = [], []
    x = 'x'
    for i in range(n):
        w = prefix+f'w{i}'
        inits.append(nh.from_array((rng.standard_normal((c, c, 3, 3))*0.02).astype(np.float32), w))
        y = prefix+f'y{i}'
        nodes.append(h.make_node('Conv', [x, w], [y], pads=[1,1,1,1]))
        x = y
    return nodes, inits, x
def flat(n, c, hw):
    nodes, inits, out = chain(n, c, hw)
    nodes.append(h.make_node('Identity', [out], ['out']))
    g = h.make_graph(nodes, 'g', [h.make_tensor_value_info('x', T.FLOAT, [1, c, hw, hw])], [h.make_tensor_value_info('out', T.FLOAT, [1, c, hw, hw])], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid('', 17)])
def iff(n, c, hw):
    nodes, inits, out = chain(n, c, hw, 'b_')
    nodes.append(h.make_node('Identity', [out], ['else_out']))
    eb = h.make_graph(nodes, 'else', [], [h.make_tensor_value_info('else_out', T.FLOAT, [1, c, hw, hw])], inits)
    tb = h.make_graph([h.make_node('Identity', ['x'], ['then_out'])], 'then', [], [h.make_tensor_value_info('then_out', T.FLOAT, [1, c, hw, hw])])
    g = h.make_graph([h.make_node('ReduceMax', ['x'], ['m'], keepdims=0), h.make_node('Greater', ['m', 'big'], ['cond']), h.make_node('If', ['cond'], ['out'], then_branch=tb, else_branch=eb)], 'g',
        [h.make_tensor_value_info('x', T.FLOAT, [1, c, hw, hw])], [h.make_tensor_value_info('out', T.FLOAT, [1, c, hw, hw])], [nh.from_array(np.array(1e9, np.float32), 'big')])
    return h.make_model(g, opset_imports=[h.make_opsetid('', 17)])
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
for n, c, hw in [(10, 64, 28), (10, 256, 28), (10, 512, 28), (40, 64, 14)]:
    a = ort.InferenceSession(flat(n, c, hw).SerializeToString(), so, providers=['CPUExecutionProvider'])
    b = ort.InferenceSession(iff(n, c, hw).SerializeToString(), so, providers=['CPUExecutionProvider'])
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    for _ in range(5): a.run(None, {'x': x}); b.run(None, {'x': x})
    ta, tb = [], []
    for r in range(60):
        for s, l in ((a, ta), (b, tb)) if r % 2 else ((b, tb), (a, ta)):
            t = time.perf_counter(); s.run(None, {'x': x}); l.append(time.perf_counter() - t)
    ma, mb = np.median(ta)*1e6, np.median(tb)*1e6
    print(f"n={n} c={c} hw={hw}: flat {ma:.0f} us, in If {mb:.0f} us, diff {mb-ma:+.0f} us ({c*hw*hw*4/1e6:.1f} MB tensors)")
