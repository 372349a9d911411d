//! Finds a classifier's logits and the ops that follow them (Softmax,
//! Flatten, ...), which every exit must replicate so it returns what the
//! original model returns.

use crate::ir::{Graph, NodeId, TensorType, ValueId};

/// Ops allowed between the logits and the prediction output.
const TAIL_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Identity",
    "Dropout",
];

#[derive(Debug, Clone)]
pub struct Classifier {
    /// The prediction output.
    pub output: ValueId,
    /// The logits tensor: the last tensor before the tail.
    pub logits: ValueId,
    /// Tail nodes from logits to output, in order (possibly empty).
    pub tail: Vec<NodeId>,
    /// Number of classes (the logits' class axis).
    pub classes: i64,
    pub logits_type: TensorType,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifierError {
    #[error(
        "the model has {count} outputs ({names}); exits need a single prediction output (drop the others, or name the logits with --logits)"
    )]
    SeveralOutputs { count: usize, names: String },
    #[error("the model has no outputs")]
    NoOutput,
    #[error("tensor '{0}' is not in the graph")]
    UnknownTensor(String),
    #[error("logits tensor '{tensor}' has shape {shape}; expected [N, classes] (or [N, classes, 1, 1])")]
    BadLogitsShape { tensor: String, shape: String },
    #[error("logits tensor '{tensor}' does not lead to the prediction output '{output}' through {TAIL_OPS:?} only")]
    NotBeforeOutput { tensor: String, output: String },
}

/// Locates the classifier. With `logits` given, checks that it reaches the
/// output through tail ops only; otherwise walks back from the output.
pub fn find_classifier(graph: &Graph, logits: Option<&str>) -> Result<Classifier, ClassifierError> {
    let output = match graph.outputs.as_slice() {
        [] => return Err(ClassifierError::NoOutput),
        [one] => *one,
        many => {
            // With --logits, the output it feeds is the prediction.
            let names: Vec<&str> = many.iter().map(|&v| graph.value(v).name.as_str()).collect();
            let chosen = logits.and_then(|l| {
                let id = graph.value_id(l)?;
                many.iter().copied().find(|&o| walk_back(graph, o).0 == id || o == id)
            });
            match chosen {
                Some(o) => o,
                None => {
                    return Err(ClassifierError::SeveralOutputs {
                        count: many.len(),
                        names: names.join(", "),
                    });
                }
            }
        }
    };
    let (found, tail) = walk_back(graph, output);
    let (logits_id, tail) = match logits {
        None => (found, tail),
        Some(name) => {
            let id = graph
                .value_id(name)
                .ok_or_else(|| ClassifierError::UnknownTensor(name.into()))?;
            // The chosen logits must be on the walked-back tail.
            let pos = std::iter::once(found)
                .chain(
                    tail.iter()
                        .flat_map(|&n| graph.node(n).outputs.iter().flatten().copied()),
                )
                .position(|v| v == id)
                .ok_or_else(|| ClassifierError::NotBeforeOutput {
                    tensor: name.into(),
                    output: graph.value(output).name.clone(),
                })?;
            (id, tail[pos..].to_vec())
        }
    };
    let v = graph.value(logits_id);
    let ty = v.ty.clone().unwrap_or(TensorType {
        elem: crate::onnx::dtype::ElemType::FLOAT,
        shape: None,
    });
    let bad = || ClassifierError::BadLogitsShape {
        tensor: v.name.clone(),
        shape: ty.to_string(),
    };
    let classes = match ty.shape.as_deref() {
        Some([_, c]) => c.known(),
        Some([_, c, rest @ ..]) if rest.iter().all(|d| d.known() == Some(1)) => c.known(),
        _ => None,
    }
    .filter(|&c| c >= 2)
    .ok_or_else(bad)?;
    Ok(Classifier {
        output,
        logits: logits_id,
        tail,
        classes,
        logits_type: ty,
    })
}

/// Walks from `output` back through tail ops; returns the first tensor not
/// produced by one, and the tail nodes in forward order.
fn walk_back(graph: &Graph, output: ValueId) -> (ValueId, Vec<NodeId>) {
    let mut tail = Vec::new();
    let mut current = output;
    while let Some(p) = graph.producer(current) {
        let node = graph.node(p);
        if !node.is_onnx_domain() || !TAIL_OPS.contains(&node.op_type.as_str()) {
            break;
        }
        let Some(Some(data)) = node.inputs.first() else { break };
        tail.push(p);
        current = *data;
    }
    tail.reverse();
    (current, tail)
}
