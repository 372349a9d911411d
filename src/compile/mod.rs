//! `eexc compile`: the one-shot pipeline for a CI step. The sample rows are
//! split (seeded) into a fit part and a calibration part; the heads are
//! fitted on the first, the early-exit model is emitted with them, and the
//! thresholds are calibrated on the second. A savings gate can fail the run.

use std::path::{Path, PathBuf};

use crate::calibrate::choose::Target;
use crate::calibrate::{CalibrateError, CalibrateOptions, CalibrationReport};
use crate::exits::{Confidence, ExitOptions, ExitSelection, HeadKind, Mode, WeightSource};
use crate::fit::{FitError, FitOptions, FitReport};
use crate::onnx::proto::ModelProto;

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
    Io(String),
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
    pub target: Target,
    pub delta: f64,
    /// Share of the rows used to fit the heads; the rest calibrate.
    pub fit_share: f64,
    /// Separate calibration rows (and labels): then every `data` row fits
    /// the heads and nothing is split.
    pub calibration: Option<(PathBuf, Option<PathBuf>)>,
    pub seed: u64,
    pub batch: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CompileReport {
    pub schema: &'static str,
    pub model: String,
    pub fit_rows: usize,
    pub calibration_rows: usize,
    pub fit: FitReport,
    pub calibration: CalibrationReport,
    /// Expected FLOP savings at the chosen threshold on the calibration rows.
    pub savings: f64,
    /// Each exit's head and decision before and after fusion.
    pub fusion: Option<crate::fuse::FuseReport>,
}

/// Runs the pipeline; returns the calibrated model and the report. `work`
/// is a scratch folder for the intermediate files.
pub fn compile(
    model: &Path,
    options: &CompileOptions,
    work: &Path,
) -> Result<(ModelProto, CompileReport), CompileError> {
    if !(0.1..=0.9).contains(&options.fit_share) {
        return Err(CompileError::BadOption("--fit-share must be in [0.1, 0.9]".into()));
    }
    let split = match &options.calibration {
        Some((x, y)) => Split {
            fit_x: options.data.clone(),
            fit_y: options.labels.clone(),
            calib_x: x.clone(),
            calib_y: y.clone(),
            fit_rows: crate::runtime::Samples::open(&options.data)?.rows(),
            calib_rows: crate::runtime::Samples::open(x)?.rows(),
        },
        None => split_rows(options, work)?,
    };
    let fit_options = FitOptions {
        data: split.fit_x.clone(),
        labels: split.fit_y.clone(),
        label_weight: if options.labels.is_some() { 0.5 } else { 1.0 },
        selection: options.selection.clone(),
        head: options.head,
        logits: None,
        batch: options.batch,
        seed: options.seed,
        held_out: 0.2,
    };
    let (heads, fit_report) = crate::fit::fit(model, &fit_options)?;
    let heads_path = work.join("heads.safetensors");
    crate::fit::save_heads(&heads_path, &heads, &fit_report.exits, &fit_report)?;

    let exit_options = ExitOptions {
        selection: ExitSelection::At(fit_report.exits.iter().map(|e| e.tensor.clone()).collect()),
        mode: options.mode,
        head: options.head,
        weights: WeightSource::File(heads_path),
        confidence: options.confidence,
        thresholds: Vec::new(),
        temperatures: Vec::new(),
        never_exit_classes: Vec::new(),
        logits: None,
        exit_distribution: None,
        fuse: Some(crate::fuse::FuseOptions::default()),
    };
    let (ee, inserted) = crate::exits::insert_exits(model, &exit_options)?;
    let ee_path = work.join("early_exit.onnx");
    let source_dir = model.parent().unwrap_or(Path::new("."));
    crate::onnx::save_model(&ee, &ee_path, Some(source_dir)).map_err(|e| CompileError::Io(e.to_string()))?;

    let calibrated = crate::calibrate::calibrate(
        &ee_path,
        &CalibrateOptions {
            data: split.calib_x,
            labels: split.calib_y,
            target: options.target,
            delta: options.delta,
            batch: options.batch,
            split: crate::calibrate::Split {
                temperature_share: 0.2,
                seed: options.seed,
            },
        },
    )?;
    let report = CompileReport {
        schema: "eexc.compile/1",
        model: model.display().to_string(),
        fit_rows: split.fit_rows,
        calibration_rows: split.calib_rows,
        savings: calibrated.report.chosen.savings,
        fit: fit_report,
        calibration: calibrated.report,
        fusion: inserted.fusion,
    };
    Ok((calibrated.model, report))
}

struct Split {
    fit_x: PathBuf,
    fit_y: Option<PathBuf>,
    calib_x: PathBuf,
    calib_y: Option<PathBuf>,
    fit_rows: usize,
    calib_rows: usize,
}

/// Writes the two parts of the data (and labels) as .npy files in `work`.
fn split_rows(options: &CompileOptions, work: &Path) -> Result<Split, CompileError> {
    let mut samples = crate::runtime::Samples::open(&options.data)?;
    let rows = samples.rows();
    let all = samples.next_rows(0, rows)?;
    let row_len = samples.row_len();
    let labels = match &options.labels {
        Some(p) => Some(crate::runtime::read_labels(p, rows, i64::MAX)?),
        None => None,
    };
    let fit_rows = ((rows as f64) * options.fit_share).round() as usize;
    let order = crate::fit::seeded_permutation(rows, options.seed ^ 0x0C04_D11E);
    let (fit_idx, calib_idx) = order.split_at(fit_rows);
    let write = |name: &str, idx: &[usize]| -> Result<PathBuf, CompileError> {
        let mut shape = samples.shape.clone();
        shape[0] = idx.len();
        let data: Vec<f32> = idx
            .iter()
            .flat_map(|&r| all[r * row_len..(r + 1) * row_len].iter().copied())
            .collect();
        let path = work.join(name);
        crate::runtime::write_npy(&path, &shape, &data)?;
        Ok(path)
    };
    let write_labels = |name: &str, idx: &[usize]| -> Result<Option<PathBuf>, CompileError> {
        let Some(l) = &labels else { return Ok(None) };
        let values: Vec<i64> = idx.iter().map(|&r| l[r] as i64).collect();
        let path = work.join(name);
        crate::runtime::write_npy(&path, &[values.len()], &values)?;
        Ok(Some(path))
    };
    Ok(Split {
        fit_x: write("fit_x.npy", fit_idx)?,
        fit_y: write_labels("fit_y.npy", fit_idx)?,
        calib_x: write("calib_x.npy", calib_idx)?,
        calib_y: write_labels("calib_y.npy", calib_idx)?,
        fit_rows: fit_idx.len(),
        calib_rows: calib_idx.len(),
    })
}
