//! The contents of a value computed from stored tensors alone, by the ops
//! exporters put between a weight and its reader: `Identity` (the alias
//! torch.onnx writes for weights equal to an earlier one), `Reshape`,
//! `Squeeze`, `Unsqueeze`, `Flatten`, `Transpose` and `Cast` between float
//! types, and integer tensors that shape inference folded. Unlike [`super::constant`], which decodes small tensors for the
//! analyses, this reads weights at full size, so it runs only where an
//! emitter needs the bytes (`--mode loop` stacking each layer's weights).

use std::collections::HashMap;
use std::path::Path;

use super::ValueId;
use super::graph::Graph;
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::TensorProto;
use crate::onnx::tensor_data::le_bytes;

/// Where stored tensors are found: initializers by name (insert-exits keeps
/// the large ones aside while it works) and the folder of external data.
pub struct StoredTensors<'a> {
    pub initializers: HashMap<&'a str, &'a TensorProto>,
    pub base_dir: &'a Path,
}

/// Evaluates `v` to a tensor (little-endian raw data, named as the value),
/// or says which node keeps it from being known at load time.
pub fn evaluate(graph: &Graph, v: ValueId, stored: &StoredTensors) -> Result<TensorProto, String> {
    Ok(named_tensor(graph, v, eval(graph, v, stored)?))
}

/// `raw` as a tensor named as `v`.
fn named_tensor(graph: &Graph, v: ValueId, (elem, dims, bytes): Raw) -> TensorProto {
    let mut t = TensorProto::new();
    t.set_name(graph.value(v).name.clone());
    t.set_data_type(elem.0);
    t.dims = dims;
    t.set_raw_data(bytes.into());
    t
}

type Raw = (ElemType, Vec<i64>, Vec<u8>);

fn eval(graph: &Graph, v: ValueId, stored: &StoredTensors) -> Result<Raw, String> {
    let name = &graph.value(v).name;
    let raw = |t: &TensorProto| -> Result<Raw, String> {
        Ok((ElemType(t.data_type()), t.dims.clone(), le_bytes(t, stored.base_dir)?))
    };
    if let Some(t) = stored.initializers.get(name.as_str()) {
        return raw(t);
    }
    if let Some(known) = folded_ints(graph, v) {
        return Ok(known);
    }
    let Some(p) = graph.producer(v) else {
        return Err(format!("'{name}' is neither stored nor computed"));
    };
    let node = graph.node(p);
    let input = |i: usize| -> Result<Raw, String> {
        let x = node.inputs.get(i).copied().flatten();
        let x = x.ok_or_else(|| format!("{} has no input {i}", graph.node_label(p)))?;
        eval(graph, x, stored)
    };
    let not_evaluated = || {
        format!(
            "'{name}' is computed by {}, which eexc does not evaluate at load time (it does Identity, Reshape, Squeeze, Unsqueeze, Flatten, Transpose and float Casts of stored tensors, and integer shape arithmetic that folds)",
            graph.node_label(p)
        )
    };
    if !node.is_onnx_domain() {
        return Err(not_evaluated());
    }
    match node.op_type.as_str() {
        "Constant" => match node.attr("value").and_then(|a| a.t.as_ref()) {
            Some(t) => raw(t),
            None => Err(not_evaluated()),
        },
        "Identity" => input(0),
        // Same bytes, new dims: the inferred type has them.
        "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten" => {
            let (elem, _, bytes) = input(0)?;
            let dims = graph
                .value(v)
                .ty
                .as_ref()
                .and_then(|t| t.shape.as_ref())
                .and_then(|s| s.iter().map(super::Dim::known).collect::<Option<Vec<i64>>>())
                .ok_or_else(|| format!("'{name}' ({}) has no known shape", graph.node_label(p)))?;
            Ok((elem, dims, bytes))
        }
        "Transpose" => {
            let (elem, dims, bytes) = input(0)?;
            let rank = dims.len();
            let perm: Vec<usize> = match node.attr_ints("perm") {
                Some(p) => p.iter().map(|&a| usize::try_from(a).unwrap_or(usize::MAX)).collect(),
                None => (0..rank).rev().collect(),
            };
            let mut seen = vec![false; rank];
            if perm.len() != rank || perm.iter().any(|&a| a >= rank || std::mem::replace(&mut seen[a], true)) {
                return Err(format!(
                    "{}: perm is not a permutation of {rank} axes",
                    graph.node_label(p)
                ));
            }
            let size = elem
                .bytes_for(1)
                .filter(|_| elem.bits().is_some_and(|b| b % 8 == 0))
                .ok_or_else(|| format!("{}: cannot transpose {} elements", graph.node_label(p), elem.name()))?;
            let out = transpose(&bytes, &dims, &perm, size as usize);
            Ok((elem, perm.iter().map(|&a| dims[a]).collect(), out))
        }
        "Cast" => {
            let (from, dims, bytes) = input(0)?;
            let to = ElemType(node.attr_int("to").unwrap_or(0) as i32);
            Ok((to, dims, cast(&bytes, from, to).ok_or_else(not_evaluated)?))
        }
        _ => Err(not_evaluated()),
    }
}

/// `v` as a tensor when shape inference folded every element of it to a
/// number: a size the model fixes (its hidden width, a head count) however
/// the model computes it, from constants or from a `Shape`.
pub fn folded_tensor(graph: &Graph, v: ValueId) -> Option<TensorProto> {
    Some(named_tensor(graph, v, folded_ints(graph, v)?))
}

/// An integer tensor whose every element shape inference folded (exporters'
/// shape arithmetic: `Mod`, `Div`, `Concat` of `Constant`s in each layer of
/// an attention block), encoded as its type says.
fn folded_ints(graph: &Graph, v: ValueId) -> Option<Raw> {
    let value = graph.value(v);
    let ints = value.folded.as_ref()?.known_ints()?;
    let ty = value.ty.as_ref()?;
    let dims: Vec<i64> = ty
        .shape
        .as_ref()?
        .iter()
        .map(super::Dim::known)
        .collect::<Option<_>>()?;
    // A declared size can be anything a file says: count without overflow.
    if dims.iter().try_fold(1i64, |n, &d| n.checked_mul(d))? != i64::try_from(ints.len()).ok()? {
        return None;
    }
    let bytes = match ty.elem {
        ElemType::INT64 => ints.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ElemType::INT32 => ints
            .iter()
            .map(|&x| i32::try_from(x).ok().map(i32::to_le_bytes))
            .collect::<Option<Vec<_>>>()?
            .concat(),
        _ => return None,
    };
    Some((ty.elem, dims, bytes))
}

/// Row-major `bytes` of shape `dims`, axes reordered so output axis i is
/// input axis `perm[i]`; `size` bytes per element.
fn transpose(bytes: &[u8], dims: &[i64], perm: &[usize], size: usize) -> Vec<u8> {
    let dims: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    let rank = dims.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
    let count: usize = dims.iter().product();
    let mut out = Vec::with_capacity(count * size);
    let mut index = vec![0usize; rank];
    for _ in 0..count {
        let at: usize = (0..rank).map(|i| index[i] * strides[perm[i]]).sum();
        out.extend_from_slice(&bytes[at * size..(at + 1) * size]);
        for i in (0..rank).rev() {
            index[i] += 1;
            if index[i] < out_dims[i] {
                break;
            }
            index[i] = 0;
        }
    }
    out
}

/// A cast between float types (float, float16, bfloat16, double), or to the
/// same type; `None` for others.
fn cast(bytes: &[u8], from: ElemType, to: ElemType) -> Option<Vec<u8>> {
    if from == to {
        return Some(bytes.to_vec());
    }
    let values: Vec<f64> = match from.0 {
        1 => bytes
            .chunks_exact(4)
            .map(|c| Some(f64::from(f32::from_le_bytes(c.try_into().ok()?))))
            .collect::<Option<_>>()?,
        10 => bytes
            .chunks_exact(2)
            .map(|c| Some(half::f16::from_le_bytes(c.try_into().ok()?).to_f64()))
            .collect::<Option<_>>()?,
        16 => bytes
            .chunks_exact(2)
            .map(|c| Some(half::bf16::from_le_bytes(c.try_into().ok()?).to_f64()))
            .collect::<Option<_>>()?,
        11 => bytes
            .chunks_exact(8)
            .map(|c| Some(f64::from_le_bytes(c.try_into().ok()?)))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    Some(match to.0 {
        1 => values.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        10 => values
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
            .collect(),
        16 => values
            .iter()
            .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
            .collect(),
        11 => values.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element_to_its_permuted_place() {
        // A 2×3 matrix of u16 becomes its 3×2 transpose.
        let m: Vec<u8> = (0u16..6).flat_map(u16::to_le_bytes).collect();
        let t = transpose(&m, &[2, 3], &[1, 0], 2);
        let t: Vec<u16> = t.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(t, [0, 3, 1, 4, 2, 5]);
        // 3-D: [2,1,2] with perm [2,0,1] gives [2,2,1]; element (a,b,c) goes to (c,a,b).
        let m: Vec<u8> = (0u8..4).collect();
        assert_eq!(transpose(&m, &[2, 1, 2], &[2, 0, 1], 1), [0, 2, 1, 3]);
    }

    #[test]
    fn float_casts_round_trip_and_others_are_refused() {
        let x: Vec<u8> = [1.5f32, -2.0, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let h = cast(&x, ElemType(1), ElemType(10)).unwrap();
        assert_eq!(h.len(), 6);
        assert_eq!(cast(&h, ElemType(10), ElemType(1)).unwrap(), x);
        assert_eq!(cast(&x, ElemType(1), ElemType(1)).unwrap(), x);
        assert!(cast(&x, ElemType(1), ElemType(7)).is_none());
    }
}
