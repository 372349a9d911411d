//! A stored tensor's elements as little-endian bytes (the `raw_data` layout),
//! wherever the file keeps them: `raw_data`, the typed fields, or an
//! external file. Used where weights must be rewritten (stacked layers).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::dtype::ElemType;
use super::proto::{TensorProto, tensor_proto};

/// The elements of `t` as `raw_data` would hold them. `base_dir` resolves
/// external data. Strings and sub-byte types in typed fields are refused.
pub fn le_bytes(t: &TensorProto, base_dir: &Path) -> Result<Vec<u8>, String> {
    let elem = ElemType(t.data_type());
    let count: u64 = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .ok_or_else(|| format!("tensor '{}' has invalid dims {:?}", t.name(), t.dims))?;
    let bytes = elem
        .bytes_for(count)
        .ok_or_else(|| format!("tensor '{}': element type {} has no fixed size", t.name(), elem.name()))?;
    let data = if t.data_location() == tensor_proto::DataLocation::EXTERNAL {
        read_external(t, base_dir, bytes)?
    } else if let Some(raw) = t.raw_data.as_deref().filter(|r| !r.is_empty() || bytes == 0) {
        raw.to_vec()
    } else {
        typed_fields(t, elem)?
    };
    if data.len() as u64 != bytes {
        return Err(format!(
            "tensor '{}' holds {} bytes, its dims {:?} need {bytes}",
            t.name(),
            data.len(),
            t.dims
        ));
    }
    Ok(data)
}

fn typed_fields(t: &TensorProto, elem: ElemType) -> Result<Vec<u8>, String> {
    let narrow = |width: usize| -> Vec<u8> {
        t.int32_data
            .iter()
            .flat_map(|&v| v.to_le_bytes().into_iter().take(width))
            .collect()
    };
    Ok(match elem.0 {
        1 => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        11 => t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        7 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        6 => t.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        // uint8, int8, bool and the 8-bit floats keep one byte per int32.
        2 | 3 | 9 | 17..=20 => narrow(1),
        // uint16, int16, float16, bfloat16: two bytes per int32.
        4 | 5 | 10 | 16 => narrow(2),
        12 => t.uint64_data.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        13 => t.uint64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => {
            return Err(format!(
                "tensor '{}': cannot read element type {} from typed fields",
                t.name(),
                elem.name()
            ));
        }
    })
}

fn read_external(t: &TensorProto, base_dir: &Path, bytes: u64) -> Result<Vec<u8>, String> {
    // The same reading of the reference, and the same rule that it stays
    // inside the model's folder, as loading applies.
    let r = super::external::reference_of(t);
    let rel = super::external::checked_relative(&r.location).map_err(|e| format!("tensor '{}': {e}", t.name()))?;
    if r.offset == u64::MAX {
        return Err(format!("tensor '{}': bad offset", t.name()));
    }
    let path = base_dir.join(rel);
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(r.offset))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut data = vec![0u8; usize::try_from(bytes).map_err(|_| "tensor too large".to_string())?];
    f.read_exact(&mut data)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_raw_forms_give_the_same_bytes() {
        let mut typed = TensorProto::new();
        typed.set_data_type(1);
        typed.dims = vec![2];
        typed.float_data = vec![1.5, -2.0];
        let mut raw = typed.clone();
        raw.float_data.clear();
        raw.set_raw_data([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect());
        let dir = Path::new(".");
        assert_eq!(le_bytes(&typed, dir).unwrap(), le_bytes(&raw, dir).unwrap());

        let mut half = TensorProto::new();
        half.set_data_type(10);
        half.dims = vec![2];
        half.int32_data = vec![0x3c00, 0xc000];
        assert_eq!(le_bytes(&half, dir).unwrap(), vec![0x00, 0x3c, 0x00, 0xc0]);
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let mut t = TensorProto::new();
        t.set_name("w".into());
        t.set_data_type(1);
        t.dims = vec![3];
        t.float_data = vec![1.0];
        let err = le_bytes(&t, Path::new(".")).unwrap_err();
        assert!(err.contains("'w'") && err.contains("need 12"), "{err}");
    }
}
