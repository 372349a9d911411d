"""eexc's certified early exits against the SDN-style peer (sdn_peer.py), side by side.

Usage:
  python bench/peer/compare.py MODEL.onnx --at T1,T2,... --data DIR --out DIR
         [--eexc target/debug/eexc] [--max-drop 0.01] [--heads auto,auto:flops,gap-linear]
         (a run: HEAD[:OBJECTIVE[:VARIANTS]], VARIANTS joined by '+', as compile --head-variants)

DIR holds train_x/train_y (heads), calib_x/calib_y (thresholds) and test_x/test_y (the
held-out test split), as .npy. For each HEAD[:OBJECTIVE] in --heads, runs

  eexc compile MODEL --data train_x --labels train_y --calib-data calib_x --calib-labels calib_y
       --at ... --head HEAD --objective OBJECTIVE --max-drop 1% (δ = 0.05)

then the peer twice (GAP + linear heads trained with labels, one threshold picked on the
calibration rows, no guarantee; and the same with eexc's 2×2-grid heads), and measures
every model on the test split with `eexc eval --baseline MODEL` in ONNX Runtime (1 thread,
batch 1, rows interleaved with the original; 3 runs). Prints a markdown table: the test
accuracy drop, the FLOP saving under the exit distribution the test rows took (the cost
model), the measured time saving (median of the runs) and the one the measured per-path
latencies predict.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def evaluate(eexc, model, original, data, repeats=3):
    """eval's report, with the measured time saving the median of `repeats` runs (a model
    that runs in tens of microseconds is at the mercy of the machine's load)."""
    reports = [json.loads(run([eexc, "eval", model, "--data", f"{data}/test_x.npy", "--labels",
                               f"{data}/test_y.npy", "--baseline", original, "--runtime", "ort", "--json"]))
               for _ in range(repeats)]
    ev = reports[0]
    ev["measured_time_savings"] = sorted(r["measured_time_saving"] for r in reports)
    ev["measured_time_saving"] = ev["measured_time_savings"][repeats // 2]
    return ev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--at", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eexc", default="target/debug/eexc")
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--heads", default="auto,auto:flops,gap-linear",
                    help="eexc runs: HEAD[:OBJECTIVE[:VARIANTS]] (compile --head HEAD --objective OBJECTIVE "
                         "--head-variants VARIANTS with '+' for ',', default time and compile's variants)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    d = a.data
    rows = []
    for run_spec in a.heads.split(","):
        head, _, rest = run_spec.partition(":")
        objective, _, variants = rest.partition(":")
        objective = objective or "time"
        stem = f"eexc_{head}_{objective}" + (f"_{variants}" if variants else "")
        out, report = f"{a.out}/{stem}.onnx", f"{a.out}/{stem}.json"
        extra = ["--head-variants", variants.replace("+", ",")] if variants else []
        run([a.eexc, "compile", a.model, "--data", f"{d}/train_x.npy", "--labels", f"{d}/train_y.npy",
             "--calib-data", f"{d}/calib_x.npy", "--calib-labels", f"{d}/calib_y.npy", "--at", a.at,
             "--head", head, "--objective", objective, "--max-drop", f"{100 * a.max_drop}%", "-o", out,
             "--report", report] + extra)
        rep = json.load(open(report))
        cal = rep["calibration"]
        kept = [f"{v['tensor']} {v['head']}" for v in rep["exits_tried"] if v["kept"]] or a.at.split(",")
        tried = f" (variants {variants.replace('+', ', ')})" if variants else ""
        rows.append((f"eexc compile, --head {head}{tried}, exits kept for {objective} ({', '.join(kept)})",
                     f"δ = {cal['delta']}, {cal['bound']}, {cal['thresholds_mode']}",
                     "/".join("never" if t > 1 else f"{t:.4f}" for t in cal["thresholds"]),
                     rep["savings"], evaluate(a.eexc, out, a.model, d)))
    # The peer as the issue defines it (GAP heads) last, so the ratios below are against it;
    # the peer with eexc's grid heads before it, to show what the heads alone buy.
    for pool, name in [("grid", "peer_grid"), ("gap", "peer")]:
        peer = json.loads(run([sys.executable, f"{HERE}/sdn_peer.py", a.model, "--at", a.at,
                               "--train", f"{d}/train_x.npy", f"{d}/train_y.npy",
                               "--calib", f"{d}/calib_x.npy", f"{d}/calib_y.npy", "--pool", pool,
                               "--name", name, "--max-drop", str(a.max_drop), "--out", a.out, "--eexc", a.eexc]))
        rows.append((f"SDN-style peer, {'grid' if pool == 'grid' else 'gap'}-linear heads, every cut", "none",
                     f"{peer['threshold']:.3f} (shared)", peer["calibration_saving"],
                     evaluate(a.eexc, f"{a.out}/{name}.onnx", a.model, d)))

    print("| method | guarantee | thresholds | FLOP saving on calib rows | test accuracy drop | "
          "test FLOP saving (cost model) | test time saving, ORT measured (median of 3 runs; means within a run) | "
          "test time saving from the measured paths | exits on test |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for name, guarantee, thresholds, calib_saving, ev in rows:
        drop = ev["baseline"]["accuracy"] - ev["early_exit"]["accuracy"]
        print(f"| {name} | {guarantee} | {thresholds} | {100 * calib_saving:.1f}% | {100 * drop:.2f}% | "
              f"{100 * ev['predicted_flop_saving']:.1f}% | {100 * ev['measured_time_saving']:.1f}% "
              f"({', '.join(f'{100 * v:.1f}' for v in ev['measured_time_savings'])}) | "
              f"{100 * ev['paths']['predicted_time_saving']:.1f}% | {ev['exit_histogram']} |")
        summary.append({"method": name, "test_drop": drop, "test_flop_saving": ev["predicted_flop_saving"],
                        "measured_time_saving": ev["measured_time_saving"],
                        "paths_time_saving": ev["paths"]["predicted_time_saving"], "calibration_saving": calib_saving})
    peer_saving = summary[-1]["test_flop_saving"]
    for s in summary[:-1]:
        print(f"\n{s['method']}: {s['test_flop_saving'] / peer_saving:.2f}x the GAP peer's test FLOP saving")
    print(f"\nload: {os.getloadavg()}")
    json.dump(summary, open(f"{a.out}/summary.json", "w"), indent=1)


if __name__ == "__main__":
    main()
