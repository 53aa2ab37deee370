//! The gateway's changelog and writer RPCs, called through `WireHandler` on a real node:
//! idempotent PutKv (a resent batch answers DUPLICATE_SEQUENCE and is not logged twice, a
//! skipped sequence answers OUT_OF_ORDER_SEQUENCE), FetchLog as V0 Arrow batches with and
//! without projection, FetchLog waiting for data, ListOffsets, a dropped table's buckets, and
//! PutKv rows that do not decode against the schema refused before they reach the changelog.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvtablet_core::env::Clock;
use kvtablet_prod::catalog::{Catalog, CatalogConfig};
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::format::{
    decode_log_batch, encode_key, encode_row, ChangeType, Column, DataType, Datum,
    KvRecordBatchBuilder, Row, Schema, TableDescriptor, TypeRoot,
};
use kvtablet_prod::gateway::{
    FlussGateway, FETCH_BYTES_MAX, LIMIT_SCAN_ROWS_MAX, LOOKUP_KEYS_MAX, PREFIX_BYTES_MAX,
    PREFIX_LOOKUP_PREFIXES_MAX,
};
use kvtablet_prod::node::{Node, NodeConfig};
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::wire::messages::{
    CreateDatabaseRequest, CreateTableRequest, DropTableRequest, FetchLogRequest, FetchLogResponse,
    GetTableInfoRequest, GetTableInfoResponse, InitWriterRequest, InitWriterResponse,
    LimitScanRequest, LimitScanResponse, ListOffsetsRequest, ListOffsetsResponse, LookupRequest,
    LookupResponse, PbFetchLogReqForBucket, PbFetchLogReqForTable, PbLookupReqForBucket,
    PbPrefixLookupReqForBucket, PbPutKvReqForBucket, PbTablePath, PrefixLookupRequest,
    PrefixLookupResponse, PutKvRequest, PutKvResponse,
};
use kvtablet_prod::wire::{ApiKey, WireHandler};
use prost::Message;

const DATABASE: &str = "db";
const TABLE: &str = "changes";
const STEP: Duration = Duration::from_secs(20);

struct Fixture {
    gateway: FlussGateway,
    node: Node,
    table_id: i64,
    _dir: tempfile::TempDir,
}

fn columns() -> Vec<Column> {
    vec![
        Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
        Column::new(1, "name", DataType::nullable(TypeRoot::String)),
        Column::new(2, "score", DataType::nullable(TypeRoot::Double)),
    ]
}

fn types() -> Vec<DataType> {
    columns().into_iter().map(|column| column.data_type).collect()
}

fn path() -> PbTablePath {
    PbTablePath { database_name: DATABASE.to_string(), table_name: TABLE.to_string() }
}

async fn call(gateway: &FlussGateway, key: ApiKey, body: Vec<u8>) -> Result<Bytes, (i32, String)> {
    tokio::time::timeout(STEP, gateway.handle(key.id(), key.max_version(), Bytes::from(body)))
        .await
        .expect("answered in time")
        .map(|body| body.to_bytes())
        .map_err(|error| (error.code, error.message))
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = Arc::new(
        Catalog::open(
            Arc::new(DiskFs::new(dir.path()).expect("fs")),
            Arc::new(SystemClock::new()),
            CatalogConfig::DEFAULT,
        )
        .expect("catalog"),
    );
    let node =
        Node::start(NodeConfig::for_tables(dir.path(), &[]), tokio::runtime::Handle::current())
            .await
            .expect("node starts");
    let gateway = FlussGateway::new(
        catalog,
        node.handle().expect("running"),
        "127.0.0.1:9123".parse().expect("address"),
    )
    .expect("gateway opens");
    let create_database = CreateDatabaseRequest {
        database_name: DATABASE.to_string(),
        ignore_if_exists: false,
        database_json: None,
    };
    call(&gateway, ApiKey::CreateDatabase, create_database.encode_to_vec())
        .await
        .expect("database created");
    let descriptor = TableDescriptor {
        schema: Schema::new(columns(), vec!["id".to_string()]).expect("schema"),
        comment: None,
        partition_keys: Vec::new(),
        bucket_keys: vec!["id".to_string()],
        bucket_count: Some(2),
        properties: Default::default(),
        custom_properties: Default::default(),
    };
    let create_table = CreateTableRequest {
        table_path: path(),
        table_json: Bytes::from(descriptor.to_json_string()),
        ignore_if_exists: false,
    };
    call(&gateway, ApiKey::CreateTable, create_table.encode_to_vec()).await.expect("table created");
    let info = call(
        &gateway,
        ApiKey::GetTableInfo,
        GetTableInfoRequest { table_path: path() }.encode_to_vec(),
    )
    .await
    .expect("table info");
    let table_id = GetTableInfoResponse::decode(info).expect("decodes").table_id;
    Fixture { gateway, node, table_id, _dir: dir }
}

fn row(id: i32, name: Option<&str>, score: Option<f64>) -> Row {
    Row::new(vec![
        Datum::Int(id),
        name.map_or(Datum::Null, |name| Datum::String(name.to_string())),
        score.map_or(Datum::Null, Datum::Double),
    ])
}

/// One PutKv of `rows` (upserts) and `deletes` (ids) into bucket 0.
fn put_kv(table_id: i64, writer: (i64, i32), rows: &[Row], deletes: &[i32]) -> Vec<u8> {
    let key_types = [DataType::not_null(TypeRoot::Int)];
    let mut batch = KvRecordBatchBuilder::new(1, writer.0, writer.1);
    for row in rows {
        let Some(Datum::Int(id)) = row.get(0) else { panic!("rows start with an id") };
        let key = encode_key(&key_types, &[Datum::Int(*id)]).expect("key");
        let value = encode_row(&types(), row).expect("row");
        batch.append(&key, Some(&value)).expect("appends");
    }
    for id in deletes {
        let key = encode_key(&key_types, &[Datum::Int(*id)]).expect("key");
        batch.append(&key, None).expect("appends");
    }
    PutKvRequest {
        acks: -1,
        table_id,
        timeout_ms: 10_000,
        target_columns: Vec::new(),
        buckets_req: vec![PbPutKvReqForBucket {
            partition_id: None,
            bucket_id: 0,
            records: Bytes::from(batch.build().expect("builds")),
        }],
        agg_mode: None,
    }
    .encode_to_vec()
}

/// The per-bucket error code of a PutKv answer (`None`: acknowledged).
async fn put(fixture: &Fixture, body: Vec<u8>) -> Option<i32> {
    let answer = call(&fixture.gateway, ApiKey::PutKv, body).await.expect("answered");
    let response = PutKvResponse::decode(answer).expect("decodes");
    assert_eq!(response.buckets_resp.len(), 1);
    response.buckets_resp[0].error_code
}

fn fetch_request(
    table_id: i64,
    fetch_offset: i64,
    projection: Option<Vec<i32>>,
    max_wait_ms: i32,
) -> Vec<u8> {
    FetchLogRequest {
        follower_server_id: -1,
        max_bytes: 16 * 1024 * 1024,
        tables_req: vec![PbFetchLogReqForTable {
            table_id,
            projection_pushdown_enabled: projection.is_some(),
            projected_fields: projection.unwrap_or_default(),
            buckets_req: vec![PbFetchLogReqForBucket {
                partition_id: None,
                bucket_id: 0,
                fetch_offset,
                max_fetch_bytes: 1024 * 1024,
            }],
            filter_predicate: None,
            filter_schema_id: None,
        }],
        max_wait_ms: Some(max_wait_ms),
        min_bytes: Some(1),
        read_preference: None,
    }
    .encode_to_vec()
}

/// `(offset, change, row)` of every record of bucket 0 from `fetch_offset`, decoded with
/// `columns`, plus the high watermark and the log start offset.
async fn fetch(
    fixture: &Fixture,
    fetch_offset: i64,
    projection: Option<Vec<i32>>,
    max_wait_ms: i32,
) -> (Vec<(i64, ChangeType, Row)>, i64, i64) {
    let columns: Vec<Column> = match &projection {
        None => columns(),
        Some(fields) => fields.iter().map(|&field| columns()[field as usize].clone()).collect(),
    };
    let body = fetch_request(fixture.table_id, fetch_offset, projection, max_wait_ms);
    let answer = call(&fixture.gateway, ApiKey::FetchLog, body).await.expect("answered");
    let response = FetchLogResponse::decode(answer).expect("decodes");
    let bucket = &response.tables_resp[0].buckets_resp[0];
    assert_eq!(bucket.error_code, None, "{:?}", bucket.error_message);
    let mut records = Vec::new();
    let mut bytes: &[u8] = bucket.records.as_deref().unwrap_or_default();
    while !bytes.is_empty() {
        let (batch, size) = decode_log_batch(bytes, &columns).expect("a valid V0 batch");
        for (index, record) in batch.records.into_iter().enumerate() {
            records.push((batch.header.base_offset + index as i64, record.change_type, record.row));
        }
        bytes = &bytes[size..];
    }
    (records, bucket.high_watermark.expect("hw"), bucket.log_start_offset.expect("log start"))
}

async fn list_offset(fixture: &Fixture, offset_type: i32, start_timestamp: Option<i64>) -> i64 {
    let request = ListOffsetsRequest {
        follower_server_id: -1,
        offset_type,
        table_id: fixture.table_id,
        partition_id: None,
        bucket_id: vec![0],
        start_timestamp,
    };
    let answer = call(&fixture.gateway, ApiKey::ListOffsets, request.encode_to_vec())
        .await
        .expect("answered");
    let response = ListOffsetsResponse::decode(answer).expect("decodes");
    assert_eq!(response.buckets_resp[0].error_code, None);
    response.buckets_resp[0].offset.expect("an offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_acknowledged_as_a_duplicate_and_logged_once() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    let first = put_kv(table_id, (77, 0), &[row(1, Some("a"), Some(1.5))], &[]);
    assert_eq!(put(&fixture, first.clone()).await, None);
    assert_eq!(put(&fixture, first).await, Some(32), "DUPLICATE_SEQUENCE");
    let skipped = put_kv(table_id, (77, 2), &[row(2, None, None)], &[]);
    assert_eq!(put(&fixture, skipped).await, Some(31), "OUT_OF_ORDER_SEQUENCE");
    let next = put_kv(table_id, (77, 1), &[row(1, Some("b"), None)], &[]);
    assert_eq!(put(&fixture, next).await, None);
    let anonymous = put_kv(table_id, (-1, -1), &[row(3, Some("c"), None)], &[1]);
    assert_eq!(put(&fixture, anonymous.clone()).await, None);
    assert_eq!(put(&fixture, anonymous).await, None, "without a writer, a resend is new");
    let bad_writer = put_kv(table_id, (5, -1), &[row(4, None, None)], &[]);
    assert_eq!(put(&fixture, bad_writer).await, Some(14), "CORRUPT_RECORD");

    let (records, high_watermark, _) = fetch(&fixture, -2, None, 0).await;
    let changes: Vec<(i64, ChangeType)> =
        records.iter().map(|(offset, change, _)| (*offset, *change)).collect();
    assert_eq!(
        changes,
        [
            (0, ChangeType::Insert),
            (1, ChangeType::UpdateBefore),
            (2, ChangeType::UpdateAfter),
            (3, ChangeType::Insert),
            (4, ChangeType::Delete),
            // The anonymous batch resent: without a writer it is applied again; its upsert
            // logs an update to the same value, its delete of a missing key nothing.
            (5, ChangeType::UpdateBefore),
            (6, ChangeType::UpdateAfter),
        ]
    );
    assert_eq!(high_watermark, 7);
    fixture.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_log_serves_changes_with_and_without_projection_and_list_offsets_agrees() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    let before_ms = i64::try_from(SystemClock::new().now_wall_ms()).expect("fits");
    let rows = [row(1, Some("one"), Some(1.0)), row(2, None, Some(-2.5))];
    assert_eq!(put(&fixture, put_kv(table_id, (9, 0), &rows, &[])).await, None);
    let update = [row(2, Some("two"), None)];
    assert_eq!(put(&fixture, put_kv(table_id, (9, 1), &update, &[1])).await, None);

    let (records, high_watermark, log_start) = fetch(&fixture, 0, None, 0).await;
    assert_eq!((high_watermark, log_start), (5, 0));
    assert_eq!(
        records,
        [
            (0, ChangeType::Insert, row(1, Some("one"), Some(1.0))),
            (1, ChangeType::Insert, row(2, None, Some(-2.5))),
            (2, ChangeType::UpdateBefore, row(2, None, Some(-2.5))),
            (3, ChangeType::UpdateAfter, row(2, Some("two"), None)),
            (4, ChangeType::Delete, row(1, Some("one"), Some(1.0))),
        ]
    );
    // A fetch from the middle of a batch gets the whole batch (the client drops the rest).
    let (from_three, _, _) = fetch(&fixture, 3, None, 0).await;
    assert_eq!(from_three.first().map(|record| record.0), Some(2));

    let (projected, _, _) = fetch(&fixture, -2, Some(vec![0, 2]), 0).await;
    let projected_rows: Vec<Row> = projected.into_iter().map(|(_, _, row)| row).collect();
    assert_eq!(
        projected_rows,
        [
            Row::new(vec![Datum::Int(1), Datum::Double(1.0)]),
            Row::new(vec![Datum::Int(2), Datum::Double(-2.5)]),
            Row::new(vec![Datum::Int(2), Datum::Double(-2.5)]),
            Row::new(vec![Datum::Int(2), Datum::Null]),
            Row::new(vec![Datum::Int(1), Datum::Double(1.0)]),
        ]
    );

    assert_eq!(list_offset(&fixture, 0, None).await, 0, "earliest");
    assert_eq!(list_offset(&fixture, 1, None).await, 5, "latest");
    assert_eq!(list_offset(&fixture, 2, Some(before_ms)).await, 0, "by timestamp");
    assert_eq!(list_offset(&fixture, 2, Some(i64::MAX)).await, 5, "after the last commit");

    // Beyond the high watermark is out of range; a bad projection is refused.
    let beyond = fetch_request(table_id, 6, None, 0);
    let answer = call(&fixture.gateway, ApiKey::FetchLog, beyond).await.expect("answered");
    let response = FetchLogResponse::decode(answer).expect("decodes");
    assert_eq!(response.tables_resp[0].buckets_resp[0].error_code, Some(19));
    let unordered = fetch_request(table_id, 0, Some(vec![2, 0]), 0);
    let answer = call(&fixture.gateway, ApiKey::FetchLog, unordered).await.expect("answered");
    let response = FetchLogResponse::decode(answer).expect("decodes");
    assert_eq!(
        response.tables_resp[0].buckets_resp[0].error_code,
        Some(34),
        "INVALID_COLUMN_PROJECTION"
    );
    fixture.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_returns_the_batch_appended_while_it_waits() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    // At the high watermark with nothing to return: answered empty when told not to wait.
    let (records, high_watermark, _) = fetch(&fixture, 0, None, 0).await;
    assert!(records.is_empty());
    assert_eq!(high_watermark, 0);

    let gateway = Arc::new(fixture.gateway);
    let waiting = {
        let gateway = Arc::clone(&gateway);
        let body = fetch_request(table_id, 0, None, 15_000);
        tokio::spawn(
            async move { gateway.handle(ApiKey::FetchLog.id(), 0, Bytes::from(body)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "an empty fetch waits for data");
    let body = put_kv(table_id, (1, 0), &[row(7, Some("late"), None)], &[]);
    let answer = call(&gateway, ApiKey::PutKv, body).await.expect("answered");
    assert_eq!(PutKvResponse::decode(answer).expect("decodes").buckets_resp[0].error_code, None);
    let answer = tokio::time::timeout(STEP, waiting)
        .await
        .expect("woken well before its 15 s wait ends")
        .expect("joined")
        .expect("answered")
        .to_bytes();
    let response = FetchLogResponse::decode(answer).expect("decodes");
    let bucket = &response.tables_resp[0].buckets_resp[0];
    assert_eq!(bucket.high_watermark, Some(1));
    assert!(bucket.records.as_ref().is_some_and(|records| !records.is_empty()));
    fixture.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tables_buckets_are_no_longer_served() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    assert_eq!(put(&fixture, put_kv(table_id, (1, 0), &[row(1, None, None)], &[])).await, None);
    let drop_table = DropTableRequest { table_path: path(), ignore_if_not_exists: false };
    call(&fixture.gateway, ApiKey::DropTable, drop_table.encode_to_vec()).await.expect("dropped");
    let after = put_kv(table_id, (1, 1), &[row(2, None, None)], &[]);
    assert_eq!(put(&fixture, after).await, Some(21), "UNKNOWN_TABLE_OR_BUCKET");
    fixture.node.shutdown().await;
}

/// A PutKv of raw `(key, value)` records into bucket 0, with a valid frame and CRC.
fn put_raw(
    table_id: i64,
    schema_id: i16,
    writer: (i64, i32),
    records: &[(&[u8], Option<&[u8]>)],
) -> Vec<u8> {
    let mut batch = KvRecordBatchBuilder::new(schema_id, writer.0, writer.1);
    for (key, value) in records {
        batch.append(key, *value).expect("appends");
    }
    PutKvRequest {
        acks: -1,
        table_id,
        timeout_ms: 10_000,
        target_columns: Vec::new(),
        buckets_req: vec![PbPutKvReqForBucket {
            partition_id: None,
            bucket_id: 0,
            records: Bytes::from(batch.build().expect("builds")),
        }],
        agg_mode: None,
    }
    .encode_to_vec()
}

fn key_of(id: i32) -> Vec<u8> {
    encode_key(&[DataType::not_null(TypeRoot::Int)], &[Datum::Int(id)]).expect("key")
}

/// The values of bucket 0 for `keys`, once the flush has made the first one visible.
async fn lookup_once_flushed(fixture: &Fixture, keys: &[Vec<u8>]) -> Vec<Option<Bytes>> {
    let request = LookupRequest {
        table_id: fixture.table_id,
        buckets_req: vec![PbLookupReqForBucket {
            partition_id: None,
            bucket_id: 0,
            keys: keys.iter().cloned().map(Bytes::from).collect(),
            original_partition_name: None,
        }],
        insert_if_not_exists: None,
        acks: None,
        timeout_ms: None,
    };
    for _ in 0..2_000 {
        let answer = call(&fixture.gateway, ApiKey::Lookup, request.encode_to_vec())
            .await
            .expect("answered");
        let response = LookupResponse::decode(answer).expect("decodes");
        let bucket = &response.buckets_resp[0];
        assert_eq!(bucket.error_code, None, "{:?}", bucket.error_message);
        let values: Vec<Option<Bytes>> =
            bucket.values.iter().map(|value| value.values.clone()).collect();
        if values.first().is_some_and(Option::is_some) {
            return values;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the first key never became visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_in_a_not_null_key_column_is_refused_and_the_bucket_stays_readable() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    assert_eq!(
        put(&fixture, put_kv(table_id, (3, 0), &[row(1, Some("a"), None)], &[])).await,
        None
    );

    // Column 0 (`id`, the primary key, NOT NULL) flagged NULL in the bit-set; `name` and
    // `score` NULL too. The CRC and the schema id are valid.
    let null_key_row = [0b0000_0111u8];
    let malformed = put_raw(table_id, 1, (3, 1), &[(&key_of(2), Some(&null_key_row))]);
    assert_eq!(put(&fixture, malformed).await, Some(14), "CORRUPT_RECORD");

    // Nothing of it was logged; the writer's state is as if it never arrived.
    let (records, high_watermark, _) = fetch(&fixture, -2, None, 0).await;
    assert_eq!(records, [(0, ChangeType::Insert, row(1, Some("a"), None))]);
    assert_eq!(high_watermark, 1);
    let next = put_kv(table_id, (3, 1), &[row(2, Some("b"), None)], &[]);
    assert_eq!(put(&fixture, next).await, None, "the writer's next sequence is still 1");
    let values = lookup_once_flushed(&fixture, &[key_of(1), key_of(2), key_of(3)]).await;
    assert!(values[0].is_some() && values[2].is_none());
    let (records, high_watermark, _) = fetch(&fixture, 0, None, 0).await;
    assert_eq!(records.len(), 2);
    assert_eq!(high_watermark, 2);
    fixture.node.shutdown().await;
}

/// What a malformed record is, its batch's schema id, its key and its value.
type Case<'a> = (&'a str, i16, &'a [u8], Option<&'a [u8]>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_do_not_decode_against_the_schema_are_refused_whole_batch() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    let good = encode_row(&types(), &row(5, Some("five"), Some(5.0))).expect("row");
    let key5 = key_of(5);
    let mut trailing = good.clone();
    trailing.push(0);
    let truncated = &good[..good.len() - 3];
    // `name` set but its string is not UTF-8.
    let bad_utf8 = [0b0000_0100u8, 5, 1, 0xff];
    // A key with bytes after the last key column, a key of a non-canonical varint (5 as two
    // bytes), and a row whose key column says 6 under key 5.
    let long_key = [key5.clone(), vec![0]].concat();
    let loose_varint_key = [0x85u8, 0x00];
    let other_key_row = encode_row(&types(), &row(6, None, None)).expect("row");
    let cases: [Case<'_>; 7] = [
        ("bytes after the last field", 1, &key5, Some(&trailing)),
        ("a truncated row", 1, &key5, Some(truncated)),
        ("a string that is not UTF-8", 1, &key5, Some(&bad_utf8)),
        ("bytes after the key", 1, &long_key, None),
        ("a non-canonical key", 1, &loose_varint_key, Some(&good)),
        ("a row under another key", 1, &key5, Some(&other_key_row)),
        ("another schema id", 2, &key5, Some(&good)),
    ];
    for (what, schema_id, key, value) in cases {
        // The bad record follows a good one: the whole batch is refused.
        let body = put_raw(table_id, schema_id, (-1, -1), &[(&key5, Some(&good)), (key, value)]);
        assert_eq!(put(&fixture, body).await, Some(14), "{what}");
    }
    let (records, high_watermark, _) = fetch(&fixture, -2, None, 0).await;
    assert!(records.is_empty());
    assert_eq!(high_watermark, 0);
    let body = put_raw(table_id, 1, (-1, -1), &[(&key5, Some(&good)), (&key_of(6), None)]);
    assert_eq!(put(&fixture, body).await, None, "valid rows and deletes are accepted");
    fixture.node.shutdown().await;
}

async fn init_writer(gateway: &FlussGateway) -> i64 {
    let body = InitWriterRequest { table_path: vec![path()] }.encode_to_vec();
    let answer = call(gateway, ApiKey::InitWriter, body).await.expect("answered");
    InitWriterResponse::decode(answer).expect("decodes").writer_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_ids_come_from_a_durable_counter_and_never_repeat_across_restarts() {
    let mut fixture = start().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(init_writer(&fixture.gateway).await);
    }
    assert_eq!(seen, [1, 2, 3], "ids come from the counter, not the clock");
    for _restart in 0..2 {
        // A gateway restarted on the same data directory (the clock plays no part).
        let catalog = Arc::new(
            Catalog::open(
                Arc::new(DiskFs::new(fixture._dir.path()).expect("fs")),
                Arc::new(SystemClock::new()),
                CatalogConfig::DEFAULT,
            )
            .expect("catalog"),
        );
        let restarted = FlussGateway::new(
            catalog,
            fixture.node.handle().expect("running"),
            "127.0.0.1:9123".parse().expect("address"),
        )
        .expect("gateway opens");
        for _ in 0..3 {
            let id = init_writer(&restarted).await;
            assert!(seen.iter().all(|&earlier| earlier < id), "{id} after {seen:?}");
            seen.push(id);
        }
    }
    fixture.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_reencodes_a_bounded_amount_whatever_max_bytes_asks() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    let big = "x".repeat(1024 * 1024);
    let batches = 24;
    for id in 0..batches {
        let body = put_kv(table_id, (-1, -1), &[row(id, Some(&big), None)], &[]);
        assert_eq!(put(&fixture, body).await, None);
    }
    let mut request = FetchLogRequest::decode(&fetch_request(table_id, 0, None, 0)[..]).unwrap();
    request.max_bytes = i32::MAX;
    request.tables_req[0].buckets_req[0].max_fetch_bytes = i32::MAX;
    let answer =
        call(&fixture.gateway, ApiKey::FetchLog, request.encode_to_vec()).await.expect("answered");
    let response = FetchLogResponse::decode(answer).expect("decodes");
    let bucket = &response.tables_resp[0].buckets_resp[0];
    assert_eq!(bucket.error_code, None, "{:?}", bucket.error_message);
    let records = bucket.records.as_ref().map_or(0, Bytes::len);
    // At most the bound plus the one batch that crosses it.
    assert!(records > 0);
    assert!(records <= FETCH_BYTES_MAX + 2 * big.len(), "{records} bytes re-encoded");
    assert_eq!(bucket.high_watermark, Some(i64::from(batches)));
    fixture.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_prefix_lookups_and_limit_scans_beyond_their_bounds_are_refused() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    assert_eq!(put(&fixture, put_kv(table_id, (-1, -1), &[row(1, None, None)], &[])).await, None);

    // Keys are counted over every bucket of a lookup.
    let per_bucket = LOOKUP_KEYS_MAX / 2 + 1;
    let lookup = LookupRequest {
        table_id,
        buckets_req: (0..2)
            .map(|bucket_id| PbLookupReqForBucket {
                partition_id: None,
                bucket_id,
                keys: (0..per_bucket as i32).map(|id| Bytes::from(key_of(id))).collect(),
                original_partition_name: None,
            })
            .collect(),
        insert_if_not_exists: None,
        acks: None,
        timeout_ms: None,
    };
    let answer =
        call(&fixture.gateway, ApiKey::Lookup, lookup.encode_to_vec()).await.expect("answered");
    let response = LookupResponse::decode(answer).expect("decodes");
    for bucket in &response.buckets_resp {
        assert_eq!(bucket.error_code, Some(13), "RECORD_TOO_LARGE");
        assert!(bucket.error_message.as_deref().is_some_and(|m| m.contains("keys")));
    }

    let prefix_lookup = |keys: Vec<Bytes>| PrefixLookupRequest {
        table_id,
        buckets_req: vec![PbPrefixLookupReqForBucket { partition_id: None, bucket_id: 0, keys }],
    };
    let too_many = prefix_lookup(vec![Bytes::from(key_of(1)); PREFIX_LOOKUP_PREFIXES_MAX + 1]);
    let too_long = prefix_lookup(vec![Bytes::from(vec![1u8; PREFIX_BYTES_MAX + 1])]);
    let fine = prefix_lookup(vec![Bytes::from(key_of(1)); 3]);
    for (request, expected) in [(too_many, Some(13)), (too_long, Some(13)), (fine, None)] {
        let answer = call(&fixture.gateway, ApiKey::PrefixLookup, request.encode_to_vec())
            .await
            .expect("answered");
        let response = PrefixLookupResponse::decode(answer).expect("decodes");
        assert_eq!(response.buckets_resp[0].error_code, expected);
    }

    for (limit, expected) in [(LIMIT_SCAN_ROWS_MAX + 1, Some(13)), (LIMIT_SCAN_ROWS_MAX, None)] {
        let request = LimitScanRequest { table_id, partition_id: None, bucket_id: 0, limit };
        let answer = call(&fixture.gateway, ApiKey::LimitScan, request.encode_to_vec())
            .await
            .expect("answered");
        let response = LimitScanResponse::decode(answer).expect("decodes");
        assert_eq!(response.error_code, expected, "limit {limit}");
    }
    fixture.node.shutdown().await;
}

/// `body` (a PutKv from [`put_kv`]) as a partial update of `target_columns`.
fn partial(body: Vec<u8>, target_columns: &[i32]) -> Vec<u8> {
    let mut request = PutKvRequest::decode(Bytes::from(body)).expect("decodes");
    request.target_columns = target_columns.to_vec();
    request.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_update_merges_into_the_row_and_bad_target_columns_are_refused() {
    let mut fixture = start().await;
    let table_id = fixture.table_id;
    let full = put_kv(table_id, (-1, -1), &[row(1, Some("ann"), Some(1.5))], &[]);
    assert_eq!(put(&fixture, full).await, None);
    // Target columns the official clients refuse before sending: the server refuses them too
    // (INVALID_TARGET_COLUMN, 35), before anything is written.
    let no_key = partial(put_kv(table_id, (-1, -1), &[row(1, None, Some(9.0))], &[]), &[2]);
    assert_eq!(put(&fixture, no_key).await, Some(35), "the key column is not targeted");
    let outside = partial(put_kv(table_id, (-1, -1), &[row(1, None, Some(9.0))], &[]), &[0, 5]);
    assert_eq!(put(&fixture, outside).await, Some(35), "no column 5");
    let negative = partial(put_kv(table_id, (-1, -1), &[row(1, None, Some(9.0))], &[]), &[0, -1]);
    assert_eq!(put(&fixture, negative).await, Some(35), "a negative column");
    // Score only: the name stays.
    let score = partial(put_kv(table_id, (-1, -1), &[row(1, None, Some(2.5))], &[]), &[0, 2]);
    assert_eq!(put(&fixture, score).await, None);
    let values = lookup_once_flushed(&fixture, &[key_of(1)]).await;
    let stored = values[0].clone().expect("row 1 is present");
    let merged = kvtablet_prod::format::decode_row(&types(), &stored[2..]).expect("decodes");
    assert_eq!(merged, row(1, Some("ann"), Some(2.5)), "the untargeted name was kept");
    let (changes, _, _) = fetch(&fixture, 0, None, 0).await;
    let kinds: Vec<ChangeType> = changes.iter().map(|(_, kind, _)| *kind).collect();
    assert_eq!(kinds, [ChangeType::Insert, ChangeType::UpdateBefore, ChangeType::UpdateAfter]);
    assert_eq!(changes[1].2, row(1, Some("ann"), Some(1.5)), "-U carries the whole old row");
    assert_eq!(changes[2].2, row(1, Some("ann"), Some(2.5)), "+U carries the whole new row");
    fixture.node.shutdown().await;
}
