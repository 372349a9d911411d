"""Odd inputs for `eexc fit` / `calibrate` tests, written into OUT_DIR:
wrong_shape.npy (images 7x7), with_nan.npy (a NaN in row 3), labels_out_of_range.npy
(class 10 for a 10-class model, 400 rows), fifty_rows.npy (50 valid digit-shaped rows),
huge_shape.npy and huge_shape.npz (a header whose shape, 2^32 x 2^32 x 16, has more
elements than 64 bits count, and 64 bytes of data; huge_weights.npz holds it as the
head weights `exit1.weight`);
with a second argument TRAIN_X.npy also train_one.npz (that array as `x`) and
train_two.npz (`x` and a second array `y`)."""

import sys
from pathlib import Path

import zipfile

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
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }"
header += " " * (118 - len(header)) + "\n"
huge = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)
(out / "huge_shape.npy").write_bytes(huge)
with zipfile.ZipFile(out / "huge_shape.npz", "w") as z:
    z.writestr("x.npy", huge)
with zipfile.ZipFile(out / "huge_weights.npz", "w") as z:
    z.writestr("exit1.weight.npy", huge)
if len(sys.argv) > 2:
    train = np.load(sys.argv[2])
    np.savez_compressed(out / "train_one.npz", x=train)
    np.savez(out / "train_two.npz", x=train, y=np.zeros(len(train), dtype=np.int64))
