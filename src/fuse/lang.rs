//! The e-graph's language: one e-node per ONNX op (its inputs, then one
//! attribute-bundle leaf), plus leaves for what the region reads.
//!
//! Every symbol is plain text, so rules in `passes/` are written in the same
//! notation the engine prints:
//!
//! | symbol | meaning |
//! | --- | --- |
//! | `Gemm`, `Softmax`, … | an ONNX op (capitalised); last child is its bundle |
//! | `{axis=1,keepdims=0}` | attribute bundle, names sorted, defaults dropped |
//! | `%name` | a tensor the region reads from outside (input, capture, other node) |
//! | `#name` | a constant tensor (initializer, Constant node, or folded here) |
//! | `i64:[-1,1]`, `f32:2.5` | a literal constant written in a rule |
//! | `_` | an omitted optional input |
//! | `attr` | helper: `(attr BUNDLE NAME)` is the named attribute as a constant |
//! | lowercase word | an attribute name, as `attr`'s second child |
//!
//! Reductions, Squeeze/Unsqueeze and TopK read their axes/k from an input in
//! newer opsets and from an attribute in older ones; here they are always in
//! the bundle, so a rule is written once, and write-back picks the form of
//! the model's opset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use egg::{Id, Language};

/// One e-node: an op (or leaf) symbol and its children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term {
    pub op: Arc<str>,
    pub children: Vec<Id>,
}

impl Term {
    pub fn leaf(op: &str) -> Term {
        Term {
            op: op.into(),
            children: Vec::new(),
        }
    }

    pub fn new(op: &str, children: Vec<Id>) -> Term {
        Term {
            op: op.into(),
            children,
        }
    }

    pub fn kind(&self) -> Kind<'_> {
        Kind::of(&self.op, !self.children.is_empty())
    }
}

impl Language for Term {
    type Discriminant = Arc<str>;

    fn discriminant(&self) -> Self::Discriminant {
        self.op.clone()
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.op)
    }
}

impl egg::FromOp for Term {
    type Error = std::convert::Infallible;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, Self::Error> {
        Ok(Term::new(op, children))
    }
}

/// What a symbol stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    Op(&'a str),
    Bundle(&'a str),
    Input(&'a str),
    Const(&'a str),
    Literal(&'a str),
    Absent,
    /// The `attr` helper (folded to a constant, never written back).
    AttrHelper,
    Word(&'a str),
}

impl<'a> Kind<'a> {
    pub fn of(op: &'a str, has_children: bool) -> Kind<'a> {
        if let Some(rest) = op.strip_prefix('%') {
            Kind::Input(rest)
        } else if let Some(rest) = op.strip_prefix('#') {
            Kind::Const(rest)
        } else if op.starts_with('{') {
            Kind::Bundle(op)
        } else if op == "_" {
            Kind::Absent
        } else if op.starts_with("i64:") || op.starts_with("f32:") {
            Kind::Literal(op)
        } else if op == "attr" && has_children {
            Kind::AttrHelper
        } else if op.starts_with(|c: char| c.is_ascii_uppercase()) {
            Kind::Op(op)
        } else {
            Kind::Word(op)
        }
    }
}

/// One attribute value, in the types the lifted ops use.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
}

impl AttrValue {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match self {
            AttrValue::Float(v) => Some(*v),
            AttrValue::Int(v) => Some(*v as f32),
            _ => None,
        }
    }
}

/// An op's attributes, sorted by name: the text of a bundle leaf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs(pub BTreeMap<String, AttrValue>);

impl Attrs {
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.get(name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(AttrValue::as_int)
    }

    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.get(name) {
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        }
    }

    pub fn set(&mut self, name: &str, v: AttrValue) {
        self.0.insert(name.to_string(), v);
    }

    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.0.remove(name)
    }

    /// `{a=1,b=[1,2],c=0.5,d='text'}`. Floats print with a `.` or an
    /// exponent (Rust's shortest round-trip form), so they read back as
    /// floats; strings are quoted and limited to characters that cannot
    /// break the s-expression.
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    AttrValue::Int(i) => i.to_string(),
                    AttrValue::Float(f) => format!("{f:?}"),
                    AttrValue::Ints(v) => format!("[{}]", join(v.iter().map(i64::to_string))),
                    AttrValue::Floats(v) => format!("[{}]", join(v.iter().map(|f| format!("{f:?}")))),
                    AttrValue::Str(s) => format!("'{s}'"),
                };
                format!("{k}={v}")
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    pub fn parse(text: &str) -> Option<Attrs> {
        let inner = text.strip_prefix('{')?.strip_suffix('}')?;
        let mut attrs = Attrs::default();
        if inner.is_empty() {
            return Some(attrs);
        }
        for part in split_top(inner) {
            let (k, v) = part.split_once('=')?;
            attrs.set(k, parse_value(v)?);
        }
        Some(attrs)
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// Splits on commas outside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_value(v: &str) -> Option<AttrValue> {
    if let Some(s) = v.strip_prefix('\'') {
        return Some(AttrValue::Str(s.strip_suffix('\'')?.to_string()));
    }
    if let Some(list) = v.strip_prefix('[') {
        let list = list.strip_suffix(']')?;
        if list.is_empty() {
            return Some(AttrValue::Ints(Vec::new()));
        }
        let items: Vec<&str> = list.split(',').collect();
        if let Ok(ints) = items.iter().map(|s| s.parse::<i64>()).collect::<Result<Vec<_>, _>>() {
            return Some(AttrValue::Ints(ints));
        }
        return items
            .iter()
            .map(|s| s.parse::<f32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(AttrValue::Floats);
    }
    if let Ok(i) = v.parse::<i64>() {
        return Some(AttrValue::Int(i));
    }
    v.parse::<f32>().ok().map(AttrValue::Float)
}

/// Characters a string attribute may hold and still be lifted.
pub fn liftable_string(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A literal from a rule: `i64:[..]` (1-D) or `i64:N` / `f32:X` (scalars).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Ints { dims: Vec<i64>, values: Vec<i64> },
    Floats { dims: Vec<i64>, values: Vec<f32> },
}

impl Literal {
    pub fn parse(text: &str) -> Option<Literal> {
        let (ty, body) = text.split_once(':')?;
        let (dims, items): (Vec<i64>, Vec<&str>) = match body.strip_prefix('[') {
            Some(list) => {
                let items: Vec<&str> = list.strip_suffix(']')?.split(',').filter(|s| !s.is_empty()).collect();
                (vec![items.len() as i64], items)
            }
            None => (Vec::new(), vec![body]),
        };
        match ty {
            "i64" => Some(Literal::Ints {
                dims,
                values: items.iter().map(|s| s.parse().ok()).collect::<Option<_>>()?,
            }),
            "f32" => Some(Literal::Floats {
                dims,
                values: items.iter().map(|s| s.parse().ok()).collect::<Option<_>>()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_every_value_type() {
        let mut a = Attrs::default();
        a.set("axis", AttrValue::Int(-1));
        a.set("epsilon", AttrValue::Float(1e-5));
        a.set("alpha", AttrValue::Float(1.0));
        a.set("perm", AttrValue::Ints(vec![0, 2, 1]));
        a.set("scales", AttrValue::Floats(vec![1.0, 2.5]));
        a.set("mode", AttrValue::Str("SAME_UPPER".into()));
        let text = a.encode();
        assert_eq!(
            text,
            "{alpha=1.0,axis=-1,epsilon=1e-5,mode='SAME_UPPER',perm=[0,2,1],scales=[1.0,2.5]}"
        );
        assert_eq!(Attrs::parse(&text), Some(a));
        assert_eq!(Attrs::parse("{}"), Some(Attrs::default()));
        assert_eq!(Attrs::parse("{axis}"), None);
    }

    #[test]
    fn symbols_are_classified_by_their_first_character() {
        assert_eq!(Kind::of("Gemm", true), Kind::Op("Gemm"));
        assert_eq!(Kind::of("%x", false), Kind::Input("x"));
        assert_eq!(Kind::of("#w", false), Kind::Const("w"));
        assert_eq!(Kind::of("{}", false), Kind::Bundle("{}"));
        assert_eq!(Kind::of("_", false), Kind::Absent);
        assert_eq!(Kind::of("attr", true), Kind::AttrHelper);
        assert_eq!(Kind::of("epsilon", false), Kind::Word("epsilon"));
        assert_eq!(Kind::of("i64:[-1,1]", false), Kind::Literal("i64:[-1,1]"));
    }

    #[test]
    fn literals_parse_scalars_and_vectors() {
        assert_eq!(
            Literal::parse("i64:[-1,1,1,1]"),
            Some(Literal::Ints {
                dims: vec![4],
                values: vec![-1, 1, 1, 1]
            })
        );
        assert_eq!(
            Literal::parse("f32:0.5"),
            Some(Literal::Floats {
                dims: vec![],
                values: vec![0.5]
            })
        );
        assert_eq!(Literal::parse("u8:1"), None);
    }
}
