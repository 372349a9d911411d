//! `eexc insert-exits` end to end, refereed by ONNX Runtime and the `onnx`
//! checker (tests/python/check_exits.py states the semantics it checks).

mod common;

use std::path::{Path, PathBuf};

use common::{eexc, exit_points, insert_exits as insert, modern_models, py, testdata, zoo_models};

/// Emits the multi and if forms with the same options and lets the referee
/// compare them with the original.
fn referee(model: &Path, args: &[&str], samples: &str, batch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (multi, iff) = (dir.path().join("multi.onnx"), dir.path().join("if.onnx"));
    let mut m_args = args.to_vec();
    m_args.extend(["--mode", "multi"]);
    insert(model, &multi, &m_args);
    insert(model, &iff, args);
    let s = |x: &str| PathBuf::from(x);
    py(
        "check_exits.py",
        &[
            &s("--original"),
            model,
            &s("--multi"),
            &multi,
            &s("--if"),
            &iff,
            &s("--samples"),
            &s(samples),
            &s("--batch"),
            &s(batch),
            // Stricter than the referee's default: ORT evaluates a network
            // inside If branches with other kernels, a few ulps apart.
            &s("--rtol"),
            &s("1e-5"),
        ],
    );
}

#[test]
fn zoo_models_pass_the_referee() {
    for m in zoo_models() {
        referee(&m, &["--auto", "2"], "6", "1");
    }
}

#[test]
fn modern_models_pass_the_referee_for_every_confidence() {
    for name in [
        "resnet_op13",
        "resnet_op17",
        "resnet_op21",
        "mlp_op13",
        "mlp_op17",
        "mlp_op21",
    ] {
        let model = modern_models().join(format!("{name}.onnx"));
        let points = exit_points(&format!("{name}.onnx"));
        let at = points.iter().take(3).cloned().collect::<Vec<_>>().join(",");
        for confidence in ["maxprob", "entropy", "margin"] {
            referee(
                &model,
                &["--at", &at, "--confidence", confidence, "--seed", "3"],
                "32",
                "1",
            );
        }
        // Batches: the whole batch exits only when every row is confident.
        referee(
            &model,
            &["--at", &at, "--threshold", "0.5", "--never-exit-classes", "0,3"],
            "16",
            "1",
        );
    }
}

#[test]
fn token_models_get_token_heads() {
    for name in ["tokens_op17", "tokens_op21"] {
        let model = modern_models().join(format!("{name}.onnx"));
        let at = exit_points(&format!("{name}.onnx")).join(",");
        for head in ["token-cls", "token-mean"] {
            referee(&model, &["--at", &at, "--head", head, "--threshold", "0.6"], "16", "1");
        }
    }
}

/// Grid heads on even (28, 14, 8, 4) and odd (7) maps equal a 2×2 grid of
/// average pools computed in numpy, mixed heads the channel means beside
/// the maxima, conv-grid heads a padded, strided 3×3 convolution and ReLU
/// before that grid (refined maps of 14, 7, 4, 2 and the odd 7 → 4); the If
/// form decides as the referee's rule says.
#[test]
fn grid_mixed_and_conv_grid_heads_pool_as_numpy_does() {
    let dir = tempfile::tempdir().unwrap();
    for (model, at) in [
        ("mnist5k/mnist_resnet.onnx", "stem_out,block3_out,block5_out"),
        ("digits/digits_resnet.onnx", "stem_out,block2_out"),
    ] {
        let model = testdata(model);
        for head in ["grid-linear", "mix-linear", "conv-grid"] {
            let multi = dir.path().join("multi.onnx");
            insert(&model, &multi, &["--at", at, "--head", head, "--mode", "multi"]);
            let out = py("check_grid_head.py", &[&model, &multi]);
            assert!(out.contains("0 failed") && out.contains(head), "{out}");
            referee(&model, &["--at", at, "--head", head, "--threshold", "0.3"], "8", "1");
        }
    }
    // A map of side 1 has no grid, nor anything to convolve: refused,
    // naming the tensor and the head.
    for head in ["grid-linear", "conv-grid"] {
        let o = eexc(&[
            "insert-exits",
            testdata("digits/digits_resnet.onnx").to_str().unwrap(),
            "--at",
            "head.pool_out",
            "--head",
            head,
            "-o",
            dir.path().join("x.onnx").to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(head) && err.contains("head.pool_out"), "{err}");
    }
}

#[test]
fn symbolic_batch_model_pass_the_referee_with_batches() {
    let model = modern_models().join("resnet_op17.onnx");
    let at = exit_points("resnet_op17.onnx").join(",");
    referee(&model, &["--at", &at, "--threshold", "0.3"], "16", "4");
}

#[test]
fn output_is_deterministic_and_input_untouched() {
    let model = testdata("models/squeezenet.onnx");
    let before = std::fs::read(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    insert(&model, &a, &["--auto", "3"]);
    insert(&model, &b, &["--auto", "3"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn rewritten_graph_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r50.ee.onnx");
    let report = insert(
        &testdata("models/resnet50.onnx"),
        &out,
        &["--auto", "3", "--exit-dist", "0.3,0.2,0.1"],
    );
    insta::assert_snapshot!(
        "insert_exits_resnet50_report",
        report.replace(out.to_str().unwrap(), "OUT")
    );
    let printed = eexc(&["print", "--elide-data-over", "16", out.to_str().unwrap()]);
    insta::assert_snapshot!(
        "insert_exits_resnet50_graph",
        String::from_utf8(printed.stdout).unwrap()
    );

    let mlp = modern_models().join("mlp_op17.onnx");
    let out = dir.path().join("mlp.ee.onnx");
    let at = exit_points("mlp_op17.onnx")
        .into_iter()
        .take(2)
        .collect::<Vec<_>>()
        .join(",");
    insert(&mlp, &out, &["--at", &at, "--never-exit-classes", "1"]);
    let printed = eexc(&["print", "--elide-data-over", "16", out.to_str().unwrap()]);
    insta::assert_snapshot!("insert_exits_mlp_graph", String::from_utf8(printed.stdout).unwrap());
}

#[test]
fn cost_command_recomputes_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.ee.onnx");
    insert(
        &testdata("models/vgg19.onnx"),
        &out,
        &["--auto", "2", "--exit-dist", "0.5,0.25"],
    );
    let o = eexc(&["cost", out.to_str().unwrap(), "--exit-dist", "0.5,0.25", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &json["expected"];
    let saved = e["savings_ratio"].as_f64().unwrap();
    // Half the samples stop before the first 50% or so of FLOPs: savings are
    // substantial but below the share the early exits skip.
    assert!(saved > 0.2 && saved < 0.8, "{saved}");
    assert!((e["average_exit_depth"].as_f64().unwrap() - (0.5 + 0.5 + 0.75)).abs() < 1e-9);
}

/// Netron shows a node's doc string beside it: each exit's `If` says where
/// the exit is and what its branches do, in both forms.
#[test]
fn exit_ifs_say_what_their_branches_do() {
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("digits/digits_resnet.onnx");
    for (mode, words) in [
        ("if", "the batch leaves here"),
        ("compact", "the rows that are not go on"),
    ] {
        let out = dir.path().join(format!("{mode}.onnx"));
        insert(&model, &out, &["--at", "stem_out,block1_out", "--mode", mode]);
        let loaded = eexc::onnx::read_model(&out).unwrap();
        let mut docs = Vec::new();
        let mut graphs = vec![loaded.proto.graph.as_ref().unwrap().clone()];
        while let Some(g) = graphs.pop() {
            for n in &g.node {
                if n.op_type() == "If" {
                    docs.push(n.doc_string().to_string());
                }
                graphs.extend(n.attribute.iter().filter_map(|a| a.g.as_ref().cloned()));
            }
        }
        docs.sort();
        assert_eq!(docs.len(), 2, "{mode}: {docs:?}");
        assert!(
            docs[0].starts_with("eexc exit 1 at 'stem_out': ") && docs[0].contains(words),
            "{docs:?}"
        );
        assert!(docs[1].starts_with("eexc exit 2 at 'block1_out': "), "{docs:?}");
    }
}

/// The IR < 4 rule is the patch's, the same in every mode: an IR 3 model
/// (every initializer also a graph input) comes out as IR 4 whose inputs
/// are its real input and, where the mode has them, the knobs. Before the
/// patch object, multi mode kept IR 3 and listed the heads' weights as
/// inputs.
#[test]
fn ir3_models_come_out_as_ir4_with_only_real_inputs_in_every_mode() {
    let src = testdata("models/squeezenet.onnx");
    let original = eexc::onnx::load_model(&src).unwrap().proto;
    assert_eq!(original.ir_version(), 3);
    let dir = tempfile::tempdir().unwrap();
    for mode in ["if", "multi"] {
        let out = dir.path().join(format!("{mode}.onnx"));
        insert(&src, &out, &["--auto", "2", "--mode", mode]);
        let model = eexc::onnx::load_model(&out).unwrap().proto;
        assert_eq!(model.ir_version(), 4, "{mode}");
        let inputs: Vec<&str> = model.graph.input.iter().map(|i| i.name()).collect();
        let mut expected = vec!["data_0"];
        if mode == "if" {
            expected.extend([
                "eexc_threshold_1",
                "eexc_temperature_1",
                "eexc_threshold_2",
                "eexc_temperature_2",
            ]);
        }
        assert_eq!(inputs, expected, "{mode}");
    }
}

/// A classifier with symbolic image sides (tests/python/make_dynamic_image_models.py):
/// exits at tensors whose sides are floor quotients of H and W, costed with
/// `--dim`, and the emitted models pass the referee at odd sides.
#[test]
fn symbolic_image_sides_get_exits() {
    let dir = tempfile::tempdir().unwrap();
    py("make_dynamic_image_models.py", &[dir.path()]);
    let model = dir.path().join("dynamic_cnn.onnx");
    let (multi, iff) = (dir.path().join("multi.onnx"), dir.path().join("if.onnx"));
    let args = ["--at", "pool,down_relu,mix", "--dim", "H=67", "--dim", "W=45"];
    insert(&model, &iff, &args);
    insert(&model, &multi, &[&args[..], &["--mode", "multi"]].concat());
    let s = |x: &str| PathBuf::from(x);
    let out = py(
        "check_exits.py",
        &[
            &s("--original"),
            &model,
            &s("--multi"),
            &multi,
            &s("--if"),
            &iff,
            &s("--samples"),
            &s("8"),
            &s("--batch"),
            &s("2"),
            &s("--dim"),
            &s("H=67"),
            &s("--dim"),
            &s("W=45"),
        ],
    );
    assert!(out.contains("0 failed"), "{out}");
    // Without the sides' values the cost model cannot place or price exits.
    let out = eexc(&[
        "insert-exits",
        model.to_str().unwrap(),
        "--at",
        "pool",
        "-o",
        dir.path().join("x.onnx").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --dim H=VALUE"));
}
