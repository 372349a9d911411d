//! `eexc eval`: runs an early-exit model (and optionally the original) one
//! sample at a time, as a latency-bound service would, in ONNX Runtime (the
//! runtime users deploy to, loaded from the library they have) or tract,
//! and reports accuracy, agreement, the exit histogram, measured latency
//! and throughput, and the measured saving next to the cost model's
//! prediction for the exit distribution it saw: in FLOPs, and in time from
//! the latency of each path through the model measured in the same runtime.

use crate::numeric::argmax;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::exits::cost::CostReport;
use crate::onnx::LoadedModel;
use crate::runtime::onnxruntime::{Feed, Fetched, OrtSession};
use crate::runtime::{Batch, RunError, Samples, read_labels};

/// Which runtime measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeChoice {
    /// ONNX Runtime when its library is found, else tract.
    Auto,
    /// ONNX Runtime (CPU, default session options): what deployments run.
    Ort,
    /// tract, the embedded runtime (runs the `if` form only; its `If` is far
    /// slower than ONNX Runtime's, so its latency is not what users see).
    Tract,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    pub runtime: RuntimeChoice,
    /// Intra-op threads (ONNX Runtime).
    pub threads: usize,
    /// Where the ONNX Runtime library is, if not found by the usual search.
    pub ort_library: Option<PathBuf>,
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

/// What measured: runtime, version, options.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    /// "onnxruntime" or "tract".
    pub name: &'static str,
    pub version: String,
    /// The ONNX Runtime library loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    pub threads: usize,
    /// How the rows were run and timed, in words.
    pub method: String,
    /// Why ONNX Runtime was not used, where `auto` fell back on tract.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// Measured latency of each path through the model: every row forced to
/// leave at exit k (thresholds: never before k, always at k), k = 1..K,
/// then the full path (never). What the runtime really charges for each
/// exit, heads, `If`s and layout changes included.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathTimes {
    /// Median ms per row of each path, exits 1..K then the full path.
    pub p50_ms: Vec<f64>,
    /// Rows timed per path.
    pub rows: usize,
    /// Expected ms per row under the observed exit distribution
    /// (Σ share_k · path_k): the time the cost model predicts.
    pub predicted_ms: f64,
    /// 1 − predicted / baseline (when a baseline was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_time_saving: Option<f64>,
    /// Each exit's break-even rate in time: the share of the rows reaching
    /// exit k that must leave there for it to pay for itself, o / (full −
    /// path_k), with o the mean per-exit overhead (full path minus baseline,
    /// over K) — the same definition as the cost model's (`cost.time`).
    /// Needs a baseline.
    pub break_even: Vec<Option<f64>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub schema: &'static str,
    pub model: String,
    pub rows: usize,
    /// The runtime and method, in words.
    pub runtime: String,
    pub runtime_info: RuntimeInfo,
    pub early_exit: Side,
    pub baseline: Option<Side>,
    /// Share of rows where both give the same prediction.
    pub agreement: Option<f64>,
    /// Rows per exit 1..K, then the full model.
    pub exit_histogram: Vec<usize>,
    /// Baseline mean latency over the early-exit model's.
    pub measured_speedup: Option<f64>,
    /// 1 − early-exit mean / baseline mean.
    pub measured_time_saving: Option<f64>,
    /// Original FLOPs over expected FLOPs under the observed distribution.
    pub predicted_speedup: f64,
    /// 1 − expected FLOPs / original FLOPs under the observed distribution.
    pub predicted_flop_saving: f64,
    /// The cost model's time saving under the observed distribution, with
    /// the baseline's measured latency (see `cost.time`).
    pub predicted_time_saving: Option<f64>,
    /// Measured per-path latencies and the time they predict (ONNX Runtime only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<PathTimes>,
    pub cost: CostReport,
}

impl EvalReport {
    /// The text `eexc eval` prints.
    pub fn to_text(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
        let line = |name: &str, s: &Side| {
            format!(
                "{name:<10} accuracy {}  latency mean {:.3} ms, p50 {:.3} ms, p90 {:.3} ms  throughput {:.1} rows/s\n",
                s.accuracy.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                s.timing.mean_ms,
                s.timing.p50_ms,
                s.timing.p90_ms,
                s.timing.rows_per_second
            )
        };
        let mut text = format!("{} rows, {}\n", self.rows, self.runtime);
        text.push_str(&line("early-exit", &self.early_exit));
        if let Some(b) = &self.baseline {
            text.push_str(&line("baseline", b));
        }
        if let Some(a) = self.agreement {
            text.push_str(&format!("agreement  {:.2}%\n", 100.0 * a));
        }
        text.push_str(&format!(
            "exits      {:?} (exits 1..K, then the full model)\n",
            self.exit_histogram
        ));
        text.push_str(&format!(
            "speedup    measured {} (means), predicted by the cost model {:.2}x\n",
            self.measured_speedup
                .map_or("- (give --baseline)".into(), |s| format!("{s:.2}x")),
            self.predicted_speedup
        ));
        text.push_str(&format!(
            "saving     measured time {}; predicted: FLOPs {}, time by the cost model {}",
            pct(self.measured_time_saving),
            pct(Some(self.predicted_flop_saving)),
            pct(self.predicted_time_saving)
        ));
        match &self.paths {
            Some(p) => {
                let paths: Vec<String> = p.p50_ms.iter().map(|t| format!("{t:.3}")).collect();
                text.push_str(&format!(
                    ", time by the measured paths {} ({:.3} ms per row)\n\
                     paths      p50 ms when every row leaves at exit 1..K, then the full path: [{}] ({} rows each)\n",
                    pct(p.predicted_time_saving),
                    p.predicted_ms,
                    paths.join(", "),
                    p.rows
                ));
                let be: Vec<String> = p.break_even.iter().map(|b| pct(*b)).collect();
                text.push_str(&format!(
                    "break-even exit rate in time, per exit: [{}]\n",
                    be.join(", ")
                ));
            }
            None => text.push('\n'),
        }
        text
    }
}

/// Per row: prediction and exit index (K+1 for the full model).
pub struct Evaluated {
    pub report: EvalReport,
    pub predictions: Vec<(i64, i64)>,
}

fn timing(mut ms: Vec<f64>) -> Timing {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    Timing {
        mean_ms: mean,
        p50_ms: quantile(&ms, 0.5),
        p90_ms: quantile(&ms, 0.9),
        rows_per_second: 1000.0 / mean,
    }
}

/// `q`-quantile of sorted values (nearest rank); 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// One row's result: the first output's argmax, the `exit_index` output
/// (0 when the model has none), and the latency in ms.
#[derive(Debug, Clone, Copy)]
struct Row {
    prediction: usize,
    /// Width of the first output (the classes).
    width: usize,
    exit: i64,
    ms: f64,
}

/// A model ready to run one row at a time in either runtime.
enum Runner {
    Tract {
        plan: crate::runtime::Plan,
        outputs: Vec<String>,
    },
    Ort {
        session: OrtSession,
        inputs: Vec<crate::runtime::DataInput>,
        outputs: Vec<String>,
    },
}

impl Runner {
    /// `first` is a row as every row will come (its shapes and types fix
    /// tract's plan).
    fn open(loaded: &LoadedModel, with_exit: bool, first: &Batch, ort: Option<&OrtChoice>) -> Result<Runner, RunError> {
        let bad = |reason: String| RunError::Model {
            path: loaded.path.clone(),
            reason,
        };
        let g = loaded.proto.graph.as_ref().ok_or_else(|| bad("no graph".into()))?;
        let first_output = g
            .output
            .first()
            .ok_or_else(|| bad("no outputs".into()))?
            .name()
            .to_string();
        let mut outputs = vec![first_output];
        if with_exit {
            if !g.output.iter().any(|o| o.name() == crate::exits::EXIT_INDEX) {
                return Err(bad(
                    "no 'exit_index' output: evaluate an if, compact or loop model made by insert-exits".into(),
                ));
            }
            outputs.push(crate::exits::EXIT_INDEX.to_string());
        }
        match ort {
            Some(choice) => {
                let session = OrtSession::open(&loaded.path, choice.threads, choice.library.as_deref())?;
                Ok(Runner::Ort {
                    session,
                    inputs: crate::runtime::data_inputs(&loaded.proto),
                    outputs,
                })
            }
            None => {
                let bytes = protobuf::Message::write_to_bytes(&crate::runtime::for_tract(&loaded.proto))
                    .map_err(|e| bad(e.to_string()))?;
                let plan = crate::runtime::prepare(&bytes, &outputs, first, loaded.external_dir())?;
                Ok(Runner::Tract { plan, outputs })
            }
        }
    }

    /// Runs one row, with `knobs` fed as scalar inputs (ONNX Runtime only).
    fn run(&mut self, row: &Batch, knobs: &[(String, f32)]) -> Result<Row, RunError> {
        match self {
            Runner::Tract { plan, outputs } => {
                let start = Instant::now();
                let result = crate::runtime::run_plan(plan, row, outputs)?;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                Ok(Row {
                    prediction: argmax(result[0].iter().copied()),
                    width: result[0].len(),
                    exit: result.get(1).and_then(|e| e.first()).map_or(0, |&e| e as i64),
                    ms,
                })
            }
            Runner::Ort {
                session,
                inputs,
                outputs,
            } => {
                let mut feeds = crate::runtime::onnxruntime::feeds(inputs, row);
                feeds.extend(knobs.iter().map(|(name, v)| Feed::scalar(name, *v)));
                let start = Instant::now();
                let result = session.run(feeds, outputs)?;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                let first = result[0].as_f32();
                Ok(Row {
                    width: first.len(),
                    prediction: argmax(first),
                    exit: result.get(1).and_then(Fetched::first_i64).unwrap_or(0),
                    ms,
                })
            }
        }
    }
}

/// ONNX Runtime settings, once chosen.
struct OrtChoice {
    threads: usize,
    library: Option<PathBuf>,
}

/// Rows run before timing starts (allocations, caches, lazy kernels).
const WARMUP_ROWS: usize = 10;
/// Rows timed per forced path.
const PATH_ROWS: usize = 50;

pub fn eval(path: &Path, options: &EvalOptions) -> Result<Evaluated, RunError> {
    let (loaded, meta) = crate::runtime::load_exits_model(path)?;
    if meta.mode == crate::exits::Mode::Multi {
        return Err(RunError::Model {
            path: path.to_path_buf(),
            reason: "a 'multi' model has no exits to take (every head runs); evaluate its 'if', compact or loop form"
                .into(),
        });
    }
    let (ort, runtime_info) = choose_runtime(options)?;
    if ort.is_none() && matches!(meta.mode, crate::exits::Mode::Compact | crate::exits::Mode::Loop) {
        return Err(RunError::Model {
            path: path.to_path_buf(),
            reason: format!(
                "a '{}' model: tract runs the 'if' form only (it cannot type compact mode's data-dependent row \
                 counts, and has no Loop); evaluate it in ONNX Runtime (--runtime ort), or the 'if' form with the \
                 same heads and thresholds",
                meta.mode.name()
            ),
        });
    }
    let mut samples = Samples::open(&options.data)?;
    crate::runtime::bind_samples(&mut samples, &loaded.proto)?;
    let rows = samples.rows();
    // The first rows are kept for the warm-up and the path timings; the
    // rest stream from the file.
    let head_rows: Vec<Batch> = (0..rows.min(PATH_ROWS.max(WARMUP_ROWS)))
        .map(|r| samples.next_rows(r, 1))
        .collect::<Result<_, _>>()?;
    let mut ee_runner = Runner::open(&loaded, true, &head_rows[0], ort.as_ref())?;
    let mut base_runner = match &options.baseline {
        Some(b) => {
            let base_model = crate::onnx::load_model_for_transform(b).map_err(|e| RunError::Model {
                path: b.clone(),
                reason: e.to_string(),
            })?;
            let (ours, theirs) = (
                crate::runtime::data_inputs(&loaded.proto),
                crate::runtime::data_inputs(&base_model.proto),
            );
            if ours != theirs {
                let names = |inputs: &[crate::runtime::DataInput]| {
                    inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                };
                return Err(RunError::Model {
                    path: b.clone(),
                    reason: format!(
                        "its data inputs ({}) are not the early-exit model's ({}): --baseline takes the model it was made from",
                        names(&theirs),
                        names(&ours)
                    ),
                });
            }
            Some(Runner::open(&base_model, false, &head_rows[0], ort.as_ref())?)
        }
        None => None,
    };

    // Warm up both, then interleave them row by row (alternating which goes
    // first), so that load on a shared machine falls on both alike.
    for row in head_rows.iter().take(WARMUP_ROWS) {
        ee_runner.run(row, &[])?;
        if let Some(b) = base_runner.as_mut() {
            b.run(row, &[])?;
        }
    }
    let progress = crate::runtime::progress_bar(rows, "rows", &format!("evaluating {}", path.display()));
    let mut ee = Vec::with_capacity(rows);
    let mut base = Vec::with_capacity(rows);
    for r in 0..rows {
        // The file is read once, in order: the first rows are already here.
        let streamed;
        let row = match head_rows.get(r) {
            Some(row) => row,
            None => {
                streamed = samples.next_rows(r, 1)?;
                &streamed
            }
        };
        match base_runner.as_mut() {
            Some(b) if r % 2 == 1 => {
                base.push(b.run(row, &[])?);
                ee.push(ee_runner.run(row, &[])?);
            }
            Some(b) => {
                ee.push(ee_runner.run(row, &[])?);
                base.push(b.run(row, &[])?);
            }
            None => ee.push(ee_runner.run(row, &[])?),
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    let k = meta.exits.len();
    let classes = ee.first().map_or(0, |r| r.width) as i64;
    let labels = match &options.labels {
        Some(p) => Some(read_labels(p, rows, classes)?),
        None => None,
    };
    let accuracy = |preds: &[usize]| {
        labels
            .as_ref()
            .map(|l| preds.iter().zip(l).filter(|(a, b)| a == b).count() as f64 / rows as f64)
    };
    let ee_pred: Vec<usize> = ee.iter().map(|r| r.prediction).collect();
    let mut histogram = vec![0usize; k + 1];
    for r in &ee {
        let i = (r.exit.clamp(1, k as i64 + 1) - 1) as usize;
        histogram[i] += 1;
    }
    let early_exit = Side {
        accuracy: accuracy(&ee_pred),
        timing: timing(ee.iter().map(|r| r.ms).collect()),
    };
    let (baseline, agreement) = if base.is_empty() {
        (None, None)
    } else {
        let preds: Vec<usize> = base.iter().map(|r| r.prediction).collect();
        let agree = preds.iter().zip(&ee_pred).filter(|(a, b)| a == b).count() as f64 / rows as f64;
        (
            Some(Side {
                accuracy: accuracy(&preds),
                timing: timing(base.iter().map(|r| r.ms).collect()),
            }),
            Some(agree),
        )
    };
    let shares: Vec<f64> = histogram.iter().map(|&c| c as f64 / rows.max(1) as f64).collect();
    // The time term (an ONNX Runtime profile) with the original's latency
    // as measured here when ONNX Runtime measured it, not estimated.
    let cost = CostReport::with_original_time(
        &meta.cost,
        Some(&shares[..k]),
        baseline
            .as_ref()
            .filter(|_| ort.is_some())
            .map(|b| b.timing.mean_ms * 1000.0),
    );
    let expected = cost
        .expected
        .as_ref()
        .map_or(meta.cost.original.flops, |e| e.cost.flops);
    let paths = match (&ort, &mut ee_runner) {
        (Some(_), runner @ Runner::Ort { .. }) => Some(path_times(
            runner,
            &meta,
            &head_rows,
            &shares,
            baseline.as_ref().map(|b| b.timing.p50_ms),
        )?),
        _ => None,
    };
    let report = EvalReport {
        schema: "eexc.eval/2",
        model: path.display().to_string(),
        rows,
        runtime: runtime_info.describe(),
        runtime_info,
        // Means, not medians: an early-exit model's latencies are a mixture
        // (one mode per exit), and the expected time is their mean. The runs
        // are interleaved, so load falls on both sides alike.
        measured_speedup: baseline.as_ref().map(|b| b.timing.mean_ms / early_exit.timing.mean_ms),
        measured_time_saving: baseline
            .as_ref()
            .map(|b| 1.0 - early_exit.timing.mean_ms / b.timing.mean_ms),
        early_exit,
        baseline,
        agreement,
        exit_histogram: histogram,
        predicted_speedup: meta.cost.original.flops / expected.max(1e-9),
        predicted_flop_saving: 1.0 - expected / meta.cost.original.flops.max(1e-9),
        predicted_time_saving: cost.time.saving.filter(|_| cost.time.original_measured),
        paths,
        cost,
    };
    Ok(Evaluated {
        report,
        predictions: ee.iter().map(|r| (r.prediction as i64, r.exit)).collect(),
    })
}

/// ONNX Runtime when asked or found; otherwise tract, with the reason.
fn choose_runtime(options: &EvalOptions) -> Result<(Option<OrtChoice>, RuntimeInfo), RunError> {
    let ort_choice = || OrtChoice {
        threads: options.threads,
        library: options.ort_library.clone(),
    };
    let ort_info = |lib: crate::runtime::onnxruntime::OrtLibrary| RuntimeInfo {
        name: "onnxruntime",
        version: lib.version,
        library: Some(lib.path),
        threads: options.threads,
        method: "CPU, default session options (ORT_ENABLE_ALL), batch 1, interleaved with the baseline".into(),
        fallback_reason: None,
    };
    let tract_info = |reason: Option<String>| RuntimeInfo {
        name: "tract",
        version: crate::runtime::TRACT_VERSION.into(),
        library: None,
        threads: 1,
        method: "batch 1, interleaved with the baseline; tract's If is far slower than ONNX Runtime's, \
                 so this latency is not what a deployment sees"
            .into(),
        fallback_reason: reason,
    };
    match options.runtime {
        RuntimeChoice::Tract => Ok((None, tract_info(None))),
        RuntimeChoice::Ort => {
            let lib = crate::runtime::onnxruntime::load(options.ort_library.as_deref())?;
            Ok((Some(ort_choice()), ort_info(lib)))
        }
        RuntimeChoice::Auto => match crate::runtime::onnxruntime::load(options.ort_library.as_deref()) {
            Ok(lib) => Ok((Some(ort_choice()), ort_info(lib))),
            Err(RunError::Ort(why)) => Ok((None, tract_info(Some(why)))),
            Err(e) => Ok((None, tract_info(Some(e.to_string())))),
        },
    }
}

impl RuntimeInfo {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} ({} thread(s); {})",
            self.name, self.version, self.threads, self.method
        );
        if let Some(r) = &self.fallback_reason {
            s.push_str(&format!("; ONNX Runtime not used: {r}"));
        }
        s
    }
}

/// Times every path through the model by forcing where rows leave (see
/// [`PathTimes`]); rows that cannot leave at k (never-exit classes) are
/// not counted for k.
fn path_times(
    runner: &mut Runner,
    meta: &crate::exits::ExitsMetadata,
    data: &[Batch],
    shares: &[f64],
    baseline_ms: Option<f64>,
) -> Result<PathTimes, RunError> {
    let k = meta.exits.len();
    // Confidences lie in [0, 1]: -1 lets every row leave, 2 none.
    const ALWAYS: f32 = -1.0;
    const NEVER: f32 = 2.0;
    let rows: Vec<&Batch> = data.iter().take(PATH_ROWS).collect();
    let mut p50 = Vec::with_capacity(k + 1);
    for path in 1..=k + 1 {
        let knobs: Vec<(String, f32)> = meta
            .exits
            .iter()
            .map(|e| {
                let t = if e.index == path { ALWAYS } else { NEVER };
                (e.threshold_input.clone(), t)
            })
            .collect();
        for row in rows.iter().take(WARMUP_ROWS) {
            runner.run(row, &knobs)?;
        }
        let mut ms = Vec::new();
        for row in &rows {
            let r = runner.run(row, &knobs)?;
            if r.exit == path as i64 {
                ms.push(r.ms);
            }
        }
        p50.push(if ms.is_empty() { f64::NAN } else { median(ms) });
    }
    let predicted_ms: f64 = shares.iter().zip(&p50).map(|(s, t)| s * t).sum();
    let overhead = per_exit_overhead(&p50, meta, baseline_ms);
    let full = p50[k];
    let break_even = (0..k)
        .map(|j| {
            let saved = full - p50[j];
            (saved > 0.0 && overhead.is_finite()).then(|| overhead / saved)
        })
        .collect();
    Ok(PathTimes {
        p50_ms: p50,
        rows: rows.len(),
        predicted_ms,
        predicted_time_saving: baseline_ms.map(|b| 1.0 - predicted_ms / b),
        break_even,
    })
}

/// What each exit adds to a row that does not leave there (head, decision,
/// `If`), on average: the full path's excess over the baseline, over K.
fn per_exit_overhead(p50: &[f64], meta: &crate::exits::ExitsMetadata, baseline_ms: Option<f64>) -> f64 {
    let k = meta.exits.len().max(1) as f64;
    match (p50.last(), baseline_ms) {
        (Some(full), Some(base)) => ((full - base) / k).max(0.0),
        _ => f64::NAN,
    }
}

/// Writes per-row (prediction, exit index) as an int64 .npy of shape [rows, 2].
pub fn save_predictions(path: &Path, predictions: &[(i64, i64)]) -> Result<(), RunError> {
    let flat: Vec<i64> = predictions.iter().flat_map(|&(p, e)| [p, e]).collect();
    crate::runtime::write_npy(path, &[predictions.len(), 2], &flat)
}
