"""Peer for `eexc fit`: the same job done with ONNX Runtime + scikit-learn.

Usage: python bench/fit/peer_sklearn.py MODEL.onnx TRAIN_X.npy TEST_X.npy T1,T2,...

For each exit tensor (4-D, pooled by global average, as eexc's gap-linear head does):
ONNX Runtime computes the features and the full model's prediction on the training rows;
scikit-learn's LogisticRegression (lbfgs, multinomial) is fitted to that prediction, with
its L2 strength chosen on a held-out 20% from the same grid eexc uses, then refitted on
all rows. (scikit-learn takes hard targets; eexc fits the full model's softmax.) Prints
the wall time of the whole job (features + fits) and each head's agreement with the full
model on the test rows.
"""

import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.linear_model import LogisticRegression

GRID = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def features_and_prediction(model_path, tensors, x):
    model = onnx.load(model_path)
    for t in tensors:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = s.run(None, {s.get_inputs()[0].name: x})
    pred = out[0].argmax(axis=1)
    feats = [o.mean(axis=(2, 3)) for o in out[1:]]
    return feats, pred


def main():
    model, train, test, at = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    x, xt = np.load(train), np.load(test)
    t0 = time.perf_counter()
    feats, pred = features_and_prediction(model, at, x)
    rng = np.random.default_rng(0)
    held = np.zeros(len(x), dtype=bool)
    held[rng.permutation(len(x))[: len(x) // 5]] = True
    heads = []
    for f in feats:
        best = None
        for lam in GRID:
            # eexc: mean CE + λ/2 ||W||²  ==  sklearn: C Σ CE + 1/2 ||W||² with C = 1/(λ n)
            clf = LogisticRegression(C=1.0 / (lam * (~held).sum()), max_iter=300)
            clf.fit(f[~held], pred[~held])
            agree = np.mean(clf.predict(f[held]) == pred[held])
            if best is None or agree > best[0]:
                best = (agree, lam)
        clf = LogisticRegression(C=1.0 / (best[1] * len(x)), max_iter=300).fit(f, pred)
        heads.append((best[1], clf))
    elapsed = time.perf_counter() - t0
    ft, pt = features_and_prediction(model, at, xt)
    print(f"onnxruntime + scikit-learn: {elapsed:.2f} s for features and {len(at)} heads x {len(GRID)} L2 values + refit")
    for t, (lam, clf), f in zip(at, heads, ft):
        print(f"  {t}: L2 {lam:g}, test agreement with the full model {np.mean(clf.predict(f) == pt):.4f}")


if __name__ == "__main__":
    main()
