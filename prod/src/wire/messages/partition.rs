//! Partitions: ListPartitionInfos (1009), CreatePartition (1036), DropPartition (1037).

use super::common::{PbKeyValue, PbTablePath};

/// A partition by its values: one `(partition key, value)` pair per key, any order; a
/// partial spec may leave keys out.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPartitionSpec {
    #[prost(message, repeated, tag = "1")]
    pub partition_key_values: Vec<PbKeyValue>,
}

/// A partition: its id and its spec.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPartitionInfo {
    #[prost(int64, required, tag = "1")]
    pub partition_id: i64,
    #[prost(message, required, tag = "2")]
    pub partition_spec: PbPartitionSpec,
}

/// The partitions of a table, only those matching `partial_partition_spec` when given.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListPartitionInfosRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(message, optional, tag = "2")]
    pub partial_partition_spec: Option<PbPartitionSpec>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListPartitionInfosResponse {
    #[prost(message, repeated, tag = "1")]
    pub partitions_info: Vec<PbPartitionInfo>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreatePartitionRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(message, required, tag = "2")]
    pub partition_spec: PbPartitionSpec,
    #[prost(bool, required, tag = "3")]
    pub ignore_if_exists: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreatePartitionResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropPartitionRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(message, required, tag = "2")]
    pub partition_spec: PbPartitionSpec,
    #[prost(bool, required, tag = "3")]
    pub ignore_if_not_exists: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropPartitionResponse {}
