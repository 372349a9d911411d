//! Arithmetic on dimensions that may be symbolic: broadcasting, unification,
//! sums and products of sizes (`2048*batch`, `batch*seq`, `seq+1`) that
//! Reshape, Flatten, Concat and exporters' Shape arithmetic need.

use crate::ir::Dim;

/// Numpy broadcasting of two dimensions; `None` when they conflict.
///
/// A number other than 1 wins over a symbol or an unknown (the other side must
/// be 1 or that number for the model to be valid), 1 yields to anything, equal
/// symbols stay, and anything else is unknown. ONNX's own inference does the
/// same.
pub(super) fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x == y => Some(a.clone()),
        (Dim::Known(1), other) | (other, Dim::Known(1)) => Some(other.clone()),
        (Dim::Known(_), Dim::Known(_)) => None,
        (Dim::Known(_), _) => Some(a.clone()),
        (_, Dim::Known(_)) => Some(b.clone()),
        (x, y) if x == y => Some(a.clone()),
        _ => Some(Dim::Unknown),
    }
}

/// Multidirectional (numpy) broadcasting of several shapes.
pub(super) fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let offset = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            out[offset + i] = broadcast_dim(&out[offset + i], d).ok_or_else(|| {
                let all: Vec<String> = shapes.iter().map(|s| fmt_shape(s)).collect();
                format!("shapes {} do not broadcast", all.join(" and "))
            })?;
        }
    }
    Ok(out)
}

/// Two dimensions that must be equal: the more precise of the two, or `None`
/// when they are different numbers.
pub(super) fn unify(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => (x == y).then(|| a.clone()),
        (Dim::Known(_), _) | (Dim::Sym(_) | Dim::Expr(_), Dim::Unknown) => Some(a.clone()),
        _ if *b == Dim::Unknown => Some(a.clone()),
        _ => Some(b.clone()),
    }
}

pub(super) fn fmt_shape(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// `d * scale + offset` (`2*H-1`, `seq+1`); unknown on overflow.
pub(super) fn affine(d: &Dim, scale: i64, offset: i64) -> Dim {
    d.times(&Dim::Known(scale)).plus(&Dim::Known(offset))
}

pub(super) fn add(a: &Dim, b: &Dim) -> Dim {
    a.plus(b)
}

pub(super) fn sub(a: &Dim, b: &Dim) -> Dim {
    a.minus(b)
}

pub(super) fn mul(a: &Dim, b: &Dim) -> Dim {
    a.times(b)
}

/// Integer division truncating toward zero (ONNX `Div` on integers). A
/// symbolic size by a positive number is its floor quotient (`batch*4 / 4`
/// is `batch`, `(H-1) / 2` is `floor((H+1)/2)-1`): sizes are not negative,
/// where floor and truncation agree. Exact symbolic quotients such as
/// `batch*seq / seq` are kept; others are unknown.
pub(super) fn div(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_div(*y).map_or(Dim::Unknown, Dim::Known),
        (_, Dim::Known(k)) if *k > 0 => a.floor_div(*k),
        _ => a.exact_div(b).unwrap_or(Dim::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::shapes::ops::test_util::dims;

    #[test]
    fn broadcasting_keeps_symbols_and_numbers() {
        assert_eq!(broadcast(&[&dims("N,1,3"), &dims("4,1")]), Ok(dims("N,4,3")));
        assert_eq!(broadcast(&[&dims("N"), &dims("N")]), Ok(dims("N")));
        assert_eq!(broadcast(&[&dims("N"), &dims("M")]), Ok(dims("?")));
        assert_eq!(broadcast(&[&dims("N"), &dims("5")]), Ok(dims("5")));
        assert_eq!(broadcast(&[&dims("?"), &dims("1")]), Ok(dims("?")));
        assert!(
            broadcast(&[&dims("2,3"), &dims("4")])
                .unwrap_err()
                .contains("[2,3] and [4]")
        );
    }

    #[test]
    fn products_and_sums_divide_exactly() {
        let whole = Dim::product_of(&dims("batch,2048,1,1"));
        assert_eq!(whole.exact_div(&dims("batch")[0]), Some(Dim::Known(2048)));
        assert_eq!(whole.exact_div(&Dim::Known(2048)), Some(Dim::Sym("batch".into())));
        assert_eq!(dims("batch")[0].exact_div(&Dim::Known(3)), None);
        assert_eq!(Dim::product_of(&dims("N,M")).to_string(), "M*N");
        let tokens = Dim::product_of(&dims("batch,197,768"));
        let rows = tokens.exact_div(&Dim::Known(768)).unwrap();
        assert_eq!(
            (rows.to_string(), rows == dims("197*batch")[0]),
            ("197*batch".into(), true)
        );
        assert_eq!(Dim::product_of(&dims("?,3")), Dim::Unknown);
        // A class token in front: (seq+1) tokens per row.
        let with_class = Dim::product_of(&dims("batch,seq+1,32"));
        assert_eq!(with_class.to_string(), "32*batch*seq+32*batch");
        assert_eq!(
            with_class.exact_div(&dims("32*batch")[0]),
            Some(dims("seq+1")[0].clone())
        );
        assert_eq!(dims("seq+1")[0].exact_div(&dims("seq")[0]), None);
        assert_eq!(Dim::Known(12).exact_div(&dims("seq+1")[0]), None);
        assert_eq!(Dim::Known(0).exact_div(&dims("seq")[0]), Some(Dim::Known(0)));
        assert_eq!(dims("seq")[0].exact_div(&Dim::Known(0)), None);
    }

    #[test]
    fn symbolic_sizes_divide_to_floor_quotients() {
        let h = Dim::Sym("H".into());
        let by = |d: &Dim, k: i64| div(d, &Dim::Known(k));
        assert_eq!(by(&h, 16).to_string(), "floor(H/16)");
        // Whole multiples come out of the floor, the constant is reduced.
        assert_eq!(by(&affine(&h, 2, 3), 2), affine(&h, 1, 1));
        assert_eq!(by(&affine(&h, 1, -1), 2).to_string(), "floor((H+1)/2)-1");
        assert_eq!(by(&affine(&h, 4, 2), 8).to_string(), "floor((2*H+1)/4)");
        assert_eq!(by(&dims("batch,4")[0].times(&Dim::Known(4)), 4), dims("batch")[0]);
        // The same quotient reached two ways is one atom.
        assert_eq!(
            add(&by(&affine(&h, 1, -1), 2), &Dim::Known(1)),
            by(&affine(&h, 1, 1), 2)
        );
        // Quotients of quotients are one quotient: three stride-2 layers.
        let third = |d: &Dim| add(&by(&affine(d, 1, -1), 2), &Dim::Known(1));
        assert_eq!(third(&third(&third(&h))).to_string(), "floor((H+7)/8)");
        assert_eq!(by(&by(&h, 2), 3).to_string(), "floor(H/6)");
        assert_eq!(
            by(&mul(&by(&h, 2), &Dim::Known(3)), 2).to_string(),
            "floor(H/2)+floor(H/4)"
        );
        // A ViT's patch grid, flattened and unflattened.
        let (rows, cols) = (by(&h, 16), by(&Dim::Sym("W".into()), 16));
        let patches = mul(&rows, &cols);
        assert_eq!(patches.to_string(), "floor(H/16)*floor(W/16)");
        assert_eq!(patches.exact_div(&rows), Some(cols));
        assert_eq!(patches.symbols(), ["H", "W"]);
        // Numbers divide as ONNX does; a divisor that is not a positive
        // number gives no quotient.
        assert_eq!(by(&Dim::Known(-7), 2), Dim::Known(-3));
        assert_eq!(by(&h, 0), Dim::Unknown);
        assert_eq!(by(&h, -2), Dim::Unknown);
        assert_eq!(by(&Dim::Unknown, 2), Dim::Unknown);
        assert_eq!(h.ceil_div(4).to_string(), "floor((H+3)/4)");
        assert_eq!(h.ceil_div(1), h);
    }

    #[test]
    fn sums_keep_one_form() {
        let s = Dim::Sym("s".into());
        assert_eq!(add(&s, &Dim::Known(1)).to_string(), "s+1");
        assert_eq!(sub(&add(&s, &Dim::Known(1)), &Dim::Known(1)), s);
        assert_eq!(affine(&s, 2, -1).to_string(), "2*s-1");
        assert_eq!(sub(&Dim::Known(1), &s).to_string(), "-s+1");
        assert_eq!(mul(&add(&s, &Dim::Known(1)), &dims("b")[0]).to_string(), "b*s+b");
        assert_eq!(div(&affine(&s, 2, 2), &Dim::Known(2)), add(&s, &Dim::Known(1)));
        assert_eq!(div(&affine(&s, 2, 1), &Dim::Known(2)), s);
        assert_eq!(add(&s, &Dim::Unknown), Dim::Unknown);
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(add(&Dim::Known(i64::MAX), &Dim::Known(1)), Dim::Unknown);
        assert_eq!(mul(&Dim::Known(i64::MAX), &Dim::Known(2)), Dim::Unknown);
        assert_eq!(div(&Dim::Known(1), &Dim::Known(0)), Dim::Unknown);
        assert_eq!(div(&Dim::Known(i64::MIN), &Dim::Known(-1)), Dim::Unknown);
        assert_eq!(div(&Dim::Known(-7), &Dim::Known(2)), Dim::Known(-3));
        assert_eq!(sub(&Dim::Sym("s".into()), &Dim::Sym("s".into())), Dim::Known(0));
        assert_eq!(affine(&Dim::Sym("s".into()), 1, 0), Dim::Sym("s".into()));
        assert_eq!(affine(&Dim::Sym("s".into()), 2, 0), dims("2*s")[0]);
        assert_eq!(affine(&Dim::Known(i64::MAX), 2, 0), Dim::Unknown);
        let rows = mul(&Dim::Sym("batch".into()), &Dim::Known(197));
        assert_eq!(rows, dims("197*batch")[0]);
        assert_eq!(div(&rows, &Dim::Known(197)), Dim::Sym("batch".into()));
        assert_eq!(mul(&rows, &Dim::Known(0)), Dim::Known(0));
        assert_eq!(sub(&rows, &rows), Dim::Known(0));
        assert_eq!(
            broadcast(&[&dims("197*batch,1"), &dims("197*batch,8")]),
            Ok(dims("197*batch,8"))
        );
    }
}
