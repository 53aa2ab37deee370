//! KV snapshot lease cost on the production code path: the coordinator's lease manager and
//! snapshot store opened as the node opens them (`snapshot_coordinator::open_snapshot_store_on`)
//! on the real disk file system (`DiskFs`, every write synced) in a temporary directory. Only
//! the wall clock is the bench's: the real one plus an offset the bench moves, so that the
//! expiry check finds the leases it is meant to find. The leases are kept in remote storage
//! too, as the node keeps them (`ObjectStoreRemote::local` on the same disk, the default
//! `remote.data.dir`), but passes A and B time the store's calls alone (the part a request
//! waits for under the store's lock); pass A+R times each call together with the
//! `mirror_leases` that the coordinator awaits before it answers (the remote copy's put, and
//! the deletion of the superseded or released copy).
//!
//! Set-up: `BUCKETS` (10,000) buckets, each with one committed snapshot (allocated and
//! committed through the store, as a leader's commit is), so that every acquire pins a real,
//! kept snapshot.
//!
//! Interleaved passes (A A+R B, A A+R B, ...), each a second or more:
//! - A, many small leases: `BUCKETS / SMALL_LEASE_BUCKETS` leases of `SMALL_LEASE_BUCKETS`
//!   buckets each (10,000 buckets leased in total), acquired one call each, then each released
//!   in one call (which drops the lease and removes its file).
//! - A+R: A with the remote copies: each call and then the coordinator's `mirror_leases`.
//! - B, one big lease: one acquire of all 10,000 buckets, `RENEWALS` renewals of it (an acquire
//!   with no bucket, which resets the expiration), then its release in calls of
//!   `BIG_RELEASE_BUCKETS` buckets.
//!
//! Then the expiry check with `SWEEP_LEASES` (100,000) leases of one bucket each (written as
//! lease files, then loaded by the store's open, which is timed: the start-up cost), per pass:
//! the check with none expired (`NONE_EXPIRED_CHECKS` calls) and the check with
//! `EXPIRED_PERCENT`% expired (one call, which drops them and removes their files).
//!
//! Per pass: latency median and p99 of each call and calls (or buckets) per second; over the
//! passes: the median and the spread (min–max) of each figure. Times are printed, never
//! asserted. Every loop is bounded.
//!
//! Run: `cargo bench -p kvtablet-prod --bench kv_snapshot_lease`; `-- --quick` or
//! `KVTABLET_BENCH_QUICK=1` for a run of a few seconds (fewer passes and 10,000 sweep leases).

// prod may read wall time; measuring it is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kvtablet_core::env::{Clock, RemoteStorage};
use kvtablet_core::lease::lease_file::{encode_lease_file, lease_file_name};
use kvtablet_core::lease::lease_remote::{mirror_leases, RemoteLeaseCopies};
use kvtablet_core::lease::{KvSnapshotLease, LeaseConfig};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::snapshot::completed_snapshot::{shared_file_path, snapshot_dir};
use kvtablet_core::snapshot::{CompletedSnapshot, SnapshotFile, SnapshotStore};
use kvtablet_core::TableBucket;
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::object_store_remote::ObjectStoreRemote;
use kvtablet_prod::snapshot_coordinator::{open_snapshot_store_on, CoordinatorParts, LEASE_DIR};
use kvtablet_prod::system_clock::SystemClock;

const BUCKETS: usize = 10_000;
const SMALL_LEASE_BUCKETS: usize = 10;
const RENEWALS: usize = 200;
const BIG_RELEASE_BUCKETS: usize = 100;
const SWEEP_LEASES: usize = 100_000;
const QUICK_SWEEP_LEASES: usize = 10_000;
const EXPIRED_PERCENT: usize = 10;
const NONE_EXPIRED_CHECKS: usize = 20;
const PASSES: usize = 5;
const QUICK_PASSES: usize = 2;
const DAY_MS: u64 = 24 * 60 * 60 * 1_000;
const HOUR_MS: u64 = 60 * 60 * 1_000;
const TABLE_ID: i64 = 1;
const SNAPSHOT_ID: u64 = 1;

/// The system's wall clock plus an offset the bench moves (monotonic time is the system's).
#[derive(Debug, Default)]
struct ShiftedClock {
    system: SystemClock,
    offset_ms: AtomicU64,
}

impl Clock for ShiftedClock {
    fn now_mono_ms(&self) -> u64 {
        self.system.now_mono_ms()
    }
    fn now_wall_ms(&self) -> u64 {
        self.system.now_wall_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        self.system.sleep_until(deadline_mono_ms)
    }
}

fn bucket(index: usize) -> TableBucket {
    TableBucket::new(TABLE_ID, i32::try_from(index).expect("bucket index fits"))
}

fn file(remote_path: String, local_name: &str) -> SnapshotFile {
    SnapshotFile {
        remote_path,
        local_name: local_name.to_string(),
        size_bytes: 1_000,
        crc32c: 1,
        sha256: [7; 32],
    }
}

fn committed_snapshot(bucket: TableBucket, snapshot_id: u64) -> CompletedSnapshot {
    CompletedSnapshot {
        bucket,
        snapshot_id,
        leader_epoch: 0,
        log_offset: 100,
        shared_files: vec![file(shared_file_path(bucket, snapshot_id, "000001.sst"), "000001.sst")],
        private_files: vec![file(
            format!("{}/MANIFEST", snapshot_dir(bucket, snapshot_id)),
            "MANIFEST",
        )],
    }
}

fn lease_config(sweep_leases: usize) -> LeaseConfig {
    LeaseConfig { leases_max: sweep_leases + 1_000, ..LeaseConfig::default() }
}

fn open(parts: &CoordinatorParts, sweep_leases: usize) -> Arc<SnapshotStore> {
    open_snapshot_store_on(parts, 2, lease_config(sweep_leases), None).expect("the store opens")
}

fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = call();
    (value, started.elapsed())
}

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Median and p99 of `samples` in microseconds.
fn median_p99(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.99))
}

/// Every figure of every pass, by name, printed at the end as median and spread.
#[derive(Default)]
struct Figures {
    by_name: BTreeMap<&'static str, (Vec<f64>, &'static str)>,
    order: Vec<&'static str>,
}

impl Figures {
    fn add(&mut self, name: &'static str, value: f64, unit: &'static str) {
        if !self.by_name.contains_key(name) {
            self.order.push(name);
        }
        self.by_name.entry(name).or_insert_with(|| (Vec::new(), unit)).0.push(value);
    }

    fn print(&self) {
        println!("over the passes: median (min–max)");
        for name in &self.order {
            let (values, unit) = &self.by_name[name];
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "  {name}: {:.1} ({:.1}–{:.1}) {unit}",
                sorted[sorted.len() / 2],
                sorted[0],
                sorted[sorted.len() - 1]
            );
        }
    }
}

/// The coordinator's remote side, for pass A+R.
struct Mirror<'a> {
    runtime: &'a tokio::runtime::Runtime,
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
}

impl Mirror<'_> {
    fn run(&self, store: &SnapshotStore) {
        let leases = store.leases().expect("leases");
        if let Some(mirroring) = mirror_leases(leases, &self.remote, &self.clock) {
            self.runtime.block_on(mirroring);
        }
    }
}

/// Pass A: 1,000 leases of 10 buckets acquired, then each released whole (pass A+R: each call
/// followed by the mirroring of the remote copies).
fn small_leases_pass(store: &SnapshotStore, mirror: Option<&Mirror<'_>>, figures: &mut Figures) {
    let name = |figure: &'static str| -> &'static str {
        match (mirror.is_some(), figure) {
            (false, _) => figure,
            (true, "A acquire median") => "A+R acquire median",
            (true, "A acquire p99") => "A+R acquire p99",
            (true, "A acquire throughput") => "A+R acquire throughput",
            (true, "A release median") => "A+R release median",
            (true, "A release p99") => "A+R release p99",
            (true, _) => "A+R release throughput",
        }
    };
    let mirrored = |store: &SnapshotStore| {
        if let Some(mirror) = mirror {
            mirror.run(store);
        }
    };
    let leases = BUCKETS / SMALL_LEASE_BUCKETS;
    let mut acquires = Vec::with_capacity(leases);
    let started = Instant::now();
    for lease in 0..leases {
        let pins: Vec<(TableBucket, u64)> = (0..SMALL_LEASE_BUCKETS)
            .map(|offset| (bucket(lease * SMALL_LEASE_BUCKETS + offset), SNAPSHOT_ID))
            .collect();
        let (acquired, took) = timed(|| {
            let acquired = store.acquire_lease(&format!("small-{lease}"), DAY_MS, &pins);
            mirrored(store);
            acquired
        });
        let acquired = acquired.expect("acquired");
        assert!(acquired.unavailable.is_empty(), "every pinned snapshot is kept");
        acquires.push(took);
    }
    let acquire_secs = started.elapsed().as_secs_f64();
    let gauges = store.leases().expect("leases").gauges();
    assert_eq!(gauges.leased_bucket_count, BUCKETS, "10,000 buckets leased");
    let mut releases = Vec::with_capacity(leases);
    let started = Instant::now();
    for lease in 0..leases {
        let buckets: Vec<TableBucket> = (0..SMALL_LEASE_BUCKETS)
            .map(|offset| bucket(lease * SMALL_LEASE_BUCKETS + offset))
            .collect();
        let (released, took) = timed(|| {
            let released = store.release_lease(&format!("small-{lease}"), &buckets);
            mirrored(store);
            released
        });
        assert!(released.expect("released").is_empty(), "the snapshots are retained");
        releases.push(took);
    }
    let release_secs = started.elapsed().as_secs_f64();
    assert_eq!(store.leases().expect("leases").gauges().lease_count, 0);
    let (acquire_median, acquire_p99) = median_p99(&mut acquires);
    let (release_median, release_p99) = median_p99(&mut releases);
    if mirror.is_some() {
        let leases = store.leases().expect("leases");
        assert!(leases.remote_is_current(), "every copy put and deleted");
    }
    println!(
        "  {}, {leases} leases x {SMALL_LEASE_BUCKETS} buckets: acquire median {acquire_median:.0} \
         us p99 {acquire_p99:.0} us, {:.0} calls/s; release (whole lease) median \
         {release_median:.0} us p99 {release_p99:.0} us, {:.0} calls/s",
        if mirror.is_some() { "A+R" } else { "A" },
        leases as f64 / acquire_secs,
        leases as f64 / release_secs
    );
    figures.add(name("A acquire median"), acquire_median, "us");
    figures.add(name("A acquire p99"), acquire_p99, "us");
    figures.add(name("A acquire throughput"), leases as f64 / acquire_secs, "calls/s");
    figures.add(name("A release median"), release_median, "us");
    figures.add(name("A release p99"), release_p99, "us");
    figures.add(name("A release throughput"), leases as f64 / release_secs, "calls/s");
}

/// Pass B: one lease of all 10,000 buckets, renewed, then released 100 buckets at a time.
fn big_lease_pass(store: &SnapshotStore, lease_dir: &std::path::Path, figures: &mut Figures) {
    let pins: Vec<(TableBucket, u64)> = (0..BUCKETS).map(|i| (bucket(i), SNAPSHOT_ID)).collect();
    let (acquired, acquire_took) = timed(|| store.acquire_lease("big", DAY_MS, &pins));
    assert!(acquired.expect("acquired").unavailable.is_empty());
    let file_bytes = std::fs::metadata(lease_dir.join(lease_file_name("big")))
        .expect("the big lease's file")
        .len();
    let mut renewals = Vec::with_capacity(RENEWALS);
    let started = Instant::now();
    for _ in 0..RENEWALS {
        let (renewed, took) = timed(|| store.acquire_lease("big", DAY_MS, &[]));
        renewed.expect("renewed");
        renewals.push(took);
    }
    let renew_secs = started.elapsed().as_secs_f64();
    let mut releases = Vec::with_capacity(BUCKETS / BIG_RELEASE_BUCKETS);
    let started = Instant::now();
    for chunk in pins.chunks(BIG_RELEASE_BUCKETS) {
        let buckets: Vec<TableBucket> = chunk.iter().map(|(bucket, _)| *bucket).collect();
        let (released, took) = timed(|| store.release_lease("big", &buckets));
        assert!(released.expect("released").is_empty(), "the snapshots are retained");
        releases.push(took);
    }
    let release_secs = started.elapsed().as_secs_f64();
    assert_eq!(store.leases().expect("leases").gauges().lease_count, 0, "dropped at the end");
    let (renew_median, renew_p99) = median_p99(&mut renewals);
    let (release_median, release_p99) = median_p99(&mut releases);
    let release_calls = releases.len();
    println!(
        "  B, one lease of {BUCKETS} buckets (file {:.0} KiB): acquire {:.0} us; renewal \
         median {renew_median:.0} us p99 {renew_p99:.0} us, {:.0} calls/s; release of \
         {BIG_RELEASE_BUCKETS} buckets median {release_median:.0} us p99 {release_p99:.0} us, \
         {:.0} buckets/s",
        file_bytes as f64 / 1024.0,
        us(acquire_took),
        RENEWALS as f64 / renew_secs,
        (release_calls * BIG_RELEASE_BUCKETS) as f64 / release_secs,
    );
    figures.add("B acquire of 10,000 buckets", us(acquire_took), "us");
    figures.add("B renewal median", renew_median, "us");
    figures.add("B renewal p99", renew_p99, "us");
    figures.add("B renewal throughput", RENEWALS as f64 / renew_secs, "calls/s");
    figures.add("B release (100 buckets) median", release_median, "us");
    figures.add("B release (100 buckets) p99", release_p99, "us");
}

/// Writes the lease files of `ids` (each pinning one bucket, round robin), expiring at
/// `expiration_ms`, with the manager's encoding. Set-up only: unsynced, so that 100,000 files
/// take seconds rather than minutes of directory syncs.
fn write_lease_files(
    lease_dir: &std::path::Path,
    ids: impl Iterator<Item = (String, usize)>,
    expiration_ms: u64,
) -> usize {
    let mut written = 0;
    for (lease_id, index) in ids {
        let mut lease = KvSnapshotLease::new(expiration_ms);
        lease.pin(bucket(index % BUCKETS), SNAPSHOT_ID);
        let path = lease_dir.join(lease_file_name(&lease_id));
        std::fs::write(path, encode_lease_file(&lease_id, 1, &lease)).expect("write a lease file");
        written += 1;
    }
    written
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var("KVTABLET_BENCH_QUICK").is_ok_and(|value| value != "0");
    let passes = if quick { QUICK_PASSES } else { PASSES };
    let sweep_leases = if quick { QUICK_SWEEP_LEASES } else { SWEEP_LEASES };
    println!(
        "kv_snapshot_lease{}: {BUCKETS} buckets with a committed snapshot each, lease manager \
         and snapshot store on DiskFs (synced writes) in a temporary directory, {} cores",
        if quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let disk = DiskFs::new(data_dir.path()).expect("disk fs");
    let clock = Arc::new(ShiftedClock::default());
    let parts = CoordinatorParts {
        fs: Arc::new(disk.clone()),
        clock: clock.clone(),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let remote_dir = data_dir.path().join("remote");
    std::fs::create_dir_all(&remote_dir).expect("remote directory");
    let mirror = Mirror {
        runtime: &runtime,
        remote: Arc::new(ObjectStoreRemote::local(&remote_dir).expect("local remote store")),
        clock: clock.clone(),
    };
    let store = open_snapshot_store_on(
        &parts,
        2,
        lease_config(sweep_leases),
        Some(RemoteLeaseCopies::default()),
    )
    .expect("the store opens");
    let (_, setup) = timed(|| {
        for index in 0..BUCKETS {
            let bucket = bucket(index);
            let snapshot_id = store.allocate_snapshot_id(bucket).expect("allocated");
            assert_eq!(snapshot_id, SNAPSHOT_ID);
            store.commit(committed_snapshot(bucket, snapshot_id), 0).expect("committed");
        }
    });
    println!("set-up: {BUCKETS} snapshots committed in {:.1} s", setup.as_secs_f64());

    let lease_dir = data_dir.path().join(LEASE_DIR);
    let mut figures = Figures::default();
    for pass in 1..=passes {
        println!("pass {pass}");
        small_leases_pass(&store, None, &mut figures);
        small_leases_pass(&store, Some(&mirror), &mut figures);
        big_lease_pass(&store, &lease_dir, &mut figures);
    }
    drop(store);

    // The expiry check: `sweep_leases` leases, `EXPIRED_PERCENT`% of them due in an hour.
    let expiring = sweep_leases * EXPIRED_PERCENT / 100;
    let now_ms = clock.now_wall_ms();
    let live = (0..sweep_leases - expiring).map(|i| (format!("live-{i}"), i));
    let (_, wrote) = timed(|| write_lease_files(&lease_dir, live, now_ms + DAY_MS));
    println!(
        "sweep set-up: {} lease files written in {:.1} s",
        sweep_leases - expiring,
        wrote.as_secs_f64()
    );
    for pass in 1..=passes {
        clock.offset_ms.store(0, Ordering::SeqCst);
        let now_ms = clock.now_wall_ms();
        let due = (0..expiring).map(|i| (format!("due-{i}"), i));
        write_lease_files(&lease_dir, due, now_ms + HOUR_MS);
        let (store, open_took) = timed(|| open(&parts, sweep_leases));
        let gauges = store.leases().expect("leases").gauges();
        assert_eq!(gauges.lease_count, sweep_leases);
        let mut checks = Vec::with_capacity(NONE_EXPIRED_CHECKS);
        for _ in 0..NONE_EXPIRED_CHECKS {
            let (cleanup, took) = timed(|| store.expire_leases());
            assert!(cleanup.is_empty());
            checks.push(took);
        }
        assert_eq!(store.leases().expect("leases").gauges().lease_count, sweep_leases);
        clock.offset_ms.store(2 * HOUR_MS, Ordering::SeqCst);
        let (cleanup, expire_took) = timed(|| store.expire_leases());
        assert!(cleanup.is_empty(), "the snapshots are retained");
        let left = store.leases().expect("leases").gauges().lease_count;
        assert_eq!(left, sweep_leases - expiring, "every due lease expired");
        let (none_median, none_p99) = median_p99(&mut checks);
        println!(
            "pass {pass}, {sweep_leases} leases: open (start-up) {:.0} ms; check with none \
             expired median {none_median:.0} us p99 {none_p99:.0} us; check with {expiring} \
             ({EXPIRED_PERCENT}%) expired {:.0} ms ({:.0} us per expired lease)",
            open_took.as_secs_f64() * 1e3,
            expire_took.as_secs_f64() * 1e3,
            us(expire_took) / expiring as f64,
        );
        figures.add("open with the sweep leases", open_took.as_secs_f64() * 1e3, "ms");
        figures.add("check, none expired, median", none_median, "us");
        figures.add("check, 10% expired", expire_took.as_secs_f64() * 1e3, "ms");
    }
    figures.print();
}
