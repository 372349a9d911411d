//! Graph rewrites. New nodes, constants and names are created by
//! [`builder::GraphBuilder`] (opset differences are handled by its op
//! helpers, passes only say what to wire where); [`placement`] then puts
//! every constant in the graph that reads it, as the last step of every
//! command that writes a model.

pub mod builder;
pub mod placement;

use std::collections::{HashMap, HashSet};

use crate::onnx::proto::{GraphProto, NodeProto, TensorProto};

/// Removes the initializers of `graph` (and their graph-input entries) that
/// nothing reads — no node, no subgraph, no graph output — and that
/// `may_drop` allows (fusion offers only what its regions stopped reading;
/// loop mode, every layer weight the stacked tensors replaced).
pub fn drop_unread_initializers(graph: &mut GraphProto, may_drop: impl Fn(&str) -> bool) {
    let mut read: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for n in &graph.node {
        crate::onnx::names_read(n, &mut read);
    }
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| may_drop(n) && !read.contains(n))
        .collect();
    graph.initializer.retain(|t| !dropped.contains(t.name()));
    graph.input.retain(|i| !dropped.contains(i.name()));
}

/// Removes the nodes of `graph` that `may_drop` allows and whose outputs
/// nothing reads (no node, subgraph or graph output), until none is left:
/// loop mode drops the load-time computations (an exporter's `Identity` or
/// `Reshape` of a layer weight) that the stacked tensors replaced.
pub fn drop_unread_nodes(graph: &mut GraphProto, may_drop: impl Fn(&NodeProto) -> bool) {
    loop {
        let mut read: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
        for n in &graph.node {
            crate::onnx::names_read(n, &mut read);
        }
        let before = graph.node.len();
        graph
            .node
            .retain(|n| !may_drop(n) || n.output.iter().any(|o| !o.is_empty() && read.contains(o)));
        if graph.node.len() == before {
            return;
        }
    }
}

/// [`drop_unread_nodes`] in every graph nested in `graph` (innermost
/// first), then in `graph` itself.
pub fn drop_unread_nodes_everywhere(graph: &mut GraphProto, may_drop: &impl Fn(&NodeProto) -> bool) {
    for node in &mut graph.node {
        for a in &mut node.attribute {
            for g in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                drop_unread_nodes_everywhere(g, may_drop);
            }
        }
    }
    drop_unread_nodes(graph, may_drop);
}

/// Replaces every node, in `graph` and the graphs nested in it, whose
/// outputs all have contents in `known` by a `Constant` per output: the
/// sizes an exporter's Shape → Gather → Unsqueeze → Concat chain computes,
/// where shape inference proved them numbers for every input. ONNX Runtime
/// folds such chains only where every dimension is static, so with a
/// symbolic batch it runs them on each call.
pub fn replace_known_values(graph: &mut GraphProto, known: &HashMap<String, TensorProto>) {
    let mut nodes = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        let outputs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        if !outputs.is_empty() && outputs.iter().all(|o| known.contains_key(o.as_str())) {
            for o in outputs {
                let mut c = NodeProto::new();
                c.set_op_type("Constant".into());
                c.set_name(format!("{}_known", node.name()));
                c.output = vec![o.clone()];
                let mut value = known[o.as_str()].clone();
                value.clear_name();
                c.attribute = vec![builder::attr_tensor("value", value)];
                nodes.push(c);
            }
            continue;
        }
        for a in &mut node.attribute {
            for g in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                replace_known_values(g, known);
            }
        }
        nodes.push(node);
    }
    graph.node = nodes;
}
