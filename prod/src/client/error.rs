//! What a call over a [`Connection`](super::Connection) can end in besides its response.

use std::time::Duration;

use crate::wire::FrameError;

/// A failed call. [`ClientError::outcome_unknown`] says whether the server may have acted on
/// the request without the client learning what it did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened (refused, unreachable, unresolvable, or not
    /// within the connect timeout).
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// No response within the deadline; the request may or may not have been applied.
    #[error("{api} got no response within {timeout:?}")]
    Timeout { api: &'static str, timeout: Duration },
    /// The connection was closed before the request was sent: it was not applied.
    #[error("the connection is closed: {0}")]
    Closed(String),
    /// The connection was closed while the request was in flight: it may have been applied.
    #[error("the connection closed while {api} was in flight: {reason}")]
    ClosedInFlight { api: &'static str, reason: String },
    /// The request could not be framed (larger than the maximum frame size).
    #[error("cannot frame the request: {0}")]
    Frame(#[from] FrameError),
    /// The server answered with an ERROR_RESPONSE frame.
    #[error("the server refused {api}: error {code}: {message}")]
    Server { api: &'static str, code: i32, message: String },
    /// The response body is not the message the api key promises.
    #[error("malformed {api} response: {reason}")]
    Decode { api: &'static str, reason: String },
    /// The server did not advertise the api key (or no common version) in ApiVersions.
    #[error("the server does not support {0}")]
    Unsupported(&'static str),
}

impl ClientError {
    /// True when no usable answer came for a request that may have reached the server (a
    /// deadline, a connection closed in flight, an unreadable body): a retry must be safe to
    /// repeat. False when the request was never sent, or when the server answered, even with
    /// a refusal (the answer says what happened).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::ClosedInFlight { .. }
                | ClientError::Decode { .. }
        )
    }

    /// The Fluss error code of an ERROR_RESPONSE, if that is what this is.
    pub fn server_code(&self) -> Option<i32> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
