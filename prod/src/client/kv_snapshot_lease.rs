//! A KV snapshot lease held by a Rust client: core's `KvSnapshotLeaseClient` over the wire
//! ([`WireRpc`]), kept alive by a renewal task and let go with retries.
//!
//! - **Acquire** pins snapshots and answers the pairs the coordinator does not keep; a call
//!   whose outcome is unknown (a timeout, a connection lost in flight) or that was refused
//!   with a retriable code is sent again, which is safe: every lease call is idempotent.
//! - **Renewal**: while the lease is held, a task renews it every third of its duration, so
//!   that two renewals may fail before it expires; a failed renewal is logged and tried at the
//!   next tick.
//! - **Release** retries until the coordinator confirms it (Fluss's tiering job gave up after
//!   one try, leaving pins until expiry), bounded by [`LeaseRetry`].
//! - **Close** stops the renewal and drops the lease, with the same retries. Dropping the
//!   handle without `close` stops the renewal only: the lease then expires by itself.

use std::sync::Arc;
use std::time::Duration;

use kvtablet_core::env::Rpc;
use kvtablet_core::lease::{KvSnapshotLeaseClient, LeaseClientError};
use kvtablet_core::TableBucket;

use super::wire_rpc::WireRpc;

/// Any node id: a [`WireRpc`] sends every call to its one server.
const COORDINATOR: u32 = 0;
/// Renewals per lease duration.
const RENEWALS_PER_DURATION: u32 = 3;
/// The shortest renewal interval, so that a tiny duration does not spin.
const RENEWAL_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// How often and how long a lease call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRetry {
    pub attempts_max: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Each call's deadline.
    pub call_timeout: Duration,
}

impl LeaseRetry {
    pub const DEFAULT: LeaseRetry = LeaseRetry {
        attempts_max: 10,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        call_timeout: Duration::from_secs(30),
    };
}

/// One lease, renewed in the background while held.
pub struct KvSnapshotLease {
    client: KvSnapshotLeaseClient,
    retry: LeaseRetry,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KvSnapshotLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSnapshotLease").field("lease_id", &self.client.lease_id()).finish()
    }
}

impl KvSnapshotLease {
    /// A handle on lease `lease_id` of `duration` through `rpc`; nothing is sent before the
    /// first call.
    pub fn new(
        rpc: WireRpc,
        lease_id: impl Into<String>,
        duration: Duration,
        retry: LeaseRetry,
    ) -> Self {
        let timeout_ms = u64::try_from(retry.call_timeout.as_millis()).unwrap_or(u64::MAX);
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let rpc: Arc<dyn Rpc> = Arc::new(rpc);
        let client =
            KvSnapshotLeaseClient::new(rpc, COORDINATOR, timeout_ms, lease_id.into(), duration_ms);
        KvSnapshotLease { client, retry, renewal: None }
    }

    pub fn lease_id(&self) -> &str {
        self.client.lease_id()
    }

    /// Pins `snapshots` (and renews); answers the pairs not kept, which are not pinned. Starts
    /// the renewal task at the first success.
    pub async fn acquire(
        &mut self,
        snapshots: Vec<(TableBucket, u64)>,
    ) -> Result<Vec<(TableBucket, u64)>, LeaseClientError> {
        let client = self.client.clone();
        let unavailable =
            with_retry(self.retry, "acquire", || client.acquire(snapshots.clone())).await?;
        self.start_renewal();
        Ok(unavailable)
    }

    /// Unpins `buckets`, retried until confirmed (or the retries run out).
    pub async fn release(&self, buckets: Vec<TableBucket>) -> Result<(), LeaseClientError> {
        let client = self.client.clone();
        with_retry(self.retry, "release", || client.release(buckets.clone())).await
    }

    /// Stops the renewal and drops the lease, retried until confirmed.
    pub async fn close(mut self) -> Result<(), LeaseClientError> {
        self.stop_renewal();
        let client = self.client.clone();
        with_retry(self.retry, "drop", || client.drop_lease()).await
    }

    fn start_renewal(&mut self) {
        if self.renewal.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let client = self.client.clone();
        let interval = (Duration::from_millis(client.duration_ms()) / RENEWALS_PER_DURATION)
            .max(RENEWAL_INTERVAL_MIN);
        self.renewal = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(error) = client.renew().await {
                    tracing::warn!(lease = client.lease_id(), %error, "lease renewal failed");
                }
            }
        }));
    }

    fn stop_renewal(&mut self) {
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
    }
}

impl Drop for KvSnapshotLease {
    fn drop(&mut self) {
        self.stop_renewal();
    }
}

/// `call` until it succeeds, fails for good, or `retry` runs out; backoff doubles between
/// attempts.
async fn with_retry<T, F>(
    retry: LeaseRetry,
    what: &'static str,
    call: impl Fn() -> F,
) -> Result<T, LeaseClientError>
where
    F: std::future::Future<Output = Result<T, LeaseClientError>>,
{
    let mut backoff = retry.backoff_min;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retriable() && attempt < retry.attempts_max => {
                tracing::debug!(what, attempt, %error, "lease call retried");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.backoff_max);
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
