//! Constants live where they are read: every initializer, `Constant` node
//! and node computed from constants alone moves into the innermost graph
//! (main graph, `If` branch, `Loop` body) that contains all of its readers.
//!
//! Why: ONNX Runtime's CPU layout optimiser (NCHWc, part of its default
//! `ORT_ENABLE_ALL`) rewrites a Conv only when the weight is an initializer
//! of the Conv's own graph; a weight read from an outer scope keeps that Conv
//! in the slow layout (docs/runtime-cost.md has the measurements). An `If`
//! also copies every outer value it reads into its branch's feeds per call,
//! so fewer captures are cheaper too.
//!
//! Names are unique across a model's scopes, so moving keeps every name.
//! Graph inputs (the knobs, and any initializer a caller may feed) stay
//! where they are. Into a `Loop` or `Scan` body only stored constants move
//! (initializers, `Constant` nodes): a computed one would be computed again
//! on every iteration by a runtime that does not fold it.

use std::collections::{HashMap, HashSet};

use crate::onnx::proto::{GraphProto, ModelProto, NodeProto};

/// Moves constants of every graph of `model` to where they are read.
pub fn place_constants(model: &mut ModelProto) {
    if let Some(g) = model.graph.as_mut() {
        place_in(g);
    }
}

fn place_in(g: &mut GraphProto) {
    // Each round moves a constant one level down; a chain of constant nodes
    // (shape -> ConstantOfShape -> Reshape) follows its readers over rounds.
    while sink_once(g) {}
    for node in &mut g.node {
        for a in &mut node.attribute {
            for sub in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                place_in(sub);
            }
        }
    }
}

/// Where a graph's value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readers {
    /// Only by subgraph `graph` of attribute `attr` of node `node`.
    Child(Subgraph),
    /// By this graph itself (a node input, a graph output, a subgraph's
    /// output naming it) or by several subgraphs.
    Here,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Subgraph {
    node: usize,
    attr: usize,
    /// Index in `attr.graphs`, or `usize::MAX` for `attr.g`.
    graph: usize,
}

/// Ops whose result is not a function of their inputs: never treated as constants.
const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

/// One round: moves every constant whose readers all sit in one subgraph
/// into it. Returns whether anything moved.
fn sink_once(g: &mut GraphProto) -> bool {
    let feedable: HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
    let mut constant: HashSet<String> = g
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| !feedable.contains(n.as_str()))
        .collect();
    // Nodes computed from constants alone (in order, so chains are found).
    let mut constant_node = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        let plain = (n.domain().is_empty() || n.domain() == "ai.onnx")
            && !NONDETERMINISTIC.contains(&n.op_type())
            && n.attribute.iter().all(|a| a.g.is_none() && a.graphs.is_empty())
            && !n.output.is_empty();
        if plain && n.input.iter().all(|x| x.is_empty() || constant.contains(x)) {
            constant_node[i] = true;
            constant.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }

    let readers = readers_of(g);
    // Nodes whose subgraphs may run more than once per run (Loop, Scan, any
    // op but If): only stored constants move into them.
    let repeats_body: HashSet<usize> = g
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type() != "If")
        .map(|(i, _)| i)
        .collect();
    let target_of = |names: &mut dyn Iterator<Item = &String>, stored: bool| -> Option<Subgraph> {
        let mut target = None;
        for name in names.filter(|n| !n.is_empty()) {
            match readers.get(name.as_str()) {
                Some(Readers::Child(s)) if target.is_none_or(|t| t == *s) => target = Some(*s),
                // Unread (left to dead-code removal), read here, or read in two places.
                _ => return None,
            }
        }
        target.filter(|t| stored || !repeats_body.contains(&t.node))
    };

    let mut init_moves: Vec<(usize, Subgraph)> = Vec::new();
    for (i, t) in g.initializer.iter().enumerate() {
        if !constant.contains(t.name()) {
            continue;
        }
        let name = t.name().to_string();
        if let Some(s) = target_of(&mut std::iter::once(&name), true) {
            init_moves.push((i, s));
        }
    }
    let mut node_moves: Vec<(usize, Subgraph)> = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if !constant_node[i] {
            continue;
        }
        let stored = n.op_type() == "Constant";
        if let Some(s) = target_of(&mut n.output.iter(), stored) {
            node_moves.push((i, s));
        }
    }
    if init_moves.is_empty() && node_moves.is_empty() {
        return false;
    }

    // Take the moved items out (back to front keeps indices valid), then
    // give them to their subgraphs in their original order.
    let mut inits_for: HashMap<Subgraph, Vec<_>> = HashMap::new();
    for &(i, s) in init_moves.iter().rev() {
        inits_for.entry(s).or_default().push(g.initializer.remove(i));
    }
    let mut nodes_for: HashMap<Subgraph, Vec<NodeProto>> = HashMap::new();
    for &(i, s) in node_moves.iter().rev() {
        nodes_for.entry(s).or_default().push(g.node.remove(i));
    }
    // A subgraph's owner shifted down by the moved nodes before it.
    let owner_index = |original: usize| original - node_moves.iter().filter(|(i, _)| *i < original).count();
    let mut targets: Vec<Subgraph> = inits_for.keys().chain(nodes_for.keys()).copied().collect();
    targets.sort();
    targets.dedup();
    for s in targets {
        let mut inits = inits_for.remove(&s).unwrap_or_default();
        inits.reverse();
        let mut nodes = nodes_for.remove(&s).unwrap_or_default();
        nodes.reverse();
        let outputs: HashSet<String> = nodes.iter().flat_map(|n| n.output.iter().cloned()).collect();
        let mut infos = Vec::new();
        g.value_info.retain(|v| {
            if outputs.contains(v.name()) {
                infos.push(v.clone());
                false
            } else {
                true
            }
        });
        // Always found: `s` was read off this very node's attributes.
        let Some(sub) = subgraph_mut(&mut g.node[owner_index(s.node)], s) else {
            continue;
        };
        sub.initializer.extend(inits);
        // Moved nodes read only constants of the outer graph or of each
        // other: ahead of everything already there, in their own order.
        let rest = std::mem::take(&mut sub.node);
        sub.node = nodes;
        sub.node.extend(rest);
        sub.value_info.extend(infos);
    }
    true
}

fn subgraph_mut(node: &mut NodeProto, s: Subgraph) -> Option<&mut GraphProto> {
    let a = node.attribute.get_mut(s.attr)?;
    if s.graph == usize::MAX {
        a.g.as_mut()
    } else {
        a.graphs.get_mut(s.graph)
    }
}

/// For every name `g` or its subgraphs read, where it is read from.
fn readers_of(g: &GraphProto) -> HashMap<&str, Readers> {
    let mut readers = HashMap::new();
    readers_into(g, &mut readers);
    readers
}

fn readers_into<'g>(g: &'g GraphProto, readers: &mut HashMap<&'g str, Readers>) {
    let mut add = |name: &'g str, r: Readers| {
        if name.is_empty() {
            return;
        }
        readers
            .entry(name)
            .and_modify(|old| {
                if *old != r {
                    *old = Readers::Here;
                }
            })
            .or_insert(r);
    };
    for o in &g.output {
        add(o.name(), Readers::Here);
    }
    for (i, n) in g.node.iter().enumerate() {
        for x in &n.input {
            add(x, Readers::Here);
        }
        for (j, a) in n.attribute.iter().enumerate() {
            let subs =
                a.g.as_ref()
                    .map(|s| (usize::MAX, s))
                    .into_iter()
                    .chain(a.graphs.iter().enumerate());
            for (l, sub) in subs {
                let s = Subgraph {
                    node: i,
                    attr: j,
                    graph: l,
                };
                let (free, returned) = outer_reads(sub);
                for name in free {
                    add(name, Readers::Child(s));
                }
                // A branch cannot return a value of its own initializers
                // list by the outer name either: keep what it returns here.
                for name in returned {
                    add(name, Readers::Here);
                }
            }
        }
    }
}

/// Names `sub` reads from outside itself (its nodes' and nested subgraphs'
/// inputs), and the outer names it returns as outputs.
fn outer_reads(sub: &GraphProto) -> (Vec<&str>, Vec<&str>) {
    let mut defined: HashSet<&str> = sub.input.iter().map(|i| i.name()).collect();
    defined.extend(sub.initializer.iter().map(|t| t.name()));
    defined.extend(
        sub.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref())
            .map(|t| t.name()),
    );
    for n in &sub.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    let mut free = Vec::new();
    for n in &sub.node {
        free.extend(n.input.iter().map(String::as_str));
        for a in &n.attribute {
            for inner in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                let (f, r) = outer_reads(inner);
                free.extend(f);
                free.extend(r);
            }
        }
    }
    free.retain(|n| !n.is_empty() && !defined.contains(n));
    let returned = sub
        .output
        .iter()
        .map(|o| o.name())
        .filter(|n| !defined.contains(n))
        .collect();
    (free, returned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{TensorProto, ValueInfoProto};
    use crate::transform::builder::{attr_graph, tensor_f32};

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        n.set_name(format!("{}_{op}", outputs.first().copied().unwrap_or("n")));
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.iter().map(|s| s.to_string()).collect();
        n
    }

    fn init(name: &str) -> TensorProto {
        tensor_f32(name, &[1], &[1.0])
    }

    fn output(name: &str) -> ValueInfoProto {
        let mut v = ValueInfoProto::new();
        v.set_name(name.into());
        v
    }

    fn graph(name: &str, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> GraphProto {
        let mut g = GraphProto::new();
        g.set_name(name.into());
        g.node = nodes;
        g.initializer = inits;
        g.output = outputs.iter().map(|o| output(o)).collect();
        g
    }

    fn names(inits: &[TensorProto]) -> Vec<&str> {
        inits.iter().map(|t| t.name()).collect()
    }

    fn branch<'a>(g: &'a GraphProto, node: usize, attr: &str) -> &'a GraphProto {
        g.node[node]
            .attribute
            .iter()
            .find(|a| a.name() == attr)
            .and_then(|a| a.g.as_ref())
            .expect("branch")
    }

    /// main: x -> If(c) { then: Mul(x, w_then), Mul(x, shared) ; else: Mul(x, w_else),
    /// Mul(x, shared), Mul(x, chain) with chain = Reshape(Constant, shape) in main }.
    fn if_model() -> ModelProto {
        let then_g = graph(
            "then",
            vec![
                node("Mul", &["x", "w_then"], &["t1"]),
                node("Mul", &["t1", "shared"], &["t2"]),
            ],
            vec![],
            &["t2"],
        );
        let else_g = graph(
            "else",
            vec![
                node("Mul", &["x", "w_else"], &["e1"]),
                node("Mul", &["e1", "shared"], &["e2"]),
                node("Mul", &["e2", "chain"], &["e3"]),
            ],
            vec![],
            &["e3"],
        );
        let mut iff = node("If", &["c"], &["y"]);
        iff.attribute = vec![attr_graph("then_branch", then_g), attr_graph("else_branch", else_g)];
        let mut c = node("Constant", &[], &["chain_value"]);
        c.attribute = vec![crate::transform::builder::attr_tensor("value", init("v"))];
        let mut main = graph(
            "main",
            vec![
                c,
                node("Reshape", &["chain_value", "chain_shape"], &["chain"]),
                node("Mul", &["x", "w_main"], &["m"]),
                iff,
            ],
            vec![
                init("w_then"),
                init("w_else"),
                init("shared"),
                init("w_main"),
                init("knob"),
                crate::transform::builder::tensor_i64("chain_shape", &[1], &[1]),
            ],
            &["y", "m"],
        );
        main.input = vec![output("x"), output("c"), output("knob")];
        main.value_info = vec![output("chain")];
        let mut m = ModelProto::new();
        m.graph = Some(main).into();
        m
    }

    #[test]
    fn constants_move_to_the_only_branch_that_reads_them() {
        let mut m = if_model();
        place_constants(&mut m);
        let g = m.graph.as_ref().unwrap();
        // Read in both branches, in main, or a caller-feedable input: stays.
        assert_eq!(names(&g.initializer), ["shared", "w_main", "knob"]);
        let iff = g.node.iter().position(|n| n.op_type() == "If").unwrap();
        assert_eq!(g.node.len(), 2, "the constant chain left main: {:?}", g.node);
        assert_eq!(names(&branch(g, iff, "then_branch").initializer), ["w_then"]);
        let else_g = branch(g, iff, "else_branch");
        assert_eq!(names(&else_g.initializer), ["w_else", "chain_shape"]);
        let ops: Vec<&str> = else_g.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Constant", "Reshape", "Mul", "Mul", "Mul"], "producers first");
        assert_eq!(
            else_g.value_info.len(),
            1,
            "the moved tensor's value_info moves with it"
        );
        assert!(g.value_info.is_empty());
    }

    #[test]
    fn placement_is_idempotent_and_leaves_flat_models_alone() {
        let mut m = if_model();
        place_constants(&mut m);
        let once = m.clone();
        place_constants(&mut m);
        assert_eq!(m, once);
        let mut flat = ModelProto::new();
        flat.graph = Some(graph(
            "flat",
            vec![node("Mul", &["x", "w"], &["y"])],
            vec![init("w")],
            &["y"],
        ))
        .into();
        let before = flat.clone();
        place_constants(&mut flat);
        assert_eq!(flat, before);
    }

    #[test]
    fn constants_follow_readers_through_nested_branches() {
        let inner = graph("inner_else", vec![node("Mul", &["x", "deep"], &["d"])], vec![], &["d"]);
        let mut inner_if = node("If", &["c"], &["z"]);
        inner_if.attribute = vec![
            attr_graph(
                "then_branch",
                graph("inner_then", vec![node("Identity", &["x"], &["i"])], vec![], &["i"]),
            ),
            attr_graph("else_branch", inner),
        ];
        let outer_else = graph("outer_else", vec![inner_if], vec![], &["z"]);
        let mut outer_if = node("If", &["c"], &["y"]);
        outer_if.attribute = vec![
            attr_graph(
                "then_branch",
                graph("outer_then", vec![node("Identity", &["x"], &["o"])], vec![], &["o"]),
            ),
            attr_graph("else_branch", outer_else),
        ];
        let mut m = ModelProto::new();
        m.graph = Some(graph("main", vec![outer_if], vec![init("deep")], &["y"])).into();
        place_constants(&mut m);
        let g = m.graph.as_ref().unwrap();
        assert!(g.initializer.is_empty());
        let inner_else = branch(branch(g, 0, "else_branch"), 0, "else_branch");
        assert_eq!(names(&inner_else.initializer), ["deep"]);
    }

    #[test]
    fn loop_bodies_take_stored_constants_only_and_outputs_stay() {
        let body = graph(
            "body",
            vec![
                node("Mul", &["x", "stored"], &["b1"]),
                node("Mul", &["b1", "computed"], &["b2"]),
            ],
            vec![],
            &["cond", "b2", "returned"],
        );
        let mut lp = node("Loop", &["n", ""], &["y"]);
        lp.attribute = vec![attr_graph("body", body)];
        let mut m = ModelProto::new();
        m.graph = Some(graph(
            "main",
            vec![node("Neg", &["stored2"], &["computed"]), lp],
            vec![init("stored"), init("stored2"), init("returned")],
            &["y"],
        ))
        .into();
        place_constants(&mut m);
        let g = m.graph.as_ref().unwrap();
        // `computed` would be recomputed every iteration; `returned` is a
        // body output by its outer name.
        assert_eq!(names(&g.initializer), ["stored2", "returned"]);
        assert_eq!(g.node[0].op_type(), "Neg");
        assert_eq!(names(&branch(g, 1, "body").initializer), ["stored"]);
    }
}
