//! KvRecordBatch, the `records` of PutKv (§5.3). All integers little-endian.
//!
//! ```text
//! 0  i32 Length (bytes after this field)   12 i64 WriterId (-1: not idempotent)
//! 4  u8  Magic = 0                         20 i32 BatchSequence (-1: not idempotent)
//! 5  u32 CRC-32C of bytes [9, end)         24 i32 RecordCount
//! 9  i16 SchemaId                          28 records
//! 11 u8  Attributes = 0
//! ```
//! A record is `i32 Length` (bytes after it), `varint KeyLength`, the key, and the value up
//! to the record end; no value bytes means a delete.

use super::byte_reader::{len_to_i32, put_varint_u32, write_crc32c, ByteReader};
use super::error::FormatError;

pub const KV_MAGIC: u8 = 0;
pub const KV_HEADER_SIZE: usize = 28;
const LENGTH_SIZE: usize = 4;
const CRC_OFFSET: usize = 5;
const SCHEMA_ID_OFFSET: usize = 9;
pub const NO_WRITER_ID: i64 = -1;
pub const NO_BATCH_SEQUENCE: i32 = -1;

/// One record: a key and, unless it is a delete, the value (a CompactedRow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvRecord<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A decoded batch; keys and values borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecordBatch<'a> {
    pub magic: u8,
    pub crc: u32,
    pub schema_id: i16,
    pub attributes: u8,
    pub writer_id: i64,
    pub batch_sequence: i32,
    pub records: Vec<KvRecord<'a>>,
}

impl<'a> KvRecordBatch<'a> {
    /// Whether the writer asked for idempotence (a writer id and a sequence).
    pub fn is_idempotent(&self) -> bool {
        self.writer_id != NO_WRITER_ID
    }

    /// Decodes exactly one batch that fills `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<KvRecordBatch<'a>, FormatError> {
        let (batch, used) = KvRecordBatch::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(FormatError::corrupt(
                "kv record batch",
                format!("{} bytes after the batch", bytes.len() - used),
            ));
        }
        Ok(batch)
    }

    /// Decodes the batch at the start of `bytes`; returns it and its size.
    pub fn decode_prefix(bytes: &'a [u8]) -> Result<(KvRecordBatch<'a>, usize), FormatError> {
        let mut r = ByteReader::new(bytes);
        let length = r.len_i32("kv batch length")?;
        let size = length
            .checked_add(LENGTH_SIZE)
            .ok_or_else(|| FormatError::corrupt("kv batch length", "overflow"))?;
        if size < KV_HEADER_SIZE {
            return Err(FormatError::corrupt(
                "kv batch length",
                format!("{size} bytes is less than the {KV_HEADER_SIZE}-byte header"),
            ));
        }
        let batch = bytes.get(..size).ok_or(FormatError::Truncated {
            what: "kv record batch",
            needed: size,
            available: bytes.len(),
        })?;
        let mut r = ByteReader::new(batch);
        r.take(LENGTH_SIZE, "kv batch length")?;
        let magic = r.u8("kv batch magic")?;
        if magic != KV_MAGIC {
            return Err(FormatError::UnsupportedMagic(magic));
        }
        let crc = r.u32("kv batch crc")?;
        let computed = crc32c::crc32c(batch.get(SCHEMA_ID_OFFSET..).unwrap_or(&[]));
        if computed != crc {
            return Err(FormatError::CrcMismatch { stored: crc, computed });
        }
        let schema_id = r.i16("kv batch schema id")?;
        let attributes = r.u8("kv batch attributes")?;
        let writer_id = r.i64("kv batch writer id")?;
        let batch_sequence = r.i32("kv batch sequence")?;
        let count = r.len_i32("kv batch record count")?;
        // Every record takes at least 5 bytes; do not trust the count for the allocation.
        let mut records = Vec::with_capacity(count.min(r.remaining() / 5));
        for _ in 0..count {
            let rec_len = r.len_i32("kv record length")?;
            let rec = r.take(rec_len, "kv record")?;
            let mut rr = ByteReader::new(rec);
            let key_len = rr.varint_u32("kv key length")?;
            let key_len = usize::try_from(key_len)
                .map_err(|_| FormatError::corrupt("kv key length", format!("{key_len}")))?;
            let key = rr.take(key_len, "kv key")?;
            let value = rr.rest();
            records.push(KvRecord { key, value: (!value.is_empty()).then_some(value) });
        }
        if !r.is_empty() {
            return Err(FormatError::corrupt(
                "kv record batch",
                format!("{} bytes after record {count}", r.remaining()),
            ));
        }
        let batch =
            KvRecordBatch { magic, crc, schema_id, attributes, writer_id, batch_sequence, records };
        Ok((batch, size))
    }
}

/// Builds a KvRecordBatch (our own client and the tests).
#[derive(Debug, Clone)]
pub struct KvRecordBatchBuilder {
    buf: Vec<u8>,
    count: i32,
}

impl KvRecordBatchBuilder {
    pub fn new(schema_id: i16, writer_id: i64, batch_sequence: i32) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.push(KV_MAGIC);
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&schema_id.to_le_bytes());
        buf.push(0);
        buf.extend_from_slice(&writer_id.to_le_bytes());
        buf.extend_from_slice(&batch_sequence.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        KvRecordBatchBuilder { buf, count: 0 }
    }

    /// Appends an upsert (`Some(value)`, which must not be empty) or a delete (`None`).
    pub fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), FormatError> {
        if value.is_some_and(<[u8]>::is_empty) {
            return Err(FormatError::InvalidValue("an upsert needs a non-empty value".into()));
        }
        let key_len = u32::try_from(key.len())
            .map_err(|_| FormatError::InvalidValue("key too long".to_string()))?;
        let mut rec = Vec::with_capacity(5 + key.len() + value.map_or(0, <[u8]>::len));
        put_varint_u32(&mut rec, key_len);
        rec.extend_from_slice(key);
        if let Some(v) = value {
            rec.extend_from_slice(v);
        }
        self.buf.extend_from_slice(&len_to_i32(rec.len(), "kv record")?.to_le_bytes());
        self.buf.extend_from_slice(&rec);
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| FormatError::InvalidValue("too many records".to_string()))?;
        Ok(())
    }

    /// The finished batch: length, record count and CRC filled in.
    pub fn build(mut self) -> Result<Vec<u8>, FormatError> {
        let length = len_to_i32(self.buf.len() - LENGTH_SIZE, "kv batch")?;
        self.buf[..4].copy_from_slice(&length.to_le_bytes());
        self.buf[24..28].copy_from_slice(&self.count.to_le_bytes());
        recompute_crc(&mut self.buf)?;
        Ok(self.buf)
    }
}

/// Recomputes the CRC of an encoded batch in place (after a header field was patched).
pub fn recompute_crc(batch: &mut [u8]) -> Result<(), FormatError> {
    write_crc32c(batch, CRC_OFFSET, SCHEMA_ID_OFFSET, "kv batch header")
}

/// Encodes a whole batch at once.
pub fn encode_kv_batch(
    schema_id: i16,
    writer_id: i64,
    batch_sequence: i32,
    records: &[KvRecord<'_>],
) -> Result<Vec<u8>, FormatError> {
    let mut b = KvRecordBatchBuilder::new(schema_id, writer_id, batch_sequence);
    for rec in records {
        b.append(rec.key, rec.value)?;
    }
    b.build()
}
