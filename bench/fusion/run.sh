#!/usr/bin/env bash
# Fusion benchmarks: head + decision overhead before/after on the shared
# models; ONNX Runtime latency of fused vs unfused early-exit models; and
# `eexc optimize` against ONNX Runtime's own offline optimizer on a ResNet-50
# with real-size weights. Needs the test venv (.venv) and a built eexc.
# Writes into bench/fusion/out/ (ignored). docs/fusion.md's numbers come from
# EEXC=target/release/eexc (what `cargo install` builds).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
EEXC=${EEXC:-target/debug/eexc}
OUT=bench/fusion/out
mkdir -p "$OUT/reports"

echo "## Head + decision per exit (insert-exits --auto 3, maxprob): default families, then all"
mkdir -p "$OUT/reports-all"
for m in testdata/models/*.onnx; do
    n=$(basename "$m" .onnx)
    "$EEXC" insert-exits "$m" --auto 3 -o "$OUT/$n.ee.onnx" --report "$OUT/reports/$n.json" >/dev/null 2>&1
    "$EEXC" insert-exits "$m" --auto 3 -o "$OUT/$n.all.onnx" --report "$OUT/reports-all/$n.json" \
        --fuse-rules all >/dev/null 2>&1
done
$PY tests/python/make_modern_models.py "$OUT/modern" >/dev/null
for m in resnet_op17 tokens_op17 mlp_op17; do
    at=$($PY -c "import json;print(','.join(json.load(open('$OUT/modern/exit_points.json'))['$m.onnx']))")
    for c in maxprob entropy margin; do
        "$EEXC" insert-exits "$OUT/modern/$m.onnx" --at "$at" --confidence $c -o "$OUT/$m.$c.ee.onnx" \
            --report "$OUT/reports/$m.$c.json" >/dev/null 2>&1
        "$EEXC" insert-exits "$OUT/modern/$m.onnx" --at "$at" --confidence $c -o "$OUT/$m.$c.all.onnx" \
            --report "$OUT/reports-all/$m.$c.json" --fuse-rules all >/dev/null 2>&1
    done
done
$PY bench/fusion/summarize.py "$OUT"/reports/*.json
echo
$PY bench/fusion/summarize.py "$OUT"/reports-all/*.json

echo
echo "## The rewrites alone in ONNX Runtime"
$PY bench/fusion/head_micro.py
$PY bench/fusion/decision_micro.py

echo
echo "## ResNet-50, real-size weights: early-exit model fused vs --no-fuse (ORT, 1 thread)"
[ -f "$OUT/resnet50_w.onnx" ] || $PY bench/make_resnet50_weights.py "$OUT/resnet50_w.onnx" >/dev/null
"$EEXC" insert-exits "$OUT/resnet50_w.onnx" --auto 3 -o "$OUT/r50.fused.onnx" >/dev/null 2>&1
"$EEXC" insert-exits "$OUT/resnet50_w.onnx" --auto 3 -o "$OUT/r50.plain.onnx" --no-fuse >/dev/null 2>&1
for t in 2 0; do
    echo "threshold $t ($([ $t = 2 ] && echo 'nothing exits' || echo 'every input leaves at exit 1')):"
    $PY bench/fusion/latency.py --runs 60 --knob eexc_threshold_1=$t --knob eexc_threshold_2=$t \
        --knob eexc_threshold_3=$t "$OUT/r50.plain.onnx" "$OUT/r50.fused.onnx"
done

echo
echo "## eexc optimize on the zoo models (structure only: ConstantOfShape weights)"
for m in testdata/models/*.onnx; do
    echo "$(basename "$m"): $("$EEXC" optimize "$m" -o "$OUT/$(basename "$m" .onnx).opt.onnx" | tail -1)"
done

echo
echo "## eexc optimize vs ONNX Runtime's offline optimizer, ResNet-50 with weights"
# Whole processes, load to saved file, five runs each (use a release eexc:
# EEXC=target/release/eexc).
for _ in 1 2 3 4 5; do
    /usr/bin/time -f "eexc optimize: %e s, %M KB max RSS" "$EEXC" optimize "$OUT/resnet50_w.onnx" -o "$OUT/r50.opt.onnx" >/dev/null
    /usr/bin/time -f "python + ORT: %e s, %M KB max RSS" $PY bench/fusion/peer_ort.py "$OUT/resnet50_w.onnx" "$OUT/r50.ort-basic.onnx" basic
done
$PY -c "import onnx,sys
for p in sys.argv[1:]:
    m=onnx.load(p); print(f'{len(m.graph.node):4d} nodes  {p}')" "$OUT/resnet50_w.onnx" "$OUT/r50.opt.onnx" "$OUT/r50.ort-basic.onnx"
for level in disable all; do
    echo "served with ORT optimizations: $level"
    $PY bench/fusion/latency.py --runs 60 --opt $level "$OUT/resnet50_w.onnx" "$OUT/r50.opt.onnx" "$OUT/r50.ort-basic.onnx"
done
