//! CompactedRow, the value encoding of a primary-key table (§5.4): a null bit-set of
//! `ceil(n/8)` bytes (bit `i` is `byte[i>>3] & (1 << (i&7))`), then the non-null fields in
//! column order. No row-kind byte. Also `Datum` and `Row`, the decoded values.

use super::byte_reader::{put_varint_u32, put_varint_u64, ByteReader};
use super::data_type::{DataType, TypeRoot};
use super::error::FormatError;

/// One field value.
#[derive(Debug, Clone)]
pub enum Datum {
    Null,
    Boolean(bool),
    TinyInt(i8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    String(String),
}

/// Floats compare by bit pattern, so that a NaN survives a round trip as an equal value.
impl PartialEq for Datum {
    fn eq(&self, other: &Self) -> bool {
        use Datum::*;
        match (self, other) {
            (Null, Null) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (TinyInt(a), TinyInt(b)) => a == b,
            (SmallInt(a), SmallInt(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (String(a), String(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Datum {}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The type this value belongs to (`None` for NULL).
    pub fn type_root(&self) -> Option<TypeRoot> {
        Some(match self {
            Datum::Null => return None,
            Datum::Boolean(_) => TypeRoot::Boolean,
            Datum::TinyInt(_) => TypeRoot::TinyInt,
            Datum::SmallInt(_) => TypeRoot::SmallInt,
            Datum::Int(_) => TypeRoot::Int,
            Datum::BigInt(_) => TypeRoot::BigInt,
            Datum::Float(_) => TypeRoot::Float,
            Datum::Double(_) => TypeRoot::Double,
            Datum::String(_) => TypeRoot::String,
        })
    }
}

/// A row: one datum per column, in column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row(pub Vec<Datum>);

impl Row {
    pub fn new(values: Vec<Datum>) -> Self {
        Row(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Datum> {
        self.0.get(i)
    }

    /// The columns at `positions`, in that order.
    pub fn project(&self, positions: &[usize]) -> Result<Row, FormatError> {
        positions
            .iter()
            .map(|&p| {
                self.0.get(p).cloned().ok_or_else(|| {
                    FormatError::InvalidValue(format!("no column {p} in a row of {}", self.len()))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Row)
    }
}

/// Appends one non-null field in the compacted field encoding (shared with keys).
pub(crate) fn write_field(
    out: &mut Vec<u8>,
    ty: TypeRoot,
    value: &Datum,
) -> Result<(), FormatError> {
    match (ty, value) {
        (TypeRoot::Boolean, Datum::Boolean(b)) => out.push(u8::from(*b)),
        (TypeRoot::TinyInt, Datum::TinyInt(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (TypeRoot::SmallInt, Datum::SmallInt(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (TypeRoot::Int, Datum::Int(v)) => put_varint_u32(out, *v as u32),
        (TypeRoot::BigInt, Datum::BigInt(v)) => put_varint_u64(out, *v as u64),
        (TypeRoot::Float, Datum::Float(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (TypeRoot::Double, Datum::Double(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (TypeRoot::String, Datum::String(s)) => {
            let len = u32::try_from(s.len())
                .ok()
                .filter(|&n| n <= i32::MAX as u32)
                .ok_or_else(|| FormatError::InvalidValue("string too long".to_string()))?;
            put_varint_u32(out, len);
            out.extend_from_slice(s.as_bytes());
        }
        (ty, v) => {
            return Err(FormatError::InvalidValue(format!(
                "a {:?} value in a {} column",
                v,
                ty.json_name()
            )))
        }
    }
    Ok(())
}

/// Reads one non-null field.
pub(crate) fn read_field(r: &mut ByteReader<'_>, ty: TypeRoot) -> Result<Datum, FormatError> {
    Ok(match ty {
        TypeRoot::Boolean => match r.u8("boolean field")? {
            0 => Datum::Boolean(false),
            1 => Datum::Boolean(true),
            b => return Err(FormatError::corrupt("boolean field", format!("byte {b}"))),
        },
        TypeRoot::TinyInt => Datum::TinyInt(r.u8("tinyint field")? as i8),
        TypeRoot::SmallInt => Datum::SmallInt(r.i16("smallint field")?),
        TypeRoot::Int => Datum::Int(r.varint_u32("int field")? as i32),
        TypeRoot::BigInt => Datum::BigInt(r.varint_u64("bigint field")? as i64),
        TypeRoot::Float => Datum::Float(r.f32("float field")?),
        TypeRoot::Double => Datum::Double(r.f64("double field")?),
        TypeRoot::String => {
            let len = r.varint_u32("string length")?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= i32::MAX as usize)
                .ok_or_else(|| FormatError::corrupt("string length", format!("{len}")))?;
            let bytes = r.take(len, "string field")?;
            let s = std::str::from_utf8(bytes)
                .map_err(|e| FormatError::corrupt("string field", e.to_string()))?;
            Datum::String(s.to_string())
        }
    })
}

/// Encodes a row; NULL in a NOT NULL column or a value of the wrong type is refused.
pub fn encode_row(types: &[DataType], row: &Row) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    encode_row_into(types, row, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `row` to `out`.
pub fn encode_row_into(
    types: &[DataType],
    row: &Row,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if row.len() != types.len() {
        return Err(FormatError::InvalidValue(format!(
            "row has {} fields, the schema {}",
            row.len(),
            types.len()
        )));
    }
    let bitset_start = out.len();
    out.resize(bitset_start + types.len().div_ceil(8), 0);
    for (i, (ty, value)) in types.iter().zip(&row.0).enumerate() {
        if value.is_null() {
            if !ty.nullable {
                return Err(FormatError::InvalidValue(format!("NULL in NOT NULL column {i}")));
            }
            if let Some(b) = out.get_mut(bitset_start + (i >> 3)) {
                *b |= 1 << (i & 7);
            }
        } else {
            write_field(out, ty.root, value)?;
        }
    }
    Ok(())
}

/// Decodes a row that must fill `bytes` exactly. A NULL in a NOT NULL column is corrupt.
pub fn decode_row(types: &[DataType], bytes: &[u8]) -> Result<Row, FormatError> {
    let mut r = ByteReader::new(bytes);
    let row = decode_row_from(types, &mut r)?;
    if !r.is_empty() {
        return Err(FormatError::corrupt(
            "compacted row",
            format!("{} bytes after the last field", r.remaining()),
        ));
    }
    Ok(row)
}

/// Decodes a row from the reader, leaving whatever follows it.
pub fn decode_row_from(types: &[DataType], r: &mut ByteReader<'_>) -> Result<Row, FormatError> {
    let bitset = r.take(types.len().div_ceil(8), "null bit-set")?;
    let mut values = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let is_null = bitset.get(i >> 3).is_some_and(|b| b & (1 << (i & 7)) != 0);
        if is_null {
            if !ty.nullable {
                return Err(FormatError::corrupt(
                    "compacted row",
                    format!("NULL in NOT NULL column {i}"),
                ));
            }
            values.push(Datum::Null);
        } else {
            values.push(read_field(r, ty.root)?);
        }
    }
    Ok(Row(values))
}
