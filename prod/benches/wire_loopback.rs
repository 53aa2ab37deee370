//! The wire path end to end on loopback: a node, the gateway and the wire server on
//! 127.0.0.1:0 in a temporary directory, driven by the Rust wire client in the same process
//! (client and server share the machine's cores).
//!
//! - PutKv rows/s with 1, 4 and 16 connections. Each connection sends batches of
//!   `ROWS_PER_PUT` rows (a BIGINT key and a 90-character STRING: ~100-byte stored values),
//!   **one request at a time** (the next batch leaves when the previous one is acknowledged,
//!   i.e. durable), into a table of `WRITE_BUCKETS` buckets, for `phase` seconds.
//! - Lookup keys/s with 1, 4 and 16 connections: requests of `KEYS_PER_LOOKUP` keys of rows
//!   written above, one request at a time per connection.
//! - ScanKv: a one-bucket table loaded with `scan_rows` rows, scanned in full through core's
//!   `KvScanner` over `WireRpc` (4 MiB pages, pipelined), against a raw RocksDB iterator over
//!   the same engine directory opened in-process after the node stopped (the same data, the
//!   same files). The wire scan runs twice: just after loading (part of the data still in the
//!   memtable, which costs the iteration a merge) and after a restart of the node on the same
//!   directory (the state the raw pass reads). Value bytes per second, best of 3, and the
//!   ratios.
//!
//! Times are printed, never asserted. Every loop is bounded by a count or a deadline.
//!
//! - The disk's own rate of synced appends (a probe before anything else): one file in the
//!   bench's temporary directory, appends of one bucket's share of a PutKv batch, each followed
//!   by an fsync, for `phase` or `PROBE_SYNCS_MAX` syncs; once on one open descriptor, once
//!   through `DiskFs` as the changelog does it. With one sync per request this bounds what one
//!   connection can put.
//!
//! Run: `cargo bench -p kvtablet-prod --bench wire_loopback` (about 2 minutes on 2 cores);
//! `-- --quick` or `KVTABLET_BENCH_QUICK=1` for a run of a few seconds; `-- --scan-only` skips
//! the PutKv and Lookup phases and scans 10 times (for a profiler); `-- --puts-only` runs the
//! disk probe and the PutKv phases only (`--phase-ms N` sets the phase length of any mode), for
//! before-and-after comparisons of the write path.

// prod may read wall time and own a tokio runtime; measuring them is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvtablet_core::engine::{KeyRange, KvEngineFactory};
use kvtablet_core::env::{LocalFs, Rpc};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::scan::kv_scanner::{KvScanner, KvScannerOptions};
use kvtablet_core::TableBucket;
use kvtablet_prod::client::{admin, Connection, ConnectionConfig, RemoteTable, WireRpc};
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::format::{Column, DataType, Datum, Row, Schema, TableDescriptor, TypeRoot};
use kvtablet_prod::node::SERVER_NODE_ID;
use kvtablet_prod::rocks_engine::RocksEngineFactory;
use kvtablet_prod::served_node::ServedNode;
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::tokio_executor::TokioExecutor;
use kvtablet_prod::wire::messages::{LookupResponse, PutKvResponse};
use kvtablet_prod::wire::{ApiKey, WireConfig};

const DATABASE: &str = "bench";
const WRITE_TABLE: &str = "writes";
const SCAN_TABLE: &str = "scan";
const WRITE_BUCKETS: i32 = 4;
const ROWS_PER_PUT: usize = 100;
const KEYS_PER_LOOKUP: usize = 100;
const PAYLOAD_CHARS: usize = 90;
const CONNECTION_COUNTS: [usize; 3] = [1, 4, 16];
/// Rows per PutKv while loading the scan table, and loaders at once.
const LOAD_ROWS_PER_PUT: usize = 2_000;
const LOADERS: usize = 4;
const SCAN_BATCH_SIZE_BYTES: i32 = 4 * 1024 * 1024;
/// How long the flush may take to catch up before the bench gives up.
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(300);
/// Keys of the scan table start here, clear of the write table's.
const SCAN_KEY_BASE: i64 = 1 << 40;
/// Bytes of one probe append: one bucket's share of a PutKv batch, about as the log frames it.
const PROBE_APPEND_BYTES: usize = ROWS_PER_PUT / WRITE_BUCKETS as usize * 128;
/// Syncs of one probe pass at most.
const PROBE_SYNCS_MAX: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Sizes {
    phase: Duration,
    scan_rows: usize,
    /// Cap on the rows of one PutKv phase, so that a fast machine cannot grow the data set
    /// without bound.
    put_rows_max: usize,
    /// Skip the PutKv and Lookup phases.
    scan_only: bool,
    /// The disk probe and the PutKv phases only.
    puts_only: bool,
    /// Full scans of each kind; the best is reported.
    scan_runs: usize,
}

const FULL: Sizes = Sizes {
    phase: Duration::from_secs(5),
    scan_rows: 1_000_000,
    put_rows_max: 2_000_000,
    scan_only: false,
    puts_only: false,
    scan_runs: 3,
};
const QUICK: Sizes = Sizes {
    phase: Duration::from_secs(1),
    scan_rows: 100_000,
    put_rows_max: 200_000,
    scan_only: false,
    puts_only: false,
    scan_runs: 3,
};
/// Scans of the profiling mode.
const SCAN_ONLY_RUNS: usize = 10;

fn descriptor(bucket_count: i32) -> TableDescriptor {
    let columns = vec![
        Column::new(0, "id", DataType::not_null(TypeRoot::BigInt)),
        Column::new(1, "payload", DataType::nullable(TypeRoot::String)),
    ];
    TableDescriptor {
        schema: Schema::new(columns, vec!["id".to_string()]).expect("a valid schema"),
        comment: None,
        partition_keys: Vec::new(),
        bucket_keys: Vec::new(),
        bucket_count: Some(bucket_count),
        properties: BTreeMap::new(),
        custom_properties: BTreeMap::new(),
    }
}

fn row(id: i64) -> Row {
    let mut payload = format!("payload-{id}-");
    payload.extend(std::iter::repeat_n('x', PAYLOAD_CHARS.saturating_sub(payload.len())));
    Row::new(vec![Datum::BigInt(id), Datum::String(payload)])
}

async fn put(connection: &Connection, table: &RemoteTable, rows: &[Row]) {
    let request = table.put_request(rows).expect("rows encode");
    let response: PutKvResponse = connection.call(ApiKey::PutKv, &request).await.expect("PutKv");
    for bucket in response.buckets_resp {
        assert_eq!(bucket.error_code, None, "PutKv: {:?}", bucket.error_message);
    }
}

/// Found values of a Lookup of `rows`' keys.
async fn lookup(connection: &Connection, table: &RemoteTable, rows: &[Row]) -> usize {
    let request = table.lookup_request(rows).expect("keys encode");
    let response: LookupResponse = connection.call(ApiKey::Lookup, &request).await.expect("Lookup");
    response
        .buckets_resp
        .iter()
        .map(|bucket| {
            assert_eq!(bucket.error_code, None, "Lookup: {:?}", bucket.error_message);
            bucket.values.iter().filter(|value| value.values.is_some()).count()
        })
        .sum()
}

async fn connect_many(addr: &str, count: usize) -> Vec<Arc<Connection>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let connection =
            Connection::connect(addr, ConnectionConfig::DEFAULT).await.expect("connects");
        connections.push(Arc::new(connection));
    }
    connections
}

/// `connections` writers, each sending batches one at a time until `phase` ends or it has
/// written its share of `put_rows_max`. Returns each writer's ids (`first..first + count`),
/// the time taken, and the next free id.
async fn put_phase(
    connections: &[Arc<Connection>],
    table: &Arc<RemoteTable>,
    next_id: i64,
    sizes: Sizes,
) -> (Vec<(i64, usize)>, Duration, i64) {
    let per_connection_max = sizes.put_rows_max / connections.len();
    let stride = i64::try_from(per_connection_max + ROWS_PER_PUT).expect("small");
    let started = Instant::now();
    let deadline = started + sizes.phase;
    let writers = connections.iter().enumerate().map(|(index, connection)| {
        let connection = Arc::clone(connection);
        let table = Arc::clone(table);
        let first_id = next_id + stride * i64::try_from(index).expect("small");
        tokio::spawn(async move {
            let mut written = 0usize;
            while Instant::now() < deadline && written < per_connection_max {
                let base = first_id + i64::try_from(written).expect("small");
                let rows: Vec<Row> = (0..ROWS_PER_PUT as i64).map(|i| row(base + i)).collect();
                put(&connection, &table, &rows).await;
                written += ROWS_PER_PUT;
            }
            (first_id, written)
        })
    });
    let mut runs = Vec::with_capacity(connections.len());
    for writer in futures::future::join_all(writers).await {
        runs.push(writer.expect("the writer ran"));
    }
    let elapsed = started.elapsed();
    let end_id = next_id + stride * i64::try_from(connections.len()).expect("small");
    (runs, elapsed, end_id)
}

/// `connections` readers looking up keys of `written` (ids known to exist) for `phase`.
async fn lookup_phase(
    connections: &[Arc<Connection>],
    table: &Arc<RemoteTable>,
    written: &Arc<Vec<i64>>,
    sizes: Sizes,
) -> (u64, u64, Duration) {
    let started = Instant::now();
    let deadline = started + sizes.phase;
    let readers = connections.iter().enumerate().map(|(index, connection)| {
        let connection = Arc::clone(connection);
        let table = Arc::clone(table);
        let written = Arc::clone(written);
        tokio::spawn(async move {
            let (mut keys, mut found) = (0u64, 0u64);
            // A different walk through the ids per reader: a multiplicative step.
            let mut position = index * 7_919;
            while Instant::now() < deadline {
                let rows: Vec<Row> = (0..KEYS_PER_LOOKUP)
                    .map(|i| row(written[(position + i * 104_729) % written.len()]))
                    .collect();
                position += KEYS_PER_LOOKUP;
                found += lookup(&connection, &table, &rows).await as u64;
                keys += KEYS_PER_LOOKUP as u64;
            }
            (keys, found)
        })
    });
    let (mut keys, mut found) = (0, 0);
    for reader in futures::future::join_all(readers).await {
        let (reader_keys, reader_found) = reader.expect("the reader ran");
        keys += reader_keys;
        found += reader_found;
    }
    (keys, found, started.elapsed())
}

/// Waits until a lookup of `sentinel` (written after everything else) finds it: the flush
/// follows the log in order, so everything before it is flushed too.
async fn wait_flushed(connection: &Connection, table: &RemoteTable, sentinel: &Row) {
    let deadline = Instant::now() + FLUSH_WAIT_MAX;
    while lookup(connection, table, std::slice::from_ref(sentinel)).await == 0 {
        assert!(Instant::now() < deadline, "the flush did not catch up within {FLUSH_WAIT_MAX:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Pass {
    rows: u64,
    value_bytes: u64,
    elapsed: Duration,
}

impl Pass {
    fn mb_per_s(&self) -> f64 {
        self.value_bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }

    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

async fn wire_scan_pass(rpc: &Arc<dyn Rpc>, bucket: TableBucket) -> Pass {
    let options =
        KvScannerOptions { batch_size_bytes: SCAN_BATCH_SIZE_BYTES, ..KvScannerOptions::DEFAULT };
    let started = Instant::now();
    let mut scanner = KvScanner::open(
        Arc::clone(rpc),
        Arc::new(TokioExecutor::new(tokio::runtime::Handle::current())),
        Arc::new(SystemClock::new()),
        Ledger::new(),
        SERVER_NODE_ID,
        bucket,
        options,
    )
    .await
    .expect("the scan opens");
    let (mut rows, mut value_bytes) = (0u64, 0u64);
    while let Some(batch) = scanner.next_batch().await.expect("a page") {
        rows += batch.len() as u64;
        value_bytes += batch.iter().map(|value| value.len() as u64).sum::<u64>();
    }
    Pass { rows, value_bytes, elapsed: started.elapsed() }
}

fn raw_pass(factory: &RocksEngineFactory, bucket: TableBucket) -> Pass {
    let started = Instant::now();
    let engine = factory.open(&format!("kv/{}", bucket.dir_name())).expect("the engine opens");
    let snapshot = engine.snapshot().expect("a snapshot");
    let mut iterator = snapshot.iter(KeyRange::all()).expect("an iterator");
    iterator.seek_to_first();
    let (mut rows, mut value_bytes) = (0u64, 0u64);
    while iterator.valid() {
        rows += 1;
        value_bytes += iterator.value().len() as u64;
        iterator.next();
    }
    iterator.status().expect("the iterator ended without error");
    Pass { rows, value_bytes, elapsed: started.elapsed() }
}

fn best(passes: Vec<Pass>, rows: u64) -> Pass {
    for pass in &passes {
        assert_eq!(pass.rows, rows, "every row is scanned exactly once");
    }
    passes.into_iter().min_by_key(|pass| pass.elapsed).expect("at least one run")
}

/// CPU time (user and system, every thread, client and server alike) this process has used,
/// from `/proc/self/stat` in clock ticks of 10 ms (Linux's fixed user-visible `USER_HZ`); zero
/// where it cannot be read. It bounds what more connections can gain on this machine.
fn process_cpu() -> Duration {
    const TICK: Duration = Duration::from_millis(10);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // The command name may hold spaces: the fields after it start past its closing ')'.
    let Some((_, after_name)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the name
    // (the state, field 3, is index 0).
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u32>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => TICK * user.saturating_add(system),
        _ => Duration::ZERO,
    }
}

/// The PutKv phases, then (once everything written is flushed) the Lookup phases.
async fn put_and_lookup_phases(
    addr: &str,
    setup: &Connection,
    writes: &Arc<RemoteTable>,
    sizes: Sizes,
) {
    println!("PutKv, {ROWS_PER_PUT} rows per request, one request at a time per connection, {WRITE_BUCKETS} buckets:");
    let mut next_id = 0i64;
    let mut written: Vec<i64> = Vec::new();
    for count in CONNECTION_COUNTS {
        let connections = connect_many(addr, count).await;
        let cpu_before = process_cpu();
        let (runs, elapsed, end_id) = put_phase(&connections, writes, next_id, sizes).await;
        let cpu = process_cpu().saturating_sub(cpu_before);
        let mut rows = 0;
        for (first, count) in runs {
            written.extend((0..count as i64).map(|i| first + i));
            rows += count;
        }
        next_id = end_id;
        println!(
            "  {count:>2} connection(s): {:>10.0} rows/s  ({rows} rows in {:.2} s, {:.1} µs of CPU per row)",
            rows as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / rows.max(1) as f64,
        );
    }
    let sentinel = row(next_id);
    put(setup, writes, std::slice::from_ref(&sentinel)).await;
    wait_flushed(setup, writes, &sentinel).await;
    if sizes.puts_only {
        return;
    }

    println!("Lookup, {KEYS_PER_LOOKUP} keys per request, one request at a time per connection:");
    let written = Arc::new(written);
    for count in CONNECTION_COUNTS {
        let connections = connect_many(addr, count).await;
        let (keys, found, elapsed) = lookup_phase(&connections, writes, &written, sizes).await;
        println!(
            "  {count:>2} connection(s): {:>10.0} keys/s  ({keys} keys, {found} found, in {:.2} s)",
            keys as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
    }
}

/// Loads, measures the wire phases, and scans over the wire: on the live engine just loaded,
/// then after a restart. Returns the best scans and the scanned bucket (none in the puts-only
/// mode).
async fn bench(data_dir: &std::path::Path, sizes: Sizes) -> Option<(Pass, Pass, TableBucket)> {
    let mut served = ServedNode::start(
        data_dir,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        WireConfig::default(),
        tokio::runtime::Handle::current(),
    )
    .await
    .expect("the node starts");
    let addr = served.addr().to_string();
    let setup = Connection::connect(&addr, ConnectionConfig::DEFAULT).await.expect("connects");
    admin::create_database(&setup, DATABASE, true).await.expect("database");
    admin::create_table(&setup, DATABASE, WRITE_TABLE, &descriptor(WRITE_BUCKETS), false)
        .await
        .expect("write table");
    admin::create_table(&setup, DATABASE, SCAN_TABLE, &descriptor(1), false)
        .await
        .expect("scan table");
    let writes =
        Arc::new(RemoteTable::fetch(&setup, DATABASE, WRITE_TABLE).await.expect("metadata"));
    let scan = Arc::new(RemoteTable::fetch(&setup, DATABASE, SCAN_TABLE).await.expect("metadata"));

    if !sizes.scan_only {
        put_and_lookup_phases(&addr, &setup, &writes, sizes).await;
    }
    if sizes.puts_only {
        served.stop().await;
        return None;
    }

    let loaded = Instant::now();
    let loaders = connect_many(&addr, LOADERS).await;
    let per_loader = sizes.scan_rows / LOADERS;
    let loading = loaders.iter().enumerate().map(|(index, connection)| {
        let connection = Arc::clone(connection);
        let scan = Arc::clone(&scan);
        tokio::spawn(async move {
            let first = SCAN_KEY_BASE + (index * per_loader) as i64;
            for start in (0..per_loader).step_by(LOAD_ROWS_PER_PUT) {
                let end = (start + LOAD_ROWS_PER_PUT).min(per_loader);
                let rows: Vec<Row> = (start..end).map(|i| row(first + i as i64)).collect();
                put(&connection, &scan, &rows).await;
            }
        })
    });
    for loader in futures::future::join_all(loading).await {
        loader.expect("the loader ran");
    }
    let scan_rows = (per_loader * LOADERS) as u64;
    let sentinel = row(SCAN_KEY_BASE - 1);
    put(&setup, &scan, std::slice::from_ref(&sentinel)).await;
    wait_flushed(&setup, &scan, &sentinel).await;
    println!(
        "ScanKv: loaded and flushed {} rows into one bucket in {:.1} s",
        scan_rows + 1,
        loaded.elapsed().as_secs_f64()
    );
    let bucket = TableBucket::new(scan.table_id, 0);
    let live = wire_scan_passes(setup, &addr, bucket, sizes).await;
    served.stop().await;
    // Restarted on the same directory, the engine holds what the raw pass will read: the
    // memtable recovered into files, none of the just-loaded state in memory.
    let mut served = ServedNode::start(
        data_dir,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        WireConfig::default(),
        tokio::runtime::Handle::current(),
    )
    .await
    .expect("the node restarts");
    let addr = served.addr().to_string();
    let connection = Connection::connect(&addr, ConnectionConfig::DEFAULT).await.expect("connects");
    let reopened = wire_scan_passes(connection, &addr, bucket, sizes).await;
    served.stop().await;
    let rows = scan_rows + 1;
    Some((best(live, rows), best(reopened, rows), bucket))
}

/// Synced appends per second of `append_and_sync` (one call: one append and its fsync), for
/// `phase` or `PROBE_SYNCS_MAX` calls.
fn probe_pass(phase: Duration, mut append_and_sync: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < phase && syncs < PROBE_SYNCS_MAX {
        append_and_sync();
        syncs += 1;
    }
    syncs as f64 / started.elapsed().as_secs_f64()
}

/// The disk's own rate of synced appends, in `dir`: on one open descriptor (write + fsync), and
/// through `DiskFs` as the changelog appends and syncs (each call opens the file).
fn disk_probe(dir: &std::path::Path, phase: Duration) {
    use std::io::Write;
    let frame = vec![0x5au8; PROBE_APPEND_BYTES];
    let path = dir.join("probe-raw.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("the probe file opens");
    let raw = probe_pass(phase, || {
        file.write_all(&frame).expect("probe append");
        file.sync_all().expect("probe fsync");
    });
    drop(file);
    std::fs::remove_file(&path).expect("the probe file is removed");
    let fs = DiskFs::new(dir.join("probe-diskfs")).expect("the probe directory");
    let through_fs = probe_pass(phase, || {
        fs.append("probe.log", &frame).expect("probe append");
        fs.sync("probe.log").expect("probe fsync");
    });
    fs.remove_dir_all("").ok();
    println!(
        "Disk probe, {PROBE_APPEND_BYTES}-byte appends each followed by fsync: {raw:>8.0} synced \
         appends/s on one descriptor, {through_fs:>8.0}/s through DiskFs"
    );
}

async fn wire_scan_passes(
    connection: Connection,
    addr: &str,
    bucket: TableBucket,
    sizes: Sizes,
) -> Vec<Pass> {
    let rpc: Arc<dyn Rpc> = Arc::new(WireRpc::new(addr, Arc::new(connection)));
    let mut passes = Vec::with_capacity(sizes.scan_runs);
    for _ in 0..sizes.scan_runs {
        passes.push(wire_scan_pass(&rpc, bucket).await);
    }
    passes
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var("KVTABLET_BENCH_QUICK").is_ok_and(|value| value != "0");
    let mut sizes = if quick { QUICK } else { FULL };
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--scan-only") {
        sizes.scan_only = true;
        sizes.scan_runs = SCAN_ONLY_RUNS;
    }
    if args.iter().any(|arg| arg == "--puts-only") {
        sizes.puts_only = true;
        sizes.put_rows_max = 10_000_000;
    }
    if let Some(window) = args.windows(2).find(|window| window[0] == "--phase-ms") {
        let phase_ms: u64 = window[1].parse().expect("--phase-ms takes milliseconds");
        sizes.phase = Duration::from_millis(phase_ms.clamp(100, 600_000));
    }
    println!(
        "wire_loopback{}: client and server in one process on 127.0.0.1, {} cores, {:?} per phase",
        if quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sizes.phase
    );
    let data_dir = tempfile::tempdir().expect("temporary directory");
    if !sizes.scan_only {
        disk_probe(data_dir.path(), sizes.phase.min(Duration::from_secs(2)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wire-bench")
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(bench(data_dir.path(), sizes));
    runtime.shutdown_timeout(Duration::from_secs(10));
    let Some((live, reopened, bucket)) = outcome else { return };

    // The node is stopped: its engine directory is ours to open.
    let factory = RocksEngineFactory::new(data_dir.path().to_path_buf());
    let raw = best((0..sizes.scan_runs).map(|_| raw_pass(&factory, bucket)).collect(), live.rows);
    for (name, pass) in [
        ("KvScanner, wire, just loaded", live),
        ("KvScanner, wire, restarted", reopened),
        ("raw RocksDB iterator", raw),
    ] {
        println!(
            "  {name:<30} {:>10.0} rows/s {:>8.1} MB/s  ({:.3} s best of {})",
            pass.rows_per_s(),
            pass.mb_per_s(),
            pass.elapsed.as_secs_f64(),
            sizes.scan_runs
        );
    }
    println!(
        "  wire/raw: {:.1}% of raw MB/s on the restarted node (the raw pass reads the same files), \
         {:.1}% just after loading (part of the data still in the memtable); target >= 70%",
        100.0 * reopened.mb_per_s() / raw.mb_per_s(),
        100.0 * live.mb_per_s() / raw.mb_per_s()
    );
}
