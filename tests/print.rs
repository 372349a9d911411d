//! `eexc print` writes ONNX textual syntax exactly as `onnx.printer.to_text`
//! does (checked by the reference package), and its output is the snapshot
//! format for graphs.

mod common;

use std::path::Path;

use common::{eexc, py, synthetic_models, testdata, zoo_models};

fn print_matches_reference(model: &Path) {
    let out = eexc(&["print", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("printed.txt");
    std::fs::write(&text, &out.stdout).unwrap();
    py("check_printer.py", &[&text, model]);
}

#[test]
fn zoo_models_print_like_onnx_printer() {
    for m in zoo_models() {
        print_matches_reference(&m);
    }
}

#[test]
fn synthetic_models_print_like_onnx_printer() {
    for name in ["all_dtypes", "all_attrs", "subgraphs", "newer_fields", "future_fields", "external/external"] {
        print_matches_reference(&synthetic_models().join(format!("{name}.onnx")));
    }
}

#[test]
fn printed_graph_snapshots() {
    for name in ["bvlc_alexnet", "squeezenet", "resnet50"] {
        let out = eexc(&["print", testdata(&format!("models/{name}.onnx")).to_str().unwrap()]);
        assert!(out.status.success());
        insta::assert_snapshot!(format!("print_{name}"), String::from_utf8(out.stdout).unwrap());
    }
}
