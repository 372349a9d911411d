#!/usr/bin/env bash
# Loop-mode graph size and latency in ONNX Runtime (CPU): the BERT-style
# encoder of tests/python/make_repeated_models.py, then the PyTorch exports in
# testdata/transformers. Needs .venv (scripts/test.sh) and a built eexc.
# Writes into bench/loop/out/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
EEXC=${EEXC:-target/debug/eexc}
OUT=bench/loop/out
mkdir -p "$OUT"
$PY tests/python/make_repeated_models.py "$OUT" >/dev/null
M="$OUT/bert_op17.onnx"
"$EEXC" insert-exits "$M" --mode loop -o "$OUT/bert.loop.onnx" >/dev/null 2>&1
"$EEXC" insert-exits "$M" --at layer1_out,layer2_out,layer3_out,layer4_out,layer5_out -o "$OUT/bert.if.onnx" >/dev/null 2>&1
for batch in 1 32; do
    echo "## bert_op17, batch $batch"
    $PY bench/loop/latency.py --original "$M" --if "$OUT/bert.if.onnx" --loop "$OUT/bert.loop.onnx" --batch "$batch" \
        --runs "$([ "$batch" = 1 ] && echo 500 || echo 150)"
done
# The real exports: the if form gets the exits the loop form found.
for name in vit_tiny_ts encoder_ts encoder_dynamo bert_tiny_ts; do
    M=testdata/transformers/$name.onnx
    dims=()
    [ "$name" = bert_tiny_ts ] && dims=(--dim seq=32)
    exits=$("$EEXC" insert-exits "$M" --mode loop "${dims[@]}" -o "$OUT/$name.loop.onnx" 2>/dev/null |
        sed -n 's/^exit [0-9]*: \([^ ]*\) .*/\1/p' | paste -sd,)
    "$EEXC" insert-exits "$M" --at "$exits" "${dims[@]}" -o "$OUT/$name.if.onnx" >/dev/null 2>&1
    for batch in 1 8; do
        echo "## $name, batch $batch"
        $PY bench/loop/latency.py --original "$M" --if "$OUT/$name.if.onnx" --loop "$OUT/$name.loop.onnx" \
            --batch "$batch" --seq 32 --runs "$([ "$batch" = 1 ] && echo 500 || echo 300)"
    done
done
