//! Graph rewrites. New nodes, constants and names are created by
//! [`builder::GraphBuilder`] (opset differences are handled by its op
//! helpers, passes only say what to wire where); every change to a graph is
//! recorded in a [`patch::ModelPatch`] (or, for one nested graph, a
//! [`patch::GraphPatch`]) and applied once, which keeps the invariants in
//! one place, [`placement`] (each constant in the graph that reads it)
//! among them.

pub mod builder;
pub mod patch;
pub mod placement;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use self::patch::{GraphPatch, ModelPatch, PatchError};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};

/// Replaces every node, in the model's graphs, whose outputs all have
/// contents in `known` by a `Constant` per output: the sizes an exporter's
/// Shape → Gather → Unsqueeze → Concat chain computes, where shape inference
/// proved them numbers for every input. ONNX Runtime folds such chains only
/// where every dimension is static, so with a symbolic batch it runs them on
/// each call. Then what computed only such values (`computed`: the model's
/// constants and folded values) and nothing reads any more goes, innermost
/// graphs first.
pub fn fold_known_values(
    model: &mut ModelProto,
    known: &HashMap<String, TensorProto>,
    computed: HashSet<String>,
) -> Result<(), PatchError> {
    let computed = Rc::new(computed);
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let mut patch = ModelPatch::new();
    patch.main = fold_level(graph, known, &computed, &HashSet::new())?;
    patch.apply(model)
}

/// The patch that folds `graph`'s own nodes, after folding (and applying)
/// its nested graphs; `outer`: what enclosing scopes define.
fn fold_level(
    graph: &mut GraphProto,
    known: &HashMap<String, TensorProto>,
    computed: &Rc<HashSet<String>>,
    outer: &HashSet<String>,
) -> Result<GraphPatch, PatchError> {
    let all_known = |n: &NodeProto| {
        let mut outputs = n.output.iter().filter(|o| !o.is_empty()).peekable();
        outputs.peek().is_some() && outputs.all(|o| known.contains_key(o.as_str()))
    };
    let replaced: Vec<bool> = graph.node.iter().map(all_known).collect();
    let mut patch = GraphPatch::new();
    for (i, node) in graph.node.iter().enumerate().filter(|(i, _)| replaced[*i]) {
        patch.remove_node(i);
        let constants: Vec<NodeProto> = node
            .output
            .iter()
            .filter(|o| !o.is_empty())
            .map(|o| {
                let mut c = NodeProto::new();
                c.set_op_type("Constant".into());
                c.set_name(format!("{}_known", node.name()));
                c.output = vec![o.clone()];
                let mut value = known[o.as_str()].clone();
                value.clear_name();
                c.attribute = vec![builder::attr_tensor("value", value)];
                c
            })
            .collect();
        patch.insert_before(i, constants);
    }
    let has_subgraphs = |n: &NodeProto| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
    if graph.node.iter().any(has_subgraphs) {
        let mut scope: HashSet<String> = outer.clone();
        scope.extend(graph.input.iter().map(|i| i.name().to_string()));
        scope.extend(graph.initializer.iter().map(|t| t.name().to_string()));
        scope.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
        for (i, node) in graph.node.iter_mut().enumerate() {
            if replaced[i] {
                continue;
            }
            for a in &mut node.attribute {
                for g in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                    fold_level(g, known, computed, &scope)?.apply(g, &scope)?;
                }
            }
        }
    }
    let computed = Rc::clone(computed);
    patch.remove_unread_nodes(move |n| n.output.iter().all(|o| computed.contains(o.as_str())));
    Ok(patch)
}
