//! The forward pass of `fit` and `calibrate` run elsewhere (issue 16, item
//! 2): `--pass-model` writes the model whose outputs they read, any runtime
//! writes its outputs as shards, `eexc manifest` lists them, and `--outputs`
//! reads them back. The shard path must give what the in-process path
//! gives on the same rows: exactly, for shards eexc wrote itself
//! (`--save-outputs`), and to float rounding for shards that ONNX Runtime
//! wrote from two processes at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eexc, insert_exits, python, repo, testdata};

fn digits(file: &str) -> String {
    testdata(&format!("digits/{file}")).to_str().unwrap().to_string()
}

fn ok(args: &[&str]) -> String {
    let o = eexc(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let o = eexc(args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const EXITS: &str = "block1_out,block2_out";

/// Two ONNX Runtime workers, started together, each writing `.npz` shards
/// (with the labels) of half of `x`'s `rows` rows into `dir`.
fn two_workers(pass: &Path, x: &str, y: &str, rows: usize, dir: &Path) {
    let half = rows / 2;
    let workers: Vec<_> = [(0, half), (half, rows - half)]
        .into_iter()
        .map(|(first, count)| {
            Command::new(python())
                .arg(repo().join("tests/python/write_shards.py"))
                .args([p(pass), x, p(dir), &first.to_string(), &count.to_string(), "96", y])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success(), "a shard worker failed");
    }
}

#[test]
fn shards_eexc_wrote_give_the_same_heads_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = digits("digits_resnet.onnx");
    let (train_y, calib_y) = (digits_train_y(), digits("calib_y.npy"));
    let fit = |source: &[&str], out: &str| {
        let mut args = vec!["fit", &model, "--labels", &train_y, "--at", EXITS, "-o", out];
        args.extend_from_slice(source);
        ok(&args);
    };
    let heads = d.join("heads.safetensors");
    let again = d.join("again.safetensors");
    let fit_outputs = d.join("fit-outputs");
    fit(
        &["--data", &digits("train_x.npy"), "--save-outputs", p(&fit_outputs)],
        p(&heads),
    );
    fit(&["--outputs", p(&fit_outputs)], p(&again));
    assert_eq!(std::fs::read(&heads).unwrap(), std::fs::read(&again).unwrap());

    let ee = d.join("ee.onnx");
    insert_exits(
        &testdata("digits/digits_resnet.onnx"),
        &ee,
        &["--at", EXITS, "--weights", p(&heads)],
    );
    let calibrate = |source: &[&str], out: &Path| {
        let report = out.with_extension("json");
        let mut args = vec!["calibrate", p(&ee), "--labels", &calib_y];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--max-drop", "2%", "-o", p(out), "--report", p(&report)]);
        ok(&args);
    };
    let calib_outputs = d.join("calibrate-outputs");
    let (first, second) = (d.join("c1.onnx"), d.join("c2.onnx"));
    calibrate(
        &["--data", &digits("calib_x.npy"), "--save-outputs", p(&calib_outputs)],
        &first,
    );
    calibrate(&["--outputs", p(&calib_outputs)], &second);
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    assert_eq!(
        json(&first.with_extension("json")),
        json(&second.with_extension("json"))
    );

    // Each command's shards belong to its own pass model.
    let err = refused(&[
        "calibrate",
        p(&ee),
        "--outputs",
        p(&fit_outputs),
        "--labels",
        &digits("calib_y.npy"),
        "--max-drop",
        "2%",
        "-o",
        p(&d.join("c3.onnx")),
    ]);
    assert!(
        err.contains("fit-outputs/manifest.json") && err.contains("another pass model"),
        "{err}"
    );
    // Other exits make another pass model too.
    let err = refused(&[
        "fit",
        &model,
        "--outputs",
        p(&fit_outputs),
        "--at",
        "block1_out",
        "-o",
        p(&again),
    ]);
    assert!(err.contains("another pass model"), "{err}");
}

fn digits_train_y() -> String {
    digits("train_y.npy")
}

#[test]
fn shards_from_two_onnx_runtime_workers_match_the_in_process_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = digits("digits_resnet.onnx");

    // fit: the pass model, run by two workers, then the manifest.
    let pass = d.join("fit-pass.onnx");
    let said = ok(&["fit", &model, "--at", EXITS, "--pass-model", p(&pass)]);
    assert!(
        said.contains("outputs: eexc_fit_features_1, eexc_fit_features_2, logits"),
        "{said}"
    );
    let shards = d.join("fit-shards");
    two_workers(&pass, &digits("train_x.npy"), &digits_train_y(), 1000, &shards);
    let said = ok(&["manifest", p(&shards), "--pass-model", p(&pass), "--labels", "labels"]);
    assert!(said.contains("12 shards, 1000 rows"), "{said}");

    let (here, there) = (d.join("here.safetensors"), d.join("there.safetensors"));
    ok(&[
        "fit",
        &model,
        "--data",
        &digits("train_x.npy"),
        "--labels",
        &digits_train_y(),
        "--at",
        EXITS,
        "-o",
        p(&here),
        "--report",
        p(&here.with_extension("json")),
    ]);
    // The labels come with the shards.
    ok(&[
        "fit",
        &model,
        "--outputs",
        p(&shards),
        "--at",
        EXITS,
        "-o",
        p(&there),
        "--report",
        p(&there.with_extension("json")),
    ]);
    let (a, b) = (json(&here.with_extension("json")), json(&there.with_extension("json")));
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(a["model_label_accuracy"], b["model_label_accuracy"]);
    for (x, y) in a["exits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["exits"].as_array().unwrap())
    {
        for key in ["agreement_all_rows", "label_accuracy"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((x - y).abs() <= 0.002, "{key}: {x} in process, {y} from the shards");
        }
    }
    // A labels file beside labelled shards is ambiguous.
    let err = refused(&[
        "fit",
        &model,
        "--outputs",
        p(&shards),
        "--labels",
        &digits_train_y(),
        "--at",
        EXITS,
        "-o",
        p(&there),
    ]);
    assert!(err.contains("give one of them"), "{err}");

    // calibrate: the same, on the early-exit model.
    let ee = d.join("ee.onnx");
    insert_exits(
        &testdata("digits/digits_resnet.onnx"),
        &ee,
        &["--at", EXITS, "--weights", p(&here)],
    );
    let pass = d.join("calibrate-pass.onnx");
    ok(&["calibrate", p(&ee), "--pass-model", p(&pass)]);
    let shards = d.join("calibrate-shards");
    two_workers(&pass, &digits("calib_x.npy"), &digits("calib_y.npy"), 397, &shards);
    ok(&["manifest", p(&shards), "--pass-model", p(&pass), "--labels", "labels"]);
    let calibrate = |source: &[&str], out: &Path| -> serde_json::Value {
        let report = out.with_extension("json");
        let mut args = vec!["calibrate", p(&ee)];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--max-drop", "2%", "-o", p(out), "--report", p(&report)]);
        ok(&args);
        json(&report)
    };
    let a = calibrate(
        &["--data", &digits("calib_x.npy"), "--labels", &digits("calib_y.npy")],
        &d.join("c-here.onnx"),
    );
    let b = calibrate(&["--outputs", p(&shards)], &d.join("c-there.onnx"));
    assert_eq!(a["certified"], b["certified"]);
    assert_eq!(a["chosen"]["exit_shares"], b["chosen"]["exit_shares"]);
    for (x, y) in a["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["thresholds"].as_array().unwrap())
    {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() <= 1e-4, "threshold {x} in process, {y} from the shards");
    }
}

#[test]
fn a_folder_without_its_manifest_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(&[
        "fit",
        &digits("digits_resnet.onnx"),
        "--outputs",
        p(dir.path()),
        "--at",
        EXITS,
        "-o",
        p(&dir.path().join("h.safetensors")),
    ]);
    assert!(err.contains("manifest.json") && err.contains("eexc manifest"), "{err}");
    // A model that is not a pass model cannot name shards.
    let err = refused(&["manifest", p(dir.path()), "--pass-model", &digits("digits_resnet.onnx")]);
    assert!(err.contains("not a pass model"), "{err}");
    // --save-outputs goes with --data only.
    let o = eexc(&[
        "fit",
        &digits("digits_resnet.onnx"),
        "--outputs",
        p(dir.path()),
        "--save-outputs",
        p(&PathBuf::from("x")),
        "-o",
        "h.safetensors",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be used with '--save-outputs"), "{err}");
}
