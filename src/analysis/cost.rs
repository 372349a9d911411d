//! Cost model: per node MACs, FLOPs, parameters, weight bytes read and
//! activation bytes written, for one sample (the batch counts 1, other
//! symbols their [`DimValues`]). The convention for every op is in docs/cost-model.md; keep the
//! two in step.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::ir::{DimValues, Graph, Node, NodeId, TensorType, ValueId};

/// How a node's numbers were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostStatus {
    /// Counted by a rule.
    Counted,
    /// Computes only from constants (weights built by ConstantOfShape, shape
    /// arithmetic): done once at load time, no per-sample cost.
    Constant,
    /// No rule for this op: flagged, never silently zero.
    NoRule,
    /// The op has a rule but a needed shape is unknown.
    UnknownShape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Cost {
    pub macs: u64,
    pub flops: u64,
    /// Elements of float constant inputs (weights) the node reads.
    pub params: u64,
    pub weight_bytes: u64,
    pub activation_bytes: u64,
}

impl std::ops::AddAssign for Cost {
    // Saturating: absurd shapes in hostile files must not overflow.
    fn add_assign(&mut self, o: Cost) {
        self.macs = self.macs.saturating_add(o.macs);
        self.flops = self.flops.saturating_add(o.flops);
        self.params = self.params.saturating_add(o.params);
        self.weight_bytes = self.weight_bytes.saturating_add(o.weight_bytes);
        self.activation_bytes = self.activation_bytes.saturating_add(o.activation_bytes);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeCost {
    pub cost: Cost,
    pub status: CostStatus,
}

/// Costs of a whole graph.
#[derive(Debug, Clone)]
pub struct GraphCost {
    /// Indexed by `NodeId`.
    pub nodes: Vec<NodeCost>,
    pub total: Cost,
    /// Parameters counted once per distinct weight tensor (a weight read by
    /// two nodes is two reads but one parameter tensor).
    pub unique_params: u64,
    /// Op type → number of nodes that could not be costed.
    pub uncosted: BTreeMap<String, usize>,
    /// The symbol values the graph was counted at.
    pub dims: DimValues,
}

impl GraphCost {
    pub fn node(&self, id: NodeId) -> &NodeCost {
        &self.nodes[id.0]
    }
}

/// Costs every node of `graph` (shapes must have been inferred) for one
/// sample, symbols at `dims`.
pub fn graph_cost(graph: &Graph, dims: &DimValues) -> GraphCost {
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    let mut total = Cost::default();
    let mut uncosted = BTreeMap::new();
    let mut weights_seen: HashSet<ValueId> = HashSet::new();
    let mut unique_params = 0u64;
    for (i, node) in graph.nodes.iter().enumerate() {
        let nc = node_cost_with(node, &|v| value_facts(graph, v), dims);
        if matches!(nc.status, CostStatus::NoRule | CostStatus::UnknownShape) {
            *uncosted.entry(node.op_type.clone()).or_insert(0) += 1;
        }
        if nc.status != CostStatus::Constant {
            for (v, t) in weights(node, &|v| value_facts(graph, v)) {
                if weights_seen.insert(v) {
                    unique_params = unique_params.saturating_add(t.num_elements().unwrap_or(0));
                }
            }
        }
        total += nc.cost;
        debug_assert_eq!(nodes.len(), i);
        nodes.push(nc);
    }
    GraphCost {
        nodes,
        total,
        unique_params,
        uncosted,
        dims: dims.clone(),
    }
}

/// Whether ONNX Runtime runs this multiply-accumulate node on int8 kernels:
/// a quantized op (QLinearConv, QGemm, MatMulInteger, ...), or in QDQ
/// format a Conv, Gemm or MatMul whose data input and weight both come out
/// of a `DequantizeLinear` (ORT fuses the three into one int8 kernel).
/// The time term counts these MACs at the int8 rate.
pub fn runs_in_int8(graph: &Graph, node: &Node) -> bool {
    let quantized_op = matches!(
        node.op_type.as_str(),
        "QLinearConv" | "QLinearMatMul" | "ConvInteger" | "MatMulInteger"
    ) || (node.domain == "com.microsoft"
        && matches!(
            node.op_type.as_str(),
            "QGemm" | "DynamicQuantizeMatMul" | "MatMulIntegerToFloat"
        ));
    let dequantized = |i: usize| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|v| graph.producer(v))
            .is_some_and(|p| graph.node(p).op_type == "DequantizeLinear")
    };
    quantized_op
        || (node.is_onnx_domain()
            && matches!(node.op_type.as_str(), "Conv" | "Gemm" | "MatMul")
            && dequantized(0)
            && dequantized(1))
}

/// What the cost rules read about one value: its type and whether it is a
/// compile-time constant (a weight, or computed only from weights).
#[derive(Debug, Clone, Copy)]
pub struct ValueFacts<'a> {
    pub ty: Option<&'a TensorType>,
    pub is_constant: bool,
    /// How a constant is stored when that differs from `ty`: the integer
    /// tensor a load-time `DequantizeLinear` expands (QDQ weights).
    pub stored: Option<&'a TensorType>,
}

fn value_facts(graph: &Graph, v: ValueId) -> ValueFacts<'_> {
    let val = graph.value(v);
    let stored = graph
        .producer(v)
        .map(|p| graph.node(p))
        .filter(|n| val.is_constant && n.op_type == "DequantizeLinear")
        .and_then(|n| n.inputs.first().copied().flatten())
        .and_then(|q| graph.value(q).ty.as_ref());
    ValueFacts {
        ty: val.ty.as_ref(),
        is_constant: val.is_constant,
        stored,
    }
}

/// Input positions that hold a quantized op's weights (stored as integers;
/// its bias as int32). Scales and zero points are quantization parameters,
/// not weights. `None` for every other op: its float constant inputs are its
/// weights (integer constants are shape or index arguments).
fn quantized_weight_positions(node: &Node) -> Option<&'static [usize]> {
    let microsoft = node.domain == "com.microsoft";
    Some(match node.op_type.as_str() {
        "QuantizeLinear" | "DequantizeLinear" | "DynamicQuantizeLinear" => &[],
        "QLinearConv" => &[3, 8],
        "QLinearMatMul" => &[3],
        "ConvInteger" | "MatMulInteger" => &[1],
        "QGemm" if microsoft => &[3, 6],
        "DynamicQuantizeMatMul" if microsoft => &[1, 4],
        "MatMulIntegerToFloat" if microsoft => &[1, 6],
        "QLinearAdd" | "QLinearMul" if microsoft => &[0, 3],
        "QLinearGlobalAveragePool"
        | "QLinearAveragePool"
        | "QLinearConcat"
        | "QLinearSigmoid"
        | "QLinearLeakyRelu"
        | "QLinearSoftmax"
            if microsoft =>
        {
            &[]
        }
        _ => return None,
    })
}

/// The node's weights, each with the type it is stored as.
fn weights<'a>(node: &Node, value: &dyn Fn(ValueId) -> ValueFacts<'a>) -> Vec<(ValueId, &'a TensorType)> {
    let constant = |v: ValueId| {
        let facts = value(v);
        facts.is_constant.then(|| facts.stored.or(facts.ty)).flatten()
    };
    match quantized_weight_positions(node) {
        Some(positions) => positions
            .iter()
            .filter_map(|&i| node.inputs.get(i).copied().flatten())
            .filter_map(|v| Some((v, constant(v)?)))
            .collect(),
        None => node
            .inputs
            .iter()
            .flatten()
            .copied()
            .filter(|&v| value(v).ty.is_some_and(|t| t.elem.is_float()))
            .filter_map(|v| Some((v, constant(v)?)))
            .collect(),
    }
}

/// Cost of one node whose values are described by `value` (the e-graph
/// fusion costs candidate nodes that are in no graph yet).
pub fn node_cost_with<'a>(node: &Node, value: &dyn Fn(ValueId) -> ValueFacts<'a>, dims: &DimValues) -> NodeCost {
    let ty = |v: Option<&Option<ValueId>>| v.copied().flatten().and_then(|id| value(id).ty);
    let outputs_const = node.outputs.iter().flatten().all(|&o| value(o).is_constant);
    if outputs_const && !node.outputs.is_empty() {
        return NodeCost {
            cost: Cost::default(),
            status: CostStatus::Constant,
        };
    }
    let mut cost = Cost::default();
    for (_, t) in weights(node, value) {
        let n = t.num_elements().unwrap_or(0);
        cost.params = cost.params.saturating_add(n);
        cost.weight_bytes = cost.weight_bytes.saturating_add(t.elem.bytes_for(n).unwrap_or(0));
    }
    for &o in node.outputs.iter().flatten() {
        let bytes = value(o).ty.and_then(|t| dims.bytes(t)).unwrap_or(0);
        cost.activation_bytes = cost.activation_bytes.saturating_add(bytes);
    }
    let out_elems = ty(node.outputs.first()).and_then(|t| dims.elements(t));
    let in_elems = ty(node.inputs.first()).and_then(|t| dims.elements(t));
    let shape_of = |i: usize| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|v| value(v).ty)
            .and_then(|t| t.shape.as_deref())
    };
    let status = match compute(node, &shape_of, dims, out_elems, in_elems) {
        Ok((macs, flops)) => {
            cost.macs = macs;
            cost.flops = flops;
            CostStatus::Counted
        }
        Err(status) => status,
    };
    NodeCost { cost, status }
}

/// Floating-point work per element for element-wise ops. Transcendentals
/// (Exp, Tanh, Erf, ...) count as one operation, like everyone's tables.
fn elementwise_flops(op: &str) -> Option<u64> {
    Some(match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Mean" | "Sum" | "Relu" | "LeakyRelu" | "PRelu"
        | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "Reciprocal" | "Erf" | "Elu" | "Selu"
        | "Softplus" | "Softsign" | "Floor" | "Ceil" | "Round" | "Sign" | "Clip" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And" | "Or" | "Xor" | "Where" | "Sin" | "Cos" => 1,
        "HardSigmoid" | "ThresholdedRelu" | "Celu" | "Mish" => 2,
        "HardSwish" => 3,
        // Inference BatchNormalization: one scale and one shift per element
        // (the constants are folded at load time).
        "BatchNormalization" => 2,
        // Erf-based GELU ≈ 0.5·x·(1+erf(x/√2)): div, erf, add, mul, mul.
        "Gelu" => 5,
        // mean, subtract, square, mean, normalise, scale, shift.
        "LayerNormalization" | "InstanceNormalization" | "GroupNormalization" => 7,
        // exp, running sum, divide (max-subtraction ignored).
        "Softmax" | "LogSoftmax" => 3,
        _ => return None,
    })
}

/// Ops that only move or reinterpret data, or read metadata: no arithmetic.
fn is_data_movement(op: &str) -> bool {
    matches!(
        op,
        "Reshape"
            | "Flatten"
            | "Squeeze"
            | "Unsqueeze"
            | "Transpose"
            | "Concat"
            | "Split"
            | "Slice"
            | "Gather"
            | "GatherElements"
            | "GatherND"
            | "Pad"
            | "Expand"
            | "Tile"
            | "Identity"
            | "Dropout"
            | "Cast"
            | "Shape"
            | "Size"
            | "Constant"
            | "ConstantOfShape"
            | "Range"
            | "DepthToSpace"
            | "SpaceToDepth"
            | "ScatterND"
            | "ScatterElements"
            | "NonZero"
            | "Compress"
            | "OneHot"
            | "EyeLike"
            | "CastLike"
    )
}

/// (MACs, FLOPs) of one non-constant node, or why it cannot be counted.
fn compute<'a>(
    node: &Node,
    shape_of: &dyn Fn(usize) -> Option<&'a [crate::ir::Dim]>,
    sizes: &DimValues,
    out_elems: Option<u64>,
    in_elems: Option<u64>,
) -> Result<(u64, u64), CostStatus> {
    let dims = |i: usize| -> Option<Vec<u64>> { shape_of(i)?.iter().map(|d| sizes.size(d)).collect() };
    let unknown = CostStatus::UnknownShape;
    let op = match (node.domain.as_str(), node.op_type.as_str()) {
        (_, op) if node.is_onnx_domain() => op,
        ("com.microsoft", op) if microsoft_float_form(op).is_some() => op,
        _ => return Err(CostStatus::NoRule),
    };
    let has_bias = |i: usize| node.inputs.get(i).is_some_and(Option::is_some);
    // Quantized ops count as their float forms, reading their operands at
    // the positions they keep them.
    let (weight, bias) = match op {
        "QLinearConv" => (3, Some(8)),
        "ConvInteger" => (1, None),
        _ => (1, Some(2)),
    };
    match op {
        "Conv" | "QLinearConv" | "ConvInteger" => {
            // MACs = output elements × (Cin / group) × kernel area.
            let w = dims(weight).ok_or(unknown)?;
            let out = out_elems.ok_or(unknown)?;
            let macs = w.iter().skip(1).fold(out, |acc, &d| acc.saturating_mul(d));
            let bias_adds = if bias.is_some_and(has_bias) { out } else { 0 };
            Ok((macs, mac_flops(macs, bias_adds)))
        }
        "ConvTranspose" => {
            // Every input element is scattered through Cout/group × kernel.
            let w = dims(1).ok_or(unknown)?;
            let inp = in_elems.ok_or(unknown)?;
            let macs = w.iter().skip(1).fold(inp, |acc, &d| acc.saturating_mul(d));
            let out = out_elems.ok_or(unknown)?;
            Ok((macs, mac_flops(macs, if has_bias(2) { out } else { 0 })))
        }
        "Gemm" | "QGemm" => {
            let a = dims(0).ok_or(unknown)?;
            let trans_a = node.attr_int("transA").unwrap_or(0) != 0;
            let k = if trans_a { a.first() } else { a.get(1) }.copied().ok_or(unknown)?;
            let out = out_elems.ok_or(unknown)?;
            let macs = out.saturating_mul(k);
            let bias = if op == "QGemm" { 6 } else { 2 };
            Ok((macs, mac_flops(macs, if has_bias(bias) { out } else { 0 })))
        }
        "MatMul" | "QLinearMatMul" | "MatMulInteger" | "DynamicQuantizeMatMul" | "MatMulIntegerToFloat" => {
            let a = dims(0).ok_or(unknown)?;
            let k = a.last().copied().ok_or(unknown)?;
            let macs = out_elems.ok_or(unknown)?.saturating_mul(k);
            Ok((macs, mac_flops(macs, 0)))
        }
        "Einsum" => einsum_macs(node, &dims).map(|m| (m, mac_flops(m, 0))).ok_or(unknown),
        // Quantizing divides by the scale and adds the zero point (rounding
        // and saturation not counted); dequantizing subtracts and multiplies;
        // the dynamic form also finds the range (a min and a max).
        "QuantizeLinear" | "DequantizeLinear" => Ok((0, out_elems.ok_or(unknown)?.saturating_mul(2))),
        "DynamicQuantizeLinear" => Ok((0, in_elems.ok_or(unknown)?.saturating_mul(4))),
        "MaxPool" | "AveragePool" | "LpPool" | "QLinearAveragePool" => {
            // One comparison or addition per window element per output.
            let kernel = node.attr_ints("kernel_shape").ok_or(unknown)?;
            let window = kernel.iter().fold(1u64, |acc, &k| acc.saturating_mul(k.max(0) as u64));
            Ok((0, out_elems.ok_or(unknown)?.saturating_mul(window)))
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "QLinearGlobalAveragePool" => {
            Ok((0, in_elems.ok_or(unknown)?))
        }
        "LRN" => {
            // Sum of squares over `size` channels, then scale and power.
            let size = node.attr_int("size").unwrap_or(1).max(1) as u64;
            Ok((0, out_elems.ok_or(unknown)?.saturating_mul(size.saturating_add(3))))
        }
        // An exp and an addition per element (max-subtraction ignored, as for Softmax).
        "ReduceLogSumExp" => Ok((0, in_elems.ok_or(unknown)?.saturating_mul(2))),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceSumSquare" | "ReduceLogSum" | "ArgMax" | "ArgMin" | "CumSum" => Ok((0, in_elems.ok_or(unknown)?)),
        "TopK" => Ok((0, in_elems.ok_or(unknown)?)),
        "Resize" | "Upsample" => Ok((0, out_elems.ok_or(unknown)?)),
        _ if is_data_movement(microsoft_float_form(op).unwrap_or(op)) => Ok((0, 0)),
        _ => match elementwise_flops(microsoft_float_form(op).unwrap_or(op)) {
            Some(f) => Ok((0, f.saturating_mul(out_elems.ok_or(unknown)?))),
            None => Err(CostStatus::NoRule),
        },
    }
}

/// MACs of an Einsum: the product of the sizes of all distinct index letters
/// (each output element sums over the contracted letters).
fn einsum_macs(node: &Node, dims: &dyn Fn(usize) -> Option<Vec<u64>>) -> Option<u64> {
    let eq = node.attr_string("equation")?.replace(' ', "");
    let lhs = eq.split("->").next()?;
    let mut sizes: BTreeMap<char, u64> = BTreeMap::new();
    for (i, term) in lhs.split(',').enumerate() {
        let d = dims(i)?;
        // Ellipsis terms: only count when there is none (rare in classifiers).
        if term.contains("...") || term.len() != d.len() {
            return None;
        }
        for (c, n) in term.chars().zip(d) {
            sizes.insert(c, n);
        }
    }
    Some(sizes.values().fold(1u64, |acc, &n| acc.saturating_mul(n)))
}

/// The float op a quantized `com.microsoft` op computes, for the ops the
/// cost model counts (ONNX Runtime's QOperator format; the MAC ops have rules
/// of their own in [`compute`]).
fn microsoft_float_form(op: &str) -> Option<&'static str> {
    Some(match op {
        "QLinearAdd" => "Add",
        "QLinearMul" => "Mul",
        "QLinearSigmoid" => "Sigmoid",
        "QLinearLeakyRelu" => "LeakyRelu",
        "QLinearSoftmax" => "Softmax",
        "QLinearConcat" => "Concat",
        "QGemm" => "Gemm",
        "QLinearGlobalAveragePool" => "GlobalAveragePool",
        "QLinearAveragePool" => "AveragePool",
        "DynamicQuantizeMatMul" | "MatMulIntegerToFloat" => "MatMul",
        "QuantizeLinear" => "QuantizeLinear",
        "DequantizeLinear" => "DequantizeLinear",
        _ => return None,
    })
}

/// FLOPs of a multiply-accumulate op: 2 per MAC plus any bias additions.
fn mac_flops(macs: u64, bias_adds: u64) -> u64 {
    macs.saturating_mul(2).saturating_add(bias_adds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_table_has_no_movement_ops() {
        for op in ["Reshape", "Concat", "Gather", "Identity"] {
            assert!(elementwise_flops(op).is_none(), "{op}");
            assert!(is_data_movement(op));
        }
    }
}
