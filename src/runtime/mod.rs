//! The runtimes: tract (pure Rust, embedded), which runs a model over sample
//! data read from `.npy`, batch by batch, and collects chosen outputs; and
//! ONNX Runtime ([`onnxruntime`]), loaded from the user's library, for
//! latency as deployments see it.

pub mod onnxruntime;
pub mod pass;
mod samples;
pub mod shards;

use protobuf::Message;
use tract_onnx::prelude::*;

pub use samples::{Batch, DataInput, Elements, InputBatch, MemoryRows, Samples, read_labels, write_npy};
pub(crate) use samples::{check_npy_shape, npz_member};

use crate::onnx::proto::ModelProto;

/// What can go wrong reading samples or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {reason}")]
    Data { path: std::path::PathBuf, reason: String },
    #[error("running the model in tract: {0}")]
    Runtime(String),
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// The model itself cannot serve (not an eexc model, wrong form, ...).
    #[error("{path}: {reason}")]
    Model { path: std::path::PathBuf, reason: String },
}

/// The tract-onnx version eexc is built with.
pub const TRACT_VERSION: &str = env!("EEXC_TRACT_VERSION");

/// The inputs a caller feeds data to: the graph inputs that no initializer
/// backs (the knobs, which do have one, are not among them), in order.
pub fn data_inputs(model: &ModelProto) -> Vec<DataInput> {
    let Some(g) = model.graph.as_ref() else {
        return Vec::new();
    };
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    g.input
        .iter()
        .filter(|i| !inits.contains(i.name()))
        .map(|i| DataInput {
            name: i.name().to_string(),
            int64: matches!(
                i.type_.as_ref().and_then(|t| t.value.as_ref()),
                Some(crate::onnx::proto::type_proto::Value::TensorType(t))
                    if t.elem_type() == crate::onnx::dtype::ElemType::INT64.0
            ),
        })
        .collect()
}

/// `samples` bound to `model`'s data inputs ([`Samples::bind`]).
pub fn bind_samples(samples: &mut Samples, model: &ModelProto) -> Result<(), RunError> {
    samples.bind(&data_inputs(model))
}

/// Loads a model made by `insert-exits` (weights and external data
/// checked) with its `eexc.exits` metadata.
pub fn load_exits_model(
    path: &std::path::Path,
) -> Result<(crate::onnx::LoadedModel, crate::exits::ExitsMetadata), RunError> {
    let loaded = crate::onnx::load_model_for_transform(path).map_err(|e| RunError::Model {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    exits_model(loaded)
}

/// A loaded model with its `eexc.exits` metadata, checked against the graph.
pub fn exits_model(
    loaded: crate::onnx::LoadedModel,
) -> Result<(crate::onnx::LoadedModel, crate::exits::ExitsMetadata), RunError> {
    match crate::exits::metadata_of(&loaded.proto) {
        Ok(meta) => Ok((loaded, meta)),
        Err(reason) => Err(RunError::Model {
            path: loaded.path.clone(),
            reason,
        }),
    }
}

/// The progress bar of a long pass (drawn on stderr only when it is a
/// terminal): `what` it does, then `position/length unit` and the time left.
pub fn progress_bar(length: usize, unit: &str, what: &str) -> indicatif::ProgressBar {
    let template = format!("{{msg}} {{bar:40}} {{pos}}/{{len}} {unit} ({{eta}})");
    let progress = indicatif::ProgressBar::new(length as u64).with_style(
        indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message(what.to_string());
    progress
}

/// Runs `model` over every row of `samples`, `batch` rows at a time, and
/// returns each of `outputs` as one row-major buffer (rows in order).
/// `external_dir` is the model's folder when its weights are external.
pub fn run_batched(
    model: &ModelProto,
    outputs: &[String],
    samples: &mut Samples,
    batch: usize,
    external_dir: Option<&std::path::Path>,
    what: &str,
) -> Result<Vec<Vec<f32>>, RunError> {
    bind_samples(samples, model)?;
    let bytes = for_tract(model)
        .write_to_bytes()
        .map_err(|e| RunError::Runtime(format!("cannot encode the model for tract: {e}")))?;
    let rows = samples.rows();
    let progress = progress_bar(rows, "rows", what);
    let mut columns = vec![Vec::new(); outputs.len()];
    let mut plans: Vec<(usize, Plan)> = Vec::new();
    let mut ort_session = None;
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        let data = samples.next_rows(done, n)?;
        let values = match ort_session.as_mut() {
            Some(session) => run_in_ort(session, model, &data, outputs)?,
            None => match run_in_tract(&mut plans, &bytes, &data, outputs, external_dir) {
                Ok(values) => values,
                // tract has no kernel for some ops (ONNX Runtime's
                // com.microsoft quantized ops among them): ONNX Runtime runs
                // the pass where the user has it.
                Err(RunError::Runtime(tract_error)) if plans.is_empty() => {
                    let session = ort_session.insert(open_ort_instead(model, external_dir, &tract_error)?);
                    run_in_ort(session, model, &data, outputs)?
                }
                Err(e) => return Err(e),
            },
        };
        for (column, v) in columns.iter_mut().zip(values) {
            column.extend(v);
        }
        done += n;
        progress.set_position(done as u64);
    }
    progress.finish_and_clear();
    Ok(columns)
}

/// One batch in tract, with one optimised plan per batch size met (full
/// batches, then the rest); `plans` stays empty while no plan could be made.
fn run_in_tract(
    plans: &mut Vec<(usize, Plan)>,
    bytes: &[u8],
    data: &Batch,
    outputs: &[String],
    external_dir: Option<&std::path::Path>,
) -> Result<Vec<Vec<f32>>, RunError> {
    let known = plans.iter().position(|(size, _)| *size == data.rows);
    let at = match known {
        Some(at) => at,
        None => {
            plans.push((data.rows, prepare(bytes, outputs, data, external_dir)?));
            plans.len() - 1
        }
    };
    run_plan(&plans[at].1, data, outputs)
}

/// An ONNX Runtime session for a model tract cannot run, or the tract error
/// with the reason ONNX Runtime could not take over.
fn open_ort_instead(
    model: &ModelProto,
    external_dir: Option<&std::path::Path>,
    tract_error: &str,
) -> Result<onnxruntime::OrtSession, RunError> {
    let unavailable = |why: String| {
        RunError::Runtime(format!(
            "{tract_error}; ONNX Runtime, which eexc uses where tract cannot run a model, is not available: {why}"
        ))
    };
    let library = onnxruntime::load(None).map_err(|e| unavailable(e.to_string()))?;
    let bytes = model
        .write_to_bytes()
        .map_err(|e| RunError::Runtime(format!("cannot encode the model: {e}")))?;
    // External weights resolve against the model's folder.
    let dir = external_dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let tmp = tempfile::Builder::new()
        .prefix(".eexc-run-")
        .suffix(".onnx")
        .tempfile_in(&dir)
        .map_err(|e| RunError::Runtime(format!("{}: {e}", dir.display())))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| RunError::Runtime(format!("{}: {e}", tmp.path().display())))?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let session = onnxruntime::OrtSession::open(tmp.path(), threads, None)
        .map_err(|e| RunError::Runtime(format!("{tract_error}; ONNX Runtime cannot run it either: {e}")))?;
    eprintln!(
        "eexc: tract cannot run this model ({}); running it in ONNX Runtime {} instead",
        tract_error.lines().next().unwrap_or(tract_error),
        library.version
    );
    Ok(session)
}

fn run_in_ort(
    session: &mut onnxruntime::OrtSession,
    model: &ModelProto,
    data: &Batch,
    outputs: &[String],
) -> Result<Vec<Vec<f32>>, RunError> {
    let inputs = data_inputs(model);
    let fetched = session.run(onnxruntime::feeds(&inputs, data), outputs)?;
    Ok(fetched.iter().map(onnxruntime::Fetched::as_f32).collect())
}

/// The model as tract should see it: without declared intermediate and
/// output shapes (tract takes them as facts, and a symbolic `batch` there
/// cannot unify with the concrete batch each plan is made for; tract infers
/// them again), and with node names that cannot collide with the names tract
/// gives its own helper nodes (`<node>.bias` for a Conv inside an `If`
/// meets an initializer of that name in many exports).
pub fn for_tract(model: &ModelProto) -> ModelProto {
    fn strip(g: &mut crate::onnx::proto::GraphProto) {
        g.value_info.clear();
        for n in g.node.iter_mut() {
            let name = format!("{}#node", n.name());
            n.set_name(name);
        }
        for o in g.output.iter_mut() {
            if let Some(crate::onnx::proto::type_proto::Value::TensorType(t)) =
                o.type_.as_mut().and_then(|t| t.value.as_mut())
            {
                t.shape = protobuf::MessageField::none();
            }
        }
        for n in g.node.iter_mut() {
            for a in n.attribute.iter_mut() {
                if let Some(sub) = a.g.as_mut() {
                    strip(sub);
                }
                for sub in a.graphs.iter_mut() {
                    strip(sub);
                }
            }
        }
    }
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        strip(g);
    }
    m
}

thread_local! {
    /// Set while tract runs under [`guarded`]: its panics become errors,
    /// so the default hook must not print them.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a call into tract), turning a panic into an error: some
/// malformed models make tract's own checks panic instead of failing, and a
/// bad file must give a one-line error, not a crash.
fn guarded<T>(f: impl FnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(RunError::Runtime(format!("tract cannot run this model: {message}")))
    })
}

/// A model optimised by tract for one input shape.
pub type Plan = std::sync::Arc<TypedRunnableModel>;

/// Runs one batch (its inputs in the model's data-input order) through
/// `plan`; returns the outputs flattened, as f32.
pub fn run_plan(plan: &Plan, data: &Batch, outputs: &[String]) -> Result<Vec<Vec<f32>>, RunError> {
    let inputs: TVec<TValue> = data
        .inputs
        .iter()
        .map(|input| {
            match &input.elements {
                Elements::Float(v) => Tensor::from_shape(&input.shape, v),
                Elements::Int(v) => Tensor::from_shape(&input.shape, v),
            }
            .map(TValue::from)
            .map_err(|e| RunError::Runtime(format!("{e}")))
        })
        .collect::<Result<_, _>>()?;
    let result = guarded(|| plan.run(inputs).map_err(|e| RunError::Runtime(format!("{e:#}"))))?;
    result
        .iter()
        .zip(outputs)
        .map(|(out, name)| {
            let out = out
                .cast_to::<f32>()
                .map_err(|e| RunError::Runtime(format!("output '{name}': {e}")))?;
            let view = out
                .to_plain_array_view::<f32>()
                .map_err(|e| RunError::Runtime(format!("output '{name}': {e}")))?;
            Ok(view.iter().copied().collect())
        })
        .collect()
}

/// Loads `bytes` into tract with each input fixed to the shape and type of
/// `data`'s (a batch of the size the plan is for) and `outputs` as the
/// outputs, optimised and runnable.
pub fn prepare(
    bytes: &[u8],
    outputs: &[String],
    data: &Batch,
    external_dir: Option<&std::path::Path>,
) -> Result<Plan, RunError> {
    guarded(|| prepare_unguarded(bytes, outputs, data, external_dir))
}

fn prepare_unguarded(
    bytes: &[u8],
    outputs: &[String],
    data: &Batch,
    external_dir: Option<&std::path::Path>,
) -> Result<Plan, RunError> {
    let fail = |e: TractError| RunError::Runtime(format!("{e:#}"));
    let mut model = if let Some(model_dir) = external_dir {
        // External weights resolve against the model's folder.
        let tmp = tempfile::Builder::new()
            .prefix(".eexc-run-")
            .suffix(".onnx")
            .tempfile_in(model_dir)
            .map_err(|e| RunError::Runtime(format!("{}: {e}", model_dir.display())))?;
        std::fs::write(tmp.path(), bytes).map_err(|e| RunError::Runtime(e.to_string()))?;
        tract_onnx::onnx().model_for_path(tmp.path()).map_err(fail)?
    } else {
        tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(fail)?
    };
    for (at, input) in data.inputs.iter().enumerate() {
        let datum = match input.elements {
            Elements::Float(_) => f32::datum_type(),
            Elements::Int(_) => i64::datum_type(),
        };
        model
            .set_input_fact(at, InferenceFact::dt_shape(datum, &input.shape))
            .map_err(fail)?;
    }
    let outlets: Vec<OutletId> = outputs
        .iter()
        .map(|name| {
            model
                .find_outlet_label(name)
                .or_else(|| model.node_by_name(name).ok().map(|n| OutletId::new(n.id, 0)))
                .ok_or_else(|| RunError::Runtime(format!("tract lost the output '{name}'")))
        })
        .collect::<Result<_, _>>()?;
    model.select_output_outlets(&outlets).map_err(fail)?;
    model.into_optimized().and_then(|m| m.into_runnable()).map_err(fail)
}
