//! Inference rules for the default ONNX domain, opsets 7–21, one module per
//! family of ops. The table in [`infer_op`] is the index: find an op there,
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
    if !ctx.node.is_onnx_domain() {
        return Err(RuleError::Unsupported);
    }
    let mut outs = rule(ctx)?;
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
