//! Every exit's logits for every row, from an early-exit model: the nested
//! `If`s are unrolled into one flat graph (names are unique across a model
//! and its branches, so the branch nodes can join the main graph), in which
//! each head runs on all rows. Compact models' row compaction becomes an
//! identity; a multi-output model already is flat.

use crate::exits::contract::{is_continue_mask, is_exit_then_branch};
use crate::exits::{ExitsMetadata, Mode};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::transform::patch::ModelPatch;

/// The flat model and its outputs: exit 1..K logits, then the full model's
/// prediction.
pub fn flat_model(model: &ModelProto, meta: &ExitsMetadata) -> Result<(ModelProto, Vec<String>), String> {
    let g = model.graph.as_ref().ok_or("the model has no graph")?;
    let mut outputs: Vec<String> = meta.exits.iter().map(|e| e.logits_output.clone()).collect();
    let mut patch = ModelPatch::new();
    match meta.mode {
        Mode::Multi => {
            let first = g.output.first().ok_or("the model has no outputs")?;
            outputs.push(first.name().to_string());
        }
        Mode::If | Mode::Compact => {
            let mut nodes = Vec::new();
            let mut initializers = Vec::new();
            let mut final_prediction = None;
            unroll(&g.node, &mut nodes, &mut initializers, &mut final_prediction);
            outputs.push(final_prediction.ok_or("no eexc If found in the model")?);
            patch.main.remove_all_nodes(g.node.len());
            patch.main.append_nodes(nodes);
            patch.main.add_initializers(initializers);
            // Only what the outputs need: the `then` branches' tails go.
            patch.main.remove_unread_nodes(|_| true);
        }
        Mode::Loop => {
            return Err(format!(
                "a '{}' model cannot be calibrated directly; calibrate its 'if' form (the same exits and heads) and copy the thresholds",
                Mode::Loop.name()
            ));
        }
    }
    patch.main.set_outputs(
        outputs
            .iter()
            .map(|o| {
                let mut v = ValueInfoProto::new();
                v.set_name(o.clone());
                v
            })
            .collect(),
    );
    let mut flat = model.clone();
    patch.apply(&mut flat).map_err(|e| e.to_string())?;
    Ok((flat, outputs))
}

fn is_exit_if(n: &NodeProto) -> bool {
    n.op_type() == "If"
        && n.attribute
            .iter()
            .any(|a| a.name() == "then_branch" && a.g.as_ref().is_some_and(|g| is_exit_then_branch(g.name())))
}

fn else_branch(n: &NodeProto) -> Option<&GraphProto> {
    n.attribute
        .iter()
        .find(|a| a.name() == "else_branch")
        .and_then(|a| a.g.as_ref())
}

/// Joins the nodes of every exit's `else` branch (and the constants that live
/// there) into `out` and `initializers`.
fn unroll(
    nodes: &[NodeProto],
    out: &mut Vec<NodeProto>,
    initializers: &mut Vec<TensorProto>,
    final_prediction: &mut Option<String>,
) {
    for n in nodes {
        if is_exit_if(n)
            && let Some(else_g) = else_branch(n)
        {
            if !else_g.node.iter().any(is_exit_if) {
                // The innermost else: the rest of the network and its
                // prediction. In compact mode that output merges the last
                // exit's rows back (ScatterND); the network's own
                // prediction is what is scattered in.
                let out = else_g.output.first().map(|o| o.name().to_string());
                let merged = else_g
                    .node
                    .iter()
                    .find(|m| m.op_type() == "ScatterND" && out.as_deref() == m.output.first().map(String::as_str));
                *final_prediction = match merged {
                    Some(m) => m.input.get(2).cloned(),
                    None => out,
                };
            }
            initializers.extend(else_g.initializer.iter().cloned());
            unroll(&else_g.node, out, initializers, final_prediction);
        } else if n.op_type() == "Compress" && n.input.get(1).is_some_and(|m| is_continue_mask(m)) {
            // Compact mode keeps the unconfident rows; here every row goes on.
            let mut id = NodeProto::new();
            id.set_op_type("Identity".into());
            id.set_name(n.name().to_string());
            id.input = vec![n.input[0].clone()];
            id.output = n.output.clone();
            out.push(id);
        } else {
            out.push(n.clone());
        }
    }
}
