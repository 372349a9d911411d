//! The one way eexc changes a graph: a patch records what to add, remove
//! and replace, and [`ModelPatch::apply`] (or [`GraphPatch::apply`] for one
//! nested graph) makes the change once, enforcing the invariants every
//! emitted model keeps:
//!
//! - every name a patch adds is defined once across all scopes of the model
//!   (ONNX forbids a subgraph shadowing an outer name);
//! - nodes are in a dependency order, kept as close to the recorded order as
//!   dependencies allow (a cycle is an error, never a silent reorder);
//! - value_info of a tensor that the patch stopped computing is dropped;
//! - an initializer the patch stopped reading, or added and nothing reads,
//!   is removed, unless a caller may feed it (a graph input: the knobs);
//! - a model older than IR 4 that gains initializers moves to IR 4 (the IR
//!   < 4 rule that every initializer is a graph input, which ONNX Runtime
//!   then treats as a constant, would make the knobs impossible to feed);
//! - every constant ends in the innermost graph that reads it
//!   ([`super::placement`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error(
        "graph '{graph}': the changed nodes form a cycle through '{node}' (a bug: please report it with the model)"
    )]
    Cycle { graph: String, node: String },
    #[error(
        "graph '{graph}': tensor '{name}' would be defined {count} times across the model's scopes (a bug: please report it with the model)"
    )]
    NameDefinedTwice { graph: String, name: String, count: usize },
}

/// Which nodes may go when nothing reads them.
type Droppable = Box<dyn Fn(&NodeProto) -> bool>;

/// Changes to one graph: the main graph, or a nested one that fusion
/// rewrites in place.
#[derive(Default)]
pub struct GraphPatch {
    /// Indices, in the graph as it was, of the nodes to take out.
    removed: BTreeSet<usize>,
    /// New nodes to put just before the node that had this index.
    inserted: BTreeMap<usize, Vec<NodeProto>>,
    appended: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// New values of existing initializers, by name.
    new_values: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    removed_inputs: HashSet<String>,
    outputs: Vec<ValueInfoProto>,
    /// The output list replaced as a whole.
    all_outputs: Option<Vec<ValueInfoProto>>,
    /// Initializers to remove if nothing reads them after the change, beside
    /// those the change itself stopped reading (a pass that ran before, as
    /// fusion's earlier regions, stopped reading them).
    drop_if_unread: HashSet<String>,
    /// Nodes (old or new) to remove, over and over, while nothing reads
    /// their outputs and this allows it.
    unread_nodes: Option<Droppable>,
}

impl GraphPatch {
    pub fn new() -> GraphPatch {
        GraphPatch::default()
    }

    /// Takes out node `index` (of the graph as it is before the patch).
    pub fn remove_node(&mut self, index: usize) {
        self.removed.insert(index);
    }

    /// Takes out every node of a graph that has `count` of them.
    pub fn remove_all_nodes(&mut self, count: usize) {
        self.removed.extend(0..count);
    }

    /// Puts `nodes` just before node `index` (of the graph as it is before
    /// the patch), after what was already inserted there.
    pub fn insert_before(&mut self, index: usize, nodes: impl IntoIterator<Item = NodeProto>) {
        self.inserted.entry(index).or_default().extend(nodes);
    }

    /// Puts `nodes` after every node of the graph.
    pub fn append_nodes(&mut self, nodes: impl IntoIterator<Item = NodeProto>) {
        self.appended.extend(nodes);
    }

    pub fn add_initializers(&mut self, tensors: impl IntoIterator<Item = TensorProto>) {
        self.initializers.extend(tensors);
    }

    /// Gives the initializer of `tensor`'s name `tensor`'s value (a knob's
    /// calibrated default); one that does not exist is left alone.
    pub fn set_initializer(&mut self, tensor: TensorProto) {
        self.new_values.push(tensor);
    }

    pub fn add_inputs(&mut self, inputs: impl IntoIterator<Item = ValueInfoProto>) {
        self.inputs.extend(inputs);
    }

    /// Takes these names off the input list (a knob frozen into a constant).
    pub fn remove_inputs(&mut self, names: impl IntoIterator<Item = String>) {
        self.removed_inputs.extend(names);
    }

    /// Declares outputs; a name already declared keeps its declaration.
    pub fn add_outputs(&mut self, outputs: impl IntoIterator<Item = ValueInfoProto>) {
        self.outputs.extend(outputs);
    }

    /// Replaces the whole output list.
    pub fn set_outputs(&mut self, outputs: Vec<ValueInfoProto>) {
        self.all_outputs = Some(outputs);
    }

    /// Removes these initializers if nothing reads them once the patch is
    /// applied (a feedable one stays).
    pub fn drop_if_unread(&mut self, names: impl IntoIterator<Item = String>) {
        self.drop_if_unread.extend(names);
    }

    /// Once the nodes are in place, removes those that `may_drop` allows
    /// and whose outputs nothing reads (no node, subgraph or graph output),
    /// until none is left: what only computed what the change replaced.
    pub fn remove_unread_nodes(&mut self, may_drop: impl Fn(&NodeProto) -> bool + 'static) {
        self.unread_nodes = Some(Box::new(may_drop));
    }

    fn adds_initializers(&self) -> bool {
        !self.initializers.is_empty()
    }

    /// Applies the patch to `graph` alone: the names it adds must be unique
    /// within `graph` and its nested graphs, and `outer` holds the names
    /// the enclosing scopes define.
    pub fn apply(self, graph: &mut GraphProto, outer: &HashSet<String>) -> Result<(), PatchError> {
        let added = self.apply_unchecked(graph, false)?;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        count_definitions(graph, &mut counts);
        check_unique(graph.name(), &added, &counts, outer)
    }

    /// Makes the change; returns the names it defines (for the uniqueness
    /// check, which needs the whole scope tree). `before_ir4`: the graph is
    /// the main graph of a model older than IR 4, whose initializers are all
    /// graph inputs and all constants.
    fn apply_unchecked(self, graph: &mut GraphProto, before_ir4: bool) -> Result<Vec<String>, PatchError> {
        let GraphPatch {
            removed,
            mut inserted,
            appended,
            initializers,
            new_values,
            inputs,
            removed_inputs,
            outputs,
            all_outputs,
            mut drop_if_unread,
            unread_nodes,
        } = self;
        graph.input.retain(|i| !removed_inputs.contains(i.name()));
        drop_if_unread.extend(names_read_by(graph));
        let mut produced_removed: HashSet<String> = removed
            .iter()
            .filter_map(|&i| graph.node.get(i))
            .flat_map(|n| n.output.iter().filter(|o| !o.is_empty()).cloned())
            .collect();

        let mut added = Vec::new();
        for n in inserted.values().flatten().chain(&appended) {
            defined_by_node(n, &mut added);
        }
        let mut nodes = Vec::with_capacity(graph.node.len() + appended.len());
        for (i, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
            if let Some(new) = inserted.remove(&i) {
                nodes.extend(new);
            }
            if !removed.contains(&i) {
                nodes.push(node);
            }
        }
        // Insertions past the end, then the appended nodes.
        for (_, new) in std::mem::take(&mut inserted) {
            nodes.extend(new);
        }
        nodes.extend(appended);

        for t in new_values {
            if let Some(slot) = graph.initializer.iter_mut().find(|s| s.name() == t.name()) {
                *slot = t;
            }
        }
        added.extend(initializers.iter().map(|t| t.name().to_string()));
        // A new constant nothing reads (its readers were folded away) goes too.
        drop_if_unread.extend(initializers.iter().map(|t| t.name().to_string()));
        graph.initializer.extend(initializers);
        added.extend(inputs.iter().map(|i| i.name().to_string()));
        graph.input.extend(inputs);
        match all_outputs {
            Some(all) => graph.output = all,
            None => {
                for o in outputs {
                    if !graph.output.iter().any(|d| d.name() == o.name()) {
                        graph.output.push(o);
                    }
                }
            }
        }
        if let Some(may_drop) = unread_nodes {
            produced_removed.extend(remove_unread(&mut nodes, &graph.output, &*may_drop));
        }
        graph.node = stable_node_order(nodes).map_err(|node| PatchError::Cycle {
            graph: graph.name().to_string(),
            node,
        })?;

        let produced: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        graph
            .value_info
            .retain(|v| !produced_removed.contains(v.name()) || produced.contains(v.name()));
        drop_unread_initializers(graph, &drop_if_unread, before_ir4);
        Ok(added)
    }
}

/// Changes to a model: its main graph and its metadata.
#[derive(Default)]
pub struct ModelPatch {
    pub main: GraphPatch,
    metadata: Vec<(String, String)>,
}

impl ModelPatch {
    pub fn new() -> ModelPatch {
        ModelPatch::default()
    }

    /// Sets metadata entry `key` (replacing one of that key).
    pub fn set_metadata(&mut self, key: &str, value: String) {
        self.metadata.push((key.to_string(), value));
    }

    /// Applies the patch. An error is a bug in the pass that built it, and
    /// leaves `model` part-changed: callers drop it, never write it.
    pub fn apply(self, model: &mut ModelProto) -> Result<(), PatchError> {
        let ModelPatch { main, metadata } = self;
        if model.ir_version() < 4 && main.adds_initializers() {
            raise_to_ir4(model);
        }
        let before_ir4 = model.ir_version() < 4;
        let graph = model.graph.mut_or_insert_default();
        let added = main.apply_unchecked(graph, before_ir4)?;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        count_definitions(graph, &mut counts);
        check_unique(graph.name(), &added, &counts, &HashSet::new())?;
        for (key, value) in metadata {
            model.metadata_props.retain(|kv| kv.key() != key);
            let mut kv = StringStringEntryProto::new();
            kv.set_key(key);
            kv.set_value(value);
            model.metadata_props.push(kv);
        }
        super::placement::place_constants(model);
        Ok(())
    }
}

/// Before IR 4 every initializer had to be a graph input, and runtimes treat
/// such inputs as constants. IR 4 lifts both rules: the model moves to IR 4
/// and its weights leave the input list (they stay constant, as they were);
/// its real inputs are unchanged.
fn raise_to_ir4(model: &mut ModelProto) {
    if let Some(g) = model.graph.as_mut() {
        let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        g.input.retain(|i| !inits.contains(i.name()));
    }
    model.set_ir_version(4);
}

/// Removes from `nodes` those `may_drop` allows whose outputs nothing reads,
/// until none is left (a chain goes from its end); returns what they computed.
fn remove_unread(
    nodes: &mut Vec<NodeProto>,
    outputs: &[ValueInfoProto],
    may_drop: &dyn Fn(&NodeProto) -> bool,
) -> Vec<String> {
    let mut gone = Vec::new();
    loop {
        let mut read: HashSet<String> = outputs.iter().map(|o| o.name().to_string()).collect();
        for n in nodes.iter() {
            crate::onnx::names_read(n, &mut read);
        }
        let before = nodes.len();
        nodes.retain(|n| {
            let keep = !may_drop(n) || n.output.iter().any(|o| !o.is_empty() && read.contains(o));
            if !keep {
                gone.extend(n.output.iter().cloned());
            }
            keep
        });
        if nodes.len() == before {
            return gone;
        }
    }
}

fn names_read_by(graph: &GraphProto) -> HashSet<String> {
    let mut read: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for n in &graph.node {
        crate::onnx::names_read(n, &mut read);
    }
    read
}

/// Removes the initializers among `candidates` that nothing reads, unless a
/// caller may feed them: graph inputs, from IR 4 on (before it, every
/// initializer is an input and a constant, and leaves the list with it).
fn drop_unread_initializers(graph: &mut GraphProto, candidates: &HashSet<String>, before_ir4: bool) {
    let read = names_read_by(graph);
    let feedable: HashSet<&str> = if before_ir4 {
        HashSet::new()
    } else {
        graph.input.iter().map(|i| i.name()).collect()
    };
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| candidates.contains(n) && !read.contains(n) && !feedable.contains(n.as_str()))
        .collect();
    if !dropped.is_empty() {
        graph.initializer.retain(|t| !dropped.contains(t.name()));
        graph.input.retain(|i| !dropped.contains(i.name()));
    }
}

/// The names `node` defines: its outputs and, in its subgraphs, their
/// inputs, initializers and node outputs.
fn defined_by_node(node: &NodeProto, into: &mut Vec<String>) {
    into.extend(node.output.iter().filter(|o| !o.is_empty()).cloned());
    for a in &node.attribute {
        for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
            into.extend(g.input.iter().map(|i| i.name().to_string()));
            into.extend(g.initializer.iter().map(|t| t.name().to_string()));
            for inner in &g.node {
                defined_by_node(inner, into);
            }
        }
    }
}

/// How many times each name is defined in `graph` and its nested graphs (a
/// graph input that is also an initializer counts once: the knob form).
fn count_definitions<'g>(graph: &'g GraphProto, counts: &mut HashMap<&'g str, usize>) {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    for i in &graph.input {
        if !inits.contains(i.name()) {
            *counts.entry(i.name()).or_default() += 1;
        }
    }
    for t in &graph.initializer {
        *counts.entry(t.name()).or_default() += 1;
    }
    for n in &graph.node {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            *counts.entry(o.as_str()).or_default() += 1;
        }
        for a in &n.attribute {
            for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                count_definitions(g, counts);
            }
        }
    }
}

fn check_unique(
    graph: &str,
    added: &[String],
    counts: &HashMap<&str, usize>,
    outer: &HashSet<String>,
) -> Result<(), PatchError> {
    for name in added {
        let count = counts.get(name.as_str()).copied().unwrap_or(0) + usize::from(outer.contains(name));
        if count > 1 {
            return Err(PatchError::NameDefinedTwice {
                graph: graph.to_string(),
                name: name.clone(),
                count,
            });
        }
    }
    Ok(())
}

/// `nodes` in a dependency order, taking the earliest ready node in list
/// order (so a list already in order is returned as it is); on a cycle, the
/// name of a node that cannot be placed.
fn stable_node_order(nodes: Vec<NodeProto>) -> Result<Vec<NodeProto>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut reads = BTreeSet::new();
            crate::onnx::names_read(n, &mut reads);
            let mut d: Vec<usize> = reads
                .iter()
                .filter_map(|r| producer.get(r.as_str()).copied())
                .filter(|&p| p != i)
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let order = crate::ir::stable_topological_order(&deps).map_err(|stuck| {
        let n = &nodes[stuck];
        if n.name().is_empty() {
            n.output.first().cloned().unwrap_or_default()
        } else {
            n.name().to_string()
        }
    })?;
    let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::test_protos::{node, vi};
    use crate::transform::builder::{tensor_f32, value_info};

    /// x → Relu(a) → Mul(a, w) → y, with value_info for a.
    fn model(ir: i64) -> ModelProto {
        let mut g = GraphProto::new();
        g.set_name("main".into());
        g.input = vec![vi("x")];
        g.output = vec![vi("y")];
        g.node = vec![
            node("relu", "Relu", &["x"], &["a"]),
            node("mul", "Mul", &["a", "w"], &["y"]),
        ];
        g.initializer = vec![tensor_f32("w", &[], &[2.0])];
        g.value_info = vec![vi("a")];
        if ir < 4 {
            g.input.push(vi("w"));
        }
        let mut m = ModelProto::new();
        m.set_ir_version(ir);
        m.graph = Some(g).into();
        m
    }

    fn node_names(m: &ModelProto) -> Vec<&str> {
        m.graph.as_ref().unwrap().node.iter().map(|n| n.name()).collect()
    }

    #[test]
    fn new_nodes_take_their_place_and_keep_a_dependency_order() {
        let mut m = model(8);
        let mut p = ModelPatch::new();
        // Recorded out of order: the Add reads what the Neg writes.
        p.main.append_nodes([node("add", "Add", &["n", "y"], &["z"])]);
        p.main.insert_before(1, [node("neg", "Neg", &["a"], &["n"])]);
        p.main.add_outputs([vi("z"), vi("y")]);
        p.apply(&mut m).unwrap();
        assert_eq!(node_names(&m), ["relu", "neg", "mul", "add"]);
        let g = m.graph.as_ref().unwrap();
        // "y" was declared already: declared once.
        assert_eq!(g.output.iter().map(|o| o.name()).collect::<Vec<_>>(), ["y", "z"]);
    }

    #[test]
    fn node_order_keeps_the_list_order_where_it_can() {
        // c reads b's output but comes first; a is independent.
        let list = vec![
            node("c", "Relu", &["vb"], &["vc"]),
            node("a", "Relu", &["x"], &["va"]),
            node("b", "Relu", &["x"], &["vb"]),
        ];
        let order: Vec<String> = stable_node_order(list)
            .unwrap()
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        let cycle = vec![node("p", "Relu", &["vq"], &["vp"]), node("q", "Relu", &["vp"], &["vq"])];
        assert_eq!(stable_node_order(cycle).unwrap_err(), "p");
    }

    #[test]
    fn a_cycle_is_an_error_naming_a_node() {
        let mut m = model(8);
        let mut p = ModelPatch::new();
        p.main.remove_node(0);
        p.main.insert_before(0, [node("loop", "Relu", &["y"], &["a"])]);
        let err = p.apply(&mut m).unwrap_err();
        assert!(matches!(err, PatchError::Cycle { .. }), "{err}");
    }

    #[test]
    fn a_name_defined_twice_is_an_error() {
        let mut m = model(8);
        let mut p = ModelPatch::new();
        p.main.append_nodes([node("again", "Relu", &["x"], &["a"])]);
        let err = p.apply(&mut m).unwrap_err();
        assert_eq!(
            err,
            PatchError::NameDefinedTwice {
                graph: "main".into(),
                name: "a".into(),
                count: 2
            }
        );
    }

    #[test]
    fn removed_nodes_take_their_value_info_and_unread_weights_with_them() {
        let mut m = model(8);
        let mut p = ModelPatch::new();
        p.main.remove_all_nodes(2);
        p.main.append_nodes([node("neg", "Neg", &["x"], &["y"])]);
        p.apply(&mut m).unwrap();
        let g = m.graph.as_ref().unwrap();
        assert!(g.value_info.is_empty());
        assert!(g.initializer.is_empty(), "w is no longer read");
    }

    #[test]
    fn feedable_and_already_unread_initializers_stay() {
        let mut m = model(8);
        {
            let g = m.graph.as_mut().unwrap();
            g.input.push(value_info("w", crate::onnx::proto::TypeProto::new()));
            g.initializer.push(tensor_f32("spare", &[], &[0.0]));
        }
        let mut p = ModelPatch::new();
        p.main.remove_node(1);
        p.main.append_nodes([node("neg", "Neg", &["a"], &["y"])]);
        p.apply(&mut m).unwrap();
        let names: Vec<&str> = m.graph.as_ref().unwrap().initializer.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["w", "spare"]);
    }

    #[test]
    fn an_old_model_gaining_initializers_moves_to_ir4_and_keeps_its_real_inputs() {
        let mut m = model(3);
        let mut p = ModelPatch::new();
        p.main.add_initializers([tensor_f32("t", &[], &[1.0])]);
        p.main.add_inputs([vi("t")]);
        p.main.append_nodes([node("knob", "Mul", &["y", "t"], &["z"])]);
        p.apply(&mut m).unwrap();
        assert_eq!(m.ir_version(), 4);
        let g = m.graph.as_ref().unwrap();
        assert_eq!(g.input.iter().map(|i| i.name()).collect::<Vec<_>>(), ["x", "t"]);
        // An old model patched without new initializers stays as it is.
        let mut old = model(3);
        let mut p = ModelPatch::new();
        p.main.add_outputs([vi("a")]);
        p.apply(&mut old).unwrap();
        assert_eq!(old.ir_version(), 3);
    }

    #[test]
    fn metadata_entries_replace_their_key() {
        let mut m = model(8);
        for v in ["1", "2"] {
            let mut p = ModelPatch::new();
            p.set_metadata("k", v.into());
            p.apply(&mut m).unwrap();
        }
        assert_eq!(m.metadata_props.len(), 1);
        assert_eq!(m.metadata_props[0].value(), "2");
    }
}
