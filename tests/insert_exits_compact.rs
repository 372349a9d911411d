//! `insert-exits --mode compact`: per-row exits at any batch size, refereed
//! by ONNX Runtime against the batch-1 `if` model (tests/python/check_compact.py).

mod common;

use std::path::{Path, PathBuf};

use common::{eexc, exit_points, insert_exits, insert_exits_refused, modern_models, py, testdata};

/// Emits the multi, if and compact forms with the same options; the referee
/// checks every row of batches of `batches` against batch-1 `if` runs.
fn referee(model: &Path, args: &[&str], batches: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = ["multi", "if", "compact"]
        .iter()
        .map(|m| dir.path().join(format!("{m}.onnx")))
        .collect();
    for (mode, path) in ["multi", "if", "compact"].iter().zip(&paths) {
        let mut a = args.to_vec();
        a.extend(["--mode", mode]);
        insert_exits(model, path, &a);
    }
    let s = |x: &str| PathBuf::from(x);
    let mut py_args = vec![
        s("--original"),
        model.to_path_buf(),
        s("--multi"),
        paths[0].clone(),
        s("--if"),
        paths[1].clone(),
        s("--compact"),
        paths[2].clone(),
        s("--batches"),
        s(batches),
    ];
    py_args.extend(extra.iter().map(|x| s(x)));
    let refs: Vec<&Path> = py_args.iter().map(PathBuf::as_path).collect();
    py("check_compact.py", &refs)
}

fn at(model: &str) -> String {
    exit_points(model).into_iter().take(3).collect::<Vec<_>>().join(",")
}

#[test]
fn symbolic_batch_models_exit_per_row() {
    for name in ["resnet_op17", "mlp_op17", "resnet_op21", "tokens_op17"] {
        let model = modern_models().join(format!("{name}.onnx"));
        let out = referee(&model, &["--at", &at(&format!("{name}.onnx"))], "1,2,7,64", &[]);
        assert!(out.contains("ok: mixed-64"), "{out}");
    }
}

#[test]
fn every_confidence_and_never_exit_classes() {
    let model = modern_models().join("mlp_op17.onnx");
    for confidence in ["entropy", "margin"] {
        referee(
            &model,
            &[
                "--at",
                &at("mlp_op17.onnx"),
                "--confidence",
                confidence,
                "--never-exit-classes",
                "0,3",
                "--seed",
                "5",
            ],
            "7,64",
            &["--seed", "1"],
        );
    }
}

#[test]
fn fixed_batch_one_model_behaves_like_if_mode() {
    let model = modern_models().join("resnet_op13.onnx");
    let out = referee(&model, &["--at", &at("resnet_op13.onnx")], "1", &[]);
    assert!(out.contains("batch is fixed at 1"), "{out}");
}

#[test]
fn models_that_cannot_be_split_by_row_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    py("make_compact_edge_models.py", &[dir.path()]);
    let err = refused_compact(&dir.path().join("fixed_batch4.onnx"), &["--at", "h1"]);
    assert!(
        err.contains("needs a symbolic batch dimension") && err.contains("batch 4"),
        "{err}"
    );
    let err = refused_compact(&dir.path().join("batch_mean.onnx"), &["--at", "h1"]);
    assert!(
        err.contains("'x_mean'") && err.contains("after exit 1") && err.contains("axis 0"),
        "{err}"
    );
    // ScatterND and Compress on axis 0 need opset 11; the zoo models are opset 9.
    let err = refused_compact(&testdata("models/resnet50.onnx"), &["--auto", "1"]);
    assert!(err.contains("opset 11") && err.contains("opset 9"), "{err}");
}

#[test]
fn shape_vectors_crossing_an_exit_are_recomputed() {
    // Shape(x) is taken before the exit and read after it: compact mode
    // compacts x and takes its shape again.
    let dir = tempfile::tempdir().unwrap();
    py("make_compact_edge_models.py", &[dir.path()]);
    let out = referee(&dir.path().join("shape_crosses.onnx"), &["--at", "h1"], "1,2,7,64", &[]);
    assert!(out.contains("ok: mixed-64"), "{out}");
}

#[test]
fn compact_graph_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp.compact.onnx");
    let at = exit_points("mlp_op17.onnx")
        .into_iter()
        .take(2)
        .collect::<Vec<_>>()
        .join(",");
    insert_exits(
        &modern_models().join("mlp_op17.onnx"),
        &out,
        &["--at", &at, "--mode", "compact"],
    );
    let printed = eexc(&["print", "--elide-data-over", "16", out.to_str().unwrap()]);
    insta::assert_snapshot!("compact_mlp_graph", String::from_utf8(printed.stdout).unwrap());
}

fn refused_compact(model: &Path, exits: &[&str]) -> String {
    let mut args = vec!["--mode", "compact"];
    args.extend_from_slice(exits);
    insert_exits_refused(model, &args)
}

/// In compact mode a later exit's head reads the rows `Compress` kept: their
/// count is a symbol (`nonzero(mask)`), so the head is costed per kept row
/// instead of as zero (issue 13: exits 2 and 3 of ResNet-50 read 0 MACs).
#[test]
fn heads_on_kept_rows_are_costed() {
    let model = modern_models().join("resnet_op17.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compact.onnx");
    let report = insert_exits(&model, &out, &["--at", &at("resnet_op17.onnx"), "--mode", "compact"]);
    let fusion = report.split("Fusion of each exit's head").nth(1).expect(&report);
    let head_macs: Vec<&str> = fusion
        .lines()
        .filter(|l| l.starts_with("exit "))
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(head_macs.len(), 3, "{fusion}");
    assert!(head_macs.iter().all(|m| *m != "0"), "a head costed as zero: {fusion}");
}
