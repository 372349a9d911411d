//! Ops that rearrange or resize a tensor without computing on its values:
//! Reshape, Flatten, Squeeze, Unsqueeze (contents fold through unchanged),
//! Transpose, Expand, Tile, Pad, DepthToSpace, SpaceToDepth.

use super::dims::{self, affine, broadcast, fmt_shape};
use super::fold;
use super::util::{
    Ints, Rule, axes, folded_result, input, int_attr, ints_param, invalid, result, shape, shape_length, unknown_dims,
    unranked,
};
use crate::analysis::shapes::{OpContext, RuleError};
use crate::ir::{Dim, Folded};

/// Integer contents of input `i`, symbols kept (a shape built from `Shape`).
fn dims_input(ctx: &OpContext, i: usize) -> Option<Vec<Dim>> {
    match ctx.folded(i)? {
        Folded::Ints(v) => Some(v.clone()),
        Folded::Floats(_) => None,
    }
}

/// A relabelled result: `out` with input 0's element type, contents passed
/// through.
fn relabel(ctx: &OpContext, out: Vec<Dim>) -> Rule {
    let elem = input(ctx, 0)?.elem;
    let folded = fold::pass_through(ctx, 0, &out);
    Ok(vec![folded_result(elem, out, folded)])
}

/// Reshape: `0` copies the input dim (unless `allowzero`, 14+), one `-1` is
/// solved from the element count, symbolically when needed (`[batch,2048,1,1]`
/// to `[batch,-1]` gives `[batch,2048]`). Before opset 5 the target was the
/// `shape` attribute.
pub(super) fn reshape(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let target = if ctx.has_input(1) {
        dims_input(ctx, 1)
    } else {
        ctx.node
            .attr_ints("shape")
            .map(|v| v.iter().map(|&x| Dim::Known(x)).collect())
    };
    let Some(target) = target else {
        return Ok(vec![match shape_length(ctx, 1) {
            Some(n) => result(t.elem, unknown_dims(n)),
            None => unranked(t.elem),
        }]);
    };
    let allowzero = int_attr(ctx, "allowzero", 0) != 0;
    let in_shape = t.shape.as_deref();
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    let mut copied = Vec::new();
    for (i, d) in target.iter().enumerate() {
        out.push(match d {
            Dim::Known(-1) if infer_at.is_some() => {
                return Err(invalid(format!("target {} has more than one -1", fmt_shape(&target))));
            }
            Dim::Known(-1) => {
                infer_at = Some(i);
                Dim::Unknown
            }
            Dim::Known(0) if allowzero && target.contains(&Dim::Known(-1)) => {
                return Err(invalid("allowzero target has both 0 and -1"));
            }
            Dim::Known(0) if !allowzero => {
                copied.push(i);
                match in_shape {
                    Some(s) => s.get(i).cloned().ok_or_else(|| {
                        invalid(format!(
                            "target {} copies dim {i} but the input has rank {}",
                            fmt_shape(&target),
                            s.len()
                        ))
                    })?,
                    None => Dim::Unknown,
                }
            }
            Dim::Known(v) if *v < 0 => {
                return Err(invalid(format!("target {} has size {v}", fmt_shape(&target))));
            }
            other => other.clone(),
        });
    }
    if let Some(s) = in_shape {
        solve_reshape(s, &target, &copied, infer_at, &mut out)?;
    }
    relabel(ctx, out)
}

/// Fills in Reshape's `-1`, or checks the element count when there is none.
/// Copied dims are equal on both sides and cancel, so `[?,3,4]` to `[0,-1]`
/// still gives 12.
fn solve_reshape(
    input: &[Dim],
    target: &[Dim],
    copied: &[usize],
    infer_at: Option<usize>,
    out: &mut [Dim],
) -> Result<(), RuleError> {
    let kept = |dims: &[Dim], skip: Option<usize>| -> Vec<Dim> {
        dims.iter()
            .enumerate()
            .filter(|(i, _)| !copied.contains(i) && Some(*i) != skip)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let (total, rest) = (
        Dim::product_of(&kept(input, None)),
        Dim::product_of(&kept(out, infer_at)),
    );
    if total == Dim::Unknown || rest == Dim::Unknown {
        return Ok(());
    }
    let mismatch = || {
        invalid(format!(
            "cannot reshape {} into {}",
            fmt_shape(input),
            fmt_shape(target)
        ))
    };
    match infer_at {
        // A zero-sized rest leaves -1 undetermined.
        Some(_) if rest.known() == Some(0) => {}
        Some(k) => match total.exact_div(&rest) {
            Some(q) => out[k] = q,
            None if total.known().is_some() && rest.known().is_some() => return Err(mismatch()),
            None => {}
        },
        None => {
            if let (Some(a), Some(b)) = (total.known(), rest.known())
                && a != b
            {
                return Err(mismatch());
            }
        }
    }
    Ok(())
}

/// Flatten: `[d0·…·d(axis-1), d(axis)·…]`; axis in `-r..=r` (negative from 11).
pub(super) fn flatten(ctx: &OpContext) -> Rule {
    let s = shape(ctx, 0)?;
    let a = int_attr(ctx, "axis", 1);
    let r = s.len() as i64;
    let at = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&at) {
        return Err(invalid(format!("axis {a} is out of range for rank {r}")));
    }
    let (head, tail) = s.split_at(at as usize);
    relabel(ctx, vec![Dim::product_of(head), Dim::product_of(tail)])
}

/// Squeeze: drops the listed axes (attribute before 13, input from 13), or
/// every size-1 axis when none are listed.
pub(super) fn squeeze(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let out = match ints_param(ctx, "axes", 1, 13) {
        Ints::Known(list) if !list.is_empty() => {
            let drop = axes(&list, s.len())?;
            for &a in &drop {
                if let Dim::Known(n) = s[a]
                    && n != 1
                {
                    return Err(invalid(format!("cannot squeeze axis {a} of size {n}")));
                }
            }
            keep_except(s, &drop)
        }
        // Whether a symbolic dim is 1 decides the rank: leave it unknown.
        Ints::Unknown => return Ok(vec![unranked(t.elem)]),
        _ if s.iter().any(|d| d.known().is_none()) => return Ok(vec![unranked(t.elem)]),
        _ => s.iter().filter(|d| **d != Dim::Known(1)).cloned().collect(),
    };
    relabel(ctx, out)
}

fn keep_except(s: &[Dim], drop: &[usize]) -> Vec<Dim> {
    s.iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, d)| d.clone())
        .collect()
}

/// Unsqueeze: inserts size-1 axes at the listed output positions.
pub(super) fn unsqueeze(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let list = match ints_param(ctx, "axes", 1, 13) {
        Ints::Known(list) => list,
        Ints::Absent => return Err(invalid("axes are missing")),
        Ints::Unknown => {
            return Ok(vec![match (t.rank(), shape_length(ctx, 1)) {
                (Some(r), Some(k)) => result(t.elem, unknown_dims(r + k)),
                _ => unranked(t.elem),
            }]);
        }
    };
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let inserted = axes(&list, s.len() + list.len())?;
    let mut rest = s.iter();
    let out = (0..s.len() + list.len())
        .map(|j| {
            if inserted.contains(&j) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        })
        .collect();
    relabel(ctx, out)
}

/// Transpose: `perm` (default: reversed axes) must be a permutation.
pub(super) fn transpose(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let perm: Vec<i64> = match ctx.node.attr_ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..s.len() as i64).rev().collect(),
    };
    let mut seen = vec![false; s.len()];
    let valid = perm.len() == s.len()
        && perm.iter().all(|&p| {
            usize::try_from(p)
                .ok()
                .and_then(|p| seen.get_mut(p))
                .is_some_and(|slot| !std::mem::replace(slot, true))
        });
    if !valid {
        return Err(invalid(format!(
            "perm {perm:?} is not a permutation of {} axes",
            s.len()
        )));
    }
    Ok(vec![result(
        t.elem,
        perm.iter().map(|&p| s[p as usize].clone()).collect(),
    )])
}

/// Expand: bidirectional broadcast of the input with the target shape.
pub(super) fn expand(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    input(ctx, 1)?;
    let target = match dims_input(ctx, 1) {
        Some(d) => d,
        None => match shape_length(ctx, 1) {
            Some(n) => unknown_dims(n),
            None => return Ok(vec![unranked(t.elem)]),
        },
    };
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let out = broadcast(&[s, &target]).map_err(invalid)?;
    let folded = fold::elementwise(ctx, &[0], &out, |x| Some(x[0].clone()));
    Ok(vec![folded_result(t.elem, out, folded)])
}

/// Tile: each dim times its repeat count.
pub(super) fn tile(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let s = shape(ctx, 0)?;
    let Some(repeats) = ctx.known_ints(1) else {
        input(ctx, 1)?;
        return Ok(vec![result(t.elem, unknown_dims(s.len()))]);
    };
    if repeats.len() != s.len() || repeats.iter().any(|&r| r < 0) {
        return Err(invalid(format!(
            "repeats {repeats:?} do not fit input {}",
            fmt_shape(s)
        )));
    }
    let out = s
        .iter()
        .zip(&repeats)
        .map(|(d, &r)| dims::mul(d, &Dim::Known(r)))
        .collect();
    Ok(vec![result(t.elem, out)])
}

/// Pad: `pads` (attribute before 11, input from 11) lists begins then ends
/// for every axis, or for the axes of input 3 (18+). Negative pads crop.
pub(super) fn pad(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let padded: Option<Vec<usize>> = if ctx.opset >= 18 && ctx.has_input(3) {
        ctx.known_ints(3).map(|a| axes(&a, s.len())).transpose()?
    } else {
        Some((0..s.len()).collect())
    };
    let pads = match ints_param(ctx, "pads", 1, 11) {
        Ints::Known(p) => p,
        Ints::Absent => return Err(invalid("pads are missing")),
        Ints::Unknown => {
            let mut out = s.to_vec();
            for i in padded.unwrap_or_else(|| (0..s.len()).collect()) {
                out[i] = Dim::Unknown;
            }
            return Ok(vec![result(t.elem, out)]);
        }
    };
    let Some(padded) = padded else {
        return Ok(vec![result(t.elem, unknown_dims(s.len()))]);
    };
    let n = padded.len();
    if pads.len() != 2 * n {
        return Err(invalid(format!("pads {pads:?} need 2 values for each of {n} axes")));
    }
    let mut out = s.to_vec();
    for (k, &a) in padded.iter().enumerate() {
        let extra = pads[k]
            .checked_add(pads[k + n])
            .ok_or_else(|| invalid("pads overflow"))?;
        out[a] = affine(&s[a], 1, extra);
        if let Dim::Known(v) = out[a]
            && v < 0
        {
            return Err(invalid(format!("pads {pads:?} crop axis {a} below zero")));
        }
    }
    Ok(vec![result(t.elem, out)])
}

/// DepthToSpace and SpaceToDepth on `N×C×H×W` with `blocksize` b.
pub(super) fn depth_space(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let s = shape(ctx, 0)?;
    let [n, c, h, w] = s else {
        return Err(invalid(format!("input {} is not 4-D", fmt_shape(s))));
    };
    let b = int_attr(ctx, "blocksize", 0);
    let bb = b
        .checked_mul(b)
        .filter(|_| b > 0)
        .ok_or_else(|| invalid(format!("blocksize {b}")))?;
    let exact = |d: &Dim, by: i64, what: &str| match d {
        Dim::Known(v) if v % by != 0 => Err(invalid(format!("{what} {v} is not divisible by {by}"))),
        _ => Ok(dims::div(d, &Dim::Known(by))),
    };
    let (b_dim, bb_dim) = (Dim::Known(b), Dim::Known(bb));
    let out = if ctx.node.op_type == "DepthToSpace" {
        vec![
            n.clone(),
            exact(c, bb, "channels")?,
            dims::mul(h, &b_dim),
            dims::mul(w, &b_dim),
        ]
    } else {
        vec![
            n.clone(),
            dims::mul(c, &bb_dim),
            exact(h, b, "height")?,
            exact(w, b, "width")?,
        ]
    };
    Ok(vec![result(t.elem, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, ints, sym_ints};
    use crate::analysis::shapes::RuleError;

    fn reshape(input: &str, target: &[i64]) -> Case {
        let n = target.len();
        Case::new("Reshape")
            .input(input)
            .folded(&format!("int64[{n}]"), ints(target))
    }

    #[test]
    fn reshape_copies_and_solves() {
        assert_eq!(reshape("float[2,3,4]", &[0, -1]).ty(), "float[2,12]");
        assert_eq!(reshape("float[N,2048,1,1]", &[0, -1]).ty(), "float[N,2048]");
        assert_eq!(reshape("float[N,2048,1,1]", &[-1, 2048]).ty(), "float[N,2048]");
        assert_eq!(reshape("float[?,3,4]", &[0, -1]).ty(), "float[?,12]");
        assert_eq!(reshape("float[N,S,768]", &[0, 0, 12, 64]).ty(), "float[N,S,12,64]");
        assert_eq!(reshape("float[N,M,4]", &[-1, 4]).ty(), "float[M*N,4]");
        // Attention as exporters write it: tokens of every row side by side.
        assert_eq!(reshape("float[batch,197,768]", &[-1, 768]).ty(), "float[197*batch,768]");
        let rows = Case::new("Reshape")
            .input("float[batch,197,768]")
            .folded("int64[2]", sym_ints("197*batch,768"));
        assert_eq!(rows.ty(), "float[197*batch,768]");
        assert_eq!(
            reshape("float[197*batch,768]", &[-1, 197, 768]).ty(),
            "float[batch,197,768]"
        );
        assert_eq!(
            reshape("float[6]", &[2, 0]).int("allowzero", 1).invalid(),
            "cannot reshape [6] into [2,0]"
        );
        assert_eq!(
            reshape("float[0,3]", &[3, 0]).int("allowzero", 1).opset(14).ty(),
            "float[3,0]"
        );
        let sym = Case::new("Reshape")
            .input("float[batch,2048,1,1]")
            .folded("int64[2]", sym_ints("batch,-1"));
        assert_eq!(sym.ty(), "float[batch,2048]");
        let unknown = Case::new("Reshape").input("float[2,3]").input("int64[3]");
        assert_eq!(unknown.ty(), "float[?,?,?]");
        let attr = Case::new("Reshape").opset(4).input("float[2,3]").ints("shape", &[3, 2]);
        assert_eq!(attr.ty(), "float[3,2]");
    }

    #[test]
    fn reshape_contradictions() {
        assert!(reshape("float[2,3]", &[-1, -1]).invalid().contains("more than one -1"));
        assert!(
            reshape("float[2,3]", &[4, -1])
                .invalid()
                .contains("cannot reshape [2,3]")
        );
        assert!(reshape("float[2,3]", &[5]).invalid().contains("into [5]"));
        assert!(reshape("float[2,3]", &[0, 0, 0]).invalid().contains("copies dim 2"));
        assert!(reshape("float[2,3]", &[-2, 3]).invalid().contains("size -2"));
        assert!(
            reshape("float[2,3]", &[0, -1])
                .int("allowzero", 1)
                .invalid()
                .contains("both 0 and -1")
        );
        assert_eq!(reshape("float[0,3]", &[-1, 0]).ty(), "float[0,3]");
    }

    #[test]
    fn reshape_folds_contents() {
        let r = Case::new("Reshape")
            .folded("int64[2,2]", ints(&[1, 2, 3, 4]))
            .folded("int64[1]", ints(&[-1]));
        assert_eq!((r.ty(), r.value()), ("int64[4]".into(), Some(ints(&[1, 2, 3, 4]))));
    }

    #[test]
    fn flatten_multiplies_symbolically() {
        assert_eq!(Case::new("Flatten").input("float[N,C,H,W]").ty(), "float[N,C*H*W]");
        assert_eq!(Case::new("Flatten").input("float[N,256,6,6]").ty(), "float[N,9216]");
        assert_eq!(
            Case::new("Flatten").int("axis", 0).input("float[N,3]").ty(),
            "float[1,3*N]"
        );
        assert_eq!(
            Case::new("Flatten").int("axis", 0).input("float[2,3]").ty(),
            "float[1,6]"
        );
        assert_eq!(
            Case::new("Flatten").int("axis", -1).input("float[2,3,4]").ty(),
            "float[6,4]"
        );
        assert_eq!(
            Case::new("Flatten").int("axis", 3).input("float[2,3,4]").ty(),
            "float[24,1]"
        );
        assert!(
            Case::new("Flatten")
                .int("axis", 4)
                .input("float[2,3,4]")
                .invalid()
                .contains("axis 4")
        );
        assert_eq!(Case::new("Flatten").input("float[...]").err(), RuleError::NeedsInput);
    }

    #[test]
    fn squeeze_forms() {
        let old = Case::new("Squeeze")
            .opset(11)
            .input("float[N,1,5,1]")
            .ints("axes", &[1, -1]);
        assert_eq!(old.ty(), "float[N,5]");
        let new = Case::new("Squeeze")
            .opset(13)
            .input("float[N,1,5,1]")
            .folded("int64[1]", ints(&[3]));
        assert_eq!(new.ty(), "float[N,1,5]");
        assert_eq!(Case::new("Squeeze").input("float[1,5,1]").ty(), "float[5]");
        assert_eq!(Case::new("Squeeze").input("float[N,5,1]").ty(), "float[...]");
        assert_eq!(
            Case::new("Squeeze").input("float[1,5]").input("int64[1]").ty(),
            "float[...]"
        );
        assert!(
            Case::new("Squeeze")
                .opset(11)
                .input("float[2,5]")
                .ints("axes", &[1])
                .invalid()
                .contains("size 5")
        );
        assert!(
            Case::new("Squeeze")
                .opset(11)
                .input("float[2,5]")
                .ints("axes", &[2])
                .invalid()
                .contains("axis 2")
        );
        let folded = Case::new("Squeeze")
            .opset(11)
            .folded("int64[1]", sym_ints("N"))
            .ints("axes", &[0]);
        assert_eq!((folded.ty(), folded.value()), ("int64[]".into(), Some(sym_ints("N"))));
    }

    #[test]
    fn unsqueeze_forms() {
        let old = Case::new("Unsqueeze")
            .opset(9)
            .input("float[N,5]")
            .ints("axes", &[0, 3]);
        assert_eq!(old.ty(), "float[1,N,5,1]");
        let new = Case::new("Unsqueeze")
            .opset(13)
            .input("float[N,5]")
            .folded("int64[1]", ints(&[-1]));
        assert_eq!(new.ty(), "float[N,5,1]");
        let unknown = Case::new("Unsqueeze").opset(13).input("float[N,5]").input("int64[2]");
        assert_eq!(unknown.ty(), "float[?,?,?,?]");
        let scalar = Case::new("Unsqueeze")
            .opset(13)
            .folded("int64[]", sym_ints("N"))
            .folded("int64[1]", ints(&[0]));
        assert_eq!((scalar.ty(), scalar.value()), ("int64[1]".into(), Some(sym_ints("N"))));
        assert!(
            Case::new("Unsqueeze")
                .opset(9)
                .input("float[2]")
                .ints("axes", &[0, 0])
                .invalid()
                .contains("repeated")
        );
        assert!(
            Case::new("Unsqueeze")
                .opset(9)
                .input("float[2]")
                .invalid()
                .contains("missing")
        );
    }

    #[test]
    fn transpose_permutes() {
        assert_eq!(
            Case::new("Transpose")
                .input("float[N,3,H,W]")
                .ints("perm", &[0, 2, 3, 1])
                .ty(),
            "float[N,H,W,3]"
        );
        assert_eq!(Case::new("Transpose").input("float[2,3,4]").ty(), "float[4,3,2]");
        assert!(
            Case::new("Transpose")
                .input("float[2,3]")
                .ints("perm", &[0, 0])
                .invalid()
                .contains("perm")
        );
        assert!(
            Case::new("Transpose")
                .input("float[2,3]")
                .ints("perm", &[0, 5])
                .invalid()
                .contains("perm")
        );
        assert!(
            Case::new("Transpose")
                .input("float[2,3]")
                .ints("perm", &[-1, 0])
                .invalid()
                .contains("perm")
        );
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        let e = Case::new("Expand")
            .input("float[3,1]")
            .folded("int64[3]", sym_ints("N,1,4"));
        assert_eq!(e.ty(), "float[N,3,4]");
        assert_eq!(
            Case::new("Expand").input("float[3,1]").input("int64[2]").ty(),
            "float[3,?]"
        );
        assert!(
            Case::new("Expand")
                .input("float[3]")
                .folded("int64[1]", ints(&[4]))
                .invalid()
                .contains("broadcast")
        );
        let f = Case::new("Expand")
            .folded("int64[1]", ints(&[7]))
            .folded("int64[1]", ints(&[3]));
        assert_eq!(f.value(), Some(ints(&[7, 7, 7])));
    }

    #[test]
    fn tile_multiplies() {
        assert_eq!(
            Case::new("Tile")
                .input("float[N,3]")
                .folded("int64[2]", ints(&[1, 2]))
                .ty(),
            "float[N,6]"
        );
        assert_eq!(
            Case::new("Tile").input("float[N,3]").input("int64[2]").ty(),
            "float[?,?]"
        );
        assert!(
            Case::new("Tile")
                .input("float[3]")
                .folded("int64[2]", ints(&[1, 2]))
                .invalid()
                .contains("repeats")
        );
    }

    #[test]
    fn pad_forms() {
        let old = Case::new("Pad")
            .opset(2)
            .input("float[N,3,4,4]")
            .ints("pads", &[0, 0, 1, 2, 0, 0, 1, 2]);
        assert_eq!(old.ty(), "float[N,3,6,8]");
        let new = Case::new("Pad")
            .opset(11)
            .input("float[N,3,4,4]")
            .folded("int64[8]", ints(&[0, 0, 1, 1, 0, 0, -1, 1]));
        assert_eq!(new.ty(), "float[N,3,4,6]");
        let axes = Case::new("Pad")
            .opset(18)
            .input("float[N,3,4,4]")
            .folded("int64[2]", ints(&[2, 3]))
            .absent()
            .folded("int64[1]", ints(&[-1]));
        assert_eq!(axes.ty(), "float[N,3,4,9]");
        let unknown = Case::new("Pad").opset(11).input("float[N,3]").input("int64[4]");
        assert_eq!(unknown.ty(), "float[?,?]");
        assert!(
            Case::new("Pad")
                .opset(2)
                .input("float[2]")
                .ints("pads", &[1])
                .invalid()
                .contains("2 values")
        );
        assert!(
            Case::new("Pad")
                .opset(2)
                .input("float[2]")
                .ints("pads", &[-2, -1])
                .invalid()
                .contains("below zero")
        );
        assert!(
            Case::new("Pad")
                .opset(2)
                .input("float[2]")
                .invalid()
                .contains("missing")
        );
        let sym = Case::new("Pad").opset(2).input("float[N]").ints("pads", &[1, 0]);
        assert_eq!(sym.ty(), "float[N+1]");
    }

    #[test]
    fn depth_and_space() {
        let d2s = Case::new("DepthToSpace").input("float[N,16,H,5]").int("blocksize", 2);
        assert_eq!(d2s.ty(), "float[N,4,2*H,10]");
        let s2d = Case::new("SpaceToDepth").input("float[1,3,8,8]").int("blocksize", 2);
        assert_eq!(s2d.ty(), "float[1,12,4,4]");
        assert!(
            Case::new("SpaceToDepth")
                .input("float[1,3,7,8]")
                .int("blocksize", 2)
                .invalid()
                .contains("height 7")
        );
        assert!(
            Case::new("DepthToSpace")
                .input("float[1,3,7,8]")
                .invalid()
                .contains("blocksize")
        );
    }
}
