//! Core's [`Rpc`] over the Fluss wire protocol, so that core's client code (`KvScanner`,
//! `KvSnapshotLeaseClient`) runs unchanged against a remote server: a core `Request::ScanKv`
//! goes out as a ScanKv frame and its response comes back as a core `Response::ScanKv`; the
//! KV snapshot lease requests go out as AcquireKvSnapshotLease, ReleaseKvSnapshotLease and
//! DropKvSnapshotLease frames, and an ERROR_RESPONSE to them comes back as a core
//! `Response::Error` with its code.
//!
//! A scan session lives on the server, not on the connection, so a connection that broke is
//! replaced on the next call: a continuation that `KvScanner` resends after a lost response
//! reaches the session over the new connection and gets the cached page.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{Rpc, RpcError};
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::message::{self as core, NodeId, Request, Response};

use super::connection::{Connection, ConnectionConfig};
use super::error::ClientError;
use crate::wire::messages::{
    lease_pairs, lease_tables, AcquireKvSnapshotLeaseRequest, AcquireKvSnapshotLeaseResponse,
    DropKvSnapshotLeaseRequest, DropKvSnapshotLeaseResponse, PbScanReqForBucket, PbTableBucket,
    ReleaseKvSnapshotLeaseRequest, ReleaseKvSnapshotLeaseResponse, ScanKvRequest, ScanKvResponse,
};
use crate::wire::ApiKey;

/// Every call goes to one server, whatever node it names (a single node leads every bucket;
/// the caller resolves the leader's address before building this).
#[derive(Clone)]
pub struct WireRpc {
    inner: Arc<Remote>,
}

/// The server's address and the connection to it, shared by every clone and call.
struct Remote {
    addr: String,
    config: ConnectionConfig,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl WireRpc {
    /// Calls will go to `addr`, over `connection` while it stays open.
    pub fn new(addr: impl Into<String>, connection: Arc<Connection>) -> WireRpc {
        WireRpc {
            inner: Arc::new(Remote {
                addr: addr.into(),
                config: *connection.config(),
                connection: tokio::sync::Mutex::new(Some(connection)),
            }),
        }
    }
}

impl Remote {
    /// The open connection, or a new one if it broke.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|connection| !connection.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(Connection::connect(&self.addr, self.config).await?);
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    async fn scan_kv(
        self: Arc<Self>,
        target: NodeId,
        request: core::ScanKvRequest,
        timeout_ms: u64,
    ) -> Result<Response, RpcError> {
        let connection = self.connection().await.map_err(|_| RpcError::Unreachable(target))?;
        let timeout = Duration::from_millis(timeout_ms);
        let outcome: Result<ScanKvResponse, ClientError> =
            connection.call_with_timeout(ApiKey::ScanKv, &wire_request(request), timeout).await;
        match outcome {
            Ok(response) => Ok(Response::ScanKv(core_response(response))),
            // A whole-request refusal: still the scan's error, where KvScanner looks for it.
            Err(ClientError::Server { code, message, .. }) => {
                Ok(Response::ScanKv(core::ScanKvResponse::error(api_error(code, message))))
            }
            Err(error) if error.outcome_unknown() => {
                tracing::debug!(%error, "scan_kv outcome unknown");
                Err(RpcError::Timeout(target))
            }
            Err(error) => {
                tracing::debug!(%error, "scan_kv not sent");
                Err(RpcError::Unreachable(target))
            }
        }
    }
}

impl Remote {
    /// One lease request as its wire frame; the answer as core's response.
    async fn lease_call(
        self: Arc<Self>,
        target: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> Result<Response, RpcError> {
        let connection = self.connection().await.map_err(|_| RpcError::Unreachable(target))?;
        let timeout = Duration::from_millis(timeout_ms);
        let outcome = match request {
            Request::AcquireKvSnapshotLease { lease_id, duration_ms, snapshots } => {
                let request = AcquireKvSnapshotLeaseRequest {
                    lease_id,
                    lease_duration_ms: i64::try_from(duration_ms).unwrap_or(i64::MAX),
                    snapshots_to_lease: lease_tables(&snapshots),
                };
                let answered: Result<AcquireKvSnapshotLeaseResponse, ClientError> = connection
                    .call_with_timeout(ApiKey::AcquireKvSnapshotLease, &request, timeout)
                    .await;
                answered.map(|response| Response::KvSnapshotLeaseAcquired {
                    unavailable: lease_pairs(&response.unavailable_snapshots),
                })
            }
            Request::ReleaseKvSnapshotLease { lease_id, buckets } => {
                let buckets_to_release = buckets
                    .iter()
                    .map(|bucket| PbTableBucket {
                        table_id: bucket.table_id,
                        partition_id: bucket.partition_id,
                        bucket_id: bucket.bucket_id,
                    })
                    .collect();
                let request = ReleaseKvSnapshotLeaseRequest { lease_id, buckets_to_release };
                let answered: Result<ReleaseKvSnapshotLeaseResponse, ClientError> = connection
                    .call_with_timeout(ApiKey::ReleaseKvSnapshotLease, &request, timeout)
                    .await;
                answered.map(|_| Response::Ok)
            }
            Request::DropKvSnapshotLease { lease_id } => {
                let request = DropKvSnapshotLeaseRequest { lease_id };
                let answered: Result<DropKvSnapshotLeaseResponse, ClientError> = connection
                    .call_with_timeout(ApiKey::DropKvSnapshotLease, &request, timeout)
                    .await;
                answered.map(|_| Response::Ok)
            }
            other => unreachable!("{} is not a lease request", other.kind()),
        };
        match outcome {
            Ok(response) => Ok(response),
            Err(ClientError::Server { code, message, .. }) => {
                Ok(Response::Error(api_error(code, message)))
            }
            Err(error) if error.outcome_unknown() => Err(RpcError::Timeout(target)),
            Err(_) => Err(RpcError::Unreachable(target)),
        }
    }
}

impl Rpc for WireRpc {
    fn call(
        &self,
        target: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        match request {
            Request::ScanKv(request) => {
                Arc::clone(&self.inner).scan_kv(target, request, timeout_ms).boxed()
            }
            lease @ (Request::AcquireKvSnapshotLease { .. }
            | Request::ReleaseKvSnapshotLease { .. }
            | Request::DropKvSnapshotLease { .. }) => {
                Arc::clone(&self.inner).lease_call(target, lease, timeout_ms).boxed()
            }
            other => {
                let refusal = ApiError::new(
                    ErrorCode::UnsupportedVersion,
                    format!("{} is not sent over the wire by WireRpc", other.kind()),
                );
                futures::future::ready(Ok(Response::Error(refusal))).boxed()
            }
        }
    }
}

/// The wire request for core's.
pub fn wire_request(request: core::ScanKvRequest) -> ScanKvRequest {
    ScanKvRequest {
        scanner_id: request.scanner_id.map(Into::into),
        bucket_scan_req: request.bucket_scan_req.map(|open| PbScanReqForBucket {
            table_id: open.bucket.table_id,
            partition_id: open.bucket.partition_id,
            bucket_id: open.bucket.bucket_id,
            limit: open.limit,
        }),
        call_seq_id: request.call_seq_id,
        batch_size_bytes: request.batch_size_bytes,
        close_scanner: request.close_scanner,
    }
}

/// Core's response for the wire's; the records stay the received bytes.
pub fn core_response(response: ScanKvResponse) -> core::ScanKvResponse {
    let error = response
        .error_code
        .filter(|code| *code != 0)
        .map(|code| api_error(code, response.error_message.unwrap_or_default()));
    core::ScanKvResponse {
        error,
        scanner_id: response.scanner_id.map(|id| id.to_vec()),
        has_more_results: response.has_more_results,
        records: response.records,
        log_offset: response.log_offset,
        leader_epoch: None,
    }
}

/// A Fluss error code as core's; a code core has no name for keeps its number in the message.
pub fn api_error(code: i32, message: String) -> ApiError {
    match error_code(code) {
        Some(code) => ApiError::new(code, message),
        None => ApiError::new(ErrorCode::UnknownServerError, format!("error {code}: {message}")),
    }
}

fn error_code(code: i32) -> Option<ErrorCode> {
    const KNOWN: [ErrorCode; 22] = [
        ErrorCode::UnknownServerError,
        ErrorCode::NetworkException,
        ErrorCode::UnsupportedVersion,
        ErrorCode::CorruptMessage,
        ErrorCode::SchemaNotExist,
        ErrorCode::KvStorageException,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::CorruptRecord,
        ErrorCode::LogStorageException,
        ErrorCode::RecordTooLarge,
        ErrorCode::LogOffsetOutOfRange,
        ErrorCode::RequestTimeOut,
        ErrorCode::NonPrimaryKeyTable,
        ErrorCode::UnknownTableOrBucket,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::StorageException,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::ScannerExpired,
        ErrorCode::UnknownScannerId,
        ErrorCode::InvalidScanRequest,
        ErrorCode::TooManyScanners,
        ErrorCode::StorageBackpressure,
    ];
    KNOWN.into_iter().find(|known| known.wire_code() == code)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kvtablet_core::message::BucketScanRequest;
    use kvtablet_core::TableBucket;

    use super::*;

    #[test]
    fn a_request_survives_the_round_trip_through_the_wire_form() {
        let open = core::ScanKvRequest {
            bucket_scan_req: Some(BucketScanRequest {
                bucket: TableBucket::new(3, 1),
                limit: Some(5),
            }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(100),
            ..core::ScanKvRequest::default()
        };
        let wire = wire_request(open);
        assert_eq!(wire.bucket_scan_req.as_ref().map(|b| (b.table_id, b.bucket_id)), Some((3, 1)));
        let close = wire_request(core::ScanKvRequest {
            scanner_id: Some(vec![1, 2]),
            close_scanner: Some(true),
            ..core::ScanKvRequest::default()
        });
        assert_eq!(close.scanner_id, Some(Bytes::from_static(&[1, 2])));
        assert_eq!(close.close_scanner, Some(true));
    }

    #[test]
    fn scan_error_codes_map_to_core_codes_and_unknown_ones_keep_their_number() {
        assert_eq!(api_error(66, String::new()).code, ErrorCode::ScannerExpired);
        assert_eq!(api_error(69, String::new()).code, ErrorCode::TooManyScanners);
        let unknown = api_error(7, "no table".to_string());
        assert_eq!(unknown.code, ErrorCode::UnknownServerError);
        assert!(unknown.message.contains("error 7"), "{}", unknown.message);
        let response =
            core_response(ScanKvResponse { error_code: Some(0), ..ScanKvResponse::default() });
        assert_eq!(response.error, None, "code 0 is NONE");
    }
}
