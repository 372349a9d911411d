//! The contract of an emitted model, in one place: every name the outside
//! world (users, ONNX Runtime sessions, `calibrate`, `eval`, `cost`) relies
//! on, and the `eexc.exits` metadata as a typed document, checked against
//! the graph whenever it is read. The full contract, as the Python referees
//! test it, is tests/python/exits_contract.md.

use serde::Serialize;

use super::decision::{Confidence, Knobs};
use super::{HeadKind, Mode, cost};
use crate::onnx::proto::ModelProto;
use crate::transform::patch::{ModelPatch, PatchError};

/// Key of the model metadata entry describing the exits.
pub const METADATA_KEY: &str = "eexc.exits";

/// Nodes of exit k's head and decision carry this tag (fusion finds its
/// regions by it, wherever emission moved them).
pub use crate::fuse::exit_tag;

/// Name of the per-row exit index output.
pub const EXIT_INDEX: &str = "exit_index";

/// Name of exit `k`'s copy of original output `o` (multi mode).
pub fn exit_output_name(o: &str, k: usize) -> String {
    format!("{o}__exit{k}")
}

/// Exit k's threshold knob is this prefix and k.
pub const THRESHOLD_KNOB_PREFIX: &str = "eexc_threshold_";

/// Exit k's threshold and temperature: graph inputs with initializers
/// holding the defaults, which a session may override.
pub fn knobs(k: usize) -> Knobs {
    Knobs {
        threshold: format!("{THRESHOLD_KNOB_PREFIX}{k}"),
        temperature: format!("eexc_temperature_{k}"),
    }
}

/// Names of a head's initializers, so a trained multi-output model can hand
/// its weights back (`--weights-from`).
pub fn weight_names(exit: usize) -> (String, String) {
    (format!("eexc_exit{exit}_weight"), format!("eexc_exit{exit}_bias"))
}

/// Initializer names of a conv-grid head's convolution (weight, bias).
pub fn refine_names(exit: usize) -> (String, String) {
    (
        format!("eexc_exit{exit}_refine_weight"),
        format!("eexc_exit{exit}_refine_bias"),
    )
}

/// Name of exit `exit`'s logits (a graph output in multi mode).
pub fn logits_name(exit: usize) -> String {
    format!("eexc_exit_{exit}_logits")
}

/// Names of exit k's `If` branches (if and compact modes): `then` returns
/// the head's answer, `else` runs the rest of the network.
pub fn branch_names(k: usize) -> (String, String) {
    (format!("eexc_exit{k}_then"), format!("eexc_exit{k}_else"))
}

/// Whether `graph_name` is the `then` branch of an exit's `If`.
pub fn is_exit_then_branch(graph_name: &str) -> bool {
    graph_name
        .strip_prefix("eexc_exit")
        .and_then(|rest| rest.strip_suffix("_then"))
        .is_some_and(|k| k.parse::<usize>().is_ok())
}

/// Compact mode: the base of the per-row mask of the rows that go on past
/// exit k (the `Compress` that keeps them reads it).
pub fn continue_mask_name(k: usize) -> String {
    format!("eexc_exit{k}_continue")
}

/// Whether `tensor` is such a mask.
pub fn is_continue_mask(tensor: &str) -> bool {
    tensor
        .strip_prefix("eexc_exit")
        .and_then(|rest| rest.strip_suffix("_continue"))
        .is_some_and(|k| k.parse::<usize>().is_ok())
}

/// One exit as recorded in the model's metadata (`eexc.exits`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExitMeta {
    pub index: usize,
    pub tensor: String,
    pub head: HeadKind,
    pub confidence: Confidence,
    pub threshold_input: String,
    pub temperature_input: String,
    pub threshold: f32,
    pub temperature: f32,
    pub logits_output: String,
    /// Suggested weight of this exit's loss when training the heads on the
    /// multi-output model: the share of the model's FLOPs it has seen (deeper
    /// exits see more and are weighted more; the final classifier has 1.0).
    pub loss_weight: f64,
    /// Why `--auto` chose it; empty for `--at`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The whole `eexc.exits` metadata document.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExitsMetadata {
    pub version: u32,
    pub mode: Mode,
    pub logits: String,
    pub exits: Vec<ExitMeta>,
    pub never_exit_classes: Vec<i64>,
    pub trained: bool,
    pub weights: String,
    pub cost: cost::CostTable,
    /// Set by `eexc calibrate`: what the thresholds were chosen for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<serde_json::Value>,
}

/// Records the `eexc.exits` metadata in `patch` (replacing what the model has).
pub fn record_metadata(patch: &mut ModelPatch, meta: &ExitsMetadata) {
    patch.set_metadata(METADATA_KEY, serde_json::to_string(meta).unwrap_or_default());
}

/// Writes (or replaces) the `eexc.exits` metadata.
pub fn write_metadata(model: &mut ModelProto, meta: &ExitsMetadata) -> Result<(), PatchError> {
    let mut patch = ModelPatch::new();
    record_metadata(&mut patch, meta);
    patch.apply(model)
}

/// The `eexc.exits` metadata, or why the model has none usable (also when
/// it disagrees with the graph: see [`check_metadata`]).
pub fn metadata_of(model: &ModelProto) -> Result<ExitsMetadata, String> {
    let meta = read_metadata(model)
        .ok_or_else(|| format!("not made by eexc insert-exits (no '{METADATA_KEY}' metadata)"))?
        .map_err(|e| format!("unreadable '{METADATA_KEY}' metadata: {e}"))?;
    check_metadata(&meta, model).map_err(|e| format!("'{METADATA_KEY}' metadata disagrees with the graph: {e}"))?;
    Ok(meta)
}

/// What the commands that read an emitted model rely on: exits numbered
/// 1..K, a cost table with one entry per exit, and the graph's own knobs
/// (or, in multi mode, exit logits outputs) exactly the ones listed.
fn check_metadata(meta: &ExitsMetadata, model: &ModelProto) -> Result<(), String> {
    let k = meta.exits.len();
    if k == 0 {
        return Err("no exits listed".into());
    }
    if let Some((i, e)) = meta.exits.iter().enumerate().find(|(i, e)| e.index != i + 1) {
        return Err(format!("exit {} is listed as index {}", i + 1, e.index));
    }
    let t = &meta.cost;
    for (what, len) in [
        ("stages", t.stages.len()),
        ("heads", t.heads.len()),
        ("decisions", t.decisions.len()),
    ] {
        if len != k {
            return Err(format!("{k} exits but {len} cost-table {what}"));
        }
    }
    if let Some(d) = &t.dispatch {
        for (what, len) in [
            ("stages", d.stages.len()),
            ("heads", d.heads.len()),
            ("decisions", d.decisions.len()),
        ] {
            if len != k {
                return Err(format!("{k} exits but {len} cost-table dispatch {what}"));
            }
        }
    }
    if !t.exit_elements.is_empty() && t.exit_elements.len() != k {
        return Err(format!("{k} exits but {} exit tensor sizes", t.exit_elements.len()));
    }
    let Some(g) = model.graph.as_ref() else {
        return Err("the model has no graph".into());
    };
    let inputs: std::collections::HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
    let outputs: std::collections::HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    if meta.mode == Mode::Multi {
        if let Some(e) = meta.exits.iter().find(|e| !outputs.contains(e.logits_output.as_str())) {
            return Err(format!(
                "exit {}'s logits '{}' is not a graph output",
                e.index, e.logits_output
            ));
        }
        return Ok(());
    }
    for e in &meta.exits {
        for knob in [&e.threshold_input, &e.temperature_input] {
            if !inputs.contains(knob.as_str()) {
                return Err(format!("exit {}'s knob '{knob}' is not a graph input", e.index));
            }
        }
    }
    let in_graph = inputs
        .iter()
        .filter(|i| {
            i.strip_prefix(THRESHOLD_KNOB_PREFIX)
                .is_some_and(|k| k.parse::<usize>().is_ok())
        })
        .count();
    if in_graph != k {
        return Err(format!("{k} exits listed, {in_graph} threshold knobs in the graph"));
    }
    Ok(())
}

/// Knob inputs named in the exits metadata (none for other models): what
/// fusion must never fold unless asked to freeze them.
pub fn knob_names(model: &ModelProto) -> std::collections::HashSet<String> {
    match read_metadata(model) {
        Some(Ok(meta)) => meta
            .exits
            .iter()
            .flat_map(|e| [e.threshold_input.clone(), e.temperature_input.clone()])
            .collect(),
        _ => std::collections::HashSet::new(),
    }
}

/// Reads the `eexc.exits` metadata of an eexc-produced model.
pub fn read_metadata(model: &ModelProto) -> Option<Result<ExitsMetadata, String>> {
    let kv = model.metadata_props.iter().find(|kv| kv.key() == METADATA_KEY)?;
    Some(serde_json::from_str(kv.value()).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_and_mask_names_are_recognised_only_as_emitted() {
        let (then, other) = branch_names(12);
        assert!(is_exit_then_branch(&then));
        assert!(!is_exit_then_branch(&other));
        assert!(!is_exit_then_branch("eexc_exitx_then"));
        assert!(is_continue_mask(&continue_mask_name(3)));
        // The NonZero beside it and a user's tensor are not masks.
        assert!(!is_continue_mask("eexc_exit3_continue_at"));
        assert!(!is_continue_mask("my_continue"));
    }
}
