//! Sample data: `.npy` arrays (or one array of an `.npz`), read batch by
//! batch so `.npy` inputs never need to sit in memory whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::RunError;

/// A tensor's elements, as sample files hold them: eexc feeds float32
/// inputs (images, features) and int64 inputs (token ids, attention masks).
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Elements {
    pub fn len(&self) -> usize {
        match self {
            Elements::Float(v) => v.len(),
            Elements::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Elements::Float(_) => "float32",
            Elements::Int(_) => "int64",
        }
    }

    /// The elements of rows `rows` (each `row_len` long), in that order.
    fn rows(&self, rows: &[usize], row_len: usize) -> Elements {
        fn pick<T: Copy>(v: &[T], rows: &[usize], row_len: usize) -> Vec<T> {
            rows.iter()
                .flat_map(|&r| v[r * row_len..(r + 1) * row_len].iter().copied())
                .collect()
        }
        match self {
            Elements::Float(v) => Elements::Float(pick(v, rows, row_len)),
            Elements::Int(v) => Elements::Int(pick(v, rows, row_len)),
        }
    }
}

/// One input's part of a batch.
#[derive(Debug, Clone)]
pub struct InputBatch {
    /// The array it came from: its name in an `.npz`, `None` for a lone
    /// array (a `.npy` file, or one picked as `FILE.npz:NAME`).
    pub array: Option<String>,
    /// Full shape, rows first.
    pub shape: Vec<usize>,
    pub elements: Elements,
}

impl InputBatch {
    fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

/// Rows of every data input, side by side: one [`InputBatch`] per input,
/// in the order of the model's data inputs once bound ([`Samples::bind`]).
#[derive(Debug, Clone)]
pub struct Batch {
    pub rows: usize,
    pub inputs: Vec<InputBatch>,
}

impl Batch {
    /// Rows `rows` of this batch, in that order.
    pub fn select(&self, rows: &[usize]) -> Batch {
        Batch {
            rows: rows.len(),
            inputs: self
                .inputs
                .iter()
                .map(|input| {
                    let mut shape = input.shape.clone();
                    shape[0] = rows.len();
                    InputBatch {
                        array: input.array.clone(),
                        shape,
                        elements: input.elements.rows(rows, input.row_len()),
                    }
                })
                .collect(),
        }
    }
}

/// Sample inputs (and their labels) in memory.
#[derive(Debug, Clone)]
pub struct MemoryRows {
    /// What messages call them (the file they were taken from, and which part).
    pub name: PathBuf,
    pub batch: Batch,
    pub labels: Option<Vec<i64>>,
}

/// A data input of a model: its name and whether it takes integers.
#[derive(Debug, Clone, PartialEq)]
pub struct DataInput {
    pub name: String,
    pub int64: bool,
}

/// One array of a sample file, read row by row.
struct Column {
    array: Option<String>,
    /// Full shape, rows first.
    shape: Vec<usize>,
    values: ColumnValues,
}

enum ColumnValues {
    Float(Box<dyn Iterator<Item = std::io::Result<f32>>>),
    Int(Box<dyn Iterator<Item = std::io::Result<i64>>>),
}

impl Column {
    fn open(array: Option<String>, npy: npyz::NpyFile<Box<dyn Read>>) -> Result<Column, String> {
        let what = || array.as_ref().map_or(String::new(), |a| format!("array '{a}': "));
        if npy.order() != npyz::Order::C {
            return Err(format!("{}Fortran-ordered array; save it in C order", what()));
        }
        let descr = npy.dtype().descr();
        let descr = descr.trim_matches('\'').to_string();
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        if shape.is_empty() || shape[0] == 0 {
            return Err(format!("{}no rows", what()));
        }
        let values = match descr.as_str() {
            "<f4" | ">f4" | "=f4" => ColumnValues::Float(Box::new(npy.data::<f32>().map_err(|e| e.to_string())?)),
            "<i8" | ">i8" | "=i8" => ColumnValues::Int(Box::new(npy.data::<i64>().map_err(|e| e.to_string())?)),
            "<i4" | ">i4" | "=i4" => ColumnValues::Int(Box::new(
                npy.data::<i32>().map_err(|e| e.to_string())?.map(|v| v.map(i64::from)),
            )),
            other => {
                return Err(format!(
                    "{}element type {other}; eexc feeds float32 inputs, and int64 (or int32) ones such as token ids",
                    what()
                ));
            }
        };
        Ok(Column { array, shape, values })
    }

    fn from_memory(input: InputBatch) -> Column {
        let values = match input.elements {
            Elements::Float(v) => ColumnValues::Float(Box::new(v.into_iter().map(Ok))),
            Elements::Int(v) => ColumnValues::Int(Box::new(v.into_iter().map(Ok))),
        };
        Column {
            array: input.array,
            shape: input.shape,
            values,
        }
    }

    fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    fn is_int(&self) -> bool {
        matches!(self.values, ColumnValues::Int(_))
    }

    /// The next `rows` rows; NaN and infinities are refused.
    fn next_rows(&mut self, path: &Path, first_row: usize, rows: usize) -> Result<InputBatch, RunError> {
        let n = rows * self.row_len();
        let row_len = self.row_len();
        let named = |reason: String| RunError::Data {
            path: path.to_path_buf(),
            reason: match &self.array {
                Some(a) => format!("array '{a}': {reason}"),
                None => reason,
            },
        };
        fn take<T>(
            values: &mut dyn Iterator<Item = std::io::Result<T>>,
            n: usize,
            fail: &dyn Fn(String) -> RunError,
            mut check: impl FnMut(usize, &T) -> Result<(), RunError>,
        ) -> Result<Vec<T>, RunError> {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let v = values
                    .next()
                    .ok_or_else(|| fail("file ends before its declared shape".into()))?
                    .map_err(|e| fail(e.to_string()))?;
                check(i, &v)?;
                out.push(v);
            }
            Ok(out)
        }
        let elements = match &mut self.values {
            ColumnValues::Float(values) => Elements::Float(take(values.as_mut(), n, &named, |i, v| {
                if v.is_finite() {
                    Ok(())
                } else {
                    Err(named(format!(
                        "row {} holds a non-finite value ({v})",
                        first_row + i / row_len
                    )))
                }
            })?),
            ColumnValues::Int(values) => Elements::Int(take(values.as_mut(), n, &named, |_, _| Ok(()))?),
        };
        let mut shape = self.shape.clone();
        shape[0] = rows;
        Ok(InputBatch {
            array: self.array.clone(),
            shape,
            elements,
        })
    }
}

/// Sample inputs opened for reading rows in order: a `.npy` file (or one
/// array of an `.npz`) for a model with one data input, an `.npz` with
/// one array named after each data input for a model with several (token
/// ids and an attention mask); or rows in memory, read the same way.
pub struct Samples {
    path: PathBuf,
    columns: Vec<Column>,
}

impl Samples {
    pub fn open(path: &Path) -> Result<Samples, RunError> {
        let bad = |reason: String| RunError::Data {
            path: path.to_path_buf(),
            reason,
        };
        let columns = open_arrays(path)
            .map_err(bad)?
            .into_iter()
            .map(|(array, npy)| Column::open(array, npy))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(Samples {
            path: path.to_path_buf(),
            columns,
        })
    }

    /// Rows held in memory (compile's split of `--data`), read as a file's.
    pub fn in_memory(rows: std::sync::Arc<MemoryRows>) -> Samples {
        Samples {
            path: rows.name.clone(),
            columns: rows.batch.inputs.iter().cloned().map(Column::from_memory).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.columns[0].shape[0]
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Each array's shape without its rows (in the bound order once bound).
    pub fn row_shapes(&self) -> Vec<Vec<usize>> {
        self.columns.iter().map(|c| c.shape[1..].to_vec()).collect()
    }

    /// Matches the arrays to the model's data `inputs` and puts them in
    /// the inputs' order: a lone array feeds a lone input; otherwise each
    /// input takes the array of its name, and every array must feed one.
    /// An integer array feeds only an int64 input, a float one a float input.
    pub fn bind(&mut self, inputs: &[DataInput]) -> Result<(), RunError> {
        let bad = |reason: String| RunError::Data {
            path: self.path.clone(),
            reason,
        };
        let arrays = || {
            self.columns
                .iter()
                .map(|c| c.array.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let names = || inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
        let order: Vec<usize> = match (inputs, self.columns.len()) {
            ([], _) => return Err(bad("the model has no data input to feed".into())),
            ([_], 1) => vec![0],
            ([_], n) => {
                return Err(bad(format!(
                    "the archive holds {n} arrays ({}); name one as FILE.npz:NAME",
                    arrays()
                )));
            }
            (_, _) if self.columns.iter().any(|c| c.array.is_none()) => {
                return Err(bad(format!(
                    "the model has {} data inputs ({}) and this is one unnamed array; give an .npz with one array \
                     named after each input",
                    inputs.len(),
                    names()
                )));
            }
            (_, _) => {
                let mut order = Vec::with_capacity(inputs.len());
                for input in inputs {
                    let at = self
                        .columns
                        .iter()
                        .position(|c| c.array.as_deref() == Some(input.name.as_str()))
                        .ok_or_else(|| {
                            bad(format!(
                                "the model has {} data inputs ({}) and no array here is named '{}' (the file holds: {}); \
                                 give an .npz with one array named after each input",
                                inputs.len(),
                                names(),
                                input.name,
                                arrays()
                            ))
                        })?;
                    order.push(at);
                }
                if let Some(extra) = self.columns.iter().enumerate().find(|(i, _)| !order.contains(i)) {
                    return Err(bad(format!(
                        "array '{}' feeds none of the model's data inputs ({})",
                        extra.1.array.as_deref().unwrap_or_default(),
                        names()
                    )));
                }
                order
            }
        };
        for (input, &at) in inputs.iter().zip(&order) {
            let column = &self.columns[at];
            if column.is_int() != input.int64 {
                let what = column
                    .array
                    .as_ref()
                    .map_or("the data".to_string(), |a| format!("array '{a}'"));
                return Err(bad(format!(
                    "{what} holds {} values and the model's input '{}' takes {}",
                    if column.is_int() { "integer" } else { "float32" },
                    input.name,
                    if input.int64 { "int64" } else { "float32" }
                )));
            }
        }
        let mut columns: Vec<Option<Column>> = std::mem::take(&mut self.columns).into_iter().map(Some).collect();
        self.columns = order.iter().filter_map(|&at| columns[at].take()).collect();
        let rows = self.rows();
        if let Some(other) = self.columns.iter().find(|c| c.shape[0] != rows) {
            return Err(bad(format!(
                "array '{}' has {} rows and array '{}' {rows}: every input needs one row per sample",
                other.array.as_deref().unwrap_or_default(),
                other.shape[0],
                self.columns[0].array.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// The next `rows` rows of every array, flattened; NaN and infinities
    /// are refused.
    pub fn next_rows(&mut self, first_row: usize, rows: usize) -> Result<Batch, RunError> {
        let path = self.path.clone();
        Ok(Batch {
            rows,
            inputs: self
                .columns
                .iter_mut()
                .map(|c| c.next_rows(&path, first_row, rows))
                .collect::<Result<_, _>>()?,
        })
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

/// An array of a sample file, with its name when it is one of several.
type NamedArray = (Option<String>, npyz::NpyFile<Box<dyn Read>>);

/// Opens `FILE.npy` (one array), `FILE.npz` (every array it holds, in
/// name order) or `FILE.npz:NAME` (that one array). An `.npz` member is
/// decompressed into memory; a `.npy` file is streamed.
fn open_arrays(path: &Path) -> Result<Vec<NamedArray>, String> {
    let spec = path.to_string_lossy();
    let (file, member) = match spec.rsplit_once(".npz:") {
        Some((stem, name)) => (PathBuf::from(format!("{stem}.npz")), Some(name.to_string())),
        None => (path.to_path_buf(), None),
    };
    let is_npz = member.is_some() || file.extension().is_some_and(|e| e == "npz");
    if !is_npz {
        return Ok(vec![(None, open_npy(&file)?)]);
    }
    let mut archive = npyz::npz::NpzArchive::open(&file).map_err(|e| format!("not an .npz file: {e}"))?;
    // Sorted: the archive lists its members in no fixed order.
    let mut names: Vec<String> = archive.array_names().map(str::to_string).collect();
    names.sort();
    let chosen: Vec<(Option<String>, String)> = match member {
        Some(m) if names.contains(&m) => vec![(None, m)],
        Some(m) => {
            return Err(format!(
                "no array '{m}' in the archive (it holds: {})",
                names.join(", ")
            ));
        }
        None if names.is_empty() => return Err("the archive holds no arrays".into()),
        None => names.iter().map(|n| (Some(n.clone()), n.clone())).collect(),
    };
    chosen
        .into_iter()
        .map(|(label, name)| {
            let bytes = npz_member(&mut archive, &name)?;
            check_npy_shape(&bytes).map_err(|e| format!("'{name}': {e}"))?;
            let reader: Box<dyn Read> = Box::new(std::io::Cursor::new(bytes));
            let npy = npyz::NpyFile::new(reader).map_err(|e| format!("'{name}' is not an array: {e}"))?;
            Ok((label, npy))
        })
        .collect()
}

/// Opens one `.npy` file (labels, or a lone input array), streamed.
fn open_npy(file: &Path) -> Result<npyz::NpyFile<Box<dyn Read>>, String> {
    let f = File::open(file).map_err(|e| e.to_string())?;
    // Large enough for any version-1 header, so the shape is checked
    // from the buffer before npyz reads it.
    let mut reader = BufReader::with_capacity(1 << 17, f);
    check_npy_shape(reader.fill_buf().map_err(|e| e.to_string())?)?;
    let reader: Box<dyn Read> = Box::new(reader);
    npyz::NpyFile::new(reader).map_err(|e| format!("not a .npy file: {e}"))
}

/// One array: `FILE.npy`, `FILE.npz` holding one array, or `FILE.npz:NAME`.
fn open_array(path: &Path) -> Result<npyz::NpyFile<Box<dyn Read>>, String> {
    let mut arrays = open_arrays(path)?;
    if arrays.len() != 1 {
        let names: Vec<String> = arrays.iter().filter_map(|(n, _)| n.clone()).collect();
        return Err(format!(
            "the archive holds {} arrays ({}); name one as FILE.npz:NAME",
            names.len(),
            names.join(", ")
        ));
    }
    Ok(arrays.remove(0).1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn array(name: Option<&str>, rows: usize, elements: Elements) -> InputBatch {
        let row_len = elements.len() / rows;
        InputBatch {
            array: name.map(str::to_string),
            shape: vec![rows, row_len],
            elements,
        }
    }

    fn samples(arrays: Vec<InputBatch>) -> Samples {
        let rows = arrays[0].shape[0];
        Samples::in_memory(std::sync::Arc::new(MemoryRows {
            name: PathBuf::from("rows.npz"),
            batch: Batch { rows, inputs: arrays },
            labels: None,
        }))
    }

    fn input(name: &str, int64: bool) -> DataInput {
        DataInput {
            name: name.into(),
            int64,
        }
    }

    fn error(result: Result<(), RunError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn arrays_feed_the_inputs_named_after_them_in_the_inputs_order() {
        let mut s = samples(vec![
            array(Some("attention_mask"), 2, Elements::Int(vec![1, 1, 1, 0])),
            array(Some("input_ids"), 2, Elements::Int(vec![5, 6, 7, 0])),
        ]);
        s.bind(&[input("input_ids", true), input("attention_mask", true)])
            .unwrap();
        let second = {
            s.next_rows(0, 1).unwrap();
            s.next_rows(1, 1).unwrap()
        };
        assert_eq!(second.rows, 1);
        assert_eq!(second.inputs[0].elements, Elements::Int(vec![7, 0]));
        assert_eq!(second.inputs[1].elements, Elements::Int(vec![1, 0]));
        assert_eq!(second.inputs[0].shape, vec![1, 2]);
        // Rows picked out keep every input in step.
        let picked = Batch {
            rows: 2,
            inputs: vec![array(None, 2, Elements::Float(vec![1.0, 2.0, 3.0, 4.0]))],
        }
        .select(&[1, 0, 1]);
        assert_eq!(
            picked.inputs[0].elements,
            Elements::Float(vec![3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(picked.inputs[0].shape, vec![3, 2]);
    }

    #[test]
    fn a_lone_array_feeds_a_lone_input_whatever_its_name() {
        let mut s = samples(vec![array(Some("x"), 1, Elements::Float(vec![0.5]))]);
        s.bind(&[input("image", false)]).unwrap();
        assert_eq!(
            s.next_rows(0, 1).unwrap().inputs[0].elements,
            Elements::Float(vec![0.5])
        );
    }

    #[test]
    fn arrays_that_do_not_fit_the_inputs_are_refused_by_name() {
        let ids = || array(Some("input_ids"), 2, Elements::Int(vec![1, 2]));
        let inputs = [input("input_ids", true), input("attention_mask", true)];
        let err = error(samples(vec![ids()]).bind(&inputs));
        assert!(
            err.contains("no array here is named 'attention_mask' (the file holds: input_ids)"),
            "{err}"
        );
        let err = error(
            samples(vec![
                ids(),
                array(Some("attention_mask"), 2, Elements::Int(vec![1, 1])),
                array(Some("labels"), 2, Elements::Int(vec![0, 1])),
            ])
            .bind(&inputs),
        );
        assert!(
            err.contains("array 'labels' feeds none of the model's data inputs"),
            "{err}"
        );
        let err = error(samples(vec![ids(), array(Some("attention_mask"), 1, Elements::Int(vec![1]))]).bind(&inputs));
        assert!(
            err.contains("array 'attention_mask' has 1 rows and array 'input_ids' 2"),
            "{err}"
        );
        let err = error(samples(vec![array(None, 2, Elements::Int(vec![1, 2]))]).bind(&inputs));
        assert!(err.contains("this is one unnamed array"), "{err}");
        let err = error(samples(vec![array(None, 1, Elements::Float(vec![1.0]))]).bind(&inputs[..1]));
        assert!(
            err.contains("the data holds float32 values and the model's input 'input_ids' takes int64"),
            "{err}"
        );
        let err = error(samples(vec![ids(), ids()]).bind(&[input("image", false)]));
        assert!(err.contains("holds 2 arrays"), "{err}");
        let mut s = samples(vec![array(None, 1, Elements::Float(vec![f32::NAN]))]);
        s.bind(&[input("x", false)]).unwrap();
        let err = s.next_rows(0, 1).unwrap_err().to_string();
        assert!(err.contains("row 0 holds a non-finite value"), "{err}");
    }
}
