"""Referee for `eexc insert-exits --mode compact` (per-row exits at any batch size).

Usage:
    python tests/python/check_compact.py --original ORIG.onnx --multi MULTI.onnx --if IF.onnx
        --compact COMPACT.onnx [--batches 1,2,7,64] [--seed 0] [--rtol 1e-5] [--band 1e-5]
        [--int-high 4]

All three emitted models come from the same options (same exits, heads and seed).
The contract: COMPACT has IF's inputs (the original ones plus the threshold and
temperature knobs) and IF's outputs (the original prediction plus `exit_index`, int64
[N]). Row r of a batch gets exactly what the batch-1 IF model gives for row r alone:
the same exit index and the same prediction (to --rtol relative to the largest
magnitude). Rows whose confidence is within --band of the threshold are not used.

Checks, each printed as `ok: NAME: detail` or `FAIL: NAME: reason`:
  checker+ort    onnx.checker full_check on COMPACT; it runs in ORT
  interface      COMPACT's input and output names equal IF's
  mixed-B        for each batch size B: thresholds placed between the rows'
                 confidences (read off MULTI's exit logits) so that rows leave at
                 different exits; every row equals the batch-1 IF model on that row;
                 for B >= 7 at least two different exits must occur
  all-exit       thresholds 0: every row equals batch-1 IF (exit 1 unless a
                 never-exit class holds it back)
  none-exit      thresholds above 1: every row gets the original model's output and
                 exit index K+1

Ends with `N passed, M failed`; exit 0 when nothing failed, 1 otherwise, 2 when the
files cannot be used.
"""

import argparse
import sys

import numpy as np

import eexc_ort
from eexc_ort import confidence, random_feeds, real_inputs, threshold_knobs

ABOVE = 1.5


class Referee(eexc_ort.Referee):
    def __init__(self, args):
        super().__init__(args, ("original", "multi", "if_", "compact"), "compact", "compact")

    def real_inputs(self):
        return real_inputs(self.models["original"])

    def feeds(self, batch):
        return random_feeds(self.models["original"], self.rng, batch, self.args.int_high, row_offsets=True)

    def knobs(self, thresholds):
        return threshold_knobs(self.exits, thresholds)

    def confidences(self, feeds):
        mo = self.run("multi", feeds)
        return [confidence(e["confidence"], mo[e["logits_output"]] / e["temperature"]) for e in self.exits]

    def prediction_name(self):
        return self.sessions["original"].get_outputs()[0].name

    def compare_rows(self, name, feeds, thresholds, batch, need_mix):
        """Every row of COMPACT equals the batch-1 IF model on that row alone."""
        knobs = self.knobs(thresholds)
        got = self.run("compact", {**feeds, **knobs})
        pred, idx = got[self.prediction_name()], got["exit_index"]
        if idx.shape != (batch,) or pred.shape[0] != batch:
            return self.report(name, False, f"outputs have {pred.shape[0]} rows and exit_index shape "
                                            f"{idx.shape}, want {batch} rows")
        conf = self.confidences(feeds)
        worst = 0.0
        for r in range(batch):
            row = {k: v[r:r + 1] for k, v in feeds.items()}
            want = self.run("if_", {**row, **knobs})
            want_pred, want_idx = want[self.prediction_name()], want["exit_index"]
            near = any(abs(c[r] - t) < self.args.band for c, t in zip(conf, thresholds))
            if want_idx[0] != idx[r]:
                if near:
                    continue
                return self.report(name, False, f"row {r}: exit {idx[r]}, batch-1 IF says {want_idx[0]}")
            scale = max(float(np.abs(want_pred).max()), 1e-30)
            rel = float(np.abs(pred[r:r + 1].astype(np.float64) - want_pred).max()) / scale
            worst = max(worst, rel)
            if rel > self.args.rtol:
                return self.report(name, False, f"row {r}: prediction differs by {rel:.2e} relative "
                                                f"(> {self.args.rtol:g})")
        hist = np.bincount(idx, minlength=len(self.exits) + 2)[1:].tolist()
        if need_mix and np.count_nonzero(hist) < 2:
            return self.report(name, False, f"rows did not mix exits (histogram {hist})")
        self.report(name, True, f"{batch} rows, exits 1..{len(self.exits) + 1}: {hist}, "
                                f"worst relative difference {worst:.1e}")

    def mixed_thresholds(self, conf, batch):
        """Per exit, a threshold halfway between two rows' confidences, so that
        about half of the rows still here leave; no row sits on a threshold."""
        thresholds = []
        alive = np.ones(batch, dtype=bool)
        for c in conf:
            values = np.unique(c[alive])
            if len(values) == 0:
                t = ABOVE
            elif len(values) == 1:
                # One row (or all alike): it leaves here or not, at random.
                t = float(values[0]) + (0.05 if self.rng.random() < 0.5 else -0.05)
            else:
                mid = len(values) // 2
                t = float(values[mid - 1] + values[mid]) / 2
            thresholds.append(t)
            alive &= c < t
        return thresholds

    def main(self):
        if not self.tally.checker(self.models["compact"]):
            return self.finish()
        want_in = [i.name for i in self.models["if_"].graph.input]
        got_in = [i.name for i in self.models["compact"].graph.input]
        want_out = [o.name for o in self.models["if_"].graph.output]
        got_out = [o.name for o in self.models["compact"].graph.output]
        self.report("interface", want_in == got_in and want_out == got_out,
                    f"inputs {got_in[:3]}..., outputs {got_out}")
        k = len(self.exits)
        first = self.real_inputs()[0].type.tensor_type.shape.dim
        if first and first[0].HasField("dim_value"):
            fixed = first[0].dim_value
            print(f"note: the model's batch is fixed at {fixed}; --batches {self.args.batches} -> [{fixed}]")
            self.args.batches = [fixed]
        for batch in self.args.batches:
            feeds = self.feeds(batch)
            conf = self.confidences(feeds)
            self.compare_rows(f"mixed-{batch}", feeds, self.mixed_thresholds(conf, batch), batch,
                              need_mix=batch >= 7)
        batch = max(self.args.batches)
        feeds = self.feeds(batch)
        self.compare_rows("all-exit", feeds, [0.0] * k, batch, need_mix=False)
        got = self.run("compact", {**feeds, **self.knobs([ABOVE] * k)})
        want = self.run("original", feeds)
        name = self.prediction_name()
        scale = max(float(np.abs(want[name]).max()), 1e-30)
        rel = float(np.abs(got[name].astype(np.float64) - want[name]).max()) / scale
        ok = rel <= self.args.rtol and bool((got["exit_index"] == k + 1).all())
        self.report("none-exit", ok, f"{batch} rows: exit indices {sorted(set(got['exit_index'].tolist()))}, "
                                     f"worst relative difference to the original {rel:.1e}")
        return self.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True)
    ap.add_argument("--multi", required=True)
    ap.add_argument("--if", dest="if_", required=True)
    ap.add_argument("--compact", required=True)
    ap.add_argument("--batches", default="1,2,7,64", help="comma-separated batch sizes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--band", type=float, default=1e-5)
    ap.add_argument("--int-high", type=int, default=4, help="integer inputs are drawn from [0, N)")
    args = ap.parse_args()
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error("--batches: expected comma-separated integers")
    try:
        ref = Referee(args)
    except Exception as e:  # noqa: BLE001 - report any unreadable input as usage error
        print(f"cannot read models: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return ref.main()


if __name__ == "__main__":
    sys.exit(main())
