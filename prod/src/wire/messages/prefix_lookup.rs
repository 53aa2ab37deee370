//! PrefixLookup (1034): every value whose key starts with an encoded bucket-key prefix.

use bytes::Bytes;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PrefixLookupRequest {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(message, repeated, tag = "2")]
    pub buckets_req: Vec<PbPrefixLookupReqForBucket>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPrefixLookupReqForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub keys: Vec<Bytes>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PrefixLookupResponse {
    #[prost(message, repeated, tag = "1")]
    pub buckets_resp: Vec<PbPrefixLookupRespForBucket>,
}

/// One `PbValueList` per requested prefix, in request order.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPrefixLookupRespForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_message: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub value_lists: Vec<PbValueList>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbValueList {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub values: Vec<Bytes>,
}
