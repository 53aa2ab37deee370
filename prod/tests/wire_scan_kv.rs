//! ScanKv (1061) over real loopback sockets: a node, the gateway and the wire server on
//! 127.0.0.1:0, driven by the wire client. Open, continue and close; malformed and invalid
//! requests answered with Fluss's codes in the body; a small page size paging a bucket through
//! core's `KvScanner` over `WireRpc`; and a resend of the last `call_seq_id` getting the same
//! page.

// A test owns its runtime, reads wall time to bound its waits, and writes temp files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvtablet_core::env::Rpc;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::scan::kv_scanner::{KvScanner, KvScannerOptions};
use kvtablet_core::TableBucket;
use kvtablet_prod::client::{ClientError, Connection, RemoteTable, WireRpc};
use kvtablet_prod::format::{decode_value_batch, Row};
use kvtablet_prod::node::SERVER_NODE_ID;
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::tokio_executor::TokioExecutor;
use kvtablet_prod::wire::messages::{PbScanReqForBucket, ScanKvRequest, ScanKvResponse};
use kvtablet_prod::wire::ApiKey;

/// Bound on each test's body.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const INVALID_SCAN_REQUEST: i32 = 68;
const UNKNOWN_SCANNER_ID: i32 = 67;
const SCANNER_EXPIRED: i32 = 66;

async fn scan_kv(connection: &Connection, request: &ScanKvRequest) -> ScanKvResponse {
    connection.call(ApiKey::ScanKv, request).await.expect("ScanKv answered")
}

fn open_request(table: &RemoteTable, bucket: i32, batch_size_bytes: i32) -> ScanKvRequest {
    ScanKvRequest {
        scanner_id: None,
        bucket_scan_req: Some(PbScanReqForBucket {
            table_id: table.table_id,
            partition_id: None,
            bucket_id: bucket,
            limit: None,
        }),
        call_seq_id: Some(0),
        batch_size_bytes: Some(batch_size_bytes),
        close_scanner: None,
    }
}

fn continue_request(scanner_id: &Bytes, call_seq_id: i32, batch_size_bytes: i32) -> ScanKvRequest {
    ScanKvRequest {
        scanner_id: Some(scanner_id.clone()),
        bucket_scan_req: None,
        call_seq_id: Some(call_seq_id),
        batch_size_bytes: Some(batch_size_bytes),
        close_scanner: None,
    }
}

fn rows_of(table: &RemoteTable, records: Option<&Bytes>) -> Vec<Row> {
    let Some(records) = records else {
        return Vec::new();
    };
    decode_value_batch(records)
        .expect("a well-formed value batch")
        .into_iter()
        .map(|value| RemoteTable::decode_value(&table.schema, value).expect("a well-formed row"))
        .collect()
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|row| format!("{:?}", row.get(0)));
    rows
}

/// A table of one bucket holding rows `0..count`, flushed.
async fn loaded_table(connection: &Connection, name: &str, count: i32) -> (RemoteTable, Vec<Row>) {
    let table = support::create_table(connection, name, 1).await;
    let rows: Vec<Row> = (0..count).map(support::row).collect();
    support::put_rows(connection, &table, &rows, 100).await;
    support::wait_flushed(connection, &table, 0, rows.len()).await;
    (table, rows)
}

fn run(test: impl std::future::Future<Output = ()>) {
    let runtime = support::runtime();
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finished in time");
    });
}

#[test]
fn a_scan_opens_continues_and_closes_over_the_wire() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        let (table, rows) = loaded_table(&connection, "open_close", 40).await;

        let open = scan_kv(&connection, &open_request(&table, 0, 256)).await;
        assert_eq!(open.error_code, None, "{:?}", open.error_message);
        assert_eq!(open.has_more_results, Some(true));
        let scanner_id = open.scanner_id.clone().expect("a session id");
        assert!(open.log_offset.is_some_and(|offset| offset >= 1), "{:?}", open.log_offset);
        let first = rows_of(&table, open.records.as_ref());
        assert!(!first.is_empty());

        let next = scan_kv(&connection, &continue_request(&scanner_id, 1, 256)).await;
        assert_eq!(next.error_code, None, "{:?}", next.error_message);
        assert_eq!(next.log_offset, None, "log_offset is on the first response only");
        let second = rows_of(&table, next.records.as_ref());
        assert!(!second.is_empty());
        assert!(first.len() + second.len() < rows.len(), "the scan is not over yet");

        let close = ScanKvRequest {
            scanner_id: Some(scanner_id.clone()),
            batch_size_bytes: Some(256),
            close_scanner: Some(true),
            ..ScanKvRequest::default()
        };
        let closed = scan_kv(&connection, &close).await;
        assert_eq!(closed.error_code, None, "{:?}", closed.error_message);
        assert_ne!(closed.has_more_results, Some(true));

        let after = scan_kv(&connection, &continue_request(&scanner_id, 2, 256)).await;
        assert!(
            matches!(after.error_code, Some(UNKNOWN_SCANNER_ID | SCANNER_EXPIRED)),
            "a closed session is gone: {after:?}"
        );
        served.stop().await;
    });
}

#[test]
fn bad_requests_are_answered_with_fluss_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        let (table, _rows) = loaded_table(&connection, "bad_requests", 5).await;

        let mut both = open_request(&table, 0, 1024);
        both.scanner_id = Some(Bytes::from_static(b"0123456789abcdef"));
        let response = scan_kv(&connection, &both).await;
        assert_eq!(response.error_code, Some(INVALID_SCAN_REQUEST), "{response:?}");
        assert!(response.error_message.is_some());

        let mut no_batch_size = open_request(&table, 0, 1024);
        no_batch_size.batch_size_bytes = None;
        let response = scan_kv(&connection, &no_batch_size).await;
        assert_eq!(response.error_code, Some(INVALID_SCAN_REQUEST), "{response:?}");

        let unknown = continue_request(&Bytes::from_static(b"no-such-scanner!"), 1, 1024);
        let response = scan_kv(&connection, &unknown).await;
        assert!(
            matches!(response.error_code, Some(UNKNOWN_SCANNER_ID | SCANNER_EXPIRED)),
            "{response:?}"
        );

        let response = scan_kv(&connection, &open_request(&table, 9, 1024)).await;
        assert!(
            response.error_code.is_some_and(|code| code != 0),
            "bucket 9 does not exist: {response:?}"
        );
        assert_eq!(response.records, None);

        // Not a protobuf message: the whole request is refused, CORRUPT_MESSAGE.
        let outcome = connection
            .call_raw(
                ApiKey::ScanKv,
                Bytes::from_static(&[0xff, 0xff, 0xff]),
                Duration::from_secs(10),
            )
            .await;
        assert!(matches!(outcome, Err(ClientError::Server { code: 3, .. })), "{outcome:?}");
        served.stop().await;
    });
}

#[test]
fn a_small_page_size_pages_every_bucket_through_kv_scanner() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        let table = support::create_table(&connection, "paged", 3).await;
        let rows: Vec<Row> = (0..600).map(support::row).collect();
        support::put_rows(&connection, &table, &rows, 64).await;
        let by_bucket = support::rows_by_bucket(&table, &rows);
        assert_eq!(by_bucket.len(), 3, "every bucket holds rows");
        let connection = Arc::new(connection);
        let rpc: Arc<dyn Rpc> =
            Arc::new(WireRpc::new(served.addr().to_string(), Arc::clone(&connection)));
        for (bucket, expected) in &by_bucket {
            support::wait_flushed(&connection, &table, *bucket, expected.len()).await;
            let options = KvScannerOptions { batch_size_bytes: 128, ..KvScannerOptions::DEFAULT };
            let mut scanner = KvScanner::open(
                Arc::clone(&rpc),
                Arc::new(TokioExecutor::new(tokio::runtime::Handle::current())),
                Arc::new(SystemClock::new()),
                Ledger::new(),
                SERVER_NODE_ID,
                TableBucket::new(table.table_id, *bucket),
                options,
            )
            .await
            .expect("the scan opens");
            let mut scanned = Vec::new();
            let mut pages = 0;
            while let Some(batch) = scanner.next_batch().await.expect("a page") {
                pages += 1;
                for value in batch.iter() {
                    scanned.push(RemoteTable::decode_value(&table.schema, value).expect("a row"));
                }
            }
            assert!(pages >= expected.len() / 4, "bucket {bucket}: only {pages} pages");
            assert_eq!(sorted(scanned), sorted(expected.clone()), "bucket {bucket}");
        }
        served.stop().await;
    });
}

#[test]
fn a_resend_of_the_last_call_seq_id_gets_the_same_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        let (table, rows) = loaded_table(&connection, "resend", 30).await;
        let batch_size = 512;
        let open = scan_kv(&connection, &open_request(&table, 0, batch_size)).await;
        let scanner_id = open.scanner_id.clone().expect("a session id");
        let mut scanned = rows_of(&table, open.records.as_ref());

        // A resend of a middle page: the same bytes, and the scan goes on.
        let page = scan_kv(&connection, &continue_request(&scanner_id, 1, batch_size)).await;
        let again = scan_kv(&connection, &continue_request(&scanner_id, 1, batch_size)).await;
        assert_eq!(again, page, "a resend of call_seq_id 1 gets the cached page");
        scanned.extend(rows_of(&table, page.records.as_ref()));

        let mut call_seq_id = 1;
        let mut last = page;
        for _ in 0..1_000 {
            if last.has_more_results != Some(true) {
                break;
            }
            call_seq_id += 1;
            last =
                scan_kv(&connection, &continue_request(&scanner_id, call_seq_id, batch_size)).await;
            assert_eq!(last.error_code, None, "{:?}", last.error_message);
            scanned.extend(rows_of(&table, last.records.as_ref()));
        }
        assert_ne!(last.has_more_results, Some(true), "the scan ends");
        assert_eq!(sorted(scanned), sorted(rows));

        // The final page, lost and asked again: the same bytes, even though the session ended.
        let final_again =
            scan_kv(&connection, &continue_request(&scanner_id, call_seq_id, batch_size)).await;
        assert_eq!(final_again.error_code, None, "{:?}", final_again.error_message);
        assert_eq!(final_again.records, last.records);
        assert_ne!(final_again.has_more_results, Some(true));
        served.stop().await;
    });
}
