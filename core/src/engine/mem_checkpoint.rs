//! MemEngine checkpoints: immutable runs that later checkpoints reuse, and a private manifest.
//!
//! A checkpoint directory holds run files (`000017.memrun`) and one manifest (`MEMMANIFEST`).
//! A run is a sorted set of changes (a key with its new value, or a tombstone), named by a
//! number that the engine state never uses twice, and never rewritten with other content: the
//! shape of RocksDB's SST files, so that a snapshot uploader reuses an uploaded run by name, size
//! and checksum (`KvEngineFactory::is_immutable_file`). The manifest lists the runs in apply
//! order with their sizes and checksums, the flushed log offset and the highest run number the
//! state has used, from which a state restored from the checkpoint numbers its new runs.
//!
//! A checkpoint writes one new run with the keys changed since the previous checkpoint of the
//! same engine state (none if nothing changed) and writes again, byte for byte, the earlier runs
//! still live, kept encoded in memory. When the live runs would grow past
//! [`LIVE_RUN_COUNT_MAX`] runs or [`LIVE_RUNS_SIZE_MAX_IN_FULL_RUNS`] times the size of one run
//! of the whole state, the checkpoint writes one run of the whole state instead and drops the
//! others, as RocksDB's compaction replaces SSTs. The rule reads sizes only: no time, no
//! randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::engine::kv_engine::EngineError;
use crate::env::{FsError, LocalFs};

/// The private file of a MemEngine checkpoint: which runs to apply, in which order.
pub const MANIFEST_FILE_NAME: &str = "MEMMANIFEST";
/// How the names of run files end; nothing else in a checkpoint directory ends so.
pub const RUN_FILE_SUFFIX: &str = ".memrun";
/// Live runs past this count are compacted into one run of the whole state.
pub const LIVE_RUN_COUNT_MAX: usize = 6;
/// Live runs larger than this many runs of the whole state are compacted into one.
pub const LIVE_RUNS_SIZE_MAX_IN_FULL_RUNS: u64 = 3;

const MANIFEST_MAGIC: &[u8; 8] = b"KVTMEMMF";
const RUN_MAGIC: &[u8; 8] = b"KVTMEMRN";
const FORMAT_VERSION: u32 = 1;
/// Magic, format version and change count.
const RUN_HEADER_BYTES: u64 = 8 + 4 + 8;
const CHECKSUM_BYTES: u64 = 4;
/// Run number, size and checksum of one run in the manifest.
const MANIFEST_RUN_BYTES: usize = 8 + 8 + 4;
const CHANGE_KIND_DELETE: u8 = 0;
const CHANGE_KIND_PUT: u8 = 1;

/// The name of run `number`'s file, e.g. `000017.memrun`.
pub fn run_file_name(number: u64) -> String {
    format!("{number:06}{RUN_FILE_SUFFIX}")
}

/// Whether `file_name` is a run file: immutable under its name.
pub fn is_run_file_name(file_name: &str) -> bool {
    file_name.ends_with(RUN_FILE_SUFFIX)
}

/// An encoded run, shared between the engine state and the checkpoints that write it.
#[derive(Debug, Clone)]
pub(super) struct EncodedRun {
    number: u64,
    bytes: Arc<[u8]>,
    crc32c: u32,
}

impl EncodedRun {
    fn new(number: u64, bytes: Arc<[u8]>) -> Self {
        let crc32c = crc32c::crc32c(&bytes);
        EncodedRun { number, bytes, crc32c }
    }

    fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn listing(&self) -> RunListing {
        RunListing { number: self.number, len_bytes: self.len_bytes(), crc32c: self.crc32c }
    }
}

/// What the checkpoints of one engine state have written: the runs the next checkpoint builds
/// on and the keys changed since the latest checkpoint.
#[derive(Debug, Default)]
pub(super) struct CheckpointRuns {
    /// The runs of the latest checkpoint, in apply order (run numbers increasing).
    live: Vec<EncodedRun>,
    /// Keys written since the latest checkpoint; `None` before the first one, which writes the
    /// whole state, so that an engine never checkpointed tracks nothing.
    changed_keys: Option<BTreeSet<Vec<u8>>>,
    /// The highest run number this state has used, or inherited from the checkpoint it was
    /// restored from.
    last_run_number: u64,
}

impl CheckpointRuns {
    /// The runs of a restored checkpoint, which the restored state's checkpoints build on.
    fn restored(live: Vec<EncodedRun>, last_run_number: u64) -> Self {
        CheckpointRuns { live, changed_keys: Some(BTreeSet::new()), last_run_number }
    }

    /// Records keys written by a batch, for the next checkpoint's run.
    pub(super) fn note_changed<'a>(&mut self, keys: impl IntoIterator<Item = &'a Vec<u8>>) {
        if let Some(changed_keys) = &mut self.changed_keys {
            changed_keys.extend(keys.into_iter().cloned());
        }
    }

    /// Takes a checkpoint of the state that `latest_value` and `latest_entries` read (the
    /// latest value of a key, every latest entry in key order): adds the run of the keys
    /// changed since the previous one, or compacts, and answers the runs that the checkpoint
    /// consists of.
    pub(super) fn take_checkpoint<'a, Entries>(
        &mut self,
        latest_value: impl Fn(&[u8]) -> Option<&'a [u8]>,
        latest_entries: impl Fn() -> Entries,
    ) -> CheckpointRunSet
    where
        Entries: Iterator<Item = (&'a [u8], &'a [u8])>,
    {
        let whole_state = || latest_entries().map(|(key, value)| (key, Some(value)));
        match self.changed_keys.replace(BTreeSet::new()) {
            None => self.replace_with_one_run(encode_run(whole_state())),
            Some(changed_keys) if changed_keys.is_empty() => {}
            Some(changed_keys) => {
                let changes = || changed_keys.iter().map(|key| (key.as_slice(), latest_value(key)));
                let live_len_bytes: u64 = self.live.iter().map(EncodedRun::len_bytes).sum();
                let grown_len_bytes = live_len_bytes + encoded_run_len(changes());
                let full_len_bytes = encoded_run_len(whole_state());
                let too_many = self.live.len() + 1 > LIVE_RUN_COUNT_MAX;
                let too_large = grown_len_bytes
                    > full_len_bytes.saturating_mul(LIVE_RUNS_SIZE_MAX_IN_FULL_RUNS);
                if too_many || too_large {
                    self.replace_with_one_run(encode_run(whole_state()));
                } else {
                    let run = self.new_run(encode_run(changes()));
                    self.live.push(run);
                }
            }
        }
        CheckpointRunSet { runs: self.live.clone(), last_run_number: self.last_run_number }
    }

    /// Drops every live run for `bytes`, a run of the whole state; an empty state has no run.
    fn replace_with_one_run(&mut self, bytes: Vec<u8>) {
        self.live.clear();
        if bytes.len() as u64 > RUN_HEADER_BYTES + CHECKSUM_BYTES {
            let run = self.new_run(bytes);
            self.live.push(run);
        }
    }

    fn new_run(&mut self, bytes: Vec<u8>) -> EncodedRun {
        self.last_run_number += 1;
        EncodedRun::new(self.last_run_number, bytes.into())
    }
}

/// The runs of one checkpoint, in apply order, and the highest run number used so far.
pub(super) struct CheckpointRunSet {
    runs: Vec<EncodedRun>,
    last_run_number: u64,
}

/// Writes a checkpoint into `dir`: the runs (each synced), then the manifest that names them.
pub(super) fn write_checkpoint(
    fs: &dyn LocalFs,
    dir: &str,
    flushed_log_offset: Option<u64>,
    run_set: &CheckpointRunSet,
) -> Result<(), EngineError> {
    fs.create_dir_all(dir).map_err(fs_error)?;
    for run in &run_set.runs {
        write_synced(fs, &file_path(dir, &run_file_name(run.number)), &run.bytes)?;
    }
    let manifest = Manifest {
        flushed_log_offset,
        last_run_number: run_set.last_run_number,
        runs: run_set.runs.iter().map(EncodedRun::listing).collect(),
    };
    write_synced(fs, &file_path(dir, MANIFEST_FILE_NAME), &encode_manifest(&manifest))
}

fn write_synced(fs: &dyn LocalFs, path: &str, bytes: &[u8]) -> Result<(), EngineError> {
    fs.write(path, bytes).map_err(fs_error)?;
    fs.sync(path).map_err(fs_error)
}

/// The state a checkpoint holds, and its runs for the restored state to build on.
pub(super) struct RestoredCheckpoint {
    pub(super) flushed_log_offset: Option<u64>,
    pub(super) entries: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(super) runs: CheckpointRuns,
}

/// Reads the checkpoint in `dir`: its manifest, then every run it lists, each checked against
/// the manifest's size and checksum and applied in order. A missing manifest is an I/O error
/// (no checkpoint there); anything else missing or damaged is `Corrupt`.
pub(super) fn read_checkpoint(
    fs: &dyn LocalFs,
    dir: &str,
) -> Result<RestoredCheckpoint, EngineError> {
    let manifest =
        decode_manifest(&fs.read(&file_path(dir, MANIFEST_FILE_NAME)).map_err(fs_error)?)?;
    let mut entries = BTreeMap::new();
    let mut runs = Vec::with_capacity(manifest.runs.len());
    for listing in &manifest.runs {
        let bytes = read_listed_run(fs, dir, listing)?;
        apply_run(&bytes, &mut entries)?;
        runs.push(EncodedRun {
            number: listing.number,
            bytes: bytes.into(),
            crc32c: listing.crc32c,
        });
    }
    Ok(RestoredCheckpoint {
        flushed_log_offset: manifest.flushed_log_offset,
        entries,
        runs: CheckpointRuns::restored(runs, manifest.last_run_number),
    })
}

/// The bytes of a run the manifest lists, refused unless size and checksum match the listing.
fn read_listed_run(
    fs: &dyn LocalFs,
    dir: &str,
    listing: &RunListing,
) -> Result<Vec<u8>, EngineError> {
    let name = run_file_name(listing.number);
    let path = file_path(dir, &name);
    let missing_is_corrupt = |error: FsError| match error {
        FsError::NotFound(_) => corrupt(&format!("run {name} listed in the manifest is missing")),
        other => fs_error(other),
    };
    // The size first, so that a damaged file is refused before it is read into memory.
    if fs.file_len(&path).map_err(missing_is_corrupt)? != listing.len_bytes {
        return Err(corrupt(&format!("run {name} is not the size the manifest lists")));
    }
    let bytes = fs.read(&path).map_err(missing_is_corrupt)?;
    if bytes.len() as u64 != listing.len_bytes || crc32c::crc32c(&bytes) != listing.crc32c {
        return Err(corrupt(&format!("run {name} does not match the manifest's checksum")));
    }
    Ok(bytes)
}

fn file_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

fn fs_error(error: FsError) -> EngineError {
    EngineError::Io(error.to_string())
}

fn corrupt(what: &str) -> EngineError {
    EngineError::Corrupt(format!("mem checkpoint: {what}"))
}

/// A run as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunListing {
    number: u64,
    len_bytes: u64,
    crc32c: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Manifest {
    flushed_log_offset: Option<u64>,
    /// At least every listed run's number: a restored state numbers its runs above it, so that
    /// it never reuses a name that the state the checkpoint came from used (for runs since
    /// compacted away, too).
    last_run_number: u64,
    /// In apply order, run numbers strictly increasing.
    runs: Vec<RunListing>,
}

/// The size of the run `encode_run` makes of `changes`.
fn encoded_run_len<'a>(changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> u64 {
    let changes_len_bytes: u64 = changes
        .map(|(key, value)| 1 + 4 + key.len() as u64 + value.map_or(0, |v| 4 + v.len() as u64))
        .sum();
    RUN_HEADER_BYTES + changes_len_bytes + CHECKSUM_BYTES
}

/// Run layout, all integers little-endian:
/// magic (8) | format version u32 | change count u64 |
/// changes (kind u8: 0 delete, 1 put | key len u32 | key | if put: value len u32 | value)* |
/// crc32c u32 of everything before it. Keys strictly increasing.
fn encode_run<'a>(changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count: u64 = 0;
    for (key, value) in changes {
        match value {
            Some(value) => {
                body.push(CHANGE_KIND_PUT);
                put_len_prefixed(&mut body, key);
                put_len_prefixed(&mut body, value);
            }
            None => {
                body.push(CHANGE_KIND_DELETE);
                put_len_prefixed(&mut body, key);
            }
        }
        count += 1;
    }
    let mut bytes = Vec::with_capacity(body.len() + (RUN_HEADER_BYTES + CHECKSUM_BYTES) as usize);
    bytes.extend_from_slice(RUN_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&body);
    append_checksum(&mut bytes);
    bytes
}

/// Applies the run's changes to `entries` in key order: a put sets, a tombstone deletes.
fn apply_run(bytes: &[u8], entries: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), EngineError> {
    let mut reader = Reader::checked(bytes, "run")?;
    reader.expect_magic_and_version(RUN_MAGIC)?;
    let count = reader.u64()?;
    reader.what = "run changes";
    let mut previous_key: Option<&[u8]> = None;
    for _ in 0..count {
        let kind = reader.u8()?;
        let key = reader.len_prefixed()?;
        // Written in key order; anything else means the bytes are not what we wrote.
        if previous_key.is_some_and(|previous| previous >= key) {
            return Err(corrupt("run keys out of order"));
        }
        previous_key = Some(key);
        match kind {
            CHANGE_KIND_PUT => {
                let value = reader.len_prefixed()?;
                entries.insert(key.to_vec(), value.to_vec());
            }
            CHANGE_KIND_DELETE => {
                entries.remove(key);
            }
            other => return Err(corrupt(&format!("bad change kind {other}"))),
        }
    }
    reader.expect_end()
}

/// Manifest layout, all integers little-endian:
/// magic (8) | format version u32 | has offset u8 | offset u64 | last run number u64 |
/// run count u32 | runs (run number u64 | size u64 | crc32c u32 of the run file)* |
/// crc32c u32 of everything before it. Run numbers strictly increasing (apply order) and at
/// most the last run number.
fn encode_manifest(manifest: &Manifest) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + 4 + 1 + 8 + 8 + 4 + manifest.runs.len() * 20 + 4);
    bytes.extend_from_slice(MANIFEST_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.push(u8::from(manifest.flushed_log_offset.is_some()));
    bytes.extend_from_slice(&manifest.flushed_log_offset.unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&manifest.last_run_number.to_le_bytes());
    let count = u32::try_from(manifest.runs.len()).expect("live runs are few");
    bytes.extend_from_slice(&count.to_le_bytes());
    for run in &manifest.runs {
        bytes.extend_from_slice(&run.number.to_le_bytes());
        bytes.extend_from_slice(&run.len_bytes.to_le_bytes());
        bytes.extend_from_slice(&run.crc32c.to_le_bytes());
    }
    append_checksum(&mut bytes);
    bytes
}

fn decode_manifest(bytes: &[u8]) -> Result<Manifest, EngineError> {
    let mut reader = Reader::checked(bytes, "manifest")?;
    reader.expect_magic_and_version(MANIFEST_MAGIC)?;
    let has_offset = reader.u8()?;
    let offset = reader.u64()?;
    let flushed_log_offset = match has_offset {
        0 => None,
        1 => Some(offset),
        other => return Err(corrupt(&format!("bad offset flag {other}"))),
    };
    let last_run_number = reader.u64()?;
    let count = reader.u32()? as usize;
    reader.what = "manifest runs";
    // Checked against the bytes left before anything is allocated for it.
    if count > reader.bytes.len() / MANIFEST_RUN_BYTES {
        return Err(corrupt("run count beyond the manifest's size"));
    }
    let mut runs: Vec<RunListing> = Vec::with_capacity(count);
    for _ in 0..count {
        let listing =
            RunListing { number: reader.u64()?, len_bytes: reader.u64()?, crc32c: reader.u32()? };
        if runs.last().is_some_and(|previous| previous.number >= listing.number) {
            return Err(corrupt("run numbers out of order"));
        }
        if listing.number > last_run_number {
            return Err(corrupt("a run numbered above the last run number"));
        }
        runs.push(listing);
    }
    reader.expect_end()?;
    Ok(Manifest { flushed_log_offset, last_run_number, runs })
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("keys and values are below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn append_checksum(bytes: &mut Vec<u8>) {
    let crc = crc32c::crc32c(bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
}

/// A bounds-checked cursor over the content of a checkpoint file.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of what precedes the file's trailing CRC32C, refused unless the checksum holds.
    fn checked(bytes: &'a [u8], what: &'static str) -> Result<Self, EngineError> {
        let Some(content_len) = bytes.len().checked_sub(CHECKSUM_BYTES as usize) else {
            return Err(corrupt(&format!("{what} shorter than its checksum")));
        };
        let (content, checksum) = bytes.split_at(content_len);
        let mut stored = [0u8; 4];
        stored.copy_from_slice(checksum);
        if crc32c::crc32c(content) != u32::from_le_bytes(stored) {
            return Err(corrupt(&format!("{what} checksum mismatch")));
        }
        Ok(Reader { bytes: content, what })
    }

    fn expect_magic_and_version(&mut self, magic: &[u8; 8]) -> Result<(), EngineError> {
        if self.take(magic.len())? != magic {
            return Err(corrupt(&format!("{} has a bad magic", self.what)));
        }
        let version = self.u32()?;
        if version != FORMAT_VERSION {
            return Err(corrupt(&format!("{} has unknown format version {version}", self.what)));
        }
        Ok(())
    }

    fn expect_end(&self) -> Result<(), EngineError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt(&format!("trailing bytes after the {}", self.what)))
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], EngineError> {
        if len > self.bytes.len() {
            return Err(corrupt(&format!("truncated {}", self.what)));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], EngineError> {
        let len = self.u32()?;
        self.take(len as usize)
    }

    fn u8(&mut self) -> Result<u8, EngineError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::kv_engine::{KeyRange, KvEngine, KvEngineFactory};
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::engine::mem_engine::MemEngineFactory;
    use crate::engine::write_batch::WriteBatch;

    type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

    fn factory() -> (Arc<TestFs>, MemEngineFactory) {
        let fs = Arc::new(TestFs::default());
        (Arc::clone(&fs), MemEngineFactory::new(Arc::clone(&fs) as Arc<dyn LocalFs>))
    }

    fn key(index: usize) -> Vec<u8> {
        format!("key-{index:05}").into_bytes()
    }

    fn value(index: usize, version: usize) -> Vec<u8> {
        // 100 bytes, distinct per key and version.
        format!("{index:05}-{version:05}-").into_bytes().into_iter().cycle().take(100).collect()
    }

    /// Writes `changes` (None deletes) with the flushed offset, and keeps `model` in step.
    fn write(
        engine: &dyn KvEngine,
        model: &mut Entries,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
        flushed_log_offset: Option<u64>,
    ) {
        let mut batch = WriteBatch::new();
        for (key, value) in changes {
            match value {
                Some(value) => {
                    batch.put(key.clone(), value.clone());
                    model.insert(key.clone(), value.clone());
                }
                None => {
                    batch.delete(key.clone());
                    model.remove(key);
                }
            }
        }
        if let Some(offset) = flushed_log_offset {
            batch.set_flushed_log_offset(offset);
        }
        engine.write(&batch).expect("write");
    }

    fn contents(engine: &dyn KvEngine) -> Entries {
        let mut iter = engine.snapshot().expect("snapshot").iter(KeyRange::all()).expect("iter");
        iter.seek_to_first();
        let mut out = BTreeMap::new();
        while iter.valid() {
            out.insert(iter.key().to_vec(), iter.value().to_vec());
            iter.next();
        }
        iter.status().expect("status");
        out
    }

    /// The run files of a checkpoint directory, by name.
    fn run_files(fs: &TestFs, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let names = fs.list_dir(dir).expect("list");
        names
            .into_iter()
            .filter(|name| is_run_file_name(name))
            .map(|name| {
                let bytes = fs.read(&format!("{dir}/{name}")).expect("read run");
                (name, bytes)
            })
            .collect()
    }

    fn total_len_bytes(runs: &BTreeMap<String, Vec<u8>>) -> u64 {
        runs.values().map(|bytes| bytes.len() as u64).sum()
    }

    fn full_run_len_bytes(model: &Entries) -> u64 {
        encoded_run_len(model.iter().map(|(key, value)| (key.as_slice(), Some(value.as_slice()))))
    }

    fn assert_opens_as(
        factory: &MemEngineFactory,
        checkpoint_dir: &str,
        model: &Entries,
        flushed_log_offset: Option<u64>,
    ) {
        let restored = factory.open_checkpoint(checkpoint_dir, "restored").expect("restore");
        assert_eq!(&contents(&*restored), model, "{checkpoint_dir}");
        assert_eq!(restored.flushed_log_offset().expect("offset"), flushed_log_offset);
    }

    fn assert_corrupt(factory: &MemEngineFactory, checkpoint_dir: &str, what: &str) {
        match factory.open_checkpoint(checkpoint_dir, "restored") {
            Err(EngineError::Corrupt(_)) => {}
            Err(other) => panic!("{what}: {other} instead of Corrupt"),
            Ok(_) => panic!("{what}: opened"),
        }
    }

    #[test]
    fn encoded_run_len_is_the_size_encode_run_makes() {
        let changes: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"", Some(b"")), (b"a", None), (b"b", Some(b"value")), (b"c", None)];
        assert_eq!(
            encoded_run_len(changes.iter().copied()),
            encode_run(changes.iter().copied()).len() as u64
        );
        assert_eq!(encoded_run_len(std::iter::empty()), RUN_HEADER_BYTES + CHECKSUM_BYTES);
    }

    #[test]
    fn runs_are_immutable_files_and_the_manifest_is_not() {
        let (_, factory) = factory();
        assert!(factory.is_immutable_file(&run_file_name(17)));
        assert_eq!(run_file_name(17), "000017.memrun");
        assert!(!factory.is_immutable_file(MANIFEST_FILE_NAME));
    }

    #[test]
    fn round_trip_after_several_checkpoints_with_overwrites_and_deletes() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        let mut expected = Vec::new();
        for round in 0..8usize {
            let mut changes = Vec::new();
            for index in 0..40 {
                match (index + round) % 5 {
                    0 => changes.push((key(index), None)),
                    1 | 2 => changes.push((key(index), Some(value(index, round)))),
                    _ => {}
                }
            }
            changes.push((key(1000 + round), Some(Vec::new())));
            write(&*engine, &mut model, &changes, Some(round as u64 * 10));
            let dir = format!("cp/{round}");
            engine.checkpoint(&dir).expect("checkpoint");
            expected.push((dir, model.clone(), Some(round as u64 * 10)));
        }
        drop(engine);
        // Every checkpoint, opened after all of them were taken, is its own point in time.
        for (dir, model, offset) in &expected {
            assert_opens_as(&factory, dir, model, *offset);
            assert!(fs.exists(&format!("{dir}/{MANIFEST_FILE_NAME}")));
        }
        // The engine reopened carries on from its checkpoints: the next one builds on them.
        let engine = factory.open("e").expect("reopen");
        let last_runs = run_files(&fs, "cp/7");
        write(&*engine, &mut model, &[(key(3), Some(value(3, 99)))], Some(99));
        engine.checkpoint("cp/8").expect("checkpoint");
        let runs = run_files(&fs, "cp/8");
        assert!(last_runs.iter().all(|(name, bytes)| runs.get(name) == Some(bytes)));
        assert_eq!(runs.len(), last_runs.len() + 1);
        assert_opens_as(&factory, "cp/8", &model, Some(99));
    }

    #[test]
    fn a_checkpoint_after_ten_percent_changed_reuses_every_earlier_run() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        let key_count = 1000;
        let all: Vec<_> = (0..key_count).map(|i| (key(i), Some(value(i, 0)))).collect();
        write(&*engine, &mut model, &all, Some(1));
        engine.checkpoint("cp/1").expect("checkpoint");
        let changed: Vec<_> =
            (0..key_count).step_by(10).map(|i| (key(i), Some(value(i, 1)))).collect();
        write(&*engine, &mut model, &changed, Some(2));
        engine.checkpoint("cp/2").expect("checkpoint");

        let first = run_files(&fs, "cp/1");
        let second = run_files(&fs, "cp/2");
        assert_eq!(first.len(), 1);
        for (name, bytes) in &first {
            assert_eq!(second.get(name), Some(bytes), "{name} is reused byte for byte");
        }
        let new_runs: Vec<_> = second.keys().filter(|name| !first.contains_key(*name)).collect();
        assert_eq!(new_runs.len(), 1, "one new run");
        let new_len_bytes = second[new_runs[0]].len() as u64;
        let full_len_bytes = total_len_bytes(&first);
        // The new run holds the changed tenth, headers aside.
        assert!(
            new_len_bytes * 100 >= full_len_bytes * 9 && new_len_bytes * 100 <= full_len_bytes * 11
        );
        let reused_len_bytes = total_len_bytes(&first);
        let second_len_bytes = total_len_bytes(&second);
        println!(
            "mem checkpoint reuse after 10% of {key_count} keys changed: {reused_len_bytes} of \
             {second_len_bytes} run bytes reused ({:.1}%), new run {new_len_bytes} bytes",
            reused_len_bytes as f64 * 100.0 / second_len_bytes as f64
        );
        assert_opens_as(&factory, "cp/2", &model, Some(2));
    }

    #[test]
    fn a_checkpoint_with_nothing_changed_adds_no_run() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        write(&*engine, &mut model, &[(key(1), Some(value(1, 0)))], Some(5));
        engine.checkpoint("cp/1").expect("checkpoint");
        engine.checkpoint("cp/2").expect("checkpoint");
        // Only the flushed offset moves: a new manifest over the same run.
        write(&*engine, &mut model, &[], Some(9));
        engine.checkpoint("cp/3").expect("checkpoint");
        let first = run_files(&fs, "cp/1");
        assert_eq!(run_files(&fs, "cp/2"), first);
        assert_eq!(run_files(&fs, "cp/3"), first);
        assert_opens_as(&factory, "cp/2", &model, Some(5));
        assert_opens_as(&factory, "cp/3", &model, Some(9));
    }

    #[test]
    fn a_checkpoint_of_an_empty_engine_is_a_manifest_alone() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        engine.checkpoint("cp/empty").expect("checkpoint");
        assert_eq!(fs.list_dir("cp/empty").expect("list"), vec![MANIFEST_FILE_NAME.to_string()]);
        assert_opens_as(&factory, "cp/empty", &Entries::new(), None);

        // Everything deleted again: the runs are compacted away.
        let mut model = Entries::new();
        write(&*engine, &mut model, &[(key(1), Some(value(1, 0)))], None);
        engine.checkpoint("cp/one").expect("checkpoint");
        write(&*engine, &mut model, &[(key(1), None)], Some(3));
        engine.checkpoint("cp/none").expect("checkpoint");
        assert_opens_as(&factory, "cp/none", &Entries::new(), Some(3));
        assert!(run_files(&fs, "cp/none").is_empty(), "tombstones over nothing are compacted");
    }

    /// Runs `rounds` checkpoints, each after `change` rewrote the model, and checks after each
    /// that the live runs stay within the compaction bounds; answers how many compactions ran.
    fn checkpoints_within_bounds(
        rounds: usize,
        change: impl Fn(usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> usize {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        let mut seen_runs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut previous_runs = BTreeMap::new();
        let mut compactions = 0;
        for round in 0..rounds {
            write(&*engine, &mut model, &change(round), Some(round as u64));
            let dir = format!("cp/{round}");
            engine.checkpoint(&dir).expect("checkpoint");
            let runs = run_files(&fs, &dir);
            assert!(runs.len() <= LIVE_RUN_COUNT_MAX, "round {round}: {} runs", runs.len());
            let full_len_bytes = full_run_len_bytes(&model);
            assert!(
                total_len_bytes(&runs) <= LIVE_RUNS_SIZE_MAX_IN_FULL_RUNS * full_len_bytes,
                "round {round}: {} bytes of runs for {full_len_bytes} of data",
                total_len_bytes(&runs)
            );
            if !previous_runs.is_empty()
                && previous_runs.keys().all(|name| !runs.contains_key(name))
            {
                compactions += 1;
            }
            for (name, bytes) in &runs {
                let first_seen = seen_runs.entry(name.clone()).or_insert_with(|| bytes.clone());
                assert_eq!(first_seen, bytes, "{name} never changes content");
            }
            assert_opens_as(&factory, &dir, &model, Some(round as u64));
            previous_runs = runs;
        }
        compactions
    }

    #[test]
    fn compaction_bounds_the_runs_over_fifty_checkpoints() {
        // A few hot keys: small runs pile up until the count bound compacts them.
        let hot = checkpoints_within_bounds(50, |round| {
            let mut changes: Vec<_> = (0..5).map(|i| (key(i), Some(value(i, round)))).collect();
            if round == 0 {
                changes.extend((5..200).map(|i| (key(i), Some(value(i, 0)))));
            }
            changes
        });
        assert!(hot >= 7, "count bound: {hot} compactions");
        // Most keys rewritten, some deleted and re-added: the byte bound compacts.
        let churn = checkpoints_within_bounds(50, |round| {
            (0..100)
                .filter(|i| (i + round) % 4 != 0)
                .map(|i| (key(i), if (i + round) % 7 == 0 { None } else { Some(value(i, round)) }))
                .collect()
        });
        assert!(churn >= 10, "size bound: {churn} compactions");
    }

    #[test]
    fn a_fresh_factory_opens_a_checkpoint_from_its_files_alone_and_builds_on_its_runs() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        let all: Vec<_> = (0..50).map(|i| (key(i), Some(value(i, 0)))).collect();
        write(&*engine, &mut model, &all, Some(50));
        engine.checkpoint("cp/1").expect("checkpoint");
        write(&*engine, &mut model, &[(key(3), None), (key(4), Some(value(4, 1)))], Some(52));
        engine.checkpoint("cp/2").expect("checkpoint");
        drop(engine);
        drop(factory);

        // Another server that downloaded the files: a new factory over the same file system.
        let other = MemEngineFactory::new(Arc::clone(&fs) as Arc<dyn LocalFs>);
        let restored = other.open_checkpoint("cp/2", "e").expect("restore");
        assert_eq!(contents(&*restored), model);
        assert_eq!(restored.flushed_log_offset().expect("offset"), Some(52));
        // Its checkpoints reuse the runs it was restored from, and name new ones after them.
        write(&*restored, &mut model, &[(key(5), Some(value(5, 2)))], Some(53));
        restored.checkpoint("cp/3").expect("checkpoint");
        let restored_runs = run_files(&fs, "cp/2");
        let runs = run_files(&fs, "cp/3");
        assert!(restored_runs.iter().all(|(name, bytes)| runs.get(name) == Some(bytes)));
        let new_name = runs.keys().find(|name| !restored_runs.contains_key(*name));
        let last_name = restored_runs.keys().last().expect("runs");
        assert!(new_name.expect("one new run") > last_name);
        drop(restored);
        assert_opens_as(&other, "cp/3", &model, Some(53));
    }

    #[test]
    fn a_restored_state_numbers_its_runs_above_every_run_its_source_used() {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        let mut names_used = BTreeSet::new();
        // An empty state (no run), tombstones over nothing (runs 1 and 2), compacted away.
        for round in 0..4 {
            write(&*engine, &mut model, &[(b"k".to_vec(), None)], None);
            engine.checkpoint(&format!("cp/{round}")).expect("checkpoint");
            names_used.extend(run_files(&fs, &format!("cp/{round}")).into_keys());
        }
        assert_eq!(names_used.len(), 2);
        assert!(run_files(&fs, "cp/3").is_empty());
        drop(engine);

        let other = MemEngineFactory::new(Arc::clone(&fs) as Arc<dyn LocalFs>);
        let restored = other.open_checkpoint("cp/3", "e").expect("restore");
        write(&*restored, &mut model, &[(key(0), Some(value(0, 0)))], None);
        restored.checkpoint("cp/4").expect("checkpoint");
        let runs = run_files(&fs, "cp/4");
        assert_eq!(runs.len(), 1);
        let new_name = runs.keys().next().expect("run");
        assert!(names_used.iter().all(|used| used < new_name), "{new_name} after {names_used:?}");
    }

    /// A checkpoint with two runs (one with a tombstone) and an offset, in `cp`.
    fn two_run_checkpoint() -> (Arc<TestFs>, MemEngineFactory) {
        let (fs, factory) = factory();
        let engine = factory.open("e").expect("open");
        let mut model = Entries::new();
        write(
            &*engine,
            &mut model,
            &[(key(1), Some(b"one".to_vec())), (key(2), Some(Vec::new()))],
            None,
        );
        engine.checkpoint("cp0").expect("checkpoint");
        write(&*engine, &mut model, &[(key(1), None), (key(3), Some(b"three".to_vec()))], Some(42));
        engine.checkpoint("cp").expect("checkpoint");
        drop(engine);
        assert_eq!(run_files(&fs, "cp").len(), 2);
        assert_opens_as(&factory, "cp", &model, Some(42));
        (fs, factory)
    }

    #[test]
    fn every_truncation_and_byte_flip_of_the_manifest_and_the_runs_is_refused() {
        let (fs, factory) = two_run_checkpoint();
        let mut paths = vec![format!("cp/{MANIFEST_FILE_NAME}")];
        paths.extend(run_files(&fs, "cp").keys().map(|name| format!("cp/{name}")));
        for path in &paths {
            let original = fs.read(path).expect("read");
            for cut in 0..original.len() {
                fs.write(path, &original[..cut]).expect("write");
                assert_corrupt(&factory, "cp", &format!("{path} cut at {cut}"));
            }
            for index in 0..original.len() {
                fs.write(path, &original).expect("write");
                fs.corrupt(path, |bytes| bytes[index] ^= 0x10);
                assert_corrupt(&factory, "cp", &format!("{path} flip at {index}"));
            }
            fs.write(path, &[original.clone(), vec![0]].concat()).expect("write");
            assert_corrupt(&factory, "cp", &format!("{path} with a byte appended"));
            fs.write(path, &original).expect("write");
        }
        factory.open_checkpoint("cp", "restored").expect("the restored files open again");
    }

    #[test]
    fn a_missing_run_or_another_checkpoints_run_is_refused() {
        let (fs, factory) = two_run_checkpoint();
        let runs = run_files(&fs, "cp");
        let first_bytes = runs.values().next().expect("run");
        let (last_name, last_bytes) = runs.iter().last().expect("run");
        fs.remove_file(&format!("cp/{last_name}")).expect("remove");
        assert_corrupt(&factory, "cp", "missing run");
        // A well-formed run under the wrong name: the manifest's size and checksum refuse it.
        fs.write(&format!("cp/{last_name}"), first_bytes).expect("write");
        assert_corrupt(&factory, "cp", "swapped run");
        fs.write(&format!("cp/{last_name}"), last_bytes).expect("write");
        factory.open_checkpoint("cp", "restored").expect("restored");
        assert!(matches!(factory.open_checkpoint("nowhere", "r"), Err(EngineError::Io(_))));
    }

    fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
        append_checksum(&mut bytes);
        bytes
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_corrupt_not_a_panic_nor_a_large_allocation() {
        let mut header = MANIFEST_MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.push(0);
        header.extend_from_slice(&0u64.to_le_bytes());
        header.extend_from_slice(&9u64.to_le_bytes());
        let huge_count = with_checksum([header.clone(), u32::MAX.to_le_bytes().to_vec()].concat());
        assert!(matches!(decode_manifest(&huge_count), Err(EngineError::Corrupt(_))));
        let mut out_of_order = header.clone();
        out_of_order.extend_from_slice(&2u32.to_le_bytes());
        for number in [5u64, 5] {
            out_of_order.extend_from_slice(&number.to_le_bytes());
            out_of_order.extend_from_slice(&24u64.to_le_bytes());
            out_of_order.extend_from_slice(&0u32.to_le_bytes());
        }
        assert!(matches!(
            decode_manifest(&with_checksum(out_of_order)),
            Err(EngineError::Corrupt(_))
        ));
        let mut above_last = header.clone();
        above_last.extend_from_slice(&1u32.to_le_bytes());
        above_last.extend_from_slice(&10u64.to_le_bytes());
        above_last.extend_from_slice(&24u64.to_le_bytes());
        above_last.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            decode_manifest(&with_checksum(above_last)),
            Err(EngineError::Corrupt(_))
        ));
        let mut bad_flag = MANIFEST_MAGIC.to_vec();
        bad_flag.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bad_flag.push(2);
        bad_flag.extend_from_slice(&[0; 20]);
        assert!(matches!(decode_manifest(&with_checksum(bad_flag)), Err(EngineError::Corrupt(_))));

        let mut entries = BTreeMap::new();
        let mut run = RUN_MAGIC.to_vec();
        run.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        run.extend_from_slice(&u64::MAX.to_le_bytes());
        run.push(CHANGE_KIND_PUT);
        run.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            apply_run(&with_checksum(run), &mut entries),
            Err(EngineError::Corrupt(_))
        ));
        let mut bad_kind = RUN_MAGIC.to_vec();
        bad_kind.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bad_kind.extend_from_slice(&1u64.to_le_bytes());
        bad_kind.push(7);
        bad_kind.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            apply_run(&with_checksum(bad_kind), &mut entries),
            Err(EngineError::Corrupt(_))
        ));
        let unordered = encode_run([(&b"b"[..], None), (&b"a"[..], None)].into_iter());
        assert!(matches!(apply_run(&unordered, &mut entries), Err(EngineError::Corrupt(_))));
        assert!(entries.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        FlushedOffset(u64),
        Checkpoint,
        /// Drop the engine and open its directory again.
        Reopen,
        /// Replace the engine with the latest checkpoint, through a fresh factory.
        RestoreLatest,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..24, any::<u8>()).prop_map(|(key, value)| Op::Put(key, value)),
            3 => (0u8..24).prop_map(Op::Delete),
            1 => (0u64..1000).prop_map(Op::FlushedOffset),
            3 => Just(Op::Checkpoint),
            1 => Just(Op::Reopen),
            1 => Just(Op::RestoreLatest),
        ]
    }

    proptest! {
        #[test]
        fn every_checkpoint_opens_as_the_state_it_was_taken_at(
            ops in proptest::collection::vec(op(), 0..120)
        ) {
            let fs = Arc::new(TestFs::default());
            let new_factory = || MemEngineFactory::new(Arc::clone(&fs) as Arc<dyn LocalFs>);
            let mut factory = new_factory();
            let mut engine = factory.open("e").expect("open");
            let mut model = Entries::new();
            let mut offset = None;
            let mut taken: Vec<(String, Entries, Option<u64>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let value = vec![v; usize::from(k) % 7];
                        write(&*engine, &mut model, &[(vec![k], Some(value))], None);
                    }
                    Op::Delete(k) => write(&*engine, &mut model, &[(vec![k], None)], None),
                    Op::FlushedOffset(to) => {
                        offset = Some(to);
                        write(&*engine, &mut model, &[], Some(to));
                    }
                    Op::Checkpoint => {
                        let dir = format!("cp/{}", taken.len());
                        engine.checkpoint(&dir).expect("checkpoint");
                        taken.push((dir, model.clone(), offset));
                    }
                    Op::Reopen => {
                        drop(engine);
                        engine = factory.open("e").expect("reopen");
                    }
                    Op::RestoreLatest => {
                        if let Some((dir, restored_model, restored_offset)) = taken.last() {
                            drop(engine);
                            factory = new_factory();
                            engine = factory.open_checkpoint(dir, "e").expect("restore");
                            model = restored_model.clone();
                            offset = *restored_offset;
                        }
                    }
                }
            }
            drop(engine);
            let reader = new_factory();
            let mut runs_by_name: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for (dir, model, offset) in &taken {
                let restored = reader.open_checkpoint(dir, "check").expect("open checkpoint");
                prop_assert_eq!(&contents(&*restored), model);
                prop_assert_eq!(restored.flushed_log_offset().expect("offset"), *offset);
                let runs = run_files(&fs, dir);
                prop_assert!(runs.len() <= LIVE_RUN_COUNT_MAX);
                for (name, bytes) in runs {
                    let first = runs_by_name.entry(name).or_insert_with(|| bytes.clone());
                    prop_assert_eq!(&*first, &bytes);
                }
            }
        }
    }
}
