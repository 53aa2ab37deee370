//! Tables whose options change the bytes only, through the wire against a node served on
//! 127.0.0.1:0, written and read by kvtablet's own client (which follows the options as the
//! official clients do): `table.kv.format=INDEXED` values and `table.datalake.format`
//! (paimon, iceberg) keys and buckets. Each table takes upserts, partial updates and deletes,
//! and gives the rows back by lookup, by `kvtablet scan` (ScanKv) and as the changelog's Arrow
//! batches (FetchLog); bytes in the wrong format are refused as CORRUPT_RECORD.

// A test owns its runtime, reads wall time to bound its waits, and writes temp files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;

use kvtablet_prod::client::{admin, Connection, RemoteTable};
use kvtablet_prod::format::kv_record_batch::{NO_BATCH_SEQUENCE, NO_WRITER_ID};
use kvtablet_prod::format::{
    decode_log_batch, encode_row, ChangeType, Column, DataType, Datum, KeyFormat,
    KvRecordBatchBuilder, LakeFormat, Row, RowFormat, Schema, TableDescriptor, Timestamp, TypeRoot,
};
use kvtablet_prod::scan_command::{scan_bucket, ScanCommandOptions, ScanTarget};
use kvtablet_prod::wire::messages::{
    FetchLogRequest, FetchLogResponse, LookupResponse, PbFetchLogReqForBucket,
    PbFetchLogReqForTable, PutKvResponse,
};
use kvtablet_prod::wire::ApiKey;
use serde_json::Value;
use support::{put_rows, rows_by_bucket, start, wait_flushed, DATABASE};

const BUCKETS: i32 = 3;

/// `id INT, name STRING, amount DECIMAL(20, 2), at TIMESTAMP(6), code CHAR(3), note STRING`.
fn descriptor(
    primary_key: &[&str],
    bucket_key: &[&str],
    properties: &[(&str, &str)],
) -> TableDescriptor {
    let nullable = DataType::nullable;
    let columns = vec![
        Column::new(0, "id", nullable(TypeRoot::Int)),
        Column::new(1, "name", nullable(TypeRoot::String)),
        Column::new(2, "amount", nullable(TypeRoot::Decimal { precision: 20, scale: 2 })),
        Column::new(3, "at", nullable(TypeRoot::TimestampNtz { precision: 6 })),
        Column::new(4, "code", nullable(TypeRoot::Char { length: 3 })),
        Column::new(5, "note", nullable(TypeRoot::String)),
    ];
    TableDescriptor {
        schema: Schema::new(columns, primary_key.iter().map(|s| s.to_string()).collect())
            .expect("a valid schema"),
        comment: None,
        partition_keys: Vec::new(),
        bucket_keys: bucket_key.iter().map(|s| s.to_string()).collect(),
        bucket_count: Some(BUCKETS),
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        custom_properties: BTreeMap::new(),
    }
}

fn row(i: i32) -> Row {
    let null_every = |period: i32, datum: Datum| if i % period == 0 { Datum::Null } else { datum };
    Row(vec![
        Datum::Int(i * 37 - 500),
        Datum::String(format!("name-{i}-{}", "é".repeat(i as usize % 9))),
        null_every(4, Datum::Decimal(i128::from(i) * 10i128.pow(17) - 7)),
        null_every(
            5,
            Datum::Timestamp(Timestamp {
                millis: i64::from(i) * 86_400_123,
                nanos_of_milli: 1_000 * (i as u32 % 1000),
            }),
        ),
        null_every(3, Datum::String(["a", "bc", "dé"][i as usize % 3].to_string())),
        null_every(2, Datum::String(format!("note {i}"))),
    ])
}

async fn lookup(connection: &Connection, table: &RemoteTable, rows: &[Row]) -> Vec<Option<Row>> {
    let request = table.lookup_request(rows).expect("keys encode");
    let response: LookupResponse =
        connection.call(ApiKey::Lookup, &request).await.expect("Lookup answered");
    let mut found: BTreeMap<i32, Vec<Option<Row>>> = BTreeMap::new();
    for bucket in response.buckets_resp {
        assert_eq!(bucket.error_code, None, "{:?}", bucket.error_message);
        let values = bucket.values.into_iter().map(|value| {
            value.values.map(|v| {
                RemoteTable::decode_value(&table.schema, &v).expect("a stored value decodes")
            })
        });
        found.insert(bucket.bucket_id, values.collect());
    }
    // Back in the order of `rows`: each bucket answers its keys in request order.
    let mut cursors: BTreeMap<i32, usize> = BTreeMap::new();
    rows.iter()
        .map(|row| {
            let bucket = table.bucket_of_row(row).expect("a bucket");
            let at = cursors.entry(bucket).or_default();
            *at += 1;
            found[&bucket][*at - 1].clone()
        })
        .collect()
}

async fn changelog(
    connection: &Connection,
    table: &RemoteTable,
    bucket: i32,
) -> Vec<(ChangeType, Row)> {
    let request = FetchLogRequest {
        follower_server_id: -1,
        max_bytes: 16 * 1024 * 1024,
        tables_req: vec![PbFetchLogReqForTable {
            table_id: table.table_id,
            projection_pushdown_enabled: false,
            projected_fields: Vec::new(),
            buckets_req: vec![PbFetchLogReqForBucket {
                partition_id: None,
                bucket_id: bucket,
                fetch_offset: 0,
                max_fetch_bytes: 8 * 1024 * 1024,
            }],
            filter_predicate: None,
            filter_schema_id: None,
        }],
        max_wait_ms: Some(0),
        min_bytes: Some(1),
        read_preference: None,
    };
    let response: FetchLogResponse =
        connection.call(ApiKey::FetchLog, &request).await.expect("FetchLog answered");
    let answer = &response.tables_resp[0].buckets_resp[0];
    assert_eq!(answer.error_code, None, "{:?}", answer.error_message);
    let mut bytes: &[u8] = answer.records.as_deref().unwrap_or_default();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let (batch, size) = decode_log_batch(bytes, &table.schema.columns).expect("a V0 batch");
        records.extend(batch.records.into_iter().map(|r| (r.change_type, r.row)));
        bytes = &bytes[size..];
    }
    records
}

async fn scan_json(server: &str, table: &str, bucket: i32) -> Vec<Value> {
    let target = ScanTarget {
        server: server.to_string(),
        database: DATABASE.to_string(),
        table: table.to_string(),
        partition: None,
        bucket,
    };
    let mut out = Vec::new();
    scan_bucket(&target, ScanCommandOptions::DEFAULT, tokio::runtime::Handle::current(), &mut out)
        .await
        .expect("the scan runs");
    String::from_utf8(out)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect()
}

/// Creates `name`, writes 40 rows, deletes every fifth, and checks lookups, the changelog and
/// `kvtablet scan` against what was written.
async fn round_trip(
    connection: &Connection,
    server: &str,
    name: &str,
    descriptor: &TableDescriptor,
) -> RemoteTable {
    admin::create_database(connection, DATABASE, true).await.expect("database");
    admin::create_table(connection, DATABASE, name, descriptor, false)
        .await
        .expect("table created");
    let table = RemoteTable::fetch(connection, DATABASE, name).await.expect("table metadata");
    for (key, value) in &descriptor.properties {
        assert_eq!(table.descriptor.properties.get(key), Some(value), "{key} kept as given");
    }
    let rows: Vec<Row> = (0..40).map(row).collect();
    put_rows(connection, &table, &rows, 9).await;
    let deleted: Vec<Row> = rows.iter().step_by(5).cloned().collect();
    let mut request = table.put_request(&deleted).expect("rows encode");
    for bucket in &mut request.buckets_req {
        // The same keys as deletes: rebuild each batch without values.
        let batch =
            kvtablet_prod::format::KvRecordBatch::decode(&bucket.records).expect("our batch");
        let mut builder =
            KvRecordBatchBuilder::new(table.schema.schema_id, NO_WRITER_ID, NO_BATCH_SEQUENCE);
        for record in &batch.records {
            builder.append(record.key, None).expect("a delete");
        }
        bucket.records = builder.build().expect("a batch").into();
    }
    let response: PutKvResponse =
        connection.call(ApiKey::PutKv, &request).await.expect("PutKv answered");
    assert!(response.buckets_resp.iter().all(|b| b.error_code.is_none()), "{response:?}");
    let live: Vec<Row> = rows.iter().filter(|r| !deleted.contains(r)).cloned().collect();
    let found = lookup(connection, &table, &rows).await;
    for (row, got) in rows.iter().zip(&found) {
        let want = (!deleted.contains(row)).then(|| row.clone());
        assert_eq!(got, &want, "{name}: lookup of {:?}", row.get(0));
    }
    let by_bucket = rows_by_bucket(&table, &live);
    let written = rows_by_bucket(&table, &rows);
    assert!(written.len() > 1, "{name}: the rows spread over buckets");
    for bucket in 0..BUCKETS {
        let log = changelog(connection, &table, bucket).await;
        let inserted: Vec<&Row> =
            log.iter().filter(|(t, _)| *t == ChangeType::Insert).map(|(_, r)| r).collect();
        let want: Vec<&Row> =
            written.get(&bucket).map(|rows| rows.iter().collect()).unwrap_or_default();
        assert_eq!(inserted, want, "{name}: +I of bucket {bucket}");
        let deletes = log.iter().filter(|(t, _)| *t == ChangeType::Delete).count();
        assert_eq!(
            deletes,
            want.iter().filter(|r| deleted.contains(r)).count(),
            "{name}: -D of bucket {bucket}"
        );
        let expected = by_bucket.get(&bucket).map_or(0, Vec::len);
        wait_flushed(connection, &table, bucket, expected).await;
        let printed = scan_json(server, name, bucket).await;
        let mut ids: Vec<i64> = printed.iter().map(|v| v["id"].as_i64().expect("an id")).collect();
        let mut want_ids: Vec<i64> = by_bucket
            .get(&bucket)
            .into_iter()
            .flatten()
            .map(|r| match r.get(0) {
                Some(Datum::Int(id)) => i64::from(*id),
                _ => unreachable!(),
            })
            .collect();
        ids.sort_unstable();
        want_ids.sort_unstable();
        assert_eq!(ids, want_ids, "{name}: kvtablet scan of bucket {bucket}");
        for value in &printed {
            assert!(value["name"].as_str().is_some_and(|n| n.starts_with("name-")), "{value}");
        }
    }
    table
}

#[test]
fn indexed_values_and_lake_keys_round_trip_through_every_read_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = start(dir.path()).await;
        let server = served.addr().to_string();
        let cases = [
            (
                "indexed",
                descriptor(&["id"], &[], &[("table.kv.format", "INDEXED")]),
                RowFormat::Indexed,
                KeyFormat::Compacted,
                None,
            ),
            (
                "paimon",
                descriptor(&["id"], &[], &[("table.datalake.format", "paimon")]),
                RowFormat::Compacted,
                KeyFormat::Paimon,
                Some(LakeFormat::Paimon),
            ),
            (
                "paimon_prefix",
                descriptor(
                    &["name", "id"],
                    &["name"],
                    &[("table.datalake.format", "paimon"), ("table.kv.format", "INDEXED")],
                ),
                RowFormat::Indexed,
                KeyFormat::Compacted,
                Some(LakeFormat::Paimon),
            ),
            (
                "paimon_v1",
                descriptor(
                    &["name", "id"],
                    &["name"],
                    &[("table.datalake.format", "paimon"), ("table.kv.format-version", "1")],
                ),
                RowFormat::Compacted,
                KeyFormat::Paimon,
                Some(LakeFormat::Paimon),
            ),
            (
                "iceberg",
                descriptor(
                    &["name"],
                    &[],
                    &[("table.datalake.format", "iceberg"), ("table.kv.format", "indexed")],
                ),
                RowFormat::Indexed,
                KeyFormat::Iceberg,
                Some(LakeFormat::Iceberg),
            ),
            (
                "iceberg_prefix",
                descriptor(&["id", "name"], &["id"], &[("table.datalake.format", "ICEBERG")]),
                RowFormat::Compacted,
                KeyFormat::Compacted,
                Some(LakeFormat::Iceberg),
            ),
        ];
        for (name, descriptor, row_format, key_format, lake) in cases {
            let table = round_trip(&connection, &server, name, &descriptor).await;
            assert_eq!(table.schema.encoding.row_format, row_format, "{name}");
            assert_eq!(table.schema.primary_key_format(), key_format, "{name}");
            assert_eq!(table.schema.encoding.lake_format, lake, "{name}");
        }
        served.stop().await;
    });
}

#[test]
fn bytes_in_another_format_than_the_tables_are_refused_as_corrupt_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = start(dir.path()).await;
        admin::create_database(&connection, DATABASE, true).await.expect("database");
        let indexed = descriptor(
            &["id"],
            &[],
            &[("table.kv.format", "INDEXED"), ("table.datalake.format", "paimon")],
        );
        admin::create_table(&connection, DATABASE, "strict", &indexed, false)
            .await
            .expect("table created");
        let table =
            RemoteTable::fetch(&connection, DATABASE, "strict").await.expect("table metadata");
        let good = table.put_request(&[row(1)]).expect("encodes");
        let compacted_value = encode_row(&table.schema.data_types(), &row(1)).expect("encodes");
        let compacted_key = kvtablet_prod::format::encode_key(
            &[DataType::not_null(TypeRoot::Int)],
            &[Datum::Int(-463)],
        )
        .expect("encodes");
        let paimon_key =
            kvtablet_prod::format::key_encoding::primary_key_of_row(&table.schema, &row(1))
                .expect("encodes");
        for (what, key, value) in [
            ("a compacted value", paimon_key.clone(), compacted_value),
            (
                "a compacted key",
                compacted_key,
                table
                    .schema
                    .encoding
                    .row_format
                    .encode_row(&table.schema.data_types(), &row(1))
                    .unwrap(),
            ),
        ] {
            let mut request = good.clone();
            let mut builder =
                KvRecordBatchBuilder::new(table.schema.schema_id, NO_WRITER_ID, NO_BATCH_SEQUENCE);
            builder.append(&key, Some(&value)).expect("appends");
            request.buckets_req[0].records = builder.build().expect("builds").into();
            let response: PutKvResponse =
                connection.call(ApiKey::PutKv, &request).await.expect("PutKv answered");
            assert_eq!(response.buckets_resp[0].error_code, Some(14), "{what}: {response:?}");
        }
        let response: PutKvResponse =
            connection.call(ApiKey::PutKv, &good).await.expect("PutKv answered");
        assert_eq!(response.buckets_resp[0].error_code, None, "{response:?}");
        served.stop().await;
    });
}

#[test]
fn a_partial_update_of_an_indexed_table_merges_indexed_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = start(dir.path()).await;
        admin::create_database(&connection, DATABASE, true).await.expect("database");
        let indexed = descriptor(&["id"], &[], &[("table.kv.format", "INDEXED")]);
        admin::create_table(&connection, DATABASE, "partial", &indexed, false)
            .await
            .expect("table created");
        let table =
            RemoteTable::fetch(&connection, DATABASE, "partial").await.expect("table metadata");
        let full = row(7);
        put_rows(&connection, &table, std::slice::from_ref(&full), 1).await;
        let mut update = Row(vec![Datum::Null; 6]);
        update.0[0] = full.0[0].clone();
        update.0[5] = Datum::String("patched".to_string());
        let mut request = table.put_request(std::slice::from_ref(&update)).expect("encodes");
        request.target_columns = vec![0, 5];
        let response: PutKvResponse =
            connection.call(ApiKey::PutKv, &request).await.expect("PutKv answered");
        assert_eq!(response.buckets_resp[0].error_code, None, "{response:?}");
        let mut want = full.clone();
        want.0[5] = Datum::String("patched".to_string());
        assert_eq!(lookup(&connection, &table, &[full]).await, vec![Some(want)]);
        served.stop().await;
    });
}
