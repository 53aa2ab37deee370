//! Lookup (1017): point lookups by encoded primary key.

use bytes::Bytes;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LookupRequest {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(message, repeated, tag = "2")]
    pub buckets_req: Vec<PbLookupReqForBucket>,
    #[prost(bool, optional, tag = "3")]
    pub insert_if_not_exists: Option<bool>,
    #[prost(int32, optional, tag = "4")]
    pub acks: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub timeout_ms: Option<i32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbLookupReqForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub keys: Vec<Bytes>,
    #[prost(string, optional, tag = "4")]
    pub original_partition_name: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LookupResponse {
    #[prost(message, repeated, tag = "1")]
    pub buckets_resp: Vec<PbLookupRespForBucket>,
}

/// One `PbValue` per requested key, in request order.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbLookupRespForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_message: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub values: Vec<PbValue>,
    #[prost(string, optional, tag = "6")]
    pub original_partition_name: Option<String>,
}

/// A looked-up value; `None` means the key was not found.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbValue {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub values: Option<Bytes>,
}
