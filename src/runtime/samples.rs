//! Sample data: `.npy` arrays (or one array of an `.npz`), read batch by
//! batch so `.npy` inputs never need to sit in memory whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::RunError;

/// Sample inputs (and their labels) in memory.
#[derive(Debug, Clone)]
pub struct MemoryRows {
    /// What messages call them (the file they were taken from, and which part).
    pub name: PathBuf,
    /// Full shape, rows first.
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub labels: Option<Vec<i64>>,
}

/// A float32 `.npy` file opened for reading rows in order (or rows in
/// memory, read the same way).
pub struct Samples {
    path: PathBuf,
    /// Full shape, rows first.
    pub shape: Vec<usize>,
    values: Box<dyn Iterator<Item = std::io::Result<f32>>>,
}

impl Samples {
    pub fn open(path: &Path) -> Result<Samples, RunError> {
        let bad = |reason: String| RunError::Data {
            path: path.to_path_buf(),
            reason,
        };
        let npy = open_array(path).map_err(bad)?;
        if npy.order() != npyz::Order::C {
            return Err(bad("Fortran-ordered array; save it in C order".into()));
        }
        let descr = npy.dtype().descr();
        if !matches!(descr.trim_matches('\''), "<f4" | ">f4" | "=f4") {
            return Err(bad(format!("element type {descr}; fit takes float32 inputs")));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        if shape.is_empty() || shape[0] == 0 {
            return Err(bad("no rows".into()));
        }
        let values = npy.data::<f32>().map_err(|e| bad(e.to_string()))?;
        Ok(Samples {
            path: path.to_path_buf(),
            shape,
            values: Box::new(values),
        })
    }

    /// Rows held in memory (compile's split of `--data`), read as a file's.
    pub fn in_memory(rows: std::sync::Arc<MemoryRows>) -> Samples {
        let count = rows.values.len();
        Samples {
            path: rows.name.clone(),
            shape: rows.shape.clone(),
            values: Box::new((0..count).map(move |i| Ok(rows.values[i]))),
        }
    }

    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The next `rows` rows, flattened; NaN and infinities are refused.
    pub fn next_rows(&mut self, first_row: usize, rows: usize) -> Result<Vec<f32>, RunError> {
        let n = rows * self.row_len();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let v = self
                .values
                .next()
                .ok_or_else(|| RunError::Data {
                    path: self.path.clone(),
                    reason: "file ends before its declared shape".into(),
                })?
                .map_err(|e| RunError::Data {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            if !v.is_finite() {
                let row = first_row + out.len() / self.row_len();
                return Err(RunError::Data {
                    path: self.path.clone(),
                    reason: format!("row {row} holds a non-finite value ({v})"),
                });
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Integer class labels (`int64` or `int32`, one per row).
pub fn read_labels(path: &Path, rows: usize, classes: i64) -> Result<Vec<usize>, RunError> {
    let bad = |reason: String| RunError::Data {
        path: path.to_path_buf(),
        reason,
    };
    let npy = open_array(path).map_err(bad)?;
    if npy.shape() != [rows as u64] {
        return Err(bad(format!(
            "shape {:?}; the data has {rows} rows, so labels must be [{rows}]",
            npy.shape()
        )));
    }
    let values = npy_ints(npy).map_err(bad)?;
    check_labels(&values, classes, path)
}

/// Labels as class indices, each checked to be one of the model's
/// `classes` (`origin`: where they came from, for the message).
pub fn check_labels(values: &[i64], classes: i64, origin: &Path) -> Result<Vec<usize>, RunError> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if (0..classes).contains(&v) {
                Ok(v as usize)
            } else {
                Err(RunError::Data {
                    path: origin.to_path_buf(),
                    reason: format!("row {i}: label {v} is outside the model's classes 0..{}", classes - 1),
                })
            }
        })
        .collect()
}

/// Opens `FILE.npy`, or an array of an `.npz`: `FILE.npz` when it holds one
/// array, `FILE.npz:NAME` to pick one. An `.npz` member is decompressed into
/// memory; a `.npy` file is streamed.
fn open_array(path: &Path) -> Result<npyz::NpyFile<Box<dyn Read>>, String> {
    let spec = path.to_string_lossy();
    let (file, member) = match spec.rsplit_once(".npz:") {
        Some((stem, name)) => (PathBuf::from(format!("{stem}.npz")), Some(name.to_string())),
        None => (path.to_path_buf(), None),
    };
    let is_npz = member.is_some() || file.extension().is_some_and(|e| e == "npz");
    if !is_npz {
        let f = File::open(&file).map_err(|e| e.to_string())?;
        // Large enough for any version-1 header, so the shape is checked
        // from the buffer before npyz reads it.
        let mut reader = BufReader::with_capacity(1 << 17, f);
        check_npy_shape(reader.fill_buf().map_err(|e| e.to_string())?)?;
        let reader: Box<dyn Read> = Box::new(reader);
        return npyz::NpyFile::new(reader).map_err(|e| format!("not a .npy file: {e}"));
    }
    let mut archive = npyz::npz::NpzArchive::open(&file).map_err(|e| format!("not an .npz file: {e}"))?;
    // Sorted: the archive lists its members in no fixed order.
    let mut names: Vec<String> = archive.array_names().map(str::to_string).collect();
    names.sort();
    let name = match (member, names.as_slice()) {
        (Some(m), _) if names.contains(&m) => m,
        (Some(m), _) => {
            return Err(format!(
                "no array '{m}' in the archive (it holds: {})",
                names.join(", ")
            ));
        }
        (None, [one]) => one.clone(),
        (None, _) => {
            return Err(format!(
                "the archive holds {} arrays ({}); name one as FILE.npz:NAME",
                names.len(),
                names.join(", ")
            ));
        }
    };
    let bytes = npz_member(&mut archive, &name)?;
    check_npy_shape(&bytes).map_err(|e| format!("'{name}': {e}"))?;
    let reader: Box<dyn Read> = Box::new(std::io::Cursor::new(bytes));
    npyz::NpyFile::new(reader).map_err(|e| format!("'{name}' is not an array: {e}"))
}

/// Refuses a `.npy` header (at the start of `prefix`) whose shape has more
/// elements than 64 bits hold: npyz multiplies the dims unchecked, which
/// panics in a debug build and wraps in a release one. Anything else wrong
/// with the header is left for npyz to report.
pub(crate) fn check_npy_shape(prefix: &[u8]) -> Result<(), String> {
    let (len, start) = match (prefix.get(..6), prefix.get(6)) {
        (Some(b"\x93NUMPY"), Some(1)) => (prefix.get(8..10).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize), 10),
        (Some(b"\x93NUMPY"), Some(_)) => (
            prefix
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            12,
        ),
        _ => return Ok(()),
    };
    let Some(header) = len.and_then(|len| prefix.get(start..usize::checked_add(start, len)?)) else {
        return Err("the .npy header is cut short, or longer than 128 KiB".to_string());
    };
    let text = String::from_utf8_lossy(header);
    let Some(shape) = text
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('('))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dims, _)| dims)
    else {
        return Ok(());
    };
    let mut elements: u64 = 16; // the widest element, in bytes
    for dim in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let Ok(d) = dim.parse::<u64>() else { return Ok(()) };
        elements = elements
            .checked_mul(d)
            .ok_or_else(|| format!("its shape ({}) has more elements than 64 bits can count", shape.trim()))?;
    }
    Ok(())
}

/// The bytes of array `name` of an `.npz` (its `.npy` member), decompressed.
pub(crate) fn npz_member<R: Read + std::io::Seek>(
    archive: &mut npyz::npz::NpzArchive<R>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    archive
        .zip_archive()
        .by_name(&npyz::npz::file_name_from_array_name(name))
        .map_err(|e| e.to_string())?
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// An integer array's values (int64 or int32) as i64.
pub(super) fn npy_ints<R: Read>(npy: npyz::NpyFile<R>) -> Result<Vec<i64>, String> {
    let descr = npy.dtype().descr();
    let descr = descr.trim_matches('\'');
    if descr.ends_with("i8") {
        npy.into_vec::<i64>().map_err(|e| e.to_string())
    } else if descr.ends_with("i4") {
        Ok(npy
            .into_vec::<i32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(i64::from)
            .collect())
    } else {
        Err(format!("element type {descr}; labels must be int64 (or int32)"))
    }
}

/// Writes `data` (row-major, `shape`) as a `.npy` file, atomically.
pub fn write_npy<T: npyz::Serialize + npyz::AutoSerialize>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), RunError> {
    use npyz::WriterBuilder;
    let fail = |reason: String| RunError::Data {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(|e| fail(e.to_string()))?;
    for v in data {
        w.push(v).map_err(|e| fail(e.to_string()))?;
    }
    w.finish().map_err(|e| fail(e.to_string()))?;
    crate::onnx::write_atomically(path, &bytes).map_err(|e| fail(e.to_string()))
}
