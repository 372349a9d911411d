#!/usr/bin/env bash
# The digits walk-through of docs/fit-calibrate.md: fit, insert, calibrate,
# eval (tract), compile, and per-row latency in ONNX Runtime. Needs .venv
# (scripts/test.sh) and a built eexc. Writes into bench/digits/out/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export EEXC_PYTHON=$PWD/$PY  # eval measures in ONNX Runtime
EEXC=${EEXC:-target/debug/eexc}
D=testdata/digits
OUT=bench/digits/out
mkdir -p "$OUT"
EXITS=stem_out,block1_out,block2_out

"$EEXC" fit $D/digits_resnet.onnx --data $D/train_x.npy --at $EXITS -o "$OUT/heads.safetensors" --report "$OUT/fit.json"
"$EEXC" insert-exits $D/digits_resnet.onnx --at $EXITS --weights "$OUT/heads.safetensors" -o "$OUT/digits.ee.onnx" >/dev/null
"$EEXC" calibrate "$OUT/digits.ee.onnx" --data $D/calib_x.npy --labels $D/calib_y.npy --max-drop 1% \
    -o "$OUT/digits.calibrated.onnx" --curve "$OUT/curve.csv" --plot "$OUT/curve.svg" --report "$OUT/calibration.json"
"$EEXC" eval "$OUT/digits.calibrated.onnx" --data $D/test_x.npy --labels $D/test_y.npy --baseline $D/digits_resnet.onnx
$PY tests/python/check_early_exit.py --original $D/digits_resnet.onnx --ee "$OUT/digits.calibrated.onnx" \
    --data $D/test_x.npy --labels $D/test_y.npy --max-drop 0.01
$PY bench/digits/ort_latency.py --original $D/digits_resnet.onnx --ee "$OUT/digits.calibrated.onnx" --data $D/test_x.npy
"$EEXC" compile $D/digits_resnet.onnx --data $D/train_x.npy --calib-data $D/calib_x.npy --calib-labels $D/calib_y.npy \
    --at $EXITS --max-drop 1% --fail-under-savings 20% -o "$OUT/digits.compiled.onnx" --report "$OUT/compile.json"
