//! The coordinator's remote-log manifests: for each bucket, the closed changelog segments in
//! the remote tier, in offset order (Fluss keeps a manifest handle per bucket in ZooKeeper;
//! here one file per bucket on the coordinator's own disk).
//!
//! Rules, each in one place:
//! - **Contiguous from the remote log start.** Every offset from a bucket's remote log start
//!   (0 until remote retention deletes the oldest segments) to its remote end is in some
//!   recorded segment: a segment is accepted only if it starts at or below the remote end (the
//!   first one at 0) and ends above it. Segments may overlap (a new leader's segment boundaries need not
//!   match the old one's); the bytes of an offset are the same in every segment that holds it.
//! - **Fenced.** A segment is accepted only from the bucket's current leader epoch, so that a
//!   deposed leader never extends the manifest, and so never raises the remote end its own
//!   retention deletes local segments below.
//! - **Idempotent.** A segment already recorded is accepted again (a leader whose commit got
//!   no answer asks by committing again), whatever the epoch now is.
//! - **Remote retention** ([`RemoteLogStore::expire`], Fluss's `table.log.ttl` on the remote
//!   tier): only the oldest segments go, each only if its newest batch is older than the TTL
//!   and it ends at or below the offset KV recovery may replay from (the oldest kept KV
//!   snapshot's `log_offset`), and only under the bucket's current leader epoch. The manifest
//!   without them is durable before their objects are listed for deletion.
//! - **Which objects may go.** A segment that is not recorded (refused, or covered by what
//!   the manifest already holds) is listed for deletion; a recorded one never is. Objects
//!   under `log/` that no manifest records are orphans once no upload is in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::byte_reader::{ByteReader, ByteWriter};
use crate::env::{FsError, LocalFs, RemoteObject};
use crate::mutant::{Mutant, Mutants};
use crate::snapshot::completed_snapshot::{
    decode_bucket, encode_bucket, frame_with_magic, unframe_with_magic,
};
use crate::snapshot::SnapshotDecodeError;
use crate::sync::{Mutex, MutexGuard};
use crate::table_bucket::TableBucket;
use crate::tiering::remote_log_segment::{RemoteLogSegment, REMOTE_LOG_ROOT};

/// A bucket's manifest holds at most this many segments (a commit past it is refused, and the
/// leader keeps its local segments).
pub const MANIFEST_SEGMENTS_MAX: usize = 100_000;
/// The bucket file with the remote log start; [`MAGIC_FROM_ZERO`] files (before remote
/// retention) start at 0 and are still read.
const MAGIC: &[u8; 8] = b"KVTRLOG2";
const MAGIC_FROM_ZERO: &[u8; 8] = b"KVTRLOGM";
const BUCKET_FILE_SUFFIX: &str = ".remote-log";
const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteLogStoreError {
    #[error(
        "remote log of {bucket}: leader epoch {leader_epoch} is not the current one ({current:?})"
    )]
    Fenced { bucket: TableBucket, leader_epoch: u32, current: Option<u32> },
    #[error("remote log of {bucket}: a segment from {start_offset} leaves a gap after the remote end {remote_end_offset}")]
    Gap { bucket: TableBucket, start_offset: u64, remote_end_offset: u64 },
    #[error("remote log of {bucket}: the manifest holds its maximum of {MANIFEST_SEGMENTS_MAX} segments")]
    Full { bucket: TableBucket },
    #[error("remote log store: {0}")]
    Io(FsError),
    #[error("remote log store file {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
}

impl RemoteLogStoreError {
    /// Only a failure of the coordinator's disk may go better on a retry.
    pub fn is_retriable(&self) -> bool {
        matches!(self, RemoteLogStoreError::Io(_))
    }
}

/// What a commit decided: the bucket's remote end after it, and remote objects that no
/// manifest needs (to delete once the answer is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogCommit {
    pub remote_end_offset: u64,
    pub unneeded_paths: Vec<String>,
}

/// A refused commit, with the uploaded object it leaves unneeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogRefusal {
    pub error: RemoteLogStoreError,
    pub unneeded_paths: Vec<String>,
}

/// What remote retention decided: the bucket's remote log start after it, and the objects of
/// the segments it removed (to delete now that the manifest without them is durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogExpiry {
    pub start_offset: u64,
    pub unneeded_paths: Vec<String>,
}

/// One bucket's segments, in order of start offset (then end offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteLogManifest {
    /// The remote log start: the first segment's start, or with no segment left (all expired)
    /// the remote end they reached. 0 until remote retention removes a segment.
    pub start_offset: u64,
    pub segments: Vec<RemoteLogSegment>,
}

impl RemoteLogManifest {
    /// Every offset from [`RemoteLogManifest::start_offset`] below it is in the remote tier.
    pub fn end_offset(&self) -> u64 {
        self.segments.iter().map(|segment| segment.end_offset).max().unwrap_or(self.start_offset)
    }

    /// The segment to read `offset` from: the one holding it that starts latest.
    pub fn segment_holding(&self, offset: u64) -> Option<&RemoteLogSegment> {
        self.segments.iter().rev().find(|segment| segment.holds(offset))
    }

    /// The segments that together hold `[from_offset, to_offset)`, in offset order: each the
    /// one holding the end of the one before that starts latest. The list stops short where
    /// no segment holds the next offset (a gap, the caller's to report).
    pub fn segments_covering(&self, from_offset: u64, to_offset: u64) -> Vec<RemoteLogSegment> {
        let mut covering: Vec<RemoteLogSegment> = Vec::new();
        let mut offset = from_offset;
        // Each step moves `offset` up to a segment's end: at most one step per segment.
        while offset < to_offset && covering.len() < self.segments.len() {
            let Some(segment) = self.segment_holding(offset) else { break };
            assert!(segment.end_offset > offset, "a segment holding an offset ends after it");
            offset = segment.end_offset;
            covering.push(segment.clone());
        }
        covering
    }

    /// Every object of the manifest's segments, companions included
    /// ([`RemoteLogSegment::object_paths`]).
    pub fn paths(&self) -> BTreeSet<String> {
        self.segments.iter().flat_map(RemoteLogSegment::object_paths).collect()
    }
}

pub struct RemoteLogStore {
    fs: Arc<dyn LocalFs>,
    dir: String,
    manifests: Mutex<BTreeMap<TableBucket, RemoteLogManifest>>,
}

impl std::fmt::Debug for RemoteLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLogStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl RemoteLogStore {
    /// Loads every bucket file under `dir` (created if missing); a leftover temp file is
    /// ignored, a damaged bucket file refuses the open.
    pub fn open(fs: Arc<dyn LocalFs>, dir: String) -> Result<RemoteLogStore, RemoteLogStoreError> {
        fs.create_dir_all(&dir).map_err(RemoteLogStoreError::Io)?;
        let mut manifests = BTreeMap::new();
        for name in fs.list_dir(&dir).map_err(RemoteLogStoreError::Io)? {
            if !name.ends_with(BUCKET_FILE_SUFFIX) {
                continue;
            }
            let path = format!("{dir}/{name}");
            let bytes = fs.read(&path).map_err(RemoteLogStoreError::Io)?;
            let corrupt =
                |detail: String| RemoteLogStoreError::Corrupt { path: path.clone(), detail };
            let (bucket, manifest) =
                decode_bucket_file(&bytes).map_err(|error| corrupt(error.to_string()))?;
            if name != bucket_file_name(bucket) {
                return Err(corrupt(format!("holds {bucket}")));
            }
            manifests.insert(bucket, manifest);
        }
        Ok(RemoteLogStore { fs, dir, manifests: Mutex::new(manifests) })
    }

    pub fn manifest(&self, bucket: TableBucket) -> RemoteLogManifest {
        self.lock().get(&bucket).cloned().unwrap_or_default()
    }

    /// [`RemoteLogManifest::segments_covering`] of `bucket`'s manifest, without copying it.
    pub fn segments_covering(
        &self,
        bucket: TableBucket,
        from_offset: u64,
        to_offset: u64,
    ) -> Vec<RemoteLogSegment> {
        self.lock()
            .get(&bucket)
            .map_or_else(Vec::new, |manifest| manifest.segments_covering(from_offset, to_offset))
    }

    /// Whether `bucket`'s manifest records `segment`.
    pub fn records(&self, segment: &RemoteLogSegment) -> bool {
        self.lock().get(&segment.bucket).is_some_and(|manifest| manifest.segments.contains(segment))
    }

    /// The first offset the remote tier holds (or would hold: with no segment, its end).
    pub fn remote_start_offset(&self, bucket: TableBucket) -> u64 {
        self.lock().get(&bucket).map_or(0, |manifest| manifest.start_offset)
    }

    pub fn remote_end_offset(&self, bucket: TableBucket) -> u64 {
        self.lock().get(&bucket).map_or(0, RemoteLogManifest::end_offset)
    }

    pub fn buckets(&self) -> Vec<TableBucket> {
        self.lock().keys().copied().collect()
    }

    /// Records `segment` if the rules above allow it; durable before it returns `Ok`.
    /// `current_epoch` is the bucket's leader epoch as the coordinator knows it (`None`: the
    /// bucket is not served).
    pub fn commit(
        &self,
        segment: RemoteLogSegment,
        current_epoch: Option<u32>,
    ) -> Result<RemoteLogCommit, RemoteLogRefusal> {
        let bucket = segment.bucket;
        let mut manifests = self.lock();
        let manifest = manifests.get(&bucket).cloned().unwrap_or_default();
        let remote_end_offset = manifest.end_offset();
        if manifest.segments.contains(&segment) {
            return Ok(RemoteLogCommit { remote_end_offset, unneeded_paths: Vec::new() });
        }
        let refuse = |error| {
            // A recorded segment never shares a path with another (the path names its epoch
            // and start, and a leader uploads a closed segment once).
            let unneeded_paths = if manifest.paths().contains(&segment.path()) {
                Vec::new()
            } else {
                vec![segment.path()]
            };
            Err(RemoteLogRefusal { error, unneeded_paths })
        };
        if current_epoch != Some(segment.leader_epoch) {
            return refuse(RemoteLogStoreError::Fenced {
                bucket,
                leader_epoch: segment.leader_epoch,
                current: current_epoch,
            });
        }
        if segment.end_offset <= remote_end_offset {
            // Covered by what is recorded: nothing to add, and its object is not needed.
            let unneeded_paths = if manifest.paths().contains(&segment.path()) {
                Vec::new()
            } else {
                vec![segment.path()]
            };
            return Ok(RemoteLogCommit { remote_end_offset, unneeded_paths });
        }
        if segment.start_offset > remote_end_offset {
            return refuse(RemoteLogStoreError::Gap {
                bucket,
                start_offset: segment.start_offset,
                remote_end_offset,
            });
        }
        if manifest.segments.len() >= MANIFEST_SEGMENTS_MAX {
            return refuse(RemoteLogStoreError::Full { bucket });
        }
        let mut next = manifest.clone();
        let end_offset = segment.end_offset;
        if next.segments.is_empty() {
            // Every segment expired: the remote tier starts again where this one does.
            next.start_offset = segment.start_offset;
        }
        next.segments.push(segment);
        if let Err(error) = self.persist(&mut manifests, bucket, next) {
            return Err(RemoteLogRefusal { error, unneeded_paths: Vec::new() });
        }
        Ok(RemoteLogCommit { remote_end_offset: end_offset, unneeded_paths: Vec::new() })
    }

    /// Remote retention of `bucket` (the rule is in the module's doc): removes the oldest
    /// segments whose max timestamp is below `expire_before_ms` and that end at or below
    /// `retain_from_offset`, durably, and returns their objects to delete. Refused (and
    /// nothing removed) unless `leader_epoch` is the bucket's `current_epoch`.
    pub fn expire(
        &self,
        bucket: TableBucket,
        leader_epoch: u32,
        current_epoch: Option<u32>,
        expire_before_ms: u64,
        retain_from_offset: u64,
        mutants: Mutants,
    ) -> Result<RemoteLogExpiry, RemoteLogStoreError> {
        if current_epoch != Some(leader_epoch) {
            return Err(RemoteLogStoreError::Fenced {
                bucket,
                leader_epoch,
                current: current_epoch,
            });
        }
        let mut manifests = self.lock();
        let manifest = manifests.get(&bucket).cloned().unwrap_or_default();
        let ignores_retain = mutants.is_on(Mutant::RemoteRetentionIgnoresMinRetainOffset);
        let expired = manifest
            .segments
            .iter()
            .take_while(|segment| {
                segment.max_timestamp_ms < expire_before_ms
                    && (segment.end_offset <= retain_from_offset || ignores_retain)
            })
            .count();
        if expired == 0 {
            return Ok(RemoteLogExpiry {
                start_offset: manifest.start_offset,
                unneeded_paths: Vec::new(),
            });
        }
        let end_offset = manifest.end_offset();
        let mut next = manifest;
        let removed: Vec<RemoteLogSegment> = next.segments.drain(..expired).collect();
        next.start_offset = next.segments.first().map_or(end_offset, |first| first.start_offset);
        let start_offset = next.start_offset;
        self.persist(&mut manifests, bucket, next)?;
        let mut unneeded_paths: Vec<String> =
            removed.iter().flat_map(RemoteLogSegment::object_paths).collect();
        // A removed segment's path is never a kept one's (a path names its epoch and start),
        // but overlapping segments are checked all the same.
        let kept = manifests.get(&bucket).map(RemoteLogManifest::paths).unwrap_or_default();
        unneeded_paths.retain(|path| !kept.contains(path));
        Ok(RemoteLogExpiry { start_offset, unneeded_paths })
    }

    /// Forgets a dropped bucket; returns the paths of its segments, to delete.
    pub fn drop_bucket(&self, bucket: TableBucket) -> Result<Vec<String>, RemoteLogStoreError> {
        let mut manifests = self.lock();
        let Some(manifest) = manifests.get(&bucket).cloned() else { return Ok(Vec::new()) };
        let path = format!("{}/{}", self.dir, bucket_file_name(bucket));
        self.fs.remove_file(&path).map_err(RemoteLogStoreError::Io)?;
        manifests.remove(&bucket);
        Ok(manifest.paths().into_iter().collect())
    }

    /// Every path under `log/` in `listed` that no manifest records (a recorded segment's
    /// companion is recorded with it). Only meaningful when no upload is in flight (an
    /// upload's object exists before its commit) and no companion is being written.
    pub fn orphans(&self, listed: &[RemoteObject]) -> Vec<String> {
        let manifests = self.lock();
        let needed: BTreeSet<String> =
            manifests.values().flat_map(RemoteLogManifest::paths).collect();
        listed
            .iter()
            .filter(|object| object.path.starts_with(REMOTE_LOG_ROOT))
            .filter(|object| !needed.contains(&object.path))
            .map(|object| object.path.clone())
            .collect()
    }

    /// Writes `next` as the bucket's file (temp, sync, rename), then makes it the state in
    /// memory. On failure nothing changes.
    fn persist(
        &self,
        manifests: &mut BTreeMap<TableBucket, RemoteLogManifest>,
        bucket: TableBucket,
        next: RemoteLogManifest,
    ) -> Result<(), RemoteLogStoreError> {
        assert!(next.segments.len() <= MANIFEST_SEGMENTS_MAX);
        assert!(next.segments.first().is_none_or(|first| first.start_offset == next.start_offset));
        let path = format!("{}/{}", self.dir, bucket_file_name(bucket));
        let temp_path = format!("{path}{TEMP_SUFFIX}");
        let bytes = encode_bucket_file(bucket, &next);
        self.fs.write(&temp_path, &bytes).map_err(RemoteLogStoreError::Io)?;
        self.fs.sync(&temp_path).map_err(RemoteLogStoreError::Io)?;
        self.fs.rename(&temp_path, &path).map_err(RemoteLogStoreError::Io)?;
        manifests.insert(bucket, next);
        Ok(())
    }

    /// Poisoning is harmless: the map changes only by whole inserts after the file is durable.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableBucket, RemoteLogManifest>> {
        self.manifests.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn bucket_file_name(bucket: TableBucket) -> String {
    format!("{}{BUCKET_FILE_SUFFIX}", bucket.dir_name())
}

/// Frame(payload): bucket | start offset u64 | count u32 | segments.
fn encode_bucket_file(bucket: TableBucket, manifest: &RemoteLogManifest) -> Vec<u8> {
    let mut writer = ByteWriter::new();
    encode_bucket(&mut writer, bucket);
    writer.u64(manifest.start_offset);
    writer.count(manifest.segments.len());
    for segment in &manifest.segments {
        segment.encode_into(&mut writer);
    }
    frame_with_magic(MAGIC, writer.bytes())
}

fn decode_bucket_file(
    bytes: &[u8],
) -> Result<(TableBucket, RemoteLogManifest), SnapshotDecodeError> {
    let corrupt = |detail: &str| SnapshotDecodeError::Corrupt(detail.to_string());
    let from_zero = bytes.starts_with(MAGIC_FROM_ZERO);
    let payload = unframe_with_magic(if from_zero { MAGIC_FROM_ZERO } else { MAGIC }, bytes)?;
    let mut reader = ByteReader::new(payload);
    let bucket = decode_bucket(&mut reader)?;
    let start_offset = if from_zero { 0 } else { reader.u64("start offset")? };
    // A segment record takes at least 80 bytes.
    let count = reader.count(80, "segment count")?;
    if count > MANIFEST_SEGMENTS_MAX {
        return Err(corrupt("too many segments"));
    }
    let mut segments: Vec<RemoteLogSegment> = Vec::with_capacity(count);
    let mut end_offset = start_offset;
    for _ in 0..count {
        let segment = RemoteLogSegment::decode_from(&mut reader)?;
        if segment.bucket != bucket {
            return Err(corrupt("a segment of another bucket"));
        }
        let first_elsewhere = segments.is_empty() && segment.start_offset != start_offset;
        if first_elsewhere || segment.start_offset > end_offset || segment.end_offset <= end_offset
        {
            return Err(corrupt("segments not contiguous from the remote log start"));
        }
        end_offset = segment.end_offset;
        segments.push(segment);
    }
    if !reader.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok((bucket, RemoteLogManifest { start_offset, segments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;

    const DIR: &str = "coordinator/remote-log";

    fn bucket() -> TableBucket {
        TableBucket::new(1, 0)
    }

    fn segment(leader_epoch: u32, start_offset: u64, end_offset: u64) -> RemoteLogSegment {
        RemoteLogSegment {
            bucket: bucket(),
            leader_epoch,
            start_offset,
            end_offset,
            size_bytes: 10,
            max_timestamp_ms: 5,
            sha256: [start_offset as u8; 32],
        }
    }

    fn open(fs: &Arc<TestFs>) -> RemoteLogStore {
        RemoteLogStore::open(fs.clone(), DIR.into()).unwrap()
    }

    #[test]
    fn segments_extend_the_remote_end_contiguously_from_zero_and_survive_a_reopen() {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        let gap = store.commit(segment(1, 5, 10), Some(1)).unwrap_err();
        assert!(matches!(gap.error, RemoteLogStoreError::Gap { .. }));
        assert_eq!(gap.unneeded_paths, vec![segment(1, 5, 10).path()]);
        assert_eq!(store.commit(segment(1, 0, 10), Some(1)).unwrap().remote_end_offset, 10);
        // A new leader's segment may overlap what is recorded.
        assert_eq!(store.commit(segment(2, 7, 20), Some(2)).unwrap().remote_end_offset, 20);
        let covered = store.commit(segment(2, 10, 15), Some(2)).unwrap();
        assert_eq!(covered.remote_end_offset, 20);
        assert_eq!(covered.unneeded_paths, vec![segment(2, 10, 15).path()]);
        let reopened = open(&fs);
        assert_eq!(reopened.manifest(bucket()), store.manifest(bucket()));
        assert_eq!(reopened.manifest(bucket()).segment_holding(8), Some(&segment(2, 7, 20)));
        assert_eq!(reopened.manifest(bucket()).segment_holding(3), Some(&segment(1, 0, 10)));
        assert_eq!(reopened.manifest(bucket()).segment_holding(20), None);
    }

    #[test]
    fn the_segments_covering_a_range_chain_from_its_start_and_stop_short_at_the_remote_end() {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        store.commit(segment(1, 0, 10), Some(1)).unwrap();
        store.commit(segment(2, 7, 20), Some(2)).unwrap();
        store.commit(segment(2, 20, 30), Some(2)).unwrap();
        let manifest = store.manifest(bucket());
        let chain = |from, to| manifest.segments_covering(from, to);
        assert_eq!(chain(3, 25), vec![segment(1, 0, 10), segment(2, 7, 20), segment(2, 20, 30)]);
        // The overlapping segment that starts latest holds 8.
        assert_eq!(chain(8, 20), vec![segment(2, 7, 20)]);
        assert_eq!(chain(8, 21), vec![segment(2, 7, 20), segment(2, 20, 30)]);
        // Past the remote end the list stops short; an empty range needs nothing.
        assert_eq!(chain(25, 40), vec![segment(2, 20, 30)]);
        assert_eq!(chain(30, 40), Vec::<RemoteLogSegment>::new());
        assert_eq!(chain(5, 5), Vec::<RemoteLogSegment>::new());
    }

    #[test]
    fn a_deposed_leaders_segment_is_refused_but_its_recorded_one_is_accepted_again() {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        store.commit(segment(1, 0, 10), Some(1)).unwrap();
        let fenced = store.commit(segment(1, 10, 20), Some(2)).unwrap_err();
        assert!(matches!(fenced.error, RemoteLogStoreError::Fenced { current: Some(2), .. }));
        assert_eq!(fenced.unneeded_paths, vec![segment(1, 10, 20).path()]);
        // The answer to the first commit was lost; asked again under the new epoch.
        let again = store.commit(segment(1, 0, 10), Some(2)).unwrap();
        assert_eq!(again, RemoteLogCommit { remote_end_offset: 10, unneeded_paths: vec![] });
        let dropped = store.commit(segment(1, 10, 20), None).unwrap_err();
        assert!(matches!(dropped.error, RemoteLogStoreError::Fenced { current: None, .. }));
    }

    #[test]
    fn orphans_are_objects_under_log_that_no_manifest_records_and_companions_go_with_their_segment()
    {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        store.commit(segment(1, 0, 10), Some(1)).unwrap();
        let object = |path: String| RemoteObject { path, size_bytes: 1 };
        let listed = vec![
            object(segment(1, 0, 10).path()),
            object(segment(1, 0, 10).companion_path()),
            object(segment(1, 10, 20).path()),
            object(segment(1, 10, 20).companion_path()),
            object("kv/t1-b0/shared/s1-x".into()),
        ];
        assert_eq!(
            store.orphans(&listed),
            vec![segment(1, 10, 20).path(), segment(1, 10, 20).companion_path()]
        );
        let mut dropped = store.drop_bucket(bucket()).unwrap();
        dropped.sort();
        let mut expected = segment(1, 0, 10).object_paths().to_vec();
        expected.sort();
        assert_eq!(dropped, expected);
        assert_eq!(store.remote_end_offset(bucket()), 0);
        assert!(open(&fs).buckets().is_empty());
    }

    fn timed(
        leader_epoch: u32,
        start_offset: u64,
        end_offset: u64,
        max_timestamp_ms: u64,
    ) -> RemoteLogSegment {
        RemoteLogSegment { max_timestamp_ms, ..segment(leader_epoch, start_offset, end_offset) }
    }

    #[test]
    fn remote_retention_removes_the_oldest_expired_segments_below_the_retain_offset_durably() {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        store.commit(timed(1, 0, 10, 100), Some(1)).unwrap();
        store.commit(timed(1, 10, 20, 200), Some(1)).unwrap();
        store.commit(timed(1, 20, 30, 300), Some(1)).unwrap();
        let expire = |before_ms, retain_from, epoch| {
            store.expire(bucket(), epoch, Some(1), before_ms, retain_from, Mutants::NONE)
        };
        // A deposed leader removes nothing.
        assert!(matches!(expire(1_000, 30, 0), Err(RemoteLogStoreError::Fenced { .. })));
        // Expired, but KV recovery replays from 15: only the segment wholly below it goes.
        let first = expire(1_000, 15, 1).unwrap();
        assert_eq!(first.start_offset, 10);
        let mut expected = timed(1, 0, 10, 100).object_paths().to_vec();
        expected.sort();
        let mut unneeded = first.unneeded_paths.clone();
        unneeded.sort();
        assert_eq!(unneeded, expected);
        // Not expired: kept whatever the retain offset.
        assert_eq!(expire(150, 30, 1).unwrap().start_offset, 10);
        let reopened = open(&fs);
        assert_eq!(reopened.remote_start_offset(bucket()), 10);
        assert_eq!(reopened.manifest(bucket()), store.manifest(bucket()));
        // Every segment expired: the remote tier is empty, its start at the old end, and the
        // next segment continues from there.
        let all = expire(1_000, 30, 1).unwrap();
        assert_eq!((all.start_offset, store.remote_end_offset(bucket())), (30, 30));
        assert!(matches!(
            store.commit(timed(1, 31, 40, 400), Some(1)).unwrap_err().error,
            RemoteLogStoreError::Gap { .. }
        ));
        store.commit(timed(1, 30, 40, 400), Some(1)).unwrap();
        assert_eq!(open(&fs).remote_start_offset(bucket()), 30);
        assert_eq!(open(&fs).remote_end_offset(bucket()), 40);
    }

    #[test]
    fn a_manifest_file_written_before_remote_retention_still_opens_from_zero() {
        let fs = Arc::new(TestFs::default());
        let manifest = RemoteLogManifest { start_offset: 0, segments: vec![segment(1, 0, 10)] };
        let mut writer = ByteWriter::new();
        encode_bucket(&mut writer, bucket());
        writer.count(manifest.segments.len());
        manifest.segments[0].encode_into(&mut writer);
        fs.create_dir_all(DIR).unwrap();
        let path = format!("{DIR}/{}", bucket_file_name(bucket()));
        fs.write(&path, &frame_with_magic(MAGIC_FROM_ZERO, writer.bytes())).unwrap();
        assert_eq!(open(&fs).manifest(bucket()), manifest);
    }

    #[test]
    fn a_damaged_manifest_file_refuses_the_open() {
        let fs = Arc::new(TestFs::default());
        let store = open(&fs);
        store.commit(segment(1, 0, 10), Some(1)).unwrap();
        let path = format!("{DIR}/{}", bucket_file_name(bucket()));
        fs.corrupt(&path, |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 1;
        });
        assert!(matches!(
            RemoteLogStore::open(fs.clone(), DIR.into()),
            Err(RemoteLogStoreError::Corrupt { .. })
        ));
    }
}
