"""Referee for `eexc optimize` and fused exits: the rewritten model must pass
the checker and compute what the original computes.

Usage: python check_fusion.py ORIGINAL REWRITTEN [ORIGINAL REWRITTEN ...]
                              [--feed NAME=V1,V2,...]

For each pair: onnx.checker (full_check) on the rewritten model; then both run
in ONNX Runtime on the same random inputs (several seeds; symbolic dims as 3).
Outputs match by name: float outputs within a relative error of 1e-5 (max
|a − b| over max |a|), everything else (decisions, exit indices) exactly.
Inputs backed by an initializer are left at their defaults, except those
named by --feed, which are fed each listed value in turn (to move an exit
threshold across its range). Prints one line per pair; exit 1 on the first
mismatch.
"""

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort

REL_TOL = 1e-5
DTYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
}


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def random_feeds(model, rng):
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 3 for d in tt.shape.dim]
        dtype = DTYPES[tt.elem_type]
        if dtype is np.bool_:
            value = rng.random(shape) < 0.5
        elif dtype is np.float32:
            value = rng.standard_normal(shape) * 2
        else:
            value = rng.integers(0, 3, size=shape)
        feeds[inp.name] = np.asarray(value).astype(dtype)
    return feeds


def compare(name, a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if a.dtype.kind == "f":
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-6)
        err = float(np.max(np.abs(a.astype(np.float64) - b))) / scale if a.size else 0.0
        if not err <= REL_TOL:
            return f"{name}: relative error {err:.3g} > {REL_TOL}"
        return None
    if not np.array_equal(a, b):
        return f"{name}: {int(np.sum(a != b))} of {a.size} values differ"
    return None


def check_pair(original, rewritten, knob_values):
    model = onnx.load(rewritten)
    onnx.checker.check_model(model, full_check=True)
    before, after = session(original), session(rewritten)
    names = [o.name for o in before.get_outputs()]
    after_names = [o.name for o in after.get_outputs()]
    if names != after_names:
        return f"outputs {names} became {after_names}", 0
    runs = 0
    base = onnx.load(original, load_external_data=False)
    settings = [dict()]
    for knob, values in knob_values.items():
        if any(i.name == knob for i in after.get_inputs()):
            settings = [dict(s, **{knob: np.array(v, dtype=np.float32)}) for s in settings for v in values]
    for seed in range(3):
        feeds = random_feeds(base, np.random.default_rng(seed))
        for extra in settings:
            f = dict(feeds, **extra)
            got_a = before.run(None, f)
            got_b = after.run(None, {k: v for k, v in f.items() if any(i.name == k for i in after.get_inputs())})
            for n, a, b in zip(names, got_a, got_b):
                problem = compare(n, np.asarray(a), np.asarray(b))
                if problem:
                    return f"seed {seed} {extra}: {problem}", runs
            runs += 1
    return None, runs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--feed", action="append", default=[])
    a = p.parse_args()
    if len(a.models) % 2:
        sys.exit("give ORIGINAL REWRITTEN pairs")
    knobs = {}
    for spec in a.feed:
        name, values = spec.split("=", 1)
        knobs[name] = [float(v) for v in values.split(",")]
    for orig, new in zip(a.models[::2], a.models[1::2]):
        problem, runs = check_pair(orig, new, knobs)
        if problem:
            print(f"MISMATCH {new}: {problem}")
            sys.exit(1)
        print(f"equal {new} ({runs} runs)")


if __name__ == "__main__":
    main()
