//! Graph rewrites. New nodes, constants and names are created by
//! [`builder::GraphBuilder`] (opset differences are handled by its op
//! helpers, passes only say what to wire where); [`placement`] then puts
//! every constant in the graph that reads it, as the last step of every
//! command that writes a model.

pub mod builder;
pub mod placement;

use std::collections::HashSet;

use crate::onnx::proto::{GraphProto, NodeProto};

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
