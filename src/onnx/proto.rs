//! ONNX protobuf messages, generated at build time from `proto/onnx.proto`
//! (proto2: every scalar field is an `Option`, unknown fields are kept).
//!
//! Use the accessor methods (`node.op_type()`, `attr.i()`) for reading: they
//! return the proto default when a field is absent.

include!(concat!(env!("OUT_DIR"), "/onnx_proto/mod.rs"));

pub use self::onnx::*;
