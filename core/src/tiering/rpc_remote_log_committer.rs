//! [`RemoteLogCommitter`] over the node's [`Rpc`]: the leader's calls to the coordinator's
//! remote-log manifest.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::Rpc;
use crate::message::{NodeId, Request, Response};
use crate::table_bucket::TableBucket;
use crate::tiering::log_tierer::{RemoteLogCommitter, TieringCommitError};
use crate::tiering::remote_log_segment::RemoteLogSegment;

pub struct RpcRemoteLogCommitter {
    rpc: Arc<dyn Rpc>,
    coordinator: NodeId,
    timeout_ms: u64,
}

impl RpcRemoteLogCommitter {
    pub fn new(rpc: Arc<dyn Rpc>, coordinator: NodeId, timeout_ms: u64) -> Self {
        RpcRemoteLogCommitter { rpc, coordinator, timeout_ms }
    }

    /// A request answered with an offset: the remote end or the remote log start.
    fn call(&self, request: Request) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
        let call = self.rpc.call(self.coordinator, request, self.timeout_ms);
        async move {
            match call.await {
                Ok(Response::RemoteLogEnd { end_offset }) => Ok(end_offset),
                Ok(Response::RemoteLogStart { start_offset }) => Ok(start_offset),
                Ok(Response::RemoteLogRefused(error)) if error.is_retriable() => {
                    Err(TieringCommitError::NoAnswer(error.to_string()))
                }
                Ok(Response::RemoteLogRefused(error)) => Err(TieringCommitError::Refused(error)),
                Ok(other) => {
                    Err(TieringCommitError::NoAnswer(format!("answered {}", other.kind())))
                }
                Err(error) => Err(TieringCommitError::NoAnswer(error.to_string())),
            }
        }
        .boxed()
    }
}

impl RemoteLogCommitter for RpcRemoteLogCommitter {
    fn remote_end_offset(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
        self.call(Request::GetRemoteLogEnd { bucket })
    }

    fn commit(
        &self,
        segment: RemoteLogSegment,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
        self.call(Request::CommitRemoteLogSegment { segment: Box::new(segment) })
    }

    fn segment_holding(
        &self,
        bucket: TableBucket,
        offset: u64,
    ) -> BoxFuture<'static, Result<Option<RemoteLogSegment>, TieringCommitError>> {
        let request = Request::GetRemoteLogSegment { bucket, offset };
        let call = self.rpc.call(self.coordinator, request, self.timeout_ms);
        async move {
            match call.await {
                Ok(Response::RemoteLogSegment(segment)) => Ok(segment.map(|segment| *segment)),
                Ok(Response::RemoteLogRefused(error)) => Err(TieringCommitError::Refused(error)),
                Ok(other) => {
                    Err(TieringCommitError::NoAnswer(format!("answered {}", other.kind())))
                }
                Err(error) => Err(TieringCommitError::NoAnswer(error.to_string())),
            }
        }
        .boxed()
    }

    fn remote_start_offset(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
        self.call(Request::GetRemoteLogStart { bucket })
    }

    fn expire(
        &self,
        bucket: TableBucket,
        leader_epoch: u32,
        expire_before_ms: u64,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
        self.call(Request::ExpireRemoteLog { bucket, leader_epoch, expire_before_ms })
    }

    fn segments_covering(
        &self,
        bucket: TableBucket,
        from_offset: u64,
        to_offset: u64,
    ) -> BoxFuture<'static, Result<Vec<RemoteLogSegment>, TieringCommitError>> {
        let request = Request::ListRemoteLogSegments { bucket, from_offset, to_offset };
        let call = self.rpc.call(self.coordinator, request, self.timeout_ms);
        async move {
            match call.await {
                Ok(Response::RemoteLogSegments(segments)) => Ok(segments),
                Ok(Response::RemoteLogRefused(error)) => Err(TieringCommitError::Refused(error)),
                Ok(other) => {
                    Err(TieringCommitError::NoAnswer(format!("answered {}", other.kind())))
                }
                Err(error) => Err(TieringCommitError::NoAnswer(error.to_string())),
            }
        }
        .boxed()
    }
}
