//! GetFileSystemSecurityToken (1025): credentials for remote storage. Answer an empty
//! `schema` and `token` when the remote file system needs none.

use bytes::Bytes;

use super::common::PbKeyValue;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetFileSystemSecurityTokenRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetFileSystemSecurityTokenResponse {
    #[prost(string, required, tag = "1")]
    pub schema: String,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub token: Bytes,
    #[prost(int64, optional, tag = "3")]
    pub expiration_time: Option<i64>,
    #[prost(message, repeated, tag = "4")]
    pub addition_info: Vec<PbKeyValue>,
}
