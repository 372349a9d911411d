//! The `com.microsoft` quantized ops that ONNX Runtime's quantization tool
//! writes in QOperator format (QLinearAdd, QGemm, QLinearGlobalAveragePool,
//! …), and its dynamic-quantization MatMuls. Each is its float op on some of
//! its inputs, so the rule runs the standard rule on a view of the node
//! (the float op type, those inputs) and sets the output element type.

use super::util::{Rule, input, int_attr, result, shape_min_rank};
use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, Node};
use crate::onnx::dtype::ElemType;

/// The default-domain opset the float views are read at (no attribute of
/// the viewed ops changed meaning since).
const VIEW_OPSET: i64 = 19;

pub(super) fn infer(ctx: &OpContext) -> Rule {
    match ctx.node.op_type.as_str() {
        "QuantizeLinear" => super::elementwise::quantize(ctx),
        "DequantizeLinear" => super::elementwise::dequantize(ctx),
        // (A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp)
        "QLinearAdd" | "QLinearMul" => {
            let float_op = &ctx.node.op_type["QLinear".len()..];
            retyped(view(ctx, float_op, &[0, 3])?, input(ctx, 0)?.elem)
        }
        // (X, x_scale, x_zp, y_scale, y_zp), NCHW unless channels_last.
        "QLinearGlobalAveragePool" => {
            let elem = input(ctx, 0)?.elem;
            if int_attr(ctx, "channels_last", 0) == 0 {
                return retyped(view(ctx, "GlobalAveragePool", &[0])?, elem);
            }
            let x = shape_min_rank(ctx, 0, 3)?;
            let mut out = vec![x[0].clone()];
            out.resize(x.len() - 1, Dim::Known(1));
            out.push(x[x.len() - 1].clone());
            Ok(vec![result(elem, out)])
        }
        "QLinearAveragePool" if int_attr(ctx, "channels_last", 0) == 0 => {
            retyped(view(ctx, "AveragePool", &[0])?, input(ctx, 0)?.elem)
        }
        // (Y_scale, Y_zp, then X, X_scale, X_zp per input)
        "QLinearConcat" => {
            let data: Vec<usize> = (2..ctx.node.inputs.len()).step_by(3).collect();
            retyped(view(ctx, "Concat", &data)?, input(ctx, 2)?.elem)
        }
        "QLinearSigmoid" | "QLinearLeakyRelu" | "QLinearSoftmax" => {
            retyped(view(ctx, "Identity", &[0])?, input(ctx, 0)?.elem)
        }
        // (A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): quantized
        // output when y_scale is given, else float like the scales.
        "QGemm" => {
            let elem = if ctx.has_input(7) {
                if ctx.has_input(8) {
                    input(ctx, 8)?.elem
                } else {
                    ElemType::UINT8
                }
            } else {
                input(ctx, 1)?.elem
            };
            retyped(view(ctx, "Gemm", &[0, 3, 6])?, elem)
        }
        // (A, B, b_scale, b_zp, bias) and (A, B, a_scale, b_scale, a_zp, b_zp, bias): float out.
        "DynamicQuantizeMatMul" => retyped(view(ctx, "MatMul", &[0, 1])?, input(ctx, 0)?.elem),
        "MatMulIntegerToFloat" => retyped(view(ctx, "MatMul", &[0, 1])?, input(ctx, 2)?.elem),
        _ => Err(RuleError::Unsupported),
    }
}

/// The standard rule of `op` on the node's inputs `picked` (in that order).
fn view(ctx: &OpContext, op: &str, picked: &[usize]) -> Rule {
    let node = Node {
        op_type: op.to_string(),
        domain: String::new(),
        inputs: picked
            .iter()
            .map(|&i| ctx.node.inputs.get(i).copied().flatten())
            .collect(),
        ..ctx.node.clone()
    };
    let view = OpContext {
        node: &node,
        opset: VIEW_OPSET,
        inputs: picked.iter().map(|&i| ctx.input(i)).collect(),
        folded: picked.iter().map(|&i| ctx.folded(i)).collect(),
        names: picked.iter().map(|&i| ctx.input_name(i)).collect(),
    };
    super::rule(&view)
}

fn retyped(outs: Vec<Inferred>, elem: ElemType) -> Rule {
    Ok(outs
        .into_iter()
        .take(1)
        .map(|o| Inferred {
            ty: o.ty.map(|t| crate::ir::TensorType { elem, shape: t.shape }),
            folded: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Case;

    #[test]
    fn qoperator_ops_have_their_float_shapes() {
        let add = Case::new("QLinearAdd")
            .domain("com.microsoft")
            .input("uint8[N,16,8,8]")
            .input("float[]")
            .input("uint8[]")
            .input("uint8[N,16,8,8]")
            .input("float[]")
            .input("uint8[]")
            .input("float[]")
            .input("uint8[]");
        assert_eq!(add.ty(), "uint8[N,16,8,8]");
        let gap = |x: &str| {
            Case::new("QLinearGlobalAveragePool")
                .domain("com.microsoft")
                .input(x)
                .input("float[]")
                .input("uint8[]")
                .input("float[]")
                .input("uint8[]")
        };
        assert_eq!(gap("uint8[N,32,4,4]").ty(), "uint8[N,32,1,1]");
        assert_eq!(gap("uint8[N,4,4,32]").int("channels_last", 1).ty(), "uint8[N,1,1,32]");
        let gemm = Case::new("QGemm")
            .domain("com.microsoft")
            .input("uint8[N,32]")
            .input("float[]")
            .input("uint8[]")
            .input("int8[10,32]")
            .input("float[]")
            .input("int8[]")
            .input("int32[10]")
            .int("transB", 1);
        assert_eq!(gemm.ty(), "float[N,10]");
        let quantized = gemm.input("float[]").input("uint8[]");
        assert_eq!(quantized.ty(), "uint8[N,10]");
    }
}
