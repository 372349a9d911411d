"""The Python package (python/, built and installed into .venv by scripts/test.sh):
the API end to end on the digits model, refereed by onnx's checker and ONNX Runtime.

Run: .venv/bin/python -m pytest tests/python/test_package.py (tests/python_package.rs does).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import eexc

DIGITS = Path(__file__).resolve().parents[2] / "testdata" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
AT = ["stem_out", "block1_out", "block2_out"]


def data(name):
    return np.load(DIGITS / f"{name}.npy")


def test_fit_insert_calibrate_eval_in_a_few_lines(tmp_path):
    heads = eexc.fit(MODEL, data("train_x"), data("train_y"), at=AT, output=tmp_path / "heads.safetensors")
    ee = eexc.insert_exits(onnx.load(MODEL), at=AT, weights=heads.path)
    calibrated = eexc.calibrate(ee.model, data("calib_x"), data("calib_y"), max_drop="1%")
    report = eexc.eval(calibrated.model, data("test_x"), data("test_y"), baseline=MODEL)

    assert heads.report["rows"] == 1000 and len(heads.report["exits"]) == 3
    assert heads.model == (tmp_path / "heads.safetensors").read_bytes()
    model = onnx.load_from_string(calibrated.model)
    onnx.checker.check_model(model, full_check=True)
    assert calibrated.report["chosen"]["certified"] is True
    assert calibrated.report["chosen"]["p_value"] <= calibrated.report["delta"]
    assert "certified" in calibrated.text
    assert report["rows"] == 400
    assert report["agreement"] >= 0.95
    assert sum(report["exit_histogram"]) == 400
    # The model runs where users deploy it, with the exit index as an output.
    session = ort.InferenceSession(calibrated.model, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: data("test_x")[:1]})
    assert outputs[0].shape == (1, 10) and outputs[1].dtype == np.int64


TOKENS = DIGITS.parent / "tokens"


def token_rows(split):
    """A token split as the dict of arrays a user holds: one per model input."""
    with np.load(TOKENS / f"{split}.npz") as d:
        return {name: d[name] for name in ("input_ids", "attention_mask")}, np.load(TOKENS / f"{split}_y.npy")


def test_token_models_take_a_dict_of_arrays_named_after_their_inputs():
    (x, y), (xc, yc) = token_rows("train"), token_rows("calib")
    r = eexc.compile(TOKENS / "sentiment_bert.onnx", x, y, calib_data=xc, calib_labels=yc,
                     max_drop="2%", dim=["seq=32"])
    assert r.report["calibration"]["chosen"]["certified"] is True
    assert {e["head"] for e in r.report["exits_tried"]} == {"mirror"}
    session = ort.InferenceSession(r.model, providers=["CPUExecutionProvider"])
    xt, yt = token_rows("test")
    logits, exit_index = session.run(None, xt)
    assert logits.shape == (1000, 2) and exit_index.min() >= 1
    assert (logits.argmax(1) == yt).mean() >= 0.7


def test_model_bytes_paths_and_protos_give_the_same_model(tmp_path):
    by_path = eexc.insert_exits(MODEL, at=AT, threshold=0.5)
    by_bytes = eexc.insert_exits(MODEL.read_bytes(), at=AT, threshold=0.5)
    by_proto = eexc.insert_exits(onnx.load(MODEL), at=AT, threshold=0.5, output=tmp_path / "ee.onnx")
    assert by_path.model == by_bytes.model == by_proto.model
    assert by_proto.path == str(tmp_path / "ee.onnx")
    assert (tmp_path / "ee.onnx").read_bytes() == by_path.model
    assert by_path.report["exits"][0]["tensor"] == "stem_out"
    cost = eexc.cost(by_path.model, exit_dist=[0.5, 0.2, 0.1])
    assert cost["original"]["flops"] > 0
    assert eexc.inspect(MODEL)["totals"]["macs"] == 828736


def test_untrained_heads_warn_and_errors_raise_with_the_message():
    before = MODEL.read_bytes()
    with pytest.warns(UserWarning, match="UNTRAINED"):
        eexc.insert_exits(MODEL, at=AT)
    with pytest.raises(eexc.EexcError, match="tensor 'nope' is not in the graph") as e:
        eexc.insert_exits(MODEL, at=["nope"])
    assert e.value.code == 2
    with pytest.raises(eexc.EexcError, match="gate failed") as e:
        eexc.compile(MODEL, data("train_x"), data("train_y"), calib_data=data("calib_x"),
                     calib_labels=data("calib_y"), at=AT, max_drop="1%", fail_under_savings="95%")
    assert e.value.code == 1
    assert MODEL.read_bytes() == before


def test_the_console_script_is_the_command_line():
    script = Path(sys.executable).with_name("eexc")
    out = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"eexc {eexc.__version__}"
    bad = subprocess.run([script, "inspect", os.devnull], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("eexc: error: ")


def test_a_forward_pass_run_elsewhere_gives_the_same_heads(tmp_path):
    """The pass model run by ONNX Runtime in this process, batch by batch, its outputs
    saved as .npz shards (with the labels), then fit from the shards: the same report
    as fitting on the rows in-process, to float rounding."""
    x, y = data("train_x"), data("train_y")
    eexc.pass_model("fit", MODEL, tmp_path / "pass.onnx", at=AT)
    session = ort.InferenceSession(str(tmp_path / "pass.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    shards = tmp_path / "shards"
    shards.mkdir()
    for first in range(0, len(x), 250):
        outputs = session.run(names, {session.get_inputs()[0].name: x[first:first + 250]})
        np.savez(shards / f"part-{first:05d}.npz", labels=y[first:first + 250], **dict(zip(names, outputs)))
    manifest = eexc.manifest(shards, tmp_path / "pass.onnx", labels="labels")
    assert [s["rows"] for s in manifest["shards"]] == [250] * 4

    from_shards = eexc.fit(MODEL, at=AT, outputs=shards)
    in_process = eexc.fit(MODEL, x, y, at=AT)
    for a, b in zip(in_process.report["exits"], from_shards.report["exits"]):
        assert abs(a["label_accuracy"] - b["label_accuracy"]) <= 0.002
    # Shards of one pass model do not fit another.
    with pytest.raises(eexc.EexcError, match="another pass model"):
        eexc.fit(MODEL, at=AT[:2], outputs=shards)
