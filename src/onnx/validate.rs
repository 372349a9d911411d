//! The checks every transform relies on, run once before any of them
//! (`insert-exits`, `optimize`, `fit`, `calibrate`, `compile`, `eval`): node
//! arity and required attributes per operator schema and opset, stored
//! tensors whose type, dims and bytes agree, every graph level included.
//! Unknown ops and domains pass (the cost model flags them); a model that
//! passes may still be rejected later for what a transform needs beyond the
//! schema (a narrow cut, a classifier).
//!
//! `inspect` and `print` do not run it: they show malformed models, which is
//! how users debug them.

use std::ops::RangeInclusive;

use super::dtype::ElemType;
use super::proto::{GraphProto, ModelProto, NodeProto, TensorProto, attribute_proto::AttributeType, tensor_proto};

/// One schema row: how many inputs and outputs a node may list (trailing
/// optional ones may be left off) and the attributes it must have.
struct Schema {
    inputs: RangeInclusive<usize>,
    outputs: RangeInclusive<usize>,
    required: &'static [&'static str],
}

const MANY: usize = usize::MAX;

fn schema(inputs: RangeInclusive<usize>, outputs: RangeInclusive<usize>, required: &'static [&'static str]) -> Schema {
    Schema {
        inputs,
        outputs,
        required,
    }
}

/// The default-domain schema of `op` at `opset`, where eexc knows it.
fn standard_schema(op: &str, opset: i64) -> Option<Schema> {
    let one = 1..=1;
    Some(match op {
        "Relu"
        | "Sigmoid"
        | "Tanh"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Neg"
        | "Abs"
        | "Reciprocal"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Erf"
        | "Not"
        | "Identity"
        | "Softplus"
        | "Softsign"
        | "Sin"
        | "Cos"
        | "Tan"
        | "Asin"
        | "Acos"
        | "Atan"
        | "Sinh"
        | "Cosh"
        | "Asinh"
        | "Acosh"
        | "Atanh"
        | "IsNaN"
        | "IsInf"
        | "HardSwish"
        | "Mish"
        | "Elu"
        | "Selu"
        | "LeakyRelu"
        | "HardSigmoid"
        | "ThresholdedRelu"
        | "Celu"
        | "Shrink"
        | "Gelu"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "Flatten"
        | "Transpose"
        | "GlobalAveragePool"
        | "GlobalMaxPool"
        | "GlobalLpPool"
        | "Shape"
        | "Size"
        | "NonZero"
        | "MeanVarianceNormalization"
        | "BitwiseNot"
        | "ConstantOfShape"
        | "EyeLike"
        | "ArgMax"
        | "ArgMin" => schema(one.clone(), one, &[]),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "PRelu" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "And" | "Or" | "Xor" | "BitShift" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor"
        | "MatMul" | "Expand" | "Gather" | "GatherElements" | "GatherND" | "CastLike" | "Compress" | "CumSum" => {
            schema(2..=2, one, &[])
        }
        "Where" | "OneHot" | "ScatterND" | "ScatterElements" | "Range" => schema(3..=3, one, &[]),
        "Sum" | "Max" | "Min" | "Mean" => schema(1..=MANY, one, &[]),
        "Concat" => schema(1..=MANY, one, &["axis"]),
        "Einsum" => schema(1..=MANY, one, &["equation"]),
        "Conv" | "ConvTranspose" => schema(2..=3, one, &[]),
        "ConvInteger" | "MatMulInteger" => schema(2..=4, one, &[]),
        "QLinearConv" => schema(8..=9, one, &[]),
        "QLinearMatMul" => schema(8..=8, one, &[]),
        "QuantizeLinear" | "DequantizeLinear" => schema(2..=3, one, &[]),
        "DynamicQuantizeLinear" => schema(one.clone(), 3..=3, &[]),
        "Gemm" => schema(2..=3, one, &[]),
        "BatchNormalization" => schema(5..=5, 1..=5, &[]),
        "LayerNormalization" => schema(2..=3, 1..=3, &[]),
        "InstanceNormalization" | "GroupNormalization" => schema(3..=3, one, &[]),
        "LRN" => schema(one.clone(), one, &["size"]),
        "MaxPool" => schema(one.clone(), 1..=2, &["kernel_shape"]),
        "AveragePool" | "LpPool" => schema(one.clone(), one, &["kernel_shape"]),
        "Dropout" if opset >= 12 => schema(1..=3, 1..=2, &[]),
        "Dropout" => schema(one.clone(), 1..=2, &[]),
        "Cast" => schema(one.clone(), one, &["to"]),
        "Clip" if opset >= 11 => schema(1..=3, one, &[]),
        "Clip" => schema(one.clone(), one, &[]),
        "Reshape" if opset >= 5 => schema(2..=2, one, &[]),
        "Reshape" => schema(one.clone(), one, &["shape"]),
        "Tile" if opset >= 6 => schema(2..=2, one, &[]),
        "Squeeze" if opset >= 13 => schema(1..=2, one, &[]),
        "Squeeze" => schema(one.clone(), one, &[]),
        "Unsqueeze" if opset >= 13 => schema(2..=2, one, &[]),
        "Unsqueeze" => schema(one.clone(), one, &["axes"]),
        "Split" if opset >= 13 => schema(1..=2, 1..=MANY, &[]),
        "Split" => schema(one.clone(), 1..=MANY, &[]),
        "Slice" if opset >= 10 => schema(3..=5, one, &[]),
        "Slice" => schema(one.clone(), one, &["starts", "ends"]),
        "Pad" if opset >= 11 => schema(2..=4, one, &[]),
        "Pad" => schema(one.clone(), one, &["pads"]),
        "Resize" if opset >= 11 => schema(1..=4, one, &[]),
        "Resize" | "Upsample" if opset >= 9 => schema(2..=2, one, &[]),
        "ReduceSum" if opset >= 13 => schema(1..=2, one, &[]),
        "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum"
        | "ReduceLogSumExp" | "ReduceSumSquare" | "ReduceSum" => {
            schema(if opset >= 18 { 1..=2 } else { one.clone() }, one, &[])
        }
        "TopK" if opset >= 10 => schema(2..=2, 2..=2, &[]),
        "TopK" => schema(one.clone(), 2..=2, &["k"]),
        "DepthToSpace" | "SpaceToDepth" => schema(one.clone(), one, &["blocksize"]),
        "Trilu" => schema(1..=2, one, &[]),
        "Constant" => schema(0..=0, one, &[]),
        "If" => schema(one, 1..=MANY, &["then_branch", "else_branch"]),
        "Loop" => schema(2..=MANY, 1..=MANY, &["body"]),
        "Scan" => schema(1..=MANY, 1..=MANY, &["body", "num_scan_inputs"]),
        _ => return None,
    })
}

/// The first default-domain opset that has `op`, for the ops of the table
/// above that came after opset 1 (from ONNX's operator changelog); a node
/// of an op its model's opset does not have yet is refused.
fn first_opset(op: &str) -> i64 {
    match op {
        "Acos" | "Asin" | "Atan" | "Cos" | "Sin" | "Tan" => 7,
        "Expand" | "Scan" => 8,
        "Acosh"
        | "Asinh"
        | "Atanh"
        | "Compress"
        | "ConstantOfShape"
        | "Cosh"
        | "Erf"
        | "EyeLike"
        | "IsNaN"
        | "MeanVarianceNormalization"
        | "NonZero"
        | "OneHot"
        | "Shrink"
        | "Sign"
        | "Sinh"
        | "Where" => 9,
        "ConvInteger" | "DequantizeLinear" | "IsInf" | "MatMulInteger" | "Mod" | "QLinearConv" | "QLinearMatMul"
        | "QuantizeLinear" | "Resize" | "ThresholdedRelu" => 10,
        "BitShift"
        | "CumSum"
        | "DynamicQuantizeLinear"
        | "GatherElements"
        | "GatherND"
        | "Range"
        | "Round"
        | "ScatterElements"
        | "ScatterND" => 11,
        "Celu" | "Einsum" | "GreaterOrEqual" | "LessOrEqual" => 12,
        "HardSwish" | "Trilu" => 14,
        "CastLike" => 15,
        "LayerNormalization" => 17,
        "BitwiseAnd" | "BitwiseNot" | "BitwiseOr" | "BitwiseXor" | "GroupNormalization" | "Mish" => 18,
        "Gelu" => 20,
        _ => 1,
    }
}

/// Checks `model` (all graph levels); `Err` is one line naming the node or
/// tensor and the problem.
pub fn check_model(model: &ModelProto) -> Result<(), String> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map_or(1, |o| o.version());
    if opset < 1 {
        return Err(format!(
            "the model imports default-domain opset {opset}; ONNX opsets start at 1"
        ));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| "the model has no graph".to_string())?;
    check_graph(graph, opset)
}

fn check_graph(graph: &GraphProto, opset: i64) -> Result<(), String> {
    for t in &graph.initializer {
        check_tensor(t).map_err(|e| format!("initializer '{}': {e}", t.name()))?;
    }
    for n in &graph.node {
        check_node(n, opset).map_err(|e| format!("node {}: {e}", label(n)))?;
        for a in &n.attribute {
            if let Some(t) = a.t.as_ref() {
                check_tensor(t).map_err(|e| format!("node {}: attribute '{}': {e}", label(n), a.name()))?;
            }
            for g in a.g.as_ref().into_iter().chain(&a.graphs) {
                check_graph(g, opset)?;
            }
        }
    }
    Ok(())
}

fn label(n: &NodeProto) -> String {
    if n.name().is_empty() {
        format!(
            "({}) making '{}'",
            n.op_type(),
            n.output.first().map_or("", String::as_str)
        )
    } else {
        format!("'{}' ({})", n.name(), n.op_type())
    }
}

fn check_node(n: &NodeProto, opset: i64) -> Result<(), String> {
    if !(n.domain().is_empty() || n.domain() == "ai.onnx") {
        return Ok(());
    }
    let first = first_opset(n.op_type());
    if first > opset {
        return Err(format!(
            "{} exists from opset {first}; the model imports opset {opset}",
            n.op_type()
        ));
    }
    let Some(s) = standard_schema(n.op_type(), opset) else {
        return Ok(());
    };
    let count = |what: &str, have: usize, range: &RangeInclusive<usize>| {
        if range.contains(&have) {
            return Ok(());
        }
        let (lo, hi) = (*range.start(), *range.end());
        let wanted = match (lo, hi) {
            (lo, hi) if lo == hi => format!("{lo}"),
            (lo, MANY) => format!("at least {lo}"),
            (lo, hi) => format!("{lo} to {hi}"),
        };
        let what = if wanted == "1" { &what[..what.len() - 1] } else { what };
        Err(format!("takes {wanted} {what} at opset {opset}, has {have}"))
    };
    // A required input left empty is as missing as one not listed.
    let listed_inputs = n.input.len();
    count("inputs", listed_inputs, &s.inputs)?;
    count("outputs", n.output.len(), &s.outputs)?;
    if let Some(i) = (0..(*s.inputs.start()).min(listed_inputs)).find(|&i| n.input[i].is_empty()) {
        return Err(format!("required input #{i} is empty"));
    }
    if n.output.first().is_some_and(String::is_empty) {
        return Err("its first output is unnamed".into());
    }
    for &attr in s.required {
        let Some(a) = n.attribute.iter().find(|a| a.name() == attr) else {
            return Err(format!("required attribute '{attr}' is missing"));
        };
        let graph = matches!(attr, "then_branch" | "else_branch" | "body");
        if graph && a.type_() != AttributeType::GRAPH {
            return Err(format!("attribute '{attr}' is not a graph"));
        }
    }
    if n.op_type() == "Constant" {
        const VALUES: [&str; 8] = [
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
            "value_string",
            "value_strings",
            "sparse_value",
        ];
        let values = n.attribute.iter().filter(|a| VALUES.contains(&a.name())).count();
        if values != 1 {
            return Err(format!("needs exactly one value attribute, has {values}"));
        }
    }
    Ok(())
}

/// A stored tensor: a known element type, non-negative dims whose product
/// fits in 64 bits, and as many stored values as its dims say.
fn check_tensor(t: &TensorProto) -> Result<(), String> {
    let elem = ElemType(t.data_type());
    if t.data_type() == 0 || elem.name().starts_with("dtype<") {
        return Err(format!("data type {} is not an ONNX type", t.data_type()));
    }
    let elements = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .ok_or_else(|| format!("dims {:?} are negative or hold more than 2^64 elements", t.dims))?;
    if t.data_location() == tensor_proto::DataLocation::EXTERNAL {
        return Ok(()); // checked against its file when loaded
    }
    let Some(bytes) = elem.bytes_for(elements) else {
        return Ok(()); // strings
    };
    if let Some(raw) = t.raw_data.as_deref().filter(|r| !r.is_empty()) {
        if raw.len() as u64 != bytes {
            return Err(format!(
                "{} bytes of raw data, but {elements} {} elements need {bytes}",
                raw.len(),
                elem.name()
            ));
        }
        return Ok(());
    }
    // Typed fields: one value per element, in the field the type uses.
    let stored = match elem.0 {
        1 => t.float_data.len(),
        11 => t.double_data.len(),
        7 => t.int64_data.len(),
        12 | 13 => t.uint64_data.len(),
        2..=6 | 9 | 10 | 16..=20 | 24 => t.int32_data.len(),
        _ => return Ok(()), // complex and packed sub-byte types
    } as u64;
    if stored != elements && !(stored == 0 && elements == 0) {
        return Err(format!(
            "{stored} stored values, but its dims {:?} hold {elements}",
            t.dims
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.iter().map(|s| s.to_string()).collect();
        n
    }

    #[test]
    fn arity_and_required_attributes_follow_the_opset() {
        assert!(check_node(&node("Conv", &["x", "w"], &["y"]), 17).is_ok());
        let e = check_node(&node("Conv", &["x"], &["y"]), 17).unwrap_err();
        assert_eq!(e, "takes 2 to 3 inputs at opset 17, has 1");
        assert!(check_node(&node("Unsqueeze", &["x", "axes"], &["y"]), 13).is_ok());
        assert_eq!(
            check_node(&node("Unsqueeze", &["x"], &["y"]), 11).unwrap_err(),
            "required attribute 'axes' is missing"
        );
        assert!(
            check_node(&node("Constant", &[], &[]), 17)
                .unwrap_err()
                .contains("takes 1 output at")
        );
        assert_eq!(
            check_node(&node("Gemm", &["", "b"], &["y"]), 17).unwrap_err(),
            "required input #0 is empty"
        );
        // Unknown ops and other domains pass.
        assert!(check_node(&node("NoSuchOp", &[], &[]), 17).is_ok());
    }

    #[test]
    fn stored_tensors_agree_with_their_dims() {
        let mut t = TensorProto::new();
        t.set_data_type(1);
        t.dims = vec![2, 3];
        t.float_data = vec![0.0; 6];
        assert!(check_tensor(&t).is_ok());
        t.float_data.pop();
        assert!(check_tensor(&t).unwrap_err().contains("5 stored values"));
        t.set_raw_data(vec![0u8; 20].into());
        assert!(check_tensor(&t).unwrap_err().contains("20 bytes of raw data"));
        t.dims = vec![1 << 40, 1 << 40];
        assert!(check_tensor(&t).unwrap_err().contains("2^64"));
        t.set_data_type(99);
        assert!(check_tensor(&t).unwrap_err().contains("not an ONNX type"));
    }
}
