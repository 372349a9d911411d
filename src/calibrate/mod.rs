//! `eexc calibrate`: per-exit temperatures (NLL) and a confidence
//! threshold per exit chosen to minimise the expected cost subject to a
//! bound on the accuracy drop (labels) or the disagreement with the full
//! model, with a distribution-free guarantee (guarantee.rs) over candidates
//! ordered on rows the test never sees (pareto.rs). Writes the thresholds
//! and temperatures into the model's knobs and metadata.

pub mod choose;
mod flatten;
pub mod guarantee;
pub mod pareto;
pub mod power;

use std::path::{Path, PathBuf};

use choose::{Bound, CurvePoint, ExitData, Observed, PathCosts, RowLosses, Target};

use crate::exits::ExitsMetadata;
use crate::exits::cost::CostReport;
use crate::onnx::proto::ModelProto;
use crate::runtime::RunError;
use crate::runtime::pass::{PassModel, PassRun, PassSource};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Run(#[from] crate::runtime::RunError),
    #[error(
        "{got} calibration rows ({testing} after setting aside {set_aside} to fit the temperatures and choose the candidates); a guarantee at {}% with δ = {delta} needs at least {needed} for testing (even with no loss seen, p = (1 − ε)^n must reach δ)",
        100.0 * epsilon
    )]
    TooFewRows {
        got: usize,
        testing: usize,
        set_aside: usize,
        needed: u64,
        epsilon: f64,
        delta: f64,
    },
    #[error(
        "no threshold keeps the {what} under {}% with δ = {delta} on these {rows} rows: even the most conservative candidate is not certified",
        100.0 * epsilon
    )]
    NothingCertified {
        what: &'static str,
        epsilon: f64,
        delta: f64,
        rows: usize,
    },
    #[error("{0}")]
    BadOption(String),
    #[error(transparent)]
    Patch(#[from] crate::transform::patch::PatchError),
}

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// The rows: sample inputs to run the model over, or the pass model's
    /// outputs as shards.
    pub source: PassSource,
    /// Also write the pass's outputs as shards here (`--save-outputs`).
    pub save_outputs: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub batch: usize,
    pub procedure: Procedure,
}

impl CalibrateOptions {
    /// Whether the rows come with labels (a file, or the shards').
    fn has_labels(&self) -> Result<bool, CalibrateError> {
        Ok(self.labels.is_some() || self.source.carries_labels()?)
    }
}

/// What calibration does with the rows it is given.
#[derive(Debug, Clone, Copy)]
pub struct Procedure {
    pub target: Target,
    pub delta: f64,
    pub split: Split,
    pub thresholds: Thresholds,
    pub bound: BoundChoice,
}

impl Procedure {
    /// The fewest calibration rows with which a certificate at this ε and
    /// δ is possible: after the choosing share is set aside, the tested
    /// rows must reach `guarantee::min_samples` (even with no loss,
    /// (1 − ε)^n ≤ δ).
    pub fn rows_needed(&self) -> usize {
        let tested = guarantee::min_samples(self.target.epsilon(), self.delta) as usize;
        (tested..)
            .find(|&rows| self.split.tested(rows) >= tested)
            .expect("a share of at most 0.9 leaves enough rows eventually")
    }

    /// Refuses `rows` calibration rows that no certificate can come from.
    pub fn check_rows(&self, rows: usize) -> Result<(), CalibrateError> {
        let needed = guarantee::min_samples(self.target.epsilon(), self.delta);
        let testing = self.split.tested(rows);
        if (testing as u64) < needed {
            return Err(CalibrateError::TooFewRows {
                got: rows,
                testing,
                set_aside: self.split.set_aside(rows),
                needed,
                epsilon: self.target.epsilon(),
                delta: self.delta,
            });
        }
        Ok(())
    }

    /// Per-exit thresholds, the bound chosen on the choosing rows, the
    /// default split.
    pub fn new(target: Target, delta: f64) -> Procedure {
        Procedure {
            target,
            delta,
            split: Split::default(),
            thresholds: Thresholds::Auto,
            bound: BoundChoice::Auto,
        }
    }
}

/// One threshold per exit, one for all (CALM's procedure), or whichever
/// the choosing rows expect to certify the larger saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Thresholds {
    Auto,
    PerExit,
    Shared,
}

/// Which bound certifies: `auto` picks, on the choosing rows, the one that
/// would certify the cheaper candidate (betting only under --max-drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoundChoice {
    Auto,
    Binomial,
    Betting,
}

/// How the calibration rows are shared between choosing (temperatures and
/// the candidates' order) and the test. The guarantee needs the candidates
/// fixed before the tested rows are seen, so by default they are chosen on
/// rows the test does not use.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Share of rows for choosing; 0 chooses on every row (the guarantee
    /// is then only approximate).
    pub choosing_share: f64,
    pub seed: u64,
}

impl Split {
    /// How many of `rows` choose (0: every row chooses and is tested).
    pub fn set_aside(&self, rows: usize) -> usize {
        ((rows as f64) * self.choosing_share.clamp(0.0, 0.9)).round() as usize
    }

    /// How many of `rows` are tested.
    pub fn tested(&self, rows: usize) -> usize {
        rows - self.set_aside(rows)
    }

    /// The choosing rows and the tested rows of `rows` (seeded); both are
    /// every row when the share is 0.
    pub fn rows(&self, rows: usize) -> (Vec<usize>, Vec<usize>) {
        let order = crate::fit::seeded_permutation(rows, self.seed ^ 0x7E3F_CA11);
        let set_aside = self.set_aside(rows);
        if set_aside == 0 {
            (order.clone(), order)
        } else {
            let (a, b) = order.split_at(set_aside);
            (a.to_vec(), b.to_vec())
        }
    }
}

impl Default for Split {
    fn default() -> Self {
        Split {
            choosing_share: 0.2,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExitCalibration {
    pub index: usize,
    pub tensor: String,
    pub temperature_before: f64,
    pub temperature: f64,
    /// Expected calibration error of the head's max-probability confidence
    /// against the reference (labels, or the full model's predictions).
    pub ece_before: f64,
    pub ece_after: f64,
    /// Share of rows leaving here at the chosen threshold.
    pub exit_rate: f64,
    /// Of the rows leaving here: share right against the reference.
    pub accuracy_of_exits: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CalibrationReport {
    pub schema: &'static str,
    pub model: String,
    pub rows: usize,
    /// Rows that fitted the temperatures and chose the candidates, and rows
    /// the test used (all figures below are on these); the same rows when
    /// the choosing share is 0.
    pub choosing_rows: usize,
    pub testing_rows: usize,
    pub target: Target,
    pub delta: f64,
    pub thresholds_mode: Thresholds,
    pub bound: Bound,
    pub guarantee: String,
    /// Rows any certificate at this ε and δ needs.
    pub min_rows: u64,
    /// Candidates tested, in order, and how many were certified.
    pub candidates: usize,
    pub certified: usize,
    /// Per exit (NEVER = 2: the exit takes no row).
    pub thresholds: Vec<f64>,
    pub exits: Vec<ExitCalibration>,
    pub chosen: CurvePoint,
    pub full_model_accuracy: Option<f64>,
    pub cost: CostReport,
}

impl CalibrationReport {
    /// The report as the CLI prints it (after the "wrote" line).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} rows: {} fit the temperatures and choose the candidates, {} test them",
            self.rows, self.choosing_rows, self.testing_rows
        );
        let _ = writeln!(
            out,
            "thresholds {}: risk {:.4} (p = {:.2e} ≤ δ = {}; {} of {} candidates certified)\ncertified by {}",
            thresholds_text(&self.thresholds),
            self.chosen.risk,
            self.chosen.p_value,
            self.delta,
            self.certified,
            self.candidates,
            self.guarantee
        );
        if let Some(acc) = self.full_model_accuracy {
            let _ = writeln!(
                out,
                "accuracy: full model {:.2}%, early-exit {:.2}%",
                100.0 * acc,
                100.0 * self.chosen.accuracy.unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            out,
            "agreement with the full model: {:.2}%",
            100.0 * self.chosen.agreement
        );
        out.push_str(
            "\nexit  tensor                    threshold  T before  T after  ECE before  ECE after  exit rate  right when exiting\n",
        );
        for (e, &t) in self.exits.iter().zip(&self.thresholds) {
            let _ = writeln!(
                out,
                "{:<5} {:<25} {:<10} {:<9.3} {:<8.3} {:<11.4} {:<10.4} {:>8.2}%  {}",
                e.index,
                e.tensor,
                thresholds_text(&[t]),
                e.temperature_before,
                e.temperature,
                e.ece_before,
                e.ece_after,
                100.0 * e.exit_rate,
                e.accuracy_of_exits.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a))
            );
        }
        let _ = write!(out, "\n{}", self.cost.to_text());
        out
    }
}

/// Thresholds as the reports print them: "never" for a closed exit.
pub fn thresholds_text(t: &[f64]) -> String {
    t.iter()
        .map(|&v| {
            if v > 1.0 {
                "never".to_string()
            } else {
                format!("{v:.4}")
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The calibration worked out on cached outputs.
pub struct Outcome {
    pub temperatures: Vec<f64>,
    /// The candidates tested (never `Auto`) and their bound.
    pub family: Thresholds,
    pub bound: Bound,
    /// Every candidate in test order, with its figures on the tested rows.
    pub curve: Vec<CurvePoint>,
    pub chosen: CurvePoint,
    /// Rows that chose and rows the test used.
    pub choosing_rows: usize,
    pub testing_rows: usize,
    /// The rows of the test (for the report's per-exit figures).
    pub testing: choose::Rows,
}

/// What a saving is counted in when candidates or exit sets are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The cost model's FLOPs (what calibrate minimises).
    Flops,
    /// The cost model's time term on ONNX Runtime CPU (what compile keeps
    /// exits for; docs/runtime-cost.md).
    Time,
}

impl Objective {
    /// Each path's cost in the objective's terms.
    pub fn path_costs(self, table: &crate::exits::cost::CostTable) -> PathCosts {
        match self {
            Objective::Flops => PathCosts::flops(table),
            Objective::Time => {
                let time = crate::exits::time::TimeEstimate::new(
                    table,
                    crate::exits::time::RuntimeProfile::onnxruntime_cpu(),
                    None,
                    None,
                );
                PathCosts {
                    paths: time.path_us,
                    original: time.original_us,
                }
            }
        }
    }
}

/// A bound's candidates, ordered on the choosing rows, with the stake each
/// is bet at and the saving its certificate is expected to give.
struct Plan {
    family: Thresholds,
    bound: Bound,
    candidates: Vec<(Vec<f64>, f64)>,
    expected_saving: f64,
}

/// The candidates for `bound` on the choosing rows, and the saving testing
/// them on `testing_rows` rows like these is expected to certify
/// (power.rs; it reads no tested row).
#[allow(clippy::too_many_arguments)]
fn plan(
    choosing: &Observed,
    d: &choose::Decisions,
    losses: &RowLosses,
    (family, bound): (Thresholds, Bound),
    procedure: &Procedure,
    table: &crate::exits::cost::CostTable,
    objective: Objective,
    testing_rows: usize,
) -> Plan {
    let epsilon = procedure.target.epsilon();
    let k = choosing.exits.len();
    let costs = objective.path_costs(table);
    let flops = PathCosts::flops(table);
    let paths = match family {
        Thresholds::Shared => pareto::shared_path(k),
        Thresholds::PerExit | Thresholds::Auto => pareto::per_exit_path(d, losses, bound, &costs.paths, epsilon),
    };
    let n = choosing.rows() as u64;
    let mut savings = Vec::with_capacity(paths.len());
    let mut chances = Vec::with_capacity(paths.len());
    let mut candidates = Vec::with_capacity(paths.len());
    for t in paths {
        let point = choose::evaluate(choosing, d, losses, &t, (bound, epsilon, 0.0), &flops);
        let tally = guarantee::Tally {
            rows: n,
            harms: point.harms,
            helps: point.helps,
        };
        let stake = match bound {
            Bound::Binomial => 0.0,
            Bound::Betting => guarantee::betting_stake(tally, epsilon),
        };
        let seen = power::Seen {
            rows: n,
            leaving: (n as f64 * (1.0 - point.exit_shares.last().copied().unwrap_or(1.0))).round() as u64,
            harms: point.harms,
            helps: point.helps,
        };
        savings.push(costs.saving(&point.exit_shares));
        chances.push(power::chance(
            seen,
            bound,
            epsilon,
            procedure.delta,
            stake,
            testing_rows as u64,
        ));
        candidates.push((t, stake));
    }
    let expected_saving = power::expected_saving(&savings, &chances);
    Plan {
        family,
        bound,
        candidates,
        expected_saving,
    }
}

/// The bounds `procedure` lets certify (auto: both under --max-drop).
fn bounds_for(procedure: &Procedure) -> Result<&'static [Bound], CalibrateError> {
    Ok(match (procedure.bound, procedure.target) {
        (BoundChoice::Binomial, _) | (BoundChoice::Auto, Target::MaxDisagree(_)) => &[Bound::Binomial],
        (BoundChoice::Betting, Target::MaxDrop(_)) => &[Bound::Betting],
        (BoundChoice::Auto, Target::MaxDrop(_)) => &[Bound::Binomial, Bound::Betting],
        (BoundChoice::Betting, Target::MaxDisagree(_)) => {
            return Err(CalibrateError::BadOption(
                "--certify-with betting bounds the signed accuracy drop: it needs --max-drop".into(),
            ));
        }
    })
}

/// The candidates and bound whose certificate is expected to save most on
/// `testing_rows` rows (the first on a tie: shared thresholds, the
/// binomial), decided on the choosing rows alone.
fn best_plan(
    choosing: &Observed,
    temperatures: &[f64],
    procedure: &Procedure,
    bounds: &[Bound],
    table: &crate::exits::cost::CostTable,
    objective: Objective,
    testing_rows: usize,
) -> Plan {
    let d = choose::decisions(choosing, temperatures);
    let losses = RowLosses::new(choosing, &d, procedure.target);
    let families: &[Thresholds] = match procedure.thresholds {
        Thresholds::Auto => &[Thresholds::Shared, Thresholds::PerExit],
        Thresholds::Shared => &[Thresholds::Shared],
        Thresholds::PerExit => &[Thresholds::PerExit],
    };
    families
        .iter()
        .flat_map(|&f| bounds.iter().map(move |&b| (f, b)))
        .map(|fb| plan(choosing, &d, &losses, fb, procedure, table, objective, testing_rows))
        .fold(None, |best: Option<Plan>, p| match best {
            Some(b) if b.expected_saving >= p.expected_saving => Some(b),
            _ => Some(p),
        })
        .expect("at least one bound")
}

/// Temperatures, the candidates, the test and the choice for rows already
/// run through the model (also what the repeated-split tests call).
pub fn calibrate_observed(
    obs: &Observed,
    table: &crate::exits::cost::CostTable,
    procedure: &Procedure,
) -> Result<Outcome, CalibrateError> {
    let (target, delta) = (procedure.target, procedure.delta);
    needs_labels(target, obs.labels.is_some())?;
    let bounds = bounds_for(procedure)?;
    let epsilon = target.epsilon();
    procedure.check_rows(obs.rows())?;
    let (choose_idx, test_idx) = procedure.split.rows(obs.rows());
    let (choose_idx, test_idx) = (&choose_idx[..], &test_idx[..]);
    let choosing_rows = obs.select(choose_idx);
    let choosing = choosing_rows.view();
    let temperatures = fit_temperatures(&choosing);
    let plan = best_plan(
        &choosing,
        &temperatures,
        procedure,
        bounds,
        table,
        Objective::Flops,
        test_idx.len(),
    );
    let testing = obs.select(test_idx);
    let view = testing.view();
    let d = choose::decisions(&view, &temperatures);
    let losses = RowLosses::new(&view, &d, target);
    let flops = PathCosts::flops(table);
    let mut curve: Vec<CurvePoint> = plan
        .candidates
        .iter()
        .map(|(t, stake)| choose::evaluate(&view, &d, &losses, t, (plan.bound, epsilon, *stake), &flops))
        .collect();
    choose::certify(&mut curve, delta);
    let chosen = choose::best(&curve).cloned().ok_or(CalibrateError::NothingCertified {
        what: match target {
            Target::MaxDrop(_) => "accuracy drop",
            Target::MaxDisagree(_) => "disagreement with the full model",
        },
        epsilon,
        delta,
        rows: test_idx.len(),
    })?;
    Ok(Outcome {
        temperatures,
        family: plan.family,
        bound: plan.bound,
        curve,
        chosen,
        choosing_rows: choose_idx.len(),
        testing_rows: test_idx.len(),
        testing,
    })
}

/// An exit `choose_exits` weighed, and what the choosing rows said of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExitVerdict {
    pub tensor: String,
    /// The head it was kept with (or last had).
    pub head: crate::exits::HeadKind,
    pub kept: bool,
    /// The saving (cost model, in the objective's terms) a certificate is
    /// expected to give with this exit among the others still kept, and
    /// without it: at the step it was dropped, or at the end for a kept one.
    pub expected_saving_with: f64,
    pub expected_saving_without: f64,
}

/// The exits to keep: (0-based index into the models' exits, the variant
/// whose head it keeps).
#[derive(Debug, Clone)]
pub struct ExitChoice {
    pub kept: Vec<(usize, usize)>,
    pub expected_saving: f64,
    pub verdicts: Vec<ExitVerdict>,
}

/// Which of an early-exit model's exits pay, and with which head, decided
/// on the choosing rows alone (the rows a later `calibrate` with the same
/// split tests are never read, so its guarantee is untouched). `variants`
/// are early-exit models of the same network with the same cuts, each with
/// other heads. From every cut with the first variant's head, greedy moves
/// (drop a cut unless `keep_all`, or give it another variant's head) are
/// made while one raises the saving a certificate is expected to give
/// (power.rs; in the cost model's time term or its FLOPs), the best move
/// first.
pub fn choose_exits(
    variants: Vec<crate::onnx::LoadedModel>,
    options: &CalibrateOptions,
    objective: Objective,
    keep_all: bool,
) -> Result<ExitChoice, CalibrateError> {
    if variants.is_empty() {
        return Err(CalibrateError::BadOption(
            "no early-exit model to choose exits from".into(),
        ));
    }
    let procedure = &options.procedure;
    check_procedure(procedure, options.has_labels()?)?;
    let bounds = bounds_for(procedure)?;
    let runs = variants
        .into_iter()
        .map(|m| run_exits(m, &options.source, options.labels.as_deref(), options.batch, None))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &runs[0];
    if runs.iter().any(|r| {
        r.meta
            .exits
            .iter()
            .map(|e| &e.tensor)
            .ne(first.meta.exits.iter().map(|e| &e.tensor))
    }) {
        return Err(CalibrateError::BadOption(
            "the head variants do not have the same exits".into(),
        ));
    }
    let labels = first.labels.clone();
    let never: Vec<usize> = first.meta.never_exit_classes.iter().map(|&c| c as usize).collect();
    let observed_runs: Vec<Observed> = runs.iter().map(|r| observed(r, labels.as_deref(), &never)).collect();
    let (choose_idx, test_idx) = procedure.split.rows(first.full_pred.len());
    let choosing_rows: Vec<choose::Rows> = observed_runs.iter().map(|o| o.select(&choose_idx)).collect();
    let choosing: Vec<Observed> = choosing_rows.iter().map(choose::Rows::view).collect();
    let temperatures: Vec<Vec<f64>> = choosing.iter().map(fit_temperatures).collect();
    // state[j]: the variant cut j's head comes from, or None when dropped.
    let expected = |state: &[Option<usize>]| -> f64 {
        let kept: Vec<(usize, usize)> = state
            .iter()
            .enumerate()
            .filter_map(|(j, v)| v.map(|v| (j, v)))
            .collect();
        if kept.is_empty() {
            return 0.0;
        }
        let sub = Observed {
            exits: kept
                .iter()
                .map(|&(j, v)| ExitData {
                    logits: choosing[v].exits[j].logits,
                    confidence: choosing[v].exits[j].confidence,
                })
                .collect(),
            ..choosing[0].clone_shallow()
        };
        let temps: Vec<f64> = kept.iter().map(|&(j, v)| temperatures[v][j]).collect();
        let cuts: Vec<usize> = kept.iter().map(|&(j, _)| j).collect();
        let mut table = first.meta.cost.with_exits(&cuts);
        for (p, &(j, v)) in kept.iter().enumerate() {
            table.heads[p] = runs[v].meta.cost.heads[j];
            table.decisions[p] = runs[v].meta.cost.decisions[j];
        }
        best_plan(&sub, &temps, procedure, bounds, &table, objective, test_idx.len()).expected_saving
    };
    let k = first.meta.exits.len();
    let mut state: Vec<Option<usize>> = vec![Some(0); k];
    let mut current = expected(&state);
    let mut dropped_at: Vec<Option<(f64, f64)>> = vec![None; k];
    loop {
        let kept = state.iter().filter(|v| v.is_some()).count();
        let mut best: Option<(Vec<Option<usize>>, f64, usize)> = None;
        for j in 0..k {
            let Some(v) = state[j] else { continue };
            let mut moves: Vec<Option<usize>> = (0..runs.len()).filter(|&w| w != v).map(Some).collect();
            // One exit always stays.
            if kept > 1 && !keep_all {
                moves.push(None);
            }
            for m in moves {
                let mut next = state.clone();
                next[j] = m;
                let value = expected(&next);
                if best.as_ref().is_none_or(|b| value > b.1) {
                    best = Some((next, value, j));
                }
            }
        }
        match best {
            Some((next, value, j)) if value > current + 1e-9 => {
                if next[j].is_none() {
                    dropped_at[j] = Some((current, value));
                }
                state = next;
                current = value;
            }
            _ => break,
        }
    }
    let verdicts = (0..k)
        .map(|j| {
            let head = |v: usize| runs[v].meta.exits[j].head;
            match (state[j], dropped_at[j]) {
                (Some(v), _) => {
                    let mut without = state.clone();
                    without[j] = None;
                    ExitVerdict {
                        tensor: first.meta.exits[j].tensor.clone(),
                        head: head(v),
                        kept: true,
                        expected_saving_with: current,
                        expected_saving_without: expected(&without),
                    }
                }
                (None, with_without) => {
                    let (with, without) = with_without.unwrap_or((current, current));
                    ExitVerdict {
                        tensor: first.meta.exits[j].tensor.clone(),
                        head: head(0),
                        kept: false,
                        expected_saving_with: with,
                        expected_saving_without: without,
                    }
                }
            }
        })
        .collect();
    Ok(ExitChoice {
        kept: state
            .iter()
            .enumerate()
            .filter_map(|(j, v)| v.map(|v| (j, v)))
            .collect(),
        expected_saving: current,
        verdicts,
    })
}

/// Per exit, the temperature minimising the NLL of the reference on `rows`.
fn fit_temperatures(rows: &Observed) -> Vec<f64> {
    rows.exits
        .iter()
        .map(|e| choose::fit_temperature(e.logits, rows.classes, rows.reference()))
        .collect()
}

/// The run's rows as calibration reads them.
fn observed<'a>(run: &'a RunOutputs, labels: Option<&'a [usize]>, never: &'a [usize]) -> Observed<'a> {
    Observed {
        exits: run
            .exit_logits
            .iter()
            .zip(&run.meta.exits)
            .map(|(l, e)| ExitData {
                logits: l,
                confidence: e.confidence,
            })
            .collect(),
        classes: run.classes,
        full_pred: &run.full_pred,
        labels,
        never_exit_classes: never,
    }
}

/// The bound and δ must make sense, and the drop needs labels.
fn check_procedure(procedure: &Procedure, have_labels: bool) -> Result<(), CalibrateError> {
    let epsilon = procedure.target.epsilon();
    if !(epsilon > 0.0 && epsilon < 1.0) {
        return Err(CalibrateError::BadOption(format!(
            "the bound must be in (0%, 100%); got {}%",
            100.0 * epsilon
        )));
    }
    if !(procedure.delta > 0.0 && procedure.delta < 1.0) {
        return Err(CalibrateError::BadOption(format!(
            "--delta must be in (0, 1); got {}",
            procedure.delta
        )));
    }
    needs_labels(procedure.target, have_labels)
}

/// The accuracy drop is measured against labels.
fn needs_labels(target: Target, have: bool) -> Result<(), CalibrateError> {
    if matches!(target, Target::MaxDrop(_)) && !have {
        return Err(CalibrateError::BadOption(
            "--max-drop needs --labels; without labels use --max-disagree".into(),
        ));
    }
    Ok(())
}

/// Rows run through an early-exit model: every exit's logits, the full
/// model's prediction and the rows' labels.
pub struct RunOutputs {
    pub meta: ExitsMetadata,
    pub model: ModelProto,
    pub classes: usize,
    pub exit_logits: Vec<Vec<f32>>,
    pub full_pred: Vec<usize>,
    pub labels: Option<Vec<usize>>,
}

/// The early-exit model, its metadata, and its pass model: the flat form,
/// in which every head runs on every row.
fn exits_pass_model(
    loaded: crate::onnx::LoadedModel,
) -> Result<(crate::onnx::LoadedModel, ExitsMetadata, PassModel), CalibrateError> {
    let (loaded, meta) = crate::runtime::exits_model(loaded)?;
    let (flat, outputs) = flatten::flat_model(&loaded.proto, &meta).map_err(|reason| RunError::Model {
        path: loaded.path.clone(),
        reason,
    })?;
    let pass = PassModel::new(flat, outputs, "calibrate")?;
    Ok((loaded, meta, pass))
}

/// Writes the pass model of calibrating the early-exit model at `path` to
/// `out`, for a runtime elsewhere to run over the rows.
pub fn write_pass_model(path: &Path, out: &Path) -> Result<PassModel, CalibrateError> {
    let (loaded, _, pass) = exits_pass_model(load(path)?)?;
    pass.save(out, Some(&loaded.base_dir))?;
    Ok(pass)
}

/// Loads the model at `path` as every command that reads one does.
fn load(path: &Path) -> Result<crate::onnx::LoadedModel, CalibrateError> {
    crate::onnx::load_model_for_transform(path).map_err(|e| {
        CalibrateError::Run(RunError::Model {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    })
}

/// Runs an eexc model's flat form over the rows of `source` (or reads the
/// shards of its outputs); `labels`: a file of the rows' labels, when the
/// shards do not carry them.
pub fn run_exits(
    loaded: crate::onnx::LoadedModel,
    source: &PassSource,
    labels: Option<&Path>,
    batch: usize,
    save_outputs: Option<&Path>,
) -> Result<RunOutputs, CalibrateError> {
    let (loaded, meta, pass) = exits_pass_model(loaded)?;
    let path = loaded.path.clone();
    let bad = |reason: String| RunError::Model {
        path: path.clone(),
        reason,
    };
    let run = PassRun {
        batch,
        external_dir: loaded.external_dir(),
        save_outputs,
    };
    let mut outputs = pass.run(source.open()?, &run, "running the exits")?;
    let rows = outputs.rows;
    let mut columns = std::mem::take(&mut outputs.columns);
    let final_out = columns.pop().unwrap_or_default();
    let classes = columns.first().map_or(0, |c| c.len() / rows.max(1));
    if classes == 0 || columns.iter().any(|c| c.len() != rows * classes) {
        return Err(bad("the exits' logits do not have one row per sample".into()).into());
    }
    let labels = outputs.labels(labels, classes as i64)?;
    let width = final_out.len() / rows.max(1);
    let full_pred = final_out
        .chunks_exact(width.max(1))
        .map(|r| crate::numeric::argmax(r.iter().copied()))
        .collect();
    Ok(RunOutputs {
        meta,
        model: loaded.proto,
        classes,
        exit_logits: columns,
        full_pred,
        labels,
    })
}

/// The calibrated model, its report, the curve and its plot's title.
pub struct Calibrated {
    pub model: ModelProto,
    pub report: CalibrationReport,
    pub curve: Vec<CurvePoint>,
    pub title: String,
}

pub fn calibrate(path: &Path, options: &CalibrateOptions) -> Result<Calibrated, CalibrateError> {
    calibrate_model(load(path)?, options)
}

/// [`calibrate`] on a model already loaded: what compile chains in memory.
pub fn calibrate_model(
    loaded: crate::onnx::LoadedModel,
    options: &CalibrateOptions,
) -> Result<Calibrated, CalibrateError> {
    let procedure = &options.procedure;
    let epsilon = procedure.target.epsilon();
    // Checked here too, so that no model runs for nothing.
    check_procedure(procedure, options.has_labels()?)?;
    let path = loaded.path.clone();
    let run = run_exits(
        loaded,
        &options.source,
        options.labels.as_deref(),
        options.batch,
        options.save_outputs.as_deref(),
    )?;
    let labels = run.labels.clone();
    let never: Vec<usize> = run.meta.never_exit_classes.iter().map(|&c| c as usize).collect();
    let obs = observed(&run, labels.as_deref(), &never);
    let outcome = calibrate_observed(&obs, &run.meta.cost, procedure)?;
    // Per-exit figures on the tested rows (the temperatures never saw them
    // unless --temperature-share is 0).
    let tested = outcome.testing.view();
    let reference = tested.reference();
    let d = choose::decisions(&tested, &outcome.temperatures);
    let (exit_of, pred) = choose::outcome(&d, tested.full_pred, &outcome.chosen.thresholds);
    let exits: Vec<ExitCalibration> = run
        .meta
        .exits
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let leaving: Vec<usize> = (0..exit_of.len()).filter(|&r| exit_of[r] == i + 1).collect();
            ExitCalibration {
                index: e.index,
                tensor: e.tensor.clone(),
                temperature_before: f64::from(e.temperature),
                temperature: outcome.temperatures[i],
                ece_before: choose::ece(tested.exits[i].logits, run.classes, reference, f64::from(e.temperature)),
                ece_after: choose::ece(tested.exits[i].logits, run.classes, reference, outcome.temperatures[i]),
                exit_rate: leaving.len() as f64 / exit_of.len() as f64,
                accuracy_of_exits: (!leaving.is_empty()).then(|| {
                    leaving.iter().filter(|&&r| pred[r] == reference[r]).count() as f64 / leaving.len() as f64
                }),
            }
        })
        .collect();
    let k = run.meta.exits.len();
    let full_model_accuracy = tested
        .labels
        .map(|l| tested.full_pred.iter().zip(l).filter(|(a, b)| a == b).count() as f64 / l.len() as f64);
    let report = CalibrationReport {
        schema: "eexc.calibrate/1",
        model: path.display().to_string(),
        rows: run.full_pred.len(),
        choosing_rows: outcome.choosing_rows,
        testing_rows: outcome.testing_rows,
        target: procedure.target,
        delta: procedure.delta,
        thresholds_mode: outcome.family,
        bound: outcome.bound,
        guarantee: format!(
            "Learn-then-Test, fixed-sequence testing over {} (most conservative first, ordered on the choosing rows), {}",
            match outcome.family {
                Thresholds::PerExit | Thresholds::Auto => "per-exit threshold vectors",
                Thresholds::Shared => "one shared threshold",
            },
            outcome.bound.describe()
        ),
        min_rows: guarantee::min_samples(epsilon, procedure.delta),
        candidates: outcome.curve.len(),
        certified: outcome.curve.iter().filter(|c| c.certified).count(),
        thresholds: outcome.chosen.thresholds.clone(),
        exits,
        chosen: outcome.chosen.clone(),
        full_model_accuracy,
        cost: CostReport::new(&run.meta.cost, Some(&outcome.chosen.exit_shares[..k])),
    };
    let mut model = run.model;
    write_knobs(&mut model, &run.meta, &outcome, &report)?;
    let title = format!(
        "{} — {} ≤ {}% (δ = {})",
        path.file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        match procedure.target {
            Target::MaxDrop(_) => "accuracy drop",
            Target::MaxDisagree(_) => "disagreement",
        },
        100.0 * epsilon,
        procedure.delta
    );
    Ok(Calibrated {
        model,
        report,
        curve: outcome.curve,
        title,
    })
}

/// Sets the knob initializers' defaults and the metadata to the calibration.
fn write_knobs(
    model: &mut ModelProto,
    meta: &ExitsMetadata,
    outcome: &Outcome,
    report: &CalibrationReport,
) -> Result<(), CalibrateError> {
    let mut meta = meta.clone();
    let mut patch = crate::transform::patch::ModelPatch::new();
    for (i, e) in meta.exits.iter_mut().enumerate() {
        e.threshold = outcome.chosen.thresholds[i] as f32;
        e.temperature = outcome.temperatures[i] as f32;
        for (name, value) in [(&e.threshold_input, e.threshold), (&e.temperature_input, e.temperature)] {
            patch
                .main
                .set_initializer(crate::transform::builder::tensor_f32(name, &[], &[value]));
        }
    }
    meta.calibration = Some(serde_json::json!({
        "target": report.target,
        "delta": report.delta,
        "rows": report.rows,
        "choosing_rows": report.choosing_rows,
        "testing_rows": report.testing_rows,
        "thresholds": report.thresholds,
        "bound": report.bound,
        "risk": report.chosen.risk,
        "p_value": report.chosen.p_value,
        "guarantee": report.guarantee,
    }));
    crate::exits::contract::record_metadata(&mut patch, &meta);
    patch.apply(model)?;
    Ok(())
}

/// The candidates as CSV, in test order: one row each.
pub fn curve_csv(curve: &[CurvePoint]) -> String {
    let k = curve.first().map_or(0, |c| c.thresholds.len());
    let mut s = String::new();
    for e in 1..=k {
        s.push_str(&format!("threshold{e},"));
    }
    for e in 1..=k {
        s.push_str(&format!("exit{e}_share,"));
    }
    s.push_str("full_share,harms,helps,risk,stake,p_value,certified,accuracy,agreement,expected_flops,savings\n");
    for c in curve {
        for t in &c.thresholds {
            s.push_str(&format!("{t:.6},"));
        }
        for share in &c.exit_shares {
            s.push_str(&format!("{share:.6},"));
        }
        s.push_str(&format!(
            "{},{},{:.6},{:.4},{:.6e},{},{},{:.6},{:.1},{:.6}\n",
            c.harms,
            c.helps,
            c.risk,
            c.stake,
            c.p_value,
            c.certified,
            c.accuracy.map_or(String::new(), |a| format!("{a:.6}")),
            c.agreement,
            c.expected_flops,
            c.savings
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exits::Confidence;
    use crate::exits::cost::{CostTable, Work};

    fn table() -> CostTable {
        let w = |f: f64| Work {
            macs: f / 2.0,
            flops: f,
            weight_bytes: 0.0,
        };
        CostTable {
            original: w(100.0),
            stages: vec![w(20.0)],
            heads: vec![w(1.0)],
            decisions: vec![w(1.0)],
            final_stage: w(80.0),
            uncosted_ops: Vec::new(),
            exit_elements: Vec::new(),
            original_nodes: 0,
            original_int8_macs: 0.0,
            dispatch: None,
        }
    }

    /// One max-probability exit over two classes, no labels.
    fn one_exit<'a>(logits: &'a [f32], full: &'a [usize]) -> Observed<'a> {
        Observed {
            exits: vec![ExitData {
                logits,
                confidence: Confidence::Maxprob,
            }],
            classes: 2,
            full_pred: full,
            labels: None,
            never_exit_classes: &[],
        }
    }

    /// 400 rows; the head gives every row the same margin `margin` and is
    /// right on a share `right` of them (the full model predicts class 0).
    fn observed(logits: &mut Vec<f32>, right: f64, margin: f32) -> Vec<usize> {
        for r in 0..400 {
            let class = usize::from((r as f64) >= right * 400.0);
            let mut row = [0.0f32; 2];
            row[class] = margin;
            logits.extend(row);
        }
        vec![0; 400]
    }

    #[test]
    fn a_saturated_wrong_head_certifies_nothing() {
        // Margins so large that every confidence is exactly 1 even at the
        // highest temperature: at every threshold ≤ 1 all rows exit, 10%
        // wrongly.
        let mut logits = Vec::new();
        let full = observed(&mut logits, 0.9, 1e4);
        let obs = one_exit(&logits, &full);
        // 10% of rows disagree at every shared threshold: 5% cannot be certified.
        let shared = Procedure {
            thresholds: Thresholds::Shared,
            ..Procedure::new(Target::MaxDisagree(0.05), 0.05)
        };
        let err = calibrate_observed(&obs, &table(), &shared).err().unwrap();
        assert!(
            matches!(err, CalibrateError::NothingCertified { rows: 320, .. }),
            "{err}"
        );
        // Per-exit candidates start with the exit closed: certified, and
        // nothing leaves.
        let out = calibrate_observed(&obs, &table(), &Procedure::new(Target::MaxDisagree(0.05), 0.05)).unwrap();
        assert_eq!(out.chosen.thresholds, vec![choose::NEVER]);
        assert_eq!((out.chosen.exit_shares[0], out.chosen.risk), (0.0, 0.0));
        // With never-exit class 1 those rows stay for the full model: certified.
        let never = [1usize];
        let obs = Observed {
            never_exit_classes: &never,
            ..obs
        };
        let out = calibrate_observed(&obs, &table(), &Procedure::new(Target::MaxDisagree(0.05), 0.05)).unwrap();
        assert_eq!(out.chosen.risk, 0.0);
        // Every tested row predicting class 0 exits.
        let zeros = out.testing.logits[0].chunks(2).filter(|r| r[0] > r[1]).count();
        assert_eq!(out.chosen.exit_shares[0], zeros as f64 / 320.0);
    }

    /// The guarantee against a known truth: one exit whose margin m is
    /// uniform on [0, 6] and which is right with probability σ(m) (so it is
    /// calibrated). At temperature T and threshold λ the rows with
    /// σ(m/T) ≥ λ exit, and the true disagreement is
    /// (1/6) ∫_a^6 σ(−m) dm = (ln(1 + e^−a) − ln(1 + e^−6)) / 6 with
    /// a = max(0, T·logit λ). Over many calibration samples the chosen
    /// (T, λ) must have a true risk above ε at most a share δ of the time.
    #[test]
    fn the_guarantee_holds_against_a_known_true_risk() {
        let (epsilon, delta, trials, n) = (0.05, 0.1, 300, 400);
        let true_risk = |t: f64, lambda: f64| {
            let a = if lambda >= 1.0 {
                f64::INFINITY
            } else {
                (t * (lambda / (1.0 - lambda)).ln()).max(0.0)
            };
            if a >= 6.0 {
                return 0.0;
            }
            ((1.0 + (-a).exp()).ln() - (1.0 + (-6f64).exp()).ln()) / 6.0
        };
        let mut rng = crate::numeric::SplitMix64::new(42);
        let mut uniform = move || rng.next_f64();
        let mut violations = 0;
        for trial in 0..trials {
            let mut logits = Vec::with_capacity(2 * n);
            for _ in 0..n {
                let m = 6.0 * uniform();
                let right = uniform() < 1.0 / (1.0 + (-m).exp());
                logits.extend(if right { [m as f32, 0.0] } else { [0.0, m as f32] });
            }
            let full = vec![0usize; n];
            let obs = one_exit(&logits, &full);
            let procedure = Procedure {
                split: Split {
                    choosing_share: 0.2,
                    seed: trial,
                },
                ..Procedure::new(Target::MaxDisagree(epsilon), delta)
            };
            let out = calibrate_observed(&obs, &table(), &procedure).unwrap();
            if true_risk(out.temperatures[0], out.chosen.thresholds[0]) > epsilon {
                violations += 1;
            }
        }
        // δ plus three standard errors of a share over 300 trials.
        eprintln!("true risk above ε in {violations} of {trials} trials (δ = {delta})");
        assert!(
            within_delta(violations, trials, delta),
            "true risk above ε in {violations} of {trials} trials"
        );
    }

    #[test]
    fn a_head_that_cannot_tell_its_mistakes_does_not_exit() {
        // Same confidence on right and wrong rows: any threshold that lets
        // one row exit lets all exit (10% disagreement), so the certified
        // choice is to exit nowhere, which costs the head.
        let mut logits = Vec::new();
        let full = observed(&mut logits, 0.9, 3.0);
        let obs = one_exit(&logits, &full);
        let out = calibrate_observed(&obs, &table(), &Procedure::new(Target::MaxDisagree(0.05), 0.05)).unwrap();
        assert_eq!(out.chosen.exit_shares[0], 0.0);
        assert!(out.chosen.savings < 0.0);
        // Its temperature makes the confidence the accuracy on the 80 rows
        // it was fitted on (0.9 over all 400).
        let t = out.temperatures[0];
        let p = choose::confidence(Confidence::Maxprob, &logits[..2], t);
        assert!((p - 0.9).abs() < 0.05, "{p}");
    }

    /// A guarantee at level δ holds in simulation: violations in at most δ
    /// of the trials, plus three standard errors of a share.
    fn within_delta(violations: u64, trials: u64, delta: f64) -> bool {
        let n = trials as f64;
        violations as f64 / n <= delta + 3.0 * (delta * (1.0 - delta) / n).sqrt()
    }

    /// Exits of a simulated head: margin m ~ U[0, 6], right with
    /// probability σ(m), so the true risk of any (T, θ) has a closed form.
    /// Returns the logits (class 0 is right) and the margins.
    fn simulated_exit(n: usize, uniform: &mut impl FnMut() -> f64) -> Vec<f32> {
        let mut logits = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let m = 6.0 * uniform();
            let right = uniform() < 1.0 / (1.0 + (-m).exp());
            logits.extend(if right { [m as f32, 0.0] } else { [0.0, m as f32] });
        }
        logits
    }

    /// The margin above which a calibrated head at temperature `t` exits
    /// at threshold `theta` (σ(m/T) ≥ θ); infinite for a closed exit.
    fn margin_cut(t: f64, theta: f64) -> f64 {
        if theta >= 1.0 {
            f64::INFINITY
        } else {
            (t * (theta / (1.0 - theta)).ln()).max(0.0)
        }
    }

    /// P(m ≥ a) · E[wrong | m ≥ a] for m ~ U[0, 6]: (1/6) ∫_a^6 σ(−m) dm.
    fn wrong_above(a: f64) -> f64 {
        if a >= 6.0 {
            return 0.0;
        }
        ((1.0 + (-a).exp()).ln() - (1.0 + (-6f64).exp()).ln()) / 6.0
    }

    /// Per-exit thresholds against a known truth: two independent exits as
    /// above. A row leaves at exit 1 when m₁ ≥ a₁, else at exit 2 when
    /// m₂ ≥ a₂, so the true disagreement is
    /// W(a₁) + P(m₁ < a₁) · W(a₂). Over many calibration samples the
    /// chosen vector must have a true risk above ε at most a share δ of
    /// the time.
    #[test]
    fn per_exit_thresholds_keep_the_guarantee_against_a_known_true_risk() {
        let (epsilon, delta, trials, n) = (0.05, 0.1, 300, 400);
        let mut table = table();
        table.stages = vec![
            Work {
                macs: 10.0,
                flops: 20.0,
                weight_bytes: 0.0,
            },
            Work {
                macs: 15.0,
                flops: 30.0,
                weight_bytes: 0.0,
            },
        ];
        table.heads = vec![table.heads[0]; 2];
        table.decisions = vec![table.decisions[0]; 2];
        table.final_stage = Work {
            macs: 25.0,
            flops: 50.0,
            weight_bytes: 0.0,
        };
        let mut rng = crate::numeric::SplitMix64::new(7);
        let mut uniform = move || rng.next_f64();
        let (mut violations, mut saving) = (0, 0.0);
        for trial in 0..trials {
            let exits = [simulated_exit(n, &mut uniform), simulated_exit(n, &mut uniform)];
            let full = vec![0usize; n];
            let obs = Observed {
                exits: exits
                    .iter()
                    .map(|l| ExitData {
                        logits: l,
                        confidence: Confidence::Maxprob,
                    })
                    .collect(),
                classes: 2,
                full_pred: &full,
                labels: None,
                never_exit_classes: &[],
            };
            let procedure = Procedure {
                thresholds: Thresholds::PerExit,
                split: Split {
                    choosing_share: 0.2,
                    seed: trial,
                },
                ..Procedure::new(Target::MaxDisagree(epsilon), delta)
            };
            let out = calibrate_observed(&obs, &table, &procedure).unwrap();
            let t = &out.chosen.thresholds;
            let (a1, a2) = (
                margin_cut(out.temperatures[0], t[0]),
                margin_cut(out.temperatures[1], t[1]),
            );
            let true_risk = wrong_above(a1) + (a1.min(6.0) / 6.0) * wrong_above(a2);
            if true_risk > epsilon {
                violations += 1;
            }
            saving += out.chosen.savings / f64::from(trials as u32);
        }
        eprintln!(
            "per-exit: true risk above ε in {violations} of {trials} trials (δ = {delta}); mean saving {saving:.3}"
        );
        assert!(
            within_delta(violations, trials, delta),
            "true risk above ε in {violations} of {trials} trials"
        );
        assert!(saving > 0.1, "the guarantee should leave savings ({saving})");
    }

    /// The signed accuracy drop against a known truth: the exit as above
    /// (right with probability σ(m)), the full model right with
    /// probability f, independently. A row leaving at margin m adds
    /// 1[exit wrong] − 1[full wrong], of mean f − σ(m), so the true drop at
    /// cut a is (1/6)[f(6 − a) − ln((1 + e⁶)/(1 + eᵃ))]. The betting bound
    /// (forced) and the automatic choice must both keep it under ε.
    #[test]
    fn the_signed_drop_keeps_the_guarantee_against_a_known_true_risk() {
        let (epsilon, delta, trials, n, f) = (0.05, 0.1, 200, 400, 0.85);
        let true_drop = |a: f64| {
            if a >= 6.0 {
                0.0
            } else {
                (f * (6.0 - a) - ((1.0 + 6f64.exp()) / (1.0 + a.exp())).ln()) / 6.0
            }
        };
        for bound in [BoundChoice::Betting, BoundChoice::Auto] {
            let mut rng = crate::numeric::SplitMix64::new(11);
            let mut uniform = move || rng.next_f64();
            let (mut violations, mut saving, mut betting) = (0, 0.0, 0);
            for trial in 0..trials {
                let logits = simulated_exit(n, &mut uniform);
                let labels = vec![0usize; n];
                let full: Vec<usize> = (0..n).map(|_| usize::from(uniform() >= f)).collect();
                let obs = Observed {
                    labels: Some(&labels),
                    ..one_exit(&logits, &full)
                };
                let procedure = Procedure {
                    bound,
                    split: Split {
                        choosing_share: 0.2,
                        seed: trial,
                    },
                    ..Procedure::new(Target::MaxDrop(epsilon), delta)
                };
                let out = match calibrate_observed(&obs, &table(), &procedure) {
                    Ok(out) => out,
                    Err(CalibrateError::NothingCertified { .. }) => continue,
                    Err(e) => panic!("{e}"),
                };
                betting += usize::from(out.bound == Bound::Betting);
                if true_drop(margin_cut(out.temperatures[0], out.chosen.thresholds[0])) > epsilon {
                    violations += 1;
                }
                saving += out.chosen.savings / f64::from(trials as u32);
            }
            eprintln!(
                "{bound:?}: true drop above ε in {violations} of {trials} trials (δ = {delta}); betting chosen in {betting}; mean saving {saving:.3}"
            );
            assert!(
                within_delta(violations, trials, delta),
                "{bound:?}: true drop above ε in {violations} of {trials} trials"
            );
        }
    }
}
