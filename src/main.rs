//! The `eexc` command: parse arguments, call the library, print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// eexc — early-exit compiler for ONNX classifiers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs/outputs, op histogram, per-node and total cost, exit candidates.
    Inspect {
        model: PathBuf,
        /// Print the versioned JSON report (docs/inspect-json.md) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Print the model in ONNX textual syntax (as onnx.printer.to_text).
    Print {
        model: PathBuf,
        /// Print tensors with more than N elements as `{...N values}`.
        #[arg(long, value_name = "N")]
        elide_data_over: Option<u64>,
    },
    /// Insert exit heads and emit an early-exit (or multi-output) model.
    InsertExits(Box<InsertArgs>),
    /// Fit exit heads on sample inputs (logistic regression on each exit's
    /// pooled features; targets: the model's own softmax, or labels).
    Fit(Box<FitArgs>),
    /// Calibrate an early-exit model: per-exit temperatures, and the
    /// threshold that minimises the expected cost under a guaranteed bound.
    Calibrate(Box<CalibrateArgs>),
    /// Measure an early-exit model (and the original) on held-out data in tract.
    Eval(Box<EvalArgs>),
    /// The whole pipeline for a CI step: insert, fit, calibrate, emit, report;
    /// fails when the target cannot be met or the savings gate is not reached.
    Compile(Box<CompileArgs>),
    /// Apply the fusion rules (passes/) to a whole model: every graph and
    /// subgraph, the cheapest equivalent form by the cost model.
    Optimize(Box<OptimizeArgs>),
    /// Recompute the cost report of an eexc-produced model for an exit distribution.
    Cost {
        model: PathBuf,
        /// Fraction of samples leaving at each exit, e.g. 0.3,0.2,0.1.
        #[arg(long, value_delimiter = ',')]
        exit_dist: Option<Vec<f64>>,
        /// Print the JSON report instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").args(["at", "auto"])))]
#[command(group(clap::ArgGroup::new("source").args(["weights", "weights_from"])))]
struct InsertArgs {
    model: PathBuf,
    /// Exit tensors (or node names), in any order.
    #[arg(long, value_delimiter = ',')]
    at: Vec<String>,
    /// Pick K narrow cuts spread over the model's FLOPs.
    #[arg(long, value_name = "K")]
    auto: Option<usize>,
    #[arg(long, value_enum, default_value = "if")]
    mode: eexc::exits::Mode,
    #[arg(long, value_enum, default_value = "auto")]
    head: eexc::exits::HeadKind,
    /// Head weights: safetensors or npz with keys exit{k}.weight / exit{k}.bias.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Head weights from a multi-output model trained elsewhere.
    #[arg(long, value_name = "TRAINED.onnx")]
    weights_from: Option<PathBuf>,
    /// Seed of the initialiser used when no weights are given.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "maxprob")]
    confidence: eexc::exits::Confidence,
    /// One threshold for every exit, or one per exit.
    #[arg(long, value_delimiter = ',')]
    threshold: Vec<f32>,
    /// One temperature for every exit, or one per exit.
    #[arg(long, value_delimiter = ',')]
    temperature: Vec<f32>,
    /// Classes whose predictions never exit early.
    #[arg(long, value_delimiter = ',')]
    never_exit_classes: Vec<i64>,
    /// The logits tensor, when eexc should not find it itself.
    #[arg(long)]
    logits: Option<String>,
    /// Fraction of samples leaving at each exit, for the expected cost.
    #[arg(long, value_delimiter = ',')]
    exit_dist: Option<Vec<f64>>,
    /// Output model (default: MODEL with .ee.onnx).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write the cost report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Leave heads and decisions as built (for debugging, and to compare).
    #[arg(long)]
    no_fuse: bool,
    #[command(flatten)]
    limits: FuseLimitArgs,
    /// On a quantized model: int8 heads (weights and pooled features in int8,
    /// with each exit tensor's own scale), a quarter of the weight bytes.
    #[arg(long)]
    quantize_heads: bool,
}

/// Rule families and saturation limits of the e-graph fusion (per region).
#[derive(clap::Args)]
struct FuseLimitArgs {
    /// Rule families (passes/<family>.rules), or `all` [default: every
    /// family but `decision`, which runs slower in ONNX Runtime; see docs/fusion.md].
    #[arg(long, value_delimiter = ',', value_name = "FAMILIES")]
    fuse_rules: Option<Vec<String>>,
    /// Rewrite iterations at most.
    #[arg(long, default_value_t = eexc::fuse::Limits::default().iterations)]
    fuse_iterations: usize,
    /// E-graph nodes at most.
    #[arg(long, default_value_t = eexc::fuse::Limits::default().nodes)]
    fuse_nodes: usize,
    /// Seconds at most (a guard; a run that hits it may differ between machines).
    #[arg(long, default_value_t = eexc::fuse::Limits::default().seconds)]
    fuse_seconds: f64,
}

impl FuseLimitArgs {
    fn options(&self, freeze_knobs: bool) -> eexc::fuse::FuseOptions {
        let defaults = eexc::fuse::FuseOptions::default();
        eexc::fuse::FuseOptions {
            limits: eexc::fuse::Limits {
                iterations: self.fuse_iterations,
                nodes: self.fuse_nodes,
                seconds: self.fuse_seconds,
            },
            freeze_knobs,
            families: self.fuse_rules.clone().unwrap_or(defaults.families),
        }
    }
}

#[derive(clap::Args)]
struct OptimizeArgs {
    model: PathBuf,
    /// Output model (default: MODEL with .opt.onnx).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Treat an early-exit model's threshold and temperature knobs as
    /// constants (they stop being inputs), so temperatures fold into weights.
    #[arg(long)]
    freeze_knobs: bool,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    limits: FuseLimitArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["at", "auto"])))]
struct FitArgs {
    model: PathBuf,
    /// Sample inputs: float32 .npy shaped like the model input, rows first.
    #[arg(long, value_name = "X.npy")]
    data: PathBuf,
    /// Class labels (int64 .npy, one per row); without them the heads learn
    /// the model's own predictions.
    #[arg(long, value_name = "Y.npy")]
    labels: Option<PathBuf>,
    /// With --labels: their weight in the targets (1: labels only, 0: the
    /// model's softmax only).
    #[arg(long, default_value_t = 1.0, requires = "labels")]
    label_weight: f64,
    /// Exit tensors (or node names), in any order.
    #[arg(long, value_delimiter = ',')]
    at: Vec<String>,
    /// Pick K narrow cuts spread over the model's FLOPs.
    #[arg(long, value_name = "K")]
    auto: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    head: eexc::exits::HeadKind,
    /// The logits tensor, when eexc should not find it itself.
    #[arg(long)]
    logits: Option<String>,
    /// Rows per run of the model.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of rows held out to choose the L2 strength.
    #[arg(long, default_value_t = 0.2)]
    held_out: f64,
    /// Output: the heads as safetensors (what insert-exits --weights reads).
    #[arg(short, long, value_name = "HEADS.safetensors")]
    output: PathBuf,
    /// Write the fit report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn fit(a: FitArgs) -> anyhow::Result<()> {
    use eexc::exits::ExitSelection;
    let options = eexc::fit::FitOptions {
        data: a.data,
        labels: a.labels,
        label_weight: a.label_weight,
        selection: match a.auto {
            Some(k) => ExitSelection::Auto(k),
            None => ExitSelection::At(a.at),
        },
        head: a.head,
        logits: a.logits,
        batch: a.batch_size,
        seed: a.seed,
        held_out: a.held_out,
    };
    refuse_overwrite(
        &a.model,
        &[Some(&options.data), options.labels.as_ref()],
        &[Some(&a.output), a.report.as_ref()],
    )?;
    let (heads, report) = eexc::fit::fit(&a.model, &options)?;
    let report_json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
    eexc::fit::save_heads(&a.output, &heads, &report.exits, &report)?;
    if let Some(r) = &a.report {
        eexc::onnx::write_atomically(r, &report_json)?;
    }
    println!("wrote {}", a.output.display());
    println!(
        "{} rows ({} held out to choose L2); targets: {}",
        report.rows, report.held_out_rows, report.targets
    );
    if let Some(acc) = report.model_label_accuracy {
        println!("full model: {:.2}% label accuracy", 100.0 * acc);
    }
    println!("\nexit  tensor                    head        features  L2       held-out agreement  all rows  labels");
    for e in &report.exits {
        println!(
            "{:<5} {:<25} {:<11} {:<9} {:<8.0e} {:>17.2}%  {:>7.2}%  {}",
            e.index,
            e.tensor,
            e.head,
            e.features,
            e.held_out.l2,
            100.0 * e.held_out.agreement,
            100.0 * e.agreement_all_rows,
            e.label_accuracy.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a))
        );
    }
    Ok(())
}

/// What calibration must keep under a bound, and how surely.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("bound").required(true).args(["max_drop", "max_disagree"])))]
struct BoundArgs {
    /// Largest accuracy drop against the full model, e.g. 1% or 0.01 (needs labels).
    #[arg(long, value_parser = parse_share)]
    max_drop: Option<f64>,
    /// Largest share of predictions that differ from the full model's.
    #[arg(long, value_parser = parse_share)]
    max_disagree: Option<f64>,
    /// The guarantee holds with probability at least 1 − delta.
    #[arg(long, default_value_t = 0.05)]
    delta: f64,
}

impl BoundArgs {
    fn target(&self) -> anyhow::Result<eexc::calibrate::choose::Target> {
        use eexc::calibrate::choose::Target;
        match (self.max_drop, self.max_disagree) {
            (Some(e), _) => Ok(Target::MaxDrop(e)),
            (None, Some(e)) => Ok(Target::MaxDisagree(e)),
            (None, None) => anyhow::bail!("give --max-drop or --max-disagree"),
        }
    }
}

#[derive(clap::Args)]
struct CalibrateArgs {
    /// An early-exit model made by insert-exits (if, compact or multi mode).
    model: PathBuf,
    /// Calibration inputs: float32 .npy shaped like the model input.
    #[arg(long, value_name = "X.npy")]
    data: PathBuf,
    /// Class labels (int64 .npy); needed for --max-drop.
    #[arg(long, value_name = "Y.npy")]
    labels: Option<PathBuf>,
    #[command(flatten)]
    bound: BoundArgs,
    /// Share of the rows set aside to fit the temperatures; the threshold
    /// test uses the rest. 0 fits them on every row (guarantee approximate).
    #[arg(long, default_value_t = 0.2)]
    temperature_share: f64,
    /// Seed of that split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rows per run of the model.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Output model (default: MODEL with .calibrated.onnx).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The calibration report as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Every candidate threshold's exit shares, risk, p-value and cost, as CSV.
    #[arg(long, value_name = "CURVE.csv")]
    curve: Option<PathBuf>,
    /// The accuracy-vs-cost curve as SVG.
    #[arg(long, value_name = "PLOT.svg")]
    plot: Option<PathBuf>,
}

/// `1%` or `0.01`.
fn parse_share(s: &str) -> Result<f64, String> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("'{s}': expected a share such as 1% or 0.01"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("'{s}': must lie strictly between 0% and 100%"))
    }
}

fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    let target = a.bound.target()?;
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.model.with_extension("calibrated.onnx"));
    refuse_overwrite(
        &a.model,
        &[Some(&a.data), a.labels.as_ref()],
        &[Some(&out), a.report.as_ref(), a.curve.as_ref(), a.plot.as_ref()],
    )?;
    let options = eexc::calibrate::CalibrateOptions {
        data: a.data,
        labels: a.labels,
        target,
        delta: a.bound.delta,
        batch: a.batch_size,
        split: eexc::calibrate::Split {
            temperature_share: a.temperature_share,
            seed: a.seed,
        },
    };
    let c = eexc::calibrate::calibrate(&a.model, &options)?;
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    eexc::onnx::save_model(&c.model, &out, Some(&source_dir))?;
    if let Some(r) = &a.report {
        let json = serde_json::to_vec_pretty(&c.report).context("encoding the report")?;
        eexc::onnx::write_atomically(r, &json)?;
    }
    if let Some(p) = &a.curve {
        eexc::onnx::write_atomically(p, eexc::calibrate::curve_csv(&c.curve).as_bytes())?;
    }
    if let Some(p) = &a.plot {
        eexc::onnx::write_atomically(p, c.svg.as_bytes())?;
    }
    let r = &c.report;
    println!("wrote {}", out.display());
    println!(
        "{} rows: {} fit the temperatures, {} test the thresholds",
        r.rows, r.temperature_rows, r.testing_rows
    );
    println!(
        "threshold {:.3}: risk {:.4} (p = {:.2e} ≤ δ = {}), certified by {}",
        r.threshold, r.chosen.risk, r.chosen.p_value, r.delta, r.guarantee
    );
    if let Some(acc) = r.full_model_accuracy {
        println!(
            "accuracy: full model {:.2}%, early-exit {:.2}%",
            100.0 * acc,
            100.0 * r.chosen.accuracy.unwrap_or(0.0)
        );
    }
    println!("agreement with the full model: {:.2}%", 100.0 * r.chosen.agreement);
    println!(
        "\nexit  tensor                    T before  T after  ECE before  ECE after  exit rate  right when exiting"
    );
    for e in &r.exits {
        println!(
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
    print!("\n{}", r.cost.to_text());
    Ok(())
}

#[derive(clap::Args)]
struct EvalArgs {
    /// An early-exit model made by insert-exits (if mode).
    model: PathBuf,
    /// Held-out inputs: float32 .npy shaped like the model input.
    #[arg(long, value_name = "X.npy")]
    data: PathBuf,
    /// Class labels (int64 .npy), for accuracies.
    #[arg(long, value_name = "Y.npy")]
    labels: Option<PathBuf>,
    /// The original model, for agreement, latency and the measured speedup.
    #[arg(long, value_name = "MODEL.onnx")]
    baseline: Option<PathBuf>,
    /// Per-row prediction and exit index as int64 .npy [rows, 2].
    #[arg(long, value_name = "P.npy")]
    predictions: Option<PathBuf>,
    /// Runtime that measures: ONNX Runtime (what deployments run; `auto`
    /// uses it when its library is found) or tract.
    #[arg(long, value_enum, default_value = "auto")]
    runtime: eexc::eval::RuntimeChoice,
    /// Intra-op threads for ONNX Runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// The ONNX Runtime shared library (default: ORT_DYLIB_PATH, else the
    /// onnxruntime Python package of EEXC_PYTHON or python3).
    #[arg(long, value_name = "LIB")]
    ort_library: Option<PathBuf>,
    /// Print the JSON report instead of the text.
    #[arg(long)]
    json: bool,
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    refuse_overwrite(
        &a.model,
        &[Some(&a.data), a.labels.as_ref(), a.baseline.as_ref()],
        &[a.predictions.as_ref()],
    )?;
    let options = eexc::eval::EvalOptions {
        data: a.data,
        labels: a.labels,
        baseline: a.baseline,
        runtime: a.runtime,
        threads: usize::from(a.threads),
        ort_library: a.ort_library,
    };
    let e = eexc::eval::eval(&a.model, &options)?;
    if let Some(p) = &a.predictions {
        eexc::eval::save_predictions(p, &e.predictions)?;
    }
    emit(&e.report, a.json, e.report.to_text())
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").args(["at", "auto"])))]
struct CompileArgs {
    model: PathBuf,
    /// Sample inputs (float32 .npy): split into a fit part and a calibration part.
    #[arg(long, value_name = "X.npy")]
    data: PathBuf,
    /// Class labels (int64 .npy); needed for --max-drop.
    #[arg(long, value_name = "Y.npy")]
    labels: Option<PathBuf>,
    #[command(flatten)]
    bound: BoundArgs,
    /// Exit tensors (default: --auto 3).
    #[arg(long, value_delimiter = ',')]
    at: Vec<String>,
    #[arg(long, value_name = "K")]
    auto: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    head: eexc::exits::HeadKind,
    /// if (batch exits when every row may) or compact (per-row exits).
    #[arg(long, value_enum, default_value = "if")]
    mode: eexc::exits::Mode,
    #[arg(long, value_enum, default_value = "maxprob")]
    confidence: eexc::exits::Confidence,
    /// Share of the rows that fit the heads; the rest calibrate.
    #[arg(long, default_value_t = 0.5)]
    fit_share: f64,
    /// Calibrate on these rows instead (then all of --data fits the heads).
    #[arg(long, value_name = "X2.npy")]
    calib_data: Option<PathBuf>,
    /// Labels of --calib-data.
    #[arg(long, value_name = "Y2.npy", requires = "calib_data")]
    calib_labels: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Keep every fitted exit, even one that too few calibration rows leave
    /// at to pay for its time in ONNX Runtime (by default such exits are
    /// dropped and the rest calibrated again).
    #[arg(long)]
    keep_exits: bool,
    /// On a quantized model: int8 heads (as `insert-exits --quantize-heads`).
    #[arg(long)]
    quantize_heads: bool,
    /// After writing the model, measure it against the original in ONNX
    /// Runtime (as `eexc eval --baseline`) on these rows; the report gets a
    /// `measured` section.
    #[arg(long, value_name = "X.npy")]
    measure: Option<PathBuf>,
    /// Labels of --measure, for the measured accuracies.
    #[arg(long, value_name = "Y.npy", requires = "measure")]
    measure_labels: Option<PathBuf>,
    /// Fail (exit 1, no model written) when the expected FLOP savings are
    /// below this share, e.g. 20%.
    #[arg(long, value_parser = parse_share)]
    fail_under_savings: Option<f64>,
    #[arg(short, long)]
    output: PathBuf,
    /// The JSON report (written even when the gate fails).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The savings gate failed: the run worked, its result is not good enough.
#[derive(Debug)]
struct GateFailed(String);

impl std::fmt::Display for GateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GateFailed {}

fn compile(a: CompileArgs) -> anyhow::Result<()> {
    use eexc::exits::{ExitSelection, Mode};
    if !matches!(a.mode, Mode::If | Mode::Compact) {
        anyhow::bail!("compile emits --mode if or compact");
    }
    refuse_overwrite(
        &a.model,
        &[
            Some(&a.data),
            a.labels.as_ref(),
            a.calib_data.as_ref(),
            a.calib_labels.as_ref(),
            a.measure.as_ref(),
            a.measure_labels.as_ref(),
        ],
        &[Some(&a.output), a.report.as_ref()],
    )?;
    let options = eexc::compile::CompileOptions {
        data: a.data,
        labels: a.labels,
        selection: match (a.auto, a.at.is_empty()) {
            (Some(k), _) => ExitSelection::Auto(k),
            (None, false) => ExitSelection::At(a.at),
            (None, true) => ExitSelection::Auto(3),
        },
        head: a.head,
        mode: a.mode,
        confidence: a.confidence,
        target: a.bound.target()?,
        delta: a.bound.delta,
        fit_share: a.fit_share,
        calibration: a.calib_data.map(|x| (x, a.calib_labels)),
        seed: a.seed,
        batch: a.batch_size,
        keep_exits: a.keep_exits,
        quantize_heads: a.quantize_heads,
    };
    let work = tempfile::tempdir().context("creating a scratch folder")?;
    let (model, mut report) = eexc::compile::compile(&a.model, &options, work.path())?;
    let write_report = |report: &eexc::compile::CompileReport| -> anyhow::Result<()> {
        if let Some(r) = &a.report {
            let json = serde_json::to_vec_pretty(report).context("encoding the report")?;
            eexc::onnx::write_atomically(r, &json)?;
        }
        Ok(())
    };
    write_report(&report)?;
    let c = &report.calibration;
    println!(
        "fit on {} rows, calibrated on {}: threshold {:.3}, risk {:.4} (p = {:.2e} ≤ δ = {}), expected FLOP savings {:.1}%",
        report.fit_rows,
        report.calibration_rows,
        c.threshold,
        c.chosen.risk,
        c.chosen.p_value,
        c.delta,
        100.0 * report.savings
    );
    if let Some(t) = report.time_saving {
        println!(
            "expected time savings {:.1}% (cost model, ONNX Runtime CPU 1 thread; `eexc eval` measures)",
            100.0 * t
        );
    }
    for d in &report.dropped_exits {
        println!(
            "dropped exit at '{}': {:.1}% of the rows reaching it left there, {:.1}% needed to pay for its time",
            d.tensor,
            100.0 * d.exit_rate,
            100.0 * d.break_even_rate
        );
    }
    if let Some(gate) = a.fail_under_savings
        && report.savings < gate
    {
        return Err(GateFailed(format!(
            "gate failed: expected FLOP savings {:.1}% are under --fail-under-savings {:.1}%; no model written",
            100.0 * report.savings,
            100.0 * gate
        ))
        .into());
    }
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    eexc::onnx::save_model(&model, &a.output, Some(&source_dir))?;
    println!("wrote {}", a.output.display());
    if let Some(data) = a.measure {
        let measured = eexc::eval::eval(
            &a.output,
            &eexc::eval::EvalOptions {
                data,
                labels: a.measure_labels,
                baseline: Some(a.model.clone()),
                runtime: eexc::eval::RuntimeChoice::Auto,
                threads: 1,
                ort_library: None,
            },
        )?;
        let r = &measured.report;
        println!(
            "measured in {}: time saving {:.1}% (cost model: {}), exits {:?}",
            r.runtime,
            100.0 * r.measured_time_saving.unwrap_or(0.0),
            r.predicted_time_saving
                .map_or("-".into(), |t| format!("{:.1}%", 100.0 * t)),
            r.exit_histogram
        );
        report.measured = Some(measured.report);
        write_report(&report)?;
    }
    Ok(())
}

fn insert_exits(a: InsertArgs) -> anyhow::Result<()> {
    use eexc::exits::{ExitOptions, ExitSelection, WeightSource};
    let options = ExitOptions {
        selection: match a.auto {
            Some(k) => ExitSelection::Auto(k),
            None => ExitSelection::At(a.at),
        },
        mode: a.mode,
        head: a.head,
        weights: match (a.weights, a.weights_from) {
            (Some(f), _) => WeightSource::File(f),
            (None, Some(m)) => WeightSource::FromModel(m),
            (None, None) => WeightSource::Seeded(a.seed),
        },
        confidence: a.confidence,
        thresholds: a.threshold,
        temperatures: a.temperature,
        never_exit_classes: a.never_exit_classes,
        logits: a.logits,
        exit_distribution: a.exit_dist,
        fuse: (!a.no_fuse).then(|| a.limits.options(false)),
        quantize_heads: a.quantize_heads,
    };
    let out = a.output.unwrap_or_else(|| a.model.with_extension("ee.onnx"));
    refuse_overwrite(&a.model, &[], &[Some(&out), a.report.as_ref()])?;
    let (model, summary) = eexc::exits::insert_exits(&a.model, &options)?;
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let report_json = serde_json::to_vec_pretty(&summary).context("encoding the report")?;
    // The model first: a report never describes a model that was not written.
    eexc::onnx::save_model(&model, &out, Some(&source_dir))?;
    if let Some(r) = &a.report {
        eexc::onnx::write_atomically(r, &report_json)?;
    }
    for w in &summary.warnings {
        eprintln!("eexc: WARNING: {w}");
    }
    println!("wrote {}", out.display());
    for e in &summary.exits {
        let why = if e.reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", e.reason)
        };
        println!(
            "exit {}: {} ({} head, {} >= {} at T={}){why}",
            e.index,
            e.tensor,
            e.head,
            e.confidence.name(),
            e.threshold,
            e.temperature
        );
    }
    print!("\n{}", summary.cost.to_text());
    if let Some(f) = &summary.fusion {
        print!("\nFusion of each exit's head + decision (per sample):\n{}", f.to_text());
    }
    Ok(())
}

fn optimize(a: OptimizeArgs) -> anyhow::Result<()> {
    let out = a.output.unwrap_or_else(|| a.model.with_extension("opt.onnx"));
    refuse_overwrite(&a.model, &[], &[Some(&out), a.report.as_ref()])?;
    let loaded = eexc::onnx::load_model_for_transform(&a.model)?;
    let mut model = loaded.proto;
    let options = a.limits.options(a.freeze_knobs);
    let knobs = eexc::exits::knob_names(&model);
    if a.freeze_knobs && knobs.is_empty() {
        anyhow::bail!(
            "{}: --freeze-knobs: the model has no eexc knobs (not made by insert-exits)",
            a.model.display()
        );
    }
    let report = eexc::fuse::fuse_model(&mut model, eexc::fuse::Target::Whole, &options, &knobs)
        .with_context(|| format!("{}", a.model.display()))?;
    eexc::transform::placement::place_constants(&mut model);
    let report_json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
    eexc::onnx::save_model(&model, &out, Some(&loaded.base_dir))?;
    if let Some(r) = &a.report {
        eexc::onnx::write_atomically(r, &report_json)?;
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&report_json));
    } else {
        println!("wrote {}", out.display());
        print!("{}", report.to_text());
    }
    Ok(())
}

fn cost(model: PathBuf, exit_dist: Option<Vec<f64>>, json: bool) -> anyhow::Result<()> {
    let loaded = eexc::onnx::read_model(&model)?;
    let meta = eexc::exits::metadata_of(&loaded.proto).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    if let Some(d) = &exit_dist {
        eexc::exits::cost::check_distribution(d, meta.exits.len()).map_err(|e| anyhow::anyhow!(e))?;
    }
    let report = eexc::exits::cost::CostReport::new(&meta.cost, exit_dist.as_deref());
    emit(&report, json, report.to_text())
}

/// Fails when an output would replace the model or another input file:
/// inputs are never modified.
fn refuse_overwrite(
    model: &std::path::Path,
    inputs: &[Option<&PathBuf>],
    outputs: &[Option<&PathBuf>],
) -> anyhow::Result<()> {
    for out in outputs.iter().flatten() {
        if same_file(out, model) {
            anyhow::bail!("{}: refusing to overwrite the input model", out.display());
        }
        if inputs.iter().flatten().any(|input| same_file(out, input)) {
            anyhow::bail!("{}: refusing to overwrite an input file", out.display());
        }
    }
    Ok(())
}

/// True when `a` and `b` name the same existing file (through links or
/// relative paths alike).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Prints a report as pretty JSON or as its text form.
fn emit(report: &impl serde::Serialize, json: bool, text: String) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("encoding JSON report")?
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model, json } => {
            let report = eexc::report::inspect::inspect(&model)?;
            emit(&report, json, report.to_text())?;
        }
        Command::InsertExits(args) => insert_exits(*args)?,
        Command::Optimize(args) => optimize(*args)?,
        Command::Fit(args) => fit(*args)?,
        Command::Calibrate(args) => calibrate(*args)?,
        Command::Eval(args) => eval(*args)?,
        Command::Compile(args) => compile(*args)?,
        Command::Cost { model, exit_dist, json } => cost(model, exit_dist, json)?,
        Command::Print { model, elide_data_over } => {
            // Shown as stored: external-data files are not needed to print.
            let loaded = eexc::onnx::read_model(&model)?;
            let options = eexc::onnx::printer::PrintOptions { elide_data_over };
            print!("{}", eexc::onnx::printer::model_to_text_with(&loaded.proto, &options));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`eexc ... | head`) ends the process
    // quietly, as for other command-line tools, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error, then any cause its message does not already say.
            let mut line = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            eprintln!("eexc: error: {line}");
            // 1: the run worked but a gate failed (savings, or no certified
            // threshold); 2: it could not run.
            let gate = e.is::<GateFailed>()
                || matches!(
                    e.downcast_ref::<eexc::compile::CompileError>(),
                    Some(eexc::compile::CompileError::Calibrate(
                        eexc::calibrate::CalibrateError::NothingCertified { .. }
                    ))
                )
                || matches!(
                    e.downcast_ref::<eexc::calibrate::CalibrateError>(),
                    Some(eexc::calibrate::CalibrateError::NothingCertified { .. })
                );
            ExitCode::from(if gate { 1 } else { 2 })
        }
    }
}
