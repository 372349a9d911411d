//! Where head weights come from: a safetensors or npz file, a multi-output
//! model trained elsewhere, or a seeded initialiser.
//!
//! File keys, per exit k (1-based): `exit{k}.weight` (classes × features,
//! float32) and `exit{k}.bias` (classes); a conv-grid head also
//! `exit{k}.refine_weight` (C × C × 3 × 3) and `exit{k}.refine_bias` (C). A
//! multi-output model made by `--mode multi` carries them as initializers
//! `eexc_exit{k}_weight`, `eexc_exit{k}_bias`, `eexc_exit{k}_refine_weight`
//! and `eexc_exit{k}_refine_bias`, which is what `--weights-from` reads back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ExitError;
use super::contract::{refine_names, weight_names};
use super::head::{HeadWeights, RefineWeights, seeded_weights};
use super::plan::{ExitPoint, REFINE_KERNEL};

#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    Seeded(u64),
    File(PathBuf),
    FromModel(PathBuf),
    /// Heads in memory (compile's fitted ones), exit k's at index k − 1;
    /// `origin` is what the model's metadata records of them.
    Fitted {
        heads: Vec<HeadWeights>,
        origin: String,
    },
}

impl WeightSource {
    /// How the model records where its head weights came from.
    pub fn describe(&self) -> String {
        match self {
            WeightSource::Seeded(s) => format!("seeded:{s}"),
            WeightSource::File(p) => format!("file:{}", p.display()),
            WeightSource::FromModel(p) => format!("model:{}", p.display()),
            WeightSource::Fitted { origin, .. } => origin.clone(),
        }
    }

    pub fn is_trained(&self) -> bool {
        !matches!(self, WeightSource::Seeded(_))
    }
}

/// A named float32 tensor read from a weights file.
#[derive(Clone)]
struct Named {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Named {
    fn new(shape: Vec<usize>, data: &[f32]) -> Named {
        Named {
            shape,
            data: data.to_vec(),
        }
    }
}

pub fn load(source: &WeightSource, exits: &[ExitPoint], classes: i64) -> Result<Vec<HeadWeights>, ExitError> {
    match source {
        WeightSource::Seeded(seed) => Ok(exits
            .iter()
            .enumerate()
            .map(|(i, e)| seeded_weights(*seed, i + 1, classes, e.features, e.refine_channels()))
            .collect()),
        WeightSource::File(path) => {
            let lookup = read_weights_file(path)?;
            collect(path, exits, classes, |k, part| format!("exit{k}.{part}"), &lookup)
        }
        WeightSource::FromModel(path) => {
            let lookup = read_model_initializers(path)?;
            collect(
                path,
                exits,
                classes,
                |k, part| {
                    let ((w, b), (rw, rb)) = (weight_names(k), refine_names(k));
                    match part {
                        "weight" => w,
                        "bias" => b,
                        "refine_weight" => rw,
                        _ => rb,
                    }
                },
                &lookup,
            )
        }
        WeightSource::Fitted { heads, origin } => {
            // Checked as a file's would be: one head per exit, each its size.
            let mut named: HashMap<String, Named> = HashMap::new();
            for (i, h) in heads.iter().enumerate() {
                let k = i + 1;
                // A weight that is not whole rows of the bias's classes
                // keeps its flat length, which the shape check then refuses.
                let (classes, len) = (h.bias.len(), h.weight.len());
                let shape = if classes > 0 && len % classes == 0 {
                    vec![classes, len / classes]
                } else {
                    vec![len]
                };
                named.insert(format!("exit{k}.weight"), Named::new(shape, &h.weight));
                named.insert(format!("exit{k}.bias"), Named::new(vec![classes], &h.bias));
                if let Some(r) = &h.refine {
                    let (c, kk) = (r.bias.len(), REFINE_KERNEL as usize);
                    named.insert(
                        format!("exit{k}.refine_weight"),
                        Named::new(vec![c, c, kk, kk], &r.weight),
                    );
                    named.insert(format!("exit{k}.refine_bias"), Named::new(vec![c], &r.bias));
                }
            }
            let lookup = |key: &str| named.get(key).map(|n| Ok(n.clone()));
            collect(
                Path::new(origin),
                exits,
                classes,
                |k, part| format!("exit{k}.{part}"),
                &lookup,
            )
        }
    }
}

fn collect(
    path: &Path,
    exits: &[ExitPoint],
    classes: i64,
    key: impl Fn(usize, &str) -> String,
    lookup: &dyn Fn(&str) -> Option<Result<Named, String>>,
) -> Result<Vec<HeadWeights>, ExitError> {
    let mut out = Vec::new();
    for (i, e) in exits.iter().enumerate() {
        let k = i + 1;
        let fetch = |part: &str, expected: &[usize]| -> Result<Vec<f32>, ExitError> {
            let name = key(k, part);
            let bad = |reason: String| ExitError::Weights {
                path: path.to_path_buf(),
                key: name.clone(),
                reason,
            };
            let t = lookup(&name).ok_or_else(|| bad("missing".into()))?.map_err(&bad)?;
            if t.shape != expected {
                return Err(bad(format!(
                    "shape {:?}, expected {:?} (exit at '{}')",
                    t.shape, expected, e.tensor
                )));
            }
            Ok(t.data)
        };
        let (c, f) = (classes as usize, e.features as usize);
        let refine = match e.refine_channels() {
            None => None,
            Some(channels) => {
                let (ch, k) = (channels as usize, REFINE_KERNEL as usize);
                Some(RefineWeights {
                    weight: fetch("refine_weight", &[ch, ch, k, k])?,
                    bias: fetch("refine_bias", &[ch])?,
                })
            }
        };
        out.push(HeadWeights {
            weight: fetch("weight", &[c, f])?,
            bias: fetch("bias", &[c])?,
            refine,
        });
    }
    Ok(out)
}

type Lookup = Box<dyn Fn(&str) -> Option<Result<Named, String>>>;

fn read_weights_file(path: &Path) -> Result<Lookup, ExitError> {
    let bytes = std::fs::read(path).map_err(|e| ExitError::Weights {
        path: path.to_path_buf(),
        key: String::new(),
        reason: e.to_string(),
    })?;
    let is_npz = path.extension().is_some_and(|e| e == "npz");
    if is_npz {
        read_npz(path, bytes)
    } else {
        read_safetensors(path, bytes)
    }
}

fn read_safetensors(path: &Path, bytes: Vec<u8>) -> Result<Lookup, ExitError> {
    // Validate the header now, so a corrupt file is reported as such.
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ExitError::Weights {
        path: path.to_path_buf(),
        key: String::new(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    Ok(Box::new(move |name| {
        let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let view = st.tensor(name).ok()?;
        Some(if view.dtype() != safetensors::Dtype::F32 {
            Err(format!("dtype {:?}, expected F32", view.dtype()))
        } else {
            Ok(Named {
                shape: view.shape().to_vec(),
                data: view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            })
        })
    }))
}

fn read_npz(path: &Path, bytes: Vec<u8>) -> Result<Lookup, ExitError> {
    let fail = |reason: String| ExitError::Weights {
        path: path.to_path_buf(),
        key: String::new(),
        reason,
    };
    let mut archive =
        npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes)).map_err(|e| fail(format!("not an npz file: {e}")))?;
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    let mut arrays = std::collections::HashMap::new();
    for name in names {
        let member = crate::runtime::npz_member(&mut archive, &name).and_then(|bytes| {
            crate::runtime::check_npy_shape(&bytes)?;
            Ok(bytes)
        });
        let entry = match member.map(|bytes| npyz::NpyFile::new(std::io::Cursor::new(bytes))) {
            Ok(Ok(npy)) => {
                let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
                // numpy writes a transposed view (`w.T`) column-major.
                let fortran = npy.order() == npyz::Order::Fortran;
                match npy.into_vec::<f32>() {
                    Ok(data) if fortran => Ok(Named {
                        data: fortran_to_c(&data, &shape),
                        shape,
                    }),
                    Ok(data) => Ok(Named { shape, data }),
                    Err(e) => Err(format!("not float32: {e}")),
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e),
        };
        arrays.insert(name, entry);
    }
    Ok(Box::new(move |name| {
        arrays.get(name).map(|r| match r {
            Ok(n) => Ok(Named {
                shape: n.shape.clone(),
                data: n.data.clone(),
            }),
            Err(e) => Err(e.clone()),
        })
    }))
}

/// Column-major elements of `shape` in row-major order.
fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut c_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        c_strides[i] = c_strides[i + 1] * shape[i + 1];
    }
    let mut out = vec![0.0; data.len()];
    let mut index = vec![0usize; shape.len()];
    for &v in data {
        // Column-major: the first index runs fastest.
        out[index.iter().zip(&c_strides).map(|(i, s)| i * s).sum::<usize>()] = v;
        for (i, dim) in index.iter_mut().zip(shape) {
            *i += 1;
            if *i < *dim {
                break;
            }
            *i = 0;
        }
    }
    out
}

fn read_model_initializers(path: &Path) -> Result<Lookup, ExitError> {
    let loaded = crate::onnx::load_model(path)?;
    let graph = loaded.proto.graph.into_option().unwrap_or_default();
    let tensors: std::collections::HashMap<String, _> = graph
        .initializer
        .into_iter()
        .map(|t| (t.name().to_string(), t))
        .collect();
    Ok(Box::new(move |name| {
        let t = tensors.get(name)?;
        let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        Some(match crate::ir::constant::decode_f32(t) {
            Some(data) => Ok(Named { shape, data }),
            None => Err("not a float32 tensor stored in the model".into()),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exits::plan::HeadKind;

    fn linear_exit(features: i64) -> ExitPoint {
        ExitPoint {
            value: crate::ir::ValueId(0),
            tensor: "h".into(),
            ty: crate::ir::TensorType::known_dims(crate::onnx::dtype::ElemType::FLOAT, &[1, features]),
            head: HeadKind::Linear,
            features,
            reason: String::new(),
            dequantize: None,
            channels_last: false,
            auto_head: false,
            tail: None,
        }
    }

    #[test]
    fn fitted_heads_in_memory_are_checked_as_a_file_is() {
        let head = HeadWeights {
            weight: vec![0.5; 3 * 4],
            bias: vec![0.0; 3],
            refine: None,
        };
        let source = WeightSource::Fitted {
            heads: vec![head.clone()],
            origin: "fit by eexc compile on 40 rows".into(),
        };
        assert!(source.is_trained());
        assert_eq!(source.describe(), "fit by eexc compile on 40 rows");
        assert_eq!(load(&source, &[linear_exit(4)], 3).unwrap(), vec![head.clone()]);
        // A head fitted for another width, or a missing one, is refused by name.
        match load(&source, &[linear_exit(5)], 3) {
            Err(ExitError::Weights { key, reason, .. }) => {
                assert_eq!(key, "exit1.weight");
                assert!(reason.contains("expected [3, 5]"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let ragged = WeightSource::Fitted {
            heads: vec![HeadWeights {
                weight: vec![0.5; 3 * 4 + 1],
                ..head.clone()
            }],
            origin: "ragged".into(),
        };
        assert!(matches!(
            load(&ragged, &[linear_exit(4)], 3),
            Err(ExitError::Weights { .. })
        ));
        match load(&source, &[linear_exit(4), linear_exit(4)], 3) {
            Err(ExitError::Weights { key, reason, .. }) => {
                assert_eq!((key.as_str(), reason.as_str()), ("exit2.weight", "missing"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn column_major_arrays_come_back_row_major() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major.
        assert_eq!(
            fortran_to_c(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], &[2, 3]),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        // 2×2×2: element (i, j, k) = 4i + 2j + k, stored with i fastest.
        let fortran: Vec<f32> = (0..8)
            .map(|n| {
                let (i, j, k) = (n % 2, (n / 2) % 2, n / 4);
                (4 * i + 2 * j + k) as f32
            })
            .collect();
        assert_eq!(
            fortran_to_c(&fortran, &[2, 2, 2]),
            (0..8).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(fortran_to_c(&[7.0], &[]), vec![7.0]);
    }
}
