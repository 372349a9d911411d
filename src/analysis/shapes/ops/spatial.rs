//! Sliding-window ops over `N×C×D1×…×Dn` tensors: convolution (plain,
//! transposed, integer, quantised) and pooling (windowed and global). They
//! share one piece of geometry, [`Window`].

use super::dims::affine;
use super::util::{Rule, input, int_attr, ints_attr_len, invalid, result, shape, shape_min_rank, string_attr};
use crate::analysis::shapes::{OpContext, RuleError};
use crate::ir::Dim;
use crate::onnx::dtype::ElemType;

#[derive(Debug, Clone, Copy, PartialEq)]
enum AutoPad {
    NotSet,
    /// SAME_UPPER or SAME_LOWER: they differ only in where the odd pad goes.
    Same,
    Valid,
}

/// Kernel, strides, dilations and padding of a window op.
struct Window {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    /// Begins of every axis, then ends.
    pads: Vec<i64>,
    auto_pad: AutoPad,
    ceil_mode: bool,
}

impl Window {
    fn read(ctx: &OpContext, kernel: Vec<i64>) -> Result<Window, RuleError> {
        let n = kernel.len();
        let w = Window {
            strides: ints_attr_len(ctx, "strides", n, 1)?,
            dilations: ints_attr_len(ctx, "dilations", n, 1)?,
            pads: ints_attr_len(ctx, "pads", 2 * n, 0)?,
            auto_pad: match string_attr(ctx, "auto_pad", "NOTSET").as_str() {
                "NOTSET" | "" => AutoPad::NotSet,
                "SAME_UPPER" | "SAME_LOWER" => AutoPad::Same,
                "VALID" => AutoPad::Valid,
                other => return Err(invalid(format!("auto_pad '{other}' is not a padding mode"))),
            },
            ceil_mode: int_attr(ctx, "ceil_mode", 0) != 0,
            kernel,
        };
        for (name, v) in [
            ("kernel_shape", &w.kernel),
            ("strides", &w.strides),
            ("dilations", &w.dilations),
        ] {
            if v.iter().any(|&x| x <= 0) {
                return Err(invalid(format!("{name} {v:?} must be positive")));
            }
        }
        Ok(w)
    }

    /// Span of the dilated kernel on spatial axis `i`.
    fn extent(&self, i: usize) -> Result<i64, RuleError> {
        self.dilations[i]
            .checked_mul(self.kernel[i] - 1)
            .and_then(|x| x.checked_add(1))
            .ok_or_else(|| invalid("kernel extent overflows"))
    }

    /// Padding added on axis `i` (zero under auto_pad VALID).
    fn pad_total(&self, i: usize) -> Result<i64, RuleError> {
        if self.auto_pad == AutoPad::Valid {
            return Ok(0);
        }
        let n = self.kernel.len();
        self.pads[i]
            .checked_add(self.pads[i + n])
            .ok_or_else(|| invalid("pads overflow"))
    }

    /// Output size of a convolution or pooling on spatial axis `i`.
    fn output(&self, i: usize, d: &Dim) -> Result<Dim, RuleError> {
        let s = self.strides[i];
        if self.auto_pad == AutoPad::Same {
            return Ok(match d {
                Dim::Known(v) => Dim::Known(div_ceil(*v, s)),
                _ => d.ceil_div(s),
            });
        }
        let (ext, pad) = (self.extent(i)?, self.pad_total(i)?);
        let Dim::Known(v) = d else {
            // floor((side + pads − extent) / stride) + 1 of a symbolic side;
            // in ceil mode ceil(…) + 1. The last window then starts at most
            // stride − 1 past the floor's last start, that is before
            // side + leading pad (never dropped, below) for every side
            // exactly when stride + trailing pad <= extent; otherwise whether
            // it is dropped depends on the side's value: unknown.
            let span = affine(d, 1, pad - ext);
            return Ok(if self.ceil_mode && self.auto_pad == AutoPad::NotSet {
                let trailing = self.pads[i + self.kernel.len()];
                if s.saturating_add(trailing) <= ext {
                    span.ceil_div(s).plus(&Dim::Known(1))
                } else {
                    Dim::Unknown
                }
            } else {
                span.floor_div(s).plus(&Dim::Known(1))
            });
        };
        let span = v
            .checked_add(pad)
            .and_then(|x| x.checked_sub(ext))
            .ok_or_else(|| invalid("window arithmetic overflows"))?;
        if span < 0 {
            return Err(invalid(format!(
                "window of {ext} exceeds padded input {v}+{pad} on spatial axis {i}"
            )));
        }
        let ceil = self.ceil_mode && self.auto_pad == AutoPad::NotSet;
        let mut out = if ceil { div_ceil(span, s) } else { span / s } + 1;
        // In ceil mode the last window must still start inside the input or
        // its leading pad (ONNX Runtime and PyTorch drop it otherwise).
        if ceil && (out - 1).saturating_mul(s) >= v.saturating_add(self.pads[i]) {
            out -= 1;
        }
        Ok(Dim::Known(out))
    }

    /// Output size of ConvTranspose on spatial axis `i`.
    fn transposed(&self, i: usize, d: &Dim, output_padding: i64) -> Result<Dim, RuleError> {
        let s = self.strides[i];
        let out = if self.auto_pad == AutoPad::Same {
            affine(d, s, 0)
        } else {
            // stride·(in−1) + output_padding + extent − pads
            let (ext, pad) = (self.extent(i)?, self.pad_total(i)?);
            let offset = output_padding
                .checked_add(ext)
                .and_then(|x| x.checked_sub(pad))
                .and_then(|x| x.checked_sub(s))
                .ok_or_else(|| invalid("window arithmetic overflows"))?;
            affine(d, s, offset)
        };
        match out {
            Dim::Known(v) if v <= 0 => Err(invalid(format!("output size {v} on spatial axis {i} is not positive"))),
            _ => Ok(out),
        }
    }
}

/// Ceiling division for a positive divisor.
fn div_ceil(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b > 0 { q + 1 } else { q }
}

/// `kernel_shape` when given, else the weight's spatial dims when known.
fn kernel_shape(ctx: &OpContext, w: &[Dim], n: usize) -> Result<Option<Vec<i64>>, RuleError> {
    match ctx.node.attr_ints("kernel_shape") {
        Some(k) if k.len() == n => Ok(Some(k.to_vec())),
        Some(k) => Err(invalid(format!(
            "kernel_shape {k:?} has {} axes, input has {n}",
            k.len()
        ))),
        None => Ok(w.get(2..).and_then(|s| s.iter().map(Dim::known).collect())),
    }
}

fn group(ctx: &OpContext) -> Result<i64, RuleError> {
    match int_attr(ctx, "group", 1) {
        g if g > 0 => Ok(g),
        g => Err(invalid(format!("group {g} must be positive"))),
    }
}

/// Input data and weight shapes, checked to have the same rank.
fn data_and_weight<'a>(ctx: &OpContext<'a>, x: usize, w: usize) -> Result<(&'a [Dim], &'a [Dim]), RuleError> {
    let (xs, ws) = (shape_min_rank(ctx, x, 3)?, shape(ctx, w)?);
    if xs.len() != ws.len() {
        return Err(invalid(format!("X has rank {} but W has rank {}", xs.len(), ws.len())));
    }
    Ok((xs, ws))
}

/// Conv, ConvInteger, QLinearConv: `[N, M, out…]` for W `[M, C/group, k…]`.
pub(super) fn conv(ctx: &OpContext) -> Rule {
    let (xi, wi, elem) = match ctx.node.op_type.as_str() {
        "QLinearConv" => (0, 3, input(ctx, 7)?.elem),
        "ConvInteger" => (0, 1, ElemType::INT32),
        _ => (0, 1, input(ctx, 0)?.elem),
    };
    let (x, w) = data_and_weight(ctx, xi, wi)?;
    let group = group(ctx)?;
    if let (Dim::Known(c), Dim::Known(wc)) = (&x[1], &w[1])
        && wc.checked_mul(group) != Some(*c)
    {
        return Err(invalid(format!(
            "X has {c} channels but W expects {wc} × group {group}"
        )));
    }
    if let Dim::Known(m) = w[0]
        && m % group != 0
    {
        return Err(invalid(format!("W has {m} filters, not divisible by group {group}")));
    }
    let n = x.len() - 2;
    let mut out = vec![x[0].clone(), w[0].clone()];
    match kernel_shape(ctx, w, n)? {
        Some(k) => {
            let win = Window::read(ctx, k)?;
            for i in 0..n {
                out.push(win.output(i, &x[2 + i])?);
            }
        }
        None => out.extend(vec![Dim::Unknown; n]),
    }
    Ok(vec![result(elem, out)])
}

/// ConvTranspose: `[N, W[1]·group, out…]`, out from `output_shape` when given.
pub(super) fn conv_transpose(ctx: &OpContext) -> Rule {
    let elem = input(ctx, 0)?.elem;
    let (x, w) = data_and_weight(ctx, 0, 1)?;
    let group = group(ctx)?;
    if let (Dim::Known(c), Dim::Known(wc)) = (&x[1], &w[0])
        && c != wc
    {
        return Err(invalid(format!("X has {c} channels but W has {wc} input channels")));
    }
    let n = x.len() - 2;
    let mut out = vec![x[0].clone(), super::dims::mul(&w[1], &Dim::Known(group))];
    if let Some(os) = ctx.node.attr_ints("output_shape") {
        // Either the spatial sizes or a full shape; the spatial part counts.
        let spatial = os
            .len()
            .checked_sub(n)
            .filter(|&k| k == 0 || k == 2)
            .map(|k| &os[k..])
            .ok_or_else(|| invalid(format!("output_shape {os:?} does not fit {n} spatial axes")))?;
        out.extend(spatial.iter().map(|&v| Dim::Known(v)));
        return Ok(vec![result(elem, out)]);
    }
    match kernel_shape(ctx, w, n)? {
        Some(k) => {
            let win = Window::read(ctx, k)?;
            let output_padding = ints_attr_len(ctx, "output_padding", n, 0)?;
            for i in 0..n {
                out.push(win.transposed(i, &x[2 + i], output_padding[i])?);
            }
        }
        None => out.extend(vec![Dim::Unknown; n]),
    }
    Ok(vec![result(elem, out)])
}

/// MaxPool (with its int64 Indices output), AveragePool, LpPool.
pub(super) fn pool(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let x = shape_min_rank(ctx, 0, 3)?;
    let n = x.len() - 2;
    let kernel = match ctx.node.attr_ints("kernel_shape") {
        Some(k) if k.len() == n => k.to_vec(),
        Some(k) => return Err(invalid(format!("kernel_shape {k:?} does not fit {n} spatial axes"))),
        None => return Err(invalid("attribute kernel_shape is missing")),
    };
    let win = Window::read(ctx, kernel)?;
    let mut out = x[..2].to_vec();
    for i in 0..n {
        out.push(win.output(i, &x[2 + i])?);
    }
    Ok(vec![result(t.elem, out.clone()), result(ElemType::INT64, out)])
}

/// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: `[N, C, 1, …]`.
pub(super) fn global_pool(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let x = shape_min_rank(ctx, 0, 2)?;
    let mut out = x[..2].to_vec();
    out.resize(x.len(), Dim::Known(1));
    Ok(vec![result(t.elem, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Case;
    use super::{AutoPad, Dim, Window};

    fn conv() -> Case {
        Case::new("Conv").input("float[N,3,224,224]").input("float[64,3,7,7]")
    }

    #[test]
    fn conv_output_size() {
        let c = conv().ints("strides", &[2, 2]).ints("pads", &[3, 3, 3, 3]);
        assert_eq!(c.ty(), "float[N,64,112,112]");
        assert_eq!(conv().ty(), "float[N,64,218,218]");
        let dil = conv().ints("dilations", &[2, 2]);
        assert_eq!(dil.ty(), "float[N,64,212,212]");
        let k = Case::new("Conv")
            .input("float[1,3,10]")
            .input("float[8,3,?]")
            .ints("kernel_shape", &[3]);
        assert_eq!(k.ty(), "float[1,8,8]");
        let no_kernel = Case::new("Conv").input("float[1,3,10]").input("float[8,3,?]");
        assert_eq!(no_kernel.ty(), "float[1,8,?]");
        let bias = conv().input("float[64]").ints("pads", &[3, 3, 3, 3]);
        assert_eq!(bias.ty(), "float[N,64,224,224]");
    }

    #[test]
    fn conv_auto_pad_and_symbols() {
        let same = conv().string("auto_pad", "SAME_UPPER").ints("strides", &[2, 2]);
        assert_eq!(same.ty(), "float[N,64,112,112]");
        let lower = conv().string("auto_pad", "SAME_LOWER");
        assert_eq!(lower.ty(), "float[N,64,224,224]");
        assert_eq!(conv().string("auto_pad", "VALID").ty(), "float[N,64,218,218]");
        let sym = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[8,3,3,3]")
            .ints("pads", &[1, 1, 1, 1]);
        assert_eq!(sym.ty(), "float[N,8,H,W]");
        // floor((H-3)/2)+1 = floor((H-1)/2) = floor((H+1)/2)-1.
        let strided = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[8,3,3,3]")
            .ints("strides", &[2, 2]);
        assert_eq!(strided.ty(), "float[N,8,floor((H+1)/2)-1,floor((W+1)/2)-1]");
        // ResNet's stem: 7×7, stride 2, pads 3: floor((H-1)/2)+1 = floor((H+1)/2).
        let stem = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[64,3,7,7]")
            .ints("strides", &[2, 2])
            .ints("pads", &[3, 3, 3, 3]);
        assert_eq!(stem.ty(), "float[N,64,floor((H+1)/2),floor((W+1)/2)]");
        // A ViT's patch embedding: 16×16, stride 16.
        let patches = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[768,3,16,16]")
            .ints("strides", &[16, 16]);
        assert_eq!(patches.ty(), "float[N,768,floor(H/16),floor(W/16)]");
        let same_sym = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[8,3,3,3]")
            .string("auto_pad", "SAME_UPPER");
        assert_eq!(same_sym.ty(), "float[N,8,H,W]");
        let same_strided = Case::new("Conv")
            .input("float[N,3,H,W]")
            .input("float[8,3,3,3]")
            .string("auto_pad", "SAME_UPPER")
            .ints("strides", &[2, 2]);
        assert_eq!(same_strided.ty(), "float[N,8,floor((H+1)/2),floor((W+1)/2)]");
    }

    #[test]
    fn conv_contradictions() {
        let ch = Case::new("Conv")
            .input("float[1,4,8,8]")
            .input("float[8,3,3,3]")
            .invalid();
        assert!(ch.contains("4 channels") && ch.contains("3 × group 1"), "{ch}");
        let grouped = Case::new("Conv")
            .input("float[1,4,8,8]")
            .input("float[8,2,3,3]")
            .int("group", 2);
        assert_eq!(grouped.ty(), "float[1,8,6,6]");
        let filters = Case::new("Conv")
            .input("float[1,4,8,8]")
            .input("float[7,2,3,3]")
            .int("group", 2);
        assert!(filters.invalid().contains("7 filters"));
        let rank = Case::new("Conv")
            .input("float[1,3,8,8]")
            .input("float[8,3,3]")
            .invalid();
        assert!(rank.contains("rank 4") && rank.contains("rank 3"));
        assert!(
            Case::new("Conv")
                .input("float[1,3,2,2]")
                .input("float[8,3,3,3]")
                .invalid()
                .contains("exceeds")
        );
        assert!(conv().ints("strides", &[0, 1]).invalid().contains("positive"));
        assert!(conv().ints("pads", &[1, 1]).invalid().contains("pads"));
        assert!(conv().int("group", 0).invalid().contains("group"));
        assert!(conv().string("auto_pad", "SAME").invalid().contains("SAME"));
        let big = conv().ints("pads", &[i64::MAX, 0, 0, 0]).invalid();
        assert!(big.contains("overflow"), "{big}");
        assert!(
            Case::new("Conv")
                .input("float[1,3]")
                .input("float[8,3]")
                .invalid()
                .contains("at least 3")
        );
    }

    #[test]
    fn integer_and_quantised_conv() {
        let ci = Case::new("ConvInteger").input("uint8[1,3,8,8]").input("uint8[4,3,3,3]");
        assert_eq!(ci.ty(), "int32[1,4,6,6]");
        let q = Case::new("QLinearConv")
            .input("uint8[1,3,8,8]")
            .input("float[]")
            .input("uint8[]")
            .input("int8[4,3,3,3]")
            .input("float[]")
            .input("int8[]")
            .input("float[]")
            .input("int8[]");
        assert_eq!(q.ty(), "int8[1,4,6,6]");
    }

    #[test]
    fn conv_transpose_sizes() {
        let ct = || {
            Case::new("ConvTranspose")
                .input("float[N,16,7,7]")
                .input("float[16,4,3,3]")
        };
        assert_eq!(ct().ty(), "float[N,4,9,9]");
        let s2 = ct()
            .ints("strides", &[2, 2])
            .ints("pads", &[1, 1, 1, 1])
            .ints("output_padding", &[1, 1]);
        assert_eq!(s2.ty(), "float[N,4,14,14]");
        assert_eq!(ct().int("group", 2).ty(), "float[N,8,9,9]");
        assert_eq!(ct().ints("output_shape", &[20, 21]).ty(), "float[N,4,20,21]");
        assert_eq!(ct().ints("output_shape", &[1, 4, 20, 21]).ty(), "float[N,4,20,21]");
        let same = ct().string("auto_pad", "SAME_UPPER").ints("strides", &[2, 2]);
        assert_eq!(same.ty(), "float[N,4,14,14]");
        assert_eq!(ct().ints("dilations", &[2, 2]).ty(), "float[N,4,11,11]");
        let sym = Case::new("ConvTranspose")
            .input("float[N,16,H,W]")
            .input("float[16,4,3,3]")
            .ints("pads", &[1, 1, 1, 1]);
        assert_eq!(sym.ty(), "float[N,4,H,W]");
        let bad = Case::new("ConvTranspose")
            .input("float[N,8,7,7]")
            .input("float[16,4,3,3]");
        assert!(bad.invalid().contains("8 channels"));
        assert!(ct().ints("output_shape", &[1, 2, 3]).invalid().contains("output_shape"));
        assert!(ct().ints("pads", &[9, 9, 9, 9]).invalid().contains("not positive"));
    }

    #[test]
    fn pooling_sizes() {
        let mp = || {
            Case::new("MaxPool")
                .outputs(2)
                .input("float[N,64,112,112]")
                .ints("kernel_shape", &[3, 3])
        };
        let s2 = mp().ints("strides", &[2, 2]).ints("pads", &[1, 1, 1, 1]);
        assert_eq!(s2.types(), ["float[N,64,56,56]", "int64[N,64,56,56]"]);
        assert_eq!(mp().ints("strides", &[2, 2]).ty(), "float[N,64,55,55]");
        let ceil = mp().ints("strides", &[2, 2]).int("ceil_mode", 1);
        assert_eq!(ceil.ty(), "float[N,64,56,56]");
        let same = mp().ints("strides", &[2, 2]).string("auto_pad", "SAME_LOWER");
        assert_eq!(same.ty(), "float[N,64,56,56]");
        assert_eq!(mp().string("auto_pad", "VALID").ty(), "float[N,64,110,110]");
        assert_eq!(mp().ints("dilations", &[2, 2]).ty(), "float[N,64,108,108]");
        let avg = Case::new("AveragePool")
            .input("float[1,8,7,7]")
            .ints("kernel_shape", &[2, 2])
            .ints("strides", &[2, 2])
            .int("count_include_pad", 1);
        assert_eq!(avg.ty(), "float[1,8,3,3]");
        assert!(
            Case::new("MaxPool")
                .input("float[1,8,7,7]")
                .invalid()
                .contains("kernel_shape")
        );
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_padding() {
        // 5 wide, kernel 2, stride 2, pad 1 each side: ceil((5+2-2)/2)+1 = 4,
        // but the 4th window would start at 6 >= 5+1, so 3 (as PyTorch).
        let c = Case::new("AveragePool")
            .input("float[1,1,5]")
            .ints("kernel_shape", &[2])
            .ints("strides", &[2])
            .ints("pads", &[1, 1])
            .int("ceil_mode", 1);
        assert_eq!(c.ty(), "float[1,1,3]");
        // On a symbolic side that depends on the side's value: unknown.
        let sym = Case::new("AveragePool")
            .input("float[1,1,H]")
            .ints("kernel_shape", &[2])
            .ints("strides", &[2])
            .ints("pads", &[1, 1])
            .int("ceil_mode", 1);
        assert_eq!(sym.ty(), "float[1,1,?]");
        // GoogLeNet's unpadded 3×3 stride-2 ceil-mode pool never drops one:
        // ceil((H-3)/2)+1.
        let googlenet = Case::new("MaxPool")
            .input("float[1,1,H]")
            .ints("kernel_shape", &[3])
            .ints("strides", &[2])
            .int("ceil_mode", 1);
        assert_eq!(googlenet.ty(), "float[1,1,floor(H/2)]");
    }

    /// Every window (kernel, stride, dilation, pads, ceil mode, padding
    /// mode) on a symbolic side gives, at each side from 1 to 40 where the
    /// window fits, the size the numeric rule gives, or stays unknown.
    #[test]
    fn symbolic_sides_agree_with_numbers() {
        let side = Dim::Sym("H".into());
        let mut symbolic = 0;
        let mut windows = Vec::new();
        for kernel in 1..=4i64 {
            for stride in 1..=3i64 {
                for dilation in 1..=2i64 {
                    for (begin, end) in (0..=2i64).flat_map(|b| (0..=2i64).map(move |e| (b, e))) {
                        for ceil in [false, true] {
                            for auto_pad in [AutoPad::NotSet, AutoPad::Same, AutoPad::Valid] {
                                windows.push((kernel, stride, dilation, begin, end, ceil, auto_pad));
                            }
                        }
                    }
                }
            }
        }
        for (kernel, stride, dilation, begin, end, ceil, auto_pad) in windows {
            let w = Window {
                kernel: vec![kernel],
                strides: vec![stride],
                dilations: vec![dilation],
                pads: vec![begin, end],
                auto_pad,
                ceil_mode: ceil,
            };
            let sym = w.output(0, &side).unwrap();
            if sym == Dim::Unknown {
                assert!(ceil && auto_pad == AutoPad::NotSet && stride + end > w.extent(0).unwrap());
                continue;
            }
            symbolic += 1;
            for h in 1..=40u64 {
                let Ok(Dim::Known(want)) = w.output(0, &Dim::Known(h as i64)) else {
                    continue;
                };
                let got = crate::ir::DimValues::with(&[("H", h)]).size(&sym);
                assert_eq!(
                    got,
                    Some(want as u64),
                    "{sym} at H={h}: kernel {kernel}, stride {stride}, dilation {dilation}, pads {begin},{end}, ceil {ceil}"
                );
            }
        }
        assert!(symbolic > 600, "{symbolic}");
    }

    #[test]
    fn global_pooling_keeps_batch_and_channels() {
        assert_eq!(
            Case::new("GlobalAveragePool").input("float[N,2048,7,7]").ty(),
            "float[N,2048,1,1]"
        );
        assert_eq!(
            Case::new("GlobalMaxPool").input("float[N,8,5,5,5]").ty(),
            "float[N,8,1,1,1]"
        );
    }
}
