//! Group commit on real threads and a real disk: puts to one bucket written while a changelog
//! sync runs share the next sync. The first sync after the warm-up is held until every put has
//! had the chance to write its batch (or a deadline passes), so the count is deterministic: one
//! sync for the first put, one for all the others. With one sync per put held under the put
//! serialisation, the others could not write meanwhile and each would take its own sync.

// A test may read wall time, own a runtime and block a thread: that is what it measures.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::{Env, FsError, LocalFs};
use kvtablet_core::kv::{EngineWriteLock, KvTablet, KvTabletConfig};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogTablet};
use kvtablet_core::message::KvWrite;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::TableBucket;
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::node::LoopbackNetwork;
use kvtablet_prod::object_store_remote::ObjectStoreRemote;
use kvtablet_prod::os_entropy::OsEntropy;
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::tokio_executor::TokioExecutor;

const PUTS: usize = 8;
/// How long the held sync waits for the other puts' writes at most.
const HOLD_MAX: Duration = Duration::from_secs(5);

/// `DiskFs` that counts the changelog's syncs and, once armed, holds the first one until the
/// segment file has grown by `PUTS` frames' worth of bytes (or `HOLD_MAX` passed).
struct HeldSyncFs {
    inner: DiskFs,
    syncs: AtomicU64,
    armed: AtomicBool,
    /// The segment length to wait for while armed.
    hold_until_len: AtomicU64,
}

impl LocalFs for HeldSyncFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.append(path, bytes)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.write(path, bytes)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        if path.ends_with(".log") {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.armed.swap(false, Ordering::SeqCst) {
                let deadline = Instant::now() + HOLD_MAX;
                let target = self.hold_until_len.load(Ordering::SeqCst);
                while self.inner.file_len(path)? < target && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.inner.sync(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        self.inner.read_range(path, offset_bytes, len_bytes)
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        self.inner.truncate(path, len_bytes)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_dir_all(path)
    }
    fn host_path(&self, path: &str) -> Option<std::path::PathBuf> {
        self.inner.host_path(path)
    }
}

fn upsert(key: &str) -> Vec<KvWrite> {
    let mut stored = 1i16.to_le_bytes().to_vec();
    stored.extend_from_slice(b"value");
    vec![KvWrite { key: key.as_bytes().to_vec(), value: Some(stored) }]
}

#[test]
fn puts_written_while_a_sync_runs_share_the_next_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let disk = DiskFs::new(dir.path()).expect("disk");
    let fs = Arc::new(HeldSyncFs {
        inner: disk.clone(),
        syncs: AtomicU64::new(0),
        armed: AtomicBool::new(false),
        hold_until_len: AtomicU64::new(0),
    });
    let env = Env {
        node_id: 1,
        clock: Arc::new(SystemClock::new()),
        executor: Arc::new(TokioExecutor::new(runtime.handle().clone())),
        remote: Arc::new(ObjectStoreRemote::local(dir.path().join("remote")).expect("remote")),
        rpc: Arc::new(LoopbackNetwork::new().endpoint(1)),
        fs: Arc::new(disk.clone()),
        entropy: Arc::new(OsEntropy::new().expect("entropy")),
        engines: Arc::new(MemEngineFactory::new(Arc::new(disk))),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let log_fs: Arc<dyn LocalFs> = fs.clone();
    let log = Arc::new(
        LogTablet::open(
            log_fs,
            "log".to_string(),
            TableBucket::new(1, 0),
            LogConfig::DEFAULT,
            Mutants::NONE,
        )
        .expect("log opens"),
    );
    log.fence(1).expect("fence");
    let engine = env.engines.open("kv").expect("engine");
    let kv = Arc::new(
        KvTablet::open(env, KvTabletConfig::DEFAULT, log, engine, EngineWriteLock::default(), 1)
            .expect("kv"),
    );

    // The warm-up creates the segment; every put after it has a frame of the same size.
    let segment = format!("log/{:020}.log", 0);
    runtime.block_on(kv.put(upsert("k00"), None, None)).expect("warm-up put");
    let frame_len = fs.file_len(&segment).expect("segment");
    fs.hold_until_len.store(frame_len * (PUTS as u64 + 1), Ordering::SeqCst);
    fs.syncs.store(0, Ordering::SeqCst);
    fs.armed.store(true, Ordering::SeqCst);

    let started = Instant::now();
    let puts: Vec<_> = (1..=PUTS)
        .map(|index| runtime.spawn(kv.put(upsert(&format!("k{index:02}")), None, None)))
        .collect();
    let mut ends: Vec<u64> = runtime.block_on(async {
        let mut ends = Vec::new();
        for put in puts {
            ends.push(put.await.expect("the put ran").expect("the put succeeds").end_offset);
        }
        ends
    });
    ends.sort_unstable();
    assert_eq!(ends, (2..=PUTS as u64 + 1).collect::<Vec<_>>());
    let syncs = fs.syncs.load(Ordering::SeqCst);
    assert!(
        syncs <= 2,
        "{PUTS} concurrent puts took {syncs} syncs in {:?}: the puts written while the first \
         sync ran should have shared the second",
        started.elapsed()
    );
    assert_eq!(kv.log().high_watermark(), PUTS as u64 + 1);
    kv.close();
}
