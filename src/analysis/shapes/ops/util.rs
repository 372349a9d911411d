//! Helpers every family uses: reading inputs and attributes, normalising axes,
//! and building results.

use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, Folded, TensorType};
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::attribute_proto::AttributeType;

pub(super) type Rule = Result<Vec<Inferred>, RuleError>;

pub(super) fn invalid(reason: impl Into<String>) -> RuleError {
    RuleError::Invalid(reason.into())
}

/// Type of input `i`, which the op requires.
pub(super) fn input<'a>(ctx: &OpContext<'a>, i: usize) -> Result<&'a TensorType, RuleError> {
    if !ctx.has_input(i) {
        return Err(invalid(format!("required input #{i} is missing")));
    }
    ctx.input(i).ok_or(RuleError::NeedsInput)
}

/// Shape of required input `i`; its rank must be known.
pub(super) fn shape<'a>(ctx: &OpContext<'a>, i: usize) -> Result<&'a [Dim], RuleError> {
    input(ctx, i)?.shape.as_deref().ok_or(RuleError::NeedsInput)
}

/// Shape of required input `i` with at least `min` dimensions.
pub(super) fn shape_min_rank<'a>(ctx: &OpContext<'a>, i: usize, min: usize) -> Result<&'a [Dim], RuleError> {
    let s = shape(ctx, i)?;
    if s.len() < min {
        return Err(invalid(format!(
            "input #{i} has rank {} but needs at least {min}",
            s.len()
        )));
    }
    Ok(s)
}

/// Whether optional input `i` is given and not an empty placeholder tensor
/// (exporters pass a 0-element tensor for "absent", e.g. Resize's scales).
pub(super) fn present(ctx: &OpContext, i: usize) -> bool {
    if !ctx.has_input(i) {
        return false;
    }
    let empty_type = ctx.input_shape(i).is_some_and(|s| s.contains(&Dim::Known(0)));
    let empty_contents = ctx.folded(i).is_some_and(Folded::is_empty);
    !(empty_type || empty_contents)
}

pub(super) fn result(elem: ElemType, shape: Vec<Dim>) -> Inferred {
    Inferred::of(TensorType::new(elem, shape))
}

pub(super) fn folded_result(elem: ElemType, shape: Vec<Dim>, folded: Option<Folded>) -> Inferred {
    Inferred {
        ty: Some(TensorType::new(elem, shape)),
        folded,
    }
}

/// A tensor whose rank is unknown.
pub(super) fn unranked(elem: ElemType) -> Inferred {
    Inferred::of(TensorType { elem, shape: None })
}

/// Ranks above this are taken as nonsense rather than allocated.
const MAX_RANK: usize = 1 << 12;

/// Length of 1-D input `i` (a shape tensor whose contents are unknown), i.e.
/// the rank of the shape it describes.
pub(super) fn shape_length(ctx: &OpContext, i: usize) -> Option<usize> {
    match ctx.input_shape(i)? {
        [Dim::Known(n)] => usize::try_from(*n).ok().filter(|&n| n <= MAX_RANK),
        _ => None,
    }
}

/// A shape of `rank` unknown dimensions.
pub(super) fn unknown_dims(rank: usize) -> Vec<Dim> {
    vec![Dim::Unknown; rank]
}

/// Normalises a possibly negative axis against `rank` (valid: -rank..rank).
pub(super) fn axis(axis: i64, rank: usize) -> Result<usize, RuleError> {
    let r = i64::try_from(rank).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis.checked_add(r) } else { Some(axis) };
    match a {
        Some(a) if (0..r).contains(&a) => Ok(a as usize),
        _ => Err(invalid(format!("axis {axis} is out of range for rank {rank}"))),
    }
}

/// Normalises a list of axes; repeats are a contradiction.
pub(super) fn axes(list: &[i64], rank: usize) -> Result<Vec<usize>, RuleError> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let n = axis(a, rank)?;
        if out.contains(&n) {
            return Err(invalid(format!("axis {a} is repeated in {list:?}")));
        }
        out.push(n);
    }
    Ok(out)
}

pub(super) fn int_attr(ctx: &OpContext, name: &str, default: i64) -> i64 {
    ctx.node.attr_int(name).unwrap_or(default)
}

pub(super) fn string_attr(ctx: &OpContext, name: &str, default: &str) -> String {
    ctx.node.attr_string(name).unwrap_or_else(|| default.to_string())
}

pub(super) fn floats_attr<'a>(ctx: &OpContext<'a>, name: &str) -> Option<&'a [f32]> {
    ctx.node
        .attr(name)
        .filter(|a| a.type_() == AttributeType::FLOATS)
        .map(|a| a.floats.as_slice())
}

/// Integer attribute list of length `n`, `default` for each entry when absent.
pub(super) fn ints_attr_len(ctx: &OpContext, name: &str, n: usize, default: i64) -> Result<Vec<i64>, RuleError> {
    match ctx.node.attr_ints(name) {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v.to_vec()),
        Some(v) => Err(invalid(format!(
            "attribute {name} has {} values, expected {n}",
            v.len()
        ))),
    }
}

/// A list of integers that an op takes as an attribute in early opsets and as
/// an input in later ones (Squeeze axes, Slice starts, Pad pads, ...).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ints {
    /// Neither form is given.
    Absent,
    Known(Vec<i64>),
    /// Given as an input whose contents are not known at compile time.
    Unknown,
}

/// Reads the list from input `input` when the opset is at least `since`,
/// otherwise from attribute `attr`; falls back to the other form when the
/// expected one is missing, so slightly off-spec exporters still work.
pub(super) fn ints_param(ctx: &OpContext, attr: &str, input: usize, since: i64) -> Ints {
    let from_input = || {
        ctx.has_input(input)
            .then(|| ctx.known_ints(input).map_or(Ints::Unknown, Ints::Known))
    };
    let from_attr = || ctx.node.attr_ints(attr).map(|v| Ints::Known(v.to_vec()));
    let found = if ctx.opset >= since {
        from_input().or_else(from_attr)
    } else {
        from_attr().or_else(from_input)
    };
    found.unwrap_or(Ints::Absent)
}

/// The type an output takes from input `i` (element type and shape).
pub(super) fn same_as(ctx: &OpContext, i: usize) -> Result<Inferred, RuleError> {
    Ok(Inferred::of(input(ctx, i)?.clone()))
}
