//! Storage engines: the trait seam, the deterministic in-memory engine, and a decorator that
//! records snapshots and iterators in the leak ledger.

pub mod kv_engine;
pub mod ledgered_engine;
pub mod mem_checkpoint;
pub mod mem_engine;
pub mod write_batch;

pub use kv_engine::{
    prefix_successor, EngineError, EngineIterator, EngineSnapshot, KeyRange, KvEngine,
    KvEngineFactory,
};
pub use write_batch::{WriteBatch, WriteOp};
