"""Quantizes a float ONNX model with ONNX Runtime's own tool, as users do:
`onnxruntime.quantization.quantize_static` (MinMax calibration, uint8
activations, int8 weights), in QDQ or QOperator format.

usage: quantize_model.py SRC DST --format qdq|qoperator
                         [--calib X.npy] [--rows N] [--per-channel]

Calibration rows come from --calib (the first N rows), else from a seeded
standard normal of the input's shape (batch 1). Deterministic: the same
arguments give the same file.
"""

import argparse
import os
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process


class Rows(CalibrationDataReader):
    def __init__(self, name, rows):
        self.feeds = iter([{name: r[None]} for r in rows])

    def get_next(self):
        return next(self.feeds, None)


def calibration_rows(model, args):
    inp = model.graph.input[0]
    if args.calib:
        return inp.name, np.load(args.calib)[: args.rows].astype(np.float32)
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    return inp.name, rng.standard_normal([args.rows] + dims[1:]).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--format", choices=["qdq", "qoperator"], required=True)
    ap.add_argument("--calib")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--per-channel", action="store_true")
    args = ap.parse_args()
    name, rows = calibration_rows(onnx.load(args.src, load_external_data=False), args)
    with tempfile.TemporaryDirectory() as tmp:
        # ORT's recommended preprocessing (shape inference, BN folding); its
        # symbolic shape pass needs sympy, which the test venv does not pin.
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(args.src, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            args.dst,
            Rows(name, rows),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=args.per_channel,
        )


if __name__ == "__main__":
    main()
