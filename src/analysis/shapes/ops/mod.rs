//! Inference rules, one module per family of ops.

use super::{Inferred, OpContext, RuleError};

/// Output types (and folded contents) of one standard-domain node.
pub fn infer_op(ctx: &OpContext) -> Result<Vec<Inferred>, RuleError> {
    if !ctx.node.is_onnx_domain() {
        return Err(RuleError::Unsupported);
    }
    Err(RuleError::Unsupported)
}
