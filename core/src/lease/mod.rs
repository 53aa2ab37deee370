//! KV snapshot leases (Fluss's `KvSnapshotLeaseManager`, PR 2179, and the tiering consumer of
//! PR 3286): a consumer pins `(bucket, snapshot id)` pairs under a lease id for a while, so
//! that the coordinator's snapshot retention keeps those snapshots and every file they need
//! while it downloads them.
//!
//! - [`KvSnapshotLease`]: one lease, its wall-clock expiration and its pins (at most one
//!   snapshot per bucket), grouped by table as Fluss's `KvSnapshotTableLease` is.
//! - [`KvSnapshotLeaseManager`]: every lease, the reference count of each pinned snapshot, the
//!   counts behind the gauges, and persistence (one file per lease, see its docs).
//! - [`LeaseExpirySweeper`]: the expiry check as a tick handler the coordinator's loop calls.
//! - [`LeaseConfig`] and [`LeaseError`]: the limits, and why a request was refused.
//! - [`KvSnapshotLeaseClient`]: a consumer's calls over `Rpc` (Fluss's client
//!   `KvSnapshotLease`), and [`TieringLeaseTracker`], the tiering job's use of one (PR 3286).
//!
//! Retention itself stays in `snapshot::snapshot_store`, which consults the manager's
//! reference counts under its own lock; the store is also the entry point of every lease
//! operation, so that a pin and the retention decision that must respect it never interleave.

#[cfg(any(test, feature = "shuttle"))]
pub mod crash_fs;
pub mod kv_snapshot_lease;
pub mod kv_snapshot_lease_client;
pub mod lease_config;
pub mod lease_error;
pub mod lease_file;
pub mod lease_manager;
pub mod lease_remote;
pub mod lease_sweeper;
pub mod tiering_lease_tracker;

pub use kv_snapshot_lease::KvSnapshotLease;
pub use kv_snapshot_lease_client::{KvSnapshotLeaseClient, LeaseClientError};
pub use lease_config::{LeaseConfig, EXPIRATION_CHECK_INTERVAL_MS_DEFAULT};
pub use lease_error::LeaseError;
pub use lease_manager::{KvSnapshotLeaseManager, LeaseGauges, Unpinned};
pub use lease_sweeper::LeaseExpirySweeper;
pub use tiering_lease_tracker::{tiering_lease_id, TieringLeaseTracker, TIERING_LEASE_DURATION_MS};
