//! The emitted `If` models also run in tract (pure Rust; strict about `If`
//! branch types): nothing exiting reproduces the original, threshold 0
//! returns exit 1's output, both as computed by tract itself.

mod common;

use std::path::Path;

use common::{py, testdata};

fn insert(model: &Path, out: &Path, args: &[&str]) {
    common::insert_exits(model, out, args);
}
use tract_onnx::prelude::*;

/// Runs `path` in tract on `input` (shape fixed to the input's) and returns
/// the outputs named in `names`.
fn run_tract(path: &Path, input: &Tensor, names: &[&str]) -> Vec<Tensor> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    model
        .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), input.shape()))
        .unwrap();
    let outlets: Vec<OutletId> = names
        .iter()
        .map(|n| {
            model.find_outlet_label(n).unwrap_or_else(|| {
                let node = model
                    .node_by_name(n)
                    .unwrap_or_else(|_| panic!("{}: no output {n}", path.display()));
                OutletId::new(node.id, 0)
            })
        })
        .collect();
    model.select_output_outlets(&outlets).unwrap();
    let runnable = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let out = runnable
        .run(tvec!(input.clone().into()))
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    out.into_iter().map(|t| t.into_tensor()).collect()
}

/// Equal up to float reassociation: tract optimises a network inside an `If`
/// branch separately from the main graph (different fusions and kernel
/// choices), which moves results by a few ulps; 1e-5 relative is far below any
/// wrong-branch or wrong-head difference.
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    let (x, y) = (
        a.to_plain_array_view::<f32>().unwrap(),
        b.to_plain_array_view::<f32>().unwrap(),
    );
    for (p, q) in x.iter().zip(y.iter()) {
        assert!((p - q).abs() <= 1e-5 * q.abs().max(1.0), "{what}: {p} vs {q}");
    }
}

fn random_input(shape: &[usize], seed: u64) -> Tensor {
    let mut x = seed;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    tract_ndarray::ArrayD::from_shape_vec(shape, data).unwrap().into()
}

fn check(model: &Path, at: &[&str], input_shape: &[usize], output: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (never, always, multi) = (
        dir.path().join("never.onnx"),
        dir.path().join("always.onnx"),
        dir.path().join("multi.onnx"),
    );
    let mut base = vec!["--seed", "5"];
    let at_joined = at.join(",");
    if at.is_empty() {
        base.extend(["--auto", "2"]);
    } else {
        base.extend(["--at", &at_joined]);
    }
    insert(model, &never, &[base.as_slice(), &["--threshold", "1.5"]].concat());
    insert(model, &always, &[base.as_slice(), &["--threshold", "0"]].concat());
    insert(model, &multi, &[base.as_slice(), &["--mode", "multi"]].concat());
    let input = random_input(input_shape, 11);
    let original = run_tract(model, &input, &[output]);
    let k = 1 + if at.is_empty() { 2 } else { at.len() } as i64;

    let got = run_tract(&never, &input, &[output, "exit_index"]);
    assert_close(
        &got[0],
        &original[0],
        &format!("{}: nothing exits, output must equal the original", model.display()),
    );
    assert!(got[1].to_plain_array_view::<i64>().unwrap().iter().all(|&i| i == k));

    let exit1 = run_tract(&multi, &input, &[&format!("{output}__exit1")]);
    let got = run_tract(&always, &input, &[output, "exit_index"]);
    assert_close(
        &got[0],
        &exit1[0],
        &format!("{}: threshold 0 must return exit 1's output", model.display()),
    );
    assert!(got[1].to_plain_array_view::<i64>().unwrap().iter().all(|&i| i == 1));
}

#[test]
fn zoo_model_if_form_runs_in_tract() {
    check(
        &testdata("models/squeezenet.onnx"),
        &[],
        &[1, 3, 224, 224],
        "softmaxout_1",
    );
}

#[test]
fn modern_models_if_form_runs_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    py("make_modern_models.py", &[dir.path()]);
    let points: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("exit_points.json")).unwrap()).unwrap();
    // mlp_op13 declares batch 1, and fusion relies on it (the exit condition
    // of a single row is a Squeeze); resnet_op17's batch is symbolic.
    for (name, shape) in [("mlp_op13", vec![1, 64]), ("resnet_op17", vec![3, 3, 32, 32])] {
        let model = dir.path().join(format!("{name}.onnx"));
        let at: Vec<&str> = points[format!("{name}.onnx")]
            .as_array()
            .unwrap()
            .iter()
            .take(2)
            .map(|v| v.as_str().unwrap())
            .collect();
        let proto = eexc::onnx::load_model(&model).unwrap().proto;
        let output = proto.graph.output[0].name().to_string();
        check(&model, &at, &shape, &output);
    }
}

/// Loads and optimises `path` in tract with the input fixed to `shape`.
fn tract_prepares(path: &Path, shape: &[usize]) -> Result<(), String> {
    let mut model = tract_onnx::onnx().model_for_path(path).map_err(|e| format!("{e:?}"))?;
    model
        .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
        .map_err(|e| format!("{e:?}"))?;
    model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

/// What tract 0.23 makes of the compact and loop forms, as docs/output-graph.md
/// states it: it refuses both (compact: an `If` whose branches return
/// data-dependent row counts; loop: `Loop` is not implemented). Should a tract
/// upgrade run them, this fails and the docs must be updated.
#[test]
fn tract_refuses_the_compact_and_loop_forms() {
    let dir = tempfile::tempdir().unwrap();
    py("make_modern_models.py", &[dir.path()]);
    let compact = dir.path().join("compact.onnx");
    insert(
        &dir.path().join("mlp_op17.onnx"),
        &compact,
        &["--at", "h1,h2", "--mode", "compact"],
    );
    let err = tract_prepares(&compact, &[4, 64]).expect_err("tract now runs the compact form");
    assert!(err.contains("If"), "{err}");
    py("make_repeated_models.py", &[dir.path()]);
    let lp = dir.path().join("loop.onnx");
    insert(&dir.path().join("deep_mlp_op17.onnx"), &lp, &["--mode", "loop"]);
    let err = tract_prepares(&lp, &[4, 64]).expect_err("tract now runs the loop form");
    assert!(err.contains("Unimplemented(Loop)"), "{err}");
}
