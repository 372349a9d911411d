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
    let bytes = bytes::Bytes::from_owner(mapped::register(map, file));
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

/// The input files eexc has mapped, so that saving can copy a weight's bytes
/// file to file (`copy_file_range`, as `cp` does) instead of reading them
/// through the mapping and writing them back: the kernel copies them and the
/// mapped pages are never touched.
mod mapped {
    use std::sync::{Arc, Mutex, Weak};

    /// One mapped input: the mapping and its open file.
    pub struct MappedFile {
        map: memmap2::Mmap,
        pub file: std::fs::File,
    }

    /// The owner `Bytes::from_owner` keeps alive while any slice of the
    /// mapping (a weight's `raw_data`) is.
    pub struct Shared(Arc<MappedFile>);

    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            &self.0.map
        }
    }

    /// Weak, so that a mapping is unmapped once nothing reads it; a dead
    /// entry can never match, because its address range is only looked up
    /// through a live `Arc`.
    static MAPPED: Mutex<Vec<Weak<MappedFile>>> = Mutex::new(Vec::new());

    pub fn register(map: memmap2::Mmap, file: std::fs::File) -> Shared {
        let shared = Arc::new(MappedFile { map, file });
        if let Ok(mut all) = MAPPED.lock() {
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&shared));
        }
        Shared(shared)
    }

    /// The live mapped file that holds all of `buf`, and `buf`'s offset in it.
    pub fn source_of(buf: &[u8]) -> Option<(Arc<MappedFile>, u64)> {
        let all = MAPPED.lock().ok()?;
        let start = buf.as_ptr() as usize;
        all.iter().filter_map(Weak::upgrade).find_map(|m| {
            let base = m.map.as_ptr() as usize;
            (start >= base && start + buf.len() <= base + m.map.len()).then(|| {
                let offset = (start - base) as u64;
                (m, offset)
            })
        })
    }
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
///
/// The encoding streams into the file: each weight's bytes go from the
/// memory-mapped input straight to `write`, with no buffer of the whole
/// model. A model that keeps unknown fields (from a newer ONNX) is encoded
/// into one buffer instead, to put those fields back in number order.
pub fn save_model(model: &ModelProto, out: &Path, source_dir: Option<&Path>) -> Result<(), OnnxError> {
    save_model_within(model, out, source_dir, MAX_MESSAGE_BYTES)
}

/// [`save_model`] with `limit` as the largest encoding written as one file:
/// past it, the initializers' bytes go to `<out file name>.data` beside it
/// (external data, the form ONNX gives models past 2 GiB), and eexc says so.
fn save_model_within(model: &ModelProto, out: &Path, source_dir: Option<&Path>, limit: u64) -> Result<(), OnnxError> {
    let encode_err = |reason: String| OnnxError::Encode {
        path: out.to_path_buf(),
        reason,
    };
    let size = model.compute_size();
    if size > limit {
        let name = out
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        let location = format!("{name}.data");
        if external::collect_references(model)
            .iter()
            .any(|r| r.location == location)
        {
            return Err(encode_err(format!(
                "the model encodes to {size} bytes, past protobuf's 2 GiB limit, and its external data already uses '{location}'"
            )));
        }
        let (moved, chunks) = external::move_initializers_out(model, &location, EXTERNAL_MIN_BYTES);
        let moved_size = moved.compute_size();
        if moved_size > limit {
            return Err(encode_err(format!(
                "the model encodes to {moved_size} bytes even with its initializers in external data, past protobuf's 2 GiB limit"
            )));
        }
        // The input's own external files first; the recursion below then has
        // nothing left to copy (the new file is written in place).
        if let Some(source_dir) = source_dir {
            let refs = external::collect_references(model);
            external::copy_files(&refs, source_dir, output_dir(out), out)?;
        }
        let data_path = output_dir(out).join(&location);
        write_atomically_with(&data_path, |w| chunks.iter().try_for_each(|c| w.write_all(c)))?;
        eprintln!(
            "eexc: note: {} would encode to {size} bytes, past protobuf's 2 GiB limit: its {} initializers of {EXTERNAL_MIN_BYTES} bytes or more ({} bytes) are in external data, {}",
            out.display(),
            chunks.len(),
            chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
            data_path.display()
        );
        return save_model_within(&moved, out, None, limit);
    }
    let buffered = if canonical::has_unknown_fields(model) {
        let mut bytes = model.write_to_bytes().map_err(|e| encode_err(e.to_string()))?;
        canonical::sort_unknown_fields(&mut bytes, &ModelProto::descriptor());
        Some(bytes)
    } else {
        None
    };
    if let Some(source_dir) = source_dir {
        let refs = external::collect_references(model);
        external::copy_files(&refs, source_dir, output_dir(out), out)?;
    }
    match buffered {
        Some(bytes) => write_atomically(out, &bytes),
        None => write_atomically_with(out, |w| {
            // The sizes computed above are cached in the message, so this is
            // one pass over it.
            let mut stream = protobuf::CodedOutputStream::new(w);
            model
                .write_to_with_cached_sizes(&mut stream)
                .and_then(|()| stream.flush())
                .map_err(|e| std::io::Error::other(e.to_string()))
        }),
    }
}

/// Initializers smaller than this stay in the model file when the rest
/// moves to external data (as the `onnx` package's default threshold).
const EXTERNAL_MIN_BYTES: usize = 1024;

/// Protobuf's limit on one message (2 GiB − 1).
const MAX_MESSAGE_BYTES: u64 = i32::MAX as u64;

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
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// [`write_atomically`], with `write` writing the content: into a temporary
/// file next to `path`, flushed (write-back started as the content goes,
/// see [`WriteBack`]), then renamed over `path`.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), OnnxError> {
    let write_err = |source| OnnxError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".eexc-")
        .suffix(".tmp")
        .tempfile_in(output_dir(path))
        .map_err(write_err)?;
    let mut sink = WriteBack::new(tmp.as_file());
    write(&mut sink).map_err(write_err)?;
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

/// A file being written that asks the kernel to start writing each
/// [`WriteBack::CHUNK`] to disk as soon as it is written (Linux
/// `sync_file_range`), so that the final `fsync` waits for the last chunk
/// only, not for the whole file: the flush overlaps the encoding.
struct WriteBack<'a> {
    file: &'a std::fs::File,
    written: u64,
    started: u64,
    /// Cleared when the kernel cannot copy between these files (another
    /// filesystem on old kernels, a filesystem without the call).
    file_to_file: bool,
}

impl<'a> WriteBack<'a> {
    const CHUNK: u64 = 8 << 20;

    fn new(file: &'a std::fs::File) -> WriteBack<'a> {
        WriteBack {
            file,
            written: 0,
            started: 0,
            file_to_file: true,
        }
    }

    fn start_write_back(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (offset, len) = (
                self.started as libc::off64_t,
                (self.written - self.started) as libc::off64_t,
            );
            // SAFETY: a plain syscall on an open descriptor; it only starts
            // write-back, and its failure (e.g. on a filesystem without it)
            // leaves the final fsync to do the work.
            unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        }
        self.started = self.written;
    }
}

/// Bytes the kernel has copied file to file in this process (what a test
/// can see of the path taken).
static COPIED_FILE_TO_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes of at least this many bytes from a mapped input are copied file
/// to file; smaller ones are not worth the lookup.
#[cfg(target_os = "linux")]
const FILE_TO_FILE_MIN: usize = 64 << 10;

impl WriteBack<'_> {
    /// Copies `buf`, a range of a mapped input file, with `copy_file_range`;
    /// `None` when it is not one or the kernel cannot (then it is written).
    #[cfg(target_os = "linux")]
    fn copy_from_input(&mut self, buf: &[u8]) -> Option<usize> {
        use std::os::fd::AsRawFd;
        if !self.file_to_file || buf.len() < FILE_TO_FILE_MIN {
            return None;
        }
        let (source, offset) = mapped::source_of(buf)?;
        let mut off_in = offset as libc::loff_t;
        // SAFETY: both descriptors are open for the whole call (`source`
        // keeps the input alive); the output offset is the file's own, as
        // for `write`.
        let n = unsafe {
            libc::copy_file_range(
                source.file.as_raw_fd(),
                &mut off_in,
                self.file.as_raw_fd(),
                std::ptr::null_mut(),
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            self.file_to_file = false;
            return None;
        }
        COPIED_FILE_TO_FILE.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Some(n as usize)
    }

    #[cfg(not(target_os = "linux"))]
    fn copy_from_input(&mut self, _buf: &[u8]) -> Option<usize> {
        None
    }
}

impl Write for WriteBack<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.copy_from_input(buf) {
            Some(n) => n,
            None => (&mut &*self.file).write(buf)?,
        };
        self.written += n as u64;
        if self.written - self.started >= Self::CHUNK {
            self.start_write_back();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    /// A model with `tensors` initializers of `bytes` raw bytes each.
    fn model_with_weights(tensors: usize, bytes: usize) -> ModelProto {
        let mut m = ModelProto::new();
        m.set_ir_version(8);
        let g = m.graph.mut_or_insert_default();
        g.set_name("g".into());
        for i in 0..tensors {
            let mut t = crate::onnx::proto::TensorProto::new();
            t.set_name(format!("w{i}"));
            t.set_data_type(2); // uint8
            t.dims = vec![bytes as i64];
            t.set_raw_data((0..bytes).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>().into());
            g.initializer.push(t);
        }
        m
    }

    #[test]
    fn the_streamed_model_is_the_encoded_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        // Weights past the encoder's buffer and past a write-back chunk.
        let m = model_with_weights(3, (WriteBack::CHUNK as usize / 2) + 12_345);
        save_model(&m, &p, None).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), m.write_to_bytes().unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn weights_of_a_mapped_input_are_copied_file_to_file() {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in.onnx"), dir.path().join("out.onnx"));
        let m = model_with_weights(2, 3 * FILE_TO_FILE_MIN + 7);
        std::fs::write(&input, m.write_to_bytes().unwrap()).unwrap();
        let loaded = read_model(&input).unwrap();
        let raw = loaded.proto.graph.as_ref().unwrap().initializer[0]
            .raw_data
            .as_deref()
            .unwrap();
        assert!(
            mapped::source_of(raw).is_some(),
            "raw_data is a slice of the mapped input"
        );
        let before = COPIED_FILE_TO_FILE.load(std::sync::atomic::Ordering::Relaxed);
        save_model(&loaded.proto, &output, None).unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(&input).unwrap());
        let copied = COPIED_FILE_TO_FILE.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(copied >= 2 * raw.len() as u64, "{copied} bytes copied file to file");
        // A buffer of our own is never taken for part of a mapping.
        assert!(mapped::source_of(&vec![0u8; 1 << 20]).is_none());
    }

    #[test]
    fn unknown_fields_are_found_wherever_they_are() {
        let mut m = model_with_weights(2, 4);
        assert!(!canonical::has_unknown_fields(&m));
        let t = &mut m.graph.as_mut().unwrap().initializer[1];
        t.mut_unknown_fields().add_varint(99, 7);
        assert!(canonical::has_unknown_fields(&m));
        // Such a model is encoded whole and its unknown fields sorted; the
        // file still decodes to the same model.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        save_model(&m, &p, None).unwrap();
        let back = ModelProto::parse_from_bytes(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_model_past_the_limit_is_written_with_external_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.onnx");
        // Two initializers of 4 KiB and one of 100 bytes, against a 6 KiB
        // limit (the 2 GiB one, scaled down).
        let mut m = model_with_weights(2, 4096);
        let small = model_with_weights(1, 100).graph.unwrap().initializer.remove(0);
        m.graph.as_mut().unwrap().initializer.push(small.clone());
        save_model_within(&m, &p, None, 6 << 10).unwrap();
        let data = std::fs::read(dir.path().join("big.onnx.data")).unwrap();
        assert_eq!(data.len(), 2 * 4096);
        let loaded = load_model(&p).unwrap();
        assert_eq!(loaded.external_bytes, 2 * 4096);
        let g = loaded.proto.graph.as_ref().unwrap();
        for (i, t) in g.initializer.iter().take(2).enumerate() {
            let r = external::reference_of(t);
            let (at, len) = (r.offset as usize, r.length.unwrap() as usize);
            assert_eq!((r.location.as_str(), len), ("big.onnx.data", 4096));
            let original = m.graph.as_ref().unwrap().initializer[i].raw_data.as_deref().unwrap();
            assert_eq!(&data[at..at + len], original, "tensor {i}");
        }
        // The small one stays in the file.
        assert_eq!(g.initializer[2], small);
    }
}
