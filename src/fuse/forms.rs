//! ONNX node ⇄ canonical e-node form.
//!
//! Canonical: axes and TopK's k always in the bundle; axis attributes explicit
//! and non-negative where the input rank is known; attributes equal to their
//! default dropped. Write-back turns the canonical form into the node the
//! model's opset expects.

use super::lang::{AttrValue, Attrs, liftable_string};
use crate::onnx::proto::{AttributeProto, NodeProto, attribute_proto::AttributeType};
use crate::transform::builder::{attr_float, attr_int};

/// Opset from which an op reads its axes (or TopK its k) from input 1.
fn list_input_since(op: &str) -> Option<i64> {
    match op {
        "ReduceSum" | "Squeeze" | "Unsqueeze" => Some(13),
        "ReduceMax" | "ReduceMin" | "ReduceMean" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum"
        | "ReduceLogSumExp" | "ReduceSumSquare" => Some(18),
        "TopK" => Some(10),
        _ => None,
    }
}

fn list_attr(op: &str) -> &'static str {
    if op == "TopK" { "k" } else { "axes" }
}

/// Attributes whose value here is the op's default, so dropping them changes
/// nothing (axis attributes are kept explicit instead, see [`axis_default`]).
fn is_default(op: &str, name: &str, v: &AttrValue) -> bool {
    let one = |v: &AttrValue| v.as_f32() == Some(1.0);
    match (op, name) {
        ("Gemm", "alpha" | "beta") => one(v),
        ("Gemm", "transA" | "transB") => v.as_int() == Some(0),
        (_, "keepdims") if op.starts_with("Reduce") || op == "ArgMax" || op == "ArgMin" => v.as_int() == Some(1),
        ("TopK", "largest" | "sorted") => v.as_int() == Some(1),
        ("ArgMax" | "ArgMin", "select_last_index") => v.as_int() == Some(0),
        _ => false,
    }
}

/// Default `axis` of ops whose rules compare axes, by opset.
fn axis_default(op: &str, opset: i64) -> Option<i64> {
    match op {
        "Softmax" | "LogSoftmax" | "Hardmax" => Some(if opset >= 13 { -1 } else { 1 }),
        "ArgMax" | "ArgMin" | "Gather" => Some(0),
        "TopK" => Some(-1),
        "Flatten" => Some(1),
        _ => None,
    }
}

/// A node in canonical form: op, bundle and data inputs (`None` = omitted).
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub op: String,
    pub attrs: Attrs,
    pub inputs: Vec<Option<String>>,
}

/// The canonical form of `node`, or `None` when it cannot be lifted (an
/// attribute type or value the bundle cannot hold, non-constant axes).
pub fn canonical(
    node: &NodeProto,
    opset: i64,
    input_rank: &dyn Fn(&str) -> Option<usize>,
    const_ints: &dyn Fn(&str) -> Option<Vec<i64>>,
) -> Option<Canonical> {
    let op = node.op_type().to_string();
    let mut attrs = Attrs::default();
    for a in &node.attribute {
        let v = match a.type_() {
            AttributeType::INT => AttrValue::Int(a.i()),
            AttributeType::FLOAT => AttrValue::Float(a.f()),
            AttributeType::INTS if !a.ints.is_empty() => AttrValue::Ints(a.ints.clone()),
            AttributeType::FLOATS if !a.floats.is_empty() => AttrValue::Floats(a.floats.clone()),
            AttributeType::STRING => {
                let s = String::from_utf8(a.s().to_vec()).ok()?;
                if !liftable_string(&s) {
                    return None;
                }
                AttrValue::Str(s)
            }
            _ => return None,
        };
        if !is_default(&op, a.name(), &v) {
            attrs.set(a.name(), v);
        }
    }
    let mut inputs: Vec<Option<String>> = node.input.iter().map(|s| (!s.is_empty()).then(|| s.clone())).collect();
    if let Some(since) = list_input_since(&op)
        && opset >= since
        && inputs.len() > 1
    {
        if let Some(name) = inputs.remove(1) {
            let values = const_ints(&name)?;
            let v = if op == "TopK" {
                AttrValue::Int(*values.first()?)
            } else {
                AttrValue::Ints(values)
            };
            attrs.set(list_attr(&op), v);
        }
        inputs.truncate(1);
    }
    while inputs.last().is_some_and(Option::is_none) {
        inputs.pop();
    }
    let rank = inputs.first().cloned().flatten().and_then(|x| input_rank(&x));
    normalize_axes(&op, &mut attrs, opset, rank);
    if op == "BatchNormalization" && attrs.get("epsilon").is_none() {
        attrs.set("epsilon", AttrValue::Float(1e-5));
    }
    Some(Canonical { op, attrs, inputs })
}

fn normalize_axes(op: &str, attrs: &mut Attrs, opset: i64, rank: Option<usize>) {
    if let Some(default) = axis_default(op, opset) {
        let axis = attrs.int("axis").unwrap_or(default);
        // Flatten's axis may equal the rank; the others index a dimension.
        let axis = match rank {
            Some(r) if axis < 0 => axis + r as i64,
            _ => axis,
        };
        attrs.set("axis", AttrValue::Int(axis));
    }
    let is_axes_op = op.starts_with("Reduce") || op == "Squeeze" || op == "Unsqueeze";
    if let (true, Some(AttrValue::Ints(axes))) = (is_axes_op, attrs.get("axes").cloned()) {
        // Unsqueeze's axes index the output.
        let r = rank.map(|r| if op == "Unsqueeze" { r + axes.len() } else { r });
        if let Some(r) = r {
            let mut fixed: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + r as i64 } else { a }).collect();
            fixed.sort_unstable();
            attrs.set("axes", AttrValue::Ints(fixed));
        }
    }
}

/// How a canonical node is written in `opset`: its attributes, and the int64
/// values to pass as input 1 where this opset wants axes or k as an input.
pub struct OnnxForm {
    pub attributes: Vec<AttributeProto>,
    pub list_input: Option<Vec<i64>>,
}

pub fn onnx_form(op: &str, attrs: &Attrs, opset: i64) -> OnnxForm {
    let mut attrs = attrs.clone();
    let mut list_input = None;
    if let Some(since) = list_input_since(op)
        && opset >= since
    {
        list_input = match attrs.remove(list_attr(op)) {
            Some(AttrValue::Int(k)) => Some(vec![k]),
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        };
    }
    let attributes = attrs
        .0
        .iter()
        .map(|(name, v)| match v {
            AttrValue::Int(i) => attr_int(name, *i),
            AttrValue::Float(f) => attr_float(name, *f),
            AttrValue::Ints(v) => crate::transform::builder::attr_ints(name, v),
            AttrValue::Floats(v) => {
                let mut a = AttributeProto::new();
                a.set_name(name.clone());
                a.set_type(AttributeType::FLOATS);
                a.floats = v.clone();
                a
            }
            AttrValue::Str(s) => {
                let mut a = AttributeProto::new();
                a.set_name(name.clone());
                a.set_type(AttributeType::STRING);
                a.set_s(s.as_bytes().to_vec().into());
                a
            }
        })
        .collect();
    OnnxForm { attributes, list_input }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::builder::attr_ints;

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec!["y".into()];
        n.attribute = attrs;
        n
    }

    fn lift(n: &NodeProto, opset: i64) -> Option<Canonical> {
        canonical(n, opset, &|_| Some(2), &|name| (name == "axes").then(|| vec![-1]))
    }

    #[test]
    fn axes_move_into_the_bundle_whatever_the_opset_form() {
        let new = lift(&node("ReduceMax", &["x", "axes"], vec![attr_int("keepdims", 0)]), 18).unwrap();
        let old = lift(
            &node(
                "ReduceMax",
                &["x"],
                vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
            ),
            13,
        )
        .unwrap();
        assert_eq!(new, old);
        assert_eq!(new.attrs.encode(), "{axes=[1],keepdims=0}");
        assert_eq!(new.inputs, vec![Some("x".to_string())]);
        let back = onnx_form("ReduceMax", &new.attrs, 18);
        assert_eq!(back.list_input, Some(vec![1]));
        assert_eq!(onnx_form("ReduceMax", &new.attrs, 13).list_input, None);
    }

    #[test]
    fn defaults_drop_and_axes_become_explicit() {
        let gemm = lift(
            &node(
                "Gemm",
                &["a", "b", "c"],
                vec![attr_float("alpha", 1.0), attr_int("transB", 1)],
            ),
            13,
        );
        assert_eq!(gemm.unwrap().attrs.encode(), "{transB=1}");
        assert_eq!(
            lift(&node("Softmax", &["z"], vec![]), 13).unwrap().attrs.encode(),
            "{axis=1}"
        );
        assert_eq!(
            lift(&node("Softmax", &["z"], vec![]), 11).unwrap().attrs.encode(),
            "{axis=1}"
        );
        // A non-constant axes input cannot be lifted.
        assert_eq!(lift(&node("ReduceSum", &["x", "live"], vec![]), 13), None);
    }
}
