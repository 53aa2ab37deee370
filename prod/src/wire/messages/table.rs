//! Table admin requests, sent to the coordinator: CreateTable (1005), DropTable (1006),
//! GetTableInfo (1007), ListTables (1008), TableExists (1010), GetTableSchema (1011).

use bytes::Bytes;

use super::common::PbTablePath;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateTableRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub table_json: Bytes,
    #[prost(bool, required, tag = "3")]
    pub ignore_if_exists: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateTableResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropTableRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(bool, required, tag = "2")]
    pub ignore_if_not_exists: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropTableResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTableInfoRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
}

/// The client parses `table_json` with `unwrap`: it must be valid.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTableInfoResponse {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(int32, required, tag = "2")]
    pub schema_id: i32,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub table_json: Bytes,
    #[prost(int64, required, tag = "4")]
    pub created_time: i64,
    #[prost(int64, required, tag = "5")]
    pub modified_time: i64,
    #[prost(string, optional, tag = "6")]
    pub remote_data_dir: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListTablesRequest {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListTablesResponse {
    #[prost(string, repeated, tag = "1")]
    pub table_name: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TableExistsRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TableExistsResponse {
    #[prost(bool, required, tag = "1")]
    pub exists: bool,
}

/// Without `schema_id`, the latest schema.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTableSchemaRequest {
    #[prost(message, required, tag = "1")]
    pub table_path: PbTablePath,
    #[prost(int32, optional, tag = "2")]
    pub schema_id: Option<i32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTableSchemaResponse {
    #[prost(int32, required, tag = "1")]
    pub schema_id: i32,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub schema_json: Bytes,
}
