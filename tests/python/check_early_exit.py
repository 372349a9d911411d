"""Referee for a calibrated early-exit model on held-out data, in ONNX Runtime.

Usage:
    python tests/python/check_early_exit.py --original O.onnx --ee EE.onnx --data X.npy
        [--labels Y.npy] [--max-drop 0.01] [--predictions P.npy]

Runs EE one row at a time (as a latency-bound service would, and as the calibration
assumed) and the original on all rows. Checks, each `ok:`/`FAIL:`:
  accuracy-drop   (with --labels and --max-drop) original accuracy − EE accuracy <= max-drop
  tract-vs-ort    (with --predictions: eexc eval's int64 [rows, 2] file of prediction and
                  exit index, computed by tract) every row's prediction and exit index equal
                  ORT's
Also prints the exit histogram and the agreement with the original.
"""

import argparse
import sys

import numpy as np

from eexc_ort import Tally, run, session


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True)
    ap.add_argument("--ee", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels")
    ap.add_argument("--max-drop", type=float)
    ap.add_argument("--predictions")
    a = ap.parse_args()
    x = np.load(a.data)
    orig, ee = session(a.original), session(a.ee)
    name = orig.get_inputs()[0].name
    full = run(orig, {name: x})[orig.get_outputs()[0].name].reshape(len(x), -1).argmax(axis=1)
    pred, exits = [], []
    first = ee.get_outputs()[0].name
    for r in range(len(x)):
        out = run(ee, {name: x[r:r + 1]})
        pred.append(int(out[first].reshape(1, -1).argmax(axis=1)[0]))
        exits.append(int(out["exit_index"][0]))
    pred, exits = np.array(pred), np.array(exits)
    tally = Tally()
    print(f"exit histogram {np.bincount(exits)[1:].tolist()}; agreement with the original "
          f"{np.mean(pred == full):.4f}")
    if a.labels:
        y = np.load(a.labels)
        acc_full, acc_ee = float(np.mean(full == y)), float(np.mean(pred == y))
        drop = acc_full - acc_ee
        if a.max_drop is not None:
            tally.report("accuracy-drop", drop <= a.max_drop,
                         f"original {acc_full:.4f}, early-exit {acc_ee:.4f}, drop {drop:.4f} "
                         f"(at most {a.max_drop})")
        else:
            print(f"accuracy: original {acc_full:.4f}, early-exit {acc_ee:.4f}")
    if a.predictions:
        p = np.load(a.predictions)
        same_pred = p[:, 0] == pred
        same_exit = p[:, 1] == exits
        bad = np.flatnonzero(~(same_pred & same_exit))
        tally.report("tract-vs-ort", len(bad) == 0,
                     f"{len(x)} rows; differing rows: {bad[:10].tolist()}")
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
