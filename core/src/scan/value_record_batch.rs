//! Fluss's `DefaultValueRecordBatch` (magic 0), the `records` of ScanKv and LimitScan.
//!
//! Little-endian. Header, 9 bytes: `length:i32` (bytes after this field) | `magic:i8` |
//! `record_count:i32`. Each record: `length:i32` | value bytes, where a value is the stored
//! KV value (`schema_id:i16` + row). Keys are not carried.

use bytes::Bytes;

const MAGIC: u8 = 0;
/// Bytes of an empty batch.
pub const HEADER_BYTES: usize = 4 + 1 + 4;
const RECORD_OVERHEAD_BYTES: usize = 4;

/// Appends values and reports the serialized size as it grows, so that a batch can be cut at
/// a byte budget.
#[derive(Debug, Clone)]
pub struct ValueRecordBatchBuilder {
    bytes: Vec<u8>,
    record_count: u32,
}

impl Default for ValueRecordBatchBuilder {
    fn default() -> Self {
        ValueRecordBatchBuilder::new()
    }
}

impl ValueRecordBatchBuilder {
    pub fn new() -> Self {
        ValueRecordBatchBuilder::with_capacity(4096)
    }

    /// A builder that will not reallocate below `capacity_bytes`: a batch cut at a byte budget
    /// is written once instead of being copied as it grows.
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity_bytes.max(HEADER_BYTES));
        bytes.extend_from_slice(&[0u8; HEADER_BYTES]);
        ValueRecordBatchBuilder { bytes, record_count: 0 }
    }

    pub fn append(&mut self, value: &[u8]) {
        let len = u32::try_from(value.len()).expect("a stored value is below 4 GiB");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(value);
        self.record_count += 1;
    }

    /// The size the batch would have if built now, header included.
    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    pub fn build(mut self) -> Vec<u8> {
        let length = (self.bytes.len() - 4) as u32;
        self.bytes[0..4].copy_from_slice(&length.to_le_bytes());
        self.bytes[4] = MAGIC;
        self.bytes[5..9].copy_from_slice(&self.record_count.to_le_bytes());
        assert!(self.bytes.len() >= HEADER_BYTES);
        self.bytes
    }
}

/// The serialized size of one value inside a batch.
pub fn record_size_bytes(value: &[u8]) -> usize {
    RECORD_OVERHEAD_BYTES + value.len()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed value record batch: {0}")]
pub struct ValueBatchError(pub String);

/// A received batch, checked once and then read in place: its values are slices of the
/// received bytes, with no copy per value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueBatch {
    bytes: Bytes,
    record_count: usize,
}

impl ValueBatch {
    /// Checks the framing of `bytes`; never panics on any input.
    pub fn parse(bytes: Bytes) -> Result<ValueBatch, ValueBatchError> {
        let record_count = check_value_batch(&bytes)?;
        Ok(ValueBatch { bytes, record_count })
    }

    pub fn empty() -> ValueBatch {
        ValueRecordBatchBuilder::new().build_value_batch()
    }

    pub fn len(&self) -> usize {
        self.record_count
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The values in order, as slices of the batch.
    pub fn iter(&self) -> ValueBatchIter<'_> {
        ValueBatchIter { bytes: &self.bytes, position: HEADER_BYTES, remaining: self.record_count }
    }

    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }

    /// The batch as it travels.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Iterates a checked [`ValueBatch`].
#[derive(Debug, Clone)]
pub struct ValueBatchIter<'a> {
    bytes: &'a [u8],
    position: usize,
    remaining: usize,
}

impl<'a> Iterator for ValueBatchIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        // The framing was checked at parse time, so these reads are in bounds.
        let len_bytes = self.bytes.get(self.position..self.position + 4)?;
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let start = self.position + 4;
        let value = self.bytes.get(start..start + len)?;
        self.position = start + len;
        self.remaining -= 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ValueRecordBatchBuilder {
    /// Builds straight into a [`ValueBatch`] (for tests and in-process callers).
    pub fn build_value_batch(self) -> ValueBatch {
        let record_count = self.record_count as usize;
        ValueBatch { bytes: Bytes::from(self.build()), record_count }
    }
}

/// Decodes a batch into owned values; never panics on any input.
pub fn decode_value_batch(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ValueBatchError> {
    let record_count = check_value_batch(bytes)?;
    let values = ValueBatchIter { bytes, position: HEADER_BYTES, remaining: record_count };
    Ok(values.map(<[u8]>::to_vec).collect())
}

/// Checks the framing of a batch and returns its record count; never panics on any input.
fn check_value_batch(bytes: &[u8]) -> Result<usize, ValueBatchError> {
    let header = bytes.get(0..HEADER_BYTES).ok_or_else(|| {
        ValueBatchError(format!(
            "{} bytes is shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        ))
    })?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length.checked_add(4) != Some(bytes.len()) {
        return Err(ValueBatchError(format!(
            "length field {length} but {} bytes follow",
            bytes.len() - 4
        )));
    }
    if header[4] != MAGIC {
        return Err(ValueBatchError(format!("unknown magic {}", header[4])));
    }
    let record_count = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
    // Every record takes at least its length field: a count beyond that is corrupt.
    if record_count > (bytes.len() - HEADER_BYTES) / RECORD_OVERHEAD_BYTES {
        return Err(ValueBatchError(format!(
            "{record_count} records cannot fit in {} bytes",
            bytes.len()
        )));
    }
    let mut position = HEADER_BYTES;
    for index in 0..record_count {
        let len_bytes = bytes
            .get(position..position + 4)
            .ok_or_else(|| ValueBatchError(format!("record {index} has no length")))?;
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        position += 4;
        let end = position.checked_add(len).filter(|end| *end <= bytes.len()).ok_or_else(|| {
            ValueBatchError(format!("record {index} of {len} bytes runs past the batch"))
        })?;
        position = end;
    }
    if position != bytes.len() {
        return Err(ValueBatchError(format!("{} trailing bytes", bytes.len() - position)));
    }
    Ok(record_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_batch_is_the_nine_byte_header() {
        let bytes = ValueRecordBatchBuilder::new().build();
        assert_eq!(bytes, vec![5, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_value_batch(&bytes).expect("decodes"), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn the_builder_size_counts_framing() {
        let mut builder = ValueRecordBatchBuilder::new();
        builder.append(b"\x01\x00abc");
        assert_eq!(builder.size_bytes(), HEADER_BYTES + record_size_bytes(b"\x01\x00abc"));
        let bytes = builder.build();
        assert_eq!(bytes.len(), 9 + 4 + 5);
        assert_eq!(&bytes[0..4], &(bytes.len() as u32 - 4).to_le_bytes());
    }

    proptest! {
        #[test]
        fn batches_round_trip(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let mut builder = ValueRecordBatchBuilder::new();
            for value in &values {
                builder.append(value);
            }
            let bytes = builder.build();
            prop_assert_eq!(decode_value_batch(&bytes).expect("decodes"), values.clone());
            let batch = ValueBatch::parse(Bytes::from(bytes)).expect("parses");
            prop_assert_eq!(batch.len(), values.len());
            prop_assert_eq!(batch.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), values);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let decoded = decode_value_batch(&bytes);
            let parsed = ValueBatch::parse(Bytes::from(bytes));
            prop_assert_eq!(decoded.ok(), parsed.ok().map(|batch| batch.to_vecs()));
        }
    }
}
