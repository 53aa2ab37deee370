//! BinaryMap, the encoding of a MAP value inside a CompactedRow (Fluss's `BinaryMap`; fluss-rust's
//! `FlussMap` writes the same bytes):
//!
//! ```text
//! key array size in bytes: i32 (little-endian) | keys: BinaryArray | values: BinaryArray
//! ```
//!
//! The two arrays have as many elements; entry `i` is key `i` with value `i`, in the order the
//! writer gave them (duplicate keys are kept, as Fluss keeps them). A key is never NULL: Fluss
//! makes a MAP's key type NOT NULL, and Arrow's map keys cannot be null.

use super::binary_array::{decode_elements, encode_elements};
use super::byte_reader::ByteReader;
use super::compacted_row::Datum;
use super::data_type::DataType;
use super::error::FormatError;

/// Encodes a MAP's entries. A NULL key, or a value outside its type, is refused.
pub(crate) fn encode_map(
    key: &DataType,
    value: &DataType,
    entries: &[(Datum, Datum)],
) -> Result<Vec<u8>, FormatError> {
    if let Some(i) = entries.iter().position(|(k, _)| k.is_null()) {
        return Err(FormatError::InvalidValue(format!("a NULL key in map entry {i}")));
    }
    let keys = encode_elements(key, entries.iter().map(|(k, _)| k), "map key")?;
    let values = encode_elements(value, entries.iter().map(|(_, v)| v), "map value")?;
    let keys_len = i32::try_from(keys.len())
        .map_err(|_| FormatError::InvalidValue(format!("map keys of {} bytes", keys.len())))?;
    let mut out = Vec::with_capacity(4 + keys.len() + values.len());
    out.extend_from_slice(&keys_len.to_le_bytes());
    out.extend_from_slice(&keys);
    out.extend_from_slice(&values);
    Ok(out)
}

/// Decodes a MAP that fills `bytes`.
pub(crate) fn decode_map(
    key: &DataType,
    value: &DataType,
    bytes: &[u8],
) -> Result<Vec<(Datum, Datum)>, FormatError> {
    let mut r = ByteReader::new(bytes);
    let keys_len = r.len_i32("map key array size")?;
    let keys = decode_elements(key, r.take(keys_len, "map key array")?, "map key")?;
    let values = decode_elements(value, r.rest(), "map value")?;
    if keys.len() != values.len() {
        return Err(FormatError::corrupt(
            "map",
            format!("{} keys and {} values", keys.len(), values.len()),
        ));
    }
    if let Some(i) = keys.iter().position(Datum::is_null) {
        return Err(FormatError::corrupt("map", format!("a NULL key in entry {i}")));
    }
    Ok(keys.into_iter().zip(values).collect())
}
