//! `insert-exits`: attach exit heads at chosen tensors and emit either the
//! multi-output graph (training, calibration) or the nested-`If` early-exit
//! graph, with a cost report.

pub mod contract;
pub mod cost;
pub mod decision;
mod emit;
pub mod head;
mod looped;
pub mod plan;
pub mod repeat;
pub mod tail;
pub mod time;
pub mod weights;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::classifier::{ClassifierError, find_classifier};
use crate::analysis::cost::graph_cost;
use crate::ir::{Graph, IrError, Model};
use crate::onnx::OnnxError;
use crate::onnx::proto::{ModelProto, TensorProto};
pub use contract::{
    EXIT_INDEX, ExitMeta, ExitsMetadata, METADATA_KEY, exit_output_name, knob_names, metadata_of, read_metadata,
    write_metadata,
};
pub use decision::Confidence;
pub use plan::HeadKind;
pub use weights::WeightSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Nested If: confident batches stop early.
    If,
    /// Original outputs plus every exit's outputs (training, calibration).
    Multi,
    /// Per-row exits at any batch size: after each exit only the rows that
    /// are not confident go on (batch compaction).
    Compact,
    /// A run of identical layers as one Loop with an exit after each layer.
    Loop,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::If => "if",
            Mode::Multi => "multi",
            Mode::Compact => "compact",
            Mode::Loop => "loop",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExitSelection {
    At(Vec<String>),
    /// K cuts spread over the FLOPs; 0: every narrow cut at a distinct
    /// depth (`plan::choose_auto`).
    Auto(usize),
}

#[derive(Debug, Clone)]
pub struct ExitOptions {
    pub selection: ExitSelection,
    pub mode: Mode,
    pub head: HeadKind,
    pub weights: WeightSource,
    pub confidence: Confidence,
    /// One value for every exit, or one per exit.
    pub thresholds: Vec<f32>,
    pub temperatures: Vec<f32>,
    pub never_exit_classes: Vec<i64>,
    pub logits: Option<String>,
    pub exit_distribution: Option<Vec<f64>>,
    /// Fuse each exit's head and decision (None: `--no-fuse`).
    pub fuse: Option<crate::fuse::FuseOptions>,
    /// int8 head weights and features on a quantized model (`--quantize-heads`).
    pub quantize_heads: bool,
    /// `--dim NAME=VALUE`: values of the model's named dimensions for costs.
    pub dims: Vec<(String, u64)>,
}

impl ExitOptions {
    /// The fusion options, costing at the same dimension values.
    pub fn fusion(&self) -> Option<crate::fuse::FuseOptions> {
        self.fuse.clone().map(|f| crate::fuse::FuseOptions {
            dims: self.dims.clone(),
            ..f
        })
    }

    pub fn threshold(&self, k: usize) -> f32 {
        pick(&self.thresholds, k, 0.9)
    }

    pub fn temperature(&self, k: usize) -> f32 {
        pick(&self.temperatures, k, 1.0)
    }
}

fn pick(values: &[f32], k: usize, default: f32) -> f32 {
    match values {
        [] => default,
        [one] => *one,
        many => many.get(k - 1).copied().unwrap_or(default),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Dims(#[from] crate::ir::DimError),
    #[error("fusion: {0}")]
    Fuse(#[from] crate::fuse::FuseError),
    #[error("tensor '{0}' is not in the graph (no tensor or node has that name)")]
    UnknownTensor(String),
    #[error("'{0}' names a node with several outputs or several nodes; name the tensor instead")]
    AmbiguousNode(String),
    #[error("exit tensor '{0}' given twice")]
    Duplicate(String),
    #[error("tensor '{0}' is not computed from any graph input (a constant); it cannot be an exit")]
    NotReachable(String),
    #[error("tensor '{tensor}' is at or after the logits '{logits}'; exits must come before the classifier")]
    AtOrAfterLogits { tensor: String, logits: String },
    #[error("tensor '{0}' has an unknown shape or feature width; a head cannot be sized")]
    UnknownShape(String),
    #[error(
        "tensor '{tensor}' has element type {elem}; heads need a float tensor, or a quantized one that a DequantizeLinear with constant scale reads"
    )]
    NotFloat { tensor: String, elem: String },
    #[error(
        "tensor '{tensor}' has rank {rank}; no {head} head fits (4-D: gap-linear; 3-D: token-cls/token-mean/mirror; 2-D: linear)"
    )]
    NoHead {
        tensor: String,
        rank: usize,
        head: &'static str,
    },
    #[error("--head mirror at '{tensor}': {reason}")]
    NoTail { tensor: String, reason: String },
    #[error("--auto {wanted}: only {found} suitable narrow cuts at distinct depths between 15% and 85% of FLOPs")]
    TooFewCandidates { wanted: usize, found: usize },
    #[error("{path}: '{key}': {reason}")]
    Weights { path: PathBuf, key: String, reason: String },
    #[error("the model already has a tensor named '{0}', which the emitted model needs")]
    NameTaken(String),
    #[error(transparent)]
    Patch(#[from] crate::transform::patch::PatchError),
    #[error(
        "--mode compact: tensor '{tensor}' ({shape}) is read after exit {exit} but does not carry the batch on axis 0, so it cannot be split by row"
    )]
    NotRowwise { tensor: String, exit: usize, shape: String },
    #[error("{0}")]
    BadOption(String),
}

/// What the command reports besides the model.
#[derive(Debug, Clone, Serialize)]
pub struct ExitSummary {
    pub exits: Vec<ExitMeta>,
    pub cost: cost::CostReport,
    /// Each exit's head and decision before and after fusion.
    pub fusion: Option<crate::fuse::FuseReport>,
    /// Things the user must know (untrained heads, ...).
    pub warnings: Vec<String>,
}

impl ExitSummary {
    /// What `insert-exits` prints after the "wrote" line: the exits, the
    /// cost report and the fusion table (the warnings go to stderr).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for e in &self.exits {
            let why = if e.reason.is_empty() {
                String::new()
            } else {
                format!(" — {}", e.reason)
            };
            let _ = writeln!(
                out,
                "exit {}: {} ({} head, {} >= {} at T={}){why}",
                e.index,
                e.tensor,
                e.head.name(),
                e.confidence.name(),
                e.threshold,
                e.temperature
            );
        }
        let _ = write!(out, "\n{}", self.cost.to_text());
        if let Some(f) = &self.fusion {
            let _ = write!(
                out,
                "\nFusion of each exit's head + decision (per sample):\n{}",
                f.to_text()
            );
        }
        out
    }
}

/// Which exits `--at`/`--auto` ask for; `default_auto` when neither is given
/// (compile places three by default, insert-exits and fit ask the user).
impl ExitSelection {
    pub fn from_flags(auto: Option<usize>, at: Vec<String>, default_auto: Option<usize>) -> ExitSelection {
        match (auto, default_auto) {
            (Some(k), _) => ExitSelection::Auto(k),
            (None, Some(k)) if at.is_empty() => ExitSelection::Auto(k),
            (None, _) => ExitSelection::At(at),
        }
    }
}

/// Runs the whole insertion on `path`; returns the emitted model (not yet
/// saved) and the summary.
pub fn insert_exits(path: &Path, options: &ExitOptions) -> Result<(ModelProto, ExitSummary), ExitError> {
    insert_exits_into(crate::onnx::load_model_for_transform(path)?, options)
}

/// [`insert_exits`] on a model already loaded (and checked): what compile
/// chains in memory. External data stays where `loaded.base_dir` finds it.
pub fn insert_exits_into(
    loaded: crate::onnx::LoadedModel,
    options: &ExitOptions,
) -> Result<(ModelProto, ExitSummary), ExitError> {
    let mut model = Model::from_proto(&loaded.proto)?;
    // Emission and the cost analysis each copy the model; the weights (most of
    // its bytes) are set aside and only put back into the final model.
    let mut proto = loaded.proto;
    let stored_weights = set_weights_aside(&mut proto);
    let (_, dims) = crate::analysis::infer_for_costs(&mut model, &options.dims)?;
    let graph = &model.graph;
    let classifier = find_classifier(graph, options.logits.as_deref())?;
    let original_cost = graph_cost(graph, &dims);
    let mut run = None;
    let exits = match (&options.selection, options.mode) {
        (ExitSelection::At(names), Mode::Loop) if names.is_empty() => {
            let found = repeat::find_repeated_run(graph, &original_cost).ok_or_else(|| {
                ExitError::BadOption(
                    "--mode loop: the model has no run of two or more identical layers between narrow cuts".into(),
                )
            })?;
            let exits = loop_exits(graph, &classifier, &found, options.head)?;
            run = Some(found);
            exits
        }
        (_, Mode::Loop) => {
            return Err(ExitError::BadOption(
                "--mode loop puts an exit after every repeated layer it finds; drop --at/--auto".into(),
            ));
        }
        (ExitSelection::At(names), _) if names.is_empty() => {
            return Err(ExitError::BadOption(
                "say where the exits go: --at TENSORS or --auto K".into(),
            ));
        }
        (ExitSelection::At(names), _) => plan::resolve_at(graph, &classifier, names, options.head)?,
        (ExitSelection::Auto(k), _) => plan::choose_auto(graph, &original_cost, &classifier, *k, options.head)?,
    };
    let mut exits = exits;
    plan::attach_tails(&mut exits, || {
        let weight = |name: &str| stored_weights.iter().find(|t| t.name() == name).cloned();
        tail::ModelTail::find(graph, &proto, &original_cost, &classifier, &weight)
    })?;
    validate_options(options, exits.len(), classifier.classes)?;
    if options.quantize_heads
        && let Some(e) = exits
            .iter()
            .find(|e| e.dequantize.as_ref().is_none_or(|d| !d.per_tensor))
    {
        return Err(ExitError::BadOption(format!(
            "--quantize-heads: exit tensor '{}' is not quantized with one scale; a quantized head reuses its exit tensor's scale and zero point",
            e.tensor
        )));
    }
    let weights = weights::load(&options.weights, &exits, classifier.classes)?;
    let plan = plan::stages(graph, exits);
    let source = emit::EmitContext {
        proto: &proto,
        graph,
        classifier: &classifier,
        plan: &plan,
        weights: &weights,
        opset: model.onnx_opset(),
        quantize_heads: options.quantize_heads,
    };
    let table = cost::cost_table(&source, options)?;
    let report = cost::CostReport::new(&table, options.exit_distribution.as_deref());
    let mut out = match options.mode {
        Mode::Multi => source.emit_multi()?,
        Mode::If => source.emit_if(options)?,
        Mode::Compact => source.emit_compact(options)?,
        Mode::Loop => {
            let data = looped::ConstantData {
                initializers: &stored_weights,
                base_dir: &loaded.base_dir,
            };
            source.emit_loop(options, run.as_ref().expect("loop mode found a run"), &data)?
        }
    };
    put_weights_back(&mut out, stored_weights);
    let metas: Vec<ExitMeta> = plan
        .exits
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let k = i + 1;
            let kn = contract::knobs(k);
            ExitMeta {
                index: k,
                tensor: e.tensor.clone(),
                head: e.head,
                confidence: options.confidence,
                threshold_input: kn.threshold,
                temperature_input: kn.temperature,
                threshold: options.threshold(k),
                temperature: options.temperature(k),
                logits_output: contract::logits_name(k),
                loss_weight: loss_weight(&table, k),
                reason: e.reason.clone(),
            }
        })
        .collect();
    let meta = ExitsMetadata {
        version: 1,
        mode: options.mode,
        logits: graph.value(classifier.logits).name.clone(),
        exits: metas.clone(),
        never_exit_classes: options.never_exit_classes.clone(),
        trained: options.weights.is_trained(),
        weights: options.weights.describe(),
        cost: table,
        calibration: None,
    };
    write_metadata(&mut out, &meta)?;
    let fusion = match options.fusion() {
        Some(fuse) => {
            let knobs = knob_names(&out);
            Some(crate::fuse::fuse_model(
                &mut out,
                crate::fuse::Regions::Exits,
                &fuse,
                &knobs,
            )?)
        }
        None => None,
    };
    // What computed the known sizes and nothing else reads goes with them:
    // their Constants and Shapes. Applying places every constant, the
    // heads' and fusion's new ones too, in the graph that reads it.
    let shape_arithmetic: HashSet<String> = graph
        .value_ids()
        .map(|v| graph.value(v))
        .filter(|v| v.is_constant || v.folded.is_some())
        .map(|v| v.name.clone())
        .collect();
    crate::transform::fold_known_values(&mut out, &known_values(graph), shape_arithmetic)?;
    let mut warnings = Vec::new();
    let time = &report.time;
    for (j, rate) in time.break_even_rate.iter().enumerate() {
        if *rate >= 1.0 && options.mode != Mode::Multi {
            let saved = time.path_us.last().copied().unwrap_or(0.0) - time.path_us[j];
            warnings.push(format!(
                "exit {} ('{}') cannot pay for its time in ONNX Runtime: it adds {:.1} µs to every row that \
                 reaches it and a row leaving there saves {:.1} µs (cost model, original {:.1} µs {}; `eexc eval` \
                 measures)",
                j + 1,
                plan.exits[j].tensor,
                time.exit_overhead_us[j],
                saved.max(0.0),
                time.original_us,
                if time.original_measured {
                    "measured"
                } else {
                    "estimated"
                }
            ));
        }
    }
    if !options.weights.is_trained() && options.mode != Mode::Multi {
        warnings.push(format!(
            "exit heads are UNTRAINED (seeded initialiser, seed {}): early exits will return meaningless \
             predictions. Train them (--mode multi, then --weights-from) or pass --weights.",
            match options.weights {
                WeightSource::Seeded(s) => s,
                _ => 0,
            }
        ));
    }
    Ok((
        out,
        ExitSummary {
            exits: metas,
            cost: report,
            fusion,
            warnings,
        },
    ))
}

/// Loop mode: an exit after every repeated layer but the last.
fn loop_exits(
    graph: &crate::ir::Graph,
    classifier: &crate::analysis::classifier::Classifier,
    run: &repeat::RepeatedRun,
    head: HeadKind,
) -> Result<Vec<plan::ExitPoint>, ExitError> {
    let layers = run.layers.len();
    run.layers[..layers - 1]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let reason = format!(
                "after repeated layer {} of {layers} ({} narrow-cut segment(s) per layer)",
                i + 1,
                run.segments_per_layer
            );
            plan::exit_point(graph, classifier, l.output, head, reason)
        })
        .collect()
}

/// Cumulative FLOP share of the original network before exit `k`, rounded to
/// 3 decimals so the metadata stays readable.
fn loss_weight(table: &cost::CostTable, k: usize) -> f64 {
    let before: f64 = table.stages[..k].iter().map(|s| s.flops).sum();
    let share = if table.original.flops > 0.0 {
        before / table.original.flops
    } else {
        0.0
    };
    (share * 1000.0).round() / 1000.0
}

fn validate_options(options: &ExitOptions, exits: usize, classes: i64) -> Result<(), ExitError> {
    for (what, list) in [
        ("--threshold", &options.thresholds),
        ("--temperature", &options.temperatures),
    ] {
        if list.len() > 1 && list.len() != exits {
            return Err(ExitError::BadOption(format!(
                "{what} has {} values for {exits} exits",
                list.len()
            )));
        }
    }
    if let Some(t) = options.temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(ExitError::BadOption(format!(
            "--temperature {t}: must be a positive number"
        )));
    }
    if let Some(t) = options.thresholds.iter().find(|t| !t.is_finite()) {
        return Err(ExitError::BadOption(format!(
            "--threshold {t}: must be a finite number"
        )));
    }
    if let Some(c) = options.never_exit_classes.iter().find(|&&c| c < 0 || c >= classes) {
        return Err(ExitError::BadOption(format!(
            "--never-exit-classes {c}: the model has classes 0..{}",
            classes - 1
        )));
    }
    if let Some(d) = &options.exit_distribution {
        cost::check_distribution(d, exits).map_err(ExitError::BadOption)?;
    }
    Ok(())
}

/// Replaces each large initializer by its name, type and dims (what shape
/// inference and the cost model read) and returns the originals.
fn set_weights_aside(proto: &mut ModelProto) -> Vec<crate::onnx::proto::TensorProto> {
    let Some(g) = proto.graph.as_mut() else {
        return Vec::new();
    };
    let originals = std::mem::take(&mut g.initializer);
    g.initializer = originals
        .iter()
        .map(|t| {
            let elements = crate::ir::constant::tensor_type(t).num_elements().unwrap_or(u64::MAX);
            if elements <= crate::ir::constant::MAX_FOLDED_ELEMENTS {
                t.clone()
            } else {
                let mut shell = crate::onnx::proto::TensorProto::new();
                shell.name = t.name.clone();
                shell.data_type = t.data_type;
                shell.dims = t.dims.clone();
                shell
            }
        })
        .collect();
    originals
}

/// Swaps the real initializers back in for their stand-ins, in whichever
/// graph emission placed them (the ones emission stopped reading are gone).
fn put_weights_back(model: &mut ModelProto, originals: Vec<crate::onnx::proto::TensorProto>) {
    let mut by_name: HashMap<String, crate::onnx::proto::TensorProto> =
        originals.into_iter().map(|t| (t.name().to_string(), t)).collect();
    if let Some(g) = model.graph.as_mut() {
        swap_in(g, &mut by_name);
    }
}

fn swap_in(g: &mut crate::onnx::proto::GraphProto, originals: &mut HashMap<String, crate::onnx::proto::TensorProto>) {
    for t in &mut g.initializer {
        if let Some(real) = originals.remove(t.name()) {
            *t = real;
        }
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            for sub in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                swap_in(sub, originals);
            }
        }
    }
}

/// The values of the original graph that are computed at run time but whose
/// contents shape inference knows as numbers (integer shape arithmetic).
fn known_values(graph: &Graph) -> HashMap<String, TensorProto> {
    graph
        .value_ids()
        .filter(|&v| !graph.value(v).is_constant && graph.producer(v).is_some())
        .filter_map(|v| {
            Some((
                graph.value(v).name.clone(),
                crate::ir::load_time::folded_tensor(graph, v)?,
            ))
        })
        .collect()
}
