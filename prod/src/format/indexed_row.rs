//! IndexedRow, the value encoding of a table with `table.kv.format=INDEXED` (Fluss's
//! `IndexedRow`, `IndexedRowWriter`):
//!
//! 1. a null bit-set of `ceil(n/8)` bytes, bit `i` in `byte[i>>3] & (1 << (i&7))`;
//! 2. the variable-length column length list: one little-endian `i32` slot per column of a
//!    variable-length type (STRING, BYTES, DECIMAL of precision > 18), whatever its value; the
//!    lengths of the non-null ones fill the slots in column order, the rest stay zero;
//! 3. the non-null values in column order, each little-endian and fixed-size by its type
//!    (BOOLEAN and TINYINT 1, SMALLINT 2, INT, DATE, TIME and FLOAT 4, BIGINT, DOUBLE and
//!    DECIMAL of precision ≤ 18 (the unscaled long) 8, TIMESTAMP and TIMESTAMP_LTZ the epoch
//!    milliseconds (8), then for precision > 3 the nanoseconds of the millisecond (`i32`),
//!    CHAR(n) and BINARY(n) `n` bytes, zero-padded), or for a variable-length type its bytes
//!    (UTF-8, raw, or `BigInteger.toByteArray()` of the unscaled value).
//!
//! A CHAR reads back without its trailing zero bytes (`IndexedRow.getChar`); a BINARY(n)
//! reads back as its `n` bytes (Fluss strips trailing zeros there too, which a fixed-size
//! Arrow column cannot hold). ARRAY, MAP and ROW columns are not supported in this format yet.

use super::byte_reader::ByteReader;
use super::compacted_row::{
    decimal_from_unscaled_bytes, decimal_unscaled_bytes, value_violation, Datum, Row, Timestamp,
};
use super::data_type::{
    DataType, TypeRoot, DECIMAL_COMPACT_PRECISION_MAX, TIMESTAMP_COMPACT_PRECISION_MAX,
};
use super::error::FormatError;

/// Whether a column of this type takes a slot of the length list.
fn is_variable_length(ty: &TypeRoot) -> bool {
    match ty {
        TypeRoot::String | TypeRoot::Bytes => true,
        TypeRoot::Decimal { precision, .. } => *precision > DECIMAL_COMPACT_PRECISION_MAX,
        TypeRoot::Boolean
        | TypeRoot::TinyInt
        | TypeRoot::SmallInt
        | TypeRoot::Int
        | TypeRoot::BigInt
        | TypeRoot::Float
        | TypeRoot::Double
        | TypeRoot::Char { .. }
        | TypeRoot::Binary { .. }
        | TypeRoot::Date
        | TypeRoot::Time { .. }
        | TypeRoot::TimestampNtz { .. }
        | TypeRoot::TimestampLtz { .. } => false,
        _ => true,
    }
}

/// Why IndexedRow cannot hold a column of this type, if it cannot.
pub fn unsupported_in_indexed_row(ty: &TypeRoot) -> Option<String> {
    match ty {
        TypeRoot::Boolean
        | TypeRoot::TinyInt
        | TypeRoot::SmallInt
        | TypeRoot::Int
        | TypeRoot::BigInt
        | TypeRoot::Float
        | TypeRoot::Double
        | TypeRoot::Char { .. }
        | TypeRoot::String
        | TypeRoot::Binary { .. }
        | TypeRoot::Bytes
        | TypeRoot::Decimal { .. }
        | TypeRoot::Date
        | TypeRoot::Time { .. }
        | TypeRoot::TimestampNtz { .. }
        | TypeRoot::TimestampLtz { .. } => None,
        other => Some(format!(
            "{} columns are not supported with table.kv.format=INDEXED yet",
            other.json_name()
        )),
    }
}

/// Appends a variable-length value and returns its length for the list.
fn push_variable(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<Option<i32>, FormatError> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| FormatError::InvalidValue(format!("{what} too long")))?;
    out.extend_from_slice(bytes);
    Ok(Some(len))
}

/// Appends one non-null value; a variable-length one also returns its length for the list.
fn write_value(
    out: &mut Vec<u8>,
    ty: &TypeRoot,
    value: &Datum,
) -> Result<Option<i32>, FormatError> {
    if let Some(reason) = unsupported_in_indexed_row(ty) {
        return Err(FormatError::InvalidValue(reason));
    }
    if let Some(violation) = value_violation(ty, value) {
        return Err(FormatError::InvalidValue(violation));
    }
    match (ty, value) {
        (TypeRoot::Char { length }, Datum::String(s)) => {
            let width = *length as usize;
            if s.len() > width {
                return Err(FormatError::InvalidValue(format!(
                    "{} UTF-8 bytes in a CHAR({length}), which IndexedRow stores in {length} bytes",
                    s.len()
                )));
            }
            out.extend_from_slice(s.as_bytes());
            out.resize(out.len() + (width - s.len()), 0);
            Ok(None)
        }
        (TypeRoot::Binary { .. }, Datum::Binary(b)) => {
            out.extend_from_slice(b);
            Ok(None)
        }
        (_, Datum::String(s)) => push_variable(out, s.as_bytes(), "string"),
        (_, Datum::Binary(b)) => push_variable(out, b, "bytes"),
        (TypeRoot::Decimal { precision, .. }, Datum::Decimal(v)) => {
            if *precision <= DECIMAL_COMPACT_PRECISION_MAX {
                // 18 digits always fit an i64 (`value_violation` checked the precision).
                out.extend_from_slice(&(*v as i64).to_le_bytes());
                Ok(None)
            } else {
                push_variable(out, &decimal_unscaled_bytes(*v), "decimal")
            }
        }
        (
            TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision },
            Datum::Timestamp(ts),
        ) => {
            out.extend_from_slice(&ts.millis.to_le_bytes());
            if *precision > TIMESTAMP_COMPACT_PRECISION_MAX {
                // At most 999_999 (`value_violation`).
                out.extend_from_slice(&(ts.nanos_of_milli as i32).to_le_bytes());
            }
            Ok(None)
        }
        (_, Datum::Boolean(b)) => {
            out.push(u8::from(*b));
            Ok(None)
        }
        (_, Datum::TinyInt(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (_, Datum::SmallInt(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (_, Datum::Int(v) | Datum::Date(v) | Datum::Time(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (_, Datum::BigInt(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (_, Datum::Float(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (_, Datum::Double(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(None)
        }
        (ty, v) => {
            Err(FormatError::InvalidValue(format!("a {v:?} value in a {} column", ty.json_name())))
        }
    }
}

/// Encodes a row as an IndexedRow; NULL in a NOT NULL column or a value of the wrong type is
/// refused.
pub fn encode_indexed_row(types: &[DataType], row: &Row) -> Result<Vec<u8>, FormatError> {
    if row.len() != types.len() {
        return Err(FormatError::InvalidValue(format!(
            "row has {} fields, the schema {}",
            row.len(),
            types.len()
        )));
    }
    let bitset_len = types.len().div_ceil(8);
    let slots = types.iter().filter(|ty| is_variable_length(&ty.root)).count();
    let header_len = bitset_len + 4 * slots;
    let mut out = vec![0u8; header_len];
    let mut next_slot = bitset_len;
    for (i, (ty, value)) in types.iter().zip(&row.0).enumerate() {
        if value.is_null() {
            if !ty.nullable {
                return Err(FormatError::InvalidValue(format!("NULL in NOT NULL column {i}")));
            }
            if let Some(b) = out.get_mut(i >> 3) {
                *b |= 1 << (i & 7);
            }
            continue;
        }
        if let Some(len) = write_value(&mut out, &ty.root, value)? {
            let slot = out.get_mut(next_slot..next_slot + 4).ok_or_else(|| {
                FormatError::InvalidValue("more variable-length values than slots".to_string())
            })?;
            slot.copy_from_slice(&len.to_le_bytes());
            next_slot += 4;
        }
    }
    Ok(out)
}

fn read_value(
    r: &mut ByteReader<'_>,
    ty: &TypeRoot,
    var_len: Option<usize>,
) -> Result<Datum, FormatError> {
    let datum = match (ty, var_len) {
        (TypeRoot::Boolean, _) => match r.u8("boolean field")? {
            0 => Datum::Boolean(false),
            1 => Datum::Boolean(true),
            b => return Err(FormatError::corrupt("boolean field", format!("byte {b}"))),
        },
        (TypeRoot::TinyInt, _) => Datum::TinyInt(r.u8("tinyint field")? as i8),
        (TypeRoot::SmallInt, _) => Datum::SmallInt(r.i16("smallint field")?),
        (TypeRoot::Int, _) => Datum::Int(r.i32("int field")?),
        (TypeRoot::Date, _) => Datum::Date(r.i32("date field")?),
        (TypeRoot::Time { .. }, _) => Datum::Time(r.i32("time field")?),
        (TypeRoot::BigInt, _) => Datum::BigInt(r.i64("bigint field")?),
        (TypeRoot::Float, _) => Datum::Float(r.f32("float field")?),
        (TypeRoot::Double, _) => Datum::Double(r.f64("double field")?),
        (TypeRoot::Char { length }, _) => {
            let bytes = r.take(*length as usize, "char field")?;
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            let s = std::str::from_utf8(&bytes[..end])
                .map_err(|e| FormatError::corrupt("char field", e.to_string()))?;
            Datum::String(s.to_string())
        }
        (TypeRoot::Binary { length }, _) => {
            Datum::Binary(r.take(*length as usize, "binary field")?.to_vec())
        }
        (TypeRoot::String, Some(len)) => {
            let s = std::str::from_utf8(r.take(len, "string field")?)
                .map_err(|e| FormatError::corrupt("string field", e.to_string()))?;
            Datum::String(s.to_string())
        }
        (TypeRoot::Bytes, Some(len)) => Datum::Binary(r.take(len, "bytes field")?.to_vec()),
        (TypeRoot::Decimal { .. }, Some(len)) => {
            Datum::Decimal(decimal_from_unscaled_bytes(r.take(len, "decimal field")?)?)
        }
        (TypeRoot::Decimal { .. }, None) => Datum::Decimal(i128::from(r.i64("decimal field")?)),
        (TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision }, _) => {
            let millis = r.i64("timestamp millis")?;
            let nanos_of_milli = if *precision > TIMESTAMP_COMPACT_PRECISION_MAX {
                let nanos = r.i32("timestamp nanos of milli")?;
                u32::try_from(nanos).map_err(|_| {
                    FormatError::corrupt("indexed row field", format!("{nanos} nanoseconds"))
                })?
            } else {
                0
            };
            Datum::Timestamp(Timestamp { millis, nanos_of_milli })
        }
        (ty, _) => {
            return Err(FormatError::corrupt(
                "indexed row",
                unsupported_in_indexed_row(ty)
                    .unwrap_or_else(|| format!("no length for a {} field", ty.json_name())),
            ))
        }
    };
    match value_violation(ty, &datum) {
        None => Ok(datum),
        Some(violation) => Err(FormatError::corrupt("indexed row field", violation)),
    }
}

/// Decodes an IndexedRow that must fill `bytes` exactly. A NULL in a NOT NULL column is
/// corrupt.
pub fn decode_indexed_row(types: &[DataType], bytes: &[u8]) -> Result<Row, FormatError> {
    let mut r = ByteReader::new(bytes);
    let bitset = r.take(types.len().div_ceil(8), "null bit-set")?;
    let slots = types.iter().filter(|ty| is_variable_length(&ty.root)).count();
    let mut lengths = ByteReader::new(r.take(4 * slots, "variable column length list")?);
    let mut values = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let is_null = bitset.get(i >> 3).is_some_and(|b| b & (1 << (i & 7)) != 0);
        if is_null {
            if !ty.nullable {
                return Err(FormatError::corrupt(
                    "indexed row",
                    format!("NULL in NOT NULL column {i}"),
                ));
            }
            values.push(Datum::Null);
            continue;
        }
        let var_len = if is_variable_length(&ty.root) {
            let len = lengths.i32("variable column length")?;
            Some(usize::try_from(len).map_err(|_| {
                FormatError::corrupt("indexed row", format!("column {i} has length {len}"))
            })?)
        } else {
            None
        };
        values.push(read_value(&mut r, &ty.root, var_len)?);
    }
    if !r.is_empty() {
        return Err(FormatError::corrupt(
            "indexed row",
            format!("{} bytes after the last field", r.remaining()),
        ));
    }
    Ok(Row(values))
}
