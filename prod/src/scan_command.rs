//! `kvtablet scan`: a full scan (ScanKv) of one bucket through a server, printed as one JSON
//! object per row per line, keyed by column name: NULL as `null`, integers and floating-point
//! values as JSON numbers, booleans as JSON booleans, strings as JSON strings (non-ASCII kept
//! as is). JSON has no NaN or infinities: those print as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"`. A FLOAT prints as the double it widens to, as Arrow and Python read it. An
//! ARRAY prints as a JSON array, a ROW as an object keyed by field name, a MAP as an array of
//! `[key, value]` pairs (its keys need not be strings, and its order and duplicates are kept).
//!
//! The scan runs core's `KvScanner` over [`WireRpc`]: pipelined continuations, resends of a
//! lost page with the same `call_seq_id`. A scan that fails midway is not restarted: its rows
//! are already printed, and a new scan sees a different snapshot.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use kvtablet_core::env::Rpc;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::scan::kv_scanner::{KvScanner, KvScannerOptions, ScanError};
use kvtablet_core::TableBucket;
use tokio::runtime::Handle;

use crate::client::{ClientError, Connection, ConnectionConfig, RemoteTable, WireRpc};
use crate::format::{value_text, Datum, FormatError, Row, TableSchema, TypeRoot};
use crate::system_clock::SystemClock;
use crate::tokio_executor::TokioExecutor;

/// Fluss's `TABLE_NOT_EXIST`.
const TABLE_NOT_EXIST: i32 = 7;
/// Fluss's `DATABASE_NOT_EXIST`.
const DATABASE_NOT_EXIST: i32 = 4;

/// What to scan, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTarget {
    /// `host:port` of any server of the cluster (the bootstrap server).
    pub server: String,
    pub database: String,
    pub table: String,
    /// The partition (its name, values joined by `$`) of a partitioned table.
    pub partition: Option<String>,
    pub bucket: i32,
}

/// How to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCommandOptions {
    /// The page size asked of the server.
    pub batch_size_bytes: i32,
    pub connection: ConnectionConfig,
}

impl ScanCommandOptions {
    pub const DEFAULT: ScanCommandOptions = ScanCommandOptions {
        batch_size_bytes: KvScannerOptions::DEFAULT.batch_size_bytes,
        connection: ConnectionConfig::DEFAULT,
    };
}

/// What a finished scan saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    pub rows: u64,
    /// The changelog offset the snapshot was taken at.
    pub log_offset: u64,
}

/// Why the scan command failed; each message names what to check.
#[derive(Debug, thiserror::Error)]
pub enum ScanCommandError {
    #[error("cannot reach the server: {0}")]
    Connect(ClientError),
    #[error("table {database}.{table} does not exist ({source})")]
    UnknownTable { database: String, table: String, source: ClientError },
    #[error("cannot read the metadata of {database}.{table}: {source}")]
    Metadata { database: String, table: String, source: ClientError },
    #[error("bucket {bucket} does not exist: {database}.{table} has buckets 0..{bucket_count}")]
    UnknownBucket { database: String, table: String, bucket: i32, bucket_count: i32 },
    #[error("bucket {bucket} of {database}.{table} has no leader in the metadata")]
    NoLeader { database: String, table: String, bucket: i32 },
    #[error("cannot reach the leader of bucket {bucket}: {source}")]
    LeaderConnect { bucket: i32, source: ClientError },
    #[error("the scan failed after {rows} rows: {source}")]
    Scan { rows: u64, source: ScanError },
    #[error("cannot read schema {schema_id}: {source}")]
    Schema { schema_id: i16, source: ClientError },
    #[error("row {row} is malformed: {source}")]
    Row { row: u64, source: FormatError },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Scans `target` and writes its rows to stdout.
pub async fn run(
    target: ScanTarget,
    options: ScanCommandOptions,
    runtime: Handle,
) -> Result<ScanSummary, ScanCommandError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let summary = scan_bucket(&target, options, runtime, &mut out).await?;
    out.flush()?;
    Ok(summary)
}

/// Scans `target`, writing one JSON line per row to `out`.
pub async fn scan_bucket(
    target: &ScanTarget,
    options: ScanCommandOptions,
    runtime: Handle,
    out: &mut dyn Write,
) -> Result<ScanSummary, ScanCommandError> {
    let ScanTarget { server, database, table, partition, bucket } = target;
    let bootstrap = Arc::new(
        Connection::connect(server, options.connection).await.map_err(ScanCommandError::Connect)?,
    );
    let remote = RemoteTable::fetch(&bootstrap, database, table).await.map_err(|source| {
        let (database, table) = (database.clone(), table.clone());
        match source.server_code() {
            Some(TABLE_NOT_EXIST | DATABASE_NOT_EXIST) => {
                ScanCommandError::UnknownTable { database, table, source }
            }
            _ => ScanCommandError::Metadata { database, table, source },
        }
    })?;
    let remote = match partition {
        None => remote,
        Some(name) => remote.fetch_partition(&bootstrap, name).await.map_err(|source| {
            ScanCommandError::Metadata { database: database.clone(), table: table.clone(), source }
        })?,
    };
    if !(0..remote.bucket_count).contains(bucket) {
        return Err(ScanCommandError::UnknownBucket {
            database: database.clone(),
            table: table.clone(),
            bucket: *bucket,
            bucket_count: remote.bucket_count,
        });
    }
    let leader = remote.leaders.get(bucket).cloned().ok_or_else(|| ScanCommandError::NoLeader {
        database: database.clone(),
        table: table.clone(),
        bucket: *bucket,
    })?;
    // One node plays every role: reuse the bootstrap connection when the leader is it.
    let same_server = leader.addr.parse().ok() == Some(bootstrap.addr());
    let leader_connection = if same_server {
        Arc::clone(&bootstrap)
    } else {
        Arc::new(
            Connection::connect(&leader.addr, options.connection)
                .await
                .map_err(|source| ScanCommandError::LeaderConnect { bucket: *bucket, source })?,
        )
    };
    let rpc: Arc<dyn Rpc> = Arc::new(WireRpc::new(leader.addr.clone(), leader_connection));
    let scanner_options = KvScannerOptions {
        batch_size_bytes: options.batch_size_bytes,
        request_timeout_ms: duration_ms(options.connection.request_timeout),
        ..KvScannerOptions::DEFAULT
    };
    let mut scanner = KvScanner::open(
        rpc,
        Arc::new(TokioExecutor::new(runtime)),
        Arc::new(SystemClock::new()),
        Ledger::new(),
        leader.node_id,
        TableBucket {
            table_id: remote.table_id,
            partition_id: remote.partition_id,
            bucket_id: *bucket,
        },
        scanner_options,
    )
    .await
    .map_err(|source| ScanCommandError::Scan { rows: 0, source })?;
    let mut schemas: BTreeMap<i16, TableSchema> = BTreeMap::new();
    schemas.insert(remote.schema.schema_id, remote.schema.clone());
    let mut rows = 0u64;
    let mut line = String::with_capacity(256);
    loop {
        let batch = match scanner.next_batch().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(source) => return Err(ScanCommandError::Scan { rows, source }),
        };
        for value in batch.iter() {
            let schema_id = RemoteTable::schema_id_of(value)
                .map_err(|source| ScanCommandError::Row { row: rows, source })?;
            let schema = match schemas.entry(schema_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(unknown) => unknown.insert(
                    remote
                        .fetch_schema(&bootstrap, schema_id)
                        .await
                        .map_err(|source| ScanCommandError::Schema { schema_id, source })?,
                ),
            };
            let row = RemoteTable::decode_value(schema, value)
                .map_err(|source| ScanCommandError::Row { row: rows, source })?;
            line.clear();
            row_json(schema, &row, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
            rows += 1;
        }
    }
    let log_offset = scanner.log_offset();
    scanner.close().await;
    tracing::debug!(rows, log_offset, "scan finished");
    Ok(ScanSummary { rows, log_offset })
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Appends `row` as a JSON object keyed by column name, in schema order.
pub fn row_json(schema: &TableSchema, row: &Row, out: &mut String) {
    out.push('{');
    for (index, column) in schema.columns.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(&column.name, out);
        out.push(':');
        push_value_json(&column.data_type.root, row.get(index).unwrap_or(&Datum::Null), out);
    }
    out.push('}');
}

/// Appends one value of type `ty` as JSON: an ARRAY as a JSON array, a ROW as an object keyed
/// by field name, a MAP as an array of `[key, value]` pairs in stored order (keys of any type,
/// duplicates kept).
fn push_value_json(ty: &TypeRoot, value: &Datum, out: &mut String) {
    match value {
        Datum::Null => out.push_str("null"),
        Datum::Binary(bytes) => push_json_string(&value_text::base64_string(bytes), out),
        Datum::Decimal(unscaled) => {
            let scale = match ty {
                TypeRoot::Decimal { scale, .. } => *scale,
                _ => 0,
            };
            push_json_string(&value_text::decimal_string(*unscaled, scale), out)
        }
        Datum::Date(days) => push_json_string(&value_text::date_string(*days), out),
        Datum::Time(millis) => {
            let precision = match ty {
                TypeRoot::Time { precision } => *precision,
                _ => 3,
            };
            push_json_string(&value_text::time_string(*millis, precision), out)
        }
        Datum::Timestamp(ts) => {
            let (precision, utc) = match ty {
                TypeRoot::TimestampNtz { precision } => (*precision, false),
                TypeRoot::TimestampLtz { precision } => (*precision, true),
                _ => (9, false),
            };
            push_json_string(&value_text::timestamp_string(*ts, precision, utc), out)
        }
        Datum::Boolean(value) => out.push_str(if *value { "true" } else { "false" }),
        Datum::TinyInt(value) => push_display(value, out),
        Datum::SmallInt(value) => push_display(value, out),
        Datum::Int(value) => push_display(value, out),
        Datum::BigInt(value) => push_display(value, out),
        Datum::Float(value) => push_json_f64(f64::from(*value), out),
        Datum::Double(value) => push_json_f64(*value, out),
        Datum::String(value) => push_json_string(value, out),
        Datum::Array(items) => {
            let element = match ty {
                TypeRoot::Array(element) => &element.root,
                other => other,
            };
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                push_value_json(element, item, out);
            }
            out.push(']');
        }
        Datum::Map(entries) => {
            let (key_type, value_type) = match ty {
                TypeRoot::Map { key, value } => (&key.root, &value.root),
                other => (other, other),
            };
            out.push('[');
            for (index, (key, value)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push('[');
                push_value_json(key_type, key, out);
                out.push(',');
                push_value_json(value_type, value, out);
                out.push(']');
            }
            out.push(']');
        }
        Datum::Row(values) => {
            let fields = match ty {
                TypeRoot::Row(fields) => fields.as_slice(),
                _ => &[],
            };
            out.push('{');
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let name =
                    fields.get(index).map_or_else(|| format!("f{index}"), |f| f.name.clone());
                push_json_string(&name, out);
                out.push(':');
                let field_type = fields.get(index).map_or(ty, |f| &f.data_type.root);
                push_value_json(field_type, value, out);
            }
            out.push('}');
        }
    }
}

fn push_display(value: &impl std::fmt::Display, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

fn push_json_f64(value: f64, out: &mut String) {
    match serde_json::Number::from_f64(value) {
        Some(number) => push_display(&number, out),
        None if value.is_nan() => out.push_str("\"NaN\""),
        None if value > 0.0 => out.push_str("\"Infinity\""),
        None => out.push_str("\"-Infinity\""),
    }
}

fn push_json_string(value: &str, out: &mut String) {
    match serde_json::to_string(value) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a str cannot fail; keep the output JSON regardless.
        Err(_) => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Column, DataType, Schema, Timestamp, TypeRoot};

    fn schema() -> TableSchema {
        let columns = vec![
            Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
            Column::new(1, "name", DataType::nullable(TypeRoot::String)),
            Column::new(2, "ok", DataType::nullable(TypeRoot::Boolean)),
            Column::new(3, "f", DataType::nullable(TypeRoot::Float)),
            Column::new(4, "d", DataType::nullable(TypeRoot::Double)),
            Column::new(5, "big", DataType::nullable(TypeRoot::BigInt)),
        ];
        let schema = Schema::new(columns, vec!["id".to_string()]).expect("schema");
        TableSchema::new(1, &schema, &[]).expect("table schema")
    }

    fn json_of(values: Vec<Datum>) -> serde_json::Value {
        let mut line = String::new();
        row_json(&schema(), &Row::new(values), &mut line);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line} is not JSON: {e}"))
    }

    #[test]
    fn rows_print_as_json_objects_keyed_by_column_name() {
        let value = json_of(vec![
            Datum::Int(-3),
            Datum::String("grüße \"x\"\n".to_string()),
            Datum::Boolean(true),
            Datum::Float(0.5),
            Datum::Double(-1.25e300),
            Datum::BigInt(i64::MIN),
        ]);
        assert_eq!(
            value,
            serde_json::json!({
                "id": -3, "name": "grüße \"x\"\n", "ok": true, "f": 0.5, "d": -1.25e300,
                "big": i64::MIN
            })
        );
    }

    #[test]
    fn nulls_print_as_null_and_non_ascii_is_kept_verbatim() {
        let mut line = String::new();
        let row = Row::new(vec![
            Datum::Int(1),
            Datum::String("日本".to_string()),
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Null,
        ]);
        row_json(&schema(), &row, &mut line);
        assert_eq!(line, r#"{"id":1,"name":"日本","ok":null,"f":null,"d":null,"big":null}"#);
    }

    #[test]
    fn nested_values_print_as_json_arrays_objects_and_pairs() {
        use crate::format::RowField;
        let nullable = DataType::nullable;
        let columns = vec![
            Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
            Column::new(1, "tags", nullable(TypeRoot::Array(Box::new(nullable(TypeRoot::Bytes))))),
            Column::new(
                2,
                "attrs",
                nullable(TypeRoot::Map {
                    key: Box::new(DataType::not_null(TypeRoot::Date)),
                    value: Box::new(nullable(TypeRoot::Decimal { precision: 5, scale: 2 })),
                }),
            ),
            Column::new(
                3,
                "point",
                nullable(TypeRoot::Row(vec![
                    RowField::new("x", nullable(TypeRoot::Double)),
                    RowField::new("at", nullable(TypeRoot::TimestampLtz { precision: 3 })),
                ])),
            ),
            Column::new(4, "none", nullable(TypeRoot::Array(Box::new(nullable(TypeRoot::Int))))),
        ];
        let schema = Schema::new(columns, vec!["id".to_string()]).expect("schema");
        let schema = TableSchema::new(1, &schema, &[]).expect("table schema");
        let row = Row::new(vec![
            Datum::Int(1),
            Datum::Array(vec![Datum::Binary(b"f".to_vec()), Datum::Null]),
            Datum::Map(vec![(Datum::Date(0), Datum::Decimal(-5)), (Datum::Date(1), Datum::Null)]),
            Datum::Row(vec![Datum::Double(f64::NAN), Datum::Timestamp(Timestamp::from_millis(0))]),
            Datum::Null,
        ]);
        let mut line = String::new();
        row_json(&schema, &row, &mut line);
        assert_eq!(
            line,
            r#"{"id":1,"tags":["Zg==",null],"attrs":[["1970-01-01","-0.05"],["1970-01-02",null]],"point":{"x":"NaN","at":"1970-01-01T00:00:00.000Z"},"none":null}"#
        );
    }

    #[test]
    fn non_finite_floats_print_as_strings_so_the_line_stays_json() {
        let value = json_of(vec![
            Datum::Int(1),
            Datum::Null,
            Datum::Null,
            Datum::Float(f32::NAN),
            Datum::Double(f64::NEG_INFINITY),
            Datum::Null,
        ]);
        assert_eq!(value["f"], "NaN");
        assert_eq!(value["d"], "-Infinity");
    }
}
