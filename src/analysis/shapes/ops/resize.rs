//! Resize (opset 10: X, scales; 11+: X, roi, scales, sizes; 18+: `axes`,
//! `keep_aspect_ratio_policy`) and its predecessor Upsample (scales an
//! attribute at 7, an input from 9).

use super::util::{Rule, axes, floats_attr, input, invalid, present, result, string_attr, unranked};
use crate::analysis::shapes::OpContext;
use crate::ir::{Dim, Folded};

/// `floor(d · scale)`; a symbol survives only scale 1.
fn scaled(d: &Dim, scale: f64) -> Dim {
    match d {
        Dim::Known(v) => {
            let x = (*v as f64 * scale).floor();
            if x.is_finite() && x >= 0.0 && x < i64::MAX as f64 {
                Dim::Known(x as i64)
            } else {
                Dim::Unknown
            }
        }
        Dim::Unknown => Dim::Unknown,
        // A symbolic side times a binary fraction p/q (2, 0.5, 1.5), which
        // f64 holds exactly, so floor(side·scale) is floor(side·p/q) for
        // every side; other scales round in floating point: unknown.
        _ => [1i64, 2, 4, 8, 16]
            .into_iter()
            .find_map(|q| {
                let p = scale * q as f64;
                (p.fract() == 0.0 && p > 0.0 && p < 1e9).then(|| d.times(&Dim::Known(p as i64)).floor_div(q))
            })
            .unwrap_or(Dim::Unknown),
    }
}

fn folded_floats(ctx: &OpContext, i: usize) -> Option<Vec<f64>> {
    ctx.folded(i).and_then(Folded::floats)
}

pub(super) fn resize(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let resized = match ctx.node.attr_ints("axes") {
        Some(a) if ctx.opset >= 18 => axes(a, s.len())?,
        _ => (0..s.len()).collect(),
    };
    let (scales_at, sizes_at) = if ctx.opset < 11 { (1, None) } else { (2, Some(3)) };
    let mut out = s.to_vec();
    if let Some(si) = sizes_at.filter(|&i| present(ctx, i)) {
        let Some(sizes) = ctx.known_ints(si) else {
            resized.iter().for_each(|&a| out[a] = Dim::Unknown);
            return Ok(vec![result(t.elem, out)]);
        };
        if sizes.len() != resized.len() {
            return Err(invalid(format!("sizes {sizes:?} do not fit {} axes", resized.len())));
        }
        let policy = string_attr(ctx, "keep_aspect_ratio_policy", "stretch");
        if policy == "stretch" || ctx.opset < 18 {
            for (&a, &n) in resized.iter().zip(&sizes) {
                out[a] = Dim::Known(n);
            }
        } else {
            // One scale for all axes: the smallest or largest size ratio.
            let ratios: Option<Vec<f64>> = resized
                .iter()
                .zip(&sizes)
                .map(|(&a, &n)| s[a].known().map(|d| n as f64 / d as f64))
                .collect();
            let scale = match (ratios, policy.as_str()) {
                (Some(r), "not_larger") => r.into_iter().reduce(f64::min),
                (Some(r), "not_smaller") => r.into_iter().reduce(f64::max),
                (None, "not_larger" | "not_smaller") => None,
                _ => return Err(invalid(format!("keep_aspect_ratio_policy '{policy}'"))),
            };
            for &a in &resized {
                out[a] = match (scale, s[a].known()) {
                    (Some(k), Some(d)) => Dim::Known((k * d as f64).round() as i64),
                    _ => Dim::Unknown,
                };
            }
        }
        return Ok(vec![result(t.elem, out)]);
    }
    if !present(ctx, scales_at) {
        return Err(invalid("neither scales nor sizes is given"));
    }
    let Some(scales) = folded_floats(ctx, scales_at) else {
        resized.iter().for_each(|&a| out[a] = Dim::Unknown);
        return Ok(vec![result(t.elem, out)]);
    };
    if scales.len() != resized.len() {
        return Err(invalid(format!("scales {scales:?} do not fit {} axes", resized.len())));
    }
    // tf_crop_and_resize resizes the roi window, not the whole axis.
    let crop = string_attr(ctx, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize";
    let roi = folded_floats(ctx, 1).filter(|r| r.len() == 2 * resized.len());
    for (k, (&a, &scale)) in resized.iter().zip(&scales).enumerate() {
        out[a] = match (&roi, crop) {
            (_, false) => scaled(&s[a], scale),
            (Some(r), true) => scaled(&s[a], scale * (r[k + resized.len()] - r[k])),
            (None, true) => Dim::Unknown,
        };
    }
    Ok(vec![result(t.elem, out)])
}

pub(super) fn upsample(ctx: &OpContext) -> Rule {
    let t = input(ctx, 0)?;
    let Some(s) = t.shape.as_deref() else {
        return Ok(vec![unranked(t.elem)]);
    };
    let scales: Option<Vec<f64>> = if ctx.has_input(1) {
        folded_floats(ctx, 1)
    } else {
        let attr = floats_attr(ctx, "scales").ok_or_else(|| invalid("scales are missing"))?;
        Some(attr.iter().map(|&f| f64::from(f)).collect())
    };
    let out = match scales {
        Some(sc) if sc.len() == s.len() => s.iter().zip(&sc).map(|(d, &k)| scaled(d, k)).collect(),
        Some(sc) => return Err(invalid(format!("scales {sc:?} do not fit rank {}", s.len()))),
        None => vec![Dim::Unknown; s.len()],
    };
    Ok(vec![result(t.elem, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Case, floats, ints};

    #[test]
    fn resize_by_scales() {
        let r10 = Case::new("Resize")
            .opset(10)
            .input("float[N,3,8,8]")
            .folded("float[4]", floats(&[1.0, 1.0, 2.0, 0.5]));
        assert_eq!(r10.ty(), "float[N,3,16,4]");
        let r11 = Case::new("Resize")
            .opset(11)
            .input("float[N,3,7,7]")
            .folded("float[0]", floats(&[]))
            .folded("float[4]", floats(&[1.0, 1.0, 1.5, 1.5]));
        assert_eq!(r11.ty(), "float[N,3,10,10]");
        let unknown = Case::new("Resize")
            .opset(13)
            .input("float[N,3,7,7]")
            .absent()
            .input("float[4]");
        assert_eq!(unknown.ty(), "float[?,?,?,?]");
        let crop = Case::new("Resize")
            .opset(13)
            .string("coordinate_transformation_mode", "tf_crop_and_resize")
            .input("float[1,1,8,8]")
            .folded("float[8]", floats(&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5]))
            .folded("float[4]", floats(&[1.0, 1.0, 2.0, 2.0]));
        assert_eq!(crop.ty(), "float[1,1,8,8]");
        assert!(
            Case::new("Resize")
                .opset(13)
                .input("float[1,2]")
                .invalid()
                .contains("neither")
        );
        let bad = Case::new("Resize")
            .opset(10)
            .input("float[1,2]")
            .folded("float[1]", floats(&[2.0]));
        assert!(bad.invalid().contains("scales"));
    }

    #[test]
    fn resize_by_sizes() {
        let sizes = |policy: &str| {
            Case::new("Resize")
                .opset(18)
                .string("keep_aspect_ratio_policy", policy)
                .ints("axes", &[2, 3])
                .input("float[N,3,100,200]")
                .absent()
                .absent()
                .folded("int64[2]", ints(&[50, 50]))
        };
        assert_eq!(sizes("stretch").ty(), "float[N,3,50,50]");
        assert_eq!(sizes("not_larger").ty(), "float[N,3,25,50]");
        assert_eq!(sizes("not_smaller").ty(), "float[N,3,50,100]");
        assert!(sizes("fit").invalid().contains("fit"));
        let all = Case::new("Resize")
            .opset(11)
            .input("float[N,3,H,W]")
            .input("float[0]")
            .input("float[0]")
            .folded("int64[4]", ints(&[1, 3, 32, 32]));
        assert_eq!(all.ty(), "float[1,3,32,32]");
        let unknown = Case::new("Resize")
            .opset(11)
            .input("float[N,3,H,W]")
            .absent()
            .absent()
            .input("int64[4]");
        assert_eq!(unknown.ty(), "float[?,?,?,?]");
    }

    #[test]
    fn upsample_forms() {
        let old = Case::new("Upsample")
            .opset(7)
            .input("float[N,3,8,8]")
            .floats("scales", &[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(old.ty(), "float[N,3,16,16]");
        let new = Case::new("Upsample")
            .opset(9)
            .input("float[N,3,8,8]")
            .folded("float[4]", floats(&[1.0, 1.0, 2.0, 3.0]));
        assert_eq!(new.ty(), "float[N,3,16,24]");
        // A feature pyramid's upsampling of a symbolic side, and a halving.
        let symbolic = Case::new("Upsample")
            .opset(9)
            .input("float[N,3,H,W]")
            .folded("float[4]", floats(&[1.0, 1.0, 2.0, 0.5]));
        assert_eq!(symbolic.ty(), "float[N,3,2*H,floor(W/2)]");
        let third = Case::new("Upsample")
            .opset(9)
            .input("float[N,3,H,W]")
            .folded("float[4]", floats(&[1.0, 1.0, 1.5, 1.0 / 3.0]));
        assert_eq!(third.ty(), "float[N,3,H+floor(H/2),?]");
        assert_eq!(
            Case::new("Upsample")
                .opset(9)
                .input("float[N,3]")
                .input("float[2]")
                .ty(),
            "float[?,?]"
        );
        assert!(
            Case::new("Upsample")
                .opset(7)
                .input("float[N,3]")
                .invalid()
                .contains("missing")
        );
    }
}
