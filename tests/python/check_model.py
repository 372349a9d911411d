"""Validate an ONNX model with the onnx checker and, optionally, run it in onnxruntime.

Usage:
    python tests/python/check_model.py MODEL.onnx [--run] [--seed N]

Checks `onnx.checker.check_model(path, full_check=True)`; the path form lets the
checker follow external data and models over 2 GiB. With --run, builds a CPU
onnxruntime session and feeds seeded random inputs (symbolic or unknown dims -> 1,
floats ~ N(0, 1), integers in [0, 4), bools uniform), then prints one line per
output: `name dtype shape`. Exit 0 on success, 1 with a one-line reason otherwise.
"""

import argparse
import sys

import numpy as np
import onnx

# onnxruntime's tensor type strings -> numpy dtypes we can generate inputs for.
ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


def random_input(rng, name, ort_type, shape):
    if ort_type not in ORT_TO_NUMPY:
        raise ValueError(f"input {name!r}: cannot generate values of type {ort_type}")
    # ORT reports a symbolic dim as a str and an unknown one as None; both become 1.
    dims = [d if isinstance(d, int) and d >= 0 else 1 for d in shape]
    dt = ORT_TO_NUMPY[ort_type]
    if dt is np.bool_:
        return rng.integers(0, 2, dims).astype(np.bool_)
    if dt is np.str_:
        return np.full(dims, "a", dtype=object)
    if np.issubdtype(dt, np.integer):
        # Small and non-negative: safe as indices, trip counts, sizes.
        return rng.integers(0, 4, dims).astype(dt)
    return rng.standard_normal(dims).astype(dt)


def run(path, seed):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors only: keep stdout/stderr parseable
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {i.name: random_input(rng, i.name, i.type, i.shape) for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    for meta, value in zip(sess.get_outputs(), outs):
        if isinstance(value, np.ndarray):
            print(f"{meta.name} {value.dtype} {list(value.shape)}")
        else:  # sequences, maps, optionals
            print(f"{meta.name} {type(value).__name__} len={len(value) if value is not None else 0}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="path to the .onnx file")
    ap.add_argument("--run", action="store_true", help="also run it in onnxruntime (CPU)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random inputs")
    args = ap.parse_args()
    stage = "check"
    try:
        onnx.checker.check_model(args.model, full_check=True)
        if args.run:
            stage = "run"
            run(args.model, args.seed)
    except Exception as e:
        lines = str(e).strip().splitlines()
        print(f"{stage} failed: {type(e).__name__}: {lines[0] if lines else ''}", file=sys.stderr)
        return 1
    print(f"ok: {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
