//! PutKv (1016): upserts and deletes, one `KvRecordBatch` per bucket.

use bytes::Bytes;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PutKvRequest {
    /// -1: all replicas.
    #[prost(int32, required, tag = "1")]
    pub acks: i32,
    #[prost(int64, required, tag = "2")]
    pub table_id: i64,
    #[prost(int32, required, tag = "3")]
    pub timeout_ms: i32,
    /// Column indexes of a partial update; empty writes every column.
    #[prost(int32, repeated, packed = "true", tag = "4")]
    pub target_columns: Vec<i32>,
    #[prost(message, repeated, tag = "5")]
    pub buckets_req: Vec<PbPutKvReqForBucket>,
    /// 0 aggregate (default), 1 overwrite, 2 local aggregate.
    #[prost(int32, optional, tag = "6")]
    pub agg_mode: Option<i32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPutKvReqForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    /// A `KvRecordBatch`.
    #[prost(bytes = "bytes", required, tag = "3")]
    pub records: Bytes,
}

/// Every bucket of the request must appear exactly once: the client panics on a bucket it did
/// not send.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutKvResponse {
    #[prost(message, repeated, tag = "1")]
    pub buckets_resp: Vec<PbPutKvRespForBucket>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPutKvRespForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_message: Option<String>,
    /// The changelog's end offset after this write.
    #[prost(int64, optional, tag = "5")]
    pub log_end_offset: Option<i64>,
    /// Write-stall pressure: 0 none, (0, 1) delayed.
    #[prost(float, optional, tag = "6")]
    pub pressure: Option<f32>,
}
