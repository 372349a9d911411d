//! `insert-exits --mode loop`: repeated layers folded into one ONNX `Loop`,
//! refereed by ONNX Runtime against the `if` model with the same exits
//! (tests/python/check_loop.py).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{eexc, insert_exits as insert, insert_exits_refused, modern_models, py, testdata};

/// BERT-style encoders and deep MLPs with six identical layers
/// (tests/python/make_repeated_models.py).
fn repeated_models() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        py("make_repeated_models.py", &[dir.path()]);
        dir
    })
    .path()
}

fn layer_outputs(model: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repeated_models().join("repeated_layers.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[model]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn loop_models_equal_the_if_models() {
    for name in ["bert_op17", "bert_op21", "deep_mlp_op13", "deep_mlp_op17"] {
        let file = format!("{name}.onnx");
        let model = repeated_models().join(&file);
        let layers = layer_outputs(&file);
        let dir = tempfile::tempdir().unwrap();
        let (iff, lp) = (dir.path().join("if.onnx"), dir.path().join("loop.onnx"));
        for confidence in ["maxprob", "margin"] {
            let report = insert(
                &model,
                &lp,
                &["--mode", "loop", "--confidence", confidence, "--seed", "4"],
            );
            // The exits it found are exactly after layers 1..L-1.
            assert_eq!(reported_exits(&report), layers[..layers.len() - 1], "{report}");
            let at = layers[..layers.len() - 1].join(",");
            insert(&model, &iff, &["--at", &at, "--confidence", confidence, "--seed", "4"]);
            let s = |x: &str| PathBuf::from(x);
            let out = py(
                "check_loop.py",
                &[
                    &s("--original"),
                    &model,
                    &s("--if"),
                    &iff,
                    &s("--loop"),
                    &lp,
                    &s("--int-high"),
                    &s("100"),
                ],
            );
            assert!(out.contains("0 failed"), "{out}");
        }
    }
}

/// Exit tensors as the insert-exits report lists them (`exit k: TENSOR (...`).
fn reported_exits(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("exit "))
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.parse::<usize>().is_ok())
        .map(|(_, rest)| rest.split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn repeated_layers_inside_the_modern_models_are_found() {
    // mlp_op17: 64-128-128-128-128-10, so fc2..fc4 repeat; tokens_op17 repeats
    // its two token-mixing blocks.
    for (name, want) in [("mlp_op17", vec!["h2", "h3"]), ("tokens_op17", vec!["t2"])] {
        let model = modern_models().join(format!("{name}.onnx"));
        let dir = tempfile::tempdir().unwrap();
        let (iff, lp) = (dir.path().join("if.onnx"), dir.path().join("loop.onnx"));
        let report = insert(&model, &lp, &["--mode", "loop", "--threshold", "0.3"]);
        assert_eq!(reported_exits(&report), want, "{report}");
        insert(&model, &iff, &["--at", &want.join(","), "--threshold", "0.3"]);
        let s = |x: &str| PathBuf::from(x);
        py(
            "check_loop.py",
            &[&s("--original"), &model, &s("--if"), &iff, &s("--loop"), &lp],
        );
    }
}

/// Weights as torch.onnx.export writes them (a Transpose of a stored Linear
/// weight, a Reshape of a bias, a Cast from float16, Identity aliases of an
/// equal weight) are evaluated and stacked: one Loop, equal to the original
/// when nothing exits and to the if model for any thresholds (ONNX Runtime),
/// and the load-time nodes and stored weights the stack replaced are gone.
/// A weight computed by another op is refused, naming the node.
#[test]
fn weights_behind_exporter_ops_are_stacked() {
    let dir = tempfile::tempdir().unwrap();
    py("make_exported_layers_models.py", &[dir.path()]);
    let model = dir.path().join("exported_layers.onnx");
    let (iff, lp) = (dir.path().join("if.onnx"), dir.path().join("loop.onnx"));
    let report = insert(&model, &lp, &["--mode", "loop", "--seed", "4"]);
    let exits = ["layer1_out", "layer2_out", "layer3_out"];
    assert_eq!(reported_exits(&report), exits, "{report}");
    insert(&model, &iff, &["--at", &exits.join(","), "--seed", "4"]);
    let s = |x: &str| PathBuf::from(x);
    let out = py(
        "check_loop.py",
        &[&s("--original"), &model, &s("--if"), &iff, &s("--loop"), &lp],
    );
    assert!(out.contains("0 failed"), "{out}");
    let printed = eexc(&["print", "--elide-data-over", "16", lp.to_str().unwrap()]);
    let printed = String::from_utf8(printed.stdout).unwrap();
    for gone in [
        "layer2_w1_stored",
        "layer3_b1_stored",
        "layer4_w2_stored",
        "bias_shape",
        "Transpose",
        "Cast",
    ] {
        assert!(!printed.contains(gone), "{gone} is still in the loop model:\n{printed}");
    }
    // The aliased LayerNorm weight is equal in every layer: read, not stacked.
    assert!(printed.contains("layer1_gamma"), "{printed}");
    assert!(!printed.contains("layer1_gamma_stacked"), "{printed}");

    let err = refused_loop(&dir.path().join("scaled_layers.onnx"), &[]);
    assert!(
        err.contains("layer constant 'layer1_w1': 'layer1_w1' is computed by 'layer1_w1' (Mul), which eexc does not evaluate at load time"),
        "{err}"
    );
}

/// PyTorch exports (testdata/transformers, and the trained token model of
/// testdata/tokens): every layer of each goes into
/// the one Loop. The attention blocks compute their reshape targets from
/// per-layer `Constant`s (`Mod`, `Div`, `Concat`); the encoders' first layer
/// reads the graph input itself; BERT's layers all read the mask's bias and
/// the torch.export-based file's a batch size, context that stays outside.
#[test]
fn real_transformer_exports_fold_into_one_loop() {
    let layer_outputs =
        |pattern: &str| -> Vec<String> { (0..3).map(|i| pattern.replace('#', &i.to_string())).collect() };
    for (file, exits, dims) in [
        (
            "vit_tiny_ts.onnx",
            layer_outputs("/encoder/layers/encoder_layer_#/Add_1_output_0"),
            &[][..],
        ),
        (
            "encoder_ts.onnx",
            layer_outputs("/encoder/layers.#/norm2/LayerNormalization_output_0"),
            &[],
        ),
        (
            "encoder_dynamo.onnx",
            vec!["layer_norm_1".into(), "layer_norm_3".into(), "layer_norm_5".into()],
            &[],
        ),
        (
            "bert_tiny_ts.onnx",
            layer_outputs("/layers.#/output_norm/LayerNormalization_output_0"),
            &["--dim", "seq=32"],
        ),
        (
            "../tokens/sentiment_bert.onnx",
            layer_outputs("/layers.#/output_norm/LayerNormalization_output_0"),
            &["--dim", "seq=32"],
        ),
    ] {
        let model = testdata(&format!("transformers/{file}"));
        let dir = tempfile::tempdir().unwrap();
        let (iff, lp) = (dir.path().join("if.onnx"), dir.path().join("loop.onnx"));
        let mut args = vec!["--mode", "loop", "--seed", "4"];
        args.extend(dims);
        let report = insert(&model, &lp, &args);
        assert_eq!(reported_exits(&report), exits, "{file}: {report}");
        let at = exits.join(",");
        let mut args = vec!["--at", &at, "--seed", "4"];
        args.extend(dims);
        insert(&model, &iff, &args);
        let s = |x: &str| PathBuf::from(x);
        let out = py(
            "check_loop.py",
            &[&s("--original"), &model, &s("--if"), &iff, &s("--loop"), &lp],
        );
        assert!(out.contains("0 failed"), "{file}: {out}");
        if file == "encoder_ts.onnx" {
            // Sizes the model fixes are constants, in the loop body and in
            // the if form's graphs; the batch size is still read with Shape
            // and Gather on every call.
            for (emitted, node_prefix) in [
                (&lp, "eexc_loop_/encoder/layers.0/self_attn/"),
                (&iff, "/encoder/layers.1/self_attn/"),
            ] {
                let printed = eexc(&["print", "--elide-data-over", "16", emitted.to_str().unwrap()]);
                let printed = String::from_utf8(printed.stdout).unwrap();
                let node = |n: &str| format!("[\"{node_prefix}{n}\"]");
                assert!(
                    !printed.contains(&node("Gather_2")),
                    "the width (64) is computed:\n{printed}"
                );
                assert!(
                    printed.contains(&node("Gather_1")),
                    "the batch size is not read:\n{printed}"
                );
            }
        }
    }
}

#[test]
fn loop_mode_refuses_what_it_cannot_fold() {
    // Residual blocks of growing width: nothing repeats.
    let err = refused_loop(&modern_models().join("resnet_op17.onnx"), &[]);
    assert!(err.contains("no run of two or more identical layers"), "{err}");
    // Exits come from the run itself.
    let err = refused_loop(&repeated_models().join("deep_mlp_op17.onnx"), &["--auto", "2"]);
    assert!(err.contains("drop --at/--auto"), "{err}");
    // ResNet-50 repeats its bottlenecks, but at opset 9 (no Gather index -1).
    let err = refused_loop(&testdata("models/resnet50.onnx"), &[]);
    assert!(err.contains("opset 11") && err.contains("opset 9"), "{err}");
    // Other modes still need a place for the exits.
    let o = eexc(&[
        "insert-exits",
        repeated_models().join("deep_mlp_op17.onnx").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--at TENSORS or --auto K"));
}

#[test]
fn loop_graph_snapshot_and_determinism() {
    let dir = tempfile::tempdir().unwrap();
    let model = repeated_models().join("deep_mlp_op17.onnx");
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    insert(&model, &a, &["--mode", "loop"]);
    insert(&model, &b, &["--mode", "loop"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let printed = eexc(&["print", "--elide-data-over", "16", a.to_str().unwrap()]);
    insta::assert_snapshot!("loop_deep_mlp_graph", String::from_utf8(printed.stdout).unwrap());
}

fn refused_loop(model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--mode", "loop"];
    args.extend_from_slice(extra);
    insert_exits_refused(model, &args)
}
