"""Export small transformer classifiers with PyTorch, the way users get their ONNX files.

Usage (once, by a developer; CI reads the committed .onnx files and needs no PyTorch):
    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install -r testdata/transformers/requirements.txt
    /tmp/torchvenv/bin/python testdata/transformers/make_transformer_exports.py testdata/transformers
    # ViT-B/16 and a BERT-base-shaped encoder (hundreds of MB, not committed):
    /tmp/torchvenv/bin/python testdata/transformers/make_transformer_exports.py /tmp/full --full-size

Models (random weights, seeded; every layer has its own weights; eval mode):

  vit_tiny_ts.onnx          torchvision VisionTransformer: 32x32 RGB, patch 8 -> 16 patches
                            + class token = 17 tokens, hidden 64, 4 layers, 4 heads,
                            MLP 128, 10 classes. Input "image" float[batch,3,32,32].
                            TorchScript exporter (torch.onnx.export, dynamo=False), opset 17.
  encoder_ts.onnx           nn.TransformerEncoder classifier: "tokens" float[batch,32,64]
                            (the exporter bakes nn.MultiheadAttention's sequence length
                            into its Reshapes, so seq is not left dynamic), 4 layers, 4 heads,
                            feed-forward 128, final LayerNorm, mean over tokens, Linear 64->10.
                            TorchScript exporter, opset 17.
  encoder_dynamo.onnx       the same module and weights, torch.export-based exporter
                            (dynamo=True), opset 18, seq fixed at 32.
  bert_tiny_ts.onnx         BERT-style: "input_ids" int64[batch,seq] and "attention_mask"
                            int64[batch,seq]; word (vocab 1000) + position (64) embeddings,
                            LayerNorm, 4 post-norm layers (hidden 64, 4 heads, intermediate
                            128, GELU), the mask added to the attention scores as
                            (1 - mask) * -10000, pooler Dense+Tanh on the first token,
                            classifier 64->2. TorchScript exporter, opset 17.

referee.json gives, for each file, the MACs of one sample counted from the PyTorch modules'
own sizes (Linear: in*out per token; attention: two seq x seq x head-dim products per head;
the patch convolution: its output elements times in-channels times kernel area), at the
sequence length stated there. It is the referee for `eexc inspect`'s totals
(tests/transformer_exports.rs, docs/published-figures.md).

Each file is checked with onnx.checker (full_check) and run in onnxruntime against the
PyTorch module's output.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from torch import nn

# The small models' sizes; full_size() rebinds them to BERT-base's before it builds.
HIDDEN, HEADS, FFN, LAYERS = 64, 4, 128, 4
POSITIONS = 64
SEQ = 32


def encoder_macs(tokens, hidden=HIDDEN, ffn=FFN, layers=LAYERS):
    """One sample: per layer the q/k/v and out projections, scores and context, the FFN."""
    per_layer = tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * tokens * tokens * hidden
    return layers * per_layer


def reset_every_layer(layers, seed):
    """nn.TransformerEncoder deep-copies one layer: give each its own weights."""
    for i, layer in enumerate(layers):
        torch.manual_seed(seed + i)
        for p in layer.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=0.02)
        for m in layer.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, mean=1.0, std=0.05)


class EncoderClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, FFN, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(HIDDEN)
        self.classifier = nn.Linear(HIDDEN, 10)
        reset_every_layer(self.encoder.layers, 100)

    def forward(self, tokens):
        return self.classifier(self.norm(self.encoder(tokens)).mean(dim=1))


class BertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attention_out = nn.Linear(HIDDEN, HIDDEN)
        self.attention_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.intermediate = nn.Linear(HIDDEN, FFN)
        self.output = nn.Linear(FFN, HIDDEN)
        self.output_norm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def heads(self, x):
        batch, seq, _ = x.shape
        return x.view(batch, seq, HEADS, HIDDEN // HEADS).permute(0, 2, 1, 3)

    def forward(self, x, mask_bias):
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / float(np.sqrt(HIDDEN // HEADS))
        probs = torch.softmax(scores + mask_bias, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        context = context.view(x.shape[0], x.shape[1], HIDDEN)
        x = self.attention_norm(x + self.attention_out(context))
        return self.output_norm(x + self.output(nn.functional.gelu(self.intermediate(x))))


class BertClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.words = nn.Embedding(1000, HIDDEN)
        self.positions = nn.Embedding(POSITIONS, HIDDEN)
        self.embedding_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer() for _ in range(LAYERS)])
        self.pooler = nn.Linear(HIDDEN, HIDDEN)
        self.classifier = nn.Linear(HIDDEN, 2)
        reset_every_layer(self.layers, 200)

    def forward(self, input_ids, attention_mask):
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        x = self.embedding_norm(self.words(input_ids) + self.positions(positions))
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def vit_tiny():
    torch.manual_seed(3)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=LAYERS, num_heads=HEADS,
        hidden_dim=HIDDEN, mlp_dim=FFN, num_classes=10,
    )
    reset_every_layer(list(model.encoder.layers), 300)
    return model


def referee():
    patches = (32 // 8) ** 2
    vit_tokens = patches + 1
    return {
        "vit_tiny_ts.onnx": {
            "dims": {},
            "macs": patches * 3 * 8 * 8 * HIDDEN + encoder_macs(vit_tokens) + HIDDEN * 10,
        },
        "encoder_ts.onnx": {"dims": {}, "macs": encoder_macs(SEQ) + HIDDEN * 10},
        "encoder_dynamo.onnx": {"dims": {}, "macs": encoder_macs(SEQ) + HIDDEN * 10},
        "bert_tiny_ts.onnx": {
            "dims": {"seq": SEQ},
            "macs": encoder_macs(SEQ) + HIDDEN * HIDDEN + HIDDEN * 2,
        },
    }


def check(path, module, feeds):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    with torch.no_grad():
        want = module(*feeds.values()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    print(f"{path}: {path.stat().st_size} bytes, opset {opset}, ok")


def full_size(out):
    """ViT-B/16 (torchvision) and a BERT-base-shaped encoder at 128 tokens, for the
    2% check in docs/published-figures.md; hundreds of MB, so not committed."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16().eval()
    path = out / "vit_b_16_ts.onnx"
    torch.onnx.export(
        vit, (torch.randn(1, 3, 224, 224),), path, input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    global HIDDEN, HEADS, FFN, LAYERS, POSITIONS
    HIDDEN, HEADS, FFN, LAYERS, POSITIONS = 768, 12, 3072, 12, 512
    bert = BertClassifier().eval()
    path = out / "bert_base_ts.onnx"
    ids, mask = torch.randint(0, 1000, (1, 128)), torch.ones(1, 128, dtype=torch.int64)
    torch.onnx.export(
        bert, (ids, mask), path, input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    figures = {
        # torchvision's ViT_B_16_Weights.IMAGENET1K_V1 meta "_ops" is 17.564 (GMACs).
        "vit_b_16_ts.onnx": {"dims": {}, "macs": 196 * 3 * 16 * 16 * 768 + encoder_macs(197, 768, 3072, 12)
                             + 768 * 1000, "torchvision_ops": 17.564e9},
        "bert_base_ts.onnx": {"dims": {"seq": 128}, "macs": encoder_macs(128, 768, 3072, 12) + 768 * 768 + 768 * 2},
    }
    (out / "referee_full_size.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if "--full-size" in sys.argv[2:]:
        full_size(out)
        return
    torch.manual_seed(0)

    vit = vit_tiny().eval()
    image = torch.randn(2, 3, 32, 32)
    path = out / "vit_tiny_ts.onnx"
    torch.onnx.export(
        vit, (image,), path, input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    check(path, vit, {"image": torch.randn(3, 3, 32, 32)})

    encoder = EncoderClassifier().eval()
    tokens = torch.randn(2, SEQ, HIDDEN)
    path = out / "encoder_ts.onnx"
    torch.onnx.export(
        encoder, (tokens,), path, input_names=["tokens"], output_names=["logits"],
        dynamic_axes={"tokens": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    check(path, encoder, {"tokens": torch.randn(3, SEQ, HIDDEN)})

    path = out / "encoder_dynamo.onnx"
    program = torch.onnx.export(
        encoder, (tokens,), input_names=["tokens"], output_names=["logits"],
        dynamic_shapes={"tokens": {0: torch.export.Dim("batch", min=1, max=1024)}},
        opset_version=18, dynamo=True,
    )
    program.optimize()
    program.save(str(path))
    check(path, encoder, {"tokens": torch.randn(3, SEQ, HIDDEN)})

    bert = BertClassifier().eval()
    ids = torch.randint(0, 1000, (2, SEQ))
    mask = torch.ones(2, SEQ, dtype=torch.int64)
    path = out / "bert_tiny_ts.onnx"
    torch.onnx.export(
        bert, (ids, mask), path, input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    test_mask = torch.ones(3, 24, dtype=torch.int64)
    test_mask[1, 12:] = 0
    check(path, bert, {"input_ids": torch.randint(0, 1000, (3, 24)), "attention_mask": test_mask})

    (out / "referee.json").write_text(json.dumps(referee(), indent=2, sort_keys=True) + "\n")
    print(out / "referee.json")


if __name__ == "__main__":
    main()
