//! Ops that pick or assemble parts of tensors: Concat, Split, Slice, Gather
//! (and GatherElements/GatherND), Compress, NonZero, OneHot, TopK. Concat,
//! Split, Slice and Gather fold, for exporters' Shape→Gather→Concat chains.

use super::dims::{self, fmt_shape, unify};
use super::fold::{self, Const};
use super::util::{Ints, Rule, axes, axis, folded_result, input, int_attr, ints_param, invalid, result, shape};
use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, Folded, TensorType};
use crate::onnx::dtype::ElemType;

/// Concat: equal ranks, equal dims off `axis`, sizes on `axis` added.
pub(super) fn concat(ctx: &OpContext) -> Rule {
    let n = ctx.node.inputs.len();
    if n == 0 {
        return Err(invalid("needs at least one input"));
    }
    let a = ctx
        .node
        .attr_int("axis")
        .ok_or_else(|| invalid("attribute axis is missing"))?;
    let shapes: Vec<&[Dim]> = (0..n).map(|i| shape(ctx, i)).collect::<Result<_, _>>()?;
    let r = shapes[0].len();
    let ax = axis(a, r)?;
    let mut out = shapes[0].to_vec();
    for (i, s) in shapes.iter().enumerate().skip(1) {
        if s.len() != r {
            return Err(invalid(format!(
                "input #{i} has rank {} but input #0 has rank {r}",
                s.len()
            )));
        }
        for (k, d) in s.iter().enumerate() {
            out[k] = if k == ax {
                dims::add(&out[k], d)
            } else {
                unify(&out[k], d).ok_or_else(|| {
                    invalid(format!(
                        "input #{i} {} differs from the others on axis {k} (concatenating on axis {ax})",
                        fmt_shape(s)
                    ))
                })?
            };
        }
    }
    let folded = (0..n)
        .map(|i| fold::constant(ctx, i))
        .collect::<Option<Vec<Const>>>()
        .and_then(|parts| fold::concat(&parts, ax));
    Ok(vec![folded_result(input(ctx, 0)?.elem, out, folded)])
}

/// Split: sizes from `split` (attribute before 13, input from 13), else equal
/// parts, one per output; `num_outputs` (18+) allows a smaller last part.
pub(super) fn split(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let s = shape(ctx, 0)?;
    let ax = axis(int_attr(ctx, "axis", 0), s.len())?;
    let d = &s[ax];
    let n_out = ctx.node.outputs.len();
    let sizes: Vec<Dim> = match ints_param(ctx, "split", 1, 13) {
        // An empty `split` tensor stands for "not given".
        Ints::Known(v) if v.is_empty() => equal_parts(ctx, d, n_out)?,
        Ints::Known(v) => {
            let total = v
                .iter()
                .try_fold(0i64, |acc, &x| if x < 0 { None } else { acc.checked_add(x) });
            if v.len() != n_out || total.is_none() || d.known().is_some_and(|d| Some(d) != total) {
                return Err(invalid(format!(
                    "split {v:?} does not divide axis {ax} of size {d} into {n_out} outputs"
                )));
            }
            v.iter().map(|&x| Dim::Known(x)).collect()
        }
        Ints::Unknown => vec![Dim::Unknown; n_out],
        Ints::Absent => equal_parts(ctx, d, n_out)?,
    };
    let folded = fold::constant(ctx, 0);
    let mut start = 0usize;
    let mut outs = Vec::with_capacity(n_out);
    for size in sizes {
        let mut o = s.to_vec();
        o[ax] = size.clone();
        // Fold each part from a running offset while every size is known.
        let part = match (&folded, size.known().and_then(|v| usize::try_from(v).ok())) {
            (Some(c), Some(len)) => {
                let picks: Vec<usize> = (start..start + len).collect();
                start += len;
                fold::foldable_shape(&o).and_then(|_| fold::pick(c.data, &fold::along_axis(&c.shape, ax, &picks)))
            }
            _ => None,
        };
        outs.push(folded_result(t.elem, o, part));
    }
    Ok(outs)
}

/// Sizes of `parts` equal parts of `d`.
fn equal_parts(ctx: &OpContext, d: &Dim, outputs: usize) -> Result<Vec<Dim>, RuleError> {
    let parts = match ctx.node.attr_int("num_outputs") {
        Some(n) if ctx.opset >= 18 => {
            if usize::try_from(n).ok() != Some(outputs) || n <= 0 {
                return Err(invalid(format!("num_outputs {n} but the node has {outputs} outputs")));
            }
            n
        }
        _ => i64::try_from(outputs).map_err(|_| invalid("too many outputs"))?,
    };
    if parts == 0 {
        return Err(invalid("no outputs to split into"));
    }
    let Dim::Known(total) = *d else {
        return Ok(vec![Dim::Unknown; outputs]);
    };
    if ctx.opset < 18 && total % parts != 0 {
        return Err(invalid(format!(
            "axis of size {total} does not split into {parts} equal parts"
        )));
    }
    // From 18 the parts are ceil(total/parts), the last one what remains.
    let chunk = total / parts + i64::from(total % parts != 0);
    let last = total - chunk * (parts - 1);
    if last < 0 {
        return Err(invalid(format!(
            "axis of size {total} does not split into {parts} parts"
        )));
    }
    let mut sizes = vec![Dim::Known(chunk); outputs];
    sizes[outputs - 1] = Dim::Known(last);
    Ok(sizes)
}

/// First index and count of one slice of an axis of concrete size `dim`,
/// clamped as the ONNX spec says.
fn slice_range(dim: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    if dim <= 0 {
        return (0, 0);
    }
    let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, dim), e.clamp(0, dim))
    } else {
        (s.clamp(0, dim - 1), e.clamp(-1, dim - 1))
    };
    let len = if step > 0 { (e - s).max(0) } else { (s - e).max(0) };
    let stride = step.saturating_abs();
    (s, len / stride + i64::from(len % stride != 0))
}

/// The indices a slice takes (for folding, so `dim` is small).
fn slice_indices(dim: i64, start: i64, end: i64, step: i64) -> Vec<i64> {
    let (first, count) = slice_range(dim, start, end, step);
    (0..count).map(|k| first + k * step).collect()
}

/// Size of a sliced axis. On a symbolic axis, a forward slice from a
/// start `s >= 0` to the end spans `d-s`, and to `-e` it spans `d-e-s` (the
/// class token a ViT drops, the last token a decoder drops); a step `k`
/// keeps `ceil(span/k)` of them (every other row: `floor((H+1)/2)`). Sizes
/// assume the axis is at least that long, as a model that runs needs.
fn slice_dim(d: &Dim, start: i64, end: i64, step: i64) -> Dim {
    let to_end = end >= i64::from(i32::MAX);
    let span = match d {
        Dim::Known(v) => return Dim::Known(slice_range(*v, start, end, step).1),
        Dim::Unknown => return Dim::Unknown,
        _ if step >= 1 && start >= 0 && to_end => d.minus(&Dim::Known(start)),
        _ if step >= 1 && start >= 0 && end < 0 && end > -i64::from(i32::MAX) => {
            d.plus(&Dim::Known(end)).minus(&Dim::Known(start))
        }
        _ => return Dim::Unknown,
    };
    span.ceil_div(step)
}

/// Slice: `starts`, `ends`, `axes` attributes before 10; inputs 1–4 (with
/// `steps`) from 10.
pub(super) fn slice(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let s = shape(ctx, 0)?;
    let param = |name: &str, i: usize| ints_param(ctx, name, i, 10);
    let (starts, ends) = match (param("starts", 1), param("ends", 2)) {
        (Ints::Known(a), Ints::Known(b)) => (a, b),
        (Ints::Absent, _) | (_, Ints::Absent) => return Err(invalid("starts or ends are missing")),
        _ => {
            // Unknown bounds: the axes named (all, if unknown) lose their size.
            let mut out = s.to_vec();
            let touched = match param("axes", 3) {
                Ints::Known(a) => axes(&a, s.len())?,
                _ => (0..s.len()).collect(),
            };
            for a in touched {
                out[a] = Dim::Unknown;
            }
            return Ok(vec![result(t.elem, out)]);
        }
    };
    let n = starts.len();
    let sliced = match param("axes", 3) {
        Ints::Known(a) => axes(&a, s.len())?,
        Ints::Absent => (0..n).collect(),
        Ints::Unknown => return Ok(vec![result(t.elem, vec![Dim::Unknown; s.len()])]),
    };
    let steps = match param("steps", 4) {
        Ints::Known(v) => Some(v),
        Ints::Absent => Some(vec![1; n]),
        Ints::Unknown => None,
    };
    if ends.len() != n || sliced.len() != n || steps.as_ref().is_some_and(|v| v.len() != n) {
        return Err(invalid(format!(
            "starts {starts:?}, ends {ends:?}, axes and steps differ in length"
        )));
    }
    let mut out = s.to_vec();
    for (k, &a) in sliced.iter().enumerate() {
        out[a] = match steps.as_ref().map(|v| v[k]) {
            Some(0) => return Err(invalid("slice step 0")),
            Some(step) => slice_dim(&s[a], starts[k], ends[k], step),
            None => Dim::Unknown,
        };
    }
    // Fold: the indices kept on every axis, then the elements at them.
    let folded = fold::constant(ctx, 0).and_then(|c| {
        fold::foldable_shape(&out)?;
        let steps = steps?;
        let mut picks: Vec<Vec<usize>> = c.shape.iter().map(|&d| (0..d).collect()).collect();
        for (k, &a) in sliced.iter().enumerate() {
            let kept = slice_indices(c.shape[a] as i64, starts[k], ends[k], steps[k]);
            picks[a] = kept.into_iter().map(|i| i as usize).collect();
        }
        fold::pick(c.data, &fold::select(&c.shape, &picks))
    });
    Ok(vec![folded_result(t.elem, out, folded)])
}

/// Gather: `data[:axis] + indices.shape + data[axis+1:]`.
pub(super) fn gather(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let (s, idx) = (shape(ctx, 0)?, shape(ctx, 1)?);
    let ax = axis(int_attr(ctx, "axis", 0), s.len())?;
    let out: Vec<Dim> = s[..ax].iter().chain(idx).chain(&s[ax + 1..]).cloned().collect();
    // Check (and normalise) constant indices against a known axis size.
    let picks = match (ctx.known_ints(1), s[ax].known()) {
        (Some(ix), Some(n)) => Some(
            ix.iter()
                .map(|&i| {
                    let j = if i < 0 { i + n } else { i };
                    usize::try_from(j)
                        .ok()
                        .filter(|&j| (j as i64) < n)
                        .ok_or_else(|| invalid(format!("index {i} is out of range for axis {ax} of size {n}")))
                })
                .collect::<Result<Vec<usize>, _>>()?,
        ),
        _ => None,
    };
    let folded = match (fold::constant(ctx, 0), picks) {
        (Some(c), Some(p)) if fold::foldable_shape(&out).is_some() => {
            fold::pick(c.data, &fold::along_axis(&c.shape, ax, &p))
        }
        _ => None,
    };
    Ok(vec![folded_result(t.elem, out, folded)])
}

/// GatherElements: the indices' shape, the data's element type.
pub(super) fn gather_elements(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let (s, idx) = (shape(ctx, 0)?, shape(ctx, 1)?);
    if s.len() != idx.len() {
        return Err(invalid(format!(
            "data {} and indices {} differ in rank",
            fmt_shape(s),
            fmt_shape(idx)
        )));
    }
    axis(int_attr(ctx, "axis", 0), s.len())?;
    Ok(vec![result(t.elem, idx.to_vec())])
}

/// GatherND: `indices[:-1] + data[batch_dims + indices[-1]:]`.
pub(super) fn gather_nd(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let (s, idx) = (shape(ctx, 0)?, shape(ctx, 1)?);
    let b = usize::try_from(int_attr(ctx, "batch_dims", 0)).map_err(|_| invalid("batch_dims is negative"))?;
    let Some((last, lead)) = idx.split_last() else {
        return Err(invalid("indices must have rank 1 or more"));
    };
    let Some(k) = last.known().and_then(|k| usize::try_from(k).ok()) else {
        return Ok(vec![Inferred::of(TensorType {
            elem: t.elem,
            shape: None,
        })]);
    };
    let from = b.checked_add(k).filter(|&f| f <= s.len() && b < idx.len());
    let from = from.ok_or_else(|| {
        invalid(format!(
            "indices {} with batch_dims {b} do not fit data {}",
            fmt_shape(idx),
            fmt_shape(s)
        ))
    })?;
    Ok(vec![result(t.elem, lead.iter().chain(&s[from..]).cloned().collect())])
}

/// Number of true (non-zero) entries of input `i` among the first `limit`:
/// counted where the input folds, else a fresh symbol `nonzero(NAME)` named
/// by the input, so that what reads the kept rows is still costed (per kept
/// row, as every symbol is per sample) and two ops that keep rows by the
/// same mask agree on their count.
fn count_true(ctx: &OpContext, i: usize, limit: Option<i64>) -> Dim {
    if let Some(v) = ctx.folded(i).and_then(Folded::floats) {
        let take = limit.map_or(v.len(), |l| usize::try_from(l).unwrap_or(0).min(v.len()));
        return Dim::Known(v[..take].iter().filter(|&&x| x != 0.0).count() as i64);
    }
    // A mask longer than the axis counts only its head: not the mask's count.
    let longer = match (limit, ctx.input(i).and_then(TensorType::num_elements)) {
        (Some(l), Some(n)) => u64::try_from(l).map_or(true, |l| n > l),
        _ => false,
    };
    match ctx.input_name(i) {
        Some(name) if !longer => crate::ir::dims::data_dependent_count(name),
        _ => Dim::Unknown,
    }
}

/// Compress: a 1-D result without `axis`, else the axis shrinks to the
/// number of true conditions.
pub(super) fn compress(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    input(ctx, 1)?;
    let Some(a) = ctx.node.attr_int("axis") else {
        return Ok(vec![result(t.elem, vec![count_true(ctx, 1, None)])]);
    };
    let s = shape(ctx, 0)?;
    let ax = axis(a, s.len())?;
    let mut out = s.to_vec();
    out[ax] = count_true(ctx, 1, s[ax].known());
    Ok(vec![result(t.elem, out)])
}

/// NonZero: int64 `[rank, count]`, the count known only for folded input.
pub(super) fn non_zero(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let rank = t.rank().map_or(Dim::Unknown, |r| Dim::Known(r as i64));
    Ok(vec![result(ElemType::INT64, vec![rank, count_true(ctx, 0, None)])])
}

/// OneHot: a `depth`-sized axis inserted at `axis`, typed like `values`.
pub(super) fn one_hot(ctx: &OpContext) -> Rule {
    let idx = shape(ctx, 0)?;
    input(ctx, 1)?;
    let elem = input(ctx, 2)?.elem;
    let ax = axis(int_attr(ctx, "axis", -1), idx.len() + 1)?;
    let depth = match ctx.known_ints(1).as_deref() {
        Some([d]) if *d > 0 => Dim::Known(*d),
        Some([d]) => return Err(invalid(format!("depth {d} must be positive"))),
        _ => Dim::Unknown,
    };
    let mut out = idx.to_vec();
    out.insert(ax, depth);
    Ok(vec![result(elem, out)])
}

/// TopK: values and int64 indices, `axis` cut to K (attribute `k` before 10).
pub(super) fn top_k(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let s = shape(ctx, 0)?;
    let ax = axis(int_attr(ctx, "axis", -1), s.len())?;
    let k = if ctx.opset >= 10 || ctx.has_input(1) {
        ctx.known_ints(1).and_then(|v| v.first().copied())
    } else {
        ctx.node.attr_int("k")
    };
    let mut out = s.to_vec();
    out[ax] = match (k, s[ax].known()) {
        (Some(k), Some(n)) if k < 0 || k > n => {
            return Err(invalid(format!("k = {k} for axis {ax} of size {n}")));
        }
        (Some(k), _) => Dim::Known(k),
        (None, _) => Dim::Unknown,
    };
    Ok(vec![result(t.elem, out.clone()), result(ElemType::INT64, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, floats, ints, sym_ints};
    use super::slice_indices;

    #[test]
    fn concat_adds_on_axis() {
        let c = Case::new("Concat")
            .int("axis", 1)
            .input("float[N,64,H,W]")
            .input("float[N,32,?,W]");
        assert_eq!(c.ty(), "float[N,96,H,W]");
        let neg = Case::new("Concat")
            .int("axis", -1)
            .input("float[2,N]")
            .input("float[?,3]");
        assert_eq!(neg.ty(), "float[2,N+3]");
        let rank = Case::new("Concat")
            .int("axis", 0)
            .input("float[2,3]")
            .input("float[3]")
            .invalid();
        assert!(rank.contains("input #1 has rank 1"), "{rank}");
        let dim = Case::new("Concat")
            .int("axis", 0)
            .input("float[2,3]")
            .input("float[2,4]")
            .invalid();
        assert!(dim.contains("[2,4]") && dim.contains("axis 1"), "{dim}");
        assert!(Case::new("Concat").input("float[2]").invalid().contains("axis"));
        assert!(
            Case::new("Concat")
                .int("axis", 0)
                .input("float[]")
                .invalid()
                .contains("axis 0")
        );
    }

    #[test]
    fn concat_folds_symbolic_shapes() {
        let c = Case::new("Concat")
            .int("axis", 0)
            .folded("int64[1]", sym_ints("batch"))
            .folded("int64[1]", ints(&[-1]));
        assert_eq!((c.ty(), c.value()), ("int64[2]".into(), Some(sym_ints("batch,-1"))));
        let two_d = Case::new("Concat")
            .int("axis", 1)
            .folded("float[2,1]", floats(&[1.0, 2.0]))
            .folded("float[2,2]", floats(&[3.0, 4.0, 5.0, 6.0]));
        assert_eq!(two_d.value(), Some(floats(&[1.0, 3.0, 4.0, 2.0, 5.0, 6.0])));
    }

    #[test]
    fn split_forms() {
        let old = Case::new("Split")
            .opset(11)
            .outputs(2)
            .input("float[N,6]")
            .int("axis", 1)
            .ints("split", &[2, 4]);
        assert_eq!(old.types(), ["float[N,2]", "float[N,4]"]);
        let new = Case::new("Split")
            .opset(13)
            .outputs(2)
            .input("float[N,6]")
            .folded("int64[2]", ints(&[1, 5]));
        assert_eq!(new.int("axis", -1).types(), ["float[N,1]", "float[N,5]"]);
        let equal = Case::new("Split").outputs(3).input("float[9,N]");
        assert_eq!(equal.types(), ["float[3,N]", "float[3,N]", "float[3,N]"]);
        let uneven = Case::new("Split")
            .opset(18)
            .outputs(3)
            .int("num_outputs", 3)
            .input("float[7]");
        assert_eq!(uneven.types(), ["float[3]", "float[3]", "float[1]"]);
        assert!(
            Case::new("Split")
                .opset(13)
                .outputs(2)
                .input("float[7]")
                .invalid()
                .contains("equal parts")
        );
        let bad = Case::new("Split")
            .opset(11)
            .outputs(2)
            .input("float[6]")
            .ints("split", &[2, 3])
            .invalid();
        assert!(bad.contains("[2, 3]"), "{bad}");
        let count = Case::new("Split")
            .opset(18)
            .outputs(2)
            .int("num_outputs", 3)
            .input("float[6]");
        assert!(count.invalid().contains("num_outputs 3"));
        let sym = Case::new("Split").outputs(2).int("axis", 1).input("float[2,S]");
        assert_eq!(sym.types(), ["float[2,?]", "float[2,?]"]);
        let empty = Case::new("Split")
            .outputs(2)
            .input("float[6]")
            .folded("int64[0]", ints(&[]));
        assert_eq!(empty.types(), ["float[3]", "float[3]"]);
        let unknown = Case::new("Split").outputs(2).input("float[6]").input("int64[2]");
        assert_eq!(unknown.types(), ["float[?]", "float[?]"]);
    }

    #[test]
    fn split_folds() {
        let outs = Case::new("Split")
            .outputs(2)
            .folded("int64[3]", sym_ints("N,3,4"))
            .folded("int64[2]", ints(&[1, 2]));
        let v: Vec<_> = outs.run().unwrap().into_iter().map(|o| o.folded).collect();
        assert_eq!(v, [Some(sym_ints("N")), Some(ints(&[3, 4]))]);
    }

    #[test]
    fn slice_clamps_like_the_spec() {
        assert_eq!(slice_indices(5, 1, 3, 1), [1, 2]);
        assert_eq!(slice_indices(5, -2, i64::MAX, 1), [3, 4]);
        assert_eq!(slice_indices(5, i64::MAX, i64::MIN, -1), [4, 3, 2, 1, 0]);
        assert_eq!(slice_indices(5, 0, 5, 2), [0, 2, 4]);
        assert_eq!(slice_indices(5, 4, 1, -2), [4, 2]);
        assert_eq!(slice_indices(5, 3, 1, 1), Vec::<i64>::new());
        assert_eq!(slice_indices(0, 0, 1, 1), Vec::<i64>::new());
        assert_eq!(slice_indices(3, i64::MIN, i64::MAX, i64::MIN), Vec::<i64>::new());
    }

    #[test]
    fn slice_forms() {
        let old = Case::new("Slice")
            .opset(9)
            .input("float[N,10,20]")
            .ints("starts", &[2, 0])
            .ints("ends", &[5, -1])
            .ints("axes", &[1, 2]);
        assert_eq!(old.ty(), "float[N,3,19]");
        let new = Case::new("Slice")
            .opset(10)
            .input("float[N,10,20]")
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[i64::MAX]))
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[1]));
        assert_eq!(new.ty(), "float[N,10,20]");
        let stepped = Case::new("Slice")
            .input("float[10]")
            .folded("int64[1]", ints(&[-1]))
            .folded("int64[1]", ints(&[i64::MIN]))
            .absent()
            .folded("int64[1]", ints(&[-3]));
        assert_eq!(stepped.ty(), "float[4]");
        let unknown = Case::new("Slice")
            .input("float[N,10,20]")
            .input("int64[1]")
            .input("int64[1]")
            .folded("int64[1]", ints(&[2]));
        assert_eq!(unknown.ty(), "float[N,10,?]");
        let sym = Case::new("Slice")
            .opset(9)
            .input("float[S]")
            .ints("starts", &[1])
            .ints("ends", &[i64::MAX]);
        assert_eq!(sym.ty(), "float[S-1]");
        // Dropping the last token, and stepped slices: every other element
        // (YOLO's space-to-depth `x[..., ::2, ::2]`), every third from 1.
        let trimmed = Case::new("Slice")
            .opset(9)
            .input("float[S]")
            .ints("starts", &[0])
            .ints("ends", &[-1]);
        assert_eq!(trimmed.ty(), "float[S-1]");
        let strided = Case::new("Slice")
            .input("float[S]")
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[i64::MAX]))
            .absent()
            .folded("int64[1]", ints(&[2]));
        assert_eq!(strided.ty(), "float[floor((S+1)/2)]");
        let thirds = Case::new("Slice")
            .input("float[S]")
            .folded("int64[1]", ints(&[1]))
            .folded("int64[1]", ints(&[i64::MAX]))
            .absent()
            .folded("int64[1]", ints(&[3]));
        assert_eq!(thirds.ty(), "float[floor((S+1)/3)]");
        let zero = Case::new("Slice")
            .input("float[4]")
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[1]))
            .absent()
            .folded("int64[1]", ints(&[0]));
        assert!(zero.invalid().contains("step 0"));
        assert!(
            Case::new("Slice")
                .opset(9)
                .input("float[4]")
                .ints("starts", &[0])
                .invalid()
                .contains("missing")
        );
    }

    #[test]
    fn shape_slice_folds() {
        let s = Case::new("Slice")
            .folded("int64[4]", sym_ints("N,3,224,224"))
            .folded("int64[1]", ints(&[0]))
            .folded("int64[1]", ints(&[1]));
        assert_eq!((s.ty(), s.value()), ("int64[1]".into(), Some(sym_ints("N"))));
        let rev = Case::new("Slice")
            .folded("int64[2,2]", ints(&[1, 2, 3, 4]))
            .folded("int64[2]", ints(&[-1, -1]))
            .folded("int64[2]", ints(&[i64::MIN, i64::MIN]))
            .folded("int64[2]", ints(&[0, 1]))
            .folded("int64[2]", ints(&[-1, -1]));
        assert_eq!(rev.value(), Some(ints(&[4, 3, 2, 1])));
    }

    #[test]
    fn gather_shapes_and_folds() {
        let g = Case::new("Gather").input("float[V,768]").input("int64[N,S]");
        assert_eq!(g.ty(), "float[N,S,768]");
        let ax = Case::new("Gather")
            .int("axis", 1)
            .input("float[N,S,768]")
            .folded("int64[]", ints(&[0]));
        assert_eq!(ax.ty(), "float[N,768]");
        let f = Case::new("Gather")
            .folded("int64[4]", sym_ints("N,3,224,224"))
            .folded("int64[]", ints(&[0]));
        assert_eq!((f.ty(), f.value()), ("int64[]".into(), Some(sym_ints("N"))));
        let many = Case::new("Gather")
            .folded("int64[4]", sym_ints("N,3,7,8"))
            .folded("int64[2]", ints(&[-1, 1]));
        assert_eq!(many.value(), Some(ints(&[8, 3])));
        let oob = Case::new("Gather")
            .input("float[4,2]")
            .folded("int64[1]", ints(&[4]))
            .invalid();
        assert!(oob.contains("index 4") && oob.contains("size 4"), "{oob}");
        assert!(
            Case::new("Gather")
                .int("axis", 2)
                .input("float[4,2]")
                .input("int64[]")
                .invalid()
                .contains("axis 2")
        );
    }

    #[test]
    fn gather_variants() {
        let ge = Case::new("GatherElements").input("float[4,5]").input("int64[4,2]");
        assert_eq!(ge.ty(), "float[4,2]");
        assert!(
            Case::new("GatherElements")
                .input("float[4,5]")
                .input("int64[2]")
                .invalid()
                .contains("rank")
        );
        let nd = Case::new("GatherND").input("float[2,3,4]").input("int64[5,2]");
        assert_eq!(nd.ty(), "float[5,4]");
        let batched = Case::new("GatherND")
            .int("batch_dims", 1)
            .input("float[2,3,4]")
            .input("int64[2,1]");
        assert_eq!(batched.ty(), "float[2,4]");
        assert_eq!(
            Case::new("GatherND").input("float[2,3]").input("int64[5,?]").ty(),
            "float[...]"
        );
        assert!(
            Case::new("GatherND")
                .input("float[2]")
                .input("int64[5,2]")
                .invalid()
                .contains("do not fit")
        );
    }

    #[test]
    fn data_dependent_sizes() {
        assert_eq!(Case::new("NonZero").input("float[N,3]").ty(), "int64[2,nonzero(x0)]");
        assert_eq!(
            Case::new("NonZero").folded("int64[3]", ints(&[1, 0, 2])).ty(),
            "int64[1,2]"
        );
        let c = Case::new("Compress")
            .int("axis", 1)
            .input("float[N,4]")
            .folded("bool[3]", ints(&[1, 0, 1]));
        assert_eq!(c.ty(), "float[N,2]");
        assert_eq!(
            Case::new("Compress").input("float[N,4]").input("bool[3]").ty(),
            "float[nonzero(x1)]"
        );
        // Rows kept by a mask: the same symbol as the mask's NonZero.
        let rows = Case::new("Compress")
            .int("axis", 0)
            .input("float[N,8,3,3]")
            .input("bool[N]");
        assert_eq!(rows.ty(), "float[nonzero(x1),8,3,3]");
        // A mask longer than the axis: only its head counts, no symbol.
        let longer = Case::new("Compress")
            .int("axis", 1)
            .input("float[N,4]")
            .input("bool[6]");
        assert_eq!(longer.ty(), "float[N,?]");
    }

    #[test]
    fn one_hot_and_top_k() {
        let oh = Case::new("OneHot")
            .input("int64[N,S]")
            .folded("int64[]", ints(&[10]))
            .input("float[2]");
        assert_eq!(oh.ty(), "float[N,S,10]");
        let front = Case::new("OneHot")
            .int("axis", 0)
            .input("int64[N]")
            .input("int64[]")
            .input("int32[2]");
        assert_eq!(front.ty(), "int32[?,N]");
        let topk = Case::new("TopK")
            .outputs(2)
            .input("float[N,1000]")
            .folded("int64[1]", ints(&[5]));
        assert_eq!(topk.types(), ["float[N,5]", "int64[N,5]"]);
        let old = Case::new("TopK")
            .opset(9)
            .outputs(2)
            .input("float[N,1000]")
            .int("k", 3)
            .int("axis", 1);
        assert_eq!(old.types(), ["float[N,3]", "int64[N,3]"]);
        assert!(
            Case::new("TopK")
                .input("float[4]")
                .folded("int64[1]", ints(&[5]))
                .invalid()
                .contains("k = 5")
        );
    }
}
