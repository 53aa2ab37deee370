//! What the node and wire client tests share: a runtime, a bounded wait for a condition, a node
//! served on 127.0.0.1:0 in a temporary directory, a table of every supported column type,
//! rows for it, and waiting (bounded) for the flush.

// Test support owns its runtime and reads wall time to bound its waits; each test uses part of it.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kvtablet_prod::client::{admin, Connection, ConnectionConfig, RemoteTable};
use kvtablet_prod::format::{
    decode_value_batch, Column, DataType, Datum, Row, Schema, TableDescriptor, TypeRoot,
};
use kvtablet_prod::served_node::ServedNode;
use kvtablet_prod::wire::messages::{LimitScanRequest, LimitScanResponse, PutKvResponse};
use kvtablet_prod::wire::{ApiKey, WireConfig};

pub const DATABASE: &str = "scan_db";
/// How long a test waits for the asynchronous flush before it fails.
pub const FLUSH_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long [`wait_for`] waits before the test fails, and how often it looks.
pub const WAIT_MAX: Duration = Duration::from_secs(60);
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Puts `writes` into `bucket` of an in-process `node`, resending while it answers
/// STORAGE_BACKPRESSURE (the flush behind), for at most [`WAIT_MAX`]; any other refusal fails
/// the test. Returns the log end offset after the put.
pub async fn put_resending_on_backpressure(
    node: &kvtablet_prod::node::Node,
    bucket: kvtablet_core::TableBucket,
    writes: Vec<kvtablet_core::message::KvWrite>,
) -> u64 {
    use kvtablet_core::error::ErrorCode;
    use kvtablet_core::message::{Request, Response};
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let request =
            Request::PutKv { bucket, writes: writes.clone(), writer: None, target_columns: None };
        match node.request(request).await.expect("answered") {
            Response::PutKv { end_offset, .. } => return end_offset,
            Response::Error(error)
                if error.code == ErrorCode::StorageBackpressure && Instant::now() < deadline =>
            {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            other => panic!("put refused: {other:?}"),
        }
    }
}

/// The first `Some` of `check`, polled every [`POLL_INTERVAL`]; the test fails, naming `what`,
/// after [`WAIT_MAX`].
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A node with its wire server, and a client connection to it.
pub async fn start(dir: &std::path::Path) -> (ServedNode, Connection) {
    let served = ServedNode::start(
        dir,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        WireConfig::default(),
        tokio::runtime::Handle::current(),
    )
    .await
    .expect("the node starts");
    let connection = Connection::connect(&served.addr().to_string(), ConnectionConfig::DEFAULT)
        .await
        .expect("the client connects");
    (served, connection)
}

/// Every supported type; primary key `(id, name)`, bucket key `id`.
pub fn descriptor(bucket_count: i32) -> TableDescriptor {
    let columns = vec![
        Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
        Column::new(1, "name", DataType::not_null(TypeRoot::String)),
        Column::new(2, "flag", DataType::nullable(TypeRoot::Boolean)),
        Column::new(3, "tiny", DataType::nullable(TypeRoot::TinyInt)),
        Column::new(4, "small", DataType::nullable(TypeRoot::SmallInt)),
        Column::new(5, "big", DataType::nullable(TypeRoot::BigInt)),
        Column::new(6, "ratio", DataType::nullable(TypeRoot::Float)),
        Column::new(7, "score", DataType::nullable(TypeRoot::Double)),
        Column::new(8, "note", DataType::nullable(TypeRoot::String)),
    ];
    let schema =
        Schema::new(columns, vec!["id".to_string(), "name".to_string()]).expect("a valid schema");
    TableDescriptor {
        schema,
        comment: None,
        partition_keys: Vec::new(),
        bucket_keys: vec!["id".to_string()],
        bucket_count: Some(bucket_count),
        properties: BTreeMap::new(),
        custom_properties: BTreeMap::new(),
    }
}

/// Row `i`: NULLs on a different period in each nullable column, extremes and non-ASCII text.
pub fn row(i: i32) -> Row {
    let null_every = |period: i32, datum: Datum| if i % period == 0 { Datum::Null } else { datum };
    Row::new(vec![
        Datum::Int(i),
        Datum::String(format!("k-{i}")),
        null_every(3, Datum::Boolean(i % 2 == 0)),
        null_every(5, Datum::TinyInt((i % 256 - 128) as i8)),
        null_every(7, Datum::SmallInt((i * 7) as i16)),
        null_every(
            11,
            Datum::BigInt(if i % 2 == 0 { i64::MAX - i64::from(i) } else { i64::MIN + 1 }),
        ),
        null_every(13, Datum::Float(i as f32 * 0.25)),
        null_every(4, Datum::Double(f64::from(i) / 3.0)),
        null_every(6, Datum::String(format!("héllo ✓ \"{i}\"\n"))),
    ])
}

/// Creates the database (if needed) and `table`, and resolves it.
pub async fn create_table(connection: &Connection, table: &str, bucket_count: i32) -> RemoteTable {
    admin::create_database(connection, DATABASE, true).await.expect("database created");
    admin::create_table(connection, DATABASE, table, &descriptor(bucket_count), false)
        .await
        .expect("table created");
    RemoteTable::fetch(connection, DATABASE, table).await.expect("table metadata")
}

/// Upserts `rows` through PutKv, in requests of at most `per_request` rows.
pub async fn put_rows(
    connection: &Connection,
    table: &RemoteTable,
    rows: &[Row],
    per_request: usize,
) {
    for chunk in rows.chunks(per_request.max(1)) {
        let request = table.put_request(chunk).expect("rows encode");
        let response: PutKvResponse =
            connection.call(ApiKey::PutKv, &request).await.expect("PutKv answered");
        for bucket in &response.buckets_resp {
            assert_eq!(
                bucket.error_code, None,
                "PutKv bucket {}: {:?}",
                bucket.bucket_id, bucket.error_message
            );
        }
    }
}

/// Rows of `rows` by bucket.
pub fn rows_by_bucket(table: &RemoteTable, rows: &[Row]) -> BTreeMap<i32, Vec<Row>> {
    let mut by_bucket: BTreeMap<i32, Vec<Row>> = BTreeMap::new();
    for row in rows {
        by_bucket.entry(table.bucket_of_row(row).expect("a bucket")).or_default().push(row.clone());
    }
    by_bucket
}

/// Waits (bounded by [`FLUSH_WAIT_MAX`]) until a limit scan of `bucket` sees `count` rows:
/// scans read flushed data only, and the flush is asynchronous.
pub async fn wait_flushed(connection: &Connection, table: &RemoteTable, bucket: i32, count: usize) {
    let deadline = Instant::now() + FLUSH_WAIT_MAX;
    loop {
        let request = LimitScanRequest {
            table_id: table.table_id,
            partition_id: None,
            bucket_id: bucket,
            limit: 1_000_000,
        };
        let response: LimitScanResponse =
            connection.call(ApiKey::LimitScan, &request).await.expect("LimitScan answered");
        let seen = response
            .records
            .as_deref()
            .map_or(0, |records| decode_value_batch(records).map_or(0, |values| values.len()));
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bucket {bucket}: {seen} of {count} rows flushed after {FLUSH_WAIT_MAX:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
