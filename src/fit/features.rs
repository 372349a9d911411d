//! Runs the model on the samples (tract, in-process) and collects, per
//! exit, the pooled features its head reads, and the model's own logits.

use protobuf::Message;
use tract_onnx::prelude::*;

use super::FitError;
use super::data::Samples;
use crate::analysis::classifier::Classifier;
use crate::exits::head::build_pooling;
use crate::exits::plan::ExitPoint;
use crate::ir::{Graph, NameGenerator};
use crate::onnx::proto::{ModelProto, ValueInfoProto};
use crate::transform::builder::GraphBuilder;

/// Row-major matrices, one row per sample.
pub struct Collected {
    /// Per exit: rows × features.
    pub features: Vec<Vec<f32>>,
    /// rows × classes: the full model's logits.
    pub logits: Vec<f32>,
}

/// The original model plus, as extra outputs, every exit's pooled features
/// and the classifier's logits. Returns the model and the output names
/// (features 1..K, then logits).
fn features_model(
    proto: &ModelProto,
    graph: &Graph,
    classifier: &Classifier,
    exits: &[ExitPoint],
    opset: i64,
) -> (ModelProto, Vec<String>) {
    let mut names = NameGenerator::for_graph(graph);
    let main = proto.graph.as_ref().expect("model has a graph");
    for n in &main.node {
        names.reserve(n.name());
    }
    let mut b = GraphBuilder::new(names, opset);
    let mut outputs = Vec::new();
    for (i, point) in exits.iter().enumerate() {
        let pooled = build_pooling(&mut b, &format!("eexc_fit_exit{}", i + 1), point);
        let out = b.op("Identity", &format!("eexc_fit_features_{}", i + 1), &[&pooled], vec![]);
        outputs.push(out);
    }
    let logits = graph.value(classifier.logits).name.clone();
    outputs.push(logits);
    let mut model = proto.clone();
    let inits = b.take_initializers();
    let g = model.graph.as_mut().expect("model has a graph");
    g.node.extend(b.nodes);
    g.initializer.extend(inits);
    let declared: Vec<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    for o in &outputs {
        if !declared.contains(o) {
            let mut v = ValueInfoProto::new();
            v.set_name(o.clone());
            g.output.push(v);
        }
    }
    (model, outputs)
}

/// Runs the features model over all samples, `batch` rows at a time.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    proto: &ModelProto,
    graph: &Graph,
    classifier: &Classifier,
    exits: &[ExitPoint],
    opset: i64,
    samples: &mut Samples,
    batch: usize,
    external_dir: Option<&std::path::Path>,
) -> Result<Collected, FitError> {
    let (model, outputs) = features_model(proto, graph, classifier, exits, opset);
    let bytes = model
        .write_to_bytes()
        .map_err(|e| FitError::Runtime(format!("cannot encode the features model: {e}")))?;
    let rows = samples.rows();
    let row_shape = samples.shape[1..].to_vec();
    let progress = indicatif::ProgressBar::new(rows as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} rows ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message("collecting exit features");
    let mut collected = Collected {
        features: vec![Vec::new(); exits.len()],
        logits: Vec::new(),
    };
    // One optimised plan per batch size met (full batches, then the rest).
    let mut plans: Vec<(usize, std::sync::Arc<TypedRunnableModel>)> = Vec::new();
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        if !plans.iter().any(|(size, _)| *size == n) {
            plans.push((n, prepare(&bytes, &outputs, n, &row_shape, external_dir)?));
        }
        let plan = &plans.iter().find(|(size, _)| *size == n).expect("plan just made").1;
        let data = samples.next_rows(done, n)?;
        let mut shape = vec![n];
        shape.extend_from_slice(&row_shape);
        let input = Tensor::from_shape(&shape, &data).map_err(|e| FitError::Runtime(format!("{e}")))?;
        let result = plan
            .run(tvec!(input.into()))
            .map_err(|e| FitError::Runtime(format!("rows {done}..{}: {e}", done + n)))?;
        for (i, out) in result.iter().enumerate() {
            let view = out
                .to_plain_array_view::<f32>()
                .map_err(|e| FitError::Runtime(format!("output '{}': {e}", outputs[i])))?;
            let target = if i < exits.len() {
                &mut collected.features[i]
            } else {
                &mut collected.logits
            };
            target.extend(view.iter().copied());
        }
        done += n;
        progress.set_position(done as u64);
    }
    progress.finish_and_clear();
    Ok(collected)
}

fn prepare(
    bytes: &[u8],
    outputs: &[String],
    rows: usize,
    row_shape: &[usize],
    external_dir: Option<&std::path::Path>,
) -> Result<std::sync::Arc<TypedRunnableModel>, FitError> {
    let fail = |e: TractError| FitError::Runtime(format!("{e:#}"));
    let mut model = if let Some(model_dir) = external_dir {
        // External weights resolve against the model's folder.
        let tmp = tempfile::Builder::new()
            .prefix(".eexc-fit-")
            .suffix(".onnx")
            .tempfile_in(model_dir)
            .map_err(|e| FitError::Runtime(format!("{}: {e}", model_dir.display())))?;
        std::fs::write(tmp.path(), bytes).map_err(|e| FitError::Runtime(e.to_string()))?;
        tract_onnx::onnx().model_for_path(tmp.path()).map_err(fail)?
    } else {
        tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(fail)?
    };
    let mut shape = vec![rows];
    shape.extend_from_slice(row_shape);
    model
        .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &shape))
        .map_err(fail)?;
    let outlets: Vec<OutletId> = outputs
        .iter()
        .map(|name| {
            model
                .find_outlet_label(name)
                .or_else(|| model.node_by_name(name).ok().map(|n| OutletId::new(n.id, 0)))
                .ok_or_else(|| FitError::Runtime(format!("tract lost the output '{name}'")))
        })
        .collect::<Result<_, _>>()?;
    model.select_output_outlets(&outlets).map_err(fail)?;
    model.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
}
