//! A Rust client of the Fluss wire protocol: one pipelined connection with typed calls
//! ([`Connection`]), core's `Rpc` over it ([`WireRpc`], so that core's `KvScanner` scans a
//! remote bucket unchanged), table metadata and request building ([`RemoteTable`]), and the
//! admin calls that set tables up ([`admin`]), and KV snapshot leases kept alive by a
//! renewal task ([`KvSnapshotLease`]).
//!
//! Like the server side, nothing here panics on bytes from the network.

pub mod admin;
pub mod connection;
pub mod error;
pub mod kv_snapshot_lease;
pub mod remote_table;
pub mod wire_rpc;

pub use connection::{Connection, ConnectionConfig};
pub use error::ClientError;
pub use kv_snapshot_lease::{KvSnapshotLease, LeaseRetry};
pub use remote_table::{BucketLeader, RemoteTable};
pub use wire_rpc::WireRpc;
