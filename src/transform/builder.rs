//! Builds ONNX graphs (main graph and nested branches) with fresh names and
//! opset-correct op forms.

use std::cell::RefCell;
use std::rc::Rc;

use crate::ir::NameGenerator;
use crate::ir::{Dim, TensorType};
use crate::onnx::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_shape_proto, type_proto,
};

/// State shared by a main graph and all branches built inside it: names
/// are unique model-wide (ONNX forbids shadowing across scopes) and every
/// constant is collected once, for the main graph (applying the patch then
/// places each in the graph that reads it).
#[derive(Debug)]
struct Shared {
    names: NameGenerator,
    initializers: Vec<TensorProto>,
}

#[derive(Debug, Clone)]
pub struct GraphBuilder {
    shared: Rc<RefCell<Shared>>,
    /// Default-domain opset the emitted ops must be valid in.
    pub opset: i64,
    /// The nodes built, in order: a patch (or a branch's graph) takes them.
    nodes: Vec<NodeProto>,
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.set_name(name.into());
    a.set_type(AttributeType::INT);
    a.set_i(v);
    a
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.set_name(name.into());
    a.set_type(AttributeType::INTS);
    a.ints = v.to_vec();
    a
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.set_name(name.into());
    a.set_type(AttributeType::FLOAT);
    a.set_f(v);
    a
}

pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.set_name(name.into());
    a.set_type(AttributeType::TENSOR);
    a.t = Some(t).into();
    a
}

pub fn attr_graph(name: &str, g: GraphProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.set_name(name.into());
    a.set_type(AttributeType::GRAPH);
    a.g = Some(g).into();
    a
}

/// A tensor of element type `elem` (an ONNX data-type code) whose elements
/// are `raw`, little-endian.
pub fn tensor_raw(name: &str, elem: i32, dims: &[i64], raw: impl Into<bytes::Bytes>) -> TensorProto {
    let mut t = TensorProto::new();
    t.set_name(name.into());
    t.set_data_type(elem);
    t.dims = dims.to_vec();
    t.set_raw_data(raw.into());
    t
}

/// A float32 tensor stored as raw little-endian bytes.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    tensor_raw(
        name,
        1,
        dims,
        data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
}

pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    tensor_raw(
        name,
        7,
        dims,
        data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
}

impl GraphBuilder {
    pub fn new(names: NameGenerator, opset: i64) -> Self {
        GraphBuilder {
            shared: Rc::new(RefCell::new(Shared {
                names,
                initializers: Vec::new(),
            })),
            opset,
            nodes: Vec::new(),
        }
    }

    /// An empty builder for a nested graph (an `If` branch) sharing names
    /// and constants with this one.
    pub fn branch(&self) -> GraphBuilder {
        GraphBuilder {
            shared: Rc::clone(&self.shared),
            opset: self.opset,
            nodes: Vec::new(),
        }
    }

    pub fn fresh(&self, base: &str) -> String {
        self.shared.borrow_mut().names.fresh(base)
    }

    /// Initializers created so far (they all belong in the main graph).
    pub fn take_initializers(&self) -> Vec<TensorProto> {
        std::mem::take(&mut self.shared.borrow_mut().initializers)
    }

    /// Adds an initializer under a fresh name based on `base`; returns the name.
    pub fn constant(&mut self, mut t: TensorProto, base: &str) -> String {
        let name = self.fresh(base);
        t.set_name(name.clone());
        self.shared.borrow_mut().initializers.push(t);
        name
    }

    pub fn const_f32(&mut self, base: &str, dims: &[i64], data: &[f32]) -> String {
        self.constant(tensor_f32(base, dims, data), base)
    }

    pub fn const_i64(&mut self, base: &str, dims: &[i64], data: &[i64]) -> String {
        self.constant(tensor_i64(base, dims, data), base)
    }

    /// An 8-bit integer constant (int8 or uint8, `elem`), one byte per element.
    pub fn const_bytes(&mut self, base: &str, elem: i32, dims: &[i64], data: Vec<u8>) -> String {
        self.constant(tensor_raw(base, elem, dims, data), base)
    }

    /// Adds a node with `n_out` fresh outputs named after `base`.
    pub fn node(
        &mut self,
        op: &str,
        base: &str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..n_out)
            .map(|i| {
                self.fresh(&if i == 0 {
                    base.to_string()
                } else {
                    format!("{base}_{i}")
                })
            })
            .collect();
        self.push(op, inputs, &outputs, attrs);
        outputs
    }

    /// Adds a node whose outputs are named by the caller.
    pub fn push(&mut self, op: &str, inputs: &[&str], outputs: &[String], attrs: Vec<AttributeProto>) {
        let mut n = NodeProto::new();
        n.set_op_type(op.into());
        n.set_name(self.fresh(&format!("{}_{op}", outputs.first().map_or("node", String::as_str))));
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.to_vec();
        n.attribute = attrs;
        self.nodes.push(n);
    }

    /// Adds a node built elsewhere (a copy of an original node).
    pub fn add_node(&mut self, node: NodeProto) {
        self.nodes.push(node);
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn last_node_mut(&mut self) -> Option<&mut NodeProto> {
        self.nodes.last_mut()
    }

    /// The nodes built so far, leaving the builder empty.
    pub fn take_nodes(&mut self) -> Vec<NodeProto> {
        std::mem::take(&mut self.nodes)
    }

    pub fn into_nodes(self) -> Vec<NodeProto> {
        self.nodes
    }

    /// Marks every node from index `start` on with `tag` (as doc_string),
    /// so a later pass can find them wherever emission moves them.
    pub fn tag_from(&mut self, start: usize, tag: &str) {
        for n in &mut self.nodes[start..] {
            n.set_doc_string(tag.to_string());
        }
    }

    /// Single-output node.
    pub fn op(&mut self, op: &str, base: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.node(op, base, inputs, 1, attrs).remove(0)
    }

    /// `Unsqueeze`: axes an attribute before opset 13, an input from 13.
    pub fn unsqueeze(&mut self, base: &str, x: &str, axes: &[i64]) -> String {
        if self.opset < 13 {
            self.op("Unsqueeze", base, &[x], vec![attr_ints("axes", axes)])
        } else {
            let a = self.const_i64(&format!("{base}_axes"), &[axes.len() as i64], axes);
            self.op("Unsqueeze", base, &[x, &a], vec![])
        }
    }

    /// A reduction over `axes`. ReduceSum takes axes as an input from opset
    /// 13, the other Reduce* ops from opset 18.
    pub fn reduce(&mut self, op: &str, base: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        let input_form = if op == "ReduceSum" {
            self.opset >= 13
        } else {
            self.opset >= 18
        };
        let keep = attr_int("keepdims", i64::from(keepdims));
        if input_form {
            let a = self.const_i64(&format!("{base}_axes"), &[axes.len() as i64], axes);
            self.op(op, base, &[x, &a], vec![keep])
        } else {
            self.op(op, base, &[x], vec![attr_ints("axes", axes), keep])
        }
    }

    /// `a >= b`: GreaterOrEqual exists from opset 12; before, `Not(a < b)`.
    pub fn greater_or_equal(&mut self, base: &str, a: &str, b: &str) -> String {
        if self.opset >= 12 {
            self.op("GreaterOrEqual", base, &[a, b], vec![])
        } else {
            let lt = self.op("Less", &format!("{base}_lt"), &[a, b], vec![]);
            self.op("Not", base, &[&lt], vec![])
        }
    }

    /// `Cast` to an ONNX element type code.
    pub fn cast(&mut self, base: &str, x: &str, to: i32) -> String {
        self.op("Cast", base, &[x], vec![attr_int("to", i64::from(to))])
    }

    /// Top-2 values along axis 1: `k` an attribute before opset 10.
    pub fn top2_values(&mut self, base: &str, x: &str) -> String {
        if self.opset < 10 {
            self.node("TopK", base, &[x], 2, vec![attr_int("axis", 1), attr_int("k", 2)])
                .remove(0)
        } else {
            let k = self.const_i64(&format!("{base}_k"), &[1], &[2]);
            self.node("TopK", base, &[x, &k], 2, vec![attr_int("axis", 1)])
                .remove(0)
        }
    }
}

/// A tensor type as the proto writes it (symbolic dims by name).
pub fn type_proto(t: &TensorType) -> TypeProto {
    let mut tt = type_proto::Tensor::new();
    tt.set_elem_type(t.elem.0);
    if let Some(shape) = &t.shape {
        let mut s = TensorShapeProto::new();
        for d in shape {
            let mut dim = tensor_shape_proto::Dimension::new();
            match d {
                Dim::Known(v) => dim.set_dim_value(*v),
                Dim::Sym(p) => dim.set_dim_param(p.clone()),
                // Not written as a name: a runtime would take `197*batch`
                // for a symbol of its own, unrelated to `batch`.
                Dim::Expr(_) | Dim::Unknown => {}
            }
            s.dim.push(dim);
        }
        tt.shape = Some(s).into();
    }
    let mut tp = TypeProto::new();
    tp.set_tensor_type(tt);
    tp
}

pub fn value_info(name: &str, ty: TypeProto) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.set_name(name.into());
    v.type_ = Some(ty).into();
    v
}
