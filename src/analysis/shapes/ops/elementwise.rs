//! Element-wise ops: one-input maps (activations, rounding, Identity, Cast),
//! broadcasting arithmetic, comparisons and logic, variadic Sum/Max/Min/Mean,
//! Where, Dropout and the quantisation ops. Small integer and float contents
//! fold, since exporters compute shapes with Add/Mul/Div/Cast/Equal/Where.

use super::dims;
use super::fold::{self, Scalar};
use super::util::{Rule, input, int_attr, invalid, result};
use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, TensorType};
use crate::onnx::dtype::ElemType;

/// Output type equal to input 0's (activations, Identity, Clip, CumSum, LRN,
/// ...); contents fold for the maps in [`unary_scalar`].
pub(super) fn unary(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let op = ctx.node.op_type.as_str();
    let folded = t
        .shape
        .as_deref()
        .and_then(|s| fold::elementwise(ctx, &[0], s, |x| unary_scalar(op, &x[0])));
    Ok(vec![Inferred {
        ty: Some(t.clone()),
        folded,
    }])
}

/// Same shape as input 0, boolean elements (IsNaN, IsInf).
pub(super) fn unary_to_bool(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    Ok(vec![Inferred::of(TensorType {
        elem: ElemType::BOOL,
        shape: t.shape.clone(),
    })])
}

fn unary_scalar(op: &str, x: &Scalar) -> Option<Scalar> {
    use Scalar::{Float, Int};
    Some(match (op, x) {
        ("Identity", _) => x.clone(),
        ("Neg", Int(d)) => Int(dims::mul(d, &Dim::Known(-1))),
        ("Neg", Float(f)) => Float(-f),
        // Symbols stand for sizes, which are never negative.
        ("Abs" | "Relu", Int(Dim::Sym(_))) => x.clone(),
        ("Abs", Int(d)) => Int(d.known().and_then(i64::checked_abs).map_or(Dim::Unknown, Dim::Known)),
        ("Abs", Float(f)) => Float(f.abs()),
        ("Relu", Int(d)) => Int(d.known().map_or(Dim::Unknown, |v| Dim::Known(v.max(0)))),
        ("Relu", Float(f)) => Float(f.max(0.0)),
        ("Sign", Int(d)) => Int(d.known().map_or(Dim::Unknown, |v| Dim::Known(v.signum()))),
        ("Sign", Float(f)) => Float(if *f == 0.0 { 0.0 } else { f.signum() }),
        ("Not", Int(d)) => Int(d.known().map_or(Dim::Unknown, |v| Dim::Known((v == 0) as i64))),
        ("Floor", Float(f)) => Float(f.floor()),
        ("Ceil", Float(f)) => Float(f.ceil()),
        ("Round", Float(f)) => Float(f.round_ties_even()),
        ("Sqrt", Float(f)) => Float(f.sqrt()),
        ("Exp", Float(f)) => Float(f.exp()),
        ("Log", Float(f)) => Float(f.ln()),
        ("Reciprocal", Float(f)) => Float(1.0 / f),
        _ => return None,
    })
}

/// Broadcast shape of the given inputs, `None` when some rank is unknown.
fn broadcast_inputs(ctx: &OpContext, inputs: &[usize]) -> Result<Option<Vec<Dim>>, RuleError> {
    let mut shapes = Vec::with_capacity(inputs.len());
    for &i in inputs {
        match &input(ctx, i)?.shape {
            Some(s) => shapes.push(s.as_slice()),
            None => return Ok(None),
        }
    }
    dims::broadcast(&shapes).map(Some).map_err(invalid)
}

/// Broadcast result of `inputs` with element type `elem`, folded with `f`.
fn broadcasting(ctx: &OpContext, inputs: &[usize], elem: ElemType, f: impl Fn(&[Scalar]) -> Option<Scalar>) -> Rule {
    let shape = broadcast_inputs(ctx, inputs)?;
    let folded = shape.as_deref().and_then(|s| fold::elementwise(ctx, inputs, s, f));
    Ok(vec![Inferred {
        ty: Some(TensorType { elem, shape }),
        folded,
    }])
}

/// Two-input arithmetic (Add, Sub, Mul, Div, Pow, Mod, PRelu, bitwise ops).
pub(super) fn binary(ctx: &OpContext) -> Rule {
    let op = ctx.node.op_type.as_str();
    let fmod = int_attr(ctx, "fmod", 0) != 0;
    broadcasting(ctx, &[0, 1], input(ctx, 0)?.elem, |x| arith(op, fmod, &x[0], &x[1]))
}

/// Comparisons: broadcast, boolean result.
pub(super) fn comparison(ctx: &OpContext) -> Rule {
    let op = ctx.node.op_type.as_str();
    broadcasting(ctx, &[0, 1], ElemType::BOOL, |x| compare(op, &x[0], &x[1]))
}

/// And, Or, Xor: boolean in, boolean out.
pub(super) fn logical(ctx: &OpContext) -> Rule {
    let op = ctx.node.op_type.as_str();
    broadcasting(ctx, &[0, 1], ElemType::BOOL, |x| {
        let (a, b) = (bool_of(&x[0])?, bool_of(&x[1])?);
        let r = match op {
            "And" => a && b,
            "Or" => a || b,
            _ => a != b,
        };
        Some(Scalar::Int(Dim::Known(r as i64)))
    })
}

/// Sum, Max, Min, Mean over any number of broadcast inputs.
pub(super) fn variadic(ctx: &OpContext) -> Rule {
    let n = ctx.node.inputs.len();
    if n == 0 {
        return Err(invalid("needs at least one input"));
    }
    let op = ctx.node.op_type.as_str();
    let inputs: Vec<usize> = (0..n).collect();
    broadcasting(ctx, &inputs, input(ctx, 0)?.elem, |x| {
        let (first, rest) = x.split_first()?;
        let step = if op == "Mean" { "Add" } else { op };
        let total = rest
            .iter()
            .try_fold(first.clone(), |acc, v| arith(step, false, &acc, v))?;
        match (op, total) {
            ("Mean", Scalar::Float(f)) => Some(Scalar::Float(f / x.len() as f64)),
            ("Mean", Scalar::Int(_)) => None,
            (_, t) => Some(t),
        }
    })
}

/// Where(cond, x, y): broadcast of all three, x's element type.
pub(super) fn where_op(ctx: &OpContext) -> Rule {
    broadcasting(ctx, &[0, 1, 2], input(ctx, 1)?.elem, |x| match bool_of(&x[0]) {
        Some(true) => Some(x[1].clone()),
        Some(false) => Some(x[2].clone()),
        None if x[1] == x[2] => Some(x[1].clone()),
        None => None,
    })
}

fn bool_of(s: &Scalar) -> Option<bool> {
    match s {
        Scalar::Int(d) => d.known().map(|v| v != 0),
        Scalar::Float(f) => Some(*f != 0.0),
    }
}

/// One element of a binary arithmetic op (shared with the reductions).
pub(super) fn arith(op: &str, fmod: bool, a: &Scalar, b: &Scalar) -> Option<Scalar> {
    use Scalar::{Float, Int};
    Some(match (a, b) {
        (Int(x), Int(y)) => Int(match op {
            "Add" | "Sum" => dims::add(x, y),
            "Sub" => dims::sub(x, y),
            "Mul" => dims::mul(x, y),
            "Div" => dims::div(x, y),
            "Max" | "Min" => match (x.known(), y.known()) {
                (Some(p), Some(q)) => Dim::Known(if op == "Max" { p.max(q) } else { p.min(q) }),
                _ if x == y => x.clone(),
                _ => Dim::Unknown,
            },
            "Pow" => match (x.known(), y.known().and_then(|e| u32::try_from(e).ok())) {
                (Some(p), Some(e)) => p.checked_pow(e).map_or(Dim::Unknown, Dim::Known),
                _ => Dim::Unknown,
            },
            "Mod" => match (x.known(), y.known()) {
                (Some(p), Some(q)) => p.checked_rem(q).map_or(Dim::Unknown, |r| {
                    // fmod=0 takes the divisor's sign, like Python's `%`.
                    Dim::Known(if !fmod && r != 0 && (r < 0) != (q < 0) {
                        r + q
                    } else {
                        r
                    })
                }),
                _ => Dim::Unknown,
            },
            _ => return None,
        }),
        (Float(x), Float(y)) => Float(match op {
            "Add" | "Sum" => x + y,
            "Sub" => x - y,
            "Mul" => x * y,
            "Div" => x / y,
            "Pow" => x.powf(*y),
            "Max" => x.max(*y),
            "Min" => x.min(*y),
            "Mod" => x % y,
            _ => return None,
        }),
        _ => return None,
    })
}

fn compare(op: &str, a: &Scalar, b: &Scalar) -> Option<Scalar> {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => match (x, y) {
            (Dim::Known(p), Dim::Known(q)) => Some(p.cmp(q)),
            (x, y) if x == y && *x != Dim::Unknown => Some(Ordering::Equal),
            _ => return Some(Scalar::Int(Dim::Unknown)),
        },
        (Scalar::Float(x), Scalar::Float(y)) => x.partial_cmp(y),
        _ => return None,
    };
    // NaN compares false to everything.
    let r = ord.is_some_and(|o| match op {
        "Equal" => o.is_eq(),
        "Less" => o.is_lt(),
        "Greater" => o.is_gt(),
        "LessOrEqual" => o.is_le(),
        _ => o.is_ge(),
    });
    Some(Scalar::Int(Dim::Known(r as i64)))
}

/// Cast(to), CastLike(target): input 0's shape, the new element type.
pub(super) fn cast(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let to = if ctx.node.op_type == "CastLike" {
        input(ctx, 1)?.elem
    } else {
        let code = ctx
            .node
            .attr_int("to")
            .ok_or_else(|| invalid("attribute 'to' is missing"))?;
        ElemType(i32::try_from(code).map_err(|_| invalid(format!("'to' = {code} is not a type")))?)
    };
    let folded = t
        .shape
        .as_deref()
        .and_then(|s| fold::elementwise(ctx, &[0], s, |x| cast_scalar(&x[0], to)));
    Ok(vec![Inferred {
        ty: Some(TensorType {
            elem: to,
            shape: t.shape.clone(),
        }),
        folded,
    }])
}

fn cast_scalar(x: &Scalar, to: ElemType) -> Option<Scalar> {
    if to == ElemType::BOOL {
        return match x {
            Scalar::Int(Dim::Sym(_) | Dim::Expr(_)) => Some(Scalar::Int(Dim::Unknown)),
            _ => bool_of(x).map(|b| Scalar::Int(Dim::Known(b as i64))),
        };
    }
    if to.is_integer() {
        return match x {
            Scalar::Int(_) => Some(x.clone()),
            Scalar::Float(f) if f.is_finite() => Some(Scalar::Int(Dim::Known(f.trunc() as i64))),
            Scalar::Float(_) => None,
        };
    }
    let f = x.as_f64()?;
    match to.0 {
        1 => Some(Scalar::Float(f as f32 as f64)),
        11 => Some(Scalar::Float(f)),
        _ => None,
    }
}

/// Dropout: output as input; the mask is boolean from opset 10 (the input's
/// type before).
pub(super) fn dropout(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let mask_elem = if ctx.opset >= 10 { ElemType::BOOL } else { t.elem };
    Ok(vec![
        Inferred {
            ty: Some(t.clone()),
            folded: ctx.folded(0).cloned(),
        },
        Inferred::of(TensorType {
            elem: mask_elem,
            shape: t.shape.clone(),
        }),
    ])
}

/// QuantizeLinear: x's shape; element type from `output_dtype` (21+), else
/// the zero point's, else uint8.
pub(super) fn quantize(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let elem = match ctx.node.attr_int("output_dtype").filter(|&c| c != 0) {
        Some(code) => ElemType(i32::try_from(code).map_err(|_| invalid("bad output_dtype"))?),
        None if ctx.has_input(2) => input(ctx, 2)?.elem,
        None => ElemType::UINT8,
    };
    Ok(vec![Inferred::of(TensorType {
        elem,
        shape: t.shape.clone(),
    })])
}

/// DequantizeLinear: x's shape, the scale's element type.
pub(super) fn dequantize(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    Ok(vec![Inferred::of(TensorType {
        elem: input(ctx, 1)?.elem,
        shape: t.shape.clone(),
    })])
}

/// DynamicQuantizeLinear: uint8 y like x, scalar scale and zero point.
pub(super) fn dynamic_quantize(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    Ok(vec![
        Inferred::of(TensorType {
            elem: ElemType::UINT8,
            shape: t.shape.clone(),
        }),
        result(ElemType::FLOAT, Vec::new()),
        result(ElemType::UINT8, Vec::new()),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, floats, ints, sym_ints};
    use crate::analysis::shapes::RuleError;

    #[test]
    fn activations_keep_the_type() {
        for op in [
            "Relu",
            "Sigmoid",
            "HardSigmoid",
            "HardSwish",
            "Gelu",
            "Erf",
            "Tanh",
            "LeakyRelu",
        ] {
            assert_eq!(Case::new(op).input("float[N,3,?]").ty(), "float[N,3,?]", "{op}");
        }
        for op in [
            "Elu",
            "Selu",
            "Softplus",
            "Exp",
            "Log",
            "Sqrt",
            "Neg",
            "Abs",
            "Reciprocal",
        ] {
            assert_eq!(Case::new(op).input("float[2]").ty(), "float[2]", "{op}");
        }
        for op in ["Floor", "Ceil", "Round", "Sign", "Identity", "Clip", "LRN", "CumSum"] {
            assert_eq!(Case::new(op).input("float[...]").ty(), "float[...]", "{op}");
        }
        assert_eq!(Case::new("Not").input("bool[3]").ty(), "bool[3]");
        assert_eq!(Case::new("IsNaN").input("float[3]").ty(), "bool[3]");
        assert_eq!(Case::new("Relu").unknown().err(), RuleError::NeedsInput);
    }

    #[test]
    fn clip_forms_keep_the_type() {
        let old = Case::new("Clip")
            .opset(6)
            .input("float[1,3]")
            .float("min", 0.0)
            .float("max", 6.0);
        assert_eq!(old.ty(), "float[1,3]");
        let new = Case::new("Clip")
            .opset(11)
            .input("float[1,3]")
            .absent()
            .input("float[]");
        assert_eq!(new.ty(), "float[1,3]");
    }

    #[test]
    fn unary_maps_fold() {
        assert_eq!(
            Case::new("Neg").folded("int64[2]", ints(&[3, -4])).value(),
            Some(ints(&[-3, 4]))
        );
        assert_eq!(
            Case::new("Identity").folded("int64[2]", sym_ints("N,3")).value(),
            Some(sym_ints("N,3"))
        );
        assert_eq!(
            Case::new("Floor").folded("float[2]", floats(&[1.5, -1.5])).value(),
            Some(floats(&[1.0, -2.0]))
        );
        assert_eq!(
            Case::new("Round").folded("float[2]", floats(&[2.5, 3.5])).value(),
            Some(floats(&[2.0, 4.0]))
        );
        assert_eq!(Case::new("Sigmoid").folded("float[1]", floats(&[0.0])).value(), None);
    }

    #[test]
    fn binary_ops_broadcast() {
        let add = Case::new("Add").input("float[N,1,5]").input("float[3,1]");
        assert_eq!(add.ty(), "float[N,3,5]");
        assert_eq!(Case::new("Mul").input("float[N]").input("float[M]").ty(), "float[?]");
        assert_eq!(Case::new("Pow").input("float[2,2]").input("float[]").ty(), "float[2,2]");
        assert_eq!(
            Case::new("PRelu").input("float[N,8,4,4]").input("float[8,1,1]").ty(),
            "float[N,8,4,4]"
        );
        assert_eq!(
            Case::new("Sub").input("float[...]").input("float[2]").ty(),
            "float[...]"
        );
        let bad = Case::new("Add").input("float[2,3]").input("float[4]").invalid();
        assert!(bad.contains("[2,3] and [4]"), "{bad}");
    }

    #[test]
    fn comparisons_and_logic_give_bool() {
        for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"] {
            assert_eq!(
                Case::new(op).input("int64[N,4]").input("int64[4]").ty(),
                "bool[N,4]",
                "{op}"
            );
        }
        for op in ["And", "Or", "Xor"] {
            assert_eq!(Case::new(op).input("bool[2]").input("bool[1]").ty(), "bool[2]", "{op}");
        }
    }

    #[test]
    fn integer_arithmetic_folds_with_symbols() {
        let mul = Case::new("Mul")
            .folded("int64[2]", sym_ints("N,3"))
            .folded("int64[]", ints(&[4]));
        assert_eq!(mul.value(), Some(sym_ints("4*N,12")));
        let div = Case::new("Div")
            .folded("int64[2]", ints(&[7, -7]))
            .folded("int64[]", ints(&[2]));
        assert_eq!(div.value(), Some(ints(&[3, -3])));
        let by_zero = Case::new("Div")
            .folded("int64[1]", ints(&[7]))
            .folded("int64[1]", ints(&[0]));
        assert_eq!(by_zero.value(), Some(sym_ints("?")));
        let add = Case::new("Add")
            .folded("int64[1]", sym_ints("N"))
            .folded("int64[1]", ints(&[0]));
        assert_eq!(add.value(), Some(sym_ints("N")));
        let m = Case::new("Mod")
            .folded("int64[2]", ints(&[-7, 7]))
            .folded("int64[]", ints(&[3]));
        assert_eq!(m.value(), Some(ints(&[2, 1])));
        let fm = Case::new("Mod")
            .int("fmod", 1)
            .folded("int64[1]", ints(&[-7]))
            .folded("int64[]", ints(&[3]));
        assert_eq!(fm.value(), Some(ints(&[-1])));
        let overflow = Case::new("Add")
            .folded("int64[1]", ints(&[i64::MAX]))
            .folded("int64[1]", ints(&[1]));
        assert_eq!(overflow.value(), Some(sym_ints("?")));
    }

    #[test]
    fn equal_and_where_fold() {
        let eq = Case::new("Equal")
            .folded("int64[3]", sym_ints("N,2,-1"))
            .folded("int64[]", ints(&[-1]));
        assert_eq!(eq.value(), Some(sym_ints("?,0,1")));
        let w = Case::new("Where")
            .folded("bool[3]", ints(&[0, 0, 1]))
            .folded("int64[3]", sym_ints("1,1,1"))
            .folded("int64[3]", sym_ints("N,2,-1"));
        assert_eq!(w.ty(), "int64[3]");
        assert_eq!(w.value(), Some(sym_ints("N,2,1")));
        let ws = Case::new("Where")
            .input("bool[N,1]")
            .input("float[]")
            .input("float[1,7]");
        assert_eq!(ws.ty(), "float[N,7]");
    }

    #[test]
    fn variadic_ops_broadcast_all_inputs() {
        let sum = Case::new("Sum").input("float[3,1]").input("float[4]").input("float[1]");
        assert_eq!(sum.ty(), "float[3,4]");
        let max = Case::new("Max")
            .folded("int64[2]", ints(&[1, 9]))
            .folded("int64[2]", ints(&[5, 2]));
        assert_eq!(max.value(), Some(ints(&[5, 9])));
        let mean = Case::new("Mean")
            .folded("float[2]", floats(&[1.0, 2.0]))
            .folded("float[2]", floats(&[3.0, 4.0]));
        assert_eq!(mean.value(), Some(floats(&[2.0, 3.0])));
        assert_eq!(Case::new("Min").input("float[2]").ty(), "float[2]");
        assert!(Case::new("Sum").invalid().contains("at least one"));
    }

    #[test]
    fn cast_changes_the_element_type_and_folds() {
        let c = Case::new("Cast").int("to", 1).folded("int64[2]", ints(&[3, 4]));
        assert_eq!(c.ty(), "float[2]");
        assert_eq!(c.value(), Some(floats(&[3.0, 4.0])));
        let back = Case::new("Cast").int("to", 7).folded("float[2]", floats(&[2.9, -2.9]));
        assert_eq!(back.value(), Some(ints(&[2, -2])));
        let sym = Case::new("Cast").int("to", 6).folded("int64[2]", sym_ints("N,3"));
        assert_eq!((sym.ty(), sym.value()), ("int32[2]".into(), Some(sym_ints("N,3"))));
        assert_eq!(
            Case::new("Cast").int("to", 1).folded("int64[1]", sym_ints("N")).value(),
            None
        );
        assert!(Case::new("Cast").input("float[2]").invalid().contains("'to'"));
        assert_eq!(
            Case::new("CastLike").input("float[2]").input("double[]").ty(),
            "double[2]"
        );
    }

    #[test]
    fn dropout_mask_type_depends_on_opset() {
        let old = Case::new("Dropout")
            .opset(7)
            .outputs(2)
            .input("float[N,4]")
            .float("ratio", 0.5);
        assert_eq!(old.types(), ["float[N,4]", "float[N,4]"]);
        let new = Case::new("Dropout")
            .opset(12)
            .outputs(2)
            .input("float[N,4]")
            .input("float[]");
        assert_eq!(new.types(), ["float[N,4]", "bool[N,4]"]);
    }

    #[test]
    fn quantisation_types() {
        assert_eq!(
            Case::new("QuantizeLinear").input("float[4]").input("float[]").ty(),
            "uint8[4]"
        );
        let zp = Case::new("QuantizeLinear")
            .input("float[4]")
            .input("float[]")
            .input("int8[]");
        assert_eq!(zp.ty(), "int8[4]");
        assert_eq!(
            Case::new("DequantizeLinear").input("int8[4]").input("float[]").ty(),
            "float[4]"
        );
        let dynamic = Case::new("DynamicQuantizeLinear").outputs(3).input("float[2,3]");
        assert_eq!(dynamic.types(), ["uint8[2,3]", "float[]", "uint8[]"]);
    }
}
