//! ListOffsets (1021): earliest, latest or by-timestamp offsets of buckets.

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListOffsetsRequest {
    /// -1 for a client.
    #[prost(int32, required, tag = "1")]
    pub follower_server_id: i32,
    /// See `LIST_OFFSETS_EARLIEST`, `LIST_OFFSETS_LATEST`, `LIST_OFFSETS_TIMESTAMP`.
    #[prost(int32, required, tag = "2")]
    pub offset_type: i32,
    #[prost(int64, required, tag = "3")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "4")]
    pub partition_id: Option<i64>,
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub bucket_id: Vec<i32>,
    /// `startTimestamp` upstream.
    #[prost(int64, optional, tag = "6")]
    pub start_timestamp: Option<i64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListOffsetsResponse {
    #[prost(message, repeated, tag = "1")]
    pub buckets_resp: Vec<PbListOffsetsRespForBucket>,
}

/// Without an error, `offset` must be set.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbListOffsetsRespForBucket {
    #[prost(int32, required, tag = "1")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "2")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "3")]
    pub error_message: Option<String>,
    #[prost(int64, optional, tag = "4")]
    pub offset: Option<i64>,
}
