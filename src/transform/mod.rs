//! Graph rewrites. New nodes, constants and names are created by
//! [`builder::GraphBuilder`] (opset differences are handled by its op
//! helpers, passes only say what to wire where); [`placement`] then puts
//! every constant in the graph that reads it, as the last step of every
//! command that writes a model.

pub mod builder;
pub mod placement;
