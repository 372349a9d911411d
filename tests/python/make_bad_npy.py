"""Odd inputs for `eexc fit` / `calibrate` tests, written into OUT_DIR:
wrong_shape.npy (images 7x7), with_nan.npy (a NaN in row 3), labels_out_of_range.npy
(class 10 for a 10-class model, 400 rows), fifty_rows.npy (50 valid digit-shaped rows);
with a second argument TRAIN_X.npy also train_one.npz (that array as `x`) and
train_two.npz (`x` and a second array `y`)."""

import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
rng = np.random.default_rng(0)
np.save(out / "wrong_shape.npy", rng.normal(size=(30, 1, 7, 7)).astype(np.float32))
x = rng.normal(size=(30, 1, 8, 8)).astype(np.float32)
x[3, 0, 2, 2] = np.nan
np.save(out / "with_nan.npy", x)
labels = np.zeros(400, dtype=np.int64)
labels[5] = 10
np.save(out / "labels_out_of_range.npy", labels)
np.save(out / "fifty_rows.npy", rng.normal(size=(50, 1, 8, 8)).astype(np.float32))
if len(sys.argv) > 2:
    train = np.load(sys.argv[2])
    np.savez_compressed(out / "train_one.npz", x=train)
    np.savez(out / "train_two.npz", x=train, y=np.zeros(len(train), dtype=np.int64))
