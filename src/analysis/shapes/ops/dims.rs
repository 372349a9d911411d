//! Arithmetic on dimensions that may be symbolic: broadcasting, unification,
//! and products of sizes (`2048*batch`, `batch*seq`) that Reshape, Flatten
//! and exporters' Shape arithmetic need.

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
        (Dim::Known(_), _) | (Dim::Sym(_) | Dim::Product(_), Dim::Unknown) => Some(a.clone()),
        _ if *b == Dim::Unknown => Some(a.clone()),
        _ => Some(b.clone()),
    }
}

pub(super) fn fmt_shape(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// `d * scale + offset`, symbolic only in the identity case.
pub(super) fn affine(d: &Dim, scale: i64, offset: i64) -> Dim {
    match d {
        Dim::Known(v) => v
            .checked_mul(scale)
            .and_then(|x| x.checked_add(offset))
            .map_or(Dim::Unknown, Dim::Known),
        Dim::Sym(_) | Dim::Product(_) if scale == 1 && offset == 0 => d.clone(),
        _ => Dim::Unknown,
    }
}

pub(super) fn add(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_add(*y).map_or(Dim::Unknown, Dim::Known),
        (d, Dim::Known(0)) | (Dim::Known(0), d) => d.clone(),
        _ => Dim::Unknown,
    }
}

pub(super) fn sub(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_sub(*y).map_or(Dim::Unknown, Dim::Known),
        (d, Dim::Known(0)) => d.clone(),
        (x, y) if x == y && *x != Dim::Unknown => Dim::Known(0),
        _ => Dim::Unknown,
    }
}

pub(super) fn mul(a: &Dim, b: &Dim) -> Dim {
    Product::of(&[a.clone(), b.clone()]).map_or(Dim::Unknown, |p| p.to_dim())
}

/// Integer division truncating toward zero (ONNX `Div` on integers); exact
/// symbolic quotients such as `batch*4 / 4` are kept.
pub(super) fn div(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_div(*y).map_or(Dim::Unknown, Dim::Known),
        _ => match (
            Product::of(std::slice::from_ref(a)),
            Product::of(std::slice::from_ref(b)),
        ) {
            (Some(p), Some(q)) => p.div(&q).map_or(Dim::Unknown, |r| r.to_dim()),
            _ => Dim::Unknown,
        },
    }
}

/// A product of sizes: a known factor times symbols, e.g. `2048·batch`.
/// Lets Reshape solve `-1` and Flatten multiply when some sizes are symbolic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Product {
    coeff: i64,
    /// Sorted, with repeats.
    syms: Vec<String>,
}

impl Product {
    pub(super) const ONE: Product = Product {
        coeff: 1,
        syms: Vec::new(),
    };

    /// `None` when a dimension is unknown or the factor overflows.
    pub(super) fn of(dims: &[Dim]) -> Option<Product> {
        let mut p = Product::ONE;
        for d in dims {
            match d {
                Dim::Known(v) => p.coeff = p.coeff.checked_mul(*v)?,
                Dim::Sym(s) => p.syms.push(s.clone()),
                Dim::Product(q) => {
                    p.coeff = p.coeff.checked_mul(q.coeff)?;
                    p.syms.extend(q.syms.iter().cloned());
                }
                Dim::Unknown => return None,
            }
        }
        p.syms.sort();
        Some(p)
    }

    pub(super) fn known(&self) -> Option<i64> {
        self.syms.is_empty().then_some(self.coeff)
    }

    /// Exact quotient `self / other`; `None` when it is not a product of the
    /// same form (a symbol of `other` missing from `self`, or a remainder).
    pub(super) fn div(&self, other: &Product) -> Option<Product> {
        if other.coeff == 0 || self.coeff % other.coeff != 0 {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.iter().position(|x| x == s)?;
            syms.remove(at);
        }
        Some(Product {
            coeff: self.coeff / other.coeff,
            syms,
        })
    }

    /// As a single dimension: a number, a lone symbol, or a product.
    pub(super) fn to_dim(&self) -> Dim {
        crate::ir::DimProduct::dim(self.coeff, self.syms.clone())
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
    fn products_divide_symbolically() {
        let whole = Product::of(&dims("batch,2048,1,1")).unwrap();
        let part = Product::of(&dims("batch")).unwrap();
        assert_eq!(whole.div(&part).unwrap().to_dim(), Dim::Known(2048));
        let rest = whole.div(&Product::of(&dims("2048")).unwrap()).unwrap();
        assert_eq!(rest.to_dim(), Dim::Sym("batch".into()));
        assert_eq!(part.div(&Product::of(&dims("3")).unwrap()), None);
        assert_eq!(Product::of(&dims("N,M")).unwrap().to_dim().to_string(), "M*N");
        let tokens = Product::of(&dims("batch,197,768")).unwrap();
        let rows = tokens.div(&Product::of(&dims("768")).unwrap()).unwrap().to_dim();
        assert_eq!(
            (rows.to_string(), rows == dims("197*batch")[0]),
            ("197*batch".into(), true)
        );
        assert_eq!(Product::of(&dims("?")), None);
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
        assert_eq!(affine(&Dim::Sym("s".into()), 2, 0), Dim::Unknown);
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
