//! The one forward pass that `fit` and `calibrate` need: a *pass model*
//! (the model with the outputs they read: each exit's features and the
//! logits for fit, every exit's logits for calibrate) run over the rows.
//! It runs here, over sample inputs, or anywhere else: `--pass-model` writes
//! the pass model, any runtime runs it and writes its outputs as shards
//! ([`super::shards`]), and `--outputs DIR` reads them back. The shards name
//! the pass model by the digest of its graph, so outputs of another model,
//! other exits or other heads are refused.

use std::path::{Path, PathBuf};

use protobuf::Message;
use sha2::Digest;

use super::{RunError, Samples, shards};
use crate::onnx::proto::{ModelProto, TypeProto, ValueInfoProto, type_proto};
use crate::transform::patch::ModelPatch;

/// The metadata key of a written pass model.
pub const METADATA_KEY: &str = "eexc.pass";

/// Where a pass's outputs come from.
#[derive(Debug, Clone)]
pub enum PassSource {
    /// Sample inputs (`.npy`, or an array of an `.npz`) the model runs over here.
    Rows(PathBuf),
    /// The pass model's outputs as shards: a folder with a manifest (or the
    /// manifest itself).
    Shards(PathBuf),
    /// Sample inputs, and their labels, in memory (what compile splits
    /// `--data` into).
    Memory(std::sync::Arc<super::samples::MemoryRows>),
}

impl PassSource {
    pub fn path(&self) -> &Path {
        match self {
            PassSource::Rows(p) | PassSource::Shards(p) => p,
            PassSource::Memory(m) => &m.name,
        }
    }

    /// Opens the source: the samples' header is read (their shape can be
    /// checked before anything runs), the shards' manifest.
    pub fn open(&self) -> Result<PassInput, RunError> {
        Ok(match self {
            PassSource::Rows(p) => PassInput::Rows(Samples::open(p)?, None),
            PassSource::Shards(p) => PassInput::Shards(p.clone(), shards::open(p)?),
            PassSource::Memory(m) => PassInput::Rows(Samples::in_memory(m.clone()), m.labels.clone()),
        })
    }

    /// Whether the rows' labels come with the source itself (shards with a
    /// labels array, rows in memory with theirs).
    pub fn carries_labels(&self) -> Result<bool, RunError> {
        Ok(match self {
            PassSource::Rows(_) => false,
            PassSource::Memory(m) => m.labels.is_some(),
            PassSource::Shards(p) => shards::open(p)?.manifest.labels.is_some(),
        })
    }
}

/// An opened [`PassSource`].
pub enum PassInput {
    /// The rows, and their labels when they come with them.
    Rows(Samples, Option<Vec<i64>>),
    /// Where the user said the shards are, and what was found there.
    Shards(PathBuf, shards::Opened),
}

impl PassInput {
    pub fn rows(&self) -> usize {
        match self {
            PassInput::Rows(s, _) => s.rows(),
            PassInput::Shards(_, opened) => opened.rows,
        }
    }
}

/// A pass model: `model` with exactly `outputs` as its graph outputs and
/// nothing they do not read.
pub struct PassModel {
    pub model: ModelProto,
    pub outputs: Vec<String>,
    /// The SHA-256 of the graph's encoding, in hex: the name shards give it.
    pub digest: String,
    /// `fit` or `calibrate`, for the metadata and messages.
    pub command: &'static str,
}

impl PassModel {
    pub fn new(mut model: ModelProto, outputs: Vec<String>, command: &'static str) -> Result<PassModel, RunError> {
        let types = output_types(&model, &outputs);
        let g = model
            .graph
            .as_ref()
            .ok_or_else(|| RunError::Runtime("the pass model has no graph".into()))?;
        let declared_outputs: Vec<ValueInfoProto> = outputs
            .iter()
            .zip(types)
            .map(|(name, ty)| {
                g.output
                    .iter()
                    .find(|o| o.name() == name && o.type_.is_some())
                    .cloned()
                    .unwrap_or_else(|| crate::transform::builder::value_info(name, ty))
            })
            .collect();
        let every_initializer: Vec<String> = g.initializer.iter().map(|t| t.name().to_string()).collect();
        // What the pass does not read goes, knobs included: a pass model's
        // only input is the data.
        let mut read: std::collections::HashSet<String> = outputs.iter().cloned().collect();
        for n in &g.node {
            crate::onnx::names_read(n, &mut read);
        }
        let unread: Vec<String> = every_initializer
            .iter()
            .filter(|t| !read.contains(*t))
            .cloned()
            .collect();
        let patch_error = |e: crate::transform::patch::PatchError| RunError::Runtime(format!("the pass model: {e}"));
        let mut patch = ModelPatch::new();
        patch.main.set_outputs(declared_outputs);
        patch.main.remove_inputs(unread);
        patch.main.drop_if_unread(every_initializer);
        patch.apply(&mut model).map_err(patch_error)?;
        let bytes = model
            .graph
            .as_ref()
            .map(|g| g.write_to_bytes())
            .transpose()
            .map_err(|e| RunError::Runtime(format!("cannot encode the pass model: {e}")))?
            .unwrap_or_default();
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        let info = serde_json::json!({
            "schema": "eexc.pass/1",
            "command": command,
            "digest": digest,
            "outputs": outputs,
        });
        let mut patch = ModelPatch::new();
        patch.set_metadata(METADATA_KEY, info.to_string());
        patch.apply(&mut model).map_err(patch_error)?;
        Ok(PassModel {
            model,
            outputs,
            digest,
            command,
        })
    }

    /// Writes the pass model (its external weights copied along when it is
    /// written to another folder than `source_dir`).
    pub fn save(&self, out: &Path, source_dir: Option<&Path>) -> Result<(), RunError> {
        crate::onnx::save_model(&self.model, out, source_dir).map_err(|e| RunError::Data {
            path: out.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Runs the pass over `input`'s rows here, or reads its outputs from
    /// the shards.
    pub fn run(&self, input: PassInput, run: &PassRun, what: &str) -> Result<PassOutputs, RunError> {
        match input {
            PassInput::Rows(mut samples, labels) => {
                let rows = samples.rows();
                let columns = super::run_batched(
                    &self.model,
                    &self.outputs,
                    &mut samples,
                    run.batch,
                    run.external_dir,
                    what,
                )?;
                if let Some(dir) = run.save_outputs {
                    shards::write(dir, &self.digest, &self.outputs, &columns, rows)?;
                }
                Ok(PassOutputs {
                    columns,
                    rows,
                    labels,
                    source: samples.path().to_path_buf(),
                })
            }
            PassInput::Shards(at, opened) => {
                let read = opened.read(&self.digest, &self.outputs, what)?;
                Ok(PassOutputs {
                    columns: read.columns,
                    rows: read.rows,
                    labels: read.labels,
                    source: at,
                })
            }
        }
    }
}

/// How a pass runs here.
#[derive(Debug, Clone, Copy)]
pub struct PassRun<'a> {
    /// Rows per run of the model.
    pub batch: usize,
    /// The model's folder, when its weights are external.
    pub external_dir: Option<&'a Path>,
    /// Where to write the outputs as shards too (`--save-outputs`).
    pub save_outputs: Option<&'a Path>,
}

/// The type of each of `outputs` as shape inference sees it: its element
/// type and rank, every dimension left unknown (so that no runtime checks
/// a guess); float32 of unknown rank where inference cannot tell.
fn output_types(model: &ModelProto, outputs: &[String]) -> Vec<TypeProto> {
    let unknown = || {
        let mut tensor = type_proto::Tensor::new();
        tensor.set_elem_type(crate::onnx::dtype::ElemType::FLOAT.0);
        let mut ty = TypeProto::new();
        ty.set_tensor_type(tensor);
        ty
    };
    let Ok(mut ir) = crate::ir::Model::from_proto(model) else {
        return outputs.iter().map(|_| unknown()).collect();
    };
    let _ = crate::analysis::shapes::infer_model(&mut ir);
    outputs
        .iter()
        .map(|name| {
            let inferred = ir.graph.value_id(name).and_then(|v| ir.graph.value(v).ty.clone());
            inferred.map_or_else(unknown, |mut t| {
                if let Some(dims) = t.shape.as_mut() {
                    dims.iter_mut().for_each(|d| *d = crate::ir::Dim::Unknown);
                }
                crate::transform::builder::type_proto(&t)
            })
        })
        .collect()
}

/// What a pass gives: per output, one row-major buffer over every row.
pub struct PassOutputs {
    pub columns: Vec<Vec<f32>>,
    pub rows: usize,
    /// The labels the shards (or rows in memory) carry.
    labels: Option<Vec<i64>>,
    source: PathBuf,
}

impl PassOutputs {
    /// The rows' labels: from `file` (one per row, in row order) or from the
    /// shards, checked against the model's `classes`.
    pub fn labels(&self, file: Option<&Path>, classes: i64) -> Result<Option<Vec<usize>>, RunError> {
        match (file, &self.labels) {
            (Some(_), Some(_)) => Err(RunError::Data {
                path: self.source.clone(),
                reason: "the shards carry labels and --labels names a file too; give one of them".into(),
            }),
            (Some(f), None) => super::read_labels(f, self.rows, classes).map(Some),
            (None, Some(l)) => super::samples::check_labels(l, classes, &self.source).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The digest and outputs a written pass model names in its metadata.
pub fn read_pass_info(path: &Path) -> Result<(String, Vec<String>), RunError> {
    let bad = |reason: String| RunError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let loaded = crate::onnx::load_model(path).map_err(|e| bad(e.to_string()))?;
    let info = loaded
        .proto
        .metadata_props
        .iter()
        .find(|kv| kv.key() == METADATA_KEY)
        .ok_or_else(|| {
            bad(format!(
                "no '{METADATA_KEY}' metadata: not a pass model written by --pass-model"
            ))
        })?;
    #[derive(serde::Deserialize)]
    struct Info {
        digest: String,
        outputs: Vec<String>,
    }
    let info: Info = serde_json::from_str(info.value()).map_err(|e| bad(format!("'{METADATA_KEY}' metadata: {e}")))?;
    Ok((info.digest, info.outputs))
}
