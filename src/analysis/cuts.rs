//! Exit-point candidates ("narrow cuts", DESIGN.md): tensors T such that the
//! prefix — T's producer and all its ancestors — hands exactly one
//! non-constant tensor, T itself, to the rest of the graph.

use serde::Serialize;

use super::cost::GraphCost;
use crate::ir::{Graph, NodeId, TensorType, ValueId, ValueKind};

#[derive(Debug, Clone, Serialize)]
pub struct NarrowCut {
    #[serde(skip)]
    pub value: ValueId,
    pub tensor: String,
    /// The node producing the tensor.
    pub node: String,
    pub op_type: String,
    pub shape: Option<TensorType>,
    /// Bytes of the tensor for one sample.
    pub bytes: Option<u64>,
    /// FLOPs of the prefix (everything needed to compute the tensor).
    pub prefix_flops: u64,
    /// `prefix_flops` as a share of the whole graph's FLOPs, 0..=1.
    pub flop_share: f64,
}

/// All narrow cuts of `graph`, in topological order. Graph outputs are not
/// candidates (nothing is left to skip after them).
pub fn narrow_cuts(graph: &Graph, cost: &GraphCost) -> Vec<NarrowCut> {
    let total_flops = cost.total.flops.max(1);
    let mut is_output = vec![false; graph.values.len()];
    for o in &graph.outputs {
        is_output[o.0] = true;
    }
    let mut in_prefix = vec![false; graph.nodes.len()];
    let mut stack = Vec::new();
    let mut cuts = Vec::new();
    for &producer in &graph.topo {
        for &value in graph.node(producer).outputs.iter().flatten() {
            let v = graph.value(value);
            if v.is_constant || v.consumers.is_empty() || is_output[value.0] {
                continue;
            }
            mark_ancestors(graph, producer, &mut in_prefix, &mut stack);
            if only_crossing_value(graph, &in_prefix, &is_output) == Some(value) {
                let prefix_flops = (0..graph.nodes.len())
                    .filter(|&i| in_prefix[i])
                    .fold(0u64, |acc, i| acc.saturating_add(cost.nodes[i].cost.flops));
                let node = graph.node(producer);
                cuts.push(NarrowCut {
                    value,
                    tensor: v.name.clone(),
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    shape: v.ty.clone(),
                    bytes: v.ty.as_ref().and_then(|t| cost.dims.bytes(t)),
                    prefix_flops,
                    flop_share: prefix_flops as f64 / total_flops as f64,
                });
            }
        }
    }
    cuts
}

/// Sets `in_prefix[n]` for `start` and every node it depends on.
fn mark_ancestors(graph: &Graph, start: NodeId, in_prefix: &mut [bool], stack: &mut Vec<NodeId>) {
    in_prefix.iter_mut().for_each(|b| *b = false);
    stack.clear();
    stack.push(start);
    in_prefix[start.0] = true;
    while let Some(n) = stack.pop() {
        for p in graph
            .deps
            .neighbors_directed(petgraph::graph::NodeIndex::new(n.0), petgraph::Direction::Incoming)
        {
            if !in_prefix[p.index()] {
                in_prefix[p.index()] = true;
                stack.push(NodeId(p.index()));
            }
        }
    }
}

/// The single non-constant value that the prefix hands to the suffix (or to
/// the graph outputs); `None` if there are zero or several.
fn only_crossing_value(graph: &Graph, in_prefix: &[bool], is_output: &[bool]) -> Option<ValueId> {
    let mut found = None;
    for id in graph.value_ids() {
        let v = graph.value(id);
        if v.is_constant {
            continue;
        }
        let produced_in_prefix = match v.kind {
            ValueKind::NodeOutput { node, .. } => in_prefix[node.0],
            // Inputs and captures belong to the prefix once the prefix uses them.
            ValueKind::Input | ValueKind::OuterScope => v.consumers.iter().any(|c| in_prefix[c.0]),
            ValueKind::Initializer { .. } => false,
        };
        if !produced_in_prefix {
            continue;
        }
        let crosses = v.consumers.iter().any(|c| !in_prefix[c.0]) || is_output[id.0];
        if crosses {
            if found.is_some() {
                return None;
            }
            found = Some(id);
        }
    }
    found
}
