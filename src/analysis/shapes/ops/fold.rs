//! Constant folding on small tensors. Every helper works on flat row-major
//! contents plus a concrete shape, and gives up (`None`) rather than guess:
//! folding is an optimisation of inference, never a requirement.

use crate::analysis::shapes::OpContext;
use crate::ir::constant::MAX_FOLDED_ELEMENTS;
use crate::ir::{Dim, Folded};

/// A folded input whose shape is fully known.
pub(super) struct Const<'a> {
    pub shape: Vec<usize>,
    pub data: &'a Folded,
}

/// Input `i` when its contents and concrete shape are known and agree.
pub(super) fn constant<'a>(ctx: &OpContext<'a>, i: usize) -> Option<Const<'a>> {
    let data = ctx.folded(i)?;
    let shape = usize_shape(ctx.input_shape(i)?)?;
    (numel(&shape)? == data.len()).then_some(Const { shape, data })
}

/// Element count, `None` on overflow.
pub(super) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

pub(super) fn usize_shape(dims: &[Dim]) -> Option<Vec<usize>> {
    dims.iter()
        .map(|d| d.known().and_then(|v| usize::try_from(v).ok()))
        .collect()
}

/// The concrete shape of an output worth folding: known and small.
pub(super) fn foldable_shape(dims: &[Dim]) -> Option<Vec<usize>> {
    let shape = usize_shape(dims)?;
    (numel(&shape)? as u64 <= MAX_FOLDED_ELEMENTS).then_some(shape)
}

/// One element of folded contents.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Int(Dim),
    Float(f64),
}

impl Scalar {
    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(d) => d.known().map(|v| v as f64),
            Scalar::Float(f) => Some(*f),
        }
    }
}

pub(super) fn scalars(f: &Folded) -> Vec<Scalar> {
    match f {
        Folded::Ints(v) => v.iter().cloned().map(Scalar::Int).collect(),
        Folded::Floats(v) => v.iter().copied().map(Scalar::Float).collect(),
    }
}

/// Back to folded contents; `None` when integers and floats are mixed.
pub(super) fn from_scalars(v: Vec<Scalar>) -> Option<Folded> {
    if v.iter().all(|s| matches!(s, Scalar::Float(_))) && !v.is_empty() {
        return Some(Folded::Floats(v.into_iter().filter_map(|s| s.as_f64()).collect()));
    }
    v.into_iter()
        .map(|s| match s {
            Scalar::Int(d) => Some(d),
            Scalar::Float(_) => None,
        })
        .collect::<Option<Vec<Dim>>>()
        .map(Folded::Ints)
}

/// Elements of `data` at flat positions `at`.
pub(super) fn pick(data: &Folded, at: &[usize]) -> Option<Folded> {
    Some(match data {
        Folded::Ints(v) => Folded::Ints(at.iter().map(|&i| v.get(i).cloned()).collect::<Option<_>>()?),
        Folded::Floats(v) => Folded::Floats(at.iter().map(|&i| v.get(i).copied()).collect::<Option<_>>()?),
    })
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// For each element of a tensor of shape `to`, the flat position in a tensor
/// of shape `from` that broadcasts to it.
pub(super) fn broadcast_positions(from: &[usize], to: &[usize]) -> Vec<usize> {
    let offset = to.len().saturating_sub(from.len());
    let from_strides = strides(from);
    let total = numel(to).unwrap_or(0);
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; to.len()];
    for _ in 0..total {
        let pos = idx
            .iter()
            .enumerate()
            .skip(offset)
            .map(|(k, &i)| {
                if from[k - offset] == 1 {
                    0
                } else {
                    i * from_strides[k - offset]
                }
            })
            .sum();
        out.push(pos);
        // Odometer increment over `to`.
        for k in (0..to.len()).rev() {
            idx[k] += 1;
            if idx[k] < to[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// Flat positions of taking indices `picks` along `axis` of `shape`.
pub(super) fn along_axis(shape: &[usize], axis: usize, picks: &[usize]) -> Vec<usize> {
    let all: Vec<Vec<usize>> = shape
        .iter()
        .enumerate()
        .map(|(k, &d)| if k == axis { picks.to_vec() } else { (0..d).collect() })
        .collect();
    select(shape, &all)
}

/// Flat positions of the sub-tensor that keeps, on each axis `k`, the
/// indices `picks[k]` (in that order): slicing, and gathering on one axis.
pub(super) fn select(shape: &[usize], picks: &[Vec<usize>]) -> Vec<usize> {
    let st = strides(shape);
    let mut out = vec![0usize];
    for (k, p) in picks.iter().enumerate() {
        let stride = st.get(k).copied().unwrap_or(0);
        out = out
            .iter()
            .flat_map(|&base| p.iter().map(move |&i| base + i * stride))
            .collect();
    }
    out
}

/// Applies `f` element by element over inputs broadcast to `out`; `None`
/// when an input is not folded, the output is too big, or `f` gives up.
pub(super) fn elementwise(
    ctx: &OpContext,
    inputs: &[usize],
    out: &[Dim],
    f: impl Fn(&[Scalar]) -> Option<Scalar>,
) -> Option<Folded> {
    let to = foldable_shape(out)?;
    let columns: Vec<Vec<Scalar>> = inputs
        .iter()
        .map(|&i| {
            let c = constant(ctx, i)?;
            let all = scalars(c.data);
            broadcast_positions(&c.shape, &to)
                .into_iter()
                .map(|p| all.get(p).cloned())
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<_>>()?;
    let n = numel(&to)?;
    let mut row = Vec::with_capacity(inputs.len());
    let mut result = Vec::with_capacity(n);
    for k in 0..n {
        row.clear();
        row.extend(columns.iter().map(|c| c[k].clone()));
        result.push(f(&row)?);
    }
    if result.is_empty() {
        return Some(match ctx.folded(inputs[0])? {
            Folded::Ints(_) => Folded::Ints(Vec::new()),
            Folded::Floats(_) => Folded::Floats(Vec::new()),
        });
    }
    from_scalars(result)
}

/// Input `i` unchanged, for ops that only relabel the shape (Reshape,
/// Squeeze, Identity, ...), when the output stays small.
pub(super) fn pass_through(ctx: &OpContext, i: usize, out: &[Dim]) -> Option<Folded> {
    let data = ctx.folded(i)?;
    let n = numel(&foldable_shape(out)?)?;
    (n == data.len()).then(|| data.clone())
}

/// Concatenation along `axis` of folded parts with concrete shapes that
/// agree except on `axis`.
pub(super) fn concat(parts: &[Const], axis: usize) -> Option<Folded> {
    let first = parts.first()?;
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let all: Vec<Vec<Scalar>> = parts.iter().map(|p| scalars(p.data)).collect();
    let total: usize = all.iter().map(Vec::len).sum();
    if total as u64 > MAX_FOLDED_ELEMENTS {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (p, data) in parts.iter().zip(&all) {
            let block = p.shape[axis] * inner;
            out.extend_from_slice(data.get(o * block..(o + 1) * block)?);
        }
    }
    if out.is_empty() {
        return Some(first.data.clone()).filter(|d| d.is_empty());
    }
    from_scalars(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_positions_repeat_rows_and_columns() {
        assert_eq!(broadcast_positions(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_positions(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_positions(&[], &[2]), vec![0, 0]);
    }

    #[test]
    fn along_axis_takes_slices() {
        assert_eq!(along_axis(&[2, 3], 1, &[2, 0]), vec![2, 0, 5, 3]);
        assert_eq!(along_axis(&[2, 3], 0, &[1]), vec![3, 4, 5]);
    }

    #[test]
    fn select_takes_per_axis_indices() {
        assert_eq!(select(&[2, 3], &[vec![1], vec![0, 2]]), vec![3, 5]);
        assert_eq!(select(&[4], &[vec![3, 2, 1]]), vec![3, 2, 1]);
    }

    #[test]
    fn mixed_kinds_do_not_fold() {
        assert_eq!(from_scalars(vec![Scalar::Int(Dim::Known(1)), Scalar::Float(1.0)]), None);
        assert_eq!(pick(&Folded::Floats(vec![1.0]), &[1]), None);
    }
}
