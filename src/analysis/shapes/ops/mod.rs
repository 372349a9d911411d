//! Inference rules for the default ONNX domain, opsets 7–21, one module per
//! family of ops, and for ONNX Runtime's quantized `com.microsoft` ops
//! ([`microsoft`]). The table in [`infer_op`] is the index: find an op there,
//! then its rule in the family module.
//!
//! Shared pieces: [`util`] (inputs, attributes, axes), [`dims`] (symbolic
//! dimension arithmetic and broadcasting), [`fold`] (constant folding of
//! small tensors).

mod dims;
mod elementwise;
mod fold;
mod indexing;
mod layout;
mod linalg;
mod microsoft;
mod norm;
mod reduce;
mod resize;
mod source;
mod spatial;
#[cfg(test)]
mod test_util;
mod util;

use super::{Inferred, OpContext, RuleError};

/// Output types (and folded contents) of one standard-domain node, one entry
/// per output the node lists (rules describe every optional output; the
/// ones a node leaves off are dropped here).
pub fn infer_op(ctx: &OpContext) -> Result<Vec<Inferred>, RuleError> {
    let mut outs = match ctx.node.domain.as_str() {
        _ if ctx.node.is_onnx_domain() => rule(ctx)?,
        "com.microsoft" => microsoft::infer(ctx)?,
        _ => return Err(RuleError::Unsupported),
    };
    outs.truncate(ctx.node.outputs.len());
    Ok(outs)
}

fn rule(ctx: &OpContext) -> Result<Vec<Inferred>, RuleError> {
    match ctx.node.op_type.as_str() {
        // One input, same type out (folded where it makes sense).
        "Identity"
        | "Relu"
        | "Sigmoid"
        | "HardSigmoid"
        | "HardSwish"
        | "Gelu"
        | "Erf"
        | "Tanh"
        | "LeakyRelu"
        | "Elu"
        | "Selu"
        | "Celu"
        | "Softplus"
        | "Softsign"
        | "Mish"
        | "ThresholdedRelu"
        | "Shrink"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Neg"
        | "Abs"
        | "Reciprocal"
        | "Not"
        | "BitwiseNot"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
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
        | "Clip"
        | "CumSum"
        | "Trilu"
        | "LRN"
        | "LpNormalization"
        | "MeanVarianceNormalization"
        | "ScatterND"
        | "ScatterElements"
        | "Scatter"
        | "ReverseSequence" => elementwise::unary(ctx),
        "IsNaN" | "IsInf" => elementwise::unary_to_bool(ctx),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "PRelu" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" => elementwise::binary(ctx),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => elementwise::comparison(ctx),
        "And" | "Or" | "Xor" => elementwise::logical(ctx),
        "Sum" | "Max" | "Min" | "Mean" => elementwise::variadic(ctx),
        "Where" => elementwise::where_op(ctx),
        "Cast" | "CastLike" => elementwise::cast(ctx),
        "Dropout" => elementwise::dropout(ctx),
        "QuantizeLinear" => elementwise::quantize(ctx),
        "DequantizeLinear" => elementwise::dequantize(ctx),
        "DynamicQuantizeLinear" => elementwise::dynamic_quantize(ctx),

        "Conv" | "ConvInteger" | "QLinearConv" => spatial::conv(ctx),
        "ConvTranspose" => spatial::conv_transpose(ctx),
        "MaxPool" | "AveragePool" | "LpPool" => spatial::pool(ctx),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => spatial::global_pool(ctx),

        "Gemm" => linalg::gemm(ctx),
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => linalg::matmul(ctx),
        "Einsum" => linalg::einsum(ctx),

        "BatchNormalization" => norm::batch_norm(ctx),
        "LayerNormalization" => norm::layer_norm(ctx),
        "InstanceNormalization" | "GroupNormalization" => norm::instance_norm(ctx),
        "Softmax" | "LogSoftmax" | "Hardmax" => norm::softmax(ctx),

        "Reshape" => layout::reshape(ctx),
        "Flatten" => layout::flatten(ctx),
        "Squeeze" => layout::squeeze(ctx),
        "Unsqueeze" => layout::unsqueeze(ctx),
        "Transpose" => layout::transpose(ctx),
        "Expand" => layout::expand(ctx),
        "Tile" => layout::tile(ctx),
        "Pad" => layout::pad(ctx),
        "DepthToSpace" | "SpaceToDepth" => layout::depth_space(ctx),

        "Concat" => indexing::concat(ctx),
        "Split" => indexing::split(ctx),
        "Slice" => indexing::slice(ctx),
        "Gather" => indexing::gather(ctx),
        "GatherElements" => indexing::gather_elements(ctx),
        "GatherND" => indexing::gather_nd(ctx),
        "Compress" => indexing::compress(ctx),
        "NonZero" => indexing::non_zero(ctx),
        "OneHot" => indexing::one_hot(ctx),
        "TopK" => indexing::top_k(ctx),

        "Resize" => resize::resize(ctx),
        "Upsample" => resize::upsample(ctx),

        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce::reduce(ctx),
        "ArgMax" | "ArgMin" => reduce::arg_reduce(ctx),

        "Constant" => source::constant(ctx),
        "ConstantOfShape" => source::constant_of_shape(ctx),
        "Shape" => source::shape_op(ctx),
        "Size" => source::size(ctx),
        "Range" => source::range(ctx),
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" | "Bernoulli" => source::like(ctx),
        "RandomNormal" | "RandomUniform" => source::random(ctx),
        "Multinomial" => source::multinomial(ctx),
        _ => Err(RuleError::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{Case, ints, sym_ints};

    /// What exporters emit for `x.view(x.size(0), -1)`: the batch size read
    /// with Shape→Gather, rebuilt with Unsqueeze→Concat, used by Reshape.
    #[test]
    fn exporter_shape_chain_folds_to_a_symbolic_reshape() {
        for opset in [9, 13] {
            let x = "float[batch,2048,1,1]";
            let shape = Case::new("Shape").opset(opset).input(x);
            let batch = Case::new("Gather")
                .opset(opset)
                .from(&shape)
                .folded("int64[]", ints(&[0]));
            let unsqueeze = match opset {
                9 => Case::new("Unsqueeze").opset(9).from(&batch).ints("axes", &[0]),
                _ => Case::new("Unsqueeze")
                    .opset(opset)
                    .from(&batch)
                    .folded("int64[1]", ints(&[0])),
            };
            let target = Case::new("Concat")
                .opset(opset)
                .int("axis", 0)
                .from(&unsqueeze)
                .folded("int64[1]", ints(&[-1]));
            assert_eq!(target.value(), Some(sym_ints("batch,-1")));
            let reshape = Case::new("Reshape").opset(opset).input(x).from(&target);
            assert_eq!(reshape.ty(), "float[batch,2048]", "opset {opset}");
        }
    }

    /// Splitting heads: `[N,S,768]` → Shape→Slice(0:2)→Concat([12,64]).
    #[test]
    fn shape_slice_concat_keeps_two_symbols() {
        let x = "float[N,S,768]";
        let shape = Case::new("Shape").input(x);
        let lead = Case::new("Slice")
            .from(&shape)
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[2]));
        let target = Case::new("Concat")
            .int("axis", 0)
            .from(&lead)
            .folded("int64[2]", ints(&[12, 64]));
        assert_eq!(Case::new("Reshape").input(x).from(&target).ty(), "float[N,S,12,64]");
    }

    /// Element counts computed from a Shape: Cast to float and back, Mul,
    /// Div, ReduceProd, ConstantOfShape, Range.
    #[test]
    fn integer_shape_arithmetic_folds() {
        let shape = Case::new("Shape").input("float[2,3,4]");
        let count = Case::new("ReduceProd").int("keepdims", 0).from(&shape);
        assert_eq!(count.value(), Some(ints(&[24])));
        let as_float = Case::new("Cast").int("to", 1).from(&count);
        let half = Case::new("Div")
            .from(&as_float)
            .folded("float[]", super::test_util::floats(&[2.0]));
        let back = Case::new("Cast").int("to", 7).from(&half);
        assert_eq!(back.value(), Some(ints(&[12])));
        let steps = Case::new("Range")
            .folded("int64[]", ints(&[0]))
            .from(&back)
            .folded("int64[]", ints(&[4]));
        assert_eq!((steps.ty(), steps.value()), ("int64[3]".into(), Some(ints(&[0, 4, 8]))));
        let filled = Case::new("ConstantOfShape").from(&shape);
        assert_eq!(filled.ty(), "float[2,3,4]");
    }

    #[test]
    fn other_domains_and_unknown_ops_are_unsupported() {
        use crate::analysis::shapes::RuleError;
        assert_eq!(Case::new("NoSuchOp").input("float[1]").err(), RuleError::Unsupported);
        let custom = Case::new("Relu").domain("com.microsoft").input("float[1]");
        assert_eq!(custom.err(), RuleError::Unsupported);
        assert_eq!(Case::new("Relu").domain("ai.onnx").input("float[1]").ty(), "float[1]");
    }

    /// Every rule, fed odd inputs and attributes, answers without panicking.
    #[test]
    fn odd_inputs_never_panic() {
        use crate::ir::Folded;
        const OPS: &[&str] = &[
            "Identity",
            "Relu",
            "Neg",
            "Abs",
            "Not",
            "Floor",
            "Round",
            "Sign",
            "Clip",
            "IsNaN",
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Mod",
            "PRelu",
            "Equal",
            "Less",
            "And",
            "Sum",
            "Max",
            "Mean",
            "Where",
            "Cast",
            "CastLike",
            "Dropout",
            "QuantizeLinear",
            "DequantizeLinear",
            "DynamicQuantizeLinear",
            "Conv",
            "ConvInteger",
            "QLinearConv",
            "ConvTranspose",
            "MaxPool",
            "AveragePool",
            "GlobalAveragePool",
            "Gemm",
            "MatMul",
            "QLinearMatMul",
            "Einsum",
            "BatchNormalization",
            "LayerNormalization",
            "InstanceNormalization",
            "Softmax",
            "Reshape",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Transpose",
            "Expand",
            "Tile",
            "Pad",
            "DepthToSpace",
            "SpaceToDepth",
            "Concat",
            "Split",
            "Slice",
            "Gather",
            "GatherElements",
            "GatherND",
            "Compress",
            "NonZero",
            "OneHot",
            "TopK",
            "Resize",
            "Upsample",
            "ReduceSum",
            "ReduceProd",
            "ReduceMean",
            "ArgMax",
            "Constant",
            "ConstantOfShape",
            "Shape",
            "Size",
            "Range",
            "EyeLike",
            "RandomNormal",
            "Multinomial",
        ];
        let big = [i64::MIN, -1, 0, i64::MAX];
        let types = [
            "float[]",
            "float[0]",
            "float[...]",
            "int64[?]",
            "float[N,0,?,1]",
            "int64[4]",
            "float[1,1,1,1,1]",
            "int64[1000000000000]",
        ];
        let contents = [
            None,
            Some(ints(&big)),
            Some(Folded::Floats(vec![f64::NAN, f64::INFINITY, -0.5, 1e300])),
            Some(sym_ints("N,?,0,-5")),
        ];
        for op in OPS {
            for opset in [7, 11, 13, 18, 21] {
                for (ti, t) in types.iter().enumerate() {
                    for c in &contents {
                        for n_inputs in 0..9 {
                            let mut case = Case::new(op).opset(opset).outputs(3);
                            for k in 0..n_inputs {
                                // Mix types across inputs; fold some, omit some.
                                let t = types[(ti + k) % types.len()];
                                case = match (k % 3, c) {
                                    (0, Some(f)) => case.folded(t, f.clone()),
                                    (2, _) => case.absent(),
                                    _ => case.input(t),
                                };
                            }
                            for v in big {
                                let odd = case_with_attrs(Case::new(op).opset(opset).input(t).input(t), v);
                                let _ = odd.run();
                            }
                            let _ = case.run();
                        }
                    }
                }
            }
        }
    }

    fn case_with_attrs(case: Case, v: i64) -> Case {
        let names = [
            "axis",
            "group",
            "blocksize",
            "to",
            "keepdims",
            "start",
            "end",
            "batch_dims",
            "k",
            "sample_size",
        ];
        let lists = [
            "axes",
            "perm",
            "pads",
            "strides",
            "kernel_shape",
            "dilations",
            "split",
            "starts",
            "ends",
            "shape",
        ];
        let mut case = case
            .string("auto_pad", "SAME_UPPER")
            .string("equation", "...i,i->...")
            .int("ceil_mode", 1);
        for n in names {
            case = case.int(n, v);
        }
        for n in lists {
            case = case.ints(n, &[v, v]);
        }
        case.ints("output_shape", &[v]).floats("scales", &[f32::NAN, 1e30])
    }
}
