//! Rule files (`passes/*.rules`): the format, the conditions a rule may
//! state, and their translation into egg rewrites. `passes/README.md` is the
//! user-facing description; keep the two in step.
//!
//! ```text
//! # A comment line.
//! rule temperature-into-gemm
//!   (Div (Gemm ?x ?w ?b ?g) ?t)
//!   => (Gemm ?x (Div ?w ?t) (Div ?b ?t) ?g)
//!   if constant ?w ?b ?t; scalar ?t
//! ```

use std::fmt;
use std::str::FromStr;

use egg::{ConditionalApplier, Id, Pattern, Rewrite, Subst, Var};

use super::analysis::{Facts, FuseAnalysis, FuseGraph};
use super::lang::Term;
use crate::onnx::dtype::ElemType;

/// The rule families shipped with eexc (`passes/<family>.rules`), compiled
/// in so the binary needs no data folder at run time.
pub const STANDARD: &[(&str, &str)] = &[
    ("temperature", include_str!("../../passes/temperature.rules")),
    ("decision", include_str!("../../passes/decision.rules")),
    ("batch", include_str!("../../passes/batch.rules")),
    ("linear", include_str!("../../passes/linear.rules")),
    ("layout", include_str!("../../passes/layout.rules")),
];

/// Families used unless the user picks: every one except `decision`, whose
/// forms have fewer FLOPs but run slower in ONNX Runtime 1.32, whose
/// ReduceLogSumExp is far slower than its fused Softmax
/// (bench/fusion/decision_micro.py; docs/fusion.md has the table).
pub const DEFAULT_FAMILIES: &[&str] = &["temperature", "batch", "linear", "layout"];

/// One parsed rule: the egg rewrite, built and checked once, and the file
/// it came from (for errors).
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub file: String,
    pub rewrite: Rewrite<Term, FuseAnalysis>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every variable has known float contents (a true constant, not a knob).
    Constant(Vec<Var>),
    /// Every variable is computable at load time (weights whose contents we
    /// may not know, e.g. built by ConstantOfShape); the runtime folds it.
    LoadTime(Vec<Var>),
    /// The bundle holds no attribute outside this list.
    OnlyAttrs(Var, Vec<String>),
    /// One element.
    Scalar(Var),
    Rank(Var, usize),
    /// Static size of one axis.
    Dim(Var, usize, i64),
    /// Element type.
    Elem(Var, ElemType),
    /// Known integer contents.
    Ints(Var, Vec<i64>),
    /// Known integer contents without a 0 (a Reshape target that copies no
    /// dimension from its input).
    NoZero(Var),
    /// The static shape of the first equals the integer contents of the second.
    ShapeIs(Var, Var),
    /// Two bundles' `perm`s undo each other.
    InversePerms(Var, Var),
    Opset(Cmp, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    AtLeast,
    Below,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub rule: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: rule '{}': {}", self.file, self.rule, self.message)
        }
    }
}

impl std::error::Error for RuleError {}

/// Parses one rule file.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    let err = |rule: &str, message: String| RuleError {
        file: file.to_string(),
        rule: rule.to_string(),
        message,
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("rule ") {
            if let Some((n, body)) = current.take() {
                rules.push(parse_rule(file, &n, &body.join(" "))?);
            }
            current = Some((name.trim().to_string(), Vec::new()));
        } else {
            match current.as_mut() {
                Some((_, body)) => body.push(trimmed.to_string()),
                None => return Err(err("", format!("text before the first 'rule' line: '{trimmed}'"))),
            }
        }
    }
    if let Some((n, body)) = current {
        rules.push(parse_rule(file, &n, &body.join(" "))?);
    }
    Ok(rules)
}

fn parse_rule(file: &str, name: &str, body: &str) -> Result<Rule, RuleError> {
    let err = |message: String| RuleError {
        file: file.to_string(),
        rule: name.to_string(),
        message,
    };
    let (lhs, rest) = body
        .split_once("=>")
        .ok_or_else(|| err("no '=>' between pattern and replacement".into()))?;
    let (rhs, conds) = match rest.split_once(" if ") {
        Some((r, c)) => (r, c),
        None => (rest, ""),
    };
    let conditions = conds
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| parse_condition(c).map_err(|m| err(format!("condition '{c}': {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        name: name.to_string(),
        file: file.to_string(),
        rewrite: build_rewrite(name, lhs.trim(), rhs.trim(), conditions).map_err(err)?,
    })
}

fn var(s: &str) -> Result<Var, String> {
    if !s.starts_with('?') {
        return Err(format!("'{s}' is not a ?variable"));
    }
    Var::from_str(s).map_err(|e| e.to_string())
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let int = |s: &str| s.parse::<i64>().map_err(|_| format!("'{s}' is not an integer"));
    let arity = |n: usize| {
        if words.len() == n + 1 {
            Ok(())
        } else {
            Err(format!("'{}' takes {n} arguments", words[0]))
        }
    };
    match words.first().copied() {
        Some("constant") if words.len() > 1 => Ok(Condition::Constant(
            words[1..].iter().map(|w| var(w)).collect::<Result<_, _>>()?,
        )),
        Some("load-time") if words.len() > 1 => Ok(Condition::LoadTime(
            words[1..].iter().map(|w| var(w)).collect::<Result<_, _>>()?,
        )),
        Some("only-attrs") => {
            arity(2)?;
            Ok(Condition::OnlyAttrs(
                var(words[1])?,
                words[2].split(',').map(String::from).collect(),
            ))
        }
        Some("scalar") => arity(1).and(Ok(Condition::Scalar(var(words[1])?))),
        Some("rank") => {
            arity(2)?;
            Ok(Condition::Rank(var(words[1])?, int(words[2])? as usize))
        }
        Some("dim") => {
            arity(3)?;
            Ok(Condition::Dim(var(words[1])?, int(words[2])? as usize, int(words[3])?))
        }
        Some("elem") => {
            arity(2)?;
            let ty = match words[2] {
                "float" => ElemType::FLOAT,
                "bool" => ElemType::BOOL,
                "int64" => ElemType::INT64,
                other => return Err(format!("unknown element type '{other}'")),
            };
            Ok(Condition::Elem(var(words[1])?, ty))
        }
        Some("ints") => {
            arity(2)?;
            let values = words[2].split(',').map(int).collect::<Result<_, _>>()?;
            Ok(Condition::Ints(var(words[1])?, values))
        }
        Some("no-zero") => arity(1).and(Ok(Condition::NoZero(var(words[1])?))),
        Some("shape-is") => {
            arity(2)?;
            Ok(Condition::ShapeIs(var(words[1])?, var(words[2])?))
        }
        Some("inverse-perms") => {
            arity(2)?;
            Ok(Condition::InversePerms(var(words[1])?, var(words[2])?))
        }
        Some("opset") => {
            arity(2)?;
            let (cmp, n) = match (words[1], int(words[2])?) {
                (">=", n) => (Cmp::AtLeast, n),
                ("<", n) => (Cmp::Below, n),
                (other, _) => return Err(format!("opset compares with >= or <, not '{other}'")),
            };
            Ok(Condition::Opset(cmp, n))
        }
        _ => Err("unknown condition".into()),
    }
}

/// The egg rewrite of one rule; every variable of the replacement and the
/// conditions must be bound by the pattern.
fn build_rewrite(
    name: &str,
    lhs: &str,
    rhs: &str,
    conditions: Vec<Condition>,
) -> Result<Rewrite<Term, FuseAnalysis>, String> {
    let lhs: Pattern<Term> = lhs.parse().map_err(|e| format!("pattern: {e}"))?;
    let rhs: Pattern<Term> = rhs.parse().map_err(|e| format!("replacement: {e}"))?;
    let bound = lhs.vars();
    for v in rhs.vars() {
        if !bound.contains(&v) {
            return Err(format!("replacement uses {v}, which the pattern does not bind"));
        }
    }
    for v in conditions.iter().flat_map(Condition::vars) {
        if !bound.contains(&v) {
            return Err(format!("condition uses {v}, which the pattern does not bind"));
        }
    }
    let applier = ConditionalApplier {
        condition: Conditions(conditions),
        applier: rhs,
    };
    Rewrite::new(name, lhs, applier)
}

impl Condition {
    fn vars(&self) -> Vec<Var> {
        match self {
            Condition::Constant(v) | Condition::LoadTime(v) => v.clone(),
            Condition::OnlyAttrs(v, _) => vec![*v],
            Condition::Scalar(v)
            | Condition::Rank(v, _)
            | Condition::Dim(v, _, _)
            | Condition::Elem(v, _)
            | Condition::Ints(v, _)
            | Condition::NoZero(v) => vec![*v],
            Condition::ShapeIs(a, b) | Condition::InversePerms(a, b) => vec![*a, *b],
            Condition::Opset(..) => Vec::new(),
        }
    }

    fn holds(&self, egraph: &FuseGraph, subst: &Subst) -> bool {
        let facts = |v: &Var| -> &Facts { &egraph[subst[*v]].data };
        match self {
            Condition::Constant(vars) => vars.iter().all(|v| facts(v).constant && facts(v).data.is_some()),
            Condition::LoadTime(vars) => vars.iter().all(|v| facts(v).constant),
            Condition::OnlyAttrs(v, allowed) => facts(v)
                .attrs
                .as_ref()
                .is_some_and(|a| a.0.keys().all(|k| allowed.contains(k))),
            Condition::Scalar(v) => facts(v).ty.as_ref().and_then(|t| t.num_elements()) == Some(1),
            Condition::Rank(v, r) => facts(v).ty.as_ref().and_then(|t| t.rank()) == Some(*r),
            Condition::Dim(v, axis, n) => facts(v).static_dims().and_then(|d| d.get(*axis).copied()) == Some(*n),
            Condition::Elem(v, e) => facts(v).ty.as_ref().is_some_and(|t| t.elem == *e),
            Condition::Ints(v, want) => facts(v).constant && facts(v).ints().as_ref() == Some(want),
            Condition::NoZero(v) => facts(v).constant && facts(v).ints().is_some_and(|s| !s.contains(&0)),
            Condition::ShapeIs(x, s) => {
                facts(s).constant && facts(x).static_dims().is_some() && facts(x).static_dims() == facts(s).ints()
            }
            Condition::InversePerms(p, q) => {
                let perm = |v: &Var| {
                    facts(v)
                        .attrs
                        .as_ref()
                        .and_then(|a| a.ints("perm").map(<[i64]>::to_vec))
                };
                match (perm(p), perm(q)) {
                    (Some(p), Some(q)) if p.len() == q.len() => {
                        (0..p.len()).all(|i| usize::try_from(p[i]).ok().and_then(|j| q.get(j)) == Some(&(i as i64)))
                    }
                    _ => false,
                }
            }
            Condition::Opset(Cmp::AtLeast, n) => egraph.analysis.opset >= *n,
            Condition::Opset(Cmp::Below, n) => egraph.analysis.opset < *n,
        }
    }
}

/// All of a rule's conditions, as one egg condition.
#[derive(Debug, Clone)]
struct Conditions(Vec<Condition>);

impl egg::Condition<Term, FuseAnalysis> for Conditions {
    fn check(&self, egraph: &mut FuseGraph, _eclass: Id, subst: &Subst) -> bool {
        self.0.iter().all(|c| c.holds(egraph, subst))
    }
}

/// The rules of the named families (`all`: every family), parsed.
pub fn load(families: &[String]) -> Result<Vec<Rule>, RuleError> {
    let everything = families.iter().any(|f| f == "all");
    for f in families {
        if f != "all" && !STANDARD.iter().any(|(name, _)| name == f) {
            let known: Vec<&str> = STANDARD.iter().map(|(n, _)| *n).collect();
            return Err(RuleError {
                file: "--fuse-rules".into(),
                rule: String::new(),
                message: format!("no rule family '{f}' (known: {}, or all)", known.join(", ")),
            });
        }
    }
    let mut all = Vec::new();
    for (family, text) in STANDARD {
        if everything || families.iter().any(|f| f == family) {
            all.extend(parse_file(&format!("{family}.rules"), text)?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &all {
        if !seen.insert(r.name.clone()) {
            return Err(RuleError {
                file: r.file.clone(),
                rule: r.name.clone(),
                message: "a rule of this name already exists".into(),
            });
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_rules_parse() {
        let rules = load(&["all".to_string()]).unwrap();
        assert!(rules.len() >= 15, "{} rules", rules.len());
        let default: Vec<String> = DEFAULT_FAMILIES.iter().map(|s| s.to_string()).collect();
        assert!(load(&default).unwrap().iter().all(|r| r.file != "decision.rules"));
        let e = load(&["shiny".to_string()]).unwrap_err();
        assert!(e.message.contains("known: temperature, decision"), "{e}");
    }

    #[test]
    fn malformed_rules_name_file_rule_and_problem() {
        let e = parse_file("x.rules", "rule a\n (Identity ?x)\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.rules: rule 'a': no '=>' between pattern and replacement"
        );
        let e = parse_file("x.rules", "rule b\n (Identity ?x) => ?y\n").unwrap_err();
        assert!(e.message.contains("does not bind"), "{e}");
        let e = parse_file("x.rules", "rule c\n (Identity ?x) => ?x if shiny ?x\n").unwrap_err();
        assert!(e.message.contains("unknown condition"), "{e}");
        let e = parse_file("x.rules", "stray\n").unwrap_err();
        assert!(e.message.contains("before the first"), "{e}");
    }

    #[test]
    fn conditions_parse() {
        assert_eq!(
            parse_condition("opset >= 20").unwrap(),
            Condition::Opset(Cmp::AtLeast, 20)
        );
        assert_eq!(
            parse_condition("ints ?k 0,1").unwrap(),
            Condition::Ints(var("?k").unwrap(), vec![0, 1])
        );
        assert!(parse_condition("rank ?x").is_err());
    }
}
