//! Cost-guided fusion by equality saturation (egg).
//!
//! A *region* of one graph (an exit's head and decision, or every liftable
//! node of a graph for `eexc optimize`) is lifted into an e-graph, the rules
//! of `passes/` add equivalent forms, and the cheapest form by the cost model
//! is written back. Regions never cross a subgraph boundary: what a branch
//! reads from outer scope is a region input there, and what a subgraph reads
//! from a region is one of the region's outputs, so it keeps its name.
//!
//! A region is only rewritten when a rule fired and the result is cheaper as
//! a graph (the extractor sums costs over trees, which can misjudge shared
//! subterms); otherwise it is left byte for byte as it was.

pub mod analysis;
mod forms;
pub mod lang;
mod region;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use self::analysis::Facts;
use self::region::{Lift, constant_facts, fuse_region, liftable};
use crate::ir::{DimValues, Graph, IrError, Model, NameGenerator};
use crate::onnx::proto::{GraphProto, ModelProto, TensorProto};
use crate::transform::patch::{GraphPatch, ModelPatch};

/// Saturation limits for one region. Iteration and node limits keep the
/// result deterministic; the time limit is a guard against a rule set that
/// explodes, and only a run that hits it can differ from one machine to
/// another (the report says so).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub seconds: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iterations: 32,
            nodes: 50_000,
            seconds: 20.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FuseOptions {
    pub limits: Limits,
    /// Treat the exits' threshold and temperature knobs as constants (and
    /// stop listing them as inputs), so a temperature can fold into weights.
    pub freeze_knobs: bool,
    /// Rule families (`passes/<family>.rules`) to run, or `all`.
    pub families: Vec<String>,
    /// `--dim NAME=VALUE`: symbol values the forms are costed at.
    pub dims: Vec<(String, u64)>,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            limits: Limits::default(),
            freeze_knobs: false,
            families: rules::DEFAULT_FAMILIES.iter().map(|f| f.to_string()).collect(),
            dims: Vec::new(),
        }
    }
}

/// Which nodes form regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regions {
    /// Each exit's head and decision (nodes tagged by insert-exits).
    Exits,
    /// Every liftable node, one region per graph (main graph and each
    /// subgraph).
    Whole,
}

/// Cost-model figures of a region (per sample).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Ops run for every sample.
    pub ops: u64,
    /// Ops that compute only from constants: run once when the runtime
    /// loads the model (ONNX Runtime folds them), free per sample.
    pub load_time_ops: u64,
    pub macs: u64,
    pub flops: u64,
    pub weight_bytes: u64,
    /// Ops the cost model could not count (unknown shapes).
    pub uncosted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    /// `exit 2`, or the graph's path for whole-model regions.
    pub label: String,
    pub before: Tally,
    pub after: Tally,
    /// Whether the region was rewritten.
    pub applied: bool,
    /// Why the saturation stopped, or why the region was kept.
    pub outcome: String,
    /// Rule name → times it fired.
    pub rules: BTreeMap<String, usize>,
    pub iterations: usize,
    pub egraph_nodes: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FuseReport {
    pub regions: Vec<RegionReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("rule set: {0}")]
    Rules(#[from] rules::RuleError),
    #[error(transparent)]
    Dims(#[from] crate::ir::DimError),
    #[error(transparent)]
    Patch(#[from] crate::transform::patch::PatchError),
}

/// The doc_string insert-exits puts on exit `k`'s head and decision nodes:
/// what `Regions::Exits` selects.
pub fn exit_tag(k: impl std::fmt::Display) -> String {
    format!("eexc exit {k} head+decision")
}

fn exit_of_tag(doc: &str) -> Option<&str> {
    doc.strip_prefix("eexc exit ")?.strip_suffix(" head+decision")
}

/// Fuses `model` in place and reports what happened to each region.
/// `knobs`: inputs a caller may feed even where the IR version makes every
/// initializer an input (`exits::knob_names` for an early-exit model); never
/// folded unless frozen.
pub fn fuse_model(
    model: &mut ModelProto,
    target: Regions,
    options: &FuseOptions,
    knobs: &HashSet<String>,
) -> Result<FuseReport, FuseError> {
    let rewrites: Vec<_> = rules::load(&options.families)?.into_iter().map(|r| r.rewrite).collect();
    let mut ir = Model::from_proto(model)?;
    let (_, dims) = crate::analysis::infer_for_costs(&mut ir, &options.dims)?;
    let opset = ir.onnx_opset();
    let modern_ir = model.ir_version() >= 4;
    let graph = model.graph.as_mut().expect("a loaded model has a graph");
    let inputs: HashSet<String> = graph.input.iter().map(|i| i.name().to_string()).collect();
    let mut live: HashSet<String> = if modern_ir {
        graph
            .initializer
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| inputs.contains(n))
            .collect()
    } else {
        HashSet::new()
    };
    if options.freeze_knobs {
        for k in knobs {
            live.remove(k);
        }
    } else {
        live.extend(knobs.iter().cloned());
    }
    let live_after = live.clone();
    let mut ctx = Context {
        target,
        rules: &rewrites,
        limits: options.limits,
        opset,
        dims,
        live,
        names: NameGenerator::for_graph(&ir.graph),
        initializers: Vec::new(),
        possibly_unused: HashSet::new(),
        report: FuseReport::default(),
    };
    walk(graph, &ir.graph, &HashMap::new(), "main", &mut ctx)?;
    let Context {
        initializers,
        possibly_unused,
        mut report,
        ..
    } = ctx;
    // Subgraphs are fused first; report exits in order, graphs outside in.
    report.regions.sort_by_key(|r| {
        let exit: Option<usize> = r.label.strip_prefix("exit ").and_then(|k| k.parse().ok());
        (
            exit.unwrap_or(usize::MAX),
            r.label.matches('/').count(),
            r.label.clone(),
        )
    });
    let mut patch = ModelPatch::new();
    if options.freeze_knobs && modern_ir {
        // Frozen knobs are constants: no longer inputs a caller feeds.
        patch.main.remove_inputs(knobs.iter().cloned());
    }
    patch.main.add_initializers(initializers);
    patch
        .main
        .drop_if_unread(possibly_unused.difference(&live_after).cloned());
    patch.apply(model)?;
    Ok(report)
}

struct Context<'r> {
    target: Regions,
    rules: &'r [egg::Rewrite<lang::Term, analysis::FuseAnalysis>],
    limits: Limits,
    opset: i64,
    dims: DimValues,
    /// Initializers a caller may feed: never folded.
    live: HashSet<String>,
    names: NameGenerator,
    initializers: Vec<TensorProto>,
    possibly_unused: HashSet<String>,
    report: FuseReport,
}

/// Fuses the subgraphs of `graph`, then `graph` itself.
fn walk(
    graph: &mut GraphProto,
    ir: &Graph,
    outer: &HashMap<String, Facts>,
    path: &str,
    ctx: &mut Context,
) -> Result<(), FuseError> {
    let mut facts = outer.clone();
    for v in &ir.values {
        if matches!(v.kind, crate::ir::ValueKind::OuterScope) {
            continue;
        }
        facts.insert(
            v.name.clone(),
            Facts {
                ty: v.ty.clone(),
                folded: v.folded.clone(),
                constant: v.is_constant && !ctx.live.contains(&v.name),
                ..Default::default()
            },
        );
    }
    for t in &graph.initializer {
        if !ctx.live.contains(t.name()) {
            facts.insert(t.name().to_string(), constant_facts(t));
        }
    }
    for (i, node) in graph.node.iter_mut().enumerate() {
        let node_name = node.name().to_string();
        for a in &mut node.attribute {
            let attr_name = a.name().to_string();
            let Some(sub_ir) = ir
                .nodes
                .get(i)
                .and_then(|n| n.subgraphs.iter().find(|s| s.attribute == attr_name))
            else {
                continue;
            };
            if let Some(g) = a.g.as_mut() {
                let sub_path = format!("{path}/{node_name}.{attr_name}");
                walk(g, &sub_ir.graph, &facts, &sub_path, ctx)?;
            }
        }
    }
    let outer_names: HashSet<String> = outer.keys().cloned().collect();
    fuse_level(graph, &facts, &outer_names, path, ctx)
}

/// `outer_names`: what the enclosing scopes define (a name fusion adds must
/// not shadow one).
fn fuse_level(
    graph: &mut GraphProto,
    facts: &HashMap<String, Facts>,
    outer_names: &HashSet<String>,
    path: &str,
    ctx: &mut Context,
) -> Result<(), FuseError> {
    // Regions are disjoint and rewriting one leaves the others' nodes as they
    // are, but it moves their indices: members are kept by output name.
    for (label, outputs) in region_members(graph, facts, path, ctx) {
        let index: HashMap<&str, usize> = graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.output.first().map(|o| (o.as_str(), i)))
            .collect();
        let mut members: Vec<usize> = outputs.iter().filter_map(|o| index.get(o.as_str()).copied()).collect();
        members.sort_unstable();
        fuse_one(graph, facts, outer_names, label, members, ctx)?;
    }
    Ok(())
}

/// Region label → the first outputs of its liftable nodes, in graph order.
fn region_members(
    graph: &GraphProto,
    facts: &HashMap<String, Facts>,
    path: &str,
    ctx: &Context,
) -> BTreeMap<String, Vec<String>> {
    let mut read_anywhere: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for n in &graph.node {
        crate::onnx::names_read(n, &mut read_anywhere);
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &graph.node {
        // A node without outputs computes nothing a region could use.
        let Some(first) = n.output.first() else { continue };
        // A Constant that is a graph output must stay a node of this graph
        // (lifted, it would come back as an initializer of the main graph).
        let constant_output = n.op_type() == "Constant" && graph.output.iter().any(|o| o.name() == first);
        if constant_output || !liftable(n, &|o| read_anywhere.contains(o), facts, ctx.opset) {
            continue;
        }
        let label = match ctx.target {
            Regions::Whole => Some(path.to_string()),
            Regions::Exits => exit_of_tag(n.doc_string()).map(|k| format!("exit {k}")),
        };
        if let Some(label) = label {
            groups.entry(label).or_default().push(first.clone());
        }
    }
    groups
}

fn fuse_one(
    graph: &mut GraphProto,
    facts: &HashMap<String, Facts>,
    outer_names: &HashSet<String>,
    label: String,
    members: Vec<usize>,
    ctx: &mut Context,
) -> Result<(), FuseError> {
    let member_set: HashSet<usize> = members.iter().copied().collect();
    let mut read_outside: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    for (i, n) in graph.node.iter().enumerate() {
        if !member_set.contains(&i) {
            crate::onnx::names_read(n, &mut read_outside);
        }
    }
    let produced: Vec<String> = members.iter().map(|&i| graph.node[i].output[0].clone()).collect();
    let outputs: Vec<String> = produced.iter().filter(|o| read_outside.contains(*o)).cloned().collect();
    let lift = Lift {
        nodes: members.iter().map(|&i| &graph.node[i]).collect(),
        facts,
        outputs,
        opset: ctx.opset,
        dims: &ctx.dims,
    };
    let prefix = match label.strip_prefix("exit ") {
        Some("loop") => "eexc_loop".to_string(),
        Some(k) => format!("eexc_exit{k}"),
        None => "eexc".to_string(),
    };
    // New nodes of an exit carry its tag, so a later pass still finds them.
    let tag = match ctx.target {
        Regions::Exits => exit_tag(label.strip_prefix("exit ").unwrap_or_default()),
        Regions::Whole => String::new(),
    };
    let Some(lowered) = fuse_region(&lift, ctx.rules, &ctx.limits, &mut ctx.names, &prefix) else {
        return Ok(());
    };
    let applied = !lowered.fired.is_empty() && lowered.after < lowered.before;
    let outcome = match (applied, lowered.fired.is_empty()) {
        (true, _) => lowered.stop.clone(),
        (false, true) if lowered.saturated => "no rule applies".to_string(),
        (false, true) => format!("{}; nothing rewritten", lowered.stop),
        (false, false) => format!("kept the original: no cheaper form found ({})", lowered.stop),
    };
    ctx.report.regions.push(RegionReport {
        label,
        before: region::tally(lowered.before),
        after: region::tally(if applied { lowered.after } else { lowered.before }),
        applied,
        outcome,
        rules: lowered.fired.clone(),
        iterations: lowered.iterations,
        egraph_nodes: lowered.egraph_nodes,
    });
    if !applied {
        return Ok(());
    }
    for &i in &members {
        ctx.possibly_unused.extend(graph.node[i].input.iter().cloned());
    }
    let mut new_nodes = lowered.nodes;
    for n in &mut new_nodes {
        n.set_doc_string(tag.clone());
    }
    let mut patch = GraphPatch::new();
    for &i in &members {
        patch.remove_node(i);
    }
    // The new nodes where the region began; the patch restores a dependency
    // order, keeping the file order wherever dependencies allow.
    patch.insert_before(members.first().copied().unwrap_or(0), new_nodes);
    patch.apply(graph, outer_names)?;
    ctx.initializers.extend(lowered.initializers);
    Ok(())
}

impl FuseReport {
    /// One row per region: before → after for each figure, then what ran.
    pub fn to_text(&self) -> String {
        use crate::report::table::{bytes, render, si};
        let pair = |a: u64, b: u64, f: &dyn Fn(u64) -> String| {
            let sign = if b < a { "−" } else { "+" };
            if a == b {
                f(a)
            } else if f(a) == f(b) {
                // Too small a change to show in rounded figures: show it.
                format!("{} ({sign}{})", f(b), f(a.abs_diff(b)))
            } else {
                format!("{} → {}", f(a), f(b))
            }
        };
        let rows: Vec<Vec<String>> = self
            .regions
            .iter()
            .map(|r| {
                let rules: Vec<String> = r.rules.iter().map(|(n, c)| format!("{n}×{c}")).collect();
                vec![
                    r.label.clone(),
                    pair(r.before.ops, r.after.ops, &|v| v.to_string()),
                    pair(r.before.load_time_ops, r.after.load_time_ops, &|v| v.to_string()),
                    pair(r.before.macs, r.after.macs, &si),
                    pair(r.before.flops, r.after.flops, &si),
                    pair(r.before.weight_bytes, r.after.weight_bytes, &bytes),
                    if r.applied { "fused".into() } else { "unchanged".into() },
                    r.outcome.clone(),
                    rules.join(" "),
                ]
            })
            .collect();
        if rows.is_empty() {
            return "fusion: no region to fuse\n".into();
        }
        render(
            &[
                "region",
                "ops",
                "load-time ops",
                "MACs",
                "FLOPs",
                "weights",
                "result",
                "saturation",
                "rules fired",
            ],
            &rows,
            &[1, 2, 3, 4, 5],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Dim, TensorType};
    use crate::onnx::dtype::ElemType;
    use crate::transform::builder::{GraphBuilder, attr_int, attr_ints, type_proto, value_info};

    /// A one-graph model: `x` (float, `shape`) in, `build` adds nodes and
    /// returns the output name.
    fn model(opset: i64, shape: &[i64], build: impl FnOnce(&mut GraphBuilder) -> String) -> ModelProto {
        let mut b = GraphBuilder::new(NameGenerator::default(), opset);
        let y = build(&mut b);
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Known(d)).collect();
        let mut g = GraphProto::new();
        g.set_name("t".into());
        g.input
            .push(value_info("x", type_proto(&TensorType::new(ElemType::FLOAT, dims))));
        g.output.push(value_info(
            &y,
            type_proto(&TensorType {
                elem: ElemType::FLOAT,
                shape: None,
            }),
        ));
        g.initializer = b.take_initializers();
        g.node = b.into_nodes();
        let mut m = ModelProto::new();
        m.set_ir_version(8);
        let mut op = crate::onnx::proto::OperatorSetIdProto::new();
        op.set_version(opset);
        m.opset_import.push(op);
        m.graph = Some(g).into();
        m
    }

    fn ops(m: &ModelProto) -> Vec<String> {
        m.graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type().to_string())
            .collect()
    }

    fn fuse(m: &mut ModelProto, families: &[&str]) -> FuseReport {
        let options = FuseOptions {
            families: families.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        };
        fuse_model(m, Regions::Whole, &options, &HashSet::new()).unwrap()
    }

    #[test]
    fn identity_goes_and_the_output_keeps_its_name() {
        let mut m = model(17, &[2, 3], |b| {
            let i = b.op("Identity", "i", &["x"], vec![]);
            b.op("Relu", "y", &[&i], vec![])
        });
        let report = fuse(&mut m, &["layout"]);
        assert_eq!(ops(&m), ["Relu"]);
        let g = m.graph.as_ref().unwrap();
        assert_eq!(g.node[0].input, ["x"]);
        assert_eq!(g.node[0].output[0], g.output[0].name());
        assert_eq!(report.regions[0].rules["identity"], 1);
        assert_eq!((report.regions[0].before.ops, report.regions[0].after.ops), (2, 1));
    }

    #[test]
    fn a_node_the_bundle_cannot_hold_stays_and_the_rest_still_fuses() {
        // Constant's value_float form is not lifted; it becomes a region input.
        let mut m = model(17, &[2, 3], |b| {
            let mut c = crate::onnx::proto::AttributeProto::new();
            c.set_name("value_float".into());
            c.set_type(crate::onnx::proto::attribute_proto::AttributeType::FLOAT);
            c.set_f(2.0);
            let two = b.op("Constant", "two", &[], vec![c]);
            let i = b.op("Identity", "i", &["x"], vec![]);
            b.op("Mul", "y", &[&i, &two], vec![])
        });
        let report = fuse(&mut m, &["layout"]);
        assert_eq!(ops(&m), ["Constant", "Mul"], "{report:?}");
    }

    #[test]
    fn a_constant_that_is_a_graph_output_stays_a_node() {
        let mut m = model(17, &[2], |b| {
            let value = crate::transform::builder::tensor_f32("", &[2], &[1.0, 2.0]);
            let c = b.op(
                "Constant",
                "c",
                &[],
                vec![crate::transform::builder::attr_tensor("value", value)],
            );
            let i = b.op("Identity", "i", &["x"], vec![]);
            b.op("Add", "y", &[&i, &c], vec![])
        });
        let g = m.graph.as_mut().unwrap();
        let c = g.node[0].output[0].clone();
        g.output.push(value_info(
            &c,
            type_proto(&TensorType::new(ElemType::FLOAT, vec![Dim::Known(2)])),
        ));
        fuse(&mut m, &["layout"]);
        assert_eq!(ops(&m), ["Constant", "Add"]);
    }

    #[test]
    fn an_identity_that_is_the_graph_output_stays() {
        // Removing it would leave the output without a producer.
        let mut m = model(17, &[2, 3], |b| b.op("Identity", "y", &["x"], vec![]));
        let report = fuse(&mut m, &["layout"]);
        assert_eq!(ops(&m), ["Identity"]);
        assert!(!report.regions[0].applied, "{report:?}");
    }

    /// `Gemm(x, w, bias) / t` with constant w = [[1, 2], [3, 4]],
    /// bias = [0.5, −0.5] and t = 2.
    fn scaled_head() -> ModelProto {
        model(17, &[1, 2], |b| {
            let w = b.const_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
            let bias = b.const_f32("bias", &[2], &[0.5, -0.5]);
            let t = b.const_f32("t", &[], &[2.0]);
            let z = b.op("Gemm", "z", &["x", &w, &bias], vec![attr_int("transB", 1)]);
            b.op("Div", "y", &[&z, &t], vec![])
        })
    }

    #[test]
    fn a_constant_temperature_folds_into_the_weights() {
        let mut m = scaled_head();
        fuse(&mut m, &["temperature"]);
        assert_eq!(ops(&m), ["Gemm"]);
        let g = m.graph.as_ref().unwrap();
        let folded: Vec<Vec<f32>> = g.node[0].input[1..]
            .iter()
            .map(|n| crate::ir::constant::decode_f32(g.initializer.iter().find(|t| t.name() == n).unwrap()).unwrap())
            .collect();
        assert_eq!(folded, [vec![0.5, 1.0, 1.5, 2.0], vec![0.25, -0.25]]);
        // The old weights are no longer read, so they are gone.
        assert!(g.initializer.iter().all(|t| t.name() != "w" && t.name() != "t"));
    }

    #[test]
    fn a_live_temperature_does_not_fold() {
        let mut m = scaled_head();
        // `t` becomes an input with a default: a caller may feed it.
        let g = m.graph.as_mut().unwrap();
        g.input
            .push(value_info("t", type_proto(&TensorType::new(ElemType::FLOAT, vec![]))));
        fuse(&mut m, &["temperature"]);
        assert_eq!(ops(&m), ["Gemm", "Div"]);
    }

    #[test]
    fn axes_in_either_opset_form_match_one_rule_and_are_written_back_in_the_models_form() {
        for opset in [11, 13] {
            let mut m = model(opset, &[2, 3], |b| {
                let u = b.unsqueeze("u", "x", &[1]);
                let s = if opset < 13 {
                    b.op("Squeeze", "s", &[&u], vec![attr_ints("axes", &[1])])
                } else {
                    let a = b.const_i64("a", &[1], &[1]);
                    b.op("Squeeze", "s", &[&u, &a], vec![])
                };
                b.op("Relu", "y", &[&s], vec![])
            });
            let report = fuse(&mut m, &["layout"]);
            assert_eq!(ops(&m), ["Relu"], "opset {opset}: {report:?}");
        }
        // Reductions written back for opset 18 take their axes as an input.
        let mut m = model(18, &[2, 3, 4, 4], |b| {
            let p = b.op("GlobalAveragePool", "p", &["x"], vec![]);
            b.op("Flatten", "y", &[&p], vec![attr_int("axis", 1)])
        });
        fuse(&mut m, &["layout"]);
        let g = m.graph.as_ref().unwrap();
        assert_eq!(ops(&m), ["ReduceMean"]);
        assert_eq!(g.node[0].input.len(), 2);
        assert!(g.node[0].attribute.iter().all(|a| a.name() != "axes"));
    }

    #[test]
    fn the_extractor_counts_a_shared_value_once() {
        // With the decision family, max-softmax becomes exp(max − lse), which
        // reads the logits twice; summing over trees would charge the Gemm
        // twice and keep the Softmax.
        let mut m = model(17, &[1, 8], |b| {
            let w = b.const_f32("w", &[10, 8], &[0.1; 80]);
            let z = b.op("Gemm", "z", &["x", &w], vec![attr_int("transB", 1)]);
            let p = b.op("Softmax", "p", &[&z], vec![attr_int("axis", 1)]);
            b.reduce("ReduceMax", "y", &p, &[1], false)
        });
        let report = fuse(&mut m, &["decision"]);
        assert!(report.regions[0].applied, "{report:?}");
        assert_eq!(ops(&m), ["Gemm", "ReduceMax", "ReduceLogSumExp", "Sub", "Exp"]);
    }
}
