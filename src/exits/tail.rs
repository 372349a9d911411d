//! The model's own tail, for heads that mirror the classifier (`--head
//! mirror`, and `auto` on a token model that has one): what a transformer
//! does between its last repeated layer and the linear layer that makes its
//! logits (a final LayerNorm, the CLS token or a mean over tokens, a pooler
//! `Dense + Tanh`). An exit after layer k replays those nodes on its own
//! tensor, with its own copy of their weights (the model's values to start
//! from), and then its linear head: it sees its layer's output the way the
//! classifier sees the last layer's.

use std::collections::{HashMap, HashSet};

use crate::analysis::classifier::Classifier;
use crate::analysis::cost::GraphCost;
use crate::ir::{Graph, NodeId, TensorType, ValueId, ValueKind};
use crate::onnx::proto::{ModelProto, NodeProto, TensorProto};
use crate::transform::builder::GraphBuilder;

/// Longer tails are not a classifier's tail but part of the network.
const MAX_TAIL_NODES: usize = 48;

/// The nodes from the last layer's output to the classifier's features.
#[derive(Debug, Clone)]
pub struct ModelTail {
    /// The last repeated layer's output, which the tail reads.
    pub entry: String,
    pub entry_type: TensorType,
    /// The tail's nodes as the model has them, in dependency order.
    pub nodes: Vec<NodeProto>,
    /// The initializers they read, with their values (each exit copies them).
    pub weights: Vec<TensorProto>,
    /// What the classifier's linear layer reads: N × `features`.
    pub output: String,
    pub features: i64,
}

/// Why a model has no tail to mirror, for `--head mirror`'s error.
pub type NoTail = String;

impl ModelTail {
    /// The tail of `graph` (the model `proto` it was read from; `weights`
    /// gives the initializers' values where `proto` holds stand-ins):
    /// the classifier's logits come from a Gemm (or MatMul, and an Add of
    /// a constant bias) with a constant weight; the features it reads are
    /// computed from the last repeated layer's output, constants and graph
    /// inputs (an attention mask) alone, by at most [`MAX_TAIL_NODES`]
    /// nodes without subgraphs.
    pub fn find(
        graph: &Graph,
        proto: &ModelProto,
        cost: &GraphCost,
        classifier: &Classifier,
        weights: &dyn Fn(&str) -> Option<TensorProto>,
    ) -> Result<ModelTail, NoTail> {
        let run = super::repeat::find_repeated_run(graph, cost)
            .ok_or("the model has no run of two or more identical layers, so no last layer to start a tail from")?;
        let entry = run
            .layers
            .last()
            .map(|l| l.output)
            .ok_or("the repeated run has no layers")?;
        let features = classifier_features(graph, classifier.logits)?;
        let name = |v: ValueId| graph.value(v).name.clone();
        let features_type = graph.value(features).ty.clone();
        let width = match features_type.as_ref().and_then(|t| t.shape.as_deref()) {
            Some([_, d]) => d.known().filter(|&d| d > 0),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "the classifier reads '{}', which is not N × known features",
                name(features)
            )
        })?;
        let nodes = slice(graph, features, entry)?;
        let main = proto.graph.as_ref().ok_or("the model has no graph")?;
        let mut read: HashSet<ValueId> = HashSet::new();
        for &n in &nodes {
            read.extend(graph.node(n).inputs.iter().flatten().copied());
        }
        let mut tail_weights = Vec::new();
        let mut initializers: Vec<ValueId> = read
            .into_iter()
            .filter(|&v| matches!(graph.value(v).kind, ValueKind::Initializer { .. }))
            .collect();
        initializers.sort_by_key(|v| v.0);
        for v in initializers {
            let n = name(v);
            tail_weights.push(weights(&n).ok_or_else(|| format!("the tail's weight '{n}' has no value"))?);
        }
        Ok(ModelTail {
            entry: name(entry),
            entry_type: graph
                .value(entry)
                .ty
                .clone()
                .ok_or("the last layer's output has no known type")?,
            nodes: nodes.iter().map(|n| main.node[n.0].clone()).collect(),
            weights: tail_weights,
            output: name(features),
            features: width,
        })
    }

    /// Whether an exit at a tensor of type `ty` can replay the tail: the same
    /// element type and shape as the last layer's output.
    pub fn fits(&self, ty: &TensorType) -> bool {
        *ty == self.entry_type
    }

    /// Replays the tail on `input` (an exit's tensor) with fresh names and
    /// copies of its weights; returns the features tensor (N × features).
    pub fn replay(&self, b: &mut GraphBuilder, base: &str, input: &str) -> String {
        let mut renamed: HashMap<String, String> = HashMap::new();
        renamed.insert(self.entry.clone(), input.to_string());
        for w in &self.weights {
            let copy = b.constant(w.clone(), &format!("{base}_tail_weight"));
            renamed.insert(w.name().to_string(), copy);
        }
        for original in &self.nodes {
            let mut node = original.clone();
            node.set_name(b.fresh(&format!("{base}_tail_{}", original.op_type())));
            // Graph inputs (an attention mask) keep their names: every graph
            // reads them from the main graph.
            for i in node.input.iter_mut().filter(|i| !i.is_empty()) {
                if let Some(new) = renamed.get(i.as_str()) {
                    *i = new.clone();
                }
            }
            for o in node.output.iter_mut().filter(|o| !o.is_empty()) {
                let new = b.fresh(&format!("{base}_tail"));
                renamed.insert(o.clone(), new.clone());
                *o = new;
            }
            b.add_node(node);
        }
        renamed[&self.output].clone()
    }
}

/// The tensor the classifier's linear layer reads: the logits come from
/// `Gemm(x, W[, b])`, or `MatMul(x, W)` with or without `Add(·, b)`, with
/// W (and b) constant.
fn classifier_features(graph: &Graph, logits: ValueId) -> Result<ValueId, NoTail> {
    let producer = |v: ValueId| graph.producer(v).map(|n| graph.node(n));
    let constant = |v: &Option<ValueId>| v.is_some_and(|v| graph.value(v).is_constant);
    let not_linear = || {
        format!(
            "the logits '{}' do not come from a linear layer with constant weights (Gemm, or MatMul and Add)",
            graph.value(logits).name
        )
    };
    let mut at = producer(logits).ok_or_else(not_linear)?;
    if at.op_type == "Add" && at.inputs.len() == 2 {
        let data = match (constant(&at.inputs[0]), constant(&at.inputs[1])) {
            (false, true) => at.inputs[0],
            (true, false) => at.inputs[1],
            _ => None,
        }
        .ok_or_else(not_linear)?;
        at = producer(data)
            .filter(|n| n.op_type == "MatMul")
            .ok_or_else(not_linear)?;
    }
    match at.op_type.as_str() {
        "Gemm" | "MatMul" if constant(&at.inputs.get(1).copied().flatten()) && !constant(&at.inputs[0]) => {
            at.inputs[0].ok_or_else(not_linear)
        }
        _ => Err(not_linear()),
    }
}

/// The nodes that compute `features` from `entry`, constants and graph
/// inputs, in the graph's topological order.
fn slice(graph: &Graph, features: ValueId, entry: ValueId) -> Result<Vec<NodeId>, NoTail> {
    let name = |v: ValueId| graph.value(v).name.clone();
    let mut nodes: HashSet<NodeId> = HashSet::new();
    let mut reaches_entry = false;
    let mut stack = vec![features];
    let mut seen: HashSet<ValueId> = HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        if v == entry {
            reaches_entry = true;
            continue;
        }
        let value = graph.value(v);
        match value.kind {
            ValueKind::Input | ValueKind::Initializer { .. } => continue,
            ValueKind::OuterScope => return Err(format!("the tail reads '{}' from an outer graph", value.name)),
            ValueKind::NodeOutput { node, .. } => {
                let n = graph.node(node);
                if !n.subgraphs.is_empty() {
                    return Err(format!(
                        "the tail holds '{}' ({}), which has subgraphs",
                        n.name, n.op_type
                    ));
                }
                if nodes.insert(node) && nodes.len() > MAX_TAIL_NODES {
                    return Err(format!(
                        "'{}' is more than {MAX_TAIL_NODES} nodes from the last layer's output '{}': that is not a classifier's tail",
                        name(features),
                        name(entry)
                    ));
                }
                stack.extend(n.inputs.iter().flatten().copied());
            }
        }
    }
    if !reaches_entry {
        return Err(format!(
            "the classifier's features '{}' do not read the last layer's output '{}'",
            name(features),
            name(entry)
        ));
    }
    Ok(graph.topo.iter().copied().filter(|n| nodes.contains(n)).collect())
}
