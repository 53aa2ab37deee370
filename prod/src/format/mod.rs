//! The Fluss byte formats, as a pure library (no I/O): table and schema JSON, CompactedRow
//! values (with the BinaryArray and BinaryMap of their ARRAY and MAP fields), primary and
//! bucket keys with the bucket function, the PutKv KvRecordBatch, the LimitScan/ScanKv value
//! batch, and the changelog LogRecordBatch V0 with an Arrow body. Decoders never panic on bad
//! bytes; they return `FormatError` (CORRUPT_RECORD).

pub mod arrow_column;
pub mod binary_array;
pub mod binary_map;
pub mod bucket_function;
pub mod byte_reader;
pub mod compacted_row;
pub mod data_type;
pub mod decoder_check;
pub mod error;
pub mod iceberg_key;
pub mod indexed_row;
pub mod key_encoding;
pub mod key_format;
pub mod kv_record_batch;
pub mod lake_format;
pub mod log_record_batch;
pub mod paimon_key;
pub mod partial_update;
pub mod record_validator;
pub mod row_format;
pub mod schema;
pub mod table_encoding;
pub mod value_record_batch;
pub mod value_text;

pub use bucket_function::BucketFunction;
pub use compacted_row::{decode_row, encode_row, Datum, Row, Timestamp};
pub use data_type::{DataType, RowField, TypeRoot};
pub use error::{FormatError, SchemaError};
pub use key_encoding::{bucket_of, bucket_of_primary_key, decode_key, encode_key};
pub use key_format::KeyFormat;
pub use kv_record_batch::{KvRecord, KvRecordBatch, KvRecordBatchBuilder};
pub use lake_format::LakeFormat;
pub use log_record_batch::{
    decode_log_batch, encode_log_batch, ChangeType, DecodedLogBatch, LogBatchHeader, LogBatchMeta,
    LogRecord,
};
pub use partial_update::CompactedPartialUpdates;
pub use record_validator::RecordValidator;
pub use row_format::RowFormat;
pub use schema::{Column, Schema, TableDescriptor, TableSchema};
pub use table_encoding::TableEncoding;
pub use value_record_batch::{decode_value_batch, encode_stored_value, encode_value_batch};
