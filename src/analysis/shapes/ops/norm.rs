//! Normalisations (BatchNormalization, LayerNormalization,
//! InstanceNormalization, ...) and the Softmax family. Outputs keep the
//! input's shape; the work here is statistics outputs and axis checks.

use super::dims::unify;
use super::util::{Rule, axis, input, int_attr, invalid, result, same_as, unranked};
use crate::analysis::shapes::{Inferred, OpContext, RuleError};
use crate::ir::{Dim, TensorType};
use crate::onnx::dtype::ElemType;

/// Channel count of `N×C×…` input 0 (unknown when its rank is).
fn channels(t: &TensorType) -> Result<Dim, RuleError> {
    match t.shape.as_deref() {
        Some([_, c, ..]) => Ok(c.clone()),
        Some(s) => Err(invalid(format!("X has rank {} but needs N×C×…", s.len()))),
        None => Ok(Dim::Unknown),
    }
}

/// Checks that 1-D per-channel inputs have `c` entries.
fn check_per_channel(ctx: &OpContext, c: &Dim, params: &[(usize, &str)]) -> Result<(), RuleError> {
    for &(i, name) in params {
        if let Some([d]) = ctx.input_shape(i)
            && unify(d, c).is_none()
        {
            return Err(invalid(format!("{name} has {d} values but X has {c} channels")));
        }
    }
    Ok(())
}

/// BatchNormalization: Y like X, plus per-channel `[C]` statistics: before
/// opset 14 (mean, var, saved_mean, saved_var), from 14 (running_mean,
/// running_var) in training mode. Nodes list only the outputs they use.
pub(super) fn batch_norm(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let c = channels(t)?;
    check_per_channel(ctx, &c, &[(1, "scale"), (2, "B"), (3, "mean"), (4, "var")])?;
    // Statistics have the running mean's type (U, which may differ from T at 15+).
    let stat_elem = ctx.input(3).map_or(t.elem, |m| m.elem);
    let mut outs = vec![Inferred::of(t.clone())];
    outs.extend(std::iter::repeat_n(result(stat_elem, vec![c]), 4));
    Ok(outs)
}

/// InstanceNormalization (per-channel scale and B) and GroupNormalization.
pub(super) fn instance_norm(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    if ctx.node.op_type == "InstanceNormalization" {
        check_per_channel(ctx, &channels(t)?, &[(1, "scale"), (2, "B")])?;
    }
    Ok(vec![Inferred::of(t.clone())])
}

/// LayerNormalization: Y like X; Mean and InvStdDev keep the dims before
/// `axis` and are 1 from there on, typed by `stash_type` (float by default).
pub(super) fn layer_norm(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let stash = ElemType(i32::try_from(int_attr(ctx, "stash_type", 1)).map_err(|_| invalid("bad stash_type"))?);
    let stat = match t.shape.as_deref() {
        Some(s) => {
            let a = axis(int_attr(ctx, "axis", -1), s.len())?;
            let mut d = s[..a].to_vec();
            d.resize(s.len(), Dim::Known(1));
            result(stash, d)
        }
        None => unranked(stash),
    };
    Ok(vec![Inferred::of(t.clone()), stat.clone(), stat])
}

/// Softmax, LogSoftmax, Hardmax: shape unchanged. Before opset 13 `axis`
/// (default 1) only marks where the input is coerced to 2-D; from 13 it is
/// the axis reduced over (default -1). Either way it must name an axis (from
/// opset 11, which first bounds it).
pub(super) fn softmax(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    if ctx.opset >= 11
        && let Some(r) = t.rank()
    {
        let default = if ctx.opset >= 13 { -1 } else { 1 };
        axis(int_attr(ctx, "axis", default), r)?;
    }
    Ok(vec![same_as(ctx, 0)?])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Case;

    #[test]
    fn batch_norm_outputs() {
        let bn = || {
            Case::new("BatchNormalization")
                .input("float[N,64,56,56]")
                .input("float[64]")
                .input("float[64]")
                .input("float[64]")
                .input("float[64]")
        };
        assert_eq!(bn().ty(), "float[N,64,56,56]");
        let train = bn().opset(9).outputs(5).types();
        assert_eq!(
            train,
            ["float[N,64,56,56]", "float[64]", "float[64]", "float[64]", "float[64]"]
        );
        let t14 = bn().opset(14).int("training_mode", 1).outputs(3).types();
        assert_eq!(t14[1..], ["float[64]", "float[64]"]);
        let bad = Case::new("BatchNormalization")
            .input("float[N,64,7,7]")
            .input("float[32]")
            .input("float[64]")
            .input("float[64]")
            .input("float[64]");
        assert!(bad.invalid().contains("scale has 32"));
        let spatial0 = Case::new("BatchNormalization")
            .opset(7)
            .int("spatial", 0)
            .input("float[N,4,2]")
            .input("float[4,2]")
            .input("float[4,2]")
            .input("float[4,2]")
            .input("float[4,2]");
        assert_eq!(spatial0.ty(), "float[N,4,2]");
        assert!(
            Case::new("BatchNormalization")
                .input("float[4]")
                .invalid()
                .contains("rank 1")
        );
    }

    #[test]
    fn layer_norm_statistics() {
        let ln = Case::new("LayerNormalization")
            .opset(17)
            .outputs(3)
            .input("float[N,S,768]")
            .input("float[768]");
        assert_eq!(ln.types(), ["float[N,S,768]", "float[N,S,1]", "float[N,S,1]"]);
        let a1 = Case::new("LayerNormalization")
            .opset(17)
            .outputs(3)
            .input("float16[N,S,768]")
            .int("axis", 1);
        assert_eq!(a1.types(), ["float16[N,S,768]", "float[N,1,1]", "float[N,1,1]"]);
        let unranked = Case::new("LayerNormalization").outputs(2).input("float[...]").types();
        assert_eq!(unranked, ["float[...]", "float[...]"]);
        assert!(
            Case::new("LayerNormalization")
                .input("float[2,3]")
                .int("axis", 2)
                .invalid()
                .contains("axis 2")
        );
    }

    #[test]
    fn instance_and_group_norm() {
        let inst = Case::new("InstanceNormalization")
            .input("float[N,8,H,W]")
            .input("float[8]")
            .input("float[8]");
        assert_eq!(inst.ty(), "float[N,8,H,W]");
        let bad = Case::new("InstanceNormalization")
            .input("float[N,8,H,W]")
            .input("float[8]")
            .input("float[4]");
        assert!(bad.invalid().contains("B has 4"));
        let group = Case::new("GroupNormalization")
            .opset(18)
            .input("float[N,8,4]")
            .input("float[2]")
            .input("float[2]");
        assert_eq!(group.ty(), "float[N,8,4]");
    }

    #[test]
    fn softmax_axis_rules_by_opset() {
        for op in ["Softmax", "LogSoftmax", "Hardmax"] {
            assert_eq!(Case::new(op).opset(9).input("float[N,1000]").ty(), "float[N,1000]");
            assert_eq!(Case::new(op).opset(13).input("float[N,S,S]").ty(), "float[N,S,S]");
        }
        // Before 13 the default axis 1 coerces to 2-D; rank 1 is fine at 9.
        assert_eq!(Case::new("Softmax").opset(9).input("float[10]").ty(), "float[10]");
        assert_eq!(Case::new("Softmax").opset(13).input("float[10]").ty(), "float[10]");
        assert!(
            Case::new("Softmax")
                .opset(11)
                .input("float[10]")
                .invalid()
                .contains("axis 1")
        );
        let far = Case::new("Softmax")
            .opset(13)
            .int("axis", -4)
            .input("float[2,3,4]")
            .invalid();
        assert!(far.contains("axis -4"));
    }
}
