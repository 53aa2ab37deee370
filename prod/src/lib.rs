//! kvtablet-prod: binds kvtablet-core to real threads (tokio), the system clock, RocksDB and
//! real files. The only crate that knows them.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
