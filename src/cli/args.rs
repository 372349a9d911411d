//! The command line: every command's arguments (clap), and how they map
//! onto the library's options.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// eexc — early-exit compiler for ONNX classifiers.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Inputs/outputs, op histogram, per-node and total cost, exit candidates.
    Inspect {
        model: PathBuf,
        /// Print the versioned JSON report (docs/inspect-json.md) instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dims: DimArgs,
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
    /// Measure an early-exit model (and the original) on held-out data:
    /// latency in ONNX Runtime (tract where it is not found).
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
        /// Draw what a row costs by where it leaves (backbone and exit
        /// overhead, share of the original's FLOPs) as SVG.
        #[arg(long, value_name = "PLOT.svg")]
        plot: Option<PathBuf>,
    },
    /// Write the manifest of a folder of shards: the outputs of a pass model
    /// (`fit` or `calibrate --pass-model`) that another runtime ran, one
    /// .npz or .safetensors file per batch or worker, in file-name order.
    Manifest {
        /// The folder of shards; DIR/manifest.json is written.
        dir: PathBuf,
        /// The pass model the shards' outputs come from.
        #[arg(long, value_name = "PASS.onnx")]
        pass_model: PathBuf,
        /// The array in every shard that holds the rows' class labels.
        #[arg(long, value_name = "NAME")]
        labels: Option<String>,
    },
    /// Print a shell completion script, e.g. `eexc completions bash >
    /// ~/.local/share/bash-completion/completions/eexc`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Values of the model's named dimensions for the cost model (inspect,
/// insert-exits, optimize, fit, compile).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DimArgs {
    /// The value of a named dimension other than the batch, e.g. `--dim
    /// seq=128` (repeatable). Costs are per sample: the batch counts 1.
    /// Needed for every symbol the model does not give a number for.
    #[arg(long = "dim", value_name = "NAME=VALUE", value_parser = parse_dim)]
    pub values: Vec<(String, u64)>,
}

fn parse_dim(arg: &str) -> Result<(String, u64), String> {
    crate::ir::dims::parse_dim_arg(arg).map_err(|e| e.to_string())
}

/// Where the exits go and which head they get (insert-exits, fit, compile).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").args(["at", "auto"])))]
pub struct ExitChoiceArgs {
    /// Exit tensors (or node names), in any order.
    #[arg(long, value_delimiter = ',')]
    pub at: Vec<String>,
    /// Pick K narrow cuts spread over the model's FLOPs (compile's default:
    /// 3); with no K, every narrow cut at a distinct depth (at most 12):
    /// compile then keeps the ones the calibration rows say pay.
    #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "0")]
    pub auto: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    pub head: crate::exits::HeadKind,
}

impl ExitChoiceArgs {
    /// The selection, with `default_auto` when neither flag is given.
    pub fn selection(self, default_auto: Option<usize>) -> crate::exits::ExitSelection {
        crate::exits::ExitSelection::from_flags(self.auto, self.at, default_auto)
    }
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").args(["weights", "weights_from"])))]
pub struct InsertArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub dims: DimArgs,
    #[command(flatten)]
    pub exits: ExitChoiceArgs,
    #[arg(long, value_enum, default_value = "if")]
    pub mode: crate::exits::Mode,
    /// Head weights: safetensors or npz with keys exit{k}.weight / exit{k}.bias.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Head weights from a multi-output model trained elsewhere.
    #[arg(long, value_name = "TRAINED.onnx")]
    pub weights_from: Option<PathBuf>,
    /// Seed of the initialiser used when no weights are given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "maxprob")]
    pub confidence: crate::exits::Confidence,
    /// One threshold for every exit, or one per exit.
    #[arg(long, value_delimiter = ',')]
    pub threshold: Vec<f32>,
    /// One temperature for every exit, or one per exit.
    #[arg(long, value_delimiter = ',')]
    pub temperature: Vec<f32>,
    /// Classes whose predictions never exit early.
    #[arg(long, value_delimiter = ',')]
    pub never_exit_classes: Vec<i64>,
    /// The logits tensor, when eexc should not find it itself.
    #[arg(long)]
    pub logits: Option<String>,
    /// Fraction of samples leaving at each exit, for the expected cost.
    #[arg(long, value_delimiter = ',')]
    pub exit_dist: Option<Vec<f64>>,
    /// Output model (default: MODEL with .ee.onnx).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write the cost report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Leave heads and decisions as built (for debugging, and to compare).
    #[arg(long)]
    pub no_fuse: bool,
    #[command(flatten)]
    pub limits: FuseLimitArgs,
    /// On a quantized model: int8 heads (weights and pooled features in int8,
    /// with each exit tensor's own scale), a quarter of the weight bytes.
    #[arg(long)]
    pub quantize_heads: bool,
}

/// Rule families and saturation limits of the e-graph fusion (per region).
#[derive(clap::Args)]
pub struct FuseLimitArgs {
    /// Rule families (passes/<family>.rules), or `all` [default: every
    /// family but `decision`, which runs slower in ONNX Runtime; see docs/fusion.md].
    #[arg(long, value_delimiter = ',', value_name = "FAMILIES")]
    pub fuse_rules: Option<Vec<String>>,
    /// Rewrite iterations at most.
    #[arg(long, default_value_t = crate::fuse::Limits::default().iterations)]
    pub fuse_iterations: usize,
    /// E-graph nodes at most.
    #[arg(long, default_value_t = crate::fuse::Limits::default().nodes)]
    pub fuse_nodes: usize,
    /// Seconds at most (a guard; a run that hits it may differ between machines).
    #[arg(long, default_value_t = crate::fuse::Limits::default().seconds)]
    pub fuse_seconds: f64,
}

impl FuseLimitArgs {
    pub fn options(&self, freeze_knobs: bool) -> crate::fuse::FuseOptions {
        let defaults = crate::fuse::FuseOptions::default();
        crate::fuse::FuseOptions {
            limits: crate::fuse::Limits {
                iterations: self.fuse_iterations,
                nodes: self.fuse_nodes,
                seconds: self.fuse_seconds,
            },
            freeze_knobs,
            families: self.fuse_rules.clone().unwrap_or(defaults.families),
            dims: Vec::new(),
        }
    }
}

#[derive(clap::Args)]
pub struct OptimizeArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub dims: DimArgs,
    /// Output model (default: MODEL with .opt.onnx).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Treat an early-exit model's threshold and temperature knobs as
    /// constants (they stop being inputs), so temperatures fold into weights.
    #[arg(long)]
    pub freeze_knobs: bool,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub limits: FuseLimitArgs,
}

#[derive(clap::Args)]
pub struct FitArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub dims: DimArgs,
    #[command(flatten)]
    pub rows: PassArgs,
    /// Class labels (int64 .npy, one per row, in row order); without them
    /// the heads learn the model's own predictions.
    #[arg(long, value_name = "Y.npy")]
    pub labels: Option<PathBuf>,
    /// With --labels: their weight in the targets (1: labels only, 0: the
    /// model's softmax only).
    #[arg(long, default_value_t = 1.0, requires = "labels")]
    pub label_weight: f64,
    #[command(flatten)]
    pub exits: ExitChoiceArgs,
    /// The logits tensor, when eexc should not find it itself.
    #[arg(long)]
    pub logits: Option<String>,
    /// Rows per run of the model.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of rows held out to choose the L2 strength.
    #[arg(long, default_value_t = 0.2)]
    pub held_out: f64,
    /// Output: the heads as safetensors (what insert-exits --weights reads).
    #[arg(
        short,
        long,
        value_name = "HEADS.safetensors",
        required_unless_present = "pass_model"
    )]
    pub output: Option<PathBuf>,
    /// Write the fit report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The rows fit and calibrate learn from: inputs to run the model over
/// here, or the outputs of its pass model run elsewhere (docs/shards.md).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("rows").required(true).args(["data", "outputs", "pass_model"])))]
pub struct PassArgs {
    /// Sample inputs: float32 .npy (or FILE.npz:NAME) shaped like the model
    /// input, rows first.
    #[arg(long, value_name = "X.npy")]
    pub data: Option<PathBuf>,
    /// Instead of --data: the pass model's outputs as shards (.npz or
    /// .safetensors) in DIR, listed by DIR/manifest.json, written by any
    /// runtime.
    #[arg(long, value_name = "DIR")]
    pub outputs: Option<PathBuf>,
    /// Write the pass model (the model with the outputs this command reads
    /// as its outputs) to FILE and stop: run it anywhere over the rows, save
    /// its outputs as shards, write their manifest (`eexc manifest`), then
    /// give --outputs.
    #[arg(long, value_name = "PASS.onnx")]
    pub pass_model: Option<PathBuf>,
    /// With --data: also write the pass's outputs to DIR as shards, for
    /// later runs with --outputs DIR.
    // Said as conflicts: `requires = "data"` is met by any member of the
    // "rows" group (clap-rs/clap#4707).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["outputs", "pass_model"])]
    pub save_outputs: Option<PathBuf>,
}

impl PassArgs {
    /// Where the rows come from; `None` with --pass-model.
    pub fn source(&self) -> Option<crate::runtime::pass::PassSource> {
        use crate::runtime::pass::PassSource;
        match (&self.data, &self.outputs) {
            (Some(d), _) => Some(PassSource::Rows(d.clone())),
            (None, Some(o)) => Some(PassSource::Shards(o.clone())),
            (None, None) => None,
        }
    }
}

/// What calibration must keep under a bound, and how surely (one bound is
/// required, except by `calibrate --pass-model`, which calibrates nothing).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("bound").args(["max_drop", "max_disagree"])))]
pub struct BoundArgs {
    /// Largest accuracy drop against the full model, e.g. 1% or 0.01 (needs labels).
    #[arg(long, value_parser = parse_share)]
    pub max_drop: Option<f64>,
    /// Largest share of predictions that differ from the full model's.
    #[arg(long, value_parser = parse_share)]
    pub max_disagree: Option<f64>,
    /// The guarantee holds with probability at least 1 − delta.
    #[arg(long, default_value_t = 0.05)]
    pub delta: f64,
    /// One threshold per exit (candidates ordered on the choosing rows:
    /// Pareto Testing), one shared by every exit, or whichever the choosing
    /// rows expect to certify the larger saving.
    #[arg(long, value_enum, default_value = "auto")]
    pub thresholds: crate::calibrate::Thresholds,
    /// The bound that certifies: the exact binomial on the 0/1 loss, a bet
    /// on the signed accuracy drop (--max-drop), or whichever the choosing
    /// rows expect to certify the larger saving.
    #[arg(long, value_enum, default_value = "auto")]
    pub certify_with: crate::calibrate::BoundChoice,
}

impl BoundArgs {
    /// The procedure with the rows split as `split` says.
    pub fn procedure(&self, split: crate::calibrate::Split) -> anyhow::Result<crate::calibrate::Procedure> {
        Ok(crate::calibrate::Procedure {
            target: self.target()?,
            delta: self.delta,
            split,
            thresholds: self.thresholds,
            bound: self.certify_with,
        })
    }

    pub fn target(&self) -> anyhow::Result<crate::calibrate::choose::Target> {
        use crate::calibrate::choose::Target;
        match (self.max_drop, self.max_disagree) {
            (Some(e), _) => Ok(Target::MaxDrop(e)),
            (None, Some(e)) => Ok(Target::MaxDisagree(e)),
            (None, None) => anyhow::bail!("give --max-drop or --max-disagree"),
        }
    }
}

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// An early-exit model made by insert-exits (if, compact or multi mode).
    pub model: PathBuf,
    #[command(flatten)]
    pub rows: PassArgs,
    /// Class labels (int64 .npy, in row order); needed for --max-drop
    /// unless the shards carry them.
    #[arg(long, value_name = "Y.npy")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub bound: BoundArgs,
    /// Share of the rows set aside to fit the temperatures and order the
    /// candidates; the test uses the rest. 0 uses every row for both
    /// (guarantee approximate).
    #[arg(long, alias = "temperature-share", default_value_t = 0.2)]
    pub choosing_share: f64,
    /// Seed of that split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per run of the model.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Output model (default: MODEL with .calibrated.onnx).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The calibration report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Every candidate threshold's exit shares, risk, p-value and cost, as CSV.
    #[arg(long, value_name = "CURVE.csv")]
    pub curve: Option<PathBuf>,
    /// The accuracy-vs-cost curve as SVG.
    #[arg(long, value_name = "PLOT.svg")]
    pub plot: Option<PathBuf>,
    /// Append a Markdown summary of the run to FILE (created if missing),
    /// for CI job pages: e.g. `--summary "$GITHUB_STEP_SUMMARY"`.
    #[arg(long, value_name = "FILE.md")]
    pub summary: Option<PathBuf>,
}

/// `1%` or `0.01`.
pub fn parse_share(s: &str) -> Result<f64, String> {
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

#[derive(clap::Args)]
pub struct EvalArgs {
    /// An early-exit model made by insert-exits (if mode).
    pub model: PathBuf,
    /// Held-out inputs: float32 .npy shaped like the model input.
    #[arg(long, value_name = "X.npy")]
    pub data: PathBuf,
    /// Class labels (int64 .npy), for accuracies.
    #[arg(long, value_name = "Y.npy")]
    pub labels: Option<PathBuf>,
    /// The original model, for agreement, latency and the measured speedup.
    #[arg(long, value_name = "MODEL.onnx")]
    pub baseline: Option<PathBuf>,
    /// Per-row prediction and exit index as int64 .npy [rows, 2].
    #[arg(long, value_name = "P.npy")]
    pub predictions: Option<PathBuf>,
    /// Runtime that measures: ONNX Runtime (what deployments run; `auto`
    /// uses it when its library is found) or tract.
    #[arg(long, value_enum, default_value = "auto")]
    pub runtime: crate::eval::RuntimeChoice,
    /// Intra-op threads for ONNX Runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// The ONNX Runtime shared library (default: ORT_DYLIB_PATH, else the
    /// onnxruntime Python package of EEXC_PYTHON or python3).
    #[arg(long, value_name = "LIB")]
    pub ort_library: Option<PathBuf>,
    /// Print the JSON report instead of the text.
    #[arg(long)]
    pub json: bool,
    /// Append a Markdown summary of the run to FILE (created if missing),
    /// for CI job pages: e.g. `--summary "$GITHUB_STEP_SUMMARY"`.
    #[arg(long, value_name = "FILE.md")]
    pub summary: Option<PathBuf>,
    /// Draw the share of rows that left at each exit as SVG.
    #[arg(long, value_name = "PLOT.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct CompileArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub dims: DimArgs,
    /// Sample inputs (float32 .npy): split into a fit part and a calibration part.
    #[arg(long, value_name = "X.npy")]
    pub data: PathBuf,
    /// Class labels (int64 .npy); needed for --max-drop.
    #[arg(long, value_name = "Y.npy")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub bound: BoundArgs,
    #[command(flatten)]
    pub exits: ExitChoiceArgs,
    /// if (batch exits when every row may) or compact (per-row exits).
    #[arg(long, value_enum, default_value = "if")]
    pub mode: crate::exits::Mode,
    #[arg(long, value_enum, default_value = "maxprob")]
    pub confidence: crate::exits::Confidence,
    /// Share of the rows that fit the heads; the rest calibrate.
    #[arg(long, default_value_t = 0.5)]
    pub fit_share: f64,
    /// Calibrate on these rows instead (then all of --data fits the heads).
    #[arg(long, value_name = "X2.npy")]
    pub calib_data: Option<PathBuf>,
    /// Labels of --calib-data.
    #[arg(long, value_name = "Y2.npy", requires = "calib_data")]
    pub calib_labels: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Keep every fitted exit, even one that is not expected to pay for
    /// itself (by default such exits are dropped, on the calibration rows
    /// that choose, before the thresholds are certified).
    #[arg(long)]
    pub keep_exits: bool,
    /// On a quantized model: int8 heads (as `insert-exits --quantize-heads`).
    #[arg(long)]
    pub quantize_heads: bool,
    /// What an exit must pay for to be kept: time in ONNX Runtime (the cost
    /// model's time term) or FLOPs.
    #[arg(long, value_enum, default_value = "time")]
    pub objective: crate::calibrate::Objective,
    /// With --head auto: the heads fitted beside gap-linear at every 4-D
    /// cut, for the calibration rows that choose to pick one per exit. Add
    /// conv-grid for the one-convolution refinement branch (it trains a
    /// convolution per cut: slower, and on the shipped models it did not
    /// pay; docs/benchmarks.md).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "grid-linear,mix-linear")]
    pub head_variants: Vec<crate::exits::HeadKind>,
    /// Append a Markdown summary of the run to FILE (created if missing),
    /// for CI job pages: e.g. `--summary "$GITHUB_STEP_SUMMARY"`.
    #[arg(long, value_name = "FILE.md")]
    pub summary: Option<PathBuf>,
    /// After writing the model, measure it against the original in ONNX
    /// Runtime (as `eexc eval --baseline`) on these rows; the report gets a
    /// `measured` section.
    #[arg(long, value_name = "X.npy")]
    pub measure: Option<PathBuf>,
    /// Labels of --measure, for the measured accuracies.
    #[arg(long, value_name = "Y.npy", requires = "measure")]
    pub measure_labels: Option<PathBuf>,
    /// Fail (exit 1, no model written) when the expected FLOP savings are
    /// below this share, e.g. 20%.
    #[arg(long, value_parser = parse_share)]
    pub fail_under_savings: Option<f64>,
    #[arg(short, long)]
    pub output: PathBuf,
    /// The JSON report (written even when the gate fails).
    #[arg(long)]
    pub report: Option<PathBuf>,
}
