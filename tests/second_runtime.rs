//! A second real runtime as referee: the emitted forms run in OpenVINO as in
//! ONNX Runtime, and survive the simplifiers users chain after eexc
//! (onnxslim, onnxsim) with their exits and results
//! (tests/python/check_second_runtime.py; what each runtime accepts is in
//! docs/output-graph.md).

mod common;

use std::path::{Path, PathBuf};

use common::{exit_points, insert_exits, modern_models, py, quantize_digits, testdata};

fn repeated_model(dir: &Path, name: &str) -> PathBuf {
    let models = dir.join("repeated");
    if !models.exists() {
        std::fs::create_dir_all(&models).unwrap();
        py("make_repeated_models.py", &[&models]);
    }
    models.join(name)
}

#[test]
fn emitted_forms_run_in_openvino_as_in_onnx_runtime_and_survive_simplifiers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let digits = testdata("digits/digits_resnet.onnx");
    let mnist = testdata("mnist5k/mnist_resnet.onnx");
    let digits_at = "stem_out,block1_out,block2_out";
    let mut models: Vec<PathBuf> = Vec::new();
    let mut emit = |model: &Path, name: &str, args: &[&str]| {
        let out = d.join(name);
        insert_exits(model, &out, args);
        models.push(out);
    };
    // Thresholds low enough that rows leave at every exit of seeded heads.
    for mode in ["if", "compact", "multi"] {
        emit(
            &digits,
            &format!("digits_{mode}.onnx"),
            &["--at", digits_at, "--mode", mode, "--threshold", "0.3"],
        );
    }
    emit(
        &mnist,
        "mnist_compact_grid.onnx",
        &[
            "--auto",
            "3",
            "--mode",
            "compact",
            "--head",
            "grid-linear",
            "--threshold",
            "0.4",
        ],
    );
    emit(
        &mnist,
        "mnist_if_conv_grid.onnx",
        &[
            "--at",
            "stem_out,block3_out",
            "--head",
            "conv-grid",
            "--threshold",
            "0.3",
        ],
    );
    let tokens = modern_models().join("tokens_op17.onnx");
    emit(
        &tokens,
        "tokens_compact.onnx",
        &[
            "--at",
            &exit_points("tokens_op17.onnx").join(","),
            "--mode",
            "compact",
            "--threshold",
            "0.5",
        ],
    );
    for name in ["bert_op17", "deep_mlp_op17"] {
        let model = repeated_model(d, &format!("{name}.onnx"));
        emit(
            &model,
            &format!("{name}_loop.onnx"),
            &["--mode", "loop", "--threshold", "0.3"],
        );
    }
    // A QDQ model (ONNX Runtime's quantize_static on the digits model):
    // OpenVINO 2026.4 refuses the integer pooling of its exit heads
    // (docs/output-graph.md); the simplifiers must still keep it whole.
    let qdq = d.join("digits_qdq_source.onnx");
    quantize_digits(&qdq, "qdq");
    emit(&qdq, "digits_qdq_if.onnx", &["--auto", "2", "--threshold", "0.3"]);

    let mut args: Vec<PathBuf> = models.clone();
    args.extend(["--simplifiers", "--expect-unsupported", "digits_qdq_if.onnx"].map(PathBuf::from));
    let refs: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    let out = py("check_second_runtime.py", &refs);
    // One OpenVINO line and two simplifier lines per model.
    let want = format!("{} passed, 0 failed", 3 * models.len());
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("unsupported: digits_qdq_if.onnx"), "{out}");
    for form in ["digits_if", "digits_compact", "bert_op17_loop", "mnist_if_conv_grid"] {
        assert!(
            out.contains(&format!("ok: {form}.onnx: OpenVINO")),
            "{form} not refereed by OpenVINO: {out}"
        );
    }
}
