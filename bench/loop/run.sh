#!/usr/bin/env bash
# Loop-mode graph size and latency in ONNX Runtime (CPU) on the BERT-style
# encoder of tests/python/make_repeated_models.py. Needs .venv (scripts/test.sh)
# and a built eexc. Writes into bench/loop/out/ (ignored).
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
