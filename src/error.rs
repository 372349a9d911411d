use std::path::PathBuf;

use crate::ir::IrError;
use crate::onnx::OnnxError;

/// Errors at the library boundary; each names the file and, where it
/// applies, the graph, node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{path}: {source}")]
    Ir {
        path: PathBuf,
        #[source]
        source: Box<IrError>,
    },
    #[error("{path}: {source}")]
    Dims {
        path: PathBuf,
        #[source]
        source: crate::ir::DimError,
    },
}
