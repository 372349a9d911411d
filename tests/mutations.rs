//! Structure-aware mutations of valid models (the shipped ones and models
//! eexc emitted), run through every command that reads a model: each must
//! succeed or fail with exit code 2 and one line naming the file, never
//! panic. The mutations are seeded, so a failure names its seed and
//! mutation and reproduces.

mod common;

use std::path::{Path, PathBuf};

use common::{eexc, insert_exits, testdata};
use eexc::onnx::proto::{ModelProto, NodeProto, StringStringEntryProto, attribute_proto::AttributeType};
use protobuf::Message;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const MUTATIONS: &[&str] = &[
    "drop-node-input",
    "drop-node-outputs",
    "undefined-input",
    "initializer-dtype",
    "initializer-dims",
    "attribute-value",
    "drop-attribute",
    "opset",
    "reverse-nodes",
    "metadata",
    "input-dims",
    "constant-without-output",
    "op-type",
    "duplicate-output",
];

/// Applies mutation `kind` to `m` with choices from `rng`.
fn mutate(m: &mut ModelProto, kind: &str, rng: &mut Rng) {
    let g = m.graph.as_mut().expect("a graph");
    let n_nodes = g.node.len();
    let pick = rng.below(n_nodes);
    match kind {
        "drop-node-input" => {
            if let Some(n) = g.node.get_mut(pick)
                && !n.input.is_empty()
            {
                let i = rng.below(n.input.len());
                n.input.remove(i);
            }
        }
        "drop-node-outputs" => {
            if let Some(n) = g.node.get_mut(pick) {
                n.output.clear();
            }
        }
        "undefined-input" => {
            if let Some(n) = g.node.get_mut(pick)
                && !n.input.is_empty()
            {
                let i = rng.below(n.input.len());
                n.input[i] = "no_such_tensor".into();
            }
        }
        "initializer-dtype" => {
            let len = g.initializer.len();
            if let Some(t) = g.initializer.get_mut(rng.below(len)) {
                t.set_data_type([2, 3, 6, 7, 9, 10, 11, 16, 0, 99][rng.below(10)]);
            }
        }
        "initializer-dims" => {
            let len = g.initializer.len();
            if let Some(t) = g.initializer.get_mut(rng.below(len)) {
                let v = [0, -1, 3, 1 << 40, i64::MAX][rng.below(5)];
                match t.dims.len() {
                    0 => t.dims.push(v),
                    d => t.dims[rng.below(d)] = v,
                }
            }
        }
        "attribute-value" => {
            if let Some(n) = g.node.get_mut(pick)
                && !n.attribute.is_empty()
            {
                let i = rng.below(n.attribute.len());
                let a = &mut n.attribute[i];
                let v = [-1, 0, 7, 1 << 33, i64::MIN][rng.below(5)];
                match a.type_() {
                    AttributeType::INT => a.set_i(v),
                    AttributeType::INTS => a.ints.iter_mut().for_each(|x| *x = v),
                    AttributeType::FLOAT => a.set_f(f32::NAN),
                    _ => a.set_type(AttributeType::INT),
                }
            }
        }
        "drop-attribute" => {
            if let Some(n) = g.node.get_mut(pick)
                && !n.attribute.is_empty()
            {
                let i = rng.below(n.attribute.len());
                n.attribute.remove(i);
            }
        }
        "opset" => {
            let v = [1, 6, 9, 11, 13, 18, 21, 99][rng.below(8)];
            if let Some(o) = m.opset_import.iter_mut().find(|o| o.domain().is_empty()) {
                o.set_version(v);
            }
        }
        "reverse-nodes" => g.node.reverse(),
        "metadata" => {
            let value = match m.metadata_props.iter().find(|p| p.key() == "eexc.exits") {
                Some(p) => {
                    let mut json: serde_json::Value = serde_json::from_str(p.value()).unwrap_or_default();
                    match rng.below(4) {
                        0 => {
                            if let Some(e) = json["exits"].as_array_mut() {
                                e.truncate(1);
                            }
                        }
                        1 => json["exits"][0]["tensor"] = "no_such_tensor".into(),
                        2 => json["cost"]["stages"] = serde_json::json!([]),
                        _ => json["exits"][0]["threshold_input"] = "no_such_input".into(),
                    }
                    json.to_string()
                }
                None => "{not json".to_string(),
            };
            m.metadata_props.retain(|p| p.key() != "eexc.exits");
            let mut p = StringStringEntryProto::new();
            p.set_key("eexc.exits".into());
            p.set_value(value);
            m.metadata_props.push(p);
        }
        "input-dims" => {
            if let Some(t) = g
                .input
                .first_mut()
                .and_then(|i| i.type_.as_mut())
                .and_then(|t| t.mut_tensor_type().shape.as_mut())
            {
                let len = t.dim.len();
                if let Some(d) = t.dim.get_mut(rng.below(len)) {
                    d.set_dim_value([0, -5, 1 << 45][rng.below(3)]);
                }
            }
        }
        "constant-without-output" => {
            let mut n = NodeProto::new();
            n.set_op_type("Constant".into());
            n.set_name("mutant_constant".into());
            g.node.insert(pick, n);
        }
        "op-type" => {
            if let Some(n) = g.node.get_mut(pick) {
                let op = ["Relu", "Conv", "Gemm", "Concat", "Reshape", "If", "Loop", "NoSuchOp"][rng.below(8)];
                n.set_op_type(op.into());
            }
        }
        "duplicate-output" => {
            if n_nodes >= 2 {
                let other = rng.below(n_nodes);
                if let Some(first) = g.node[other].output.first().cloned()
                    && let Some(n) = g.node.get_mut(pick)
                {
                    n.output.push(first);
                }
            }
        }
        _ => unreachable!("unknown mutation {kind}"),
    }
}

/// Every command that reads a model, on `model`; exit 0 or 2, one line on
/// failure, never a panic. Returns what went wrong.
fn run_every_command(model: &Path, out_dir: &Path, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let m = model.to_str().unwrap();
    let out = out_dir.join("out.onnx");
    let o = out.to_str().unwrap();
    let heads_path = out_dir.join("heads.safetensors");
    let heads = heads_path.to_str().unwrap();
    let calib = testdata("digits/calib_x.npy");
    let labels = testdata("digits/calib_y.npy");
    let commands: Vec<Vec<&str>> = vec![
        vec!["inspect", m],
        vec!["inspect", m, "--json"],
        vec!["print", m],
        vec!["insert-exits", m, "--auto", "2", "-o", o],
        vec!["insert-exits", m, "--auto", "2", "--mode", "compact", "-o", o],
        vec!["insert-exits", m, "--mode", "loop", "-o", o],
        vec!["optimize", m, "-o", o],
        vec!["fit", m, "--data", calib.to_str().unwrap(), "--auto", "2", "-o", heads],
        vec!["cost", m],
        vec![
            "calibrate",
            m,
            "--data",
            calib.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--max-drop",
            "5%",
            "-o",
            o,
        ],
    ];
    for args in commands {
        let _ = std::fs::remove_file(&out);
        let r = eexc(&args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        let code = r.status.code();
        let errors = stderr.lines().filter(|l| l.starts_with("eexc: error")).count();
        // calibrate exits 1 when no threshold meets the target (not an input error).
        let unmet = args[0] == "calibrate" && code == Some(1) && stderr.contains("no threshold keeps");
        let clean = code == Some(0) || (code == Some(2) && errors == 1) || unmet;
        // What eexc writes, eexc reads back: an output its own validation refuses is a finding.
        if code == Some(0)
            && out.exists()
            && let Err(e) = eexc::onnx::load_model_for_transform(&out)
        {
            problems.push(format!("{what}: {} wrote a model eexc refuses: {e}", args[0]));
        }
        if stderr.contains("panicked") || !clean {
            let first = stderr
                .lines()
                .find(|l| l.contains("panicked") || l.starts_with("eexc: error"));
            problems.push(format!(
                "{what}: {} exited {code:?}: {}",
                args[0],
                first.unwrap_or(&stderr)
            ));
        }
    }
    problems
}

/// The models mutated: shipped ones, and early-exit models eexc made.
fn base_models(dir: &Path) -> Vec<PathBuf> {
    let digits = testdata("digits/digits_resnet.onnx");
    let mut models = vec![
        digits.clone(),
        testdata("models/resnet50.onnx"),
        testdata("models/squeezenet.onnx"),
    ];
    for mode in ["if", "compact"] {
        let ee = dir.join(format!("digits.{mode}.onnx"));
        insert_exits(&digits, &ee, &["--auto", "2", "--mode", mode]);
        models.push(ee);
    }
    // The digits model quantized by ONNX Runtime's tool (QDQ).
    let qdq = dir.join("digits.qdq.onnx");
    common::quantize_digits(&qdq, "qdq");
    models.push(qdq);
    models
}

#[test]
fn mutated_models_never_panic_any_command() {
    let dir = tempfile::tempdir().unwrap();
    let bases = base_models(dir.path());
    let mut rng = Rng(0x5EED);
    let rounds = 3;
    let mut problems = Vec::new();
    for base in &bases {
        let original = ModelProto::parse_from_bytes(&std::fs::read(base).unwrap()).unwrap();
        for round in 0..rounds {
            for kind in MUTATIONS {
                let seed = rng.next();
                let mut m = original.clone();
                mutate(&mut m, kind, &mut Rng(seed));
                let path = dir.path().join("mutant.onnx");
                std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
                let what = format!(
                    "{} / {kind} (round {round}, seed {seed:#x})",
                    base.file_name().unwrap().to_string_lossy()
                );
                problems.extend(run_every_command(&path, dir.path(), &what));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} failures:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// What the structure-aware fuzzer (`fuzz/fuzz_targets/commands.rs`) found,
/// kept as the mutants it made: every command on each, as above.
#[test]
fn fuzz_findings_never_panic_any_command() {
    let dir = tempfile::tempdir().unwrap();
    let found = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/commands");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&found)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    models.sort();
    assert!(!models.is_empty(), "no findings in {}", found.display());
    let problems: Vec<String> = models
        .iter()
        .flat_map(|m| run_every_command(m, dir.path(), &m.file_name().unwrap().to_string_lossy()))
        .collect();
    assert!(
        problems.is_empty(),
        "{} failures:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
