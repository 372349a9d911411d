//! Matrix products: Gemm, MatMul (numpy semantics: batched broadcast, 1-D
//! operands), their integer and quantised forms, and Einsum.

use std::collections::BTreeMap;

use super::dims::{broadcast, fmt_shape, unify};
use super::util::{Rule, input, int_attr, invalid, result, shape};
use crate::analysis::shapes::{OpContext, RuleError};
use crate::ir::Dim;
use crate::onnx::dtype::ElemType;

/// Gemm: `op(A)·op(B) (+ C)` with 2-D A and B, `transA`/`transB` flags.
pub(super) fn gemm(ctx: &OpContext) -> Rule {
    let elem = input(ctx, 0)?.elem;
    let (a, b) = (shape(ctx, 0)?, shape(ctx, 1)?);
    if a.len() != 2 || b.len() != 2 {
        return Err(invalid(format!(
            "A {} and B {} must both be 2-D",
            fmt_shape(a),
            fmt_shape(b)
        )));
    }
    let pick = |s: &[Dim], flag: &str| {
        if int_attr(ctx, flag, 0) != 0 {
            (s[1].clone(), s[0].clone())
        } else {
            (s[0].clone(), s[1].clone())
        }
    };
    let ((m, ka), (kb, n)) = (pick(a, "transA"), pick(b, "transB"));
    if unify(&ka, &kb).is_none() {
        return Err(invalid(format!(
            "inner dimensions differ: op(A) is [{m},{ka}], op(B) is [{kb},{n}]"
        )));
    }
    let out = vec![m, n];
    if ctx.has_input(2)
        && let Some(c) = ctx.input_shape(2)
    {
        // C broadcasts to the result in one direction only.
        match broadcast(&[c, &out]) {
            Ok(r) if r.len() == 2 => {}
            _ => {
                return Err(invalid(format!(
                    "C {} does not broadcast to {}",
                    fmt_shape(c),
                    fmt_shape(&out)
                )));
            }
        }
    }
    Ok(vec![result(elem, out)])
}

/// MatMul, MatMulInteger (int32), QLinearMatMul (inputs 0, 3; y_zero_point's type).
pub(super) fn matmul(ctx: &OpContext) -> Rule {
    let (ai, bi, elem) = match ctx.node.op_type.as_str() {
        "QLinearMatMul" => (0, 3, input(ctx, 7)?.elem),
        "MatMulInteger" => (0, 1, ElemType::INT32),
        _ => (0, 1, input(ctx, 0)?.elem),
    };
    let out = matmul_shape(shape(ctx, ai)?, shape(ctx, bi)?)?;
    Ok(vec![result(elem, out)])
}

fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, RuleError> {
    if a.is_empty() || b.is_empty() {
        return Err(invalid("MatMul operands must have rank 1 or more"));
    }
    // A 1-D operand is a row (A) or column (B) vector whose unit axis is
    // dropped from the result.
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.to_vec()
    };
    let (ra, rb) = (a2.len(), b2.len());
    if unify(&a2[ra - 1], &b2[rb - 2]).is_none() {
        return Err(invalid(format!(
            "inner dimensions differ: A {} has K={}, B {} has K={}",
            fmt_shape(a),
            a2[ra - 1],
            fmt_shape(b),
            b2[rb - 2]
        )));
    }
    let mut out = broadcast(&[&a2[..ra - 2], &b2[..rb - 2]]).map_err(|e| invalid(format!("batch {e}")))?;
    if a.len() > 1 {
        out.push(a2[ra - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[rb - 1].clone());
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Label {
    Letter(char),
    Ellipsis,
}

fn parse_term(term: &str) -> Result<Vec<Label>, RuleError> {
    let mut labels = Vec::new();
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if labels.contains(&Label::Ellipsis) {
                return Err(invalid(format!("einsum term '{term}' has two ellipses")));
            }
            labels.push(Label::Ellipsis);
            rest = after;
        } else if c.is_ascii_alphabetic() {
            labels.push(Label::Letter(c));
            rest = &rest[1..];
        } else {
            return Err(invalid(format!("einsum term '{term}' has an invalid label '{c}'")));
        }
    }
    Ok(labels)
}

/// Einsum: label sizes from the operands; the output is the explicit
/// right-hand side, or (implicit form) the ellipsis dims then the labels used
/// once, in alphabetical order.
pub(super) fn einsum(ctx: &OpContext) -> Rule {
    let equation: String = ctx
        .node
        .attr_string("equation")
        .ok_or_else(|| invalid("attribute equation is missing"))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ctx.node.inputs.len() {
        return Err(invalid(format!(
            "equation '{equation}' has {} operands, node has {} inputs",
            terms.len(),
            ctx.node.inputs.len()
        )));
    }
    let elem = input(ctx, 0)?.elem;
    let mut sizes: BTreeMap<char, Dim> = BTreeMap::new();
    let mut uses: BTreeMap<char, usize> = BTreeMap::new();
    let mut ellipsis: Vec<Dim> = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        let s = shape(ctx, i)?;
        let labels = parse_term(term)?;
        let letters = labels.iter().filter(|l| matches!(l, Label::Letter(_))).count();
        let has_ellipsis = labels.contains(&Label::Ellipsis);
        if s.len() < letters || (!has_ellipsis && s.len() != letters) {
            return Err(invalid(format!(
                "term '{term}' does not fit input #{i} of shape {}",
                fmt_shape(s)
            )));
        }
        let mut k = 0;
        for label in labels {
            match label {
                Label::Letter(c) => {
                    let d = &s[k];
                    let merged = match sizes.get(&c) {
                        Some(prev) => unify(prev, d).ok_or_else(|| {
                            invalid(format!("label '{c}' is {prev} in one operand and {d} in input #{i}"))
                        })?,
                        None => d.clone(),
                    };
                    sizes.insert(c, merged);
                    *uses.entry(c).or_default() += 1;
                    k += 1;
                }
                Label::Ellipsis => {
                    let n = s.len() - letters;
                    ellipsis = broadcast(&[&ellipsis, &s[k..k + n]]).map_err(invalid)?;
                    k += n;
                }
            }
        }
    }
    let out = match rhs {
        Some(rhs) => {
            let mut out = Vec::new();
            for label in parse_term(rhs)? {
                match label {
                    Label::Letter(c) => out.push(
                        sizes
                            .get(&c)
                            .cloned()
                            .ok_or_else(|| invalid(format!("output label '{c}' is not in any operand")))?,
                    ),
                    Label::Ellipsis => out.extend(ellipsis.iter().cloned()),
                }
            }
            out
        }
        None => ellipsis
            .into_iter()
            .chain(uses.iter().filter(|&(_, &n)| n == 1).map(|(c, _)| sizes[c].clone()))
            .collect(),
    };
    Ok(vec![result(elem, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Case;

    #[test]
    fn gemm_with_transposes() {
        let g = Case::new("Gemm")
            .input("float[N,2048]")
            .input("float[1000,2048]")
            .input("float[1000]");
        assert_eq!(g.int("transB", 1).ty(), "float[N,1000]");
        let ta = Case::new("Gemm")
            .input("float[4,3]")
            .input("float[4,5]")
            .int("transA", 1);
        assert_eq!(ta.ty(), "float[3,5]");
        let bad = Case::new("Gemm").input("float[2,3]").input("float[4,5]").invalid();
        assert!(bad.contains("[2,3]") && bad.contains("[4,5]"), "{bad}");
        let c = Case::new("Gemm")
            .input("float[2,3]")
            .input("float[3,5]")
            .input("float[4,5]");
        assert!(c.invalid().contains("C [4,5]"));
        assert!(
            Case::new("Gemm")
                .input("float[2,3,4]")
                .input("float[4,5]")
                .invalid()
                .contains("2-D")
        );
    }

    #[test]
    fn matmul_broadcasts_batches_and_drops_vector_axes() {
        let mm = |a: &str, b: &str| Case::new("MatMul").input(a).input(b).ty();
        assert_eq!(mm("float[N,S,64]", "float[64,128]"), "float[N,S,128]");
        assert_eq!(mm("float[2,1,3,4]", "float[5,4,6]"), "float[2,5,3,6]");
        assert_eq!(mm("float[4]", "float[4,6]"), "float[6]");
        assert_eq!(mm("float[3,4]", "float[4]"), "float[3]");
        assert_eq!(mm("float[4]", "float[4]"), "float[]");
        assert_eq!(mm("float[N,3,K]", "float[N,K,5]"), "float[N,3,5]");
        let bad = Case::new("MatMul").input("float[N,3,4]").input("float[5,6]").invalid();
        assert!(bad.contains("K=4") && bad.contains("K=5"), "{bad}");
        assert!(
            Case::new("MatMul")
                .input("float[2,3,4]")
                .input("float[5,4,6]")
                .invalid()
                .contains("batch")
        );
        assert!(
            Case::new("MatMul")
                .input("float[]")
                .input("float[2]")
                .invalid()
                .contains("rank")
        );
    }

    #[test]
    fn integer_matmuls() {
        assert_eq!(
            Case::new("MatMulInteger").input("uint8[2,3]").input("uint8[3,4]").ty(),
            "int32[2,4]"
        );
        let q = Case::new("QLinearMatMul")
            .input("uint8[2,3]")
            .input("float[]")
            .input("uint8[]")
            .input("uint8[3,4]")
            .input("float[]")
            .input("uint8[]")
            .input("float[]")
            .input("uint8[]");
        assert_eq!(q.ty(), "uint8[2,4]");
    }

    #[test]
    fn einsum_equations() {
        let e = |eq: &str, a: &str, b: &str| Case::new("Einsum").string("equation", eq).input(a).input(b);
        assert_eq!(e("ij,jk->ik", "float[2,3]", "float[3,4]").ty(), "float[2,4]");
        assert_eq!(
            e("bhqd, bhkd -> bhqk", "float[N,8,S,64]", "float[N,8,S,64]").ty(),
            "float[N,8,S,S]"
        );
        assert_eq!(e("...ij,...jk", "float[N,2,3]", "float[1,3,4]").ty(), "float[N,2,4]");
        assert_eq!(e("ij,jk", "float[2,3]", "float[3,4]").ty(), "float[2,4]");
        let one = |eq: &str, a: &str| Case::new("Einsum").string("equation", eq).input(a).ty();
        assert_eq!(one("ii->i", "float[5,5]"), "float[5]");
        assert_eq!(one("ij->", "float[5,6]"), "float[]");
        assert_eq!(one("ji", "float[5,6]"), "float[6,5]");
        assert!(
            e("ij,jk->ik", "float[2,3]", "float[4,4]")
                .invalid()
                .contains("label 'j'")
        );
        assert!(e("ij,jk->iz", "float[2,3]", "float[3,4]").invalid().contains("'z'"));
        assert!(e("ij->i", "float[2,3]", "float[3,4]").invalid().contains("operands"));
        assert!(
            e("ijk,jk->i", "float[2,3]", "float[3,4]")
                .invalid()
                .contains("does not fit")
        );
        assert!(e("i1,jk->i", "float[2,3]", "float[3,4]").invalid().contains("'1'"));
        assert!(Case::new("Einsum").input("float[2]").invalid().contains("equation"));
    }
}
