//! A decorator that records every engine snapshot and iterator in the leak ledger, so that a
//! quiescent node can prove it holds none (a leaked RocksDB snapshot pins old versions forever).

use std::sync::Arc;

use crate::engine::kv_engine::{EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine};
use crate::engine::write_batch::WriteBatch;
use crate::ledger::{Ledger, LedgerEntry, ResourceKind};

/// Forwards everything to the wrapped engine; snapshots and iterators carry a ledger entry.
pub struct LedgeredEngine {
    inner: Arc<dyn KvEngine>,
    ledger: Ledger,
    owner: String,
}

impl LedgeredEngine {
    /// `owner` names the holder in the ledger, e.g. `"node2 t1-b3"`.
    pub fn wrap(engine: Arc<dyn KvEngine>, ledger: Ledger, owner: String) -> Arc<dyn KvEngine> {
        Arc::new(LedgeredEngine { inner: engine, ledger, owner })
    }
}

impl KvEngine for LedgeredEngine {
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        self.inner.write(batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        self.inner.multi_get(keys)
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError> {
        let inner = self.inner.snapshot()?;
        let entry = self.ledger.register(ResourceKind::EngineSnapshot, self.owner.clone());
        Ok(Arc::new(LedgeredSnapshot {
            inner,
            ledger: self.ledger.clone(),
            owner: self.owner.clone(),
            _entry: entry,
        }))
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.checkpoint(dir)
    }
}

/// A snapshot that is live in the ledger until dropped.
pub struct LedgeredSnapshot {
    inner: Arc<dyn EngineSnapshot>,
    ledger: Ledger,
    owner: String,
    _entry: LedgerEntry,
}

impl EngineSnapshot for LedgeredSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }

    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError> {
        self.inner.flushed_log_offset()
    }

    fn iter(self: Arc<Self>, range: KeyRange) -> Result<Box<dyn EngineIterator>, EngineError> {
        let inner = Arc::clone(&self.inner).iter(range)?;
        let entry = self.ledger.register(ResourceKind::EngineIterator, self.owner.clone());
        // The iterator keeps this snapshot, so the snapshot's entry stays live as long as the
        // inner snapshot really is.
        Ok(Box::new(LedgeredIterator { inner, _snapshot: self, _entry: entry }))
    }
}

/// An iterator that is live in the ledger until dropped.
pub struct LedgeredIterator {
    inner: Box<dyn EngineIterator>,
    _snapshot: Arc<LedgeredSnapshot>,
    _entry: LedgerEntry,
}

impl EngineIterator for LedgeredIterator {
    fn seek_to_first(&mut self) {
        self.inner.seek_to_first();
    }

    fn seek(&mut self, key: &[u8]) {
        self.inner.seek(key);
    }

    fn valid(&self) -> bool {
        self.inner.valid()
    }

    fn key(&self) -> &[u8] {
        self.inner.key()
    }

    fn value(&self) -> &[u8] {
        self.inner.value()
    }

    fn next(&mut self) {
        self.inner.next();
    }

    fn status(&self) -> Result<(), EngineError> {
        self.inner.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::engine::mem_engine::MemEngine;

    #[test]
    fn snapshots_and_iterators_leave_the_ledger_when_dropped() {
        let ledger = Ledger::new();
        let inner: Arc<dyn KvEngine> =
            Arc::new(MemEngine::new_detached(Arc::new(TestFs::default())));
        let engine = LedgeredEngine::wrap(inner, ledger.clone(), "node1 t1-b0".to_string());
        let mut batch = WriteBatch::new();
        batch.put(b"k", b"v");
        engine.write(&batch).expect("write");

        let snapshot = engine.snapshot().expect("snapshot");
        let mut iter = Arc::clone(&snapshot).iter(KeyRange::all()).expect("iter");
        iter.seek_to_first();
        assert_eq!(iter.key(), b"k");
        assert_eq!(ledger.count(ResourceKind::EngineSnapshot), 1);
        assert_eq!(ledger.count(ResourceKind::EngineIterator), 1);
        assert_eq!(ledger.live()[0].owner, "node1 t1-b0");

        drop(snapshot);
        assert_eq!(
            ledger.count(ResourceKind::EngineSnapshot),
            1,
            "the iterator still holds the snapshot"
        );
        drop(iter);
        assert!(ledger.live().is_empty());

        let snapshot = engine.snapshot().expect("snapshot");
        drop(engine);
        assert_eq!(snapshot.get(b"k").expect("get"), Some(b"v".to_vec()));
        drop(snapshot);
        assert!(ledger.live().is_empty());
    }
}
