#!/usr/bin/env bash
# eexc's certified early exits against the SDN-style peer, on both trained models:
# testdata/digits (8×8 digits, 397 calibration rows) and testdata/mnist5k (28×28 MNIST,
# 1000 calibration rows). Needs .venv (scripts/test.sh) and a built eexc. Writes into
# bench/peer/out/ (ignored). docs/benchmarks.md has the numbers and how to read them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
EEXC=${EEXC:-target/debug/eexc}
# compile's defaults, exits kept for FLOPs, with the conv-grid head among the
# variants, and GAP heads only.
HEADS=${HEADS:-auto,auto:flops,auto:time:grid-linear+mix-linear+conv-grid,gap-linear}
export EEXC_PYTHON=$PWD/$PY
OUT=bench/peer/out
mkdir -p "$OUT/digits_data" "$OUT/mnist_data"
cp testdata/digits/{train,calib,test}_{x,y}.npy "$OUT/digits_data/"
$PY bench/mnist_splits.py "$OUT/mnist_data"
echo "## digits (testdata/digits)"
$PY bench/peer/compare.py testdata/digits/digits_resnet.onnx --at stem_out,block1_out,block2_out \
    --data "$OUT/digits_data" --out "$OUT/digits" --eexc "$EEXC" --heads "$HEADS"
echo "## mnist5k (testdata/mnist5k)"
$PY bench/peer/compare.py testdata/mnist5k/mnist_resnet.onnx \
    --at stem_out,block1_out,block2_out,block3_out,block4_out,block5_out \
    --data "$OUT/mnist_data" --out "$OUT/mnist" --eexc "$EEXC" --heads "$HEADS"
