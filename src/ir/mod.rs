//! The graph IR the analyses and transforms work on.

pub mod constant;
pub mod dims;
mod graph;
pub mod load_time;
mod names;
pub mod types;

pub use constant::Folded;
pub use dims::{DimError, DimValues};
pub use graph::{Graph, IrError, Model, Node, NodeId, Subgraph, Value, ValueId, ValueKind, stable_topological_order};
pub use names::NameGenerator;
pub use types::{Atom, Dim, DimExpr, DimTerm, TensorType};
