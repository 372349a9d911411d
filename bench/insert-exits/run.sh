#!/usr/bin/env bash
# insert-exits on a ~100 MB ResNet-50 (3 exits, if mode, seeded heads): eexc vs
# a Python peer written with onnx-graphsurgeon vs copying the file; plus eexc
# inspect. Results and their reading: docs/benchmarks.md.
#
#   bench/insert-exits/run.sh [WORKDIR]     (default /tmp/eexc-bench; 4 files of ~100 MB)
#
# Needs .venv (scripts/test.sh makes it). Makes bench/.venv-peer from
# requirements.txt, the model (bench/make_resnet50_weights.py) and a release
# eexc in bench/target if they are missing. Each row: 5 runs, outputs removed
# before each; wall time (bash $EPOCHREALTIME around /usr/bin/time) best and
# median, CPU time (user+sys, 10 ms resolution) and peak RSS of the best run,
# and the 1-minute load average just before it. The input stays in the page
# cache (hot) throughout. With eatmydata installed (apt-get install eatmydata)
# eexc also runs with fsync made a no-op, to show what the flush costs.
#
# EEXC=path/to/eexc measures that binary instead of building a release one;
# EEXC_BEFORE=path/to/eexc adds a row for another build (e.g. the previous
# commit's), measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/eexc-bench}
runs=${RUNS:-5}
mkdir -p "$work"
[ -x .venv/bin/python ] || { echo "run scripts/test.sh once first (it creates .venv)" >&2; exit 1; }
peer_venv=bench/.venv-peer
if [ ! -x "$peer_venv/bin/python" ] || ! "$peer_venv/bin/python" -c "import onnx_graphsurgeon" 2>/dev/null; then
  python3 -m venv "$peer_venv"
  "$peer_venv/bin/pip" install --quiet -r bench/insert-exits/requirements.txt
fi
model="$work/resnet50_100mb.onnx"
[ -f "$model" ] || .venv/bin/python bench/make_resnet50_weights.py "$model"
if [ -n "${EEXC:-}" ]; then
  eexc=$EEXC
else
  CARGO_TARGET_DIR=bench/target cargo build --release --quiet
  eexc=bench/target/release/eexc
fi
at=r56,r88,r118

# The exits: the block outputs `--auto 3` picks on this structure.
picked=$("$eexc" insert-exits "$model" --auto 3 -o "$work/auto.onnx" 2>/dev/null |
  sed -n 's/^exit [0-9]*: \([^ ]*\) .*/\1/p' | paste -sd, -)
[ "$picked" = "$at" ] || echo "note: --auto 3 picks $picked, benchmarking --at $at" >&2

results="$work/results.txt"
: >"$results"
: >"$work/best.txt"
measure() { # key label output command...
  local key=$1 label=$2 out=$3; shift 3
  local lines=()
  for _ in $(seq "$runs"); do
    if [ -n "$out" ]; then rm -f "$out"; fi
    sync
    local load t0 t1
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$EPOCHREALTIME
    /usr/bin/time -f "%U %S %M" -o "$work/time.txt" "$@" >/dev/null 2>&1
    t1=$EPOCHREALTIME
    lines+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}') $(cat "$work/time.txt") $load")
  done
  printf '%s\n' "${lines[@]}" | sort -n | awk -v key="$key" -v label="$label" -v n="$runs" -v best="$work/best.txt" '
    { w[NR]=$1; if (NR==1) { u=$2; s=$3; rss=$4; load=$5 } }
    END {
      med = w[int((n+1)/2)]
      printf "%s %s\n", key, w[1] >> best
      printf "%-10s %-36s wall best %7.3f s  median %7.3f s  cpu %6.2f s (user %.2f, sys %.2f)  peak RSS %6.0f MiB  load %s\n",
        key, label, w[1], med, u+s, u, s, rss/1024, load
    }' | tee -a "$results"
}

echo "$(date -u +%FT%TZ)  $(nproc) CPUs  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  eexc $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo +dirty)"
echo "model: $model ($(stat -c %s "$model") bytes), exits --at $at; $runs runs each"
measure eexc     "eexc insert-exits --at"     "$work/eexc.onnx" "$eexc" insert-exits "$model" --at "$at" -o "$work/eexc.onnx"
if [ -n "${EEXC_BEFORE:-}" ]; then
  measure before "EEXC_BEFORE insert-exits --at" "$work/before.onnx" "$EEXC_BEFORE" insert-exits "$model" --at "$at" -o "$work/before.onnx"
fi
if command -v eatmydata >/dev/null; then  # apt-get install eatmydata: fsync becomes a no-op
  measure eexcnosync "eexc insert-exits --at, no fsync" "$work/eexc.onnx" eatmydata "$eexc" insert-exits "$model" --at "$at" -o "$work/eexc.onnx"
fi
measure eexcauto "eexc insert-exits --auto 3" "$work/auto.onnx" "$eexc" insert-exits "$model" --auto 3 -o "$work/auto.onnx"
measure peer     "peer (onnx-graphsurgeon)"   "$work/peer.onnx" "$peer_venv/bin/python" bench/insert-exits/peer_graphsurgeon.py "$model" "$work/peer.onnx" --at "$at"
measure peersync "peer, then sync of its output"  "$work/peer.onnx" sh -c "'$peer_venv/bin/python' bench/insert-exits/peer_graphsurgeon.py '$model' '$work/peer.onnx' --at '$at' && sync '$work/peer.onnx'"
measure cp       "cp"                         "$work/copy.onnx" cp "$model" "$work/copy.onnx"
measure cpsync   "cp, then sync of the copy"  "$work/copy.onnx" sh -c "cp '$model' '$work/copy.onnx' && sync '$work/copy.onnx'"
measure inspect  "eexc inspect (100 MB model)" "" "$eexc" inspect "$model"
measure inspectz "eexc inspect (testdata zoo file)" "" "$eexc" inspect testdata/models/resnet50.onnx
awk '{ best[$1] = $2 }
  END {
    printf "best wall: peer/eexc %.1fx   (peer+sync)/eexc %.1fx   eexc/cp %.2fx   eexc/(cp+sync) %.2fx\n",
      best["peer"]/best["eexc"], best["peersync"]/best["eexc"], best["eexc"]/best["cp"], best["eexc"]/best["cpsync"]
    if ("before" in best)
      printf "           EEXC_BEFORE/eexc %.2fx   EEXC_BEFORE/(cp+sync) %.2fx\n", best["before"]/best["eexc"], best["before"]/best["cpsync"]
    if ("eexcnosync" in best)
      printf "           eexc without fsync: peer/eexc %.1fx   eexc/cp %.2fx\n", best["peer"]/best["eexcnosync"], best["eexcnosync"]/best["cp"]
  }' "$work/best.txt" | tee -a "$results"

# The peer builds the heads as insert-exits did before its fusion rules, so
# the structural check compares it with eexc's unfused output (--no-fuse);
# the timed rows above are eexc's default, fused job.
"$eexc" insert-exits "$model" --at "$at" --no-fuse -o "$work/eexc-unfused.onnx" >/dev/null 2>&1
.venv/bin/python bench/insert-exits/check_equivalent.py "$model" "$work/eexc-unfused.onnx" "$work/peer.onnx" --at "$at"
