//! A leadership change opens its engine and replays its log as blocking work, off the async
//! workers: with one worker thread and a bucket's engine open held (as a large RocksDB takes
//! minutes to open), another bucket's lookup is still answered. When the open ran inside the
//! leadership request's task, it held the only worker and nothing else was served until it
//! returned.

// A test may own a runtime and block a thread: that is what it checks.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{EngineError, KvEngine, KvEngineFactory};
use kvtablet_core::env::Env;
use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogRegistry};
use kvtablet_core::message::{Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::TableBucket;
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::node::LoopbackNetwork;
use kvtablet_prod::object_store_remote::ObjectStoreRemote;
use kvtablet_prod::os_entropy::OsEntropy;
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::tokio_executor::TokioExecutor;

const TABLE_ID: i64 = 1;
const SCHEMA_ID: i16 = 1;
/// How long the test waits for an answer before it calls the node stuck.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(5);
/// How long an open is held at most: longer than an answer is waited for.
const OPEN_HOLD_MAX: Duration = Duration::from_secs(20);

/// Opens engines, but holds the open of one directory until released.
struct HeldOpenFactory {
    inner: MemEngineFactory,
    held_dir_suffix: String,
    /// (open started, released)
    gate: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl HeldOpenFactory {
    fn wait_until_open_started(&self) -> bool {
        let gate = self.gate.lock().unwrap();
        let (gate, timeout) = self
            .changed
            .wait_timeout_while(gate, ANSWER_WAIT_MAX, |(started, _)| !*started)
            .unwrap();
        drop(gate);
        !timeout.timed_out()
    }

    fn release(&self) {
        self.gate.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl KvEngineFactory for HeldOpenFactory {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        if dir.ends_with(&self.held_dir_suffix) {
            let mut gate = self.gate.lock().unwrap();
            gate.0 = true;
            self.changed.notify_all();
            // Bounded: a node that never answers the lookup still ends the test.
            let (_gate, _) = self
                .changed
                .wait_timeout_while(gate, OPEN_HOLD_MAX, |(_, released)| !*released)
                .unwrap();
        }
        self.inner.open(dir)
    }

    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        self.inner.open_checkpoint(checkpoint_dir, dir)
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

#[test]
fn a_slow_engine_open_in_a_leadership_change_leaves_the_other_buckets_served() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // One worker: a leadership change that blocked it would stop everything else.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let disk = DiskFs::new(dir.path()).expect("disk");
    let bucket = |id: i32| TableBucket::new(TABLE_ID, id);
    let engines = Arc::new(HeldOpenFactory {
        inner: MemEngineFactory::new(Arc::new(disk.clone())),
        held_dir_suffix: "/kv-1".to_string(),
        gate: Mutex::new((false, false)),
        changed: Condvar::new(),
    });
    let env = Env {
        node_id: 1,
        clock: Arc::new(SystemClock::new()),
        executor: Arc::new(TokioExecutor::new(runtime.handle().clone())),
        remote: Arc::new(ObjectStoreRemote::local(dir.path().join("remote")).expect("remote")),
        rpc: Arc::new(LoopbackNetwork::new().endpoint(1)),
        fs: Arc::new(disk.clone()),
        entropy: Arc::new(OsEntropy::new().expect("entropy")),
        engines: engines.clone(),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let logs = LogRegistry::new(Arc::new(disk), "data".to_string(), LogConfig::DEFAULT);
    let config = TabletServerConfig {
        tables: vec![TableConfig {
            table_id: TABLE_ID,
            path: TablePath::new("test", "table"),
            bucket_count: 2,
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
    let server = TabletServer::start(env, config, logs);

    // Answers come back on a channel waited on from this thread, whatever the workers do.
    let request = |request: Request| {
        let server = server.clone();
        let (answer, answered) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = answer.send(server.handle_request(request).await);
        });
        answered
    };
    let answer =
        |answered: std::sync::mpsc::Receiver<Response>| answered.recv_timeout(ANSWER_WAIT_MAX);
    let led = answer(request(Request::BecomeLeader { bucket: bucket(0), leader_epoch: 1 }));
    assert_eq!(led.expect("answered"), Response::Ok);

    let opening = request(Request::BecomeLeader { bucket: bucket(1), leader_epoch: 1 });
    assert!(engines.wait_until_open_started(), "bucket 1's engine open started");
    let lookup = answer(request(Request::Lookup { bucket: bucket(0), keys: vec![b"k".to_vec()] }));
    let served_meanwhile = lookup.is_ok();
    engines.release();
    assert!(
        served_meanwhile,
        "bucket 0's lookup was not answered while bucket 1's engine was opening"
    );
    assert!(matches!(lookup.expect("answered"), Response::Lookup { .. }), "the lookup is answered");
    let opened = answer(opening);
    assert_eq!(opened.expect("answered"), Response::Ok);
    runtime.block_on(server.shutdown());
}
