//! Token models end to end: sample files with int64 `input_ids` and an
//! `attention_mask` (an `.npz` with one array per data input), heads that
//! mirror the model's own tail, and fit → calibrate → eval on a trained
//! BERT-style classifier (testdata/tokens, made by its pinned script).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eexc, py, python, testdata};

fn tokens(file: &str) -> PathBuf {
    testdata(&format!("tokens/{file}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = eexc(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(args: &[&str]) -> String {
    let out = eexc(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Counts of `op` nodes over every graph of a printed model.
fn op_count(model: &Path, op: &str) -> usize {
    let printed = ok(&["print", "--elide-data-over", "16", s(model)]);
    printed.matches(&format!(" = {op} ")).count() + printed.matches(&format!(" = {op}(")).count()
}

#[test]
fn compile_fits_and_calibrates_a_token_model_and_eval_measures_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sentiment.ee.onnx");
    let report = dir.path().join("compile.json");
    let model = tokens("sentiment_bert.onnx");
    ok(&[
        "compile",
        s(&model),
        "--data",
        s(&tokens("train.npz")),
        "--labels",
        s(&tokens("train_y.npy")),
        "--calib-data",
        s(&tokens("calib.npz")),
        "--calib-labels",
        s(&tokens("calib_y.npy")),
        "--max-drop",
        "2%",
        "--dim",
        "seq=32",
        "-o",
        s(&out),
        "--report",
        s(&report),
    ]);
    let compiled: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let kept: Vec<&serde_json::Value> = compiled["exits_tried"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kept"] == true)
        .collect();
    assert!(!kept.is_empty(), "{compiled}");
    // auto on a token model with a pooler: the heads mirror it.
    assert!(kept.iter().all(|e| e["head"] == "mirror"), "{compiled}");
    assert!(compiled["calibration"]["chosen"]["certified"] == true, "{compiled}");
    py("check_model.py", &[&out, Path::new("--run")]);

    // On the test rows, in ONNX Runtime, against the original.
    let eval = ok(&[
        "eval",
        s(&out),
        "--data",
        s(&tokens("test.npz")),
        "--labels",
        s(&tokens("test_y.npy")),
        "--baseline",
        s(&model),
        "--runtime",
        "ort",
        "--json",
    ]);
    let eval: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert_eq!(eval["runtime_info"]["name"], "onnxruntime", "{eval}");
    let histogram: Vec<u64> = eval["exit_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(histogram.iter().sum::<u64>(), 1000);
    let early: u64 = histogram[..histogram.len() - 1].iter().sum();
    assert!(early >= 300, "most easy sentences leave early: {histogram:?}");
    // The certificate holds on the calibration distribution, which the
    // test rows share; 3 points leave room for the sampling of 1000 rows.
    let (ee, base) = (
        eval["early_exit"]["accuracy"].as_f64().unwrap(),
        eval["baseline"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        ee >= base - 0.03,
        "early-exit accuracy {ee} against the original's {base}"
    );
    assert!(eval["agreement"].as_f64().unwrap() >= 0.9, "{eval}");
}

#[test]
fn mirror_heads_replay_the_models_tail_on_their_own_weights() {
    // Per model: the exits, and an op only its tail has, counted once per
    // tail (the classifier's, and one per exit).
    for (file, at, tail_op, dims) in [
        (
            "tokens/sentiment_bert.onnx",
            "/layers.0/output_norm/LayerNormalization_output_0,/layers.1/output_norm/LayerNormalization_output_0",
            "Tanh",
            &["--dim", "seq=32"][..],
        ),
        (
            "transformers/encoder_ts.onnx",
            "/encoder/layers.0/norm2/LayerNormalization_output_0,/encoder/layers.1/norm2/LayerNormalization_output_0",
            "ReduceMean",
            &[],
        ),
        (
            "transformers/vit_tiny_ts.onnx",
            "/encoder/layers/encoder_layer_0/Add_1_output_0,/encoder/layers/encoder_layer_1/Add_1_output_0",
            "LayerNormalization",
            &[],
        ),
    ] {
        let model = testdata(file);
        let dir = tempfile::tempdir().unwrap();
        let (mirror, cls) = (dir.path().join("mirror.onnx"), dir.path().join("cls.onnx"));
        for (out, head) in [(&mirror, "mirror"), (&cls, "token-cls")] {
            let mut args = vec!["insert-exits", s(&model), "--at", at, "--head", head, "-o", s(out)];
            args.extend(dims);
            ok(&args);
            py("check_model.py", &[out, Path::new("--run")]);
        }
        let (with_tail, without) = (op_count(&mirror, tail_op), op_count(&cls, tail_op));
        assert_eq!(with_tail, without + 2, "{file}: {tail_op} per exit");
        // Each exit's copy of the tail's weights is its own initializer.
        let printed = ok(&["print", "--elide-data-over", "16", s(&mirror)]);
        assert!(
            printed.contains("eexc_exit1_tail_weight") && printed.contains("eexc_exit2_tail_weight"),
            "{file}"
        );
    }
}

#[test]
fn auto_heads_on_token_models_mirror_the_tail_and_fit_trains_them() {
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("heads.safetensors");
    let report = dir.path().join("fit.json");
    let model = tokens("sentiment_bert.onnx");
    let at = "/layers.1/output_norm/LayerNormalization_output_0";
    ok(&[
        "fit",
        s(&model),
        "--data",
        s(&tokens("train.npz")),
        "--labels",
        s(&tokens("train_y.npy")),
        "--at",
        at,
        "-o",
        s(&heads),
        "--report",
        s(&report),
    ]);
    let fitted: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let exit = &fitted["exits"][0];
    assert_eq!(exit["head"], "mirror", "{fitted}");
    // Two layers of four already separate most sentences (chance is 50%).
    assert!(exit["label_accuracy"].as_f64().unwrap() > 0.75, "{fitted}");
    let out = dir.path().join("trained.onnx");
    ok(&[
        "insert-exits",
        s(&model),
        "--at",
        at,
        "--weights",
        s(&heads),
        "--dim",
        "seq=32",
        "-o",
        s(&out),
    ]);
    py("check_model.py", &[&out, Path::new("--run")]);
}

#[test]
fn mirror_is_refused_where_there_is_no_tail_to_mirror() {
    let digits = testdata("digits/digits_resnet.onnx");
    let err = refused(&[
        "insert-exits",
        s(&digits),
        "--at",
        "block1_out",
        "--head",
        "mirror",
        "-o",
        "/dev/null",
    ]);
    assert!(err.contains("'block1_out' has rank 4; no mirror head fits"), "{err}");
    // ViT's patch embeddings (16 tokens) are not shaped like a layer's
    // output (the class token makes 17): an explicit mirror is refused
    // with the reason, auto falls back to the CLS token.
    let vit = testdata("transformers/vit_tiny_ts.onnx");
    let patches = "/Transpose_output_0";
    let err = refused(&[
        "insert-exits",
        s(&vit),
        "--at",
        patches,
        "--head",
        "mirror",
        "-o",
        "/dev/null",
    ]);
    assert!(
        err.contains("--head mirror at '/Transpose_output_0': its type float[batch,16,64] is not the type of the last layer's output"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vit.onnx");
    let summary = ok(&["insert-exits", s(&vit), "--at", patches, "-o", s(&out)]);
    assert!(
        summary.contains("exit 1: /Transpose_output_0 (token-cls head"),
        "{summary}"
    );
}

/// Writes an `.npz` with the arrays `python_arrays` builds (a Python
/// dict expression over `ids`, `mask` and numpy as `np`).
fn npz(dir: &Path, name: &str, python_arrays: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "import numpy as np\nd = np.load({train:?})\nids, mask = d['input_ids'][:40], d['attention_mask'][:40]\nnp.savez({path:?}, **{python_arrays})\n",
        train = s(&tokens("train.npz")),
        path = s(&path),
    );
    let out = Command::new(python()).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

#[test]
fn token_sample_files_that_do_not_fit_the_inputs_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = tokens("sentiment_bert.onnx");
    let cases = [
        (
            npz(dir.path(), "no_mask.npz", "{'input_ids': ids}"),
            "no array here is named 'attention_mask'",
        ),
        (
            npz(
                dir.path(),
                "float_ids.npz",
                "{'input_ids': ids.astype(np.float32), 'attention_mask': mask}",
            ),
            "array 'input_ids' holds float32 values and the model's input 'input_ids' takes int64",
        ),
        (
            npz(
                dir.path(),
                "extra.npz",
                "{'input_ids': ids, 'attention_mask': mask, 'token_type_ids': mask}",
            ),
            "array 'token_type_ids' feeds none of the model's data inputs (input_ids, attention_mask)",
        ),
        (
            npz(
                dir.path(),
                "short_mask.npz",
                "{'input_ids': ids, 'attention_mask': mask[:30]}",
            ),
            "has 30 rows",
        ),
    ];
    for (data, expected) in &cases {
        let err = refused(&[
            "fit",
            s(&model),
            "--data",
            s(data),
            "--at",
            "/layers.1/output_norm/LayerNormalization_output_0",
            "-o",
            s(&dir.path().join("h.safetensors")),
        ]);
        assert!(err.contains(expected) && err.contains(s(data)), "{expected}: {err}");
    }
}
