"""What an ONNX Runtime `If` costs by itself (CPU, default session options,
1 thread): a chain of N Relu nodes on a [1, C] tensor, run flat and inside
the else branch of an If whose condition is a graph input (false), with the
mem pattern on (default) and off. Prints the median extra time of the If
form per N: the fixed cost of the call and what it adds per node.

usage: if_cost.py [--runs R]
"""

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def chain(n, src, prefix):
    nodes, cur = [], src
    for i in range(n):
        out = f"{prefix}{i}"
        nodes.append(helper.make_node("Relu", [cur], [out]))
        cur = out
    return nodes, cur


def model(n, wrapped, width):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    if not wrapped:
        nodes, last = chain(n, "x", "r")
        nodes.append(helper.make_node("Identity", [last], ["y"]))
        g = helper.make_graph(nodes, "flat", [x], [y])
    else:
        c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, width])])
        nodes, last = chain(n, "x", "e")
        nodes.append(helper.make_node("Identity", [last], ["e_out"]))
        else_g = helper.make_graph(nodes, "else", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [1, width])])
        g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                              "wrapped", [x, c], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def session(m, mem):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_mem_pattern = mem
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--width", type=int, default=64)
    a = ap.parse_args()
    x = np.ones((1, a.width), np.float32)
    print(f"Relu chain on [1, {a.width}], {a.runs} interleaved runs, medians in us")
    for mem in (True, False):
        for n in (1, 10, 50, 200):
            flat, wrapped = session(model(n, False, a.width), mem), session(model(n, True, a.width), mem)
            feeds_w = {"x": x, "c": np.array(False)}
            for _ in range(100):
                flat.run(None, {"x": x})
                wrapped.run(None, feeds_w)
            tf, tw = [], []
            for r in range(a.runs):
                for s, f, out in ((flat, {"x": x}, tf), (wrapped, feeds_w, tw))[:: 1 if r % 2 else -1]:
                    t0 = time.perf_counter()
                    s.run(None, f)
                    out.append((time.perf_counter() - t0) * 1e6)
            mf, mw = statistics.median(tf), statistics.median(tw)
            print(f"mem_pattern={str(mem):5} N={n:4}  flat {mf:8.2f}  in If {mw:8.2f}  If adds {mw - mf:7.2f}", flush=True)


if __name__ == "__main__":
    main()
