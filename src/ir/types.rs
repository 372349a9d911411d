//! Value types: element type plus a shape whose dimensions may be symbolic.

use crate::onnx::dtype::ElemType;
use crate::onnx::proto::{TypeProto, tensor_shape_proto, type_proto};

/// One dimension: a number, a named symbol such as `batch`, an expression
/// of symbols such as `197*batch`, `seq+1` or `floor((H+1)/2)`, or unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    Sym(String),
    /// What exporters compute from `Shape`: a Reshape to `[batch*seq, d]`
    /// (Gather and Mul of the input's dims), a class token concatenated to
    /// `seq` patches (`seq+1`), a slice that drops it again, a strided
    /// convolution of a symbolic side.
    Expr(DimExpr),
    Unknown,
}

/// A sum of terms, each an integer times a product of atoms, e.g.
/// `197*batch`, `batch*seq`, `2*seq+1` or `floor((H+1)/2)+1`. Kept in one
/// form: terms sorted by degree (highest first), then by their (sorted)
/// atoms, the constant last, no zero coefficient, no two terms with the same
/// atoms, and at least one atom, not a lone symbol times 1 (those are `Known`
/// and `Sym`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DimExpr {
    pub terms: Vec<DimTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DimTerm {
    pub coeff: i64,
    /// Sorted, with repeats; empty for the constant.
    pub syms: Vec<Atom>,
}

/// A factor of a term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// A named dimension: `batch`, `seq`, `H`.
    Sym(String),
    /// `floor(terms / divisor)` that does not simplify further: what a
    /// stride-2 convolution or an exporter's integer `Div` makes of a
    /// symbolic side. In the form [`Dim::floor_div`] gives: divisor at least
    /// 2, every coefficient (and the constant) in `0..divisor`, their common
    /// divisor with `divisor` 1.
    Floor(Vec<DimTerm>, i64),
}

impl Atom {
    pub fn sym(name: impl Into<String>) -> Atom {
        Atom::Sym(name.into())
    }
}

impl DimExpr {
    /// `coeff` times `syms` as one dimension, in the one form.
    pub fn product(coeff: i64, syms: Vec<Atom>) -> Dim {
        DimExpr::sum(vec![DimTerm { coeff, syms }]).unwrap_or(Dim::Unknown)
    }

    /// The terms' sum as one dimension, in the one form; `None` when a
    /// coefficient overflows.
    pub fn sum(terms: Vec<DimTerm>) -> Option<Dim> {
        let mut merged: std::collections::BTreeMap<Vec<Atom>, i64> = std::collections::BTreeMap::new();
        for mut t in terms {
            t.syms.sort();
            let c = merged.entry(t.syms).or_insert(0);
            *c = c.checked_add(t.coeff)?;
        }
        let constant = merged.remove(&Vec::new()).unwrap_or(0);
        let mut terms: Vec<DimTerm> = merged
            .into_iter()
            .filter(|(_, c)| *c != 0)
            .map(|(syms, coeff)| DimTerm { coeff, syms })
            .collect();
        // Highest degree first, as people write polynomials: `b*s+b`.
        terms.sort_by(|a, b| b.syms.len().cmp(&a.syms.len()).then_with(|| a.syms.cmp(&b.syms)));
        Some(match (terms.as_slice(), constant) {
            ([], c) => Dim::Known(c),
            ([t], 0) if t.coeff == 1 && matches!(t.syms.as_slice(), [Atom::Sym(_)]) => {
                let [Atom::Sym(s)] = &t.syms[..] else { unreachable!() };
                Dim::Sym(s.clone())
            }
            _ => {
                if constant != 0 {
                    terms.push(DimTerm {
                        coeff: constant,
                        syms: Vec::new(),
                    });
                }
                Dim::Expr(DimExpr { terms })
            }
        })
    }

    /// `d`'s terms; `None` for an unknown dimension.
    pub fn terms_of(d: &Dim) -> Option<Vec<DimTerm>> {
        Some(match d {
            Dim::Known(v) => vec![DimTerm {
                coeff: *v,
                syms: Vec::new(),
            }],
            Dim::Sym(s) => vec![DimTerm {
                coeff: 1,
                syms: vec![Atom::Sym(s.clone())],
            }],
            Dim::Expr(e) => e.terms.clone(),
            Dim::Unknown => return None,
        })
    }
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }

    /// `a + b`; unknown when either is, or on overflow.
    pub fn plus(&self, other: &Dim) -> Dim {
        let (Some(mut a), Some(b)) = (DimExpr::terms_of(self), DimExpr::terms_of(other)) else {
            return Dim::Unknown;
        };
        a.extend(b);
        DimExpr::sum(a).unwrap_or(Dim::Unknown)
    }

    /// `a * b`, expanded; unknown when either is, or on overflow.
    pub fn times(&self, other: &Dim) -> Dim {
        let (Some(a), Some(b)) = (DimExpr::terms_of(self), DimExpr::terms_of(other)) else {
            return Dim::Unknown;
        };
        let mut terms = Vec::with_capacity(a.len() * b.len());
        for x in &a {
            for y in &b {
                let Some(coeff) = x.coeff.checked_mul(y.coeff) else {
                    return Dim::Unknown;
                };
                terms.push(DimTerm {
                    coeff,
                    syms: x.syms.iter().chain(&y.syms).cloned().collect(),
                });
            }
        }
        DimExpr::sum(terms).unwrap_or(Dim::Unknown)
    }

    /// `a - b`.
    pub fn minus(&self, other: &Dim) -> Dim {
        self.plus(&other.times(&Dim::Known(-1)))
    }

    /// The product of `dims` (1 for none); unknown when one is.
    pub fn product_of(dims: &[Dim]) -> Dim {
        dims.iter().fold(Dim::Known(1), |acc, d| acc.times(d))
    }

    /// `self / divisor` when the quotient is exact as an expression: the
    /// divisor is a single term (`768`, `batch`, `32*batch`) that divides
    /// every term of `self`, e.g. `(batch*seq+batch)*32 / (32*batch)` is
    /// `seq+1`. `None` otherwise (a remainder, a missing symbol, a sum as
    /// divisor, a zero divisor).
    pub fn exact_div(&self, divisor: &Dim) -> Option<Dim> {
        if *self == Dim::Known(0) && !matches!(divisor, Dim::Known(0) | Dim::Unknown) {
            return Some(Dim::Known(0));
        }
        let terms = DimExpr::terms_of(self)?;
        let [d] = DimExpr::terms_of(divisor)?.try_into().ok()?;
        if d.coeff == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(terms.len());
        for t in terms {
            if t.coeff % d.coeff != 0 {
                return None;
            }
            let mut syms = t.syms;
            for s in &d.syms {
                let at = syms.iter().position(|x| x == s)?;
                syms.remove(at);
            }
            out.push(DimTerm {
                coeff: t.coeff.checked_div(d.coeff)?,
                syms,
            });
        }
        DimExpr::sum(out)
    }

    /// `floor(self / divisor)` for a positive divisor, simplified: the part
    /// of each coefficient that `divisor` divides comes out of the floor
    /// (`floor((2*H+3)/2)` is `H+1`), the rest is reduced by its common
    /// divisor with `divisor`, and what is left stays as one [`Atom::Floor`]
    /// (`floor((H-1)/2)` is `floor((H+1)/2)-1`). Unknown for a divisor that
    /// is not positive, an unknown dimension or on overflow.
    pub fn floor_div(&self, divisor: i64) -> Dim {
        let Some(terms) = DimExpr::terms_of(self) else {
            return Dim::Unknown;
        };
        if divisor <= 0 {
            return Dim::Unknown;
        }
        let (mut whole, mut rest) = (Vec::new(), Vec::new());
        for t in terms {
            // c·X = divisor·(c div divisor)·X + (c mod divisor)·X, exactly,
            // and an integer multiple of divisor leaves the floor unchanged.
            let (q, r) = (t.coeff.div_euclid(divisor), t.coeff.rem_euclid(divisor));
            if q != 0 {
                whole.push(DimTerm {
                    coeff: q,
                    syms: t.syms.clone(),
                });
            }
            if r != 0 {
                rest.push(DimTerm { coeff: r, syms: t.syms });
            }
        }
        // Only a constant in 0..divisor is left: its floor is 0.
        if rest.iter().any(|t| !t.syms.is_empty()) {
            let common = rest.iter().fold(divisor, |g, t| gcd(g, t.coeff));
            for t in &mut rest {
                t.coeff /= common;
            }
            let divisor = divisor / common;
            // In the one form (sorted), so equal quotients are equal atoms.
            let Some(rest) = DimExpr::sum(rest).as_ref().and_then(DimExpr::terms_of) else {
                return Dim::Unknown;
            };
            // A quotient of a quotient is one quotient:
            // floor((floor(x/m)+c)/n) = floor((x+c·m)/(m·n)) for integers,
            // so a chain of strided layers gives floor((H+7)/8), not three
            // nested floors.
            if let Some((inner, m, c)) = lone_floor_plus_constant(&rest) {
                let (Some(shift), Some(both)) = (c.checked_mul(m), m.checked_mul(divisor)) else {
                    return Dim::Unknown;
                };
                let Some(inner) = DimExpr::sum(inner.to_vec()) else {
                    return Dim::Unknown;
                };
                let nested = inner.plus(&Dim::Known(shift)).floor_div(both);
                return DimExpr::sum(whole).map_or(Dim::Unknown, |w| w.plus(&nested));
            }
            whole.push(DimTerm {
                coeff: 1,
                syms: vec![Atom::Floor(rest, divisor)],
            });
        }
        DimExpr::sum(whole).unwrap_or(Dim::Unknown)
    }

    /// `ceil(self / divisor)` for a positive divisor: `floor((self+divisor-1)/divisor)`.
    pub fn ceil_div(&self, divisor: i64) -> Dim {
        match divisor.checked_sub(1) {
            Some(up) if divisor > 0 => self.plus(&Dim::Known(up)).floor_div(divisor),
            _ => Dim::Unknown,
        }
    }

    /// The symbols the dimension depends on, with repeats (those inside a
    /// quotient included).
    pub fn symbols(&self) -> Vec<&str> {
        fn of_terms<'a>(terms: &'a [DimTerm], out: &mut Vec<&'a str>) {
            for atom in terms.iter().flat_map(|t| &t.syms) {
                match atom {
                    Atom::Sym(s) => out.push(s),
                    Atom::Floor(inner, _) => of_terms(inner, out),
                }
            }
        }
        let mut out = Vec::new();
        match self {
            Dim::Sym(s) => out.push(s.as_str()),
            Dim::Expr(e) => of_terms(&e.terms, &mut out),
            Dim::Known(_) | Dim::Unknown => {}
        }
        out
    }
}

/// `floor(x/m) + c` as `(x, m, c)`, when `terms` are just that.
fn lone_floor_plus_constant(terms: &[DimTerm]) -> Option<(&[DimTerm], i64, i64)> {
    let (floor, constant) = match terms {
        [t] => (t, 0),
        [t, c] if c.syms.is_empty() => (t, c.coeff),
        _ => return None,
    };
    match (floor.coeff, floor.syms.as_slice()) {
        (1, [Atom::Floor(inner, m)]) => Some((inner, *m, constant)),
        _ => None,
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    i64::try_from(a).unwrap_or(1)
}

/// `2*seq+1`, `floor((H+1)/2)`: the terms as people write them.
fn write_terms(f: &mut std::fmt::Formatter<'_>, terms: &[DimTerm]) -> std::fmt::Result {
    for (i, t) in terms.iter().enumerate() {
        let sign = if t.coeff < 0 {
            "-"
        } else if i > 0 {
            "+"
        } else {
            ""
        };
        let magnitude = t.coeff.unsigned_abs();
        f.write_str(sign)?;
        let mut first = true;
        if magnitude != 1 || t.syms.is_empty() {
            write!(f, "{magnitude}")?;
            first = false;
        }
        for atom in &t.syms {
            if !first {
                f.write_str("*")?;
            }
            first = false;
            write!(f, "{atom}")?;
        }
    }
    Ok(())
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::Floor(terms, divisor) => {
                f.write_str("floor(")?;
                if terms.len() > 1 {
                    f.write_str("(")?;
                    write_terms(f, terms)?;
                    f.write_str(")")?;
                } else {
                    write_terms(f, terms)?;
                }
                write!(f, "/{divisor})")
            }
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Expr(e) => write_terms(f, &e.terms),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A tensor type. `shape: None` means the rank itself is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    pub elem: ElemType,
    pub shape: Option<Vec<Dim>>,
}

impl TensorType {
    pub fn new(elem: ElemType, shape: Vec<Dim>) -> Self {
        TensorType {
            elem,
            shape: Some(shape),
        }
    }

    pub fn known_dims(elem: ElemType, dims: &[i64]) -> Self {
        TensorType::new(elem, dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }

    /// Element count when every dimension is known.
    pub fn num_elements(&self) -> Option<u64> {
        let shape = self.shape.as_ref()?;
        shape.iter().try_fold(1u64, |acc, d| {
            d.known()
                .and_then(|v| u64::try_from(v).ok())
                .map(|v| acc.saturating_mul(v))
        })
    }

    /// Reads a `TypeProto`; `None` for non-tensor types (sequence, map, ...).
    pub fn from_proto(t: &TypeProto) -> Option<TensorType> {
        let tensor = match t.value.as_ref()? {
            type_proto::Value::TensorType(tt) => tt,
            _ => return None,
        };
        let shape = tensor.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Dim::Known(*v),
                    Some(tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        });
        Some(TensorType {
            elem: ElemType(tensor.elem_type()),
            shape,
        })
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.elem)?;
        match &self.shape {
            None => f.write_str("[...]"),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                write!(f, "[{}]", dims.join(","))
            }
        }
    }
}

/// JSON form: a number, a symbol name, or null for unknown.
impl serde::Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Known(v) => s.serialize_i64(*v),
            Dim::Sym(name) => s.serialize_str(name),
            Dim::Expr(_) => s.serialize_str(&self.to_string()),
            Dim::Unknown => s.serialize_none(),
        }
    }
}

/// JSON form: `{"elem": "float", "shape": [1, "batch", null]}` (shape null
/// when the rank is unknown).
impl serde::Serialize for TensorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TensorType", 2)?;
        st.serialize_field("elem", &self.elem.name())?;
        st.serialize_field("shape", &self.shape)?;
        st.end()
    }
}
