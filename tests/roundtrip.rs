//! Lossless round trip: load with eexc, save, and the `onnx` package must
//! decode a message equal to the original (unknown and newer fields, field
//! presence, external data included).

mod common;

use std::path::Path;

use common::{py, synthetic_models, zoo_models};

fn round_trip(src: &Path, out_dir: &Path) -> std::path::PathBuf {
    let loaded = eexc::onnx::load_model(src).unwrap_or_else(|e| panic!("{e}"));
    let out = out_dir.join(src.file_name().unwrap());
    eexc::onnx::save_model(&loaded.proto, &out, Some(&loaded.base_dir)).unwrap_or_else(|e| panic!("{e}"));
    out
}

#[test]
fn zoo_models_round_trip_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    for m in zoo_models() {
        let out = round_trip(&m, dir.path());
        py("compare_models.py", &[&m, &out]);
    }
}

#[test]
fn synthetic_models_round_trip_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["all_dtypes", "all_attrs", "subgraphs", "newer_fields", "future_fields"] {
        let src = synthetic_models().join(format!("{name}.onnx"));
        let out = round_trip(&src, dir.path());
        py("compare_models.py", &[&src, &out]);
    }
}

#[test]
fn external_data_travels_with_the_model() {
    let src = synthetic_models().join("external/external.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = round_trip(&src, dir.path());
    // The side files were copied next to the new model, byte for byte.
    py("compare_models.py", &[&src, &out, Path::new("--external")]);
    py("check_model.py", &[&out, Path::new("--run")]);
}

#[test]
fn saving_is_deterministic_and_leaves_the_input_alone() {
    let src = synthetic_models().join("subgraphs.onnx");
    let before = std::fs::read(&src).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (x, y) = (round_trip(&src, a.path()), round_trip(&src, b.path()));
    assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn loading_external_data_model_does_not_read_weights() {
    let src = synthetic_models().join("external/external.onnx");
    let loaded = eexc::onnx::load_model(&src).unwrap();
    assert!(loaded.external_bytes > 0);
    // Weights stay on disk: the decoded message is about the size of the file.
    let in_memory = protobuf::Message::compute_size(&loaded.proto);
    assert!(in_memory <= loaded.file_bytes, "{in_memory} > {}", loaded.file_bytes);
}
