//! The `leases` scenario's workload: a consumer modelled on the tiering service of Fluss PR
//! 3286. Each round it lists the latest snapshot of a few buckets (`GetLatestKvSnapshot`),
//! pins them under its lease (`KvSnapshotLeaseClient::acquire` over the simulated network),
//! reads every file of the pinned snapshots from the remote store slowly (while leaders commit
//! newer snapshots and retention runs), and releases every bucket its lease may pin. Some
//! rounds skip the release (the next acquire moves the pins), and some crash the consumer: it
//! comes back under a new lease id and the old lease is left to expire.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use kvtablet_core::env::{Clock, RemoteError, RemoteStorage, Rpc};
use kvtablet_core::lease::{KvSnapshotLeaseClient, LeaseClientError};
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::snapshot::CompletedSnapshot;
use kvtablet_core::TableBucket;

use crate::client::COORDINATOR_NODE;
use crate::coordinator::Coordinator;
use crate::lease_oracle::LeaseOracle;
use crate::plan::RunPlan;
use crate::prng::Prng;

/// Pause between rounds, so that leaders commit newer snapshots in between.
const ROUND_PAUSE_MS_MAX: u64 = 300;

/// What a consumer runs with.
pub struct LeaseConsumer {
    pub node: NodeId,
    pub rpc: Arc<dyn Rpc>,
    pub clock: Arc<dyn Clock>,
    pub remote: Arc<dyn RemoteStorage>,
    pub prng: Prng,
    pub plan: Arc<RunPlan>,
    pub oracle: Arc<LeaseOracle>,
    pub coordinator: Weak<Coordinator>,
    /// The buckets it may pick from.
    pub buckets: Vec<TableBucket>,
}

/// One lease's life: its client and the pins it may hold (bucket to snapshot id).
struct HeldLease {
    client: KvSnapshotLeaseClient,
    pinned: BTreeMap<TableBucket, u64>,
    /// Whether an acquire pinned something since the lease began or was last released (an
    /// acquire that pins nothing creates an empty lease, which no release drops).
    pinned_any: bool,
}

enum RoundEnd {
    Finished,
    Crashed,
}

impl LeaseConsumer {
    pub async fn run(mut self) {
        let mut incarnation = 0;
        let mut lease = self.new_lease(incarnation);
        for _ in 0..self.plan.leases.rounds_per_consumer {
            if let RoundEnd::Crashed = self.round(&mut lease).await {
                incarnation += 1;
                lease = self.new_lease(incarnation);
            }
            let pause_ms = self.prng.range_inclusive(0, ROUND_PAUSE_MS_MAX);
            self.clock.sleep(pause_ms).await;
        }
        // Done: what the lease still pins is released (on a failure it expires).
        self.release(&mut lease).await;
    }

    fn new_lease(&self, incarnation: u32) -> HeldLease {
        let lease_id = format!("tiering-n{}-{incarnation}", self.node);
        let client = KvSnapshotLeaseClient::new(
            self.rpc.clone(),
            COORDINATOR_NODE,
            self.plan.request_timeout_ms,
            lease_id,
            self.plan.leases.duration_ms,
        );
        HeldLease { client, pinned: BTreeMap::new(), pinned_any: false }
    }

    async fn round(&mut self, lease: &mut HeldLease) -> RoundEnd {
        // A round after one whose release was skipped tiers the same buckets again first (the
        // table's next round): its acquire moves their pins to the newer snapshots.
        let again: Vec<TableBucket> = lease.pinned.keys().copied().collect();
        let latest = self.list_latest(again).await;
        if latest.is_empty() {
            return RoundEnd::Finished;
        }
        let pins: Vec<(TableBucket, u64)> =
            latest.iter().map(|snapshot| (snapshot.bucket, snapshot.snapshot_id)).collect();
        let lease_id = lease.client.lease_id().to_string();
        let duration_ms = lease.client.duration_ms();
        let sent_wall_ms = self.oracle.now_wall_ms();
        self.oracle.acquire_sent(&lease_id, &pins, duration_ms);
        // The pins it asks for may land whatever the answer.
        lease.pinned.extend(pins.iter().copied());
        let unavailable = match lease.client.acquire(pins).await {
            Ok(unavailable) => unavailable,
            Err(error) => {
                if matches!(error, LeaseClientError::NoAnswer(_)) {
                    self.oracle.acquire_unanswered(&lease_id, sent_wall_ms);
                }
                self.release(lease).await;
                return RoundEnd::Finished;
            }
        };
        let leased: Vec<&CompletedSnapshot> =
            latest.iter().filter(|s| !unavailable.contains(&(s.bucket, s.snapshot_id))).collect();
        lease.pinned_any |= !leased.is_empty();
        let files: Vec<String> = leased
            .iter()
            .flat_map(|snapshot| snapshot.files().map(|file| file.remote_path.clone()))
            .collect();
        let crash_at = self
            .prng
            .chance(self.plan.leases.consumer_crash)
            .then(|| self.prng.below(files.len() as u64 + 1) as usize);
        let consumer = format!("consumer n{} ({lease_id})", self.node);
        for (index, path) in files.iter().enumerate() {
            if crash_at == Some(index) {
                return RoundEnd::Crashed;
            }
            let delay_ms = self.prng.range_inclusive(0, self.plan.leases.read_delay_ms_max);
            self.clock.sleep(delay_ms).await;
            let read = self.remote.get(path).await;
            self.oracle.read_checked();
            if let Err(RemoteError::NotFound(_)) = read {
                self.oracle.check_not_found(&consumer, path, sent_wall_ms, duration_ms);
                if self.oracle.remote_lacks(path) {
                    // The tiering round fails (its lease ran out): release and move on.
                    break;
                }
            }
        }
        if crash_at == Some(files.len()) {
            return RoundEnd::Crashed;
        }
        if !self.prng.chance(self.plan.leases.release_skipped) {
            self.release(lease).await;
        }
        RoundEnd::Finished
    }

    /// The latest snapshot of `again` and up to `buckets_per_round_max` more distinct buckets.
    async fn list_latest(&mut self, again: Vec<TableBucket>) -> Vec<CompletedSnapshot> {
        let wanted =
            self.prng.range_inclusive(1, u64::from(self.plan.leases.buckets_per_round_max));
        let mut chosen: Vec<TableBucket> = again;
        for _ in 0..wanted {
            if let Some(bucket) = self.prng.pick(&self.buckets).copied() {
                if !chosen.contains(&bucket) {
                    chosen.push(bucket);
                }
            }
        }
        let mut latest = Vec::new();
        for bucket in chosen {
            let request = Request::GetLatestKvSnapshot { bucket };
            let answer =
                self.rpc.call(COORDINATOR_NODE, request, self.plan.request_timeout_ms).await;
            if let Ok(Response::LatestKvSnapshot(Some(snapshot))) = answer {
                latest.push(*snapshot);
            }
        }
        latest
    }

    /// Releases every bucket the lease may pin; when the coordinator acknowledges, the pins
    /// are gone (and, when no acquire may still land, so is the lease).
    async fn release(&mut self, lease: &mut HeldLease) {
        if lease.pinned.is_empty() {
            return;
        }
        let buckets: Vec<TableBucket> = lease.pinned.keys().copied().collect();
        if lease.client.release(buckets).await.is_err() {
            // Not retried, as the tiering job's tracker: the lease expires.
            return;
        }
        let pins: Vec<(TableBucket, u64)> = std::mem::take(&mut lease.pinned).into_iter().collect();
        let lease_id = lease.client.lease_id().to_string();
        let pinned_any = std::mem::take(&mut lease.pinned_any);
        if self.oracle.released(&lease_id, &pins) && pinned_any {
            if let Some(service) = self.coordinator.upgrade().and_then(|c| c.snapshots()) {
                self.oracle.check_lease_gone(&service, &lease_id);
            }
        }
    }
}
