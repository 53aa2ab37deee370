//! KV snapshot leases on real threads: acquires (one that moves its pin), releases, a drop, the
//! expiry check and commits (retention) racing through the coordinator's store, with the
//! manager's recount checked during the run; at the end every live pin names a kept
//! snapshot, no deleted file is needed by a kept one, the ledger holds one entry per lease,
//! and a crash and reopen find exactly the acknowledged leases. The deterministic tail makes
//! each lease mutant fail on every execution: a moved pin, an expiry, a release of a table's
//! last bucket, a lease at its expiration millisecond, and an acquire whose write fails.

use std::collections::BTreeSet;
use std::sync::Arc;

use kvtablet_core::env::{Clock, LocalFs};
use kvtablet_core::lease::crash_fs::CrashFs;
use kvtablet_core::lease::{KvSnapshotLeaseManager, LeaseConfig};
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::snapshot::completed_snapshot::{shared_file_path, snapshot_dir};
use kvtablet_core::snapshot::{
    Cleanup, CompletedSnapshot, SnapshotFile, SnapshotStore, SnapshotStoreConfig,
};
use kvtablet_core::TableBucket;

use crate::support::{explore, Budget, ManualClock};

const LEASE_DIR: &str = "coordinator/kv-snapshot-leases";
const STORE_DIR: &str = "coordinator/kv-snapshots";

fn bucket(id: i32) -> TableBucket {
    TableBucket::new(7, id)
}

struct Coordinator {
    store: Arc<SnapshotStore>,
    leases: Arc<KvSnapshotLeaseManager>,
    ledger: Ledger,
    /// Every path a cleanup handed out for deletion.
    deleted: std::sync::Mutex<BTreeSet<String>>,
}

impl Coordinator {
    fn open(fs: Arc<dyn LocalFs>, clock: Arc<ManualClock>, mutants: Mutants) -> Coordinator {
        let ledger = Ledger::new();
        let config = LeaseConfig { mutants, ..LeaseConfig::default() };
        let leases = KvSnapshotLeaseManager::open(
            fs.clone(),
            LEASE_DIR.into(),
            clock,
            ledger.clone(),
            config,
        )
        .expect("the leases open");
        let leases = Arc::new(leases);
        let store_config = SnapshotStoreConfig { num_retained: 1, mutants };
        let store =
            SnapshotStore::open_with_leases(fs, STORE_DIR.into(), store_config, leases.clone())
                .expect("the store opens");
        Coordinator {
            store: Arc::new(store),
            leases,
            ledger,
            deleted: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    fn record(&self, cleanup: Cleanup) {
        self.deleted.lock().expect("deleted").extend(cleanup.paths);
        self.leases.check().expect("the reference counts equal a recount");
    }

    /// Commits the bucket's next snapshot: a fresh shared file, and the latest's reused.
    fn commit_next(&self, bucket: TableBucket) {
        let id = self.store.allocate_snapshot_id(bucket).expect("an id");
        let file = |remote_path: String, local_name: &str| SnapshotFile {
            remote_path,
            local_name: local_name.into(),
            size_bytes: 1,
            crc32c: 1,
            sha256: [1; 32],
        };
        let mut shared_files: Vec<SnapshotFile> =
            self.store.latest(bucket).map(|latest| latest.shared_files).unwrap_or_default();
        shared_files.truncate(1);
        let name = format!("f{id}");
        shared_files.push(file(shared_file_path(bucket, id, &name), &name));
        let manifest = format!("{}/MANIFEST", snapshot_dir(bucket, id));
        let snapshot = CompletedSnapshot {
            bucket,
            snapshot_id: id,
            leader_epoch: 1,
            log_offset: id,
            shared_files,
            private_files: vec![file(manifest, "MANIFEST")],
        };
        self.record(self.store.commit(snapshot, 1).expect("the commit"));
    }

    fn latest_id(&self, bucket: TableBucket) -> u64 {
        self.store.latest(bucket).map_or(0, |latest| latest.snapshot_id)
    }

    fn acquire(&self, lease_id: &str, duration_ms: u64, buckets: &[TableBucket]) {
        let pins: Vec<(TableBucket, u64)> =
            buckets.iter().map(|b| (*b, self.latest_id(*b))).collect();
        let acquired = self.store.acquire_lease(lease_id, duration_ms, &pins).expect("acquire");
        self.record(acquired.cleanup);
    }

    fn release(&self, lease_id: &str, buckets: &[TableBucket]) {
        self.record(self.store.release_lease(lease_id, buckets).expect("release"));
    }

    /// Every live pin names a kept snapshot, no deleted file is needed by a kept snapshot,
    /// the gauges and the ledger count the leases.
    fn check_at_rest(&self) {
        self.leases.check().expect("the reference counts equal a recount");
        let deleted = self.deleted.lock().expect("deleted").clone();
        for (lease_id, lease) in self.leases.leases() {
            for (pinned, snapshot_id) in lease.pins() {
                assert!(
                    self.store.kept_snapshot(pinned, snapshot_id).is_some(),
                    "{lease_id} pins {pinned} snapshot {snapshot_id}, which is gone"
                );
            }
        }
        for kept_bucket in self.store.buckets() {
            let needed =
                self.store.bucket(kept_bucket).map(|b| b.needed_paths()).unwrap_or_default();
            let gone: Vec<&String> = needed.intersection(&deleted).collect();
            assert!(gone.is_empty(), "deleted but needed: {gone:?}");
        }
        let gauges = self.leases.gauges();
        assert_eq!(gauges.lease_count, self.leases.leases().len());
        assert_eq!(self.ledger.count(ResourceKind::Lease), gauges.lease_count);
    }
}

pub fn lease_races(mutants: Mutants) {
    let fs = Arc::new(CrashFs::default());
    let clock = ManualClock::new();
    let coordinator = Arc::new(Coordinator::open(fs.clone(), clock.clone(), mutants));
    for id in [0, 1] {
        coordinator.commit_next(bucket(id));
    }
    let flink = {
        let c = coordinator.clone();
        shuttle::thread::spawn(move || {
            c.acquire("flink", 10_000, &[bucket(0)]);
            c.acquire("flink", 10_000, &[bucket(0)]); // moves the pin if a commit came between
            c.release("flink", &[bucket(0)]);
        })
    };
    let tiering = {
        let c = coordinator.clone();
        shuttle::thread::spawn(move || {
            c.acquire("tiering", 50, &[bucket(0), bucket(1)]);
            c.release("tiering", &[bucket(1)]);
            c.record(c.store.drop_lease("tiering").expect("drop"));
        })
    };
    let committer = {
        let c = coordinator.clone();
        shuttle::thread::spawn(move || {
            for id in [0, 1, 0] {
                c.commit_next(bucket(id));
            }
        })
    };
    let sweeper = {
        let (c, clock) = (coordinator.clone(), clock.clone());
        shuttle::thread::spawn(move || {
            clock.advance(100);
            c.record(c.store.expire_leases());
        })
    };
    for thread in [flink, tiering, committer, sweeper] {
        thread.join().expect("a racing thread");
    }
    coordinator.check_at_rest();
    deterministic_tail(&coordinator, &fs, &clock);
    let acknowledged = coordinator.leases.leases();
    let kept = coordinator.store.kept(bucket(0));
    let crashed: Arc<dyn LocalFs> = Arc::new(fs.crash());
    let reopened = Coordinator::open(crashed, clock, mutants);
    assert_eq!(reopened.leases.leases(), acknowledged, "a crash lost acknowledged leases");
    assert_eq!(reopened.store.kept(bucket(0)), kept);
    reopened.leases.check().expect("the reopened counts equal a recount");
}

/// The same operations in one order, so that each lease mutant fails on every execution.
fn deterministic_tail(c: &Coordinator, fs: &CrashFs, clock: &ManualClock) {
    // A moved pin lets go of the old snapshot (the recount in `record`).
    c.acquire("mover", 10_000, &[bucket(0)]);
    c.commit_next(bucket(0));
    c.acquire("mover", 10_000, &[bucket(0)]);
    // A release of the last bucket drops the lease.
    c.release("mover", &[bucket(0)]);
    assert!(c.leases.lease("mover").is_none(), "a lease without pins after a release");
    // A lease is valid at its expiration millisecond and expired after it; the expiry lets
    // go of its pins (the recount in `record`).
    c.acquire("edge", 10, &[bucket(1)]);
    clock.advance(10);
    c.record(c.store.expire_leases());
    assert!(c.leases.lease("edge").is_some(), "expired at its expiration millisecond");
    clock.advance(1);
    c.record(c.store.expire_leases());
    assert!(c.leases.lease("edge").is_none(), "outlived its expiration");
    // An acquire whose write fails changes nothing retention reads.
    c.acquire("held", 10_000, &[bucket(0)]);
    c.commit_next(bucket(0));
    let before = c.leases.leases();
    fs.fail_from(Some(0));
    let latest = c.latest_id(bucket(0));
    assert!(c.store.acquire_lease("held", 10_000, &[(bucket(0), latest)]).is_err());
    fs.fail_from(None);
    assert_eq!(c.leases.leases(), before, "a failed acquire changed the pins");
    c.check_at_rest();
    let now_ms = clock.now_wall_ms();
    assert!(c.leases.leases().iter().all(|(_, lease)| lease.expiration_ms >= now_ms));
}

#[test]
fn leases_racing_with_retention_keep_exact_counts_and_every_needed_file() {
    explore("kv snapshot leases", Budget::from_env(500, 4), || lease_races(Mutants::NONE));
}
