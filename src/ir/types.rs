//! Value types: element type plus a shape whose dimensions may be symbolic.

use crate::onnx::dtype::ElemType;
use crate::onnx::proto::{TypeProto, tensor_shape_proto, type_proto};

/// One dimension: a number, a named symbol such as `batch`, a product of
/// symbols and a number such as `197*batch`, or unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    Sym(String),
    /// What exporters write for attention: a Reshape to `[batch*seq, d]`
    /// from `Shape`, `Gather` and `Mul` of the input's dims.
    Product(DimProduct),
    Unknown,
}

/// `coeff` times the symbols, e.g. `197*batch` or `batch*seq`. Kept in one
/// form: symbols sorted, at least one of them, a coefficient that is
/// neither 0 nor, with a lone symbol, 1 (those are `Known(0)` and `Sym`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DimProduct {
    pub coeff: i64,
    pub syms: Vec<String>,
}

impl DimProduct {
    /// `coeff` times `syms` as one dimension, in the one form.
    pub fn dim(coeff: i64, mut syms: Vec<String>) -> Dim {
        syms.sort();
        match (coeff, syms.as_slice()) {
            (0, _) | (_, []) => Dim::Known(coeff),
            (1, [s]) => Dim::Sym(s.clone()),
            _ => Dim::Product(DimProduct { coeff, syms }),
        }
    }
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Product(p) => {
                let mut parts: Vec<String> = (p.coeff != 1).then(|| p.coeff.to_string()).into_iter().collect();
                parts.extend(p.syms.iter().cloned());
                f.write_str(&parts.join("*"))
            }
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A tensor type. `shape: None` means the rank itself is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    pub elem: ElemType,
    pub shape: Option<Vec<Dim>>,
}

impl TensorType {
    pub fn new(elem: ElemType, shape: Vec<Dim>) -> Self {
        TensorType {
            elem,
            shape: Some(shape),
        }
    }

    pub fn known_dims(elem: ElemType, dims: &[i64]) -> Self {
        TensorType::new(elem, dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }

    /// Element count when every dimension is known.
    pub fn num_elements(&self) -> Option<u64> {
        let shape = self.shape.as_ref()?;
        shape.iter().try_fold(1u64, |acc, d| {
            d.known()
                .and_then(|v| u64::try_from(v).ok())
                .map(|v| acc.saturating_mul(v))
        })
    }

    /// Reads a `TypeProto`; `None` for non-tensor types (sequence, map, ...).
    pub fn from_proto(t: &TypeProto) -> Option<TensorType> {
        let tensor = match t.value.as_ref()? {
            type_proto::Value::TensorType(tt) => tt,
            _ => return None,
        };
        let shape = tensor.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Dim::Known(*v),
                    Some(tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        });
        Some(TensorType {
            elem: ElemType(tensor.elem_type()),
            shape,
        })
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.elem)?;
        match &self.shape {
            None => f.write_str("[...]"),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                write!(f, "[{}]", dims.join(","))
            }
        }
    }
}

/// JSON form: a number, a symbol name, or null for unknown.
impl serde::Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Known(v) => s.serialize_i64(*v),
            Dim::Sym(name) => s.serialize_str(name),
            Dim::Product(_) => s.serialize_str(&self.to_string()),
            Dim::Unknown => s.serialize_none(),
        }
    }
}

/// JSON form: `{"elem": "float", "shape": [1, "batch", null]}` (shape null
/// when the rank is unknown).
impl serde::Serialize for TensorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TensorType", 2)?;
        st.serialize_field("elem", &self.elem.name())?;
        st.serialize_field("shape", &self.shape)?;
        st.end()
    }
}
