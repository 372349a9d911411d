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
    let mut p = Printer::new();
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
}

impl Printer {
    fn new() -> Self {
        Printer {
            out: String::new(),
            indent: STEP,
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
        if external {
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
            3 => decode(self, t, raw, |b: [u8; 1]| i8::from_le_bytes(b)),
            2 | 9 | 17..=20 | 24 => decode(self, t, raw, |b: [u8; 1]| b[0]),
            5 => decode(self, t, raw, i16::from_le_bytes),
            4 | 10 | 16 => decode(self, t, raw, u16::from_le_bytes),
            6 => decode(self, t, raw, i32::from_le_bytes),
            12 => decode(self, t, raw, u32::from_le_bytes),
            7 => decode(self, t, raw, i64::from_le_bytes),
            13 => decode(self, t, raw, u64::from_le_bytes),
            1 => decode(self, t, raw, f32::from_le_bytes),
            11 => decode(self, t, raw, f64::from_le_bytes),
            // Packed sub-byte types, complex, string, unknown codes.
            _ => self.push("..."),
        }
    }

    fn typed_data(&mut self, t: &TensorProto) {
        match t.data_type() {
            2..=6 | 9 | 10 | 16..=20 | 24 => self.numbers(" {", ",", "}", &t.int32_data),
            7 => self.numbers(" {", ",", "}", &t.int64_data),
            12 | 13 => self.numbers(" {", ",", "}", &t.uint64_data),
            1 => self.numbers(" {", ",", "}", &t.float_data),
            11 => self.numbers(" {", ",", "}", &t.double_data),
            // Quirk kept: no space before `{`, and no `{` at all when empty
            // (an empty string tensor prints just `}`).
            8 => {
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

/// Element type names of the textual syntax. Kept here rather than shared
/// with `dtype` because the printer must spell unknown codes (and 0) as the
/// reference does: `undefined`.
fn elem_type_name(code: i32) -> &'static str {
    match code {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        24 => "float8e8m0",
        25 => "uint2",
        26 => "int2",
        27 => "float6e2m3",
        28 => "float6e3m2",
        _ => "undefined",
    }
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
                out.push_str(&self.to_string());
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
        if (last - b'0') % 2 == 0 {
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
    use super::*;

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
