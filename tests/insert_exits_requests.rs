//! `insert-exits` requests: bad ones fail with one clear line, exit code 2 and
//! no output file; head weights come from files or a trained multi model.

mod common;

use std::path::{Path, PathBuf};

use common::{eexc, testdata};
use eexc::onnx::proto::ValueInfoProto;

/// Runs a request expected to fail; checks the message and that nothing was written.
fn refused(model: &Path, args: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let report = dir.path().join("report.json");
    let mut all = vec![
        "insert-exits",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = eexc(&all);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
    assert!(!stderr.contains("panicked"));
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: expected '{n}' in: {stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{args:?}: files left behind: {left:?}");
}

#[test]
fn unknown_tensor() {
    refused(
        &testdata("models/resnet50.onnx"),
        &["--at", "no_such_tensor"],
        &["'no_such_tensor'", "not in the graph"],
    );
}

#[test]
fn tensor_not_reachable_from_an_input() {
    // A weight built by ConstantOfShape: constant, not computed from the input.
    refused(
        &testdata("models/squeezenet.onnx"),
        &["--at", "conv1_w_0"],
        &["'conv1_w_0'", "constant"],
    );
}

#[test]
fn tensor_at_or_after_the_logits() {
    let m = testdata("models/resnet50.onnx");
    refused(&m, &["--at", "gpu_0/softmax_1"], &["at or after the logits"]);
    // The logits themselves (the Gemm output before Softmax).
    let report = eexc::report::inspect::inspect(&m, &[]).unwrap();
    let gemm = report.nodes.iter().find(|n| n.op_type == "Gemm").unwrap();
    let loaded = eexc::onnx::load_model(&m).unwrap();
    let logits = loaded
        .proto
        .graph
        .node
        .iter()
        .find(|n| n.name() == gemm.name)
        .unwrap()
        .output[0]
        .clone();
    refused(&m, &["--at", &logits], &["at or after the logits"]);
}

#[test]
fn rank_with_no_head_kind() {
    refused(
        &testdata("models/resnet50.onnx"),
        &["--at", "r56", "--head", "token-cls"],
        &["'r56'", "rank 4", "no token-cls head"],
    );
}

#[test]
fn several_outputs_where_one_is_the_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let mut proto = eexc::onnx::load_model(&testdata("models/squeezenet.onnx"))
        .unwrap()
        .proto;
    let mut extra = ValueInfoProto::new();
    extra.set_name("r55".into());
    proto.graph.as_mut().unwrap().output.push(extra);
    let model = dir.path().join("two_outputs.onnx");
    eexc::onnx::save_model(&proto, &model, None).unwrap();
    refused(&model, &["--auto", "2"], &["2 outputs", "softmaxout_1", "r55"]);
}

#[test]
fn option_values_are_checked() {
    let m = testdata("models/squeezenet.onnx");
    refused(
        &m,
        &["--auto", "2", "--threshold", "0.5,0.6,0.7"],
        &["3 values for 2 exits"],
    );
    refused(&m, &["--auto", "2", "--temperature", "0"], &["positive"]);
    refused(
        &m,
        &["--auto", "2", "--never-exit-classes", "1000"],
        &["classes 0..999"],
    );
    refused(&m, &["--auto", "2", "--exit-dist", "0.7,0.6"], &["sums to"]);
    refused(&m, &["--auto", "40"], &["--auto 40"]);
}

/// The i-th weight value of the test files, computed as numpy does
/// (`arange % 7 * 0.01` in float64, then float32).
fn weight_value(i: usize) -> f32 {
    ((i % 7) as f64 * 0.01) as f32
}

/// Byte-equality without printing megabytes on failure.
fn assert_same(a: &[u8], b: &[u8], what: &str) {
    assert!(a == b, "{what}: {} vs {} bytes, contents differ", a.len(), b.len());
}

/// Writes head weights for squeezenet's auto-2 exits as safetensors.
fn write_safetensors(path: &Path, shapes: &[(&str, Vec<usize>)]) {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<u8> = (0..n).flat_map(|i| weight_value(i).to_le_bytes()).collect();
            (name.to_string(), shape.clone(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Feature widths of the exits `--auto 2` picks on squeezenet.
fn squeezenet_auto2_features() -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.onnx");
    let o = eexc(&[
        "insert-exits",
        testdata("models/squeezenet.onnx").to_str().unwrap(),
        "--auto",
        "2",
        "--mode",
        "multi",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let proto = eexc::onnx::load_model(&out).unwrap().proto;
    (1..=2)
        .map(|k| {
            let w = proto
                .graph
                .initializer
                .iter()
                .find(|t| t.name() == format!("eexc_exit{k}_weight"))
                .unwrap();
            w.dims[1] as usize
        })
        .collect()
}

#[test]
fn weights_file_with_wrong_shapes_or_missing_keys() {
    let f = squeezenet_auto2_features();
    let dir = tempfile::tempdir().unwrap();
    let m = testdata("models/squeezenet.onnx");
    let wrong = dir.path().join("wrong.safetensors");
    write_safetensors(
        &wrong,
        &[
            ("exit1.weight", vec![1000, f[0] + 1]),
            ("exit1.bias", vec![1000]),
            ("exit2.weight", vec![1000, f[1]]),
            ("exit2.bias", vec![1000]),
        ],
    );
    refused(
        &m,
        &["--auto", "2", "--weights", wrong.to_str().unwrap()],
        &["'exit1.weight'", "shape"],
    );
    let missing = dir.path().join("missing.safetensors");
    write_safetensors(
        &missing,
        &[("exit1.weight", vec![1000, f[0]]), ("exit1.bias", vec![1000])],
    );
    refused(
        &m,
        &["--auto", "2", "--weights", missing.to_str().unwrap()],
        &["'exit2.weight'", "missing"],
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    refused(
        &m,
        &["--auto", "2", "--weights", junk.to_str().unwrap()],
        &["not a safetensors file"],
    );
}

/// The bytes of initializer `name`, in whichever graph of the model holds it
/// (constants live in the innermost graph that reads them).
fn initializer(path: &Path, name: &str) -> Vec<u8> {
    fn find(g: &eexc::onnx::proto::GraphProto, name: &str) -> Option<Vec<u8>> {
        if let Some(t) = g.initializer.iter().find(|t| t.name() == name) {
            return Some(t.raw_data().to_vec());
        }
        g.node
            .iter()
            .flat_map(|n| &n.attribute)
            .flat_map(|a| a.g.as_ref().into_iter().chain(&a.graphs))
            .find_map(|sub| find(sub, name))
    }
    let proto = eexc::onnx::load_model(path).unwrap().proto;
    find(&proto.graph, name).unwrap_or_else(|| panic!("no initializer '{name}' in {}", path.display()))
}

fn metadata(path: &Path) -> eexc::exits::ExitsMetadata {
    eexc::exits::read_metadata(&eexc::onnx::load_model(path).unwrap().proto)
        .unwrap()
        .unwrap()
}

#[test]
fn weights_from_safetensors_npz_and_a_trained_multi_model() {
    let f = squeezenet_auto2_features();
    let dir = tempfile::tempdir().unwrap();
    let m = testdata("models/squeezenet.onnx");
    let run = |out: &PathBuf, extra: &[&str]| {
        let mut args = vec![
            "insert-exits",
            m.to_str().unwrap(),
            "--auto",
            "2",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = eexc(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    // Seeded heads: marked untrained, and `if` mode warns.
    let seeded = dir.path().join("seeded.onnx");
    assert!(run(&seeded, &[]).contains("UNTRAINED"));
    assert!(!metadata(&seeded).trained);

    // safetensors
    let st = dir.path().join("heads.safetensors");
    write_safetensors(
        &st,
        &[
            ("exit1.weight", vec![1000, f[0]]),
            ("exit1.bias", vec![1000]),
            ("exit2.weight", vec![1000, f[1]]),
            ("exit2.bias", vec![1000]),
        ],
    );
    let from_st = dir.path().join("from_st.onnx");
    assert!(!run(&from_st, &["--weights", st.to_str().unwrap()]).contains("UNTRAINED"));
    assert!(metadata(&from_st).trained);
    let expected: Vec<u8> = (0..1000 * f[0]).flat_map(|i| weight_value(i).to_le_bytes()).collect();
    assert_same(
        &initializer(&from_st, "eexc_exit1_weight"),
        &expected,
        "safetensors weights",
    );

    // npz with the same arrays, written by numpy.
    let npz = dir.path().join("heads.npz");
    let script = format!(
        "import numpy as np\nmk=lambda s: (np.arange(np.prod(s)) % 7 * 0.01).astype(np.float32).reshape(s)\n\
         np.savez(r'{}', **{{'exit1.weight': mk((1000,{})), 'exit1.bias': mk((1000,)), 'exit2.weight': mk((1000,{})), 'exit2.bias': mk((1000,))}})",
        npz.display(),
        f[0],
        f[1]
    );
    let o = std::process::Command::new(common::python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let from_npz = dir.path().join("from_npz.onnx");
    run(&from_npz, &["--weights", npz.to_str().unwrap()]);
    assert_same(&initializer(&from_npz, "eexc_exit1_weight"), &expected, "npz weights");
    assert_same(
        &initializer(&from_npz, "eexc_exit2_bias"),
        &initializer(&from_st, "eexc_exit2_bias"),
        "npz bias",
    );

    // Round trip: multi (as if trained elsewhere) -> --weights-from.
    let multi = dir.path().join("multi.onnx");
    run(&multi, &["--mode", "multi", "--weights", st.to_str().unwrap()]);
    let from_model = dir.path().join("from_model.onnx");
    run(&from_model, &["--weights-from", multi.to_str().unwrap()]);
    assert_same(
        &initializer(&from_model, "eexc_exit1_weight"),
        &expected,
        "weights from the multi model",
    );
    assert!(metadata(&from_model).weights.starts_with("model:"));
}

#[test]
fn never_overwrites_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(testdata("models/squeezenet.onnx"), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    for args in [
        vec!["-o", model.to_str().unwrap()],
        vec!["--report", model.to_str().unwrap(), "-o", "/dev/null/never"],
    ] {
        let mut all = vec!["insert-exits", model.to_str().unwrap(), "--auto", "2"];
        all.extend(args);
        let o = eexc(&all);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite the input model"));
    }
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

/// `--auto` with no number: every narrow cut at a distinct depth (shallow
/// ones included), at most 12, each with the reason it was tried.
#[test]
fn auto_without_a_number_tries_every_narrow_cut() {
    let dir = tempfile::tempdir().unwrap();
    let exits_of = |model: &str| -> Vec<String> {
        let out = dir.path().join("auto.onnx");
        let o = eexc(&[
            "insert-exits",
            testdata(model).to_str().unwrap(),
            "--auto",
            "-o",
            out.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains("(--auto, the data chooses)"), "{stdout}");
        let model = eexc::onnx::load_model(&out).unwrap().proto;
        let meta = eexc::exits::read_metadata(&model).unwrap().unwrap();
        meta.exits.iter().map(|e| e.tensor.clone()).collect()
    };
    // The digits model's stem (1.2% of FLOPs) is a candidate: --auto K
    // starts at 15%.
    assert_eq!(
        exits_of("digits/digits_resnet.onnx"),
        ["stem_out", "block1_out", "block2_out"]
    );
    // ResNet-50 has 14 distinct depths in range: thinned to 12.
    assert_eq!(exits_of("models/resnet50.onnx").len(), 12);
}

/// `--at TENSOR:HEAD` gives one exit its own head; the others take --head.
#[test]
fn one_exit_can_have_its_own_head() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.onnx");
    let o = eexc(&[
        "insert-exits",
        testdata("digits/digits_resnet.onnx").to_str().unwrap(),
        "--at",
        "stem_out:grid-linear,block1_out",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = eexc::onnx::load_model(&out).unwrap().proto;
    let meta = eexc::exits::read_metadata(&model).unwrap().unwrap();
    let heads: Vec<_> = meta.exits.iter().map(|e| (e.tensor.as_str(), e.head.name())).collect();
    assert_eq!(heads, [("stem_out", "grid-linear"), ("block1_out", "gap-linear")]);
    // An unknown head after the colon is part of the name: an unknown tensor.
    let o = eexc(&[
        "insert-exits",
        testdata("digits/digits_resnet.onnx").to_str().unwrap(),
        "--at",
        "stem_out:wide",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("stem_out:wide"), "{err}");
}
