//! The coordinator's KV-snapshot requests: ids, commits fenced by the bucket's current leader
//! epoch, and the deletion of what the store says may go. Runs in the simulator's coordinator
//! and in the production node alike.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{Clock, RemoteStorage};
use crate::error::{ApiError, ErrorCode};
use crate::message::{Request, Response};
use crate::snapshot::snapshot_store::{Cleanup, SnapshotStore, SnapshotStoreError};
use crate::table_bucket::TableBucket;
use crate::tiering::RemoteLogStore;

/// Deletion attempts per remote object; one that still fails is left to the orphan sweep.
const DELETE_ATTEMPTS_MAX: u32 = 5;
const DELETE_BACKOFF_MS_MIN: u64 = 100;
const DELETE_BACKOFF_MS_MAX: u64 = 5_000;

/// The bucket's current leader epoch as the coordinator knows it; `None` for a bucket it
/// does not know (dropped).
pub type LeaderEpochOf = Arc<dyn Fn(TableBucket) -> Option<u32> + Send + Sync>;

pub struct SnapshotService {
    store: Arc<SnapshotStore>,
    /// The remote-log manifests, when the coordinator records tiered changelogs.
    remote_logs: Option<Arc<RemoteLogStore>>,
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
    leader_epoch_of: LeaderEpochOf,
}

impl SnapshotService {
    pub fn new(
        store: Arc<SnapshotStore>,
        remote: Arc<dyn RemoteStorage>,
        clock: Arc<dyn Clock>,
        leader_epoch_of: LeaderEpochOf,
    ) -> Self {
        SnapshotService { store, remote_logs: None, remote, clock, leader_epoch_of }
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
            _ => return None,
        };
        Some(answer)
    }

    /// Deletes `cleanup`'s remote objects, each retried with backoff on transient failures.
    /// Returns the paths still there (the orphan sweep's).
    pub fn delete(&self, cleanup: Cleanup) -> BoxFuture<'static, Vec<String>> {
        delete_remote_objects(self.remote.clone(), self.clock.clone(), cleanup.paths)
    }
}

fn no_tiering() -> (Response, Cleanup) {
    let error = ApiError::new(
        ErrorCode::UnsupportedVersion,
        "this coordinator records no remote log (changelog tiering is off)",
    );
    (Response::Error(error), Cleanup::default())
}

/// Deletes `paths`, each retried with a doubling backoff on transient failures; returns those
/// that could not be deleted.
pub fn delete_remote_objects(
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
    paths: Vec<String>,
) -> BoxFuture<'static, Vec<String>> {
    async move {
        let mut left = Vec::new();
        for path in paths {
            let mut backoff_ms = DELETE_BACKOFF_MS_MIN;
            for attempt in 1..=DELETE_ATTEMPTS_MAX {
                match remote.delete(&path).await {
                    Ok(()) => break,
                    Err(error) if error.is_retriable() && attempt < DELETE_ATTEMPTS_MAX => {
                        let deadline_ms = clock.now_mono_ms().saturating_add(backoff_ms);
                        clock.sleep_until(deadline_ms).await;
                        backoff_ms = backoff_ms.saturating_mul(2).min(DELETE_BACKOFF_MS_MAX);
                    }
                    Err(error) => {
                        tracing::warn!(path, %error, "a snapshot file is left for the orphan sweep");
                        left.push(path);
                        break;
                    }
                }
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
