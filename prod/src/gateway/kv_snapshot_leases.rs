//! KV snapshot leases (Fluss 1056–1058), answered by the node's own snapshot coordinator
//! (core's `SnapshotService`, which keeps the leases with the snapshot store).
//!
//! The gateway checks the tables first, with Fluss's codes: a table id the catalog does not
//! have is UNKNOWN_TABLE_OR_BUCKET (21), a table without a primary key NON_PRIMARY_KEY_TABLE
//! (20). A negative duration or snapshot id is refused as an invalid request before it reaches
//! the coordinator. Every request is bounded by the coordinator's lease limits.

use std::sync::Arc;

use kvtablet_core::message::Request;
use kvtablet_core::message::Response;
use kvtablet_core::{ApiError, ErrorCode, TableBucket};

use super::kv_requests::unexpected;
use super::Gateway;
use crate::wire::error::{
    decode_request, encode_response, NON_PRIMARY_KEY_TABLE, UNKNOWN_SERVER_ERROR,
    UNKNOWN_TABLE_OR_BUCKET,
};
use crate::wire::messages::{
    lease_tables, AcquireKvSnapshotLeaseRequest, AcquireKvSnapshotLeaseResponse,
    DropKvSnapshotLeaseRequest, DropKvSnapshotLeaseResponse, ReleaseKvSnapshotLeaseRequest,
    ReleaseKvSnapshotLeaseResponse,
};
use crate::wire::{WireError, WireResponse};

impl Gateway {
    /// AcquireKvSnapshotLease: pins each listed snapshot; answers those not kept.
    pub(crate) async fn acquire_kv_snapshot_lease(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: AcquireKvSnapshotLeaseRequest = decode_request(body)?;
        let duration_ms = u64::try_from(request.lease_duration_ms).map_err(|_| {
            invalid(format!("lease duration {} ms is negative", request.lease_duration_ms))
        })?;
        let mut snapshots = Vec::new();
        for table in &request.snapshots_to_lease {
            self.check_lease_table(table.table_id)?;
            for bucket in &table.bucket_snapshots {
                let snapshot_id = u64::try_from(bucket.snapshot_id).map_err(|_| {
                    invalid(format!("snapshot id {} is negative", bucket.snapshot_id))
                })?;
                let table_bucket = TableBucket {
                    table_id: table.table_id,
                    partition_id: bucket.partition_id,
                    bucket_id: bucket.bucket_id,
                };
                snapshots.push((table_bucket, snapshot_id));
            }
        }
        let request =
            Request::AcquireKvSnapshotLease { lease_id: request.lease_id, duration_ms, snapshots };
        match self.call_coordinator(request).await? {
            Response::KvSnapshotLeaseAcquired { unavailable } => {
                encode_response(&AcquireKvSnapshotLeaseResponse {
                    unavailable_snapshots: lease_tables(&unavailable),
                })
            }
            other => Err(unexpected("AcquireKvSnapshotLease", &other).into()),
        }
    }

    /// ReleaseKvSnapshotLease: unpins the listed buckets (unknown ones: a no-op).
    pub(crate) async fn release_kv_snapshot_lease(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: ReleaseKvSnapshotLeaseRequest = decode_request(body)?;
        let buckets = request
            .buckets_to_release
            .iter()
            .map(|bucket| TableBucket {
                table_id: bucket.table_id,
                partition_id: bucket.partition_id,
                bucket_id: bucket.bucket_id,
            })
            .collect();
        let request = Request::ReleaseKvSnapshotLease { lease_id: request.lease_id, buckets };
        match self.call_coordinator(request).await? {
            Response::Ok => encode_response(&ReleaseKvSnapshotLeaseResponse {}),
            other => Err(unexpected("ReleaseKvSnapshotLease", &other).into()),
        }
    }

    /// DropKvSnapshotLease: forgets the lease (unknown: a no-op).
    pub(crate) async fn drop_kv_snapshot_lease(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: DropKvSnapshotLeaseRequest = decode_request(body)?;
        let request = Request::DropKvSnapshotLease { lease_id: request.lease_id };
        match self.call_coordinator(request).await? {
            Response::Ok => encode_response(&DropKvSnapshotLeaseResponse {}),
            other => Err(unexpected("DropKvSnapshotLease", &other).into()),
        }
    }

    /// Fluss's checks of a table a lease names.
    fn check_lease_table(&self, table_id: i64) -> Result<(), WireError> {
        let Some(info) = self.catalog.table_by_id(table_id) else {
            return Err(WireError::new(
                UNKNOWN_TABLE_OR_BUCKET,
                format!("table id {table_id} does not exist"),
            ));
        };
        if info.primary_key.is_empty() {
            return Err(WireError::new(
                NON_PRIMARY_KEY_TABLE,
                format!(
                    "table {} is not a primary key table, so it has no kv snapshots",
                    info.path
                ),
            ));
        }
        Ok(())
    }

    /// A request to the node's snapshot coordinator; its refusals keep their codes.
    async fn call_coordinator(&self, request: Request) -> Result<Response, ApiError> {
        match self.node.coordinator_request(request).await {
            Ok(Response::Error(error)) => Err(error),
            Ok(Response::KvSnapshotLeaseRefused(error)) => Err(error.api_error()),
            Ok(response) => Ok(response),
            Err(error) => Err(ApiError::new(ErrorCode::UnknownServerError, error.to_string())),
        }
    }
}

/// Fluss answers an argument it refuses as an unknown server error (-1).
fn invalid(message: String) -> WireError {
    WireError::new(UNKNOWN_SERVER_ERROR, message)
}
