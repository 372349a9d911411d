//! Constant values the analyses can see through: small integer tensors (shape
//! arithmetic) and small float tensors, decoded from initializers or Constant
//! nodes. Large weights are described by type only, never decoded.

use super::types::{Dim, TensorType};
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::{TensorProto, tensor_proto};

/// Tensors above this many elements are not decoded: shape arithmetic never
/// needs them, and weights would only cost memory.
pub const MAX_FOLDED_ELEMENTS: u64 = 1 << 16;

/// Float tensors are decoded up to this many elements only: shape and
/// decision arithmetic reads scalars and short vectors, and a convolution's
/// weights (often under the limit above) would be held as f64, twice the
/// size of the file's bytes, for nothing.
pub const MAX_FOLDED_FLOATS: u64 = 1 << 12;

/// Contents of a value known at compile time. Integer elements may be symbolic
/// (`Dim::Sym`) so that `Shape` of a `batch`-sized tensor folds through
/// `Gather`/`Concat`/`Reshape` the way exporters write it.
#[derive(Debug, Clone, PartialEq)]
pub enum Folded {
    Ints(Vec<Dim>),
    Floats(Vec<f64>),
}

impl Folded {
    pub fn len(&self) -> usize {
        match self {
            Folded::Ints(v) => v.len(),
            Folded::Floats(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Integer values when every element is concrete.
    pub fn known_ints(&self) -> Option<Vec<i64>> {
        match self {
            Folded::Ints(v) => v.iter().map(Dim::known).collect(),
            Folded::Floats(v) => v.iter().map(|&f| (f.fract() == 0.0).then_some(f as i64)).collect(),
        }
    }

    pub fn floats(&self) -> Option<Vec<f64>> {
        match self {
            Folded::Floats(v) => Some(v.clone()),
            Folded::Ints(v) => v.iter().map(|d| d.known().map(|i| i as f64)).collect(),
        }
    }
}

/// Type of a stored tensor.
pub fn tensor_type(t: &TensorProto) -> TensorType {
    TensorType::known_dims(ElemType(t.data_type()), &t.dims)
}

/// Decodes a stored tensor if it is small, in memory and of a numeric type we
/// fold; `None` otherwise (the value is still known to be constant).
pub fn decode(t: &TensorProto) -> Option<Folded> {
    let ty = tensor_type(t);
    let n = ty.num_elements()?;
    if n > MAX_FOLDED_ELEMENTS || t.data_location() == tensor_proto::DataLocation::EXTERNAL {
        return None;
    }
    if matches!(ty.elem.0, 1 | 11) && n > MAX_FOLDED_FLOATS {
        return None;
    }
    let n = n as usize;
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let ints = |v: Vec<i64>| (v.len() == n).then(|| Folded::Ints(v.into_iter().map(Dim::Known).collect()));
    let floats = |v: Vec<f64>| (v.len() == n).then_some(Folded::Floats(v));
    match (ty.elem.0, raw) {
        (7, Some(r)) => ints(
            r.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        (7, None) => ints(t.int64_data.clone()),
        (6, Some(r)) => ints(
            r.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
        ),
        // int32, int16, int8, uint16, uint8, bool all live in int32_data.
        (2..=6 | 9, None) => ints(t.int32_data.iter().map(|&v| v as i64).collect()),
        (2 | 9, Some(r)) => ints(r.iter().map(|&b| b as i64).collect()),
        (3, Some(r)) => ints(r.iter().map(|&b| b as i8 as i64).collect()),
        (1, Some(r)) => floats(
            r.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
                .collect(),
        ),
        (1, None) => floats(t.float_data.iter().map(|&v| v as f64).collect()),
        (11, Some(r)) => floats(
            r.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        (11, None) => floats(t.double_data.clone()),
        _ => None,
    }
}

/// All elements of an in-memory float32 tensor, whatever its size (for
/// weights that must be read, such as trained exit heads).
pub fn decode_f32(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type() != 1 || t.data_location() == tensor_proto::DataLocation::EXTERNAL {
        return None;
    }
    let n = tensor_type(t).num_elements()? as usize;
    let data: Vec<f32> = match t.raw_data.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => r
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        None => t.float_data.clone(),
    };
    (data.len() == n).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dtype: i32, dims: &[i64]) -> TensorProto {
        let mut t = TensorProto::new();
        t.set_data_type(dtype);
        t.dims = dims.to_vec();
        t
    }

    #[test]
    fn decodes_raw_and_typed_int64() {
        let mut t = tensor(7, &[2]);
        t.set_raw_data([5i64.to_le_bytes(), (-1i64).to_le_bytes()].concat().into());
        assert_eq!(decode(&t), Some(Folded::Ints(vec![Dim::Known(5), Dim::Known(-1)])));
        let mut t = tensor(7, &[2]);
        t.int64_data = vec![3, 4];
        assert_eq!(decode(&t).unwrap().known_ints(), Some(vec![3, 4]));
    }

    #[test]
    fn element_count_mismatch_is_not_folded() {
        let mut t = tensor(1, &[3]);
        t.float_data = vec![1.0, 2.0];
        assert_eq!(decode(&t), None);
    }

    #[test]
    fn large_tensors_stay_opaque() {
        let t = tensor(1, &[1 << 20]);
        assert_eq!(decode(&t), None);
    }
}
