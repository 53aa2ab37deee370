//! LimitScan (1033): the first `limit` rows of one bucket.

use bytes::Bytes;

/// Field numbers start at 2, as upstream.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitScanRequest {
    #[prost(int64, required, tag = "2")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "3")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "4")]
    pub bucket_id: i32,
    #[prost(int32, required, tag = "5")]
    pub limit: i32,
}

/// Errors travel in the body. For a primary-key table `records` is a
/// `DefaultValueRecordBatch`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitScanResponse {
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub error_message: Option<String>,
    #[prost(bool, optional, tag = "3")]
    pub is_log_table: Option<bool>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub records: Option<Bytes>,
}
