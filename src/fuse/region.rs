//! One region: lift its nodes into an e-graph, saturate, extract the
//! cheapest form by the cost model, and lower it back to ONNX nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use std::rc::Rc;

use egg::{Id, Language, Rewrite, Runner, StopReason};

use super::analysis::{FOLDED_PREFIX, Facts, FuseAnalysis, FuseGraph, infer_node, ir_node, is_random};
use super::forms::{canonical, onnx_form};
use super::lang::{Kind, Literal, Term};
use super::{Limits, Tally};
use crate::analysis::cost::{CostStatus, ValueFacts, node_cost_with};
use crate::ir::{DimValues, NameGenerator, TensorType, ValueId};
use crate::onnx::proto::{NodeProto, TensorProto};
use crate::transform::builder::{tensor_f32, tensor_i64, tensor_raw};

/// What extraction minimises, compared field by field in this order (the
/// derived order): nodes the cost model cannot count, MACs, FLOPs, weight
/// bytes read, nodes run per sample, nodes run once at load time (constant
/// arithmetic the runtime folds). FLOPs come right after MACs because the
/// decision rewrites save element-wise work only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ExtractionCost {
    pub uncosted: u64,
    pub macs: u64,
    pub flops: u64,
    pub weight_bytes: u64,
    pub ops: u64,
    pub load_time_ops: u64,
}

const NEVER: u64 = u64::MAX / 8;
/// A form extraction never picks (the attribute helper, a node the shape
/// rules reject).
const INFINITE: ExtractionCost = ExtractionCost {
    uncosted: NEVER,
    macs: NEVER,
    flops: NEVER,
    weight_bytes: NEVER,
    ops: NEVER,
    load_time_ops: NEVER,
};
/// One more node run per sample (an Identity the lowering adds).
const ONE_OP: ExtractionCost = ExtractionCost {
    uncosted: 0,
    macs: 0,
    flops: 0,
    weight_bytes: 0,
    ops: 1,
    load_time_ops: 0,
};

fn add(a: ExtractionCost, b: ExtractionCost) -> ExtractionCost {
    ExtractionCost {
        uncosted: a.uncosted.saturating_add(b.uncosted),
        macs: a.macs.saturating_add(b.macs),
        flops: a.flops.saturating_add(b.flops),
        weight_bytes: a.weight_bytes.saturating_add(b.weight_bytes),
        ops: a.ops.saturating_add(b.ops),
        load_time_ops: a.load_time_ops.saturating_add(b.load_time_ops),
    }
}

pub fn tally(c: ExtractionCost) -> Tally {
    Tally {
        ops: c.ops,
        load_time_ops: c.load_time_ops,
        macs: c.macs,
        flops: c.flops,
        weight_bytes: c.weight_bytes,
        uncosted: c.uncosted,
    }
}

/// What the region is lifted from: one graph's nodes, the facts of every
/// tensor visible there, and the names the region must still produce.
pub struct Lift<'a> {
    pub nodes: Vec<&'a NodeProto>,
    pub facts: &'a HashMap<String, Facts>,
    /// Tensors produced by the region that something outside it reads.
    pub outputs: Vec<String>,
    pub opset: i64,
    /// Symbol values the candidate forms are costed at.
    pub dims: &'a DimValues,
}

/// The region rewritten: new nodes (in dependency order), initializers they
/// need, and the figures for the report.
pub struct Lowered {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    pub before: ExtractionCost,
    pub after: ExtractionCost,
    /// Why saturation stopped, in words.
    pub stop: String,
    /// It stopped because no rule could add anything (not at a limit).
    pub saturated: bool,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub fired: BTreeMap<String, usize>,
}

/// Whether `node` can go into an e-graph: a standard op with one used
/// output, no subgraph, deterministic, and attributes a bundle can hold
/// (`facts` gives ranks and constant axes for the canonical form).
pub fn liftable(
    node: &NodeProto,
    read_anywhere: &dyn Fn(&str) -> bool,
    facts: &HashMap<String, Facts>,
    opset: i64,
) -> bool {
    let standard = node.domain().is_empty() || node.domain() == "ai.onnx";
    if !standard || node.output.is_empty() || node.output[0].is_empty() {
        return false;
    }
    if node.op_type() == "Constant" {
        // Only the tensor form; value_float, value_ints, ... stay as they are.
        return node.output.len() == 1 && node.attribute.iter().any(|a| a.name() == "value" && a.t.is_some());
    }
    let no_graphs = node.attribute.iter().all(|a| a.g.is_none() && a.graphs.is_empty());
    let first_output_only = node.output.iter().skip(1).all(|o| o.is_empty() || !read_anywhere(o));
    let rank = |n: &str| facts.get(n).and_then(|f| f.ty.as_ref()).and_then(|t| t.rank());
    let ints = |n: &str| facts.get(n).and_then(Facts::ints);
    no_graphs
        && first_output_only
        && !is_random(node.op_type())
        && !matches!(node.op_type(), "If" | "Loop" | "Scan" | "ConstantOfShape")
        && canonical(node, opset, &rank, &ints).is_some()
}

struct Lifted {
    egraph: FuseGraph,
    /// The original e-nodes and their classes, for the cost before fusion.
    originals: Vec<(Id, Term)>,
    /// Names each class had in the original graph, in lift order.
    names: Vec<(Id, String)>,
    outputs: Vec<(Id, String)>,
    /// Constant nodes lifted as leaves, written back as initializers if used.
    constant_nodes: HashMap<String, TensorProto>,
}

fn lift(region: &Lift) -> Option<Lifted> {
    let mut egraph = FuseGraph::new(FuseAnalysis::new(region.opset, region.dims.clone()));
    let mut ids: HashMap<String, Id> = HashMap::new();
    let mut originals = Vec::new();
    let mut names = Vec::new();
    let mut constant_nodes = HashMap::new();
    for node in &region.nodes {
        let out = node.output[0].clone();
        if node.op_type() == "Constant" {
            let tensor = node
                .attribute
                .iter()
                .find(|a| a.name() == "value")?
                .t
                .clone()
                .into_option()?;
            let mut facts = constant_facts(&tensor);
            facts.constant = true;
            egraph.analysis.leaves.insert(out.clone(), facts);
            let id = egraph.add(Term::leaf(&format!("#{out}")));
            constant_nodes.insert(out.clone(), tensor);
            ids.insert(out, id);
            continue;
        }
        let rank = |n: &str| leaf_or_class(&egraph, &ids, region.facts, n).ty.and_then(|t| t.rank());
        let ints = |n: &str| leaf_or_class(&egraph, &ids, region.facts, n).ints();
        let c = canonical(node, region.opset, &rank, &ints)?;
        let mut children = Vec::with_capacity(c.inputs.len() + 1);
        for input in &c.inputs {
            let id = match input {
                None => egraph.add(Term::leaf("_")),
                Some(name) => match ids.get(name) {
                    Some(&id) => id,
                    None => {
                        let facts = region.facts.get(name).cloned().unwrap_or_default();
                        let prefix = if facts.data.is_some() { '#' } else { '%' };
                        egraph.analysis.leaves.insert(name.clone(), facts);
                        let id = egraph.add(Term::leaf(&format!("{prefix}{name}")));
                        ids.insert(name.clone(), id);
                        id
                    }
                },
            };
            children.push(id);
        }
        children.push(egraph.add(Term::leaf(&c.attrs.encode())));
        let term = Term::new(&c.op, children);
        let id = egraph.add(term.clone());
        originals.push((id, term));
        names.push((id, out.clone()));
        ids.insert(out, id);
    }
    let outputs = region
        .outputs
        .iter()
        .filter_map(|o| ids.get(o).map(|&id| (id, o.clone())))
        .collect();
    Some(Lifted {
        egraph,
        originals,
        names,
        outputs,
        constant_nodes,
    })
}

fn leaf_or_class(egraph: &FuseGraph, ids: &HashMap<String, Id>, facts: &HashMap<String, Facts>, name: &str) -> Facts {
    match ids.get(name) {
        Some(&id) => egraph[id].data.clone(),
        None => facts.get(name).cloned().unwrap_or_default(),
    }
}

/// Facts of a stored constant (initializer or Constant value).
pub fn constant_facts(t: &TensorProto) -> Facts {
    let ty = crate::ir::constant::tensor_type(t);
    let data = match ty.num_elements() {
        Some(n) if n <= 1 << 24 => super::analysis::ConstData::of_tensor(t),
        _ => None,
    };
    Facts {
        folded: crate::ir::constant::decode(t),
        ty: Some(ty),
        constant: true,
        data,
        ..Default::default()
    }
}

/// Lifts, saturates, extracts and lowers one region. `None` when it cannot
/// be lifted or no rule fired (the region is then left exactly as it was).
pub fn fuse_region(
    region: &Lift,
    rules: &[Rewrite<Term, FuseAnalysis>],
    limits: &Limits,
    names: &mut NameGenerator,
    prefix: &str,
) -> Option<Lowered> {
    let lifted = lift(region)?;
    let mut runner = Runner::default()
        .with_egraph(lifted.egraph)
        .with_iter_limit(limits.iterations)
        .with_node_limit(limits.nodes)
        .with_time_limit(Duration::from_secs_f64(limits.seconds))
        .run(rules);
    runner.egraph.rebuild();
    let mut fired = BTreeMap::new();
    for it in &runner.iterations {
        for (rule, n) in &it.applied {
            *fired.entry(rule.to_string()).or_insert(0) += n;
        }
    }
    let stop = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n}) hit: best so far used"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n}) hit: best so far used"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s:.1} s) hit: best so far used"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "stopped".to_string(),
    };
    let egraph = &runner.egraph;
    let extractor = DagExtractor::new(egraph);
    // A region whose own nodes the shape rules reject (a malformed model)
    // has no costed form: it is left as it is.
    if lifted
        .outputs
        .iter()
        .any(|(id, _)| !extractor.best.contains_key(&egraph.find(*id)))
    {
        return None;
    }
    let before = lifted
        .originals
        .iter()
        .fold(ExtractionCost::default(), |acc, (id, term)| {
            let canon = term.clone().map_children(|c| egraph.find(c));
            add(acc, node_cost(egraph, egraph.find(*id), &canon))
        });
    let mut lower = Lower {
        egraph,
        extractor: &extractor,
        opset: region.opset,
        names,
        prefix,
        emitted: HashMap::new(),
        reserved: HashMap::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        constant_nodes: &lifted.constant_nodes,
        node_names: region
            .nodes
            .iter()
            .map(|n| (n.output[0].clone(), (n.name().to_string(), n.op_type().to_string())))
            .filter(|(_, (n, _))| !n.is_empty())
            .collect(),
        after: ExtractionCost::default(),
    };
    // Outputs keep their names; other classes reuse an original name.
    for (id, name) in &lifted.outputs {
        lower.reserved.entry(egraph.find(*id)).or_insert_with(|| name.clone());
    }
    let output_names: HashSet<&String> = lifted.outputs.iter().map(|(_, n)| n).collect();
    for (id, name) in &lifted.names {
        if !output_names.contains(name) {
            lower.reserved.entry(egraph.find(*id)).or_insert_with(|| name.clone());
        }
    }
    for (id, name) in &lifted.outputs {
        let t = lower.tensor(*id);
        if &t != name {
            // Two outputs of one value, or an output that is now a region
            // input or constant: the graph still needs a node producing it.
            lower.push("Identity", vec![t], name.clone(), Vec::new());
            lower.after = add(lower.after, ONE_OP);
        }
    }
    let after = lower.after;
    let (nodes, initializers) = (lower.nodes, lower.initializers);
    Some(Lowered {
        nodes,
        initializers,
        before,
        after,
        saturated: matches!(runner.stop_reason, Some(StopReason::Saturated)),
        stop,
        iterations: runner.iterations.len(),
        egraph_nodes: egraph.total_number_of_nodes(),
        fired,
    })
}

/// Picks one e-node per class so that the *graph* is cheapest: a class's
/// cost is the sum over the set of classes its choice needs, each counted
/// once (a greedy DAG extraction). Summing over trees instead would charge a
/// shared input — the head's Gemm under both ReduceMax and ReduceLogSumExp —
/// once per use and never pick the forms that share.
struct DagExtractor {
    best: HashMap<Id, Choice>,
}

struct Choice {
    total: ExtractionCost,
    /// Every class the choice needs, with its own cost.
    needs: Rc<BTreeMap<Id, ExtractionCost>>,
    node: Term,
    /// The chosen node's own cost.
    own: ExtractionCost,
}

impl DagExtractor {
    fn new(egraph: &FuseGraph) -> DagExtractor {
        let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        classes.sort_unstable();
        // Each node's own cost, once: the passes below revisit every node.
        let own: HashMap<Id, Vec<ExtractionCost>> = classes
            .iter()
            .map(|&id| (id, egraph[id].nodes.iter().map(|n| node_cost(egraph, id, n)).collect()))
            .collect();
        let mut best: HashMap<Id, Choice> = HashMap::new();
        // Passes until nothing improves; each pass can only lower a total,
        // so this ends (bounded as a guard against pathological graphs).
        for _ in 0..1000 {
            let mut changed = false;
            for &id in &classes {
                for (node, &cost) in egraph[id].nodes.iter().zip(&own[&id]) {
                    let Some(candidate) = Self::evaluate(egraph, &best, id, node, cost) else {
                        continue;
                    };
                    if best.get(&id).is_none_or(|b| candidate.total < b.total) {
                        best.insert(id, candidate);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        DagExtractor { best }
    }

    fn evaluate(
        egraph: &FuseGraph,
        best: &HashMap<Id, Choice>,
        id: Id,
        node: &Term,
        own: ExtractionCost,
    ) -> Option<Choice> {
        if own == INFINITE {
            return None;
        }
        let mut needs: BTreeMap<Id, ExtractionCost> = BTreeMap::new();
        for &c in &node.children {
            let child = best.get(&egraph.find(c))?;
            if child.needs.contains_key(&id) {
                return None; // a cycle through this class
            }
            if needs.is_empty() {
                needs = (*child.needs).clone();
            } else {
                needs.extend(child.needs.iter().map(|(k, v)| (*k, *v)));
            }
        }
        needs.insert(id, own);
        let total = needs.values().fold(ExtractionCost::default(), |acc, &c| add(acc, c));
        Some(Choice {
            total,
            needs: Rc::new(needs),
            node: node.clone(),
            own,
        })
    }

    fn best(&self, id: Id) -> &Choice {
        &self.best[&id]
    }
}

/// The cost model's figures for one e-node of `class` (leaves are free; the
/// `attr` helper and nodes the shape rules reject are never chosen).
fn node_cost(egraph: &FuseGraph, class: Id, enode: &Term) -> ExtractionCost {
    let Kind::Op(op) = enode.kind() else {
        return match enode.kind() {
            Kind::AttrHelper => INFINITE,
            _ => ExtractionCost::default(),
        };
    };
    let (inputs, bundle) = enode.children.split_at(enode.children.len() - 1);
    let Some(attrs) = egraph[bundle[0]].data.attrs.clone() else {
        return INFINITE;
    };
    let facts: Vec<&Facts> = inputs.iter().map(|&c| &egraph[c].data).collect();
    if infer_node(op, &attrs, &facts, egraph.analysis.opset).invalid {
        return INFINITE;
    }
    let present: Vec<bool> = facts.iter().map(|f| !f.absent).collect();
    let (node, list) = ir_node(op, &attrs, inputs.len(), &present, egraph.analysis.opset);
    let list_ty = list.map(|v| TensorType::known_dims(crate::onnx::dtype::ElemType::INT64, &[v.len() as i64]));
    let out = &egraph[class].data;
    let n = inputs.len();
    let value = |v: ValueId| -> ValueFacts<'_> {
        match v.0 {
            i if i < n => ValueFacts {
                ty: facts[i].ty.as_ref(),
                is_constant: facts[i].constant,
                stored: None,
            },
            i if i == n => ValueFacts {
                ty: list_ty.as_ref(),
                is_constant: true,
                stored: None,
            },
            _ => ValueFacts {
                ty: out.ty.as_ref(),
                is_constant: out.constant,
                stored: None,
            },
        }
    };
    let c = node_cost_with(&node, &value, &egraph.analysis.dims);
    match c.status {
        CostStatus::Counted => ExtractionCost {
            macs: c.cost.macs,
            flops: c.cost.flops,
            weight_bytes: c.cost.weight_bytes,
            ops: 1,
            ..ExtractionCost::default()
        },
        CostStatus::Constant => ExtractionCost {
            load_time_ops: 1,
            ..ExtractionCost::default()
        },
        CostStatus::NoRule | CostStatus::UnknownShape => ExtractionCost {
            uncosted: 1,
            weight_bytes: c.cost.weight_bytes,
            ops: 1,
            ..ExtractionCost::default()
        },
    }
}

struct Lower<'a, 'n> {
    egraph: &'a FuseGraph,
    extractor: &'a DagExtractor,
    opset: i64,
    names: &'n mut NameGenerator,
    prefix: &'n str,
    emitted: HashMap<Id, String>,
    /// Name each class gets when it is emitted by a node.
    reserved: HashMap<Id, String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    constant_nodes: &'a HashMap<String, TensorProto>,
    /// Original node names by output: a node that keeps its output's name
    /// keeps its own name too (the original node is gone).
    node_names: HashMap<String, (String, String)>,
    after: ExtractionCost,
}

impl Lower<'_, '_> {
    /// The tensor holding class `id`, emitting what it needs first.
    fn tensor(&mut self, id: Id) -> String {
        let id = self.egraph.find(id);
        if let Some(name) = self.emitted.get(&id) {
            return name.clone();
        }
        let choice = self.extractor.best(id);
        let (node, own) = (choice.node.clone(), choice.own);
        let name = match node.kind() {
            Kind::Input(name) => name.to_string(),
            Kind::Absent => String::new(),
            Kind::Const(name) if name.starts_with(FOLDED_PREFIX) => {
                let facts = &self.egraph.analysis.leaves[name];
                let dims = facts.static_dims().unwrap_or_default();
                let data = facts.data.as_ref().expect("folded constants have data");
                let fresh = self.names.fresh(&format!("{}_folded", self.prefix));
                self.initializers.push(tensor_raw(&fresh, 1, &dims, data.to_le_bytes()));
                fresh
            }
            Kind::Const(name) => {
                if let Some(t) = self.constant_nodes.get(name) {
                    let mut t = t.clone();
                    t.set_name(name.to_string());
                    self.initializers.push(t);
                }
                name.to_string()
            }
            Kind::Literal(text) => {
                let fresh = self.names.fresh(&format!("{}_literal", self.prefix));
                self.initializers
                    .push(match Literal::parse(text).expect("rule literals parse") {
                        Literal::Ints { dims, values } => tensor_i64(&fresh, &dims, &values),
                        Literal::Floats { dims, values } => tensor_f32(&fresh, &dims, &values),
                    });
                fresh
            }
            Kind::Op(op) => {
                let (inputs, bundle) = node.children.split_at(node.children.len() - 1);
                let inputs: Vec<String> = inputs.iter().map(|&c| self.tensor(c)).collect();
                let attrs = self.egraph[bundle[0]].data.attrs.clone().expect("ops carry a bundle");
                let form = onnx_form(op, &attrs, self.opset);
                let mut inputs = inputs;
                while inputs.last().is_some_and(String::is_empty) {
                    inputs.pop();
                }
                if let Some(list) = form.list_input {
                    let axes = self.names.fresh(&format!("{}_axes", self.prefix));
                    self.initializers.push(tensor_i64(&axes, &[list.len() as i64], &list));
                    inputs.push(axes);
                }
                let out = match self.reserved.get(&id) {
                    Some(n) if !self.emitted.values().any(|e| e == n) => n.clone(),
                    _ => self.names.fresh(&format!("{}_{}", self.prefix, op.to_lowercase())),
                };
                self.after = add(self.after, own);
                self.push(op, inputs, out.clone(), form.attributes);
                out
            }
            Kind::Bundle(_) | Kind::Word(_) | Kind::AttrHelper => {
                unreachable!("bundles, words and folded helpers are never extracted as values")
            }
        };
        self.emitted.insert(id, name.clone());
        name
    }

    fn push(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        output: String,
        attributes: Vec<crate::onnx::proto::AttributeProto>,
    ) {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        let name = match self.node_names.remove(&output) {
            Some((original, original_op)) if original_op == op => original,
            _ => self.names.fresh(&format!("{output}_{op}")),
        };
        n.set_name(name);
        n.input = inputs;
        n.output = vec![output];
        // TopK's indices are not optional in the schema: name a spare.
        if op == "TopK" {
            let spare = self.names.fresh(&format!("{}_indices", n.output[0]));
            n.output.push(spare);
        }
        n.attribute = attributes;
        self.nodes.push(n);
    }
}
