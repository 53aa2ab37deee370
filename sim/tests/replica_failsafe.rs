//! A replica fails safe: a transient engine error is retried with backoff, a corrupt or fatal
//! one stops the replica (typed error, log, stats), and a panic never leaves a half-working
//! replica behind: a poisoned lock or a panicked flush task stops it, loudly.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{EngineError, EngineSnapshot, KvEngine, KvEngineFactory, WriteBatch};
use kvtablet_core::env::{Clock, Env};
use kvtablet_core::error::ErrorCode;
use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::log::{LogConfig, LogRegistry};
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::TableBucket;
use kvtablet_sim::executor::SimExecutor;
use kvtablet_sim::fs::SimFs;
use kvtablet_sim::network::{NetFaults, SimNetwork};
use kvtablet_sim::prng::{SimEntropy, Streams};
use kvtablet_sim::remote::{RemoteFaults, SimRemoteStorage};

const STEPS_MAX: u64 = 200_000;
const NODE: u32 = 1;
const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
const OTHER_BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 1 };

/// What the test engine does on its next calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Healthy,
    WriteFails(EngineError),
    WritePanics,
    GetPanics,
    IteratorPanics,
    /// Iterators are invalid and report an I/O error.
    IteratorFails,
}

struct Control {
    mode: Mutex<Mode>,
    /// The monotonic time of every write attempt.
    write_attempts_ms: Mutex<Vec<u64>>,
    clock: Arc<dyn Clock>,
}

impl Control {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().clone()
    }

    fn write_attempts_ms(&self) -> Vec<u64> {
        self.write_attempts_ms.lock().unwrap().clone()
    }
}

struct ControlledFactory {
    inner: MemEngineFactory,
    control: Arc<Control>,
}

impl KvEngineFactory for ControlledFactory {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        Ok(Arc::new(ControlledEngine {
            inner: self.inner.open(dir)?,
            control: self.control.clone(),
        }))
    }

    fn open_checkpoint(
        &self,
        checkpoint: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        self.inner.open_checkpoint(checkpoint, dir)
    }

    fn destroy(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.destroy(dir)
    }

    fn is_immutable_file(&self, file_name: &str) -> bool {
        self.inner.is_immutable_file(file_name)
    }

    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.verify_checkpoint(dir)
    }
}

struct ControlledEngine {
    inner: Arc<dyn KvEngine>,
    control: Arc<Control>,
}

impl KvEngine for ControlledEngine {
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        self.control.write_attempts_ms.lock().unwrap().push(self.control.clock.now_mono_ms());
        match self.control.mode() {
            Mode::WriteFails(error) => Err(error),
            Mode::WritePanics => panic!("injected: engine write panicked"),
            _ => self.inner.write(batch),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if self.control.mode() == Mode::GetPanics {
            panic!("injected: engine get panicked");
        }
        self.inner.get(key)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        self.inner.multi_get(keys)
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError> {
        let inner = self.inner.snapshot()?;
        Ok(Arc::new(ControlledSnapshot { inner, control: self.control.clone() }))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.checkpoint(dir)
    }
}

struct ControlledSnapshot {
    inner: Arc<dyn EngineSnapshot>,
    control: Arc<Control>,
}

impl EngineSnapshot for ControlledSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn iter(
        self: Arc<Self>,
        range: kvtablet_core::engine::KeyRange,
    ) -> Result<Box<dyn kvtablet_core::engine::EngineIterator>, EngineError> {
        let inner = Arc::clone(&self.inner).iter(range)?;
        Ok(Box::new(ControlledIterator { inner, control: self.control.clone() }))
    }
}

struct ControlledIterator {
    inner: Box<dyn kvtablet_core::engine::EngineIterator>,
    control: Arc<Control>,
}

impl kvtablet_core::engine::EngineIterator for ControlledIterator {
    fn seek_to_first(&mut self) {
        self.inner.seek_to_first()
    }

    fn seek(&mut self, key: &[u8]) {
        self.inner.seek(key)
    }

    fn valid(&self) -> bool {
        // As in RocksDB, an iterator with an error is not valid.
        self.control.mode() != Mode::IteratorFails && self.inner.valid()
    }

    fn key(&self) -> &[u8] {
        self.inner.key()
    }

    fn value(&self) -> &[u8] {
        self.inner.value()
    }

    fn next(&mut self) {
        if self.control.mode() == Mode::IteratorPanics {
            panic!("injected: iterator next panicked");
        }
        self.inner.next()
    }

    fn status(&self) -> Result<(), EngineError> {
        if self.control.mode() == Mode::IteratorFails {
            return Err(EngineError::Io("injected: iterator failed".into()));
        }
        self.inner.status()
    }
}

struct Node {
    exec: SimExecutor,
    server: Arc<TabletServer>,
    ledger: Ledger,
    control: Arc<Control>,
}

fn node() -> Node {
    let streams = Streams::new(7);
    let exec = SimExecutor::new(&streams);
    let fs = Arc::new(SimFs::new());
    let control = Arc::new(Control {
        mode: Mutex::new(Mode::Healthy),
        write_attempts_ms: Mutex::new(Vec::new()),
        clock: exec.clock_for(NODE),
    });
    let ledger = Ledger::new();
    let env = Env {
        node_id: NODE,
        clock: exec.clock_for(NODE),
        executor: exec.executor_for(NODE),
        remote: Arc::new(SimRemoteStorage::new(&exec, &streams, RemoteFaults::none())),
        rpc: SimNetwork::new(&exec, &streams, NetFaults::none()).endpoint(NODE),
        fs: fs.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(ControlledFactory {
            inner: MemEngineFactory::new(fs.clone()),
            control: control.clone(),
        }),
        ledger: ledger.clone(),
        mutants: Mutants::NONE,
    };
    let config = TabletServerConfig {
        tables: vec![TableConfig {
            table_id: 1,
            path: TablePath::new("test", "table"),
            bucket_count: 2,
            schema_ids: vec![1],
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
    let logs = LogRegistry::new(fs, "data".to_string(), LogConfig::DEFAULT);
    let server = TabletServer::start(env, config, logs);
    let node = Node { exec, server, ledger, control };
    for bucket in [BUCKET, OTHER_BUCKET] {
        assert_eq!(node.request(Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    }
    node
}

impl Node {
    /// Serves one request to its end. A panic in a task is swallowed, as a task runtime
    /// (tokio) swallows it, and the request then has no answer.
    fn try_request(&self, request: Request) -> Option<Response> {
        let pending = self.server.handle_request(request);
        let answer: Arc<Mutex<Option<Response>>> = Arc::new(Mutex::new(None));
        let slot = answer.clone();
        self.exec.spawn(
            NODE,
            "request",
            Box::pin(async move {
                let response = pending.await;
                *slot.lock().unwrap() = Some(response);
            }),
        );
        self.run_swallowing_panics(|| answer.lock().unwrap().is_some());
        let response = answer.lock().unwrap().take();
        response
    }

    fn request(&self, request: Request) -> Response {
        self.try_request(request).expect("the request is answered")
    }

    /// Steps until `done` or until nothing is left to run; a panicking task is dropped.
    fn run_swallowing_panics(&self, mut done: impl FnMut() -> bool) {
        for _ in 0..STEPS_MAX {
            if done() {
                return;
            }
            let step = std::panic::catch_unwind(AssertUnwindSafe(|| self.exec.step()));
            match step {
                Err(_) => continue,
                Ok(kvtablet_sim::executor::StepOutcome::Idle)
                | Ok(kvtablet_sim::executor::StepOutcome::Deadlock { .. }) => return,
                Ok(_) => {}
            }
        }
    }

    /// Lets virtual time pass (flushes, retries), swallowing task panics.
    fn run_for(&self, duration_ms: u64) {
        let until = self.exec.now_mono_ms() + duration_ms;
        let exec = self.exec.clone();
        let alarm = self.exec.sleep_until(until);
        self.exec.spawn(NODE, "alarm", Box::pin(alarm));
        self.run_swallowing_panics(|| exec.now_mono_ms() >= until);
    }

    fn put(&self, key: &str, value: &str) -> Response {
        self.request(put_request(key, value))
    }

    fn lookup(&self, key: &str) -> Response {
        self.request(Request::Lookup { bucket: BUCKET, keys: vec![key.as_bytes().to_vec()] })
    }

    /// Why the bucket's replica stopped, as the server's stats (metrics) report it; the other
    /// bucket's replica and the server go on.
    fn reported_failure(&self) -> Option<String> {
        let stats = self.server.stats();
        assert_eq!(stats.buckets[1].failure, None, "only the affected replica stops");
        assert_eq!(stats.failure, None, "the server goes on");
        assert_eq!(stats.failed_replicas(), usize::from(stats.buckets[0].failure.is_some()));
        stats.buckets[0].failure.clone()
    }

    fn flush_tasks(&self) -> usize {
        self.ledger
            .live()
            .iter()
            .filter(|r| r.kind == ResourceKind::Task && r.owner.starts_with("flush"))
            .filter(|r| r.owner.ends_with(&BUCKET.dir_name()))
            .count()
    }
}

fn put_request(key: &str, value: &str) -> Request {
    let mut stored = 1i16.to_le_bytes().to_vec();
    stored.extend_from_slice(value.as_bytes());
    Request::PutKv {
        bucket: BUCKET,
        writes: vec![KvWrite { key: key.as_bytes().to_vec(), value: Some(stored) }],
        writer: None,
        target_columns: None,
    }
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

fn value_of(response: &Response) -> Option<String> {
    match response {
        Response::Lookup { values, .. } => {
            values[0].as_deref().map(|v| String::from_utf8_lossy(&v[2..]).into_owned())
        }
        other => panic!("not a lookup answer: {other:?}"),
    }
}

#[test]
fn a_transient_engine_error_is_retried_with_exponential_backoff_and_the_flush_recovers() {
    let node = node();
    node.control.set(Mode::WriteFails(EngineError::Io("injected: EIO".into())));
    let started_ms = node.exec.now_mono_ms();
    assert!(matches!(node.put("k", "v1"), Response::PutKv { .. }));
    node.run_for(3_000);
    let gaps: Vec<u64> =
        node.control.write_attempts_ms().windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert_eq!(gaps, [100, 200, 400, 800, 1_000], "Fluss's backoff, 100 ms doubling to 1 s");
    assert!(node.control.write_attempts_ms()[0] >= started_ms);

    node.control.set(Mode::Healthy);
    node.run_for(1_000);
    assert_eq!(value_of(&node.lookup("k")).as_deref(), Some("v1"));
    assert_eq!(node.flush_tasks(), 1, "the flush task carries on");
    assert!(matches!(node.put("k", "v2"), Response::PutKv { .. }));
    assert_eq!(node.reported_failure(), None);
}

#[test]
fn a_corrupt_engine_error_stops_the_replica_and_is_reported() {
    let node = node();
    assert!(matches!(node.put("k", "v1"), Response::PutKv { .. }));
    node.run_for(100);
    node.control.set(Mode::WriteFails(EngineError::Corrupt("injected: bad block".into())));
    assert!(matches!(node.put("k", "v2"), Response::PutKv { .. }));
    node.run_for(3_000);
    assert_eq!(node.control.write_attempts_ms().len(), 2, "a corrupt engine is not written again");
    assert_eq!(node.flush_tasks(), 0, "the flush task ended");

    // Reads and writes are refused with a storage error, not served from a stuck engine.
    node.control.set(Mode::Healthy);
    assert_eq!(error_code(&node.put("k", "v3")), Some(ErrorCode::KvStorageException));
    assert_eq!(error_code(&node.lookup("k")), Some(ErrorCode::KvStorageException));
    let failure = node.reported_failure().expect("the stats report the stopped replica");
    assert!(failure.contains("injected: bad block"), "{failure}");
    assert_eq!(node.control.write_attempts_ms().len(), 2, "nothing was written since");
}

#[test]
fn a_panicked_flush_task_stops_the_replica() {
    let node = node();
    assert!(matches!(node.put("k", "v1"), Response::PutKv { .. }));
    node.run_for(100);
    node.control.set(Mode::WritePanics);
    assert!(matches!(node.put("k", "v2"), Response::PutKv { .. }));
    node.run_for(1_000);
    node.control.set(Mode::Healthy);
    assert_eq!(node.flush_tasks(), 0, "the flush task ended");

    // The panic left the tablet's state in doubt: nothing is served from it any more.
    assert_eq!(error_code(&node.put("k", "v3")), Some(ErrorCode::KvStorageException));
    assert_eq!(error_code(&node.lookup("k")), Some(ErrorCode::KvStorageException));
    let failure = node.reported_failure().expect("the stats report the stopped replica");
    assert!(failure.contains("engine write panicked"), "{failure}");
}

#[test]
fn a_panic_while_serving_a_request_stops_the_replica() {
    let node = node();
    assert!(matches!(node.put("k", "v1"), Response::PutKv { .. }));
    node.run_for(100);
    node.control.set(Mode::GetPanics);
    let answer = node.try_request(put_request("j", "w"));
    node.control.set(Mode::Healthy);
    if let Some(answer) = &answer {
        assert_eq!(error_code(answer), Some(ErrorCode::KvStorageException), "{answer:?}");
    }
    assert!(answer.is_some(), "the panicked request is answered");
    assert_eq!(error_code(&node.put("k", "v2")), Some(ErrorCode::KvStorageException));
    assert_eq!(error_code(&node.lookup("k")), Some(ErrorCode::KvStorageException));
    let failure = node.reported_failure().expect("the stats report the stopped replica");
    assert!(failure.contains("put_kv request panicked"), "{failure}");
    assert!(failure.contains("engine get panicked"), "{failure}");
}

#[test]
fn a_stopped_replica_refuses_a_new_term_and_is_torn_down_at_shutdown() {
    let node = node();
    node.control.set(Mode::WriteFails(EngineError::Corrupt("injected: bad block".into())));
    assert!(matches!(node.put("k", "v1"), Response::PutKv { .. }));
    node.run_for(1_000);
    node.control.set(Mode::Healthy);
    let again = node.request(Request::BecomeLeader { bucket: BUCKET, leader_epoch: 2 });
    assert_eq!(error_code(&again), Some(ErrorCode::KvStorageException), "{again:?}");
    assert_eq!(node.server.leader_epoch(BUCKET), None, "a stopped replica leads nothing");

    let shutdown = node.server.shutdown();
    node.exec.block_on(NODE, "shutdown", shutdown, STEPS_MAX).expect("shuts down");
    assert_eq!(node.ledger.live(), [], "no task, snapshot or iterator left");
}

/// Panics on the first batch it is handed, while the log's lock is held.
struct PanicsOnce {
    fired: std::sync::atomic::AtomicBool,
}

impl kvtablet_core::log::Replicator for PanicsOnce {
    fn replicate(&self, _synced: kvtablet_core::log::SyncedBatch<'_>) {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected: replication panicked");
        }
    }
}

#[test]
fn a_panic_under_the_logs_lock_stops_the_log() {
    use kvtablet_core::log::{AppendMeta, ChangeRecord, ChangeType, LogError, LogTablet};
    let fs: Arc<dyn kvtablet_core::env::LocalFs> = Arc::new(SimFs::new());
    let log = LogTablet::open(fs, "log".into(), BUCKET, LogConfig::DEFAULT, Mutants::NONE)
        .expect("log opens")
        .with_replicator(Arc::new(PanicsOnce { fired: false.into() }));
    log.fence(1).expect("fence");
    let change = || {
        let value = [1u8, 0, b'v'].to_vec();
        vec![ChangeRecord { change_type: ChangeType::Insert, key: b"k".to_vec(), value }]
    };
    let meta = AppendMeta { commit_timestamp_ms: 0, writer: None };
    let panicked =
        std::panic::catch_unwind(AssertUnwindSafe(|| log.append_as_leader(1, meta, change())));
    assert!(panicked.is_err(), "the replicator panicked");

    // What the panic interrupted is in doubt: the log takes no write and serves no read.
    let append = log.append_as_leader(1, meta, change());
    assert!(matches!(append, Err(LogError::Stopped { .. })), "{append:?}");
    let read = log.read(0, u64::MAX);
    assert!(matches!(read, Err(LogError::Stopped { .. })), "{read:?}");
    let stopped = log.stopped().expect("the log reports that it stopped");
    assert!(stopped.contains("panic"), "{stopped}");
}

fn scan_request(scanner_id: Option<Vec<u8>>, call_seq_id: i32) -> Request {
    use kvtablet_core::message::{BucketScanRequest, ScanKvRequest};
    let open = scanner_id.is_none().then_some(BucketScanRequest { bucket: BUCKET, limit: None });
    Request::ScanKv(ScanKvRequest {
        scanner_id,
        bucket_scan_req: open,
        call_seq_id: Some(call_seq_id),
        batch_size_bytes: Some(1),
        close_scanner: None,
    })
}

fn scan_answer(response: Response) -> kvtablet_core::message::ScanKvResponse {
    match response {
        Response::ScanKv(answer) => answer,
        other => panic!("not a scan answer: {other:?}"),
    }
}

/// Writes three rows, flushes them and opens a scan of one row per page; returns its id.
fn open_paged_scan(node: &Node) -> Vec<u8> {
    for key in ["a", "b", "c"] {
        assert!(matches!(node.put(key, "v"), Response::PutKv { .. }));
    }
    node.run_for(100);
    let first = scan_answer(node.request(scan_request(None, 0)));
    assert_eq!(first.error, None);
    assert_eq!(first.has_more_results, Some(true), "one row per page");
    first.scanner_id.expect("a session")
}

#[test]
fn a_panic_in_a_scan_continuation_stops_the_scanned_replica_only() {
    let node = node();
    let id = open_paged_scan(&node);

    node.control.set(Mode::IteratorPanics);
    let answer = node.try_request(scan_request(Some(id.clone()), 1));
    node.control.set(Mode::Healthy);
    let answer = scan_answer(answer.expect("the panicked continuation is answered"));
    assert_eq!(answer.error.map(|e| e.code), Some(ErrorCode::KvStorageException));

    // The session's cursor is in doubt: its replica serves nothing more, the other bucket
    // and the server go on.
    let again = scan_answer(node.request(scan_request(Some(id), 1)));
    assert!(again.records.is_none() && again.error.is_some(), "{again:?}");
    assert_eq!(error_code(&node.lookup("a")), Some(ErrorCode::KvStorageException));
    let other = node.request(Request::Lookup { bucket: OTHER_BUCKET, keys: vec![b"z".to_vec()] });
    assert!(matches!(other, Response::Lookup { .. }), "{other:?}");
    let failure = node.reported_failure().expect("the stats report the stopped replica");
    assert!(failure.contains("iterator next panicked"), "{failure}");
}

#[test]
fn a_repeated_continuation_whose_page_failed_learns_the_same_failure() {
    let node = node();
    let id = open_paged_scan(&node);

    node.control.set(Mode::IteratorFails);
    let failed = scan_answer(node.request(scan_request(Some(id.clone()), 1)));
    node.control.set(Mode::Healthy);
    let failure = failed.error.expect("the page failed");
    assert_eq!(failure.code, ErrorCode::KvStorageException);

    // The answer was lost on its way: the client repeats the request, and is told the same
    // failure (restart the scan), not that the session it had never existed.
    let repeated = scan_answer(node.request(scan_request(Some(id.clone()), 1)));
    assert_eq!(repeated.error, Some(failure));
    // The session is over: a request that does not repeat the failed one finds nothing.
    let next = scan_answer(node.request(scan_request(Some(id), 2)));
    assert_eq!(next.error.map(|e| e.code), Some(ErrorCode::UnknownScannerId));
    // The replica is healthy: an iterator error ends the scan, not the replica.
    assert_eq!(value_of(&node.lookup("a")).as_deref(), Some("v"));
    assert_eq!(node.reported_failure(), None);
}
