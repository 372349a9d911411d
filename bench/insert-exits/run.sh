#!/usr/bin/env bash
# insert-exits on a ~100 MB ResNet-50 (3 exits, if mode): eexc vs a Python peer
# written with onnx-graphsurgeon vs copying the file. Results: docs/benchmarks.md.
#   bench/insert-exits/run.sh [WORKDIR]     (default /tmp/eexc-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/eexc-bench}
mkdir -p "$work"
[ -x .venv/bin/python ] || { echo "run scripts/test.sh once first (it creates .venv)" >&2; exit 1; }
peer_venv=bench/.venv-peer
if [ ! -x "$peer_venv/bin/python" ]; then
  python3 -m venv "$peer_venv"
  "$peer_venv/bin/pip" install --quiet -r bench/insert-exits/requirements.txt
fi
model="$work/resnet50_100mb.onnx"
[ -f "$model" ] || .venv/bin/python bench/make_resnet50_weights.py "$model"
CARGO_TARGET_DIR=bench/target cargo build --release --quiet
eexc=bench/target/release/eexc
at=r56,r88,r118   # the block outputs `--auto 3` picks on this structure

measure() { # label, command...: best of 5 wall seconds, with CPU and peak RSS of that run
  local label=$1; shift
  local best=""
  for _ in 1 2 3 4 5; do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" >/dev/null 2>&1
    read -r wall user sys rss <"$work/time.txt"
    if [ -z "$best" ] || awk "BEGIN{exit !($wall < ${best%% *})}"; then best="$wall $user $sys $rss"; fi
  done
  read -r wall user sys rss <<<"$best"
  printf '%-28s wall %6.3f s  user %6.3f s  sys %6.3f s  peak RSS %7.1f MiB\n' "$label" "$wall" "$user" "$sys" "$(awk "BEGIN{print $rss/1024}")"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
measure "eexc insert-exits" "$eexc" insert-exits "$model" --at "$at" -o "$work/eexc.onnx"
measure "peer (onnx-graphsurgeon)" "$peer_venv/bin/python" bench/insert-exits/peer_graphsurgeon.py "$model" "$work/peer.onnx" --at "$at"
measure "cp" cp "$model" "$work/copy.onnx"
measure "cp + sync of the copy" sh -c "cp '$model' '$work/copy.onnx' && sync '$work/copy.onnx'"
measure "eexc inspect (100 MB)" "$eexc" inspect "$model"
measure "eexc inspect (zoo file)" "$eexc" inspect testdata/models/resnet50.onnx
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python bench/insert-exits/check_equivalent.py "$model" "$work/eexc.onnx" "$work/peer.onnx" 3
