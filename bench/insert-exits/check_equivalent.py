"""Checks that eexc's and the peer's early-exit models behave alike in ONNX
Runtime: thresholds above 1 reproduce the original (exit_index K+1),
thresholds 0 take exit 1 (exit_index 1, a softmax row).

    python check_equivalent.py ORIGINAL.onnx EEXC.onnx PEER.onnx K
"""

import sys

import numpy as np
import onnx
import onnxruntime as ort


def knobs(path):
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name in inits and "threshold" in i.name]


def main():
    orig, eexc, peer, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ort.set_default_logger_severity(3)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    s0 = ort.InferenceSession(orig, providers=["CPUExecutionProvider"])
    name = s0.get_inputs()[0].name
    ref = s0.run(None, {name: x})[0]
    for label, path in (("eexc", eexc), ("peer", peer)):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        thresholds = knobs(path)
        assert len(thresholds) == k, f"{label}: {len(thresholds)} threshold inputs, expected {k}"
        never = {t: np.array(1.5, np.float32) for t in thresholds}
        y, idx = s.run(None, {name: x, **never})
        assert np.allclose(y, ref, rtol=1e-5, atol=1e-7), f"{label}: differs from the original"
        assert (idx == k + 1).all(), f"{label}: exit_index {idx}"
        always = {t: np.array(0.0, np.float32) for t in thresholds}
        y, idx = s.run(None, {name: x, **always})
        assert (idx == 1).all() and abs(float(y.sum()) - 1.0) < 1e-4, f"{label}: threshold 0"
        print(f"ok: {label}: equals the original when nothing exits; takes exit 1 at threshold 0")


if __name__ == "__main__":
    main()
