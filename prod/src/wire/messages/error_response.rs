//! `ErrorResponse`: the body of an ERROR_RESPONSE frame.

/// A whole-request error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorResponse {
    #[prost(int32, required, tag = "1")]
    pub error_code: i32,
    #[prost(string, optional, tag = "2")]
    pub error_message: Option<String>,
}
