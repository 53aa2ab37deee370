//! DefaultValueRecordBatch, the `records` of LimitScan and ScanKv (§5.6), and the stored
//! value `schema_id (i16 LE) ++ row bytes` that Lookup and PrefixLookup return (§5.5).
//!
//! ```text
//! 0 i32 Length (bytes after this field)
//! 4 u8  Magic = 0
//! 5 i32 RecordCount
//! 9 records: i32 Length, then the stored value (i16 SchemaId ++ row)
//! ```

use super::byte_reader::{len_to_i32, ByteReader};
use super::error::FormatError;

pub const VALUE_MAGIC: u8 = 0;
pub const VALUE_HEADER_SIZE: usize = 9;

/// `schema_id ++ row`, the value a tablet stores and returns.
pub fn encode_stored_value(schema_id: i16, row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + row.len());
    out.extend_from_slice(&schema_id.to_le_bytes());
    out.extend_from_slice(row);
    out
}

/// Splits a stored value into its schema id and row bytes.
pub fn decode_stored_value(value: &[u8]) -> Result<(i16, &[u8]), FormatError> {
    let mut r = ByteReader::new(value);
    let schema_id = r.i16("stored value schema id")?;
    Ok((schema_id, r.rest()))
}

/// Encodes stored values (each already `schema_id ++ row`) into one batch.
pub fn encode_value_batch<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, FormatError> {
    let mut out = vec![0u8; VALUE_HEADER_SIZE];
    let mut count: i32 = 0;
    for v in values {
        out.extend_from_slice(&len_to_i32(v.len(), "value record")?.to_le_bytes());
        out.extend_from_slice(v);
        count = count
            .checked_add(1)
            .ok_or_else(|| FormatError::InvalidValue("too many records".to_string()))?;
    }
    let length = len_to_i32(out.len() - 4, "value batch")?;
    out[0..4].copy_from_slice(&length.to_le_bytes());
    out[4] = VALUE_MAGIC;
    out[5..9].copy_from_slice(&count.to_le_bytes());
    Ok(out)
}

/// Decodes one batch that fills `bytes`; returns the stored values.
pub fn decode_value_batch(bytes: &[u8]) -> Result<Vec<&[u8]>, FormatError> {
    let mut r = ByteReader::new(bytes);
    let length = r.len_i32("value batch length")?;
    if length != r.remaining() {
        return Err(FormatError::corrupt(
            "value batch length",
            format!("says {length}, {} bytes follow", r.remaining()),
        ));
    }
    let magic = r.u8("value batch magic")?;
    if magic != VALUE_MAGIC {
        return Err(FormatError::UnsupportedMagic(magic));
    }
    let count = r.len_i32("value batch record count")?;
    let mut values = Vec::with_capacity(count.min(r.remaining() / 4));
    for _ in 0..count {
        let len = r.len_i32("value record length")?;
        values.push(r.take(len, "value record")?);
    }
    if !r.is_empty() {
        return Err(FormatError::corrupt(
            "value batch",
            format!("{} bytes after record {count}", r.remaining()),
        ));
    }
    Ok(values)
}
