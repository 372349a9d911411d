//! `eexc calibrate`: per-exit temperatures (NLL) and one shared confidence
//! threshold chosen to minimise the expected cost subject to a bound on the
//! accuracy drop (labels) or the disagreement with the full model, with a
//! distribution-free guarantee (guarantee.rs). Writes the thresholds and
//! temperatures into the model's knobs and metadata.

pub mod choose;
mod flatten;
pub mod guarantee;
mod plot;

use std::path::{Path, PathBuf};

use choose::{CurvePoint, ExitData, Observed, Target};

use crate::exits::ExitsMetadata;
use crate::exits::cost::CostReport;
use crate::onnx::proto::ModelProto;
use crate::runtime::{RunError, Samples, read_labels};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Run(#[from] crate::runtime::RunError),
    #[error(
        "{got} calibration rows ({testing} after setting aside {set_aside} for the temperatures); a guarantee at {}% with δ = {delta} needs at least {needed} for testing (even with no loss seen, p = (1 − ε)^n must reach δ)",
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
}

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub target: Target,
    pub delta: f64,
    pub batch: usize,
    pub split: Split,
}

/// How the calibration rows are shared between the temperatures and the
/// threshold test. The guarantee needs the candidates fixed before the
/// tested rows are seen, so by default temperatures are fitted on rows the
/// test does not use.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Share of rows for the temperatures; 0 fits them on every row (the
    /// guarantee is then only approximate).
    pub temperature_share: f64,
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            temperature_share: 0.2,
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
    /// Rows the temperatures were fitted on, and rows the threshold test
    /// used (all figures below are on these); the same rows when the
    /// temperature share is 0.
    pub temperature_rows: usize,
    pub testing_rows: usize,
    pub target: Target,
    pub delta: f64,
    pub guarantee: &'static str,
    /// Rows any certificate at this ε and δ needs.
    pub min_rows: u64,
    pub threshold: f64,
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
            "{} rows: {} fit the temperatures, {} test the thresholds",
            self.rows, self.temperature_rows, self.testing_rows
        );
        let _ = writeln!(
            out,
            "threshold {:.3}: risk {:.4} (p = {:.2e} ≤ δ = {}), certified by {}",
            self.threshold, self.chosen.risk, self.chosen.p_value, self.delta, self.guarantee
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
            "\nexit  tensor                    T before  T after  ECE before  ECE after  exit rate  right when exiting\n",
        );
        for e in &self.exits {
            let _ = writeln!(
                out,
                "{:<5} {:<25} {:<9.3} {:<8.3} {:<11.4} {:<10.4} {:>8.2}%  {}",
                e.index,
                e.tensor,
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

/// The calibration worked out on cached outputs.
pub struct Outcome {
    pub temperatures: Vec<f64>,
    pub curve: Vec<CurvePoint>,
    pub chosen: CurvePoint,
    /// Rows the temperatures were fitted on and rows the test used.
    pub temperature_rows: usize,
    pub testing_rows: usize,
    /// The rows of the test (for the report's per-exit figures).
    pub testing: choose::Rows,
}

/// Temperatures, the sweep and the choice for rows already run through the
/// model (also what the repeated-split tests call).
pub fn calibrate_observed(
    obs: &Observed,
    table: &crate::exits::cost::CostTable,
    target: Target,
    delta: f64,
    split: Split,
) -> Result<Outcome, CalibrateError> {
    needs_labels(target, obs.labels.is_some())?;
    let epsilon = target.epsilon();
    let rows = obs.rows();
    let order = crate::fit::seeded_permutation(rows, split.seed ^ 0x7E3F_CA11);
    let set_aside = ((rows as f64) * split.temperature_share.clamp(0.0, 0.9)).round() as usize;
    let (temp_idx, test_idx) = if set_aside == 0 {
        (&order[..], &order[..])
    } else {
        order.split_at(set_aside)
    };
    let needed = guarantee::min_samples(epsilon, delta);
    if (test_idx.len() as u64) < needed {
        return Err(CalibrateError::TooFewRows {
            got: rows,
            testing: test_idx.len(),
            set_aside,
            needed,
            epsilon,
            delta,
        });
    }
    let temp_rows = obs.select(temp_idx);
    let temp_view = temp_rows.view();
    let temperatures: Vec<f64> = temp_view
        .exits
        .iter()
        .map(|e| choose::fit_temperature(e.logits, obs.classes, temp_view.reference()))
        .collect();
    let testing = obs.select(test_idx);
    let view = testing.view();
    let d = choose::decisions(&view, &temperatures);
    let curve = choose::sweep(&view, &d, target, delta, table);
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
        curve,
        chosen,
        temperature_rows: temp_idx.len(),
        testing_rows: test_idx.len(),
        testing,
    })
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

/// Rows run through an early-exit model: every exit's logits and the full
/// model's prediction.
pub struct RunOutputs {
    pub meta: ExitsMetadata,
    pub model: ModelProto,
    pub classes: usize,
    pub exit_logits: Vec<Vec<f32>>,
    pub full_pred: Vec<usize>,
}

/// Loads an eexc model and runs its flat form over `data` in tract.
pub fn run_exits(path: &Path, data: &Path, batch: usize) -> Result<RunOutputs, CalibrateError> {
    let (loaded, meta) = crate::runtime::load_exits_model(path)?;
    let bad = |reason: String| RunError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let (flat, outputs) = flatten::flat_model(&loaded.proto, &meta).map_err(bad)?;
    let mut samples = Samples::open(data)?;
    let rows = samples.rows();
    let mut columns = crate::runtime::run_batched(
        &flat,
        &outputs,
        &mut samples,
        batch,
        loaded.external_dir(),
        "running the exits",
    )?;
    let final_out = columns.pop().unwrap_or_default();
    let classes = columns.first().map_or(0, |c| c.len() / rows.max(1));
    if classes == 0 || columns.iter().any(|c| c.len() != rows * classes) {
        return Err(bad("the exits' logits do not have one row per sample".into()).into());
    }
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
    })
}

/// The calibrated model, its report, the curve and its plot.
pub struct Calibrated {
    pub model: ModelProto,
    pub report: CalibrationReport,
    pub curve: Vec<CurvePoint>,
    pub svg: String,
}

pub fn calibrate(path: &Path, options: &CalibrateOptions) -> Result<Calibrated, CalibrateError> {
    let epsilon = options.target.epsilon();
    if !(epsilon > 0.0 && epsilon < 1.0) {
        return Err(CalibrateError::BadOption(format!(
            "the bound must be in (0%, 100%); got {}%",
            100.0 * epsilon
        )));
    }
    if !(options.delta > 0.0 && options.delta < 1.0) {
        return Err(CalibrateError::BadOption(format!(
            "--delta must be in (0, 1); got {}",
            options.delta
        )));
    }
    // Checked here too, so that no model runs for nothing.
    needs_labels(options.target, options.labels.is_some())?;
    let run = run_exits(path, &options.data, options.batch)?;
    let labels = match &options.labels {
        Some(p) => Some(read_labels(p, run.full_pred.len(), run.classes as i64)?),
        None => None,
    };
    let never: Vec<usize> = run.meta.never_exit_classes.iter().map(|&c| c as usize).collect();
    let obs = Observed {
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
        labels: labels.as_deref(),
        never_exit_classes: &never,
    };
    let outcome = calibrate_observed(&obs, &run.meta.cost, options.target, options.delta, options.split)?;
    // Per-exit figures on the tested rows (the temperatures never saw them
    // unless --temperature-share is 0).
    let tested = outcome.testing.view();
    let reference = tested.reference();
    let d = choose::decisions(&tested, &outcome.temperatures);
    let (exit_of, pred) = choose::outcome(&d, tested.full_pred, outcome.chosen.threshold);
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
        temperature_rows: outcome.temperature_rows,
        testing_rows: outcome.testing_rows,
        target: options.target,
        delta: options.delta,
        guarantee: "Learn-then-Test, fixed-sequence testing over one shared threshold (most conservative first), exact binomial p-values",
        min_rows: guarantee::min_samples(epsilon, options.delta),
        threshold: outcome.chosen.threshold,
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
        match options.target {
            Target::MaxDrop(_) => "accuracy drop",
            Target::MaxDisagree(_) => "disagreement",
        },
        100.0 * epsilon,
        options.delta
    );
    let svg = plot::curve_svg(&outcome.curve, Some(&outcome.chosen), &title);
    Ok(Calibrated {
        model,
        report,
        curve: outcome.curve,
        svg,
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
    let g = model.graph.as_mut().expect("loaded models have a graph");
    for (i, e) in meta.exits.iter_mut().enumerate() {
        e.threshold = outcome.chosen.threshold as f32;
        e.temperature = outcome.temperatures[i] as f32;
        for (name, value) in [(&e.threshold_input, e.threshold), (&e.temperature_input, e.temperature)] {
            if let Some(t) = g.initializer.iter_mut().find(|t| t.name() == name.as_str()) {
                *t = crate::transform::builder::tensor_f32(name, &[], &[value]);
            }
        }
    }
    meta.calibration = Some(serde_json::json!({
        "target": report.target,
        "delta": report.delta,
        "rows": report.rows,
        "temperature_rows": report.temperature_rows,
        "testing_rows": report.testing_rows,
        "threshold": report.threshold,
        "risk": report.chosen.risk,
        "p_value": report.chosen.p_value,
        "guarantee": report.guarantee,
    }));
    crate::exits::write_metadata(model, &meta);
    Ok(())
}

/// The sweep as CSV: one row per candidate threshold.
pub fn curve_csv(curve: &[CurvePoint]) -> String {
    let k = curve.first().map_or(0, |c| c.exit_shares.len());
    let mut s = String::from("threshold");
    for e in 1..k {
        s.push_str(&format!(",exit{e}_share"));
    }
    s.push_str(",full_share,losses,risk,p_value,certified,accuracy,agreement,expected_flops,savings\n");
    for c in curve {
        s.push_str(&format!("{:.3}", c.threshold));
        for share in &c.exit_shares {
            s.push_str(&format!(",{share:.6}"));
        }
        s.push_str(&format!(
            ",{},{:.6},{:.6e},{},{},{:.6},{:.1},{:.6}\n",
            c.losses,
            c.risk,
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
        // highest temperature: at every candidate all rows exit, 10% wrongly.
        let mut logits = Vec::new();
        let full = observed(&mut logits, 0.9, 1e4);
        let obs = one_exit(&logits, &full);
        // 10% of rows disagree at every threshold: 5% cannot be certified.
        let err = calibrate_observed(&obs, &table(), Target::MaxDisagree(0.05), 0.05, Split::default())
            .err()
            .unwrap();
        assert!(
            matches!(err, CalibrateError::NothingCertified { rows: 320, .. }),
            "{err}"
        );
        // With never-exit class 1 those rows stay for the full model: certified.
        let never = [1usize];
        let obs = Observed {
            never_exit_classes: &never,
            ..obs
        };
        let out = calibrate_observed(&obs, &table(), Target::MaxDisagree(0.05), 0.05, Split::default()).unwrap();
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
            let split = Split {
                temperature_share: 0.2,
                seed: trial,
            };
            let out = calibrate_observed(&obs, &table(), Target::MaxDisagree(epsilon), delta, split).unwrap();
            if true_risk(out.temperatures[0], out.chosen.threshold) > epsilon {
                violations += 1;
            }
        }
        // δ plus three standard errors of a share over 300 trials.
        let allowed = delta + 3.0 * (delta * (1.0 - delta) / f64::from(trials as u32)).sqrt();
        let share = f64::from(violations) / f64::from(trials as u32);
        eprintln!("true risk above ε in {violations} of {trials} trials (δ = {delta})");
        assert!(share <= allowed, "true risk above ε in {violations} of {trials} trials");
    }

    #[test]
    fn a_head_that_cannot_tell_its_mistakes_does_not_exit() {
        // Same confidence on right and wrong rows: any threshold that lets
        // one row exit lets all exit (10% disagreement), so the certified
        // choice is to exit nowhere, which costs the head.
        let mut logits = Vec::new();
        let full = observed(&mut logits, 0.9, 3.0);
        let obs = one_exit(&logits, &full);
        let out = calibrate_observed(&obs, &table(), Target::MaxDisagree(0.05), 0.05, Split::default()).unwrap();
        assert_eq!(out.chosen.exit_shares[0], 0.0);
        assert!(out.chosen.savings < 0.0);
        // Its temperature makes the confidence the accuracy on the 80 rows
        // it was fitted on (0.9 over all 400).
        let t = out.temperatures[0];
        let p = choose::confidence(Confidence::Maxprob, &logits[..2], t);
        assert!((p - 0.9).abs() < 0.05, "{p}");
    }
}
