//! ONNX model files: lossless load/save (external data included), data-type
//! facts, and the textual printer.
//!
//! Messages come from [`proto`], generated from our proto2 schema, not from a
//! third-party crate: see docs/protobuf-layer.md for why.

mod canonical;
pub mod dtype;
mod error;
pub mod external;
mod io;
pub mod printer;
pub mod proto;
pub mod tensor_data;
pub mod validate;

pub use error::OnnxError;
pub use io::{
    LoadedModel, load_model, load_model_for_transform, load_model_from_bytes, read_model, save_model, write_atomically,
};

/// Every tensor name `node` reads: its inputs and, inside its subgraphs
/// (`If` branches, `Loop` bodies, nested), what their nodes read and what
/// they return, since a subgraph reads outer tensors by name.
pub fn names_read<E: Extend<String>>(node: &proto::NodeProto, into: &mut E) {
    into.extend(node.input.iter().cloned());
    for a in &node.attribute {
        for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
            for inner in &g.node {
                names_read(inner, into);
            }
            into.extend(g.output.iter().map(|o| o.name().to_string()));
        }
    }
}

/// Hand-built messages for unit tests.
#[cfg(test)]
pub(crate) mod test_protos {
    use super::proto::{NodeProto, ValueInfoProto};

    /// A value declared by name only.
    pub fn vi(name: &str) -> ValueInfoProto {
        let mut v = ValueInfoProto::new();
        v.set_name(name.into());
        v
    }

    pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        let mut n = NodeProto::new();
        n.set_name(name.into());
        n.set_op_type(op.into());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.iter().map(|s| s.to_string()).collect();
        n
    }
}
