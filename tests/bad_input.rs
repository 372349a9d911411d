//! Bad input never panics: each case gives one line naming the file and the
//! problem on stderr, exit code 2, and nothing on stdout.

mod common;

use std::path::Path;

use common::{eexc, synthetic_models, testdata};
use eexc::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
use protobuf::Message;

/// Runs `eexc inspect` and `eexc print` on `path` and checks both fail cleanly
/// with a message containing every one of `needles`.
fn assert_clean_failure(path: &Path, needles: &[&str]) {
    assert_commands_fail(&["inspect", "print"], path, needles);
}

/// A malformed graph still decodes, so `print` shows it (that is how users
/// debug it); the commands that analyse the graph must refuse it.
fn assert_graph_rejected(path: &Path, needles: &[&str]) {
    assert_commands_fail(&["inspect"], path, needles);
    assert!(eexc(&["print", path.to_str().unwrap()]).status.success());
}

fn assert_commands_fail(commands: &[&str], path: &Path, needles: &[&str]) {
    for &cmd in commands {
        let out = eexc(&[cmd, path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{cmd}: status {:?}, stderr: {stderr}",
            out.status
        );
        assert!(out.stdout.is_empty(), "{cmd}: wrote to stdout");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{cmd}: not one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{cmd}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{cmd}: file not named: {stderr}"
        );
        for n in needles {
            assert!(stderr.contains(n), "{cmd}: expected '{n}' in: {stderr}");
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_clean_failure(&write(dir.path(), "empty.onnx", b""), &["empty file"]);
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(testdata("models/resnet50.onnx")).unwrap();
    let p = write(dir.path(), "truncated.onnx", &full[..full.len() / 2]);
    assert_clean_failure(&p, &["not an ONNX model"]);
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Several seeds of a fixed generator, so failures reproduce.
    for seed in 1u64..=8 {
        let mut x = seed;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let p = write(dir.path(), &format!("random{seed}.onnx"), &bytes);
        assert_clean_failure(&p, &["not an ONNX model"]);
    }
}

#[test]
fn valid_protobuf_that_is_not_a_model() {
    assert_clean_failure(&testdata("not_a_model_tensor.pb"), &["not an ONNX model"]);
}

#[test]
fn missing_file() {
    assert_clean_failure(Path::new("/nonexistent/model.onnx"), &["cannot read"]);
}

#[test]
fn missing_external_data_file() {
    // The model file alone, without the side files it refers to.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("external.onnx");
    std::fs::copy(synthetic_models().join("external/external.onnx"), &p).unwrap();
    // `print` shows the model as stored and needs no side files.
    assert_commands_fail(&["inspect"], &p, &["external data", "cannot open"]);
}

fn value(name: &str) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.set_name(name.into());
    v
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = NodeProto::new();
    n.set_name(name.into());
    n.set_op_type(op.into());
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n
}

fn model_with(nodes: Vec<NodeProto>) -> Vec<u8> {
    let mut g = GraphProto::new();
    g.set_name("g".into());
    g.input.push(value("x"));
    g.output.push(value("y"));
    g.node = nodes;
    let mut m = ModelProto::new();
    m.set_ir_version(8);
    let mut op = OperatorSetIdProto::new();
    op.set_version(17);
    m.opset_import.push(op);
    m.graph = Some(g).into();
    m.write_to_bytes().unwrap()
}

#[test]
fn cyclic_graph() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = model_with(vec![
        node("a", "Add", &["x", "c"], &["b"]),
        node("relu_b", "Relu", &["b"], &["c"]),
        node("out", "Identity", &["c"], &["y"]),
    ]);
    let p = write(dir.path(), "cycle.onnx", &bytes);
    assert_graph_rejected(&p, &["cycle"]);
}

#[test]
fn value_produced_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = model_with(vec![
        node("first", "Relu", &["x"], &["y"]),
        node("second", "Relu", &["x"], &["y"]),
    ]);
    let p = write(dir.path(), "twice.onnx", &bytes);
    assert_graph_rejected(&p, &["'second'", "'first'", "already produced"]);
}

#[test]
fn input_never_defined() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = model_with(vec![node("adder", "Add", &["x", "ghost"], &["y"])]);
    let p = write(dir.path(), "undefined.onnx", &bytes);
    assert_graph_rejected(&p, &["'adder'", "'ghost'", "never defined"]);
}

/// Inputs the fuzzer once crashed or stalled on (fuzz/regressions, see
/// docs/fuzzing.md): each must now be analysed or refused, never panic.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = common::repo().join("fuzz/regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "onnx") {
            continue;
        }
        count += 1;
        for cmd in ["inspect", "print"] {
            let out = eexc(&[cmd, p.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                matches!(out.status.code(), Some(0 | 2)),
                "{cmd} {}: {:?} {stderr}",
                p.display(),
                out.status
            );
            assert!(!stderr.contains("panicked"), "{cmd} {}: {stderr}", p.display());
        }
    }
    assert!(count > 0, "no regression inputs found in {}", dir.display());
}

/// `eval --runtime ort` with a library that is missing or is not ONNX
/// Runtime: one line naming it, exit 2. With `--runtime auto` the same bad
/// `ORT_DYLIB_PATH` makes eval fall back on tract and say why.
#[test]
fn eval_with_a_bad_onnx_runtime_library() {
    let dir = tempfile::tempdir().unwrap();
    let ee = dir.path().join("ee.onnx");
    common::insert_exits(&testdata("digits/digits_resnet.onnx"), &ee, &["--at", "stem_out"]);
    let data = testdata("digits/test_x.npy");
    let not_a_library = testdata("README.md");
    for lib in [Path::new("/no/such/libonnxruntime.so"), not_a_library.as_path()] {
        let out = eexc(&[
            "eval",
            ee.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--runtime",
            "ort",
            "--ort-library",
            lib.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&lib.display().to_string()) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eexc"))
        .args(["eval", ee.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"])
        .env("ORT_DYLIB_PATH", &not_a_library)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runtime_info"]["name"], "tract");
    let why = json["runtime_info"]["fallback_reason"].as_str().unwrap();
    assert!(why.contains("README.md"), "{why}");
}

/// `eexc.exits` metadata that disagrees with the graph (an exit dropped from
/// the list, with its cost-table entries, so that the lists still agree with
/// each other) is refused by every command that reads it, naming the problem.
#[test]
fn exits_metadata_that_disagrees_with_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let ee = dir.path().join("ee.onnx");
    common::insert_exits(&testdata("digits/digits_resnet.onnx"), &ee, &["--auto", "2"]);
    let mut model = ModelProto::parse_from_bytes(&std::fs::read(&ee).unwrap()).unwrap();
    let mut meta = eexc::exits::read_metadata(&model).unwrap().unwrap();
    meta.exits.truncate(1);
    for list in [&mut meta.cost.stages, &mut meta.cost.heads, &mut meta.cost.decisions] {
        list.truncate(1);
    }
    meta.cost.exit_elements.truncate(1);
    let dispatch = meta.cost.dispatch.as_mut().expect("dispatch counts");
    for list in [&mut dispatch.stages, &mut dispatch.heads, &mut dispatch.decisions] {
        list.truncate(1);
    }
    eexc::exits::write_metadata(&mut model, &meta).expect("metadata written");
    let bad = write(dir.path(), "one_exit_listed.onnx", &model.write_to_bytes().unwrap());
    let b = bad.to_str().unwrap();
    let calib = testdata("digits/calib_x.npy");
    let labels = testdata("digits/calib_y.npy");
    let out = dir.path().join("out.onnx");
    for args in [
        vec!["cost", b],
        vec![
            "calibrate",
            b,
            "--data",
            calib.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--max-drop",
            "1%",
            "-o",
            out.to_str().unwrap(),
        ],
        vec!["eval", b, "--data", calib.to_str().unwrap(), "--runtime", "tract"],
    ] {
        let o = eexc(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {stderr}", args[0]);
        assert!(
            stderr.contains("disagrees with the graph") && stderr.contains("1 exits listed, 2 threshold knobs"),
            "{}: {stderr}",
            args[0]
        );
        assert!(!out.exists());
    }
}

/// A cost table whose dispatch counts do not match its exits (a file edited
/// by hand) is refused with the list named, not indexed past its end.
#[test]
fn dispatch_counts_that_disagree_with_the_exits() {
    let dir = tempfile::tempdir().unwrap();
    let ee = dir.path().join("ee.onnx");
    common::insert_exits(&testdata("digits/digits_resnet.onnx"), &ee, &["--auto", "2"]);
    let mut model = ModelProto::parse_from_bytes(&std::fs::read(&ee).unwrap()).unwrap();
    let mut meta = eexc::exits::read_metadata(&model).unwrap().unwrap();
    meta.cost.dispatch.as_mut().expect("dispatch counts").heads.truncate(1);
    eexc::exits::write_metadata(&mut model, &meta).expect("metadata written");
    let bad = write(dir.path(), "short_dispatch.onnx", &model.write_to_bytes().unwrap());
    let o = eexc(&["cost", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("2 exits but 1 cost-table dispatch heads"), "{stderr}");
}

/// The schema checks every transform runs first: a node with too few
/// inputs, a missing required attribute, a `Constant` without an output, an
/// initializer whose bytes disagree with its dims. Each is one line naming
/// the node or tensor; `inspect` still shows the model.
#[test]
fn schema_violations_are_refused_before_any_transform() {
    let dir = tempfile::tempdir().unwrap();
    let original =
        ModelProto::parse_from_bytes(&std::fs::read(testdata("digits/digits_resnet.onnx")).unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut GraphProto)| {
        let mut m = original.clone();
        f(m.graph.as_mut().unwrap());
        m
    };
    let cases: Vec<(&str, ModelProto, &str)> = vec![
        (
            "conv_one_input",
            edit(&|g| {
                let conv = g.node.iter_mut().find(|n| n.op_type() == "Conv").unwrap();
                conv.input.truncate(1);
            }),
            "(Conv): takes 2 to 3 inputs at opset 17, has 1",
        ),
        (
            "flatten_as_cast",
            edit(&|g| {
                let n = g.node.iter_mut().find(|n| n.op_type() == "Flatten").unwrap();
                n.set_op_type("Cast".into());
                n.attribute.clear();
            }),
            "(Cast): required attribute 'to' is missing",
        ),
        (
            "constant_without_output",
            edit(&|g| g.node.insert(0, node("lonely", "Constant", &[], &[]))),
            "node 'lonely' (Constant): takes 1 output at opset 17, has 0",
        ),
        (
            "short_initializer",
            edit(&|g| {
                let t = g
                    .initializer
                    .iter_mut()
                    .find(|t| t.raw_data.as_ref().is_some_and(|r| r.len() > 8))
                    .unwrap();
                let mut raw = t.raw_data().to_vec();
                raw.truncate(raw.len() - 4);
                t.set_raw_data(raw.into());
            }),
            "bytes of raw data, but",
        ),
        (
            // Found by fuzzing (fuzz/fuzz_targets/commands.rs): eexc wrote
            // heads in forms no opset this low has.
            "opset_zero",
            {
                let mut m = original.clone();
                m.opset_import.iter_mut().for_each(|o| o.set_version(0));
                m
            },
            "imports default-domain opset 0; ONNX opsets start at 1",
        ),
        (
            "op_before_its_opset",
            {
                let mut m = edit(&|g| {
                    let x = g.input[0].name().to_string();
                    g.node.insert(0, node("where", "Where", &[&x, &x, &x], &["w"]));
                });
                m.opset_import.iter_mut().for_each(|o| o.set_version(8));
                m
            },
            "node 'where' (Where): Where exists from opset 9; the model imports opset 8",
        ),
    ];
    let data = testdata("digits/train_x.npy");
    for (name, model, needle) in cases {
        let p = write(dir.path(), &format!("{name}.onnx"), &model.write_to_bytes().unwrap());
        let ps = p.to_str().unwrap();
        let out = dir.path().join("out.onnx");
        let o = out.to_str().unwrap();
        for args in [
            vec!["insert-exits", ps, "--auto", "2", "-o", o],
            vec!["optimize", ps, "-o", o],
            vec!["fit", ps, "--data", data.to_str().unwrap(), "--auto", "2", "-o", o],
        ] {
            let r = eexc(&args);
            let stderr = String::from_utf8_lossy(&r.stderr);
            assert_eq!(r.status.code(), Some(2), "{name}: {}: {stderr}", args[0]);
            assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {}: {stderr}", args[0]);
            assert!(
                stderr.contains(ps) && stderr.contains(needle),
                "{name}: {}: {stderr}",
                args[0]
            );
            assert!(!out.exists(), "{name}: {}: no output", args[0]);
        }
        assert!(eexc(&["inspect", ps]).status.success() || name == "constant_without_output");
    }
}

/// An array header whose shape has more elements than 64 bits count: npyz
/// multiplies the dims unchecked (a panic in a debug build, a wrapped count
/// in a release one), so eexc checks the shape first. Data, npz members and
/// npz head weights all go through the check.
#[test]
fn array_shapes_past_64_bits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::py("make_bad_npy.py", &[dir.path()]);
    let model = testdata("digits/digits_resnet.onnx");
    let m = model.to_str().unwrap();
    let labels = testdata("digits/calib_y.npy");
    let early_exit = dir.path().join("digits.ee.onnx");
    common::insert_exits(&model, &early_exit, &["--auto", "2"]);
    let ee = early_exit.to_str().unwrap();
    let out = dir.path().join("out.onnx");
    let o = out.to_str().unwrap();
    for file in ["huge_shape.npy", "huge_shape.npz"] {
        let data = dir.path().join(file);
        let d = data.to_str().unwrap();
        let weights = dir.path().join("huge_weights.npz");
        for args in [
            vec!["fit", m, "--data", d, "--auto", "2", "-o", o],
            vec![
                "calibrate",
                ee,
                "--data",
                d,
                "--labels",
                labels.to_str().unwrap(),
                "--max-drop",
                "1%",
                "-o",
                o,
            ],
            vec![
                "insert-exits",
                m,
                "--auto",
                "2",
                "--weights",
                weights.to_str().unwrap(),
                "-o",
                o,
            ],
        ] {
            if args[0] == "insert-exits" && file.ends_with(".npy") {
                continue;
            }
            let r = eexc(&args);
            let stderr = String::from_utf8_lossy(&r.stderr);
            assert_eq!(r.status.code(), Some(2), "{file}: {}: {stderr}", args[0]);
            assert_eq!(stderr.trim_end().lines().count(), 1, "{file}: {}: {stderr}", args[0]);
            assert!(
                stderr.contains("more elements than 64 bits can count"),
                "{file}: {}: {stderr}",
                args[0]
            );
        }
    }
}
