#!/usr/bin/env bash
# Measures the protobuf-layer candidates for docs/protobuf-layer.md:
#   (a) lossless round trip: load + save of every synthetic model
#       (tests/python/make_synthetic_models.py) and of the 100 MB ResNet-50
#       (bench/make_resnet50_weights.py) by each candidate, checked with
#       tests/python/compare_models.py; every difference is listed by
#       list_losses.py;
#   (b) load+save wall time (best of $REPEAT iterations in one process), the
#       CPU time of the same iterations (best), and peak RSS on the 100 MB model, for each candidate and for Python onnx.load + onnx.save,
#       once with input and output on tmpfs (the layer's own cost) and once on
#       the work folder's disk (what a user sees; includes eexc's fsync).
#
# Usage: bench/protobuf-layer/run.sh [WORKDIR]      (default /tmp/eexc-pb-bench)
# Environment: PYTHON (default .venv/bin/python of the repo), REPEAT (5),
#   FAST_DIR (tmpfs folder, default /dev/shm/eexc-pb-bench), CARGO_TARGET_DIR
#   (default bench/protobuf-layer/target), CHECK_PROTOBUF_37 (1: also show that
#   onnx-protobuf 0.2.3 does not compile against protobuf 3.7; 0 skips it).
# Needs: cargo (crates.io reachable for the first build), /usr/bin/time.
# Writes: WORKDIR/{models,out,losses}/, WORKDIR/roundtrip.tsv,
#   WORKDIR/timing.jsonl, WORKDIR/summary.txt (also printed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mkdir -p "${1:-/tmp/eexc-pb-bench}" && cd "${1:-/tmp/eexc-pb-bench}" && pwd)
FAST=${FAST_DIR:-/dev/shm/eexc-pb-bench}
REPEAT=${REPEAT:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
BIN=$CARGO_TARGET_DIR/release
SUMMARY=$WORK/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

say "== machine"
say "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(free -g | awk '/Mem:/{print $2" GiB RAM"}'); $(uname -sr)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "rustc: $(rustc --version); python: $("$PY" -c 'import sys, onnx, google.protobuf as g; from google.protobuf.internal import api_implementation as a; print(sys.version.split()[0], "onnx", onnx.__version__, "protobuf", g.__version__, a.Type())')"

say "== build (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --quiet --manifest-path "$HERE/Cargo.toml"
cargo build --release --quiet --manifest-path "$HERE/onnx-protobuf/Cargo.toml"
if [ "${CHECK_PROTOBUF_37:-1}" = 1 ]; then
  # onnx-protobuf 0.2.3 with the protobuf 3.7 that eexc uses: expected to fail.
  P37=$WORK/onnx-protobuf-with-protobuf-3.7
  mkdir -p "$P37/src"
  printf '[package]\nname = "op37"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n[workspace]\n[dependencies]\nonnx-protobuf = "=0.2.3"\nprotobuf = "=3.7.2"\n' >"$P37/Cargo.toml"
  echo 'fn main() { let _ = <onnx_protobuf::ModelProto as onnx_protobuf::Message>::parse_from_bytes(&[]); }' >"$P37/src/main.rs"
  if cargo build --quiet --manifest-path "$P37/Cargo.toml" >"$P37/build.log" 2>&1; then
    say "onnx-protobuf 0.2.3 + protobuf 3.7.2: builds"
  else
    say "onnx-protobuf 0.2.3 + protobuf 3.7.2: does not build: $(grep -m1 '^error\[' "$P37/build.log")"
  fi
fi

say "== models"
"$PY" "$ROOT/tests/python/make_synthetic_models.py" "$WORK/models" >/dev/null
"$PY" "$ROOT/bench/make_resnet50_weights.py" "$WORK/models/resnet50.onnx" | tee -a "$SUMMARY"

run_candidate() {  # CANDIDATE IN OUT [ARGS...]
  local c=$1
  shift
  case $c in
    python) "$PY" "$HERE/py_roundtrip.py" "$@" ;;
    onnx-protobuf) "$BIN/pb-bench-onnx-protobuf" "$@" ;;
    *) "$BIN/pb-bench" "$c" "$@" ;;
  esac
}

CANDIDATES="eexc rust-protobuf prost onnx-protobuf"
MODELS="all_dtypes all_attrs subgraphs newer_fields future_fields external/external resnet50"

say "== (a) round trip: compare_models.py ORIGINAL ROUNDTRIP (stored form, unknown fields included)"
printf 'candidate\tmodel\tresult\n' >"$WORK/roundtrip.tsv"
for c in $CANDIDATES python; do
  for m in $MODELS; do
    out=$WORK/out/$c/$m.onnx
    mkdir -p "$(dirname "$out")" "$WORK/losses/$c"
    run_candidate "$c" "$WORK/models/$m.onnx" "$out" >/dev/null
    mode=() note=""
    if [ "$c/$m" = python/external/external ]; then
      # onnx.load reads external data by default and onnx.save then stores it
      # inline: only the content can match.
      mode=(--content-only) note=" (content only: onnx.load+save inlines external data)"
    fi
    if verdict=$("$PY" "$ROOT/tests/python/compare_models.py" "$WORK/models/$m.onnx" "$out" "${mode[@]}" 2>&1); then
      result="EQUAL${verdict#equal}$note"
    else
      result="DIFFERS: $verdict"
    fi
    losses=$WORK/losses/$c/${m//\//_}.txt
    if [ -n "$note" ]; then
      echo "not listed: onnx.load + onnx.save inlines external data, so the stored form differs by design; content compared equal" >"$losses"
    else
      "$PY" "$HERE/list_losses.py" "$WORK/models/$m.onnx" "$out" >"$losses" || true
    fi
    printf '%s\t%s\t%s\n' "$c" "$m" "$result" >>"$WORK/roundtrip.tsv"
    say "$(printf '%-14s %-18s %s' "$c" "$m" "$result" | cut -c1-220)"
  done
done
say "every difference, grouped: $WORK/losses/CANDIDATE/MODEL.txt"
for c in $CANDIDATES python; do
  kinds=$(cat "$WORK"/losses/$c/*.txt | { grep -v -e '^no difference' -e '^not listed' || true; } | sed -E 's/^[0-9]+ x //; s/ -- e\.g\..*//; s/unknown field [0-9]+ \(wire type [0-9]\) lost/unknown field N lost/' | sort -u | tr '\n' ';' | sed 's/;$//; s/;/; /g')
  say "  $c loses: ${kinds:-nothing}"
done

say "== (b) load+save of the 100 MB model: best of $REPEAT iterations in one process"
: >"$WORK/timing.jsonl"
mkdir -p "$FAST"
cp "$WORK/models/resnet50.onnx" "$FAST/resnet50.onnx"
for where in tmpfs disk; do
  if [ $where = tmpfs ]; then
    dir=$FAST in=$FAST/resnet50.onnx
  else
    dir=$WORK in=$WORK/models/resnet50.onnx
  fi
  for c in $CANDIDATES python; do
    sync
    sleep 1
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$(/usr/bin/time -f 'TIME %e %M' -o "$WORK/time.txt" \
      bash -c "$(declare -f run_candidate); BIN='$BIN' PY='$PY' HERE='$HERE' run_candidate '$c' '$in' '$dir/timed_$c.onnx' --repeat $REPEAT")
    read -r _ proc_wall proc_rss <"$WORK/time.txt"
    echo "${line%\}},\"where\":\"$where\",\"process_wall_s\":$proc_wall,\"process_max_rss_kib\":$proc_rss,\"loadavg_1min_before\":$load}" >>"$WORK/timing.jsonl"
  done
done
rm -f "$FAST/resnet50.onnx" "$FAST"/timed_*.onnx
rmdir "$FAST" 2>/dev/null || true
"$PY" - "$WORK/timing.jsonl" <<'PYEOF' | tee -a "$SUMMARY"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'where':6} {'candidate':46} {'best load+save':>14} {'load':>7} {'save':>7} {'best CPU':>8} {'peak RSS':>9} {'loadavg':>7}  all load+save (ms)")
for r in rows:
    totals = ",".join(f"{a + b:.0f}" for a, b in zip(r["load_ms"], r["save_ms"]))
    print(f"{r['where']:6} {r['candidate']:46} {r['best_total_ms']:11.0f} ms {r['best_load_ms']:4.0f} ms"
          f" {r['best_save_ms']:4.0f} ms {r['best_cpu_ms']:5.0f} ms {r['peak_rss_kib'] / 1024:6.0f} MiB {r['loadavg_1min_before']:7.2f}  {totals}")
PYEOF
say "raw: $WORK/timing.jsonl"
