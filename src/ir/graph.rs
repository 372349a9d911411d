//! The graph IR: nodes and values in arenas, data dependencies in a petgraph
//! `DiGraph`, a deterministic topological order, and subgraphs (If/Loop/Scan
//! bodies) with their outer-scope captures resolved.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use petgraph::graph::{DiGraph, NodeIndex};

use super::constant::{self, Folded};
use super::types::TensorType;
use crate::onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, attribute_proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// A malformed graph, named by graph and node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrError {
    #[error("graph '{graph}': node {node}: output '{value}' is already produced by {previous}")]
    ProducedTwice {
        graph: String,
        node: String,
        value: String,
        previous: String,
    },
    #[error("graph '{graph}': node {node}: input '{value}' is never defined")]
    UndefinedInput { graph: String, node: String, value: String },
    #[error("graph '{graph}': node {node} is part of a cycle")]
    Cycle { graph: String, node: String },
    #[error("graph '{graph}': node {node}: subgraph '{subgraph}' uses '{value}', which no enclosing graph defines")]
    MissingSubgraphValue {
        graph: String,
        node: String,
        subgraph: String,
        value: String,
    },
    #[error("graph '{graph}': output '{value}' is never defined")]
    UndefinedOutput { graph: String, value: String },
    #[error("model has no graph")]
    NoGraph,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A graph input the caller must feed.
    Input,
    /// Stored tensor; `overridable` when it is also listed as a graph input
    /// (IR < 4 style, or a knob such as an exit threshold).
    Initializer {
        overridable: bool,
    },
    NodeOutput {
        node: NodeId,
        index: usize,
    },
    /// Defined by an enclosing graph and used here (subgraphs only).
    OuterScope,
}

#[derive(Debug, Clone)]
pub struct Value {
    pub name: String,
    pub kind: ValueKind,
    /// Inferred (or, for inputs and initializers, stated) type.
    pub ty: Option<TensorType>,
    /// Type the model itself declares in `value_info`/outputs, for checking.
    pub declared: Option<TensorType>,
    /// Contents known at compile time (small tensors only).
    pub folded: Option<Folded>,
    /// Computable without any graph input (initializers, Constant,
    /// ConstantOfShape, and anything computed only from those).
    pub is_constant: bool,
    pub consumers: Vec<NodeId>,
}

#[derive(Debug, Clone)]
pub struct Subgraph {
    /// The attribute that holds it (`then_branch`, `body`, ...).
    pub attribute: String,
    pub graph: Graph,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attributes: Vec<AttributeProto>,
    pub subgraphs: Vec<Subgraph>,
    /// Values of this graph that the node's subgraphs read from outer scope.
    pub implicit_inputs: Vec<ValueId>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attributes.iter().find(|a| a.name() == name)
    }

    pub fn attr_int(&self, name: &str) -> Option<i64> {
        self.attr(name)
            .filter(|a| a.type_() == attribute_proto::AttributeType::INT)
            .map(|a| a.i())
    }

    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name)
            .filter(|a| a.type_() == attribute_proto::AttributeType::INTS)
            .map(|a| a.ints.as_slice())
    }

    pub fn attr_float(&self, name: &str) -> Option<f32> {
        self.attr(name)
            .filter(|a| a.type_() == attribute_proto::AttributeType::FLOAT)
            .map(|a| a.f())
    }

    pub fn attr_string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .filter(|a| a.type_() == attribute_proto::AttributeType::STRING)
            .map(|a| String::from_utf8_lossy(a.s()).into_owned())
    }

    /// True for the default ONNX domain, however it is spelled.
    pub fn is_onnx_domain(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }
}

/// Human label for errors: the node's name, or its position and op type.
fn node_label(index: usize, proto: &NodeProto) -> String {
    if proto.name().is_empty() {
        format!("#{index} ({})", proto.op_type())
    } else {
        format!("'{}' ({})", proto.name(), proto.op_type())
    }
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub values: Vec<Value>,
    /// Graph inputs a caller feeds (initializer-backed inputs excluded).
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Outer-scope values used by this graph or its subgraphs.
    pub captures: Vec<ValueId>,
    /// Node-to-node data dependencies; petgraph node `i` is `NodeId(i)`.
    pub deps: DiGraph<NodeId, ValueId>,
    /// Nodes in topological order, ties broken by file order (deterministic).
    pub topo: Vec<NodeId>,
    by_name: HashMap<String, ValueId>,
}

/// Names visible from enclosing graphs while a subgraph is built.
struct Scope<'a> {
    names: &'a HashMap<String, ValueId>,
    parent: Option<&'a Scope<'a>>,
}

impl Scope<'_> {
    fn defines(&self, name: &str) -> bool {
        self.names.contains_key(name) || self.parent.is_some_and(|p| p.defines(name))
    }
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.0]
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn value_id(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len()).map(ValueId)
    }

    /// The node that produces `id`, if any.
    pub fn producer(&self, id: ValueId) -> Option<NodeId> {
        match self.values[id.0].kind {
            ValueKind::NodeOutput { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Label used in messages: name if set, else position and op type.
    pub fn node_label(&self, id: NodeId) -> String {
        let n = &self.nodes[id.0];
        if n.name.is_empty() {
            format!("#{} ({})", id.0, n.op_type)
        } else {
            format!("'{}' ({})", n.name, n.op_type)
        }
    }

    /// Builds the IR of a top-level graph.
    pub fn from_proto(proto: &GraphProto) -> Result<Graph, IrError> {
        Graph::build(proto, None)
    }

    fn build(proto: &GraphProto, outer: Option<&Scope>) -> Result<Graph, IrError> {
        let mut g = Graph {
            name: proto.name().to_string(),
            nodes: Vec::with_capacity(proto.node.len()),
            values: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            captures: Vec::new(),
            deps: DiGraph::with_capacity(proto.node.len(), proto.node.len() * 2),
            topo: Vec::new(),
            by_name: HashMap::new(),
        };
        let graph_name = || proto.name().to_string();

        // Initializers first, so inputs that share a name are seen as defaults.
        let input_names: HashSet<&str> = proto.input.iter().map(|v| v.name()).collect();
        for t in &proto.initializer {
            let id = g.add_value(
                t.name(),
                ValueKind::Initializer {
                    overridable: input_names.contains(t.name()),
                },
            );
            let v = g.value_mut(id);
            v.ty = Some(constant::tensor_type(t));
            v.folded = constant::decode(t);
        }
        for s in &proto.sparse_initializer {
            let name = s.values.as_ref().map(|t| t.name()).unwrap_or_default();
            let id = g.add_value(
                name,
                ValueKind::Initializer {
                    overridable: input_names.contains(name),
                },
            );
            let elem = s.values.as_ref().map(|t| t.data_type()).unwrap_or_default();
            g.value_mut(id).ty = Some(TensorType::known_dims(crate::onnx::dtype::ElemType(elem), &s.dims));
        }
        for vi in &proto.input {
            let declared = vi.type_.as_ref().and_then(TensorType::from_proto);
            match g.by_name.get(vi.name()).copied() {
                Some(id) => g.value_mut(id).declared = declared,
                None => {
                    let id = g.add_value(vi.name(), ValueKind::Input);
                    g.inputs.push(id);
                    let v = g.value_mut(id);
                    v.ty = declared.clone();
                    v.declared = declared;
                }
            }
        }

        // Register every node output before resolving inputs, so a graph whose
        // nodes are not listed in topological order still resolves.
        for (i, n) in proto.node.iter().enumerate() {
            g.nodes.push(Node {
                name: n.name().to_string(),
                op_type: n.op_type().to_string(),
                domain: n.domain().to_string(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                attributes: Vec::new(),
                subgraphs: Vec::new(),
                implicit_inputs: Vec::new(),
            });
            g.deps.add_node(NodeId(i));
            for (k, out) in n.output.iter().enumerate() {
                if out.is_empty() {
                    g.nodes[i].outputs.push(None);
                    continue;
                }
                if let Some(&prev) = g.by_name.get(out.as_str()) {
                    let previous = match g.values[prev.0].kind {
                        ValueKind::NodeOutput { node, .. } => node_label(node.0, &proto.node[node.0]),
                        ValueKind::Input => "a graph input".into(),
                        _ => "an initializer".into(),
                    };
                    return Err(IrError::ProducedTwice {
                        graph: graph_name(),
                        node: node_label(i, n),
                        value: out.clone(),
                        previous,
                    });
                }
                let id = g.add_value(
                    out,
                    ValueKind::NodeOutput {
                        node: NodeId(i),
                        index: k,
                    },
                );
                g.nodes[i].outputs.push(Some(id));
            }
        }

        // Resolve inputs and build subgraphs.
        for (i, n) in proto.node.iter().enumerate() {
            let mut inputs = Vec::with_capacity(n.input.len());
            for name in &n.input {
                if name.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let id = g.resolve(name, outer).ok_or_else(|| IrError::UndefinedInput {
                    graph: graph_name(),
                    node: node_label(i, n),
                    value: name.clone(),
                })?;
                inputs.push(Some(id));
            }
            let mut subgraphs = Vec::new();
            let mut attributes = Vec::with_capacity(n.attribute.len());
            for a in &n.attribute {
                let bodies: Vec<&GraphProto> = a.g.as_ref().into_iter().chain(a.graphs.iter()).collect();
                for body in bodies {
                    let sub = {
                        let scope = Scope {
                            names: &g.by_name,
                            parent: outer,
                        };
                        Graph::build(body, Some(&scope)).map_err(|e| match e {
                            IrError::UndefinedInput { value, .. } => IrError::MissingSubgraphValue {
                                graph: graph_name(),
                                node: node_label(i, n),
                                subgraph: body.name().to_string(),
                                value,
                            },
                            other => other,
                        })?
                    };
                    subgraphs.push(Subgraph {
                        attribute: a.name().to_string(),
                        graph: sub,
                    });
                }
                attributes.push(a.clone());
            }
            let mut implicit = Vec::new();
            for s in &subgraphs {
                for &c in &s.graph.captures {
                    let name = &s.graph.values[c.0].name;
                    let id = g.resolve(name, outer).ok_or_else(|| IrError::MissingSubgraphValue {
                        graph: graph_name(),
                        node: node_label(i, n),
                        subgraph: s.graph.name.clone(),
                        value: name.clone(),
                    })?;
                    if !implicit.contains(&id) {
                        implicit.push(id);
                    }
                }
            }
            let node = &mut g.nodes[i];
            node.inputs = inputs;
            node.attributes = attributes;
            node.subgraphs = subgraphs;
            node.implicit_inputs = implicit;
        }

        for vi in &proto.output {
            let id = g.resolve(vi.name(), outer).ok_or_else(|| IrError::UndefinedOutput {
                graph: graph_name(),
                value: vi.name().to_string(),
            })?;
            g.outputs.push(id);
            if let Some(t) = vi.type_.as_ref().and_then(TensorType::from_proto) {
                g.value_mut(id).declared = Some(t);
            }
        }
        for vi in &proto.value_info {
            if let (Some(id), Some(t)) = (
                g.value_id(vi.name()),
                vi.type_.as_ref().and_then(TensorType::from_proto),
            ) {
                g.value_mut(id).declared = Some(t);
            }
        }

        g.link_dependencies();
        g.topo = g.topological_order().map_err(|n| IrError::Cycle {
            graph: graph_name(),
            node: node_label(n.0, &proto.node[n.0]),
        })?;
        g.mark_constants();
        Ok(g)
    }

    fn add_value(&mut self, name: &str, kind: ValueKind) -> ValueId {
        let id = ValueId(self.values.len());
        self.values.push(Value {
            name: name.to_string(),
            kind,
            ty: None,
            declared: None,
            folded: None,
            is_constant: false,
            consumers: Vec::new(),
        });
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// Finds `name` here, or in an enclosing scope (recording a capture).
    fn resolve(&mut self, name: &str, outer: Option<&Scope>) -> Option<ValueId> {
        if let Some(&id) = self.by_name.get(name) {
            return Some(id);
        }
        if outer.is_some_and(|s| s.defines(name)) {
            let id = self.add_value(name, ValueKind::OuterScope);
            self.captures.push(id);
            return Some(id);
        }
        None
    }

    fn link_dependencies(&mut self) {
        for i in 0..self.nodes.len() {
            let consumer = NodeId(i);
            let used: Vec<ValueId> = self.nodes[i]
                .inputs
                .iter()
                .flatten()
                .chain(self.nodes[i].implicit_inputs.iter())
                .copied()
                .collect();
            for v in used {
                if !self.values[v.0].consumers.contains(&consumer) {
                    self.values[v.0].consumers.push(consumer);
                }
                if let Some(p) = self.producer(v) {
                    self.deps.update_edge(NodeIndex::new(p.0), NodeIndex::new(i), v);
                }
            }
        }
    }

    /// The nodes in a stable dependency order ([`stable_topological_order`]).
    /// On a cycle, returns a node that is on (or behind) it.
    fn topological_order(&self) -> Result<Vec<NodeId>, NodeId> {
        let deps: Vec<Vec<usize>> = (0..self.nodes.len())
            .map(|i| {
                self.deps
                    .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                    .map(|p| p.index())
                    .collect()
            })
            .collect();
        match stable_topological_order(&deps) {
            Ok(order) => Ok(order.into_iter().map(NodeId).collect()),
            Err(stuck) => {
                // Name a node that truly lies on a cycle when petgraph can find one.
                let on_cycle = match petgraph::algo::toposort(&self.deps, None) {
                    Err(cycle) => cycle.node_id().index(),
                    Ok(_) => stuck,
                };
                Err(NodeId(on_cycle))
            }
        }
    }

    fn mark_constants(&mut self) {
        for v in &mut self.values {
            v.is_constant = matches!(v.kind, ValueKind::Initializer { .. });
        }
        for &id in &self.topo {
            let node = &self.nodes[id.0];
            // Random* ops have no inputs but differ per run.
            let deterministic = !node.op_type.starts_with("Random");
            let all_const = node
                .inputs
                .iter()
                .flatten()
                .chain(node.implicit_inputs.iter())
                .all(|v| self.values[v.0].is_constant);
            if deterministic && all_const {
                for out in node.outputs.clone().into_iter().flatten() {
                    self.values[out.0].is_constant = true;
                }
            }
        }
    }
}

/// A model: its opset imports and main graph.
#[derive(Debug, Clone)]
pub struct Model {
    pub ir_version: i64,
    /// Opset version per domain; the default domain is stored under "".
    pub opsets: BTreeMap<String, i64>,
    pub graph: Graph,
}

impl Model {
    pub fn from_proto(proto: &ModelProto) -> Result<Model, IrError> {
        let graph = Graph::from_proto(proto.graph.as_ref().ok_or(IrError::NoGraph)?)?;
        let opsets = proto
            .opset_import
            .iter()
            .map(|o| {
                let d = if o.domain() == "ai.onnx" { "" } else { o.domain() };
                (d.to_string(), o.version())
            })
            .collect();
        Ok(Model {
            ir_version: proto.ir_version(),
            opsets,
            graph,
        })
    }

    /// Opset of the default ONNX domain (1 when the model states none, as
    /// the oldest IR versions did).
    pub fn onnx_opset(&self) -> i64 {
        self.opsets.get("").copied().unwrap_or(1)
    }
}

/// Kahn's algorithm over items `0..deps.len()`, where `deps[i]` lists what
/// item `i` waits for, always taking the earliest ready item: a list that is
/// already in order comes back unchanged, and any order is deterministic.
/// The one topological sort of eexc (the IR's node order, and a patch's
/// node list). On a cycle, returns an item that cannot be placed.
pub fn stable_topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let n = deps.len();
    let mut waiting_on = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            waiting_on[i] += 1;
            consumers[p].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| waiting_on[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &consumers[i] {
            waiting_on[c] -= 1;
            if waiting_on[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() < n {
        return Err((0..n).find(|&i| waiting_on[i] > 0).unwrap_or(0));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::test_protos::{node, vi};

    fn graph(name: &str, inputs: &[&str], outputs: &[&str], nodes: Vec<NodeProto>) -> GraphProto {
        let mut g = GraphProto::new();
        g.set_name(name.into());
        g.input = inputs.iter().map(|s| vi(s)).collect();
        g.output = outputs.iter().map(|s| vi(s)).collect();
        g.node = nodes;
        g
    }

    fn with_branch(mut n: NodeProto, attr: &str, body: GraphProto) -> NodeProto {
        let mut a = AttributeProto::new();
        a.set_name(attr.into());
        a.set_type(attribute_proto::AttributeType::GRAPH);
        a.g = Some(body).into();
        n.attribute.push(a);
        n
    }

    #[test]
    fn topological_order_follows_file_order_when_possible() {
        // Listed out of order: b consumes a's output.
        let g = graph(
            "g",
            &["x"],
            &["z"],
            vec![node("b", "Relu", &["y"], &["z"]), node("a", "Relu", &["x"], &["y"])],
        );
        let ir = Graph::from_proto(&g).unwrap();
        assert_eq!(ir.topo, vec![NodeId(1), NodeId(0)]);
    }

    #[test]
    fn subgraph_captures_become_dependencies() {
        let then_b = graph("then", &[], &["t"], vec![node("use_h", "Identity", &["h"], &["t"])]);
        let else_b = graph("else", &[], &["e"], vec![node("use_x", "Identity", &["x"], &["e"])]);
        let cond = node("cond", "Constant", &[], &["c"]);
        let hidden = node("hidden", "Relu", &["x"], &["h"]);
        let iff = with_branch(
            with_branch(node("if", "If", &["c"], &["y"]), "then_branch", then_b),
            "else_branch",
            else_b,
        );
        let g = graph("main", &["x"], &["y"], vec![iff, cond, hidden]);
        let ir = Graph::from_proto(&g).unwrap();
        let if_node = ir.node(NodeId(0));
        let names: Vec<&str> = if_node
            .implicit_inputs
            .iter()
            .map(|&v| ir.value(v).name.as_str())
            .collect();
        assert_eq!(names, vec!["h", "x"]);
        // `If` must come after `hidden`, which produces a captured value.
        let pos = |n: usize| ir.topo.iter().position(|&t| t == NodeId(n)).unwrap();
        assert!(pos(2) < pos(0));
        assert_eq!(if_node.subgraphs[0].graph.captures.len(), 1);
    }

    #[test]
    fn subgraph_reading_an_undefined_value_names_the_node() {
        let body = graph(
            "then",
            &[],
            &["t"],
            vec![node("ghostly", "Identity", &["ghost"], &["t"])],
        );
        let iff = with_branch(node("branch", "If", &["x"], &["y"]), "then_branch", body);
        let err = Graph::from_proto(&graph("main", &["x"], &["y"], vec![iff])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "graph 'main': node 'branch' (If): subgraph 'then' uses 'ghost', which no enclosing graph defines"
        );
    }

    #[test]
    fn constants_propagate_but_inputs_do_not() {
        let g = graph(
            "g",
            &["x"],
            &["y"],
            vec![
                node("shape", "Constant", &[], &["s"]),
                node("w", "ConstantOfShape", &["s"], &["w"]),
                node("mul", "Mul", &["x", "w"], &["y"]),
            ],
        );
        let ir = Graph::from_proto(&g).unwrap();
        let c = |n: &str| ir.value(ir.value_id(n).unwrap()).is_constant;
        assert!(c("s") && c("w"));
        assert!(!c("x") && !c("y"));
    }
}
