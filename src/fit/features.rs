//! Runs the model on the samples (tract, in-process) and collects, per
//! exit, the pooled features its head reads (a conv-grid head: the map its
//! convolution reads, which `fit` trains), and the model's own logits.

use super::FitError;
use crate::analysis::classifier::Classifier;
use crate::exits::ExitError;
use crate::exits::head::{build_head_input, build_pooling};
use crate::exits::plan::ExitPoint;
use crate::exits::plan::HeadKind;
use crate::ir::{Graph, NameGenerator};
use crate::onnx::proto::{ModelProto, ValueInfoProto};
use crate::runtime::pass::{PassInput, PassModel, PassRun};
use crate::transform::builder::GraphBuilder;
use crate::transform::patch::ModelPatch;

/// Row-major matrices, one row per sample.
pub struct Collected {
    /// Per exit: rows × features (a conv-grid head: rows × C·H·W).
    pub features: Vec<Vec<f32>>,
    /// rows × classes: the full model's logits.
    pub logits: Vec<f32>,
    pub labels: Option<Vec<usize>>,
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
) -> Result<(ModelProto, Vec<String>), FitError> {
    let mut names = NameGenerator::for_graph(graph);
    let main = proto.graph.as_ref().expect("model has a graph");
    for n in &main.node {
        names.reserve(n.name());
    }
    let mut b = GraphBuilder::new(names, opset);
    let mut outputs = Vec::new();
    for (i, point) in exits.iter().enumerate() {
        let base = format!("eexc_fit_exit{}", i + 1);
        let pooled = match point.head {
            HeadKind::ConvGrid => build_head_input(&mut b, &base, point),
            _ => build_pooling(&mut b, &base, point, None),
        };
        let out = b.op("Identity", &format!("eexc_fit_features_{}", i + 1), &[&pooled], vec![]);
        outputs.push(out);
    }
    let logits = graph.value(classifier.logits).name.clone();
    outputs.push(logits);
    let mut model = proto.clone();
    let mut patch = ModelPatch::new();
    patch.main.add_initializers(b.take_initializers());
    patch.main.append_nodes(b.into_nodes());
    // Declared without a type: the runtime infers it (a name the model
    // already declares keeps its declaration).
    patch.main.add_outputs(outputs.iter().map(|o| {
        let mut v = ValueInfoProto::new();
        v.set_name(o.clone());
        v
    }));
    patch.apply(&mut model).map_err(ExitError::from)?;
    Ok((model, outputs))
}

/// The features model as a pass model: what `fit --pass-model` writes and
/// what [`collect`] runs or reads the shards of.
pub fn pass_model(
    proto: &ModelProto,
    graph: &Graph,
    classifier: &Classifier,
    exits: &[ExitPoint],
    opset: i64,
) -> Result<PassModel, FitError> {
    let (model, outputs) = features_model(proto, graph, classifier, exits, opset)?;
    Ok(PassModel::new(model, outputs, "fit")?)
}

/// Runs the pass model over `input`'s rows, `batch` at a time (or reads
/// its shards), and resolves the labels: from `labels` or the shards.
pub fn collect(
    pass: &PassModel,
    input: PassInput,
    run: &PassRun,
    labels: Option<&std::path::Path>,
    classes: i64,
) -> Result<Collected, FitError> {
    let outputs = pass.run(input, run, "collecting exit features")?;
    let labels = outputs.labels(labels, classes)?;
    let mut columns = outputs.columns;
    let logits = columns.pop().unwrap_or_default();
    Ok(Collected {
        features: columns,
        logits,
        labels,
    })
}
