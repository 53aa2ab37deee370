//! Where a leader's synced batch goes before it is committed.

use crate::log::log_batch::LogBatch;
use crate::table_bucket::TableBucket;

/// A batch the leader has appended and synced, and where its frame lies in the leader's files.
#[derive(Debug, Clone, Copy)]
pub struct SyncedBatch<'a> {
    pub bucket: TableBucket,
    pub batch: &'a LogBatch,
    /// The segment file (in the leader's `LocalFs`) that holds the frame.
    pub segment_path: &'a str,
    pub position_bytes: u64,
    pub len_bytes: u64,
    /// The leader log's epoch when the batch was published: the batch's own, or a newer one
    /// when a fence completed a batch that was waiting for its sync.
    pub log_leader_epoch: u32,
    /// The epoch of the leader's batch that ends where this one starts; `None` when the log
    /// holds none (the batch is the first, or retention removed the one before it).
    pub previous_batch_epoch: Option<u32>,
}

/// Copies a leader's batches to the bucket's other replicas.
///
/// Production runs one replica per bucket and has no replicator. The simulator's replicator
/// stands for Fluss's follower fetch, idealised: it copies to the in-sync followers only what
/// the leader's disk holds durably, so an acknowledgement that ran ahead of the sync is lost
/// with the leader, as it would be in a real cluster.
///
/// It is called with the leader's log locked, after the local sync and before the high
/// watermark moves; it must not call back into the leader's log.
pub trait Replicator: Send + Sync + 'static {
    fn replicate(&self, synced: SyncedBatch<'_>);
}
