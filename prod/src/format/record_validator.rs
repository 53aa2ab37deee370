//! The check every PutKv batch passes before anything of it reaches the changelog: each record
//! is decoded against the table's schema, so that a row the readers (FetchLog, Lookup,
//! LimitScan, ScanKv) could not decode is refused at the door instead of poisoning the bucket.
//!
//! A record is accepted when
//! - its key decodes as exactly the primary-key columns, in key order (no bytes left over), and
//!   re-encodes to the same bytes (a non-canonical varint would be stored under a key that no
//!   lookup can name), in the table's primary-key encoding (compacted, or its lake format's);
//! - its value, if any (none is a delete), decodes as a row of the table's value format
//!   (CompactedRow, or IndexedRow with `table.kv.format=INDEXED`) of the schema's columns:
//!   every NOT NULL column set, every field well formed (UTF-8 strings, booleans 0 or 1), no
//!   bytes after the last field;
//! - the primary-key columns of that row encode to the record's key.
//!
//! The batch must also carry the table's current schema id, the one the readers decode with.
//! Every refusal is a [`FormatError::Corrupt`], answered `CORRUPT_RECORD` (14); nothing here
//! panics, whatever the bytes (the fuzz target `put_kv_validation` checks).

use super::data_type::DataType;
use super::error::FormatError;
use super::key_format::KeyFormat;
use super::kv_record_batch::{KvRecord, KvRecordBatch};
use super::row_format::RowFormat;
use super::schema::TableSchema;

/// Validates the records of one table's PutKv batches; the types are resolved once.
#[derive(Debug, Clone)]
pub struct RecordValidator {
    schema_id: i16,
    types: Vec<DataType>,
    key_types: Vec<DataType>,
    key_positions: Vec<usize>,
    /// The table's primary-key encoding and value format (`table_encoding.rs`).
    key_format: KeyFormat,
    row_format: RowFormat,
}

impl RecordValidator {
    /// A validator for `schema`, which must have a primary key.
    pub fn new(schema: &TableSchema) -> Result<RecordValidator, FormatError> {
        if schema.primary_key.is_empty() {
            return Err(FormatError::InvalidValue("the table has no primary key".to_string()));
        }
        Ok(RecordValidator {
            schema_id: schema.schema_id,
            types: schema.data_types(),
            key_types: schema.primary_key_types(),
            key_positions: schema.primary_key.clone(),
            key_format: schema.primary_key_format(),
            row_format: schema.encoding.row_format,
        })
    }

    /// Checks the schema id of `batch` and every record in it.
    pub fn check_batch(&self, batch: &KvRecordBatch<'_>) -> Result<(), FormatError> {
        if batch.schema_id != self.schema_id {
            return Err(FormatError::corrupt(
                "kv record batch",
                format!(
                    "schema id {} is not the table's current schema id {}",
                    batch.schema_id, self.schema_id
                ),
            ));
        }
        for (index, record) in batch.records.iter().enumerate() {
            self.check_record(record).map_err(|error| match error {
                FormatError::Corrupt { what, detail } => {
                    FormatError::Corrupt { what, detail: format!("record {index}: {detail}") }
                }
                other => FormatError::corrupt("kv record", format!("record {index}: {other}")),
            })?;
        }
        Ok(())
    }

    /// Checks one record: its key, and for an upsert its row and the row's key.
    pub fn check_record(&self, record: &KvRecord<'_>) -> Result<(), FormatError> {
        let key = self.key_format.decode(&self.key_types, record.key)?;
        let canonical = self
            .key_format
            .encode(&self.key_types, &key)
            .map_err(|error| FormatError::corrupt("kv record key", error.to_string()))?;
        if canonical != record.key {
            return Err(FormatError::corrupt("kv record key", "not in its canonical encoding"));
        }
        let Some(value) = record.value else { return Ok(()) };
        let row = self.row_format.decode_row(&self.types, value)?;
        let row_key = row
            .project(&self.key_positions)
            .and_then(|values| self.key_format.encode(&self.key_types, &values.0))
            .map_err(|error| FormatError::corrupt("kv record value", error.to_string()))?;
        if row_key != record.key {
            return Err(FormatError::corrupt(
                "kv record",
                "the row's primary-key columns differ from the record's key",
            ));
        }
        Ok(())
    }
}
