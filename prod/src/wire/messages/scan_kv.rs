//! ScanKv (1061): a paged full scan of one bucket over a server-held snapshot (FIP-17).

use bytes::Bytes;

/// Which bucket to scan; `limit` absent or `<= 0` is unlimited.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbScanReqForBucket {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "3")]
    pub bucket_id: i32,
    #[prost(int64, optional, tag = "4")]
    pub limit: Option<i64>,
}

/// Exactly one of `scanner_id` (continue or close) and `bucket_scan_req` (open) is set.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ScanKvRequest {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub scanner_id: Option<Bytes>,
    #[prost(message, optional, tag = "2")]
    pub bucket_scan_req: Option<PbScanReqForBucket>,
    /// 0 at open, then +1 per continuation.
    #[prost(int32, optional, tag = "3")]
    pub call_seq_id: Option<i32>,
    /// Required (and positive) unless the request closes the scanner.
    #[prost(int32, optional, tag = "4")]
    pub batch_size_bytes: Option<i32>,
    #[prost(bool, optional, tag = "5")]
    pub close_scanner: Option<bool>,
}

/// Errors travel in the body.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ScanKvResponse {
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub error_message: Option<String>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub scanner_id: Option<Bytes>,
    /// False once the scan is complete and the session closed.
    #[prost(bool, optional, tag = "4")]
    pub has_more_results: Option<bool>,
    /// A `DefaultValueRecordBatch`; absent when empty.
    #[prost(bytes = "bytes", optional, tag = "5")]
    pub records: Option<Bytes>,
    /// The log offset the snapshot was taken at; first response only.
    #[prost(int64, optional, tag = "6")]
    pub log_offset: Option<i64>,
}
