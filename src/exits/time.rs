//! The time term of the cost model: what an early-exit model costs in the
//! runtime users deploy to, beyond its FLOPs (DESIGN.md "Time, not only
//! FLOPs"). Every part of the model (a stage, a head, a decision) is priced
//! by what the runtime dispatches for it ([`Dispatch`]):
//!
//! ```text
//! time(part) = kernels · kernel_us + views · view_us          (one call per node, by class)
//!            + computes · node_us + compute bytes · node_byte_us
//!            + MACs / macs_per_us (int8 MACs at int8_macs_per_us)
//! ```
//!
//! where a head's MAC term is `max(head weight bytes / head_weight_bytes_per_us,
//! head MACs / macs_per_us)` (at batch 1 a linear head is a GEMV, bound by
//! memory). Each exit adds, to every row that reaches it,
//!
//! ```text
//! o_j = exit_us + time(head_j) + time(decision_j)     (exit_us: the If call and exit index)
//!     + exit tensor elements × split_element_us         (NCHWc reorders out of and into
//!                                                        the branch, the layout anchor)
//! ```
//!
//! and the network's own work is the original latency T split by the
//! stages' estimated time: a row leaving at exit k takes
//! `T · share_k + Σ_{j≤k} o_j`, a row that goes to the end
//! `T · share_end + Σ_j o_j`. T is measured where a runtime ran (`eval`),
//! else the sum of the stages' times. Nodes ONNX Runtime folds into
//! another kernel (an activation, BatchNormalization or residual Add after
//! a Conv, an activation after a Gemm, Q/DQ around int8 kernels) and
//! load-time constants are not dispatched. Tables written before dispatch
//! counts existed are priced by FLOP share and a per-node cost. The
//! constants are data (`passes/runtime/onnxruntime-cpu.json`), measured by
//! the scripts in bench/runtime (docs/runtime-cost.md).

use serde::{Deserialize, Serialize};

use super::cost::{CostTable, Work};
use crate::analysis::cost::{CostStatus, NodeCost};
use crate::ir::{Graph, NodeId};

/// Measured constants of one runtime on one machine.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuntimeProfile {
    pub runtime: String,
    pub measured: String,
    pub macs_per_us: f64,
    /// The same for MACs on int8 kernels (quantized models).
    pub int8_macs_per_us: f64,
    /// One call of a multiply-accumulate kernel (Conv, MatMul, Gemm), beyond its MACs.
    pub kernel_us: f64,
    /// One shape or view node (Reshape, Unsqueeze, Shape, shape arithmetic).
    pub view_us: f64,
    /// One other compute node (elementwise, Softmax, LayerNormalization,
    /// pooling, Transpose), beyond the bytes it writes.
    pub node_us: f64,
    /// Per byte a compute node writes.
    pub node_byte_us: f64,
    pub exit_us: f64,
    pub head_weight_bytes_per_us: f64,
    pub split_element_us: f64,
}

const ONNXRUNTIME_CPU: &str = include_str!("../../passes/runtime/onnxruntime-cpu.json");

impl RuntimeProfile {
    /// ONNX Runtime, CPU, default options, 1 thread (the shipped profile),
    /// parsed once: calibration builds a cost report per candidate threshold.
    pub fn onnxruntime_cpu() -> &'static RuntimeProfile {
        static PROFILE: std::sync::LazyLock<RuntimeProfile> = std::sync::LazyLock::new(|| {
            // Compiled in, and parsed by a unit test: no file a user gives reaches this.
            serde_json::from_str(ONNXRUNTIME_CPU).unwrap_or_else(|e| panic!("passes/runtime/onnxruntime-cpu.json: {e}"))
        });
        &PROFILE
    }
}

/// What the runtime dispatches for one part of the model, per run:
/// its nodes by class and what they move (the time term's input, stored
/// with the cost table; independent of any runtime's constants).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    /// Nodes with multiply-accumulates (Conv, MatMul, Gemm, ...).
    pub kernels: u64,
    /// Shape and view nodes: Reshape, Unsqueeze, Shape, and nodes whose
    /// every output is a small integer tensor (shape arithmetic).
    pub views: u64,
    /// Other compute nodes: elementwise, Softmax, normalisation, pooling, Transpose.
    pub computes: u64,
    /// Bytes the compute nodes write per sample.
    pub compute_bytes: f64,
    /// MACs of the part that run on int8 kernels.
    pub int8_macs: f64,
}

impl std::ops::Add for Dispatch {
    type Output = Dispatch;

    fn add(self, o: Dispatch) -> Dispatch {
        Dispatch {
            kernels: self.kernels + o.kernels,
            views: self.views + o.views,
            computes: self.computes + o.computes,
            compute_bytes: self.compute_bytes + o.compute_bytes,
            int8_macs: self.int8_macs + o.int8_macs,
        }
    }
}

/// Sorts the nodes of one graph into [`Dispatch`] classes.
pub struct DispatchCounter<'g> {
    graph: &'g Graph,
    /// Per node: ONNX Runtime's optimiser folds it into the kernel that
    /// produces its input, so it is not dispatched.
    folded: Vec<bool>,
}

impl<'g> DispatchCounter<'g> {
    pub fn new(graph: &'g Graph) -> DispatchCounter<'g> {
        let mut readers = vec![0usize; graph.values.len()];
        for node in &graph.nodes {
            for &v in node.inputs.iter().flatten() {
                readers[v.0] += 1;
            }
        }
        // Producers first, so a chain (Conv → Add → Relu) folds as a whole.
        let mut folded = vec![false; graph.nodes.len()];
        for &id in &graph.topo {
            folded[id.0] = folds_into_producer(graph, id, &readers, &folded);
        }
        DispatchCounter { graph, folded }
    }

    /// Counts node `id` (costed as `cost`) into `d`. A node the runtime does
    /// not dispatch (a load-time constant, a Q/DQ node around an int8
    /// kernel, one folded into another kernel) adds nothing.
    pub fn count(&self, d: &mut Dispatch, id: NodeId, cost: &NodeCost) {
        let node = self.graph.node(id);
        if cost.status == CostStatus::Constant
            || matches!(node.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear")
            || self.folded[id.0]
        {
            return;
        }
        if cost.cost.macs > 0 {
            d.kernels += 1;
            if crate::analysis::cost::runs_in_int8(self.graph, node) {
                d.int8_macs += cost.cost.macs as f64;
            }
        } else if is_view(self.graph, id) {
            d.views += 1;
        } else {
            d.computes += 1;
            d.compute_bytes += cost.cost.activation_bytes as f64;
        }
    }
}

/// Nodes that move no data: ONNX Runtime answers them from shapes or
/// hands on the input's buffer.
fn is_view(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    let small_integers = !node.outputs.is_empty()
        && node.outputs.iter().flatten().all(|&o| {
            graph
                .value(o)
                .ty
                .as_ref()
                .is_some_and(|t| t.elem.is_integer() && t.num_elements().is_some_and(|n| n <= 16))
        });
    small_integers
        || matches!(
            node.op_type.as_str(),
            "Shape" | "Size" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout"
        )
}

/// Whether ONNX Runtime's graph optimiser folds this node into the kernel
/// that produces its input: an activation, BatchNormalization or an
/// elementwise op after a Conv (conv-activation and conv-add fusion, the
/// NCHWc Sum), an activation after a Gemm (FusedGemm), where that Conv or
/// Gemm (or a node already folded into it) has no other reader.
fn folds_into_producer(graph: &Graph, id: NodeId, readers: &[usize], folded: &[bool]) -> bool {
    let node = graph.node(id);
    let activation = matches!(
        node.op_type.as_str(),
        "Relu" | "Clip" | "Sigmoid" | "Tanh" | "LeakyRelu" | "HardSigmoid"
    );
    let after_conv = activation || matches!(node.op_type.as_str(), "BatchNormalization" | "Add" | "Sum" | "Mul");
    if !node.is_onnx_domain() || !after_conv {
        return false;
    }
    node.inputs.iter().flatten().any(|&v| {
        readers[v.0] == 1
            && graph.producer(v).is_some_and(|p| match graph.node(p).op_type.as_str() {
                "Conv" => true,
                "Gemm" => activation,
                _ => folded[p.0],
            })
    })
}

/// Per part of a cost table, what the runtime dispatches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchTable {
    /// The original graph's nodes (its estimated latency).
    pub original: Dispatch,
    pub stages: Vec<Dispatch>,
    pub final_stage: Dispatch,
    pub heads: Vec<Dispatch>,
    pub decisions: Vec<Dispatch>,
}

impl RuntimeProfile {
    /// Estimated µs of a part: its dispatches and its MACs (`work`). A
    /// head's MAC term is a roofline against its weights' reading.
    fn part_us(&self, d: &Dispatch, work: &Work, head: bool) -> f64 {
        let float_macs = (work.macs - d.int8_macs).max(0.0);
        let arithmetic = float_macs / self.macs_per_us + d.int8_macs / self.int8_macs_per_us;
        let macs = if head {
            arithmetic.max(work.weight_bytes / self.head_weight_bytes_per_us)
        } else {
            arithmetic
        };
        d.kernels as f64 * self.kernel_us
            + d.views as f64 * self.view_us
            + d.computes as f64 * self.node_us
            + d.compute_bytes * self.node_byte_us
            + macs
    }
}

/// Predicted latencies of an early-exit model.
#[derive(Debug, Clone, Serialize)]
pub struct TimeEstimate {
    /// Which runtime profile the constants come from.
    pub profile: String,
    /// The original model's latency per row, µs.
    pub original_us: f64,
    /// Measured (`eval`) or estimated from MACs and nodes.
    pub original_measured: bool,
    /// What each exit adds to a row that reaches it, µs.
    pub exit_overhead_us: Vec<f64>,
    /// Latency of a row leaving at exit 1..K, then of a row that goes to the end, µs.
    pub path_us: Vec<f64>,
    /// Share of the rows reaching exit k that must leave there for it to pay
    /// for itself in time (its overhead over the time a row leaving there
    /// saves). Above 1: it never pays.
    pub break_even_rate: Vec<f64>,
    /// Nothing exits, over the original: 1 + Σ o_j / T.
    pub worst_case_ratio: f64,
    /// Under the exit distribution, if one was given.
    pub expected_us: Option<f64>,
    /// 1 − expected / original.
    pub saving: Option<f64>,
}

impl TimeEstimate {
    pub fn new(
        t: &CostTable,
        profile: &RuntimeProfile,
        distribution: Option<&[f64]>,
        measured_original_us: Option<f64>,
    ) -> TimeEstimate {
        let k = t.stages.len();
        let split = |j: usize| t.exit_elements.get(j).copied().unwrap_or(0.0) * profile.split_element_us;
        let (estimated_us, stage_us, overhead): (f64, Vec<f64>, Vec<f64>) = match &t.dispatch {
            Some(d) => (
                profile.part_us(&d.original, &t.original, false),
                t.stages
                    .iter()
                    .zip(&d.stages)
                    .chain([(&t.final_stage, &d.final_stage)])
                    .map(|(w, d)| profile.part_us(d, w, false))
                    .collect(),
                (0..k)
                    .map(|j| {
                        profile.exit_us
                            + profile.part_us(&d.heads[j], &t.heads[j], true)
                            + profile.part_us(&d.decisions[j], &t.decisions[j], false)
                            + split(j)
                    })
                    .collect(),
            ),
            None => {
                // A table from before dispatch counts: FLOP shares of a
                // latency estimated from MACs and a per-node cost.
                let float_macs = (t.original.macs - t.original_int8_macs).max(0.0);
                let estimated = float_macs / profile.macs_per_us
                    + t.original_int8_macs / profile.int8_macs_per_us
                    + t.original_nodes as f64 * profile.node_us;
                let share = |flops: f64| {
                    if t.original.flops > 0.0 {
                        flops / t.original.flops
                    } else {
                        0.0
                    }
                };
                let head = |j: usize| {
                    let h = &t.heads[j];
                    (h.weight_bytes / profile.head_weight_bytes_per_us).max(h.macs / profile.macs_per_us)
                };
                (
                    estimated,
                    t.stages
                        .iter()
                        .chain([&t.final_stage])
                        .map(|w| estimated * share(w.flops))
                        .collect(),
                    (0..k).map(|j| profile.exit_us + head(j) + split(j)).collect(),
                )
            }
        };
        let original_us = measured_original_us.unwrap_or(estimated_us);
        // The stages' estimates give the shares of the (measured) latency.
        let scale = if estimated_us > 0.0 {
            original_us / estimated_us
        } else {
            0.0
        };
        let mut paths = Vec::with_capacity(k + 1);
        let (mut network, mut paid) = (0.0, 0.0);
        for (stage, o) in stage_us.iter().zip(&overhead) {
            network += stage;
            paid += o;
            paths.push(scale * network + paid);
        }
        let full = scale * stage_us.iter().sum::<f64>() + paid;
        paths.push(full);
        let break_even_rate = (0..k)
            .map(|j| {
                let saved = full - paths[j];
                if saved > 0.0 {
                    overhead[j] / saved
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        let expected_us = distribution.map(|p| {
            let rest = 1.0 - p.iter().sum::<f64>();
            p.iter().zip(&paths).map(|(pk, t)| pk * t).sum::<f64>() + rest * full
        });
        TimeEstimate {
            profile: profile.runtime.clone(),
            original_us,
            original_measured: measured_original_us.is_some(),
            exit_overhead_us: overhead,
            path_us: paths,
            break_even_rate,
            worst_case_ratio: if original_us > 0.0 { full / original_us } else { 1.0 },
            saving: expected_us.map(|e| if original_us > 0.0 { 1.0 - e / original_us } else { 0.0 }),
            expected_us,
        }
    }

    /// Lines for the text reports.
    pub fn to_text(&self) -> String {
        let us = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ");
        let rates: Vec<String> = self
            .break_even_rate
            .iter()
            .map(|r| {
                if r.is_finite() && *r <= 1.0 {
                    format!("{:.1}%", 100.0 * r)
                } else {
                    "never".into()
                }
            })
            .collect();
        let mut out = format!(
            "time          on {}\n              original {:.1} µs ({}); each exit adds [{}] µs; nothing exits: {:+.1}%\n\
             time paths    leave at exit 1..K, then the full path: [{}] µs; break-even in time [{}]\n",
            self.profile,
            self.original_us,
            if self.original_measured {
                "measured"
            } else {
                "estimated from MACs and nodes"
            },
            us(&self.exit_overhead_us),
            100.0 * (self.worst_case_ratio - 1.0),
            us(&self.path_us),
            rates.join(", ")
        );
        if let (Some(e), Some(s)) = (self.expected_us, self.saving) {
            out += &format!("time expected {e:.1} µs: {:.1}% saved vs the original\n", 100.0 * s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exits::cost::Work;

    fn w(flops: f64, bytes: f64) -> Work {
        Work {
            macs: flops / 2.0,
            flops,
            weight_bytes: bytes,
        }
    }

    fn profile() -> RuntimeProfile {
        RuntimeProfile {
            runtime: "test".into(),
            measured: String::new(),
            macs_per_us: 1.0,
            int8_macs_per_us: 4.0,
            kernel_us: 2.0,
            view_us: 0.5,
            node_us: 0.0,
            node_byte_us: 0.25,
            exit_us: 1.0,
            head_weight_bytes_per_us: 10.0,
            split_element_us: 0.5,
        }
    }

    #[test]
    fn shipped_profile_parses() {
        let p = RuntimeProfile::onnxruntime_cpu();
        assert!(p.macs_per_us > 0.0 && p.head_weight_bytes_per_us > 0.0 && p.exit_us > 0.0);
    }

    #[test]
    fn a_table_without_dispatch_counts_is_priced_by_flop_share() {
        // Original 100 FLOPs at 100 µs (measured); exits after 40 and 70 FLOPs.
        let t = CostTable {
            original: w(100.0, 0.0),
            stages: vec![w(40.0, 0.0), w(30.0, 0.0)],
            heads: vec![w(2.0, 20.0), w(2.0, 40.0)],
            decisions: vec![w(1.0, 0.0), w(1.0, 0.0)],
            final_stage: w(30.0, 0.0),
            uncosted_ops: vec![],
            exit_elements: vec![4.0, 2.0],
            original_nodes: 10,
            original_int8_macs: 0.0,
            dispatch: None,
        };
        let e = TimeEstimate::new(&t, &profile(), Some(&[0.5, 0.25]), Some(100.0));
        // o1 = 1 + 20/10 + 4·0.5 = 5; o2 = 1 + 40/10 + 2·0.5 = 6.
        assert_eq!(e.exit_overhead_us, vec![5.0, 6.0]);
        // Paths: 40 + 5 = 45, 70 + 11 = 81, 100 + 11 = 111.
        assert_eq!(e.path_us, vec![45.0, 81.0, 111.0]);
        assert!((e.break_even_rate[0] - 5.0 / 66.0).abs() < 1e-12);
        assert!((e.break_even_rate[1] - 6.0 / 30.0).abs() < 1e-12);
        // 0.5·45 + 0.25·81 + 0.25·111 = 22.5 + 20.25 + 27.75 = 70.5.
        assert!((e.expected_us.unwrap() - 70.5).abs() < 1e-9);
        assert!((e.saving.unwrap() - 0.295).abs() < 1e-9);
        assert!((e.worst_case_ratio - 1.11).abs() < 1e-12);
        // Estimated original: MACs / rate + nodes · node_us = 50 / 1.
        let est = TimeEstimate::new(&t, &profile(), None, None);
        assert_eq!(est.original_us, 50.0);
        assert!(!est.original_measured && est.saving.is_none());
        // A quantized model: 40 of its 50 MACs on int8 kernels, 4× as fast.
        let quantized = CostTable {
            original_int8_macs: 40.0,
            ..t
        };
        assert_eq!(TimeEstimate::new(&quantized, &profile(), None, None).original_us, 20.0);
    }

    #[test]
    fn parts_are_priced_by_their_dispatches() {
        let d = |kernels, views, computes, compute_bytes| Dispatch {
            kernels,
            views,
            computes,
            compute_bytes,
            int8_macs: 0.0,
        };
        // Work: MACs = flops / 2. Profile: kernel 2, view 0.5, compute 0,
        // 0.25 per byte, 1 MAC per µs, head weights at 10 bytes per µs.
        let t = CostTable {
            original: w(100.0, 0.0),
            stages: vec![w(40.0, 0.0), w(30.0, 0.0)],
            heads: vec![w(2.0, 20.0), w(2.0, 0.0)],
            decisions: vec![w(0.0, 0.0), w(0.0, 0.0)],
            final_stage: w(30.0, 0.0),
            uncosted_ops: vec![],
            exit_elements: vec![4.0, 2.0],
            original_nodes: 10,
            original_int8_macs: 0.0,
            dispatch: Some(DispatchTable {
                original: d(5, 2, 3, 8.0),
                stages: vec![d(1, 2, 0, 0.0), d(2, 0, 3, 4.0)],
                final_stage: d(2, 0, 0, 4.0),
                heads: vec![d(1, 0, 0, 0.0), d(1, 0, 1, 8.0)],
                decisions: vec![d(0, 2, 0, 0.0), d(0, 0, 0, 4.0)],
            }),
        };
        let e = TimeEstimate::new(&t, &profile(), None, None);
        // Original: 5·2 + 2·0.5 + 8·0.25 + 50 = 63.
        assert_eq!(e.original_us, 63.0);
        // Stages: 2 + 1 + 20 = 23; 4 + 1 + 15 = 20; final 4 + 1 + 15 = 20.
        // Exit 1: 1 + head (2 + max(20/10, 1) = 4) + decision (2·0.5 = 1) + split (4·0.5 = 2) = 8.
        // Exit 2: 1 + head (2 + 8·0.25 + max(0, 1) = 5) + decision (4·0.25 = 1) + split 1 = 8.
        assert_eq!(e.exit_overhead_us, vec![8.0, 8.0]);
        // Stages sum to 63 = the original: shares are the stages' own times.
        assert_eq!(e.path_us, vec![31.0, 59.0, 79.0]);
        // Measured at 126 µs: the network's part doubles, the overheads stay.
        let measured = TimeEstimate::new(&t, &profile(), None, Some(126.0));
        assert_eq!(measured.path_us, vec![54.0, 102.0, 142.0]);
        // Dropping exit 1 merges its stage into exit 2's and keeps the paths' sense.
        let second = TimeEstimate::new(&t.with_exits(&[1]), &profile(), None, None);
        assert_eq!(second.exit_overhead_us, vec![8.0]);
        assert_eq!(second.path_us, vec![51.0, 71.0]);
    }

    #[test]
    fn counted_nodes_follow_what_onnx_runtime_dispatches() {
        use crate::onnx::proto::GraphProto;
        use crate::onnx::test_protos::{node, vi};
        use crate::transform::builder::{tensor_f32, tensor_i64};
        // x → Conv → Relu (folded into the Conv) → Conv → {Sigmoid, Mul}
        // (the second Conv has two readers: neither folds) → Reshape (a view).
        let mut g = GraphProto::new();
        g.set_name("g".into());
        g.input = vec![vi("x")];
        g.output = vec![vi("y")];
        g.initializer = vec![
            tensor_f32("w", &[1], &[1.0]),
            tensor_f32("w2", &[1], &[1.0]),
            tensor_i64("shape", &[1], &[-1]),
        ];
        g.node = vec![
            node("c1", "Conv", &["x", "w"], &["c"]),
            node("r", "Relu", &["c"], &["r"]),
            node("c2", "Conv", &["r", "w2"], &["c2"]),
            node("s", "Sigmoid", &["c2"], &["s"]),
            node("m", "Mul", &["c2", "s"], &["m"]),
            node("y", "Reshape", &["m", "shape"], &["y"]),
        ];
        let graph = Graph::from_proto(&g).unwrap();
        let counter = DispatchCounter::new(&graph);
        let cost = |macs| NodeCost {
            cost: crate::analysis::cost::Cost {
                macs,
                activation_bytes: 16,
                ..Default::default()
            },
            status: CostStatus::Counted,
        };
        let mut d = Dispatch::default();
        for (i, macs) in [10, 0, 10, 0, 0, 0].into_iter().enumerate() {
            counter.count(&mut d, NodeId(i), &cost(macs));
        }
        assert_eq!((d.kernels, d.views, d.computes, d.compute_bytes), (2, 1, 2, 32.0));
    }
}
