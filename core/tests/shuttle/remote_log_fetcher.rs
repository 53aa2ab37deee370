//! Recovery's `RemoteLogFetcher` under preemption: its download tasks, their blocking writes
//! and the consumer on shuttle's threads, through a whole iteration, a close mid-iteration
//! and a failure. Checked at every instant (a monitor samples while the consumer runs, and
//! the high-water marks cover every change): at most `prefetch_num` segments held in the
//! window and downloaded unconsumed, at most `download_threads` downloads, at most one file
//! more than the window in the temporary directory. Checked at the end: segments consumed in
//! order, each once, with the uploaded bytes; after a failure the window is drained; after
//! close the directory is gone and the ledger holds no slot, file or task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::{Clock, LocalFs, RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::recovery::{FetchError, FetcherConfig, RemoteLogFetcher};
use kvtablet_core::snapshot::completed_snapshot::content_sha256;
use kvtablet_core::tiering::RemoteLogSegment;
use kvtablet_core::{Env, TableBucket};

use crate::support::{explore, Budget, CountingEntropy, MemFs, NoNetwork, ShuttleExecutor};

const SEGMENTS: u64 = 5;
const CONFIG: FetcherConfig =
    FetcherConfig { prefetch_num: 2, download_threads: 2, ..FetcherConfig::DEFAULT };
const DIR: &str = "log/t7-b0/tmp/remote-log-recovery-1";
const FETCHER_KINDS: [ResourceKind; 3] =
    [ResourceKind::PrefetchSlot, ResourceKind::TempFile, ResourceKind::Task];

/// Time that jumps to a sleeper's deadline (after a yield), so that backoffs end at once.
struct JumpingClock {
    now_ms: Arc<AtomicU64>,
}

impl Clock for JumpingClock {
    fn now_mono_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn now_wall_ms(&self) -> u64 {
        1_700_000_000_000 + self.now_mono_ms()
    }

    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        let now_ms = self.now_ms.clone();
        async move {
            now_ms.fetch_max(deadline_mono_ms, Ordering::SeqCst);
            shuttle::future::yield_now().await;
        }
        .boxed()
    }
}

/// Objects in memory; a get yields twice (a download takes a few steps, so downloads overlap
/// and complete in any order), and may fail transiently or find nothing.
struct YieldingRemote {
    objects: BTreeMap<String, Vec<u8>>,
    /// Gets of each path still to fail transiently. A std mutex: no shuttle operation happens
    /// while it is held.
    failures: std::sync::Mutex<BTreeMap<String, u32>>,
}

impl RemoteStorage for YieldingRemote {
    fn put(&self, _path: &str, _bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        futures::future::ready(Err(RemoteError::Fatal("read only".into()))).boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let fail = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            match failures.get_mut(path) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            }
        };
        let found = self.objects.get(path).cloned();
        let path = path.to_string();
        async move {
            shuttle::future::yield_now().await;
            shuttle::future::yield_now().await;
            if fail {
                return Err(RemoteError::Transient(format!("{path}: injected")));
            }
            found.ok_or(RemoteError::NotFound(path))
        }
        .boxed()
    }

    fn get_range(
        &self,
        path: &str,
        _range: std::ops::Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.get(path)
    }

    fn list(&self, _prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    fn delete(&self, _path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        futures::future::ready(Ok(())).boxed()
    }
}

/// One fetcher's world: `SEGMENTS` segments uploaded (each its own bytes), segment 1 failing
/// its first two gets, and `missing` not uploaded.
struct FetchWorld {
    env: Env,
    fs: Arc<MemFs>,
    segments: Vec<RemoteLogSegment>,
    uploaded: Vec<Vec<u8>>,
}

impl FetchWorld {
    fn new(mutants: Mutants, missing: Option<usize>) -> FetchWorld {
        let bucket = TableBucket::new(7, 0);
        let mut objects = BTreeMap::new();
        let mut segments = Vec::new();
        let mut uploaded = Vec::new();
        for i in 0..SEGMENTS {
            let bytes = format!("segment {i} ").repeat(i as usize + 1).into_bytes();
            let segment = RemoteLogSegment {
                bucket,
                leader_epoch: 1,
                start_offset: 10 * i,
                end_offset: 10 * i + 10,
                size_bytes: bytes.len() as u64,
                max_timestamp_ms: i,
                sha256: content_sha256(&bytes),
            };
            if missing != Some(i as usize) {
                objects.insert(segment.path(), bytes.clone());
            }
            segments.push(segment);
            uploaded.push(bytes);
        }
        let failures = BTreeMap::from([(segments[1].path(), 2)]);
        let remote =
            Arc::new(YieldingRemote { objects, failures: std::sync::Mutex::new(failures) });
        let fs = Arc::new(MemFs::default());
        let env = Env {
            node_id: 1,
            clock: Arc::new(JumpingClock { now_ms: Arc::new(AtomicU64::new(1_000)) }),
            executor: Arc::new(ShuttleExecutor),
            remote,
            rpc: Arc::new(NoNetwork),
            fs: fs.clone(),
            entropy: CountingEntropy::new(),
            engines: Arc::new(MemEngineFactory::new(fs.clone())),
            ledger: Ledger::new(),
            mutants,
        };
        FetchWorld { env, fs, segments, uploaded }
    }

    fn fetcher(&self) -> RemoteLogFetcher {
        RemoteLogFetcher::new(&self.env, CONFIG, DIR.to_string(), self.segments.clone())
            .expect("a valid fetcher")
    }

    fn files(&self) -> Vec<String> {
        self.fs.list_dir(DIR).unwrap_or_default()
    }

    /// After close: no directory, no file under it, and nothing of the fetcher in the ledger.
    fn assert_nothing_left(&self, when: &str) {
        assert!(!self.fs.exists(DIR), "{when}: the temporary directory is still there");
        assert_eq!(self.files(), Vec::<String>::new(), "{when}: files left");
        assert_eq!(self.env.ledger.live_of(&FETCHER_KINDS), vec![], "{when}: ledger");
    }
}

/// Samples the fetcher's gauges and directory until `done`, checking the bounds each time.
fn monitor(
    world: &FetchWorld,
    probe: kvtablet_core::recovery::FetcherProbe,
    done: Arc<AtomicBool>,
) -> shuttle::thread::JoinHandle<()> {
    let fs = world.fs.clone();
    shuttle::thread::spawn(move || {
        for _ in 0..50 {
            if done.load(Ordering::SeqCst) {
                return;
            }
            let gauges = probe.gauges();
            assert!(gauges.window <= CONFIG.prefetch_num, "window: {gauges:?}");
            assert!(gauges.ready <= CONFIG.prefetch_num, "downloaded unconsumed: {gauges:?}");
            assert!(gauges.in_flight <= CONFIG.download_threads, "in flight: {gauges:?}");
            let files = fs.list_dir(DIR).map_or(0, |names| names.len());
            assert!(files <= CONFIG.prefetch_num + 1, "{files} files in the directory");
            shuttle::thread::yield_now();
        }
    })
}

/// Reads `count` segments in order and checks each against what was uploaded.
fn consume(world: &FetchWorld, fetcher: &mut RemoteLogFetcher, count: usize) {
    for i in 0..count {
        let segment = shuttle::future::block_on(fetcher.next())
            .unwrap_or_else(|error| panic!("segment {i}: {error}"))
            .unwrap_or_else(|| panic!("segment {i} missing"));
        assert_eq!(segment.segment().segment_id(), world.segments[i].segment_id(), "order");
        assert_eq!(segment.read().expect("the file reads"), world.uploaded[i], "segment {i}");
        drop(segment);
        // A slow consumer: the downloads run ahead while it works.
        shuttle::thread::yield_now();
        shuttle::thread::yield_now();
    }
}

/// Every segment, in order, with a monitor; then close.
fn whole_iteration(mutants: Mutants) {
    let world = FetchWorld::new(mutants, None);
    let mut fetcher = world.fetcher();
    let done = Arc::new(AtomicBool::new(false));
    let monitor = monitor(&world, fetcher.probe(), done.clone());
    consume(&world, &mut fetcher, SEGMENTS as usize);
    let end = shuttle::future::block_on(fetcher.next()).expect("the end");
    assert!(end.is_none(), "each segment exactly once");
    done.store(true, Ordering::SeqCst);
    monitor.join().expect("the monitor's bounds held");
    let gauges = fetcher.gauges();
    assert!(gauges.window_max <= CONFIG.prefetch_num, "{gauges:?}");
    assert!(gauges.ready_max <= CONFIG.prefetch_num, "{gauges:?}");
    assert!(gauges.in_flight_max <= CONFIG.download_threads, "{gauges:?}");
    assert_eq!(gauges.bytes_downloaded, gauges.bytes_total, "{gauges:?}");
    shuttle::future::block_on(fetcher.close()).expect("close");
    world.assert_nothing_left("after a whole iteration");
}

/// Close after the first segment, with downloads in flight; then iterate again.
fn close_mid_iteration(mutants: Mutants) {
    let world = FetchWorld::new(mutants, None);
    let mut fetcher = world.fetcher();
    consume(&world, &mut fetcher, 1);
    shuttle::future::block_on(fetcher.close()).expect("close");
    world.assert_nothing_left("after a close mid-iteration");
    match shuttle::future::block_on(fetcher.next()) {
        Err(FetchError::Closed) => {}
        Err(other) => panic!("a closed fetcher answered {other}"),
        Ok(segment) => panic!("a closed fetcher handed out {segment:?}"),
    }
    world.assert_nothing_left("after a closed fetcher was asked again");
}

/// Segment 2 is missing: the error comes after the window is drained; then close.
fn failure(mutants: Mutants) {
    let world = FetchWorld::new(mutants, Some(2));
    let mut fetcher = world.fetcher();
    consume(&world, &mut fetcher, 2);
    let error = shuttle::future::block_on(fetcher.next()).expect_err("segment 2 is missing");
    assert!(matches!(error, FetchError::Download { source: RemoteError::NotFound(_), .. }));
    assert!(!error.is_retriable(), "{error}");
    let gauges = fetcher.gauges();
    assert_eq!((gauges.window, gauges.in_flight, gauges.ready), (0, 0, 0), "{gauges:?}");
    let slots_and_files = [ResourceKind::PrefetchSlot, ResourceKind::TempFile];
    assert_eq!(world.env.ledger.live_of(&slots_and_files), vec![], "drained");
    assert_eq!(world.files(), Vec::<String>::new(), "drained");
    shuttle::future::block_on(fetcher.close()).expect("close");
    world.assert_nothing_left("after a failure");
}

/// The three lifecycles, one after the other.
pub fn fetcher_lifecycle(mutants: Mutants) {
    whole_iteration(mutants);
    close_mid_iteration(mutants);
    failure(mutants);
}

#[test]
fn the_prefetch_window_stays_bounded_ordered_and_leaves_nothing_under_preemption() {
    explore("remote-log fetcher", Budget::from_env(1_000, 4), || fetcher_lifecycle(Mutants::NONE));
}
