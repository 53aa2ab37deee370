//! KV snapshots as the coordinator reports them: GetLatestKvSnapshots (1023),
//! GetKvSnapshotMetadata (1024) and ListKvSnapshots (1064).

use super::common::PbTablePath;

/// The latest snapshot of every bucket of a table, or of one of its partitions (by name).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetLatestKvSnapshotsRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(string, optional, tag = "2")]
    pub partition_name: Option<String>,
}

/// One entry per bucket of the table (or partition).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetLatestKvSnapshotsResponse {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    /// Set exactly when the table is partitioned.
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
    #[prost(message, repeated, tag = "3")]
    pub latest_snapshots: Vec<PbKvSnapshot>,
}

/// A bucket's snapshot; `snapshot_id` and `log_offset` are absent for a bucket without one
/// (its reader then starts from the earliest log offset).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbKvSnapshot {
    #[prost(int32, required, tag = "1")]
    pub bucket_id: i32,
    #[prost(int64, optional, tag = "2")]
    pub snapshot_id: Option<i64>,
    #[prost(int64, optional, tag = "3")]
    pub log_offset: Option<i64>,
}

/// The files and log offset of one snapshot of one bucket.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetKvSnapshotMetadataRequest {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "3")]
    pub bucket_id: i32,
    #[prost(int64, required, tag = "4")]
    pub snapshot_id: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetKvSnapshotMetadataResponse {
    #[prost(int64, required, tag = "1")]
    pub log_offset: i64,
    #[prost(message, repeated, tag = "2")]
    pub snapshot_files: Vec<PbRemotePathAndLocalFile>,
}

/// Where a snapshot file is, and the name it takes in the restored engine's directory.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbRemotePathAndLocalFile {
    #[prost(string, required, tag = "1")]
    pub remote_path: String,
    #[prost(string, required, tag = "2")]
    pub local_file_name: String,
}

/// Every active snapshot of a table (or of one of its partitions, by id).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListKvSnapshotsRequest {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
}

/// Several entries per bucket are allowed; a bucket without a snapshot has none.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListKvSnapshotsResponse {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    /// Set exactly when the table is partitioned.
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
    #[prost(message, repeated, tag = "3")]
    pub active_snapshots: Vec<PbKvSnapshot>,
}
