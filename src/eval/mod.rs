//! `eexc eval`: runs an early-exit model (and optionally the original) in
//! tract, one sample at a time as a latency-bound service would, and
//! reports accuracy, agreement, the exit histogram, measured latency and
//! throughput, and the measured speedup next to the cost model's
//! prediction for the exit distribution it saw.

use crate::numeric::argmax;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::exits::cost::CostReport;
use crate::onnx::LoadedModel;
use crate::runtime::{RunError, Samples, read_labels};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub rows_per_second: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub accuracy: Option<f64>,
    pub timing: Timing,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub schema: &'static str,
    pub model: String,
    pub rows: usize,
    pub runtime: &'static str,
    pub early_exit: Side,
    pub baseline: Option<Side>,
    /// Share of rows where both give the same prediction.
    pub agreement: Option<f64>,
    /// Rows per exit 1..K, then the full model.
    pub exit_histogram: Vec<usize>,
    pub measured_speedup: Option<f64>,
    /// Original FLOPs over expected FLOPs under the observed distribution.
    pub predicted_speedup: f64,
    pub cost: CostReport,
}

/// Per row: prediction and exit index (K+1 for the full model).
pub struct Evaluated {
    pub report: EvalReport,
    pub predictions: Vec<(i64, i64)>,
}

fn timing(mut ms: Vec<f64>) -> Timing {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    Timing {
        mean_ms: mean,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        rows_per_second: 1000.0 / mean,
    }
}

/// Per row: the first output's argmax, the `exit_index` output (0 when
/// not asked for), and the latency in ms.
type Row = (usize, i64, f64);

/// Runs `loaded` one row at a time; also returns the width of the first
/// output (the classes).
fn run_rows(loaded: &LoadedModel, data: &Path, with_exit: bool) -> Result<(Vec<Row>, usize), RunError> {
    let bad = |reason: String| RunError::Model {
        path: loaded.path.clone(),
        reason,
    };
    let g = loaded.proto.graph.as_ref().ok_or_else(|| bad("no graph".into()))?;
    let first = g
        .output
        .first()
        .ok_or_else(|| bad("no outputs".into()))?
        .name()
        .to_string();
    let mut outputs = vec![first];
    if with_exit {
        if !g.output.iter().any(|o| o.name() == crate::exits::EXIT_INDEX) {
            return Err(bad(
                "no 'exit_index' output: evaluate an if or compact model made by insert-exits".into(),
            ));
        }
        outputs.push(crate::exits::EXIT_INDEX.to_string());
    }
    let bytes =
        protobuf::Message::write_to_bytes(&crate::runtime::for_tract(&loaded.proto)).map_err(|e| bad(e.to_string()))?;
    let mut samples = Samples::open(data)?;
    let row_shape = samples.shape[1..].to_vec();
    let plan = crate::runtime::prepare(&bytes, &outputs, 1, &row_shape, loaded.external_dir())?;
    let progress = indicatif::ProgressBar::new(samples.rows() as u64);
    progress.set_message(format!("evaluating {}", loaded.path.display()));
    let mut out = Vec::with_capacity(samples.rows());
    let mut width = 0;
    for r in 0..samples.rows() {
        let row = samples.next_rows(r, 1)?;
        let start = Instant::now();
        let result = crate::runtime::run_plan(&plan, &row, 1, &row_shape, &outputs)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let exit = if with_exit { result[1][0] as i64 } else { 0 };
        width = result[0].len();
        out.push((argmax(result[0].iter().copied()), exit, ms));
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok((out, width))
}

pub fn eval(path: &Path, options: &EvalOptions) -> Result<Evaluated, RunError> {
    let (loaded, meta) = crate::runtime::load_exits_model(path)?;
    if matches!(meta.mode.as_str(), "compact" | "loop" | "multi") {
        return Err(RunError::Model {
            path: path.to_path_buf(),
            reason: format!(
                "a '{}' model: eval runs in tract, which runs the 'if' form only (it cannot type compact mode's \
                 data-dependent row counts, and has no Loop); evaluate the 'if' form with the same heads and thresholds",
                meta.mode
            ),
        });
    }
    let (ee, classes) = run_rows(&loaded, &options.data, true)?;
    let rows = ee.len();
    let k = meta.exits.len();
    let labels = match &options.labels {
        Some(p) => Some(read_labels(p, rows, classes as i64)?),
        None => None,
    };
    let accuracy = |preds: &[usize]| {
        labels
            .as_ref()
            .map(|l| preds.iter().zip(l).filter(|(a, b)| a == b).count() as f64 / rows as f64)
    };
    let ee_pred: Vec<usize> = ee.iter().map(|r| r.0).collect();
    let mut histogram = vec![0usize; k + 1];
    for r in &ee {
        let i = (r.1.clamp(1, k as i64 + 1) - 1) as usize;
        histogram[i] += 1;
    }
    let early_exit = Side {
        accuracy: accuracy(&ee_pred),
        timing: timing(ee.iter().map(|r| r.2).collect()),
    };
    let (baseline, agreement) = match &options.baseline {
        Some(b) => {
            let base_model = crate::onnx::load_model(b).map_err(|e| RunError::Model {
                path: b.clone(),
                reason: e.to_string(),
            })?;
            let (base, _) = run_rows(&base_model, &options.data, false)?;
            let preds: Vec<usize> = base.iter().map(|r| r.0).collect();
            let agree = preds.iter().zip(&ee_pred).filter(|(a, b)| a == b).count() as f64 / rows as f64;
            (
                Some(Side {
                    accuracy: accuracy(&preds),
                    timing: timing(base.iter().map(|r| r.2).collect()),
                }),
                Some(agree),
            )
        }
        None => (None, None),
    };
    let shares: Vec<f64> = histogram[..k].iter().map(|&c| c as f64 / rows as f64).collect();
    let cost = CostReport::new(&meta.cost, Some(&shares));
    let expected = cost
        .expected
        .as_ref()
        .map_or(meta.cost.original.flops, |e| e.cost.flops);
    let report = EvalReport {
        schema: "eexc.eval/1",
        model: path.display().to_string(),
        rows,
        runtime: "tract (one row per run)",
        measured_speedup: baseline.as_ref().map(|b| b.timing.mean_ms / early_exit.timing.mean_ms),
        early_exit,
        baseline,
        agreement,
        exit_histogram: histogram,
        predicted_speedup: meta.cost.original.flops / expected.max(1e-9),
        cost,
    };
    Ok(Evaluated {
        report,
        predictions: ee.iter().map(|r| (r.0 as i64, r.1)).collect(),
    })
}

/// Writes per-row (prediction, exit index) as an int64 .npy of shape [rows, 2].
pub fn save_predictions(path: &Path, predictions: &[(i64, i64)]) -> Result<(), RunError> {
    let flat: Vec<i64> = predictions.iter().flat_map(|&(p, e)| [p, e]).collect();
    crate::runtime::write_npy(path, &[predictions.len(), 2], &flat)
}
