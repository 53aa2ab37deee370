//! InitWriter (1026): a writer id for idempotent writes.

use super::common::PbTablePath;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InitWriterRequest {
    #[prost(message, repeated, tag = "1")]
    pub table_path: Vec<PbTablePath>,
}

/// Any `i64` will do for the client.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InitWriterResponse {
    #[prost(int64, required, tag = "1")]
    pub writer_id: i64,
}
