"""Referee for the grid-linear, mix-linear and conv-grid heads: a multi-mode model's exit
logits against the head computed in numpy from the original model's exit tensor.

Usage: python tests/python/check_grid_head.py ORIGINAL.onnx MULTI.onnx [--rows 8] [--seed 0]

For each exit k of MULTI (metadata `eexc.exits`), the original model runs in ONNX Runtime
with the exit tensor as an extra output; numpy pools it: grid-linear over a 2x2 grid (per
side of n positions: windows [0, ceil(n/2)) and [n - ceil(n/2), n), which is what adaptive
average pooling to 2 gives), flattened channel-major (c, i, j); mix-linear the channel
means then the channel maxima (2C features); conv-grid first convolves the tensor with
MULTI's eexc_exit{k}_refine_weight (C x C x 3 x 3) and eexc_exit{k}_refine_bias, stride 2
and one position of zero padding on each side, applies ReLU, then pools as grid-linear.
It then applies
MULTI's initializers eexc_exit{k}_weight (classes x 4C) and eexc_exit{k}_bias; the result
must equal MULTI's eexc_exit_{k}_logits within 1e-4 relative. Prints `ok: ...` or
`FAIL: ...` per exit and exits 1 on any failure.
"""

import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def grid_pool(t):
    n, c, h, w = t.shape
    kh, kw = (h + 1) // 2, (w + 1) // 2
    rows = [(0, kh), (h - kh, h)]
    cols = [(0, kw), (w - kw, w)]
    out = np.empty((n, c, 2, 2), dtype=np.float64)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[:, :, i, j] = t[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out.reshape(n, c * 4)


def refine(t, weight, bias):
    """3x3 convolution, stride 2, zero padding 1, then ReLU, in float64."""
    n, c, h, w = t.shape
    oh, ow = (h + 1) // 2, (w + 1) // 2
    padded = np.zeros((n, c, h + 2, w + 2))
    padded[:, :, 1:h + 1, 1:w + 1] = t
    out = np.zeros((n, weight.shape[0], oh, ow)) + bias[None, :, None, None]
    for ky in range(3):
        for kx in range(3):
            window = padded[:, :, ky:ky + 2 * oh:2, kx:kx + 2 * ow:2]
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, ky, kx])
    return np.maximum(out, 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("multi")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    multi = onnx.load(a.multi)
    meta = json.loads(next(p.value for p in multi.metadata_props if p.key == "eexc.exits"))
    inits = {t.name: numpy_helper.to_array(t) for t in multi.graph.initializer}
    original = onnx.load(a.original)
    tensors = [e["tensor"] for e in meta["exits"]]
    for t in tensors:
        original.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    orig = ort.InferenceSession(original.SerializeToString(), so, providers=["CPUExecutionProvider"])
    emitted = ort.InferenceSession(a.multi, so, providers=["CPUExecutionProvider"])
    inp = orig.get_inputs()[0]
    shape = [a.rows if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(a.seed).standard_normal(shape).astype(np.float32)
    got_orig = dict(zip([o.name for o in orig.get_outputs()], orig.run(None, {inp.name: x})))
    got = dict(zip([o.name for o in emitted.get_outputs()], emitted.run(None, {inp.name: x})))
    failed = 0
    for e in meta["exits"]:
        k = e["index"]
        t = got_orig[e["tensor"]].astype(np.float64)
        if e["head"] == "grid-linear":
            feats = grid_pool(t)
        elif e["head"] == "conv-grid":
            w = inits[f"eexc_exit{k}_refine_weight"].astype(np.float64)
            feats = grid_pool(refine(t, w, inits[f"eexc_exit{k}_refine_bias"].astype(np.float64)))
        elif e["head"] == "mix-linear":
            feats = np.concatenate([t.mean(axis=(2, 3)), t.max(axis=(2, 3))], axis=1)
        else:
            print(f"FAIL: exit {k}: head {e['head']}, expected grid-linear, mix-linear or conv-grid")
            failed += 1
            continue
        want = feats @ inits[f"eexc_exit{k}_weight"].astype(np.float64).T + inits[f"eexc_exit{k}_bias"]
        have = got[e["logits_output"]]
        err = float(np.abs(have - want).max() / max(np.abs(want).max(), 1e-12))
        spatial = got_orig[e["tensor"]].shape[2:]
        if err <= 1e-4:
            print(f"ok: exit {k} ({e['tensor']}, {e['head']}, {spatial[0]}x{spatial[1]} map): "
                  f"max relative difference {err:.2e}")
        else:
            print(f"FAIL: exit {k} ({e['tensor']}): max relative difference {err:.2e}")
            failed += 1
    print(f"{len(meta['exits']) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
