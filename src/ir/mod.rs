//! The graph IR the analyses and transforms work on.

pub mod constant;
mod graph;
mod names;
pub mod types;

pub use constant::Folded;
pub use graph::{Graph, IrError, Model, Node, NodeId, Subgraph, Value, ValueId, ValueKind};
pub use names::NameGenerator;
pub use types::{Dim, DimProduct, TensorType};
