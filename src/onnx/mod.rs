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

pub use error::OnnxError;
pub use io::{LoadedModel, load_model, load_model_from_bytes, read_model, save_model, write_atomically};
