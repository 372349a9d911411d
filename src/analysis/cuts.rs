//! Exit-point candidates ("narrow cuts", DESIGN.md): tensors T such that the
//! prefix — T's producer and all its ancestors — hands exactly one
//! non-constant tensor, T itself, to the rest of the graph, besides context:
//! tensors computed from the graph inputs without any multiply-accumulate
//! and at most half T's size, such as the attention-mask bias every layer of
//! a BERT-style encoder adds, or the batch size a torch.export-based export
//! reads once with `Shape`. The rest of the graph reads those as it did.

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
    /// The context tensors that cross with it (names), if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
}

/// All narrow cuts of `graph`, in topological order. Graph outputs are not
/// candidates (nothing is left to skip after them).
pub fn narrow_cuts(graph: &Graph, cost: &GraphCost) -> Vec<NarrowCut> {
    narrow_cuts_beside(graph, cost, &context_values(graph, cost))
}

/// [`narrow_cuts`] for a caller that has [`context_values`] already.
pub fn narrow_cuts_beside(graph: &Graph, cost: &GraphCost, context: &[bool]) -> Vec<NarrowCut> {
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
            if let Some(context) = crossing_context(graph, &in_prefix, &is_output, value, context) {
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
                    context: context.iter().map(|&c| graph.value(c).name.clone()).collect(),
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

/// The non-constant values other than `cut` that the prefix hands to the
/// suffix (or to the graph outputs), when `cut` is one of them and every
/// other is context; `None` otherwise.
fn crossing_context(
    graph: &Graph,
    in_prefix: &[bool],
    is_output: &[bool],
    cut: ValueId,
    is_context: &[bool],
) -> Option<Vec<ValueId>> {
    let mut context = Vec::new();
    let mut cut_crosses = false;
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
        if !crosses {
            continue;
        }
        if id == cut {
            cut_crosses = true;
        } else if is_context[id.0] {
            context.push(id);
        } else {
            return None;
        }
    }
    cut_crosses.then_some(context)
}

/// For each value: context, i.e. computed from graph inputs and constants by
/// nodes none of which has a multiply-accumulate (a mask's Cast/Sub/Mul,
/// Shape and Gather), and not a feature: no MAC-bearing node reads it, or
/// reads what MAC-free nodes make of it. That keeps the trunk out (a graph
/// input or an embedding's output is MAC-free too, but projections read it),
/// while a mask meets the trunk in an `Add` to scores that have MACs behind
/// them, and a batch size only shapes a `Reshape`.
pub fn context_values(graph: &Graph, cost: &GraphCost) -> Vec<bool> {
    let has_macs = |n: NodeId| cost.nodes[n.0].cost.macs > 0;
    let mut without = vec![false; graph.values.len()];
    for id in graph.value_ids() {
        let v = graph.value(id);
        without[id.0] = v.is_constant || matches!(v.kind, ValueKind::Input | ValueKind::OuterScope);
    }
    for &n in &graph.topo {
        let node = graph.node(n);
        let computed_without = !has_macs(n)
            && node
                .inputs
                .iter()
                .flatten()
                .chain(&node.implicit_inputs)
                .all(|&i| without[i.0]);
        for &o in node.outputs.iter().flatten() {
            without[o.0] = without[o.0] || computed_without;
        }
    }
    let mut feature = vec![false; graph.values.len()];
    for &n in graph.topo.iter().rev() {
        let node = graph.node(n);
        let outputs_without = node.outputs.iter().flatten().all(|&o| without[o.0]);
        let carries = has_macs(n) || (outputs_without && node.outputs.iter().flatten().any(|&o| feature[o.0]));
        if !carries {
            continue;
        }
        for (slot, input) in node.inputs.iter().enumerate() {
            if let Some(v) = input
                && !shape_argument(&node.op_type, slot)
            {
                feature[v.0] = true;
            }
        }
    }
    graph
        .value_ids()
        .map(|id| without[id.0] && !graph.value(id).is_constant && !feature[id.0])
        .collect()
}

/// Input slots that carry sizes, axes or bounds rather than data: a value
/// read only there shapes the trunk without being part of it.
fn shape_argument(op: &str, slot: usize) -> bool {
    match op {
        "Shape" | "Size" | "ConstantOfShape" | "Range" => true,
        "Reshape" | "Expand" | "Tile" | "Squeeze" | "Unsqueeze" | "TopK" | "Split" | "OneHot" | "CumSum" => slot >= 1,
        "Slice" | "Pad" | "Resize" | "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceL1" | "ReduceL2" | "ReduceLogSumExp" | "ReduceSumSquare" => slot >= 1,
        _ => false,
    }
}
