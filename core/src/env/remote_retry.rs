//! The one retry rule for a remote-storage call: up to [`REMOTE_ATTEMPTS_MAX`] attempts while
//! the error is retriable (`RemoteError::is_retriable`), with a doubling backoff on the
//! caller's clock. What still fails is the caller's to leave for later (the next expiry
//! check, the next start, the orphan sweep).

use std::future::Future;
use std::sync::Arc;

use crate::env::{Clock, RemoteError};

/// Attempts per call.
pub const REMOTE_ATTEMPTS_MAX: u32 = 5;
const BACKOFF_MS_MIN: u64 = 100;
const BACKOFF_MS_MAX: u64 = 5_000;

/// `call` until it succeeds, fails for good, or has been tried [`REMOTE_ATTEMPTS_MAX`] times.
pub async fn with_remote_retries<T, F>(
    clock: &Arc<dyn Clock>,
    mut call: impl FnMut() -> F,
) -> Result<T, RemoteError>
where
    F: Future<Output = Result<T, RemoteError>>,
{
    let mut backoff_ms = BACKOFF_MS_MIN;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if error.is_retriable() && attempt < REMOTE_ATTEMPTS_MAX => {
                let deadline_ms = clock.now_mono_ms().saturating_add(backoff_ms);
                clock.sleep_until(deadline_ms).await;
                backoff_ms = backoff_ms.saturating_mul(2).min(BACKOFF_MS_MAX);
                attempt += 1;
            }
            result => return result,
        }
    }
}
