//! Each simulated server's changelogs, on its own crashable disk, and idealised replication
//! between them.
//!
//! A bucket has `replication_factor` replicas, placed on consecutive servers from its home
//! server. The leader's log hands every synced batch to a [`SimReplicator`], which copies it to
//! the in-sync followers only if the leader's disk holds the frame durably: replication carries
//! what the leader made durable and nothing more, so an acknowledgement that ran ahead of its
//! sync dies with the leader's crash, as in a real cluster. A follower that missed batches
//! (it was down) is out of sync until it is chosen to lead, when it catches up from the live
//! replica with the longest log that holds the committed batches. A follower takes a batch only
//! if it holds the leader's batch before it (same offsets, same epoch: Raft's consistency
//! check), so two logs that hold the same batch hold the same history before it. A replica may
//! lead only if its log holds the last committed batch (the last one its leader made durable
//! and replicated), Fluss's rule that only the in-sync replicas may be elected: a log of the
//! right length is not enough, its last batches may be a deposed leader's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::env::LocalFs;
use kvtablet_core::log::{
    BatchIdentity, LogConfig, LogRegistry, LogTablet, Replicator, SyncedBatch,
};
use kvtablet_core::message::NodeId;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::TableBucket;

use crate::fs::SimFs;

/// Where each server's changelogs live on its disk.
const LOG_ROOT_DIR: &str = "data";
/// Bytes read per step when a replica catches up.
const CATCH_UP_READ_BYTES: u64 = 1024 * 1024;

#[derive(Default)]
struct ClusterState {
    /// The registries of the servers that are up, each on its own disk (shared, so that
    /// handing one out costs a reference count, not a copy of its root path).
    registries: BTreeMap<NodeId, Arc<LogRegistry>>,
    disks: BTreeMap<NodeId, Arc<SimFs>>,
    /// Per bucket, the last batch its leader made durable and replicated.
    last_committed: BTreeMap<TableBucket, BatchIdentity>,
    /// Batches acknowledged by a leader whose frame was not durable when it was replicated.
    not_durable_at_ack: u64,
    /// Batches a follower published while taking a leader's batch (a second leader's).
    replication_reentered: u64,
    /// Batches a leader published after a follower had been fenced at a newer epoch than its
    /// log's (a deposed leader's, acknowledged without being committed).
    published_when_deposed: u64,
}

/// The cluster's changelogs: one registry per live server, and the replication rules.
#[derive(Clone)]
pub struct ClusterLogs {
    servers: u32,
    replication_factor: u32,
    config: LogConfig,
    mutants: Mutants,
    state: Arc<Mutex<ClusterState>>,
}

impl ClusterLogs {
    pub fn new(servers: u32, replication_factor: u32, config: LogConfig, mutants: Mutants) -> Self {
        assert!(servers > 0, "a cluster has servers");
        assert!((1..=servers).contains(&replication_factor), "1 <= replication factor <= servers");
        ClusterLogs {
            servers,
            replication_factor,
            config,
            mutants,
            state: Arc::new(Mutex::new(ClusterState::default())),
        }
    }

    pub fn replication_factor(&self) -> u32 {
        self.replication_factor
    }

    /// The servers that hold `bucket`'s replicas, its home server first.
    pub fn replicas(&self, bucket: TableBucket) -> Vec<NodeId> {
        let home = bucket.bucket_id.unsigned_abs();
        (0..self.replication_factor).map(|i| (home + i) % self.servers + 1).collect()
    }

    /// A server comes up on `disk`: its logs are reopened from their files as they are opened
    /// (torn tails cut, writers' state rebuilt), by the same code production runs.
    pub fn server_started(&self, node: NodeId, disk: Arc<SimFs>) -> LogRegistry {
        let fs: Arc<dyn LocalFs> = disk.clone();
        let registry =
            LogRegistry::with_mutants(fs, LOG_ROOT_DIR.to_string(), self.config, self.mutants)
                .with_replicator(Arc::new(SimReplicator { node, cluster: self.clone() }));
        let mut state = self.lock();
        state.registries.insert(node, Arc::new(registry.clone()));
        state.disks.insert(node, disk);
        registry
    }

    /// A server goes down; its open logs are forgotten (its disk keeps what was synced).
    pub fn server_stopped(&self, node: NodeId) {
        let mut state = self.lock();
        state.registries.remove(&node);
        state.disks.remove(&node);
    }

    /// The log of `bucket` on live server `node`, opened from its files if needed.
    pub fn log_on(&self, node: NodeId, bucket: TableBucket) -> Option<Arc<LogTablet>> {
        let registry = self.lock().registries.get(&node).cloned()?;
        registry.open(bucket).ok()
    }

    /// The live servers with a changelog that stopped taking writes (a failed sync).
    pub fn servers_with_stopped_logs(&self) -> Vec<NodeId> {
        let registries: Vec<(NodeId, Arc<LogRegistry>)> =
            self.lock().registries.iter().map(|(node, r)| (*node, r.clone())).collect();
        registries
            .into_iter()
            .filter(|(_, registry)| registry.has_stopped_logs())
            .map(|(node, _)| node)
            .collect()
    }

    /// The live servers with a changelog that refused to open (damaged files).
    pub fn servers_with_refused_logs(&self) -> Vec<NodeId> {
        let registries: Vec<(NodeId, Arc<LogRegistry>)> =
            self.lock().registries.iter().map(|(node, r)| (*node, r.clone())).collect();
        registries
            .into_iter()
            .filter(|(_, registry)| registry.has_refused_logs())
            .map(|(node, _)| node)
            .collect()
    }

    fn last_committed(&self, bucket: TableBucket) -> Option<BatchIdentity> {
        self.lock().last_committed.get(&bucket).copied()
    }

    /// Whether `log` holds every committed batch of its bucket: it holds the last one (a log
    /// whose start passed it by retention holds it if it reaches its end).
    fn holds_committed(&self, log: &LogTablet) -> bool {
        let Some(last) = self.last_committed(log.bucket()) else { return true };
        if log.log_start_offset() > last.base_offset {
            return log.log_end_offset() >= last.end_offset;
        }
        log.batch_starting_at(last.base_offset) == Some(last)
    }

    /// `batch` is committed, and with it everything before it, unless a later one already is.
    fn commit(&self, bucket: TableBucket, batch: BatchIdentity) {
        let mut state = self.lock();
        let last = state.last_committed.entry(bucket).or_insert(batch);
        if batch.end_offset > last.end_offset {
            *last = batch;
        }
    }

    pub fn not_durable_at_ack(&self) -> u64 {
        self.lock().not_durable_at_ack
    }

    pub fn replication_reentered(&self) -> u64 {
        self.lock().replication_reentered
    }

    pub fn published_when_deposed(&self) -> u64 {
        self.lock().published_when_deposed
    }

    /// The live replica logs of `bucket`, in node order.
    fn live_replica_logs(&self, bucket: TableBucket) -> Vec<(NodeId, Arc<LogTablet>)> {
        self.replicas(bucket)
            .into_iter()
            .filter_map(|node| Some((node, self.log_on(node, bucket)?)))
            .collect()
    }

    /// The log the model reads `bucket` from: `leader`'s if it is up, else the live replica
    /// with the longest log.
    pub fn reference_log(
        &self,
        bucket: TableBucket,
        leader: Option<NodeId>,
    ) -> Option<Arc<LogTablet>> {
        if let Some(log) = leader.and_then(|node| self.log_on(node, bucket)) {
            return Some(log);
        }
        self.live_replica_logs(bucket)
            .into_iter()
            .map(|(_, log)| log)
            .max_by_key(|log| log.log_end_offset())
    }

    /// The new epoch reaches every live replica's log at once (the idealised replication of
    /// a leadership change): a deposed leader can append nothing more anywhere.
    pub fn fence(&self, bucket: TableBucket, leader_epoch: u32) {
        for (_, log) in self.live_replica_logs(bucket) {
            // A log already at a newer epoch, or whose epoch file cannot be written, keeps its
            // own; its replica then fails to lead and the coordinator moves on.
            let _ = log.fence(leader_epoch);
        }
    }

    /// Makes `candidate` ready to lead `bucket`: it catches up from the live replica with the
    /// longest log among those that hold the committed batches (cutting any suffix of its own
    /// that history replaced). Returns whether its log then holds the committed batches, that
    /// is whether it may lead.
    pub fn prepare_leader(&self, bucket: TableBucket, candidate: NodeId) -> bool {
        if !self.replicas(bucket).contains(&candidate) {
            return false;
        }
        let Some(target) = self.log_on(candidate, bucket) else { return false };
        let source = self
            .live_replica_logs(bucket)
            .into_iter()
            .filter(|(node, log)| *node != candidate && self.holds_committed(log))
            .max_by_key(|(_, log)| log.log_end_offset())
            .map(|(_, log)| log);
        if let Some(source) = source {
            if !self.holds_committed(&target) || source.log_end_offset() > target.log_end_offset() {
                // A failed copy leaves the candidate short; the check below decides.
                let _ = catch_up(&target, &source);
            }
        }
        if !self.holds_committed(&target) || target.is_stopped() {
            return false;
        }
        // The new leader serves its whole log (its high watermark is its log end), so the
        // batches it holds beyond the committed ones, a predecessor's that were not committed,
        // are committed now: the next leader must hold them too.
        if let Some(last) = target.batch_ending_at(target.log_end_offset()) {
            self.commit(bucket, last);
        }
        true
    }

    /// Whether losing `node`'s disk keeps every committed batch on another live replica.
    pub fn disk_is_redundant(&self, node: NodeId, buckets: &[TableBucket]) -> bool {
        buckets.iter().filter(|bucket| self.replicas(**bucket).contains(&node)).all(|bucket| {
            self.live_replica_logs(*bucket)
                .iter()
                .any(|(other, log)| *other != node && self.holds_committed(log))
        })
    }

    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Copies `source`'s batches that `target` lacks, after cutting where the two differ.
fn catch_up(target: &LogTablet, source: &LogTablet) -> Result<(), String> {
    let start = target.log_start_offset().max(source.log_start_offset());
    let mut diverged_at = target.log_end_offset().min(source.log_end_offset());
    let mut offset = start;
    'compare: while offset < diverged_at {
        let ours = target.read(offset, CATCH_UP_READ_BYTES).map_err(|e| e.to_string())?;
        let theirs = source.read(offset, CATCH_UP_READ_BYTES).map_err(|e| e.to_string())?;
        if ours.is_empty() || theirs.is_empty() {
            break;
        }
        for (a, b) in ours.iter().zip(&theirs) {
            if a != b {
                diverged_at = a.base_offset.min(b.base_offset);
                break 'compare;
            }
            offset = a.end_offset();
        }
    }
    target.truncate_to(diverged_at).map_err(|e| e.to_string())?;
    let mut next = target.log_end_offset();
    while next < source.log_end_offset() {
        let batches = source.read(next, CATCH_UP_READ_BYTES).map_err(|e| e.to_string())?;
        if batches.is_empty() {
            break;
        }
        let from = next;
        for batch in batches.iter().filter(|batch| batch.base_offset >= from) {
            target.append_replicated(batch).map_err(|e| e.to_string())?;
            next = batch.end_offset();
        }
    }
    Ok(())
}

/// One server's side of replication: the leader's durable batches go to its followers.
struct SimReplicator {
    node: NodeId,
    cluster: ClusterLogs,
}

thread_local! {
    /// Whether this thread is inside [`SimReplicator::replicate`]. A seed runs on one thread.
    static REPLICATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as replicating until dropped.
struct ReplicatingGuard;

impl ReplicatingGuard {
    /// `None` when the thread is already replicating.
    fn enter() -> Option<ReplicatingGuard> {
        (!REPLICATING.replace(true)).then_some(ReplicatingGuard)
    }
}

impl Drop for ReplicatingGuard {
    fn drop(&mut self) {
        REPLICATING.set(false);
    }
}

impl Replicator for SimReplicator {
    fn replicate(&self, synced: SyncedBatch<'_>) {
        // A follower's append publishes what its own log had pending first. Only a second
        // leader of the bucket (a bug: a deposed leader that was not fenced) has anything
        // pending there; its batches are not carried back into the leader's log, whose lock
        // this thread holds (re-entering it would deadlock the run instead of failing it).
        // They are lost as split-brain writes are, for the oracles to find.
        let Some(_replicating) = ReplicatingGuard::enter() else {
            self.cluster.lock().replication_reentered += 1;
            return;
        };
        let (disk, followers) = {
            let state = self.cluster.lock();
            let Some(disk) = state.disks.get(&self.node).cloned() else { return };
            let followers: Vec<Arc<LogRegistry>> = self
                .cluster
                .replicas(synced.bucket)
                .into_iter()
                .filter(|node| *node != self.node)
                .filter_map(|node| state.registries.get(&node).cloned())
                .collect();
            (disk, followers)
        };
        let frame_end = synced.position_bytes + synced.len_bytes;
        if disk.durable_len(synced.segment_path) < frame_end {
            // Acknowledged but not durable: nothing to replicate (only a bug gets here).
            self.cluster.lock().not_durable_at_ack += 1;
            return;
        }
        let batch = synced.batch;
        // A follower fenced at a newer epoch than the leader's log follows a newer leader: it
        // takes nothing from a deposed one whose own log missed the fence (only a fence that
        // failed silently allows that), and such a batch is not committed however it was
        // acknowledged: it is counted, and the run reports two leaders at once (a later leader
        // that holds it would commit it and hide the loss). A batch the fence itself completed
        // is published under the new epoch.
        let mut refused_as_deposed = false;
        for registry in followers {
            let Ok(log) = registry.open(synced.bucket) else { continue };
            if log.leader_epoch() > synced.log_leader_epoch {
                refused_as_deposed = true;
                continue;
            }
            // Raft's consistency check: a follower whose batch before this one is not the
            // leader's (it missed batches, or holds a deposed leader's) is out of sync.
            let holds_previous = match synced.previous_batch_epoch {
                Some(epoch) => {
                    log.batch_ending_at(batch.base_offset).map(|previous| previous.leader_epoch)
                        == Some(epoch)
                }
                None => log.log_start_offset() == batch.base_offset,
            };
            if !holds_previous {
                continue;
            }
            if log.log_end_offset() > batch.base_offset
                && log.truncate_to(batch.base_offset).is_err()
            {
                continue;
            }
            if log.log_end_offset() == batch.base_offset {
                // A follower whose disk fails falls out of sync; it catches up before it leads.
                let _ = log.append_replicated(batch);
            }
        }
        if refused_as_deposed {
            self.cluster.lock().published_when_deposed += 1;
        } else {
            self.cluster.commit(synced.bucket, batch.identity());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvtablet_core::log::{AppendMeta, ChangeRecord, ChangeType};
    use kvtablet_core::tablet_dirs::TablePath;

    const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };

    /// Starts `node`'s log registry, with the test table's name registered as a tablet
    /// server registers its tables'.
    fn start_server(logs: &ClusterLogs, node: NodeId, disk: Arc<SimFs>) {
        let registry = logs.server_started(node, disk);
        registry.dirs().add_table(BUCKET.table_id, &TablePath::new("test", "t")).expect("name");
    }

    fn cluster() -> (ClusterLogs, Vec<Arc<SimFs>>) {
        let logs = ClusterLogs::new(3, 3, LogConfig { segment_bytes_max: 1 << 20 }, Mutants::NONE);
        let disks: Vec<Arc<SimFs>> = (0..3).map(|_| Arc::new(SimFs::new())).collect();
        for (index, disk) in disks.iter().enumerate() {
            start_server(&logs, index as NodeId + 1, disk.clone());
        }
        (logs, disks)
    }

    /// `leader` appends one batch of `key` at `leader_epoch` (fencing its log first).
    fn lead_and_append(logs: &ClusterLogs, leader: NodeId, leader_epoch: u32, key: &str) {
        let log = logs.log_on(leader, BUCKET).expect("the leader is up");
        log.fence(leader_epoch).expect("fence");
        let change = ChangeRecord {
            change_type: ChangeType::Insert,
            key: key.as_bytes().to_vec(),
            value: b"\x01\x00v".to_vec(),
        };
        let meta = AppendMeta { commit_timestamp_ms: 0, writer: None };
        log.append_as_leader(leader_epoch, meta, vec![change]).expect("append");
    }

    fn epochs(logs: &ClusterLogs, node: NodeId) -> Vec<(u64, u32)> {
        let log = logs.log_on(node, BUCKET).expect("up");
        let batches = log.read(0, u64::MAX).expect("read");
        batches.iter().map(|batch| (batch.base_offset, batch.leader_epoch)).collect()
    }

    /// Node 3 keeps a batch at offset 1 that no one committed (it led at epoch 2 after the
    /// others had moved to epoch 3: a fence that never reached it); node 1 then commits its own
    /// batch at offset 1 while node 3 is down, and node 2 goes down. Node 3 comes back with a
    /// log of the committed length.
    fn same_length_different_history() -> (ClusterLogs, Vec<Arc<SimFs>>) {
        let (logs, disks) = cluster();
        lead_and_append(&logs, 1, 1, "a");
        assert_eq!(epochs(&logs, 3), vec![(0, 1)], "replicated to every follower");
        for node in [1, 2] {
            logs.log_on(node, BUCKET).expect("up").fence(3).expect("fence");
        }
        lead_and_append(&logs, 3, 2, "deposed");
        logs.server_stopped(3);
        lead_and_append(&logs, 1, 3, "committed");
        assert_eq!(epochs(&logs, 2), vec![(0, 1), (1, 3)]);
        logs.server_stopped(2);
        start_server(&logs, 3, disks[2].clone());
        assert_eq!(epochs(&logs, 3), vec![(0, 1), (1, 2)]);
        assert_eq!(epochs(&logs, 1), vec![(0, 1), (1, 3)]);
        (logs, disks)
    }

    #[test]
    fn a_replica_of_the_committed_length_but_another_history_may_not_lead_alone() {
        let (logs, _disks) = same_length_different_history();
        logs.server_stopped(1);
        assert!(!logs.prepare_leader(BUCKET, 3), "node 3 lacks the committed batch at 1");
        assert!(!logs.disk_is_redundant(1, &[BUCKET]), "only node 1 held it");
    }

    #[test]
    fn a_replica_with_another_history_catches_up_to_the_committed_one_before_leading() {
        let (logs, _disks) = same_length_different_history();
        assert!(logs.prepare_leader(BUCKET, 3));
        assert_eq!(epochs(&logs, 3), vec![(0, 1), (1, 3)], "its deposed batch was replaced");
    }

    #[test]
    fn a_follower_whose_previous_batch_differs_takes_nothing() {
        let (logs, _disks) = same_length_different_history();
        // Node 3 ends where node 1's next batch starts, but on another leader's batch.
        lead_and_append(&logs, 1, 3, "next");
        assert_eq!(epochs(&logs, 3), vec![(0, 1), (1, 2)], "out of sync: took nothing");
        assert_eq!(epochs(&logs, 1), vec![(0, 1), (1, 3), (2, 3)]);
    }

    #[test]
    fn a_new_leader_commits_the_batches_it_holds_beyond_the_committed_ones() {
        let (logs, _disks) = cluster();
        lead_and_append(&logs, 1, 1, "a");
        for node in [2, 3] {
            logs.log_on(node, BUCKET).expect("up").fence(3).expect("fence");
        }
        // Node 1's batch at 1 is refused by followers of a newer epoch: not committed.
        lead_and_append(&logs, 1, 2, "b");
        assert_eq!(epochs(&logs, 2), vec![(0, 1)]);
        // Node 1 is elected again and serves it, so a later leader must hold it.
        assert!(logs.prepare_leader(BUCKET, 1));
        logs.server_stopped(1);
        assert!(!logs.prepare_leader(BUCKET, 2), "node 2 lacks the batch node 1 served");
    }
}
