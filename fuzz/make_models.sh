#!/usr/bin/env bash
# Extra base models for the `commands` fuzz target, in DIR (default
# /tmp/eexc-fuzz-models): the digits model quantized by ONNX Runtime's tool
# (QDQ), a BERT-style encoder and a deep MLP with repeated layers, and the
# MLP's Loop form. Pass the folder as EEXC_FUZZ_MODELS. Needs .venv
# (scripts/test.sh makes it) and an eexc binary (EEXC, default target/debug/eexc).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/eexc-fuzz-models}
eexc=${EEXC:-target/debug/eexc}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python tests/python/quantize_model.py testdata/digits/digits_resnet.onnx "$dir/digits.qdq.onnx" \
  --format qdq --calib testdata/digits/train_x.npy
.venv/bin/python tests/python/make_repeated_models.py "$tmp" > /dev/null
cp "$tmp/bert_op17.onnx" "$tmp/deep_mlp_op17.onnx" "$dir/"
"$eexc" insert-exits "$dir/deep_mlp_op17.onnx" --mode loop -o "$dir/deep_mlp.loop.onnx" > /dev/null
ls "$dir"
