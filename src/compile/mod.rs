//! `eexc compile`: the one-shot pipeline for a CI step. The sample rows are
//! split (seeded) into a fit part and a calibration part; the heads are
//! fitted on the first, the early-exit model is emitted with them, and the
//! thresholds are calibrated on the second. A savings gate can fail the run.

use std::path::{Path, PathBuf};

use crate::calibrate::choose::Target;
use crate::calibrate::{CalibrateError, CalibrateOptions, CalibrationReport, Procedure};
use crate::exits::{Confidence, ExitOptions, ExitSelection, HeadKind, Mode, WeightSource};
use crate::fit::{FitError, FitOptions, FitReport};
use crate::onnx::proto::ModelProto;
use crate::runtime::pass::PassSource;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    Calibrate(#[from] CalibrateError),
    #[error(transparent)]
    Run(#[from] crate::runtime::RunError),
    #[error(transparent)]
    Exit(#[from] crate::exits::ExitError),
    #[error("{0}")]
    BadOption(String),
}

#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub selection: ExitSelection,
    pub head: HeadKind,
    pub mode: Mode,
    pub confidence: Confidence,
    /// The calibration's target, bound and split (its seed is the
    /// calibration split's).
    pub procedure: Procedure,
    /// Share of the rows used to fit the heads; the rest calibrate.
    pub fit_share: f64,
    /// Separate calibration rows (and labels): then every `data` row fits
    /// the heads and nothing is split.
    pub calibration: Option<(PathBuf, Option<PathBuf>)>,
    pub seed: u64,
    pub batch: usize,
    /// Keep every fitted exit, even one that does not pay.
    pub keep_exits: bool,
    /// What an exit must pay for: time (the cost model's ONNX Runtime time
    /// term) or FLOPs.
    pub objective: crate::calibrate::Objective,
    /// int8 heads on a quantized model.
    pub quantize_heads: bool,
    /// With `--head auto`: the 4-D heads fitted beside gap-linear at every
    /// cut that took one (see `fit_variants`).
    pub head_variants: Vec<HeadKind>,
    /// `--dim NAME=VALUE`: named dimensions' values for the cost model.
    pub dims: Vec<(String, u64)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CompileReport {
    pub schema: &'static str,
    pub model: String,
    pub fit_rows: usize,
    pub calibration_rows: usize,
    /// The fewest calibration rows any certificate at this ε and δ needs
    /// (see `calibrate::Procedure::rows_needed`).
    pub calibration_rows_needed: usize,
    pub fit: FitReport,
    /// With `--head auto`: the `--head-variants` heads fitted
    /// beside `fit`'s, for the choosing rows to pick from per exit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_head_fits: Vec<FitReport>,
    pub calibration: CalibrationReport,
    /// Expected FLOP savings at the chosen threshold on the calibration rows.
    pub savings: f64,
    /// The same in time, by the cost model's time term (ONNX Runtime CPU).
    pub time_saving: Option<f64>,
    /// What the exits were kept for (time or FLOPs).
    pub objective: crate::calibrate::Objective,
    /// Every exit fitted, kept or dropped, with the saving (in the
    /// objective's terms) a certificate was expected to give with and
    /// without it (choosing rows; see `calibrate::choose_exits`); empty with
    /// --keep-exits.
    pub exits_tried: Vec<crate::calibrate::ExitVerdict>,
    /// The dropped ones (in the exits' order).
    pub dropped_exits: Vec<crate::calibrate::ExitVerdict>,
    /// Each exit's head and decision before and after fusion.
    pub fusion: Option<crate::fuse::FuseReport>,
    /// The written model measured against the original (`--measure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<crate::eval::EvalReport>,
}

impl CompileReport {
    /// The summary the CLI prints before the model is written.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let c = &self.calibration;
        let mut out = format!(
            "fit on {} rows, calibrated on {}: thresholds {}, risk {:.4} (p = {:.2e} ≤ δ = {}), expected FLOP savings {:.1}%\n",
            self.fit_rows,
            self.calibration_rows,
            crate::calibrate::thresholds_text(&c.thresholds),
            c.chosen.risk,
            c.chosen.p_value,
            c.delta,
            100.0 * self.savings
        );
        if let Some(t) = self.time_saving {
            let _ = writeln!(
                out,
                "expected time savings {:.1}% (cost model, ONNX Runtime CPU 1 thread; `eexc eval` measures)",
                100.0 * t
            );
        }
        let kept: Vec<String> = self
            .exits_tried
            .iter()
            .filter(|v| v.kept)
            .map(|v| format!("{} ({})", v.tensor, v.head.name()))
            .collect();
        if !kept.is_empty() {
            let _ = writeln!(out, "exits kept: {}", kept.join(", "));
        }
        for d in &self.dropped_exits {
            let _ = writeln!(
                out,
                "dropped exit at '{}': a certificate was expected to save {:.1}% of the {} with it, {:.1}% without (choosing rows, cost model)",
                d.tensor,
                100.0 * d.expected_saving_with,
                self.objective_name(),
                100.0 * d.expected_saving_without
            );
        }
        let kept: Vec<_> = self.exits_tried.iter().filter(|v| v.kept).collect();
        if let [only] = kept[..]
            && only.expected_saving_with < only.expected_saving_without
        {
            let _ = writeln!(
                out,
                "the one exit kept, at '{}', is expected to cost more {} than it saves ({:.1}%): the original model may serve better",
                only.tensor,
                self.objective_name(),
                100.0 * only.expected_saving_with
            );
        }
        out
    }

    fn objective_name(&self) -> &'static str {
        match self.objective {
            crate::calibrate::Objective::Time => "time",
            crate::calibrate::Objective::Flops => "FLOPs",
        }
    }

    /// The line for a `--measure` run.
    pub fn measured_text(&self) -> Option<String> {
        let r = self.measured.as_ref()?;
        Some(format!(
            "measured in {}: time saving {:.1}% (cost model: {}), exits {:?}\n",
            r.runtime,
            100.0 * r.measured_time_saving.unwrap_or(0.0),
            r.predicted_time_saving
                .map_or("-".into(), |t| format!("{:.1}%", 100.0 * t)),
            r.exit_histogram
        ))
    }
}

/// Runs the pipeline, every stage on the previous one's values in memory;
/// returns the calibrated model and the report.
pub fn compile(model: &Path, options: &CompileOptions) -> Result<(ModelProto, CompileReport), CompileError> {
    if !(0.1..=0.9).contains(&options.fit_share) {
        return Err(CompileError::BadOption("--fit-share must be in [0.1, 0.9]".into()));
    }
    let needed = options.procedure.rows_needed();
    // Loaded once; every stage below works on a copy, in memory.
    let original = crate::fit::load(model)?;
    let split = match &options.calibration {
        Some((x, y)) => DataSplit {
            fit: PassSource::Rows(options.data.clone()),
            fit_labels: options.labels.clone(),
            calib: PassSource::Rows(x.clone()),
            calib_labels: y.clone(),
            fit_rows: crate::runtime::Samples::open(&options.data)?.rows(),
            calib_rows: crate::runtime::Samples::open(x)?.rows(),
        },
        None => split_rows(&original.proto, options, needed)?,
    };
    // Refused before any head is fitted.
    options.procedure.check_rows(split.calib_rows)?;
    let fit_options = FitOptions {
        source: split.fit.clone(),
        save_outputs: None,
        labels: split.fit_labels.clone(),
        // Heads learn what the target measures them against: the labels
        // for the accuracy drop, the full model for the disagreement.
        label_weight: match options.procedure.target {
            Target::MaxDrop(_) => 1.0,
            Target::MaxDisagree(_) => 0.0,
        },
        selection: options.selection.clone(),
        head: options.head,
        logits: None,
        batch: options.batch,
        seed: options.seed,
        held_out: 0.2,
        dims: options.dims.clone(),
    };
    let variants = fit_variants(&original, options, &fit_options)?;
    let fit_report = variants[0].1.clone();
    let other_fits: Vec<FitReport> = variants[1..].iter().map(|(_, r)| r.clone()).collect();
    // Which exits pay, and with which head, is decided on the calibration
    // split's choosing rows only, so that the one test that follows keeps
    // its guarantee (a second look at the tested rows would spend δ twice).
    let cuts = variants[0].0.len();
    let chosen: Vec<(usize, usize)> = (0..cuts).map(|j| (j, 0)).collect();
    // Nothing to weigh: one head kind, and every exit stays.
    let choice = if variants.len() == 1 && (options.keep_exits || cuts <= 1) {
        None
    } else {
        let models = variants
            .iter()
            .map(|(heads, report)| {
                let every: Vec<_> = heads.iter().cloned().zip(report.exits.iter().cloned()).collect();
                insert(&original, options, &every, report).map(|(_, m)| m)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(crate::calibrate::choose_exits(
            models,
            &calibrate_options(options, &split),
            options.objective,
            options.keep_exits,
        )?)
    };
    let kept: Vec<(crate::exits::head::HeadWeights, crate::fit::FittedExit)> = choice
        .as_ref()
        .map_or(chosen, |c| c.kept.clone())
        .into_iter()
        .map(|(j, v)| (variants[v].0[j].clone(), variants[v].1.exits[j].clone()))
        .collect();
    let (model_out, calibrated, inserted) = insert_and_calibrate(&original, options, &split, &kept, &fit_report)?;
    let mut calibrated = calibrated;
    calibrated.model = model.display().to_string();
    let exits_tried = choice.map(|c| c.verdicts).unwrap_or_default();
    let report = CompileReport {
        schema: "eexc.compile/3",
        model: model.display().to_string(),
        fit_rows: split.fit_rows,
        calibration_rows: split.calib_rows,
        calibration_rows_needed: needed,
        savings: calibrated.chosen.savings,
        time_saving: calibrated.cost.time.saving,
        objective: options.objective,
        dropped_exits: exits_tried.iter().filter(|v| !v.kept).cloned().collect(),
        exits_tried,
        fit: fit_report,
        other_head_fits: other_fits,
        calibration: calibrated,
        fusion: inserted,
        measured: None,
    };
    Ok((model_out, report))
}

/// The heads fitted at the cuts: with the requested head, and with
/// `--head auto` also each of `head_variants` (by default grid-linear and
/// mix-linear) at every cut that took a gap-linear one (the choosing rows
/// then pick per exit, net of each head's own cost). A cut where a head
/// does not fit (no grid on a 1×1 map) keeps its global pool in that
/// variant.
fn fit_variants(
    model: &crate::onnx::LoadedModel,
    options: &CompileOptions,
    fit_options: &FitOptions,
) -> Result<Vec<(Vec<crate::exits::head::HeadWeights>, FitReport)>, CompileError> {
    if let Some(h) = options.head_variants.iter().find(|h| !FOUR_D_VARIANTS.contains(h)) {
        return Err(CompileError::BadOption(format!(
            "--head-variants: {} is not a head for 4-D cuts beside gap-linear (grid-linear, mix-linear, conv-grid)",
            h.name()
        )));
    }
    let (heads, report) = crate::fit::fit_model(model.clone(), fit_options)?;
    let gap = HeadKind::GapLinear.name();
    if options.head != HeadKind::Auto || !report.exits.iter().any(|e| e.head == gap) {
        return Ok(vec![(heads, report)]);
    }
    let mut variants = vec![(heads, report)];
    let mut others: Vec<HeadKind> = Vec::new();
    for &h in &options.head_variants {
        if h != HeadKind::GapLinear && !others.contains(&h) {
            others.push(h);
        }
    }
    for other in others {
        let report = &variants[0].1;
        let with = |e: &crate::fit::FittedExit| format!("{}:{}", e.tensor, other.name());
        let fits = crate::fit::exits_fit(model, &report.exits.iter().map(with).collect::<Vec<_>>(), None)?;
        let names: Vec<String> = report
            .exits
            .iter()
            .zip(fits)
            .map(|(e, fits)| {
                if e.head == gap && fits {
                    with(e)
                } else {
                    format!("{}:{}", e.tensor, e.head)
                }
            })
            .collect();
        let options = FitOptions {
            selection: ExitSelection::At(names),
            ..fit_options.clone()
        };
        variants.push(crate::fit::fit_model(model.clone(), &options)?);
    }
    Ok(variants)
}

/// The heads `--head-variants` may name.
const FOUR_D_VARIANTS: [HeadKind; 4] = [
    HeadKind::GapLinear,
    HeadKind::GridLinear,
    HeadKind::MixLinear,
    HeadKind::ConvGrid,
];

/// What compile's calibration runs with.
fn calibrate_options(options: &CompileOptions, split: &DataSplit) -> CalibrateOptions {
    CalibrateOptions {
        source: split.calib.clone(),
        save_outputs: None,
        labels: split.calib_labels.clone(),
        batch: options.batch,
        procedure: options.procedure,
    }
}

/// Inserts the fitted heads `exits` (exit k of the result is the k-th of
/// them) into the original model; returns the summary and the early-exit
/// model, in memory, its external data (if any) still beside the original.
fn insert(
    original: &crate::onnx::LoadedModel,
    options: &CompileOptions,
    exits: &[(crate::exits::head::HeadWeights, crate::fit::FittedExit)],
    fit_report: &FitReport,
) -> Result<(crate::exits::ExitSummary, crate::onnx::LoadedModel), CompileError> {
    let exit_options = ExitOptions {
        // Each exit with the head it was fitted with.
        selection: ExitSelection::At(exits.iter().map(|(_, e)| format!("{}:{}", e.tensor, e.head)).collect()),
        mode: options.mode,
        head: options.head,
        weights: WeightSource::Fitted {
            heads: exits.iter().map(|(h, _)| h.clone()).collect(),
            origin: format!("fit by eexc compile on {} rows", fit_report.rows),
        },
        confidence: options.confidence,
        thresholds: Vec::new(),
        temperatures: Vec::new(),
        never_exit_classes: Vec::new(),
        logits: None,
        exit_distribution: None,
        fuse: Some(crate::fuse::FuseOptions::default()),
        quantize_heads: options.quantize_heads,
        dims: options.dims.clone(),
    };
    let (proto, inserted) = crate::exits::insert_exits_into(original.clone(), &exit_options)?;
    // Messages about it name the model it was made from; its external data
    // (if any) resolves where the original's does.
    let early_exit = crate::onnx::LoadedModel {
        proto,
        path: original.path.clone(),
        base_dir: original.base_dir.clone(),
        file_bytes: original.file_bytes,
        external_bytes: original.external_bytes,
    };
    Ok((inserted, early_exit))
}

/// Inserts the exits `kept` and calibrates them.
fn insert_and_calibrate(
    original: &crate::onnx::LoadedModel,
    options: &CompileOptions,
    split: &DataSplit,
    exits: &[(crate::exits::head::HeadWeights, crate::fit::FittedExit)],
    fit_report: &FitReport,
) -> Result<(ModelProto, CalibrationReport, Option<crate::fuse::FuseReport>), CompileError> {
    let (inserted, early_exit) = insert(original, options, exits, fit_report)?;
    let calibrated = crate::calibrate::calibrate_model(early_exit, &calibrate_options(options, split))?;
    Ok((calibrated.model, calibrated.report, inserted.fusion))
}

/// The rows heads are fitted on and the rows calibration tests on.
struct DataSplit {
    fit: PassSource,
    /// Label files; rows split in memory carry their own.
    fit_labels: Option<PathBuf>,
    calib: PassSource,
    calib_labels: Option<PathBuf>,
    fit_rows: usize,
    calib_rows: usize,
}

/// The fewest rows the heads are fitted on when compile splits --data.
const MIN_FIT_ROWS: usize = 20;

/// Splits the rows of --data (and their labels), in memory: the
/// calibration part gets its share of the rows, and at least the `needed`
/// rows a certificate needs; the heads are fitted on the rest.
fn split_rows(model: &ModelProto, options: &CompileOptions, needed: usize) -> Result<DataSplit, CompileError> {
    let mut samples = crate::runtime::Samples::open(&options.data)?;
    crate::runtime::bind_samples(&mut samples, model)?;
    let rows = samples.rows();
    let all = samples.next_rows(0, rows)?;
    let labels = match &options.labels {
        Some(p) => Some(crate::runtime::read_labels(p, rows, i64::MAX)?),
        None => None,
    };
    let fit_rows = ((rows as f64) * options.fit_share).round() as usize;
    let fit_rows = fit_rows.min(rows.saturating_sub(needed));
    if fit_rows < MIN_FIT_ROWS {
        return Err(CompileError::BadOption(format!(
            "{}: {rows} rows; a certificate at {}% with δ = {} needs {needed} of them to calibrate, which leaves {fit_rows} to fit the heads (at least {MIN_FIT_ROWS}): give more rows, or --calib-data",
            options.data.display(),
            100.0 * options.procedure.target.epsilon(),
            options.procedure.delta
        )));
    }
    let order = crate::fit::seeded_permutation(rows, options.seed ^ 0x0C04_D11E);
    let (fit_idx, calib_idx) = order.split_at(fit_rows);
    let part = |what: &str, idx: &[usize]| {
        PassSource::Memory(std::sync::Arc::new(crate::runtime::MemoryRows {
            name: PathBuf::from(format!("{} ({what} rows)", options.data.display())),
            batch: all.select(idx),
            labels: labels.as_ref().map(|l| idx.iter().map(|&r| l[r] as i64).collect()),
        }))
    };
    Ok(DataSplit {
        fit: part("fitting", fit_idx),
        fit_labels: None,
        calib: part("calibration", calib_idx),
        calib_labels: None,
        fit_rows: fit_idx.len(),
        calib_rows: calib_idx.len(),
    })
}
