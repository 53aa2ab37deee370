//! What a request handler answers: a response body, or an error that travels as an
//! ERROR_RESPONSE frame.

use bytes::Bytes;
use kvtablet_core::error::ApiError;
use prost::Message;

/// Fluss's `UNKNOWN_SERVER_ERROR`.
pub const UNKNOWN_SERVER_ERROR: i32 = -1;
/// Fluss's `UNSUPPORTED_VERSION`: an api key this server does not know, or a version outside
/// the advertised range.
pub const UNSUPPORTED_VERSION: i32 = 2;
/// Fluss's `CORRUPT_MESSAGE`: a request body that is not a valid protobuf message.
pub const CORRUPT_MESSAGE: i32 = 3;
/// Fluss's `AUTHENTICATE_EXCEPTION`: authentication failed; not retried by the clients.
pub const AUTHENTICATE_EXCEPTION: i32 = 46;
/// Fluss's `NON_PRIMARY_KEY_TABLE_EXCEPTION`: a KV request on a table without a primary key.
pub const NON_PRIMARY_KEY_TABLE: i32 = 20;
/// Fluss's `UNKNOWN_TABLE_OR_BUCKET_EXCEPTION`: a table id (or bucket) this server does not
/// know.
pub const UNKNOWN_TABLE_OR_BUCKET: i32 = 21;
/// Fluss's `KV_SNAPSHOT_NOT_EXIST`: no such snapshot of the bucket is kept.
pub const KV_SNAPSHOT_NOT_EXIST: i32 = 41;

/// A whole-request error: the server sends it as an ERROR_RESPONSE frame (type 1) carrying
/// `ErrorResponse{error_code, error_message}` and the request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct WireError {
    /// The Fluss error code (`Errors.java`).
    pub code: i32,
    pub message: String,
}

impl WireError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }

    pub fn unsupported_version(message: impl Into<String>) -> Self {
        WireError::new(UNSUPPORTED_VERSION, message)
    }

    pub fn corrupt_message(message: impl Into<String>) -> Self {
        WireError::new(CORRUPT_MESSAGE, message)
    }

    pub fn unknown_server_error(message: impl Into<String>) -> Self {
        WireError::new(UNKNOWN_SERVER_ERROR, message)
    }
}

impl From<ApiError> for WireError {
    fn from(error: ApiError) -> Self {
        WireError { code: error.code.wire_code(), message: error.message }
    }
}

/// An encoded response body as it leaves: `head`, then `tail`, written back to back. A
/// handler that answers with a large payload (a scan page) encodes everything else into
/// `head` and hands the payload over as `tail`, shared rather than copied into the frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseBody {
    pub head: Bytes,
    pub tail: Bytes,
}

impl ResponseBody {
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one buffer (a copy when it has a tail), for tests and decoding.
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut whole = Vec::with_capacity(self.len());
        whole.extend_from_slice(&self.head);
        whole.extend_from_slice(&self.tail);
        Bytes::from(whole)
    }
}

impl From<Bytes> for ResponseBody {
    fn from(head: Bytes) -> Self {
        ResponseBody { head, tail: Bytes::new() }
    }
}

/// The outcome of one request: the encoded protobuf response body, or an error.
pub type WireResponse = Result<ResponseBody, WireError>;

/// Decodes a request body; a malformed one is `CORRUPT_MESSAGE`, as the server must answer it.
pub fn decode_request<M: Message + Default>(body: &[u8]) -> Result<M, WireError> {
    M::decode(body).map_err(|error| {
        WireError::corrupt_message(format!(
            "cannot decode {}: {error}",
            std::any::type_name::<M>().rsplit("::").next().unwrap_or("request")
        ))
    })
}

/// Encodes a response body.
pub fn encode_response<M: Message>(message: &M) -> WireResponse {
    Ok(Bytes::from(message.encode_to_vec()).into())
}
