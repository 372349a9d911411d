//! ONNX model files: lossless load/save (including external data) and the
//! textual printer.

pub mod printer;
