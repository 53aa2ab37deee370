//! The tiering job's use of one KV snapshot lease (Fluss PR 3286, `TieringSourceEnumerator`,
//! final design): one lease per enumerator instance, `tiering-<random id>`, 6 hours, shared by
//! every table, never persisted (a dead instance's lease simply expires).
//!
//! - When a table's splits are generated, their `(bucket, snapshot id)` pairs are acquired
//!   (which renews the lease); only the pairs acquired are tracked, the unavailable ones are
//!   logged. An acquire that fails leaves the table untracked and tiering proceeds unprotected.
//! - A table's buckets are released when its tiering finishes or fails (or its split
//!   generation fails), every tracked table's on a reader failover, and at close (per table,
//!   no drop). The tracking entry is removed *before* the release is sent and a failed release
//!   is not retried: the lease expires by itself (the review's choice over a retry queue).

use std::collections::{BTreeMap, BTreeSet};

use crate::env::Entropy;
use crate::lease::kv_snapshot_lease_client::{KvSnapshotLeaseClient, LeaseClientError};
use crate::table_bucket::TableBucket;

/// PR 3286's `KV_SNAPSHOT_LEASE_DURATION_MS`: "tiering rounds are typically minute-level".
pub const TIERING_LEASE_DURATION_MS: u64 = 6 * 60 * 60 * 1_000;

/// `tiering-` and 32 random hex characters (Fluss: `"tiering-" + UUID.randomUUID()`).
pub fn tiering_lease_id(entropy: &dyn Entropy) -> String {
    format!("tiering-{}", entropy.id_hex())
}

#[derive(Debug)]
pub struct TieringLeaseTracker {
    client: KvSnapshotLeaseClient,
    leased_buckets_by_table: BTreeMap<i64, BTreeSet<TableBucket>>,
}

impl TieringLeaseTracker {
    pub fn new(client: KvSnapshotLeaseClient) -> Self {
        TieringLeaseTracker { client, leased_buckets_by_table: BTreeMap::new() }
    }

    /// The buckets tracked as leased, per table.
    pub fn leased(&self) -> &BTreeMap<i64, BTreeSet<TableBucket>> {
        &self.leased_buckets_by_table
    }

    /// A table's splits were generated: acquires their snapshots and tracks the buckets
    /// acquired. Returns the unavailable pairs (empty when the acquire failed: unprotected).
    pub async fn on_splits_generated(
        &mut self,
        table_id: i64,
        snapshots: Vec<(TableBucket, u64)>,
    ) -> Vec<(TableBucket, u64)> {
        assert!(snapshots.iter().all(|(bucket, _)| bucket.table_id == table_id));
        if snapshots.is_empty() {
            return Vec::new();
        }
        let asked: Vec<TableBucket> = snapshots.iter().map(|(bucket, _)| *bucket).collect();
        match self.client.acquire(snapshots).await {
            Ok(unavailable) => {
                if !unavailable.is_empty() {
                    tracing::info!(table_id, ?unavailable, "kv snapshots not available to lease");
                }
                let missing: BTreeSet<TableBucket> = unavailable.iter().map(|(b, _)| *b).collect();
                let acquired = asked.into_iter().filter(|bucket| !missing.contains(bucket));
                let tracked = self.leased_buckets_by_table.entry(table_id).or_default();
                tracked.extend(acquired);
                if tracked.is_empty() {
                    self.leased_buckets_by_table.remove(&table_id);
                }
                unavailable
            }
            Err(error) => {
                let message = "failed to lease kv snapshots; tiering unprotected";
                tracing::error!(%error, table_id, "{message}");
                Vec::new()
            }
        }
    }

    /// The table's tiering finished, failed, or its split generation failed: its buckets are
    /// released (tracking dropped first; a failure is logged, and the lease expires).
    pub async fn release_table(&mut self, table_id: i64) {
        let Some(buckets) = self.leased_buckets_by_table.remove(&table_id) else { return };
        if let Err(error) = self.client.release(buckets.into_iter().collect()).await {
            log_release_failure(table_id, &error);
        }
    }

    /// A reader failover (or the enumerator's close): every tracked table is released.
    pub async fn release_all(&mut self) {
        let table_ids: Vec<i64> = self.leased_buckets_by_table.keys().copied().collect();
        for table_id in table_ids {
            self.release_table(table_id).await;
        }
        assert!(self.leased_buckets_by_table.is_empty());
    }
}

fn log_release_failure(table_id: i64, error: &LeaseClientError) {
    let message = "failed to release kv snapshots; the lease will expire naturally";
    tracing::error!(%error, table_id, "{message}");
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use futures::executor::block_on;
    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::env::{Rpc, RpcError};
    use crate::lease::lease_manager::tests::{open as open_leases, TestClock};
    use crate::message::{NodeId, Request, Response};
    use crate::mutant::Mutants;
    use crate::recovery::test_remote::MemRemote;
    use crate::snapshot::completed_snapshot::snapshot_dir;
    use crate::snapshot::snapshot_service::SnapshotService;
    use crate::snapshot::{CompletedSnapshot, SnapshotFile, SnapshotStore, SnapshotStoreConfig};

    /// The coordinator's service behind an `Rpc`, whose calls can be made to time out.
    struct ServiceRpc {
        service: SnapshotService,
        time_out: AtomicBool,
    }

    impl Rpc for ServiceRpc {
        fn call(
            &self,
            target: NodeId,
            request: Request,
            _timeout_ms: u64,
        ) -> BoxFuture<'static, Result<Response, RpcError>> {
            let answer = if self.time_out.load(Ordering::SeqCst) {
                Err(RpcError::Timeout(target))
            } else {
                Ok(self.service.handle(&request).expect("a lease request").0)
            };
            futures::future::ready(answer).boxed()
        }
    }

    fn bucket(id: i32) -> TableBucket {
        TableBucket::new(7, id)
    }

    fn coordinator() -> Arc<ServiceRpc> {
        let fs = Arc::new(TestFs::default());
        let clock = TestClock::at(1_000);
        let leases = Arc::new(open_leases(fs.clone(), clock.clone(), Mutants::NONE).expect("open"));
        let store = SnapshotStore::open_with_leases(
            fs,
            "kv-snapshots".into(),
            SnapshotStoreConfig::default(),
            leases,
        )
        .expect("open");
        for id in 0..2 {
            let snapshot_id = store.allocate_snapshot_id(bucket(id)).expect("id");
            let manifest = SnapshotFile {
                remote_path: format!("{}/MANIFEST", snapshot_dir(bucket(id), snapshot_id)),
                local_name: "MANIFEST".into(),
                size_bytes: 1,
                crc32c: 1,
                sha256: [1; 32],
            };
            let snapshot = CompletedSnapshot {
                bucket: bucket(id),
                snapshot_id,
                leader_epoch: 1,
                log_offset: 0,
                shared_files: Vec::new(),
                private_files: vec![manifest],
            };
            store.commit(snapshot, 1).expect("commit");
        }
        let remote = Arc::new(MemRemote::new(clock.clone()));
        let service = SnapshotService::new(Arc::new(store), remote, clock, Arc::new(|_| Some(1)));
        Arc::new(ServiceRpc { service, time_out: AtomicBool::new(false) })
    }

    fn tracker(rpc: &Arc<ServiceRpc>) -> TieringLeaseTracker {
        let lease_id = "tiering-0123".to_string();
        let client =
            KvSnapshotLeaseClient::new(rpc.clone(), 0, 1_000, lease_id, TIERING_LEASE_DURATION_MS);
        TieringLeaseTracker::new(client)
    }

    fn lease_count(rpc: &ServiceRpc) -> usize {
        rpc.service.lease_gauges().expect("leases").lease_count
    }

    #[test]
    fn tiering_tracks_only_the_buckets_it_acquired_and_releases_them_when_the_table_is_done() {
        let rpc = coordinator();
        let mut tracker = tracker(&rpc);
        let unavailable =
            block_on(tracker.on_splits_generated(7, vec![(bucket(0), 1), (bucket(1), 9)]));
        assert_eq!(unavailable, vec![(bucket(1), 9)], "snapshot 9 was never committed");
        assert_eq!(tracker.leased().get(&7), Some(&BTreeSet::from([bucket(0)])));
        assert_eq!(rpc.service.lease_gauges().map(|g| g.leased_bucket_count), Some(1));
        block_on(tracker.release_table(7));
        assert!(tracker.leased().is_empty());
        assert_eq!(lease_count(&rpc), 0, "the lease went with its last bucket");
    }

    #[test]
    fn a_failed_release_is_not_retried_and_the_lease_is_left_to_expire() {
        let rpc = coordinator();
        let mut tracker = tracker(&rpc);
        block_on(tracker.on_splits_generated(7, vec![(bucket(0), 1), (bucket(1), 1)]));
        rpc.time_out.store(true, Ordering::SeqCst);
        block_on(tracker.release_all());
        assert!(tracker.leased().is_empty(), "tracking goes before the release is sent");
        rpc.time_out.store(false, Ordering::SeqCst);
        assert_eq!(lease_count(&rpc), 1, "held until it expires");
    }

    #[test]
    fn a_failed_acquire_leaves_the_table_untracked_and_an_empty_acquire_is_refused() {
        let rpc = coordinator();
        let mut tracker = tracker(&rpc);
        rpc.time_out.store(true, Ordering::SeqCst);
        assert!(block_on(tracker.on_splits_generated(7, vec![(bucket(0), 1)])).is_empty());
        assert!(tracker.leased().is_empty(), "tiering proceeds unprotected");
        rpc.time_out.store(false, Ordering::SeqCst);
        let client = KvSnapshotLeaseClient::new(rpc.clone(), 0, 1_000, "x".into(), 10);
        let refused = block_on(client.acquire(Vec::new()));
        assert_eq!(refused, Err(LeaseClientError::NothingToAcquire));
        block_on(client.renew()).expect("a renewal creates the lease");
        assert_eq!(lease_count(&rpc), 1);
        block_on(client.drop_lease()).expect("drop");
        block_on(client.drop_lease()).expect("drop of an unknown lease");
        assert_eq!(lease_count(&rpc), 0);
        assert!(tiering_lease_id(&Counter::default()).starts_with("tiering-"));
    }

    #[derive(Default)]
    struct Counter(std::sync::atomic::AtomicU64);

    impl crate::env::Entropy for Counter {
        fn next_u64(&self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst)
        }
    }
}
