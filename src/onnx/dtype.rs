//! Tensor element types: names as the ONNX textual syntax spells them and
//! storage sizes (in bits, since 2-, 4- and 6-bit types exist).

/// An ONNX `TensorProto.DataType` code, kept as the raw number so codes newer
/// than this table still travel (and print as `dtype<N>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElemType(pub i32);

/// (code, textual-syntax name, bits per element; 0 = variable size)
const TABLE: &[(i32, &str, u32)] = &[
    (1, "float", 32),
    (2, "uint8", 8),
    (3, "int8", 8),
    (4, "uint16", 16),
    (5, "int16", 16),
    (6, "int32", 32),
    (7, "int64", 64),
    (8, "string", 0),
    (9, "bool", 8),
    (10, "float16", 16),
    (11, "double", 64),
    (12, "uint32", 32),
    (13, "uint64", 64),
    (14, "complex64", 64),
    (15, "complex128", 128),
    (16, "bfloat16", 16),
    (17, "float8e4m3fn", 8),
    (18, "float8e4m3fnuz", 8),
    (19, "float8e5m2", 8),
    (20, "float8e5m2fnuz", 8),
    (21, "uint4", 4),
    (22, "int4", 4),
    (23, "float4e2m1", 4),
    (24, "float8e8m0", 8),
    (25, "uint2", 2),
    (26, "int2", 2),
    (27, "float6e2m3", 6),
    (28, "float6e3m2", 6),
];

impl ElemType {
    pub const FLOAT: ElemType = ElemType(1);
    pub const UINT8: ElemType = ElemType(2);
    pub const INT8: ElemType = ElemType(3);
    pub const INT32: ElemType = ElemType(6);
    pub const INT64: ElemType = ElemType(7);
    pub const BOOL: ElemType = ElemType(9);
    pub const DOUBLE: ElemType = ElemType(11);

    fn entry(self) -> Option<&'static (i32, &'static str, u32)> {
        TABLE.iter().find(|e| e.0 == self.0)
    }

    /// Name in ONNX textual syntax, e.g. `float`, `int64`.
    pub fn name(self) -> String {
        match self.entry() {
            Some(e) => e.1.to_string(),
            None => format!("dtype<{}>", self.0),
        }
    }

    /// Storage bits per element; `None` for strings and unknown codes.
    pub fn bits(self) -> Option<u32> {
        self.entry().map(|e| e.2).filter(|&b| b > 0)
    }

    /// Bytes needed for `elements` values, rounding sub-byte types up.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        self.bits().map(|b| elements.saturating_mul(u64::from(b)).div_ceil(8))
    }

    pub fn is_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16..=20 | 23 | 24 | 27 | 28)
    }

    pub fn is_integer(self) -> bool {
        matches!(self.0, 2..=7 | 12 | 13 | 21 | 22 | 25 | 26)
    }
}

impl std::fmt::Display for ElemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_types_round_up() {
        assert_eq!(ElemType(22).bytes_for(3), Some(2)); // int4 ×3 = 12 bits
        assert_eq!(ElemType(25).bytes_for(5), Some(2)); // uint2 ×5 = 10 bits
        assert_eq!(ElemType::FLOAT.bytes_for(10), Some(40));
        assert_eq!(ElemType(8).bytes_for(1), None);
    }

    #[test]
    fn unknown_codes_keep_their_number() {
        assert_eq!(ElemType(99).name(), "dtype<99>");
        assert_eq!(ElemType(99).bits(), None);
    }
}
