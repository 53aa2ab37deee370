//! kvtablet-core: the primary-key side of a Fluss tablet server, written against abstract
//! time, tasks, storage and transport so that the simulator can drive every interleaving.
//!
//! Architecture invariant: this crate does no I/O, reads no clock, spawns no thread and draws
//! no randomness except through [`env`]. It does not depend on tokio or RocksDB.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod byte_reader;
pub mod engine;
pub mod env;
pub mod error;
pub mod kv;
pub mod lease;
pub mod ledger;
pub mod log;
pub mod message;
pub mod mutant;
pub mod notify;
pub mod recovery;
pub mod replica;
pub mod scan;
pub mod snapshot;
pub mod sync;
pub mod table_bucket;
pub mod tablet_dirs;
pub mod tablet_server;
pub mod tablet_server_stats;
pub mod task;
pub mod tiering;
pub mod writer_id_allocator;

pub use env::Env;
pub use error::{ApiError, ErrorCode};
pub use table_bucket::TableBucket;
