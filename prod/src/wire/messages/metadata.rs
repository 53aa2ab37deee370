//! Metadata (1012): servers, tables and bucket leaders.

use bytes::Bytes;

use super::common::{PbPhysicalTablePath, PbTablePath};

/// An empty request asks for the servers only.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetadataRequest {
    #[prost(message, repeated, tag = "1")]
    pub table_path: Vec<PbTablePath>,
    #[prost(message, repeated, tag = "2")]
    pub partitions_path: Vec<PbPhysicalTablePath>,
    #[prost(int64, repeated, packed = "true", tag = "3")]
    pub partitions_id: Vec<i64>,
}

/// The client needs `coordinator_server` and at least one tablet server.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetadataResponse {
    #[prost(message, optional, tag = "1")]
    pub coordinator_server: Option<PbServerNode>,
    #[prost(message, repeated, tag = "2")]
    pub tablet_servers: Vec<PbServerNode>,
    #[prost(message, repeated, tag = "3")]
    pub table_metadata: Vec<PbTableMetadata>,
    #[prost(message, repeated, tag = "4")]
    pub partition_metadata: Vec<PbPartitionMetadata>,
}

/// A server; `host` is given back to the client verbatim, so it must be reachable by it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbServerNode {
    #[prost(int32, required, tag = "1")]
    pub node_id: i32,
    #[prost(string, required, tag = "2")]
    pub host: String,
    #[prost(int32, required, tag = "3")]
    pub port: i32,
    #[prost(string, optional, tag = "4")]
    pub listeners: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub rack: Option<String>,
}

/// A table: the client builds its `TableInfo` from `table_json`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbTableMetadata {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(int64, required, tag = "2")]
    pub table_id: i64,
    #[prost(int32, required, tag = "3")]
    pub schema_id: i32,
    #[prost(bytes = "bytes", required, tag = "4")]
    pub table_json: Bytes,
    #[prost(message, repeated, tag = "5")]
    pub bucket_metadata: Vec<PbBucketMetadata>,
    #[prost(int64, required, tag = "6")]
    pub created_time: i64,
    #[prost(int64, required, tag = "7")]
    pub modified_time: i64,
    #[prost(string, optional, tag = "8")]
    pub remote_data_dir: Option<String>,
}

/// A partition of a partitioned table.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPartitionMetadata {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(string, required, tag = "2")]
    pub partition_name: String,
    #[prost(int64, required, tag = "3")]
    pub partition_id: i64,
    #[prost(message, repeated, tag = "4")]
    pub bucket_metadata: Vec<PbBucketMetadata>,
}

/// A bucket: `leader_id` must be the `node_id` of a tablet server, or the bucket has no
/// leader for the client.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbBucketMetadata {
    #[prost(int32, required, tag = "1")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "2")]
    pub leader_id: Option<i32>,
    #[prost(int32, repeated, packed = "true", tag = "3")]
    pub replica_id: Vec<i32>,
    #[prost(int32, optional, tag = "4")]
    pub leader_epoch: Option<i32>,
}
