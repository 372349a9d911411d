#!/usr/bin/env bash
# Early-exit models against their originals in ONNX Runtime (CPU, default
# session options, 1 thread, medians of interleaved runs): the numbers in
# docs/benchmarks.md ("Latency where users deploy") and docs/runtime-cost.md.
#
#   bench/runtime/run.sh [WORK_DIR]      (default: bench/runtime/work, git-ignored)
#
# Needs the repository's .venv (scripts/test.sh makes it) and a built eexc
# (cargo build). Quantized models: bench/runtime/quantized.sh. About 10 minutes on 2 cores; the models take ~700 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=.venv/bin/python
eexc=${EEXC:-target/debug/eexc}
work=${1:-bench/runtime/work}
mkdir -p "$work"
export EEXC_PYTHON="$PWD/$py"

echo "== models (real-size random weights)"
[ -f "$work/resnet50.onnx" ] || $py bench/make_resnet50_weights.py "$work/resnet50.onnx"
[ -f "$work/densenet121.onnx" ] || $py bench/make_resnet50_weights.py "$work/densenet121.onnx" \
  --source /work/shared/models/onnx-light/light_densenet121.onnx
[ -f "$work/vit_s16.onnx" ] || $py bench/runtime/make_models.py "$work"

echo "== nothing exits (thresholds 2), batch 1: speed ratio original/early-exit"
for m in resnet50 mobilenet_v2 efficientnet_b0 densenet121 vit_s16 bert_encoder; do
  $eexc insert-exits "$work/$m.onnx" --auto 3 --threshold 2 -o "$work/$m.ee.onnx" > /dev/null 2>&1
  runs=300
  case $m in resnet50 | vit_s16 | bert_encoder) runs=60 ;; densenet121) runs=100 ;; esac
  $py bench/runtime/latency.py "$work/$m.onnx" "$work/$m.ee.onnx" --runs $runs
done

echo "== compact mode, batch 32, nothing exits"
for m in resnet50 mobilenet_v2; do
  $eexc insert-exits "$work/$m.onnx" --auto 3 --threshold 2 --mode compact -o "$work/$m.compact.onnx" > /dev/null 2>&1 || {
    echo "$m: compact refused (fixed batch)"; continue; }
  $py bench/runtime/latency.py "$work/$m.onnx" "$work/$m.compact.onnx" --batch 32 --runs 20
done

echo "== ResNet-50: every path, and the exit distribution [0.3, 0.2, 0.1]"
$eexc insert-exits "$work/resnet50.onnx" --auto 3 --threshold 2 --exit-dist 0.3,0.2,0.1 -o "$work/resnet50.ee.onnx" \
  | grep -E "^(savings|time)"
$py bench/runtime/latency.py "$work/resnet50.onnx" "$work/resnet50.ee.onnx" --runs 60 \
  --scenario exit:1 --scenario exit:2 --scenario exit:3 --scenario none --scenario dist:0.3,0.2,0.1

echo "== digits, calibrated (compile --keep-exits: all three exits), eval in ONNX Runtime"
d=testdata/digits
$eexc compile $d/digits_resnet.onnx --data $d/train_x.npy --labels $d/train_y.npy --calib-data $d/calib_x.npy \
  --calib-labels $d/calib_y.npy --max-drop 1% --at stem_out,block1_out,block2_out --keep-exits -o "$work/digits.ee.onnx"
$eexc eval "$work/digits.ee.onnx" --data $d/test_x.npy --labels $d/test_y.npy --baseline $d/digits_resnet.onnx
echo "== digits, compile choosing exits by their time"
$eexc compile $d/digits_resnet.onnx --data $d/train_x.npy --labels $d/train_y.npy --calib-data $d/calib_x.npy \
  --calib-labels $d/calib_y.npy --max-drop 1% --at stem_out,block1_out,block2_out -o "$work/digits.pruned.onnx"
$eexc eval "$work/digits.pruned.onnx" --data $d/test_x.npy --labels $d/test_y.npy --baseline $d/digits_resnet.onnx

echo "== what an If costs by itself"
$py bench/runtime/if_cost.py --runs 1000

echo "== the time term's constants, measured here (passes/runtime/onnxruntime-cpu.json ships)"
$py bench/runtime/time_constants.py --eexc "$eexc"
