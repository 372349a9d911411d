//! The time term of the cost model: what an early-exit model costs in the
//! runtime users deploy to, beyond its FLOPs (DESIGN.md "Time, not only
//! FLOPs"). Each exit adds, to every row that reaches it:
//!
//! ```text
//! o_j = exit_us                                  (If call, decision ops, exit index)
//!     + max(head weight bytes / head_weight_bytes_per_us,   (batch 1: a GEMV, bound by memory)
//!           head MACs / macs_per_us)                          (a conv-grid head's convolution)
//!     + exit tensor elements × split_element_us        (pooling, NCHWc reorders out of and
//!                                                        into the branch, the layout anchor)
//! ```
//!
//! and the network's own work is the original latency T split by FLOP
//! share: a row leaving at exit k takes `T · share_k + Σ_{j≤k} o_j`, a row
//! that goes to the end `T · share_end + Σ_j o_j`. T is measured where a
//! runtime ran (`eval`), else estimated as MACs / macs_per_us (int8 MACs
//! at int8_macs_per_us) + nodes · node_us. The constants are data (`passes/runtime/onnxruntime-cpu.json`),
//! measured by the scripts in bench/runtime (docs/runtime-cost.md).

use serde::{Deserialize, Serialize};

use super::cost::CostTable;

/// Measured constants of one runtime on one machine.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuntimeProfile {
    pub runtime: String,
    pub measured: String,
    pub macs_per_us: f64,
    /// The same for MACs on int8 kernels (quantized models).
    pub int8_macs_per_us: f64,
    pub node_us: f64,
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
        let original_us = measured_original_us.unwrap_or_else(|| {
            let float_macs = (t.original.macs - t.original_int8_macs).max(0.0);
            float_macs / profile.macs_per_us
                + t.original_int8_macs / profile.int8_macs_per_us
                + t.original_nodes as f64 * profile.node_us
        });
        let share = |flops: f64| {
            if t.original.flops > 0.0 {
                flops / t.original.flops
            } else {
                0.0
            }
        };
        let k = t.stages.len();
        let overhead: Vec<f64> = (0..k)
            .map(|j| {
                // A head costs its weights' reading or its arithmetic,
                // whichever is longer (a roofline): a linear head at batch 1
                // is a GEMV, bound by memory; a conv-grid head's convolution
                // is bound by its MACs.
                let head = &t.heads[j];
                profile.exit_us
                    + (head.weight_bytes / profile.head_weight_bytes_per_us).max(head.macs / profile.macs_per_us)
                    + t.exit_elements.get(j).copied().unwrap_or(0.0) * profile.split_element_us
            })
            .collect();
        let mut paths = Vec::with_capacity(k + 1);
        let (mut flops, mut paid) = (0.0, 0.0);
        for (stage, o) in t.stages.iter().zip(&overhead) {
            flops += stage.flops;
            paid += o;
            paths.push(original_us * share(flops) + paid);
        }
        let full = original_us * share(flops + t.final_stage.flops) + paid;
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
            node_us: 0.0,
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
    fn paths_follow_the_formula() {
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
}
