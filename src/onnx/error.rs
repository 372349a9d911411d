use std::path::PathBuf;

/// What went wrong reading or writing a model file. Every variant names the
/// file, and where it applies the tensor, so the CLI can print one line.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file, not an ONNX model")]
    Empty { path: PathBuf },
    #[error("{path}: not an ONNX model (protobuf decoding failed: {reason})")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: not an ONNX model: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    /// A model that decodes but breaks the operator schema (validate.rs).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: tensor '{tensor}': external data: {reason}")]
    ExternalData {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode model: {reason}")]
    Encode { path: PathBuf, reason: String },
}
