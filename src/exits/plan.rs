//! Which tensors become exits, which head each gets, and how the original
//! nodes split into stages (DESIGN.md: prefix of exit k = ancestors(T_k) ∪
//! prefix(k-1); the rest is the suffix).

use std::collections::HashSet;

use crate::analysis::classifier::Classifier;
use crate::analysis::cost::GraphCost;
use crate::analysis::cuts::{NarrowCut, narrow_cuts};
use crate::ir::{Dim, Graph, NodeId, TensorType, ValueId, ValueKind};

use super::ExitError;

/// Head shape by rank of the feature tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// Pick by rank: 4-D gap-linear, 3-D mirror where the model has a tail to mirror (else token-cls), 2-D linear.
    Auto,
    /// N×C×H×W: GlobalAveragePool, Flatten, Gemm.
    GapLinear,
    /// N×C×H×W (H, W ≥ 2 and known): average pools over a 2×2 grid of
    /// the map (AveragePool), Flatten, Gemm on C·4 features: where an
    /// object lies, which a global pool throws away.
    GridLinear,
    /// N×C×H×W: the global average and the global maximum side by side
    /// (SDN's mixed pooling, the mix left to the linear layer), Flatten,
    /// Gemm on C·2 features.
    MixLinear,
    /// N×C×H×W (H, W ≥ 3 and known, float): one 3×3 convolution (stride
    /// 2, padding 1, C channels) and ReLU refine the map before the 2×2
    /// grid pool and Gemm on C·4 features: the "progressive feature
    /// refinement" branch of the early-exit literature, its convolution
    /// trained by `fit` with the linear layer.
    ConvGrid,
    /// N×S×D: take token 0 (CLS), Gemm.
    TokenCls,
    /// N×S×D: mean over tokens, Gemm.
    TokenMean,
    /// N×S×D: the model's own tail (what it does between its last repeated
    /// layer and its linear classifier: a final LayerNorm, the CLS token or
    /// a mean over tokens, a pooler Dense + Tanh) on a copy of its weights,
    /// then Gemm on what the classifier reads.
    Mirror,
    /// N×D: Gemm.
    Linear,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Auto => "auto",
            HeadKind::GapLinear => "gap-linear",
            HeadKind::GridLinear => "grid-linear",
            HeadKind::MixLinear => "mix-linear",
            HeadKind::ConvGrid => "conv-grid",
            HeadKind::TokenCls => "token-cls",
            HeadKind::TokenMean => "token-mean",
            HeadKind::Mirror => "mirror",
            HeadKind::Linear => "linear",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExitPoint {
    pub value: ValueId,
    pub tensor: String,
    pub ty: TensorType,
    pub head: HeadKind,
    /// Feature width the head's Gemm reads (C or D).
    pub features: i64,
    /// Why `--auto` chose it (empty for `--at`).
    pub reason: String,
    /// Set when the exit tensor is quantized (a QDQ model's `QuantizeLinear`
    /// output): the head dequantizes it first, as the model does.
    pub dequantize: Option<Dequantize>,
    /// Emission hands this (4-D, quantized) tensor to the head and to the
    /// rest of the network channels-last; see `EmitContext::channels_last`.
    pub channels_last: bool,
    /// The head was chosen by the tensor's rank (`auto`), so a token exit
    /// may still become a mirror head ([`attach_tails`]).
    pub auto_head: bool,
    /// A mirror head's tail (set by [`attach_tails`]).
    pub tail: Option<std::sync::Arc<super::tail::ModelTail>>,
}

impl ExitPoint {
    /// The channels of a conv-grid head's convolution (C); `None` for the
    /// heads without one.
    pub fn refine_channels(&self) -> Option<i64> {
        (self.head == HeadKind::ConvGrid).then_some(self.features / GRID_CELLS)
    }
}

/// The `DequantizeLinear` a quantized model applies to an exit tensor, which
/// the head repeats on its own copy: the cut stays at the integer tensor, so
/// the model's own `DequantizeLinear` goes with its readers into the branch,
/// where ONNX Runtime fuses it into their int8 kernels (docs/quantized.md).
#[derive(Debug, Clone)]
pub struct Dequantize {
    /// Scale and zero-point inputs (constants of the main graph), by name.
    pub scale: String,
    pub zero_point: Option<String>,
    pub attributes: Vec<crate::onnx::proto::AttributeProto>,
    /// One scale for the whole tensor (not per channel).
    pub per_tensor: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub exits: Vec<ExitPoint>,
    /// `stages[k]`: non-constant original nodes first needed by exit k+1 (in
    /// topological order); the last entry is everything after the last exit.
    pub stages: Vec<Vec<NodeId>>,
    /// Nodes computed from constants only: stay in the main graph.
    pub constant_nodes: Vec<NodeId>,
}

/// Exit points from `--at` names (tensors, or nodes with one output).
pub fn resolve_at(
    graph: &Graph,
    classifier: &Classifier,
    names: &[String],
    head: HeadKind,
) -> Result<Vec<ExitPoint>, ExitError> {
    let mut seen = HashSet::new();
    let mut exits = Vec::new();
    for name in names {
        // `TENSOR:HEAD` gives one exit its own head; a name with a colon
        // that is not followed by a head's name (TensorFlow's `x:0`) is a
        // tensor name.
        let (name, head) = match name.rsplit_once(':') {
            Some((tensor, h)) if graph.value_id(name).is_none() => {
                match <HeadKind as clap::ValueEnum>::from_str(h, false) {
                    Ok(h) => (tensor, h),
                    Err(_) => (name.as_str(), head),
                }
            }
            _ => (name.as_str(), head),
        };
        let value = match graph.value_id(name) {
            Some(v) => v,
            None => node_output(graph, name)?,
        };
        let point = exit_point(graph, classifier, value, head, String::new())?;
        if !seen.insert(point.value) {
            return Err(ExitError::Duplicate(name.to_string()));
        }
        exits.push(point);
    }
    exits.sort_by_key(|e| topo_position(graph, e.value));
    Ok(exits)
}

fn node_output(graph: &Graph, name: &str) -> Result<ValueId, ExitError> {
    let matches: Vec<_> = graph.nodes.iter().filter(|n| n.name == name).collect();
    match matches.as_slice() {
        [n] => match n.outputs.iter().flatten().collect::<Vec<_>>().as_slice() {
            [v] => Ok(**v),
            _ => Err(ExitError::AmbiguousNode(name.into())),
        },
        [] => Err(ExitError::UnknownTensor(name.into())),
        _ => Err(ExitError::AmbiguousNode(name.into())),
    }
}

fn topo_position(graph: &Graph, v: ValueId) -> usize {
    graph
        .producer(v)
        .and_then(|p| graph.topo.iter().position(|&t| t == p))
        .map_or(0, |p| p + 1)
}

/// The integer tensor that `value` dequantizes, when `value` is the output
/// of a `DequantizeLinear` of a computed (not constant) tensor: in a QDQ
/// model that is the same cut, one node earlier.
fn quantized_source(graph: &Graph, value: ValueId) -> Option<ValueId> {
    let node = graph.node(graph.producer(value)?);
    let input = (node.op_type == "DequantizeLinear" && node.is_onnx_domain())
        .then(|| node.inputs.first().copied().flatten())??;
    (!graph.value(input).is_constant).then_some(input)
}

/// How the model dequantizes the integer tensor `value`: in QDQ format its
/// first `DequantizeLinear` reader (in topological order); in QOperator
/// format the output scale and zero point of the op that quantized it.
/// Either way with constant scale and zero point.
fn dequantize_of(graph: &Graph, value: ValueId) -> Option<Dequantize> {
    let constant = |i: usize, node: &crate::ir::Node| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .filter(|&v| graph.value(v).is_constant)
            .map(|v| graph.value(v).name.clone())
    };
    dequantize_reader(graph, value, &constant).or_else(|| quantized_by(graph, value, &constant))
}

/// The output scale and zero point of the QOperator op that produced
/// `value`, looking through ops that move quantized values unchanged.
fn quantized_by(
    graph: &Graph,
    mut value: ValueId,
    constant: &dyn Fn(usize, &crate::ir::Node) -> Option<String>,
) -> Option<Dequantize> {
    loop {
        let node = graph.node(graph.producer(value)?);
        let microsoft = node.domain == "com.microsoft";
        let (scale, zero_point) = match node.op_type.as_str() {
            "QuantizeLinear" => (1, 2),
            "QLinearConv" | "QLinearMatMul" => (6, 7),
            "QLinearAdd" | "QLinearMul" if microsoft => (6, 7),
            "QGemm" if microsoft => (7, 8),
            "QLinearConcat" if microsoft => (0, 1),
            "QLinearGlobalAveragePool" | "QLinearAveragePool" | "QLinearSigmoid" | "QLinearLeakyRelu" if microsoft => {
                (3, 4)
            }
            // Same values, same quantization.
            "MaxPool" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Transpose" | "Identity" => {
                value = node.inputs.first().copied().flatten()?;
                continue;
            }
            _ => return None,
        };
        let per_tensor = is_scalar(graph, node.inputs.get(scale).copied().flatten());
        return Some(Dequantize {
            per_tensor,
            scale: constant(scale, node)?,
            zero_point: match node.inputs.get(zero_point).copied().flatten() {
                None => None,
                Some(_) => Some(constant(zero_point, node)?),
            },
            attributes: Vec::new(),
        });
    }
}

fn is_scalar(graph: &Graph, value: Option<ValueId>) -> bool {
    value
        .and_then(|v| graph.value(v).ty.as_ref())
        .and_then(TensorType::num_elements)
        == Some(1)
}

fn dequantize_reader(
    graph: &Graph,
    value: ValueId,
    constant: &dyn Fn(usize, &crate::ir::Node) -> Option<String>,
) -> Option<Dequantize> {
    graph.topo.iter().map(|&n| graph.node(n)).find_map(|node| {
        if node.op_type != "DequantizeLinear" || !node.is_onnx_domain() || node.inputs.first() != Some(&Some(value)) {
            return None;
        }
        let scale = constant(1, node)?;
        let zero_point = match node.inputs.get(2).copied().flatten() {
            None => None,
            Some(_) => Some(constant(2, node)?),
        };
        Some(Dequantize {
            per_tensor: is_scalar(graph, node.inputs.get(1).copied().flatten()),
            scale,
            zero_point,
            attributes: node.attributes.clone(),
        })
    })
}

/// Validates one exit tensor and chooses its head. A dequantized tensor of
/// a QDQ model moves the exit to the integer tensor it dequantizes.
pub(crate) fn exit_point(
    graph: &Graph,
    classifier: &Classifier,
    value: ValueId,
    head: HeadKind,
    reason: String,
) -> Result<ExitPoint, ExitError> {
    let head_asked = head;
    let value = quantized_source(graph, value).unwrap_or(value);
    let v = graph.value(value);
    let tensor = v.name.clone();
    if v.is_constant || matches!(v.kind, ValueKind::Initializer { .. }) {
        return Err(ExitError::NotReachable(tensor));
    }
    if value == classifier.logits || descends_from(graph, value, classifier.logits) {
        return Err(ExitError::AtOrAfterLogits {
            tensor,
            logits: graph.value(classifier.logits).name.clone(),
        });
    }
    let ty = v.ty.clone().ok_or_else(|| ExitError::UnknownShape(tensor.clone()))?;
    let shape = ty
        .shape
        .clone()
        .ok_or_else(|| ExitError::UnknownShape(tensor.clone()))?;
    let dequantize = if ty.elem.is_float() {
        None
    } else {
        Some(dequantize_of(graph, value).ok_or_else(|| ExitError::NotFloat {
            tensor: tensor.clone(),
            elem: ty.elem.name(),
        })?)
    };
    let head = match (head, shape.len()) {
        (HeadKind::Auto, 4) | (HeadKind::GapLinear, 4) => HeadKind::GapLinear,
        (HeadKind::MixLinear, 4) => HeadKind::MixLinear,
        (HeadKind::GridLinear, 4) => match (&shape[2], &shape[3]) {
            (Dim::Known(h), Dim::Known(w)) if *h >= 2 && *w >= 2 => HeadKind::GridLinear,
            _ => {
                return Err(ExitError::NoHead {
                    tensor,
                    rank: 4,
                    head: "grid-linear (it needs a known height and width of at least 2)",
                });
            }
        },
        (HeadKind::ConvGrid, 4) => match (&shape[2], &shape[3]) {
            (Dim::Known(h), Dim::Known(w)) if *h >= 3 && *w >= 3 && dequantize.is_none() => HeadKind::ConvGrid,
            _ => {
                return Err(ExitError::NoHead {
                    tensor,
                    rank: 4,
                    head: "conv-grid (it needs a float tensor of known height and width of at least 3)",
                });
            }
        },
        (HeadKind::Auto, 3) | (HeadKind::TokenCls, 3) => HeadKind::TokenCls,
        (HeadKind::TokenMean, 3) => HeadKind::TokenMean,
        (HeadKind::Mirror, 3) => HeadKind::Mirror,
        (HeadKind::Auto, 2) | (HeadKind::Linear, 2) => HeadKind::Linear,
        (h, rank) => {
            return Err(ExitError::NoHead {
                tensor,
                rank,
                head: h.name(),
            });
        }
    };
    let feature_axis = if shape.len() == 4 { 1 } else { shape.len() - 1 };
    let features = match shape[feature_axis] {
        Dim::Known(f) if f > 0 => {
            f * match head {
                HeadKind::GridLinear | HeadKind::ConvGrid => GRID_CELLS,
                HeadKind::MixLinear => 2,
                _ => 1,
            }
        }
        _ => return Err(ExitError::UnknownShape(tensor)),
    };
    Ok(ExitPoint {
        value,
        tensor,
        ty,
        head,
        features,
        reason,
        dequantize,
        channels_last: false,
        auto_head: head_asked == HeadKind::Auto,
        tail: None,
    })
}

/// Gives mirror heads the model's tail: every exit that asked for one
/// (an error when the model has none, or the exit's tensor is not shaped
/// like the last layer's output), and every token exit whose head `auto`
/// chose, when the tail fits it. `tail` finds the tail, once, if needed.
pub fn attach_tails(
    exits: &mut [ExitPoint],
    tail: impl FnOnce() -> Result<super::tail::ModelTail, super::tail::NoTail>,
) -> Result<(), ExitError> {
    let wants = |e: &ExitPoint| e.head == HeadKind::Mirror || (e.auto_head && e.head == HeadKind::TokenCls);
    if !exits.iter().any(wants) {
        return Ok(());
    }
    let found = tail().map(std::sync::Arc::new);
    for e in exits.iter_mut().filter(|e| wants(e)) {
        match &found {
            Ok(t) if t.fits(&e.ty) => {
                e.head = HeadKind::Mirror;
                e.features = t.features;
                e.tail = Some(t.clone());
            }
            Ok(t) if e.head == HeadKind::Mirror => {
                return Err(ExitError::NoTail {
                    tensor: e.tensor.clone(),
                    reason: format!(
                        "its type {} is not the type of the last layer's output '{}' ({}), where the model's tail starts",
                        e.ty, t.entry, t.entry_type
                    ),
                });
            }
            Err(reason) if e.head == HeadKind::Mirror => {
                return Err(ExitError::NoTail {
                    tensor: e.tensor.clone(),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The cells of the grid-linear head's pooling grid (2×2).
pub const GRID_CELLS: i64 = 4;

/// The grid-linear head's AveragePool over a side of `n` ≥ 2 positions:
/// (kernel, stride) giving two windows that cover it (overlapping by one
/// position when `n` is odd, as adaptive pooling does).
pub fn grid_window(n: i64) -> (i64, i64) {
    let kernel = (n + 1) / 2;
    (kernel, (n - kernel).max(1))
}

/// The conv-grid head's refining convolution: a 3×3 kernel, stride 2,
/// padding 1 on each side, so a side of `n` positions becomes ⌈n/2⌉.
pub const REFINE_KERNEL: i64 = 3;
pub const REFINE_STRIDE: i64 = 2;

/// The side of the refined map for a side of `n` positions.
pub fn refined_side(n: i64) -> i64 {
    (n + 2 - REFINE_KERNEL) / REFINE_STRIDE + 1
}

/// True if `value` is computed (transitively) from `ancestor`.
fn descends_from(graph: &Graph, value: ValueId, ancestor: ValueId) -> bool {
    let Some(start) = graph.producer(value) else {
        return false;
    };
    let mut stack = vec![start];
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        let node = graph.node(n);
        for &i in node.inputs.iter().flatten().chain(&node.implicit_inputs) {
            if i == ancestor {
                return true;
            }
            if let Some(p) = graph.producer(i) {
                stack.push(p);
            }
        }
    }
    false
}

/// Cuts shallower than this share of FLOPs see too little to classify.
pub const AUTO_MIN_SHARE: f64 = 0.15;
/// Cuts deeper than this save too little to pay for a head.
pub const AUTO_MAX_SHARE: f64 = 0.85;

/// Cuts closer than this in FLOP share count as the same depth for `--auto`.
const DISTINCT_SHARE: f64 = 0.005;

/// `--auto` looks this far (in FLOP share) around each target for a cheaper
/// split point.
const AUTO_WINDOW: f64 = 0.05;
/// Cuts whose split overhead is within this factor of the cheapest in the
/// window count as cheap; the one closest to the target is taken.
const CHEAP_ENOUGH: f64 = 1.25;

/// What an exit at this cut costs the runtime beyond its stage, in tensor
/// elements touched per sample: the head reads the tensor once (pooling)
/// and its weights (classes × features); a 4-D tensor is also reordered out
/// of and back into ONNX Runtime's NCHWc layout at the branch boundary. On
/// EfficientNet-B0 this picks a 112-channel block output over the
/// 672-channel expansion a few FLOP-percent earlier: a 6× smaller head.
fn split_overhead(point: &ExitPoint, classes: i64, dims: &crate::ir::DimValues) -> f64 {
    let elements = super::cost::per_sample_elements(&point.ty, dims);
    let reorders = if point.ty.rank() == Some(4) { 2.0 } else { 0.0 };
    elements * (1.0 + reorders) + (classes * point.features) as f64
}

/// `--auto` with no number: every narrow cut at a distinct depth from this
/// share of FLOPs (shallow cuts included: with a grid head a stem can
/// classify most easy rows) up to [`AUTO_MAX_SHARE`], for the data to
/// choose among (compile's `calibrate::choose_exits`).
pub const AUTO_ALL_MIN_SHARE: f64 = 0.005;

/// The most cuts `--auto` with no number fits heads at (evenly thinned).
pub const AUTO_ALL_MAX_CUTS: usize = 12;

/// Every narrow cut at a distinct depth in [`AUTO_ALL_MIN_SHARE`,
/// `AUTO_MAX_SHARE`] where `head` fits, the last at each depth (after the
/// activation rather than before it), at most [`AUTO_ALL_MAX_CUTS`].
fn all_cuts(
    graph: &Graph,
    cost: &GraphCost,
    classifier: &Classifier,
    head: HeadKind,
) -> Result<Vec<ExitPoint>, ExitError> {
    let mut at_depth: Vec<(f64, ValueId)> = Vec::new();
    for c in narrow_cuts(graph, cost)
        .into_iter()
        .filter(|c| (AUTO_ALL_MIN_SHARE..=AUTO_MAX_SHARE).contains(&c.flop_share))
        .filter(|c| exit_point(graph, classifier, c.value, head, String::new()).is_ok())
    {
        match at_depth.last_mut() {
            Some((share, value)) if c.flop_share - *share < DISTINCT_SHARE => *value = c.value,
            _ => at_depth.push((c.flop_share, c.value)),
        }
    }
    if at_depth.is_empty() {
        return Err(ExitError::TooFewCandidates { wanted: 1, found: 0 });
    }
    let n = at_depth.len();
    let keep = n.min(AUTO_ALL_MAX_CUTS);
    let picks: Vec<usize> = (0..keep)
        .map(|i| if keep == 1 { n - 1 } else { i * (n - 1) / (keep - 1) })
        .collect();
    let mut chosen = Vec::new();
    for (i, &(share, value)) in at_depth.iter().enumerate() {
        if picks.contains(&i) {
            let reason = format!(
                "narrow cut at {:.1}% of FLOPs, one of {n} distinct depths from {:.1}% to {:.0}% (--auto, the data chooses)",
                100.0 * share,
                100.0 * AUTO_ALL_MIN_SHARE,
                100.0 * AUTO_MAX_SHARE
            );
            chosen.push(exit_point(graph, classifier, value, head, reason)?);
        }
    }
    Ok(chosen)
}

/// `--auto K`: K narrow cuts spread evenly over the FLOP share between
/// [`AUTO_MIN_SHARE`] and [`AUTO_MAX_SHARE`]: around each target share, the
/// cheapest split point (see [`split_overhead`]) within [`AUTO_WINDOW`],
/// closest to the target among those about as cheap.
pub fn choose_auto(
    graph: &Graph,
    cost: &GraphCost,
    classifier: &Classifier,
    k: usize,
    head: HeadKind,
) -> Result<Vec<ExitPoint>, ExitError> {
    if k == 0 {
        return all_cuts(graph, cost, classifier, head);
    }
    let mut overhead = std::collections::HashMap::new();
    let candidates: Vec<_> = narrow_cuts(graph, cost)
        .into_iter()
        .filter(|c| (AUTO_MIN_SHARE..=AUTO_MAX_SHARE).contains(&c.flop_share))
        .filter(|c| match exit_point(graph, classifier, c.value, head, String::new()) {
            Ok(point) => {
                overhead.insert(c.value, split_overhead(&point, classifier.classes, &cost.dims));
                true
            }
            Err(_) => false,
        })
        .collect();
    // Depths: candidates (in topological order, so by growing share) more
    // than DISTINCT_SHARE apart.
    let mut depths: Vec<f64> = Vec::new();
    for c in &candidates {
        if depths.last().is_none_or(|&d| c.flop_share - d >= DISTINCT_SHARE) {
            depths.push(c.flop_share);
        }
    }
    let too_few = || ExitError::TooFewCandidates {
        wanted: k,
        found: depths.len(),
    };
    if depths.len() < k {
        return Err(too_few());
    }
    let mut chosen: Vec<ExitPoint> = Vec::new();
    let mut chosen_shares: Vec<f64> = Vec::new();
    for i in 1..=k {
        let target = AUTO_MIN_SHARE + (AUTO_MAX_SHARE - AUTO_MIN_SHARE) * i as f64 / (k + 1) as f64;
        // Two cuts at the same depth (an Add and the Relu after it) would
        // be two heads on the same features: cuts within DISTINCT_SHARE of
        // one already chosen are skipped. Among the cuts at the chosen depth
        // the last is taken (after the activation rather than before it).
        let free = |c: &&NarrowCut| {
            !chosen_shares
                .iter()
                .any(|&s: &f64| (s - c.flop_share).abs() < DISTINCT_SHARE)
        };
        let distance = |c: &&NarrowCut| (c.flop_share - target).abs();
        let by_distance = |a: &&NarrowCut, b: &&NarrowCut| distance(a).total_cmp(&distance(b));
        let nearest = candidates.iter().filter(free).min_by(by_distance).ok_or_else(too_few)?;
        let window = |c: &&NarrowCut| distance(c) <= AUTO_WINDOW.max(distance(&nearest));
        let cheapest = candidates
            .iter()
            .filter(free)
            .filter(window)
            .map(|c| overhead[&c.value])
            .fold(f64::INFINITY, f64::min);
        let closest = candidates
            .iter()
            .filter(free)
            .filter(window)
            .filter(|c| overhead[&c.value] <= cheapest * CHEAP_ENOUGH)
            .min_by(by_distance)
            .unwrap_or(nearest);
        let best = candidates
            .iter()
            .rev()
            .filter(free)
            .find(|c| (c.flop_share - closest.flop_share).abs() < DISTINCT_SHARE)
            .unwrap_or(closest);
        let reason = format!(
            "narrow cut at {:.1}% of FLOPs, the cheapest split within {:.0}% of the {:.1}% target (auto range {:.0}%–{:.0}%)",
            100.0 * best.flop_share,
            100.0 * AUTO_WINDOW,
            100.0 * target,
            100.0 * AUTO_MIN_SHARE,
            100.0 * AUTO_MAX_SHARE
        );
        chosen_shares.push(best.flop_share);
        chosen.push(exit_point(graph, classifier, best.value, head, reason)?);
    }
    chosen.sort_by_key(|e| topo_position(graph, e.value));
    Ok(chosen)
}

/// Splits the original non-constant nodes into stages.
pub fn stages(graph: &Graph, exits: Vec<ExitPoint>) -> Plan {
    let values: Vec<ValueId> = exits.iter().map(|e| e.value).collect();
    let (stages, constant_nodes) = split_at(graph, &values);
    Plan {
        exits,
        stages,
        constant_nodes,
    }
}

/// Splits the non-constant nodes at `values` (in order): entry k holds the
/// nodes first needed for `values[k]`, the last entry everything else. Also
/// returns the nodes computed from constants only.
pub fn split_at(graph: &Graph, values: &[ValueId]) -> (Vec<Vec<NodeId>>, Vec<NodeId>) {
    let mut assigned = vec![false; graph.nodes.len()];
    let is_const = |n: NodeId| {
        let node = graph.node(n);
        !node.outputs.is_empty() && node.outputs.iter().flatten().all(|&o| graph.value(o).is_constant)
    };
    let mut stages = Vec::new();
    for &value in values {
        let mut members = vec![false; graph.nodes.len()];
        if let Some(p) = graph.producer(value) {
            let mut stack = vec![p];
            while let Some(n) = stack.pop() {
                if members[n.0] || assigned[n.0] {
                    continue;
                }
                members[n.0] = true;
                let node = graph.node(n);
                for &i in node.inputs.iter().flatten().chain(&node.implicit_inputs) {
                    if let Some(q) = graph.producer(i) {
                        stack.push(q);
                    }
                }
            }
        }
        let stage: Vec<NodeId> = graph
            .topo
            .iter()
            .copied()
            .filter(|&n| members[n.0] && !is_const(n))
            .collect();
        for &n in &stage {
            assigned[n.0] = true;
        }
        stages.push(stage);
    }
    let rest: Vec<NodeId> = graph
        .topo
        .iter()
        .copied()
        .filter(|&n| !assigned[n.0] && !is_const(n))
        .collect();
    stages.push(rest);
    let constant_nodes = graph.topo.iter().copied().filter(|&n| is_const(n)).collect();
    (stages, constant_nodes)
}
