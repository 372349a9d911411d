//! Reductions: Reduce* (axes an attribute until opset 13 for ReduceSum and
//! 18 for the others, an input after), ArgMax and ArgMin. Sum, Prod, Max,
//! Min and Mean fold (e.g. ReduceProd of a Shape for an element count).

use super::elementwise::arith;
use super::fold::{self, Scalar};
use super::util::{Ints, Rule, axes, axis, folded_result, input, int_attr, ints_param, result, unranked};
use crate::analysis::shapes::{Inferred, OpContext};
use crate::ir::{Dim, Folded};
use crate::onnx::dtype::ElemType;

/// Dims after reducing `reduced`: kept as 1, or dropped.
fn reduced_shape(s: &[Dim], reduced: &[usize], keep: bool) -> Vec<Dim> {
    s.iter()
        .enumerate()
        .filter_map(|(i, d)| match (reduced.contains(&i), keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect()
}

pub(super) fn reduce(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let op = ctx.node.op_type.as_str();
    let axes_input_since = if op == "ReduceSum" { 13 } else { 18 };
    let keep = int_attr(ctx, "keepdims", 1) != 0;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let reduced: Vec<usize> = match ints_param(ctx, "axes", 1, axes_input_since) {
        Ints::Known(v) if !v.is_empty() => axes(&v, s.len())?,
        // Unknown axes: with keepdims the rank stays and size-1 dims stay 1.
        Ints::Unknown if keep => {
            let out = s
                .iter()
                .map(|d| if *d == Dim::Known(1) { d.clone() } else { Dim::Unknown })
                .collect();
            return Ok(vec![result(t.elem, out)]);
        }
        Ints::Unknown => return Ok(vec![unranked(t.elem)]),
        // No axes: everything, or nothing with noop_with_empty_axes.
        _ if int_attr(ctx, "noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![Inferred {
                ty: Some(t.clone()),
                folded: ctx.folded(0).cloned(),
            }]);
        }
        _ => (0..s.len()).collect(),
    };
    let out = reduced_shape(s, &reduced, keep);
    let folded = fold_reduce(ctx, op, &reduced);
    Ok(vec![folded_result(t.elem, out, folded)])
}

/// Folds Sum, Prod, Max, Min (and Mean of floats) over `reduced`.
fn fold_reduce(ctx: &OpContext, op: &str, reduced: &[usize]) -> Option<Folded> {
    let step = match op {
        "ReduceSum" | "ReduceMean" => "Add",
        "ReduceProd" => "Mul",
        "ReduceMax" => "Max",
        "ReduceMin" => "Min",
        _ => return None,
    };
    let c = fold::constant(ctx, 0)?;
    let kept: Vec<usize> = c
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if reduced.contains(&i) { 1 } else { d })
        .collect();
    // Each input element's position in the (keepdims) output.
    let slots = fold::broadcast_positions(&kept, &c.shape);
    let mut acc: Vec<Option<Scalar>> = vec![None; fold::numel(&kept)?];
    let mut counts = vec![0usize; acc.len()];
    for (x, &slot) in fold::scalars(c.data).into_iter().zip(&slots) {
        counts[slot] += 1;
        acc[slot] = Some(match acc[slot].take() {
            None => x,
            Some(a) => arith(step, false, &a, &x)?,
        });
    }
    let values = acc
        .into_iter()
        .zip(counts)
        .map(|(v, n)| match (op, v?) {
            ("ReduceMean", Scalar::Float(f)) => Some(Scalar::Float(f / n as f64)),
            ("ReduceMean", Scalar::Int(_)) => None,
            (_, v) => Some(v),
        })
        .collect::<Option<Vec<_>>>()?;
    fold::from_scalars(values)
}

/// ArgMax, ArgMin: int64 indices along `axis` (kept as 1 or dropped).
pub(super) fn arg_reduce(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(ElemType::INT64)]);
    };
    let a = axis(int_attr(ctx, "axis", 0), s.len())?;
    let keep = int_attr(ctx, "keepdims", 1) != 0;
    Ok(vec![result(ElemType::INT64, reduced_shape(s, &[a], keep))])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, floats, ints, sym_ints};

    #[test]
    fn reduce_axes_by_opset() {
        let old = Case::new("ReduceMean")
            .opset(13)
            .input("float[N,C,H,W]")
            .ints("axes", &[2, 3]);
        assert_eq!(old.ty(), "float[N,C,1,1]");
        let new = Case::new("ReduceMean")
            .opset(18)
            .input("float[N,C,H,W]")
            .folded("int64[2]", ints(&[-2, -1]));
        assert_eq!(new.int("keepdims", 0).ty(), "float[N,C]");
        let sum = Case::new("ReduceSum")
            .opset(13)
            .input("float[N,S,D]")
            .folded("int64[1]", ints(&[1]));
        assert_eq!(sum.ty(), "float[N,1,D]");
        let sum_old = Case::new("ReduceSum")
            .opset(11)
            .input("float[N,S,D]")
            .ints("axes", &[1])
            .int("keepdims", 0);
        assert_eq!(sum_old.ty(), "float[N,D]");
        for op in [
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSumExp",
            "ReduceSumSquare",
        ] {
            assert_eq!(
                Case::new(op).opset(11).input("float[2,3]").ints("axes", &[0]).ty(),
                "float[1,3]",
                "{op}"
            );
        }
    }

    #[test]
    fn reduce_without_axes() {
        assert_eq!(Case::new("ReduceMax").input("float[N,3]").ty(), "float[1,1]");
        assert_eq!(
            Case::new("ReduceMax").int("keepdims", 0).input("float[N,3]").ty(),
            "float[]"
        );
        let noop = Case::new("ReduceSum")
            .int("noop_with_empty_axes", 1)
            .input("float[N,3]");
        assert_eq!(noop.ty(), "float[N,3]");
        let empty = Case::new("ReduceSum").input("float[N,3]").folded("int64[0]", ints(&[]));
        assert_eq!(empty.ty(), "float[1,1]");
        let unknown = Case::new("ReduceSum").input("float[N,1,3]").input("int64[1]");
        assert_eq!(unknown.ty(), "float[?,1,?]");
        let dropped = Case::new("ReduceSum")
            .int("keepdims", 0)
            .input("float[N,1,3]")
            .input("int64[1]");
        assert_eq!(dropped.ty(), "float[...]");
        assert!(
            Case::new("ReduceSum")
                .input("float[2]")
                .folded("int64[1]", ints(&[1]))
                .invalid()
                .contains("axis 1")
        );
    }

    #[test]
    fn reductions_fold() {
        let prod = Case::new("ReduceProd")
            .int("keepdims", 0)
            .folded("int64[3]", sym_ints("N,3,4"));
        assert_eq!((prod.ty(), prod.value()), ("int64[]".into(), Some(sym_ints("12*N"))));
        let known = Case::new("ReduceProd")
            .opset(11)
            .int("keepdims", 0)
            .folded("int64[2]", ints(&[3, 4]));
        assert_eq!(known.value(), Some(ints(&[12])));
        let rows = Case::new("ReduceSum")
            .folded("int64[2,3]", ints(&[1, 2, 3, 4, 5, 6]))
            .folded("int64[1]", ints(&[1]));
        assert_eq!((rows.ty(), rows.value()), ("int64[2,1]".into(), Some(ints(&[6, 15]))));
        let mean = Case::new("ReduceMean")
            .opset(11)
            .ints("axes", &[0])
            .folded("float[2,2]", floats(&[1.0, 2.0, 3.0, 4.0]));
        assert_eq!(mean.value(), Some(floats(&[2.0, 3.0])));
        let max = Case::new("ReduceMax").folded("int64[3]", ints(&[4, 9, 2]));
        assert_eq!(max.value(), Some(ints(&[9])));
    }

    #[test]
    fn arg_reductions() {
        assert_eq!(
            Case::new("ArgMax").input("float[N,1000]").int("axis", 1).ty(),
            "int64[N,1]"
        );
        let drop = Case::new("ArgMin")
            .input("float[N,1000]")
            .int("axis", -1)
            .int("keepdims", 0);
        assert_eq!(drop.ty(), "int64[N]");
        assert!(
            Case::new("ArgMax")
                .input("float[N]")
                .int("axis", 1)
                .invalid()
                .contains("axis 1")
        );
    }
}
