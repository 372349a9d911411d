//! Exit heads: pool the feature tensor to N×F, then a linear layer to the
//! class logits, built from ops valid in the model's opset.

use super::plan::{ExitPoint, HeadKind};
use crate::transform::builder::{GraphBuilder, attr_int};

/// Weights of one head: `weight` is `classes × features` (row-major), as a
/// Gemm with `transB = 1` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Deterministic initial weights, uniform in ±1/√features (the usual
/// linear-layer default), from SplitMix64 so a seed gives the same model
/// bytes forever.
pub fn seeded_weights(seed: u64, exit: usize, classes: i64, features: i64) -> HeadWeights {
    let mut rng = crate::numeric::SplitMix64::new(seed ^ (exit as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let bound = 1.0 / (features as f64).sqrt();
    let mut uniform = move || (rng.next_f64() * 2.0 - 1.0) * bound;
    let weight = (0..classes * features).map(|_| uniform() as f32).collect();
    let bias = (0..classes).map(|_| uniform() as f32).collect();
    HeadWeights { weight, bias }
}

/// Names of a head's initializers, so a trained multi-output model can hand
/// its weights back (`--weights-from`).
pub fn weight_names(exit: usize) -> (String, String) {
    (format!("eexc_exit{exit}_weight"), format!("eexc_exit{exit}_bias"))
}

/// Name of exit `exit`'s logits (a graph output in multi mode).
pub fn logits_name(exit: usize) -> String {
    format!("eexc_exit_{exit}_logits")
}

/// Adds the head for `exit` (1-based) and returns the logits tensor name
/// (N × classes), [`logits_name`], which the caller must have reserved.
pub fn build_head(b: &mut GraphBuilder, exit: usize, point: &ExitPoint, classes: i64, weights: &HeadWeights) -> String {
    let (wn, bn) = weight_names(exit);
    let w = b.const_f32(&wn, &[classes, point.features], &weights.weight);
    let bias = b.const_f32(&bn, &[classes], &weights.bias);
    // The logits keep their contract name exactly (callers reserve it).
    let logits = logits_name(exit);
    build_head_from(b, &format!("eexc_exit{exit}"), point, &w, &bias, &logits);
    logits
}

/// The head's ops on `point.tensor` with weights already in the graph
/// (`w`: classes × features, `bias`), writing the logits to `logits`.
pub fn build_head_from(b: &mut GraphBuilder, base: &str, point: &ExitPoint, w: &str, bias: &str, logits: &str) {
    let pooled = build_pooling(b, base, point);
    b.push(
        "Gemm",
        &[&pooled, w, bias],
        &[logits.to_string()],
        vec![attr_int("transB", 1)],
    );
}

/// The head's pooling of `point.tensor` to N × features (what its linear
/// layer reads, and what `fit` collects); returns the pooled tensor's name.
pub fn build_pooling(b: &mut GraphBuilder, base: &str, point: &ExitPoint) -> String {
    let x = point.tensor.as_str();
    match point.head {
        HeadKind::GapLinear => {
            let gap = b.op("GlobalAveragePool", &format!("{base}_pool"), &[x], vec![]);
            b.op("Flatten", &format!("{base}_flat"), &[&gap], vec![attr_int("axis", 1)])
        }
        HeadKind::TokenCls => {
            let idx = b.const_i64(&format!("{base}_cls_index"), &[], &[0]);
            b.op("Gather", &format!("{base}_cls"), &[x, &idx], vec![attr_int("axis", 1)])
        }
        HeadKind::TokenMean => b.reduce("ReduceMean", &format!("{base}_mean"), x, &[1], false),
        HeadKind::Linear | HeadKind::Auto => x.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_weights_are_reproducible_and_bounded() {
        let a = seeded_weights(7, 1, 10, 64);
        assert_eq!(a, seeded_weights(7, 1, 10, 64));
        assert_ne!(a, seeded_weights(7, 2, 10, 64));
        assert_ne!(a, seeded_weights(8, 1, 10, 64));
        assert_eq!((a.weight.len(), a.bias.len()), (640, 10));
        assert!(a.weight.iter().all(|w| w.abs() <= 0.125));
        let mean: f32 = a.weight.iter().sum::<f32>() / 640.0;
        assert!(mean.abs() < 0.02, "not centred: {mean}");
    }
}
