"""Referee for `eexc insert-exits --mode loop` (repeated layers folded into one ONNX Loop).

Usage:
    python tests/python/check_loop.py --original ORIG.onnx --if IF.onnx --loop LOOP.onnx
        [--batch 4] [--trials 24] [--seed 0] [--rtol 1e-5] [--int-high 4]

IF is the `if` model with exits at the outputs of repeated layers 1..L-1 and the same
heads (same --seed or weights) as LOOP. The contract: LOOP has IF's inputs and outputs;
its main graph holds exactly one Loop node; every run gives IF's exit index and IF's
prediction (to --rtol relative to the largest magnitude), for any thresholds and
temperatures fed; with every threshold above 1 it gives the original model's outputs
and exit index L.

Checks, each printed as `ok: NAME: detail` or `FAIL: NAME: reason`:
  checker+ort     onnx.checker full_check on LOOP; ORT loads it
  structure       one Loop in the main graph; inputs and outputs named as IF's; every
                  initializer (of any graph) is read (the layers' own weights left with
                  the stacking), and some output of every node
  above-one       thresholds 1.5: the original's outputs, exit index L
  zero            thresholds 0: IF's outputs (exit 1)
  random          --trials runs with thresholds ~ U[0, 1] per exit (temperatures
                  log-uniform in [0.5, 2] on odd trials): IF's outputs; the exits seen
                  are listed

Ends with `N passed, M failed`; exit 0 when nothing failed, 1 otherwise, 2 when the
files cannot be used.
"""

import argparse
import sys

import numpy as np

import eexc_ort
from eexc_ort import random_feeds, threshold_knobs

ABOVE = 1.5


class Referee(eexc_ort.Referee):
    def __init__(self, args):
        super().__init__(args, ("original", "if_", "loop"), "loop", "loop")

    def feeds(self):
        return random_feeds(self.models["original"], self.rng, self.args.batch, self.args.int_high, row_offsets=False)

    def knobs(self, thresholds, temperatures=None):
        return threshold_knobs(self.exits, thresholds, temperatures)

    def same(self, got, want):
        """Worst relative difference over the outputs, or None when exit indices differ."""
        if not np.array_equal(got["exit_index"], want["exit_index"]):
            return None
        worst = 0.0
        for name, w in want.items():
            if name == "exit_index":
                continue
            scale = max(float(np.abs(w).max()), 1e-30)
            worst = max(worst, float(np.abs(got[name].astype(np.float64) - w).max()) / scale)
        return worst

    def compare(self, name, feeds, knobs, against="if_", want_index=None):
        got = self.run("loop", {**feeds, **knobs})
        want = self.run(against, {**feeds, **knobs})
        if against == "original":
            want = {**want, "exit_index": np.full_like(got["exit_index"], want_index)}
        rel = self.same(got, want)
        if rel is None:
            self.report(name, False, f"exit indices {got['exit_index'].tolist()}, want "
                                     f"{want['exit_index'].tolist()}")
            return None
        if rel > self.args.rtol:
            self.report(name, False, f"outputs differ by {rel:.2e} relative (> {self.args.rtol:g})")
            return None
        return got, rel

    def main(self):
        if not self.tally.checker(self.models["loop"]):
            return self.finish()
        g = self.models["loop"].graph
        loops = [n for n in g.node if n.op_type == "Loop"]
        same_io = ([i.name for i in g.input] == [i.name for i in self.models["if_"].graph.input]
                   and [o.name for o in g.output] == [o.name for o in self.models["if_"].graph.output])
        read = set()
        graphs = []

        def reads(graph):
            graphs.append(graph)
            read.update(o.name for o in graph.output)
            for n in graph.node:
                read.update(n.input)
                for a in n.attribute:
                    for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        reads(sub)
        reads(g)
        unread = [t.name for sub in graphs for t in sub.initializer if t.name not in read]
        dead = [n.name or n.op_type for sub in graphs for n in sub.node if not any(o in read for o in n.output)]
        self.report("structure", len(loops) == 1 and same_io and not unread and not dead,
                    f"{len(loops)} Loop node(s) in the main graph, interface as IF: {same_io}, "
                    f"initializers nothing reads: {unread[:5]}, nodes nothing reads: {dead[:5]}")
        k = len(self.exits)
        feeds = self.feeds()
        res = self.compare("above-one", feeds, self.knobs([ABOVE] * k), against="original", want_index=k + 1)
        if res:
            self.report("above-one", True, f"exit index {k + 1}, worst relative difference {res[1]:.1e}")
        res = self.compare("zero", feeds, self.knobs([0.0] * k))
        if res:
            self.report("zero", True, f"exit indices {sorted(set(res[0]['exit_index'].tolist()))}, "
                                      f"worst relative difference {res[1]:.1e}")
        seen, worst = set(), 0.0
        for trial in range(self.args.trials):
            feeds = self.feeds()
            thresholds = self.rng.uniform(0, 1, size=k).tolist()
            temps = np.exp(self.rng.uniform(np.log(0.5), np.log(2), size=k)).tolist() if trial % 2 else None
            res = self.compare(f"random (trial {trial})", feeds, self.knobs(thresholds, temps))
            if res is None:
                return self.finish()
            seen.update(res[0]["exit_index"].tolist())
            worst = max(worst, res[1])
        self.report("random", True, f"{self.args.trials} trials equal IF, exits seen {sorted(seen)}, "
                                    f"worst relative difference {worst:.1e}")
        return self.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True)
    ap.add_argument("--if", dest="if_", required=True)
    ap.add_argument("--loop", required=True)
    ap.add_argument("--batch", type=int, default=4, help="value of symbolic dims")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--int-high", type=int, default=4, help="integer inputs are drawn from [0, N)")
    args = ap.parse_args()
    try:
        ref = Referee(args)
    except Exception as e:  # noqa: BLE001 - report any unreadable input as usage error
        print(f"cannot read models: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return ref.main()


if __name__ == "__main__":
    sys.exit(main())
