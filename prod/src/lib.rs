//! kvtablet-prod: binds kvtablet-core to real threads (tokio), the system clock, RocksDB and
//! real files. The only crate that knows them.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub mod catalog;
pub mod client;
pub mod config;
pub mod disk_fs;
pub mod format;
pub mod gateway;
pub mod metrics;
pub mod node;
pub mod object_store_remote;
pub mod os_entropy;
pub mod rocks_engine;
pub mod scan_command;
pub mod served_node;
pub mod snapshot_coordinator;
pub mod system_clock;
pub mod tokio_executor;
pub mod wire;
