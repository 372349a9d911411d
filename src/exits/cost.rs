//! Cost of an early-exit model (DESIGN.md "Cost model"): per exit, the stage
//! of the original network it needs, its head and its decision; under an
//! exit distribution p, E[cost] = Σ_k p_k · C_k + (1 − Σ p) · C_full, where
//! C_k = Σ_{j≤k} (stage_j + head_j + decide_j) and C_full pays every head.

use serde::{Deserialize, Serialize};

use super::emit::EmitContext;
use super::time::{Dispatch, DispatchCounter, DispatchTable, RuntimeProfile, TimeEstimate};
use super::{ExitError, ExitOptions};
use crate::analysis::cost::{CostStatus, graph_cost};
use crate::ir::Model;

/// MACs, FLOPs and weight bytes of a part of the model, per sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub macs: f64,
    pub flops: f64,
    pub weight_bytes: f64,
}

impl Work {
    fn add(self, o: Work) -> Work {
        Work {
            macs: self.macs + o.macs,
            flops: self.flops + o.flops,
            weight_bytes: self.weight_bytes + o.weight_bytes,
        }
    }

    fn scale(self, f: f64) -> Work {
        Work {
            macs: self.macs * f,
            flops: self.flops * f,
            weight_bytes: self.weight_bytes * f,
        }
    }
}

/// The numbers the expected cost is computed from; stored in the emitted
/// model's metadata so `eexc cost` can recompute it for another distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostTable {
    pub original: Work,
    /// Per exit: the stage it needs (beyond the previous exits), head, decision.
    pub stages: Vec<Work>,
    pub heads: Vec<Work>,
    pub decisions: Vec<Work>,
    /// The original network after the last exit.
    pub final_stage: Work,
    /// Ops that could not be costed (the figures exclude them).
    pub uncosted_ops: Vec<String>,
    /// Per exit: elements of its tensor for one sample (the time term's
    /// split cost). Absent in metadata written before it existed.
    #[serde(default)]
    pub exit_elements: Vec<f64>,
    /// Nodes of the original graph that run per sample (not constant).
    #[serde(default)]
    pub original_nodes: usize,
    /// MACs of the original that ONNX Runtime runs on int8 kernels
    /// (quantized models; see `analysis::cost::runs_in_int8`). Left out of
    /// the metadata when 0, so float models' output is what it was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub original_int8_macs: f64,
    /// Per part, what the runtime dispatches (the time term's node costs).
    /// Absent in metadata written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<DispatchTable>,
}

/// Measures the flat graph (original + heads + decisions) with the cost model.
pub fn cost_table(source: &EmitContext, options: &ExitOptions) -> Result<CostTable, ExitError> {
    let mut flat = source.emit_flat(options)?;
    if let Some(fuse) = &options.fusion() {
        let knobs = (1..=source.plan.exits.len())
            .flat_map(|k| {
                let kn = super::contract::knobs(k);
                [kn.threshold, kn.temperature]
            })
            .collect();
        crate::fuse::fuse_model(&mut flat, crate::fuse::Regions::Exits, fuse, &knobs)?;
    }
    let ranges = exit_nodes(&flat, source.plan.exits.len());
    let mut model = Model::from_proto(&flat)?;
    let (_, dims) = crate::analysis::infer_for_costs(&mut model, &options.dims)?;
    let cost = graph_cost(&model.graph, &dims);
    let sum = |ids: &mut dyn Iterator<Item = usize>| {
        ids.fold(Work::default(), |acc, i| {
            let c = cost.nodes[i].cost;
            acc.add(Work {
                macs: c.macs as f64,
                flops: c.flops as f64,
                weight_bytes: c.weight_bytes as f64,
            })
        })
    };
    let counter = DispatchCounter::new(&model.graph);
    let dispatch = |ids: &mut dyn Iterator<Item = usize>| {
        ids.fold(Dispatch::default(), |mut d, i| {
            counter.count(&mut d, crate::ir::NodeId(i), &cost.nodes[i]);
            d
        })
    };
    let (mut stage_work, mut stage_dispatch): (Vec<Work>, Vec<Dispatch>) = source
        .plan
        .stages
        .iter()
        .map(|s| (sum(&mut s.iter().map(|n| n.0)), dispatch(&mut s.iter().map(|n| n.0))))
        .unzip();
    // The rest after exit k starts with its layout anchor, where one is
    // emitted: an identity depthwise 1×1 Conv, one MAC per element.
    for (k, point) in (1..).zip(&source.plan.exits) {
        if let Some((_, channels)) = source.layout_anchor(k) {
            let elements = per_sample_elements(&point.ty, &dims);
            stage_work[k] = stage_work[k].add(Work {
                macs: elements,
                flops: 2.0 * elements,
                weight_bytes: 4.0 * channels as f64,
            });
            stage_dispatch[k].kernels += 1;
        }
    }
    let all_original_nodes = source.proto.graph.as_ref().map_or(0, |g| g.node.len());
    let uncosted_ops = cost
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.status, CostStatus::NoRule | CostStatus::UnknownShape))
        .map(|(i, _)| model.graph.nodes[i].op_type.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (stages, final_stage) = stage_work.split_at(stage_work.len() - 1);
    let final_dispatch = stage_dispatch.pop().unwrap_or_default();
    let dispatch = DispatchTable {
        original: dispatch(&mut (0..all_original_nodes)),
        stages: stage_dispatch,
        final_stage: final_dispatch,
        heads: ranges.iter().map(|r| dispatch(&mut r.0.iter().copied())).collect(),
        decisions: ranges.iter().map(|r| dispatch(&mut r.1.iter().copied())).collect(),
    };
    let exit_elements = source
        .plan
        .exits
        .iter()
        .map(|e| per_sample_elements(&e.ty, &dims))
        .collect();
    Ok(CostTable {
        original: sum(&mut (0..all_original_nodes)),
        stages: stages.to_vec(),
        heads: ranges.iter().map(|r| sum(&mut r.0.iter().copied())).collect(),
        decisions: ranges.iter().map(|r| sum(&mut r.1.iter().copied())).collect(),
        final_stage: final_stage[0],
        uncosted_ops,
        exit_elements,
        // ONNX Runtime folds a QDQ model's QuantizeLinear/DequantizeLinear
        // nodes into its int8 kernels: they are not dispatched.
        original_nodes: source
            .plan
            .stages
            .iter()
            .flatten()
            .filter(|&&n| {
                !matches!(
                    source.graph.node(n).op_type.as_str(),
                    "QuantizeLinear" | "DequantizeLinear"
                )
            })
            .count(),
        original_int8_macs: (0..all_original_nodes)
            .filter(|&i| crate::analysis::cost::runs_in_int8(&model.graph, &model.graph.nodes[i]))
            .map(|i| cost.nodes[i].cost.macs as f64)
            .sum(),
        dispatch: Some(dispatch),
    })
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl CostTable {
    /// The table of the same model with only the exits `kept` (0-based,
    /// ascending): a dropped exit's stage joins the next kept exit's (or
    /// the final stage), and its head and decision are gone.
    pub fn with_exits(&self, kept: &[usize]) -> CostTable {
        let mut t = CostTable {
            stages: Vec::new(),
            heads: Vec::new(),
            decisions: Vec::new(),
            exit_elements: Vec::new(),
            dispatch: self.dispatch.as_ref().map(|d| DispatchTable {
                stages: Vec::new(),
                heads: Vec::new(),
                decisions: Vec::new(),
                ..d.clone()
            }),
            ..self.clone()
        };
        let mut pending_dispatch = Dispatch::default();
        let mut pending = Work::default();
        for (j, stage) in self.stages.iter().enumerate() {
            pending = pending.add(*stage);
            if let Some(d) = &self.dispatch {
                pending_dispatch = pending_dispatch + d.stages[j];
            }
            if kept.contains(&j) {
                t.stages.push(pending);
                t.heads.push(self.heads[j]);
                t.decisions.push(self.decisions[j]);
                if let Some(&e) = self.exit_elements.get(j) {
                    t.exit_elements.push(e);
                }
                if let (Some(d), Some(kept)) = (&self.dispatch, t.dispatch.as_mut()) {
                    kept.stages.push(pending_dispatch);
                    kept.heads.push(d.heads[j]);
                    kept.decisions.push(d.decisions[j]);
                }
                pending = Work::default();
                pending_dispatch = Dispatch::default();
            }
        }
        t.final_stage = pending.add(self.final_stage);
        if let (Some(d), Some(kept)) = (&self.dispatch, t.dispatch.as_mut()) {
            kept.final_stage = pending_dispatch + d.final_stage;
        }
        t
    }
}

/// Elements of a tensor for one sample, symbols at `dims` (the cost
/// model's convention); 0 where a dimension is unknown.
pub(super) fn per_sample_elements(ty: &crate::ir::TensorType, dims: &crate::ir::DimValues) -> f64 {
    dims.elements(ty).map_or(0.0, |n| n as f64)
}

/// Per exit, the flat graph's node indices of its head (the tagged nodes its
/// logits depend on) and of its decision (the other tagged nodes). Read from
/// tags rather than emission order, since fusion rewrites these nodes.
fn exit_nodes(flat: &crate::onnx::proto::ModelProto, exits: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let Some(g) = flat.graph.as_ref() else {
        return vec![(Vec::new(), Vec::new()); exits];
    };
    (1..=exits)
        .map(|k| {
            let tag = crate::fuse::exit_tag(k);
            let tagged: Vec<usize> = (0..g.node.len()).filter(|&i| g.node[i].doc_string() == tag).collect();
            let producer: std::collections::HashMap<&str, usize> = tagged
                .iter()
                .flat_map(|&i| g.node[i].output.iter().map(move |o| (o.as_str(), i)))
                .collect();
            let mut head = std::collections::BTreeSet::new();
            let mut stack = vec![super::contract::logits_name(k)];
            while let Some(t) = stack.pop() {
                if let Some(&i) = producer.get(t.as_str())
                    && head.insert(i)
                {
                    stack.extend(g.node[i].input.iter().cloned());
                }
            }
            let decision = tagged.iter().copied().filter(|i| !head.contains(i)).collect();
            (head.into_iter().collect(), decision)
        })
        .collect()
}

pub fn check_distribution(p: &[f64], exits: usize) -> Result<(), String> {
    if p.len() != exits {
        return Err(format!("--exit-dist has {} values for {exits} exits", p.len()));
    }
    if p.iter().any(|x| !(0.0..=1.0).contains(x)) {
        return Err("--exit-dist values must lie in [0, 1]".into());
    }
    let total: f64 = p.iter().sum();
    if total > 1.0 + 1e-9 {
        return Err(format!(
            "--exit-dist sums to {total}; at most 1 (the rest runs to the end)"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ExitRow {
    pub index: usize,
    pub stage: Work,
    pub head: Work,
    pub decision: Work,
    /// Cost of a sample that exits here.
    pub cumulative: Work,
    /// Fraction of the samples reaching this exit that must leave here for
    /// its head and decision to pay for themselves (FLOPs): overhead / work
    /// skipped by leaving. Above 1: the exit can never pay.
    pub break_even_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub distribution: Vec<f64>,
    pub cost: Work,
    /// 1 − expected FLOPs / original FLOPs.
    pub savings_ratio: f64,
    /// Mean exit index (K+1 = the final classifier).
    pub average_exit_depth: f64,
}

/// The report `insert-exits` and `cost` print.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub schema: &'static str,
    pub original: Work,
    pub exits: Vec<ExitRow>,
    pub final_stage: Work,
    /// Nothing exits: every stage, head and decision is paid.
    pub worst_case: Work,
    pub worst_case_overhead_ratio: f64,
    pub expected: Option<Expected>,
    pub uncosted_ops: Vec<String>,
    /// The same in time on ONNX Runtime (CPU, 1 thread): the runtime's cost
    /// of each exit beside its FLOPs.
    pub time: TimeEstimate,
}

impl CostReport {
    pub fn new(t: &CostTable, distribution: Option<&[f64]>) -> CostReport {
        Self::with_original_time(t, distribution, None)
    }

    /// As [`CostReport::new`], with the original model's latency as
    /// measured (µs per row) instead of estimated.
    pub fn with_original_time(t: &CostTable, distribution: Option<&[f64]>, original_us: Option<f64>) -> CostReport {
        let time = TimeEstimate::new(t, RuntimeProfile::onnxruntime_cpu(), distribution, original_us);
        let mut cumulative = Work::default();
        let mut rows = Vec::new();
        for k in 0..t.stages.len() {
            cumulative = cumulative.add(t.stages[k]).add(t.heads[k]).add(t.decisions[k]);
            rows.push(ExitRow {
                index: k + 1,
                stage: t.stages[k],
                head: t.heads[k],
                decision: t.decisions[k],
                cumulative,
                break_even_rate: 0.0,
            });
        }
        let worst_case = cumulative.add(t.final_stage);
        for r in &mut rows {
            let overhead = r.head.flops + r.decision.flops;
            let skipped = worst_case.flops - r.cumulative.flops;
            r.break_even_rate = if skipped > 0.0 {
                overhead / skipped
            } else {
                f64::INFINITY
            };
        }
        let expected = distribution.map(|p| {
            let rest = 1.0 - p.iter().sum::<f64>();
            let cost = rows
                .iter()
                .zip(p)
                .fold(worst_case.scale(rest), |acc, (r, &pk)| acc.add(r.cumulative.scale(pk)));
            let depth =
                p.iter().enumerate().map(|(i, pk)| (i + 1) as f64 * pk).sum::<f64>() + rest * (rows.len() + 1) as f64;
            Expected {
                distribution: p.to_vec(),
                cost,
                savings_ratio: ratio_saved(cost.flops, t.original.flops),
                average_exit_depth: depth,
            }
        });
        CostReport {
            schema: "eexc.exit-cost/1",
            original: t.original,
            exits: rows,
            final_stage: t.final_stage,
            worst_case,
            worst_case_overhead_ratio: if t.original.flops > 0.0 {
                worst_case.flops / t.original.flops - 1.0
            } else {
                0.0
            },
            expected,
            uncosted_ops: t.uncosted_ops.clone(),
            time,
        }
    }

    pub fn to_text(&self) -> String {
        use crate::report::table::{render, si};
        let g = |w: f64| si(w.round() as u64);
        let rows: Vec<Vec<String>> = self
            .exits
            .iter()
            .map(|r| {
                vec![
                    r.index.to_string(),
                    g(r.stage.macs),
                    g(r.head.macs),
                    g(r.decision.flops),
                    g(r.cumulative.flops),
                    format!("{:.1}%", 100.0 * r.cumulative.flops / self.original.flops.max(1.0)),
                    crate::report::table::bytes(r.cumulative.weight_bytes.round() as u64),
                    if r.break_even_rate.is_finite() {
                        format!("{:.2}%", 100.0 * r.break_even_rate)
                    } else {
                        "never".into()
                    },
                ]
            })
            .collect();
        let mut out = render(
            &[
                "exit",
                "stage MACs",
                "head MACs",
                "decide FLOPs",
                "cum. FLOPs",
                "of original",
                "weights read",
                "break-even",
            ],
            &rows,
            &[1, 2, 3, 4, 5, 6, 7],
        );
        out += &format!(
            "original      {} MACs, {} FLOPs, {} weights read\nworst case    {} FLOPs (+{:.2}% over the original: every head paid, nothing exits)\n",
            g(self.original.macs),
            g(self.original.flops),
            crate::report::table::bytes(self.original.weight_bytes as u64),
            g(self.worst_case.flops),
            100.0 * self.worst_case_overhead_ratio
        );
        if let Some(e) = &self.expected {
            // Four decimals, trailing zeros dropped: 0.3 stays 0.3, 397ths stay short.
            let dist: Vec<String> = e
                .distribution
                .iter()
                .map(|p| {
                    let s = format!("{p:.4}");
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                })
                .collect();
            out += &format!(
                "expected      {} FLOPs, {} MACs, {} weights read under exit distribution [{}]\nsavings       {:.1}% of FLOPs vs the original; average exit depth {:.2}\n",
                g(e.cost.flops),
                g(e.cost.macs),
                crate::report::table::bytes(e.cost.weight_bytes.round() as u64),
                dist.join(", "),
                100.0 * e.savings_ratio,
                e.average_exit_depth
            );
        } else {
            out += "expected      (give --exit-dist P1,...,PK for the expected cost and savings)\n";
        }
        out += &self.time.to_text();
        if !self.uncosted_ops.is_empty() {
            out += &format!("NOT COSTED (figures exclude these): {}\n", self.uncosted_ops.join(", "));
        }
        out
    }
}

fn ratio_saved(expected: f64, original: f64) -> f64 {
    if original > 0.0 { 1.0 - expected / original } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(flops: f64) -> Work {
        Work {
            macs: flops / 2.0,
            flops,
            weight_bytes: 0.0,
        }
    }

    #[test]
    fn a_table_without_an_exit_moves_its_stage_to_the_next() {
        let t = CostTable {
            original: w(100.0),
            stages: vec![w(40.0), w(30.0)],
            heads: vec![w(2.0), w(3.0)],
            decisions: vec![w(1.0), w(1.0)],
            final_stage: w(30.0),
            uncosted_ops: vec![],
            exit_elements: vec![10.0, 20.0],
            original_nodes: 0,
            original_int8_macs: 0.0,
            dispatch: None,
        };
        let first = t.with_exits(&[1]);
        assert_eq!(
            (first.stages, first.heads, first.exit_elements),
            (vec![w(70.0)], vec![w(3.0)], vec![20.0])
        );
        let second = t.with_exits(&[0]);
        assert_eq!((second.stages, second.final_stage), (vec![w(40.0)], w(60.0)));
        let none = t.with_exits(&[]);
        assert!(none.stages.is_empty() && none.final_stage == w(100.0));
    }

    #[test]
    fn expected_cost_follows_the_design_formula() {
        // Two exits; stages 40 and 30 FLOPs, heads 2, decisions 1, rest 30.
        let t = CostTable {
            original: w(100.0),
            stages: vec![w(40.0), w(30.0)],
            heads: vec![w(2.0), w(2.0)],
            decisions: vec![w(1.0), w(1.0)],
            final_stage: w(30.0),
            uncosted_ops: vec![],
            exit_elements: vec![],
            original_nodes: 0,
            original_int8_macs: 0.0,
            dispatch: None,
        };
        let r = CostReport::new(&t, Some(&[0.5, 0.25]));
        assert_eq!(r.exits[0].cumulative.flops, 43.0);
        assert_eq!(r.exits[1].cumulative.flops, 76.0);
        assert_eq!(r.worst_case.flops, 106.0);
        let e = r.expected.unwrap();
        // 0.5·43 + 0.25·76 + 0.25·106 = 21.5 + 19 + 26.5 = 67.
        assert!((e.cost.flops - 67.0).abs() < 1e-9);
        assert!((e.savings_ratio - 0.33).abs() < 1e-9);
        assert!((e.average_exit_depth - (0.5 + 0.5 + 0.75)).abs() < 1e-9);
        // Exit 1: overhead 3 over 106 − 43 = 63 skipped.
        assert!((r.exits[0].break_even_rate - 3.0 / 63.0).abs() < 1e-12);
    }

    #[test]
    fn distribution_is_validated() {
        assert!(check_distribution(&[0.5, 0.6], 2).is_err());
        assert!(check_distribution(&[0.5], 2).is_err());
        assert!(check_distribution(&[-0.1, 0.2], 2).is_err());
        assert!(check_distribution(&[0.3, 0.3], 2).is_ok());
    }
}
