#!/usr/bin/env bash
# The 28×28 digit ResNet (testdata/mnist5k, 20 M MACs, the size of the model
# the speed and quantization issues were measured on): calibrated exits from
# `eexc compile`, measured by `eexc eval` in ONNX Runtime against the
# predicted FLOP and time savings; then the same on its int8 forms (ORT's
# quantize_static, QDQ and QOperator), and what three exits cost when
# nothing exits. docs/benchmarks.md and docs/quantized.md have the numbers.
#
#   bench/runtime/mnist.sh [WORK_DIR]   (default: bench/runtime/work/mnist, git-ignored)
#
# Needs .venv (scripts/test.sh) and a built eexc. About 7 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=.venv/bin/python
eexc=${EEXC:-target/debug/eexc}
work=${1:-bench/runtime/work/mnist}
model=testdata/mnist5k/mnist_resnet.onnx
cuts=stem_out,block1_out,block2_out,block3_out,block4_out,block5_out
mkdir -p "$work"
export EEXC_PYTHON="$PWD/$py"

$py bench/mnist_splits.py "$work"
for f in qdq qoperator; do
  $py tests/python/quantize_model.py $model "$work/mnist.$f.onnx" --format $f --calib "$work/train_x.npy"
done

# One line per eval run: measured time saving, predicted FLOP and time savings.
summary() {
  $py -c "import json,sys; r=json.load(open(sys.argv[1])); print('  measured %.1f%%  FLOPs %.1f%%  time term %.1f%%  measured paths %.1f%%  original %.3f ms  early-exit %.3f ms (means)  exits %s' % (100*r['measured_time_saving'], 100*r['predicted_flop_saving'], 100*r['predicted_time_saving'], 100*r['paths']['predicted_time_saving'], r['baseline']['timing']['mean_ms'], r['early_exit']['timing']['mean_ms'], r['exit_histogram']))" "$1"
}

# QOperator models have other tensor names (`--at` would need them); they are
# timed below when nothing exits.
for f in float qdq; do
  src=$model; [ $f = float ] || src="$work/mnist.$f.onnx"
  for keep in "" --keep-exits; do
    out="$work/mnist.$f${keep:+.keep}.compiled.onnx"
    echo "== $f, compile ${keep:-(exits kept for time)}"
    $eexc compile "$src" --data "$work/train_x.npy" --labels "$work/train_y.npy" \
      --calib-data "$work/calib_x.npy" --calib-labels "$work/calib_y.npy" --at $cuts --max-drop 1% $keep \
      -o "$out" 2>&1 | grep -E "^(fit on|expected|exits kept)"
    for run in 1 2 3; do
      $eexc eval "$out" --data "$work/test_x.npy" --labels "$work/test_y.npy" --baseline "$src" --json > "$work/eval.json"
      summary "$work/eval.json"
    done
  done
done

echo "== nothing exits (thresholds 2), --auto 3, batch 1: speed ratio original / early-exit"
for f in float qdq qoperator; do
  src=$model; [ $f = float ] || src="$work/mnist.$f.onnx"
  $eexc insert-exits "$src" --auto 3 --threshold 2 -o "$work/mnist.$f.ee.onnx" > /dev/null 2>&1
  $py bench/runtime/latency.py "$src" "$work/mnist.$f.ee.onnx" --runs 1000
done
