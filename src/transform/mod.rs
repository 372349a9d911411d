//! Graph rewrites. Surgery goes through [`builder::GraphBuilder`]: new nodes,
//! constants and names are created in one place, opset differences are
//! handled by its op helpers, and passes only say what to wire where.

pub mod builder;
