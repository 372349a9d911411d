//! What the e-graph knows about each e-class: type (through the project's
//! shape rules), load-time constness (the cost model's notion), and float32
//! contents of true constants, which lets a rule fold a temperature or a
//! BatchNormalization into weights.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use egg::{Analysis, DidMerge, EGraph, Id};

use super::forms::onnx_form;
use super::lang::{AttrValue, Attrs, Kind, Literal, Term};
use crate::analysis::shapes::{OpContext, infer_op};
use crate::ir::{Dim, DimValues, Folded, Node, TensorType, ValueId};
use crate::onnx::dtype::ElemType;

/// Folding never produces more elements than this, nor more than its
/// largest constant operand (no Expand-style blow-ups into the file).
const MAX_FOLD_ELEMENTS: u64 = 1 << 24;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub ty: Option<TensorType>,
    /// Small contents from shape arithmetic or constants.
    pub folded: Option<Folded>,
    /// Computable at load time (weights, knobs, and what only they feed).
    pub constant: bool,
    /// Float32 contents of a true constant (never of a knob a caller may feed).
    pub data: Option<ConstData>,
    /// The attributes, for a bundle leaf.
    pub attrs: Option<Arc<Attrs>>,
    /// An omitted optional input (`_`).
    pub absent: bool,
}

impl Facts {
    pub fn static_dims(&self) -> Option<Vec<i64>> {
        self.ty.as_ref()?.shape.as_ref()?.iter().map(Dim::known).collect()
    }

    pub fn ints(&self) -> Option<Vec<i64>> {
        self.folded.as_ref().and_then(Folded::known_ints)
    }
}

pub type FuseGraph = EGraph<Term, FuseAnalysis>;

/// Float32 contents of a constant: computed by a fold, or stored in a
/// tensor. Stored contents are read where they lie and never kept decoded:
/// a rule that folds a weight reads it once, and the folded result is the
/// only copy in memory (decoded weights kept beside their folds, and the
/// folds copied again into tensors, made `optimize` peak at four times the
/// size of what it folds).
#[derive(Clone)]
pub enum ConstData {
    Computed(Arc<Vec<f32>>),
    /// The tensor keeps its bytes by reference (into the mapped input).
    Stored(Arc<crate::onnx::proto::TensorProto>, usize),
}

impl ConstData {
    pub fn new(values: Vec<f32>) -> ConstData {
        ConstData::Computed(Arc::new(values))
    }

    /// The contents of `t`; `None` where [`crate::ir::constant::decode_f32`]
    /// would give none (not float32 in memory, or stored data that does not
    /// match the dims). The tensor is kept by reference to its bytes, not
    /// copied.
    pub fn of_tensor(t: &crate::onnx::proto::TensorProto) -> Option<ConstData> {
        use crate::onnx::proto::tensor_proto::DataLocation;
        if t.data_type() != 1 || t.data_location() == DataLocation::EXTERNAL {
            return None;
        }
        let len = usize::try_from(crate::ir::constant::tensor_type(t).num_elements()?).ok()?;
        let stored = match t.raw_data.as_deref().filter(|r| !r.is_empty()) {
            Some(r) if r.len() % 4 == 0 => r.len() / 4,
            Some(_) => return None,
            None => t.float_data.len(),
        };
        (stored == len).then(|| ConstData::Stored(Arc::new(t.clone()), len))
    }

    pub fn len(&self) -> usize {
        match self {
            ConstData::Computed(v) => v.len(),
            ConstData::Stored(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values: borrowed where they already lie as f32 in memory
    /// (computed, `float_data`, or little-endian raw bytes at an aligned
    /// address), otherwise decoded into a copy that the caller drops.
    pub fn values(&self) -> Cow<'_, [f32]> {
        let tensor = match self {
            ConstData::Computed(v) => return Cow::Borrowed(v),
            ConstData::Stored(t, _) => t,
        };
        let Some(raw) = tensor.raw_data.as_deref().filter(|r| !r.is_empty()) else {
            return Cow::Borrowed(&tensor.float_data);
        };
        if cfg!(target_endian = "little")
            && let Ok(values) = bytemuck::try_cast_slice::<u8, f32>(raw)
        {
            return Cow::Borrowed(values);
        }
        Cow::Owned(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// The contents as little-endian bytes for a tensor's `raw_data`,
    /// shared with this constant rather than copied where its memory
    /// already has that layout.
    pub fn to_le_bytes(&self) -> bytes::Bytes {
        match self {
            ConstData::Computed(v) if cfg!(target_endian = "little") => bytes::Bytes::from_owner(LeBytes(v.clone())),
            ConstData::Stored(t, _) if t.raw_data.as_deref().is_some_and(|r| !r.is_empty()) => {
                t.raw_data.clone().unwrap_or_default()
            }
            _ => self.values().iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Computed values seen as their bytes, which on a little-endian target are
/// a tensor's raw_data as they lie.
struct LeBytes(Arc<Vec<f32>>);

impl AsRef<[u8]> for LeBytes {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(self.0.as_slice())
    }
}

impl std::fmt::Debug for ConstData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConstData({} values)", self.len())
    }
}

impl PartialEq for ConstData {
    fn eq(&self, other: &ConstData) -> bool {
        let same = match (self, other) {
            (ConstData::Computed(a), ConstData::Computed(b)) => Arc::ptr_eq(a, b),
            (ConstData::Stored(a, _), ConstData::Stored(b, _)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same || (self.len() == other.len() && self.values() == other.values())
    }
}

#[derive(Debug, Default)]
pub struct FuseAnalysis {
    pub opset: i64,
    /// Facts of `%name` and `#name` leaves.
    pub leaves: HashMap<String, Facts>,
    /// `#name`s made by folding (written back as new initializers).
    pub folded_count: usize,
    /// Symbol values e-nodes are costed at.
    pub dims: DimValues,
}

impl FuseAnalysis {
    pub fn new(opset: i64, dims: DimValues) -> Self {
        FuseAnalysis {
            opset,
            dims,
            ..Default::default()
        }
    }
}

/// Prefix of the names of constants the engine folds.
pub const FOLDED_PREFIX: &str = "~folded";

impl Analysis<Term> for FuseAnalysis {
    type Data = Facts;

    fn make(egraph: &mut FuseGraph, enode: &Term, _id: Id) -> Facts {
        let child = |i: usize| &egraph[enode.children[i]].data;
        match enode.kind() {
            Kind::Input(_) | Kind::Const(_) => {
                let key = &enode.op[1..];
                egraph.analysis.leaves.get(key).cloned().unwrap_or_default()
            }
            Kind::Bundle(text) => Facts {
                attrs: Attrs::parse(text).map(Arc::new),
                ..Default::default()
            },
            Kind::Literal(text) => literal_facts(text),
            Kind::AttrHelper => {
                let name = egraph[enode.children[1]].nodes.first().map(|n| n.op.clone());
                let value = child(0)
                    .attrs
                    .as_ref()
                    .zip(name)
                    .and_then(|(a, n)| a.get(&n).and_then(AttrValue::as_f32));
                value.map(scalar_facts).unwrap_or_default()
            }
            Kind::Absent => Facts {
                absent: true,
                ..Default::default()
            },
            Kind::Word(_) => Facts::default(),
            Kind::Op(op) => {
                let (inputs, bundle) = enode.children.split_at(enode.children.len().saturating_sub(1));
                let attrs = bundle.first().and_then(|&b| egraph[b].data.attrs.clone());
                // Without a bundle it is no op node; extraction never picks it.
                let Some(attrs) = attrs else {
                    return Facts::default();
                };
                let facts: Vec<Facts> = inputs.iter().map(|&c| egraph[c].data.clone()).collect();
                op_facts(op, &attrs, &facts, egraph.analysis.opset)
            }
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let mut changed = DidMerge(false, false);
        macro_rules! take {
            ($f:ident) => {
                match (a.$f.is_some(), b.$f.is_some()) {
                    (false, true) => {
                        a.$f = b.$f;
                        changed.0 = true;
                    }
                    (true, false) => changed.1 = true,
                    _ => {}
                }
            };
        }
        take!(ty);
        take!(folded);
        take!(data);
        take!(attrs);
        if a.constant != b.constant {
            changed = DidMerge(changed.0 || !a.constant, changed.1 || a.constant);
            a.constant = true;
        }
        changed
    }

    /// A class with known float contents gets a constant leaf, which the
    /// extractor prefers to computing it (this is constant folding).
    fn modify(egraph: &mut FuseGraph, id: Id) {
        let facts = egraph[id].data.clone();
        if facts.data.is_none() || !facts.constant {
            return;
        }
        let has_leaf = egraph[id]
            .nodes
            .iter()
            .any(|n| matches!(n.kind(), Kind::Const(_) | Kind::Literal(_)));
        if has_leaf {
            return;
        }
        let name = format!("{FOLDED_PREFIX}{}", egraph.analysis.folded_count);
        egraph.analysis.folded_count += 1;
        egraph.analysis.leaves.insert(name.clone(), facts);
        let leaf = egraph.add(Term::leaf(&format!("#{name}")));
        egraph.union(id, leaf);
    }
}

fn scalar_facts(v: f32) -> Facts {
    Facts {
        ty: Some(TensorType::known_dims(ElemType::FLOAT, &[])),
        folded: Some(Folded::Floats(vec![v as f64])),
        constant: true,
        data: Some(ConstData::new(vec![v])),
        ..Default::default()
    }
}

fn literal_facts(text: &str) -> Facts {
    match Literal::parse(text) {
        Some(Literal::Ints { dims, values }) => Facts {
            ty: Some(TensorType::known_dims(ElemType::INT64, &dims)),
            folded: Some(Folded::Ints(values.into_iter().map(Dim::Known).collect())),
            constant: true,
            ..Default::default()
        },
        Some(Literal::Floats { dims, values }) => Facts {
            ty: Some(TensorType::known_dims(ElemType::FLOAT, &dims)),
            folded: Some(Folded::Floats(values.iter().map(|&v| v as f64).collect())),
            constant: true,
            data: Some(ConstData::new(values)),
            ..Default::default()
        },
        None => Facts::default(),
    }
}

/// Ops whose output is not a function of their inputs: never merged, never
/// folded, never lifted.
pub fn is_random(op: &str) -> bool {
    op.starts_with("Random") || matches!(op, "Multinomial" | "Bernoulli")
}

/// A throwaway IR node in the opset's form, for the shape and cost rules.
/// Inputs are `ValueId(0..n)`, the list input (if any) `ValueId(n)`, and the
/// output `ValueId(n + 1)`.
pub fn ir_node(op: &str, attrs: &Attrs, inputs: usize, present: &[bool], opset: i64) -> (Node, Option<Vec<i64>>) {
    let form = onnx_form(op, attrs, opset);
    let mut ins: Vec<Option<ValueId>> = (0..inputs).map(|i| present[i].then_some(ValueId(i))).collect();
    if form.list_input.is_some() {
        ins.push(Some(ValueId(inputs)));
    }
    let node = Node {
        name: String::new(),
        op_type: op.to_string(),
        domain: String::new(),
        inputs: ins,
        outputs: vec![Some(ValueId(inputs + 1))],
        attributes: form.attributes,
        subgraphs: Vec::new(),
        implicit_inputs: Vec::new(),
    };
    (node, form.list_input)
}

/// Type, small contents and validity of one op node, by the shape rules.
pub struct NodeType {
    pub ty: Option<TensorType>,
    pub folded: Option<Folded>,
    pub invalid: bool,
}

pub fn infer_node(op: &str, attrs: &Attrs, inputs: &[&Facts], opset: i64) -> NodeType {
    let present: Vec<bool> = inputs.iter().map(|f| !f.absent).collect();
    let (node, list) = ir_node(op, attrs, inputs.len(), &present, opset);
    let list_ty = list
        .as_ref()
        .map(|v| TensorType::known_dims(ElemType::INT64, &[v.len() as i64]));
    let list_folded = list.map(|v| Folded::Ints(v.into_iter().map(Dim::Known).collect()));
    let mut types: Vec<Option<&TensorType>> = inputs.iter().map(|f| f.ty.as_ref()).collect();
    // Only integer contents go to the shape rules (shape arithmetic); float
    // contents are folded by `fold_f32`, once, in f32.
    let mut folded: Vec<Option<&Folded>> = inputs
        .iter()
        .map(|f| f.folded.as_ref().filter(|c| matches!(c, Folded::Ints(_))))
        .collect();
    if list_ty.is_some() {
        types.push(list_ty.as_ref());
        folded.push(list_folded.as_ref());
    }
    let ctx = OpContext {
        node: &node,
        opset,
        inputs: types,
        folded,
        // E-classes have no value names: a data-dependent size stays unknown.
        names: Vec::new(),
    };
    match infer_op(&ctx) {
        Ok(mut outs) if !outs.is_empty() => {
            let first = outs.swap_remove(0);
            NodeType {
                ty: first.ty,
                folded: first.folded,
                invalid: false,
            }
        }
        Err(crate::analysis::shapes::RuleError::Invalid(_)) => NodeType {
            ty: None,
            folded: None,
            invalid: true,
        },
        _ => NodeType {
            ty: None,
            folded: None,
            invalid: false,
        },
    }
}

fn op_facts(op: &str, attrs: &Attrs, inputs: &[Facts], opset: i64) -> Facts {
    let refs: Vec<&Facts> = inputs.iter().collect();
    let inferred = infer_node(op, attrs, &refs, opset);
    let operands: Vec<&Facts> = inputs.iter().filter(|f| !f.absent).collect();
    let constant = !is_random(op) && operands.iter().all(|f| f.constant);
    let data = if constant && operands.iter().all(|f| f.data.is_some() || is_shape_operand(f)) {
        fold_f32(op, attrs, inputs, inferred.ty.as_ref())
    } else {
        None
    };
    let folded = inferred.folded.or_else(|| {
        data.as_ref()
            .filter(|d| d.len() as u64 <= crate::ir::constant::MAX_FOLDED_ELEMENTS)
            .map(|d| Folded::Floats(d.values().iter().map(|&v| v as f64).collect()))
    });
    Facts {
        ty: inferred.ty,
        folded,
        constant,
        data,
        attrs: None,
        absent: false,
    }
}

/// An int64 operand such as a Reshape target: known, but not float data.
fn is_shape_operand(f: &Facts) -> bool {
    f.ty.as_ref().is_some_and(|t| t.elem == ElemType::INT64) && f.ints().is_some()
}

/// Float32 contents of `op` applied to constant operands, where we have a
/// kernel and the result is no bigger than its inputs.
fn fold_f32(op: &str, attrs: &Attrs, inputs: &[Facts], out: Option<&TensorType>) -> Option<ConstData> {
    let out = out?;
    if out.elem != ElemType::FLOAT {
        return None;
    }
    let out_dims: Vec<i64> = out.shape.as_ref()?.iter().map(Dim::known).collect::<Option<_>>()?;
    let out_len = out.num_elements()?;
    let largest = inputs
        .iter()
        .filter_map(|f| f.data.as_ref().map(|d| d.len() as u64))
        .max()?;
    if out_len > largest.max(1) || out_len > MAX_FOLD_ELEMENTS {
        return None;
    }
    let data = |i: usize| inputs.get(i).and_then(|f| f.data.clone());
    let unary = |f: fn(f32) -> f32| data(0).map(|d| ConstData::new(d.values().iter().map(|&v| f(v)).collect()));
    match op {
        "Add" | "Sub" | "Mul" | "Div" => {
            let f: fn(f32, f32) -> f32 = match op {
                "Add" => |a, b| a + b,
                "Sub" => |a, b| a - b,
                "Mul" => |a, b| a * b,
                _ => |a, b| a / b,
            };
            let (a, b) = (data(0)?, data(1)?);
            let (ad, bd) = (inputs[0].static_dims()?, inputs[1].static_dims()?);
            broadcast(&a.values(), &ad, &b.values(), &bd, &out_dims, f).map(ConstData::new)
        }
        "Neg" => unary(|v| -v),
        "Reciprocal" => unary(|v| 1.0 / v),
        "Sqrt" => unary(f32::sqrt),
        "Log" => unary(f32::ln),
        "Exp" => unary(f32::exp),
        // Same elements, new shape.
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" => data(0),
        "Transpose" => {
            let dims = inputs[0].static_dims()?;
            let perm: Vec<usize> = match attrs.ints("perm") {
                Some(p) => p.iter().map(|&a| usize::try_from(a).ok()).collect::<Option<_>>()?,
                None => (0..dims.len()).rev().collect(),
            };
            transpose(&data(0)?.values(), &dims, &perm).map(ConstData::new)
        }
        _ => None,
    }
}

fn strides(dims: &[i64]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1] as usize;
    }
    s
}

/// Numpy-style broadcast of a binary op. Walks the output with an odometer
/// (one stride step per element, no division), with the common cases of
/// equal shapes and a scalar operand done as plain maps.
fn broadcast(a: &[f32], ad: &[i64], b: &[f32], bd: &[i64], out: &[i64], f: fn(f32, f32) -> f32) -> Option<Vec<f32>> {
    let n: usize = out.iter().map(|&d| d as usize).product();
    if a.len() == n && b.len() == n && ad == bd {
        return Some(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect());
    }
    if b.len() == 1 && a.len() == n {
        return Some(a.iter().map(|&x| f(x, b[0])).collect());
    }
    if a.len() == 1 && b.len() == n {
        return Some(b.iter().map(|&y| f(a[0], y)).collect());
    }
    let r = out.len();
    let pad = |d: &[i64]| -> Vec<i64> { std::iter::repeat_n(1, r - d.len()).chain(d.iter().copied()).collect() };
    let (ap, bp) = (pad(ad), pad(bd));
    // Strides into each operand; 0 along a broadcast axis.
    let step = |dims: &[i64]| -> Vec<usize> {
        let full = strides(dims);
        (0..r).map(|k| if dims[k] == 1 { 0 } else { full[k] }).collect()
    };
    let (sa, sb) = (step(&ap), step(&bp));
    let mut index = vec![0usize; r];
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut result = Vec::with_capacity(n);
    for _ in 0..n {
        result.push(f(*a.get(ia)?, *b.get(ib)?));
        // Advance the odometer from the last axis.
        for k in (0..r).rev() {
            index[k] += 1;
            ia += sa[k];
            ib += sb[k];
            if index[k] < out[k] as usize {
                break;
            }
            ia -= sa[k] * index[k];
            ib -= sb[k] * index[k];
            index[k] = 0;
        }
    }
    Some(result)
}

fn transpose(x: &[f32], dims: &[i64], perm: &[usize]) -> Option<Vec<f32>> {
    if perm.len() != dims.len() {
        return None;
    }
    let out_dims: Vec<i64> = perm.iter().map(|&p| dims.get(p).copied()).collect::<Option<_>>()?;
    let (si, so) = (strides(dims), strides(&out_dims));
    let n = x.len();
    let mut result = vec![0f32; n];
    for (flat, slot) in result.iter_mut().enumerate() {
        let mut src = 0;
        for k in 0..perm.len() {
            let idx = (flat / so[k]) % out_dims[k] as usize;
            src += idx * si[perm[k]];
        }
        *slot = *x.get(src)?;
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        // [2,3] * [3] and [2,1] - [3]
        let a = [1., 2., 3., 4., 5., 6.];
        let m = broadcast(&a, &[2, 3], &[10., 20., 30.], &[3], &[2, 3], |x, y| x * y).unwrap();
        assert_eq!(m, vec![10., 40., 90., 40., 100., 180.]);
        let s = broadcast(&[1., 2.], &[2, 1], &[1., 2., 3.], &[3], &[2, 3], |x, y| x - y).unwrap();
        assert_eq!(s, vec![0., -1., -2., 1., 0., -1.]);
        // A per-channel scale on a 4-D weight, as BatchNormalization folding does.
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let scaled = broadcast(
            &w,
            &[3, 2, 2, 1],
            &[1., 10., 100.],
            &[3, 1, 1, 1],
            &[3, 2, 2, 1],
            |x, y| x * y,
        )
        .unwrap();
        assert_eq!(
            scaled,
            vec![0., 1., 2., 3., 40., 50., 60., 70., 800., 900., 1000., 1100.]
        );
        assert_eq!(broadcast(&w, &[12], &[2.], &[], &[12], |x, y| x / y).unwrap()[11], 5.5);
    }

    #[test]
    fn transpose_permutes_axes() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(transpose(&x, &[2, 3], &[1, 0]).unwrap(), vec![0., 3., 1., 4., 2., 5.]);
    }
}
