"""Referee for `eexc fit`: how well fitted heads agree with the full model, measured in ONNX
Runtime on held-out data.

Usage:
    python tests/python/check_fit.py --multi MULTI.onnx --data X.npy [--labels Y.npy]
        [--min-agreement 0.6,0.8,0.9]

MULTI is `insert-exits --mode multi --weights HEADS.safetensors` on the original model: its
first output is the original prediction and `eexc_exit_k_logits` are the fitted heads' logits.
For each exit, prints the share of rows whose head argmax equals the full model's argmax
(and the accuracy against the labels when given); fails when an exit's agreement is below
its --min-agreement entry. Ends with `N passed, M failed`.
"""

import argparse
import sys

import numpy as np
import onnx

from eexc_ort import Tally, exits_metadata, run, session


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--multi", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels")
    ap.add_argument("--min-agreement", default="", help="comma-separated, one per exit")
    a = ap.parse_args()
    model = onnx.load(a.multi)
    exits = exits_metadata(model)["exits"]
    minimum = [float(v) for v in a.min_agreement.split(",")] if a.min_agreement else [0.0] * len(exits)
    if len(minimum) != len(exits):
        print(f"--min-agreement has {len(minimum)} values for {len(exits)} exits", file=sys.stderr)
        return 2
    x = np.load(a.data)
    y = np.load(a.labels) if a.labels else None
    sess = session(a.multi)
    name = sess.get_inputs()[0].name
    out = run(sess, {name: x})
    full = out[sess.get_outputs()[0].name].reshape(len(x), -1).argmax(axis=1)
    tally = Tally()
    if y is not None:
        print(f"full model: accuracy {np.mean(full == y):.4f} on {len(x)} rows")
    for e, need in zip(exits, minimum):
        pred = out[e["logits_output"]].argmax(axis=1)
        agree = float(np.mean(pred == full))
        acc = f", accuracy {np.mean(pred == y):.4f}" if y is not None else ""
        tally.report(f"exit {e['index']} ({e['tensor']})", agree >= need,
                     f"agreement with the full model {agree:.4f} (minimum {need}){acc}")
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
