//! Engine faults: a [`KvEngineFactory`] decorator whose engines, snapshots and iterators fail
//! with drawn probabilities, so that the error paths around the storage engine run in seeds.
//!
//! - write error: `write` fails with `EngineError::Io`; with probability `write_applied` the
//!   batch was applied anyway (RocksDB may report a failed sync after the memtable took it);
//! - read error: `get`, `multi_get`, `snapshot` and a snapshot's `get` fail;
//! - iterator error: `iter` fails, or an iterator stops early at `seek`/`next` with `valid()`
//!   false and the error in `status()`, as RocksDB's iterators report I/O errors;
//! - open error: `open`/`open_checkpoint` fail.
//!
//! All decisions come from one stream per node, switched off by [`EngineFaultSwitch::clear`];
//! in the oracles' god view ([`FaultLog::god_view`]) nothing fires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvtablet_core::engine::{
    EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine, KvEngineFactory, WriteBatch,
};

use crate::clock::lock;
use crate::fault_log::{FaultKind, FaultLog};
use crate::prng::{Prng, Ratio};

/// Fault rates of a node's engines, per operation. The default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineFaults {
    pub write_error: Ratio,
    /// Given a write error, the batch was applied anyway.
    pub write_applied: Ratio,
    pub read_error: Ratio,
    /// Per `iter`, `seek`, `seek_to_first` and `next`.
    pub iterator_error: Ratio,
    pub open_error: Ratio,
}

impl EngineFaults {
    pub fn none() -> EngineFaults {
        EngineFaults::default()
    }

    pub fn is_none(&self) -> bool {
        [self.write_error, self.read_error, self.iterator_error, self.open_error]
            .iter()
            .all(|ratio| ratio.is_never())
    }
}

#[derive(Debug)]
struct SwitchState {
    faults: Option<EngineFaults>,
    prng: Prng,
}

/// The fault state shared by a node's factory and everything it opened. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EngineFaultSwitch {
    state: Arc<Mutex<SwitchState>>,
    log: Arc<FaultLog>,
}

impl EngineFaultSwitch {
    /// Faults off, drawing from `prng` (a stream of the node's own) once switched on.
    pub fn new(prng: Prng, log: Arc<FaultLog>) -> EngineFaultSwitch {
        EngineFaultSwitch { state: Arc::new(Mutex::new(SwitchState { faults: None, prng })), log }
    }

    pub fn set(&self, faults: EngineFaults) {
        lock(&self.state).faults = Some(faults);
    }

    pub fn clear(&self) {
        lock(&self.state).faults = None;
    }

    /// Whether `kind` fires now (one draw while faults are on).
    fn fires(&self, kind: FaultKind, rate: impl Fn(&EngineFaults) -> Ratio) -> bool {
        let mut state = lock(&self.state);
        let Some(faults) = state.faults else { return false };
        let fired = state.prng.chance(rate(&faults)) && !self.log.in_god_view();
        if fired {
            self.log.record(kind);
        }
        fired
    }

    /// Given a write error: was the batch applied anyway?
    fn write_applied(&self) -> bool {
        let mut state = lock(&self.state);
        let Some(faults) = state.faults else { return false };
        state.prng.chance(faults.write_applied)
    }
}

fn injected(what: &str) -> EngineError {
    EngineError::Io(format!("{what} failed (injected)"))
}

/// Wraps a node's engine factory.
pub struct FaultyEngineFactory {
    inner: Arc<dyn KvEngineFactory>,
    switch: EngineFaultSwitch,
    checkpoint_opened: Option<CheckpointOpened>,
}

/// Told of every engine opened from a checkpoint (a restore from a KV snapshot): the engine's
/// directory, the engine itself, without faults (the oracles' god view), and the count of
/// writes made to it through the faulty engine that its opener holds.
pub type CheckpointOpened = Arc<dyn Fn(&str, &Arc<dyn KvEngine>, &EngineWrites) + Send + Sync>;

/// How many writes (attempted, failed or not) went through one opened engine. The engine's
/// directory cannot be opened again while it lives, so its contents change only by these: an
/// unchanged count is an unchanged engine. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct EngineWrites(Arc<AtomicU64>);

impl EngineWrites {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn note(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl FaultyEngineFactory {
    pub fn wrap(inner: Arc<dyn KvEngineFactory>, switch: EngineFaultSwitch) -> FaultyEngineFactory {
        FaultyEngineFactory { inner, switch, checkpoint_opened: None }
    }

    /// This factory, telling `observer` of every engine it opens from a checkpoint.
    pub fn observing_checkpoints(mut self, observer: CheckpointOpened) -> FaultyEngineFactory {
        self.checkpoint_opened = Some(observer);
        self
    }

    fn engine(&self, inner: Arc<dyn KvEngine>, writes: EngineWrites) -> Arc<dyn KvEngine> {
        Arc::new(FaultyEngine { inner, switch: self.switch.clone(), writes })
    }
}

impl KvEngineFactory for FaultyEngineFactory {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        if self.switch.fires(FaultKind::EngineOpenError, |f| f.open_error) {
            return Err(injected(&format!("open {dir}")));
        }
        Ok(self.engine(self.inner.open(dir)?, EngineWrites::default()))
    }

    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        if self.switch.fires(FaultKind::EngineOpenError, |f| f.open_error) {
            return Err(injected(&format!("open checkpoint {checkpoint_dir}")));
        }
        let opened = self.inner.open_checkpoint(checkpoint_dir, dir)?;
        let writes = EngineWrites::default();
        if let Some(observer) = &self.checkpoint_opened {
            observer(dir, &opened, &writes);
        }
        Ok(self.engine(opened, writes))
    }

    fn destroy(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.destroy(dir)
    }

    fn is_immutable_file(&self, file_name: &str) -> bool {
        self.inner.is_immutable_file(file_name)
    }

    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.verify_checkpoint(dir)
    }
}

struct FaultyEngine {
    inner: Arc<dyn KvEngine>,
    switch: EngineFaultSwitch,
    writes: EngineWrites,
}

impl KvEngine for FaultyEngine {
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        self.writes.note();
        if self.switch.fires(FaultKind::EngineWriteError, |f| f.write_error) {
            if self.switch.write_applied() {
                // The outcome is dropped on purpose: the caller sees the failure.
                let _ = self.inner.write(batch);
            }
            return Err(injected("write"));
        }
        self.inner.write(batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if self.switch.fires(FaultKind::EngineReadError, |f| f.read_error) {
            return Err(injected("get"));
        }
        self.inner.get(key)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        if self.switch.fires(FaultKind::EngineReadError, |f| f.read_error) {
            return Err(injected("multi_get"));
        }
        self.inner.multi_get(keys)
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError> {
        if self.switch.fires(FaultKind::EngineReadError, |f| f.read_error) {
            return Err(injected("snapshot"));
        }
        let inner = self.inner.snapshot()?;
        Ok(Arc::new(FaultySnapshot { inner, switch: self.switch.clone() }))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.checkpoint(dir)
    }
}

struct FaultySnapshot {
    inner: Arc<dyn EngineSnapshot>,
    switch: EngineFaultSwitch,
}

impl EngineSnapshot for FaultySnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if self.switch.fires(FaultKind::EngineReadError, |f| f.read_error) {
            return Err(injected("snapshot get"));
        }
        self.inner.get(key)
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn iter(self: Arc<Self>, range: KeyRange) -> Result<Box<dyn EngineIterator>, EngineError> {
        if self.switch.fires(FaultKind::EngineIteratorError, |f| f.iterator_error) {
            return Err(injected("iter"));
        }
        let switch = self.switch.clone();
        let inner = Arc::clone(&self.inner).iter(range)?;
        Ok(Box::new(FaultyIterator { inner, switch, error: None }))
    }
}

/// An iterator that may break at any move: it turns invalid and reports the error in
/// `status`, and stays broken (as RocksDB's does until the next seek succeeds).
struct FaultyIterator {
    inner: Box<dyn EngineIterator>,
    switch: EngineFaultSwitch,
    error: Option<EngineError>,
}

impl FaultyIterator {
    fn maybe_break(&mut self, what: &str) {
        if self.switch.fires(FaultKind::EngineIteratorError, |f| f.iterator_error) {
            self.error = Some(injected(what));
        }
    }
}

impl EngineIterator for FaultyIterator {
    fn seek_to_first(&mut self) {
        self.error = None;
        self.inner.seek_to_first();
        self.maybe_break("iterator seek_to_first");
    }

    fn seek(&mut self, key: &[u8]) {
        self.error = None;
        self.inner.seek(key);
        self.maybe_break("iterator seek");
    }

    fn valid(&self) -> bool {
        self.error.is_none() && self.inner.valid()
    }

    fn key(&self) -> &[u8] {
        self.inner.key()
    }

    fn value(&self) -> &[u8] {
        self.inner.value()
    }

    fn next(&mut self) {
        if self.error.is_some() {
            return;
        }
        self.inner.next();
        if self.inner.valid() {
            self.maybe_break("iterator next");
        }
    }

    fn status(&self) -> Result<(), EngineError> {
        match &self.error {
            Some(error) => Err(error.clone()),
            None => self.inner.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use kvtablet_core::engine::mem_engine::MemEngineFactory;

    use super::*;
    use crate::fs::SimFs;

    fn factory(faults: EngineFaults) -> (FaultyEngineFactory, EngineFaultSwitch, Arc<FaultLog>) {
        let log = Arc::new(FaultLog::new());
        let switch = EngineFaultSwitch::new(Prng::from_seed(3), log.clone());
        switch.set(faults);
        let inner = Arc::new(MemEngineFactory::new(Arc::new(SimFs::new())));
        (FaultyEngineFactory::wrap(inner, switch.clone()), switch, log)
    }

    fn batch(key: &[u8], value: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        batch
    }

    #[test]
    fn open_and_write_errors_fire_and_switch_off() {
        let (factory, switch, log) = factory(EngineFaults {
            open_error: Ratio::ALWAYS,
            write_error: Ratio::ALWAYS,
            ..EngineFaults::none()
        });
        assert!(matches!(factory.open("e"), Err(EngineError::Io(_))));
        switch.set(EngineFaults { write_error: Ratio::ALWAYS, ..EngineFaults::none() });
        let engine = factory.open("e").expect("open");
        assert!(matches!(engine.write(&batch(b"k", b"v")), Err(EngineError::Io(_))));
        switch.clear();
        assert_eq!(engine.get(b"k").unwrap(), None, "a failed write that was not applied");
        engine.write(&batch(b"k", b"v")).expect("faults off");
        assert_eq!(engine.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(log.fired(FaultKind::EngineOpenError), 1);
        assert_eq!(log.fired(FaultKind::EngineWriteError), 1);
    }

    #[test]
    fn a_failed_write_may_have_been_applied() {
        let (factory, _switch, _log) = factory(EngineFaults {
            write_error: Ratio::ALWAYS,
            write_applied: Ratio::ALWAYS,
            ..EngineFaults::none()
        });
        let engine = factory.open("e").expect("open");
        assert!(engine.write(&batch(b"k", b"v")).is_err());
        assert_eq!(engine.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn read_errors_hit_gets_and_snapshots() {
        let (factory, switch, log) = factory(EngineFaults::none());
        let engine = factory.open("e").expect("open");
        engine.write(&batch(b"k", b"v")).unwrap();
        let snapshot = engine.snapshot().unwrap();
        switch.set(EngineFaults { read_error: Ratio::ALWAYS, ..EngineFaults::none() });
        assert!(engine.get(b"k").is_err());
        assert!(engine.multi_get(&[b"k".to_vec()]).is_err());
        assert!(engine.snapshot().is_err());
        assert!(snapshot.get(b"k").is_err());
        assert_eq!(log.god_view(|| engine.get(b"k")).unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_broken_iterator_stops_early_and_says_why() {
        let (factory, switch, _log) = factory(EngineFaults::none());
        let engine = factory.open("e").expect("open");
        for key in [b"a", b"b", b"c", b"d"] {
            engine.write(&batch(key, b"v")).unwrap();
        }
        let snapshot = engine.snapshot().unwrap();
        let mut iterator = Arc::clone(&snapshot).iter(KeyRange::all()).unwrap();
        iterator.seek_to_first();
        assert!(iterator.valid());
        switch.set(EngineFaults { iterator_error: Ratio::ALWAYS, ..EngineFaults::none() });
        iterator.next();
        assert!(!iterator.valid(), "broken, not finished");
        assert!(matches!(iterator.status(), Err(EngineError::Io(_))));
        assert!(Arc::clone(&snapshot).iter(KeyRange::all()).is_err());
        switch.clear();
        iterator.seek(b"c");
        assert!(iterator.valid() && iterator.status().is_ok(), "a good seek repairs it");
        assert_eq!(iterator.key(), b"c");
    }

    #[test]
    fn an_iterator_at_its_end_reports_no_error() {
        let (factory, switch, _log) = factory(EngineFaults::none());
        let engine = factory.open("e").expect("open");
        engine.write(&batch(b"a", b"v")).unwrap();
        let snapshot = engine.snapshot().unwrap();
        let mut iterator = snapshot.iter(KeyRange::all()).unwrap();
        iterator.seek_to_first();
        switch.set(EngineFaults { iterator_error: Ratio::ALWAYS, ..EngineFaults::none() });
        iterator.next();
        assert!(!iterator.valid());
        assert_eq!(iterator.status(), Ok(()), "walking off the end is not a fault site");
    }
}
