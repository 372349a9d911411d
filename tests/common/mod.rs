//! Shared helpers for integration tests: the `eexc` binary, the pinned Python
//! reference environment, and scratch folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(rel: &str) -> PathBuf {
    repo().join("testdata").join(rel)
}

/// The nine model-zoo structures in testdata/models.
pub fn zoo_models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata("models"))
        .expect("testdata/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 9, "expected the nine zoo models in testdata/models");
    v
}

/// Runs the `eexc` binary.
pub fn eexc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eexc"))
        .args(args)
        .output()
        .expect("run eexc")
}

/// The reference Python (onnx + onnxruntime, pinned). `scripts/test.sh`
/// creates it; a missing one fails loudly rather than skipping the checks.
pub fn python() -> PathBuf {
    let p = std::env::var_os("EEXC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "reference Python not found at {} — run scripts/test.sh (it creates .venv with pinned onnx/onnxruntime)",
        p.display()
    );
    p
}

/// Runs `tests/python/<script>` with the reference Python; panics with its
/// output if it fails.
pub fn py(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} {:?} failed:\n{}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Synthetic models covering every dtype, attribute kind, subgraphs,
/// functions, newer and unknown fields and external data; made once per test
/// binary in a temporary folder.
pub fn synthetic_models() -> &'static Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        py("make_synthetic_models.py", &[dir.path()]);
        dir
    })
    .path()
}

/// Small modern-opset classifiers (opsets 13, 17, 21; symbolic batch; one
/// ending in Softmax), made by tests/python/make_modern_models.py.
pub fn modern_models() -> &'static Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        py("make_modern_models.py", &[dir.path()]);
        dir
    })
    .path()
}

pub fn exit_points(model: &str) -> Vec<String> {
    let text = std::fs::read_to_string(modern_models().join("exit_points.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[model]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Runs `eexc insert-exits MODEL -o OUT ARGS...`; returns its stdout and
/// panics with its stderr on failure.
pub fn insert_exits(model: &Path, out: &Path, args: &[&str]) -> String {
    let mut all = vec!["insert-exits", model.to_str().unwrap(), "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = eexc(&all);
    assert!(
        o.status.success(),
        "insert-exits {args:?} on {}: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs insert-exits expecting a refusal: exit code 2, no output file, no
/// panic. Returns the error text.
pub fn insert_exits_refused(model: &Path, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("refused.onnx");
    let mut all = vec!["insert-exits", model.to_str().unwrap(), "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = eexc(&all);
    assert_eq!(o.status.code(), Some(2), "{args:?} on {}", model.display());
    assert!(!out.exists(), "no output on error");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The digits model quantized by ONNX Runtime's own tool (`quantize_static`,
/// tests/python/quantize_model.py), calibrated on its training rows:
/// `format` is `qdq` or `qoperator`.
pub fn quantize_digits(out: &Path, format: &str) {
    py(
        "quantize_model.py",
        &[
            &testdata("digits/digits_resnet.onnx"),
            out,
            Path::new("--format"),
            Path::new(format),
            Path::new("--calib"),
            &testdata("digits/train_x.npy"),
        ],
    );
}
