//! A deterministic in-memory engine for the simulator and for unit tests.
//!
//! Multi-version: every key maps to its versions, each stamped with the sequence number of the
//! batch that wrote it. A snapshot is a sequence number plus an `Arc` of the shared state, so it
//! outlives the engine handle. Versions that neither the latest state nor any live snapshot can
//! see are dropped on the next write, so memory stays bounded by what is actually visible.
//!
//! The factory plays the disk: it keeps each directory's state, so closing and reopening a
//! directory in the same factory sees the data, and dropping the factory (a simulated crash of
//! the node) loses nothing that a real engine with its write-ahead log would have kept, because
//! every write here is "durable" when it returns. Checkpoints are real files, written through
//! the node's [`LocalFs`], so that they can be uploaded and restored like RocksDB's: immutable
//! runs that later checkpoints reuse, and a manifest (see [`super::mem_checkpoint`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};

use crate::engine::kv_engine::{
    EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine, KvEngineFactory,
};
use crate::engine::mem_checkpoint::{
    is_run_file_name, read_checkpoint, write_checkpoint, CheckpointRunSet, CheckpointRuns,
    RestoredCheckpoint,
};
use crate::engine::write_batch::{WriteBatch, WriteOp};
use crate::env::LocalFs;

/// A sequence number: batch `n` is the `n`-th non-empty batch written to the engine.
type Seq = u64;

/// Versions of one key, oldest first; `None` is a deletion.
type Versions = Vec<(Seq, Option<Vec<u8>>)>;

#[derive(Debug, Default)]
struct MvccState {
    versions: BTreeMap<Vec<u8>, Versions>,
    /// Flushed log offsets, oldest first, each with the batch that set it.
    flushed_offsets: Vec<(Seq, u64)>,
    last_seq: Seq,
    /// Live snapshot sequence numbers, with how many snapshots hold each.
    live_snapshots: BTreeMap<Seq, usize>,
    /// Keys that hold more than their latest version or a deletion: the only candidates for
    /// garbage collection when a snapshot goes away.
    collectable_keys: BTreeSet<Vec<u8>>,
    /// A snapshot was released since the last sweep of `collectable_keys`.
    snapshot_released: bool,
    /// The runs of this state's latest checkpoint and the keys changed since.
    checkpoint_runs: CheckpointRuns,
}

impl MvccState {
    fn restored(checkpoint: RestoredCheckpoint) -> Self {
        let RestoredCheckpoint { flushed_log_offset, entries, runs } = checkpoint;
        // Sequence 1 stands for "the state the engine was restored with".
        let seq = 1;
        let versions = entries.into_iter().map(|(key, value)| (key, vec![(seq, Some(value))]));
        MvccState {
            versions: versions.collect(),
            flushed_offsets: flushed_log_offset
                .map(|offset| vec![(seq, offset)])
                .unwrap_or_default(),
            last_seq: seq,
            checkpoint_runs: runs,
            ..MvccState::default()
        }
    }

    fn get_at(&self, key: &[u8], seq: Seq) -> Option<&[u8]> {
        self.versions.get(key).and_then(|versions| visible_value(versions, seq))
    }

    fn flushed_offset_at(&self, seq: Seq) -> Option<u64> {
        self.flushed_offsets.iter().rev().find(|(at, _)| *at <= seq).map(|(_, offset)| *offset)
    }

    /// The first key in `(lower, range.upper)` with a value visible at `seq`, and that value.
    fn first_visible(
        &self,
        lower: Bound<&[u8]>,
        range: &KeyRange,
        seq: Seq,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let upper = match range.upper.as_deref() {
            Some(upper) => Bound::Excluded(upper),
            None => Bound::Unbounded,
        };
        if is_empty_range(lower, upper) {
            return None;
        }
        self.versions.range::<[u8], _>((lower, upper)).find_map(|(key, versions)| {
            visible_value(versions, seq).map(|v| (key.clone(), v.to_vec()))
        })
    }

    fn apply(&mut self, batch: &WriteBatch) {
        if batch.is_empty() {
            return;
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        let mut touched = BTreeSet::new();
        for op in batch.ops() {
            let (key, value) = match op {
                WriteOp::Put { key, value } => (key, Some(value.clone())),
                WriteOp::Delete { key } => (key, None),
            };
            let versions = self.versions.entry(key.clone()).or_default();
            match versions.last_mut() {
                // A later write of the same key in one batch replaces the earlier one.
                Some((at, existing)) if *at == seq => *existing = value,
                _ => versions.push((seq, value)),
            }
            touched.insert(key.clone());
        }
        if let Some(offset) = batch.flushed_log_offset() {
            self.flushed_offsets.push((seq, offset));
        }
        self.checkpoint_runs.note_changed(&touched);
        if std::mem::take(&mut self.snapshot_released) {
            let sweep = std::mem::take(&mut self.collectable_keys);
            touched.extend(sweep);
        }
        for key in touched {
            self.collect_key(&key);
        }
        self.collect_flushed_offsets();
    }

    /// Drops the versions of `key` that no reader can see any more.
    fn collect_key(&mut self, key: &[u8]) {
        let Some(versions) = self.versions.get_mut(key) else {
            self.collectable_keys.remove(key);
            return;
        };
        retain_visible(versions, &self.live_snapshots);
        // An oldest version that is a deletion reads the same as no version at all.
        let leading_deletions = versions.iter().take_while(|(_, value)| value.is_none()).count();
        versions.drain(..leading_deletions);
        if versions.is_empty() {
            self.versions.remove(key);
            self.collectable_keys.remove(key);
        } else if versions.len() == 1 {
            self.collectable_keys.remove(key);
        } else {
            self.collectable_keys.insert(key.to_vec());
        }
    }

    fn collect_flushed_offsets(&mut self) {
        retain_visible(&mut self.flushed_offsets, &self.live_snapshots);
    }

    fn register_snapshot(&mut self) -> Seq {
        let seq = self.last_seq;
        *self.live_snapshots.entry(seq).or_insert(0) += 1;
        seq
    }

    fn release_snapshot(&mut self, seq: Seq) {
        let count = self.live_snapshots.get_mut(&seq);
        let count = count.unwrap_or_else(|| panic!("snapshot at seq {seq} released but not live"));
        *count -= 1;
        if *count == 0 {
            self.live_snapshots.remove(&seq);
        }
        self.snapshot_released = true;
    }

    /// Takes a checkpoint of the latest state: the runs it consists of.
    fn take_checkpoint(&mut self) -> CheckpointRunSet {
        let (versions, seq) = (&self.versions, self.last_seq);
        self.checkpoint_runs.take_checkpoint(
            |key| versions.get(key).and_then(|versions| visible_value(versions, seq)),
            || {
                versions.iter().filter_map(move |(key, versions)| {
                    visible_value(versions, seq).map(|value| (key.as_slice(), value))
                })
            },
        )
    }
}

/// The value of the newest version at or below `seq`, if it is not a deletion.
fn visible_value(versions: &Versions, seq: Seq) -> Option<&[u8]> {
    versions.iter().rev().find(|(at, _)| *at <= seq).and_then(|(_, value)| value.as_deref())
}

/// Keeps the newest version and every version that some live snapshot reads: version `i` is
/// read by snapshot `s` iff `seq_i <= s < seq_{i+1}`.
fn retain_visible<T>(versions: &mut Vec<(Seq, T)>, live_snapshots: &BTreeMap<Seq, usize>) {
    if versions.len() <= 1 {
        return;
    }
    let next_seqs: Vec<Option<Seq>> =
        versions.iter().skip(1).map(|(seq, _)| Some(*seq)).chain([None]).collect();
    let mut index = 0;
    versions.retain(|(seq, _)| {
        let next_seq = next_seqs[index];
        index += 1;
        match next_seq {
            None => true,
            Some(next_seq) => live_snapshots.range(*seq..next_seq).next().is_some(),
        }
    });
}

fn is_empty_range(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    // BTreeMap::range panics on an inverted range; an empty one is simply empty.
    match (lower, upper) {
        (Bound::Included(lower), Bound::Excluded(upper)) => lower >= upper,
        (Bound::Excluded(lower), Bound::Excluded(upper)) => lower >= upper,
        (Bound::Included(lower), Bound::Included(upper)) => lower > upper,
        (Bound::Excluded(lower), Bound::Included(upper)) => lower >= upper,
        _ => false,
    }
}

/// The state of one engine directory, shared by the factory, the engine handle and snapshots.
#[derive(Debug, Default)]
struct SharedState {
    mvcc: Mutex<MvccState>,
}

impl SharedState {
    fn lock(&self) -> Result<MutexGuard<'_, MvccState>, EngineError> {
        // A panic while holding the lock may have left a batch half-applied: the data is in
        // doubt, which is what Corrupt says (never retried: the replica stops).
        self.mvcc
            .lock()
            .map_err(|_| EngineError::Corrupt("engine state poisoned by a panic".into()))
    }

    /// For drops, which must not fail: the snapshot count is updated even after a panic.
    fn lock_for_drop(&self) -> MutexGuard<'_, MvccState> {
        self.mvcc.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Proof that an engine directory is open; while any is alive, reopening the directory fails,
/// as RocksDB's lock file makes it fail. Snapshots hold it too, as they hold RocksDB's `DB`.
#[derive(Debug)]
struct OpenHandle {
    state: Arc<SharedState>,
}

/// An engine over one directory's in-memory state.
pub struct MemEngine {
    handle: Arc<OpenHandle>,
    fs: Arc<dyn LocalFs>,
}

impl std::fmt::Debug for MemEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemEngine").finish_non_exhaustive()
    }
}

impl MemEngine {
    /// An engine that no factory tracks, e.g. for unit tests; `fs` receives checkpoints.
    pub fn new_detached(fs: Arc<dyn LocalFs>) -> Self {
        MemEngine { handle: Arc::new(OpenHandle { state: Arc::default() }), fs }
    }

    fn state(&self) -> &SharedState {
        &self.handle.state
    }
}

impl KvEngine for MemEngine {
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        self.state().lock()?.apply(batch);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let mvcc = self.state().lock()?;
        Ok(mvcc.get_at(key, mvcc.last_seq).map(<[u8]>::to_vec))
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let mvcc = self.state().lock()?;
        Ok(keys.iter().map(|key| mvcc.get_at(key, mvcc.last_seq).map(<[u8]>::to_vec)).collect())
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError> {
        let seq = self.state().lock()?.register_snapshot();
        Ok(Arc::new(MemSnapshot { handle: Arc::clone(&self.handle), seq }))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        let mvcc = self.state().lock()?;
        Ok(mvcc.flushed_offset_at(mvcc.last_seq))
    }

    fn checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        // Encode under the lock so the copy is one point in time; write after releasing it. A
        // failed write loses nothing: the runs stay in the state, and every checkpoint writes
        // all of its runs.
        let (flushed_log_offset, run_set) = {
            let mut mvcc = self.state().lock()?;
            (mvcc.flushed_offset_at(mvcc.last_seq), mvcc.take_checkpoint())
        };
        write_checkpoint(&*self.fs, dir, flushed_log_offset, &run_set)
    }
}

/// A point-in-time view: a sequence number pinned in the shared state's live-snapshot count.
pub struct MemSnapshot {
    handle: Arc<OpenHandle>,
    seq: Seq,
}

impl Drop for MemSnapshot {
    fn drop(&mut self) {
        self.handle.state.lock_for_drop().release_snapshot(self.seq);
    }
}

impl EngineSnapshot for MemSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let mvcc = self.handle.state.lock()?;
        Ok(mvcc.get_at(key, self.seq).map(<[u8]>::to_vec))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        Ok(self.handle.state.lock()?.flushed_offset_at(self.seq))
    }

    fn iter(self: Arc<Self>, range: KeyRange) -> Result<Box<dyn EngineIterator>, EngineError> {
        Ok(Box::new(MemIterator { snapshot: self, range, current: None, error: None }))
    }
}

/// A cursor over a snapshot. It copies only the current entry, and finds the next one with a
/// range query on the shared map, so it costs O(log n) per step whatever the map's size.
pub struct MemIterator {
    snapshot: Arc<MemSnapshot>,
    range: KeyRange,
    current: Option<(Vec<u8>, Vec<u8>)>,
    error: Option<EngineError>,
}

impl MemIterator {
    fn position_at_first_from(&mut self, lower: Bound<&[u8]>) {
        let snapshot = &self.snapshot;
        let found = snapshot
            .handle
            .state
            .lock()
            .map(|mvcc| mvcc.first_visible(lower, &self.range, snapshot.seq));
        match found {
            Ok(entry) => self.current = entry,
            Err(error) => {
                self.current = None;
                self.error = Some(error);
            }
        }
    }
}

impl EngineIterator for MemIterator {
    fn seek_to_first(&mut self) {
        let lower = self.range.lower.clone();
        self.position_at_first_from(lower.as_deref().map_or(Bound::Unbounded, Bound::Included));
    }

    fn seek(&mut self, key: &[u8]) {
        let lower = match self.range.lower.clone() {
            Some(lower) if lower.as_slice() > key => lower,
            _ => key.to_vec(),
        };
        self.position_at_first_from(Bound::Included(&lower));
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        let (key, _) = self.current.as_ref().expect("EngineIterator::key on an invalid iterator");
        key
    }

    fn value(&self) -> &[u8] {
        let (_, value) =
            self.current.as_ref().expect("EngineIterator::value on an invalid iterator");
        value
    }

    fn next(&mut self) {
        let Some((key, _)) = self.current.take() else {
            return;
        };
        self.position_at_first_from(Bound::Excluded(&key));
    }

    fn status(&self) -> Result<(), EngineError> {
        self.error.clone().map_or(Ok(()), Err)
    }
}

/// Opens MemEngines; it is the "disk" that keeps each directory's state between opens.
pub struct MemEngineFactory {
    fs: Arc<dyn LocalFs>,
    dirs: Mutex<BTreeMap<String, DirState>>,
}

struct DirState {
    state: Arc<SharedState>,
    open: std::sync::Weak<OpenHandle>,
}

impl std::fmt::Debug for MemEngineFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemEngineFactory").finish_non_exhaustive()
    }
}

impl MemEngineFactory {
    pub fn new(fs: Arc<dyn LocalFs>) -> Self {
        MemEngineFactory { fs, dirs: Mutex::new(BTreeMap::new()) }
    }

    fn dirs(&self) -> Result<MutexGuard<'_, BTreeMap<String, DirState>>, EngineError> {
        self.dirs.lock().map_err(|_| EngineError::Io("engine factory poisoned by a panic".into()))
    }

    fn open_state(
        &self,
        dirs: &mut BTreeMap<String, DirState>,
        dir: &str,
        state: Arc<SharedState>,
    ) -> Arc<dyn KvEngine> {
        let handle = Arc::new(OpenHandle { state: Arc::clone(&state) });
        dirs.insert(dir.to_string(), DirState { state, open: Arc::downgrade(&handle) });
        Arc::new(MemEngine { handle, fs: Arc::clone(&self.fs) })
    }
}

fn ensure_not_open(dirs: &BTreeMap<String, DirState>, dir: &str) -> Result<(), EngineError> {
    match dirs.get(dir) {
        Some(existing) if existing.open.strong_count() > 0 => Err(EngineError::Io(format!(
            "engine in {dir} is already open (a handle or snapshot is alive)"
        ))),
        _ => Ok(()),
    }
}

impl KvEngineFactory for MemEngineFactory {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        let mut dirs = self.dirs()?;
        ensure_not_open(&dirs, dir)?;
        let state = dirs.get(dir).map(|existing| Arc::clone(&existing.state)).unwrap_or_default();
        Ok(self.open_state(&mut dirs, dir, state))
    }

    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        let checkpoint = read_checkpoint(&*self.fs, checkpoint_dir)?;
        let mut dirs = self.dirs()?;
        ensure_not_open(&dirs, dir)?;
        let state = SharedState { mvcc: Mutex::new(MvccState::restored(checkpoint)) };
        Ok(self.open_state(&mut dirs, dir, Arc::new(state)))
    }

    fn destroy(&self, dir: &str) -> Result<(), EngineError> {
        let mut dirs = self.dirs()?;
        ensure_not_open(&dirs, dir)?;
        dirs.remove(dir);
        Ok(())
    }

    fn is_immutable_file(&self, file_name: &str) -> bool {
        is_run_file_name(file_name)
    }

    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        read_checkpoint(&*self.fs, dir).map(|_| ())
    }
}

#[cfg(test)]
pub(crate) mod test_fs {
    //! A tiny in-memory [`LocalFs`] for unit tests: flat map of paths to bytes, no crash model.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;
    use std::sync::Mutex;

    use crate::env::{FsError, LocalFs};

    #[derive(Debug, Default)]
    pub struct TestFs {
        files: Mutex<BTreeMap<String, Vec<u8>>>,
        dirs: Mutex<BTreeSet<String>>,
    }

    impl TestFs {
        pub fn corrupt(&self, path: &str, edit: impl FnOnce(&mut Vec<u8>)) {
            let mut files = self.files.lock().expect("test fs lock");
            edit(files.get_mut(path).expect("file to corrupt exists"));
        }
    }

    impl LocalFs for TestFs {
        fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
            self.dirs.lock().expect("test fs lock").insert(path.to_string());
            Ok(())
        }
        fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
            let prefix = format!("{path}/");
            let files = self.files.lock().expect("test fs lock");
            let names: BTreeSet<String> = files
                .keys()
                .filter_map(|file| file.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
                .collect();
            Ok(names.into_iter().collect())
        }
        fn exists(&self, path: &str) -> bool {
            self.files.lock().expect("test fs lock").contains_key(path)
                || self.dirs.lock().expect("test fs lock").contains(path)
        }
        fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
            let mut files = self.files.lock().expect("test fs lock");
            files.entry(path.to_string()).or_default().extend_from_slice(bytes);
            Ok(())
        }
        fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
            self.files.lock().expect("test fs lock").insert(path.to_string(), bytes.to_vec());
            Ok(())
        }
        fn sync(&self, _path: &str) -> Result<(), FsError> {
            Ok(())
        }
        fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
            let files = self.files.lock().expect("test fs lock");
            files.get(path).cloned().ok_or_else(|| FsError::NotFound(path.to_string()))
        }
        fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
            let bytes = self.read(path)?;
            let start = (offset as usize).min(bytes.len());
            let end = start.saturating_add(len as usize).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        }
        fn file_len(&self, path: &str) -> Result<u64, FsError> {
            Ok(self.read(path)?.len() as u64)
        }
        fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
            let mut files = self.files.lock().expect("test fs lock");
            let file = files.get_mut(path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
            file.truncate(len as usize);
            Ok(())
        }
        fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
            let mut files = self.files.lock().expect("test fs lock");
            let bytes = files.remove(from).ok_or_else(|| FsError::NotFound(from.to_string()))?;
            files.insert(to.to_string(), bytes);
            Ok(())
        }
        fn remove_file(&self, path: &str) -> Result<(), FsError> {
            self.files.lock().expect("test fs lock").remove(path);
            Ok(())
        }
        fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
            let prefix = format!("{path}/");
            self.files.lock().expect("test fs lock").retain(|file, _| !file.starts_with(&prefix));
            self.dirs
                .lock()
                .expect("test fs lock")
                .retain(|dir| dir != path && !dir.starts_with(&prefix));
            Ok(())
        }
        fn host_path(&self, _path: &str) -> Option<PathBuf> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_fs::TestFs;
    use super::*;

    fn factory() -> (Arc<TestFs>, MemEngineFactory) {
        let fs = Arc::new(TestFs::default());
        (Arc::clone(&fs), MemEngineFactory::new(fs))
    }

    fn put(engine: &dyn KvEngine, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        engine.write(&batch).expect("write");
    }

    fn delete(engine: &dyn KvEngine, key: &[u8]) {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        engine.write(&batch).expect("write");
    }

    fn scan(snapshot: &Arc<dyn EngineSnapshot>, range: KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut iter = Arc::clone(snapshot).iter(range).expect("iter");
        iter.seek_to_first();
        let mut out = Vec::new();
        while iter.valid() {
            out.push((iter.key().to_vec(), iter.value().to_vec()));
            iter.next();
        }
        iter.status().expect("status");
        out
    }

    fn version_count(engine: &MemEngine) -> usize {
        let mvcc = engine.state().lock().expect("lock");
        mvcc.versions.values().map(Vec::len).sum::<usize>() + mvcc.flushed_offsets.len()
    }

    #[test]
    fn snapshots_see_their_point_in_time_after_the_engine_is_dropped() {
        let (_, factory) = factory();
        let engine = factory.open("e").expect("open");
        put(&*engine, b"a", b"1");
        put(&*engine, b"b", b"1");
        let snapshot = engine.snapshot().expect("snapshot");
        put(&*engine, b"a", b"2");
        delete(&*engine, b"b");
        put(&*engine, b"c", b"2");
        drop(engine);
        assert_eq!(snapshot.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(snapshot.get(b"b").expect("get"), Some(b"1".to_vec()));
        assert_eq!(snapshot.get(b"c").expect("get"), None);
        let all = scan(&snapshot, KeyRange::all());
        assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn old_versions_are_collected_once_no_snapshot_sees_them() {
        let engine = MemEngine::new_detached(Arc::new(TestFs::default()));
        for round in 0..100u32 {
            put(&engine, b"k", &round.to_le_bytes());
        }
        assert_eq!(version_count(&engine), 1);
        let snapshot = engine.snapshot().expect("snapshot");
        put(&engine, b"k", b"new");
        delete(&engine, b"gone");
        assert_eq!(version_count(&engine), 2);
        drop(snapshot);
        put(&engine, b"other", b"x");
        assert_eq!(version_count(&engine), 2, "k: latest only, plus other");
        delete(&engine, b"k");
        delete(&engine, b"other");
        assert_eq!(version_count(&engine), 0);
    }

    #[test]
    fn flushed_offset_is_versioned_with_the_batches() {
        let engine = MemEngine::new_detached(Arc::new(TestFs::default()));
        assert_eq!(engine.flushed_log_offset().expect("offset"), None);
        let mut batch = WriteBatch::new();
        batch.put(b"a", b"1");
        batch.set_flushed_log_offset(10);
        engine.write(&batch).expect("write");
        let snapshot = engine.snapshot().expect("snapshot");
        let mut batch = WriteBatch::new();
        batch.set_flushed_log_offset(20);
        engine.write(&batch).expect("write");
        put(&engine, b"b", b"2");
        assert_eq!(engine.flushed_log_offset().expect("offset"), Some(20));
        assert_eq!(snapshot.flushed_log_offset().expect("offset"), Some(10));
        drop(snapshot);
        put(&engine, b"c", b"3");
        assert_eq!(engine.state().lock().expect("lock").flushed_offsets.len(), 1);
    }

    #[test]
    fn iterators_honour_bounds_and_seek() {
        let engine = MemEngine::new_detached(Arc::new(TestFs::default()));
        for key in [&b"a"[..], b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"\xff\x01"] {
            put(&engine, key, b"v");
        }
        delete(&engine, b"ab");
        let snapshot = engine.snapshot().expect("snapshot");
        let keys = |range| scan(&snapshot, range).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(KeyRange::prefix(b"a")), vec![b"a".to_vec(), b"abc".to_vec()]);
        assert_eq!(
            keys(KeyRange::prefix(b"\xff")),
            vec![b"\xff".to_vec(), b"\xff\x01".to_vec(), b"\xff\xff".to_vec()]
        );
        assert_eq!(keys(KeyRange::prefix(b"")).len(), 6);
        let inverted = KeyRange { lower: Some(b"z".to_vec()), upper: Some(b"a".to_vec()) };
        assert!(keys(inverted).is_empty());

        let mut iter = Arc::clone(&snapshot).iter(KeyRange::prefix(b"a")).expect("iter");
        assert!(!iter.valid());
        iter.seek(b"aa");
        assert_eq!(iter.key(), b"abc");
        iter.seek(b"0");
        assert_eq!(iter.key(), b"a", "seek below the range lands on its first key");
        iter.seek(b"b");
        assert!(!iter.valid());
        iter.status().expect("an exhausted iterator is not an error");
    }

    #[test]
    fn reopen_keeps_data_and_an_open_directory_cannot_be_opened_twice() {
        let (_, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut batch = WriteBatch::new();
        batch.put(b"a", b"1");
        batch.set_flushed_log_offset(7);
        engine.write(&batch).expect("write");
        assert!(factory.open("e").is_err());
        let snapshot = engine.snapshot().expect("snapshot");
        drop(engine);
        assert!(factory.open("e").is_err(), "a live snapshot keeps the engine open");
        drop(snapshot);
        let engine = factory.open("e").expect("reopen");
        assert_eq!(engine.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(engine.flushed_log_offset().expect("offset"), Some(7));
        drop(engine);
        factory.destroy("e").expect("destroy");
        let engine = factory.open("e").expect("open fresh");
        assert_eq!(engine.get(b"a").expect("get"), None);
    }

    #[test]
    fn a_later_write_in_one_batch_wins() {
        let engine = MemEngine::new_detached(Arc::new(TestFs::default()));
        let mut batch = WriteBatch::new();
        batch.put(b"k", b"1");
        batch.delete(b"k");
        batch.put(b"j", b"1");
        batch.put(b"j", b"2");
        engine.write(&batch).expect("write");
        let got = engine.multi_get(&[b"k".to_vec(), b"j".to_vec()]).expect("multi_get");
        assert_eq!(got, vec![None, Some(b"2".to_vec())]);
    }
}
