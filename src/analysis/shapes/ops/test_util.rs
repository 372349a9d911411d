//! Builders that keep rule tests to a line or two: types are written the way
//! `TensorType` prints them (`float[N,3,?]`), nodes are built by chaining.

use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, Folded, Node, TensorType, ValueId};
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::{AttributeProto, TensorProto};

/// `"N,3,?,224,197*N,seq+1"` → dimensions (`?` unknown, names symbolic,
/// `*` a product, `+` a sum of products).
pub fn dims(s: &str) -> Vec<Dim> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "?" => Dim::Unknown,
            _ if p.contains('*') || p.contains('+') => {
                let terms = p.split('+').map(|term| {
                    let (mut coeff, mut syms) = (1, Vec::new());
                    for f in term.split('*') {
                        match f.parse::<i64>() {
                            Ok(v) => coeff *= v,
                            Err(_) => syms.push(crate::ir::Atom::sym(f)),
                        }
                    }
                    crate::ir::DimTerm { coeff, syms }
                });
                crate::ir::DimExpr::sum(terms.collect()).unwrap()
            }
            _ => p.parse().map_or_else(|_| Dim::Sym(p.to_string()), Dim::Known),
        })
        .collect()
}

/// `"float[N,3]"` → a type; `"float[...]"` has unknown rank.
pub fn ty(s: &str) -> TensorType {
    let (elem, rest) = s.split_once('[').expect("type like float[1,2]");
    let elem = (0..64)
        .map(ElemType)
        .find(|e| e.name() == elem)
        .unwrap_or_else(|| panic!("unknown element type {elem}"));
    let inner = rest.trim_end_matches(']');
    TensorType {
        elem,
        shape: (inner != "...").then(|| dims(inner)),
    }
}

pub fn ints(v: &[i64]) -> Folded {
    Folded::Ints(v.iter().map(|&x| Dim::Known(x)).collect())
}

/// Integer contents with symbols, e.g. `sym_ints("batch,3")`.
pub fn sym_ints(s: &str) -> Folded {
    Folded::Ints(dims(s))
}

pub fn floats(v: &[f64]) -> Folded {
    Folded::Floats(v.to_vec())
}

/// A 1-element tensor attribute value (ConstantOfShape, Constant).
pub fn tensor_i64(dims: &[i64], values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.set_data_type(ElemType::INT64.0);
    t.dims = dims.to_vec();
    t.int64_data = values.to_vec();
    t
}

/// One node under test with its input types, contents and opset.
pub struct Case {
    node: Node,
    opset: i64,
    types: Vec<Option<TensorType>>,
    folded: Vec<Option<Folded>>,
}

impl Case {
    /// A node of the default domain at opset 13 with one output.
    pub fn new(op: &str) -> Case {
        Case {
            node: Node {
                name: "n".into(),
                op_type: op.into(),
                domain: String::new(),
                inputs: Vec::new(),
                outputs: vec![Some(ValueId(0))],
                attributes: Vec::new(),
                subgraphs: Vec::new(),
                implicit_inputs: Vec::new(),
            },
            opset: 13,
            types: Vec::new(),
            folded: Vec::new(),
        }
    }

    pub fn opset(mut self, v: i64) -> Case {
        self.opset = v;
        self
    }

    pub fn domain(mut self, d: &str) -> Case {
        self.node.domain = d.into();
        self
    }

    pub fn outputs(mut self, n: usize) -> Case {
        self.node.outputs = (0..n).map(|i| Some(ValueId(i))).collect();
        self
    }

    fn push(mut self, t: Option<TensorType>, f: Option<Folded>, present: bool) -> Case {
        self.node
            .inputs
            .push(present.then_some(ValueId(100 + self.types.len())));
        self.types.push(t);
        self.folded.push(f);
        self
    }

    /// An input of type `t`, e.g. `"float[N,3]"`.
    pub fn input(self, t: &str) -> Case {
        self.push(Some(ty(t)), None, true)
    }

    /// An input with known contents.
    pub fn folded(self, t: &str, f: Folded) -> Case {
        self.push(Some(ty(t)), Some(f), true)
    }

    /// Output 0 of an earlier step (type and contents) as the next input,
    /// to follow a chain of nodes.
    pub fn from(self, prev: &Case) -> Case {
        let out = prev.run().expect("previous step failed").swap_remove(0);
        self.push(out.ty, out.folded, true)
    }

    /// An input whose type is not known yet.
    pub fn unknown(self) -> Case {
        self.push(None, None, true)
    }

    /// An omitted optional input.
    pub fn absent(self) -> Case {
        self.push(None, None, false)
    }

    fn attr(mut self, name: &str, kind: AttributeType, set: impl FnOnce(&mut AttributeProto)) -> Case {
        let mut a = AttributeProto::new();
        a.set_name(name.into());
        a.set_type(kind);
        set(&mut a);
        self.node.attributes.push(a);
        self
    }

    pub fn int(self, name: &str, v: i64) -> Case {
        self.attr(name, AttributeType::INT, |a| a.set_i(v))
    }

    pub fn ints(self, name: &str, v: &[i64]) -> Case {
        self.attr(name, AttributeType::INTS, |a| a.ints = v.to_vec())
    }

    pub fn float(self, name: &str, v: f32) -> Case {
        self.attr(name, AttributeType::FLOAT, |a| a.set_f(v))
    }

    pub fn floats(self, name: &str, v: &[f32]) -> Case {
        self.attr(name, AttributeType::FLOATS, |a| a.floats = v.to_vec())
    }

    pub fn string(self, name: &str, v: &str) -> Case {
        self.attr(name, AttributeType::STRING, |a| a.set_s(v.as_bytes().to_vec().into()))
    }

    pub fn tensor(self, name: &str, t: TensorProto) -> Case {
        self.attr(name, AttributeType::TENSOR, |a| a.t = Some(t).into())
    }

    pub fn run(&self) -> Result<Vec<Inferred>, RuleError> {
        let names: Vec<String> = (0..self.types.len()).map(|i| format!("x{i}")).collect();
        let ctx = OpContext {
            node: &self.node,
            opset: self.opset,
            inputs: self.types.iter().map(Option::as_ref).collect(),
            folded: self.folded.iter().map(Option::as_ref).collect(),
            names: names.iter().map(|n| Some(n.as_str())).collect(),
        };
        super::infer_op(&ctx)
    }

    /// Every output's type as printed (`-` where none was inferred).
    pub fn types(&self) -> Vec<String> {
        let outs = self
            .run()
            .unwrap_or_else(|e| panic!("{} failed: {e:?}", self.node.op_type));
        outs.iter()
            .map(|o| o.ty.as_ref().map_or_else(|| "-".into(), ToString::to_string))
            .collect()
    }

    /// Output 0's type as printed.
    pub fn ty(&self) -> String {
        self.types().swap_remove(0)
    }

    /// Output 0's folded contents.
    pub fn value(&self) -> Option<Folded> {
        self.run().ok()?.swap_remove(0).folded
    }

    /// The reason of an `Invalid` result.
    pub fn invalid(&self) -> String {
        match self.run() {
            Err(RuleError::Invalid(r)) => r,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    pub fn err(&self) -> RuleError {
        self.run().expect_err("expected an error")
    }
}
