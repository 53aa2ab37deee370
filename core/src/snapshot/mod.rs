//! KV snapshots: the record of a completed snapshot and its remote layout, and the
//! coordinator's store of every bucket's snapshots with retention and the rule for which
//! remote files may be deleted.

pub mod completed_snapshot;
pub mod snapshot_store;

pub use completed_snapshot::{CompletedSnapshot, SnapshotDecodeError, SnapshotFile};
pub use snapshot_store::{
    BucketSnapshots, Cleanup, CommitRefusal, SnapshotStore, SnapshotStoreConfig, SnapshotStoreError,
};
