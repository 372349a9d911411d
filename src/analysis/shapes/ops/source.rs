//! Ops that make tensors from attributes or from another tensor's shape:
//! Constant, ConstantOfShape, Shape, Size, Range, EyeLike and the random
//! generators. Shape and Size are where symbolic shape arithmetic starts.

use super::fold;
use super::util::{Rule, folded_result, input, int_attr, invalid, result, shape_length, unknown_dims, unranked};
use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::constant::{self, MAX_FOLDED_ELEMENTS};
use crate::ir::{Dim, Folded, TensorType};
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::attribute_proto::AttributeType;

const STRING: ElemType = ElemType(8);

/// Constant: the type and (small) contents of whichever value attribute is set.
pub(super) fn constant(ctx: &OpContext) -> Rule {
    let Some(a) = ctx.node.attributes.first() else {
        return Err(invalid("no value attribute"));
    };
    let len = |n: usize| vec![Dim::Known(n as i64)];
    let ints = |v: &[i64]| Some(Folded::Ints(v.iter().map(|&x| Dim::Known(x)).collect()));
    let floats = |v: &[f32]| Some(Folded::Floats(v.iter().map(|&x| f64::from(x)).collect()));
    let out = match (a.name(), a.type_()) {
        ("value", AttributeType::TENSOR) => {
            let t = a.t.as_ref().ok_or_else(|| invalid("value has no tensor"))?;
            Inferred {
                ty: Some(constant::tensor_type(t)),
                folded: constant::decode(t),
            }
        }
        ("value_float", _) => folded_result(ElemType::FLOAT, Vec::new(), floats(&[a.f()])),
        ("value_floats", _) => folded_result(ElemType::FLOAT, len(a.floats.len()), floats(&a.floats)),
        ("value_int", _) => folded_result(ElemType::INT64, Vec::new(), ints(&[a.i()])),
        ("value_ints", _) => folded_result(ElemType::INT64, len(a.ints.len()), ints(&a.ints)),
        ("value_string", _) => result(STRING, Vec::new()),
        ("value_strings", _) => result(STRING, len(a.strings.len())),
        ("sparse_value", _) => {
            let s = a
                .sparse_tensor
                .as_ref()
                .ok_or_else(|| invalid("sparse_value has no tensor"))?;
            let elem = s.values.as_ref().map_or(ElemType::FLOAT, |v| ElemType(v.data_type()));
            Inferred::of(TensorType::known_dims(elem, &s.dims))
        }
        (other, _) => return Err(invalid(format!("unexpected attribute '{other}'"))),
    };
    Ok(vec![out])
}

/// ConstantOfShape: shape from input 0's contents (symbols kept), filled
/// with the one-element `value` attribute (float 0 by default).
pub(super) fn constant_of_shape(ctx: &OpContext) -> Rule {
    input(ctx, 0)?;
    let (elem, fill) = match ctx.node.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => (ElemType(t.data_type()), constant::decode(t)),
        None => (ElemType::FLOAT, Some(Folded::Floats(vec![0.0]))),
    };
    let out = match ctx.folded(0) {
        Some(Folded::Ints(d)) => d.clone(),
        Some(Folded::Floats(_)) => return Err(invalid("shape input is not integer")),
        None => match shape_length(ctx, 0) {
            Some(n) => unknown_dims(n),
            None => return Ok(vec![unranked(elem)]),
        },
    };
    if let Some(d) = out.iter().find(|d| d.known().is_some_and(|v| v < 0)) {
        return Err(invalid(format!("shape has negative size {d}")));
    }
    let folded = match (fold::foldable_shape(&out), &fill) {
        (Some(s), Some(f)) if f.len() == 1 => fold::pick(f, &vec![0; fold::numel(&s).unwrap_or(0)]),
        _ => None,
    };
    Ok(vec![folded_result(elem, out, folded)])
}

/// Shape: int64 `[rank]` (or the `start..end` part, 15+), folded to the
/// dims themselves, symbols and unknowns included.
pub(super) fn shape_op(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![result(ElemType::INT64, vec![Dim::Unknown])]);
    };
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = clamp(int_attr(ctx, "start", 0));
    let end = clamp(int_attr(ctx, "end", r));
    let dims = s.get(start..end.max(start)).unwrap_or_default().to_vec();
    Ok(vec![folded_result(
        ElemType::INT64,
        vec![Dim::Known(dims.len() as i64)],
        Some(Folded::Ints(dims)),
    )])
}

/// Size: int64 scalar, folded to the element count where it is one dim.
pub(super) fn size(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let count = t.shape.as_deref().map_or(Dim::Unknown, Dim::product_of);
    Ok(vec![folded_result(
        ElemType::INT64,
        Vec::new(),
        Some(Folded::Ints(vec![count])),
    )])
}

/// Range(start, limit, delta): 1-D of `max(ceil((limit-start)/delta), 0)`.
pub(super) fn range(ctx: &OpContext) -> Rule {
    let elem = input(ctx, 0)?.elem;
    input(ctx, 1)?;
    input(ctx, 2)?;
    let scalar = |i: usize| {
        ctx.folded(i)
            .filter(|f| f.len() == 1)
            .map(fold::scalars)
            .and_then(|mut v| v.pop())
    };
    use fold::Scalar::Int;
    let (len, folded) = match (scalar(0), scalar(1), scalar(2)) {
        (Some(Int(s)), Some(Int(l)), Some(Int(d))) => match (s.known(), l.known(), d.known()) {
            (_, _, Some(0)) => return Err(invalid("delta is 0")),
            (Some(s), Some(l), Some(d)) => {
                let n = ceil_div_nonneg(i128::from(l) - i128::from(s), i128::from(d));
                let folded = (n <= i128::from(MAX_FOLDED_ELEMENTS)).then(|| {
                    let at = |k: i128| Dim::Known((i128::from(s) + k * i128::from(d)) as i64);
                    Folded::Ints((0..n).map(at).collect())
                });
                (i64::try_from(n).map_or(Dim::Unknown, Dim::Known), folded)
            }
            // range(0, n, 1) has n elements, even when n is a symbol.
            (Some(0), _, Some(1)) => (l.clone(), None),
            _ => (Dim::Unknown, None),
        },
        (Some(s), Some(l), Some(d)) => match (s.as_f64(), l.as_f64(), d.as_f64()) {
            (_, _, Some(0.0)) => return Err(invalid("delta is 0")),
            (Some(s), Some(l), Some(d)) if ((l - s) / d).is_finite() => {
                let n = ((l - s) / d).ceil().max(0.0);
                let folded = (n <= MAX_FOLDED_ELEMENTS as f64)
                    .then(|| Folded::Floats((0..n as i64).map(|k| s + k as f64 * d).collect()));
                (Dim::Known(n as i64), folded)
            }
            _ => (Dim::Unknown, None),
        },
        _ => (Dim::Unknown, None),
    };
    Ok(vec![folded_result(elem, vec![len], folded)])
}

/// `max(ceil(a / b), 0)` for `b != 0`.
fn ceil_div_nonneg(a: i128, b: i128) -> i128 {
    let q = a / b;
    let q = if a % b != 0 && (a < 0) == (b < 0) { q + 1 } else { q };
    q.max(0)
}

/// Element type from the `dtype` attribute, else `default`.
fn dtype(ctx: &OpContext, default: ElemType) -> Result<ElemType, RuleError> {
    match ctx.node.attr_int("dtype") {
        Some(c) => i32::try_from(c)
            .map(ElemType)
            .map_err(|_| invalid(format!("dtype {c}"))),
        None => Ok(default),
    }
}

/// EyeLike, RandomNormalLike, RandomUniformLike, Bernoulli: input 0's shape,
/// `dtype` or input 0's element type.
pub(super) fn like(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    Ok(vec![Inferred::of(TensorType {
        elem: dtype(ctx, t.elem)?,
        shape: t.shape.clone(),
    })])
}

/// RandomNormal, RandomUniform: `shape` attribute, `dtype` (float default).
pub(super) fn random(ctx: &OpContext) -> Rule {
    let s = ctx
        .node
        .attr_ints("shape")
        .ok_or_else(|| invalid("attribute shape is missing"))?;
    Ok(vec![Inferred::of(TensorType::known_dims(
        dtype(ctx, ElemType::FLOAT)?,
        s,
    ))])
}

/// Multinomial: `[batch, sample_size]`, int32 unless `dtype` says otherwise.
pub(super) fn multinomial(ctx: &OpContext) -> Rule {
    input(ctx, 0)?;
    let batch = match ctx.input_shape(0) {
        Some([b, _]) => b.clone(),
        _ => Dim::Unknown,
    };
    let n = int_attr(ctx, "sample_size", 1);
    Ok(vec![result(dtype(ctx, ElemType::INT32)?, vec![batch, Dim::Known(n)])])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, floats, ints, sym_ints, tensor_i64};
    use crate::onnx::proto::TensorProto;

    #[test]
    fn shape_folds_with_symbols() {
        let s = Case::new("Shape").input("float[batch,3,224,224]");
        assert_eq!(
            (s.ty(), s.value()),
            ("int64[4]".into(), Some(sym_ints("batch,3,224,224")))
        );
        let part = Case::new("Shape").opset(15).input("float[N,S,?]").int("start", 1);
        assert_eq!((part.ty(), part.value()), ("int64[2]".into(), Some(sym_ints("S,?"))));
        let tail = Case::new("Shape")
            .opset(15)
            .input("float[N,S,D]")
            .int("start", -1)
            .int("end", 99);
        assert_eq!(tail.value(), Some(sym_ints("D")));
        let empty = Case::new("Shape")
            .opset(15)
            .input("float[N,S,D]")
            .int("start", 2)
            .int("end", 1);
        assert_eq!(empty.ty(), "int64[0]");
        assert_eq!(Case::new("Shape").input("float[...]").ty(), "int64[?]");
    }

    #[test]
    fn size_folds_the_count() {
        let s = Case::new("Size").input("float[2,3,4]");
        assert_eq!((s.ty(), s.value()), ("int64[]".into(), Some(ints(&[24]))));
        assert_eq!(Case::new("Size").input("float[N,1]").value(), Some(sym_ints("N")));
    }

    #[test]
    fn constant_attribute_forms() {
        let t = Case::new("Constant").tensor("value", tensor_i64(&[2], &[5, -1]));
        assert_eq!((t.ty(), t.value()), ("int64[2]".into(), Some(ints(&[5, -1]))));
        let f = Case::new("Constant").float("value_float", 0.5);
        assert_eq!((f.ty(), f.value()), ("float[]".into(), Some(floats(&[0.5]))));
        assert_eq!(
            Case::new("Constant").floats("value_floats", &[1.0, 2.0]).ty(),
            "float[2]"
        );
        assert_eq!(Case::new("Constant").int("value_int", 7).value(), Some(ints(&[7])));
        assert_eq!(Case::new("Constant").ints("value_ints", &[1, 2, 3]).ty(), "int64[3]");
        assert_eq!(Case::new("Constant").string("value_string", "hi").ty(), "string[]");
        assert!(Case::new("Constant").invalid().contains("no value"));
    }

    #[test]
    fn constant_of_shape_fills() {
        let z = Case::new("ConstantOfShape").folded("int64[2]", ints(&[2, 3]));
        assert_eq!((z.ty(), z.value()), ("float[2,3]".into(), Some(floats(&[0.0; 6]))));
        let ones = Case::new("ConstantOfShape")
            .tensor("value", tensor_i64(&[1], &[1]))
            .folded("int64[1]", ints(&[3]));
        assert_eq!((ones.ty(), ones.value()), ("int64[3]".into(), Some(ints(&[1, 1, 1]))));
        let sym = Case::new("ConstantOfShape").folded("int64[2]", sym_ints("N,4"));
        assert_eq!((sym.ty(), sym.value()), ("float[N,4]".into(), None));
        assert_eq!(Case::new("ConstantOfShape").input("int64[3]").ty(), "float[?,?,?]");
        let big = Case::new("ConstantOfShape").folded("int64[2]", ints(&[1 << 20, 1 << 20]));
        assert_eq!((big.ty(), big.value()), ("float[1048576,1048576]".into(), None));
        assert!(
            Case::new("ConstantOfShape")
                .folded("int64[1]", ints(&[-1]))
                .invalid()
                .contains("negative")
        );
        let mut half = TensorProto::new();
        half.set_data_type(10);
        half.dims = vec![1];
        let h = Case::new("ConstantOfShape")
            .tensor("value", half)
            .folded("int64[1]", ints(&[2]));
        assert_eq!((h.ty(), h.value()), ("float16[2]".into(), None));
    }

    #[test]
    fn range_lengths_and_folds() {
        let r = |s: i64, l: i64, d: i64| {
            Case::new("Range")
                .folded("int64[]", ints(&[s]))
                .folded("int64[]", ints(&[l]))
                .folded("int64[]", ints(&[d]))
        };
        assert_eq!(
            (r(0, 5, 2).ty(), r(0, 5, 2).value()),
            ("int64[3]".into(), Some(ints(&[0, 2, 4])))
        );
        assert_eq!(r(5, 0, -2).value(), Some(ints(&[5, 3, 1])));
        assert_eq!(r(5, 0, 1).ty(), "int64[0]");
        assert_eq!(r(i64::MIN, i64::MAX, 1).ty(), "int64[?]");
        assert!(r(0, 5, 0).invalid().contains("delta"));
        let sym = Case::new("Range")
            .folded("int64[]", ints(&[0]))
            .folded("int64[]", sym_ints("S"))
            .folded("int64[]", ints(&[1]));
        assert_eq!(sym.ty(), "int64[S]");
        let f = Case::new("Range")
            .folded("float[]", floats(&[0.0]))
            .folded("float[]", floats(&[1.0]))
            .folded("float[]", floats(&[0.25]));
        assert_eq!(f.value(), Some(floats(&[0.0, 0.25, 0.5, 0.75])));
        assert_eq!(
            Case::new("Range")
                .input("int64[]")
                .input("int64[]")
                .input("int64[]")
                .ty(),
            "int64[?]"
        );
    }

    #[test]
    fn generators() {
        assert_eq!(
            Case::new("EyeLike").input("float[3,3]").int("dtype", 7).ty(),
            "int64[3,3]"
        );
        assert_eq!(Case::new("RandomNormalLike").input("float[N,3]").ty(), "float[N,3]");
        assert_eq!(Case::new("RandomUniform").ints("shape", &[2, 3]).ty(), "float[2,3]");
        assert!(Case::new("RandomNormal").invalid().contains("shape"));
        assert_eq!(
            Case::new("Multinomial").input("float[N,10]").int("sample_size", 4).ty(),
            "int32[N,4]"
        );
    }
}
