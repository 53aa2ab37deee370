//! KV snapshots: the record of a completed snapshot and its remote layout, and the
//! coordinator's store of every bucket's snapshots with retention and the rule for which
//! remote files may be deleted, which respects the KV snapshot leases of `crate::lease`.

pub mod completed_snapshot;
pub mod lease_expiry_loop;
pub mod orphan_sweep;
pub mod rpc_snapshot_committer;
pub mod snapshot_schedule;
pub mod snapshot_service;
pub mod snapshot_store;
pub mod snapshot_uploader;

pub use completed_snapshot::{CompletedSnapshot, SnapshotDecodeError, SnapshotFile};
pub use lease_expiry_loop::run_lease_expiry_loop;
pub use snapshot_schedule::{run_snapshot_loop, SnapshotSchedule, SNAPSHOT_INTERVAL_MS_DEFAULT};
pub use snapshot_store::{
    BucketSnapshots, Cleanup, CommitRefusal, LeaseAcquired, SnapshotPoint, SnapshotStore,
    SnapshotStoreConfig, SnapshotStoreError,
};
pub use snapshot_uploader::{
    take_snapshot, CommitterError, SnapshotCommitter, SnapshotError, SnapshotUploadConfig,
};
