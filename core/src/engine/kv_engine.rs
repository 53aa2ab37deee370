//! The storage-engine seam. This crate cannot see RocksDB; `prod` implements these traits on it.

use std::sync::Arc;

use crate::engine::write_batch::WriteBatch;

/// Engine failures, with a retry verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine was closed under the caller; reopen or give up.
    #[error("engine closed")]
    Closed,
    /// A read or write failed in the engine; the tablet should be treated as failed.
    #[error("engine I/O failure: {0}")]
    Io(String),
    /// The engine's files are damaged; do not retry, rebuild from a snapshot and the log.
    #[error("engine data corrupt: {0}")]
    Corrupt(String),
}

impl EngineError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, EngineError::Io(_))
    }
}

/// Key bounds for an iterator: `lower` inclusive, `upper` exclusive; `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub lower: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
}

impl KeyRange {
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// Exactly the keys that start with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange { lower: Some(prefix.to_vec()), upper: prefix_successor(prefix) }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let above = self.lower.as_deref().is_none_or(|lower| key >= lower);
        let below = self.upper.as_deref().is_none_or(|upper| key < upper);
        above && below
    }
}

/// The smallest key greater than every key that starts with `prefix`; `None` if there is none
/// (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last != u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// An ordered key-value store with atomic batches and point-in-time snapshots.
pub trait KvEngine: Send + Sync + 'static {
    /// Applies the batch atomically, including its flushed-offset marker if any.
    fn write(&self, batch: &WriteBatch) -> Result<(), EngineError>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// One result per key, in the order of `keys`, all read at one point in time.
    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError>;
    /// A point-in-time view that later writes do not change. It owns what it needs: it stays
    /// valid until dropped, even if the engine handle is dropped first.
    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, EngineError>;
    /// The flushed log offset last written with a batch, read from the engine's own state.
    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError>;
    /// Writes a consistent copy of the current state into the empty or missing directory
    /// `dir` of the engine's file system; the factory can open it with `open_checkpoint`.
    fn checkpoint(&self, dir: &str) -> Result<(), EngineError>;
}

/// A read-only point-in-time view of an engine.
pub trait EngineSnapshot: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// The flushed log offset as of this snapshot.
    fn flushed_log_offset(&self) -> Result<Option<u64>, EngineError>;
    /// An iterator over `range`, unpositioned: call `seek_to_first` or `seek` first. It keeps
    /// the snapshot alive.
    fn iter(self: Arc<Self>, range: KeyRange) -> Result<Box<dyn EngineIterator>, EngineError>;
}

/// A cursor in key order over a snapshot, in the style of RocksDB's raw iterator.
///
/// After `next` walks off the end, or after an error, `valid` is false; `status` then tells an
/// error from the end, so that a broken iterator is never mistaken for a finished one.
pub trait EngineIterator: Send + 'static {
    fn seek_to_first(&mut self);
    /// Positions at the first key `>= key` within the range.
    fn seek(&mut self, key: &[u8]);
    fn valid(&self) -> bool;
    /// The current key; only when `valid`.
    fn key(&self) -> &[u8];
    /// The current value; only when `valid`.
    fn value(&self) -> &[u8];
    fn next(&mut self);
    fn status(&self) -> Result<(), EngineError>;
}

/// Opens, restores and destroys engines in directories of a file system.
pub trait KvEngineFactory: Send + Sync + 'static {
    /// Opens the engine in `dir`, creating an empty one if there is none.
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError>;
    /// Replaces whatever is in `dir` with a copy of the checkpoint in `checkpoint_dir` and
    /// opens it. The checkpoint is left as it was (its immutable files may be shared with the
    /// engine by hard links, so the caller deletes it but never writes into it).
    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError>;
    /// Deletes the engine's files in `dir`; a missing directory is not an error.
    fn destroy(&self, dir: &str) -> Result<(), EngineError>;
    /// Whether `file_name` (a name in a checkpoint directory, without its directory) is a
    /// checkpoint file whose content never changes under its name, so that a snapshot uploader
    /// may reuse an already uploaded copy found by name, size and checksum (RocksDB's SST
    /// files). Every other file of a checkpoint (manifest and the like) is private to it.
    fn is_immutable_file(&self, file_name: &str) -> bool;
    /// Checks the checkpoint in `dir` against the engine's own checksums without opening it
    /// for use: a snapshot uploader calls it before uploading, so that bytes that rotted on
    /// the local disk between the checkpoint and its upload are never committed.
    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError>;
}
