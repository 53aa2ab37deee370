//! The simulated coordinator: decides who leads each bucket under which epoch, tells the
//! servers, and answers clients' metadata requests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::env::{Clock, Executor, Rpc, RpcHandler};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::message::{BucketLeader, NodeId, Request, Response};
use kvtablet_core::task::Task;
use kvtablet_core::{ErrorCode, TableBucket};

use kvtablet_core::snapshot::snapshot_service::SnapshotService;

use crate::checker::Checker;

/// Sees a snapshot request the coordinator answered, with the service that answered it.
pub type LeaseWatch = Box<dyn Fn(&SnapshotService, &Request, &Response) + Send + Sync>;

const NOTIFY_ATTEMPTS_MAX: u32 = 8;
const NOTIFY_TIMEOUT_MS: u64 = 1_000;

#[derive(Debug, Default)]
struct CoordinatorState {
    leaders: BTreeMap<TableBucket, (Option<NodeId>, u32)>,
    live_servers: BTreeSet<NodeId>,
}

/// What the coordinator did, for the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub bucket: TableBucket,
    pub previous: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
}

pub struct Coordinator {
    state: Arc<Mutex<CoordinatorState>>,
    rpc: Arc<dyn Rpc>,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    checker: Arc<Checker>,
    /// The KV snapshot store and its requests; set before the servers start, replaced when
    /// the coordinator restarts (the `leases` scenario's coordinator crashes).
    snapshots: Mutex<Option<Arc<SnapshotService>>>,
    /// Sees every lease request the coordinator answers (the `leases` scenario's oracle).
    lease_watch: std::sync::OnceLock<LeaseWatch>,
    /// Snapshots a recovery reported broken and the store forgot.
    broken_reports: std::sync::atomic::AtomicU64,
}

impl Coordinator {
    pub fn new(
        rpc: Arc<dyn Rpc>,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
        ledger: Ledger,
        checker: Arc<Checker>,
    ) -> Coordinator {
        Coordinator {
            state: Arc::new(Mutex::new(CoordinatorState::default())),
            rpc,
            executor,
            clock,
            ledger,
            checker,
            snapshots: Mutex::new(None),
            lease_watch: std::sync::OnceLock::new(),
            broken_reports: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Serves KV snapshot requests through `service` from now on (again after a restart).
    pub fn serve_snapshots(&self, service: Arc<SnapshotService>) {
        *self.snapshots.lock().unwrap_or_else(|p| p.into_inner()) = Some(service);
    }

    pub fn snapshots(&self) -> Option<Arc<SnapshotService>> {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Calls `watch` after every lease request the coordinator answers.
    pub fn watch_leases(&self, watch: LeaseWatch) {
        assert!(self.lease_watch.set(watch).is_ok(), "leases are watched once");
    }

    /// The bucket's current epoch, `None` for a bucket not (or no longer) registered.
    pub fn current_epoch_of(&self, bucket: TableBucket) -> Option<u32> {
        self.lock().leaders.get(&bucket).map(|(_, epoch)| *epoch)
    }

    pub fn set_server_live(&self, server: NodeId, live: bool) {
        let mut state = self.lock();
        if live {
            state.live_servers.insert(server);
        } else {
            state.live_servers.remove(&server);
        }
    }

    pub fn live_servers(&self) -> Vec<NodeId> {
        self.lock().live_servers.iter().copied().collect()
    }

    pub fn leader_of(&self, bucket: TableBucket) -> Option<NodeId> {
        self.lock().leaders.get(&bucket).and_then(|(leader, _)| *leader)
    }

    /// The epoch of the coordinator's latest decision for `bucket`.
    pub fn leader_epoch_of(&self, bucket: TableBucket) -> u32 {
        self.lock().leaders.get(&bucket).map_or(0, |(_, epoch)| *epoch)
    }

    /// Buckets led by `server`, or without a leader when `server` is `None`.
    pub fn buckets_led_by(&self, server: Option<NodeId>) -> Vec<TableBucket> {
        self.lock()
            .leaders
            .iter()
            .filter(|(_, (leader, _))| *leader == server)
            .map(|(b, _)| *b)
            .collect()
    }

    pub fn register_bucket(&self, bucket: TableBucket) {
        self.lock().leaders.entry(bucket).or_insert((None, 0));
    }

    /// Forgets `bucket` (its partition was dropped): metadata no longer lists it, and the
    /// notifications still trying to reach its leader stop.
    pub fn unregister_bucket(&self, bucket: TableBucket) {
        self.lock().leaders.remove(&bucket);
        // Its snapshots go with it; a late upload of its leader is found by the orphan sweep.
        if let Some(service) = self.snapshots() {
            match service.store().drop_bucket(bucket) {
                Ok(cleanup) if !cleanup.is_empty() => {
                    let deleting = service.delete(cleanup);
                    self.spawn(
                        format!("delete snapshots of {}", bucket.dir_name()),
                        async move {
                            let _left = deleting.await;
                        }
                        .boxed(),
                    );
                }
                Ok(_) => {}
                Err(error) => self
                    .checker
                    .violation(format!("snapshot store failed to drop {bucket}: {error}")),
            }
        }
    }

    /// Moves `bucket` to `leader` (possibly the same server) under a new epoch and notifies the
    /// old and new leader in the background.
    pub fn assign(&self, bucket: TableBucket, leader: Option<NodeId>) -> Assignment {
        let (previous, leader_epoch) = {
            let mut state = self.lock();
            let entry = state.leaders.entry(bucket).or_insert((None, 0));
            let previous = entry.0;
            entry.1 += 1;
            entry.0 = leader;
            (previous, entry.1)
        };
        if let Some(old) = previous.filter(|old| Some(*old) != leader) {
            let request = Request::BecomeFollower { bucket, leader_epoch };
            let rpc = self.rpc.clone();
            // Best effort: a deposed leader that never hears of it is fenced by the log anyway.
            self.spawn(
                format!("notify-follower n{old} {}", bucket.dir_name_display()),
                async move {
                    let _ = rpc.call(old, request, NOTIFY_TIMEOUT_MS).await;
                }
                .boxed(),
            );
        }
        if let Some(new) = leader {
            let this = (self.rpc.clone(), self.clock.clone(), self.checker.clone());
            let still_current = self.epoch_probe(bucket, leader_epoch);
            self.spawn(
                format!("notify-leader n{new} {}", bucket.dir_name_display()),
                async move {
                    let (rpc, clock, checker) = this;
                    let mut backoff_ms = 20;
                    for _ in 0..NOTIFY_ATTEMPTS_MAX {
                        if !still_current() {
                            return;
                        }
                        let context = format!("become leader n{new} {bucket} epoch {leader_epoch}");
                        let sent_ms = clock.now_mono_ms();
                        match rpc
                            .call(
                                new,
                                Request::BecomeLeader { bucket, leader_epoch },
                                NOTIFY_TIMEOUT_MS,
                            )
                            .await
                        {
                            Ok(Response::Ok) => {
                                checker.check_partition_answer(&context, bucket, sent_ms, None);
                                return;
                            }
                            Ok(Response::Error(error)) => {
                                checker.on_error(&context, &error);
                                checker.check_partition_answer(
                                    &context,
                                    bucket,
                                    sent_ms,
                                    Some(&error),
                                );
                                if matches!(
                                    error.code,
                                    ErrorCode::FencedLeaderEpoch | ErrorCode::PartitionNotExists
                                ) {
                                    return;
                                }
                            }
                            Ok(_) | Err(_) => {}
                        }
                        clock.sleep(backoff_ms).await;
                        backoff_ms *= 2;
                    }
                }
                .boxed(),
            );
        }
        Assignment { bucket, previous, leader, leader_epoch }
    }

    /// A check that `bucket` is still at `leader_epoch`, for notification tasks to stop early.
    fn epoch_probe(
        &self,
        bucket: TableBucket,
        leader_epoch: u32,
    ) -> impl Fn() -> bool + Send + 'static {
        let state = self.state.clone();
        move || {
            let state = state.lock().unwrap_or_else(|p| p.into_inner());
            state.leaders.get(&bucket).is_some_and(|(_, epoch)| *epoch == leader_epoch)
        }
    }

    fn spawn(&self, name: String, future: BoxFuture<'static, ()>) {
        // Notification tasks end by themselves; the ledger tracks them until they do.
        let _task = Task::spawn(&self.executor, &self.ledger, name, future);
    }

    /// How many snapshots recoveries reported broken (and the store forgot).
    pub fn broken_reports(&self) -> u64 {
        self.broken_reports.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, CoordinatorState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RpcHandler for Coordinator {
    fn handle(&self, from: NodeId, request: Request) -> BoxFuture<'static, Response> {
        if let Some(service) = self.snapshots() {
            if let Request::ReportBrokenKvSnapshot { bucket, snapshot_id } = &request {
                let kept = service.store().kept(*bucket);
                if let Some(reported) = kept.iter().find(|kept| kept.snapshot_id == *snapshot_id) {
                    self.checker.check_broken_report(reported);
                }
            }
            let expiring = match &request {
                Request::ExpireRemoteLog { bucket, .. } => {
                    self.checker.before_remote_expiry(*bucket);
                    service.remote_logs().map(|store| (*bucket, store.remote_start_offset(*bucket)))
                }
                _ => None,
            };
            if let Some((response, cleanup)) = service.handle(&request) {
                if let (Some((bucket, before)), Response::RemoteLogStart { start_offset }) =
                    (expiring, &response)
                {
                    let kept: Vec<u64> = service
                        .store()
                        .kept(bucket)
                        .iter()
                        .map(|snapshot| snapshot.log_offset)
                        .collect();
                    self.checker.check_remote_expiry(bucket, before, *start_offset, &kept);
                }
                if let Some(watch) = self.lease_watch.get() {
                    watch(&service, &request, &response);
                }
                if let (Request::ListKvSnapshots { bucket }, Response::KeptKvSnapshots(kept)) =
                    (&request, &response)
                {
                    self.checker.record_snapshot_listing(from, *bucket, kept);
                }
                if let (Request::CommitKvSnapshot { snapshot }, Response::Ok) =
                    (&request, &response)
                {
                    let epoch = self.current_epoch_of(snapshot.bucket);
                    self.checker.check_committed_snapshot(snapshot, epoch);
                }
                if let (Request::ReportBrokenKvSnapshot { .. }, Response::Ok) =
                    (&request, &response)
                {
                    self.broken_reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if !cleanup.is_empty() {
                    let deleting = service.delete(cleanup);
                    self.spawn(
                        "delete snapshot files".to_string(),
                        async move {
                            // What stays is found by the orphan sweep at quiescence.
                            let _left = deleting.await;
                        }
                        .boxed(),
                    );
                }
                // A lease change is answered once remote storage has it too (as in prod).
                if let Some(mirroring) = service.mirror_before_answering(&request) {
                    return async move {
                        mirroring.await;
                        response
                    }
                    .boxed();
                }
                return futures::future::ready(response).boxed();
            }
        }
        let response = match request {
            Request::Metadata => Response::Metadata {
                leaders: self
                    .lock()
                    .leaders
                    .iter()
                    .map(|(bucket, (leader, leader_epoch))| BucketLeader {
                        bucket: *bucket,
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                    })
                    .collect(),
            },
            other => Response::Error(kvtablet_core::ApiError::new(
                ErrorCode::UnsupportedVersion,
                format!("the coordinator does not serve {}", other.kind()),
            )),
        };
        futures::future::ready(response).boxed()
    }
}
