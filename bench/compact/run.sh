#!/usr/bin/env bash
# Compact-mode throughput in ONNX Runtime (CPU): original vs if vs compact at
# batch 32 for several exit distributions. Needs the test venv (scripts/test.sh
# makes .venv) and a built eexc. Writes into bench/compact/out/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
EEXC=${EEXC:-target/debug/eexc}
OUT=bench/compact/out
mkdir -p "$OUT"

emit() { # model at name [insert-exits options]
    local model=$1 at=$2 name=$3
    shift 3
    for mode in multi if compact; do
        "$EEXC" insert-exits "$model" --at "$at" --mode "$mode" -o "$OUT/$name.$mode.onnx" "$@" >/dev/null 2>&1
    done
}
table() { # model name batches
    $PY bench/compact/throughput.py --original "$1" --multi "$OUT/$2.multi.onnx" --if "$OUT/$2.if.onnx" \
        --compact "$OUT/$2.compact.onnx" --batch 32 --batches "$3" --repeats 3 \
        --dist 0,0,0 --dist 0.25,0.25,0.25 --dist 0.5,0.25,0.125 --dist 0.8,0.1,0.05 --dist 1,0,0
}

# Small CIFAR-size ResNet (tests/python/make_modern_models.py), symbolic batch.
$PY tests/python/make_modern_models.py "$OUT/modern" >/dev/null
emit "$OUT/modern/resnet_op17.onnx" block1_out,block2_out,block3_out resnet_op17
echo "## resnet_op17 (32x32 input)"
table "$OUT/modern/resnet_op17.onnx" resnet_op17 16

# ResNet-50 with real-size random weights, opset 13, symbolic batch.
[ -f "$OUT/resnet50_w.onnx" ] || $PY bench/make_resnet50_weights.py "$OUT/resnet50_w.onnx" >/dev/null
[ -f "$OUT/resnet50_op13.onnx" ] || $PY bench/compact/prepare_resnet50.py "$OUT/resnet50_w.onnx" "$OUT/resnet50_op13.onnx"
AT=$("$EEXC" insert-exits "$OUT/resnet50_op13.onnx" --auto 3 -o "$OUT/probe.onnx" 2>/dev/null \
    | sed -n 's/^exit [0-9]*: \([^ ]*\) .*/\1/p' | paste -sd, -)
# Random weights make activations grow with depth (exit logits' spread is about
# 700, 3300 and 15000): temperatures keep the softmax away from saturation, so
# thresholds can split the rows.
emit "$OUT/resnet50_op13.onnx" "$AT" resnet50 --temperature 100,500,2000
echo "## ResNet-50 (224x224), exits at $AT"
table "$OUT/resnet50_op13.onnx" resnet50 3
