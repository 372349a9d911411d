"""One worker of a sharded forward pass, as a user's job would run it: ONNX Runtime
(default session options) runs the pass model that `eexc fit|calibrate --pass-model`
wrote over rows FIRST..FIRST+COUNT of X.npy, BATCH rows at a time, and saves each batch's
outputs (and labels, when Y.npy is given) as one .npz shard named by its first row, so
that file-name order is row order. Odd batches are compressed, to read both kinds.

usage: write_shards.py PASS.onnx X.npy OUT_DIR FIRST COUNT BATCH [Y.npy]
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main():
    pass_model, x_path, out_dir, first, count, batch = sys.argv[1:7]
    first, count, batch = int(first), int(count), int(batch)
    y = np.load(sys.argv[7]) if len(sys.argv) > 7 else None
    x = np.load(x_path, mmap_mode="r")
    session = ort.InferenceSession(pass_model, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(first, first + count, batch)):
        stop = min(start + batch, first + count)
        arrays = dict(zip(names, session.run(names, {feed: np.ascontiguousarray(x[start:stop])})))
        if y is not None:
            arrays["labels"] = y[start:stop].astype(np.int64)
        save = np.savez_compressed if i % 2 else np.savez
        # Written under a temporary name, then renamed: a reader never sees half a shard.
        tmp = out / f".part-{start:07d}.tmp.npz"
        save(tmp, **arrays)
        tmp.rename(out / f"part-{start:07d}.npz")
    print(f"rows {first}..{first + count}: {len(range(first, first + count, batch))} shards")


if __name__ == "__main__":
    main()
