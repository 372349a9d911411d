"""The peer for `eexc optimize`: ONNX Runtime's own graph optimizer, run
offline at a level that still writes standard ONNX, its result saved.

Usage: python peer_ort.py IN.onnx OUT.onnx [basic|extended]

Prints the seconds the optimization took (session creation, which is what
performs it) and the node counts before and after.
"""

import sys
import time

import onnx
import onnxruntime as ort

src, dst = sys.argv[1], sys.argv[2]
level = sys.argv[3] if len(sys.argv) > 3 else "basic"
o = ort.SessionOptions()
o.log_severity_level = 3
o.graph_optimization_level = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}[level]
o.optimized_model_filepath = dst
t = time.perf_counter()
ort.InferenceSession(src, o, providers=["CPUExecutionProvider"])
elapsed = time.perf_counter() - t
before = len(onnx.load(src, load_external_data=False).graph.node)
after = len(onnx.load(dst, load_external_data=False).graph.node)
print(f"ort-{level}: {elapsed:.3f} s, nodes {before} -> {after}")
