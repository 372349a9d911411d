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
    for name in [
        "all_dtypes",
        "all_attrs",
        "subgraphs",
        "newer_fields",
        "future_fields",
        "external/external",
    ] {
        print_matches_reference(&synthetic_models().join(format!("{name}.onnx")));
    }
}

#[test]
fn printer_focused_models_print_like_onnx_printer() {
    // Escaping, special floats, overloaded functions, every dtype layout.
    let dir = tempfile::tempdir().unwrap();
    py("check_printer.py", &[Path::new("--write-models"), dir.path()]);
    let mut models: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() >= 5, "{models:?}");
    for m in models {
        if m.file_stem().is_some_and(|s| s == "printer_bare") {
            // ir_version 0: not a model by the checker's rules either; the
            // loader refuses it with a clear message rather than guessing.
            let out = eexc(&["print", m.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("invalid ir_version 0"));
            continue;
        }
        print_matches_reference(&m);
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
