"""Writes the mnist5k splits (testdata/mnist5k/splits.npz) as the .npy files
eexc reads: OUT/{train,calib,test}_x.npy (float32 [n, 1, 28, 28], standardized
as the model was trained: (pixels / 255 - mean) / std) and *_y.npy (int64).

usage: .venv/bin/python bench/mnist_splits.py OUT_DIR
"""
import sys

import numpy as np

out = sys.argv[1]
s = np.load("testdata/mnist5k/splits.npz")
for part in ("train", "calib", "test"):
    x = ((s[f"{part}_x"] / 255.0 - s["mean"]) / s["std"]).astype(np.float32)[:, None]
    np.save(f"{out}/{part}_x.npy", x)
    np.save(f"{out}/{part}_y.npy", s[f"{part}_y"])
