//! Database admin requests, sent to the coordinator: CreateDatabase (1001), DropDatabase
//! (1002), ListDatabases (1003), DatabaseExists (1004), GetDatabaseInfo (1035).

use bytes::Bytes;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateDatabaseRequest {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
    #[prost(bool, required, tag = "2")]
    pub ignore_if_exists: bool,
    /// Only present if the client gave a descriptor.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub database_json: Option<Bytes>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateDatabaseResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropDatabaseRequest {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
    #[prost(bool, required, tag = "2")]
    pub ignore_if_not_exists: bool,
    #[prost(bool, required, tag = "3")]
    pub cascade: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropDatabaseResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListDatabasesRequest {
    #[prost(bool, optional, tag = "1")]
    pub include_summary: Option<bool>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListDatabasesResponse {
    #[prost(string, repeated, tag = "1")]
    pub database_name: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub database_summary: Vec<PbDatabaseSummary>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbDatabaseSummary {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
    #[prost(int64, required, tag = "2")]
    pub created_time: i64,
    #[prost(int32, required, tag = "3")]
    pub table_count: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DatabaseExistsRequest {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DatabaseExistsResponse {
    #[prost(bool, required, tag = "1")]
    pub exists: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetDatabaseInfoRequest {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
}

/// Field numbers start at 3, as upstream.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetDatabaseInfoResponse {
    #[prost(bytes = "bytes", required, tag = "3")]
    pub database_json: Bytes,
    #[prost(int64, required, tag = "4")]
    pub created_time: i64,
    #[prost(int64, required, tag = "5")]
    pub modified_time: i64,
}
