//! Remote object storage (snapshots, tiered log segments, lease metadata).

use std::ops::Range;

use futures::future::BoxFuture;

/// Whether a remote operation may be retried is carried by the variant, never by a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// A passing fault (timeout, throttling, reset): retry with backoff.
    #[error("remote storage transient failure: {0}")]
    Transient(String),
    /// The object does not exist: retrying will not help.
    #[error("remote object not found: {0}")]
    NotFound(String),
    /// The bytes came back but fail their checksum: retry once from another copy, else give up.
    #[error("remote object corrupt: {0}")]
    Corrupt(String),
    /// The caller cancelled the operation.
    #[error("remote operation cancelled")]
    Cancelled,
    /// Misconfiguration or permission failure: do not retry.
    #[error("remote storage fatal failure: {0}")]
    Fatal(String),
}

impl RemoteError {
    /// True when the same call may succeed if repeated.
    pub fn is_retriable(&self) -> bool {
        matches!(self, RemoteError::Transient(_) | RemoteError::Corrupt(_))
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteObject {
    /// Path relative to the store root, `/`-separated.
    pub path: String,
    pub size_bytes: u64,
}

/// A flat object store addressed by `/`-separated paths. Dropping a returned future cancels it.
pub trait RemoteStorage: Send + Sync + 'static {
    /// Writes the whole object atomically: readers see the old object or the new one.
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>>;
    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>>;
    /// Reads `range` of the object; a range past the end is clipped to the object.
    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>>;
    /// Objects whose path starts with `prefix`, sorted by path.
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>>;
    /// Deleting a missing object succeeds.
    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>>;
}
