//! Recovery, watched from outside core: every leadership call a server handles (a
//! `BecomeLeader` may restore the bucket's engine from a KV snapshot and replay the log, with
//! the remote tier first once the fetcher is wired in), and every engine a server opens from
//! a checkpoint (a restore).
//!
//! Its oracles:
//! - a recovered engine holds exactly the model's state at the flushed offset stored in it,
//!   checked when its restore opened it and at every fault instant while it lives (so a
//!   recovered bucket that is deposed before quiescence is still checked whole);
//! - once a leadership call of a bucket ends on a node (answered either way, or its handler
//!   dropped), with no other one of that bucket in flight there, no file is left under the
//!   bucket's recovery temporary directories on that node (`…/kv-{bucket}.restore/`, the
//!   restore's, and `…/log-{bucket}/tmp/remote-log-recovery-*`, the fetcher's) and the leak
//!   ledger holds none of their temporary files, prefetch slots or download tasks; at
//!   quiescence no such file is left on any disk;
//! - a recovery that cannot progress is reported, not spun on: leadership calls of a bucket
//!   in flight on a live, unpaused node must see one of them end within
//!   [`RECOVERY_PROGRESS_BOUND_MS`] of virtual time (a restore's downloads are bounded by
//!   their retries; a replay that makes no progress must fail typed, NOT_READY).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::engine::KvEngine;
use kvtablet_core::env::{Clock, RpcHandler};
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::TableBucket;

use crate::table_partitions::sim_bucket_dirs;

use crate::checker::Checker;
use crate::faulty_engine::{CheckpointOpened, EngineWrites};
use crate::fs::SimFs;

/// Leadership calls of a bucket in flight on a node must see one end within this much
/// virtual time. A restore downloads at most a few files, each with at most 5 attempts of at
/// most a few hundred ms plus backoffs of at most 5 s.
pub const RECOVERY_PROGRESS_BOUND_MS: u64 = 60_000;

/// What the watch saw in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    /// Engines opened from a KV snapshot's checkpoint.
    pub restores: u64,
    /// Leadership calls answered with a failed restore (typed, NOT_READY).
    pub restore_failures: u64,
    /// Snapshots recoveries found broken (a file damaged or missing) and reported to the
    /// coordinator, which forgot them (counted there).
    pub broken_snapshots: u64,
    /// Checks that a bucket's recovery temporary directories were empty after its call.
    pub temp_dir_checks: u64,
}

/// One engine a restore opened, while it lives.
struct Restored {
    node: NodeId,
    incarnation: u64,
    dir: String,
    /// The bucket whose engine directory `dir` is (found once, at the restore).
    bucket: TableBucket,
    engine: Weak<dyn KvEngine>,
    /// Writes made to the engine so far.
    writes: EngineWrites,
    /// The write count when a check last found the engine equal to the model: the model's
    /// state at an offset it has read never changes, so an engine written no more since then
    /// matches again.
    matched_at_writes: Option<u64>,
}

/// The leadership calls of one bucket on one node.
#[derive(Default)]
struct Calls {
    /// Call id → whether it is a `BecomeLeader`.
    in_flight: BTreeMap<u64, bool>,
    /// When the queue last moved: a call started on an empty queue, or one ended.
    progress_ms: u64,
    /// Reported as spun on once.
    reported: bool,
}

#[derive(Default)]
struct WatchState {
    next_call: u64,
    calls: BTreeMap<(NodeId, TableBucket), Calls>,
    restored: Vec<Restored>,
    disks: BTreeMap<NodeId, Arc<SimFs>>,
    counts: RecoveryCounts,
    /// Each bucket's recovery temporary directories, formatted at its first call's end (a
    /// function of the bucket alone).
    temp_dirs: BTreeMap<TableBucket, Arc<TempDirsOf>>,
}

pub struct RecoveryWatch {
    state: Mutex<WatchState>,
    checker: Arc<Checker>,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
}

impl RecoveryWatch {
    pub fn new(checker: Arc<Checker>, ledger: Ledger, clock: Arc<dyn Clock>) -> RecoveryWatch {
        RecoveryWatch { state: Mutex::new(WatchState::default()), checker, ledger, clock }
    }

    pub fn counts(&self) -> RecoveryCounts {
        self.lock().counts
    }

    /// `node` runs on `disk` from now on (a start or a restart).
    pub fn set_disk(&self, node: NodeId, disk: Arc<SimFs>) {
        self.lock().disks.insert(node, disk);
    }

    /// The observer to give `node`'s engine factory in its `incarnation`.
    pub fn checkpoint_observer(
        self: &Arc<Self>,
        node: NodeId,
        incarnation: u64,
    ) -> CheckpointOpened {
        let watch = Arc::downgrade(self);
        Arc::new(move |dir: &str, engine: &Arc<dyn KvEngine>, writes: &EngineWrites| {
            let Some(watch) = watch.upgrade() else { return };
            // A directory of no live bucket (its partition was dropped meanwhile) is never
            // served, so never checked.
            let bucket =
                watch.checker.partitions.live_buckets().into_iter().find(|b| engine_dir(*b) == dir);
            let mut state = watch.lock();
            state.counts.restores += 1;
            // A later restore into the same directory replaces the earlier engine.
            state.restored.retain(|r| !(r.node == node && r.dir == dir));
            let Some(bucket) = bucket else { return };
            state.restored.push(Restored {
                node,
                incarnation,
                dir: dir.to_string(),
                bucket,
                engine: Arc::downgrade(engine),
                writes: writes.clone(),
                matched_at_writes: None,
            });
            drop(state);
            // At its birth: the checkpoint as opened, at the snapshot's log offset, from the
            // newest snapshot that could be restored.
            watch.checker.check_restored_snapshot_is_newest_whole(node, bucket, engine.as_ref());
            if watch.checker.check_restored_engine(node, bucket, engine.as_ref()) == Some(false) {
                let reported = Arc::downgrade(engine);
                watch.lock().restored.retain(|r| !r.engine.ptr_eq(&reported));
            }
        })
    }

    /// `handler` (a tablet server on `node`), with its leadership calls watched.
    pub fn watching(
        self: &Arc<Self>,
        node: NodeId,
        handler: Arc<dyn RpcHandler>,
    ) -> Arc<dyn RpcHandler> {
        Arc::new(WatchedHandler { node, inner: handler, watch: self.clone() })
    }

    /// Whether any leadership call is still being handled anywhere (a recovery of a term the
    /// coordinator has since moved on from still runs, and still owns its temporary files).
    pub fn any_call_in_flight(&self) -> bool {
        self.lock().calls.values().any(|calls| !calls.in_flight.is_empty())
    }

    /// Nodes with a `BecomeLeader` in flight (candidates for a crash during recovery).
    pub fn nodes_leading_in_flight(&self) -> Vec<NodeId> {
        let state = self.lock();
        let nodes: BTreeSet<NodeId> = state
            .calls
            .iter()
            .filter(|(_, calls)| calls.in_flight.values().any(|is_leader| *is_leader))
            .map(|((node, _), _)| *node)
            .collect();
        nodes.into_iter().collect()
    }

    /// Buckets with a `BecomeLeader` in flight somewhere (candidates for a leadership move
    /// during recovery).
    pub fn buckets_leading_in_flight(&self) -> Vec<TableBucket> {
        let state = self.lock();
        let buckets: BTreeSet<TableBucket> = state
            .calls
            .iter()
            .filter(|(_, calls)| calls.in_flight.values().any(|is_leader| *is_leader))
            .map(|((_, bucket), _)| *bucket)
            .collect();
        buckets.into_iter().collect()
    }

    /// At a fault instant: every live recovered engine against the model, and every queue of
    /// leadership calls for progress. `incarnation_of` is a node's incarnation while it is
    /// up, `paused_since` whether it was paused at some point since an instant.
    pub fn check_now(
        &self,
        incarnation_of: &dyn Fn(NodeId) -> Option<u64>,
        paused_since: &dyn Fn(NodeId, u64) -> bool,
    ) {
        self.check_restored_engines(incarnation_of);
        let now = self.clock.now_mono_ms();
        let mut stuck = Vec::new();
        {
            let mut state = self.lock();
            for ((node, bucket), calls) in state.calls.iter_mut() {
                if calls.in_flight.is_empty() || calls.reported {
                    continue;
                }
                let waited_ms = now.saturating_sub(calls.progress_ms);
                if waited_ms > RECOVERY_PROGRESS_BOUND_MS
                    && incarnation_of(*node).is_some()
                    && !paused_since(*node, calls.progress_ms)
                {
                    calls.reported = true;
                    stuck.push(format!(
                        "recovery of {bucket} on node {node}: {} leadership call(s) in flight, none ended for {waited_ms} ms: a recovery that cannot progress must be reported, not spun on",
                        calls.in_flight.len()
                    ));
                }
            }
        }
        for text in stuck {
            self.checker.violation(text);
        }
    }

    /// At quiescence: no file under any recovery temporary directory of any disk, and the
    /// recovered engines still alive against the model.
    pub fn check_quiescent(&self, incarnation_of: &dyn Fn(NodeId) -> Option<u64>) {
        self.check_restored_engines(incarnation_of);
        let disks: Vec<(NodeId, Arc<SimFs>)> =
            self.lock().disks.iter().map(|(node, disk)| (*node, disk.clone())).collect();
        for (node, disk) in disks {
            let left: Vec<String> =
                disk.file_paths().into_iter().filter(|path| is_recovery_temp(path)).collect();
            if !left.is_empty() {
                self.checker.violation(format!(
                    "recovery temp files on node {node} at quiescence: {}",
                    left.join(", ")
                ));
            }
        }
    }

    fn check_restored_engines(&self, incarnation_of: &dyn Fn(NodeId) -> Option<u64>) {
        type Due = (NodeId, TableBucket, Arc<dyn KvEngine>, u64, bool);
        let engines: Vec<Due> = {
            let mut state = self.lock();
            state.restored.retain(|r| {
                r.engine.strong_count() > 0 && incarnation_of(r.node) == Some(r.incarnation)
            });
            if state.restored.is_empty() {
                return;
            }
            let live: BTreeSet<TableBucket> =
                self.checker.partitions.live_buckets().into_iter().collect();
            state
                .restored
                .iter()
                .filter(|r| live.contains(&r.bucket))
                .filter_map(|r| {
                    let writes = r.writes.get();
                    let unchanged = r.matched_at_writes == Some(writes);
                    Some((r.node, r.bucket, r.engine.upgrade()?, writes, unchanged))
                })
                .collect()
        };
        for (node, bucket, engine, writes, unchanged) in engines {
            if unchanged {
                // Unwritten since it matched: compared again, it would match again.
                self.checker.count_recovered_engine_check();
                continue;
            }
            let checked = Arc::downgrade(&engine);
            match self.checker.check_restored_engine(node, bucket, engine.as_ref()) {
                Some(true) => {
                    let mut state = self.lock();
                    if let Some(r) = state.restored.iter_mut().find(|r| r.engine.ptr_eq(&checked)) {
                        r.matched_at_writes = Some(writes);
                    }
                }
                // Reported once: later checks of the same engine would repeat it.
                Some(false) => self.lock().restored.retain(|r| !r.engine.ptr_eq(&checked)),
                None => {}
            }
        }
    }

    fn call_started(&self, node: NodeId, bucket: TableBucket, is_leader: bool) -> u64 {
        let now = self.clock.now_mono_ms();
        let mut state = self.lock();
        state.next_call += 1;
        let id = state.next_call;
        let calls = state.calls.entry((node, bucket)).or_default();
        if calls.in_flight.is_empty() {
            calls.progress_ms = now;
            calls.reported = false;
        }
        calls.in_flight.insert(id, is_leader);
        id
    }

    /// A call ended: answered (`response`), or its handler dropped (`None`: the node went
    /// down, and its disk's leftovers are checked after its next call of the bucket).
    fn call_ended(&self, node: NodeId, bucket: TableBucket, id: u64, response: Option<&Response>) {
        let now = self.clock.now_mono_ms();
        let (idle_everywhere, disk, temp_dirs) = {
            let mut state = self.lock();
            if let Some(Response::Error(error)) = response {
                if error.message.contains("recovering from KV snapshots") {
                    state.counts.restore_failures += 1;
                }
            }
            let calls = state.calls.entry((node, bucket)).or_default();
            calls.in_flight.remove(&id);
            calls.progress_ms = now;
            let idle_here = calls.in_flight.is_empty();
            let idle_everywhere = state
                .calls
                .iter()
                .filter(|((_, b), _)| *b == bucket)
                .all(|(_, calls)| calls.in_flight.is_empty());
            // Checked only once the bucket's calls here are over, and only after an answer.
            let checked = idle_here && response.is_some();
            if checked {
                state.counts.temp_dir_checks += 1;
            }
            let temp_dirs = checked.then(|| {
                state
                    .temp_dirs
                    .entry(bucket)
                    .or_insert_with(|| Arc::new(TempDirsOf::new(bucket)))
                    .clone()
            });
            (idle_everywhere, state.disks.get(&node).cloned(), temp_dirs)
        };
        let Some(temp_dirs) = temp_dirs else { return };
        let outcome = match response {
            Some(Response::Ok) => "answered Ok".to_string(),
            Some(Response::Error(error)) => format!("answered {:?}", error.code),
            Some(_) | None => "answered".to_string(),
        };
        let mut left: Vec<String> = disk.map(|disk| temp_dirs.files_on(&disk)).unwrap_or_default();
        let restore_owner = format!("node{node} restore {bucket} ");
        let kinds = [ResourceKind::TempFile, ResourceKind::PrefetchSlot, ResourceKind::Task];
        self.ledger.for_each_live_owner(&kinds, |kind, owner| {
            let restore_file = kind == ResourceKind::TempFile && owner.starts_with(&restore_owner);
            // A fetcher's ledger entries do not name the node: only checked when no node has
            // a leadership call of the bucket in flight.
            let fetcher_entry =
                idle_everywhere && owner.starts_with(&temp_dirs.fetcher_owner_prefix);
            if restore_file || fetcher_entry {
                left.push(format!("{kind:?} {owner}"));
            }
        });
        if !left.is_empty() {
            self.checker.violation(format!(
                "recovery temp files of {bucket} left on node {node} after its leadership call ended ({outcome}): {}",
                left.join(", ")
            ));
        }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A tablet server's engine directory of `bucket` (core's layout).
pub fn engine_dir(bucket: TableBucket) -> String {
    sim_bucket_dirs(bucket).kv_dir
}

/// The beginning of every fetcher temporary directory of `bucket` (`recovery_temp_dir` under
/// the recovery's own directory: `{engine_dir}.recovery/tmp/remote-log-recovery-{id}`).
fn fetcher_temp_dir_of(bucket: TableBucket) -> String {
    let recovery = kvtablet_core::recovery::recovery_dir(&engine_dir(bucket));
    format!("{recovery}/tmp/remote-log-recovery-")
}

/// `bucket`'s recovery temporary directories, formatted once for a scan of a whole disk.
struct TempDirsOf {
    restore_prefix: String,
    fetcher_dir: String,
    /// How a fetcher's ledger entries of this bucket begin (`remote-log-fetcher {temp_dir}`).
    fetcher_owner_prefix: String,
}

impl TempDirsOf {
    fn new(bucket: TableBucket) -> TempDirsOf {
        let fetcher_dir = fetcher_temp_dir_of(bucket);
        TempDirsOf {
            restore_prefix: format!(
                "{}/",
                kvtablet_core::recovery::restore_dir(&engine_dir(bucket))
            ),
            fetcher_owner_prefix: format!(
                "{}{fetcher_dir}",
                crate::fetcher_bounds::FETCHER_OWNER_PREFIX
            ),
            fetcher_dir,
        }
    }

    /// The files of `disk` under one of them.
    fn files_on(&self, disk: &SimFs) -> Vec<String> {
        let mut files = disk.file_paths_under(&self.restore_prefix);
        files.extend(disk.file_paths_under(&self.fetcher_dir));
        files
    }
}

/// Whether `path` lies under any recovery temporary directory.
fn is_recovery_temp(path: &str) -> bool {
    (path.contains("/kv-") && path.contains(".restore/"))
        || path.contains("/tmp/remote-log-recovery-")
}

/// A tablet server whose leadership calls the watch sees start and end.
struct WatchedHandler {
    node: NodeId,
    inner: Arc<dyn RpcHandler>,
    watch: Arc<RecoveryWatch>,
}

impl RpcHandler for WatchedHandler {
    fn handle(&self, from: NodeId, request: Request) -> BoxFuture<'static, Response> {
        let (bucket, is_leader) = match &request {
            Request::BecomeLeader { bucket, .. } => (*bucket, true),
            Request::BecomeFollower { bucket, .. } => (*bucket, false),
            _ => return self.inner.handle(from, request),
        };
        let id = self.watch.call_started(self.node, bucket, is_leader);
        let mut call =
            CallInFlight { watch: self.watch.clone(), node: self.node, bucket, id, ended: false };
        let answer = self.inner.handle(from, request);
        async move {
            let response = answer.await;
            call.ended = true;
            call.watch.call_ended(call.node, call.bucket, call.id, Some(&response));
            response
        }
        .boxed()
    }
}

/// A leadership call until it ends; dropped unanswered (its node went down), it ends there.
struct CallInFlight {
    watch: Arc<RecoveryWatch>,
    node: NodeId,
    bucket: TableBucket,
    id: u64,
    ended: bool,
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.watch.call_ended(self.node, self.bucket, self.id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_temp_files_are_found_per_bucket() {
        use kvtablet_core::env::LocalFs;
        let kv = "sim/table-1/kv-3";
        let log = "sim/table-1/log-3";
        let part = "sim/table-1/part2-p2/kv-3";
        let disk = SimFs::new();
        let files = [
            format!("{kv}.restore/MEMMANIFEST"),
            format!("{kv}.recovery/tmp/remote-log-recovery-ab12/e1-0.log"),
            format!("{kv}/MEMMANIFEST"),
            format!("{log}/00000000000000000000.log"),
            "sim/table-1/kv-4.restore/x".to_string(),
            "sim/table-1/kv-30.restore/x".to_string(),
            "sim/table-1/kv-30.recovery/tmp/remote-log-recovery-1/x".to_string(),
            format!("{part}.restore/x"),
        ];
        for file in &files {
            disk.create_dir_all(&file[..file.rfind('/').unwrap()]).unwrap();
            disk.write(file, b"x").unwrap();
        }
        let bucket = TableBucket::new(1, 3);
        assert_eq!(
            TempDirsOf::new(bucket).files_on(&disk),
            vec![files[0].clone(), files[1].clone()],
            "the restore's and the fetcher's files; not the engine, the log or another bucket's"
        );
        let partitioned = TableBucket { table_id: 1, partition_id: Some(2), bucket_id: 3 };
        assert_eq!(TempDirsOf::new(partitioned).files_on(&disk), vec![files[7].clone()]);
        assert!(is_recovery_temp(&files[0]));
        assert!(is_recovery_temp(&files[1]));
        assert!(!is_recovery_temp(&files[2]));
    }
}
