//! Constants live where they are read, so ONNX Runtime (default options,
//! CPU) lays out every Conv of an early-exit model in NCHWc, inside the
//! `If` branches too, exactly as many as in the original model. Counted in
//! the optimised graphs ONNX Runtime saves (`optimized_model_filepath`),
//! per graph level, by tests/python/check_nchwc.py.

mod common;

use common::{insert_exits, py, testdata};

/// Checks the NCHWc counts; returns how many layout anchors the model has.
fn check(original: &std::path::Path, args: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let ee = dir.path().join("ee.onnx");
    insert_exits(original, &ee, args);
    let report = py("check_nchwc.py", &[original, &ee, std::path::Path::new("--json")]);
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    let levels = json["early_exit"]["levels"].as_object().unwrap();
    assert!(levels.len() > 1, "Convs in the branches: {json}");
    let (ee, original) = (&json["early_exit"], &json["original"]);
    assert_eq!(
        ee["nchwc"].as_u64().unwrap(),
        original["nchwc"].as_u64().unwrap() + ee["anchors"].as_u64().unwrap(),
        "{json}"
    );
    assert_eq!(json["early_exit"]["other"], 0, "{json}");
    json["early_exit"]["anchors"].as_u64().unwrap()
}

#[test]
fn digits_if_and_compact_branches_get_nchwc_convs() {
    let m = testdata("digits/digits_resnet.onnx");
    for mode in ["if", "compact"] {
        // stem_out and block2_out feed the next block's residual Add: anchored;
        // block1_out feeds two Convs (block2 has a projection shortcut): not.
        let anchors = check(&m, &["--at", "stem_out,block1_out,block2_out", "--mode", mode]);
        assert_eq!(anchors, 2, "{mode}");
    }
}

#[test]
fn resnet50_weights_built_at_load_time_move_with_their_convs() {
    // The zoo ResNet-50 builds its weights with ConstantOfShape nodes: the
    // nodes move into the branches, ONNX Runtime folds them there, and the
    // layout optimiser sees branch initializers.
    // Each of its three cuts feeds a residual Add (Sum) in the next block.
    let anchors = check(&testdata("models/resnet50.onnx"), &["--auto", "3", "--threshold", "2"]);
    assert_eq!(anchors, 3);
}
