//! Reading and writing `.onnx` files.

use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::{Message, MessageFull};

use super::OnnxError;
use super::canonical;
use super::external;
use super::proto::ModelProto;

/// A model as read from disk, with where it came from (external data is
/// resolved relative to `base_dir`; its bytes are never read at load time).
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub proto: ModelProto,
    pub path: PathBuf,
    pub base_dir: PathBuf,
    /// Size of the `.onnx` file itself.
    pub file_bytes: u64,
    /// Total bytes of tensor data held in external files.
    pub external_bytes: u64,
}

/// Reads and decodes a model file, and checks that every external-data
/// reference points inside an existing file (without reading the weights).
pub fn load_model(path: &Path) -> Result<LoadedModel, OnnxError> {
    let mut loaded = read_model(path)?;
    let refs = external::collect_references(&loaded.proto);
    loaded.external_bytes = external::validate(&refs, &loaded.base_dir, path)?;
    Ok(loaded)
}

/// [`load_model`], then the schema checks every transform relies on
/// ([`super::validate`]): what `insert-exits`, `optimize`, `fit`,
/// `calibrate` and `eval` read their model with.
pub fn load_model_for_transform(path: &Path) -> Result<LoadedModel, OnnxError> {
    let loaded = load_model(path)?;
    super::validate::check_model(&loaded.proto).map_err(|reason| OnnxError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(loaded)
}

impl LoadedModel {
    /// The folder external data resolves against, when the model has any:
    /// what a runtime needs to be pointed at to find the weights.
    pub fn external_dir(&self) -> Option<&Path> {
        (!external::collect_references(&self.proto).is_empty()).then_some(self.base_dir.as_path())
    }
}

/// Reads and decodes a model file without looking at its external-data
/// files (`external_bytes` stays 0): for tools that only show the model as
/// stored, such as the printer.
pub fn read_model(path: &Path) -> Result<LoadedModel, OnnxError> {
    let read_err = |source| OnnxError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    if file.metadata().map_err(read_err)?.len() == 0 {
        return Err(OnnxError::Empty {
            path: path.to_path_buf(),
        });
    }
    // SAFETY: the mapping is read-only and eexc never writes its inputs; as
    // with any tool that maps model files, another process truncating the
    // file while we run is outside what we can guard against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?;
    // Decoding from the mapping lets `raw_data` fields share its pages: the
    // weights are neither copied nor read unless something uses them.
    let bytes = bytes::Bytes::from_owner(map);
    let proto = decode(ModelProto::parse_from_tokio_bytes(&bytes), path)?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedModel {
        proto,
        path: path.to_path_buf(),
        base_dir,
        file_bytes: bytes.len() as u64,
        external_bytes: 0,
    })
}

/// Decodes model bytes; `origin` is only used to name the file in errors.
pub fn load_model_from_bytes(bytes: &[u8], origin: &Path) -> Result<ModelProto, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Empty {
            path: origin.to_path_buf(),
        });
    }
    decode(ModelProto::parse_from_bytes(bytes), origin)
}

/// Turns a decoding result into a model, or an error naming `origin`.
fn decode(parsed: protobuf::Result<ModelProto>, origin: &Path) -> Result<ModelProto, OnnxError> {
    let proto = parsed.map_err(|e| OnnxError::Decode {
        path: origin.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Any byte string that happens to decode is a "valid protobuf"; a model
    // must at least say which IR it follows and carry a graph.
    let not_a_model = |reason: &str| OnnxError::NotAModel {
        path: origin.to_path_buf(),
        reason: reason.to_string(),
    };
    match proto.ir_version {
        None => return Err(not_a_model("no ir_version field")),
        Some(v) if v <= 0 => return Err(not_a_model(&format!("invalid ir_version {v}"))),
        Some(_) => {}
    }
    if proto.graph.is_none() {
        return Err(not_a_model("no graph"));
    }
    Ok(proto)
}

/// Encodes `model` and writes it to `out` atomically. When the model refers to
/// external data and `source_dir` (where those files live now) differs from
/// the output folder, the referenced files are copied along so the written
/// model is self-contained.
pub fn save_model(model: &ModelProto, out: &Path, source_dir: Option<&Path>) -> Result<(), OnnxError> {
    let mut bytes = model.write_to_bytes().map_err(|e| OnnxError::Encode {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    canonical::sort_unknown_fields(&mut bytes, &ModelProto::descriptor());
    if let Some(source_dir) = source_dir {
        let refs = external::collect_references(model);
        external::copy_files(&refs, source_dir, output_dir(out), out)?;
    }
    write_atomically(out, &bytes)
}

fn output_dir(out: &Path) -> &Path {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over
/// `path`, so readers never see a half-written file and a failure leaves any
/// previous file untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OnnxError> {
    let write_err = |source| OnnxError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".eexc-")
        .suffix(".tmp")
        .tempfile_in(output_dir(path))
        .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    // Temporary files are private (0600); the result should read like any
    // other output: the permissions of the file it replaces, else 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_named_as_such() {
        let err = load_model_from_bytes(&[], Path::new("x.onnx")).unwrap_err();
        assert_eq!(err.to_string(), "x.onnx: empty file, not an ONNX model");
    }

    #[test]
    fn protobuf_without_graph_is_not_a_model() {
        let mut m = ModelProto::new();
        m.set_ir_version(8);
        let bytes = m.write_to_bytes().unwrap();
        let err = load_model_from_bytes(&bytes, Path::new("m.onnx")).unwrap_err();
        assert!(matches!(err, OnnxError::NotAModel { .. }), "{err}");
        assert!(err.to_string().contains("no graph"));
    }

    #[test]
    fn truncated_bytes_fail_to_decode() {
        let mut m = ModelProto::new();
        m.set_ir_version(8);
        m.set_producer_name("a fairly long producer name".into());
        let bytes = m.write_to_bytes().unwrap();
        let err = load_model_from_bytes(&bytes[..bytes.len() - 4], Path::new("t.onnx")).unwrap_err();
        assert!(matches!(err, OnnxError::Decode { .. }), "{err}");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomically(&p, b"first version").unwrap();
        write_atomically(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomically(&p, b"x").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
    }
}
