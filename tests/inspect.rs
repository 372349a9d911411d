//! `eexc inspect`: snapshots of the human report and the JSON schema, and the
//! exit-point candidates on real structures.

mod common;

use common::{eexc, testdata};

#[test]
fn inspect_text_snapshots() {
    for name in ["bvlc_alexnet", "squeezenet", "resnet50"] {
        let path = format!("testdata/models/{name}.onnx");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eexc"))
            .current_dir(common::repo())
            .args(["inspect", &path])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        insta::assert_snapshot!(format!("inspect_{name}"), String::from_utf8(out.stdout).unwrap());
    }
}

#[test]
fn inspect_json_snapshot() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eexc"))
        .current_dir(common::repo())
        .args(["inspect", "--json", "testdata/models/squeezenet.onnx"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema"], "eexc.inspect/1");
    insta::assert_json_snapshot!("inspect_json_squeezenet", json);
}

#[test]
fn resnet50_exit_candidates_are_the_block_outputs() {
    let report = eexc::report::inspect::inspect(&testdata("models/resnet50.onnx"), &[]).unwrap();
    // Narrow cuts inside ResNet-50: the 16 bottleneck outputs (after the
    // residual Sum + Relu) and the stem, plus the linear tail.
    let after_sum: Vec<_> = report.exit_candidates.iter().filter(|c| c.op_type == "Relu").collect();
    assert!(
        after_sum.len() >= 16,
        "{:?}",
        report.exit_candidates.iter().map(|c| &c.tensor).collect::<Vec<_>>()
    );
    let shares: Vec<f64> = report.exit_candidates.iter().map(|c| c.flop_share).collect();
    assert!(
        shares.windows(2).all(|w| w[0] <= w[1]),
        "FLOP share must grow along the graph"
    );
    assert!(shares.iter().all(|&s| (0.0..=1.0).contains(&s)));
}

#[test]
fn inspect_never_touches_the_input() {
    let path = testdata("models/squeezenet.onnx");
    let before = std::fs::read(&path).unwrap();
    assert!(eexc(&["inspect", path.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn shapes_are_fully_inferred_on_the_zoo_models() {
    for m in common::zoo_models() {
        let r = eexc::report::inspect::inspect(&m, &[]).unwrap();
        let issues = &r.shape_issues;
        assert!(
            issues.unsupported_ops.is_empty(),
            "{}: {:?}",
            m.display(),
            issues.unsupported_ops
        );
        assert!(
            issues.invalid_nodes.is_empty(),
            "{}: {:?}",
            m.display(),
            issues.invalid_nodes
        );
        assert!(
            issues.declared_type_mismatches.is_empty(),
            "{}: {:?}",
            m.display(),
            issues.declared_type_mismatches
        );
        assert_eq!(issues.values_without_shape, 0, "{}", m.display());
        let out = r.outputs[0].ty.as_ref().unwrap().to_string();
        assert!(
            out == "float[1,1000]" || out == "float[1,1000,1,1]",
            "{}: {out}",
            m.display()
        );
    }
}

#[test]
fn symbolic_batch_survives_exporter_shape_arithmetic() {
    // A Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain on a `batch`
    // sized input, as exporters write Flatten, must fold to [batch, C*H*W].
    use eexc::onnx::proto::*;
    use eexc::transform::builder::{attr_int, attr_ints, tensor_i64};
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphProto::new();
    g.set_name("flatten_export".into());
    let input = {
        let mut dims = TensorShapeProto::new();
        for d in ["batch", "3", "4", "5"] {
            let mut dim = tensor_shape_proto::Dimension::new();
            match d.parse::<i64>() {
                Ok(v) => dim.set_dim_value(v),
                Err(_) => dim.set_dim_param(d.into()),
            }
            dims.dim.push(dim);
        }
        let mut tt = type_proto::Tensor::new();
        tt.set_elem_type(1);
        tt.shape = Some(dims).into();
        let mut tp = TypeProto::new();
        tp.set_tensor_type(tt);
        let mut v = ValueInfoProto::new();
        v.set_name("x".into());
        v.type_ = Some(tp).into();
        v
    };
    g.input.push(input);
    let node = |op: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>| {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.into()];
        n.attribute = attrs;
        n
    };
    g.initializer.push(tensor_i64("zero", &[], &[0]));
    g.initializer.push(tensor_i64("minus_one", &[1], &[-1]));
    g.node.push(node("Shape", &["x"], "s", vec![]));
    g.node
        .push(node("Gather", &["s", "zero"], "n", vec![attr_int("axis", 0)]));
    g.node
        .push(node("Unsqueeze", &["n"], "n1", vec![attr_ints("axes", &[0])]));
    g.node.push(node(
        "Concat",
        &["n1", "minus_one"],
        "target",
        vec![attr_int("axis", 0)],
    ));
    g.node.push(node("Reshape", &["x", "target"], "y", vec![]));
    let mut out = ValueInfoProto::new();
    out.set_name("y".into());
    g.output.push(out);
    let mut m = ModelProto::new();
    m.set_ir_version(7);
    let mut op = OperatorSetIdProto::new();
    op.set_version(11);
    m.opset_import.push(op);
    m.graph = Some(g).into();
    let path = dir.path().join("flatten.onnx");
    eexc::onnx::save_model(&m, &path, None).unwrap();
    let r = eexc::report::inspect::inspect(&path, &[]).unwrap();
    assert_eq!(r.outputs[0].ty.as_ref().unwrap().to_string(), "float[batch,60]");
}

/// Attention as exporters write it: a Reshape to `[batch*seq, d]` computed
/// from the input's Shape, then a Gemm. The product of the two dims is kept,
/// so the Gemm is costed (it was "not costed", 8% of ViT-B/16, issue 13),
/// per sample: the batch at 1, the sequence length at its value (fixed,
/// `--dim`, or declared by the model) in every model. After a class token
/// is concatenated the rows are `batch*seq+batch`, and the Slice that drops
/// it gives `seq` back.
#[test]
fn rows_of_tokens_side_by_side_are_costed() {
    let dir = tempfile::tempdir().unwrap();
    common::py("make_token_rows_models.py", &[dir.path()]);
    let per_sample = 16 * 32 * 32 + 32 * 10;
    // (model, --dim arguments, MACs, the Gemm's input rows)
    for (name, dims, macs, rows) in [
        ("rows_fixed_seq", &[][..], per_sample, "16*batch"),
        ("rows_sym_seq", &["--dim", "seq=16"][..], per_sample, "batch*seq"),
        ("rows_declared_seq", &[][..], per_sample, "batch*seq"),
        // A class token in front: seq+1 rows per sample, a sum of symbols.
        (
            "class_token_seq",
            &["--dim", "seq=16"][..],
            17 * 32 * 32 + 32 * 10,
            "batch*seq+batch",
        ),
    ] {
        let model = dir.path().join(format!("{name}.onnx"));
        let mut args = vec!["inspect", "--json", model.to_str().unwrap()];
        args.extend(dims);
        let out = eexc(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["uncosted_ops"], serde_json::json!({}), "{name}");
        assert_eq!(json["totals"]["macs"], macs, "{name}");
        let proj = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "proj")
            .unwrap();
        assert_eq!(proj["status"], "counted", "{name}");
        assert_eq!(proj["output"]["shape"], serde_json::json!([rows, 32]), "{name}");
    }
    // A longer sequence costs in proportion.
    let sym = dir.path().join("rows_sym_seq.onnx");
    let out = eexc(&["inspect", "--json", sym.to_str().unwrap(), "--dim", "seq=64"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["totals"]["macs"], 64 * 32 * 32 + 32 * 10);
}

/// PyTorch exports (testdata/transformers, made by its script): every node
/// with a shape rule is costed, and the totals equal the MACs the script
/// counted from the modules' own sizes (referee.json) to within 2%.
#[test]
fn transformer_exports_match_their_referee() {
    let dir = testdata("transformers");
    let referee: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("referee.json")).unwrap()).unwrap();
    let files = referee.as_object().unwrap();
    assert_eq!(files.len(), 4);
    let check = |model: &std::path::Path, want: &serde_json::Value| {
        let file = model.display();
        let mut args = vec!["inspect".to_string(), "--json".into(), model.to_str().unwrap().into()];
        for (name, value) in want["dims"].as_object().unwrap() {
            args.extend(["--dim".to_string(), format!("{name}={value}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eexc(&args);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["uncosted_ops"], serde_json::json!({}), "{file}");
        let no_issues = serde_json::json!({"unsupported_ops": [], "invalid_nodes": [],
            "declared_type_mismatches": [], "values_without_shape": 0});
        assert_eq!(json["shape_issues"], no_issues, "{file}");
        let (got, want) = (json["totals"]["macs"].as_f64().unwrap(), want["macs"].as_f64().unwrap());
        assert!((got - want).abs() <= 0.02 * want, "{file}: {got} MACs, referee {want}");
    };
    for (file, want) in files {
        check(&dir.join(file), want);
    }
    // The trained token model (testdata/tokens) is the same BertClassifier
    // at the same sizes as bert_tiny_ts, so it has the same referee.
    check(&testdata("tokens/sentiment_bert.onnx"), &files["bert_tiny_ts.onnx"]);
}

/// An attention mask's bias crosses every layer boundary of a BERT-style
/// encoder; as context it leaves the layer outputs narrow cuts, while the
/// embedding's output, which the projections read, keeps the inside of a
/// layer from being one.
#[test]
fn layer_outputs_are_cuts_beside_the_attention_mask() {
    let model = testdata("transformers/bert_tiny_ts.onnx");
    let out = eexc(&["inspect", "--json", model.to_str().unwrap(), "--dim", "seq=32"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cuts = json["exit_candidates"].as_array().unwrap();
    let find = |t: &str| cuts.iter().find(|c| c["tensor"] == t);
    for layer in 0..3 {
        let cut = find(&format!("/layers.{layer}/output_norm/LayerNormalization_output_0"));
        let cut = cut.unwrap_or_else(|| panic!("layer {layer} output is not a cut: {cuts:?}"));
        assert_eq!(cut["context"], serde_json::json!(["/Mul_output_0"]));
    }
    // After the last layer nothing reads the mask: no context.
    let last = find("/layers.3/output_norm/LayerNormalization_output_0").unwrap();
    assert!(last.get("context").is_none(), "{last}");
    for inside in [
        "/layers.0/query/Add_output_0",
        "/layers.0/MatMul_output_0",
        "/layers.0/Softmax_output_0",
    ] {
        assert!(find(inside).is_none(), "{inside} is inside a layer");
    }
}

/// A symbol the model gives no number for is an error that names it,
/// never a silent 1; `--dim` refuses a name the model lacks and the batch.
#[test]
fn named_dimensions_without_a_value_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::py("make_token_rows_models.py", &[dir.path()]);
    let sym = dir.path().join("rows_sym_seq.onnx");
    let sym = sym.to_str().unwrap();
    let out_path = dir.path().join("out.onnx");
    let out_arg = out_path.to_str().unwrap();
    for (args, expected) in [
        (
            &[][..],
            "dimension 'seq' (of 'x', type float[batch,seq,32]) has no value: costs depend on it; give --dim seq=VALUE",
        ),
        (
            &["--dim", "sq=16"][..],
            "--dim sq: the model has no dimension named 'sq' (its named dimensions: batch, seq)",
        ),
        (
            &["--dim", "batch=8"][..],
            "--dim batch: 'batch' is the batch dimension (leading dim of input 'x'); costs are per sample",
        ),
        (&["--dim", "seq=16", "--dim", "seq=32"][..], "--dim seq is given twice"),
        (
            &["--dim", "seq=0"][..],
            "--dim seq=0: expected NAME=VALUE with VALUE a positive integer",
        ),
    ] {
        for command in ["inspect", "insert-exits"] {
            let mut full = vec![command, sym];
            full.extend(args);
            if command == "insert-exits" {
                full.extend(["--at", "tokens", "-o", out_arg]);
            }
            let out = eexc(&full);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {stderr}");
            assert!(stderr.contains(expected), "{command} {args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    assert!(!out_path.exists());
}

/// insert-exits costs at the `--dim` value too: the original network's MACs
/// and a token-mean head's FLOPs (it pools the sequence) grow with it.
#[test]
fn insert_exits_costs_at_the_given_dimension() {
    let dir = tempfile::tempdir().unwrap();
    common::py("make_token_rows_models.py", &[dir.path()]);
    let model = dir.path().join("rows_sym_seq.onnx");
    let cost_at = |seq: u64| {
        let out = dir.path().join(format!("ee_{seq}.onnx"));
        let report = dir.path().join(format!("report_{seq}.json"));
        let dim = format!("seq={seq}");
        common::insert_exits(
            &model,
            &out,
            &[
                "--at",
                "tokens:token-mean",
                "--dim",
                &dim,
                "--report",
                report.to_str().unwrap(),
            ],
        );
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let macs = |w: &serde_json::Value| w["macs"].as_f64().unwrap();
        // The head's pooling adds, no multiplies: its FLOPs grow with seq.
        let head_flops = json["cost"]["exits"][0]["head"]["flops"].as_f64().unwrap();
        (macs(&json["cost"]["original"]), head_flops)
    };
    let (original_16, head_16) = cost_at(16);
    let (original_64, head_64) = cost_at(64);
    assert_eq!(original_16, f64::from(16 * 32 * 32 + 32 * 10));
    assert_eq!(original_64, f64::from(64 * 32 * 32 + 32 * 10));
    assert!(head_64 > head_16, "{head_16} -> {head_64}");
}

/// Image classifiers with symbolic sides (tests/python/make_dynamic_image_models.py):
/// a strided convolution, pooling, an upsampling and a stepped slice give
/// floor quotients of H and W (`floor((H+7)/8)`), and a patch grid's shape
/// arithmetic divides the input's sides. Every node is costed, and at two
/// sizes (odd sides included) the MACs equal the ones the script counted from
/// the shapes ONNX Runtime produced.
#[test]
fn symbolic_image_sides_are_costed_through_strides() {
    let dir = tempfile::tempdir().unwrap();
    common::py("make_dynamic_image_models.py", &[dir.path()]);
    let referee: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("referee.json")).unwrap()).unwrap();
    for (name, sizes) in referee.as_object().unwrap() {
        let model = dir.path().join(format!("{name}.onnx"));
        for (size, macs) in sizes.as_object().unwrap() {
            let (h, w) = size.split_once(',').unwrap();
            let out = eexc(&["inspect", "--json", model.to_str().unwrap(), "--dim", h, "--dim", w]);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["uncosted_ops"], serde_json::json!({}), "{name} {size}");
            assert_eq!(&json["totals"]["macs"], macs, "{name} {size}");
        }
    }
    let out = eexc(&[
        "inspect",
        "--json",
        dir.path().join("dynamic_cnn.onnx").to_str().unwrap(),
        "--dim",
        "H=224",
        "--dim",
        "W=224",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shape = |node: &str| {
        json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap()["output"]["shape"]
            .clone()
    };
    assert_eq!(
        shape("stem"),
        serde_json::json!(["batch", 8, "floor((H+1)/2)", "floor((W+1)/2)"])
    );
    assert_eq!(
        shape("down"),
        serde_json::json!(["batch", 16, "floor((H+7)/8)", "floor((W+7)/8)"])
    );
    assert_eq!(
        shape("up"),
        serde_json::json!(["batch", 16, "2*floor((H+7)/8)", "2*floor((W+7)/8)"])
    );
    assert_eq!(shape("every_other"), shape("down"));
    // Without values for the sides, the error names them.
    let out = eexc(&["inspect", dir.path().join("patch_grid.onnx").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dimension 'H'") && err.contains("--dim H=VALUE"), "{err}");
}
