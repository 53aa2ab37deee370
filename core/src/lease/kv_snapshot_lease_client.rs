//! A consumer's handle on one KV snapshot lease over [`Rpc`] (Fluss's client
//! `KvSnapshotLease`: `acquireSnapshots`, `renew`, `releaseSnapshots`, `dropLease`). Creating
//! one sends nothing. Every call is idempotent at the coordinator (an acquire sets the same
//! pins and expiration again, a release or drop of what is gone is a no-op), so a call whose
//! answer was lost ([`LeaseClientError::NoAnswer`]) may be sent again.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::Rpc;
use crate::error::ApiError;
use crate::lease::lease_error::LeaseError;
use crate::message::{NodeId, Request, Response};
use crate::table_bucket::TableBucket;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseClientError {
    /// The coordinator refused (its verdict says whether to ask again).
    #[error("the coordinator refused: {0}")]
    Refused(LeaseError),
    /// No answer, or an answer that is not one: the outcome is unknown; asking again is safe.
    #[error("no answer from the coordinator: {0}")]
    NoAnswer(String),
    /// An acquire of nothing (Fluss's client refuses it: a renewal is `renew`).
    #[error("an acquire needs at least one snapshot")]
    NothingToAcquire,
    /// The server answered an error of its own (over the wire, an ERROR_RESPONSE: the
    /// coordinator's refusal as its code); its code says whether to ask again.
    #[error("the server answered: {0}")]
    Server(ApiError),
}

impl LeaseClientError {
    pub fn is_retriable(&self) -> bool {
        match self {
            LeaseClientError::Refused(error) => error.is_retriable(),
            LeaseClientError::NoAnswer(_) => true,
            LeaseClientError::NothingToAcquire => false,
            LeaseClientError::Server(error) => error.code.is_retriable(),
        }
    }
}

#[derive(Clone)]
pub struct KvSnapshotLeaseClient {
    rpc: Arc<dyn Rpc>,
    coordinator: NodeId,
    timeout_ms: u64,
    lease_id: String,
    duration_ms: u64,
}

impl std::fmt::Debug for KvSnapshotLeaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSnapshotLeaseClient").field("lease_id", &self.lease_id).finish()
    }
}

impl KvSnapshotLeaseClient {
    pub fn new(
        rpc: Arc<dyn Rpc>,
        coordinator: NodeId,
        timeout_ms: u64,
        lease_id: String,
        duration_ms: u64,
    ) -> Self {
        KvSnapshotLeaseClient { rpc, coordinator, timeout_ms, lease_id, duration_ms }
    }

    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }

    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }

    /// Pins `snapshots` and renews the lease; answers the pairs the coordinator does not keep
    /// (not pinned).
    pub fn acquire(
        &self,
        snapshots: Vec<(TableBucket, u64)>,
    ) -> BoxFuture<'static, Result<Vec<(TableBucket, u64)>, LeaseClientError>> {
        if snapshots.is_empty() {
            return futures::future::ready(Err(LeaseClientError::NothingToAcquire)).boxed();
        }
        self.acquire_request(snapshots)
    }

    /// Renews the lease to now + its duration (an acquire of nothing; creates it if needed).
    pub fn renew(&self) -> BoxFuture<'static, Result<(), LeaseClientError>> {
        let acquired = self.acquire_request(Vec::new());
        async move { acquired.await.map(drop) }.boxed()
    }

    pub fn release(
        &self,
        buckets: Vec<TableBucket>,
    ) -> BoxFuture<'static, Result<(), LeaseClientError>> {
        let lease_id = self.lease_id.clone();
        self.expect_ok(Request::ReleaseKvSnapshotLease { lease_id, buckets })
    }

    pub fn drop_lease(&self) -> BoxFuture<'static, Result<(), LeaseClientError>> {
        self.expect_ok(Request::DropKvSnapshotLease { lease_id: self.lease_id.clone() })
    }

    fn acquire_request(
        &self,
        snapshots: Vec<(TableBucket, u64)>,
    ) -> BoxFuture<'static, Result<Vec<(TableBucket, u64)>, LeaseClientError>> {
        let request = Request::AcquireKvSnapshotLease {
            lease_id: self.lease_id.clone(),
            duration_ms: self.duration_ms,
            snapshots,
        };
        let call = self.call(request);
        async move {
            match call.await? {
                Response::KvSnapshotLeaseAcquired { unavailable } => Ok(unavailable),
                other => Err(LeaseClientError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn expect_ok(&self, request: Request) -> BoxFuture<'static, Result<(), LeaseClientError>> {
        let call = self.call(request);
        async move {
            match call.await? {
                Response::Ok => Ok(()),
                other => Err(LeaseClientError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn call(&self, request: Request) -> BoxFuture<'static, Result<Response, LeaseClientError>> {
        let call = self.rpc.call(self.coordinator, request, self.timeout_ms);
        async move {
            match call.await {
                Ok(Response::KvSnapshotLeaseRefused(error)) => {
                    Err(LeaseClientError::Refused(error))
                }
                Ok(Response::Error(error)) => Err(LeaseClientError::Server(error)),
                Ok(response) => Ok(response),
                Err(error) => Err(LeaseClientError::NoAnswer(error.to_string())),
            }
        }
        .boxed()
    }
}
