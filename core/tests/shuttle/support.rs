//! Test doubles for `Env` that run core on shuttle's threads, and the runner that explores
//! schedules with a replayable seed.
//!
//! Spawned tasks become shuttle futures (detached), blocking work a shuttle thread, a yield a
//! shuttle yield; the clock only moves when a test advances it (timers never fire on their own,
//! so the evictor and backoffs run only when a test calls them); ids come from a counter; files
//! live in memory (the log's `LocalFs`, and `MemEngine`'s checkpoint files).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::{
    Clock, Entropy, Executor, FsError, LocalFs, RemoteError, RemoteObject, RemoteStorage, Rpc,
    RpcError,
};
use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogRegistry};
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::Env;
use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::{Config, Runner};

pub const TABLE_ID: i64 = 7;
pub const SCHEMA_ID: i16 = 1;

/// Monotonic time that moves only when a test advances it (a shuttle atomic, so every read is
/// a scheduling point). Timers are never due unless already due.
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock { now_ms: AtomicU64::new(1_000) })
    }

    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_mono_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn now_wall_ms(&self) -> u64 {
        1_700_000_000_000 + self.now_mono_ms()
    }

    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        if self.now_mono_ms() >= deadline_mono_ms {
            futures::future::ready(()).boxed()
        } else {
            futures::future::pending().boxed()
        }
    }
}

/// Tasks on shuttle: a spawned future is a detached shuttle future, blocking work a shuttle
/// thread.
pub struct ShuttleExecutor;

impl Executor for ShuttleExecutor {
    fn spawn(&self, _name: String, task: BoxFuture<'static, ()>) {
        drop(shuttle::future::spawn(task));
    }

    fn spawn_blocking(&self, _name: String, work: Box<dyn FnOnce() + Send + 'static>) {
        drop(shuttle::thread::spawn(work));
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        shuttle::future::yield_now().boxed()
    }
}

/// Distinct ids from a counter (SplitMix64), the same in every execution of a schedule.
pub struct CountingEntropy {
    counter: AtomicU64,
}

impl CountingEntropy {
    pub fn new() -> Arc<CountingEntropy> {
        Arc::new(CountingEntropy { counter: AtomicU64::new(1) })
    }
}

impl Entropy for CountingEntropy {
    fn next_u64(&self) -> u64 {
        let mut z = self.counter.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Nobody to talk to: these tests run one server.
pub struct NoNetwork;

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

impl RemoteStorage for NoNetwork {
    fn put(&self, _path: &str, _bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        fatal()
    }
    fn get(&self, _path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        fatal()
    }
    fn get_range(
        &self,
        _path: &str,
        _range: std::ops::Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        fatal()
    }
    fn list(&self, _prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        fatal()
    }
    fn delete(&self, _path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        fatal()
    }
}

fn fatal<T: Send + 'static>() -> BoxFuture<'static, Result<T, RemoteError>> {
    futures::future::ready(Err(RemoteError::Fatal("no remote storage in this test".into()))).boxed()
}

/// Files in memory; every operation is atomic. Nothing crashes, but the synced length of each
/// file is tracked, so that a test can look at what a crash would keep
/// ([`MemFs::synced_copy`]), and syncs can be made to fail. A std mutex: no shuttle operation
/// happens while it is held.
#[derive(Default)]
pub struct MemFs {
    state: std::sync::Mutex<MemFsState>,
}

#[derive(Default)]
struct MemFsState {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    /// Per file, the length its last successful sync made durable.
    synced_len: BTreeMap<String, usize>,
    syncs: u64,
    fail_syncs: bool,
}

impl MemFs {
    fn with<T>(&self, f: impl FnOnce(&mut MemFsState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// From now on every sync fails (or succeeds again).
    pub fn fail_syncs(&self, fail: bool) {
        self.with(|s| s.fail_syncs = fail);
    }

    /// Syncs attempted so far.
    pub fn syncs(&self) -> u64 {
        self.with(|s| s.syncs)
    }

    /// What a crash now would leave: every file cut to its synced length (a file never synced
    /// is kept whole when it was written by `write`, as the epoch file, so only appends count).
    pub fn synced_copy(&self) -> MemFs {
        self.with(|s| {
            let files = s
                .files
                .iter()
                .map(|(path, bytes)| {
                    let keep = s.synced_len.get(path).copied().unwrap_or(bytes.len());
                    (path.clone(), bytes[..keep.min(bytes.len())].to_vec())
                })
                .collect();
            MemFs {
                state: std::sync::Mutex::new(MemFsState {
                    files,
                    dirs: s.dirs.clone(),
                    synced_len: BTreeMap::new(),
                    syncs: 0,
                    fail_syncs: false,
                }),
            }
        })
    }
}

fn not_found(path: &str) -> FsError {
    FsError::NotFound(path.to_string())
}

impl LocalFs for MemFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.with(|s| {
            let mut prefix = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                s.dirs.insert(prefix.clone());
            }
        });
        Ok(())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with(|s| {
            let names: BTreeSet<String> = s
                .files
                .keys()
                .chain(s.dirs.iter())
                .filter_map(|p| p.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
                .collect();
            if names.is_empty() && !s.dirs.contains(path.trim_end_matches('/')) {
                return Err(not_found(path));
            }
            Ok(names.into_iter().collect())
        })
    }

    fn exists(&self, path: &str) -> bool {
        self.with(|s| s.files.contains_key(path) || s.dirs.contains(path))
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.with(|s| {
            if !s.files.contains_key(path) {
                s.synced_len.insert(path.to_string(), 0);
            }
            s.files.entry(path.to_string()).or_default().extend_from_slice(bytes)
        });
        Ok(())
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.with(|s| {
            s.synced_len.remove(path);
            s.files.insert(path.to_string(), bytes.to_vec())
        });
        Ok(())
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.with(|s| {
            s.syncs += 1;
            let Some(len) = s.files.get(path).map(Vec::len) else { return Err(not_found(path)) };
            if s.fail_syncs {
                return Err(FsError::Io(format!("{path}: injected sync failure")));
            }
            s.synced_len.insert(path.to_string(), len);
            Ok(())
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.with(|s| s.files.get(path).cloned()).ok_or_else(|| not_found(path))
    }

    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        let file = self.read(path)?;
        let start = (offset_bytes as usize).min(file.len());
        let end = start.saturating_add(len_bytes as usize).min(file.len());
        Ok(file[start..end].to_vec())
    }

    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.with(|s| s.files.get(path).map(|f| f.len() as u64)).ok_or_else(|| not_found(path))
    }

    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        self.with(|s| match s.files.get_mut(path) {
            Some(file) => {
                file.truncate(len_bytes as usize);
                if let Some(synced) = s.synced_len.get_mut(path) {
                    *synced = (*synced).min(len_bytes as usize);
                }
                Ok(())
            }
            None => Err(not_found(path)),
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.with(|s| {
            let bytes = s.files.remove(from).ok_or_else(|| not_found(from))?;
            s.files.insert(to.to_string(), bytes);
            match s.synced_len.remove(from) {
                Some(len) => s.synced_len.insert(to.to_string(), len),
                None => s.synced_len.remove(to),
            };
            Ok(())
        })
    }

    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.with(|s| s.files.remove(path));
        Ok(())
    }

    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with(|s| {
            s.files.retain(|p, _| !p.starts_with(&prefix));
            s.dirs.retain(|p| p != path && !p.starts_with(&prefix));
        });
        Ok(())
    }

    fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// One server's world: the env's doubles kept by type, so a test can move time.
pub struct World {
    pub env: Env,
    pub clock: Arc<ManualClock>,
    pub logs: LogRegistry,
    pub fs: Arc<MemFs>,
}

impl World {
    pub fn new(mutants: Mutants) -> World {
        let clock = ManualClock::new();
        let fs: Arc<MemFs> = Arc::new(MemFs::default());
        let network = Arc::new(NoNetwork);
        let env = Env {
            node_id: 1,
            clock: clock.clone(),
            executor: Arc::new(ShuttleExecutor),
            remote: network.clone(),
            rpc: network,
            fs: fs.clone(),
            entropy: CountingEntropy::new(),
            engines: Arc::new(MemEngineFactory::new(fs.clone())),
            ledger: Ledger::new(),
            mutants,
        };
        let logs =
            LogRegistry::with_mutants(fs.clone(), "data".to_string(), LogConfig::DEFAULT, mutants);
        logs.dirs().add_table(TABLE_ID, &TablePath::new("shuttle", "table")).expect("name");
        World { env, clock, logs, fs }
    }

    /// A tablet server hosting one table of `bucket_count` buckets.
    pub fn server(&self, bucket_count: i32, scanner: ScannerConfig) -> Arc<TabletServer> {
        let config = TabletServerConfig {
            tables: vec![TableConfig {
                table_id: TABLE_ID,
                path: TablePath::new("shuttle", "table"),
                bucket_count,
                schema_ids: vec![SCHEMA_ID],
                partial_updates: None,
                log_ttl_ms: None,
                partitioned: false,
            }],
            kv: KvTabletConfig::DEFAULT,
            limits: RequestLimits::DEFAULT,
            scanner,
            snapshots: None,
            tiering: None,
        };
        TabletServer::start(self.env.clone(), config, self.logs.clone())
    }
}

/// A stored value: the schema id, then `payload`.
pub fn value(payload: &[u8]) -> Vec<u8> {
    let mut value = SCHEMA_ID.to_le_bytes().to_vec();
    value.extend_from_slice(payload);
    value
}

/// Runs `request` to its response on the calling shuttle thread.
pub fn call(server: &TabletServer, request: Request) -> Response {
    shuttle::future::block_on(server.handle_request(request))
}

/// How a harness test explores schedules: iterations per scheduler and seed, and the seeds.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub iterations: usize,
    pub seeds: u64,
    pub first_seed: u64,
    /// PCT's bug depth (preemptions it plans per execution).
    pub pct_depth: usize,
}

impl Budget {
    /// From `KVTABLET_SHUTTLE_ITERATIONS`, `KVTABLET_SHUTTLE_SEEDS` and
    /// `KVTABLET_SHUTTLE_SEED` (the first seed; a failure prints the seed to replay), with
    /// `iterations` and `seeds` as defaults.
    pub fn from_env(iterations: usize, seeds: u64) -> Budget {
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Budget {
            iterations: read("KVTABLET_SHUTTLE_ITERATIONS").map_or(iterations, |v| v as usize),
            seeds: read("KVTABLET_SHUTTLE_SEEDS").unwrap_or(seeds),
            first_seed: read("KVTABLET_SHUTTLE_SEED").unwrap_or(1),
            pct_depth: 3,
        }
    }
}

/// The two schedulers the harness runs, each from a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Random,
    Pct,
}

fn scheduler(kind: SchedulerKind, seed: u64, budget: &Budget) -> Box<dyn Scheduler + Send> {
    match kind {
        SchedulerKind::Random => Box::new(RandomScheduler::new_from_seed(seed, budget.iterations)),
        SchedulerKind::Pct => {
            Box::new(PctScheduler::new_from_seed(seed, budget.pct_depth, budget.iterations))
        }
    }
}

/// Runs `body` under every (scheduler, seed) of `budget`; panics (with the seed, and shuttle's
/// printed schedule to replay) at the first failing execution.
pub fn explore<F>(name: &str, budget: Budget, body: F)
where
    F: Fn() + Send + Sync + Clone + 'static,
{
    for seed in budget.first_seed..budget.first_seed + budget.seeds {
        for kind in [SchedulerKind::Random, SchedulerKind::Pct] {
            let runner = Runner::new(scheduler(kind, seed, &budget), Config::new());
            let outcome = catch_unwind(AssertUnwindSafe(|| runner.run(body.clone())));
            if let Err(panic) = outcome {
                eprintln!(
                    "{name}: failed under the {kind:?} scheduler; replay with \
                     KVTABLET_SHUTTLE_SEED={seed} KVTABLET_SHUTTLE_SEEDS=1"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// The first execution (1-based, counted across `kind`'s iterations for `seed`) at which
/// `body` fails, if any within `budget.iterations`.
#[cfg(feature = "mutants")]
pub fn first_failure<F>(kind: SchedulerKind, seed: u64, budget: Budget, body: F) -> Option<usize>
where
    F: Fn() + Send + Sync + 'static,
{
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let executions = executions.clone();
        move || {
            executions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            body();
        }
    };
    let mut config = Config::new();
    config.failure_persistence = shuttle::FailurePersistence::None;
    let runner = Runner::new(scheduler(kind, seed, &budget), config);
    let outcome = catch_unwind(AssertUnwindSafe(|| runner.run(counted)));
    outcome.is_err().then(|| executions.load(std::sync::atomic::Ordering::SeqCst))
}

/// A bucket's changelog read back whole, as the oracle the tests compare answers with.
pub struct LogModel {
    pub batches: Vec<kvtablet_core::log::LogBatch>,
}

impl LogModel {
    pub fn read(log: &kvtablet_core::log::LogTablet) -> LogModel {
        LogModel { batches: log.read(0, u64::MAX).expect("the log reads back") }
    }

    /// Offsets are contiguous, epochs never go backwards and no writer's batch is there twice.
    pub fn assert_consistent(&self) {
        let mut next_offset = 0;
        let mut epoch = 0;
        let mut writer_batches = BTreeSet::new();
        for batch in &self.batches {
            assert_eq!(batch.base_offset, next_offset, "a gap or overlap in the log");
            assert!(batch.leader_epoch >= epoch, "epoch went back at offset {}", batch.base_offset);
            if let Some(writer) = batch.writer {
                assert!(
                    writer_batches.insert(writer),
                    "{writer:?} appended twice (again at offset {})",
                    batch.base_offset
                );
            }
            next_offset = batch.end_offset();
            epoch = batch.leader_epoch;
        }
    }

    /// Every key's value after every change below `offset`.
    pub fn state_at(&self, offset: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        use kvtablet_core::log::ChangeType;
        let mut state = BTreeMap::new();
        for record in self.batches.iter().flat_map(|b| b.records.iter()) {
            if record.offset >= offset {
                break;
            }
            match record.change_type {
                ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly => {
                    state.insert(record.key.clone(), record.value.clone());
                }
                ChangeType::Delete => {
                    state.remove(&record.key);
                }
                ChangeType::UpdateBefore => {}
            }
        }
        state
    }

    pub fn batch_of(
        &self,
        writer: kvtablet_core::log::WriterBatch,
    ) -> Vec<&kvtablet_core::log::LogBatch> {
        self.batches.iter().filter(|b| b.writer == Some(writer)).collect()
    }
}
