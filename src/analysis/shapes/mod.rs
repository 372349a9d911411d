//! Shape and type inference with constant folding of shape arithmetic.
//!
//! The driver walks each graph in topological order and asks the rule for the
//! node's op (in [`ops`]) for its output types, given input types and any
//! folded input contents. Subgraph ops (If/Loop/Scan) are handled here, since
//! they need the bodies inferred first. Types the model declares are checked
//! against what we infer and disagreements reported, never silently dropped.

mod ops;

use std::collections::{BTreeMap, BTreeSet};

use crate::ir::{Dim, Folded, Graph, Model, Node, NodeId, TensorType, ValueId};

pub use ops::infer_op;

/// What a rule may read about one node.
pub struct OpContext<'a> {
    pub node: &'a Node,
    /// Opset of the node's domain (the default ONNX domain for standard ops).
    pub opset: i64,
    /// Input types; `None` for an omitted optional input or an unknown type.
    pub inputs: Vec<Option<&'a TensorType>>,
    /// Input contents, where known at compile time.
    pub folded: Vec<Option<&'a Folded>>,
    /// Input value names, for the symbols a data-dependent size is named by.
    pub names: Vec<Option<&'a str>>,
}

impl<'a> OpContext<'a> {
    pub fn input(&self, i: usize) -> Option<&'a TensorType> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn input_shape(&self, i: usize) -> Option<&'a [Dim]> {
        self.input(i).and_then(|t| t.shape.as_deref())
    }

    pub fn folded(&self, i: usize) -> Option<&'a Folded> {
        self.folded.get(i).copied().flatten()
    }

    /// Concrete integer contents of input `i` (e.g. a Reshape target).
    pub fn known_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.folded(i).and_then(Folded::known_ints)
    }

    pub fn input_name(&self, i: usize) -> Option<&'a str> {
        self.names.get(i).copied().flatten()
    }

    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(Option::is_some)
    }
}

/// One output of a rule: its type (if it could be worked out) and contents
/// (if they fold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inferred {
    pub ty: Option<TensorType>,
    pub folded: Option<Folded>,
}

impl Inferred {
    pub fn of(ty: TensorType) -> Self {
        Inferred {
            ty: Some(ty),
            folded: None,
        }
    }
}

/// Why a rule gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// No rule for this op (or this op's domain).
    Unsupported,
    /// An input type the rule needs is unknown: not an error in the model.
    NeedsInput,
    /// The inputs contradict the op's definition.
    Invalid(String),
}

/// A declared type that disagrees with the inferred one.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub graph: String,
    pub value: String,
    pub declared: TensorType,
    pub inferred: TensorType,
}

/// Summary of an inference run.
#[derive(Debug, Clone, Default)]
pub struct ShapeReport {
    /// Op types with no inference rule, as `domain::Op` for custom domains.
    pub unsupported_ops: BTreeSet<String>,
    /// Nodes whose inputs contradict the op definition: "node: reason".
    pub invalid: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// Values left without a shape after inference.
    pub values_without_shape: usize,
    /// Symbols the model's declared types give a number for (a declared
    /// `64` where inference has `seq`): the default value of each symbol,
    /// the first declaration in graph order winning.
    pub declared_dims: BTreeMap<String, i64>,
}

/// Infers types for every value of the model, subgraphs included.
pub fn infer_model(model: &mut Model) -> ShapeReport {
    let mut report = ShapeReport::default();
    let opsets = model.opsets.clone();
    infer_graph(&mut model.graph, &opsets, &mut report);
    report
}

fn infer_graph(graph: &mut Graph, opsets: &std::collections::BTreeMap<String, i64>, report: &mut ShapeReport) {
    for i in 0..graph.topo.len() {
        let id = graph.topo[i];
        let results = infer_node(graph, id, opsets, report);
        let node = graph.node(id).clone();
        for (k, out) in node.outputs.iter().enumerate() {
            let Some(out) = *out else { continue };
            let inferred = results.get(k).cloned().unwrap_or_default();
            apply(graph, out, inferred, report);
        }
    }
    report.values_without_shape += graph
        .values
        .iter()
        .filter(|v| v.ty.as_ref().and_then(|t| t.rank()).is_none())
        .count();
}

/// Stores an inferred result, reconciling it with the declared type.
fn apply(graph: &mut Graph, id: ValueId, inferred: Inferred, report: &mut ShapeReport) {
    let graph_name = graph.name.clone();
    let v = graph.value_mut(id);
    v.folded = inferred.folded;
    v.ty = match (inferred.ty, v.declared.clone()) {
        (Some(inf), Some(decl)) => {
            if contradicts(&inf, &decl) {
                report.mismatches.push(Mismatch {
                    graph: graph_name,
                    value: v.name.clone(),
                    declared: decl,
                    inferred: inf.clone(),
                });
                Some(inf)
            } else {
                note_declared_dims(&inf, &decl, &mut report.declared_dims);
                Some(refine(inf, &decl))
            }
        }
        (Some(inf), None) => Some(inf),
        // No rule, or unknown inputs: fall back on what the model says.
        (None, decl) => decl,
    };
}

/// Two types contradict when element types differ, ranks differ, or two
/// concrete dimensions differ. Symbolic versus concrete is not a contradiction.
fn contradicts(a: &TensorType, b: &TensorType) -> bool {
    if a.elem != b.elem && a.elem.0 != 0 && b.elem.0 != 0 {
        return true;
    }
    match (&a.shape, &b.shape) {
        (Some(x), Some(y)) => {
            x.len() != y.len()
                || x.iter()
                    .zip(y)
                    .any(|(p, q)| matches!((p, q), (Dim::Known(m), Dim::Known(n)) if m != n))
        }
        _ => false,
    }
}

/// Where inference has a lone symbol and the declaration a number, the
/// number is what the model says the symbol is.
fn note_declared_dims(inferred: &TensorType, declared: &TensorType, out: &mut BTreeMap<String, i64>) {
    if let (Some(x), Some(y)) = (&inferred.shape, &declared.shape) {
        for (p, q) in x.iter().zip(y) {
            if let (Dim::Sym(s), Dim::Known(n)) = (p, q) {
                out.entry(s.clone()).or_insert(*n);
            }
        }
    }
}

/// Fills dimensions inference left unknown from the declaration.
fn refine(mut inferred: TensorType, declared: &TensorType) -> TensorType {
    match (&mut inferred.shape, &declared.shape) {
        (Some(x), Some(y)) => {
            for (p, q) in x.iter_mut().zip(y) {
                if *p == Dim::Unknown {
                    *p = q.clone();
                }
            }
        }
        (None, Some(y)) => inferred.shape = Some(y.clone()),
        _ => {}
    }
    inferred
}

fn infer_node(
    graph: &mut Graph,
    id: NodeId,
    opsets: &std::collections::BTreeMap<String, i64>,
    report: &mut ShapeReport,
) -> Vec<Inferred> {
    let node = graph.node(id);
    let domain = if node.domain == "ai.onnx" {
        ""
    } else {
        node.domain.as_str()
    };
    let opset = opsets.get(domain).copied().unwrap_or(1);
    if !node.subgraphs.is_empty() {
        return infer_control_flow(graph, id, opsets, report);
    }
    let ctx = OpContext {
        node,
        opset,
        inputs: node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| graph.value(v).ty.as_ref()))
            .collect(),
        folded: node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| graph.value(v).folded.as_ref()))
            .collect(),
        names: node
            .inputs
            .iter()
            .map(|i| i.map(|v| graph.value(v).name.as_str()))
            .collect(),
    };
    match infer_op(&ctx) {
        Ok(outs) => outs,
        Err(RuleError::Unsupported) => {
            let name = if domain.is_empty() {
                node.op_type.clone()
            } else {
                format!("{domain}::{}", node.op_type)
            };
            report.unsupported_ops.insert(name);
            Vec::new()
        }
        Err(RuleError::NeedsInput) => Vec::new(),
        Err(RuleError::Invalid(reason)) => {
            report.invalid.push(format!(
                "graph '{}': node {}: {reason}",
                graph.name,
                graph.node_label(id)
            ));
            Vec::new()
        }
    }
}

/// If/Loop/Scan: infer the bodies with captured types copied in, then derive
/// the node's outputs from the body outputs.
fn infer_control_flow(
    graph: &mut Graph,
    id: NodeId,
    opsets: &std::collections::BTreeMap<String, i64>,
    report: &mut ShapeReport,
) -> Vec<Inferred> {
    let mut node = graph.node(id).clone();
    for sub in &mut node.subgraphs {
        for &c in &sub.graph.captures.clone() {
            let name = sub.graph.value(c).name.clone();
            if let Some(outer) = graph.value_id(&name) {
                let (ty, folded) = (graph.value(outer).ty.clone(), graph.value(outer).folded.clone());
                let v = sub.graph.value_mut(c);
                v.ty = ty;
                v.folded = folded;
            }
        }
        infer_graph(&mut sub.graph, opsets, report);
    }
    let body_outputs =
        |g: &Graph| -> Vec<Option<TensorType>> { g.outputs.iter().map(|&o| g.value(o).ty.clone()).collect() };
    let outs: Vec<Inferred> = match node.op_type.as_str() {
        "If" => {
            let then_b = node
                .subgraphs
                .iter()
                .find(|s| s.attribute == "then_branch")
                .map(|s| body_outputs(&s.graph));
            let else_b = node
                .subgraphs
                .iter()
                .find(|s| s.attribute == "else_branch")
                .map(|s| body_outputs(&s.graph));
            match (then_b, else_b) {
                (Some(t), Some(e)) => t
                    .into_iter()
                    .zip(e)
                    .map(|(a, b)| Inferred {
                        ty: merge_branch_types(a, b),
                        folded: None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        }
        "Loop" => {
            // Body outputs: cond, N carried values, K scan outputs. Node
            // outputs: N final carried values, K scan outputs stacked on a new
            // leading (iteration-count) axis.
            let carried = node.inputs.len().saturating_sub(2);
            match node.subgraphs.iter().find(|s| s.attribute == "body") {
                Some(s) => body_outputs(&s.graph)
                    .into_iter()
                    .skip(1)
                    .enumerate()
                    .map(|(k, t)| Inferred {
                        ty: if k < carried {
                            t
                        } else {
                            t.map(|t| TensorType {
                                elem: t.elem,
                                shape: t.shape.map(|s| std::iter::once(Dim::Unknown).chain(s).collect()),
                            })
                        },
                        folded: None,
                    })
                    .collect(),
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    // Keep the inferred bodies for later passes.
    graph.nodes[id.0].subgraphs = node.subgraphs;
    outs
}

/// Type of an If output: equal branch types pass through; differing
/// dimensions become unknown.
fn merge_branch_types(a: Option<TensorType>, b: Option<TensorType>) -> Option<TensorType> {
    match (a, b) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(a), Some(b)) if a.elem == b.elem => {
            let shape = match (a.shape, b.shape) {
                (Some(x), Some(y)) if x.len() == y.len() => Some(
                    x.into_iter()
                        .zip(y)
                        .map(|(p, q)| if p == q { p } else { Dim::Unknown })
                        .collect(),
                ),
                _ => None,
            };
            Some(TensorType { elem: a.elem, shape })
        }
        (Some(a), None) | (None, Some(a)) => Some(a),
        _ => None,
    }
}
