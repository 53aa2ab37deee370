//! The KV snapshot lease oracles of the `leases` scenario (see ARCHITECTURE's oracle list):
//! a consumer's read of a leased snapshot's file never finds it deleted while the lease is
//! live; the manager's reference counts equal a recount from its leases after every lease
//! request and at every check; no snapshot outside the retention window is kept longer than
//! one expiry-check interval after the last lease that may pin it ended; a lease whose every
//! pin was released is gone. The coordinator's crash check is `coordinator_leases.rs`'s.
//!
//! What "may pin" means here is the oracle's own account, from the consumers' requests, not
//! the manager's: an acquire sent at wall time `t` (the coordinator's clock) with duration
//! `d` may pin its snapshots until `t + d` plus the network's longest delay (the request may
//! arrive late); an acknowledged release ends the pins at once, unless an acquire of the same
//! lease went unanswered within the network's longest delay before it (it may still land).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::env::Clock;
use kvtablet_core::snapshot::snapshot_service::SnapshotService;
use kvtablet_core::TableBucket;

use crate::checker::Checker;
use crate::remote::SimRemoteStorage;

/// What the expiry check may lag behind its interval: its blocking work waits its turn on the
/// executor (and on a slow disk).
const EXPIRY_CHECK_SLACK_MS: u64 = 200;

/// The bounds the oracles are built with.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOracleBounds {
    pub net_delay_ms_max: u64,
    pub check_interval_ms: u64,
    pub slow_disk_ms_max: u64,
    pub num_retained: usize,
    /// Whether the coordinator's disk fails writes: a bucket whose retention could not be
    /// written keeps a snapshot no lease holds until its next retention (its next commit, or
    /// a restart).
    pub coordinator_disk_faults: bool,
}

/// Until when a lease may pin a snapshot, and whether an acknowledged release ended the pin
/// (a renewal of the lease then leaves it ended).
#[derive(Debug, Clone, Copy)]
struct MayPin {
    until_ms: u64,
    released: bool,
}

#[derive(Debug, Default)]
struct OracleState {
    /// For each snapshot, for each lease that may pin it: the wall time it may pin it until.
    may_pin_until: BTreeMap<(TableBucket, u64), BTreeMap<String, MayPin>>,
    /// For each lease, when its latest unanswered acquire was sent.
    unanswered_acquire_wall_ms: BTreeMap<String, u64>,
    reads_checked: u64,
    injected_not_found: u64,
    steps_checked: u64,
    /// The remote files of every snapshot the coordinator accepted (bounded by the run's
    /// commits), for the leak check at quiescence.
    committed_paths: BTreeSet<String>,
}

/// Counts for the trace's last lines and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseOracleCounts {
    pub reads_checked: u64,
    pub injected_not_found: u64,
    pub steps_checked: u64,
}

pub struct LeaseOracle {
    clock: Arc<dyn Clock>,
    checker: Arc<Checker>,
    remote: Arc<SimRemoteStorage>,
    bounds: LeaseOracleBounds,
    state: Mutex<OracleState>,
}

impl LeaseOracle {
    /// `clock` is the coordinator's: lease expirations are on its wall clock.
    pub fn new(
        clock: Arc<dyn Clock>,
        checker: Arc<Checker>,
        remote: Arc<SimRemoteStorage>,
        bounds: LeaseOracleBounds,
    ) -> LeaseOracle {
        LeaseOracle { clock, checker, remote, bounds, state: Mutex::new(OracleState::default()) }
    }

    pub fn now_wall_ms(&self) -> u64 {
        self.clock.now_wall_ms()
    }

    pub fn counts(&self) -> LeaseOracleCounts {
        let state = self.lock();
        LeaseOracleCounts {
            reads_checked: state.reads_checked,
            injected_not_found: state.injected_not_found,
            steps_checked: state.steps_checked,
        }
    }

    /// An acquire of `pins` under `lease_id` for `duration_ms` is about to be sent. It renews
    /// the whole lease: every pin the lease may still hold (not released; perhaps expired but
    /// not yet swept) may last as long as the new ones.
    pub fn acquire_sent(&self, lease_id: &str, pins: &[(TableBucket, u64)], duration_ms: u64) {
        let now_ms = self.now_wall_ms();
        let until_ms = now_ms + duration_ms + self.bounds.net_delay_ms_max;
        let grace_ms = self.grace_ms();
        let mut state = self.lock();
        for leases in state.may_pin_until.values_mut() {
            if let Some(pin) = leases.get_mut(lease_id) {
                if !pin.released && pin.until_ms + grace_ms >= now_ms {
                    pin.until_ms = pin.until_ms.max(until_ms);
                }
            }
        }
        for pin in pins {
            let may = state
                .may_pin_until
                .entry(*pin)
                .or_default()
                .entry(lease_id.to_string())
                .or_insert(MayPin { until_ms, released: false });
            may.until_ms = may.until_ms.max(until_ms);
            may.released = false;
        }
    }

    /// An acquire sent at `sent_wall_ms` got no answer: it may still land.
    pub fn acquire_unanswered(&self, lease_id: &str, sent_wall_ms: u64) {
        let mut state = self.lock();
        let latest = state.unanswered_acquire_wall_ms.entry(lease_id.to_string()).or_insert(0);
        *latest = (*latest).max(sent_wall_ms);
    }

    /// The coordinator acknowledged the release of `pins` (their buckets) of `lease_id`.
    /// Returns whether the release ends them for sure (no acquire of the lease may still land).
    pub fn released(&self, lease_id: &str, pins: &[(TableBucket, u64)]) -> bool {
        let now_ms = self.now_wall_ms();
        let mut state = self.lock();
        let unanswered = state.unanswered_acquire_wall_ms.get(lease_id).copied();
        if unanswered.is_some_and(|sent| sent + self.bounds.net_delay_ms_max >= now_ms) {
            return false;
        }
        for pin in pins {
            if let Some(may) =
                state.may_pin_until.get_mut(pin).and_then(|leases| leases.get_mut(lease_id))
            {
                may.until_ms = may.until_ms.min(now_ms);
                may.released = true;
            }
        }
        true
    }

    /// A consumer's read of `path` (a file of the snapshot it pinned with an acquire sent at
    /// `acquire_sent_wall_ms`, for `duration_ms`) answered not-found. An injected fault leaves
    /// the object in the store; a real deletion while the lease is surely live (its
    /// expiration is at least the send time plus the duration, and expiry is strict) breaks
    /// the leases' one promise.
    pub fn check_not_found(
        &self,
        consumer: &str,
        path: &str,
        acquire_sent_wall_ms: u64,
        duration_ms: u64,
    ) {
        let now_ms = self.now_wall_ms();
        if self.remote.peek(path).is_some() {
            self.lock().injected_not_found += 1;
            return;
        }
        let live_until_ms = acquire_sent_wall_ms + duration_ms;
        if now_ms <= live_until_ms {
            self.checker.violation(format!(
                "lease: {consumer} found {path} deleted at wall {now_ms} ms while its lease (acquired \
                 at {acquire_sent_wall_ms} ms for {duration_ms} ms) was live"
            ));
        }
    }

    /// Whether `path` is really gone from the remote store (not an injected not-found).
    pub fn remote_lacks(&self, path: &str) -> bool {
        self.remote.peek(path).is_none()
    }

    /// A read of a leased file answered (found, or failed otherwise).
    pub fn read_checked(&self) {
        self.lock().reads_checked += 1;
    }

    /// After a release of every pin of `lease_id` that ended them for sure: the lease is gone
    /// (Fluss drops a lease whose last bucket goes).
    pub fn check_lease_gone(&self, service: &SnapshotService, lease_id: &str) {
        let Some(leases) = service.store().leases() else { return };
        if let Some(lease) = leases.lease(lease_id) {
            self.checker.violation(format!(
                "lease: {lease_id} was released of every pin and is still there: {lease:?}"
            ));
        }
    }

    /// The checks of every step (after each lease request and at the world's checks): the
    /// reference counts recount from the leases, and each snapshot kept outside the retention
    /// window may still be pinned by a lease (or its end was less than an interval ago).
    pub fn check_step(&self, service: &SnapshotService, when: &str) {
        let Some(leases) = service.store().leases() else { return };
        if let Err(problem) = leases.check() {
            self.checker.violation(format!("lease: reference counts {when}: {problem}"));
        }
        let now_ms = self.now_wall_ms();
        let grace_ms = self.bounds.check_interval_ms
            + EXPIRY_CHECK_SLACK_MS
            + 2 * self.bounds.slow_disk_ms_max
            + 1;
        let mut state = self.lock();
        state.steps_checked += 1;
        let store = service.store();
        for bucket in store.buckets() {
            let kept = store.kept_points(bucket);
            let outside = kept.len().saturating_sub(self.bounds.num_retained);
            for point in &kept[..outside] {
                let key = (bucket, point.snapshot_id);
                let until_ms = state
                    .may_pin_until
                    .get(&key)
                    .and_then(|leases| leases.values().map(|may| may.until_ms).max());
                let owed_retention = self.bounds.coordinator_disk_faults
                    && !leases.is_leased(bucket, point.snapshot_id);
                match until_ms {
                    Some(until_ms) if now_ms <= until_ms + grace_ms => {}
                    _ if owed_retention => {}
                    _ => {
                        let holders: Vec<(String, u64)> = leases
                            .leases()
                            .into_iter()
                            .filter(|(_, lease)| lease.pinned(bucket) == Some(point.snapshot_id))
                            .map(|(lease_id, lease)| (lease_id, lease.expiration_ms))
                            .collect();
                        self.checker.violation(format!(
                            "lease: {bucket} keeps snapshot {} outside its retention window \
                             {when} at wall {now_ms} ms, but no lease may pin it since \
                             {until_ms:?} (one check interval is {} ms); the manager's leases \
                             on it (id, expiration): {holders:?}",
                            point.snapshot_id, self.bounds.check_interval_ms
                        ));
                    }
                }
            }
        }
        // Forget what no longer matters: snapshots no lease may pin any more.
        state.may_pin_until.retain(|_, leases| {
            leases.retain(|_, may| may.until_ms + grace_ms >= now_ms);
            !leases.is_empty()
        });
    }

    /// The coordinator accepted `paths` (a committed snapshot's files).
    pub fn committed(&self, paths: impl Iterator<Item = String>) {
        self.lock().committed_paths.extend(paths);
    }

    /// At quiescence, before the orphan sweep (every server down, every deletion done): no
    /// file of a committed snapshot is left in the remote store unless a kept snapshot lists
    /// it. What a lease let go of was deleted, not left to the sweep (which would hide it).
    pub fn check_no_leaked_files(&self, service: &SnapshotService) {
        let store = service.store();
        let mut needed = BTreeSet::new();
        for bucket in store.buckets() {
            if let Some(snapshots) = store.bucket(bucket) {
                needed.extend(snapshots.needed_paths());
            }
        }
        let leaked: Vec<String> = self
            .lock()
            .committed_paths
            .iter()
            .filter(|path| !needed.contains(*path) && self.remote.peek(path).is_some())
            .cloned()
            .collect();
        if !leaked.is_empty() {
            self.checker.violation(format!(
                "lease: {} files of committed snapshots no longer kept are still in the remote \
                 store before the orphan sweep: {:?}",
                leaked.len(),
                leaked.iter().take(8).collect::<Vec<_>>()
            ));
        }
    }

    /// When the last lease the oracle knows of may end (wall ms), for the quiescence check.
    pub fn last_pin_end_wall_ms(&self) -> u64 {
        let state = self.lock();
        let ends = state.may_pin_until.values().flat_map(|leases| leases.values());
        ends.map(|may| may.until_ms).max().unwrap_or(0)
    }

    /// How long after a lease's end the oracle lets its snapshots stay.
    pub fn grace_ms(&self) -> u64 {
        self.bounds.check_interval_ms + EXPIRY_CHECK_SLACK_MS + 2 * self.bounds.slow_disk_ms_max
    }

    fn lock(&self) -> MutexGuard<'_, OracleState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SimExecutor;
    use crate::prng::Streams;
    use crate::remote::RemoteFaults;
    use kvtablet_core::env::RemoteStorage;

    fn oracle(exec: &SimExecutor, remote: &Arc<SimRemoteStorage>) -> (LeaseOracle, Arc<Checker>) {
        let checker = Arc::new(Checker::for_tests(exec.clock_for(0)));
        let bounds = LeaseOracleBounds {
            net_delay_ms_max: 10,
            check_interval_ms: 100,
            slow_disk_ms_max: 0,
            num_retained: 2,
            coordinator_disk_faults: false,
        };
        (LeaseOracle::new(exec.clock_for(0), checker.clone(), remote.clone(), bounds), checker)
    }

    #[test]
    fn a_file_really_deleted_within_the_lease_is_a_violation_and_an_injected_not_found_is_not() {
        let exec = SimExecutor::new(&Streams::new(1));
        let remote = Arc::new(SimRemoteStorage::new(&exec, &Streams::new(1), RemoteFaults::none()));
        let (oracle, checker) = oracle(&exec, &remote);
        let put = remote.put("kv/t1-b0/snap-1/f", vec![1]);
        exec.block_on(0, "put", put, 1_000).expect("the executor runs").expect("put");
        let sent_ms = oracle.now_wall_ms();
        oracle.check_not_found("consumer", "kv/t1-b0/snap-1/f", sent_ms, 1_000);
        assert_eq!(checker.violations(), Vec::<String>::new(), "still there: injected");
        assert_eq!(oracle.counts().injected_not_found, 1);
        oracle.check_not_found("consumer", "kv/t1-b0/snap-1/gone", sent_ms, 1_000);
        assert_eq!(checker.violations().len(), 1, "gone within the lease: a violation");
        oracle.check_not_found("consumer", "kv/t1-b0/snap-1/gone", sent_ms - 2_000, 1_000);
        assert_eq!(checker.violations().len(), 1, "gone after the lease: no violation");
    }
}
