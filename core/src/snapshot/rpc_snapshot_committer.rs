//! [`SnapshotCommitter`] over the node's [`Rpc`]: the leader's calls to the coordinator.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::Rpc;
use crate::message::{NodeId, Request, Response};
use crate::snapshot::completed_snapshot::CompletedSnapshot;
use crate::snapshot::snapshot_uploader::{CommitterError, SnapshotCommitter};
use crate::table_bucket::TableBucket;

pub struct RpcSnapshotCommitter {
    rpc: Arc<dyn Rpc>,
    coordinator: NodeId,
    timeout_ms: u64,
}

impl RpcSnapshotCommitter {
    pub fn new(rpc: Arc<dyn Rpc>, coordinator: NodeId, timeout_ms: u64) -> Self {
        RpcSnapshotCommitter { rpc, coordinator, timeout_ms }
    }

    fn call(&self, request: Request) -> BoxFuture<'static, Result<Response, CommitterError>> {
        let call = self.rpc.call(self.coordinator, request, self.timeout_ms);
        async move {
            match call.await {
                Ok(Response::KvSnapshotRefused(error)) if error.is_retriable() => {
                    Err(CommitterError::NoAnswer(error.to_string()))
                }
                Ok(Response::KvSnapshotRefused(error)) => Err(CommitterError::Refused(error)),
                Ok(Response::Error(error)) => Err(CommitterError::NoAnswer(error.to_string())),
                Ok(response) => Ok(response),
                Err(error) => Err(CommitterError::NoAnswer(error.to_string())),
            }
        }
        .boxed()
    }
}

impl SnapshotCommitter for RpcSnapshotCommitter {
    fn allocate_snapshot_id(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, CommitterError>> {
        let call = self.call(Request::AllocateKvSnapshotId { bucket });
        async move {
            match call.await? {
                Response::KvSnapshotId { snapshot_id } => Ok(snapshot_id),
                other => Err(CommitterError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn latest(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<Option<CompletedSnapshot>, CommitterError>> {
        let call = self.call(Request::GetLatestKvSnapshot { bucket });
        async move {
            match call.await? {
                Response::LatestKvSnapshot(latest) => Ok(latest.map(|snapshot| *snapshot)),
                other => Err(CommitterError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn kept(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<Vec<CompletedSnapshot>, CommitterError>> {
        let call = self.call(Request::ListKvSnapshots { bucket });
        async move {
            match call.await? {
                Response::KeptKvSnapshots(kept) => Ok(kept),
                other => Err(CommitterError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn report_broken(
        &self,
        bucket: TableBucket,
        snapshot_id: u64,
    ) -> BoxFuture<'static, Result<(), CommitterError>> {
        let call = self.call(Request::ReportBrokenKvSnapshot { bucket, snapshot_id });
        async move {
            match call.await? {
                Response::Ok => Ok(()),
                other => Err(CommitterError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }

    fn commit(
        &self,
        snapshot: CompletedSnapshot,
    ) -> BoxFuture<'static, Result<(), CommitterError>> {
        let call = self.call(Request::CommitKvSnapshot { snapshot: Box::new(snapshot) });
        async move {
            match call.await? {
                Response::Ok => Ok(()),
                other => Err(CommitterError::NoAnswer(format!("answered {}", other.kind()))),
            }
        }
        .boxed()
    }
}
