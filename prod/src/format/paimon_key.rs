//! Keys of a table with `table.datalake.format=paimon`: Paimon's BinaryRow of the key
//! columns (Fluss's `PaimonKeyEncoder` and `PaimonBinaryRowWriter`; fluss-rs 1.0.0
//! `row/encode/paimon_key_encoder.rs`, `row/paimon/paimon_binary_row_writer.rs`).
//!
//! Layout, for `n` key columns:
//! - a header of `((n + 63 + 8) / 64) * 8` bytes: byte 0 the row kind (0, INSERT), then the
//!   null bits (bit `8 + i` for column `i`; a key column is never NULL, so all zero);
//! - one 8-byte little-endian slot per column: BOOLEAN and TINYINT in its first byte,
//!   SMALLINT, INT (also DATE and TIME) and FLOAT in its first 2 or 4, BIGINT, DOUBLE, DECIMAL
//!   of precision ≤ 18 (the unscaled long) and TIMESTAMP(≤ 3) (epoch milliseconds) in all 8;
//!   a string or byte string of at most 7 bytes inline (its bytes, then `0x80 | len` in the
//!   last byte), a longer one as `offset << 32 | len` of its bytes in the variable part; a
//!   wider DECIMAL as `offset << 32 | len` of `BigInteger.toByteArray()` in a 16-byte zeroed
//!   region; a TIMESTAMP(> 3) as `offset << 32 | nanos_of_milli` of its 8-byte millis;
//! - the variable part, each value padded with zeros to a multiple of 8 bytes.
//!
//! The whole key is a multiple of 8 bytes long. Fluss's Java writer forgets to move its
//! cursor past the millis of a TIMESTAMP_LTZ(> 3) (so they are cut off or overwritten);
//! fluss-rs, the client pyfluss is built on, writes them as for TIMESTAMP, and so does this.
//!
//! Decoding parses the slots and then requires the bytes to be exactly the encoding of what
//! it read, so a key has one byte form only.

use super::compacted_row::{
    decimal_from_unscaled_bytes, decimal_unscaled_bytes, value_violation, Datum, Timestamp,
};
use super::data_type::{
    DataType, TypeRoot, DECIMAL_COMPACT_PRECISION_MAX, TIMESTAMP_COMPACT_PRECISION_MAX,
};
use super::error::FormatError;

/// Bits of the row-kind header in front of the null bits.
const HEADER_BITS: usize = 8;
/// The longest value kept inside its slot.
const INLINE_MAX: usize = 7;
/// The region of a DECIMAL of precision > 18.
const WIDE_DECIMAL_BYTES: usize = 16;

fn header_len(arity: usize) -> usize {
    (arity + 63 + HEADER_BITS) / 64 * 8
}

/// Why Paimon's key encoding cannot hold a column of this type, if it cannot.
pub fn unsupported_in_paimon_key(ty: &TypeRoot) -> Option<String> {
    match ty {
        TypeRoot::Array(_) | TypeRoot::Map { .. } | TypeRoot::Row(_) => {
            Some(format!("{} columns cannot be Paimon key columns", ty.json_name()))
        }
        _ => None,
    }
}

fn put_slot(out: &mut [u8], at: usize, slot: u64) -> Result<(), FormatError> {
    out.get_mut(at..at + 8)
        .ok_or_else(|| FormatError::InvalidValue(format!("no slot at {at}")))?
        .copy_from_slice(&slot.to_le_bytes());
    Ok(())
}

/// Appends `bytes` to the variable part, zero-padded to whole words; returns its offset.
fn append_words(out: &mut Vec<u8>, bytes: &[u8], width: usize) -> Result<u64, FormatError> {
    let offset = u32::try_from(out.len())
        .map_err(|_| FormatError::InvalidValue("Paimon key too long".to_string()))?;
    let rounded = width.div_ceil(8) * 8;
    let start = out.len();
    out.resize(start + rounded, 0);
    out[start..start + bytes.len()].copy_from_slice(bytes);
    Ok(u64::from(offset) << 32)
}

fn var_slot(out: &mut Vec<u8>, bytes: &[u8]) -> Result<u64, FormatError> {
    if bytes.len() <= INLINE_MAX {
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        slot[7] = 0x80 | bytes.len() as u8;
        return Ok(u64::from_le_bytes(slot));
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| FormatError::InvalidValue("Paimon key field too long".to_string()))?;
    Ok(append_words(out, bytes, bytes.len())? | u64::from(len))
}

fn slot_of(out: &mut Vec<u8>, ty: &TypeRoot, value: &Datum) -> Result<u64, FormatError> {
    let low = |bytes: &[u8]| {
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(slot)
    };
    Ok(match (ty, value) {
        (_, Datum::Boolean(b)) => u64::from(*b),
        (_, Datum::TinyInt(v)) => low(&v.to_le_bytes()),
        (_, Datum::SmallInt(v)) => low(&v.to_le_bytes()),
        (_, Datum::Int(v) | Datum::Date(v) | Datum::Time(v)) => low(&v.to_le_bytes()),
        (_, Datum::BigInt(v)) => *v as u64,
        (_, Datum::Float(v)) => low(&v.to_le_bytes()),
        (_, Datum::Double(v)) => v.to_bits(),
        (_, Datum::String(s)) => var_slot(out, s.as_bytes())?,
        (_, Datum::Binary(b)) => var_slot(out, b)?,
        (TypeRoot::Decimal { precision, .. }, Datum::Decimal(v)) => {
            if *precision <= DECIMAL_COMPACT_PRECISION_MAX {
                *v as i64 as u64
            } else {
                let bytes = decimal_unscaled_bytes(*v);
                append_words(out, &bytes, WIDE_DECIMAL_BYTES)? | bytes.len() as u64
            }
        }
        (
            TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision },
            Datum::Timestamp(ts),
        ) => {
            if *precision <= TIMESTAMP_COMPACT_PRECISION_MAX {
                ts.millis as u64
            } else {
                append_words(out, &ts.millis.to_le_bytes(), 8)? | u64::from(ts.nanos_of_milli)
            }
        }
        (ty, v) => {
            return Err(FormatError::InvalidValue(format!(
                "a {v:?} value in a {} key column",
                ty.json_name()
            )))
        }
    })
}

/// Encodes key values (one per key column, none NULL) as a Paimon BinaryRow.
pub fn encode_paimon_key(types: &[DataType], values: &[Datum]) -> Result<Vec<u8>, FormatError> {
    if types.len() != values.len() {
        return Err(FormatError::InvalidValue(format!(
            "key has {} fields, the key columns are {}",
            values.len(),
            types.len()
        )));
    }
    let header = header_len(types.len());
    let mut out = vec![0u8; header + 8 * types.len()];
    for (i, (ty, value)) in types.iter().zip(values).enumerate() {
        if let Some(reason) = unsupported_in_paimon_key(&ty.root) {
            return Err(FormatError::InvalidValue(reason));
        }
        if let Some(violation) = value_violation(&ty.root, value) {
            return Err(FormatError::InvalidValue(format!("key field {i}: {violation}")));
        }
        let slot = slot_of(&mut out, &ty.root, value)?;
        put_slot(&mut out, header + 8 * i, slot)?;
    }
    Ok(out)
}

/// The bytes a variable-length slot points at (inline or in the variable part).
fn var_bytes<'a>(
    bytes: &'a [u8],
    slot: &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], FormatError> {
    let word =
        u64::from_le_bytes(slot.try_into().map_err(|_| FormatError::corrupt(what, "short slot"))?);
    if word >> 63 == 1 {
        let len = ((word >> 56) & 0x7f) as usize;
        return slot
            .get(..len)
            .filter(|_| len <= INLINE_MAX)
            .ok_or_else(|| FormatError::corrupt(what, format!("inline length {len}")));
    }
    let (offset, len) = ((word >> 32) as usize, (word & 0xffff_ffff) as usize);
    bytes
        .get(offset..)
        .and_then(|rest| rest.get(..len))
        .ok_or_else(|| FormatError::corrupt(what, format!("{len} bytes at {offset}")))
}

fn read_field(bytes: &[u8], slot: &[u8], ty: &TypeRoot) -> Result<Datum, FormatError> {
    let word = |what| -> Result<[u8; 8], FormatError> {
        slot.try_into().map_err(|_| FormatError::corrupt(what, "short slot"))
    };
    let datum = match ty {
        TypeRoot::Boolean => match slot.first() {
            Some(0) => Datum::Boolean(false),
            Some(1) => Datum::Boolean(true),
            other => return Err(FormatError::corrupt("paimon key boolean", format!("{other:?}"))),
        },
        TypeRoot::TinyInt => Datum::TinyInt(i8::from_le_bytes([word("tinyint")?[0]])),
        TypeRoot::SmallInt => {
            let w = word("smallint")?;
            Datum::SmallInt(i16::from_le_bytes([w[0], w[1]]))
        }
        TypeRoot::Int | TypeRoot::Date | TypeRoot::Time { .. } => {
            let w = word("int")?;
            let v = i32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            match ty {
                TypeRoot::Date => Datum::Date(v),
                TypeRoot::Time { .. } => Datum::Time(v),
                _ => Datum::Int(v),
            }
        }
        TypeRoot::BigInt => Datum::BigInt(i64::from_le_bytes(word("bigint")?)),
        TypeRoot::Float => {
            let w = word("float")?;
            Datum::Float(f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        }
        TypeRoot::Double => Datum::Double(f64::from_le_bytes(word("double")?)),
        TypeRoot::Char { .. } | TypeRoot::String => {
            let raw = var_bytes(bytes, slot, "paimon key string")?;
            let s = std::str::from_utf8(raw)
                .map_err(|e| FormatError::corrupt("paimon key string", e.to_string()))?;
            Datum::String(s.to_string())
        }
        TypeRoot::Binary { .. } | TypeRoot::Bytes => {
            Datum::Binary(var_bytes(bytes, slot, "paimon key bytes")?.to_vec())
        }
        TypeRoot::Decimal { precision, .. } => {
            let w = i64::from_le_bytes(word("decimal")?);
            if *precision <= DECIMAL_COMPACT_PRECISION_MAX {
                Datum::Decimal(i128::from(w))
            } else {
                let (offset, len) = ((w as u64 >> 32) as usize, (w as u64 & 0xffff_ffff) as usize);
                let raw =
                    bytes.get(offset..).and_then(|rest| rest.get(..len)).ok_or_else(|| {
                        FormatError::corrupt(
                            "paimon key decimal",
                            format!("{len} bytes at {offset}"),
                        )
                    })?;
                Datum::Decimal(decimal_from_unscaled_bytes(raw)?)
            }
        }
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision } => {
            let w = u64::from_le_bytes(word("timestamp")?);
            if *precision <= TIMESTAMP_COMPACT_PRECISION_MAX {
                Datum::Timestamp(Timestamp::from_millis(w as i64))
            } else {
                let offset = (w >> 32) as usize;
                let millis = bytes
                    .get(offset..)
                    .and_then(|rest| rest.get(..8))
                    .and_then(|raw| <[u8; 8]>::try_from(raw).ok())
                    .ok_or_else(|| {
                        FormatError::corrupt(
                            "paimon key timestamp",
                            format!("no millis at {offset}"),
                        )
                    })?;
                Datum::Timestamp(Timestamp {
                    millis: i64::from_le_bytes(millis),
                    nanos_of_milli: (w & 0xffff_ffff) as u32,
                })
            }
        }
        other => {
            return Err(FormatError::corrupt(
                "paimon key",
                unsupported_in_paimon_key(other).unwrap_or_default(),
            ))
        }
    };
    match value_violation(ty, &datum) {
        None => Ok(datum),
        Some(violation) => Err(FormatError::corrupt("paimon key field", violation)),
    }
}

/// Decodes a Paimon BinaryRow key of exactly the key columns, in its one canonical form.
pub fn decode_paimon_key(types: &[DataType], bytes: &[u8]) -> Result<Vec<Datum>, FormatError> {
    let header = header_len(types.len());
    let fixed = header + 8 * types.len();
    if bytes.len() < fixed {
        return Err(FormatError::Truncated {
            what: "paimon key",
            needed: fixed,
            available: bytes.len(),
        });
    }
    let values = types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let at = header + 8 * i;
            let slot = bytes.get(at..at + 8).ok_or(FormatError::Truncated {
                what: "paimon key slot",
                needed: at + 8,
                available: bytes.len(),
            })?;
            read_field(bytes, slot, &ty.root)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let canonical = encode_paimon_key(types, &values)
        .map_err(|error| FormatError::corrupt("paimon key", error.to_string()))?;
    if canonical != bytes {
        return Err(FormatError::corrupt("paimon key", "not in its canonical encoding"));
    }
    Ok(values)
}
