//! Full-scan throughput of one bucket: the ScanKv session path against a raw engine iterator
//! over the same data, on RocksDB and on the in-memory engine.
//!
//! One bucket holds 1,000,000 rows (8-byte big-endian keys, 100-byte values). The session path
//! sends `TabletServer::handle_request(Request::ScanKv(..))` in-process: an open with
//! `batch_size_bytes` 4 MiB, then continuations until `has_more_results` is false, measured
//! twice: decoding each batch as a client does (`ValueBatch::parse`, values read in place),
//! and counting rows from the batch header only (the server's share). The raw path iterates a snapshot of the
//! same engine (`leader_kv(bucket).read_snapshot()`, `iter(KeyRange::all())`) and sums value
//! lengths. A fourth line scans through `KvScanner` (the pipelined client) over an in-process
//! `Rpc`. Each figure is the best of 3 runs. Times are printed, never asserted.
//!
//! Run: `cargo bench -p kvtablet-prod --bench scan_throughput` (release profile).

// prod may read wall time and own a tokio runtime; measuring them is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{KeyRange, KvEngineFactory};
use kvtablet_core::env::{LocalFs, Rpc, RpcError};
use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogRegistry};
use kvtablet_core::message::{
    BucketScanRequest, KvWrite, NodeId, Request, Response, ScanKvRequest, ScanKvResponse,
};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::kv_scanner::{KvScanner, KvScannerOptions};
use kvtablet_core::scan::value_record_batch::ValueBatch;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::{Env, TableBucket};
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::object_store_remote::ObjectStoreRemote;
use kvtablet_prod::os_entropy::OsEntropy;
use kvtablet_prod::rocks_engine::RocksEngineFactory;
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::tokio_executor::TokioExecutor;

const ROW_COUNT: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;
const ROWS_PER_PUT: u64 = 10_000;
const BATCH_SIZE_BYTES: i32 = 4 * 1024 * 1024;
const RUNS: usize = 3;
const SCHEMA_ID: i16 = 1;
const TABLE_ID: i64 = 1;
const SERVER_NODE_ID: NodeId = 1;
/// How long the flush may take to catch up with the loaded log before the bench gives up.
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(600);

/// The server never calls out in this bench; nothing is bound to the network.
struct NoNetwork;

impl Rpc for NoNetwork {
    fn call(
        &self,
        target: NodeId,
        _request: Request,
        _timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        futures::future::ready(Err(RpcError::Unreachable(target))).boxed()
    }
}

#[derive(Debug, Clone, Copy)]
enum EngineKind {
    Rocks,
    Mem,
}

impl EngineKind {
    fn name(self) -> &'static str {
        match self {
            EngineKind::Rocks => "RocksEngine",
            EngineKind::Mem => "MemEngine",
        }
    }
}

/// What one full pass over the bucket saw, and how long it took.
#[derive(Debug, Clone, Copy)]
struct Pass {
    rows: u64,
    value_bytes: u64,
    elapsed: Duration,
}

impl Pass {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    fn mb_per_s(&self) -> f64 {
        self.value_bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }
}

fn value_of(row: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(VALUE_BYTES);
    value.extend_from_slice(&SCHEMA_ID.to_le_bytes());
    value.extend_from_slice(&row.to_be_bytes());
    value.resize(VALUE_BYTES, (row % 251) as u8);
    value
}

fn build_env(root: &std::path::Path, runtime: &tokio::runtime::Runtime, kind: EngineKind) -> Env {
    let fs = Arc::new(DiskFs::new(root).expect("data directory"));
    let remote =
        ObjectStoreRemote::local(fs.root().join("remote")).expect("local object store directory");
    let engines: Arc<dyn KvEngineFactory> = match kind {
        EngineKind::Rocks => Arc::new(RocksEngineFactory::new(fs.root().to_path_buf())),
        EngineKind::Mem => Arc::new(MemEngineFactory::new(Arc::clone(&fs) as Arc<dyn LocalFs>)),
    };
    Env {
        node_id: SERVER_NODE_ID,
        clock: Arc::new(SystemClock::new()),
        executor: Arc::new(TokioExecutor::new(runtime.handle().clone())),
        remote: Arc::new(remote),
        rpc: Arc::new(NoNetwork),
        fs,
        entropy: Arc::new(OsEntropy::new().expect("OS entropy")),
        engines,
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    }
}

fn start_server(env: &Env) -> Arc<TabletServer> {
    let logs = LogRegistry::new(Arc::clone(&env.fs), ".".to_string(), LogConfig::DEFAULT);
    let config = TabletServerConfig {
        tables: vec![TableConfig {
            table_id: TABLE_ID,
            path: TablePath::new("bench", "scan"),
            bucket_count: 1,
            schema_ids: vec![SCHEMA_ID],
            partial_updates: None,
            log_ttl_ms: None,
            partitioned: false,
        }],
        kv: KvTabletConfig::DEFAULT,
        limits: RequestLimits::DEFAULT,
        scanner: ScannerConfig::DEFAULT,
        snapshots: None,
        tiering: None,
    };
    TabletServer::start(env.clone(), config, logs)
}

/// Leads the bucket, loads every row in puts of `ROWS_PER_PUT`, and waits until the engine has
/// flushed up to the log's high watermark (scans read flushed data only).
fn load(runtime: &tokio::runtime::Runtime, server: &TabletServer, bucket: TableBucket) {
    let response =
        runtime.block_on(server.handle_request(Request::BecomeLeader { bucket, leader_epoch: 1 }));
    assert_eq!(response, Response::Ok, "become leader");
    let started = Instant::now();
    for first_row in (0..ROW_COUNT).step_by(ROWS_PER_PUT as usize) {
        let writes = (first_row..(first_row + ROWS_PER_PUT).min(ROW_COUNT))
            .map(|row| KvWrite { key: row.to_be_bytes().to_vec(), value: Some(value_of(row)) })
            .collect();
        match runtime.block_on(server.handle_request(Request::PutKv {
            bucket,
            writes,
            writer: None,
            target_columns: None,
        })) {
            Response::PutKv { .. } => {}
            other => panic!("put at row {first_row} failed: {other:?}"),
        }
    }
    let kv = server.leader_kv(bucket).expect("this server leads the bucket");
    let high_watermark = kv.log().high_watermark();
    let flush_deadline = Instant::now() + FLUSH_WAIT_MAX;
    while kv.flushed_log_offset() < high_watermark {
        assert!(
            Instant::now() < flush_deadline,
            "the flush did not catch up within {FLUSH_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "  loaded {ROW_COUNT} rows ({VALUE_BYTES}-byte values) and flushed to offset {high_watermark} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

fn scan_kv(
    runtime: &tokio::runtime::Runtime,
    server: &TabletServer,
    request: ScanKvRequest,
) -> ScanKvResponse {
    match runtime.block_on(server.handle_request(Request::ScanKv(request))) {
        Response::ScanKv(response) => {
            if let Some(error) = &response.error {
                panic!("ScanKv failed: {error}");
            }
            response
        }
        other => panic!("ScanKv answered {other:?}"),
    }
}

/// How a session pass reads each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchReading {
    /// `ValueBatch::parse`, then every value read in place, as `KvScanner` hands them out.
    Decode,
    /// The header's record count and the batch length only: the server's share of the cost.
    HeaderOnly,
}

/// Rows and value bytes of a `DefaultValueRecordBatch`, from its header (9 bytes, record
/// count at bytes 5..9) and its length (4 framing bytes per record).
fn count_from_header(records: &[u8]) -> (u64, u64) {
    let header: [u8; 4] = records[5..9].try_into().expect("a 9-byte header");
    let rows = u64::from(u32::from_le_bytes(header));
    (rows, records.len() as u64 - 9 - 4 * rows)
}

/// One full scan through the session path: open, then continuations until drained.
fn session_pass(
    runtime: &tokio::runtime::Runtime,
    server: &TabletServer,
    bucket: TableBucket,
    reading: BatchReading,
) -> Pass {
    let started = Instant::now();
    let mut rows = 0u64;
    let mut value_bytes = 0u64;
    let mut response = scan_kv(
        runtime,
        server,
        ScanKvRequest {
            bucket_scan_req: Some(BucketScanRequest { bucket, limit: None }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(BATCH_SIZE_BYTES),
            ..ScanKvRequest::default()
        },
    );
    let mut call_seq_id = 0;
    loop {
        if let Some(records) = &response.records {
            match reading {
                BatchReading::Decode => {
                    let values = ValueBatch::parse(records.clone()).expect("a well-formed batch");
                    rows += values.len() as u64;
                    value_bytes += values.iter().map(|value| value.len() as u64).sum::<u64>();
                }
                BatchReading::HeaderOnly => {
                    let (batch_rows, batch_value_bytes) = count_from_header(records);
                    rows += batch_rows;
                    value_bytes += batch_value_bytes;
                }
            }
        }
        if response.has_more_results != Some(true) {
            break;
        }
        call_seq_id += 1;
        response = scan_kv(
            runtime,
            server,
            ScanKvRequest {
                scanner_id: response.scanner_id.clone(),
                call_seq_id: Some(call_seq_id),
                batch_size_bytes: Some(BATCH_SIZE_BYTES),
                ..ScanKvRequest::default()
            },
        );
    }
    Pass { rows, value_bytes, elapsed: started.elapsed() }
}

/// Calls go straight to the in-process server, as a function call (no socket).
struct InProcessRpc {
    server: Arc<TabletServer>,
}

impl Rpc for InProcessRpc {
    fn call(
        &self,
        _target: NodeId,
        request: Request,
        _timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        self.server.handle_request(request).map(Ok).boxed()
    }
}

/// One full scan through `KvScanner`: the same session path, with the next continuation
/// running on a worker while this thread decodes the current batch.
fn scanner_pass(
    runtime: &tokio::runtime::Runtime,
    env: &Env,
    server: &Arc<TabletServer>,
    bucket: TableBucket,
) -> Pass {
    let rpc: Arc<dyn Rpc> = Arc::new(InProcessRpc { server: Arc::clone(server) });
    let options =
        KvScannerOptions { batch_size_bytes: BATCH_SIZE_BYTES, ..KvScannerOptions::DEFAULT };
    let started = Instant::now();
    let (rows, value_bytes) = runtime.block_on(async {
        let mut scanner = KvScanner::open(
            rpc,
            Arc::clone(&env.executor),
            Arc::clone(&env.clock),
            env.ledger.clone(),
            SERVER_NODE_ID,
            bucket,
            options,
        )
        .await
        .expect("the scan opens");
        let mut rows = 0u64;
        let mut value_bytes = 0u64;
        while let Some(values) = scanner.next_batch().await.expect("a batch") {
            rows += values.len() as u64;
            value_bytes += values.iter().map(|value| value.len() as u64).sum::<u64>();
        }
        (rows, value_bytes)
    });
    Pass { rows, value_bytes, elapsed: started.elapsed() }
}

/// One full pass of a raw engine iterator over a snapshot of the same engine.
fn raw_pass(server: &TabletServer, bucket: TableBucket) -> Pass {
    let started = Instant::now();
    let kv = server.leader_kv(bucket).expect("this server leads the bucket");
    let (snapshot, _read_offset) = kv.read_snapshot().expect("a snapshot");
    let mut iterator = snapshot.iter(KeyRange::all()).expect("an iterator");
    iterator.seek_to_first();
    let mut rows = 0u64;
    let mut value_bytes = 0u64;
    while iterator.valid() {
        rows += 1;
        value_bytes += iterator.value().len() as u64;
        iterator.next();
    }
    iterator.status().expect("the iterator ended without error");
    Pass { rows, value_bytes, elapsed: started.elapsed() }
}

fn best_of(mut run: impl FnMut() -> Pass) -> Pass {
    let passes: Vec<Pass> = (0..RUNS).map(|_| run()).collect();
    for pass in &passes {
        assert_eq!(pass.rows, ROW_COUNT, "every row is scanned exactly once");
        assert_eq!(pass.value_bytes, ROW_COUNT * VALUE_BYTES as u64);
    }
    passes.into_iter().min_by_key(|pass| pass.elapsed).expect("at least one run")
}

fn bench_engine(kind: EngineKind) {
    println!("{}:", kind.name());
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("scan-bench")
        .build()
        .expect("tokio runtime");
    let env = build_env(data_dir.path(), &runtime, kind);
    let server = start_server(&env);
    let bucket = TableBucket::new(TABLE_ID, 0);
    load(&runtime, &server, bucket);

    let session = best_of(|| session_pass(&runtime, &server, bucket, BatchReading::Decode));
    let server_only = best_of(|| session_pass(&runtime, &server, bucket, BatchReading::HeaderOnly));
    let pipelined = best_of(|| scanner_pass(&runtime, &env, &server, bucket));
    let raw = best_of(|| raw_pass(&server, bucket));
    for (name, pass) in [
        ("session, client decodes", session),
        ("session, header count only", server_only),
        ("KvScanner, pipelined, decodes", pipelined),
        ("raw engine iterator", raw),
    ] {
        println!(
            "  {name:<32} {:>12.0} rows/s {:>9.1} MB/s  ({:.3} s best of {RUNS})",
            pass.rows_per_s(),
            pass.mb_per_s(),
            pass.elapsed.as_secs_f64()
        );
    }
    println!(
        "  session/raw: {:.1}% of raw rows/s with client decode, {:.1}% header count only, {:.1}% through KvScanner",
        100.0 * session.rows_per_s() / raw.rows_per_s(),
        100.0 * server_only.rows_per_s() / raw.rows_per_s(),
        100.0 * pipelined.rows_per_s() / raw.rows_per_s()
    );
    runtime.block_on(server.shutdown());
    assert!(
        env.ledger
            .live()
            .iter()
            .all(|resource| resource.kind != kvtablet_core::ledger::ResourceKind::ScanSession),
        "every scan session is gone after the bench: {:?}",
        env.ledger.live()
    );
    drop(server);
    drop(env);
    runtime.shutdown_timeout(Duration::from_secs(10));
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    println!(
        "scan_throughput: one bucket, {ROW_COUNT} rows, {VALUE_BYTES}-byte values, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    bench_engine(EngineKind::Rocks);
    bench_engine(EngineKind::Mem);
}
