"""An SDN-style post-hoc early-exit peer (Kaya et al., "Shallow-Deep Networks", ICML 2019,
in its post-hoc form): the backbone frozen, a global-average-pool + linear head at each cut,
trained with the labels; one confidence threshold shared by every head, picked on the
calibration rows as the one that saves the most FLOPs with an accuracy drop of at most
--max-drop there. No guarantee.

Usage:
  python bench/peer/sdn_peer.py MODEL.onnx --at T1,T2,... --train X Y --calib X Y
         --max-drop 0.01 --out DIR [--eexc target/debug/eexc]

Writes DIR/NAME_heads.npz (the heads, in the keys `eexc insert-exits --weights` reads),
DIR/NAME.onnx (the peer's model, emitted by `eexc insert-exits` so that both sides run the
same graph structure and only heads and thresholds differ) and DIR/NAME.json (the
threshold and what it gave on the calibration rows); NAME is --name (default peer).
`--pool grid` gives the peer eexc's 2×2-grid heads instead of SDN's global average pool,
to separate what the heads buy from what the calibration buys.

The heads are multinomial logistic regressions on standardised pooled features, fitted by
full-batch gradient descent with Nesterov momentum on mean cross-entropy + λ/2 ‖W‖², λ
picked from 1e-5…1e-1 by accuracy on a held-out 20% of the training rows, then refitted on
every training row. FLOPs come from the cost table eexc writes into the model's metadata
(the same numbers eexc's own calibration uses).
"""

import argparse
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

LAMBDAS = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def grid_pool(o):
    """The 2×2 grid of average pools eexc's grid-linear head takes (AveragePool with kernel
    ceil(n/2) and stride max(1, n − kernel) per side), flattened channel-major."""
    n, c, h, w = o.shape
    kh, kw = (h + 1) // 2, (w + 1) // 2
    sh, sw = max(1, h - kh), max(1, w - kw)
    cells = [[o[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].mean(axis=(2, 3)) for j in range(2)] for i in range(2)]
    return np.stack([np.stack(row, axis=-1) for row in cells], axis=-2).reshape(n, c * 4)


def pooled_features(model_path, tensors, x, pool="gap"):
    """Pooled features at each cut and the full model's logits."""
    model = onnx.load(model_path)
    final = model.graph.output[0].name
    for t in tensors:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [final] + list(tensors)
    out = s.run(names, {s.get_inputs()[0].name: x})
    feats = []
    for o in out[1:]:
        if o.ndim == 4 and pool == "grid":
            feats.append(grid_pool(o))
        else:
            feats.append(o.mean(axis=tuple(range(2, o.ndim))) if o.ndim > 2 else o)
    return feats, out[0]


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(f, y, classes, lam, steps=3000):
    """Mean cross-entropy + λ/2 ‖W‖² by Nesterov gradient descent (the loss is convex)."""
    n, d = f.shape
    w = np.zeros((d, classes))
    b = np.zeros(classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(classes)[y]
    # Step from the Lipschitz constant of the gradient (standardised features).
    lr = 1.0 / (0.5 * np.linalg.norm(f, 2) ** 2 / n + lam + 1e-12)
    for _ in range(steps):
        wl, bl = w + 0.9 * vw, b + 0.9 * vb
        g = (softmax(f @ wl + bl) - onehot) / n
        gw, gb = f.T @ g + lam * wl, g.sum(axis=0)
        vw, vb = 0.9 * vw - lr * gw, 0.9 * vb - lr * gb
        w, b = w + vw, b + vb
    return w, b


def train_head(f, y, classes, rng):
    mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-6
    z = (f - mu) / sd
    held = np.zeros(len(f), dtype=bool)
    held[rng.permutation(len(f))[: len(f) // 5]] = True
    best = None
    for lam in LAMBDAS:
        w, b = fit_softmax(z[~held], y[~held], classes, lam)
        acc = ((z[held] @ w + b).argmax(axis=1) == y[held]).mean()
        if best is None or acc > best[0]:
            best = (acc, lam)
    w, b = fit_softmax(z, y, classes, best[1])
    # Back to raw features: logits = (x − μ)/σ · W + b.
    w_raw = w / sd[:, None]
    b_raw = b - mu @ w_raw
    return np.ascontiguousarray(w_raw.T, dtype=np.float32), b_raw.astype(np.float32), best[1]


def exits_at(probs, threshold):
    """Exit (0-based; K = the full model) of each row at one shared threshold."""
    k = len(probs)
    exit_of = np.full(len(probs[0]), k)
    for e in reversed(range(k)):
        exit_of[probs[e].max(axis=1) >= threshold] = e
    return exit_of


def path_flops(meta):
    c = meta["cost"]
    cum, total = [], 0.0
    for s, h, d in zip(c["stages"], c["heads"], c["decisions"]):
        total += s["flops"] + h["flops"] + d["flops"]
        cum.append(total)
    return np.array(cum + [total + c["final_stage"]["flops"]]), c["original"]["flops"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--at", required=True)
    ap.add_argument("--train", nargs=2, required=True)
    ap.add_argument("--calib", nargs=2, required=True)
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eexc", default="target/debug/eexc")
    ap.add_argument("--pool", choices=["gap", "grid"], default="gap",
                    help="the heads' pooling: global average (SDN's GAP + linear), or eexc's 2×2 grid")
    ap.add_argument("--name", default="peer", help="file stem of the outputs")
    a = ap.parse_args()
    at = a.at.split(",")
    x, y = np.load(a.train[0]), np.load(a.train[1]).astype(np.int64)
    xc, yc = np.load(a.calib[0]), np.load(a.calib[1]).astype(np.int64)
    feats, full = pooled_features(a.model, at, x, a.pool)
    classes = full.shape[1]
    rng = np.random.default_rng(0)
    heads = [train_head(f, y, classes, rng) for f in feats]
    weights = {}
    for k, (w, b, _) in enumerate(heads, 1):
        weights[f"exit{k}.weight"] = w
        weights[f"exit{k}.bias"] = b
    npz = f"{a.out}/{a.name}_heads.npz"
    np.savez(npz, **weights)

    # The peer's model with a placeholder threshold, for its cost table.
    peer = f"{a.out}/{a.name}.onnx"
    head = "grid-linear" if a.pool == "grid" else "gap-linear"
    emit = lambda t: subprocess.run(  # noqa: E731
        [a.eexc, "insert-exits", a.model, "--at", a.at, "--head", head, "--weights", npz, "--threshold",
         f"{t:.6f}", "--temperature", "1", "-o", peer],
        check=True, capture_output=True)
    emit(2.0)
    meta = json.loads(next(p.value for p in onnx.load(peer).metadata_props if p.key == "eexc.exits"))
    flops, original = path_flops(meta)

    fc, full_c = pooled_features(a.model, at, xc, a.pool)
    probs = [softmax(f @ w.T + b) for f, (w, b, _) in zip(fc, heads)]
    preds = [p.argmax(axis=1) for p in probs] + [full_c.argmax(axis=1)]
    full_acc = (preds[-1] == yc).mean()
    best = None
    for t in np.round(np.linspace(0.0, 1.0, 1001), 3)[::-1]:
        exit_of = exits_at(probs, t)
        pred = np.choose(exit_of, preds)
        drop = full_acc - (pred == yc).mean()
        saving = 1.0 - flops[exit_of].mean() / original
        if drop <= a.max_drop + 1e-12 and (best is None or saving > best["calibration_saving"]):
            best = {"threshold": float(t), "calibration_drop": float(drop), "calibration_saving": float(saving),
                    "exit_shares": [float((exit_of == e).mean()) for e in range(len(at) + 1)]}
    emit(best["threshold"])
    best["lambdas"] = [h[2] for h in heads]
    best["heads_train_accuracy"] = [float(((f @ w.T + b).argmax(axis=1) == y).mean()) for f, (w, b, _) in zip(feats, heads)]
    json.dump(best, open(f"{a.out}/{a.name}.json", "w"), indent=1)
    print(json.dumps(best))


if __name__ == "__main__":
    sys.exit(main())
