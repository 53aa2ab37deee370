//! One set of engine tests, run against both the simulator's MemEngine and the production
//! RocksEngine, plus a property test that drives both, and a plain BTreeMap model, with the same
//! random operations and requires the same answers. The simulator's verdicts are only worth
//! something if the MemEngine behaves like RocksDB wherever the node can tell.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{
    EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine, KvEngineFactory, WriteBatch,
};
use kvtablet_prod::rocks_engine::RocksEngineFactory;
use kvtablet_sim::fs::SimFs;

/// A factory plus whatever keeps its storage alive for the test.
trait Harness {
    fn factory(&self) -> &dyn KvEngineFactory;
}

struct MemHarness {
    factory: MemEngineFactory,
}

impl Harness for MemHarness {
    fn factory(&self) -> &dyn KvEngineFactory {
        &self.factory
    }
}

struct RocksHarness {
    factory: RocksEngineFactory,
    _root: tempfile::TempDir,
}

impl Harness for RocksHarness {
    fn factory(&self) -> &dyn KvEngineFactory {
        &self.factory
    }
}

fn mem_harness() -> Box<dyn Harness> {
    Box::new(MemHarness { factory: MemEngineFactory::new(Arc::new(SimFs::new())) })
}

fn rocks_harness() -> Box<dyn Harness> {
    let root = tempfile::TempDir::new().expect("temp dir");
    Box::new(RocksHarness {
        factory: RocksEngineFactory::new(root.path().to_path_buf()),
        _root: root,
    })
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

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

/// Every entry from the iterator's current position on, then a check that it ended cleanly.
fn drain(iter: &mut dyn EngineIterator, limit: usize) -> Entries {
    let mut entries = Vec::new();
    while iter.valid() && entries.len() < limit {
        entries.push((iter.key().to_vec(), iter.value().to_vec()));
        iter.next();
    }
    iter.status().expect("iterator status");
    entries
}

fn scan(snapshot: &Arc<dyn EngineSnapshot>, range: KeyRange) -> Entries {
    let mut iter = Arc::clone(snapshot).iter(range).expect("iter");
    iter.seek_to_first();
    drain(&mut *iter, usize::MAX)
}

fn keys(entries: &Entries) -> Vec<Vec<u8>> {
    entries.iter().map(|(key, _)| key.clone()).collect()
}

fn entry(key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (key.to_vec(), value.to_vec())
}

// ---- the shared test bodies ----

fn snapshot_isolation_after_later_writes_and_deletes(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    put(&*engine, b"a", b"1");
    put(&*engine, b"b", b"1");
    put(&*engine, b"c", b"1");
    let snapshot = engine.snapshot().expect("snapshot");
    put(&*engine, b"a", b"2");
    delete(&*engine, b"b");
    put(&*engine, b"d", b"2");
    let later = engine.snapshot().expect("snapshot");

    assert_eq!(snapshot.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(snapshot.get(b"b").expect("get"), Some(b"1".to_vec()));
    assert_eq!(snapshot.get(b"d").expect("get"), None);
    assert_eq!(
        scan(&snapshot, KeyRange::all()),
        vec![entry(b"a", b"1"), entry(b"b", b"1"), entry(b"c", b"1")]
    );
    assert_eq!(
        scan(&later, KeyRange::all()),
        vec![entry(b"a", b"2"), entry(b"c", b"1"), entry(b"d", b"2")]
    );
    assert_eq!(engine.get(b"b").expect("get"), None);

    // An iterator made before more writes still reads its snapshot, also after the engine
    // handle and the snapshot handle are gone.
    let mut iter = Arc::clone(&snapshot).iter(KeyRange::all()).expect("iter");
    put(&*engine, b"b", b"3");
    drop(snapshot);
    drop(later);
    drop(engine);
    iter.seek(b"b");
    assert_eq!(drain(&mut *iter, usize::MAX), vec![entry(b"b", b"1"), entry(b"c", b"1")]);
}

fn iterator_order_is_bytewise(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    let mut batch = WriteBatch::new();
    for key in [&b"b"[..], b"a", b"\xff", b"", b"\x00", b"ab", b"a\x00", b"\x7f\xff", b"\x80"] {
        batch.put(key, key);
    }
    engine.write(&batch).expect("write");
    let snapshot = engine.snapshot().expect("snapshot");
    let expected: Vec<Vec<u8>> =
        [&b""[..], b"\x00", b"a", b"a\x00", b"ab", b"b", b"\x7f\xff", b"\x80", b"\xff"]
            .iter()
            .map(|key| key.to_vec())
            .collect();
    let all = scan(&snapshot, KeyRange::all());
    assert_eq!(keys(&all), expected);
    assert!(all.iter().all(|(key, value)| key == value));
}

fn seek_and_prefix_bounds(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    let mut batch = WriteBatch::new();
    for key in [
        &b"a"[..],
        b"ab",
        b"abc",
        b"ac",
        b"b",
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"\xff\xff\x01",
    ] {
        batch.put(key, b"v");
    }
    engine.write(&batch).expect("write");
    let snapshot = engine.snapshot().expect("snapshot");
    let prefix_keys = |prefix: &[u8]| keys(&scan(&snapshot, KeyRange::prefix(prefix)));
    let owned = |keys: &[&[u8]]| keys.iter().map(|key| key.to_vec()).collect::<Vec<_>>();

    assert_eq!(prefix_keys(b"ab"), owned(&[b"ab", b"abc"]));
    assert_eq!(prefix_keys(b"a"), owned(&[b"a", b"ab", b"abc", b"ac"]));
    assert_eq!(prefix_keys(b"\xfe"), owned(&[b"\xfe\xff"]));
    assert_eq!(prefix_keys(b"\xff"), owned(&[b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x01"]));
    assert_eq!(prefix_keys(b"\xff\xff"), owned(&[b"\xff\xff", b"\xff\xff\x01"]));
    assert_eq!(prefix_keys(b"\xfe\xff"), owned(&[b"\xfe\xff"]));
    assert_eq!(prefix_keys(b"").len(), 10);
    assert!(prefix_keys(b"zz").is_empty());

    let range = KeyRange { lower: Some(b"ab".to_vec()), upper: Some(b"b".to_vec()) };
    assert_eq!(keys(&scan(&snapshot, range.clone())), owned(&[b"ab", b"abc", b"ac"]));
    let inverted = KeyRange { lower: Some(b"b".to_vec()), upper: Some(b"a".to_vec()) };
    assert!(scan(&snapshot, inverted).is_empty());

    let mut iter = Arc::clone(&snapshot).iter(range).expect("iter");
    assert!(!iter.valid(), "a new iterator is unpositioned");
    iter.seek(b"abd");
    assert_eq!(iter.key(), b"ac");
    iter.seek(b"");
    assert_eq!(iter.key(), b"ab", "a seek below the range lands on its first key");
    iter.seek(b"abc");
    assert_eq!(iter.key(), b"abc", "seek is inclusive");
    iter.seek(b"b");
    assert!(!iter.valid(), "the upper bound is exclusive");
    iter.status().expect("an exhausted iterator is not an error");
    iter.seek_to_first();
    assert_eq!(iter.key(), b"ab");

    let mut iter = Arc::clone(&snapshot).iter(KeyRange::prefix(b"\xff")).expect("iter");
    iter.seek(b"\xff\x01");
    assert_eq!(
        drain(&mut *iter, usize::MAX),
        vec![entry(b"\xff\xff", b"v"), entry(b"\xff\xff\x01", b"v")]
    );
}

fn empty_engine(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    assert_eq!(engine.get(b"a").expect("get"), None);
    assert_eq!(engine.flushed_log_offset().expect("offset"), None);
    assert_eq!(
        engine.multi_get(&[b"a".to_vec(), Vec::new()]).expect("multi_get"),
        vec![None, None]
    );
    let snapshot = engine.snapshot().expect("snapshot");
    assert_eq!(snapshot.flushed_log_offset().expect("offset"), None);
    assert!(scan(&snapshot, KeyRange::all()).is_empty());
    let mut iter = Arc::clone(&snapshot).iter(KeyRange::prefix(b"x")).expect("iter");
    iter.seek(b"x");
    assert!(!iter.valid());
    iter.status().expect("status");
    // An empty batch is allowed and changes nothing.
    engine.write(&WriteBatch::new()).expect("empty write");
    assert!(scan(&engine.snapshot().expect("snapshot"), KeyRange::all()).is_empty());
}

fn reopen_keeps_data_and_flushed_offset(harness: &dyn Harness) {
    let factory = harness.factory();
    let engine = factory.open("node/e1").expect("open");
    let mut batch = WriteBatch::new();
    batch.put(b"a", b"1");
    batch.put(b"b", b"2");
    batch.set_flushed_log_offset(17);
    engine.write(&batch).expect("write");
    delete(&*engine, b"b");
    drop(engine);

    let engine = factory.open("node/e1").expect("reopen");
    assert_eq!(engine.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(engine.get(b"b").expect("get"), None);
    assert_eq!(engine.flushed_log_offset().expect("offset"), Some(17));
    let other = factory.open("node/e2").expect("open another dir");
    assert_eq!(other.get(b"a").expect("get"), None, "directories are separate engines");
    drop(other);
    drop(engine);

    factory.destroy("node/e1").expect("destroy");
    factory.destroy("node/never").expect("destroying a missing dir is fine");
    let engine = factory.open("node/e1").expect("open after destroy");
    assert_eq!(engine.get(b"a").expect("get"), None);
    assert_eq!(engine.flushed_log_offset().expect("offset"), None);
}

fn checkpoint_round_trip(harness: &dyn Harness) {
    let factory = harness.factory();
    let engine = factory.open("e").expect("open");
    let mut batch = WriteBatch::new();
    batch.put(b"a", b"1");
    batch.put(b"b", b"");
    batch.put(b"\xff", b"last");
    batch.set_flushed_log_offset(100);
    engine.write(&batch).expect("write");
    delete(&*engine, b"gone");
    engine.checkpoint("checkpoints/1").expect("checkpoint");
    let mut later = WriteBatch::new();
    later.put(b"c", b"after");
    later.delete(b"a");
    later.set_flushed_log_offset(200);
    engine.write(&later).expect("write after checkpoint");

    // Restore over an existing engine directory: its old content must be replaced.
    let stale = factory.open("restored").expect("open");
    put(&*stale, b"stale", b"x");
    drop(stale);
    let restored = factory.open_checkpoint("checkpoints/1", "restored").expect("restore");
    let snapshot = restored.snapshot().expect("snapshot");
    assert_eq!(
        scan(&snapshot, KeyRange::all()),
        vec![entry(b"a", b"1"), entry(b"b", b""), entry(b"\xff", b"last")]
    );
    assert_eq!(restored.flushed_log_offset().expect("offset"), Some(100));
    assert_eq!(engine.flushed_log_offset().expect("offset"), Some(200), "the source goes on");

    // The restored engine is an ordinary engine: writable and reopenable.
    put(&*restored, b"new", b"1");
    drop(snapshot);
    drop(restored);
    let reopened = factory.open("restored").expect("reopen");
    assert_eq!(reopened.get(b"new").expect("get"), Some(b"1".to_vec()));
    assert_eq!(reopened.get(b"a").expect("get"), Some(b"1".to_vec()));
    drop(reopened);

    let missing = factory.open_checkpoint("checkpoints/none", "other");
    assert!(missing.is_err(), "restoring a missing checkpoint fails");
}

fn flushed_offset_is_atomic_with_its_batch(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    let mut first = WriteBatch::new();
    first.put(b"k", b"1");
    first.set_flushed_log_offset(10);
    engine.write(&first).expect("write");
    let at_first = engine.snapshot().expect("snapshot");

    let mut data_only = WriteBatch::new();
    data_only.put(b"k", b"2");
    engine.write(&data_only).expect("write");
    assert_eq!(
        engine.flushed_log_offset().expect("offset"),
        Some(10),
        "a batch without offset keeps it"
    );
    let at_data_only = engine.snapshot().expect("snapshot");

    let mut offset_only = WriteBatch::new();
    offset_only.set_flushed_log_offset(30);
    engine.write(&offset_only).expect("write");

    assert_eq!(at_first.get(b"k").expect("get"), Some(b"1".to_vec()));
    assert_eq!(at_first.flushed_log_offset().expect("offset"), Some(10));
    assert_eq!(at_data_only.get(b"k").expect("get"), Some(b"2".to_vec()));
    assert_eq!(at_data_only.flushed_log_offset().expect("offset"), Some(10));
    assert_eq!(engine.flushed_log_offset().expect("offset"), Some(30));
    // The offset is not data: it never shows up in a scan or a get.
    assert_eq!(
        keys(&scan(&engine.snapshot().expect("snapshot"), KeyRange::all())),
        vec![b"k".to_vec()]
    );
    assert_eq!(engine.get(b"flushed_log_offset").expect("get"), None);
}

fn multi_get_reads_in_key_order_of_the_request(harness: &dyn Harness) {
    let engine = harness.factory().open("e").expect("open");
    let mut batch = WriteBatch::new();
    batch.put(b"a", b"1");
    batch.put(b"c", b"3");
    batch.put(b"d", b"4");
    batch.delete(b"d");
    engine.write(&batch).expect("write");
    let request = [b"c".to_vec(), b"b".to_vec(), b"a".to_vec(), b"d".to_vec(), b"c".to_vec()];
    assert_eq!(
        engine.multi_get(&request).expect("multi_get"),
        vec![Some(b"3".to_vec()), None, Some(b"1".to_vec()), None, Some(b"3".to_vec())]
    );
    assert_eq!(engine.multi_get(&[]).expect("empty multi_get"), Vec::<Option<Vec<u8>>>::new());
}

fn errors_are_errors_not_panics(harness: &dyn Harness) {
    let factory = harness.factory();
    let engine = factory.open("e").expect("open");
    // A directory in use cannot be opened again, restored over, or destroyed.
    assert!(matches!(factory.open("e"), Err(EngineError::Io(_))));
    engine.checkpoint("cp").expect("checkpoint");
    assert!(factory.open_checkpoint("cp", "e").is_err());
    assert!(factory.destroy("e").is_err());
    let snapshot = engine.snapshot().expect("snapshot");
    drop(engine);
    assert!(factory.open("e").is_err(), "a live snapshot keeps the engine open");
    drop(snapshot);
    factory.open("e").expect("open once everything is dropped");
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        mod mem_engine {
            $(#[test] fn $name() { super::$name(&*super::mem_harness()); })*
        }
        mod rocks_engine {
            $(#[test] fn $name() { super::$name(&*super::rocks_harness()); })*
        }
    };
}

conformance_tests!(
    snapshot_isolation_after_later_writes_and_deletes,
    iterator_order_is_bytewise,
    seek_and_prefix_bounds,
    empty_engine,
    reopen_keeps_data_and_flushed_offset,
    checkpoint_round_trip,
    flushed_offset_is_atomic_with_its_batch,
    multi_get_reads_in_key_order_of_the_request,
    errors_are_errors_not_panics,
    property_equivalence_smoke,
);

/// A fixed operation sequence through the same driver as the property test.
fn property_equivalence_smoke(harness: &dyn Harness) {
    use model::Op;
    let ops = vec![
        Op::Put(b"a".to_vec(), b"1".to_vec()),
        Op::TakeSnapshot,
        Op::Delete(b"a".to_vec()),
        Op::Batch(vec![(b"\xff".to_vec(), Some(b"2".to_vec())), (b"a".to_vec(), None)], Some(3)),
        Op::Scan(0, model::RangeSpec::Prefix(b"".to_vec())),
        Op::Seek(1, model::RangeSpec::Prefix(b"\xff".to_vec()), b"\xff".to_vec(), 3),
        Op::Reopen,
        Op::Get(0, b"a".to_vec()),
    ];
    let mut driver = model::Driver::new(harness.factory());
    let mut reference = model::Model::default();
    for op in &ops {
        assert_eq!(driver.apply(op), reference.apply(op), "op {op:?}");
    }
}

/// The reference model and the driver that runs operations on an engine.
mod model {
    use super::*;

    #[derive(Debug, Clone)]
    pub enum RangeSpec {
        Prefix(Vec<u8>),
        Bounds(Option<Vec<u8>>, Option<Vec<u8>>),
    }

    impl RangeSpec {
        pub fn key_range(&self) -> KeyRange {
            match self {
                RangeSpec::Prefix(prefix) => KeyRange::prefix(prefix),
                RangeSpec::Bounds(lower, upper) => {
                    KeyRange { lower: lower.clone(), upper: upper.clone() }
                }
            }
        }
    }

    /// Snapshot indexes are taken modulo the number of live snapshots; with none, the read
    /// goes to the engine (or a fresh snapshot of it).
    #[derive(Debug, Clone)]
    pub enum Op {
        Put(Vec<u8>, Vec<u8>),
        Delete(Vec<u8>),
        Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>, Option<u64>),
        TakeSnapshot,
        DropSnapshot(usize),
        Get(usize, Vec<u8>),
        MultiGet(Vec<Vec<u8>>),
        FlushedOffset(usize),
        Scan(usize, RangeSpec),
        Seek(usize, RangeSpec, Vec<u8>, usize),
        /// Drops every snapshot and the engine handle, and opens the directory again.
        Reopen,
    }

    /// What an operation observed; writes observe nothing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Outcome {
        None,
        Value(Option<Vec<u8>>),
        Values(Vec<Option<Vec<u8>>>),
        Offset(Option<u64>),
        Entries(Entries),
    }

    #[derive(Debug, Clone, Default)]
    struct State {
        entries: BTreeMap<Vec<u8>, Vec<u8>>,
        flushed_offset: Option<u64>,
    }

    /// The specification: a map, and snapshots as copies of it.
    #[derive(Debug, Default)]
    pub struct Model {
        latest: State,
        snapshots: Vec<State>,
    }

    fn to_batch(ops: &[(Vec<u8>, Option<Vec<u8>>)], offset: Option<u64>) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for (key, value) in ops {
            match value {
                Some(value) => batch.put(key.clone(), value.clone()),
                None => batch.delete(key.clone()),
            }
        }
        if let Some(offset) = offset {
            batch.set_flushed_log_offset(offset);
        }
        batch
    }

    fn single_write(op: &Op) -> Option<WriteBatch> {
        match op {
            Op::Put(key, value) => Some(to_batch(&[(key.clone(), Some(value.clone()))], None)),
            Op::Delete(key) => Some(to_batch(&[(key.clone(), None)], None)),
            Op::Batch(ops, offset) => Some(to_batch(ops, *offset)),
            _ => None,
        }
    }

    impl Model {
        fn read_state(&self, index: usize) -> &State {
            if self.snapshots.is_empty() {
                &self.latest
            } else {
                &self.snapshots[index % self.snapshots.len()]
            }
        }

        pub fn apply(&mut self, op: &Op) -> Outcome {
            if let Some(batch) = single_write(op) {
                for write in batch.ops() {
                    match write {
                        kvtablet_core::engine::WriteOp::Put { key, value } => {
                            self.latest.entries.insert(key.clone(), value.clone());
                        }
                        kvtablet_core::engine::WriteOp::Delete { key } => {
                            self.latest.entries.remove(key);
                        }
                    }
                }
                if let Some(offset) = batch.flushed_log_offset() {
                    self.latest.flushed_offset = Some(offset);
                }
                return Outcome::None;
            }
            match op {
                Op::TakeSnapshot => {
                    self.snapshots.push(self.latest.clone());
                    Outcome::None
                }
                Op::DropSnapshot(index) => {
                    if !self.snapshots.is_empty() {
                        let len = self.snapshots.len();
                        self.snapshots.remove(index % len);
                    }
                    Outcome::None
                }
                Op::Get(index, key) => {
                    Outcome::Value(self.read_state(*index).entries.get(key).cloned())
                }
                Op::MultiGet(keys) => Outcome::Values(
                    keys.iter().map(|key| self.latest.entries.get(key).cloned()).collect(),
                ),
                Op::FlushedOffset(index) => Outcome::Offset(self.read_state(*index).flushed_offset),
                Op::Scan(index, range) => {
                    let range = range.key_range();
                    let entries = self.read_state(*index).entries.iter();
                    let entries = entries.filter(|(key, _)| range.contains(key));
                    Outcome::Entries(entries.map(|(k, v)| (k.clone(), v.clone())).collect())
                }
                Op::Seek(index, range, target, limit) => {
                    let range = range.key_range();
                    let entries = self.read_state(*index).entries.iter();
                    let entries = entries.filter(|(key, _)| {
                        range.contains(key) && key.as_slice() >= target.as_slice()
                    });
                    Outcome::Entries(
                        entries.take(*limit).map(|(k, v)| (k.clone(), v.clone())).collect(),
                    )
                }
                Op::Reopen => {
                    self.snapshots.clear();
                    Outcome::None
                }
                Op::Put(..) | Op::Delete(..) | Op::Batch(..) => unreachable!("handled above"),
            }
        }
    }

    /// Runs operations on a real engine in the directory `e` of a factory.
    pub struct Driver<'f> {
        factory: &'f dyn KvEngineFactory,
        engine: Option<Arc<dyn KvEngine>>,
        snapshots: Vec<Arc<dyn EngineSnapshot>>,
    }

    impl<'f> Driver<'f> {
        pub fn new(factory: &'f dyn KvEngineFactory) -> Self {
            let engine = factory.open("e").expect("open");
            Driver { factory, engine: Some(engine), snapshots: Vec::new() }
        }

        fn engine(&self) -> &dyn KvEngine {
            self.engine.as_deref().expect("the driver always holds an engine between ops")
        }

        fn read_snapshot(&self, index: usize) -> Arc<dyn EngineSnapshot> {
            if self.snapshots.is_empty() {
                self.engine().snapshot().expect("snapshot")
            } else {
                Arc::clone(&self.snapshots[index % self.snapshots.len()])
            }
        }

        pub fn apply(&mut self, op: &Op) -> Outcome {
            if let Some(batch) = single_write(op) {
                self.engine().write(&batch).expect("write");
                return Outcome::None;
            }
            match op {
                Op::TakeSnapshot => {
                    let snapshot = self.engine().snapshot().expect("snapshot");
                    self.snapshots.push(snapshot);
                    Outcome::None
                }
                Op::DropSnapshot(index) => {
                    if !self.snapshots.is_empty() {
                        let len = self.snapshots.len();
                        self.snapshots.remove(index % len);
                    }
                    Outcome::None
                }
                Op::Get(index, key) => {
                    let value = if self.snapshots.is_empty() {
                        self.engine().get(key)
                    } else {
                        self.read_snapshot(*index).get(key)
                    };
                    Outcome::Value(value.expect("get"))
                }
                Op::MultiGet(keys) => {
                    Outcome::Values(self.engine().multi_get(keys).expect("multi_get"))
                }
                Op::FlushedOffset(index) => {
                    let offset = if self.snapshots.is_empty() {
                        self.engine().flushed_log_offset()
                    } else {
                        self.read_snapshot(*index).flushed_log_offset()
                    };
                    Outcome::Offset(offset.expect("flushed offset"))
                }
                Op::Scan(index, range) => {
                    Outcome::Entries(scan(&self.read_snapshot(*index), range.key_range()))
                }
                Op::Seek(index, range, target, limit) => {
                    let mut iter =
                        self.read_snapshot(*index).iter(range.key_range()).expect("iter");
                    iter.seek(target);
                    Outcome::Entries(drain(&mut *iter, *limit))
                }
                Op::Reopen => {
                    self.snapshots.clear();
                    self.engine = None;
                    self.engine = Some(self.factory.open("e").expect("reopen"));
                    Outcome::None
                }
                Op::Put(..) | Op::Delete(..) | Op::Batch(..) => unreachable!("handled above"),
            }
        }
    }
}

mod equivalence {
    use proptest::prelude::*;

    use super::model::{Driver, Model, Op, RangeSpec};
    use super::{mem_harness, rocks_harness};

    /// Few distinct bytes, so that keys collide, share prefixes and sit next to 0xff.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(vec![0x00u8, 0x01, b'a', b'b', 0xfe, 0xff]),
            0..4,
        )
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..6)
    }

    fn range() -> impl Strategy<Value = RangeSpec> {
        prop_oneof![
            key().prop_map(RangeSpec::Prefix),
            (prop::option::of(key()), prop::option::of(key()))
                .prop_map(|(lower, upper)| RangeSpec::Bounds(lower, upper)),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => key().prop_map(Op::Delete),
            2 => (
                prop::collection::vec((key(), prop::option::of(value())), 0..5),
                prop::option::of(0u64..1_000),
            )
                .prop_map(|(ops, offset)| Op::Batch(ops, offset)),
            2 => Just(Op::TakeSnapshot),
            1 => any::<usize>().prop_map(Op::DropSnapshot),
            2 => (any::<usize>(), key()).prop_map(|(i, k)| Op::Get(i, k)),
            1 => prop::collection::vec(key(), 0..4).prop_map(Op::MultiGet),
            1 => any::<usize>().prop_map(Op::FlushedOffset),
            2 => (any::<usize>(), range()).prop_map(|(i, r)| Op::Scan(i, r)),
            2 => (any::<usize>(), range(), key(), 0usize..4).prop_map(|(i, r, k, n)| Op::Seek(i, r, k, n)),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn mem_and_rocks_engines_agree_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
            let mem = mem_harness();
            let rocks = rocks_harness();
            let mut mem_driver = Driver::new(mem.factory());
            let mut rocks_driver = Driver::new(rocks.factory());
            let mut model = Model::default();
            for (step, op) in ops.iter().enumerate() {
                let expected = model.apply(op);
                prop_assert_eq!(&mem_driver.apply(op), &expected, "mem engine, step {} {:?}", step, op);
                prop_assert_eq!(&rocks_driver.apply(op), &expected, "rocks engine, step {} {:?}", step, op);
            }
        }
    }
}
