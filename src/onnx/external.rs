//! External data: tensors whose bytes live in side files referenced by a
//! relative `location` (plus optional `offset`/`length`). We only ever look at
//! file metadata here; weights are never read into memory.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use super::OnnxError;
use super::proto::{GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto, tensor_proto};

/// One tensor's reference into an external file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    pub tensor: String,
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

/// Every external-data reference in the model: graph and subgraph
/// initializers, tensor attributes, functions and training graphs.
pub fn collect_references(model: &ModelProto) -> Vec<ExternalRef> {
    let mut refs = Vec::new();
    for_each_tensor(model, &mut |t| {
        if t.data_location() == tensor_proto::DataLocation::EXTERNAL {
            refs.push(reference_of(t));
        }
    });
    refs
}

pub(crate) fn reference_of(t: &TensorProto) -> ExternalRef {
    let mut r = ExternalRef {
        tensor: t.name().to_string(),
        location: String::new(),
        offset: 0,
        length: None,
    };
    for kv in &t.external_data {
        match kv.key() {
            "location" => r.location = kv.value().to_string(),
            // Unparsable numbers surface as an error in `validate` via u64::MAX.
            "offset" => r.offset = kv.value().parse().unwrap_or(u64::MAX),
            "length" => r.length = Some(kv.value().parse().unwrap_or(u64::MAX)),
            _ => {}
        }
    }
    r
}

/// Calls `f` on every tensor stored anywhere in the model.
pub fn for_each_tensor(model: &ModelProto, f: &mut dyn FnMut(&TensorProto)) {
    if let Some(g) = model.graph.as_ref() {
        graph_tensors(g, f);
    }
    for func in &model.functions {
        for n in &func.node {
            node_tensors(n, f);
        }
    }
    for ti in &model.training_info {
        if let Some(g) = ti.initialization.as_ref() {
            graph_tensors(g, f);
        }
        if let Some(g) = ti.algorithm.as_ref() {
            graph_tensors(g, f);
        }
    }
}

fn graph_tensors(g: &GraphProto, f: &mut dyn FnMut(&TensorProto)) {
    g.initializer.iter().for_each(&mut *f);
    for s in &g.sparse_initializer {
        sparse_tensors(s, f);
    }
    for n in &g.node {
        node_tensors(n, f);
    }
}

fn sparse_tensors(s: &SparseTensorProto, f: &mut dyn FnMut(&TensorProto)) {
    if let Some(v) = s.values.as_ref() {
        f(v);
    }
    if let Some(i) = s.indices.as_ref() {
        f(i);
    }
}

fn node_tensors(n: &NodeProto, f: &mut dyn FnMut(&TensorProto)) {
    for a in &n.attribute {
        if let Some(t) = a.t.as_ref() {
            f(t);
        }
        a.tensors.iter().for_each(&mut *f);
        if let Some(s) = a.sparse_tensor.as_ref() {
            sparse_tensors(s, f);
        }
        for s in &a.sparse_tensors {
            sparse_tensors(s, f);
        }
        if let Some(g) = a.g.as_ref() {
            graph_tensors(g, f);
        }
        for g in &a.graphs {
            graph_tensors(g, f);
        }
    }
}

/// A location must stay inside the model's folder (as the ONNX checker
/// requires): relative, with no `..` or root components.
pub(crate) fn checked_relative(location: &str) -> Result<PathBuf, String> {
    if location.is_empty() {
        return Err("no 'location' entry".into());
    }
    let p = PathBuf::from(location);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "location '{location}' must be a relative path inside the model's folder"
        ));
    }
    Ok(p)
}

/// Checks each reference against the file system (existence and size only)
/// and returns the total number of external bytes referenced.
pub fn validate(refs: &[ExternalRef], base_dir: &Path, model_path: &Path) -> Result<u64, OnnxError> {
    let mut total = 0u64;
    for r in refs {
        let fail = |reason: String| OnnxError::ExternalData {
            path: model_path.to_path_buf(),
            tensor: r.tensor.clone(),
            reason,
        };
        let rel = checked_relative(&r.location).map_err(fail)?;
        let file = base_dir.join(&rel);
        let size = std::fs::metadata(&file)
            .map_err(|e| fail(format!("cannot open '{}': {e}", file.display())))?
            .len();
        let length = r.length.unwrap_or(size.saturating_sub(r.offset));
        let end = r.offset.saturating_add(length);
        if r.offset == u64::MAX || length == u64::MAX || end > size {
            return Err(fail(format!(
                "'{}' is {size} bytes but the tensor needs bytes {}..{}",
                r.location, r.offset, end
            )));
        }
        total += length;
    }
    Ok(total)
}

/// Copies the referenced external files from `source_dir` to `dest_dir`
/// (same relative locations) unless they already are the same file.
pub fn copy_files(refs: &[ExternalRef], source_dir: &Path, dest_dir: &Path, out: &Path) -> Result<(), OnnxError> {
    let locations: BTreeSet<&str> = refs.iter().map(|r| r.location.as_str()).collect();
    for location in locations {
        let fail = |reason: String| OnnxError::ExternalData {
            path: out.to_path_buf(),
            tensor: refs
                .iter()
                .find(|r| r.location == location)
                .map(|r| r.tensor.clone())
                .unwrap_or_default(),
            reason,
        };
        let rel = checked_relative(location).map_err(fail)?;
        let (from, to) = (source_dir.join(&rel), dest_dir.join(&rel));
        if same_file(&from, &to) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create '{}': {e}", parent.display())))?;
        }
        let tmp = to.with_extension("eexc-copy.tmp");
        std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &to))
            .map_err(|e| fail(format!("cannot copy '{}' to '{}': {e}", from.display(), to.display())))?;
    }
    Ok(())
}

/// The model with the bytes of every in-memory initializer of at least
/// `min_bytes` (main graph and subgraphs, in graph order) moved to one
/// external file `location` next to the model, and that file's content as
/// the byte ranges to write in order (shared with the model's buffers, not
/// copied). For a model whose encoding would pass protobuf's 2 GiB limit.
pub fn move_initializers_out(model: &ModelProto, location: &str, min_bytes: usize) -> (ModelProto, Vec<bytes::Bytes>) {
    let mut moved = model.clone();
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    if let Some(g) = moved.graph.as_mut() {
        move_out_of_graph(g, location, min_bytes, &mut offset, &mut chunks);
    }
    (moved, chunks)
}

fn move_out_of_graph(
    g: &mut GraphProto,
    location: &str,
    min_bytes: usize,
    offset: &mut u64,
    chunks: &mut Vec<bytes::Bytes>,
) {
    for t in g.initializer.iter_mut() {
        if t.data_location() == tensor_proto::DataLocation::EXTERNAL {
            continue;
        }
        // Float32 weights kept in `float_data` move too, as their
        // little-endian bytes (what `raw_data` would hold).
        let data: bytes::Bytes = match t.raw_data.as_ref().filter(|r| !r.is_empty()) {
            Some(raw) => raw.clone(),
            None if t.data_type() == tensor_proto::DataType::FLOAT as i32 && !t.float_data.is_empty() => t
                .float_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
            None => continue,
        };
        if data.len() < min_bytes {
            continue;
        }
        t.raw_data = None;
        t.float_data.clear();
        t.set_data_location(tensor_proto::DataLocation::EXTERNAL);
        t.external_data.clear();
        for (key, value) in [
            ("location", location.to_string()),
            ("offset", offset.to_string()),
            ("length", data.len().to_string()),
        ] {
            let mut kv = super::proto::StringStringEntryProto::new();
            kv.set_key(key.into());
            kv.set_value(value);
            t.external_data.push(kv);
        }
        *offset += data.len() as u64;
        chunks.push(data);
    }
    for n in g.node.iter_mut() {
        for a in n.attribute.iter_mut() {
            if let Some(sub) = a.g.as_mut() {
                move_out_of_graph(sub, location, min_bytes, offset, chunks);
            }
            for sub in a.graphs.iter_mut() {
                move_out_of_graph(sub, location, min_bytes, offset, chunks);
            }
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_must_stay_inside_the_model_folder() {
        assert!(checked_relative("weights.bin").is_ok());
        assert!(checked_relative("sub/weights.bin").is_ok());
        assert!(checked_relative("../weights.bin").is_err());
        assert!(checked_relative("/etc/passwd").is_err());
        assert!(checked_relative("").is_err());
    }

    #[test]
    fn reference_reads_offset_and_length() {
        let mut t = TensorProto::new();
        t.set_name("w".into());
        t.set_data_location(tensor_proto::DataLocation::EXTERNAL);
        for (k, v) in [("location", "a.bin"), ("offset", "64"), ("length", "128")] {
            let mut kv = super::super::proto::StringStringEntryProto::new();
            kv.set_key(k.into());
            kv.set_value(v.into());
            t.external_data.push(kv);
        }
        let r = reference_of(&t);
        assert_eq!((r.location.as_str(), r.offset, r.length), ("a.bin", 64, Some(128)));
    }

    #[test]
    fn validate_rejects_out_of_range_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [0u8; 100]).unwrap();
        let r = |loc: &str, offset, length| ExternalRef {
            tensor: "w".into(),
            location: loc.into(),
            offset,
            length,
        };
        let model = Path::new("m.onnx");
        assert_eq!(validate(&[r("w.bin", 0, Some(100))], dir.path(), model).unwrap(), 100);
        assert_eq!(validate(&[r("w.bin", 36, None)], dir.path(), model).unwrap(), 64);
        let err = validate(&[r("w.bin", 64, Some(64))], dir.path(), model).unwrap_err();
        assert!(err.to_string().contains("is 100 bytes"), "{err}");
        let err = validate(&[r("gone.bin", 0, None)], dir.path(), model).unwrap_err();
        assert!(
            err.to_string().contains("tensor 'w'") && err.to_string().contains("gone.bin"),
            "{err}"
        );
    }
}
