//! LogRecordBatch V0 with an Arrow body: the FetchLog `records` of a changelog (§5.7).
//! All integers little-endian.
//!
//! ```text
//! 0  i64 BaseOffset               27 u8  Attributes (bit 0: append-only; 0 for a changelog)
//! 8  i32 Length (= size - 12)     28 i32 LastOffsetDelta (records - 1, or 0 when empty)
//! 12 u8  Magic = 0                32 i64 WriterId (-1)
//! 13 i64 CommitTimestamp (ms)     40 i32 BatchSequence (-1)
//! 21 u32 CRC-32C of [25, end)     44 i32 RecordCount
//! 25 i16 SchemaId                 48 ChangeType vector (RecordCount bytes, only when not
//!                                    append-only), then one Arrow IPC RecordBatch message
//!                                    (no schema message)
//! ```
//! BaseOffset and CommitTimestamp lie outside the CRC, so a server may patch them.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, RecordBatchOptions};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::MetadataVersion;
use arrow_schema::{Field, Schema as ArrowSchema, SchemaRef};

pub use kvtablet_core::log::ChangeType;

use super::arrow_column::{build_array, check_layout, read_array, LayoutCursor, Node};
use super::byte_reader::{len_to_i32, write_crc32c, ByteReader};
use super::compacted_row::{Datum, Row};
use super::error::FormatError;
use super::schema::Column;

pub const LOG_MAGIC_V0: u8 = 0;
pub const LOG_V0_HEADER_SIZE: usize = 48;
/// BaseOffset and Length: the bytes before what `Length` counts.
pub const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 21;
const SCHEMA_ID_OFFSET: usize = 25;
pub const APPEND_ONLY_FLAG: u8 = 0x01;

/// One changelog record: the change and the full row (or, decoded, the projected row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub change_type: ChangeType,
    pub row: Row,
}

/// The header fields a writer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBatchMeta {
    pub base_offset: i64,
    pub commit_timestamp: i64,
    pub schema_id: i16,
    pub writer_id: i64,
    pub batch_sequence: i32,
    /// Append-only batches carry no ChangeType vector; a primary-key changelog is never one.
    pub append_only: bool,
}

impl LogBatchMeta {
    /// A changelog batch (not append-only, no writer).
    pub fn changelog(base_offset: i64, commit_timestamp: i64, schema_id: i16) -> Self {
        LogBatchMeta {
            base_offset,
            commit_timestamp,
            schema_id,
            writer_id: -1,
            batch_sequence: -1,
            append_only: false,
        }
    }
}

/// Every field of a V0 header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBatchHeader {
    pub base_offset: i64,
    pub length: i32,
    pub magic: u8,
    pub commit_timestamp: i64,
    pub crc: u32,
    pub schema_id: i16,
    pub attributes: u8,
    pub last_offset_delta: i32,
    pub writer_id: i64,
    pub batch_sequence: i32,
    pub record_count: i32,
}

impl LogBatchHeader {
    pub fn is_append_only(&self) -> bool {
        self.attributes & APPEND_ONLY_FLAG != 0
    }

    /// `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The whole batch's size in bytes.
    pub fn size_in_bytes(&self) -> usize {
        usize::try_from(self.length).unwrap_or(0).saturating_add(LOG_OVERHEAD)
    }

    /// Reads and checks the header at the start of `bytes` (magic, sizes; not the CRC).
    pub fn read(bytes: &[u8]) -> Result<LogBatchHeader, FormatError> {
        let mut r = ByteReader::new(bytes);
        let base_offset = r.i64("log batch base offset")?;
        let length = r.i32("log batch length")?;
        let magic = r.u8("log batch magic")?;
        if magic != LOG_MAGIC_V0 {
            return Err(FormatError::UnsupportedMagic(magic));
        }
        let header = LogBatchHeader {
            base_offset,
            length,
            magic,
            commit_timestamp: r.i64("log batch commit timestamp")?,
            crc: r.u32("log batch crc")?,
            schema_id: r.i16("log batch schema id")?,
            attributes: r.u8("log batch attributes")?,
            last_offset_delta: r.i32("log batch last offset delta")?,
            writer_id: r.i64("log batch writer id")?,
            batch_sequence: r.i32("log batch sequence")?,
            record_count: r.i32("log batch record count")?,
        };
        let size = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|&s| s >= LOG_V0_HEADER_SIZE)
            .ok_or_else(|| FormatError::corrupt("log batch length", format!("{length}")))?;
        if header.record_count < 0 {
            return Err(FormatError::corrupt(
                "log batch record count",
                format!("{}", header.record_count),
            ));
        }
        if size > bytes.len() {
            return Err(FormatError::Truncated {
                what: "log record batch",
                needed: size,
                available: bytes.len(),
            });
        }
        Ok(header)
    }
}

/// Rewrites BaseOffset and CommitTimestamp of an encoded batch in place (both lie outside
/// the CRC, so the batch stays valid).
pub fn patch_offset_and_timestamp(
    batch: &mut [u8],
    base_offset: i64,
    commit_timestamp: i64,
) -> Result<(), FormatError> {
    let available = batch.len();
    let truncated = || FormatError::Truncated { what: "log batch header", needed: 21, available };
    batch.get_mut(0..8).ok_or_else(truncated)?.copy_from_slice(&base_offset.to_le_bytes());
    batch.get_mut(13..21).ok_or_else(truncated)?.copy_from_slice(&commit_timestamp.to_le_bytes());
    Ok(())
}

/// Recomputes the CRC of an encoded batch in place (after a CRC-covered field was patched).
pub fn recompute_crc(batch: &mut [u8]) -> Result<(), FormatError> {
    write_crc32c(batch, CRC_OFFSET, SCHEMA_ID_OFFSET, "log batch header")
}

/// The Arrow schema the client derives for `columns` (names, Arrow types, nullability).
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        columns
            .iter()
            .map(|c| {
                Field::new(c.name.as_str(), c.data_type.root.arrow_type(), c.data_type.nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Checks a projection (strictly ascending column positions) and returns the columns.
pub fn project_columns(
    columns: &[Column],
    projection: Option<&[usize]>,
) -> Result<Vec<Column>, FormatError> {
    let Some(p) = projection else { return Ok(columns.to_vec()) };
    if p.windows(2).any(|w| w.first() >= w.get(1)) {
        return Err(FormatError::InvalidValue(format!("projection {p:?} is not ascending")));
    }
    p.iter()
        .map(|&i| {
            columns.get(i).cloned().ok_or_else(|| {
                FormatError::InvalidValue(format!("projected column {i} of {}", columns.len()))
            })
        })
        .collect()
}

fn arrow_err(e: arrow_schema::ArrowError) -> FormatError {
    FormatError::Arrow(e.to_string())
}

fn ipc_options() -> Result<IpcWriteOptions, FormatError> {
    // 8-byte alignment, as Java writes it; no compression (the client reads the codec).
    IpcWriteOptions::try_new(8, false, MetadataVersion::V5).map_err(arrow_err)
}

/// The Arrow IPC encapsulated RecordBatch message (continuation marker, metadata length,
/// flatbuffer padded to 8, body) of `records`' columns at `positions`.
fn arrow_message(
    records: &[LogRecord],
    all_columns: &[Column],
    positions: &[usize],
) -> Result<Vec<u8>, FormatError> {
    let columns = project_columns(all_columns, Some(positions))?;
    let schema = arrow_schema(&columns);
    let arrays = positions
        .iter()
        .zip(&columns)
        .map(|(&pos, col)| {
            let values = records
                .iter()
                .map(|record| {
                    record.row.get(pos).ok_or_else(|| {
                        FormatError::InvalidValue(format!("row has no column {pos}"))
                    })
                })
                .collect::<Result<Vec<&Datum>, _>>()?;
            build_array(&col.name, &col.data_type, &values)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(records.len()));
    let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
        .map_err(|e| FormatError::InvalidValue(e.to_string()))?;
    let mut buf = Vec::new();
    let (start, end) = {
        let mut writer = StreamWriter::try_new_with_options(&mut buf, &schema, ipc_options()?)
            .map_err(arrow_err)?;
        let start = writer.get_ref().len();
        writer.write(&batch).map_err(arrow_err)?;
        (start, writer.get_ref().len())
    };
    Ok(buf.get(start..end).unwrap_or(&[]).to_vec())
}

/// Encodes a changelog batch. `records` hold full rows of `columns`; `projection` (strictly
/// ascending positions) selects the columns that go into the Arrow body.
pub fn encode_log_batch(
    meta: &LogBatchMeta,
    columns: &[Column],
    projection: Option<&[usize]>,
    records: &[LogRecord],
) -> Result<Vec<u8>, FormatError> {
    let all: Vec<usize> = (0..columns.len()).collect();
    let positions = projection.unwrap_or(&all);
    if meta.append_only && records.iter().any(|r| r.change_type != ChangeType::AppendOnly) {
        return Err(FormatError::InvalidValue("an append-only batch with changes".to_string()));
    }
    if let Some(r) = records.iter().find(|r| r.row.len() != columns.len()) {
        return Err(FormatError::InvalidValue(format!(
            "a row of {} fields for {} columns",
            r.row.len(),
            columns.len()
        )));
    }
    let message = arrow_message(records, columns, positions)?;
    let count = len_to_i32(records.len(), "log batch records")?;
    let vector_len = if meta.append_only { 0 } else { records.len() };
    let mut out = Vec::with_capacity(LOG_V0_HEADER_SIZE + vector_len + message.len());
    out.extend_from_slice(&meta.base_offset.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.push(LOG_MAGIC_V0);
    out.extend_from_slice(&meta.commit_timestamp.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&meta.schema_id.to_le_bytes());
    out.push(if meta.append_only { APPEND_ONLY_FLAG } else { 0 });
    out.extend_from_slice(&count.saturating_sub(1).max(0).to_le_bytes());
    out.extend_from_slice(&meta.writer_id.to_le_bytes());
    out.extend_from_slice(&meta.batch_sequence.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    if !meta.append_only {
        out.extend(records.iter().map(|r| r.change_type.to_byte()));
    }
    out.extend_from_slice(&message);
    let length = len_to_i32(out.len() - LOG_OVERHEAD, "log batch")?;
    out[8..12].copy_from_slice(&length.to_le_bytes());
    recompute_crc(&mut out)?;
    Ok(out)
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedLogBatch {
    pub header: LogBatchHeader,
    pub records: Vec<LogRecord>,
}

/// Decodes the batch at the start of `bytes`, whose Arrow body holds `columns` (the
/// projected columns, in order). Checks the CRC. Returns the batch and its size.
pub fn decode_log_batch(
    bytes: &[u8],
    columns: &[Column],
) -> Result<(DecodedLogBatch, usize), FormatError> {
    let header = LogBatchHeader::read(bytes)?;
    let size = header.size_in_bytes();
    let batch = bytes.get(..size).ok_or(FormatError::Truncated {
        what: "log record batch",
        needed: size,
        available: bytes.len(),
    })?;
    let computed = crc32c::crc32c(batch.get(SCHEMA_ID_OFFSET..).unwrap_or(&[]));
    if computed != header.crc {
        return Err(FormatError::CrcMismatch { stored: header.crc, computed });
    }
    let expected_delta = header.record_count.saturating_sub(1).max(0);
    if header.last_offset_delta != expected_delta {
        return Err(FormatError::corrupt(
            "log batch last offset delta",
            format!("{} for {} records", header.last_offset_delta, header.record_count),
        ));
    }
    let mut r = ByteReader::new(batch);
    r.take(LOG_V0_HEADER_SIZE, "log batch header")?;
    let count = usize::try_from(header.record_count).unwrap_or(0);
    let change_types = if header.is_append_only() {
        vec![ChangeType::AppendOnly; count.min(r.remaining().saturating_mul(8))]
    } else {
        r.take(count, "change type vector")?
            .iter()
            .map(|&b| {
                ChangeType::from_byte(b)
                    .ok_or_else(|| FormatError::corrupt("change type", format!("byte {b}")))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let rows = decode_arrow_message(r.rest(), columns)?;
    if rows.len() != count || change_types.len() != count {
        return Err(FormatError::corrupt(
            "log record batch",
            format!("{} arrow rows for {count} records", rows.len()),
        ));
    }
    let records = change_types
        .into_iter()
        .zip(rows)
        .map(|(change_type, row)| LogRecord { change_type, row })
        .collect();
    Ok((DecodedLogBatch { header, records }, size))
}

/// Reads one Arrow IPC RecordBatch message (no schema message) that fills `message`.
fn decode_arrow_message(message: &[u8], columns: &[Column]) -> Result<Vec<Row>, FormatError> {
    validate_arrow_message(message, columns)?;
    let schema = arrow_schema(columns);
    let mut stream = Vec::new();
    {
        StreamWriter::try_new_with_options(&mut stream, &schema, ipc_options()?)
            .map_err(arrow_err)?;
    }
    stream.extend_from_slice(message);
    stream.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    // arrow-rs validates what it reads, but a malformed message must never take the
    // process down: a panic inside the reader becomes a corrupt-record error.
    let read = std::panic::catch_unwind(move || -> Result<RecordBatch, FormatError> {
        let mut reader = StreamReader::try_new(Cursor::new(stream), None).map_err(arrow_err)?;
        let batch = match reader.next() {
            Some(b) => b.map_err(|e| FormatError::corrupt("arrow message", e.to_string()))?,
            None => return Err(FormatError::corrupt("arrow message", "no record batch")),
        };
        if reader.next().is_some() {
            return Err(FormatError::corrupt("arrow message", "bytes after the record batch"));
        }
        Ok(batch)
    });
    let batch = match read {
        Ok(result) => result?,
        Err(_) => return Err(FormatError::corrupt("arrow message", "reader panicked")),
    };
    batch_to_rows(&batch, columns)
}

/// Checks the message framing and flatbuffer before arrow-rs reads it: arrow-rs trusts the
/// buffer offsets and lengths and panics on ones outside the body.
fn validate_arrow_message(message: &[u8], columns: &[Column]) -> Result<(), FormatError> {
    let corrupt = |detail: &str| FormatError::corrupt("arrow message", detail);
    let mut r = ByteReader::new(message);
    if r.u32("arrow continuation marker")? != 0xffff_ffff {
        return Err(corrupt("no continuation marker"));
    }
    let meta_len = r.len_i32("arrow metadata length")?;
    let meta = r.take(meta_len, "arrow metadata")?;
    let msg = arrow_ipc::root_as_message(meta).map_err(|e| corrupt(&e.to_string()))?;
    let batch = msg.header_as_record_batch().ok_or_else(|| corrupt("not a record batch"))?;
    let body_len = usize::try_from(msg.bodyLength()).map_err(|_| corrupt("negative body"))?;
    if body_len != r.remaining() {
        return Err(corrupt("body length differs from the bytes that follow"));
    }
    if batch.compression().is_some() {
        return Err(corrupt("compressed bodies are not supported"));
    }
    if batch.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
        return Err(corrupt("unexpected variadic buffers"));
    }
    let rows = batch.length();
    if rows < 0 {
        return Err(corrupt("negative row count"));
    }
    let nodes: Vec<Node> = batch
        .nodes()
        .ok_or_else(|| corrupt("no field nodes"))?
        .iter()
        .map(|node| Node { length: node.length(), null_count: node.null_count() })
        .collect();
    let buffers = batch.buffers().ok_or_else(|| corrupt("no buffers"))?;
    let mut buffer_lengths = Vec::with_capacity(buffers.len());
    for b in buffers.iter() {
        let start = usize::try_from(b.offset()).map_err(|_| corrupt("negative buffer offset"))?;
        let len = usize::try_from(b.length()).map_err(|_| corrupt("negative buffer length"))?;
        if start.checked_add(len).is_none_or(|end| end > body_len) {
            return Err(corrupt("buffer outside the body"));
        }
        // Arrow IPC aligns every buffer to 8 bytes (Fluss's Java writer and ours do).
        if start % 8 != 0 {
            return Err(corrupt("a buffer is not 8-byte aligned"));
        }
        buffer_lengths.push(len);
    }
    let mut cursor =
        LayoutCursor { nodes: &nodes, buffer_lengths: &buffer_lengths, node: 0, buffer: 0 };
    for column in columns {
        check_layout(&column.data_type.root, Some(rows), &mut cursor)?;
    }
    if cursor.node != nodes.len() {
        return Err(corrupt("field nodes differ from the columns"));
    }
    if cursor.buffer != buffer_lengths.len() {
        return Err(corrupt("buffer count differs from the columns"));
    }
    Ok(())
}

fn batch_to_rows(batch: &RecordBatch, columns: &[Column]) -> Result<Vec<Row>, FormatError> {
    let n = batch.num_rows();
    if batch.num_columns() != columns.len() {
        return Err(FormatError::corrupt("arrow message", "wrong number of columns"));
    }
    let mut rows: Vec<Vec<Datum>> = (0..n).map(|_| Vec::with_capacity(columns.len())).collect();
    for (array, col) in batch.columns().iter().zip(columns) {
        if array.len() != n {
            return Err(FormatError::corrupt("arrow column", "wrong length"));
        }
        let values = read_array(array.as_ref(), &col.data_type)?;
        if !col.data_type.nullable && values.iter().any(Datum::is_null) {
            return Err(FormatError::corrupt("arrow column", "NULL in a NOT NULL column"));
        }
        for (row, v) in rows.iter_mut().zip(values) {
            row.push(v);
        }
    }
    Ok(rows.into_iter().map(Row).collect())
}
