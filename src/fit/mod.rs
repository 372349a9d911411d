//! `eexc fit`: trains the exit heads from unlabelled (or labelled) sample
//! inputs, in-process. The model runs on the samples in tract; each exit's
//! pooled features and the full model's logits are collected; each head is
//! a multinomial logistic regression fitted by L-BFGS to the full model's
//! softmax (self-distillation), to labels, or to a mix. A conv-grid head's
//! convolution is trained first (`refine`), on the exit's feature maps.

mod features;
pub mod logreg;
pub mod refine;

use std::path::{Path, PathBuf};

use tract_onnx::prelude::tract_ndarray::Array2;

use crate::analysis::classifier::find_classifier;
use crate::analysis::cost::graph_cost;
use crate::analysis::shapes::infer_model;
use crate::exits::head::HeadWeights;
use crate::exits::plan::{self, ExitPoint, HeadKind};
use crate::exits::{ExitError, ExitSelection};
use crate::ir::{Dim, DimValues, Model};
use crate::runtime::RunError;
use crate::runtime::pass::{PassInput, PassModel, PassRun, PassSource};

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Exit(#[from] ExitError),
    #[error(transparent)]
    Run(#[from] crate::runtime::RunError),
    #[error("L-BFGS: {0}")]
    Optimiser(String),
    #[error("{0}")]
    BadOption(String),
}

#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The rows: sample inputs to run the model over, or the pass model's
    /// outputs as shards.
    pub source: PassSource,
    /// Also write the pass's outputs as shards here (`--save-outputs`).
    pub save_outputs: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// Weight of the labels in the targets (1: labels only; 0: the model's
    /// own softmax only). Only with `labels`.
    pub label_weight: f64,
    pub selection: ExitSelection,
    pub head: HeadKind,
    pub logits: Option<String>,
    /// Rows per tract run.
    pub batch: usize,
    /// Seeds the held-out split.
    pub seed: u64,
    /// Share of rows held out to choose the L2 strength.
    pub held_out: f64,
    /// `--dim NAME=VALUE`: named dimensions' values for `--auto`'s costs.
    pub dims: Vec<(String, u64)>,
}

/// One fitted exit, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FittedExit {
    pub index: usize,
    pub tensor: String,
    pub head: String,
    pub features: i64,
    /// The L2 strength chosen and the head's held-out scores with it.
    pub held_out: logreg::HeldOut,
    /// Agreement with the full model's prediction on every row (fit rows included).
    pub agreement_all_rows: f64,
    /// Accuracy against the labels on every row, when labels were given.
    pub label_accuracy: Option<f64>,
    /// A conv-grid head: how its convolution's training went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refine: Option<RefineScore>,
}

/// The pass a conv-grid head's convolution was kept from, and which
/// linear layer the head kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefineScore {
    pub best_epoch: usize,
    /// The convolution with the linear layer trained beside it, on the
    /// held-out rows.
    pub held_out_agreement: f64,
    pub held_out_cross_entropy: f64,
    /// "trained with the convolution", or "refitted" (L-BFGS, as every
    /// head): the one with the higher held-out agreement (then the lower
    /// cross-entropy).
    pub linear_layer: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FitReport {
    pub model: String,
    pub rows: usize,
    pub held_out_rows: usize,
    pub targets: String,
    pub seed: u64,
    pub exits: Vec<FittedExit>,
    /// The full model's accuracy on the labels, when given.
    pub model_label_accuracy: Option<f64>,
}

impl FitReport {
    /// The report as the CLI prints it (after the "wrote" line).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "{} rows ({} held out to choose L2); targets: {}\n",
            self.rows, self.held_out_rows, self.targets
        );
        if let Some(acc) = self.model_label_accuracy {
            let _ = writeln!(out, "full model: {:.2}% label accuracy", 100.0 * acc);
        }
        out.push_str(
            "\nexit  tensor                    head        features  L2       held-out agreement  all rows  labels\n",
        );
        for e in &self.exits {
            let _ = writeln!(
                out,
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
        out
    }
}

/// Which of `names` (each `TENSOR[:HEAD]`, as `--at` takes them) name an
/// exit that fits the model, one by one; the model is read once.
pub fn exits_fit(
    loaded: &crate::onnx::LoadedModel,
    names: &[String],
    logits: Option<&str>,
) -> Result<Vec<bool>, FitError> {
    let mut model = Model::from_proto(&loaded.proto).map_err(ExitError::from)?;
    let _ = infer_model(&mut model);
    let classifier = find_classifier(&model.graph, logits).map_err(ExitError::from)?;
    Ok(names
        .iter()
        .map(|n| plan::resolve_at(&model.graph, &classifier, std::slice::from_ref(n), HeadKind::Auto).is_ok())
        .collect())
}

/// The model read, its classifier found and its exits resolved: what the
/// pass model and the fit both start from.
struct Prepared {
    loaded: crate::onnx::LoadedModel,
    model: Model,
    classifier: crate::analysis::classifier::Classifier,
    exits: Vec<ExitPoint>,
}

fn prepare(
    loaded: crate::onnx::LoadedModel,
    selection: &ExitSelection,
    head: HeadKind,
    logits: Option<&str>,
    dims: &[(String, u64)],
) -> Result<Prepared, FitError> {
    let mut model = Model::from_proto(&loaded.proto).map_err(ExitError::from)?;
    let shapes = infer_model(&mut model);
    let graph = &model.graph;
    let classifier = find_classifier(graph, logits).map_err(ExitError::from)?;
    let exits: Vec<ExitPoint> = match selection {
        ExitSelection::At(names) if names.is_empty() => {
            return Err(FitError::BadOption(
                "say where the exits go: --at TENSORS or --auto K".into(),
            ));
        }
        ExitSelection::At(names) => plan::resolve_at(graph, &classifier, names, head)?,
        ExitSelection::Auto(k) => {
            // Only `--auto` costs the model: `--at` needs no dimension values.
            let dims = DimValues::bind(graph, dims, &shapes.declared_dims).map_err(ExitError::from)?;
            plan::choose_auto(graph, &graph_cost(graph, &dims), &classifier, *k, head)?
        }
    };
    let mut exits = exits;
    plan::attach_tails(&mut exits, || {
        // Finding the layers needs structure, not sizes: every symbol counts 1.
        let cost = graph_cost(graph, &DimValues::default());
        let weight = |name: &str| {
            let g = loaded.proto.graph.as_ref()?;
            g.initializer.iter().find(|t| t.name() == name).cloned()
        };
        crate::exits::tail::ModelTail::find(graph, &loaded.proto, &cost, &classifier, &weight)
    })?;
    Ok(Prepared {
        loaded,
        model,
        classifier,
        exits,
    })
}

impl Prepared {
    fn pass_model(&self) -> Result<PassModel, FitError> {
        features::pass_model(
            &self.loaded.proto,
            &self.model.graph,
            &self.classifier,
            &self.exits,
            self.model.onnx_opset(),
        )
    }
}

/// Writes the pass model of fitting these exits (the model with every
/// exit's features and the logits as its outputs) to `out`, for a runtime
/// elsewhere to run over the rows; `--outputs` then reads what it wrote.
pub fn write_pass_model(
    model_path: &Path,
    selection: &ExitSelection,
    head: HeadKind,
    logits: Option<&str>,
    dims: &[(String, u64)],
    out: &Path,
) -> Result<PassModel, FitError> {
    let prepared = prepare(load(model_path)?, selection, head, logits, dims)?;
    let pass = prepared.pass_model()?;
    pass.save(out, Some(&prepared.loaded.base_dir))?;
    Ok(pass)
}

/// Fits every exit's head; returns the heads (per exit) and the report.
pub fn fit(model_path: &Path, options: &FitOptions) -> Result<(Vec<HeadWeights>, FitReport), FitError> {
    fit_model(load(model_path)?, options)
}

/// Loads the model at `path` as every command that reads one does.
pub fn load(path: &Path) -> Result<crate::onnx::LoadedModel, FitError> {
    Ok(crate::onnx::load_model_for_transform(path).map_err(ExitError::from)?)
}

/// [`fit`] on a model already loaded: what compile chains in memory.
pub fn fit_model(
    loaded: crate::onnx::LoadedModel,
    options: &FitOptions,
) -> Result<(Vec<HeadWeights>, FitReport), FitError> {
    let model_path = loaded.path.clone();
    let model_path = model_path.as_path();
    if options.batch == 0 {
        return Err(FitError::BadOption("--batch-size must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&options.label_weight) {
        return Err(FitError::BadOption("--label-weight must be in [0, 1]".into()));
    }
    if !(0.05..=0.5).contains(&options.held_out) {
        return Err(FitError::BadOption("--held-out must be in [0.05, 0.5]".into()));
    }
    let prepared = prepare(
        loaded,
        &options.selection,
        options.head,
        options.logits.as_deref(),
        &options.dims,
    )?;
    let (graph, classifier, exits) = (&prepared.model.graph, &prepared.classifier, &prepared.exits);
    let mut input = options.source.open()?;
    if let PassInput::Rows(samples, _) = &mut input {
        check_input(graph, &prepared.loaded.proto, samples)?;
    }
    let rows = input.rows();
    let held_out_rows = ((rows as f64) * options.held_out).round() as usize;
    if rows < 20 || held_out_rows == 0 {
        return Err(FitError::Run(RunError::Data {
            path: options.source.path().to_path_buf(),
            reason: format!("{rows} rows; fit needs at least 20 (some are held out to choose the L2 strength)"),
        }));
    }
    let classes = classifier.classes;
    let run = PassRun {
        batch: options.batch,
        external_dir: prepared.loaded.external_dir(),
        save_outputs: options.save_outputs.as_deref(),
    };
    let mut collected = features::collect(&prepared.pass_model()?, input, &run, options.labels.as_deref(), classes)?;
    let labels = collected.labels.take();

    let c = classes as usize;
    let logits = Array2::from_shape_vec((rows, c), collected.logits.iter().map(|&v| f64::from(v)).collect())
        .map_err(|e| RunError::Runtime(format!("logits: {e}")))?;
    let soft = softmax_rows(&logits);
    let targets = match &labels {
        Some(l) => {
            let mut t = soft.clone() * (1.0 - options.label_weight);
            for (r, &class) in l.iter().enumerate() {
                t[[r, class]] += options.label_weight;
            }
            t
        }
        None => soft.clone(),
    };
    let held_out = held_out_mask(rows, held_out_rows, options.seed);
    let model_pred: Vec<usize> = (0..rows)
        .map(|r| crate::numeric::argmax(logits.row(r).iter().copied()))
        .collect();

    let mut heads = Vec::new();
    let mut fitted = Vec::new();
    for (i, point) in exits.iter().enumerate() {
        let features = point.features as usize;
        let collected_x = &collected.features[i];
        let expected = match map_shape(point) {
            Some(m) => m.channels * m.height * m.width,
            None => features,
        };
        if collected_x.len() != rows * expected {
            return Err(FitError::Run(RunError::Runtime(format!(
                "exit {} ('{}'): {} feature values for {rows} rows of {expected}",
                i + 1,
                point.tensor,
                collected_x.len()
            ))));
        }
        // A conv-grid head: its convolution first, then the linear layer
        // on what the convolution gives.
        let refined = map_shape(point).map(|shape| {
            let what = format!("training the conv-grid head at '{}'", point.tensor);
            refine::train(collected_x, shape, &targets, &held_out, options.seed, &what)
        });
        let x = refined.as_ref().map_or(collected_x, |r| &r.features);
        let refit = logreg::fit_head(x, &targets, features, &held_out)?;
        let ((head, score), refine_score) = match &refined {
            Some(r) => {
                let (kept, refine_score) = better_linear_layer(r, refit);
                (kept, Some(refine_score))
            }
            None => (refit, None),
        };
        let pred: Vec<usize> = (0..rows)
            .map(|r| {
                let row = &x[r * features..(r + 1) * features];
                crate::numeric::argmax((0..c).map(|k| {
                    let w = &head.weight[k * features..(k + 1) * features];
                    f64::from(head.bias[k]) + w.iter().zip(row).map(|(a, b)| f64::from(a * b)).sum::<f64>()
                }))
            })
            .collect();
        fitted.push(FittedExit {
            index: i + 1,
            tensor: point.tensor.clone(),
            head: point.head.name().into(),
            features: point.features,
            held_out: score,
            agreement_all_rows: share(pred.iter().zip(&model_pred).filter(|(a, b)| a == b).count(), rows),
            label_accuracy: labels
                .as_ref()
                .map(|l| share(pred.iter().zip(l).filter(|(a, b)| a == b).count(), rows)),
            refine: refine_score,
        });
        heads.push(HeadWeights {
            weight: head.weight,
            bias: head.bias,
            refine: refined.map(|r| r.weights),
        });
    }
    let report = FitReport {
        model: model_path.display().to_string(),
        rows,
        held_out_rows,
        targets: match &labels {
            None => "the model's own softmax (self-distillation)".into(),
            Some(_) if options.label_weight >= 1.0 => "labels".into(),
            Some(_) => format!(
                "{:.2} × labels + {:.2} × the model's softmax",
                options.label_weight,
                1.0 - options.label_weight
            ),
        },
        seed: options.seed,
        exits: fitted,
        model_label_accuracy: labels
            .as_ref()
            .map(|l| share(model_pred.iter().zip(l).filter(|(a, b)| a == b).count(), rows)),
    };
    Ok((heads, report))
}

/// A conv-grid head keeps the linear layer trained with its convolution
/// when that one does better on the held-out rows (higher agreement, then
/// lower cross-entropy) than the L-BFGS `refit`.
fn better_linear_layer(
    r: &refine::Refined,
    refit: (logreg::Head, logreg::HeldOut),
) -> ((logreg::Head, logreg::HeldOut), RefineScore) {
    let trained = (r.held_out_agreement, -r.held_out_cross_entropy) > (refit.1.agreement, -refit.1.cross_entropy);
    let score = RefineScore {
        best_epoch: r.best_epoch,
        held_out_agreement: r.held_out_agreement,
        held_out_cross_entropy: r.held_out_cross_entropy,
        linear_layer: if trained {
            "trained with the convolution"
        } else {
            "refitted"
        },
    };
    if !trained {
        return (refit, score);
    }
    let head = logreg::Head {
        weight: r.linear.0.clone(),
        bias: r.linear.1.clone(),
    };
    let held_out = logreg::HeldOut {
        l2: refine::WEIGHT_DECAY,
        agreement: r.held_out_agreement,
        cross_entropy: r.held_out_cross_entropy,
    };
    ((head, held_out), score)
}

/// The feature map a conv-grid head's convolution reads; `None` for the
/// other heads.
fn map_shape(point: &ExitPoint) -> Option<refine::MapShape> {
    match (point.head, point.ty.shape.as_deref()) {
        (HeadKind::ConvGrid, Some([_, Dim::Known(c), Dim::Known(h), Dim::Known(w)])) => Some(refine::MapShape {
            channels: *c as usize,
            height: *h as usize,
            width: *w as usize,
        }),
        _ => None,
    }
}

fn share(count: usize, of: usize) -> f64 {
    count as f64 / of.max(1) as f64
}

fn softmax_rows(z: &Array2<f64>) -> Array2<f64> {
    let mut p = z.clone();
    for mut row in p.rows_mut() {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

/// `count` of `rows` rows, chosen by a seeded shuffle.
fn held_out_mask(rows: usize, count: usize, seed: u64) -> Vec<bool> {
    let order = seeded_permutation(rows, seed ^ 0x5EED_F17E_D00D_u64);
    let mut mask = vec![false; rows];
    for &r in &order[..count] {
        mask[r] = true;
    }
    mask
}

/// The rows 0..rows in a seeded order (SplitMix64 + Fisher–Yates).
pub fn seeded_permutation(rows: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::numeric::SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..rows).collect();
    for i in (1..rows).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The data must have the model's single input's shape (any batch).
/// Binds the samples to the model's data inputs ([`crate::runtime::Samples::bind`])
/// and checks each array's shape against its input's declared one.
fn check_input(
    graph: &crate::ir::Graph,
    model: &crate::onnx::proto::ModelProto,
    samples: &mut crate::runtime::Samples,
) -> Result<(), FitError> {
    crate::runtime::bind_samples(samples, model)?;
    let inputs = crate::runtime::data_inputs(model);
    for (input, row_shape) in inputs.iter().zip(samples.row_shapes()) {
        let Some(value) = graph.value_id(&input.name).map(|v| graph.value(v)) else {
            continue;
        };
        let Some(dims) = value.ty.as_ref().and_then(|t| t.shape.as_ref()) else {
            continue;
        };
        let fits = dims.len() == row_shape.len() + 1
            && dims
                .iter()
                .skip(1)
                .zip(&row_shape)
                .all(|(d, &s)| !matches!(d, Dim::Known(k) if *k as usize != s));
        if !fits {
            let mut shape = vec![samples.rows()];
            shape.extend(&row_shape);
            let ty = value.ty.as_ref().map_or(String::new(), |t| t.to_string());
            return Err(FitError::Run(RunError::Data {
                path: samples.path().to_path_buf(),
                reason: format!(
                    "shape {shape:?} does not fit input '{}' {ty} (rows first, then the input's other dims)",
                    value.name
                ),
            }));
        }
    }
    Ok(())
}

/// Writes the heads as safetensors (`exit{k}.weight` classes × features,
/// `exit{k}.bias`, and a conv-grid head's `exit{k}.refine_weight` and
/// `exit{k}.refine_bias`), the file `insert-exits --weights` reads,
/// atomically.
pub fn save_heads(
    path: &Path,
    heads: &[HeadWeights],
    exits: &[FittedExit],
    report: &FitReport,
) -> Result<(), FitError> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (h, e) in heads.iter().zip(exits) {
        let classes = h.bias.len();
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        tensors.push((
            format!("exit{}.weight", e.index),
            vec![classes, e.features as usize],
            le(&h.weight),
        ));
        tensors.push((format!("exit{}.bias", e.index), vec![classes], le(&h.bias)));
        if let Some(r) = &h.refine {
            let c = r.bias.len();
            let k = crate::exits::plan::REFINE_KERNEL as usize;
            tensors.push((
                format!("exit{}.refine_weight", e.index),
                vec![c, c, k, k],
                le(&r.weight),
            ));
            tensors.push((format!("exit{}.refine_bias", e.index), vec![c], le(&r.bias)));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| RunError::Runtime(format!("{name}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    // One metadata entry: a HashMap of several would serialise in random order.
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "eexc.fit".to_string(),
        serde_json::json!({"producer": "eexc fit", "targets": report.targets, "seed": report.seed}).to_string(),
    );
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| RunError::Runtime(e.to_string()))?;
    crate::onnx::write_atomically(path, &bytes).map_err(|e| FitError::Exit(ExitError::from(e)))
}
