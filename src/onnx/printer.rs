//! ONNX textual syntax: prints a model or graph byte for byte as
//! `onnx.printer.to_text` does (onnx 1.23, `onnx/defs/printer.cc`), since that
//! is the text users already know and our tests diff against it.
//!
//! The reference printer is lossy and has quirks; we copy them on purpose and
//! say so where they happen. What it drops: doc strings (except the model's),
//! metadata outside the model, value_info denotations and dimension
//! denotations, sparse tensors (initializers and attributes), function
//! attribute defaults and value_info, training_info, and every field the
//! syntax has no place for.
//!
//! Where the reference fails instead of printing (raw data whose size does not
//! match the dims, negative dims) it raises; we print `...` there, so that
//! any proto, however malformed, prints without a panic.

use std::fmt::Write as _;

use protobuf::Message as _;

use crate::onnx::proto::tensor_proto::DataLocation;
use crate::onnx::proto::tensor_shape_proto::dimension;
use crate::onnx::proto::type_proto;
use crate::onnx::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
};

/// Prints a model in ONNX textual syntax (as `onnx.printer.to_text`).
pub fn model_to_text(model: &ModelProto) -> String {
    model_to_text_with(model, &PrintOptions::default())
}

/// Printing choices beyond the reference format.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintOptions {
    /// Tensors with more elements than this print as `{...N values}`
    /// instead of their data: readable snapshots of graphs with real weights.
    /// `None` prints everything, as the reference does.
    pub elide_data_over: Option<u64>,
}

/// [`model_to_text`] with [`PrintOptions`].
pub fn model_to_text_with(model: &ModelProto, options: &PrintOptions) -> String {
    let mut p = Printer::new();
    p.elide_data_over = options.elide_data_over;
    p.model(model);
    p.out
}

/// Prints a graph in ONNX textual syntax (as `onnx.printer.to_text`).
pub fn graph_to_text(graph: &GraphProto) -> String {
    let mut p = Printer::new();
    p.graph(graph);
    p.out
}

/// Indentation step, and the indentation of a top-level graph's nodes.
const STEP: usize = 3;

struct Printer {
    out: String,
    /// Current indentation in spaces; grows by [`STEP`] per nested graph.
    indent: usize,
    elide_data_over: Option<u64>,
}

impl Printer {
    fn new() -> Self {
        Printer {
            out: String::new(),
            indent: STEP,
            elide_data_over: None,
        }
    }

    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// The reference writes `std::setw(n) << ' '`, i.e. `n` spaces but at
    /// least one.
    fn spaces(&mut self, n: usize) {
        let n = n.max(1);
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    /// A name: bare when it is an identifier, quoted otherwise (so the empty
    /// name prints as `""`).
    fn id(&mut self, s: &str) {
        if is_identifier(s) {
            self.push(s);
        } else {
            self.quoted(s);
        }
    }

    /// Double-quoted, escaping only `\` and `"` (newlines stay raw, as in
    /// the reference).
    fn quoted(&mut self, s: &str) {
        self.out.push('"');
        for ch in s.chars() {
            if ch == '\\' || ch == '"' {
                self.out.push('\\');
            }
            self.out.push(ch);
        }
        self.out.push('"');
    }

    /// Bytes fields (string attributes, string tensors): the reference copies
    /// raw bytes and Python decodes them as UTF-8; we replace invalid UTF-8
    /// instead of failing.
    fn quoted_bytes(&mut self, b: &[u8]) {
        self.quoted(&String::from_utf8_lossy(b));
    }

    /// `open item sep item ... close`, each item printed by `f`.
    fn list<T>(&mut self, open: &str, sep: &str, close: &str, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.push(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(sep);
            }
            f(self, item);
        }
        self.push(close);
    }

    fn numbers<T: Number>(&mut self, open: &str, sep: &str, close: &str, items: &[T]) {
        self.list(open, sep, close, items, |p, x| x.write(&mut p.out));
    }

    fn ids(&mut self, open: &str, sep: &str, close: &str, items: &[String]) {
        self.list(open, sep, close, items, |p, s| p.id(s));
    }

    fn model(&mut self, model: &ModelProto) {
        self.push("<\n");
        self.key("ir_version");
        model.ir_version().write(&mut self.out);
        self.push(",\n");
        self.key("opset_import");
        self.opsets(", ", &model.opset_import);
        // Optional header fields print when present, even if empty.
        let strings = [
            ("producer_name", &model.producer_name),
            ("producer_version", &model.producer_version),
            ("domain", &model.domain),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                self.push(",\n");
                self.key(key);
                self.quoted(value);
            }
        }
        if let Some(version) = model.model_version {
            self.push(",\n");
            self.key("model_version");
            version.write(&mut self.out);
        }
        if let Some(doc) = &model.doc_string {
            self.push(",\n");
            self.key("doc_string");
            self.quoted(doc);
        }
        if !model.metadata_props.is_empty() {
            self.push(",\n");
            self.key("metadata_props");
            self.string_pairs(&model.metadata_props);
        }
        self.push("\n>\n");
        // An absent graph prints as an empty one, as the reference's default
        // instance does.
        self.graph(model.graph.as_ref().unwrap_or(GraphProto::default_instance()));
        for function in &model.functions {
            self.push("\n");
            self.function(function);
        }
    }

    /// `   key: ` at the current indentation.
    fn key(&mut self, key: &str) {
        self.spaces(self.indent);
        self.push(key);
        self.push(": ");
    }

    fn opsets(&mut self, sep: &str, opsets: &[OperatorSetIdProto]) {
        self.list("[", sep, "]", opsets, |p, opset| {
            p.quoted(opset.domain());
            p.push(" : ");
            opset.version().write(&mut p.out);
        });
    }

    fn string_pairs(&mut self, pairs: &[StringStringEntryProto]) {
        self.list("[", ", ", "]", pairs, |p, pair| {
            p.quoted(pair.key());
            p.push(": ");
            p.quoted(pair.value());
        });
    }

    fn function(&mut self, f: &FunctionProto) {
        // The function header is indented by 2, not by STEP, and its opset
        // list has no space after the commas (unlike the model's).
        self.push("<\n  domain: ");
        self.quoted(f.domain());
        self.push(",\n");
        if !f.overload().is_empty() {
            self.push("  overload: ");
            self.quoted(f.overload());
            self.push(",\n");
        }
        self.push("  opset_import: ");
        self.opsets(",", &f.opset_import);
        self.push("\n>\n");
        self.id(f.name());
        self.push(" ");
        // Attribute names print raw (never quoted); their defaults
        // (`attribute_proto`) are not printed at all.
        if !f.attribute.is_empty() {
            self.list("<", ",", ">", &f.attribute, |p, a| p.push(a));
        }
        self.ids("(", ", ", ")", &f.input);
        self.push(" => ");
        self.ids("(", ", ", ")", &f.output);
        self.push("\n");
        self.nodes(&f.node);
    }

    fn graph(&mut self, graph: &GraphProto) {
        self.id(graph.name());
        self.push(" ");
        self.value_infos(&graph.input);
        self.push(" => ");
        self.value_infos(&graph.output);
        self.push(" ");
        if !graph.initializer.is_empty() || !graph.value_info.is_empty() {
            self.push("\n");
            self.spaces(self.indent);
            self.push("<");
            let mut first = true;
            for init in &graph.initializer {
                if !first {
                    self.push(", ");
                }
                first = false;
                self.tensor(init, true);
            }
            for vi in &graph.value_info {
                if !first {
                    self.push(", ");
                }
                first = false;
                self.value_info(vi);
            }
            // The node list's `{` then starts at column 0, even when nested.
            self.push(">\n");
        }
        self.nodes(&graph.node);
    }

    fn nodes(&mut self, nodes: &[NodeProto]) {
        self.push("{\n");
        for node in nodes {
            self.node(node);
        }
        // The closing brace sits one level out; at top level in column 0.
        if self.indent > STEP {
            self.spaces(self.indent - STEP);
        }
        self.push("}");
    }

    fn node(&mut self, node: &NodeProto) {
        self.spaces(self.indent);
        // A present but empty name still prints, as `[""]`.
        if let Some(name) = &node.name {
            self.push("[");
            self.id(name);
            self.push("] ");
        }
        self.ids("", ", ", "", &node.output);
        self.push(" = ");
        if !node.domain().is_empty() {
            self.push(node.domain());
            self.push(".");
        }
        self.push(node.op_type());
        if !node.overload().is_empty() {
            self.push(":");
            self.push(node.overload());
        }
        // Attributes go before the inputs, unless one holds a graph: then
        // all of them go after, so the inputs are not lost below the bodies.
        let has_subgraph = node.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        if !has_subgraph && !node.attribute.is_empty() {
            self.attributes(&node.attribute);
        }
        self.ids(" (", ", ", ")", &node.input);
        if has_subgraph {
            self.attributes(&node.attribute);
        }
        self.push("\n");
    }

    fn attributes(&mut self, attrs: &[AttributeProto]) {
        self.list(" <", ", ", ">", attrs, |p, a| p.attribute(a));
    }

    fn attribute(&mut self, attr: &AttributeProto) {
        // Names and references print raw, never quoted.
        self.push(attr.name());
        self.push(": ");
        self.push(attribute_type_name(attr.type_()));
        self.push(" = ");
        if let Some(reference) = &attr.ref_attr_name {
            self.push("@");
            self.push(reference);
            return;
        }
        // The declared type picks the field; the others are ignored.
        match attr.type_() {
            AttributeType::FLOAT => attr.f().write(&mut self.out),
            AttributeType::INT => attr.i().write(&mut self.out),
            AttributeType::STRING => self.quoted_bytes(attr.s()),
            AttributeType::TENSOR => self.tensor(attr.t.as_ref().unwrap_or(TensorProto::default_instance()), false),
            AttributeType::GRAPH => {
                self.indent += STEP;
                self.graph(attr.g.as_ref().unwrap_or(GraphProto::default_instance()));
                self.indent -= STEP;
            }
            AttributeType::TYPE_PROTO => self.type_proto(attr.tp.as_ref().unwrap_or(TypeProto::default_instance())),
            AttributeType::FLOATS => self.numbers("[", ", ", "]", &attr.floats),
            AttributeType::INTS => self.numbers("[", ", ", "]", &attr.ints),
            AttributeType::STRINGS => self.list("[", ", ", "]", &attr.strings, |p, s| p.quoted_bytes(s)),
            AttributeType::TENSORS => self.list("[", ", ", "]", &attr.tensors, |p, t| p.tensor(t, false)),
            AttributeType::GRAPHS => {
                self.indent += STEP;
                self.list("[", ", ", "]", &attr.graphs, |p, g| p.graph(g));
                self.indent -= STEP;
            }
            AttributeType::TYPE_PROTOS => self.list("[", ", ", "]", &attr.type_protos, |p, t| p.type_proto(t)),
            // Sparse tensors (and undefined types) print nothing after `= `.
            AttributeType::SPARSE_TENSOR | AttributeType::SPARSE_TENSORS | AttributeType::UNDEFINED => {}
        }
    }

    fn value_infos(&mut self, infos: &[ValueInfoProto]) {
        self.list("(", ", ", ")", infos, |p, vi| p.value_info(vi));
    }

    fn value_info(&mut self, vi: &ValueInfoProto) {
        // A missing type prints as nothing, leaving ` name`.
        self.type_proto(vi.type_.as_ref().unwrap_or(TypeProto::default_instance()));
        self.push(" ");
        self.id(vi.name());
    }

    fn type_proto(&mut self, tp: &TypeProto) {
        use type_proto::Value;
        match &tp.value {
            Some(Value::TensorType(t)) => {
                self.push(elem_type_name(t.elem_type()));
                self.optional_shape(t.shape.as_ref());
            }
            Some(Value::SequenceType(s)) => {
                self.push("seq(");
                self.type_proto(s.elem_type.as_ref().unwrap_or(TypeProto::default_instance()));
                self.push(")");
            }
            Some(Value::MapType(m)) => {
                self.push("map(");
                self.push(elem_type_name(m.key_type()));
                self.push(", ");
                self.type_proto(m.value_type.as_ref().unwrap_or(TypeProto::default_instance()));
                self.push(")");
            }
            Some(Value::OptionalType(o)) => {
                self.push("optional(");
                self.type_proto(o.elem_type.as_ref().unwrap_or(TypeProto::default_instance()));
                self.push(")");
            }
            Some(Value::SparseTensorType(s)) => {
                self.push("sparse_tensor(");
                self.push(elem_type_name(s.elem_type()));
                self.optional_shape(s.shape.as_ref());
                self.push(")");
            }
            Some(Value::OpaqueType(o)) => {
                // Domain and name print raw, unquoted.
                self.push("opaque(");
                if !o.domain().is_empty() {
                    self.push(o.domain());
                    self.push(",");
                }
                self.push(o.name());
                self.push(")");
            }
            None => {}
        }
    }

    /// Quirk kept from the reference: an unknown rank (no shape) prints `[]`,
    /// while a scalar (a shape with no dims) prints nothing.
    fn optional_shape(&mut self, shape: Option<&TensorShapeProto>) {
        match shape {
            None => self.push("[]"),
            Some(shape) if shape.dim.is_empty() => {}
            Some(shape) => self.list("[", ",", "]", &shape.dim, |p, d| match &d.value {
                Some(dimension::Value::DimValue(v)) => v.write(&mut p.out),
                Some(dimension::Value::DimParam(s)) => p.id(s),
                None => p.push("?"),
            }),
        }
    }

    fn tensor(&mut self, t: &TensorProto, is_initializer: bool) {
        self.push(elem_type_name(t.data_type()));
        if !t.dims.is_empty() {
            self.numbers("[", ",", "]", &t.dims);
        }
        if !t.name().is_empty() {
            self.push(" ");
            self.id(t.name());
        }
        // The data then follows ` = ` with its own leading space, hence the
        // double space in `w =  {1,2}` (as the reference prints it).
        if is_initializer {
            self.push(" = ");
        }
        let external = t.data_location.map(|l| l.value()) == Some(DataLocation::EXTERNAL as i32);
        let elements = element_count(&t.dims).unwrap_or(0) as u64;
        if let Some(limit) = self.elide_data_over
            && elements > limit
            && !external
        {
            self.push(&format!(" {{...{elements} values}}"));
        } else if external {
            self.string_pairs(&t.external_data);
        } else if let Some(raw) = &t.raw_data {
            self.raw_data(t, raw);
        } else {
            self.typed_data(t);
        }
    }

    /// Values of `raw_data` (little-endian), widened as the reference does:
    /// 8- and 16-bit types (floating ones included) print their integer bit
    /// patterns.
    fn raw_data(&mut self, t: &TensorProto, raw: &[u8]) {
        fn decode<const N: usize, T: Number>(p: &mut Printer, t: &TensorProto, raw: &[u8], from: fn([u8; N]) -> T) {
            // The reference requires exactly dims-product elements and raises
            // otherwise.
            let fits = element_count(&t.dims)
                .and_then(|n| n.checked_mul(N))
                .is_some_and(|bytes| bytes == raw.len());
            if !fits {
                p.push("...");
                return;
            }
            let values: Vec<T> = raw
                .chunks_exact(N)
                .filter_map(|c| c.try_into().ok().map(from))
                .collect();
            p.numbers(" {", ",", "}", &values);
        }
        match t.data_type() {
            dt::INT8 => decode(self, t, raw, |b: [u8; 1]| i8::from_le_bytes(b)),
            dt::UINT8 | dt::BOOL | dt::FLOAT8E4M3FN..=dt::FLOAT8E5M2FNUZ | dt::FLOAT8E8M0 => {
                decode(self, t, raw, |b: [u8; 1]| b[0])
            }
            dt::INT16 => decode(self, t, raw, i16::from_le_bytes),
            dt::UINT16 | dt::FLOAT16 | dt::BFLOAT16 => decode(self, t, raw, u16::from_le_bytes),
            dt::INT32 => decode(self, t, raw, i32::from_le_bytes),
            dt::UINT32 => decode(self, t, raw, u32::from_le_bytes),
            dt::INT64 => decode(self, t, raw, i64::from_le_bytes),
            dt::UINT64 => decode(self, t, raw, u64::from_le_bytes),
            dt::FLOAT => decode(self, t, raw, f32::from_le_bytes),
            dt::DOUBLE => decode(self, t, raw, f64::from_le_bytes),
            // Packed sub-byte types, complex, string, unknown codes.
            _ => self.push("..."),
        }
    }

    fn typed_data(&mut self, t: &TensorProto) {
        match t.data_type() {
            dt::UINT8..=dt::INT32 | dt::BOOL | dt::FLOAT16 | dt::BFLOAT16..=dt::FLOAT8E5M2FNUZ | dt::FLOAT8E8M0 => {
                self.numbers(" {", ",", "}", &t.int32_data)
            }
            dt::INT64 => self.numbers(" {", ",", "}", &t.int64_data),
            dt::UINT32 | dt::UINT64 => self.numbers(" {", ",", "}", &t.uint64_data),
            dt::FLOAT => self.numbers(" {", ",", "}", &t.float_data),
            dt::DOUBLE => self.numbers(" {", ",", "}", &t.double_data),
            // Quirk kept: no space before `{`, and no `{` at all when empty
            // (an empty string tensor prints just `}`).
            dt::STRING => {
                for (i, s) in t.string_data.iter().enumerate() {
                    self.push(if i == 0 { "{" } else { ", " });
                    self.quoted_bytes(s);
                }
                self.push("}");
            }
            _ => self.push("..."),
        }
    }
}

/// Element count from dims; `None` for a negative dim or an overflow (where
/// the reference raises).
fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// `[A-Za-z_][A-Za-z0-9_]*`, ASCII only.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `TensorProto.DataType` codes the data printing distinguishes (the field
/// is a plain int32, so unknown codes arrive as numbers too).
mod dt {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
    pub const FLOAT8E4M3FN: i32 = 17;
    pub const FLOAT8E5M2FNUZ: i32 = 20;
    pub const FLOAT8E8M0: i32 = 24;
}

/// Element type names of the textual syntax, by code. Kept here rather than
/// shared with `dtype` because the printer must spell unknown codes (and 0)
/// as the reference does: `undefined`.
const ELEM_TYPE_NAMES: [&str; 29] = [
    "undefined",
    "float",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "int32",
    "int64",
    "string",
    "bool",
    "float16",
    "double",
    "uint32",
    "uint64",
    "complex64",
    "complex128",
    "bfloat16",
    "float8e4m3fn",
    "float8e4m3fnuz",
    "float8e5m2",
    "float8e5m2fnuz",
    "uint4",
    "int4",
    "float4e2m1",
    "float8e8m0",
    "uint2",
    "int2",
    "float6e2m3",
    "float6e3m2",
];

fn elem_type_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| ELEM_TYPE_NAMES.get(i))
        .copied()
        .unwrap_or("undefined")
}

fn attribute_type_name(t: AttributeType) -> &'static str {
    match t {
        AttributeType::FLOAT => "float",
        AttributeType::INT => "int",
        AttributeType::STRING => "string",
        AttributeType::TENSOR => "tensor",
        AttributeType::GRAPH => "graph",
        AttributeType::SPARSE_TENSOR => "sparse_tensor",
        AttributeType::TYPE_PROTO => "type_proto",
        AttributeType::FLOATS => "floats",
        AttributeType::INTS => "ints",
        AttributeType::STRINGS => "strings",
        AttributeType::TENSORS => "tensors",
        AttributeType::GRAPHS => "graphs",
        AttributeType::SPARSE_TENSORS => "sparse_tensors",
        AttributeType::TYPE_PROTOS => "type_protos",
        AttributeType::UNDEFINED => "undefined",
    }
}

/// A number as C++ `std::to_chars(value)` writes it (the reference's number
/// format).
trait Number: Copy {
    fn write(self, out: &mut String);
}

macro_rules! integer_number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn write(self, out: &mut String) {
                // Writing to a String cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_number!(u8, i8, u16, i16, i32, u32, i64, u64);

impl Number for f32 {
    fn write(self, out: &mut String) {
        out.push_str(&format_f32(self));
    }
}

impl Number for f64 {
    fn write(self, out: &mut String) {
        out.push_str(&format_f64(self));
    }
}

/// `f32` as `std::to_chars(float)`: the shortest digits that read back as
/// the same `f32`, in fixed or scientific notation, whichever is shorter.
fn format_f32(x: f32) -> String {
    if !x.is_finite() {
        return non_finite(x.is_nan(), x.is_sign_negative());
    }
    let decimal = Decimal::shortest(&format!("{x:e}"), f64::from(x), |s| {
        s.parse::<f32>().ok() == Some(x.abs())
    });
    decimal.render(|| abs_as_u128(f64::from(x)))
}

/// `f64` as `std::to_chars(double)`; see [`format_f32`].
fn format_f64(x: f64) -> String {
    if !x.is_finite() {
        return non_finite(x.is_nan(), x.is_sign_negative());
    }
    let decimal = Decimal::shortest(&format!("{x:e}"), x, |s| s.parse::<f64>().ok() == Some(x.abs()));
    decimal.render(|| abs_as_u128(x))
}

/// NaN keeps its sign, as the reference prints it (`nan`, `-nan`).
fn non_finite(nan: bool, negative: bool) -> String {
    let sign = if negative { "-" } else { "" };
    let body = if nan { "nan" } else { "inf" };
    format!("{sign}{body}")
}

/// `|x|` as an integer, for integral `x` below 2^128.
fn abs_as_u128(x: f64) -> Option<u128> {
    let a = x.abs();
    (a.fract() == 0.0 && a < 2f64.powi(128)).then_some(a as u128)
}

/// A finite nonzero `|x|` as `m × 2^e` with integer `m`.
fn binary_parts(x: f64) -> Option<(u128, i64)> {
    let bits = x.abs().to_bits();
    let fraction = u128::from(bits & ((1 << 52) - 1));
    let biased = i64::try_from(bits >> 52).unwrap_or(0);
    let (m, e) = match biased {
        0 => (fraction, -1074),
        0x7ff => return None,
        _ => (fraction | (1 << 52), biased - 1075),
    };
    (m != 0).then_some((m, e))
}

/// A finite value as `±d.ddd × 10^exp`: ASCII digits without trailing zeros
/// (except a lone `0`).
#[derive(Debug, Clone, PartialEq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    /// From Rust's shortest round-trip form (`{:e}`, e.g. `-1.2345e-7`) of a
    /// value whose exact magnitude is `|exact|`; `round_trips` says whether
    /// a decimal string reads back as that magnitude in the value's type.
    ///
    /// Rust and `std::to_chars` agree on the shortest digit count and on
    /// taking the candidate closest to the value, but not on exact ties:
    /// Rust rounds half up (f32 1762400.25 gives `1762400.3`), to_chars
    /// (Ryu) half to even (`1762400.2`). We redo the tie the Ryu way.
    fn shortest(sci: &str, exact: f64, round_trips: impl Fn(&str) -> bool) -> Decimal {
        let (negative, sci) = match sci.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, sci),
        };
        let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
        let mut decimal = Decimal {
            negative,
            digits: mantissa.bytes().filter(u8::is_ascii_digit).collect(),
            exp: exponent.parse().unwrap_or(0),
        };
        decimal.trim();
        decimal.round_tie_to_even(exact.abs(), round_trips);
        decimal
    }

    fn trim(&mut self) {
        while self.digits.len() > 1 && self.digits.last() == Some(&b'0') {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.digits.push(b'0');
        }
    }

    /// Unsigned `digits × 10^exp` in scientific form for `str::parse`.
    fn magnitude(&self) -> String {
        let digits = String::from_utf8_lossy(&self.digits);
        let (first, rest) = digits.split_at(1.min(digits.len()));
        format!("{first}.{rest}0e{}", self.exp)
    }

    /// If the value lies exactly halfway between our odd last digit and a
    /// neighbour that also round-trips, take the neighbour (it is even).
    fn round_tie_to_even(&mut self, magnitude: f64, round_trips: impl Fn(&str) -> bool) {
        let Some(&last) = self.digits.last() else {
            return;
        };
        if (last - b'0').is_multiple_of(2) {
            return;
        }
        for up in [false, true] {
            // Halfway point: the lower of the two candidates followed by a 5.
            let mut half = if up { self.clone() } else { self.step(false) };
            if half.digits.len() < self.digits.len() {
                continue; // stepping down reached zero or lost a digit
            }
            half.digits.push(b'5');
            if !half.is_exactly(magnitude) {
                continue;
            }
            let neighbour = self.step(up);
            if neighbour.digits != [b'0'] && round_trips(&neighbour.magnitude()) {
                self.digits = neighbour.digits;
                self.exp = neighbour.exp;
            }
            return;
        }
    }

    /// The next decimal with as many digits, one unit in the last place up
    /// or down, without trailing zeros (our last digit is odd, so going
    /// down never borrows).
    fn step(&self, up: bool) -> Decimal {
        let mut next = self.clone();
        if up {
            let mut carry = true;
            for d in next.digits.iter_mut().rev() {
                if *d == b'9' {
                    *d = b'0';
                } else {
                    *d += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                next.digits.insert(0, b'1');
                next.exp += 1;
            }
        } else if let Some(d) = next.digits.last_mut() {
            *d = d.saturating_sub(1).max(b'0');
        }
        next.trim();
        next
    }

    /// Whether `digits × 10^exp` (not trimmed) is exactly `magnitude`, in
    /// integer arithmetic: `m × 2^e` equals `K × 10^j` iff the odd parts
    /// and the powers of two match once the 5^|j| is moved to one side.
    fn is_exactly(&self, magnitude: f64) -> bool {
        let Some((m, e)) = binary_parts(magnitude) else {
            return false;
        };
        let Some(k) = std::str::from_utf8(&self.digits)
            .ok()
            .and_then(|d| d.parse::<u128>().ok())
            .filter(|&k| k != 0)
        else {
            return false;
        };
        let n = i64::try_from(self.digits.len()).unwrap_or(i64::MAX);
        let j = self.exp.saturating_sub(n - 1);
        let (m_odd, m_twos) = (m >> m.trailing_zeros(), e + i64::from(m.trailing_zeros()));
        let (k_odd, k_twos) = (k >> k.trailing_zeros(), i64::from(k.trailing_zeros()));
        let five_pow = |p: i64| u32::try_from(p.unsigned_abs()).ok().and_then(|p| 5u128.checked_pow(p));
        if j >= 0 {
            // m_odd × 2^m_twos = k_odd × 5^j × 2^(k_twos + j)
            five_pow(j).and_then(|f| k_odd.checked_mul(f)) == Some(m_odd) && m_twos == k_twos + j
        } else {
            // m_odd × 5^-j × 2^(m_twos - j) = k_odd × 2^k_twos
            five_pow(j).and_then(|f| m_odd.checked_mul(f)) == Some(k_odd) && m_twos - j == k_twos
        }
    }

    /// `std::to_chars` layout: whichever of fixed and scientific (`%e`
    /// style, two-digit exponent minimum) is shorter, fixed on a tie. Fixed
    /// notation of a large integral value prints its exact digits, like
    /// `%.0f` (2^32 as f32 is `4294967296`, not the shortest `4294967300`);
    /// `exact_integer` supplies them.
    fn render(&self, exact_integer: impl FnOnce() -> Option<u128>) -> String {
        let digits = String::from_utf8_lossy(&self.digits);
        let n = i64::try_from(digits.len()).unwrap_or(i64::MAX);
        let exp = self.exp;
        let exp_digits = if exp.abs() >= 100 { 3 } else { 2 };
        let sci_len = n + i64::from(n > 1) + 2 + exp_digits;
        let integral = exp >= 0 && n <= exp + 1;
        let fixed_len = if integral {
            exp + 1
        } else if exp >= 0 {
            n + 1
        } else {
            n + 1 - exp
        };

        let mut s = String::new();
        if self.negative {
            s.push('-');
        }
        if sci_len < fixed_len {
            let (first, rest) = digits.split_at(1.min(digits.len()));
            s.push_str(first);
            if !rest.is_empty() {
                s.push('.');
                s.push_str(rest);
            }
            s.push('e');
            s.push(if exp < 0 { '-' } else { '+' });
            s.push_str(&format!("{:02}", exp.unsigned_abs()));
        } else if integral {
            match exact_integer() {
                Some(v) => s.push_str(&v.to_string()),
                // Unreachable for finite floats; pad the digits instead.
                None => {
                    s.push_str(&digits);
                    let zeros = usize::try_from(exp + 1 - n).unwrap_or(0);
                    s.extend(std::iter::repeat_n('0', zeros));
                }
            }
        } else if exp >= 0 {
            // Here exp + 1 < n, so the point falls inside the digits.
            let point = usize::try_from(exp + 1).unwrap_or(0).min(digits.len());
            let (int, frac) = digits.split_at(point);
            s.push_str(int);
            s.push('.');
            s.push_str(frac);
        } else {
            s.push_str("0.");
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            s.extend(std::iter::repeat_n('0', zeros));
            s.push_str(&digits);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use protobuf::MessageField;

    use super::*;
    use crate::onnx::proto::tensor_shape_proto::Dimension;
    use crate::onnx::proto::type_proto::{Map, Sequence, Tensor as TensorType};
    use crate::onnx::proto::{FunctionProto, SparseTensorProto};

    fn tensor_type(elem: i32, dims: Option<&[Option<&str>]>) -> TypeProto {
        let shape = dims.map(|dims| TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: d.map(|d| match d.parse() {
                        Ok(v) => dimension::Value::DimValue(v),
                        Err(_) => dimension::Value::DimParam(d.to_string()),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        TypeProto {
            value: Some(type_proto::Value::TensorType(TensorType {
                elem_type: Some(elem),
                shape: MessageField::from_option(shape),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn info(name: &str, tp: TypeProto) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            type_: MessageField::some(tp),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn attr(name: &str, kind: AttributeType) -> AttributeProto {
        let mut a = AttributeProto {
            name: Some(name.into()),
            ..Default::default()
        };
        a.set_type(kind);
        a
    }

    fn tensor(name: &str, data_type: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            data_type: Some(data_type),
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    fn graph(name: &str, nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto {
            name: Some(name.into()),
            node: nodes,
            ..Default::default()
        }
    }

    /// Graph `g` holding one node with every attribute kind but graphs.
    fn every_attribute_graph() -> GraphProto {
        use AttributeType as A;
        let mut n = node("Everything", &["x", ""], &["y"]);
        n.domain = Some("my.d".into());
        let mut a = attr("f", A::FLOAT);
        a.f = Some(0.5);
        n.attribute.push(a);
        let mut a = attr("i", A::INT);
        a.i = Some(-3);
        n.attribute.push(a);
        let mut a = attr("s", A::STRING);
        a.s = Some(b"a\"b\\ \xff".to_vec().into());
        n.attribute.push(a);
        let mut a = attr("t", A::TENSOR);
        let mut t = tensor("c", 6, &[2]);
        t.int32_data = vec![4, 5];
        a.t = MessageField::some(t);
        n.attribute.push(a);
        let seq = TypeProto {
            value: Some(type_proto::Value::SequenceType(Sequence {
                elem_type: MessageField::some(tensor_type(1, Some(&[Some("N")]))),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut a = attr("tp", A::TYPE_PROTO);
        a.tp = MessageField::some(seq);
        n.attribute.push(a);
        let mut a = attr("fs", A::FLOATS);
        a.floats = vec![1.0, 2.5, -0.0];
        n.attribute.push(a);
        let mut a = attr("is", A::INTS);
        a.ints = vec![1, -2];
        n.attribute.push(a);
        let mut a = attr("ss", A::STRINGS);
        a.strings = vec![b"a".to_vec().into(), b"b c".to_vec().into()];
        n.attribute.push(a);
        let mut a = attr("ts", A::TENSORS);
        let mut unnamed = tensor("", 1, &[]);
        unnamed.float_data = vec![1.0];
        let mut raw = tensor("u", 2, &[2]);
        raw.raw_data = Some(vec![1, 255].into());
        a.tensors = vec![unnamed, raw];
        n.attribute.push(a);
        let sparse = SparseTensorProto {
            dims: vec![4],
            ..Default::default()
        };
        let mut a = attr("sp", A::SPARSE_TENSOR);
        a.sparse_tensor = MessageField::some(sparse.clone());
        n.attribute.push(a);
        let mut a = attr("sps", A::SPARSE_TENSORS);
        a.sparse_tensors = vec![sparse];
        n.attribute.push(a);
        let map = TypeProto {
            value: Some(type_proto::Value::MapType(Map {
                key_type: Some(7),
                value_type: MessageField::some(tensor_type(1, None)),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut a = attr("tps", A::TYPE_PROTOS);
        a.type_protos = vec![map, tensor_type(9, Some(&[]))];
        n.attribute.push(a);
        let mut a = attr("r", A::FLOAT);
        a.ref_attr_name = Some("alpha".into());
        n.attribute.push(a);
        n.attribute.push(AttributeProto {
            name: Some("u".into()),
            ..Default::default()
        });
        graph("g", vec![n])
    }

    #[test]
    fn every_attribute_kind() {
        let expected = concat!(
            "g () => () {\n",
            "   y = my.d.Everything <f: float = 0.5, i: int = -3, ",
            "s: string = \"a\\\"b\\\\ \u{fffd}\", t: tensor = int32[2] c {4,5}, ",
            "tp: type_proto = seq(float[N]), fs: floats = [1, 2.5, -0], ",
            "is: ints = [1, -2], ss: strings = [\"a\", \"b c\"], ",
            "ts: tensors = [float {1}, uint8[2] u {1,255}], sp: sparse_tensor = , ",
            "sps: sparse_tensors = , tps: type_protos = [map(int64, float[]), bool], ",
            "r: float = @alpha, u: undefined = > (x, \"\")\n",
            "}",
        );
        assert_eq!(graph_to_text(&every_attribute_graph()), expected);
    }

    /// `main` with an If whose then-branch has an initializer and value_info
    /// and whose else-branch nests another If.
    fn if_graph() -> GraphProto {
        let mut then = graph("then", vec![node("Mul", &["x", "k"], &["t"])]);
        let mut k = tensor("k", 1, &[1]);
        k.float_data = vec![2.0];
        then.initializer.push(k);
        then.value_info
            .push(info("tmp 1", tensor_type(7, Some(&[Some("3"), None]))));
        then.output.push(info("t", tensor_type(1, Some(&[Some("N")]))));
        let mut inner = graph("inner", vec![node("Neg", &["x"], &["z"])]);
        inner.output.push(info("z", tensor_type(1, None)));
        let mut nested_if = node("If", &["c"], &["e"]);
        for branch in ["then_branch", "else_branch"] {
            let mut a = attr(branch, AttributeType::GRAPH);
            a.g = MessageField::some(inner.clone());
            nested_if.attribute.push(a);
        }
        let mut other = graph("else", vec![nested_if]);
        other.output.push(info("e", tensor_type(1, Some(&[Some("N")]))));

        let mut n = node("If", &["c"], &["y"]);
        n.name = Some("if/0".into());
        for (branch, g) in [("then_branch", then), ("else_branch", other)] {
            let mut a = attr(branch, AttributeType::GRAPH);
            a.g = MessageField::some(g);
            n.attribute.push(a);
        }
        let mut main = graph("main", vec![n]);
        main.input.push(info("c", tensor_type(9, Some(&[]))));
        main.input.push(info("x", tensor_type(1, Some(&[Some("N"), None]))));
        main.output.push(info("y", tensor_type(1, None)));
        main
    }

    #[test]
    fn graph_with_if_subgraphs() {
        let expected = "\
main (bool c, float[N,?] x) => (float[] y) {
   [\"if/0\"] y = If (c) <then_branch: graph = then () => (float[N] t) 
      <float[1] k =  {2}, int64[3,?] \"tmp 1\">
{
      t = Mul (x, k)
   }, else_branch: graph = else () => (float[N] e) {
      e = If (c) <then_branch: graph = inner () => (float[] z) {
         z = Neg (x)
      }, else_branch: graph = inner () => (float[] z) {
         z = Neg (x)
      }>
   }>
}";
        assert_eq!(graph_to_text(&if_graph()), expected);
    }

    /// A model with header fields, metadata, a graph list attribute and two
    /// local functions (one overloaded).
    fn function_model() -> ModelProto {
        let opset = |domain: &str, version| OperatorSetIdProto {
            domain: Some(domain.into()),
            version: Some(version),
            ..Default::default()
        };
        let mut call = node("Square", &["x"], &["y"]);
        call.domain = Some("local".into());
        call.overload = Some("v2".into());
        let mut loops = node("Branches", &["y"], &["z"]);
        let mut a = attr("gs", AttributeType::GRAPHS);
        a.graphs = vec![graph("a", vec![]), graph("b", vec![node("Neg", &["y"], &["w"])])];
        loops.attribute.push(a);
        let mut main = graph("main", vec![call, loops]);
        main.input.push(info("x", tensor_type(1, Some(&[Some("2")]))));
        main.output.push(info("z", tensor_type(1, Some(&[Some("2")]))));

        let mut scaled = node("Scale", &["a"], &["c"]);
        let mut a = attr("alpha", AttributeType::FLOAT);
        a.ref_attr_name = Some("alpha".into());
        scaled.attribute.push(a);
        let square = FunctionProto {
            name: Some("Square".into()),
            domain: Some("local".into()),
            overload: Some("v2".into()),
            input: vec!["a".into()],
            output: vec!["c".into()],
            attribute: vec!["alpha".into(), "beta".into()],
            node: vec![scaled],
            opset_import: vec![opset("", 21), opset("local", 1)],
            ..Default::default()
        };
        let plain = FunctionProto {
            name: Some("Plain".into()),
            domain: Some("local".into()),
            node: vec![node("Identity", &["p"], &["q"])],
            input: vec!["p".into()],
            output: vec!["q".into()],
            ..Default::default()
        };
        ModelProto {
            ir_version: Some(10),
            opset_import: vec![opset("", 21), opset("local", 1)],
            producer_name: Some("eexc".into()),
            domain: Some(String::new()),
            model_version: Some(3),
            doc_string: Some("two\nlines \"q\"".into()),
            metadata_props: vec![StringStringEntryProto {
                key: Some("k".into()),
                value: Some("v".into()),
                ..Default::default()
            }],
            graph: MessageField::some(main),
            functions: vec![square, plain],
            ..Default::default()
        }
    }

    #[test]
    fn model_header_and_functions() {
        let expected = "\
<
   ir_version: 10,
   opset_import: [\"\" : 21, \"local\" : 1],
   producer_name: \"eexc\",
   domain: \"\",
   model_version: 3,
   doc_string: \"two
lines \\\"q\\\"\",
   metadata_props: [\"k\": \"v\"]
>
main (float[2] x) => (float[2] z) {
   y = local.Square:v2 (x)
   z = Branches (y) <gs: graphs = [a () => () {
   }, b () => () {
      w = Neg (y)
   }]>
}
<
  domain: \"local\",
  overload: \"v2\",
  opset_import: [\"\" : 21,\"local\" : 1]
>
Square <alpha,beta>(a) => (c)
{
   c = Scale <alpha: float = @alpha> (a)
}
<
  domain: \"local\",
  opset_import: []
>
Plain (p) => (q)
{
   q = Identity (p)
}";
        assert_eq!(model_to_text(&function_model()), expected);
    }

    /// Initializers in each storage, the reference's failures included.
    fn storage_graph() -> GraphProto {
        let mut g = graph("storage", vec![]);
        let mut push = |mut t: TensorProto, f: &dyn Fn(&mut TensorProto)| {
            f(&mut t);
            g.initializer.push(t);
        };
        push(tensor("i8", 3, &[2]), &|t| t.raw_data = Some(vec![0xff, 2].into()));
        push(tensor("f16", 10, &[1]), &|t| t.raw_data = Some(vec![0x00, 0x3c].into()));
        push(tensor("u32", 12, &[1]), &|t| t.raw_data = Some(vec![0xff; 4].into()));
        push(tensor("f", 1, &[]), &|t| {
            t.raw_data = Some(0.1f32.to_le_bytes().to_vec().into())
        });
        push(tensor("d", 11, &[1]), &|t| t.double_data = vec![1e100]);
        push(tensor("b", 9, &[2]), &|t| t.int32_data = vec![1, 0]);
        push(tensor("u64", 13, &[1]), &|t| t.uint64_data = vec![u64::MAX]);
        push(tensor("s", 8, &[2]), &|t| {
            t.string_data = vec![b"x".to_vec().into(), b"\"".to_vec().into()]
        });
        push(tensor("none", 8, &[0]), &|_| {});
        push(tensor("i4", 22, &[2]), &|t| t.raw_data = Some(vec![0x21].into()));
        push(tensor("c64", 14, &[1]), &|t| t.float_data = vec![1.0, 2.0]);
        push(tensor("", 99, &[1]), &|t| t.int32_data = vec![1]);
        push(tensor("ext", 1, &[2]), &|t| {
            t.set_data_location(DataLocation::EXTERNAL);
            t.external_data = vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some("w.bin".into()),
                ..Default::default()
            }];
        });
        g
    }

    #[test]
    fn tensor_storage() {
        let expected = concat!(
            "storage () => () \n",
            "   <int8[2] i8 =  {-1,2}, float16[1] f16 =  {15360}, ",
            "uint32[1] u32 =  {4294967295}, float f =  {0.1}, double[1] d =  {1e+100}, ",
            "bool[2] b =  {1,0}, uint64[1] u64 =  {18446744073709551615}, ",
            "string[2] s = {\"x\", \"\\\"\"}, string[0] none = }, int4[2] i4 = ..., ",
            "complex64[1] c64 = ..., undefined[1] = ..., ",
            "float[2] ext = [\"location\": \"w.bin\"]>\n",
            "{\n}",
        );
        assert_eq!(graph_to_text(&storage_graph()), expected);
    }

    #[test]
    fn malformed_protos_still_print() {
        assert_eq!(
            model_to_text(&ModelProto::default()),
            "<\n   ir_version: 0,\n   opset_import: []\n>\n\"\" () => () {\n}"
        );
        // Raw data of the wrong size and negative dims: onnx raises here.
        let mut g = graph("bad", vec![]);
        let mut short = tensor("short", 1, &[2]);
        short.raw_data = Some(vec![0; 5].into());
        let mut negative = tensor("neg", 7, &[-1]);
        negative.raw_data = Some(vec![].into());
        g.initializer = vec![short, negative];
        // A graph-typed attribute without its graph, an int-typed one with
        // a graph (it still moves the attributes after the inputs), an
        // unnamed node with a present but empty name, a value without type.
        let mut n = node("", &[""], &[]);
        n.name = Some(String::new());
        n.attribute.push(attr("g", AttributeType::GRAPH));
        let mut a = attr("i", AttributeType::INT);
        a.g = MessageField::some(GraphProto::default());
        n.attribute.push(a);
        g.node.push(n);
        g.input.push(ValueInfoProto::default());
        let expected = concat!(
            "bad ( \"\") => () \n",
            "   <float[2] short = ..., int64[-1] neg = ...>\n",
            "{\n",
            "   [\"\"]  =  (\"\") <g: graph = \"\" () => () {\n",
            "   }, i: int = 0>\n",
            "}",
        );
        assert_eq!(graph_to_text(&g), expected);
    }

    #[test]
    // The exact ties (1762400.25 and the like) need all their digits.
    #[allow(clippy::excessive_precision)]
    fn floats_as_to_chars() {
        let f32_cases: &[(f32, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333334"),
            (1e-3, "0.001"),
            (1e-4, "1e-04"),
            (1e4, "10000"),
            (1e5, "1e+05"),
            (123456.0, "123456"),
            (125000.0, "125000"),
            (1.5e13, "1.5e+13"),
            (4294967296.0, "4294967296"),
            (16777217.0, "16777216"),
            (1e-45, "1e-45"),
            (f32::MAX, "3.4028235e+38"),
            (1762400.25, "1762400.2"),
            (-43286.0625, "-43286.062"),
            (f32::INFINITY, "inf"),
            (f32::NEG_INFINITY, "-inf"),
            (f32::NAN, "nan"),
            (-f32::NAN, "-nan"),
        ];
        for &(x, text) in f32_cases {
            assert_eq!(format_f32(x), text, "f32 {x:e}");
        }
        let f64_cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (99999999488.0, "99999999488"),
            (123456789012345678.0, "123456789012345680"),
            (562949953421312.25, "562949953421312.2"),
            (562949953421312.75, "562949953421312.8"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for &(x, text) in f64_cases {
            assert_eq!(format_f64(x), text, "f64 {x:e}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("x"));
        assert!(is_identifier("_a1"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier("a/b"));
        assert!(!is_identifier("é"));
    }
}
