//! A client's view of who leads each bucket, refreshed from the coordinator on demand.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvtablet_core::env::Rpc;
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::TableBucket;

use crate::client::COORDINATOR_NODE;

#[derive(Debug, Default)]
pub struct LeaderCache {
    leaders: BTreeMap<TableBucket, NodeId>,
}

impl LeaderCache {
    pub fn new() -> Self {
        LeaderCache::default()
    }

    /// The cached leader, or the coordinator's answer if none is cached.
    pub async fn leader_of(
        &mut self,
        rpc: &Arc<dyn Rpc>,
        bucket: TableBucket,
        timeout_ms: u64,
    ) -> Option<NodeId> {
        if let Some(leader) = self.leaders.get(&bucket) {
            return Some(*leader);
        }
        if let Ok(Response::Metadata { leaders }) =
            rpc.call(COORDINATOR_NODE, Request::Metadata, timeout_ms).await
        {
            self.leaders = leaders.iter().filter_map(|l| Some((l.bucket, l.leader?))).collect();
        }
        self.leaders.get(&bucket).copied()
    }

    /// Drops a leader that turned out to be wrong.
    pub fn forget(&mut self, bucket: TableBucket) {
        self.leaders.remove(&bucket);
    }
}
