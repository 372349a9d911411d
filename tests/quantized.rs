//! Quantized models, made at test time with ONNX Runtime's own tool
//! (`quantize_static`, tests/python/quantize_model.py) from the shipped
//! digits model, in both of its formats: QDQ (QuantizeLinear/DequantizeLinear
//! around float ops) and QOperator (QLinearConv, com.microsoft QLinearAdd,
//! QGemm, ...). Costs count their ops as the float forms and their weights
//! as stored; exits keep every int8 kernel ONNX Runtime fuses (counted in
//! its optimised graphs by tests/python/check_qdq_fusion.py); fit,
//! calibrate and compile run on them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{eexc, insert_exits, py, testdata};

/// `digits_qdq.onnx` and `digits_qoperator.onnx`, made once per test binary.
fn quantized(format: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for f in ["qdq", "qoperator"] {
            let out = dir.path().join(format!("digits_{f}.onnx"));
            common::quantize_digits(&out, f);
        }
        dir
    });
    dir.path().join(format!("digits_{format}.onnx"))
}

/// `inspect --json` totals; asserts that every op was costed.
fn inspect_totals(model: &Path) -> serde_json::Value {
    let o = eexc(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let uncosted = &json["uncosted_ops"];
    assert!(
        uncosted.as_object().is_some_and(|m| m.is_empty()) || uncosted.as_array().is_some_and(|a| a.is_empty()),
        "{}: every op costed: {uncosted}",
        model.display()
    );
    json["totals"].clone()
}

#[test]
fn quantized_ops_cost_as_their_float_forms_with_weights_as_stored() {
    let float = inspect_totals(&testdata("digits/digits_resnet.onnx"));
    for format in ["qdq", "qoperator"] {
        let q = inspect_totals(&quantized(format));
        assert_eq!(q["macs"], float["macs"], "{format}: {q}");
        assert_eq!(q["params"], float["params"], "{format}: {q}");
        // int8 weights (and int32 biases) read a quarter of the float bytes.
        let bytes = |t: &serde_json::Value| t["weight_bytes_read"].as_u64().unwrap();
        let (qb, fb) = (bytes(&q), bytes(&float));
        assert!(
            qb * 3 < fb && qb * 5 > fb,
            "{format}: {qb} B of int8 weights against {fb} B of float"
        );
    }
    // The time term counts int8 MACs at the int8 rate: the quantized
    // original is estimated faster than the float one.
    let estimated_original_us = |model: &Path| {
        let dir = tempfile::tempdir().unwrap();
        let ee = dir.path().join("ee.onnx");
        insert_exits(model, &ee, &["--auto", "2"]);
        let o = eexc(&["cost", ee.to_str().unwrap(), "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        json["time"]["original_us"].as_f64().unwrap()
    };
    let float_us = estimated_original_us(&testdata("digits/digits_resnet.onnx"));
    for format in ["qdq", "qoperator"] {
        let q_us = estimated_original_us(&quantized(format));
        assert!(q_us < 0.8 * float_us, "{format}: {q_us} µs against {float_us} µs");
    }
}

/// The referee for if-mode against multi-mode and the original
/// (tests/python/check_exits.py).
fn check_exits(original: &Path, multi: &Path, if_model: &Path) {
    py(
        "check_exits.py",
        &[
            Path::new("--original"),
            original,
            Path::new("--multi"),
            multi,
            Path::new("--if"),
            if_model,
        ],
    );
}

/// Each exit's tensor, from the emitted model's `eexc.exits` metadata.
fn exit_tensors(model: &Path) -> Vec<String> {
    let loaded = eexc::onnx::load_model(model).unwrap();
    let meta = eexc::exits::metadata_of(&loaded.proto).unwrap();
    meta.exits.into_iter().map(|e| e.tensor).collect()
}

#[test]
fn qdq_exits_cut_at_the_integer_tensor_and_keep_every_int8_kernel() {
    let original = quantized("qdq");
    let dir = tempfile::tempdir().unwrap();
    // Named by the dequantized tensor (what a user sees in Netron): the exit
    // moves to the integer tensor it dequantizes.
    let at = "block1_out_DequantizeLinear_Output,block2_out_DequantizeLinear_Output";
    let multi = dir.path().join("multi.onnx");
    insert_exits(&original, &multi, &["--at", at, "--mode", "multi"]);
    for mode in ["if", "compact"] {
        let ee = dir.path().join(format!("{mode}.onnx"));
        insert_exits(&original, &ee, &["--at", at, "--mode", mode, "--threshold", "2"]);
        assert_eq!(
            exit_tensors(&ee),
            ["block1_out_QuantizeLinear_Output", "block2_out_QuantizeLinear_Output"],
            "{mode}"
        );
        py("check_qdq_fusion.py", &[&original, &ee, Path::new("2")]);
    }
    let if_model = dir.path().join("if.onnx");
    insert_exits(&original, &if_model, &["--at", at]);
    check_exits(&original, &multi, &if_model);
    let compact = dir.path().join("compact.onnx");
    insert_exits(&original, &compact, &["--at", at, "--mode", "compact"]);
    py(
        "check_compact.py",
        &[
            Path::new("--original"),
            &original,
            Path::new("--multi"),
            &multi,
            Path::new("--if"),
            &if_model,
            Path::new("--compact"),
            &compact,
        ],
    );
}

#[test]
fn qoperator_exits_dequantize_with_the_producers_scale() {
    let original = quantized("qoperator");
    let dir = tempfile::tempdir().unwrap();
    let multi = dir.path().join("multi.onnx");
    let if_model = dir.path().join("if.onnx");
    insert_exits(&original, &multi, &["--auto", "2", "--mode", "multi"]);
    insert_exits(&original, &if_model, &["--auto", "2"]);
    assert_eq!(
        exit_tensors(&if_model),
        ["block1.add_out_quantized", "block2.add_out_quantized"]
    );
    check_exits(&original, &multi, &if_model);
    let never = dir.path().join("never.onnx");
    insert_exits(&original, &never, &["--auto", "2", "--threshold", "2"]);
    py("check_qdq_fusion.py", &[&original, &never, Path::new("2")]);
}

/// compile (fit, calibrate) on both formats: QDQ runs in tract, QOperator
/// (com.microsoft ops tract has no kernel for) in ONNX Runtime; eval then
/// measures the result in ONNX Runtime against the quantized original.
#[test]
fn compile_and_eval_run_on_quantized_models() {
    let d = |f: &str| testdata(&format!("digits/{f}"));
    for format in ["qdq", "qoperator"] {
        let original = quantized(format);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("compiled.onnx");
        let report = dir.path().join("compile.json");
        let o = eexc(&[
            "compile",
            original.to_str().unwrap(),
            "--data",
            d("train_x.npy").to_str().unwrap(),
            "--labels",
            d("train_y.npy").to_str().unwrap(),
            "--calib-data",
            d("calib_x.npy").to_str().unwrap(),
            "--calib-labels",
            d("calib_y.npy").to_str().unwrap(),
            "--max-drop",
            "1%",
            "--auto",
            "2",
            "--keep-exits",
            "-o",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{format}: {stderr}");
        assert_eq!(
            stderr.contains("running it in ONNX Runtime"),
            format == "qoperator",
            "{format}: only QOperator needs ONNX Runtime for its forward passes: {stderr}"
        );
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let saving = json["savings"].as_f64().unwrap_or_default();
        assert!(saving > 0.2, "{format}: calibrated exits save FLOPs: {json}");

        let o = eexc(&[
            "eval",
            out.to_str().unwrap(),
            "--data",
            d("test_x.npy").to_str().unwrap(),
            "--labels",
            d("test_y.npy").to_str().unwrap(),
            "--baseline",
            original.to_str().unwrap(),
            "--runtime",
            "ort",
            "--json",
        ]);
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
        let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let (acc, base) = (
            eval["early_exit"]["accuracy"].as_f64().unwrap(),
            eval["baseline"]["accuracy"].as_f64().unwrap(),
        );
        // 400 test rows: the 1% target on the calibration rows, with room
        // for sampling (one row is 0.25%).
        assert!(acc >= base - 0.02, "{format}: accuracy {acc} against {base}: {eval}");
        let exits = eval["exit_histogram"].as_array().unwrap();
        assert!(exits[0].as_u64().unwrap() > 0, "{format}: rows leave at exit 1: {eval}");
    }
}

/// `--quantize-heads`: int8 head weights and features, run by ONNX Runtime
/// as one more int8 Gemm per exit (no float compute added); refused on a
/// float model, with the reason.
#[test]
fn quantized_heads_are_int8_gemms_and_need_a_quantized_exit() {
    let original = quantized("qdq");
    let dir = tempfile::tempdir().unwrap();
    let multi = dir.path().join("multi.onnx");
    let if_model = dir.path().join("if.onnx");
    insert_exits(
        &original,
        &multi,
        &["--auto", "2", "--quantize-heads", "--mode", "multi"],
    );
    insert_exits(&original, &if_model, &["--auto", "2", "--quantize-heads"]);
    check_exits(&original, &multi, &if_model);
    let report = py(
        "check_qdq_fusion.py",
        &[&original, &if_model, Path::new("0"), Path::new("--json")],
    );
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    // Two heads: two more int8 Gemms (QGemm) beside the pooling products.
    let pooling = json["early_exit"]["pooling"].as_u64().unwrap();
    assert_eq!(pooling, 2, "{json}");

    let err = common::insert_exits_refused(
        &testdata("digits/digits_resnet.onnx"),
        &["--auto", "2", "--quantize-heads"],
    );
    assert!(err.contains("--quantize-heads") && err.contains("block1_out"), "{err}");
}

/// The zoo ResNet-50 with real-size random weights (bench/make_resnet50_weights.py,
/// from testdata's structure), quantized by ORT's tool (QDQ): every one of its
/// 55 int8 kernels (53 QLinearConv, QGemm, QLinearSoftmax) survives three
/// exits, with float and with int8 heads.
#[test]
fn real_size_resnet50_qdq_keeps_every_int8_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let float = dir.path().join("resnet50.onnx");
    let qdq = dir.path().join("resnet50.qdq.onnx");
    let out = std::process::Command::new(common::python())
        .arg(common::repo().join("bench/make_resnet50_weights.py"))
        .arg(&float)
        .arg("--source")
        .arg(testdata("models/resnet50.onnx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    py(
        "quantize_model.py",
        &[
            &float,
            &qdq,
            Path::new("--format"),
            Path::new("qdq"),
            Path::new("--rows"),
            Path::new("2"),
        ],
    );
    std::fs::remove_file(&float).unwrap();
    for heads in [&[][..], &["--quantize-heads"][..]] {
        let ee = dir.path().join("ee.onnx");
        let mut args = vec!["--auto", "3", "--threshold", "2"];
        args.extend_from_slice(heads);
        insert_exits(&qdq, &ee, &args);
        let allowance = if heads.is_empty() { "3" } else { "0" };
        let report = py(
            "check_qdq_fusion.py",
            &[&qdq, &ee, Path::new(allowance), Path::new("--json")],
        );
        let json: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(json["original"]["int8"], 55, "{heads:?}: {json}");
    }
}
