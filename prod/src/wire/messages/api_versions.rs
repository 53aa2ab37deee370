//! ApiVersions (1000): the first request on every connection.

/// The client names itself.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApiVersionsRequest {
    #[prost(string, required, tag = "1")]
    pub client_software_name: String,
    #[prost(string, required, tag = "2")]
    pub client_software_version: String,
}

/// The keys this server serves, with their version ranges. `server_type` (1 coordinator, 2
/// tablet server) is checked by the client against the role it expects on the connection;
/// left out, the check is skipped.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApiVersionsResponse {
    #[prost(message, repeated, tag = "1")]
    pub api_versions: Vec<PbApiVersion>,
    #[prost(int32, optional, tag = "2")]
    pub server_type: Option<i32>,
}

/// One api key's version range.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbApiVersion {
    #[prost(int32, required, tag = "1")]
    pub api_key: i32,
    #[prost(int32, required, tag = "2")]
    pub min_version: i32,
    #[prost(int32, required, tag = "3")]
    pub max_version: i32,
}
