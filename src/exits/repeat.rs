//! Runs of structurally identical layers (`--mode loop`): the graph is cut
//! at its narrow cuts into segments; each segment reads only the cut before
//! it, its own values and constants, so two segments compute the same
//! function (up to weights) when their node sequences match op for op,
//! attribute for attribute and wire for wire, with constants of the same
//! type and shape. A layer is one or more consecutive segments; the run is
//! the longest stretch of segments that repeats one layer at least twice.
//! Context (an attention mask's bias, a batch size; see
//! [`crate::analysis::cuts`]) is not part of any layer: every layer reads
//! the same value, which the loop body reads from the main graph.

use std::collections::HashMap;

use protobuf::Message;

use super::plan::split_at;
use crate::analysis::cost::GraphCost;
use crate::analysis::cuts::{context_values, narrow_cuts_beside};
use crate::ir::{Graph, NodeId, ValueId};

/// One repeated layer: its nodes (topological order, context excluded) and
/// the tensor it hands on.
#[derive(Debug, Clone)]
pub struct Layer {
    pub nodes: Vec<NodeId>,
    /// `nodes` without shape arithmetic: the i-th of every layer does the
    /// same thing, reading the same kind of constants.
    pub compared: Vec<NodeId>,
    pub output: ValueId,
}

#[derive(Debug, Clone)]
pub struct RepeatedRun {
    /// The tensor entering the first layer.
    pub entry: ValueId,
    pub layers: Vec<Layer>,
    /// Narrow-cut segments per layer.
    pub segments_per_layer: usize,
}

/// The longest run of at least two identical layers, if there is one.
/// Among runs covering as many segments, the one with the shortest layer,
/// then the one starting last (so a layer starts where its weights start,
/// not at the bias or activation that ends the layer before it).
pub fn find_repeated_run(graph: &Graph, cost: &GraphCost) -> Option<RepeatedRun> {
    let context = context_values(graph, cost);
    // The one graph input the trunk starts from is a cut too: an encoder
    // whose first layer reads the input itself repeats from that layer on.
    let trunk_inputs: Vec<ValueId> = graph
        .inputs
        .iter()
        .copied()
        .filter(|&v| !graph.value(v).is_constant && !context[v.0])
        .collect();
    let mut cuts: Vec<ValueId> = match trunk_inputs[..] {
        [input] => vec![input],
        _ => Vec::new(),
    };
    // A cut that is itself context (the mask's own chain) is a side
    // branch, not a place on the trunk where a layer starts.
    cuts.extend(
        narrow_cuts_beside(graph, cost, &context)
            .iter()
            .map(|c| c.value)
            .filter(|v| !context[v.0]),
    );
    if cuts.len() < 3 {
        return None;
    }
    let (mut segments, _) = split_at(graph, &cuts);
    for segment in &mut segments {
        // Context computed before the loop: nodes that make context from
        // what exists outside the segment (a Shape of a value the layer
        // computes stays in the layer).
        let mut kept: std::collections::HashSet<ValueId> = std::collections::HashSet::new();
        segment.retain(|&n| {
            let node = graph.node(n);
            let hoisted = node.outputs.iter().flatten().next().is_some()
                && node.outputs.iter().flatten().all(|o| context[o.0])
                && !node.inputs.iter().flatten().any(|i| kept.contains(i));
            if !hoisted {
                kept.extend(node.outputs.iter().flatten());
            }
            !hoisted
        });
    }
    // Segment j (1-based) lies between cuts[j-1] and cuts[j]; the part after
    // the last cut is not a candidate (it ends in the graph outputs).
    let mut ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let sig: Vec<Option<usize>> = (1..cuts.len())
        .map(|j| {
            let s = signature(graph, &segments[j], cuts[j - 1], &context)?;
            let next = ids.len();
            Some(*ids.entry(s).or_insert(next))
        })
        .collect();
    let macs: Vec<u64> = (1..cuts.len())
        .map(|j| segments[j].iter().map(|n| cost.nodes[n.0].cost.macs).sum())
        .collect();
    let n = sig.len();
    // (covered segments, -period, start) — larger is better.
    let mut best: Option<(usize, i64, usize, usize)> = None;
    for period in 1..=n / 2 {
        for start in 0..n.saturating_sub(2 * period - 1) {
            let unit = &sig[start..start + period];
            if unit.iter().any(Option::is_none) || macs[start..start + period].iter().sum::<u64>() == 0 {
                continue;
            }
            let mut repeats = 1;
            while start + (repeats + 1) * period <= n
                && sig[start + repeats * period..start + (repeats + 1) * period] == *unit
            {
                repeats += 1;
            }
            if repeats < 2 {
                continue;
            }
            let key = (repeats * period, -(period as i64), start, repeats);
            if best.is_none_or(|b| (key.0, key.1, key.2) > (b.0, b.1, b.2)) {
                best = Some(key);
            }
        }
    }
    let (_, neg_period, start, repeats) = best?;
    let period = (-neg_period) as usize;
    // sig index i is segment i+1, which ends at cuts[i+1] and starts after cuts[i].
    let layers = (0..repeats)
        .map(|r| {
            let first = start + r * period + 1;
            let mut nodes: Vec<NodeId> = (first..first + period).flat_map(|j| segments[j].clone()).collect();
            let order: HashMap<NodeId, usize> = graph.topo.iter().enumerate().map(|(i, &n)| (n, i)).collect();
            nodes.sort_by_key(|n| order[n]);
            let compared = nodes
                .iter()
                .copied()
                .filter(|&n| !is_shape_arithmetic(graph, n))
                .collect();
            Layer {
                nodes,
                compared,
                output: cuts[first + period - 1],
            }
        })
        .collect();
    Some(RepeatedRun {
        entry: cuts[start],
        layers,
        segments_per_layer: period,
    })
}

/// A byte string equal for two segments exactly when they are the same
/// computation up to constant values, reading the same context; `None` for
/// a segment that cannot be looped (it reads a non-constant tensor other
/// than its entry and context, or holds a subgraph).
fn signature(graph: &Graph, nodes: &[NodeId], entry: ValueId, context: &[bool]) -> Option<Vec<u8>> {
    let mut local: HashMap<ValueId, (usize, usize)> = HashMap::new();
    let mut out = Vec::new();
    // Position among the nodes compared (shape arithmetic is skipped).
    let mut i = 0;
    for &id in nodes {
        let node = graph.node(id);
        // Shape arithmetic compares by what it computes: layer 1 reads the
        // input's Shape where layer 2 reads its own entry's, same contents.
        if is_shape_arithmetic(graph, id) {
            continue;
        }
        if !node.subgraphs.is_empty() || !node.implicit_inputs.is_empty() {
            return None;
        }
        out.extend_from_slice(format!("|{}:{}:{}(", node.domain, node.op_type, node.outputs.len()).as_bytes());
        for input in &node.inputs {
            let token = match input {
                None => "_".to_string(),
                Some(v) if *v == entry => "E".to_string(),
                Some(v) => match local.get(v) {
                    Some((n, o)) => format!("L{n}.{o}"),
                    None => match known_contents(graph, *v) {
                        // The same contents (a reshape target each layer
                        // computes again), or the same context value.
                        Some(contents) => format!("X{contents}"),
                        None if context[v.0] => format!("X{}", v.0),
                        None => {
                            let value = graph.value(*v);
                            if !value.is_constant {
                                return None;
                            }
                            format!("C{}", value.ty.as_ref().map_or_else(String::new, |t| t.to_string()))
                        }
                    },
                },
            };
            out.extend_from_slice(token.as_bytes());
            out.push(b',');
        }
        out.push(b')');
        for a in &node.attributes {
            let mut a = a.clone();
            a.clear_doc_string();
            out.extend(a.write_to_bytes().ok()?);
        }
        for (o, v) in node.outputs.iter().enumerate() {
            if let Some(v) = v {
                local.insert(*v, (i, o));
            }
        }
        i += 1;
    }
    Some(out)
}

/// A node all of whose outputs shape inference folded (a `Shape`, the
/// `Gather`/`Concat` of sizes after it): compared by its results' contents.
fn is_shape_arithmetic(graph: &Graph, n: NodeId) -> bool {
    let outputs = &graph.node(n).outputs;
    outputs.iter().flatten().next().is_some() && outputs.iter().flatten().all(|&o| known_contents(graph, o).is_some())
}

/// What a non-constant value holds when shape inference folded all of it
/// (sizes, symbols included), as text that is equal exactly for equal
/// contents; `None` for constants (compared by type, their values may be
/// stacked) and for values not fully known.
fn known_contents(graph: &Graph, v: ValueId) -> Option<String> {
    let value = graph.value(v);
    if value.is_constant {
        return None;
    }
    let folded = value.folded.as_ref()?;
    if let crate::ir::Folded::Ints(dims) = folded
        && dims.iter().any(|d| matches!(d, crate::ir::Dim::Unknown))
    {
        return None;
    }
    Some(format!(
        "{}{folded:?}",
        value.ty.as_ref().map_or_else(String::new, |t| t.to_string())
    ))
}
