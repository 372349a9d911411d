//! A forward pass's outputs as shards: a folder of `.npz` or `.safetensors`
//! files, one per batch or worker, each holding one array per output of the
//! pass model (rows first), and a `manifest.json` that lists the shards in
//! row order and names the pass model they came from (the digest of its
//! graph). Any runtime can write them; `fit` and `calibrate` read them one
//! shard at a time. docs/shards.md states the format.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::RunError;

/// The manifest's schema name; a change of layout gets a new one.
pub const SCHEMA: &str = "eexc.shards/1";
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    /// The digest of the pass model's graph (`eexc.pass` metadata of the
    /// model `--pass-model` writes).
    pub pass_model: String,
    /// The arrays every shard holds for the pass model's outputs.
    pub outputs: Vec<String>,
    /// The array every shard holds with the rows' class labels, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// In row order.
    pub shards: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Relative to the manifest's folder.
    pub file: String,
    pub rows: usize,
}

/// The pass's outputs read back: one row-major buffer per output, as the
/// in-process pass returns them, and the labels the shards carry.
pub struct ShardOutputs {
    pub columns: Vec<Vec<f32>>,
    pub rows: usize,
    pub labels: Option<Vec<i64>>,
}

/// One array of a shard: its shape (rows first) and values.
enum Values {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

struct Array {
    shape: Vec<usize>,
    values: Values,
}

/// `DIR` or `DIR/manifest.json` → (folder, manifest path).
fn manifest_path(at: &Path) -> (PathBuf, PathBuf) {
    if at.is_dir() {
        (at.to_path_buf(), at.join(MANIFEST))
    } else {
        let dir = at
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (dir, at.to_path_buf())
    }
}

/// A folder of shards with its manifest read and checked.
pub struct Opened {
    pub manifest: Manifest,
    /// Where the shard files are.
    dir: PathBuf,
    /// The manifest file, for messages.
    path: PathBuf,
    /// Rows in all shards.
    pub rows: usize,
}

/// Reads and checks the manifest at `at` (a folder, or the manifest file).
pub fn open(at: &Path) -> Result<Opened, RunError> {
    let (dir, path) = manifest_path(at);
    let bad = |reason: String| RunError::Data {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "{e}; a folder of shards needs a {MANIFEST} (`eexc manifest DIR --pass-model PASS.onnx` writes one)"
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a shard manifest: {e}")))?;
    if manifest.schema != SCHEMA {
        return Err(bad(format!("schema '{}'; this eexc reads '{SCHEMA}'", manifest.schema)));
    }
    if manifest.shards.is_empty() {
        return Err(bad("lists no shards".into()));
    }
    let mut seen = HashSet::new();
    let mut rows = 0usize;
    for s in &manifest.shards {
        rows = rows
            .checked_add(s.rows)
            .ok_or_else(|| bad("its row counts add up past what this machine can count".into()))?;
        if !seen.insert(&s.file) {
            return Err(bad(format!("lists shard '{}' twice", s.file)));
        }
        if Path::new(&s.file).is_absolute() || s.file.split(['/', '\\']).any(|c| c == "..") {
            return Err(bad(format!(
                "shard '{}': shard files are named relative to the manifest's folder, inside it",
                s.file
            )));
        }
    }
    Ok(Opened {
        manifest,
        dir,
        path,
        rows,
    })
}

impl Opened {
    /// Reads the shards for a pass model with graph digest `digest` and
    /// outputs `outputs`, one shard at a time.
    pub fn read(&self, digest: &str, outputs: &[String], what: &str) -> Result<ShardOutputs, RunError> {
        let Opened {
            manifest,
            dir,
            path: manifest_file,
            rows,
        } = self;
        let rows = *rows;
        let bad = |reason: String| RunError::Data {
            path: manifest_file.clone(),
            reason,
        };
        if manifest.pass_model != digest {
            return Err(bad(format!(
                "the shards come from another pass model (graph digest {}, this model and these options give {}); \
             write the pass model again with --pass-model, run it over the rows and write the manifest again",
                short(&manifest.pass_model),
                short(digest)
            )));
        }
        if let Some(missing) = outputs.iter().find(|o| !manifest.outputs.contains(o)) {
            return Err(bad(format!("lists no output '{missing}', which the pass model has")));
        }
        let progress = super::progress_bar(rows, "rows", what);
        let mut columns: Vec<Vec<f32>> = vec![Vec::new(); outputs.len()];
        let mut widths: Vec<Option<usize>> = vec![None; outputs.len()];
        // Not sized from the manifest: its counts are checked against the shards
        // only as they are read.
        let mut labels = manifest.labels.as_ref().map(|_| Vec::new());
        let mut done = 0;
        for entry in &manifest.shards {
            let path = dir.join(&entry.file);
            let mut shard = Shard::open(&path)?;
            for (i, name) in outputs.iter().enumerate() {
                let array = shard.array(name)?;
                let width = row_width(&path, name, &array, entry.rows)?;
                match widths[i] {
                    Some(w) if w != width => {
                        return Err(RunError::Data {
                            path,
                            reason: format!("array '{name}' has {width} values per row; the shards before it have {w}"),
                        });
                    }
                    _ => widths[i] = Some(width),
                }
                let Values::Float(values) = array.values else {
                    return Err(RunError::Data {
                        path,
                        reason: format!("array '{name}' holds integers; outputs are float32 (or float64)"),
                    });
                };
                if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                    return Err(RunError::Data {
                        path,
                        reason: format!(
                            "array '{name}', row {}: a non-finite value ({})",
                            at / width.max(1),
                            values[at]
                        ),
                    });
                }
                columns[i].extend(values);
            }
            if let (Some(name), Some(all)) = (&manifest.labels, labels.as_mut()) {
                let array = shard.array(name)?;
                row_width(&path, name, &array, entry.rows)?;
                let Values::Int(values) = array.values else {
                    return Err(RunError::Data {
                        path,
                        reason: format!("labels '{name}' are floats; labels are int64 (or int32)"),
                    });
                };
                if array.shape.len() != 1 {
                    return Err(RunError::Data {
                        path,
                        reason: format!("labels '{name}' have shape {:?}; one label per row", array.shape),
                    });
                }
                all.extend(values);
            }
            done += entry.rows;
            progress.set_position(done as u64);
        }
        progress.finish_and_clear();
        Ok(ShardOutputs { columns, rows, labels })
    }
}

/// Values per row of `array`, whose first dimension must be the shard's row
/// count as the manifest gives it.
fn row_width(path: &Path, name: &str, array: &Array, rows: usize) -> Result<usize, RunError> {
    match array.shape.first() {
        Some(&first) if first == rows => array.shape[1..]
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| RunError::Data {
                path: path.to_path_buf(),
                reason: format!("array '{name}' has shape {:?}, too many values per row", array.shape),
            }),
        _ => Err(RunError::Data {
            path: path.to_path_buf(),
            reason: format!(
                "array '{name}' has shape {:?}; the manifest gives this shard {rows} rows (rows first)",
                array.shape
            ),
        }),
    }
}

/// A digest shortened for messages.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// One shard file, opened.
enum Shard {
    Npz {
        path: PathBuf,
        archive: npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>,
    },
    SafeTensors {
        path: PathBuf,
        map: memmap2::Mmap,
    },
}

impl Shard {
    fn open(path: &Path) -> Result<Shard, RunError> {
        let bad = |reason: String| RunError::Data {
            path: path.to_path_buf(),
            reason,
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => {
                let archive = npyz::npz::NpzArchive::open(path).map_err(|e| bad(format!("not an .npz file: {e}")))?;
                Ok(Shard::Npz {
                    path: path.to_path_buf(),
                    archive,
                })
            }
            Some("safetensors") => {
                let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
                // SAFETY: shards are read-only inputs; a file truncated under
                // us is the same hazard as for the models eexc maps.
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))?;
                Ok(Shard::SafeTensors {
                    path: path.to_path_buf(),
                    map,
                })
            }
            _ => Err(bad("a shard is an .npz or a .safetensors file".into())),
        }
    }

    fn array(&mut self, name: &str) -> Result<Array, RunError> {
        match self {
            Shard::Npz { path, archive } => {
                let bad = |reason: String| RunError::Data {
                    path: path.clone(),
                    reason,
                };
                let mut names: Vec<String> = archive.array_names().map(str::to_string).collect();
                if !names.iter().any(|n| n == name) {
                    names.sort();
                    return Err(bad(format!(
                        "no array '{name}' (the shard holds: {})",
                        names.join(", ")
                    )));
                }
                let bytes =
                    super::samples::npz_member(archive, name).map_err(|e| bad(format!("array '{name}': {e}")))?;
                super::samples::check_npy_shape(&bytes).map_err(|e| bad(format!("array '{name}': {e}")))?;
                let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("array '{name}': {e}")))?;
                // Each element takes at least 4 bytes: a header that claims
                // more than the member holds is refused before anything is
                // allocated for it.
                if npy.len().saturating_mul(4) > bytes.len() as u64 {
                    return Err(bad(format!(
                        "array '{name}' declares shape {:?}, more values than it holds",
                        npy.shape()
                    )));
                }
                if npy.order() != npyz::Order::C {
                    return Err(bad(format!("array '{name}' is Fortran-ordered; save it in C order")));
                }
                let shape = npy.shape().iter().map(|&d| d as usize).collect();
                let descr = npy.dtype().descr();
                let kind = descr
                    .trim_matches('\'')
                    .trim_start_matches(['<', '>', '=', '|'])
                    .to_string();
                let fail = |e: std::io::Error| bad(format!("array '{name}': {e}"));
                let values = match kind.as_str() {
                    "f4" => Values::Float(npy.into_vec::<f32>().map_err(fail)?),
                    "f8" => Values::Float(
                        npy.into_vec::<f64>()
                            .map_err(fail)?
                            .into_iter()
                            .map(|v| v as f32)
                            .collect(),
                    ),
                    "i8" | "i4" => {
                        Values::Int(super::samples::npy_ints(npy).map_err(|e| bad(format!("array '{name}': {e}")))?)
                    }
                    _ => {
                        return Err(bad(format!(
                            "array '{name}' has element type {descr}; outputs are float32 or float64, labels int64 or int32"
                        )));
                    }
                };
                Ok(Array { shape, values })
            }
            Shard::SafeTensors { path, map } => {
                let bad = |reason: String| RunError::Data {
                    path: path.clone(),
                    reason,
                };
                let tensors = safetensors::SafeTensors::deserialize(map)
                    .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
                let view = tensors.tensor(name).map_err(|_| {
                    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
                    names.sort();
                    bad(format!("no array '{name}' (the shard holds: {})", names.join(", ")))
                })?;
                let data = view.data();
                let values = match view.dtype() {
                    safetensors::Dtype::F32 => Values::Float(
                        data.chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect(),
                    ),
                    safetensors::Dtype::F64 => Values::Float(
                        data.chunks_exact(8)
                            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                            .collect(),
                    ),
                    safetensors::Dtype::I64 => Values::Int(
                        data.chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                            .collect(),
                    ),
                    safetensors::Dtype::I32 => Values::Int(
                        data.chunks_exact(4)
                            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                            .collect(),
                    ),
                    other => {
                        return Err(bad(format!(
                            "array '{name}' has element type {other:?}; outputs are F32 or F64, labels I64 or I32"
                        )));
                    }
                };
                Ok(Array {
                    shape: view.shape().to_vec(),
                    values,
                })
            }
        }
    }

    /// The row count of the shard: the first dimension its arrays share.
    fn rows(&mut self, outputs: &[String]) -> Result<usize, RunError> {
        let path = match self {
            Shard::Npz { path, .. } | Shard::SafeTensors { path, .. } => path.clone(),
        };
        let mut rows = None;
        for name in outputs {
            let array = self.array(name)?;
            let first = array.shape.first().copied().ok_or_else(|| RunError::Data {
                path: path.clone(),
                reason: format!("array '{name}' is a scalar; outputs are rows first"),
            })?;
            match rows {
                Some(r) if r != first => {
                    return Err(RunError::Data {
                        path,
                        reason: format!("array '{name}' has {first} rows; the arrays before it have {r}"),
                    });
                }
                _ => rows = Some(first),
            }
        }
        Ok(rows.unwrap_or(0))
    }
}

/// Writes `DIR/manifest.json` for the shard files in `dir` (`.npz` and
/// `.safetensors`, in file-name order, which is row order), checking that
/// each holds every output (and the labels) with one row count.
pub fn write_manifest(
    dir: &Path,
    digest: &str,
    outputs: &[String],
    labels: Option<&str>,
) -> Result<Manifest, RunError> {
    let listing = std::fs::read_dir(dir).map_err(|e| RunError::Data {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<String> = listing
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && (n.ends_with(".npz") || n.ends_with(".safetensors")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(RunError::Data {
            path: dir.to_path_buf(),
            reason: "no .npz or .safetensors shards in this folder".into(),
        });
    }
    let mut names: Vec<String> = outputs.to_vec();
    names.extend(labels.map(str::to_string));
    let mut shards = Vec::new();
    for file in files {
        let rows = Shard::open(&dir.join(&file))?.rows(&names)?;
        shards.push(ShardEntry { file, rows });
    }
    let manifest = Manifest {
        schema: SCHEMA.into(),
        pass_model: digest.into(),
        outputs: outputs.to_vec(),
        labels: labels.map(str::to_string),
        shards,
    };
    save_manifest(dir, &manifest)?;
    Ok(manifest)
}

fn save_manifest(dir: &Path, manifest: &Manifest) -> Result<(), RunError> {
    let path = dir.join(MANIFEST);
    let mut json = serde_json::to_vec_pretty(manifest).map_err(|e| RunError::Runtime(e.to_string()))?;
    json.push(b'\n');
    crate::onnx::write_atomically(&path, &json).map_err(|e| RunError::Data {
        path,
        reason: e.to_string(),
    })
}

/// Rows per shard that `write` makes.
pub const ROWS_PER_SHARD: usize = 4096;

/// Writes a pass's outputs (`columns`, one row-major buffer per output, of
/// `rows` rows) to `dir` as `.safetensors` shards of [`ROWS_PER_SHARD`]
/// rows and a manifest, which is written last, so that a folder with a
/// manifest is complete.
pub fn write(dir: &Path, digest: &str, outputs: &[String], columns: &[Vec<f32>], rows: usize) -> Result<(), RunError> {
    let fail = |path: &Path, reason: String| RunError::Data {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let widths: Vec<usize> = columns.iter().map(|c| c.len() / rows.max(1)).collect();
    let mut shards = Vec::new();
    let mut first = 0;
    while first < rows {
        let n = ROWS_PER_SHARD.min(rows - first);
        let file = format!("part-{:05}.safetensors", shards.len());
        let bytes: Vec<Vec<u8>> = columns
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                c[first * w..(first + n) * w]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            })
            .collect();
        let views = outputs
            .iter()
            .zip(&bytes)
            .zip(&widths)
            .map(|((name, b), &w)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, w], b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| RunError::Runtime(format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = safetensors::serialize(views, None).map_err(|e| RunError::Runtime(e.to_string()))?;
        let path = dir.join(&file);
        crate::onnx::write_atomically(&path, &encoded).map_err(|e| fail(&path, e.to_string()))?;
        shards.push(ShardEntry { file, rows: n });
        first += n;
    }
    save_manifest(
        dir,
        &Manifest {
            schema: SCHEMA.into(),
            pass_model: digest.into(),
            outputs: outputs.to_vec(),
            labels: None,
            shards,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn written_shards_read_back_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let rows = ROWS_PER_SHARD + 3;
        let a: Vec<f32> = (0..rows * 2).map(|v| v as f32).collect();
        let b: Vec<f32> = (0..rows).map(|v| -(v as f32)).collect();
        write(dir.path(), "d1", &outputs(), &[a.clone(), b.clone()], rows).unwrap();
        let manifest = open(dir.path()).unwrap().manifest;
        assert_eq!(
            manifest.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            [ROWS_PER_SHARD, 3]
        );
        let back = open(dir.path())
            .and_then(|o| o.read("d1", &outputs(), "reading"))
            .unwrap();
        assert_eq!(back.rows, rows);
        assert_eq!(back.columns, vec![a, b]);
        assert!(back.labels.is_none());
        // The manifest written from the folder lists the same shards.
        let again = write_manifest(dir.path(), "d1", &outputs(), None).unwrap();
        assert_eq!(again, manifest);
    }

    #[test]
    fn another_pass_models_shards_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "aaaaaaaaaaaaaaaa",
            &outputs(),
            &[vec![1.0; 4], vec![2.0; 2]],
            2,
        )
        .unwrap();
        let err = open(dir.path())
            .and_then(|o| o.read("bbbbbbbbbbbbbbbb", &outputs(), "reading"))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("manifest.json") && text.contains("another pass model"),
            "{text}"
        );
        let err = open(dir.path())
            .and_then(|o| o.read("aaaaaaaaaaaaaaaa", &["c".into()], "reading"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no output 'c'"), "{err}");
    }

    #[test]
    fn a_manifest_that_disagrees_with_its_shards_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "d", &outputs(), &[vec![1.0; 4], vec![2.0; 2]], 2).unwrap();
        let mut manifest = open(dir.path()).unwrap().manifest;
        manifest.shards[0].rows = 3;
        save_manifest(dir.path(), &manifest).unwrap();
        let err = open(dir.path())
            .and_then(|o| o.read("d", &outputs(), "reading"))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("part-00000.safetensors") && err.to_string().contains("3 rows"),
            "{err}"
        );
        manifest.shards[0].file = "../elsewhere.npz".into();
        save_manifest(dir.path(), &manifest).unwrap();
        let err = open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("inside it"), "{err}");
        std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
        let err = open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("eexc manifest"), "{err}");
    }
}
