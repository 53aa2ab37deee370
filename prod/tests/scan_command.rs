//! `kvtablet scan` against a node served on 127.0.0.1:0 in this process: rows written through
//! the wire (PutKv) come back, bucket by bucket, as one JSON object per line, compared with a
//! conversion written independently here; unknown tables, missing buckets and unreachable
//! servers end the binary with a non-zero status and a message saying which.

// A test owns its runtime, reads wall time to bound its waits, and writes temp files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kvtablet_prod::format::{Datum, Row, TableSchema};
use kvtablet_prod::scan_command::{scan_bucket, ScanCommandError, ScanCommandOptions, ScanTarget};
use serde_json::{json, Value};

const KVTABLET: &str = env!("CARGO_BIN_EXE_kvtablet");
/// Bound on each run of the binary and on each test's body.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

struct Output {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, killing it after [`RUN_TIMEOUT`]. Output goes to files, so
/// that a large dump never blocks on a full pipe.
fn run_binary(args: Vec<String>) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(KVTABLET)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Output {
        status,
        stdout: std::fs::read_to_string(stdout_path).expect("stdout"),
        stderr: std::fs::read_to_string(stderr_path).expect("stderr"),
    }
}

async fn run_scan(server: &str, table: &str, bucket: i32) -> Output {
    let args = ["scan", "--server", server, "--database", support::DATABASE, "--table", table]
        .iter()
        .map(|arg| arg.to_string())
        .chain(["--bucket".to_string(), bucket.to_string()])
        .collect();
    tokio::task::spawn_blocking(move || run_binary(args)).await.expect("the runner thread")
}

/// The JSON the command must print for `row`, written without the command's code.
fn expected_json(schema: &TableSchema, row: &Row) -> Value {
    let object = schema
        .columns
        .iter()
        .zip(&row.0)
        .map(|(column, datum)| {
            let value = match datum {
                Datum::Null => Value::Null,
                Datum::Boolean(value) => json!(value),
                Datum::TinyInt(value) => json!(value),
                Datum::SmallInt(value) => json!(value),
                Datum::Int(value) => json!(value),
                Datum::BigInt(value) => json!(value),
                Datum::Float(value) => json!(f64::from(*value)),
                Datum::Double(value) => json!(value),
                Datum::String(value) => json!(value),
                other => panic!("this test's schema has no column for {other:?}"),
            };
            (column.name.clone(), value)
        })
        .collect();
    Value::Object(object)
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|value| value["id"].as_i64());
    values
}

fn run(test: impl std::future::Future<Output = ()>) {
    support::runtime().block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finished in time");
    });
}

#[test]
fn every_bucket_prints_its_rows_as_json_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        let table = support::create_table(&connection, "dumped", 4).await;
        let rows: Vec<Row> = (0..400).map(support::row).collect();
        support::put_rows(&connection, &table, &rows, 100).await;
        let by_bucket = support::rows_by_bucket(&table, &rows);
        let server = served.addr().to_string();
        for bucket in 0..4 {
            let expected: Vec<Value> = by_bucket
                .get(&bucket)
                .map(|rows| rows.iter().map(|row| expected_json(&table.schema, row)).collect())
                .unwrap_or_default();
            support::wait_flushed(&connection, &table, bucket, expected.len()).await;
            let output = run_scan(&server, "dumped", bucket).await;
            assert!(
                output.status.is_some_and(|status| status.success()),
                "bucket {bucket}: {:?}\n{}",
                output.status,
                output.stderr
            );
            let printed: Vec<Value> = output
                .stdout
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
                .collect();
            assert_eq!(sorted(printed), sorted(expected), "bucket {bucket}");
            assert!(output.stdout.contains("héllo ✓"), "non-ASCII is printed as is");
        }

        // The library function with a tiny page size: many pages, the same rows.
        let target = ScanTarget {
            server,
            database: support::DATABASE.to_string(),
            table: "dumped".to_string(),
            partition: None,
            bucket: 0,
        };
        let options = ScanCommandOptions { batch_size_bytes: 100, ..ScanCommandOptions::DEFAULT };
        let mut out = Vec::new();
        let summary = scan_bucket(&target, options, tokio::runtime::Handle::current(), &mut out)
            .await
            .expect("the scan succeeds");
        let expected_rows = by_bucket.get(&0).map_or(0, Vec::len);
        assert_eq!(summary.rows as usize, expected_rows);
        assert_eq!(String::from_utf8(out).expect("UTF-8").lines().count(), expected_rows);
        assert!(summary.log_offset >= expected_rows as u64);
        served.stop().await;
    });
}

#[test]
fn unknown_tables_missing_buckets_and_unreachable_servers_fail_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let (mut served, connection) = support::start(dir.path()).await;
        support::create_table(&connection, "small", 2).await;
        let server = served.addr().to_string();

        let output = run_scan(&server, "no_such_table", 0).await;
        assert!(output.status.is_some_and(|status| !status.success()), "{:?}", output.status);
        assert!(output.stderr.contains("does not exist"), "{}", output.stderr);
        assert!(output.stdout.is_empty());

        let output = run_scan(&server, "small", 2).await;
        assert!(output.status.is_some_and(|status| !status.success()), "{:?}", output.status);
        assert!(output.stderr.contains("bucket 2 does not exist"), "{}", output.stderr);

        let output = run_scan(&server, "small", -1).await;
        assert!(output.status.is_some_and(|status| !status.success()), "{:?}", output.status);

        // An empty bucket prints nothing and succeeds.
        let output = run_scan(&server, "small", 1).await;
        assert!(output.status.is_some_and(|status| status.success()), "{}", output.stderr);
        assert!(output.stdout.is_empty());

        // A port nobody listens on: bind one, then free it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let target = ScanTarget {
            server: closed_addr.clone(),
            database: support::DATABASE.to_string(),
            table: "small".to_string(),
            partition: None,
            bucket: 0,
        };
        let outcome = scan_bucket(
            &target,
            ScanCommandOptions::DEFAULT,
            tokio::runtime::Handle::current(),
            &mut Vec::new(),
        )
        .await;
        assert!(matches!(outcome, Err(ScanCommandError::Connect(_))), "{outcome:?}");
        let output = run_scan(&closed_addr, "small", 0).await;
        assert!(output.status.is_some_and(|status| !status.success()), "{:?}", output.status);
        assert!(output.stderr.contains("cannot reach the server"), "{}", output.stderr);
        served.stop().await;
    });
}
