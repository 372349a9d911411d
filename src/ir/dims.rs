//! What a named dimension is worth when the cost model counts one sample.
//!
//! Three kinds of symbol appear in inferred shapes:
//! - the **batch**: the leading dimension of a graph input the caller feeds.
//!   Costs are per sample, so it counts 1;
//! - **data-dependent counts** (`nonzero(MASK)`, the rows a `Compress` keeps):
//!   counted 1 per sample, i.e. per kept row;
//! - **every other symbol** (a sequence length, an image side): its value
//!   comes from `--dim NAME=VALUE`, else from the model's own declarations (a
//!   declared type with a number where inference has the symbol). A symbol
//!   with neither is an error that names it: counting it as 1 would report
//!   a 128-token encoder as if it read one token.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::Graph;
use super::types::{Atom, Dim, DimTerm, TensorType};

/// The symbol for the number of true elements of `mask` (a `NonZero` or
/// `Compress` that does not fold): the same mask gives the same symbol.
pub fn data_dependent_count(mask: &str) -> Dim {
    Dim::Sym(format!("nonzero({mask})"))
}

fn is_data_dependent(symbol: &str) -> bool {
    symbol.starts_with("nonzero(") && symbol.ends_with(')')
}

/// Symbol values for per-sample counts. Symbols without a value (the batch
/// and data-dependent counts, once [`DimValues::bind`] has checked the
/// rest) count 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimValues {
    values: BTreeMap<String, u64>,
}

/// A symbol the cost model cannot put a number on, or a `--dim` that does
/// not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DimError {
    #[error(
        "dimension '{symbol}' (of '{value}', type {ty}) has no value: costs depend on it; give --dim {symbol}=VALUE"
    )]
    Unbound { symbol: String, value: String, ty: String },
    #[error("--dim {symbol}: the model has no dimension named '{symbol}' (its named dimensions: {known})")]
    NotInModel { symbol: String, known: String },
    #[error("--dim {symbol}: '{symbol}' is the batch dimension (leading dim of input '{input}'); costs are per sample")]
    Batch { symbol: String, input: String },
    #[error("--dim {0}: expected NAME=VALUE with VALUE a positive integer")]
    Syntax(String),
    #[error("--dim {0} is given twice")]
    Repeated(String),
}

/// Parses one `--dim NAME=VALUE`.
pub fn parse_dim_arg(arg: &str) -> Result<(String, u64), DimError> {
    let (name, value) = arg.split_once('=').ok_or_else(|| DimError::Syntax(arg.into()))?;
    let value: u64 = value.trim().parse().map_err(|_| DimError::Syntax(arg.into()))?;
    if name.trim().is_empty() || value == 0 {
        return Err(DimError::Syntax(arg.into()));
    }
    Ok((name.trim().to_string(), value))
}

impl DimValues {
    /// Values for every symbol of `graph`'s value types: `given` first (from
    /// `--dim`), then `declared` (numbers the model declares where inference
    /// has a symbol). Fails on a symbol left without a value, on a `given`
    /// name the graph does not have and on a value for the batch.
    pub fn bind(
        graph: &Graph,
        given: &[(String, u64)],
        declared: &BTreeMap<String, i64>,
    ) -> Result<DimValues, DimError> {
        let batch: BTreeMap<String, String> = graph
            .inputs
            .iter()
            .filter_map(|&v| {
                let value = graph.value(v);
                match value.ty.as_ref()?.shape.as_ref()?.first()? {
                    Dim::Sym(s) => Some((s.clone(), value.name.clone())),
                    _ => None,
                }
            })
            .collect();
        // Every symbol, with the first value (in graph order) whose type has it.
        let mut symbols: BTreeMap<String, (String, String)> = BTreeMap::new();
        for value in &graph.values {
            let Some(ty) = value.ty.as_ref() else { continue };
            for d in ty.shape.iter().flatten() {
                for s in d.symbols() {
                    symbols
                        .entry(s.to_string())
                        .or_insert_with(|| (value.name.clone(), ty.to_string()));
                }
            }
        }
        let mut values = BTreeMap::new();
        for (name, value) in given {
            if let Some(input) = batch.get(name) {
                return Err(DimError::Batch {
                    symbol: name.clone(),
                    input: input.clone(),
                });
            }
            if !symbols.contains_key(name) {
                let known: BTreeSet<&str> = symbols
                    .keys()
                    .map(String::as_str)
                    .filter(|s| !is_data_dependent(s))
                    .collect();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.into_iter().collect::<Vec<_>>().join(", ")
                };
                return Err(DimError::NotInModel {
                    symbol: name.clone(),
                    known,
                });
            }
            if values.insert(name.clone(), *value).is_some() {
                return Err(DimError::Repeated(name.clone()));
            }
        }
        for (symbol, (value, ty)) in symbols {
            if values.contains_key(&symbol) || batch.contains_key(&symbol) || is_data_dependent(&symbol) {
                continue;
            }
            match declared.get(&symbol).and_then(|&v| u64::try_from(v).ok()) {
                Some(v) => {
                    values.insert(symbol, v);
                }
                None => return Err(DimError::Unbound { symbol, value, ty }),
            }
        }
        Ok(DimValues { values })
    }

    /// Values given outright, for tests.
    #[cfg(test)]
    pub fn with(values: &[(&str, u64)]) -> DimValues {
        DimValues {
            values: values.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The symbols with a value, for reports: `seq=128`.
    pub fn bound(&self) -> impl Iterator<Item = (&str, u64)> {
        self.values.iter().map(|(k, &v)| (k.as_str(), v))
    }

    fn symbol(&self, s: &str) -> u64 {
        self.values.get(s).copied().unwrap_or(1)
    }

    /// One dimension's size for one sample; `None` when unknown.
    pub fn size(&self, d: &Dim) -> Option<u64> {
        match d {
            Dim::Known(v) => u64::try_from(*v).ok(),
            Dim::Sym(s) => Some(self.symbol(s)),
            // Each term at the symbols' values; a negative total (a slice
            // longer than the symbol's value) is not a size.
            Dim::Expr(e) => u64::try_from(self.terms_value(&e.terms)?).ok(),
            Dim::Unknown => None,
        }
    }

    fn terms_value(&self, terms: &[DimTerm]) -> Option<i128> {
        terms.iter().try_fold(0i128, |acc, t| {
            let term = t.syms.iter().try_fold(i128::from(t.coeff), |p, atom| {
                let value = match atom {
                    Atom::Sym(s) => i128::from(self.symbol(s)),
                    Atom::Floor(inner, divisor) => self.terms_value(inner)?.div_euclid(i128::from(*divisor)),
                };
                p.checked_mul(value)
            })?;
            acc.checked_add(term)
        })
    }

    /// Element count of `ty` for one sample; `None` when a dim or the rank
    /// is unknown.
    pub fn elements(&self, ty: &TensorType) -> Option<u64> {
        ty.shape
            .as_ref()?
            .iter()
            .try_fold(1u64, |acc, d| Some(acc.saturating_mul(self.size(d)?)))
    }

    pub fn bytes(&self, ty: &TensorType) -> Option<u64> {
        ty.elem.bytes_for(self.elements(ty)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DimExpr;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    #[test]
    fn batch_and_kept_rows_count_one_and_other_symbols_their_value() {
        let dims = DimValues {
            values: BTreeMap::from([("seq".to_string(), 128)]),
        };
        assert_eq!(dims.size(&sym("batch")), Some(1));
        assert_eq!(dims.size(&data_dependent_count("mask")), Some(1));
        assert_eq!(dims.size(&sym("seq")), Some(128));
        let rows = DimExpr::product(3, vec![Atom::sym("seq"), Atom::sym("batch")]);
        assert_eq!(dims.size(&rows), Some(384));
        let with_class_token = Dim::Sym("seq".into()).plus(&Dim::Known(1));
        assert_eq!(dims.size(&with_class_token), Some(129));
        assert_eq!(dims.size(&Dim::Known(100).minus(&Dim::Sym("seq".into()))), None);
        assert_eq!(dims.size(&Dim::Unknown), None);
        let ty = TensorType::new(
            crate::onnx::dtype::ElemType::FLOAT,
            vec![sym("batch"), sym("seq"), Dim::Known(4)],
        );
        assert_eq!(dims.elements(&ty), Some(512));
        assert_eq!(dims.bytes(&ty), Some(2048));
    }

    #[test]
    fn floor_quotients_count_at_the_symbols_values() {
        let at = |h: u64| DimValues {
            values: BTreeMap::from([("H".to_string(), h)]),
        };
        let half = sym("H").plus(&Dim::Known(1)).floor_div(2);
        assert_eq!((at(224).size(&half), at(225).size(&half)), (Some(112), Some(113)));
        let quarter = half.minus(&Dim::Known(1)).floor_div(2).plus(&Dim::Known(1));
        assert_eq!((at(224).size(&quarter), at(7).size(&quarter)), (Some(56), Some(2)));
        let grid = sym("H").floor_div(16).times(&sym("H").floor_div(16));
        assert_eq!(at(224).size(&grid), Some(196));
    }

    #[test]
    fn arguments_parse_as_name_equals_positive_integer() {
        assert_eq!(parse_dim_arg("seq=128"), Ok(("seq".into(), 128)));
        for bad in ["seq", "seq=", "seq=0", "seq=-3", "=4", "seq=1.5"] {
            assert_eq!(parse_dim_arg(bad), Err(DimError::Syntax(bad.into())), "{bad}");
        }
    }

    #[test]
    fn only_well_formed_nonzero_symbols_are_data_dependent() {
        let Dim::Sym(s) = data_dependent_count("m") else {
            unreachable!()
        };
        assert!(is_data_dependent(&s));
        assert!(!is_data_dependent("nonzero"));
        assert!(!is_data_dependent("seq"));
    }
}
