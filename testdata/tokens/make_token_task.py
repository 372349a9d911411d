"""Train a small BERT-style classifier on a synthetic sentiment task and export it.

The token model of the end-to-end tests (fit, calibrate, compile and eval on int64
`input_ids` with an `attention_mask`). CI reads the committed files and needs no PyTorch.

Usage (once, by a developer, from the repository root; the same pinned venv as
../transformers/make_transformer_exports.py):
    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install -r testdata/transformers/requirements.txt
    /tmp/torchvenv/bin/python testdata/tokens/make_token_task.py testdata/tokens

The task (made up here, seeded, no download). Vocabulary of 1000 ids: 0 = padding,
1 = [CLS], 2 = "not", 3..102 positive words, 103..202 negative words, the rest neutral.
A sentence is [CLS] and 7..31 words (each neutral with p 0.6, positive 0.2, negative 0.2;
a polar word is preceded by "not" with p 0.15, which flips it), padded to 32 ids with
mask 0. The label is 1 when the flipped polarities sum above zero, 0 below; sentences
that sum to zero are drawn again. A large sum is easy, a sum of +-1 with negations is
hard: the rows that early exits are for, and the ones they must leave to the full model.

The model is make_transformer_exports.BertClassifier (word + position embeddings,
LayerNorm, 4 post-norm layers of hidden 64, pooler Dense+Tanh on the [CLS] token,
classifier 64 -> 2), trained with Adam for 20 epochs of 8000 freshly drawn sentences each,
exported by the
TorchScript exporter (opset 17) with symbolic batch and seq.

Writes: sentiment_bert.onnx; train.npz, calib.npz, test.npz (arrays `input_ids` and
`attention_mask`, int64 [rows, 32]) with train_y.npy, calib_y.npy, test_y.npy (int64);
prints the accuracies (ONNX Runtime) that README.md records.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "transformers"))
from make_transformer_exports import BertClassifier  # noqa: E402

SEQ = 32
PAD, CLS, NOT = 0, 1, 2
POSITIVE = range(3, 103)
NEGATIVE = range(103, 203)
NEUTRAL = range(203, 1000)
EPOCHS = 20


def sentences(rng, count):
    ids = np.zeros((count, SEQ), dtype=np.int64)
    mask = np.zeros((count, SEQ), dtype=np.int64)
    labels = np.zeros(count, dtype=np.int64)
    row = 0
    while row < count:
        words, score = [], 0
        for _ in range(rng.integers(7, SEQ)):
            kind = rng.random()
            if kind < 0.6:
                words.append(int(rng.choice(NEUTRAL)))
                continue
            positive = kind < 0.8
            word = int(rng.choice(POSITIVE if positive else NEGATIVE))
            sign = 1 if positive else -1
            if rng.random() < 0.15:
                words.append(NOT)
                sign = -sign
            words.append(word)
            score += sign
        words = [CLS] + words[: SEQ - 1]
        if score == 0:
            continue
        ids[row, : len(words)] = words
        mask[row, : len(words)] = 1
        labels[row] = int(score > 0)
        row += 1
    return ids, mask, labels


def train(model, rng):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(EPOCHS):
        # Fresh sentences every epoch: a fixed set this size is memorised.
        ids, mask, labels = (torch.from_numpy(a) for a in sentences(rng, 8000))
        order = torch.from_numpy(rng.permutation(len(labels)))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(ids[batch], mask[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")
    model.eval()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    model = BertClassifier()
    train(model, rng)

    path = out / "sentiment_bert.onnx"
    ids, mask, _ = sentences(rng, 2)
    torch.onnx.export(
        model, (torch.from_numpy(ids), torch.from_numpy(mask)), path,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for split, rows in (("train", 1000), ("calib", 1000), ("test", 1000)):
        ids, mask, labels = sentences(rng, rows)
        np.savez_compressed(out / f"{split}.npz", input_ids=ids, attention_mask=mask)
        np.save(out / f"{split}_y.npy", labels)
        logits = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(logits, want, rtol=1e-3, atol=1e-4)
        print(f"{split}: accuracy {(logits.argmax(1) == labels).mean():.3f} on {rows} rows")
    print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
