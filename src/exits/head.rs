//! Exit heads: pool the feature tensor to N×F, then a linear layer to the
//! class logits, built from ops valid in the model's opset.

use super::contract::{logits_name, refine_names, weight_names};
use super::plan::{Dequantize, ExitPoint, HeadKind, REFINE_KERNEL, REFINE_STRIDE, grid_window, refined_side};
use crate::ir::Dim;
use crate::onnx::dtype::ElemType;
use crate::transform::builder::{GraphBuilder, attr_int, attr_ints};

/// Weights of one head: `weight` is `classes × features` (row-major), as a
/// Gemm with `transB = 1` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// The conv-grid head's convolution; `None` for every other head.
    pub refine: Option<RefineWeights>,
}

/// A conv-grid head's 3×3 convolution, as ONNX Conv reads it: `weight` is
/// C × C × 3 × 3 (output channel, input channel, row, column), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RefineWeights {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl RefineWeights {
    /// The values a C-channel refining convolution holds.
    pub fn weight_len(channels: i64) -> usize {
        (channels * channels * REFINE_KERNEL * REFINE_KERNEL) as usize
    }
}

/// Deterministic initial weights, uniform in ±1/√fan-in (the usual layer
/// default), from SplitMix64 so a seed gives the same model bytes forever.
/// A conv-grid head (`refine_channels`: its C) gets its convolution too.
pub fn seeded_weights(
    seed: u64,
    exit: usize,
    classes: i64,
    features: i64,
    refine_channels: Option<i64>,
) -> HeadWeights {
    let mut rng = crate::numeric::SplitMix64::new(seed ^ (exit as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut uniform = move |fan_in: i64| ((rng.next_f64() * 2.0 - 1.0) / (fan_in as f64).sqrt()) as f32;
    let weight = (0..classes * features).map(|_| uniform(features)).collect();
    let bias = (0..classes).map(|_| uniform(features)).collect();
    let refine = refine_channels.map(|c| {
        let fan_in = c * REFINE_KERNEL * REFINE_KERNEL;
        RefineWeights {
            weight: (0..RefineWeights::weight_len(c)).map(|_| uniform(fan_in)).collect(),
            bias: (0..c).map(|_| uniform(fan_in)).collect(),
        }
    });
    HeadWeights { weight, bias, refine }
}

/// Adds the head for `exit` (1-based) and returns the logits tensor name
/// (N × classes), [`logits_name`], which the caller must have reserved.
/// `quantized`: an int8 head (see [`build_quantized_head`]).
pub fn build_head(
    b: &mut GraphBuilder,
    exit: usize,
    point: &ExitPoint,
    classes: i64,
    weights: &HeadWeights,
    quantized: bool,
) -> String {
    if quantized && let Some(dq) = &point.dequantize {
        return build_quantized_head(b, exit, point, dq, classes, weights);
    }
    let (wn, bn) = weight_names(exit);
    let w = b.const_f32(&wn, &[classes, point.features], &weights.weight);
    let bias = b.const_f32(&bn, &[classes], &weights.bias);
    let refine = weights.refine.as_ref().zip(point.refine_channels()).map(|(r, c)| {
        let (rwn, rbn) = refine_names(exit);
        let k = REFINE_KERNEL;
        [
            b.const_f32(&rwn, &[c, c, k, k], &r.weight),
            b.const_f32(&rbn, &[c], &r.bias),
        ]
    });
    // The logits keep their contract name exactly (callers reserve it).
    let logits = logits_name(exit);
    let base = format!("eexc_exit{exit}");
    let pooled = build_pooling(b, &base, point, refine.as_ref());
    push_linear(b, &pooled, &w, &bias, &logits);
    logits
}

/// An int8 head in QDQ form, which ONNX Runtime runs as one int8 Gemm
/// (QGemm): the pooled feature quantized with the exit tensor's own scale
/// and zero point (a mean of the tensor's values lies in its range, so the
/// model's calibration already chose that scale), the weight symmetric
/// int8 with one scale (largest magnitude / 127), then the float bias. A
/// 1000-class head on 2048 features reads 2 MB instead of 8 MB.
fn build_quantized_head(
    b: &mut GraphBuilder,
    exit: usize,
    point: &ExitPoint,
    dq: &Dequantize,
    classes: i64,
    weights: &HeadWeights,
) -> String {
    let base = format!("eexc_exit{exit}");
    let pooled = build_pooling(b, &base, point, None);
    let mut feature_q = vec![pooled.as_str(), dq.scale.as_str()];
    feature_q.extend(dq.zero_point.as_deref());
    let feature = b.op(
        "QuantizeLinear",
        &format!("{base}_features_quantized"),
        &feature_q,
        vec![],
    );
    feature_q[0] = feature.as_str();
    let feature = b.op("DequantizeLinear", &format!("{base}_features"), &feature_q, vec![]);

    let (wn, bn) = weight_names(exit);
    let (w_q, w_scale) = symmetric_int8(&weights.weight);
    let int8 = ElemType::INT8.0;
    let w_bytes = w_q.iter().map(|&v| v as u8).collect();
    let w = b.const_bytes(&format!("{wn}_quantized"), int8, &[classes, point.features], w_bytes);
    let scale = b.const_f32(&format!("{wn}_scale"), &[], &[w_scale]);
    let zero = b.const_bytes(&format!("{wn}_zero_point"), int8, &[], vec![0]);
    let w = b.op("DequantizeLinear", &wn, &[&w, &scale, &zero], vec![]);
    let product = b.op(
        "Gemm",
        &format!("{base}_product"),
        &[&feature, &w],
        vec![attr_int("transB", 1)],
    );
    let bias = b.const_f32(&bn, &[classes], &weights.bias);
    let logits = logits_name(exit);
    b.push("Add", &[&product, &bias], std::slice::from_ref(&logits), vec![]);
    logits
}

/// Symmetric int8 quantization with one scale: values in [-127, 127].
fn symmetric_int8(values: &[f32]) -> (Vec<i8>, f32) {
    let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 && largest.is_finite() {
        largest / 127.0
    } else {
        1.0
    };
    let q = values
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scale)
}

/// The head's ops on `point.tensor` with weights already in the graph
/// (`w`: classes × features, `bias`), writing the logits to `logits`. No
/// conv-grid head: the Loop form refuses it before emitting.
pub fn build_head_from(b: &mut GraphBuilder, base: &str, point: &ExitPoint, w: &str, bias: &str, logits: &str) {
    let pooled = build_pooling(b, base, point, None);
    push_linear(b, &pooled, w, bias, logits);
}

fn push_linear(b: &mut GraphBuilder, pooled: &str, w: &str, bias: &str, logits: &str) {
    b.push(
        "Gemm",
        &[pooled, w, bias],
        &[logits.to_string()],
        vec![attr_int("transB", 1)],
    );
}

/// What the head reads: `point.tensor`, dequantized first when the model
/// quantizes it. `fit` collects this for a conv-grid head, whose
/// convolution it trains.
pub fn build_head_input(b: &mut GraphBuilder, base: &str, point: &ExitPoint) -> String {
    match &point.dequantize {
        None => point.tensor.clone(),
        Some(dq) => {
            let mut inputs = vec![point.tensor.as_str(), dq.scale.as_str()];
            inputs.extend(dq.zero_point.as_deref());
            b.op(
                "DequantizeLinear",
                &format!("{base}_dequantized"),
                &inputs,
                dq.attributes.clone(),
            )
        }
    }
}

/// The head's pooling of `point.tensor` to N × features (what its linear
/// layer reads, and what `fit` collects); returns the pooled tensor's name.
/// `refine`: a conv-grid head's convolution weight and bias, in the graph.
pub fn build_pooling(b: &mut GraphBuilder, base: &str, point: &ExitPoint, refine: Option<&[String; 2]>) -> String {
    if point.channels_last
        && point.head == HeadKind::GapLinear
        && let Some(dq) = &point.dequantize
        // MatMulInteger takes 8-bit operands (16-bit QDQ models pool in float).
        && point.ty.elem.is_integer()
        && point.ty.elem.bits() == Some(8)
        && let Some([_, _, Dim::Known(h), Dim::Known(w)]) = point.ty.shape.as_deref()
        && let Some(positions) = h.checked_mul(*w).filter(|&p| (1..=MAX_POOLED_POSITIONS).contains(&p))
    {
        return quantized_mean(b, base, point, dq, positions);
    }
    let input = build_head_input(b, base, point);
    let x = input.as_str();
    match point.head {
        // N×H×W×C (see `ExitPoint::channels_last`) of unknown H and W.
        HeadKind::GapLinear if point.channels_last => {
            b.reduce("ReduceMean", &format!("{base}_pool"), x, &[1, 2], false)
        }
        HeadKind::GapLinear => {
            let gap = b.op("GlobalAveragePool", &format!("{base}_pool"), &[x], vec![]);
            b.op("Flatten", &format!("{base}_flat"), &[&gap], vec![attr_int("axis", 1)])
        }
        HeadKind::MixLinear => {
            let avg = b.op("GlobalAveragePool", &format!("{base}_pool"), &[x], vec![]);
            let max = b.op("GlobalMaxPool", &format!("{base}_max_pool"), &[x], vec![]);
            let both = b.op(
                "Concat",
                &format!("{base}_pools"),
                &[&avg, &max],
                vec![attr_int("axis", 1)],
            );
            b.op("Flatten", &format!("{base}_flat"), &[&both], vec![attr_int("axis", 1)])
        }
        HeadKind::GridLinear => {
            let Some([_, _, Dim::Known(h), Dim::Known(w)]) = point.ty.shape.as_deref() else {
                unreachable!("plan::resolve gives grid-linear heads a known height and width")
            };
            grid_pool(b, base, x, *h, *w)
        }
        HeadKind::ConvGrid => {
            let Some([_, _, Dim::Known(h), Dim::Known(w)]) = point.ty.shape.as_deref() else {
                unreachable!("plan::resolve gives conv-grid heads a known height and width")
            };
            let [weight, bias] = refine.expect("a conv-grid head is built with its convolution");
            let (k, s) = (REFINE_KERNEL, REFINE_STRIDE);
            let conv = b.op(
                "Conv",
                &format!("{base}_refine"),
                &[x, weight, bias],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            );
            let relu = b.op("Relu", &format!("{base}_refine_relu"), &[&conv], vec![]);
            grid_pool(b, base, &relu, refined_side(*h), refined_side(*w))
        }
        HeadKind::TokenCls => {
            let idx = b.const_i64(&format!("{base}_cls_index"), &[], &[0]);
            b.op("Gather", &format!("{base}_cls"), &[x, &idx], vec![attr_int("axis", 1)])
        }
        HeadKind::TokenMean => b.reduce("ReduceMean", &format!("{base}_mean"), x, &[1], false),
        HeadKind::Mirror => point
            .tail
            .as_ref()
            .expect("plan::attach_tails gives mirror heads the model's tail")
            .replay(b, base, x),
        HeadKind::Linear | HeadKind::Auto => x.to_string(),
    }
}

/// The 2×2 grid of average pools over an `h` × `w` map, flattened to
/// N × C·4 (channel-major, then the cell's row and column).
fn grid_pool(b: &mut GraphBuilder, base: &str, x: &str, h: i64, w: i64) -> String {
    let ((kh, sh), (kw, sw)) = (grid_window(h), grid_window(w));
    let grid = b.op(
        "AveragePool",
        &format!("{base}_pool"),
        &[x],
        vec![attr_ints("kernel_shape", &[kh, kw]), attr_ints("strides", &[sh, sw])],
    );
    b.op("Flatten", &format!("{base}_flat"), &[&grid], vec![attr_int("axis", 1)])
}

/// Integer pooling stores a row of H·W ones: beyond this many positions (a
/// 4096 × 4096 feature map) the head pools in float instead, and a file
/// that claims absurd dims costs no memory.
const MAX_POOLED_POSITIONS: i64 = 1 << 24;

/// The mean over H and W of a quantized N×H×W×C tensor, pooled before it
/// is dequantized (the mean of s·(x − z) is s·(mean(x) − z)): an integer
/// row of ones times N×(H·W)×C sums x − z per channel (MatMulInteger,
/// int32), then one multiply by s/(H·W). On ONNX Runtime this beats
/// dequantizing the tensor and pooling it in float, whichever the layout
/// (1×28×28×512: 25 µs against 56 for dequantize + float product, 124 for
/// the transpose, dequantize and GlobalAveragePool ORT runs otherwise, 609
/// for ReduceMean over the middle axes; bench/runtime/pooling_cost.py,
/// docs/quantized.md).
fn quantized_mean(b: &mut GraphBuilder, base: &str, point: &ExitPoint, dq: &Dequantize, positions: i64) -> String {
    let rows_shape = b.const_i64(&format!("{base}_pool_shape"), &[3], &[0, positions, point.features]);
    let rows = b.op(
        "Reshape",
        &format!("{base}_pool_rows"),
        &[&point.tensor, &rows_shape],
        vec![],
    );
    let ones = b.const_bytes(
        &format!("{base}_pool_ones"),
        point.ty.elem.0,
        &[1, positions],
        vec![1; positions as usize],
    );
    let mut inputs = vec![ones.as_str(), rows.as_str()];
    if let Some(z) = &dq.zero_point {
        inputs.extend(["", z.as_str()]);
    }
    let sums = b.op("MatMulInteger", &format!("{base}_pool_sums"), &inputs, vec![]);
    let sums = b.cast(&format!("{base}_pool_sums_float"), &sums, ElemType::FLOAT.0);
    let count = b.const_f32(&format!("{base}_pool_positions"), &[], &[positions as f32]);
    let step = b.op("Div", &format!("{base}_pool_scale"), &[&dq.scale, &count], vec![]);
    let mean = b.op("Mul", &format!("{base}_pool"), &[&sums, &step], vec![]);
    b.op("Flatten", &format!("{base}_flat"), &[&mean], vec![attr_int("axis", 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_int8_keeps_the_largest_magnitude_and_zero() {
        let (q, s) = symmetric_int8(&[0.0, 0.5, -1.27, 1.0]);
        assert_eq!(q, [0, 50, -127, 100]);
        assert!((s - 0.01).abs() < 1e-7);
        assert_eq!(symmetric_int8(&[0.0, 0.0]), (vec![0, 0], 1.0));
    }

    #[test]
    fn seeded_weights_are_reproducible_and_bounded() {
        let a = seeded_weights(7, 1, 10, 64, None);
        assert_eq!(a, seeded_weights(7, 1, 10, 64, None));
        assert_ne!(a, seeded_weights(7, 2, 10, 64, None));
        assert_ne!(a, seeded_weights(8, 1, 10, 64, None));
        assert_eq!((a.weight.len(), a.bias.len()), (640, 10));
        assert!(a.weight.iter().all(|w| w.abs() <= 0.125));
        let mean: f32 = a.weight.iter().sum::<f32>() / 640.0;
        assert!(mean.abs() < 0.02, "not centred: {mean}");
        assert!(a.refine.is_none());
        let r = seeded_weights(7, 1, 10, 64, Some(16)).refine.unwrap();
        assert_eq!((r.weight.len(), r.bias.len()), (16 * 16 * 9, 16));
        assert!(r.weight.iter().all(|w| w.abs() <= 1.0 / 12.0), "fan-in 144");
    }
}
