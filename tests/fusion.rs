//! E-graph fusion: every rule fires on its pattern and not on its near
//! misses, rewritten models compute the same outputs in ONNX Runtime, whole
//! zoo models optimize without getting costlier, and insert-exits' fused
//! exits decide exactly as unfused ones.

mod common;

use std::path::{Path, PathBuf};

use common::{eexc, modern_models, py, zoo_models};
use serde_json::Value;

/// `eexc optimize IN -o OUT --report OUT.json ARGS`; returns the report.
fn optimize(input: &Path, out: &Path, args: &[&str]) -> Value {
    let report = out.with_extension("json");
    let mut all = vec![
        "optimize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = eexc(&all);
    assert!(
        o.status.success(),
        "optimize {}: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

/// Rules applied (in regions that were rewritten) and rules that matched
/// but whose region was kept.
fn fired(report: &Value) -> (Vec<String>, Vec<String>) {
    let (mut applied, mut kept) = (Vec::new(), Vec::new());
    for r in report["regions"].as_array().unwrap() {
        let names = r["rules"].as_object().unwrap().keys().cloned();
        if r["applied"].as_bool().unwrap() {
            applied.extend(names);
        } else {
            kept.extend(names);
        }
    }
    (applied, kept)
}

fn rule_names_in_passes() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(common::repo().join("passes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rules") {
            let text = std::fs::read_to_string(&path).unwrap();
            names.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("rule "))
                    .map(|n| n.trim().to_string()),
            );
        }
    }
    names.sort();
    names
}

/// Runs check_fusion.py over (original, rewritten) pairs; every pair must
/// pass the checker and compute the same outputs.
fn referee(pairs: &[(PathBuf, PathBuf)], extra: &[&str]) {
    let mut args: Vec<&Path> = Vec::new();
    for (a, b) in pairs {
        args.push(a);
        args.push(b);
    }
    let extra: Vec<PathBuf> = extra.iter().map(PathBuf::from).collect();
    args.extend(extra.iter().map(PathBuf::as_path));
    let log = py("check_fusion.py", &args);
    let equal = log.lines().filter(|l| l.starts_with("equal")).count();
    assert_eq!(equal, pairs.len(), "{log}");
}

#[test]
fn every_rule_fires_on_its_cases_and_not_on_near_misses() {
    let dir = tempfile::tempdir().unwrap();
    py("make_fusion_cases.py", &[dir.path()]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let mut pairs = Vec::new();
    let mut covered = Vec::new();
    for case in manifest.as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let rule = case["rule"].as_str().unwrap().to_string();
        let should_fire = case["fires"].as_bool().unwrap();
        let input = dir.path().join(file);
        let out = dir.path().join(file.replace(".onnx", ".opt.onnx"));
        let (applied, kept) = fired(&optimize(&input, &out, &["--fuse-rules", "all"]));
        if should_fire {
            assert!(
                applied.contains(&rule),
                "{file}: {rule} should fire and be applied; applied {applied:?}, kept {kept:?}"
            );
            covered.push(rule);
        } else {
            assert!(
                !applied.contains(&rule) && !kept.contains(&rule),
                "{file}: {rule} must not fire on this near miss; applied {applied:?}, kept {kept:?}"
            );
        }
        pairs.push((input, out));
    }
    // passes/README.md: every rule has a test.
    covered.sort();
    covered.dedup();
    assert_eq!(covered, rule_names_in_passes(), "rules without a case that fires");
    referee(&pairs, &[]);
}

#[test]
fn optimize_keeps_every_zoo_model_equal_and_never_costlier() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for model in zoo_models() {
        let out = dir.path().join(model.file_name().unwrap());
        let report = optimize(&model, &out, &[]);
        for r in report["regions"].as_array().unwrap() {
            let key = |t: &Value| ["uncosted", "macs", "flops", "weight_bytes", "ops"].map(|k| t[k].as_u64().unwrap());
            assert!(
                key(&r["after"]) <= key(&r["before"]),
                "{}: region {} got costlier: {r}",
                model.display(),
                r["label"]
            );
        }
        pairs.push((model, out));
    }
    referee(&pairs, &[]);
}

#[test]
fn optimize_is_deterministic_and_leaves_its_input_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::testdata("models/resnet50.onnx");
    let before = std::fs::read(&model).unwrap();
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    optimize(&model, &a, &[]);
    optimize(&model, &b, &[]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn saturation_limits_use_the_best_form_found_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::testdata("models/densenet121.onnx");
    let out = dir.path().join("limited.onnx");
    // One iteration: the e-graph cannot saturate, and the run says so.
    let report = optimize(&model, &out, &["--fuse-iterations", "1"]);
    let region = &report["regions"][0];
    assert!(
        region["outcome"]
            .as_str()
            .unwrap()
            .contains("iteration limit (1) hit: best so far used"),
        "{region}"
    );
    assert!(region["applied"].as_bool().unwrap(), "{region}");
    let tiny = dir.path().join("tiny.onnx");
    let report = optimize(&model, &tiny, &["--fuse-nodes", "50"]);
    assert!(
        report["regions"][0]["outcome"].as_str().unwrap().contains("node limit"),
        "{report}"
    );
    referee(&[(model.clone(), out), (model, tiny)], &[]);
}

#[test]
fn optimize_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    let out = dir.path().join("out.onnx");
    // `optimize INPUT -o OUTPUT EXTRA…` must exit 2 with `want` in its one
    // error, no panic, and write nothing.
    let refused = |input: &Path, output: &Path, extra: &[&str], want: &str| {
        let mut args = vec!["optimize", input.to_str().unwrap(), "-o", output.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = eexc(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
        assert!(!out.exists());
    };
    refused(&garbage, &out, &[], "garbage.onnx");
    refused(
        Path::new("/nonexistent/model.onnx"),
        &out,
        &[],
        "/nonexistent/model.onnx",
    );
    let model = common::testdata("models/squeezenet.onnx");
    refused(&model, &model, &[], "refusing to overwrite");
    refused(&model, &out, &["--freeze-knobs"], "no eexc knobs");
    refused(
        &model,
        &out,
        &["--fuse-rules", "shiny"],
        "no rule family 'shiny' (known: temperature, decision",
    );
}

/// Fused and unfused early-exit models, for each confidence measure and
/// head rank: same outputs, same exit index, for thresholds across the range.
#[test]
fn fused_exits_decide_exactly_as_unfused_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for model in ["resnet_op17", "tokens_op17", "mlp_op13", "resnet_op21"] {
        let src = modern_models().join(format!("{model}.onnx"));
        let at = common::exit_points(&format!("{model}.onnx")).join(",");
        for confidence in ["maxprob", "entropy", "margin"] {
            let plain = dir.path().join(format!("{model}_{confidence}_plain.onnx"));
            let args = ["--at", &at, "--confidence", confidence];
            common::insert_exits(&src, &plain, &[&args[..], &["--no-fuse"]].concat());
            // Every family (the decision rules fire here), and the default.
            for (tag, rules) in [("all", "all"), ("default", "temperature,batch,linear,layout")] {
                let fused = dir.path().join(format!("{model}_{confidence}_{tag}.onnx"));
                let report = common::insert_exits(&src, &fused, &[&args[..], &["--fuse-rules", rules]].concat());
                if tag == "all" {
                    assert!(
                        report.contains("fused"),
                        "{model} {confidence}: no region fused\n{report}"
                    );
                }
                pairs.push((plain.clone(), fused));
            }
        }
    }
    let feeds = ["--feed=eexc_threshold_1=0,0.3,0.6,2", "--feed=eexc_threshold_2=0,0.5,2"];
    referee(&pairs, &feeds);
}

#[test]
fn frozen_knobs_fold_and_stop_being_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let src = modern_models().join("mlp_op17.onnx");
    let ee = dir.path().join("ee.onnx");
    let at = common::exit_points("mlp_op17.onnx").join(",");
    common::insert_exits(&src, &ee, &["--at", &at, "--temperature", "2", "--threshold", "0.4"]);
    let frozen = dir.path().join("frozen.onnx");
    optimize(&ee, &frozen, &["--freeze-knobs"]);
    let text = String::from_utf8(eexc(&["print", frozen.to_str().unwrap(), "--elide-data-over", "4"]).stdout).unwrap();
    let signature = text.lines().find(|l| l.contains("=>")).unwrap();
    assert!(!signature.contains("eexc_threshold_1"), "{signature}");
    // Same outputs as the live model at its default knob values.
    referee(&[(ee, frozen)], &[]);
}

#[test]
fn fused_heads_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    // The 4-D head with the default families; the 3-D one (a mirror head:
    // the model's own mean over tokens) with every family, decision rules
    // included.
    for (model, name, rules) in [
        ("resnet_op17", "fused_head_4d", "temperature,batch,linear,layout"),
        ("tokens_op17", "fused_head_3d", "all"),
    ] {
        let src = modern_models().join(format!("{model}.onnx"));
        let out = dir.path().join("ee.onnx");
        let at = common::exit_points(&format!("{model}.onnx"))[0].clone();
        common::insert_exits(&src, &out, &["--at", &at, "--fuse-rules", rules]);
        let text = String::from_utf8(eexc(&["print", out.to_str().unwrap(), "--elide-data-over", "4"]).stdout).unwrap();
        // Exit 1's head and decision, as fused (the nodes named after it).
        let head: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("[eexc_exit1_") || l.trim_start().starts_with("[eexc_exit_1_"))
            .map(str::trim)
            .collect();
        insta::assert_snapshot!(name, head.join("\n"));
    }
}

/// `optimize` on early-exit models walks into every If branch and the Loop
/// body, one region per graph: what a branch reads from outer scope stays
/// an input there, and the models still decide and compute the same.
#[test]
fn optimize_respects_subgraph_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let src = modern_models().join("resnet_op17.onnx");
    let at = common::exit_points("resnet_op17.onnx").join(",");
    let mut pairs = Vec::new();
    for mode in ["if", "compact"] {
        let ee = dir.path().join(format!("{mode}.onnx"));
        common::insert_exits(&src, &ee, &["--at", &at, "--mode", mode, "--no-fuse"]);
        let out = dir.path().join(format!("{mode}.opt.onnx"));
        let report = optimize(&ee, &out, &["--fuse-rules", "all"]);
        let labels: Vec<&str> = report["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["label"].as_str().unwrap())
            .collect();
        assert!(labels.iter().any(|l| l.contains(".else_branch")), "{mode}: {labels:?}");
        assert!(
            report["regions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["applied"].as_bool().unwrap()),
            "{mode}: nothing fused: {report}"
        );
        pairs.push((ee, out));
    }
    referee(
        &pairs,
        &["--feed=eexc_threshold_1=0,0.5,2", "--feed=eexc_threshold_2=0,0.5,2"],
    );
}

/// A model whose weights live in an external file: fused (MatMul + Add →
/// Gemm), the data file travels with the output, and it computes the same.
#[test]
fn optimize_keeps_external_data_working() {
    let src = common::synthetic_models().join("external/external.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("external.opt.onnx");
    let (applied, _) = fired(&optimize(&src, &out, &[]));
    assert_eq!(applied, ["matmul-add-to-gemm"]);
    assert!(dir.path().join("data/weights.bin").exists());
    referee(&[(src, out)], &[]);
}
