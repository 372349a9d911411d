//! Structure-aware fuzzing of every command that reads a model.
//!
//! The fuzz input is not a model: it is a program of edits. Its first bytes
//! choose a base model (a shipped one, or one eexc emitted from it) and a
//! command; the rest is read as a list of edits to the decoded model (drop,
//! rename or redirect a node's inputs and outputs, change a tensor's data
//! type, dims or bytes, an attribute, the opset, the IR version, the node
//! order, a graph input or output, the `eexc.exits` metadata), in any graph
//! of the model, `If` branches included. libFuzzer's byte-level mutations of
//! the program therefore always reach the transforms with a model that
//! decodes and is almost valid, which raw bytes rarely do.
//!
//! The mutant is written to a scratch folder and run through
//! `eexc::cli::main_with`, the binary's own entry point. The contract:
//! - no panic in eexc (a panic inside tract is caught by eexc and is an
//!   error, so the panic hook below lets those unwind);
//! - exit code 0, or 2 with one error line (calibrate may also answer 1: no
//!   threshold met the target);
//! - whatever a command writes passes eexc's own validation again.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use eexc::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, attribute_proto::AttributeType,
};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use protobuf::Message;

/// Everything set up once per process.
struct Setup {
    bases: Vec<(String, ModelProto)>,
    calib_x: PathBuf,
    calib_y: PathBuf,
    scratch: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        install_panic_hook();
        let scratch = std::env::temp_dir().join(format!("eexc-fuzz-{}", std::process::id()));
        // A fresh folder per process: a crash leaves its mutant here.
        std::fs::create_dir_all(&scratch).expect("a scratch folder");
        let testdata = repo().join("testdata");
        let digits = testdata.join("digits/digits_resnet.onnx");
        let mut paths = vec![
            digits.clone(),
            testdata.join("models/squeezenet.onnx"),
            testdata.join("models/resnet50.onnx"),
            testdata.join("models/inception_v1.onnx"),
        ];
        // Emitted models carry the exits metadata, knobs and If branches.
        for mode in ["if", "compact", "multi"] {
            let out = scratch.join(format!("digits.{mode}.onnx"));
            let (code, err) = eexc::cli::main_with([
                "eexc",
                "insert-exits",
                digits.to_str().unwrap(),
                "--auto",
                "2",
                "--mode",
                mode,
                "-o",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "emitting the {mode} base: {err:?}");
            paths.push(out);
        }
        // More bases (a quantized model, say) from a folder named by the caller.
        if let Ok(dir) = std::env::var("EEXC_FUZZ_MODELS") {
            let mut extra: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("EEXC_FUZZ_MODELS is a folder")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .collect();
            extra.sort();
            paths.extend(extra);
        }
        let bases = paths
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).expect("a base model");
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (
                    name,
                    ModelProto::parse_from_bytes(&bytes).expect("a base model decodes"),
                )
            })
            .collect();
        Setup {
            bases,
            calib_x: testdata.join("digits/calib_x.npy"),
            calib_y: testdata.join("digits/calib_y.npy"),
            scratch,
        }
    })
}

/// libfuzzer-sys aborts on every panic, caught or not. eexc catches tract's
/// panics on purpose (they become "tract cannot run this model" errors), so
/// those unwind; a panic anywhere else is a finding.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_tract = info.location().is_some_and(|l| l.file().contains("/tract-"));
        if !in_tract {
            default(info);
            std::process::abort();
        }
    }));
}

const COMMANDS: &[&str] = &[
    "inspect",
    "inspect-json",
    "print",
    "insert-if",
    "insert-compact",
    "insert-multi",
    "insert-loop",
    "optimize",
    "cost",
    "fit",
    "calibrate",
];

/// Values that break assumptions: zero, negative, huge, the extremes.
const INTERESTING: &[i64] = &[0, 1, -1, 2, 3, 7, 64, 1 << 31, 1 << 33, 1 << 45, i64::MAX, i64::MIN];

const OPS: &[&str] = &[
    "Relu",
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Concat",
    "Reshape",
    "Flatten",
    "Transpose",
    "Softmax",
    "GlobalAveragePool",
    "MaxPool",
    "If",
    "Loop",
    "Identity",
    "Constant",
    "Shape",
    "Gather",
    "Slice",
    "ReduceMax",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "NoSuchOp",
];

/// How many graphs the model has: the main graph and every subgraph.
fn count_graphs(g: &GraphProto) -> usize {
    1 + g
        .node
        .iter()
        .flat_map(|n| &n.attribute)
        .map(|a| a.g.as_ref().map_or(0, count_graphs) + a.graphs.iter().map(count_graphs).sum::<usize>())
        .sum::<usize>()
}

/// The `n`-th graph in depth-first order (the main graph is 0).
fn nth_graph<'a>(g: &'a mut GraphProto, n: &mut usize) -> Option<&'a mut GraphProto> {
    if *n == 0 {
        return Some(g);
    }
    *n -= 1;
    for node in g.node.iter_mut() {
        for a in node.attribute.iter_mut() {
            let subs = a.g.as_mut().into_iter().chain(a.graphs.iter_mut());
            for sub in subs {
                if let Some(found) = nth_graph(sub, n) {
                    return Some(found);
                }
            }
        }
    }
    None
}

fn pick<T>(u: &mut Unstructured, v: &[T]) -> ArbResult<usize> {
    if v.is_empty() { Ok(0) } else { u.choose_index(v.len()) }
}

fn interesting(u: &mut Unstructured) -> ArbResult<i64> {
    if u.ratio(1, 4)? {
        u.arbitrary()
    } else {
        Ok(INTERESTING[u.choose_index(INTERESTING.len())?])
    }
}

/// A tensor name from the graph: a node's input or output, a graph input or
/// output, an initializer, or a name nothing defines.
fn some_name(u: &mut Unstructured, g: &GraphProto) -> ArbResult<String> {
    let mut names: Vec<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output))
        .map(String::as_str)
        .collect();
    names.extend(g.initializer.iter().map(|t| t.name()));
    names.extend(g.input.iter().map(|v| v.name()));
    if names.is_empty() || u.ratio(1, 8)? {
        return Ok(["no_such_tensor", "", "eexc_exit_index"][u.choose_index(3)?].to_string());
    }
    Ok(names[u.choose_index(names.len())?].to_string())
}

/// One edit of the model, read from the fuzz input.
fn edit(u: &mut Unstructured, m: &mut ModelProto) -> ArbResult<()> {
    let kind: u8 = u.arbitrary()?;
    match kind % 24 {
        0 => {
            let v = interesting(u)?;
            match m.opset_import.iter_mut().find(|o| o.domain().is_empty()) {
                Some(o) => o.set_version(v),
                None => {}
            }
        }
        1 => m.set_ir_version(interesting(u)?),
        2 => edit_metadata(u, m)?,
        3 => m.opset_import.clear(),
        _ => {
            let Some(main) = m.graph.as_mut() else { return Ok(()) };
            let mut which = u.choose_index(count_graphs(main))?;
            let Some(g) = nth_graph(main, &mut which) else {
                return Ok(());
            };
            edit_graph(u, kind % 24 - 4, g)?;
        }
    }
    Ok(())
}

fn edit_graph(u: &mut Unstructured, kind: u8, g: &mut GraphProto) -> ArbResult<()> {
    let ni = pick(u, &g.node)?;
    match kind {
        0 => {
            if let Some(n) = g.node.get_mut(ni)
                && !n.input.is_empty()
            {
                let i = u.choose_index(n.input.len())?;
                n.input.remove(i);
            }
        }
        1 => {
            let name = some_name(u, g)?;
            if let Some(n) = g.node.get_mut(ni) {
                set_one(u, &mut n.input, name)?;
            }
        }
        2 => {
            let name = some_name(u, g)?;
            if let Some(n) = g.node.get_mut(ni) {
                set_one(u, &mut n.output, name)?;
            }
        }
        3 => {
            if let Some(n) = g.node.get_mut(ni) {
                if u.arbitrary()? {
                    n.output.clear()
                } else {
                    n.output.truncate(1)
                }
            }
        }
        4 => {
            if let Some(n) = g.node.get_mut(ni) {
                n.set_op_type(OPS[u.choose_index(OPS.len())?].into());
            }
        }
        5 => {
            if let Some(n) = g.node.get_mut(ni) {
                n.set_domain(["", "com.microsoft", "ai.onnx.ml", "no.such.domain"][u.choose_index(4)?].into());
            }
        }
        6 => {
            if let Some(n) = g.node.get_mut(ni)
                && !n.attribute.is_empty()
            {
                let i = u.choose_index(n.attribute.len())?;
                edit_attribute(u, &mut n.attribute[i])?;
            }
        }
        7 => {
            if let Some(n) = g.node.get_mut(ni)
                && !n.attribute.is_empty()
            {
                let i = u.choose_index(n.attribute.len())?;
                n.attribute.remove(i);
            }
        }
        8 => {
            // An attribute the node may not take, or a second copy of one.
            let mut a = AttributeProto::new();
            a.set_name(
                ["axis", "perm", "kernel_shape", "to", "then_branch", "group", "pads"][u.choose_index(7)?].into(),
            );
            a.set_type(AttributeType::INT);
            a.set_i(interesting(u)?);
            if let Some(n) = g.node.get_mut(ni) {
                n.attribute.push(a);
            }
        }
        9 => {
            if g.node.len() >= 2 {
                let a = u.choose_index(g.node.len())?;
                let b = u.choose_index(g.node.len())?;
                g.node.swap(a, b);
            }
        }
        10 => {
            let mut n = NodeProto::new();
            n.set_op_type(OPS[u.choose_index(OPS.len())?].into());
            for _ in 0..u.int_in_range(0..=3)? {
                n.input.push(some_name(u, g)?);
            }
            for _ in 0..u.int_in_range(0..=2)? {
                n.output.push(if u.arbitrary()? {
                    some_name(u, g)?
                } else {
                    format!("fuzz_{}", g.node.len())
                });
            }
            let at = u.int_in_range(0..=g.node.len())?;
            g.node.insert(at, n);
        }
        11 => {
            if !g.node.is_empty() {
                g.node.remove(ni);
            }
        }
        12 => {
            let ti = pick(u, &g.initializer)?;
            if let Some(t) = g.initializer.get_mut(ti) {
                t.set_data_type(i32::from(u.int_in_range(0u8..=24)?));
            }
        }
        13 => {
            let ti = pick(u, &g.initializer)?;
            let v = interesting(u)?;
            if let Some(t) = g.initializer.get_mut(ti) {
                match (t.dims.len(), u.int_in_range(0u8..=2)?) {
                    (_, 0) => t.dims.push(v),
                    (0, _) => t.dims.push(v),
                    (len, 1) => t.dims[u.choose_index(len)?] = v,
                    (len, _) => t.dims.truncate(len - 1),
                }
            }
        }
        14 => {
            let ti = pick(u, &g.initializer)?;
            let cut: usize = u.arbitrary()?;
            if let Some(t) = g.initializer.get_mut(ti) {
                if let Some(raw) = t.raw_data.as_mut() {
                    let keep = if raw.is_empty() { 0 } else { cut % raw.len() };
                    raw.truncate(keep);
                } else {
                    let keep = if t.float_data.is_empty() {
                        0
                    } else {
                        cut % t.float_data.len()
                    };
                    t.float_data.truncate(keep);
                    t.int64_data.truncate(keep);
                }
            }
        }
        15 => {
            let ti = pick(u, &g.initializer)?;
            let name = some_name(u, g)?;
            if let Some(t) = g.initializer.get_mut(ti) {
                t.set_name(name);
            }
        }
        16 => {
            let vi = pick(u, &g.input)?;
            let v = interesting(u)?;
            let param = u.ratio(1, 4)?;
            if let Some(shape) = g
                .input
                .get_mut(vi)
                .and_then(|i| i.type_.as_mut())
                .and_then(|t| t.mut_tensor_type().shape.as_mut())
            {
                let len = shape.dim.len();
                if len > 0 {
                    let d = &mut shape.dim[u.choose_index(len)?];
                    if param {
                        d.set_dim_param("fuzz_dim".into())
                    } else {
                        d.set_dim_value(v)
                    }
                } else {
                    shape.dim.clear();
                }
            }
        }
        17 => {
            let vi = pick(u, &g.input)?;
            let elem = i32::from(u.int_in_range(0u8..=24)?);
            if let Some(t) = g.input.get_mut(vi).and_then(|i| i.type_.as_mut()) {
                t.mut_tensor_type().set_elem_type(elem);
            }
        }
        18 => {
            if u.arbitrary()? {
                let oi = pick(u, &g.output)?;
                if !g.output.is_empty() {
                    g.output.remove(oi);
                }
            } else if let Some(o) = g.output.first().cloned() {
                let mut o = o;
                o.set_name(some_name(u, g)?);
                g.output.push(o);
            }
        }
        _ => {
            let vi = pick(u, &g.input)?;
            if u.arbitrary()? {
                if !g.input.is_empty() {
                    g.input.remove(vi);
                }
            } else if let Some(i) = g.input.get(vi).cloned() {
                let mut i = i;
                i.set_name(some_name(u, g)?);
                g.input.push(i);
            }
        }
    }
    Ok(())
}

/// One of `names` (picked by `u`) becomes `name`; an empty list gets it.
fn set_one(u: &mut Unstructured, names: &mut Vec<String>, name: String) -> ArbResult<()> {
    match names.len() {
        0 => names.push(name),
        len => names[u.choose_index(len)?] = name,
    }
    Ok(())
}

fn edit_attribute(u: &mut Unstructured, a: &mut AttributeProto) -> ArbResult<()> {
    let v = interesting(u)?;
    match u.int_in_range(0u8..=5)? {
        0 => match a.type_() {
            AttributeType::INT => a.set_i(v),
            AttributeType::FLOAT => a.set_f([f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30][u.choose_index(5)?]),
            AttributeType::INTS => {
                let len = a.ints.len();
                if len > 0 {
                    a.ints[u.choose_index(len)?] = v;
                }
            }
            _ => a.set_i(v),
        },
        1 => {
            a.ints.push(v);
        }
        2 => a.ints.clear(),
        3 => a.set_type(
            [
                AttributeType::INT,
                AttributeType::INTS,
                AttributeType::FLOAT,
                AttributeType::GRAPH,
                AttributeType::STRING,
            ][u.choose_index(5)?],
        ),
        4 => {
            a.g.clear();
            a.graphs.clear();
        }
        _ => a.set_name("no_such_attribute".into()),
    }
    Ok(())
}

/// Edits of the `eexc.exits` metadata as JSON: a field removed, replaced by
/// a value of another type, an array cut or grown; or text that is not JSON.
fn edit_metadata(u: &mut Unstructured, m: &mut ModelProto) -> ArbResult<()> {
    let Some(pos) = m.metadata_props.iter().position(|p| p.key() == "eexc.exits") else {
        let mut p = StringStringEntryProto::new();
        p.set_key("eexc.exits".into());
        p.set_value(["{", "{}", "[]", "{\"exits\":[]}", "null"][u.choose_index(5)?].into());
        m.metadata_props.push(p);
        return Ok(());
    };
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(m.metadata_props[pos].value()) else {
        return Ok(());
    };
    // A random node of the document, as a JSON pointer.
    let mut path = String::new();
    let mut here = &json;
    for _ in 0..u.int_in_range(0..=4)? {
        let (key, next) = match here {
            serde_json::Value::Object(o) if !o.is_empty() => {
                let (k, v) = o.iter().nth(u.choose_index(o.len())?).unwrap();
                (k.replace('~', "~0").replace('/', "~1"), v)
            }
            serde_json::Value::Array(a) if !a.is_empty() => {
                let i = u.choose_index(a.len())?;
                (i.to_string(), &a[i])
            }
            _ => break,
        };
        path.push('/');
        path.push_str(&key);
        here = next;
    }
    let v = interesting(u)?;
    let choice = u.int_in_range(0u8..=6)?;
    let Some(at) = json.pointer_mut(&path) else {
        return Ok(());
    };
    *at = match choice {
        0 => serde_json::Value::Null,
        1 => serde_json::json!(v),
        2 => serde_json::json!(-1.5),
        3 => serde_json::json!("no_such_tensor"),
        4 => serde_json::json!([]),
        5 => match at.take() {
            serde_json::Value::Array(mut a) => {
                if let Some(first) = a.first().cloned() {
                    a.push(first);
                }
                serde_json::Value::Array(a)
            }
            other => serde_json::json!([other]),
        },
        _ => serde_json::json!({}),
    };
    m.metadata_props[pos].set_value(json.to_string());
    Ok(())
}

fn arguments<'a>(command: &'a str, model: &'a str, out: &'a str, s: &'a Setup) -> Vec<&'a str> {
    let x = s.calib_x.to_str().unwrap();
    let y = s.calib_y.to_str().unwrap();
    match command {
        "inspect" => vec!["inspect", model],
        "inspect-json" => vec!["inspect", model, "--json"],
        "print" => vec!["print", model],
        "insert-if" => vec!["insert-exits", model, "--auto", "2", "-o", out],
        "insert-compact" => vec!["insert-exits", model, "--auto", "2", "--mode", "compact", "-o", out],
        "insert-multi" => vec!["insert-exits", model, "--auto", "2", "--mode", "multi", "-o", out],
        "insert-loop" => vec!["insert-exits", model, "--mode", "loop", "-o", out],
        "optimize" => vec!["optimize", model, "-o", out],
        "cost" => vec!["cost", model],
        "fit" => vec!["fit", model, "--data", x, "--auto", "2", "-o", out],
        _ => vec![
            "calibrate",
            model,
            "--data",
            x,
            "--labels",
            y,
            "--max-drop",
            "5%",
            "-o",
            out,
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut u = Unstructured::new(data);
    let (Ok(base), Ok(command)) = (u.choose_index(s.bases.len()), u.choose_index(COMMANDS.len())) else {
        return;
    };
    let command = COMMANDS[command];
    let mut model = s.bases[base].1.clone();
    for _ in 0..8 {
        if u.is_empty() || edit(&mut u, &mut model).is_err() {
            break;
        }
    }
    let Ok(bytes) = model.write_to_bytes() else { return };
    let input = s.scratch.join("mutant.onnx");
    let out = if command == "fit" {
        s.scratch.join("out.safetensors")
    } else {
        s.scratch.join("out.onnx")
    };
    std::fs::write(&input, &bytes).expect("writing the mutant");
    let _ = std::fs::remove_file(&out);
    let args = arguments(command, input.to_str().unwrap(), out.to_str().unwrap(), s);
    // To turn a crash file into a regression test: the mutant stays in the
    // scratch folder, and this says which command ran on it.
    if std::env::var_os("EEXC_FUZZ_VERBOSE").is_some() {
        eprintln!(
            "eexc-fuzz: {} on a mutant of {}: eexc {}",
            command,
            s.bases[base].0,
            args.join(" ")
        );
    }
    let (code, line) = eexc::cli::main_with(std::iter::once("eexc").chain(args));
    if std::env::var_os("EEXC_FUZZ_VERBOSE").is_some() {
        eprintln!(
            "eexc-fuzz: exit {code}: {command} on {}: {}",
            s.bases[base].0,
            line.as_deref().unwrap_or("")
        );
    }
    let gate = command == "calibrate" && code == 1;
    assert!(
        code == 0 || code == 2 || gate,
        "{command} on a mutant of {}: exit code {code} ({line:?})",
        s.bases[base].0
    );
    if code == 2 {
        let line = line.unwrap_or_default();
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "{command}: the error is not one line: {line:?}"
        );
    }
    // What eexc writes, eexc reads back.
    if code == 0 && out.extension().is_some_and(|e| e == "onnx") && out.exists() {
        let again = eexc::onnx::load_model_for_transform(&out);
        assert!(
            again.is_ok(),
            "{command} on a mutant of {} wrote a model eexc refuses: {}",
            s.bases[base].0,
            again.err().unwrap()
        );
    }
});
