//! Recovery's remote-log fetcher on the simulator, before a replica's rebuild uses it: a
//! `RemoteLogFetcher` over the simulated remote store (most operations within 5 ms, a tail of
//! up to 600 ms, transient failures, not-found) on the seeded executor, with a consumer that
//! is slow or fast, stops early, closes or drops the fetcher unclosed, and asks again after a
//! close. What one seed checks:
//! - at every scheduling step, the fetcher's gauges and its ledger holdings within its
//!   configuration (`fetcher_bounds.rs`, the check the world runs at every step of a run);
//! - each segment is handed over in list order with the bytes that were uploaded;
//! - a failure is typed, and returned again by the next call; a transient failure ends a fetch
//!   only after the segment's whole retry (as many remote reads of it as attempts allowed);
//! - the moment `close` returns, the fetcher holds nothing in the ledger (slot, file, download
//!   task or write) and no file is left under its temporary directory, which is gone; a closed
//!   fetcher answers `Closed`;
//! - a fetcher dropped unclosed leaves nothing once the executor has run what was in flight,
//!   and every run ends with no task and an empty ledger.
//!
//! With the `mutants` feature, `fetcher_mutants_are_caught_by_the_simulated_fetcher` reports
//! which of the fetcher's `OUTSIDE_SIMULATION` mutants these checks catch, and within how many
//! seeds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::{Env, LocalFs, RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::recovery::{FetchError, FetcherConfig, RemoteLogFetcher};
use kvtablet_core::tiering::RemoteLogSegment;
use kvtablet_core::TableBucket;
use kvtablet_sim::executor::SimExecutor;
use kvtablet_sim::fetcher_bounds;
use kvtablet_sim::fs::SimFs;
use kvtablet_sim::network::{NetFaults, SimNetwork};
use kvtablet_sim::prng::{Prng, Ratio, SimEntropy, Streams};
use kvtablet_sim::remote::{RemoteFaults, SimRemoteStorage};

const NODE: kvtablet_core::message::NodeId = 1;
const TEMP_DIR: &str = "log/t1-b0/tmp/remote-log-recovery-sim";
const STEPS_MAX: u64 = 2_000_000;

/// The simulated store, counting the gets of each path (the retry oracle's evidence).
struct CountingRemote {
    inner: SimRemoteStorage,
    gets: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl RemoteStorage for CountingRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.put(path, bytes)
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        *lock(&self.gets).entry(path.to_string()).or_insert(0) += 1;
        self.inner.get(path)
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        *lock(&self.gets).entry(path.to_string()).or_insert(0) += 1;
        self.inner.get_range(path, range)
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        self.inner.list(prefix)
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.delete(path)
    }
}

/// How the consumer of one seed behaves.
#[derive(Debug, Clone, Copy)]
struct Consumer {
    /// Up to this long between two segments.
    pause_ms_max: u64,
    /// Stops after this many segments (`None`: reads them all).
    stop_after: Option<usize>,
    /// Drops the fetcher without closing it when it stops early.
    drops_unclosed: bool,
}

/// What one seed's fetcher run did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    violations: Vec<String>,
    steps: u64,
    virtual_ms: u64,
    /// Remote reads of each segment.
    gets: BTreeMap<String, u32>,
    /// Segments handed over, and how the iteration ended.
    taken: usize,
    ending: Ending,
}

/// How a consumer's iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Ending {
    #[default]
    Unfinished,
    AllTaken,
    StoppedEarly,
    Failed,
}

/// One seed's fetcher run.
fn run_seed(seed: u64, mutants: Mutants) -> Outcome {
    let streams = Streams::new(seed);
    let mut plan = streams.stream("fetcher-plan");
    let exec = SimExecutor::new(&streams);
    // Slow writes keep a download's blocking write in flight when the consumer stops.
    exec.set_slow_disk(kvtablet_sim::executor::SlowDisk { one_in: 2, delay_ms_max: 80 });
    let remote = SimRemoteStorage::new(
        &exec,
        &streams,
        RemoteFaults {
            latency_ms_max: 5,
            latency_tail: Ratio::new(1, 10),
            latency_tail_ms_max: 600,
            transient_failure: Ratio::new(plan.range_inclusive(0, 3), 10),
            not_found: if plan.chance(Ratio::new(1, 3)) { Ratio::new(1, 60) } else { Ratio::NEVER },
            ..RemoteFaults::default()
        },
    );
    let gets = Arc::new(Mutex::new(BTreeMap::new()));
    let disk = Arc::new(SimFs::new());
    let ledger = Ledger::new();
    let env = Env {
        node_id: NODE,
        clock: exec.clock_for(NODE),
        executor: exec.executor_for(NODE),
        remote: Arc::new(CountingRemote { inner: remote.clone(), gets: gets.clone() }),
        rpc: SimNetwork::new(&exec, &streams, NetFaults::none()).endpoint(NODE),
        fs: disk.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(MemEngineFactory::new(disk.clone())),
        ledger: ledger.clone(),
        mutants,
    };
    let (segments, uploaded) = upload_segments(&remote, &mut plan);
    let prefetch_num = plan.range_inclusive(1, 6) as usize;
    let config = FetcherConfig {
        prefetch_num,
        download_threads: plan.range_inclusive(1, prefetch_num as u64) as usize,
        ..FetcherConfig::DEFAULT
    };
    let consumer = Consumer {
        pause_ms_max: [0, 20, 300][plan.below(3) as usize],
        stop_after: plan
            .chance(Ratio::new(1, 3))
            .then(|| plan.below(segments.len() as u64 + 1) as usize),
        drops_unclosed: plan.chance(Ratio::new(1, 2)),
    };
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let ended: Arc<Mutex<(usize, Ending)>> = Arc::default();
    let fetcher = RemoteLogFetcher::new(&env, config, TEMP_DIR.to_string(), segments.clone())
        .expect("a valid fetcher");
    let probe = fetcher.probe();
    let watched = (ledger.clone(), violations.clone());
    exec.set_step_observer(Arc::new(move || {
        let (ledger, violations) = &watched;
        let mut problems = fetcher_bounds::gauge_violations(&probe.gauges(), config);
        problems.extend(fetcher_bounds::violations(ledger, config));
        if !problems.is_empty() {
            let mut seen = lock(violations);
            if seen.len() < 8 {
                seen.extend(problems);
            }
        }
    }));
    let context = Context {
        consumer,
        config,
        segments,
        uploaded,
        gets: gets.clone(),
        ledger: ledger.clone(),
        disk: disk.clone(),
        violations: violations.clone(),
        pause: streams.stream("fetcher-consumer"),
        clock: env.clock.clone(),
        ended: ended.clone(),
    };
    exec.spawn(NODE, "recovery consumer", consume(fetcher, context).boxed());
    if let Err(error) = exec.run_to_completion(STEPS_MAX) {
        lock(&violations).push(format!("the fetcher's tasks did not end: {error}"));
    }
    let mut violations = lock(&violations).clone();
    let left = ledger.live();
    if !left.is_empty() {
        violations.push(format!("leak ledger not empty at the end: {left:?}"));
    }
    let files = files_under(&disk, TEMP_DIR);
    if !files.is_empty() {
        violations.push(format!("recovery temp files at the end: {files:?}"));
    }
    let gets = lock(&gets).clone();
    let (taken, ending) = *lock(&ended);
    Outcome { violations, steps: exec.steps(), virtual_ms: exec.now_mono_ms(), gets, taken, ending }
}

struct Context {
    consumer: Consumer,
    config: FetcherConfig,
    segments: Vec<RemoteLogSegment>,
    uploaded: Vec<Vec<u8>>,
    gets: Arc<Mutex<BTreeMap<String, u32>>>,
    ledger: Ledger,
    disk: Arc<SimFs>,
    violations: Arc<Mutex<Vec<String>>>,
    pause: Prng,
    clock: Arc<dyn kvtablet_core::env::Clock>,
    ended: Arc<Mutex<(usize, Ending)>>,
}

impl Context {
    fn violation(&self, text: String) {
        lock(&self.violations).push(text);
    }
}

/// The consumer: takes segments in order and checks each, then closes (or drops) the fetcher
/// and checks what is left at that moment.
async fn consume(mut fetcher: RemoteLogFetcher, mut cx: Context) {
    let wanted = cx.consumer.stop_after.unwrap_or(cx.segments.len());
    let mut taken = 0;
    let mut failure = None;
    while taken < wanted {
        match fetcher.next().await {
            Ok(Some(segment)) => {
                let expected = &cx.segments[taken];
                if segment.segment().segment_id() != expected.segment_id() {
                    cx.violation(format!(
                        "segment {taken} handed over as {}, wanted {}",
                        segment.segment().segment_id(),
                        expected.segment_id()
                    ));
                }
                match segment.read() {
                    Ok(bytes) if bytes == cx.uploaded[taken] => {}
                    Ok(_) => cx.violation(format!(
                        "segment {} handed over with other bytes than were uploaded",
                        expected.segment_id()
                    )),
                    Err(error) => cx.violation(format!(
                        "segment {} handed over unreadable: {error}",
                        expected.segment_id()
                    )),
                }
                taken += 1;
                let pause_ms = cx.pause.range_inclusive(0, cx.consumer.pause_ms_max);
                drop(segment);
                cx.clock.sleep(pause_ms).await;
            }
            Ok(None) => {
                if taken != cx.segments.len() {
                    cx.violation(format!(
                        "the fetcher ended after {taken} of {} segments",
                        cx.segments.len()
                    ));
                }
                break;
            }
            Err(error) => {
                check_failure(&cx, taken, &error);
                failure = Some(error);
                break;
            }
        }
    }
    let ending = match (&failure, taken == cx.segments.len()) {
        (Some(_), _) => Ending::Failed,
        (None, true) => Ending::AllTaken,
        (None, false) => Ending::StoppedEarly,
    };
    *lock(&cx.ended) = (taken, ending);
    if let Some(error) = &failure {
        match fetcher.next().await {
            Err(again) if again == *error => {}
            other => cx.violation(format!(
                "after failing with {error}, the fetcher answered {:?}",
                other.map(|segment| segment.map(|s| s.segment().segment_id()))
            )),
        }
    }
    if cx.consumer.stop_after.is_some() && cx.consumer.drops_unclosed {
        // Dropped mid-iteration: its downloads are aborted; what is still writing deletes
        // its own file (checked once the executor has run everything).
        drop(fetcher);
        return;
    }
    if let Err(error) = fetcher.close().await {
        cx.violation(format!("close failed: {error}"));
    }
    let held: Vec<String> = fetcher_bounds::holdings(&cx.ledger)
        .into_iter()
        .map(|(owner, held)| format!("{owner}: {held:?}"))
        .collect();
    let tasks: Vec<String> = cx
        .ledger
        .live()
        .into_iter()
        .filter(|r| r.owner.starts_with(fetcher_bounds::FETCHER_OWNER_PREFIX))
        .map(|r| format!("{:?} {}", r.kind, r.owner))
        .collect();
    if !held.is_empty() || !tasks.is_empty() {
        cx.violation(format!("the fetcher still holds after close returned: {held:?} {tasks:?}"));
    }
    let files = files_under(&cx.disk, TEMP_DIR);
    if !files.is_empty() || cx.disk.exists(TEMP_DIR) {
        cx.violation(format!("the temporary directory is not gone after close: {files:?}"));
    }
    match fetcher.next().await {
        Err(FetchError::Closed) => {}
        other => cx.violation(format!(
            "a closed fetcher answered {:?}",
            other.map(|segment| segment.map(|s| s.segment().segment_id()))
        )),
    }
}

/// A failure is typed; one that retrying could help ends a fetch only after the segment's
/// whole retry.
fn check_failure(cx: &Context, taken: usize, error: &FetchError) {
    let segment = &cx.segments[taken];
    match error {
        FetchError::Download { source, .. } if source.is_retriable() => {
            let gets = lock(&cx.gets).get(&segment.path()).copied().unwrap_or(0);
            let attempts_max = cx.config.retry.attempts_max;
            if gets < attempts_max {
                cx.violation(format!(
                    "segment {} failed with a retriable error ({source}) after {gets} remote reads; its retry allows {attempts_max}",
                    segment.segment_id()
                ));
            }
        }
        FetchError::Download { .. } => {}
        other => cx.violation(format!(
            "segment {}: the fetch failed with {other}, which no injected fault explains",
            segment.segment_id()
        )),
    }
}

/// Segments of random sizes, uploaded (bypassing faults, as the tierer's committed uploads).
fn upload_segments(
    remote: &SimRemoteStorage,
    plan: &mut Prng,
) -> (Vec<RemoteLogSegment>, Vec<Vec<u8>>) {
    let count = plan.range_inclusive(1, 24);
    let mut segments = Vec::new();
    let mut uploaded = Vec::new();
    let bucket = TableBucket::new(1, 0);
    let mut start_offset = 0;
    for _ in 0..count {
        let size = plan.range_inclusive(1, 2_000) as usize;
        let bytes: Vec<u8> = (0..size).map(|_| plan.below(256) as u8).collect();
        let records = plan.range_inclusive(1, 10);
        let segment = RemoteLogSegment {
            bucket,
            leader_epoch: 1,
            start_offset,
            end_offset: start_offset + records,
            size_bytes: bytes.len() as u64,
            max_timestamp_ms: 1_000 + start_offset,
            sha256: kvtablet_core::snapshot::completed_snapshot::content_sha256(&bytes),
        };
        start_offset += records;
        remote.put_now(&segment.path(), bytes.clone());
        segments.push(segment);
        uploaded.push(bytes);
    }
    (segments, uploaded)
}

fn files_under(disk: &SimFs, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    disk.file_paths().into_iter().filter(|path| path.starts_with(&prefix)).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_fetcher_keeps_its_bounds_order_and_cleanup_under_simulated_remote_faults() {
    let mut failed = Vec::new();
    let mut endings: BTreeMap<String, u32> = BTreeMap::new();
    let mut retried_seeds = 0;
    for seed in 1..=60 {
        let outcome = run_seed(seed, Mutants::NONE);
        if !outcome.violations.is_empty() {
            failed.push(format!("seed {seed}: {:?}", outcome.violations));
        }
        *endings.entry(format!("{:?}", outcome.ending)).or_insert(0) += 1;
        if outcome.gets.values().any(|gets| *gets > 1) {
            retried_seeds += 1;
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // The seeds reach every ending, and the retries, so the checks above had work to do.
    for ending in ["AllTaken", "StoppedEarly", "Failed"] {
        assert!(endings.get(ending).is_some_and(|n| *n > 0), "no seed ended {ending}: {endings:?}");
    }
    assert!(retried_seeds > 10, "downloads retried in {retried_seeds} seeds");
}

#[test]
fn the_same_seed_runs_the_fetcher_the_same_way() {
    let first = run_seed(5, Mutants::NONE);
    assert!(first.steps > 0 && !first.gets.is_empty(), "{first:?}");
    assert_eq!(first, run_seed(5, Mutants::NONE));
    assert_ne!(first, run_seed(6, Mutants::NONE), "another seed, another run");
}

/// Which of the fetcher's mutants the checks above catch, and the first seed that does, as
/// measured: each must still be caught within `max(4 × recorded, recorded + 20)` seeds. Run
/// with `-- --nocapture` to see the table. Four of them are also the `recovery` scenario's
/// (`sim/tests/mutants_caught.rs`); the other three are only caught here and by shuttle
/// (`Mutant::OUTSIDE_SIMULATION`).
#[cfg(feature = "mutants")]
#[test]
fn fetcher_mutants_are_caught_by_the_simulated_fetcher() {
    use kvtablet_core::mutant::Mutant;
    let mut report = Vec::new();
    let mut missed = Vec::new();
    for (mutant, recorded) in RECORDED {
        let mutant_value = Mutant::from_name(mutant).expect("a known mutant");
        assert!(mutant.starts_with("fetcher-"), "{mutant} is not one of the fetcher's");
        let budget = (4 * recorded).max(recorded + 20);
        let caught = (1..=budget).find_map(|seed| {
            let violations = run_seed(seed, Mutants::NONE.with(mutant_value)).violations;
            violations.first().map(|first| (seed, first.clone()))
        });
        match caught {
            Some((seed, first)) => report.push(format!("{mutant}: seed {seed}: {first}")),
            None => missed.push(format!("{mutant}: not caught within {budget} seeds")),
        }
    }
    println!("{}", report.join("\n"));
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

/// (mutant, first catching seed), as measured by
/// `fetcher_mutants_are_caught_by_the_simulated_fetcher` (what catches it):
#[cfg(feature = "mutants")]
const RECORDED: &[(&str, u64)] = &[
    // A file written after a drain or close is kept: its TempFile is in the ledger when
    // close returns (119 before slow writes kept a write in flight at the consumer's stop).
    ("fetcher-cancel-drops-downloaded-file", 3),
    // Close returns while a download's write is in flight: its task is in the ledger.
    ("fetcher-close-skips-wait", 3),
    // A closed fetcher answered `Ok(None)` instead of `Closed`.
    ("fetcher-closed-reusable", 1),
    // The first completed download handed over: other bytes than the segment's.
    ("fetcher-matches-by-identity", 2),
    // A transient failure ended the fetch after 2 remote reads (prefetch and fallback).
    ("fetcher-no-retry", 3),
    // The slot of the failed download is in the ledger after close.
    ("fetcher-slot-leaked-on-failure", 2),
    // More slots than prefetch-num at a scheduling step (gauges and ledger).
    ("fetcher-window-unbounded", 1),
];
