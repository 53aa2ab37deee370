//! Keys of a table with `table.datalake.format=iceberg`: the single key column in Iceberg's
//! single-value binary form, what Iceberg's bucket transform hashes (Fluss's
//! `IcebergKeyEncoder` and `IcebergBinaryRowWriter`; fluss-rs 1.0.0
//! `row/encode/iceberg_key_encoder.rs`, `row/binary/iceberg_binary_row_writer.rs`):
//! - INT and DATE as a little-endian `i64`; BIGINT likewise;
//! - TIME as its microseconds of the day (`i64`), TIMESTAMP as its microseconds since the
//!   epoch (`millis * 1000 + nanos_of_milli / 1000`, wrapping as Java's long arithmetic does);
//! - FLOAT and DOUBLE little-endian;
//! - DECIMAL as `BigInteger.toByteArray()` of the unscaled value (big-endian), no length;
//! - CHAR and STRING as UTF-8, BINARY and BYTES as they are, no length.
//!
//! Exactly one key column, of one of those types: BOOLEAN, TINYINT, SMALLINT, TIMESTAMP_LTZ,
//! ARRAY, MAP and ROW have no encoding. A TIMESTAMP key keeps microseconds only, so two
//! values that differ below the microsecond are one key. Decoding requires the bytes to be
//! exactly the encoding of what it read.

use super::compacted_row::{
    decimal_from_unscaled_bytes, decimal_unscaled_bytes, value_violation, Datum, Timestamp,
};
use super::data_type::{DataType, TypeRoot};
use super::error::FormatError;

const MICROS_PER_MILLI: i64 = 1_000;

/// Why an Iceberg key cannot be made of columns of these types, if it cannot.
pub fn unsupported_in_iceberg_key(types: &[&TypeRoot]) -> Option<String> {
    let [ty] = types else {
        return Some(format!(
            "an Iceberg key must have exactly one column, this one has {}",
            types.len()
        ));
    };
    match ty {
        TypeRoot::Int
        | TypeRoot::Date
        | TypeRoot::Time { .. }
        | TypeRoot::BigInt
        | TypeRoot::Float
        | TypeRoot::Double
        | TypeRoot::TimestampNtz { .. }
        | TypeRoot::Decimal { .. }
        | TypeRoot::Char { .. }
        | TypeRoot::String
        | TypeRoot::Binary { .. }
        | TypeRoot::Bytes => None,
        other => Some(format!("{} columns cannot be Iceberg key columns", other.json_name())),
    }
}

/// Encodes the one key value in Iceberg's form.
pub fn encode_iceberg_key(types: &[DataType], values: &[Datum]) -> Result<Vec<u8>, FormatError> {
    let roots: Vec<&TypeRoot> = types.iter().map(|ty| &ty.root).collect();
    if let Some(reason) = unsupported_in_iceberg_key(&roots) {
        return Err(FormatError::InvalidValue(reason));
    }
    let (Some(ty), [value]) = (types.first(), values) else {
        return Err(FormatError::InvalidValue(format!(
            "key has {} fields, the key columns are 1",
            values.len()
        )));
    };
    if let Some(violation) = value_violation(&ty.root, value) {
        return Err(FormatError::InvalidValue(format!("key field 0: {violation}")));
    }
    Ok(match (&ty.root, value) {
        (_, Datum::Int(v) | Datum::Date(v)) => i64::from(*v).to_le_bytes().to_vec(),
        (_, Datum::Time(ms)) => (i64::from(*ms) * MICROS_PER_MILLI).to_le_bytes().to_vec(),
        (_, Datum::BigInt(v)) => v.to_le_bytes().to_vec(),
        (_, Datum::Float(v)) => v.to_le_bytes().to_vec(),
        (_, Datum::Double(v)) => v.to_le_bytes().to_vec(),
        (_, Datum::Timestamp(ts)) => ts
            .millis
            .wrapping_mul(MICROS_PER_MILLI)
            .wrapping_add(i64::from(ts.nanos_of_milli) / MICROS_PER_MILLI)
            .to_le_bytes()
            .to_vec(),
        (_, Datum::Decimal(v)) => decimal_unscaled_bytes(*v),
        (_, Datum::String(s)) => s.as_bytes().to_vec(),
        (_, Datum::Binary(b)) => b.clone(),
        (ty, v) => {
            return Err(FormatError::InvalidValue(format!(
                "a {v:?} value in a {} key column",
                ty.json_name()
            )))
        }
    })
}

fn long(bytes: &[u8]) -> Result<i64, FormatError> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_le_bytes)
        .map_err(|_| FormatError::corrupt("iceberg key", format!("{} bytes, not 8", bytes.len())))
}

/// Decodes an Iceberg key of exactly the one key column, in its one canonical form.
pub fn decode_iceberg_key(types: &[DataType], bytes: &[u8]) -> Result<Vec<Datum>, FormatError> {
    let roots: Vec<&TypeRoot> = types.iter().map(|ty| &ty.root).collect();
    if let Some(reason) = unsupported_in_iceberg_key(&roots) {
        return Err(FormatError::corrupt("iceberg key", reason));
    }
    let Some(ty) = types.first() else {
        return Err(FormatError::corrupt("iceberg key", "no key column"));
    };
    let out_of_range =
        |what: String| FormatError::corrupt("iceberg key", format!("{what} is out of range"));
    let datum = match &ty.root {
        TypeRoot::Int | TypeRoot::Date => {
            let v = long(bytes)?;
            let v = i32::try_from(v).map_err(|_| out_of_range(format!("{v}")))?;
            if matches!(ty.root, TypeRoot::Date) {
                Datum::Date(v)
            } else {
                Datum::Int(v)
            }
        }
        TypeRoot::Time { .. } => {
            let micros = long(bytes)?;
            i32::try_from(micros / MICROS_PER_MILLI)
                .ok()
                .filter(|_| micros % MICROS_PER_MILLI == 0)
                .map(Datum::Time)
                .ok_or_else(|| out_of_range(format!("TIME of {micros} µs")))?
        }
        TypeRoot::BigInt => Datum::BigInt(long(bytes)?),
        TypeRoot::Float => Datum::Float(
            <[u8; 4]>::try_from(bytes)
                .map(f32::from_le_bytes)
                .map_err(|_| FormatError::corrupt("iceberg key", "a FLOAT is 4 bytes"))?,
        ),
        TypeRoot::Double => Datum::Double(f64::from_bits(long(bytes)? as u64)),
        TypeRoot::TimestampNtz { .. } => {
            let micros = long(bytes)?;
            Datum::Timestamp(Timestamp {
                millis: micros.div_euclid(MICROS_PER_MILLI),
                nanos_of_milli: (micros.rem_euclid(MICROS_PER_MILLI) * 1_000) as u32,
            })
        }
        TypeRoot::Decimal { .. } => Datum::Decimal(decimal_from_unscaled_bytes(bytes)?),
        TypeRoot::Char { .. } | TypeRoot::String => Datum::String(
            std::str::from_utf8(bytes)
                .map_err(|e| FormatError::corrupt("iceberg key", e.to_string()))?
                .to_string(),
        ),
        _ => Datum::Binary(bytes.to_vec()),
    };
    if let Some(violation) = value_violation(&ty.root, &datum) {
        return Err(FormatError::corrupt("iceberg key", violation));
    }
    let values = vec![datum];
    let canonical = encode_iceberg_key(types, &values)
        .map_err(|error| FormatError::corrupt("iceberg key", error.to_string()))?;
    if canonical != bytes {
        return Err(FormatError::corrupt("iceberg key", "not in its canonical encoding"));
    }
    Ok(values)
}
