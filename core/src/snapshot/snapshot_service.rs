//! The coordinator's KV-snapshot requests: ids, commits fenced by the bucket's current leader
//! epoch, KV snapshot leases (acquire, release, drop, and the expiry check as a tick), and the
//! deletion of what the store says may go. Runs in the simulator's coordinator and in the
//! production node alike.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use std::collections::BTreeSet;

use crate::env::remote_retry::with_remote_retries;
use crate::env::{Clock, RemoteError, RemoteStorage};
use crate::error::{ApiError, ErrorCode};
use crate::lease::{LeaseError, LeaseExpirySweeper, LeaseGauges};
use crate::message::{Request, Response};
use crate::snapshot::orphan_sweep::{sweep_orphans, SweepOutcome, Uploads};
use crate::snapshot::snapshot_store::{Cleanup, SnapshotStore, SnapshotStoreError};
use crate::sync::Mutex;
use crate::table_bucket::TableBucket;
use crate::tiering::RemoteLogStore;

/// The bucket's current leader epoch as the coordinator knows it; `None` for a bucket it
/// does not know (dropped).
pub type LeaderEpochOf = Arc<dyn Fn(TableBucket) -> Option<u32> + Send + Sync>;

/// Fluss's `validateKvTable` for a table a lease request names: an unknown table is
/// `LeaseError::UnknownTable` (21), one without a primary key `LeaseError::NonPrimaryKeyTable`
/// (20). The coordinator's catalog answers it.
pub type LeaseTableCheck = Arc<dyn Fn(i64) -> Result<(), LeaseError> + Send + Sync>;

pub struct SnapshotService {
    store: Arc<SnapshotStore>,
    /// The remote-log manifests, when the coordinator records tiered changelogs.
    remote_logs: Option<Arc<RemoteLogStore>>,
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
    leader_epoch_of: LeaderEpochOf,
    /// Checks the tables of lease requests; `None`: every table is taken as a KV table.
    lease_table_check: Option<LeaseTableCheck>,
    /// The lease expiry check's schedule, started at the first tick.
    lease_sweeper: Mutex<Option<LeaseExpirySweeper>>,
}

impl SnapshotService {
    pub fn new(
        store: Arc<SnapshotStore>,
        remote: Arc<dyn RemoteStorage>,
        clock: Arc<dyn Clock>,
        leader_epoch_of: LeaderEpochOf,
    ) -> Self {
        SnapshotService {
            store,
            remote_logs: None,
            remote,
            clock,
            leader_epoch_of,
            lease_table_check: None,
            lease_sweeper: Mutex::new(None),
        }
    }

    /// Checks every table a lease request names with `check` (the leases themselves are the
    /// store's: `SnapshotStore::open_with_leases`).
    pub fn with_lease_table_check(mut self, check: LeaseTableCheck) -> Self {
        self.lease_table_check = Some(check);
        self
    }

    /// Also answers the tiering requests, from `remote_logs`.
    pub fn with_remote_logs(mut self, remote_logs: Arc<RemoteLogStore>) -> Self {
        self.remote_logs = Some(remote_logs);
        self
    }

    pub fn remote_logs(&self) -> Option<&Arc<RemoteLogStore>> {
        self.remote_logs.as_ref()
    }

    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    /// The coordinator's clock (the lease expiry loop sleeps on it).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether `request` is one of the snapshot requests [`SnapshotService::handle`] answers.
    pub fn serves(request: &Request) -> bool {
        matches!(
            request,
            Request::AllocateKvSnapshotId { .. }
                | Request::CommitKvSnapshot { .. }
                | Request::GetLatestKvSnapshot { .. }
                | Request::ListKvSnapshots { .. }
                | Request::ReportBrokenKvSnapshot { .. }
                | Request::CommitRemoteLogSegment { .. }
                | Request::GetRemoteLogEnd { .. }
                | Request::GetRemoteLogSegment { .. }
                | Request::ExpireRemoteLog { .. }
                | Request::GetRemoteLogStart { .. }
                | Request::AcquireKvSnapshotLease { .. }
                | Request::ReleaseKvSnapshotLease { .. }
                | Request::DropKvSnapshotLease { .. }
                | Request::ListRemoteLogSegments { .. }
        )
    }

    /// Answers a snapshot request (it syncs the store's file: blocking work), or `None` for
    /// any other request. The answer comes once the
    /// store's new state is durable; the deletions it allows run after the answer, in the
    /// returned future's second part (`cleanup`), which the caller spawns.
    pub fn handle(&self, request: &Request) -> Option<(Response, Cleanup)> {
        let answer = match request {
            Request::AllocateKvSnapshotId { bucket } => {
                match self.store.allocate_snapshot_id(*bucket) {
                    Ok(snapshot_id) => (Response::KvSnapshotId { snapshot_id }, Cleanup::default()),
                    Err(error) => (Response::KvSnapshotRefused(error), Cleanup::default()),
                }
            }
            Request::CommitKvSnapshot { snapshot } => {
                let bucket = snapshot.bucket;
                let Some(leader_epoch) = (self.leader_epoch_of)(bucket) else {
                    let error = SnapshotStoreError::Unknown {
                        bucket,
                        snapshot_id: snapshot.snapshot_id,
                        detail: "the bucket is not served (dropped)".into(),
                    };
                    return Some((Response::KvSnapshotRefused(error), Cleanup::default()));
                };
                match self.store.commit((**snapshot).clone(), leader_epoch) {
                    Ok(cleanup) => (Response::Ok, cleanup),
                    Err(refusal) => (Response::KvSnapshotRefused(refusal.error), refusal.cleanup),
                }
            }
            Request::GetLatestKvSnapshot { bucket } => (
                Response::LatestKvSnapshot(self.store.latest(*bucket).map(Box::new)),
                Cleanup::default(),
            ),
            Request::ListKvSnapshots { bucket } => {
                let mut kept = self.store.kept(*bucket);
                kept.reverse();
                (Response::KeptKvSnapshots(kept), Cleanup::default())
            }
            Request::ReportBrokenKvSnapshot { bucket, snapshot_id } => {
                match self.store.remove_broken(*bucket, *snapshot_id) {
                    Ok(cleanup) => {
                        tracing::warn!(
                            %bucket,
                            snapshot_id,
                            "a KV snapshot reported broken is forgotten"
                        );
                        (Response::Ok, cleanup)
                    }
                    Err(error) => (Response::KvSnapshotRefused(error), Cleanup::default()),
                }
            }
            Request::CommitRemoteLogSegment { segment } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                let leader_epoch = (self.leader_epoch_of)(segment.bucket);
                match remote_logs.commit((**segment).clone(), leader_epoch) {
                    Ok(commit) => (
                        Response::RemoteLogEnd { end_offset: commit.remote_end_offset },
                        Cleanup { paths: commit.unneeded_paths },
                    ),
                    Err(refusal) => (
                        Response::RemoteLogRefused(refusal.error),
                        Cleanup { paths: refusal.unneeded_paths },
                    ),
                }
            }
            Request::GetRemoteLogEnd { bucket } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                let end_offset = remote_logs.remote_end_offset(*bucket);
                (Response::RemoteLogEnd { end_offset }, Cleanup::default())
            }
            Request::ExpireRemoteLog { bucket, leader_epoch, expire_before_ms } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                // What a KV recovery may replay from: the oldest kept snapshot's offset (a
                // broken latest one falls back to an older one), 0 without a snapshot (an
                // empty engine replays the whole changelog). It only grows: a commit is newer
                // than every kept snapshot, and a lease pins only a kept one.
                let retain_from_offset = self
                    .store
                    .kept(*bucket)
                    .iter()
                    .map(|snapshot| snapshot.log_offset)
                    .min()
                    .unwrap_or(0);
                let current_epoch = (self.leader_epoch_of)(*bucket);
                let expired = remote_logs.expire(
                    *bucket,
                    *leader_epoch,
                    current_epoch,
                    *expire_before_ms,
                    retain_from_offset,
                    self.store.mutants(),
                );
                match expired {
                    Ok(expiry) => (
                        Response::RemoteLogStart { start_offset: expiry.start_offset },
                        Cleanup { paths: expiry.unneeded_paths },
                    ),
                    Err(error) => (Response::RemoteLogRefused(error), Cleanup::default()),
                }
            }
            Request::GetRemoteLogStart { bucket } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                let start_offset = remote_logs.remote_start_offset(*bucket);
                (Response::RemoteLogStart { start_offset }, Cleanup::default())
            }
            Request::GetRemoteLogSegment { bucket, offset } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                let manifest = remote_logs.manifest(*bucket);
                let segment = manifest.segment_holding(*offset).cloned().map(Box::new);
                (Response::RemoteLogSegment(segment), Cleanup::default())
            }
            Request::ListRemoteLogSegments { bucket, from_offset, to_offset } => {
                let Some(remote_logs) = &self.remote_logs else { return Some(no_tiering()) };
                let manifest = remote_logs.manifest(*bucket);
                let covering = manifest.segments_covering(*from_offset, *to_offset);
                (Response::RemoteLogSegments(covering), Cleanup::default())
            }
            _ => return self.handle_lease(request),
        };
        Some(answer)
    }

    /// The lease requests of [`SnapshotService::handle`].
    fn handle_lease(&self, request: &Request) -> Option<(Response, Cleanup)> {
        let answer = match request {
            Request::AcquireKvSnapshotLease { lease_id, duration_ms, snapshots } => {
                let acquired = self
                    .check_lease_tables(snapshots.iter().map(|(bucket, _)| bucket.table_id))
                    .and_then(|()| self.store.acquire_lease(lease_id, *duration_ms, snapshots));
                match acquired {
                    Ok(acquired) => (
                        Response::KvSnapshotLeaseAcquired { unavailable: acquired.unavailable },
                        acquired.cleanup,
                    ),
                    Err(error) => lease_refused(error),
                }
            }
            Request::ReleaseKvSnapshotLease { lease_id, buckets } => {
                let released = self
                    .check_lease_tables(buckets.iter().map(|bucket| bucket.table_id))
                    .and_then(|()| self.store.release_lease(lease_id, buckets));
                match released {
                    Ok(cleanup) => (Response::Ok, cleanup),
                    Err(error) => lease_refused(error),
                }
            }
            Request::DropKvSnapshotLease { lease_id } => match self.store.drop_lease(lease_id) {
                Ok(cleanup) => (Response::Ok, cleanup),
                Err(error) => lease_refused(error),
            },
            _ => return None,
        };
        Some(answer)
    }

    /// The lease expiry check's tick (`kv.snapshot.lease.expiration-check-interval`): when the
    /// check is due, drops the expired leases and returns what their snapshots let go of, for
    /// the caller to delete (with [`SnapshotService::delete`]). It syncs files: blocking work.
    /// The coordinator's loop sleeps until [`SnapshotService::next_lease_check_mono_ms`]
    /// between ticks; a tick before then does nothing.
    pub fn tick_lease_expiry(&self) -> Cleanup {
        let Some(leases) = self.store.leases() else { return Cleanup::default() };
        let now_mono_ms = self.clock.now_mono_ms();
        let interval_ms = leases.config().expiration_check_interval_ms;
        let due = {
            let mut sweeper = self.lock_sweeper();
            sweeper
                .get_or_insert_with(|| LeaseExpirySweeper::new(interval_ms, now_mono_ms))
                .tick(now_mono_ms)
        };
        if !due {
            return Cleanup::default();
        }
        self.store.expire_leases()
    }

    /// When the lease expiry check is next due (now, before the first tick); `None` for a
    /// coordinator without leases.
    pub fn next_lease_check_mono_ms(&self) -> Option<u64> {
        self.store.leases()?;
        let sweeper = self.lock_sweeper();
        Some(sweeper.map_or_else(|| self.clock.now_mono_ms(), |s| s.next_check_mono_ms()))
    }

    /// The lease gauges (`kvSnapshotLeaseCount`, `leasedKvSnapshotCount`, and the distinct
    /// leased snapshots); `None` for a coordinator without leases.
    pub fn lease_gauges(&self) -> Option<LeaseGauges> {
        self.store.leases().map(|leases| leases.gauges())
    }

    fn check_lease_tables(&self, table_ids: impl Iterator<Item = i64>) -> Result<(), LeaseError> {
        let Some(check) = &self.lease_table_check else { return Ok(()) };
        table_ids.collect::<BTreeSet<i64>>().into_iter().try_for_each(|table_id| check(table_id))
    }

    /// Poisoning is harmless: the sweeper is a schedule of two numbers, replaced whole.
    fn lock_sweeper(&self) -> crate::sync::MutexGuard<'_, Option<LeaseExpirySweeper>> {
        self.lease_sweeper.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the remote lease copies up to the leases (`lease_remote::mirror_leases`); `None`
    /// when there is nothing to do. The coordinator awaits it before it answers a request (so
    /// that an acknowledged lease change is in remote storage too, unless remote storage
    /// failed), and spawns it after every expiry check (`run_lease_expiry_loop`).
    pub fn mirror_leases(&self) -> Option<BoxFuture<'static, ()>> {
        crate::lease::lease_remote::mirror_leases(self.store.leases()?, &self.remote, &self.clock)
    }

    /// What the coordinator awaits before it answers `request`: for a lease request (the only
    /// requests that change leases, with the expiry check), [`SnapshotService::mirror_leases`];
    /// `None` for any other request (a commit does not wait on remote storage for copies that
    /// a failure left behind: the next expiry check catches up) and when nothing is to do.
    pub fn mirror_before_answering(&self, request: &Request) -> Option<BoxFuture<'static, ()>> {
        let changes_leases = matches!(
            request,
            Request::AcquireKvSnapshotLease { .. }
                | Request::ReleaseKvSnapshotLease { .. }
                | Request::DropKvSnapshotLease { .. }
        );
        if !changes_leases {
            return None;
        }
        self.mirror_leases()
    }

    /// Deletes `cleanup`'s remote objects, each retried with backoff on transient failures.
    /// Returns the paths still there (the orphan sweep's).
    pub fn delete(&self, cleanup: Cleanup) -> BoxFuture<'static, Vec<String>> {
        delete_remote_objects(self.remote.clone(), self.clock.clone(), cleanup.paths)
    }

    /// The orphan sweep (`orphan_sweep::sweep_orphans`) over this service's store and remote
    /// logs: what a crashed incarnation's deletions left.
    pub fn sweep_orphans(
        self: &Arc<Self>,
        uploads: Uploads,
    ) -> BoxFuture<'static, Result<SweepOutcome, RemoteError>> {
        let service = self.clone();
        async move {
            let remote_logs = service.remote_logs.as_deref();
            sweep_orphans(&service.remote, &service.clock, &service.store, remote_logs, uploads)
                .await
        }
        .boxed()
    }
}

fn lease_refused(error: LeaseError) -> (Response, Cleanup) {
    (Response::KvSnapshotLeaseRefused(error), Cleanup::default())
}

fn no_tiering() -> (Response, Cleanup) {
    let error = ApiError::new(
        ErrorCode::UnsupportedVersion,
        "this coordinator records no remote log (changelog tiering is off)",
    );
    (Response::Error(error), Cleanup::default())
}

/// Deletes `paths`, each retried (`remote_retry`); returns those that could not be deleted.
pub fn delete_remote_objects(
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
    paths: Vec<String>,
) -> BoxFuture<'static, Vec<String>> {
    async move {
        let mut left = Vec::new();
        for path in paths {
            if let Err(error) = with_remote_retries(&clock, || remote.delete(&path)).await {
                tracing::warn!(path, %error, "a snapshot file is left for the orphan sweep");
                left.push(path);
            }
        }
        left
    }
    .boxed()
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::lease::lease_manager::tests::{open as open_leases, TestClock};
    use crate::mutant::Mutants;
    use crate::recovery::test_remote::MemRemote;
    use crate::snapshot::SnapshotStoreConfig;

    const KV_TABLE: i64 = 7;
    const LOG_TABLE: i64 = 8;

    fn service() -> (SnapshotService, Arc<TestClock>) {
        let fs = Arc::new(TestFs::default());
        let clock = TestClock::at(1_000);
        let leases = Arc::new(open_leases(fs.clone(), clock.clone(), Mutants::NONE).expect("open"));
        let store = SnapshotStore::open_with_leases(
            fs,
            "coordinator/kv-snapshots".into(),
            SnapshotStoreConfig::default(),
            leases,
        )
        .expect("open");
        let remote = Arc::new(MemRemote::new(clock.clone()));
        let check: LeaseTableCheck = Arc::new(|table_id| match table_id {
            KV_TABLE => Ok(()),
            LOG_TABLE => Err(LeaseError::NonPrimaryKeyTable { table_id }),
            _ => Err(LeaseError::UnknownTable { table_id }),
        });
        let service =
            SnapshotService::new(Arc::new(store), remote, clock.clone(), Arc::new(|_| Some(1)))
                .with_lease_table_check(check);
        (service, clock)
    }

    fn answer(service: &SnapshotService, request: Request) -> Response {
        assert!(SnapshotService::serves(&request));
        service.handle(&request).expect("a lease request is served").0
    }

    fn acquire(lease_id: &str, table_id: i64) -> Request {
        Request::AcquireKvSnapshotLease {
            lease_id: lease_id.into(),
            duration_ms: 100,
            snapshots: vec![(TableBucket::new(table_id, 0), 1)],
        }
    }

    #[test]
    fn lease_requests_are_answered_and_tables_checked_with_flusss_codes() {
        let (service, _clock) = service();
        let unavailable = vec![(TableBucket::new(KV_TABLE, 0), 1)];
        assert_eq!(
            answer(&service, acquire("a", KV_TABLE)),
            Response::KvSnapshotLeaseAcquired { unavailable },
            "nothing committed yet"
        );
        let code = |response: Response| match response {
            Response::KvSnapshotLeaseRefused(error) => error.api_error().code.wire_code(),
            other => panic!("answered {other:?}"),
        };
        assert_eq!(code(answer(&service, acquire("a", LOG_TABLE))), 20);
        assert_eq!(code(answer(&service, acquire("a", 99))), 21);
        let release = Request::ReleaseKvSnapshotLease {
            lease_id: "a".into(),
            buckets: vec![TableBucket::new(99, 0)],
        };
        assert_eq!(code(answer(&service, release)), 21);
        let gauges = service.lease_gauges().expect("leases are kept");
        assert_eq!(gauges.lease_count, 1, "the renewal of the first acquire created it");
        let drop = Request::DropKvSnapshotLease { lease_id: "a".into() };
        assert_eq!(answer(&service, drop.clone()), Response::Ok);
        assert_eq!(answer(&service, drop), Response::Ok, "an unknown lease");
        assert_eq!(service.lease_gauges().map(|g| g.lease_count), Some(0));
    }

    #[test]
    fn the_expiry_check_runs_at_the_first_tick_and_then_once_per_interval() {
        let (service, clock) = service();
        assert_eq!(service.next_lease_check_mono_ms(), Some(1_000));
        answer(&service, acquire("a", KV_TABLE));
        assert!(service.tick_lease_expiry().is_empty());
        let interval_ms = crate::lease::EXPIRATION_CHECK_INTERVAL_MS_DEFAULT;
        assert_eq!(service.next_lease_check_mono_ms(), Some(1_000 + interval_ms));
        clock.set(5_000);
        service.tick_lease_expiry();
        assert_eq!(service.lease_gauges().map(|g| g.lease_count), Some(1), "not due yet");
        clock.set(1_000 + interval_ms);
        service.tick_lease_expiry();
        assert_eq!(service.lease_gauges().map(|g| g.lease_count), Some(0), "expired");
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod recovery_request_tests {
    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::recovery::test_remote::MemRemote;
    use crate::scan::kv_scanner::testing::TestRuntime;
    use crate::snapshot::completed_snapshot::{snapshot_dir, CompletedSnapshot, SnapshotFile};
    use crate::snapshot::snapshot_store::SnapshotStoreConfig;
    use crate::tiering::{RemoteLogSegment, RemoteLogStore};

    fn bucket() -> TableBucket {
        TableBucket::new(1, 0)
    }

    fn snapshot(snapshot_id: u64) -> CompletedSnapshot {
        let remote_path = format!("{}/MANIFEST", snapshot_dir(bucket(), snapshot_id));
        let file = SnapshotFile {
            remote_path,
            local_name: "MANIFEST".into(),
            size_bytes: 1,
            crc32c: 0,
            sha256: [snapshot_id as u8; 32],
        };
        CompletedSnapshot {
            bucket: bucket(),
            snapshot_id,
            leader_epoch: 1,
            log_offset: snapshot_id * 10,
            shared_files: Vec::new(),
            private_files: vec![file],
        }
    }

    fn service() -> SnapshotService {
        let runtime = TestRuntime::new();
        let fs = Arc::new(TestFs::default());
        let store = SnapshotStore::open(
            fs.clone(),
            "coordinator/kv".into(),
            SnapshotStoreConfig::default(),
        );
        let remote_logs = RemoteLogStore::open(fs, "coordinator/remote-log".into()).unwrap();
        let epochs: LeaderEpochOf = Arc::new(|_| Some(1));
        let remote = Arc::new(MemRemote::new(runtime.clock()));
        SnapshotService::new(Arc::new(store.unwrap()), remote, runtime.clock(), epochs)
            .with_remote_logs(Arc::new(remote_logs))
    }

    fn answer(service: &SnapshotService, request: Request) -> (Response, Cleanup) {
        assert!(SnapshotService::serves(&request), "{}", request.kind());
        service.handle(&request).expect("a snapshot request")
    }

    #[test]
    fn kept_snapshots_are_listed_newest_first_and_a_broken_one_is_forgotten_with_its_files() {
        let service = service();
        for snapshot_id in 1..=2 {
            let allocate = Request::AllocateKvSnapshotId { bucket: bucket() };
            assert_eq!(answer(&service, allocate).0, Response::KvSnapshotId { snapshot_id });
            let commit = Request::CommitKvSnapshot { snapshot: Box::new(snapshot(snapshot_id)) };
            assert_eq!(answer(&service, commit).0, Response::Ok);
        }
        let list = || answer(&service, Request::ListKvSnapshots { bucket: bucket() }).0;
        assert_eq!(list(), Response::KeptKvSnapshots(vec![snapshot(2), snapshot(1)]));
        let report = || Request::ReportBrokenKvSnapshot { bucket: bucket(), snapshot_id: 2 };
        let (response, cleanup) = answer(&service, report());
        assert_eq!(response, Response::Ok);
        let mut paths = vec![
            snapshot(2).private_files[0].remote_path.clone(),
            format!(
                "{}/{}",
                snapshot_dir(bucket(), 2),
                crate::snapshot::completed_snapshot::METADATA_FILE_NAME
            ),
        ];
        paths.sort();
        assert_eq!(cleanup.paths, paths);
        assert_eq!(list(), Response::KeptKvSnapshots(vec![snapshot(1)]));
        // A report made again (its answer was lost) changes nothing.
        assert_eq!(answer(&service, report()), (Response::Ok, Cleanup::default()));
        let latest = answer(&service, Request::GetLatestKvSnapshot { bucket: bucket() }).0;
        assert_eq!(latest, Response::LatestKvSnapshot(Some(Box::new(snapshot(1)))));
    }

    #[test]
    fn the_segments_covering_a_range_are_listed_from_the_manifest() {
        let service = service();
        let segment = |start_offset, end_offset| RemoteLogSegment {
            bucket: bucket(),
            leader_epoch: 1,
            start_offset,
            end_offset,
            size_bytes: 1,
            max_timestamp_ms: 0,
            sha256: [0; 32],
        };
        for (start, end) in [(0, 5), (5, 9)] {
            let commit = Request::CommitRemoteLogSegment { segment: Box::new(segment(start, end)) };
            assert!(matches!(answer(&service, commit).0, Response::RemoteLogEnd { .. }));
        }
        let list = |from_offset, to_offset| {
            answer(
                &service,
                Request::ListRemoteLogSegments { bucket: bucket(), from_offset, to_offset },
            )
            .0
        };
        assert_eq!(list(3, 7), Response::RemoteLogSegments(vec![segment(0, 5), segment(5, 9)]));
        assert_eq!(list(9, 12), Response::RemoteLogSegments(vec![]));
    }
}
