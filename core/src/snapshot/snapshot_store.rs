//! The coordinator's record of every bucket's completed KV snapshots (Fluss's
//! `CompletedSnapshotStore`, one per bucket, and its shared-file registry), persisted on the
//! coordinator's own disk.
//!
//! Rules, each in one place:
//! - **Ids.** [`SnapshotStore::allocate_snapshot_id`] hands out increasing ids per bucket, the
//!   new high mark written durably before the id is returned, so an id is never reused across
//!   coordinator crashes.
//! - **Commit.** A snapshot is accepted only from the bucket's current leader epoch, only with
//!   an id that was allocated and is above every id committed or refused before
//!   ([`BucketSnapshots::floor_snapshot_id`]). A commit is idempotent: the same snapshot
//!   committed again is accepted again, so a leader whose commit timed out asks by committing
//!   again, and a commit that arrives late, after a newer one, is refused.
//! - **Reuse.** A snapshot may reuse a shared file uploaded by an earlier one only while a
//!   kept snapshot lists it; otherwise the file may already be deleted and the commit is
//!   refused.
//! - **Retention** ([`SnapshotStore::retain`], the one rule). The latest `num_retained`
//!   snapshots are kept, and so is every older one that a KV snapshot lease pins (Fluss's
//!   "still in use" snapshots); the others are dropped. "Kept" is both: retained ∪ leased,
//!   which is what ListKvSnapshots answers, what a commit may reuse files of, and what the
//!   orphan sweep spares. Retention runs at every commit and, unlike Fluss (which waits for
//!   the bucket's next commit), as soon as a lease lets go of a snapshot (release, drop,
//!   expiry, or a re-acquire that moves the pin).
//! - **Leases** ([`SnapshotStore::acquire_lease`] and its siblings). Every lease operation
//!   runs under the store's lock, in which retention decides: a pin and a retention
//!   decision never interleave, so a snapshot found kept when it is pinned is not dropped
//!   by a commit deciding at the same time. The lease manager makes a change durable before
//!   it changes the counts retention reads; retention then persists the bucket's new record
//!   before its cleanup is handed out.
//! - **Which files may go.** A file may be deleted only when no kept snapshot lists it
//!   ([`Cleanup`] is computed by the store and by nothing else). The caller deletes the
//!   listed remote objects after the new state is durable; a deletion that fails leaves an
//!   orphan that [`SnapshotStore::orphans`] finds later.
//! - **Orphans.** A remote object under a bucket's directory that no kept snapshot lists and
//!   whose snapshot id is below the floor can never be needed: no commit of that id can be
//!   accepted any more. Objects of higher ids may belong to an upload in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::byte_reader::{ByteReader, ByteWriter};
use crate::env::{FsError, LocalFs, RemoteObject};
use crate::lease::lease_config::LEASED_SNAPSHOTS_PER_BUCKET_MAX;
use crate::lease::{KvSnapshotLeaseManager, LeaseError, Unpinned};
use crate::mutant::{Mutant, Mutants};
use crate::snapshot::completed_snapshot::{
    decode_bucket, encode_bucket, frame_with_magic, snapshot_dir, snapshot_id_of_path,
    unframe_with_magic, CompletedSnapshot, SnapshotDecodeError, METADATA_FILE_NAME,
};
use crate::sync::{Mutex, MutexGuard};
use crate::table_bucket::TableBucket;

/// Fluss's `kv.snapshot.num-retained`.
pub const NUM_RETAINED_DEFAULT: usize = 2;
/// A bucket's file holds at most this many snapshots (retained ones, and leased ones).
const BUCKET_SNAPSHOTS_MAX: usize = 1_024;
/// `num_retained` at most: a bucket keeps its retained snapshots plus at most
/// `LEASED_SNAPSHOTS_PER_BUCKET_MAX` leased ones, and the new one a commit adds.
pub const NUM_RETAINED_MAX: usize = BUCKET_SNAPSHOTS_MAX - LEASED_SNAPSHOTS_PER_BUCKET_MAX - 1;
const MAGIC: &[u8; 8] = b"KVTSNAPS";
const BUCKET_FILE_SUFFIX: &str = ".snapshots";
const TEMP_SUFFIX: &str = ".tmp";
/// Snapshot ids start here, so 0 never names a snapshot.
const FIRST_SNAPSHOT_ID: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStoreConfig {
    /// How many of a bucket's latest snapshots are kept (at least 1).
    pub num_retained: usize,
    pub mutants: Mutants,
}

impl Default for SnapshotStoreConfig {
    fn default() -> Self {
        SnapshotStoreConfig { num_retained: NUM_RETAINED_DEFAULT, mutants: Mutants::NONE }
    }
}

/// Why the store refused or failed, and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotStoreError {
    /// The snapshot was taken in a term that is over: never retried; its files are in the
    /// refusal's cleanup.
    #[error("snapshot {snapshot_id} of {bucket} was taken at leader epoch {snapshot_epoch}, the bucket's is {leader_epoch}")]
    DeposedLeader { bucket: TableBucket, snapshot_id: u64, snapshot_epoch: u32, leader_epoch: u32 },
    /// A newer snapshot was committed, or this one was given up: never retried.
    #[error("snapshot {snapshot_id} of {bucket} is below the bucket's floor {floor_snapshot_id}")]
    Superseded { bucket: TableBucket, snapshot_id: u64, floor_snapshot_id: u64 },
    /// The id was never allocated, or the same id came with other content: a bug or damage.
    #[error("snapshot {snapshot_id} of {bucket} is unknown: {detail}")]
    Unknown { bucket: TableBucket, snapshot_id: u64, detail: String },
    /// The snapshot reuses a file of an earlier snapshot that no kept snapshot lists any
    /// more (it may be deleted): never retried; the next snapshot reuses from the latest.
    #[error("snapshot {snapshot_id} of {bucket} is refused: {detail}")]
    ReusedFileGone { bucket: TableBucket, snapshot_id: u64, detail: String },
    /// The store's disk failed; nothing changed. Retriable.
    #[error("snapshot store I/O failure: {0}")]
    Io(FsError),
    /// A bucket file failed its checks when the store was opened.
    #[error("snapshot store file {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    /// The store cannot run with this configuration (`kv.snapshot.num-retained` out of range).
    #[error("invalid snapshot store configuration: {detail}")]
    InvalidConfig { detail: String },
}

impl SnapshotStoreError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, SnapshotStoreError::Io(_))
    }
}

/// Remote objects the caller deletes once the store's new state is durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Remote paths, sorted, none listed by a kept snapshot.
    pub paths: Vec<String>,
}

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// A commit's answer: accepted (with what the retention dropped), or refused (with the
/// refused snapshot's files that nothing kept needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRefusal {
    pub error: SnapshotStoreError,
    pub cleanup: Cleanup,
}

/// An acquire's answer: the requested pairs that are not kept (never committed, dropped by
/// retention, or of a bucket without snapshots), which the lease does not pin (Fluss answers
/// none and pins them all); and what the pins it moved let go of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseAcquired {
    pub unavailable: Vec<(TableBucket, u64)>,
    pub cleanup: Cleanup,
}

/// A kept snapshot's id and `log_offset`, without its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub snapshot_id: u64,
    pub log_offset: u64,
}

/// One bucket's snapshots, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSnapshots {
    /// The next id to hand out; every id below was handed out.
    pub next_snapshot_id: u64,
    /// Commits of ids below it are refused: a newer snapshot was committed.
    pub floor_snapshot_id: u64,
    /// Kept snapshots, oldest first; the last is the latest.
    pub kept: Vec<CompletedSnapshot>,
}

impl BucketSnapshots {
    fn new() -> Self {
        BucketSnapshots {
            next_snapshot_id: FIRST_SNAPSHOT_ID,
            floor_snapshot_id: FIRST_SNAPSHOT_ID,
            kept: Vec::new(),
        }
    }

    /// Every remote path a kept snapshot needs, its metadata file included.
    pub fn needed_paths(&self) -> BTreeSet<String> {
        let mut paths = BTreeSet::new();
        for snapshot in &self.kept {
            paths.extend(snapshot_paths(snapshot));
        }
        paths
    }

    /// Of `snapshot`'s paths, those that no kept snapshot needs.
    fn unneeded_paths_of(&self, snapshots: &[CompletedSnapshot]) -> Cleanup {
        let needed = self.needed_paths();
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for snapshot in snapshots {
            paths.extend(snapshot_paths(snapshot).filter(|path| !needed.contains(path)));
        }
        Cleanup { paths: paths.into_iter().collect() }
    }
}

/// The paths of a snapshot's files and its metadata file.
fn snapshot_paths(snapshot: &CompletedSnapshot) -> impl Iterator<Item = String> + '_ {
    snapshot.files().map(|file| file.remote_path.clone()).chain(std::iter::once(format!(
        "{}/{METADATA_FILE_NAME}",
        snapshot_dir(snapshot.bucket, snapshot.snapshot_id)
    )))
}

/// Every bucket's snapshots, persisted one file per bucket under one directory.
pub struct SnapshotStore {
    fs: Arc<dyn LocalFs>,
    dir: String,
    config: SnapshotStoreConfig,
    /// The leases retention respects; `None`: a store without leases (retention keeps the
    /// latest `num_retained` only).
    leases: Option<Arc<KvSnapshotLeaseManager>>,
    buckets: Mutex<BTreeMap<TableBucket, BucketSnapshots>>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SnapshotStore {
    /// Loads every bucket file under `dir` (created if missing). A leftover temp file (a crash
    /// before its rename) is ignored: the bucket file it was to replace is still whole. A
    /// damaged bucket file refuses the open.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        dir: String,
        config: SnapshotStoreConfig,
    ) -> Result<SnapshotStore, SnapshotStoreError> {
        SnapshotStore::open_inner(fs, dir, config, None)
    }

    /// [`SnapshotStore::open`] with the leases its retention respects (opened first: a
    /// snapshot a lease pins outside the retention window is in the store's file, and stays).
    /// The caller runs [`SnapshotStore::apply_retention`] once at start-up, for the snapshots
    /// whose last lease went just before a crash.
    pub fn open_with_leases(
        fs: Arc<dyn LocalFs>,
        dir: String,
        config: SnapshotStoreConfig,
        leases: Arc<KvSnapshotLeaseManager>,
    ) -> Result<SnapshotStore, SnapshotStoreError> {
        SnapshotStore::open_inner(fs, dir, config, Some(leases))
    }

    fn open_inner(
        fs: Arc<dyn LocalFs>,
        dir: String,
        config: SnapshotStoreConfig,
        leases: Option<Arc<KvSnapshotLeaseManager>>,
    ) -> Result<SnapshotStore, SnapshotStoreError> {
        if config.num_retained == 0 || config.num_retained > NUM_RETAINED_MAX {
            let detail =
                format!("num_retained {} is not in 1..={NUM_RETAINED_MAX}", config.num_retained);
            return Err(SnapshotStoreError::InvalidConfig { detail });
        }
        fs.create_dir_all(&dir).map_err(SnapshotStoreError::Io)?;
        let mut buckets = BTreeMap::new();
        for name in fs.list_dir(&dir).map_err(SnapshotStoreError::Io)? {
            if !name.ends_with(BUCKET_FILE_SUFFIX) {
                continue;
            }
            let path = format!("{dir}/{name}");
            let bytes = fs.read(&path).map_err(SnapshotStoreError::Io)?;
            let (bucket, snapshots) = decode_bucket_file(&bytes).map_err(|error| {
                SnapshotStoreError::Corrupt { path: path.clone(), detail: error.to_string() }
            })?;
            if name != bucket_file_name(bucket) {
                return Err(SnapshotStoreError::Corrupt {
                    path,
                    detail: format!("holds {bucket}"),
                });
            }
            buckets.insert(bucket, snapshots);
        }
        Ok(SnapshotStore { fs, dir, config, leases, buckets: Mutex::new(buckets) })
    }

    /// A new snapshot id for `bucket`, durable before it is returned.
    pub fn allocate_snapshot_id(&self, bucket: TableBucket) -> Result<u64, SnapshotStoreError> {
        let mut buckets = self.lock();
        let mut next = buckets.get(&bucket).cloned().unwrap_or_else(BucketSnapshots::new);
        let snapshot_id = next.next_snapshot_id;
        next.next_snapshot_id += 1;
        self.persist(&mut buckets, bucket, next)?;
        Ok(snapshot_id)
    }

    /// Commits `snapshot` if the bucket's leader epoch is still `leader_epoch` (the
    /// coordinator's current one) and nothing newer was committed; see the module's rules.
    pub fn commit(
        &self,
        snapshot: CompletedSnapshot,
        leader_epoch: u32,
    ) -> Result<Cleanup, CommitRefusal> {
        let bucket = snapshot.bucket;
        let snapshot_id = snapshot.snapshot_id;
        let mut buckets = self.lock();
        let current = buckets.get(&bucket).cloned().unwrap_or_else(BucketSnapshots::new);
        let refuse = |error: SnapshotStoreError, current: &BucketSnapshots| CommitRefusal {
            error,
            cleanup: current.unneeded_paths_of(std::slice::from_ref(&snapshot)),
        };
        if let Some(committed) = current.kept.iter().find(|kept| kept.snapshot_id == snapshot_id) {
            if *committed == snapshot {
                return Ok(Cleanup::default());
            }
            let detail = "committed before with other content".to_string();
            // Nothing of it may go: the kept snapshot of that id may share its paths.
            return Err(CommitRefusal {
                error: SnapshotStoreError::Unknown { bucket, snapshot_id, detail },
                cleanup: Cleanup::default(),
            });
        }
        let deposed_accepted = self.config.mutants.is_on(Mutant::SnapshotDeposedLeaderAccepted);
        if snapshot.leader_epoch != leader_epoch && !deposed_accepted {
            let error = SnapshotStoreError::DeposedLeader {
                bucket,
                snapshot_id,
                snapshot_epoch: snapshot.leader_epoch,
                leader_epoch,
            };
            return Err(refuse(error, &current));
        }
        if snapshot_id >= current.next_snapshot_id {
            let detail = format!("ids below {} were handed out", current.next_snapshot_id);
            let error = SnapshotStoreError::Unknown { bucket, snapshot_id, detail };
            return Err(refuse(error, &current));
        }
        if snapshot_id < current.floor_snapshot_id {
            let floor_snapshot_id = current.floor_snapshot_id;
            let error = SnapshotStoreError::Superseded { bucket, snapshot_id, floor_snapshot_id };
            return Err(refuse(error, &current));
        }
        // A file uploaded by an earlier snapshot exists only while a kept snapshot lists it:
        // the one it was reused from may have been dropped (or found broken) since.
        let needed = current.needed_paths();
        if let Some(gone) = snapshot.shared_files.iter().find(|file| {
            snapshot_id_of_path(bucket, &file.remote_path) != Some(snapshot_id)
                && !needed.contains(&file.remote_path)
        }) {
            let detail = format!("it reuses {}, which no kept snapshot holds", gone.remote_path);
            let error = SnapshotStoreError::ReusedFileGone { bucket, snapshot_id, detail };
            return Err(refuse(error, &current));
        }
        let mut next = current.clone();
        next.floor_snapshot_id = snapshot_id + 1;
        next.kept.push(snapshot);
        let dropped = self.retain(bucket, &mut next);
        let cleanup = if self.config.mutants.is_on(Mutant::SnapshotKeptFileDeleted) {
            BucketSnapshots::new().unneeded_paths_of(&dropped)
        } else {
            next.unneeded_paths_of(&dropped)
        };
        self.persist(&mut buckets, bucket, next)
            .map_err(|error| CommitRefusal { error, cleanup: Cleanup::default() })?;
        Ok(cleanup)
    }

    /// Removes a snapshot found broken (files missing or damaged), so that the previous one
    /// is used (Fluss #3790). Its id stays below the floor: it never comes back.
    pub fn remove_broken(
        &self,
        bucket: TableBucket,
        snapshot_id: u64,
    ) -> Result<Cleanup, SnapshotStoreError> {
        let mut buckets = self.lock();
        let Some(current) = buckets.get(&bucket).cloned() else { return Ok(Cleanup::default()) };
        let mut next = current.clone();
        let (removed, kept): (Vec<_>, Vec<_>) =
            next.kept.into_iter().partition(|kept| kept.snapshot_id == snapshot_id);
        next.kept = kept;
        if removed.is_empty() {
            return Ok(Cleanup::default());
        }
        let cleanup = next.unneeded_paths_of(&removed);
        self.persist(&mut buckets, bucket, next)?;
        Ok(cleanup)
    }

    /// Forgets a dropped bucket (its table or partition was dropped): every file of its
    /// snapshots goes.
    pub fn drop_bucket(&self, bucket: TableBucket) -> Result<Cleanup, SnapshotStoreError> {
        let mut buckets = self.lock();
        let Some(current) = buckets.get(&bucket).cloned() else { return Ok(Cleanup::default()) };
        let cleanup = BucketSnapshots::new().unneeded_paths_of(&current.kept);
        self.fs
            .remove_file(&format!("{}/{}", self.dir, bucket_file_name(bucket)))
            .map_err(SnapshotStoreError::Io)?;
        buckets.remove(&bucket);
        Ok(cleanup)
    }

    /// The leases retention respects, if the store keeps any.
    pub fn leases(&self) -> Option<&Arc<KvSnapshotLeaseManager>> {
        self.leases.as_ref()
    }

    /// Pins, under `lease_id`, each requested `(bucket, snapshot id)` that is kept, and
    /// renews the lease to now + `duration_ms` (see [`KvSnapshotLeaseManager::acquire`]).
    /// The others are answered unavailable and not pinned (the bucket's earlier pin in the
    /// lease, if any, stays). Only the requested buckets are looked up. A pin the acquire
    /// moves away lets go of its snapshot at once.
    pub fn acquire_lease(
        &self,
        lease_id: &str,
        duration_ms: u64,
        pins: &[(TableBucket, u64)],
    ) -> Result<LeaseAcquired, LeaseError> {
        let leases = self.leases.as_ref().ok_or(LeaseError::NotServed)?;
        let buckets_max = leases.config().buckets_per_lease_max;
        if pins.len() > buckets_max {
            let lease_id = lease_id.to_string();
            return Err(LeaseError::TooManyBuckets { lease_id, buckets: pins.len(), buckets_max });
        }
        let mut buckets = self.lock();
        let (available, unavailable): (Vec<_>, Vec<_>) =
            pins.iter().partition(|(bucket, snapshot_id)| {
                buckets.get(bucket).is_some_and(|record| {
                    record.kept.iter().any(|kept| kept.snapshot_id == *snapshot_id)
                })
            });
        let unpinned = leases.acquire(lease_id, duration_ms, &available)?;
        let cleanup = self.retain_unpinned(&mut buckets, &unpinned);
        Ok(LeaseAcquired { unavailable, cleanup })
    }

    /// Unpins `buckets` of `lease_id` (see [`KvSnapshotLeaseManager::release`]); the
    /// snapshots no lease holds any more and that are outside the retention window go.
    pub fn release_lease(
        &self,
        lease_id: &str,
        buckets: &[TableBucket],
    ) -> Result<Cleanup, LeaseError> {
        let leases = self.leases.as_ref().ok_or(LeaseError::NotServed)?;
        let mut records = self.lock();
        let unpinned = leases.release(lease_id, buckets)?;
        Ok(self.retain_unpinned(&mut records, &unpinned))
    }

    /// Drops `lease_id` (unknown: a no-op), as [`SnapshotStore::release_lease`] of every pin.
    pub fn drop_lease(&self, lease_id: &str) -> Result<Cleanup, LeaseError> {
        let leases = self.leases.as_ref().ok_or(LeaseError::NotServed)?;
        let mut records = self.lock();
        let unpinned = leases.drop_lease(lease_id)?;
        Ok(self.retain_unpinned(&mut records, &unpinned))
    }

    /// Drops the expired leases (the lease expiry check), as [`SnapshotStore::drop_lease`].
    pub fn expire_leases(&self) -> Cleanup {
        let Some(leases) = &self.leases else { return Cleanup::default() };
        let mut records = self.lock();
        let expired = leases.expire();
        if !expired.lease_ids.is_empty() {
            tracing::info!(leases = ?expired.lease_ids, "kv snapshot leases expired");
        }
        self.retain_unpinned(&mut records, &expired.unpinned)
    }

    /// Runs retention over every bucket: at start-up, for the snapshots whose last lease went
    /// just before a crash, before their bucket's retention ran. A bucket whose record cannot
    /// be written keeps its snapshots until its next retention (as after a lease change); the
    /// others' cleanup is returned all the same (failing the call on the first such bucket
    /// lost the cleanup of the buckets already retained: their files were left to the orphan
    /// sweep).
    pub fn apply_retention(&self) -> Cleanup {
        let mut buckets = self.lock();
        let mut paths = BTreeSet::new();
        for bucket in buckets.keys().copied().collect::<Vec<_>>() {
            match self.retain_bucket(&mut buckets, bucket) {
                Ok(cleanup) => paths.extend(cleanup.paths),
                Err(error) => tracing::warn!(%error, %bucket, "start-up retention failed"),
            }
        }
        Cleanup { paths: paths.into_iter().collect() }
    }

    /// The bucket's latest committed snapshot.
    pub fn latest(&self, bucket: TableBucket) -> Option<CompletedSnapshot> {
        self.lock().get(&bucket).and_then(|snapshots| snapshots.kept.last().cloned())
    }

    /// The mutants the store was opened with (the coordinator's other rules read them too).
    pub fn mutants(&self) -> Mutants {
        self.config.mutants
    }

    /// The bucket's kept snapshots (retained and leased), oldest first.
    pub fn kept(&self, bucket: TableBucket) -> Vec<CompletedSnapshot> {
        self.lock().get(&bucket).map(|snapshots| snapshots.kept.clone()).unwrap_or_default()
    }

    /// The id and log offset of each of the bucket's kept snapshots, oldest first (without
    /// their file lists): the retained ones and those a lease pins (ListKvSnapshots).
    pub fn kept_points(&self, bucket: TableBucket) -> Vec<SnapshotPoint> {
        self.lock()
            .get(&bucket)
            .map(|snapshots| {
                snapshots
                    .kept
                    .iter()
                    .map(|kept| SnapshotPoint {
                        snapshot_id: kept.snapshot_id,
                        log_offset: kept.log_offset,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bucket's kept snapshot `snapshot_id`; `None` when it is not kept (never
    /// committed, or dropped by retention).
    pub fn kept_snapshot(
        &self,
        bucket: TableBucket,
        snapshot_id: u64,
    ) -> Option<CompletedSnapshot> {
        let buckets = self.lock();
        let snapshots = buckets.get(&bucket)?;
        snapshots.kept.iter().find(|kept| kept.snapshot_id == snapshot_id).cloned()
    }

    /// The bucket's whole record (ids included), for checks.
    pub fn bucket(&self, bucket: TableBucket) -> Option<BucketSnapshots> {
        self.lock().get(&bucket).cloned()
    }

    /// Buckets with a record, in order.
    pub fn buckets(&self) -> Vec<TableBucket> {
        self.lock().keys().copied().collect()
    }

    /// Of `listed` (the remote objects under the bucket's directory), those no commit can
    /// need any more: not listed by a kept snapshot, of an id below the floor (or of no
    /// snapshot at all). Sorted.
    pub fn orphans(&self, bucket: TableBucket, listed: &[RemoteObject]) -> Vec<String> {
        let buckets = self.lock();
        let record = buckets.get(&bucket).cloned().unwrap_or_else(BucketSnapshots::new);
        let needed = record.needed_paths();
        let mut orphans: Vec<String> = listed
            .iter()
            .map(|object| &object.path)
            .filter(|path| !needed.contains(*path))
            .filter(|path| {
                snapshot_id_of_path(bucket, path).is_none_or(|id| id < record.floor_snapshot_id)
            })
            .cloned()
            .collect();
        orphans.sort();
        orphans
    }

    /// Of every object listed under the store's `kv/` root, those no commit can need any more:
    /// [`SnapshotStore::orphans`] per bucket, and everything of a bucket without a record (a
    /// dropped one: a bucket's record exists from its first snapshot id on). With
    /// `uploads_in_flight` false (no leader is uploading: at the coordinator's start before
    /// any bucket is led, or at quiescence), every object no kept snapshot needs. Sorted.
    pub fn sweep_orphans(&self, listed: &[RemoteObject], uploads_in_flight: bool) -> Vec<String> {
        let mut by_bucket: BTreeMap<Option<TableBucket>, Vec<RemoteObject>> = BTreeMap::new();
        for object in listed {
            let bucket = object
                .path
                .strip_prefix("kv/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(dir, _)| TableBucket::from_dir_name(dir));
            by_bucket.entry(bucket).or_default().push(object.clone());
        }
        let known = self.buckets();
        let mut orphans = Vec::new();
        for (bucket, objects) in by_bucket {
            match bucket.filter(|bucket| known.contains(bucket)) {
                Some(bucket) if uploads_in_flight => orphans.extend(self.orphans(bucket, &objects)),
                Some(bucket) => {
                    let needed = self.bucket(bucket).map(|b| b.needed_paths()).unwrap_or_default();
                    orphans.extend(
                        objects
                            .into_iter()
                            .map(|object| object.path)
                            .filter(|p| !needed.contains(p)),
                    );
                }
                None => orphans.extend(objects.into_iter().map(|object| object.path)),
            }
        }
        orphans.sort();
        orphans
    }

    /// The one retention rule: of `next`'s kept snapshots, the latest `num_retained` stay and
    /// so does every older one a lease pins; the rest are dropped and returned.
    fn retain(&self, bucket: TableBucket, next: &mut BucketSnapshots) -> Vec<CompletedSnapshot> {
        let leased = self
            .leases
            .as_ref()
            .map(|leases| leases.leased_snapshot_ids(bucket))
            .unwrap_or_default();
        let window_start = next.kept.len().saturating_sub(self.config.num_retained);
        let (kept, dropped): (Vec<_>, Vec<_>) =
            next.kept.drain(..).enumerate().partition(|(index, snapshot)| {
                *index >= window_start || leased.contains(&snapshot.snapshot_id)
            });
        next.kept = kept.into_iter().map(|(_, snapshot)| snapshot).collect();
        assert!(next.kept.len() >= self.config.num_retained.min(next.kept.len() + dropped.len()));
        dropped.into_iter().map(|(_, snapshot)| snapshot).collect()
    }

    /// Retention over one bucket's record, persisted when it drops anything.
    fn retain_bucket(
        &self,
        buckets: &mut BTreeMap<TableBucket, BucketSnapshots>,
        bucket: TableBucket,
    ) -> Result<Cleanup, SnapshotStoreError> {
        let Some(current) = buckets.get(&bucket) else { return Ok(Cleanup::default()) };
        let mut next = current.clone();
        let dropped = self.retain(bucket, &mut next);
        if dropped.is_empty() {
            return Ok(Cleanup::default());
        }
        let cleanup = next.unneeded_paths_of(&dropped);
        self.persist(buckets, bucket, next)?;
        Ok(cleanup)
    }

    /// Retention over the buckets of `unpinned` (what a lease operation let go of), once the
    /// lease's change is durable. A bucket whose record cannot be written keeps its
    /// snapshots until its next retention (a commit, another lease operation, or the
    /// start-up's [`SnapshotStore::apply_retention`]): the lease operation itself succeeded.
    fn retain_unpinned(
        &self,
        buckets: &mut BTreeMap<TableBucket, BucketSnapshots>,
        unpinned: &[Unpinned],
    ) -> Cleanup {
        let touched: BTreeSet<TableBucket> = unpinned.iter().map(|(bucket, _)| *bucket).collect();
        let mut paths = BTreeSet::new();
        for bucket in touched {
            match self.retain_bucket(buckets, bucket) {
                Ok(cleanup) => paths.extend(cleanup.paths),
                Err(error) => {
                    tracing::warn!(%error, %bucket, "retention after a lease change failed")
                }
            }
        }
        Cleanup { paths: paths.into_iter().collect() }
    }

    /// Writes `next` as the bucket's file (temp, sync, rename: the file on disk is the old
    /// record or the new one), then makes it the state in memory. On failure nothing changes.
    fn persist(
        &self,
        buckets: &mut BTreeMap<TableBucket, BucketSnapshots>,
        bucket: TableBucket,
        next: BucketSnapshots,
    ) -> Result<(), SnapshotStoreError> {
        assert!(next.kept.len() <= BUCKET_SNAPSHOTS_MAX, "a bucket keeps a bounded number");
        assert!(next.floor_snapshot_id <= next.next_snapshot_id);
        assert!(
            next.kept.windows(2).all(|pair| pair[0].snapshot_id < pair[1].snapshot_id),
            "kept snapshots are in id order"
        );
        let path = format!("{}/{}", self.dir, bucket_file_name(bucket));
        let temp_path = format!("{path}{TEMP_SUFFIX}");
        let bytes = encode_bucket_file(bucket, &next);
        self.fs.write(&temp_path, &bytes).map_err(SnapshotStoreError::Io)?;
        self.fs.sync(&temp_path).map_err(SnapshotStoreError::Io)?;
        self.fs.rename(&temp_path, &path).map_err(SnapshotStoreError::Io)?;
        buckets.insert(bucket, next);
        Ok(())
    }

    /// Poisoning is harmless: the map changes only by whole-record inserts after the file is
    /// durable, so a panic leaves it as it was.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableBucket, BucketSnapshots>> {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn bucket_file_name(bucket: TableBucket) -> String {
    format!("{}{BUCKET_FILE_SUFFIX}", bucket.dir_name())
}

/// Frame(payload): bucket | next snapshot id u64 | floor u64 | count u32 | snapshot payloads.
fn encode_bucket_file(bucket: TableBucket, snapshots: &BucketSnapshots) -> Vec<u8> {
    let mut writer = ByteWriter::new();
    encode_bucket(&mut writer, bucket);
    writer.u64(snapshots.next_snapshot_id);
    writer.u64(snapshots.floor_snapshot_id);
    writer.count(snapshots.kept.len());
    for snapshot in &snapshots.kept {
        snapshot.encode_into(&mut writer);
    }
    frame_with_magic(MAGIC, writer.bytes())
}

fn decode_bucket_file(bytes: &[u8]) -> Result<(TableBucket, BucketSnapshots), SnapshotDecodeError> {
    let corrupt = |detail: &str| SnapshotDecodeError::Corrupt(detail.to_string());
    let payload = unframe_with_magic(MAGIC, bytes)?;
    let mut reader = ByteReader::new(payload);
    let bucket = decode_bucket(&mut reader)?;
    let next_snapshot_id = reader.u64("next snapshot id")?;
    let floor_snapshot_id = reader.u64("floor snapshot id")?;
    // A snapshot record takes at least 37 bytes (bucket, ids, offsets, two counts).
    let count = reader.count(37, "snapshot count")?;
    if count > BUCKET_SNAPSHOTS_MAX {
        return Err(corrupt("too many snapshots"));
    }
    let mut kept = Vec::with_capacity(count);
    for _ in 0..count {
        let snapshot = CompletedSnapshot::decode_from(&mut reader)?;
        if snapshot.bucket != bucket {
            return Err(corrupt("a snapshot of another bucket"));
        }
        kept.push(snapshot);
    }
    if !reader.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    let ids_ordered = kept.windows(2).all(|pair| pair[0].snapshot_id < pair[1].snapshot_id);
    let ids_below_floor = kept.iter().all(|snapshot| snapshot.snapshot_id < floor_snapshot_id);
    if !ids_ordered
        || !ids_below_floor
        || floor_snapshot_id > next_snapshot_id
        || floor_snapshot_id < FIRST_SNAPSHOT_ID
    {
        return Err(corrupt("snapshot ids out of order"));
    }
    Ok((bucket, BucketSnapshots { next_snapshot_id, floor_snapshot_id, kept }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::env::Clock;
    use crate::lease::lease_manager::tests::{self as lease_tests, TestClock};
    use crate::lease::LeaseGauges;
    use crate::snapshot::completed_snapshot::{shared_file_path, SnapshotFile};

    const DIR: &str = "coordinator/snapshots";

    fn bucket() -> TableBucket {
        TableBucket::new(7, 1)
    }

    fn store(fs: &Arc<TestFs>, num_retained: usize) -> SnapshotStore {
        SnapshotStore::open(
            fs.clone(),
            DIR.into(),
            SnapshotStoreConfig { num_retained, mutants: Mutants::NONE },
        )
        .expect("open")
    }

    fn file(remote_path: String, local_name: &str) -> SnapshotFile {
        SnapshotFile {
            remote_path,
            local_name: local_name.into(),
            size_bytes: 10,
            crc32c: 1,
            sha256: [7; 32],
        }
    }

    /// A snapshot that uploads `fresh` shared files and reuses `reused` ones.
    fn snapshot(id: u64, epoch: u32, fresh: &[&str], reused: &[SnapshotFile]) -> CompletedSnapshot {
        let mut shared_files = reused.to_vec();
        shared_files
            .extend(fresh.iter().map(|name| file(shared_file_path(bucket(), id, name), name)));
        let manifest = format!("{}/MANIFEST", snapshot_dir(bucket(), id));
        CompletedSnapshot {
            bucket: bucket(),
            snapshot_id: id,
            leader_epoch: epoch,
            log_offset: id * 10,
            shared_files,
            private_files: vec![file(manifest, "MANIFEST")],
        }
    }

    fn metadata(id: u64) -> String {
        format!("{}/{METADATA_FILE_NAME}", snapshot_dir(bucket(), id))
    }

    #[test]
    fn snapshot_ids_increase_and_are_never_reused_after_a_reopen() {
        let fs = Arc::new(TestFs::default());
        let first = store(&fs, 2);
        assert_eq!(first.allocate_snapshot_id(bucket()), Ok(1));
        assert_eq!(first.allocate_snapshot_id(bucket()), Ok(2));
        drop(first);
        let reopened = store(&fs, 2);
        assert_eq!(reopened.allocate_snapshot_id(bucket()), Ok(3));
        assert_eq!(reopened.allocate_snapshot_id(TableBucket::new(7, 2)), Ok(1));
    }

    #[test]
    fn retention_keeps_the_latest_and_deletes_only_files_no_kept_snapshot_lists() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        for _ in 0..3 {
            store.allocate_snapshot_id(bucket()).expect("id");
        }
        let first = snapshot(1, 1, &["a", "b"], &[]);
        let second = snapshot(2, 1, &["c"], &first.shared_files[..1]);
        let third = snapshot(3, 1, &["d"], &second.shared_files[1..]);
        assert_eq!(store.commit(first.clone(), 1), Ok(Cleanup::default()));
        assert_eq!(store.commit(second.clone(), 1), Ok(Cleanup::default()));
        let cleanup = store.commit(third.clone(), 1).expect("commit");
        // a is still used by the second snapshot; b and the first's private files are not.
        let mut expected = vec![
            shared_file_path(bucket(), 1, "b"),
            first.private_files[0].remote_path.clone(),
            metadata(1),
        ];
        expected.sort();
        assert_eq!(cleanup.paths, expected);
        assert_eq!(store.kept(bucket()), vec![second.clone(), third.clone()]);
        assert_eq!(
            store.kept_points(bucket()),
            vec![
                SnapshotPoint { snapshot_id: 2, log_offset: 20 },
                SnapshotPoint { snapshot_id: 3, log_offset: 30 }
            ]
        );
        assert_eq!(store.kept_snapshot(bucket(), 2), Some(second));
        assert_eq!(store.kept_snapshot(bucket(), 1), None, "dropped by retention");
        assert_eq!(store.kept_snapshot(TableBucket::new(7, 2), 3), None, "another bucket");
        assert_eq!(store.kept_points(TableBucket::new(7, 2)), Vec::new());
        assert_eq!(store.latest(bucket()), Some(third));
    }

    #[test]
    fn a_deposed_leaders_snapshot_is_refused_and_only_its_own_uploads_go() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        store.allocate_snapshot_id(bucket()).expect("id");
        store.allocate_snapshot_id(bucket()).expect("id");
        let first = snapshot(1, 3, &["a"], &[]);
        store.commit(first.clone(), 3).expect("commit");
        let deposed = snapshot(2, 3, &["b"], &first.shared_files);
        let refusal = store.commit(deposed.clone(), 4).expect_err("a newer epoch refuses it");
        assert!(matches!(refusal.error, SnapshotStoreError::DeposedLeader { leader_epoch: 4, .. }));
        assert!(!refusal.error.is_retriable());
        let mut expected = vec![
            shared_file_path(bucket(), 2, "b"),
            deposed.private_files[0].remote_path.clone(),
            metadata(2),
        ];
        expected.sort();
        assert_eq!(refusal.cleanup.paths, expected, "the reused file a stays");
        assert_eq!(store.kept(bucket()), vec![first]);
    }

    #[test]
    fn a_repeated_commit_is_accepted_and_a_late_older_one_is_refused() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        for _ in 0..3 {
            store.allocate_snapshot_id(bucket()).expect("id");
        }
        let second = snapshot(2, 1, &["b"], &[]);
        store.commit(second.clone(), 1).expect("commit");
        assert_eq!(store.commit(second.clone(), 1), Ok(Cleanup::default()), "asked again");
        let late = snapshot(1, 1, &["a"], &[]);
        let refusal = store.commit(late, 1).expect_err("older than the latest");
        assert!(matches!(
            refusal.error,
            SnapshotStoreError::Superseded { floor_snapshot_id: 3, .. }
        ));
        let unallocated = store.commit(snapshot(9, 1, &[], &[]), 1).expect_err("never handed out");
        assert!(matches!(unallocated.error, SnapshotStoreError::Unknown { .. }));
        let mut changed = second.clone();
        changed.log_offset += 1;
        let refusal = store.commit(changed, 1).expect_err("same id, other content");
        assert!(refusal.cleanup.is_empty(), "nothing of a committed id may go");
        assert_eq!(store.kept(bucket()), vec![second]);
    }

    #[test]
    fn a_broken_latest_snapshot_is_removed_and_the_previous_one_used() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        store.allocate_snapshot_id(bucket()).expect("id");
        store.allocate_snapshot_id(bucket()).expect("id");
        let first = snapshot(1, 1, &["a"], &[]);
        let second = snapshot(2, 1, &["b"], &first.shared_files);
        store.commit(first.clone(), 1).expect("commit");
        store.commit(second.clone(), 1).expect("commit");
        let cleanup = store.remove_broken(bucket(), 2).expect("remove");
        assert!(!cleanup.paths.contains(&first.shared_files[0].remote_path));
        assert!(cleanup.paths.contains(&shared_file_path(bucket(), 2, "b")));
        assert_eq!(store.latest(bucket()), Some(first));
        let refusal = store.commit(second, 1).expect_err("a removed id never comes back");
        assert!(matches!(refusal.error, SnapshotStoreError::Superseded { .. }));
    }

    #[test]
    fn orphans_are_unlisted_files_of_ids_that_can_no_longer_commit() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        for _ in 0..4 {
            store.allocate_snapshot_id(bucket()).expect("id");
        }
        let second = snapshot(2, 1, &["b"], &[]);
        store.commit(second.clone(), 1).expect("commit");
        let object = |path: String| RemoteObject { path, size_bytes: 1 };
        let listed = vec![
            object(shared_file_path(bucket(), 1, "a")), // an abandoned upload
            object(shared_file_path(bucket(), 2, "b")), // kept
            object(metadata(2)),                        // kept
            object(shared_file_path(bucket(), 4, "d")), // an upload in flight
            object("kv/t7-b1/junk".into()),             // no snapshot's
        ];
        assert_eq!(
            store.orphans(bucket(), &listed),
            vec!["kv/t7-b1/junk".to_string(), shared_file_path(bucket(), 1, "a")]
        );
    }

    #[test]
    fn a_damaged_bucket_file_refuses_the_open_and_a_leftover_temp_file_is_ignored() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        store.allocate_snapshot_id(bucket()).expect("id");
        store.commit(snapshot(1, 1, &["a"], &[]), 1).expect("commit");
        drop(store);
        let path = format!("{DIR}/t7-b1.snapshots");
        fs.write(&format!("{path}.tmp"), b"half written").expect("write");
        assert!(SnapshotStore::open(fs.clone(), DIR.into(), SnapshotStoreConfig::default()).is_ok());
        let original = fs.read(&path).expect("read");
        for index in 0..original.len() {
            let mut damaged = original.clone();
            damaged[index] ^= 0x01;
            fs.write(&path, &damaged).expect("write");
            let opened =
                SnapshotStore::open(fs.clone(), DIR.into(), SnapshotStoreConfig::default());
            assert!(matches!(opened, Err(SnapshotStoreError::Corrupt { .. })), "flip at {index}");
        }
    }

    /// A file system whose mutating calls fail from the `fail_at`-th on.
    struct FailingFs {
        inner: Arc<TestFs>,
        calls: AtomicUsize,
        fail_at: usize,
    }

    impl FailingFs {
        fn step(&self) -> Result<(), FsError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.fail_at {
                return Err(FsError::Io("injected".into()));
            }
            Ok(())
        }
    }

    impl LocalFs for FailingFs {
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
            self.step()?;
            self.inner.append(path, bytes)
        }
        fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
            self.step()?;
            self.inner.write(path, bytes)
        }
        fn sync(&self, path: &str) -> Result<(), FsError> {
            self.step()?;
            self.inner.sync(path)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
            self.inner.read(path)
        }
        fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
            self.inner.read_range(path, offset, len)
        }
        fn file_len(&self, path: &str) -> Result<u64, FsError> {
            self.inner.file_len(path)
        }
        fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
            self.step()?;
            self.inner.truncate(path, len)
        }
        fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
            self.step()?;
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &str) -> Result<(), FsError> {
            self.step()?;
            self.inner.remove_file(path)
        }
        fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
            self.step()?;
            self.inner.remove_dir_all(path)
        }
        fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
            None
        }
    }

    #[test]
    fn a_failure_at_any_step_of_a_commit_leaves_the_old_state_in_memory_and_on_disk() {
        for fail_at in 0..3 {
            let disk = Arc::new(TestFs::default());
            let setup = store(&disk, 2);
            setup.allocate_snapshot_id(bucket()).expect("id");
            setup.allocate_snapshot_id(bucket()).expect("id");
            setup.commit(snapshot(1, 1, &["a"], &[]), 1).expect("commit");
            let before = setup.bucket(bucket());
            drop(setup);
            let failing = Arc::new(FailingFs { inner: disk.clone(), calls: 0.into(), fail_at });
            let store = SnapshotStore::open(failing, DIR.into(), SnapshotStoreConfig::default())
                .expect("open");
            let refusal = store.commit(snapshot(2, 1, &["b"], &[]), 1).expect_err("the disk fails");
            assert!(refusal.error.is_retriable(), "step {fail_at}");
            assert!(refusal.cleanup.is_empty(), "nothing may go when the outcome is unknown");
            assert_eq!(store.bucket(bucket()), before, "memory, step {fail_at}");
            assert_eq!(self::store(&disk, 2).bucket(bucket()), before, "disk, step {fail_at}");
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A leader at `epoch` takes a snapshot reusing `reuse` of the latest's shared files
        /// and uploading `fresh` new ones, committed after `delay` later steps.
        Take {
            epoch: u32,
            reuse: usize,
            fresh: usize,
        },
        /// The coordinator moves the leadership on.
        NewEpoch,
        /// The oldest pending snapshot's commit arrives (once, or twice: a retry).
        Commit {
            twice: bool,
        },
        RemoveBrokenLatest,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0u32..2, 0usize..4, 0usize..3).prop_map(|(epoch, reuse, fresh)| Step::Take {
                epoch,
                reuse,
                fresh
            }),
            Just(Step::NewEpoch),
            any::<bool>().prop_map(|twice| Step::Commit { twice }),
            Just(Step::RemoveBrokenLatest),
        ];
        proptest::collection::vec(step, 1..60)
    }

    proptest! {
        /// Whatever the order of snapshots, commits, epochs and removals: no file a kept
        /// snapshot lists is ever deleted, and once every pending snapshot has been answered,
        /// every uploaded file is either listed by a kept snapshot or was handed back to be
        /// deleted.
        #[test]
        fn no_needed_file_is_deleted_and_nothing_is_left_behind(steps in steps(), retained in 1usize..4) {
            let fs = Arc::new(TestFs::default());
            let store = store(&fs, retained);
            let mut epoch = 1u32;
            let mut pending: Vec<CompletedSnapshot> = Vec::new();
            let mut remote: BTreeSet<String> = BTreeSet::new();
            let apply = |cleanup: &Cleanup, remote: &mut BTreeSet<String>, store: &SnapshotStore| {
                let needed = store.bucket(bucket()).map(|b| b.needed_paths()).unwrap_or_default();
                for path in &cleanup.paths {
                    prop_assert!(!needed.contains(path), "{path} is needed");
                    remote.remove(path);
                }
                Ok(())
            };
            for step in steps.iter().chain(std::iter::repeat_n(&Step::Commit { twice: false }, 64)) {
                match step {
                    Step::Take { epoch: lag, reuse, fresh } => {
                        let id = store.allocate_snapshot_id(bucket()).expect("id");
                        let reused: Vec<SnapshotFile> = store
                            .latest(bucket())
                            .map(|latest| latest.shared_files.into_iter().take(*reuse).collect())
                            .unwrap_or_default();
                        let names: Vec<String> = (0..*fresh).map(|i| format!("f{i}")).collect();
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        let taken = snapshot(id, epoch.saturating_sub(*lag), &names, &reused);
                        remote.extend(snapshot_paths(&taken));
                        pending.push(taken);
                    }
                    Step::NewEpoch => epoch += 1,
                    Step::Commit { twice } => {
                        if pending.is_empty() {
                            continue;
                        }
                        let taken = pending.remove(0);
                        for _ in 0..if *twice { 2 } else { 1 } {
                            let cleanup = match store.commit(taken.clone(), epoch) {
                                Ok(cleanup) => cleanup,
                                Err(refusal) => refusal.cleanup,
                            };
                            apply(&cleanup, &mut remote, &store)?;
                        }
                    }
                    Step::RemoveBrokenLatest => {
                        if let Some(latest) = store.latest(bucket()) {
                            let cleanup = store.remove_broken(bucket(), latest.snapshot_id).expect("remove");
                            apply(&cleanup, &mut remote, &store)?;
                        }
                    }
                }
                let needed = store.bucket(bucket()).map(|b| b.needed_paths()).unwrap_or_default();
                prop_assert!(needed.is_subset(&remote), "a kept snapshot lost a file");
                prop_assert!(store.kept(bucket()).len() <= retained);
            }
            prop_assert!(pending.is_empty());
            let needed = store.bucket(bucket()).map(|b| b.needed_paths()).unwrap_or_default();
            prop_assert_eq!(&remote, &needed, "files left behind");
            let listed: Vec<RemoteObject> =
                remote.iter().map(|path| RemoteObject { path: path.clone(), size_bytes: 1 }).collect();
            prop_assert!(store.orphans(bucket(), &listed).is_empty());
        }
    }

    fn leased_store(
        fs: &Arc<TestFs>,
        num_retained: usize,
        mutants: Mutants,
    ) -> (SnapshotStore, Arc<KvSnapshotLeaseManager>, Arc<TestClock>) {
        let clock = TestClock::at(1_000);
        let leases = Arc::new(lease_tests::open(fs.clone(), clock.clone(), mutants).expect("open"));
        let config = SnapshotStoreConfig { num_retained, mutants };
        let store = SnapshotStore::open_with_leases(fs.clone(), DIR.into(), config, leases.clone())
            .expect("open");
        (store, leases, clock)
    }

    /// Commits snapshot `id` of `bucket()`, each with a fresh shared file and reusing the
    /// previous one's (so that shared files span snapshots).
    fn commit_next(store: &SnapshotStore) -> (CompletedSnapshot, Cleanup) {
        commit_next_in(store, bucket())
    }

    /// The buckets the lease proptest uses: two tables, one of them partitioned.
    fn lease_bucket(index: u8) -> TableBucket {
        match index {
            0 => bucket(),
            _ => TableBucket { table_id: 8, partition_id: Some(3), bucket_id: 0 },
        }
    }

    fn commit_next_in(
        store: &SnapshotStore,
        in_bucket: TableBucket,
    ) -> (CompletedSnapshot, Cleanup) {
        let id = store.allocate_snapshot_id(in_bucket).expect("id");
        let reused: Vec<SnapshotFile> =
            store.latest(in_bucket).map(|latest| latest.shared_files).unwrap_or_default();
        let mut taken =
            snapshot(id, 1, &[&format!("f{id}")], &reused[reused.len().saturating_sub(1)..]);
        if in_bucket != bucket() {
            let fresh = file(shared_file_path(in_bucket, id, &format!("f{id}")), "f");
            taken.shared_files.retain(|f| snapshot_id_of_path(in_bucket, &f.remote_path).is_some());
            taken.shared_files.push(fresh);
            taken.private_files =
                vec![file(format!("{}/MANIFEST", snapshot_dir(in_bucket, id)), "MANIFEST")];
            taken.bucket = in_bucket;
        }
        let cleanup = store.commit(taken.clone(), 1).expect("commit");
        (taken, cleanup)
    }

    #[test]
    fn a_leased_snapshot_outside_the_window_is_kept_until_its_last_lease_goes() {
        let fs = Arc::new(TestFs::default());
        let (store, leases, _clock) = leased_store(&fs, 2, Mutants::NONE);
        let (first, _) = commit_next(&store);
        let pin = [(bucket(), first.snapshot_id)];
        assert_eq!(store.acquire_lease("flink", 100, &pin).map(|a| a.unavailable), Ok(vec![]));
        assert_eq!(store.acquire_lease("tiering", 100, &pin).map(|a| a.unavailable), Ok(vec![]));
        let (_, cleanup) = commit_next(&store);
        assert!(cleanup.is_empty());
        let (third, cleanup) = commit_next(&store);
        assert!(cleanup.is_empty(), "the first is leased: none of its files go");
        let ids: Vec<u64> = store.kept_points(bucket()).iter().map(|p| p.snapshot_id).collect();
        assert_eq!(ids, vec![1, 2, 3], "retained and leased, as ListKvSnapshots lists them");
        assert_eq!(store.latest(bucket()), Some(third));
        assert_eq!(store.kept_snapshot(bucket(), 1), Some(first.clone()));
        assert_eq!(store.release_lease("flink", &[bucket()]), Ok(Cleanup::default()), "one left");
        let cleanup = store.drop_lease("tiering").expect("drop");
        let mut expected = vec![first.private_files[0].remote_path.clone(), metadata(1)];
        expected.sort();
        assert_eq!(cleanup.paths, expected, "its shared file is the second's too");
        assert_eq!(store.kept_snapshot(bucket(), 1), None);
        assert_eq!(leases.gauges(), LeaseGauges::default());
        assert_eq!(leases.check(), Ok(()));
    }

    #[test]
    fn an_acquire_answers_the_pairs_not_kept_and_pins_only_the_others() {
        let fs = Arc::new(TestFs::default());
        let (store, leases, _clock) = leased_store(&fs, 1, Mutants::NONE);
        let (first, _) = commit_next(&store);
        let other = TableBucket::new(7, 9);
        let asked = [(bucket(), first.snapshot_id), (bucket(), 77), (other, 1)];
        let acquired = store.acquire_lease("a", 100, &asked).expect("acquire");
        assert_eq!(acquired.unavailable, vec![(bucket(), 77), (other, 1)]);
        assert_eq!(leases.lease("a").map(|lease| lease.pin_count()), Some(1));
        assert!(leases.is_leased(bucket(), first.snapshot_id));
        assert!(!leases.is_leased(bucket(), 77));
    }

    #[test]
    fn a_reacquire_that_moves_the_pin_lets_go_of_the_old_snapshot_at_once() {
        let fs = Arc::new(TestFs::default());
        let (store, _leases, _clock) = leased_store(&fs, 1, Mutants::NONE);
        let (first, _) = commit_next(&store);
        store.acquire_lease("a", 100, &[(bucket(), first.snapshot_id)]).expect("acquire");
        let (second, cleanup) = commit_next(&store);
        assert!(cleanup.is_empty());
        let moved = store.acquire_lease("a", 100, &[(bucket(), second.snapshot_id)]).expect("move");
        assert!(moved.cleanup.paths.contains(&metadata(1)), "{:?}", moved.cleanup);
        assert_eq!(store.kept(bucket()), vec![second]);
    }

    #[test]
    fn an_expired_lease_lets_go_of_its_snapshots_at_the_expiry_check() {
        let fs = Arc::new(TestFs::default());
        let (store, _leases, clock) = leased_store(&fs, 1, Mutants::NONE);
        let (first, _) = commit_next(&store);
        store.acquire_lease("a", 100, &[(bucket(), first.snapshot_id)]).expect("acquire");
        commit_next(&store);
        clock.set(1_100);
        assert!(store.expire_leases().is_empty(), "valid at its expiration");
        clock.set(1_101);
        assert!(store.expire_leases().paths.contains(&metadata(1)));
        assert_eq!(store.kept_points(bucket()).len(), 1);
    }

    #[test]
    fn leases_and_the_snapshots_they_keep_survive_a_restart() {
        let fs = Arc::new(TestFs::default());
        let (store, leases, _clock) = leased_store(&fs, 1, Mutants::NONE);
        let (first, _) = commit_next(&store);
        store.acquire_lease("a", 100, &[(bucket(), first.snapshot_id)]).expect("acquire");
        commit_next(&store);
        drop((store, leases));
        let (store, leases, _clock) = leased_store(&fs, 1, Mutants::NONE);
        assert_eq!(store.apply_retention(), Cleanup::default());
        assert_eq!(store.kept_points(bucket()).len(), 2);
        assert!(leases.is_leased(bucket(), first.snapshot_id));
        drop(store);
        let stores_without_leases = self::store(&fs, 1);
        assert!(!stores_without_leases.apply_retention().is_empty());
    }

    /// Two buckets each keep a snapshot outside the window (leased, then reopened without
    /// leases); the second bucket's record cannot be written: the first one's files are still
    /// handed out for deletion, and the second keeps its snapshots.
    #[test]
    fn a_start_up_retention_that_fails_for_one_bucket_still_cleans_up_the_others() {
        use crate::lease::crash_fs::CrashFs;
        let (first_bucket, second_bucket) = (bucket(), TableBucket::new(7, 2));
        let fs = Arc::new(CrashFs::default());
        let clock = TestClock::at(1_000);
        let config = SnapshotStoreConfig { num_retained: 1, mutants: Mutants::NONE };
        let leases =
            Arc::new(lease_tests::open(fs.clone(), clock, Mutants::NONE).expect("open leases"));
        let store =
            SnapshotStore::open_with_leases(fs.clone(), DIR.into(), config, leases).expect("open");
        for in_bucket in [first_bucket, second_bucket] {
            let (old, _) = commit_next_in(&store, in_bucket);
            store.acquire_lease("a", 100, &[(in_bucket, old.snapshot_id)]).expect("acquire");
            commit_next_in(&store, in_bucket);
        }
        drop(store);
        let without_leases = SnapshotStore::open(fs.clone(), DIR.into(), config).expect("reopen");
        // The first bucket's record is written (temp, sync, rename), the second's is not.
        fs.fail_from(Some(3));
        let cleanup = without_leases.apply_retention();
        assert!(cleanup.paths.contains(&metadata(1)), "{cleanup:?}");
        assert_eq!(without_leases.kept_points(first_bucket).len(), 1);
        assert_eq!(without_leases.kept_points(second_bucket).len(), 2);
    }

    #[test]
    fn a_store_without_leases_refuses_lease_requests() {
        let fs = Arc::new(TestFs::default());
        let store = store(&fs, 2);
        assert_eq!(store.acquire_lease("a", 1, &[]), Err(LeaseError::NotServed));
        assert_eq!(store.release_lease("a", &[]), Err(LeaseError::NotServed));
        assert_eq!(store.drop_lease("a"), Err(LeaseError::NotServed));
        assert!(store.expire_leases().is_empty());
    }

    #[derive(Debug, Clone)]
    pub(crate) enum LeaseStep {
        Commit {
            bucket: u8,
        },
        /// Lease `lease` pins the `back`-th latest kept snapshot of `bucket` (past the oldest:
        /// an id never committed).
        Acquire {
            lease: u8,
            bucket: u8,
            back: usize,
        },
        Release {
            lease: u8,
            bucket: u8,
        },
        Drop {
            lease: u8,
        },
        Renew {
            lease: u8,
        },
        /// The clock moves on by `ms` and the expiry check runs.
        Expire {
            ms: u64,
        },
    }

    fn lease_steps() -> impl Strategy<Value = Vec<LeaseStep>> {
        let lease = 0u8..3;
        let bucket = 0u8..2;
        let step = prop_oneof![
            3 => bucket.clone().prop_map(|bucket| LeaseStep::Commit { bucket }),
            3 => (lease.clone(), bucket.clone(), 0usize..5)
                .prop_map(|(lease, bucket, back)| LeaseStep::Acquire { lease, bucket, back }),
            1 => (lease.clone(), bucket)
                .prop_map(|(lease, bucket)| LeaseStep::Release { lease, bucket }),
            1 => lease.clone().prop_map(|lease| LeaseStep::Drop { lease }),
            1 => lease.prop_map(|lease| LeaseStep::Renew { lease }),
            1 => (0u64..150).prop_map(|ms| LeaseStep::Expire { ms }),
        ];
        proptest::collection::vec(step, 1..60)
    }

    fn run_lease_step(
        store: &SnapshotStore,
        clock: &TestClock,
        step: &LeaseStep,
    ) -> Result<Cleanup, LeaseError> {
        Ok(match step {
            LeaseStep::Commit { bucket } => commit_next_in(store, lease_bucket(*bucket)).1,
            LeaseStep::Acquire { lease, bucket, back } => {
                let in_bucket = lease_bucket(*bucket);
                let kept = store.kept_points(in_bucket);
                let id = kept.iter().rev().nth(*back).map_or(999, |point| point.snapshot_id);
                store.acquire_lease(&format!("l{lease}"), 100, &[(in_bucket, id)])?.cleanup
            }
            LeaseStep::Release { lease, bucket } => {
                store.release_lease(&format!("l{lease}"), &[lease_bucket(*bucket)])?
            }
            LeaseStep::Drop { lease } => store.drop_lease(&format!("l{lease}"))?,
            LeaseStep::Renew { lease } => {
                store.acquire_lease(&format!("l{lease}"), 100, &[])?.cleanup
            }
            LeaseStep::Expire { ms } => {
                clock.set(clock.now_wall_ms() + ms);
                store.expire_leases()
            }
        })
    }

    /// Runs `steps` against a leased store; checks after each that the reference counts
    /// equal a recount, that no deleted file is needed by a kept snapshot, that every pin of a
    /// live lease names a kept snapshot and every kept snapshot outside the retention window
    /// is leased, and at the end that a reopen finds the same leases and snapshots.
    pub(crate) fn check_lease_steps(
        steps: &[LeaseStep],
        retained: usize,
        mutants: Mutants,
    ) -> Result<(), String> {
        let fs = Arc::new(TestFs::default());
        let (store, leases, clock) = leased_store(&fs, retained, mutants);
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        for step in steps {
            let cleanup = run_lease_step(&store, &clock, step).map_err(|e| e.to_string())?;
            deleted.extend(cleanup.paths);
            leases.check()?;
            for in_bucket in [lease_bucket(0), lease_bucket(1)] {
                let needed = store.bucket(in_bucket).map(|b| b.needed_paths()).unwrap_or_default();
                if let Some(path) = needed.intersection(&deleted).next() {
                    return Err(format!(
                        "{path} was deleted but a kept snapshot needs it ({step:?})"
                    ));
                }
                let kept = store.kept(in_bucket);
                let leased = leases.leased_snapshot_ids(in_bucket);
                let outside = &kept[..kept.len().saturating_sub(retained)];
                if let Some(unleased) = outside.iter().find(|s| !leased.contains(&s.snapshot_id)) {
                    return Err(format!("{} kept past retention, unleased", unleased.snapshot_id));
                }
            }
            for (lease_id, lease) in leases.leases() {
                for (pinned_bucket, snapshot_id) in lease.pins() {
                    if store.kept_snapshot(pinned_bucket, snapshot_id).is_none() {
                        return Err(format!("{lease_id} pins {snapshot_id}, which is gone"));
                    }
                }
            }
        }
        let kept_all =
            |store: &SnapshotStore| [store.kept(lease_bucket(0)), store.kept(lease_bucket(1))];
        let before = (leases.leases(), kept_all(&store));
        drop((store, leases));
        let (store, leases, _clock) = leased_store(&fs, retained, mutants);
        if (leases.leases(), kept_all(&store)) != before {
            return Err("a reopen found other leases or snapshots".into());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn lease_operations_keep_counts_exact_and_never_delete_a_leased_file(
            steps in lease_steps(),
            retained in 1usize..3,
        ) {
            prop_assert_eq!(check_lease_steps(&steps, retained, Mutants::NONE), Ok(()));
        }
    }

    #[test]
    fn a_retention_count_out_of_range_refuses_the_open() {
        let fs = Arc::new(TestFs::default());
        for num_retained in [0, NUM_RETAINED_MAX + 1] {
            let config = SnapshotStoreConfig { num_retained, mutants: Mutants::NONE };
            let opened = SnapshotStore::open(fs.clone(), DIR.into(), config);
            assert!(matches!(opened, Err(SnapshotStoreError::InvalidConfig { .. })));
        }
    }

    /// Commits and lease operations on a disk that fails from the `fail_at`-th mutating call
    /// on; then a crash, a reopen and the start-up retention: every pin of a reopened lease
    /// names a kept snapshot, and no file handed out for deletion before the crash or by the
    /// start-up retention is needed by a kept snapshot.
    #[test]
    fn a_crash_at_any_step_never_loses_a_file_a_reopened_lease_needs() {
        use crate::lease::crash_fs::CrashFs;
        for fail_at in 0..60 {
            let fs = Arc::new(CrashFs::default());
            let clock = TestClock::at(1_000);
            let open = |fs: Arc<dyn LocalFs>| {
                let leases = Arc::new(lease_tests::open(fs.clone(), clock.clone(), Mutants::NONE)?);
                let config = SnapshotStoreConfig { num_retained: 1, mutants: Mutants::NONE };
                SnapshotStore::open_with_leases(fs, DIR.into(), config, leases.clone())
                    .map(|store| (store, leases))
                    .map_err(|error| LeaseError::Corrupt {
                        path: DIR.into(),
                        detail: error.to_string(),
                    })
            };
            let (store, _leases) = open(fs.clone()).expect("open");
            fs.fail_from(Some(fail_at));
            let mut deleted: BTreeSet<String> = BTreeSet::new();
            let mut run = || -> Result<(), String> {
                let err = |e: &dyn std::fmt::Display| e.to_string();
                for round in 0..3 {
                    let id = store.allocate_snapshot_id(bucket()).map_err(|e| err(&e))?;
                    let taken = snapshot(id, 1, &[&format!("f{id}")], &[]);
                    deleted.extend(store.commit(taken, 1).map_err(|r| err(&r.error))?.paths);
                    let pins = [(bucket(), id)];
                    let lease = format!("l{}", round % 2);
                    let acquired = store.acquire_lease(&lease, 100, &pins).map_err(|e| err(&e))?;
                    deleted.extend(acquired.cleanup.paths);
                }
                deleted.extend(store.release_lease("l0", &[bucket()]).map_err(|e| err(&e))?.paths);
                clock.set(2_000);
                deleted.extend(store.expire_leases().paths);
                Ok(())
            };
            let _stopped = run();
            let crashed: Arc<dyn LocalFs> = Arc::new(fs.crash());
            let (store, leases) = open(crashed).expect("reopen after the crash");
            deleted.extend(store.apply_retention().paths);
            leases.check().expect("recount");
            for (lease_id, lease) in leases.leases() {
                for (pinned, snapshot_id) in lease.pins() {
                    assert!(
                        store.kept_snapshot(pinned, snapshot_id).is_some(),
                        "{lease_id} pins {snapshot_id}, gone after a crash at {fail_at}"
                    );
                }
            }
            let needed = store.bucket(bucket()).map(|b| b.needed_paths()).unwrap_or_default();
            assert!(needed.is_disjoint(&deleted), "a needed file deleted, crash at {fail_at}");
            assert!(store.kept(bucket()).len() <= 1 + leases.gauges().leased_snapshot_count);
        }
    }

    /// Each lease mutant fails one of the checks the tests above run without it.
    #[cfg(feature = "mutants")]
    #[test]
    fn each_lease_mutant_fails_a_lease_check() {
        use LeaseStep::{Acquire, Expire};
        let on = |mutant: Mutant| Mutants::NONE.with(mutant);
        let caught = |mutant: Mutant, steps: &[LeaseStep]| {
            assert_eq!(check_lease_steps(steps, 1, Mutants::NONE), Ok(()), "{mutant:?} off");
            assert!(check_lease_steps(steps, 1, on(mutant)).is_err(), "{mutant:?} not caught");
        };
        let pin = Acquire { lease: 0, bucket: 0, back: 0 };
        let commit = LeaseStep::Commit { bucket: 0 };
        let release = LeaseStep::Release { lease: 0, bucket: 0 };
        let expire = Expire { ms: 101 };
        caught(Mutant::LeaseExpiryKeepsRefcount, &[commit.clone(), pin.clone(), expire]);
        let moved = [commit.clone(), pin.clone(), commit.clone(), pin.clone()];
        caught(Mutant::LeaseReacquireKeepsOldPin, &moved);
        caught(Mutant::LeaseReleaseKeepsEmptyTable, &[commit, pin, release]);
        assert!(lease_tests::check_expiry_is_strict(on(Mutant::LeaseExpiresAtDeadline)).is_err());
        for mutant in [Mutant::LeaseAppliedBeforePersist, Mutant::LeaseRenamedWithoutSync] {
            assert!(lease_tests::check_crash_at_any_step(on(mutant)).is_err(), "{mutant:?}");
        }
    }
}
