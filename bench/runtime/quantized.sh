#!/usr/bin/env bash
# Quantized models (docs/quantized.md): the digits model and the real-size
# ResNet-50 quantized by ONNX Runtime's quantize_static (QDQ, uint8
# activations, int8 weights), early exits against the quantized original in
# ONNX Runtime (CPU, default session options, 1 thread, medians of
# interleaved runs), and calibrated exits on the quantized digits model.
#
#   bench/runtime/quantized.sh [WORK_DIR]   (default: bench/runtime/work, git-ignored)
#
# Needs .venv (scripts/test.sh) and a built eexc; run.sh makes resnet50.onnx.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=.venv/bin/python
eexc=${EEXC:-target/debug/eexc}
work=${1:-bench/runtime/work}
d=testdata/digits
mkdir -p "$work"
export EEXC_PYTHON="$PWD/$py"

echo "== quantize (ORT quantize_static, QDQ; digits: 200 training rows, ResNet-50: 8 random rows)"
[ -f "$work/resnet50.onnx" ] || $py bench/make_resnet50_weights.py "$work/resnet50.onnx"
$py tests/python/quantize_model.py $d/digits_resnet.onnx "$work/digits.qdq.onnx" --format qdq --calib $d/train_x.npy
$py tests/python/quantize_model.py $d/digits_resnet.onnx "$work/digits.qop.onnx" --format qoperator --calib $d/train_x.npy
[ -f "$work/resnet50.qdq.onnx" ] || $py tests/python/quantize_model.py "$work/resnet50.onnx" "$work/resnet50.qdq.onnx" \
  --format qdq --rows 8
$py bench/runtime/latency.py "$work/resnet50.onnx" "$work/resnet50.qdq.onnx" --runs 20 2>/dev/null | sed 's/early-exit/quantized/'

echo "== nothing exits (thresholds 2), batch 1: speed ratio quantized original / early-exit"
for heads in float int8; do
  flag=""; [ $heads = int8 ] && flag=--quantize-heads
  $eexc insert-exits "$work/resnet50.qdq.onnx" --auto 3 --threshold 2 $flag -o "$work/resnet50.qdq.ee.onnx" > /dev/null 2>&1
  echo "-- ResNet-50 QDQ, $heads heads"
  $py tests/python/check_qdq_fusion.py "$work/resnet50.qdq.onnx" "$work/resnet50.qdq.ee.onnx" 3 --json \
    | $py -c "import json,sys; j=json.load(sys.stdin); print({k: {x: j[k][x] for x in ('int8','qdq','float')} for k in ('original','early_exit')})"
  $py bench/runtime/latency.py "$work/resnet50.qdq.onnx" "$work/resnet50.qdq.ee.onnx" --runs 80
done
for f in qdq qop; do
  $eexc insert-exits "$work/digits.$f.onnx" --auto 2 --threshold 2 -o "$work/digits.$f.ee.onnx" > /dev/null 2>&1
  $py bench/runtime/latency.py "$work/digits.$f.onnx" "$work/digits.$f.ee.onnx" --runs 2000
  $py bench/runtime/latency.py "$work/digits.$f.onnx" "$work/digits.$f.ee.onnx" --runs 300 --batch 64
done

echo "== ResNet-50 QDQ (int8 heads): every path, and the exit distribution [0.3, 0.2, 0.1]"
$eexc insert-exits "$work/resnet50.qdq.onnx" --auto 3 --threshold 2 --quantize-heads --exit-dist 0.3,0.2,0.1 \
  -o "$work/resnet50.qdq.ee.onnx" | grep -E "^(savings|time)"
$py bench/runtime/latency.py "$work/resnet50.qdq.onnx" "$work/resnet50.qdq.ee.onnx" --runs 60 \
  --scenario exit:1 --scenario exit:2 --scenario exit:3 --scenario none --scenario dist:0.3,0.2,0.1

echo "== digits QDQ and QOperator, calibrated (compile --keep-exits), eval in ONNX Runtime against the quantized original"
for f in qdq qop; do
  $eexc compile "$work/digits.$f.onnx" --data $d/train_x.npy --labels $d/train_y.npy --calib-data $d/calib_x.npy \
    --calib-labels $d/calib_y.npy --max-drop 1% --auto 2 --keep-exits -o "$work/digits.$f.compiled.onnx" 2>&1 | tail -2
  $eexc eval "$work/digits.$f.compiled.onnx" --data $d/test_x.npy --labels $d/test_y.npy --baseline "$work/digits.$f.onnx"
done
echo "-- the float digits model, the same way, for the proportion"
$eexc compile $d/digits_resnet.onnx --data $d/train_x.npy --labels $d/train_y.npy --calib-data $d/calib_x.npy \
  --calib-labels $d/calib_y.npy --max-drop 1% --auto 2 --keep-exits -o "$work/digits.float.compiled.onnx" 2>&1 | tail -2
$eexc eval "$work/digits.float.compiled.onnx" --data $d/test_x.npy --labels $d/test_y.npy --baseline $d/digits_resnet.onnx
