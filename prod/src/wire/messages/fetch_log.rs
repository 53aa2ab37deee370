//! FetchLog (1015): changelog batches of buckets, from an offset.

use bytes::Bytes;

use super::predicate::PbPredicate;

#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchLogRequest {
    /// -1 for a client.
    #[prost(int32, required, tag = "1")]
    pub follower_server_id: i32,
    #[prost(int32, required, tag = "2")]
    pub max_bytes: i32,
    #[prost(message, repeated, tag = "3")]
    pub tables_req: Vec<PbFetchLogReqForTable>,
    /// How long to wait for `min_bytes` before answering.
    #[prost(int32, optional, tag = "4")]
    pub max_wait_ms: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub min_bytes: Option<i32>,
    #[prost(int32, optional, tag = "6")]
    pub read_preference: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbFetchLogReqForTable {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(bool, required, tag = "2")]
    pub projection_pushdown_enabled: bool,
    /// Sorted ascending.
    #[prost(int32, repeated, packed = "true", tag = "3")]
    pub projected_fields: Vec<i32>,
    #[prost(message, repeated, tag = "4")]
    pub buckets_req: Vec<PbFetchLogReqForBucket>,
    /// A server may ignore it: pruning is conservative and the client filters again.
    #[prost(message, optional, tag = "5")]
    pub filter_predicate: Option<PbPredicate>,
    #[prost(int32, optional, tag = "6")]
    pub filter_schema_id: Option<i32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbFetchLogReqForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    /// `FETCH_FROM_EARLIEST_OFFSET` (-2) means the log start.
    #[prost(int64, required, tag = "3")]
    pub fetch_offset: i64,
    #[prost(int32, required, tag = "4")]
    pub max_fetch_bytes: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FetchLogResponse {
    #[prost(message, repeated, tag = "1")]
    pub tables_resp: Vec<PbFetchLogRespForTable>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbFetchLogRespForTable {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(message, repeated, tag = "2")]
    pub buckets_resp: Vec<PbFetchLogRespForBucket>,
}

/// `records` is a concatenation of `LogRecordBatch`es; the first may start before the
/// requested offset.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbFetchLogRespForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_message: Option<String>,
    #[prost(int64, optional, tag = "5")]
    pub high_watermark: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub log_start_offset: Option<i64>,
    #[prost(message, optional, tag = "7")]
    pub remote_log_fetch_info: Option<PbRemoteLogFetchInfo>,
    #[prost(bytes = "bytes", optional, tag = "8")]
    pub records: Option<Bytes>,
    /// The next fetch offset when a server-side filter dropped every batch; then `records` is
    /// empty.
    #[prost(int64, optional, tag = "9")]
    pub filtered_end_offset: Option<i64>,
}

/// Log segments to read from remote storage instead.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbRemoteLogFetchInfo {
    #[prost(string, required, tag = "1")]
    pub remote_log_tablet_dir: String,
    #[prost(string, optional, tag = "2")]
    pub partition_name: Option<String>,
    #[prost(message, repeated, tag = "3")]
    pub remote_log_segments: Vec<PbRemoteLogSegment>,
    #[prost(int32, optional, tag = "4")]
    pub first_start_pos: Option<i32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbRemoteLogSegment {
    #[prost(string, required, tag = "1")]
    pub remote_log_segment_id: String,
    #[prost(int64, required, tag = "2")]
    pub remote_log_start_offset: i64,
    #[prost(int64, required, tag = "3")]
    pub remote_log_end_offset: i64,
    #[prost(int32, required, tag = "4")]
    pub segment_size_in_bytes: i32,
    #[prost(int64, optional, tag = "5")]
    pub max_timestamp: Option<i64>,
}
