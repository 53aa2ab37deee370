//! The production engine: RocksDB behind kvtablet-core's `KvEngine` seam.
//!
//! Data lives in the default column family; the flushed log offset lives in the `meta` column
//! family under one key and is written in the same RocksDB write batch as the data, so a
//! restart finds exactly the offset that matches the data. The write-ahead log stays on.
//!
//! Snapshots and iterators must be owned (`'static`) while RocksDB's borrow the `DB`. They are
//! made owned with `self_cell`: a snapshot owns an `Arc<DB>` next to the RocksDB snapshot that
//! borrows it, and an iterator owns an `Arc` of that snapshot next to the raw iterator that
//! borrows it, so neither can outlive what it points into.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kvtablet_core::engine::{
    EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine, KvEngineFactory, WriteBatch,
    WriteOp,
};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode,
    DBWithThreadMode, ErrorKind, Options, ReadOptions, SingleThreaded, SnapshotWithThreadMode,
    DEFAULT_COLUMN_FAMILY_NAME,
};
use self_cell::self_cell;

type Db = DBWithThreadMode<SingleThreaded>;

const META_COLUMN_FAMILY: &str = "meta";
const FLUSHED_LOG_OFFSET_KEY: &[u8] = b"flushed_log_offset";

type DbSnapshot<'db> = SnapshotWithThreadMode<'db, Db>;

self_cell!(
    /// A RocksDB snapshot together with the database it borrows.
    struct OwnedSnapshot {
        owner: Arc<Db>,
        #[covariant]
        dependent: DbSnapshot,
    }
);

type DbRawIterator<'snapshot> = DBRawIteratorWithThreadMode<'snapshot, Db>;

self_cell!(
    /// A RocksDB raw iterator together with the snapshot (and so the database) it reads.
    struct OwnedRawIterator {
        owner: Arc<RocksSnapshot>,
        #[covariant]
        dependent: DbRawIterator,
    }
);

/// Bloom filter bits per key in the table files (Fluss's `kv.rocksdb.bloom-filter.bits-per-key`
/// default, with its filter on by default too).
const TABLE_BLOOM_BITS_PER_KEY: f64 = 10.0;
/// The memtable's whole-key bloom filter, as a share of the write buffer's size: 0.02 of the
/// default 64 MiB is about 10 million bits, over 20 bits per key of ~100-byte rows.
const MEMTABLE_BLOOM_SIZE_RATIO: f64 = 0.02;

/// The options of the data's (default) column family. Every put looks up the current value of each of its keys
/// (the changelog needs the old value), and a new key is found in no memtable and no table
/// file: the bloom filters answer that without walking the memtable's skip list or reading
/// any table block, which otherwise costs more CPU than the rest of the put together.
fn data_options(write_buffer_bytes: usize) -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(write_buffer_bytes);
    options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_SIZE_RATIO);
    options.set_memtable_whole_key_filtering(true);
    let mut table_options = BlockBasedOptions::default();
    table_options.set_bloom_filter(TABLE_BLOOM_BITS_PER_KEY, false);
    table_options.set_whole_key_filtering(true);
    options.set_block_based_table_factory(&table_options);
    options
}

/// The options of the `meta` column family (one key, the flushed log offset). Its write buffer
/// is no larger than the data's, so that it does not raise the WAL's preallocation, which
/// RocksDB sizes from the largest write buffer of any column family.
fn meta_options(write_buffer_bytes: usize) -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(write_buffer_bytes);
    options
}

fn rocks_error(error: rocksdb::Error) -> EngineError {
    match error.kind() {
        ErrorKind::Corruption => EngineError::Corrupt(error.into_string()),
        _ => EngineError::Io(error.into_string()),
    }
}

/// A checkpoint check's failure: an I/O error of the local disk says nothing about the
/// checkpoint (asked again, it may pass), anything else is damage.
fn checkpoint_error(dir: &str, error: rocksdb::Error) -> EngineError {
    let detail = format!("checkpoint in {dir}: {error}");
    match error.kind() {
        ErrorKind::IOError | ErrorKind::Busy | ErrorKind::TimedOut | ErrorKind::TryAgain => {
            EngineError::Io(detail)
        }
        _ => EngineError::Corrupt(detail),
    }
}

fn io_error(context: &str, error: std::io::Error) -> EngineError {
    EngineError::Io(format!("{context}: {error}"))
}

fn meta_family(db: &Db) -> Result<&ColumnFamily, EngineError> {
    db.cf_handle(META_COLUMN_FAMILY)
        .ok_or_else(|| EngineError::Corrupt("column family `meta` is missing".into()))
}

fn decode_offset(bytes: Option<Vec<u8>>) -> Result<Option<u64>, EngineError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        EngineError::Corrupt(format!("flushed log offset has {} bytes, not 8", bytes.len()))
    })?;
    Ok(Some(u64::from_be_bytes(raw)))
}

/// An open RocksDB database.
pub struct RocksEngine {
    db: Arc<Db>,
    /// The factory's root, against which `checkpoint` directories are resolved.
    root: PathBuf,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.db.path()).finish()
    }
}

impl KvEngine for RocksEngine {
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                WriteOp::Put { key, value } => rocks_batch.put(key, value),
                WriteOp::Delete { key } => rocks_batch.delete(key),
            }
        }
        if let Some(offset) = batch.flushed_log_offset() {
            let meta = meta_family(&self.db)?;
            rocks_batch.put_cf(meta, FLUSHED_LOG_OFFSET_KEY, offset.to_be_bytes());
        }
        self.db.write(rocks_batch).map_err(rocks_error)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.db.get(key).map_err(rocks_error)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        // One snapshot makes all the reads one point in time.
        let snapshot = self.db.snapshot();
        snapshot.multi_get(keys).into_iter().map(|result| result.map_err(rocks_error)).collect()
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError> {
        let snapshot = OwnedSnapshot::new(Arc::clone(&self.db), |db| db.snapshot());
        Ok(Arc::new(RocksSnapshot { snapshot }))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        let meta = meta_family(&self.db)?;
        decode_offset(self.db.get_cf(meta, FLUSHED_LOG_OFFSET_KEY).map_err(rocks_error)?)
    }

    fn checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        let path = resolve(&self.root, dir)?;
        // RocksDB creates the directory itself and refuses an existing one, even if empty.
        if path.exists() {
            let mut entries = std::fs::read_dir(&path).map_err(|e| io_error("checkpoint", e))?;
            if entries.next().is_some() {
                return Err(EngineError::Io(format!(
                    "checkpoint directory {} is not empty",
                    path.display()
                )));
            }
            std::fs::remove_dir(&path).map_err(|e| io_error("checkpoint", e))?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("checkpoint", e))?;
        }
        let checkpoint = Checkpoint::new(&self.db).map_err(rocks_error)?;
        checkpoint.create_checkpoint(&path).map_err(rocks_error)
    }
}

/// A point-in-time view; it keeps the database open until dropped.
pub struct RocksSnapshot {
    snapshot: OwnedSnapshot,
}

impl EngineSnapshot for RocksSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.snapshot.borrow_dependent().get(key).map_err(rocks_error)
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        let meta = meta_family(self.snapshot.borrow_owner())?;
        let snapshot = self.snapshot.borrow_dependent();
        decode_offset(snapshot.get_cf(meta, FLUSHED_LOG_OFFSET_KEY).map_err(rocks_error)?)
    }

    fn iter(self: Arc<Self>, range: KeyRange) -> Result<Box<dyn EngineIterator>, EngineError> {
        // RocksDB's behaviour on an inverted range is not specified; such a range is empty.
        let empty =
            matches!((&range.lower, &range.upper), (Some(lower), Some(upper)) if lower >= upper);
        let mut read_options = ReadOptions::default();
        if let Some(lower) = &range.lower {
            read_options.set_iterate_lower_bound(lower.clone());
        }
        if let Some(upper) = &range.upper {
            read_options.set_iterate_upper_bound(upper.clone());
        }
        let iterator = OwnedRawIterator::new(self, |snapshot| {
            snapshot.snapshot.borrow_dependent().raw_iterator_opt(read_options)
        });
        Ok(Box::new(RocksIterator { iterator, lower: range.lower, empty, positioned: false }))
    }
}

/// A raw iterator over a snapshot, bounded by the range it was made with.
pub struct RocksIterator {
    iterator: OwnedRawIterator,
    lower: Option<Vec<u8>>,
    empty: bool,
    /// Before the first seek a RocksDB iterator is invalid without an error; so is this one.
    positioned: bool,
}

impl EngineIterator for RocksIterator {
    fn seek_to_first(&mut self) {
        self.positioned = true;
        self.iterator.with_dependent_mut(|_, iterator| iterator.seek_to_first());
    }

    fn seek(&mut self, key: &[u8]) {
        self.positioned = true;
        // Clamp to the lower bound rather than rely on RocksDB doing it.
        let target = match &self.lower {
            Some(lower) if lower.as_slice() > key => lower.clone(),
            _ => key.to_vec(),
        };
        self.iterator.with_dependent_mut(|_, iterator| iterator.seek(&target));
    }

    fn valid(&self) -> bool {
        !self.empty && self.positioned && self.iterator.borrow_dependent().valid()
    }

    fn key(&self) -> &[u8] {
        assert!(self.valid(), "EngineIterator::key on an invalid iterator");
        self.iterator.borrow_dependent().key().expect("a valid RocksDB iterator has a key")
    }

    fn value(&self) -> &[u8] {
        assert!(self.valid(), "EngineIterator::value on an invalid iterator");
        self.iterator.borrow_dependent().value().expect("a valid RocksDB iterator has a value")
    }

    fn next(&mut self) {
        if self.valid() {
            self.iterator.with_dependent_mut(|_, iterator| iterator.next());
        }
    }

    fn status(&self) -> Result<(), EngineError> {
        self.iterator.borrow_dependent().status().map_err(rocks_error)
    }
}

/// RocksDB's (and Fluss's `kv.rocksdb.writebuffer.size`) default memtable size.
pub const WRITE_BUFFER_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Opens RocksDB engines in directories under `root`.
pub struct RocksEngineFactory {
    root: PathBuf,
    /// Each engine's memtable size. RocksDB also reserves (fallocates) about 1.1 times this on
    /// disk for every open write-ahead log, so it is disk as well as memory per open bucket.
    write_buffer_bytes: usize,
    /// Databases this factory opened, so that a directory in use is never destroyed or
    /// overwritten under its engine (RocksDB's lock file only guards opening).
    open_dbs: Mutex<BTreeMap<PathBuf, Weak<Db>>>,
}

impl std::fmt::Debug for RocksEngineFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngineFactory").field("root", &self.root).finish_non_exhaustive()
    }
}

impl RocksEngineFactory {
    pub fn new(root: PathBuf) -> Self {
        RocksEngineFactory {
            root,
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            open_dbs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Engines opened from now on get memtables of `bytes`.
    pub fn with_write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    fn open_dbs(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Weak<Db>>> {
        // The map is only ever inserted into or pruned; a panic cannot leave it inconsistent.
        self.open_dbs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ensure_not_open(&self, path: &Path) -> Result<(), EngineError> {
        let mut open_dbs = self.open_dbs();
        open_dbs.retain(|_, db| db.strong_count() > 0);
        if open_dbs.contains_key(path) {
            return Err(EngineError::Io(format!(
                "engine in {} is open (a handle or snapshot is alive)",
                path.display()
            )));
        }
        Ok(())
    }

    fn open_path(&self, path: PathBuf) -> Result<Arc<dyn KvEngine>, EngineError> {
        std::fs::create_dir_all(&path).map_err(|e| io_error("open", e))?;
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        // Named explicitly: a column family opened by name only gets RocksDB's default
        // options, the default family included, whatever `db_options` say.
        let families = [
            ColumnFamilyDescriptor::new(
                DEFAULT_COLUMN_FAMILY_NAME,
                data_options(self.write_buffer_bytes),
            ),
            ColumnFamilyDescriptor::new(META_COLUMN_FAMILY, meta_options(self.write_buffer_bytes)),
        ];
        let db = Db::open_cf_descriptors(&db_options, &path, families).map_err(rocks_error)?;
        let db = Arc::new(db);
        self.open_dbs().insert(path, Arc::downgrade(&db));
        Ok(Arc::new(RocksEngine { db, root: self.root.clone() }))
    }
}

impl KvEngineFactory for RocksEngineFactory {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        self.open_path(resolve(&self.root, dir)?)
    }

    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        let source = resolve(&self.root, checkpoint_dir)?;
        let target = resolve(&self.root, dir)?;
        self.ensure_not_open(&target)?;
        if !source.is_dir() {
            return Err(EngineError::Io(format!("no checkpoint in {}", source.display())));
        }
        remove_dir_if_present(&target)?;
        copy_dir_durably(&source, &target, &|name| self.is_immutable_file(name))?;
        self.open_path(target)
    }

    fn destroy(&self, dir: &str) -> Result<(), EngineError> {
        let path = resolve(&self.root, dir)?;
        self.ensure_not_open(&path)?;
        remove_dir_if_present(&path)
    }

    /// SST and blob files never change under their names; MANIFEST, CURRENT, OPTIONS and the
    /// WAL are private to a checkpoint.
    fn is_immutable_file(&self, file_name: &str) -> bool {
        file_name.ends_with(".sst") || file_name.ends_with(".blob")
    }

    /// Opens the checkpoint read-only (which checks the MANIFEST and every table file's
    /// footer) and reads every entry of both column families with block checksums verified.
    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        let path = resolve(&self.root, dir)?;
        let mut db_options = Options::default();
        db_options.set_paranoid_checks(true);
        let families = [
            ColumnFamilyDescriptor::new(
                DEFAULT_COLUMN_FAMILY_NAME,
                data_options(self.write_buffer_bytes),
            ),
            ColumnFamilyDescriptor::new(META_COLUMN_FAMILY, meta_options(self.write_buffer_bytes)),
        ];
        let db = Db::open_cf_descriptors_read_only(&db_options, &path, families, false)
            .map_err(|error| checkpoint_error(dir, error))?;
        for family in [DEFAULT_COLUMN_FAMILY_NAME, META_COLUMN_FAMILY] {
            let handle = db.cf_handle(family).ok_or_else(|| {
                EngineError::Corrupt(format!("checkpoint in {dir} lacks column family {family}"))
            })?;
            let mut read_options = ReadOptions::default();
            read_options.set_verify_checksums(true);
            read_options.fill_cache(false);
            let mut iterator = db.raw_iterator_cf_opt(handle, read_options);
            iterator.seek_to_first();
            while iterator.valid() {
                iterator.next();
            }
            iterator.status().map_err(|error| checkpoint_error(dir, error))?;
        }
        Ok(())
    }
}

/// `root/dir`, refusing directories that would escape the root.
fn resolve(root: &Path, dir: &str) -> Result<PathBuf, EngineError> {
    let relative = Path::new(dir);
    let escapes = relative.components().any(|component| {
        matches!(component, Component::ParentDir | Component::RootDir | Component::Prefix(_))
    });
    if escapes {
        return Err(EngineError::Io(format!("engine directory {dir:?} is not inside the root")));
    }
    Ok(root.join(relative))
}

fn remove_dir_if_present(path: &Path) -> Result<(), EngineError> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error(&format!("remove {}", path.display()), error))
        }
        _ => Ok(()),
    }
}

/// Copies a checkpoint directory, syncing every file and directory so that the copy survives
/// a crash before the engine opened on it writes anything.
/// Copies the directory `source` to `target`, every file synced, then the directories. A file
/// that `immutable` names (a table file, which RocksDB never writes again) is hard-linked
/// instead of copied where the file system allows it (the restore's checkpoint lies beside the
/// engine's directory), which saves a copy of the whole engine; the link is synced all the
/// same, since the checkpoint's files were written without a sync. The files RocksDB does
/// write in place (MANIFEST, WAL) are always copied, so the checkpoint stays as it was.
fn copy_dir_durably(
    source: &Path,
    target: &Path,
    immutable: &dyn Fn(&str) -> bool,
) -> Result<(), EngineError> {
    let context = |what: &Path| format!("copy checkpoint {}", what.display());
    std::fs::create_dir_all(target).map_err(|e| io_error(&context(target), e))?;
    for entry in std::fs::read_dir(source).map_err(|e| io_error(&context(source), e))? {
        let entry = entry.map_err(|e| io_error(&context(source), e))?;
        let from = entry.path();
        let to = target.join(entry.file_name());
        let file_type = entry.file_type().map_err(|e| io_error(&context(&from), e))?;
        if file_type.is_dir() {
            copy_dir_durably(&from, &to, immutable)?;
            continue;
        }
        let linked = immutable(&entry.file_name().to_string_lossy())
            && std::fs::hard_link(&from, &to).is_ok();
        if !linked {
            std::fs::copy(&from, &to).map_err(|e| io_error(&context(&from), e))?;
        }
        sync_path(&to)?;
    }
    sync_path(target)?;
    if let Some(parent) = target.parent() {
        sync_path(parent)?;
    }
    Ok(())
}

fn sync_path(path: &Path) -> Result<(), EngineError> {
    let file =
        std::fs::File::open(path).map_err(|e| io_error(&format!("open {}", path.display()), e))?;
    file.sync_all().map_err(|e| io_error(&format!("sync {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the files under `dir` hold on disk, preallocated blocks included.
    fn allocated_bytes(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|entry| entry.expect("entry").metadata().expect("metadata").blocks() * 512)
            .sum()
    }

    #[test]
    fn an_open_engine_reserves_disk_by_its_write_buffer_not_rocksdbs_default() {
        let temp = tempfile::TempDir::new().expect("tempdir");
        let write_buffer_bytes = 1024 * 1024;
        let factory = RocksEngineFactory::new(temp.path().to_path_buf())
            .with_write_buffer_bytes(write_buffer_bytes);
        let engine = factory.open("e").expect("open");
        let mut batch = WriteBatch::new();
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.set_flushed_log_offset(1);
        engine.write(&batch).expect("write");
        // The WAL's preallocation is 1.1 write buffers; the MANIFEST's 4 MiB is RocksDB's own.
        let allocated = allocated_bytes(&temp.path().join("e"));
        assert!(allocated < 8 * 1024 * 1024, "{allocated} bytes on disk for one key");
    }

    #[test]
    fn snapshot_and_iterator_outlive_the_engine_and_factory() {
        let temp = tempfile::TempDir::new().expect("tempdir");
        let factory = RocksEngineFactory::new(temp.path().to_path_buf());
        let engine = factory.open("e").expect("open");
        let mut batch = WriteBatch::new();
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.set_flushed_log_offset(5);
        engine.write(&batch).expect("write");
        let snapshot = engine.snapshot().expect("snapshot");
        let mut iterator = Arc::clone(&snapshot).iter(KeyRange::all()).expect("iter");
        drop(snapshot);
        drop(engine);
        drop(factory);
        iterator.seek_to_first();
        assert_eq!(iterator.key(), b"a");
        assert_eq!(iterator.value(), b"1");
        iterator.next();
        assert!(!iterator.valid());
        iterator.status().expect("status");
    }

    #[test]
    fn a_restored_engine_links_the_checkpoints_table_files_and_outlives_the_checkpoint() {
        use std::os::unix::fs::MetadataExt;
        let temp = tempfile::TempDir::new().expect("tempdir");
        let factory = RocksEngineFactory::new(temp.path().to_path_buf());
        let engine = factory.open("e").expect("open");
        let mut batch = WriteBatch::new();
        for key in 0..1000u32 {
            batch.put(key.to_be_bytes().to_vec(), vec![7; 100]);
        }
        batch.set_flushed_log_offset(9);
        engine.write(&batch).expect("write");
        engine.checkpoint("cp").expect("checkpoint");
        let private_files_of = |dir: &str| -> Vec<(String, Vec<u8>)> {
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(temp.path().join(dir))
                .expect("read_dir")
                .map(|entry| entry.expect("entry").path())
                .filter(|path| !factory.is_immutable_file(&path.to_string_lossy()))
                .map(|path| (path.display().to_string(), std::fs::read(&path).expect("read")))
                .collect();
            files.sort();
            files
        };
        let checkpoint_private_files = private_files_of("cp");
        let restored = factory.open_checkpoint("cp", "r").expect("open checkpoint");
        let tables: Vec<std::path::PathBuf> = std::fs::read_dir(temp.path().join("r"))
            .expect("read_dir")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| factory.is_immutable_file(&path.to_string_lossy()))
            .collect();
        assert!(!tables.is_empty(), "the checkpoint has table files");
        let inode = |path: &std::path::Path| std::fs::metadata(path).expect("metadata").ino();
        for table in &tables {
            let in_checkpoint = temp.path().join("cp").join(table.file_name().expect("name"));
            assert_eq!(inode(table), inode(&in_checkpoint), "{table:?} is linked, not copied");
        }
        let mut more = WriteBatch::new();
        more.put(b"new".to_vec(), b"v".to_vec());
        more.set_flushed_log_offset(10);
        restored.write(&more).expect("write to the restored engine");
        assert_eq!(private_files_of("cp"), checkpoint_private_files, "the checkpoint is untouched");
        std::fs::remove_dir_all(temp.path().join("cp")).expect("remove the checkpoint");
        drop(restored);
        let reopened = factory.open("r").expect("reopen without the checkpoint");
        assert_eq!(reopened.flushed_log_offset().expect("offset"), Some(10));
        let got = reopened.get(&7u32.to_be_bytes()).expect("get");
        assert_eq!(got, Some(vec![7; 100]));
    }

    #[test]
    fn dirs_outside_the_root_are_refused() {
        let temp = tempfile::TempDir::new().expect("tempdir");
        let factory = RocksEngineFactory::new(temp.path().to_path_buf());
        assert!(factory.open("../x").is_err());
        assert!(factory.open("/tmp/x").is_err());
    }
}
