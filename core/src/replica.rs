//! A bucket as one tablet server hosts it: its role, its leader epoch, and when it leads, the
//! KV tablet and its flush task.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use crate::sync::{lock_for_teardown, lock_or_stop, Mutex, MutexGuard, Stop, StopCause};

use crate::engine::ledgered_engine::LedgeredEngine;
use crate::engine::{EngineSnapshot, KeyRange, KvEngine};
use crate::env::Env;
use crate::error::{ApiError, ErrorCode};
use crate::kv::{EngineWriteLock, KvError, KvTablet, KvTabletConfig};
use crate::ledger::ResourceKind;
use crate::log::LogTablet;
use crate::mutant::Mutant;
use crate::recovery::{
    discard_engine_dir, KvRecovery, RecoveryError, RecoveryPhase, RecoveryProgress,
    RecoverySources, RecoveryTracker, RECOVERY_LOG_INTERVAL_MS,
};
use crate::scan::scan_session::{ScanSession, SessionOrigin};
use crate::scan::ScannerManager;
use crate::snapshot::{run_snapshot_loop, SnapshotSchedule};
use crate::table_bucket::TableBucket;
use crate::task::{catch_blocking_panic, join_if_some, panic_message, run_blocking, Task};
use crate::tiering::{run_tiering_loop, TieringSchedule};

/// What opening a scan produced.
#[derive(Debug)]
pub enum OpenedScan {
    /// The bucket is empty at `log_offset`: no session, no slot used.
    Empty { log_offset: u64 },
    /// A registered session, held by the opening request.
    Session(Arc<ScanSession>),
}

enum Role {
    Follower,
    Leader {
        kv: Arc<KvTablet>,
        flush_task: Task,
        snapshot_task: Option<Task>,
        tiering_task: Option<Task>,
    },
}

struct ReplicaState {
    leader_epoch: u32,
    role: Role,
    /// Opened on the first leadership and kept across terms: the engine holds every change
    /// below its stored flushed offset, so a later term only replays the rest of the log.
    engine: Option<(Arc<dyn KvEngine>, EngineWriteLock)>,
    stopped: bool,
}

pub struct Replica {
    bucket: TableBucket,
    env: Env,
    scanners: Arc<ScannerManager>,
    config: KvTabletConfig,
    /// Periodic KV snapshots of the buckets this replica leads; none without a schedule.
    snapshots: Option<Arc<SnapshotSchedule>>,
    /// Changelog tiering and local retention of the buckets this replica leads; none without
    /// a schedule.
    tiering: Option<Arc<TieringSchedule>>,
    log: Arc<LogTablet>,
    engine_dir: String,
    state: Mutex<ReplicaState>,
    /// Serialises leadership changes, which await their blocking part without `state`.
    leadership: futures::lock::Mutex<()>,
    /// Set when a corrupt or fatal engine error or a panic left the replica's state in doubt
    /// (shared with its KV tablets): from then on it refuses every request with
    /// `KvError::ReplicaStopped` until its node restarts.
    stop: Arc<Stop>,
    /// The progress of a recovery of the engine from KV snapshots, while one runs.
    recovery: RecoveryTracker,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

impl Replica {
    pub fn new(
        env: Env,
        config: KvTabletConfig,
        log: Arc<LogTablet>,
        engine_dir: String,
        scanners: Arc<ScannerManager>,
        snapshots: Option<Arc<SnapshotSchedule>>,
        tiering: Option<Arc<TieringSchedule>>,
    ) -> Replica {
        let bucket = log.bucket();
        let recovery = RecoveryTracker::new(bucket, env.clock.clone(), RECOVERY_LOG_INTERVAL_MS);
        Replica {
            bucket,
            env,
            scanners,
            config,
            snapshots,
            tiering,
            log,
            engine_dir,
            state: Mutex::new(ReplicaState {
                leader_epoch: 0,
                role: Role::Follower,
                engine: None,
                stopped: false,
            }),
            leadership: futures::lock::Mutex::new(()),
            stop: Arc::new(Stop::new()),
            recovery,
        }
    }

    /// The progress of the engine's recovery from KV snapshots while one runs (for metrics).
    pub fn recovery_progress(&self) -> Option<RecoveryProgress> {
        self.recovery.progress()
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    /// The epoch last seen, also of a stopped replica (for reports).
    pub fn leader_epoch(&self) -> u32 {
        lock_for_teardown(&self.state).leader_epoch
    }

    /// Why the replica stopped serving (a corrupt or fatal engine error, a panic), if it did.
    pub fn failure(&self) -> Option<String> {
        self.stop.reason().map(str::to_string)
    }

    /// What stopped the replica, if something did.
    pub fn failure_cause(&self) -> Option<StopCause> {
        self.stop.cause()
    }

    /// Stops the replica because a panic (in a request it served) left its state in doubt.
    pub fn stop_after_panic(&self, reason: String) {
        self.stop.stop(&self.bucket, StopCause::Panic, reason);
        // Reads waiting for a flush are woken to find the replica stopped.
        if let Role::Leader { kv, .. } = &lock_for_teardown(&self.state).role {
            kv.close();
        }
    }

    pub fn log(&self) -> &Arc<LogTablet> {
        &self.log
    }

    /// The KV tablet if this replica leads, for the request paths. While a leadership call
    /// recovers the engine from KV snapshots the bucket is not ready (LEADER_NOT_AVAILABLE,
    /// retriable): its leader is this server, soon.
    pub fn leader_kv(&self) -> Result<Arc<KvTablet>, KvError> {
        let led = match &self.lock()?.role {
            Role::Leader { kv, .. } => Some(kv.clone()),
            Role::Follower => None,
        };
        match led {
            Some(kv) => Ok(kv),
            None if self.recovery.progress().is_some() => Err(KvError::NotReady(format!(
                "bucket {} is restoring its KV engine on tablet server {}",
                self.bucket, self.env.node_id
            ))),
            None => Err(KvError::NotLeader(format!(
                "leader not local for bucket {} on tablet server {}",
                self.bucket, self.env.node_id
            ))),
        }
    }

    /// Leads from `leader_epoch` on: fences the log, rebuilds the KV from the engine's flushed
    /// offset and the log, and starts the flush task. The same epoch again is a no-op; an
    /// older one is fenced. Leadership changes of a replica are serialised; the previous term
    /// ends at once (requests find no leader until the new one is installed), its flush task
    /// is joined, and the fence, the engine's open and the replay run as blocking work without
    /// the replica's lock (a scheduling point in the simulator, off the async workers in
    /// production, where a large engine takes long to open and replay).
    pub fn become_leader(&self, leader_epoch: u32) -> BoxFuture<'_, Result<(), KvError>> {
        async move {
            let _serialised = self.leadership.lock().await;
            let (previous, engine) = {
                let mut state = self.lock()?;
                check_epoch(&state, leader_epoch)?;
                if leader_epoch == state.leader_epoch && matches!(state.role, Role::Leader { .. }) {
                    return Ok(());
                }
                let previous = end_term(&mut state).flush;
                // Sessions of the old term end before the new one starts, under the leader lock.
                self.scanners.close_bucket(self.bucket);
                state.leader_epoch = leader_epoch;
                (previous, state.engine.clone())
            };
            self.join_ended_term(previous).await;
            let fresh_engine = engine.is_none();
            let kv = match self.open_term(leader_epoch, engine).await {
                // The engine's directory was lost after local retention deleted what its
                // rebuild needs: restored from a KV snapshot (and the remote tier), then
                // rebuilt from the local log.
                Err(truncated @ KvError::LogTruncated { .. }) if fresh_engine => {
                    self.recovered_term(leader_epoch, truncated).await?
                }
                opened => opened?,
            };
            let mut state = self.lock()?;
            if state.stopped {
                // Stopped while the term opened: the engine it opened goes with it.
                kv.close();
                return Err(KvError::NotLeader("replica stopped".to_string()));
            }
            assert_eq!(state.leader_epoch, leader_epoch, "leadership changes are serialised");
            state.engine = Some(kv.engine_and_write_lock());
            let flush_task = Task::spawn(
                &self.env.executor,
                &self.env.ledger,
                format!("flush node{} {}", self.env.node_id, self.bucket.dir_name_display()),
                kv.clone().run_flush_loop(),
            );
            let snapshot_task = self.snapshots.clone().map(|schedule| {
                Task::spawn(
                    &self.env.executor,
                    &self.env.ledger,
                    format!("kv snapshot node{} {}", self.env.node_id, self.bucket.dir_name()),
                    run_snapshot_loop(self.env.clone(), kv.clone(), schedule),
                )
            });
            let tiering_task = self.tiering.clone().map(|schedule| {
                Task::spawn(
                    &self.env.executor,
                    &self.env.ledger,
                    format!("log tiering node{} {}", self.env.node_id, self.bucket.dir_name()),
                    run_tiering_loop(self.env.clone(), self.log.clone(), leader_epoch, schedule),
                )
            });
            state.role = Role::Leader { kv, flush_task, snapshot_task, tiering_task };
            Ok(())
        }
        .boxed()
    }

    /// The blocking part of a new term: the log's fence, the engine's open on the first term,
    /// and the KV tablet's rebuild. A panic in it stops the replica.
    fn open_term(
        &self,
        leader_epoch: u32,
        engine: Option<(Arc<dyn KvEngine>, EngineWriteLock)>,
    ) -> BoxFuture<'static, Result<Arc<KvTablet>, KvError>> {
        let (env, config, log, stop) =
            (self.env.clone(), self.config, self.log.clone(), self.stop.clone());
        let (bucket, engine_dir) = (self.bucket, self.engine_dir.clone());
        let name =
            format!("open term {leader_epoch} node{} {}", env.node_id, bucket.dir_name_display());
        let (executor, ledger) = (env.executor.clone(), env.ledger.clone());
        let opening = run_blocking(&executor, &ledger, name, move || {
            catch_blocking_panic(|| {
                log.fence(leader_epoch)?;
                let (engine, engine_writes) = match engine {
                    Some(opened) => opened,
                    None => {
                        let owner = format!("node{} {bucket}", env.node_id);
                        let opened = env.engines.open(&engine_dir)?;
                        (
                            LedgeredEngine::wrap(opened, env.ledger.clone(), owner),
                            Default::default(),
                        )
                    }
                };
                let kv = KvTablet::open(env, config, log, engine, engine_writes, leader_epoch)?;
                Ok(Arc::new(kv.with_stop(stop.clone())))
            })
            .unwrap_or_else(|panic| {
                let reason =
                    format!("opening term {leader_epoch} panicked: {}", panic_message(&*panic));
                stop.stop(&bucket, StopCause::Panic, reason.clone());
                Err(KvError::ReplicaStopped(reason))
            })
        });
        async move {
            // Dropped unrun: only a simulated crash does that, and it ends this request too.
            opening
                .await
                .unwrap_or_else(|| Err(KvError::NotLeader(format!("{bucket}: term not opened"))))
        }
        .boxed()
    }

    /// The first term of an engine recovered from KV snapshots (and the remote tier), for a
    /// fresh engine the local log could not rebuild (`truncated`, answered again when no
    /// snapshot can help: none is configured or none is committed): the recovery, then the
    /// local log's replay from where it left the engine. A failed recovery is
    /// NOT_READY-retriable (the coordinator's next leadership call tries again); an engine it
    /// opened and could not finish is destroyed first.
    async fn recovered_term(
        &self,
        leader_epoch: u32,
        truncated: KvError,
    ) -> Result<Arc<KvTablet>, KvError> {
        let recovered = self.engine_from_snapshots(truncated).await;
        let (engine, flushed_offset) = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                self.recovery.finish();
                return Err(error);
            }
        };
        let high_watermark = self.log.high_watermark();
        self.recovery.update(|progress| {
            progress.phase = RecoveryPhase::LocalReplay;
            progress.offset_replayed = flushed_offset;
            progress.offset_target = high_watermark;
        });
        let opened = self.open_term(leader_epoch, Some(engine)).await;
        self.recovery.finish();
        if opened.is_err() {
            // The engine was dropped with the failed open: nothing of it may be reopened.
            discard_engine_dir(&self.env, &self.engine_dir).await;
        }
        opened
    }

    /// The engine recovered from the newest usable KV snapshot, and the offset it holds every
    /// change below.
    async fn engine_from_snapshots(
        &self,
        truncated: KvError,
    ) -> Result<((Arc<dyn KvEngine>, EngineWriteLock), u64), KvError> {
        let Some(schedule) = self.snapshots.clone() else { return Err(truncated) };
        tracing::warn!(bucket = %self.bucket, %truncated, "recovering the engine from KV snapshots");
        let sources = RecoverySources {
            snapshots: schedule.committer.clone(),
            remote_logs: self.tiering.as_ref().map(|tiering| tiering.committer.clone()),
            fetcher: self.config.recovery_fetcher,
        };
        let recovery = KvRecovery {
            env: &self.env,
            bucket: self.bucket,
            local_start_offset: self.log.log_start_offset(),
            engine_dir: &self.engine_dir,
            sources: &sources,
            tracker: &self.recovery,
        };
        match recovery.run().await {
            Ok(recovered) => {
                tracing::info!(
                    bucket = %self.bucket,
                    snapshot_id = recovered.snapshot.as_ref().map(|s| s.snapshot_id),
                    log_offset = recovered.snapshot.as_ref().map(|s| s.log_offset),
                    flushed_offset = recovered.flushed_offset,
                    "engine recovered from a KV snapshot"
                );
                let owner = format!("node{} {}", self.env.node_id, self.bucket);
                let engine = LedgeredEngine::wrap(recovered.engine, self.env.ledger.clone(), owner);
                Ok(((engine, Default::default()), recovered.flushed_offset))
            }
            Err(RecoveryError::NoSnapshot { broken: 0, .. }) => Err(truncated),
            // Retriable or not, the bucket is not ready: the coordinator asks again.
            Err(error) => {
                if !error.is_retriable() {
                    tracing::error!(bucket = %self.bucket, %error, "KV recovery failed");
                }
                Err(KvError::NotReady(format!("recovering from KV snapshots: {error}")))
            }
        }
    }

    /// Stops leading; `leader_epoch` is the new term's epoch. Waits for the ended term's flush
    /// task.
    pub fn become_follower(&self, leader_epoch: u32) -> BoxFuture<'_, Result<(), KvError>> {
        async move {
            let _serialised = self.leadership.lock().await;
            let previous = {
                let mut state = self.lock()?;
                check_epoch(&state, leader_epoch)?;
                state.leader_epoch = leader_epoch;
                let previous = end_term(&mut state).flush;
                self.scanners.close_bucket(self.bucket);
                previous
            };
            self.join_ended_term(previous).await;
            Ok(())
        }
        .boxed()
    }

    /// Waits for an ended term's flush task, so that its last engine write (planned before the
    /// term ended) lands before anything the next term does. The flush write's own fence (see
    /// [`KvTablet::flush_once`]) guards the same rule; the mutant switches off both.
    async fn join_ended_term(&self, previous: Option<Task>) {
        if self.env.mutants.is_on(Mutant::DeposedFlushWriteLands) {
            return;
        }
        join_if_some(previous).await;
    }

    /// Ends the current term and releases the engine; the replica serves nothing afterwards.
    /// The ended term's tasks are returned: its flush task, and its snapshot and tiering
    /// tasks, aborted (a caller that must see the engine closed, a shutdown, joins them too).
    pub fn stop(&self) -> EndedTerm {
        // Also a replica stopped by a panic is torn down: its tasks end, its engine goes.
        let mut state = lock_for_teardown(&self.state);
        state.stopped = true;
        let ended = end_term(&mut state);
        // Sessions hold engine snapshots: they end before the engine is released.
        self.scanners.close_bucket(self.bucket);
        state.engine = None;
        ended
    }

    /// Opens a scan session: the leader check, the snapshot (with the flushed offset it
    /// matches) and the registration all happen under the leader lock, so a session is either
    /// registered before a leadership change (and closed by it) or refused.
    pub async fn open_scan(&self, limit: Option<i64>) -> Result<OpenedScan, ApiError> {
        let mutants = self.env.mutants;
        if mutants.is_on(Mutant::ScanLeaderCheckOutsideLock) {
            let (kv, leader_epoch) = self.leader_kv_and_epoch()?;
            self.env.executor.yield_now().await;
            let (snapshot, log_offset) = kv.scan_snapshot().map_err(|e| e.to_api_error())?;
            return self.open_session(snapshot, log_offset, leader_epoch, limit);
        }
        if mutants.is_on(Mutant::ScanLogOffsetOutsideFlushLock) {
            let (kv, leader_epoch) = self.leader_kv_and_epoch()?;
            let log_offset = kv.flushed_log_offset();
            self.env.executor.yield_now().await;
            let state = self.lock().map_err(|e| e.to_api_error())?;
            let still_leader =
                matches!(state.role, Role::Leader { .. }) && state.leader_epoch == leader_epoch;
            if !still_leader {
                return Err(self.not_leader_error());
            }
            let (snapshot, _) = kv.scan_snapshot().map_err(|e| e.to_api_error())?;
            return self.open_session(snapshot, log_offset, leader_epoch, limit);
        }
        let state = self.lock().map_err(|e| e.to_api_error())?;
        let Role::Leader { kv, .. } = &state.role else {
            return Err(self.not_leader_error());
        };
        if self.log.leader_epoch() != state.leader_epoch {
            return Err(self.not_leader_error());
        }
        let (snapshot, log_offset) = kv.scan_snapshot().map_err(|e| e.to_api_error())?;
        let opened = self.open_session(snapshot, log_offset, state.leader_epoch, limit);
        drop(state);
        opened
    }

    /// The epoch this replica leads under, `None` when it does not lead: one read of the role
    /// and the epoch together.
    pub fn leading_epoch(&self) -> Option<u32> {
        let state = self.lock().ok()?;
        matches!(state.role, Role::Leader { .. }).then_some(state.leader_epoch)
    }

    /// The names of the current term's background tasks (flush, KV snapshots, tiering) that
    /// have ended although the term runs: the replica leads, is not stopped, and its log has
    /// not been fenced by a newer leader (each loop ends by itself only on one of those). A
    /// loop that ended on a failure leaves its term without flushes, snapshots or tiering for
    /// as long as the term lasts, which nothing else reports; empty when every loop runs.
    pub fn ended_term_loops(&self) -> Vec<String> {
        let Ok(state) = self.lock() else { return Vec::new() };
        let Role::Leader { flush_task, snapshot_task, tiering_task, .. } = &state.role else {
            return Vec::new();
        };
        if state.stopped || self.stop.is_stopped() || self.log.leader_epoch() != state.leader_epoch
        {
            return Vec::new();
        }
        std::iter::once(flush_task)
            .chain(snapshot_task)
            .chain(tiering_task)
            .filter(|task| task.has_ended())
            .map(|task| task.name().to_string())
            .collect()
    }

    /// Whether this replica believes it leads under `leader_epoch`.
    pub fn leads_under(&self, leader_epoch: u32) -> bool {
        let Ok(state) = self.lock() else { return false };
        matches!(state.role, Role::Leader { .. }) && state.leader_epoch == leader_epoch
    }

    /// Whether a page may be served from a session opened under `leader_epoch`: this replica
    /// leads under it and the log has not been fenced by a newer leader whose notice has not
    /// reached this replica yet.
    pub fn may_serve_under(&self, leader_epoch: u32) -> bool {
        self.leads_under(leader_epoch) && self.log.leader_epoch() == leader_epoch
    }

    fn open_session(
        &self,
        snapshot: Arc<dyn EngineSnapshot>,
        log_offset: u64,
        leader_epoch: u32,
        limit: Option<i64>,
    ) -> Result<OpenedScan, ApiError> {
        let storage_error = |e: crate::engine::EngineError| {
            ApiError::new(ErrorCode::KvStorageException, e.to_string())
        };
        let mut iterator = snapshot.iter(KeyRange::all()).map_err(storage_error)?;
        iterator.seek_to_first();
        if !iterator.valid() {
            iterator.status().map_err(storage_error)?;
            return Ok(OpenedScan::Empty { log_offset });
        }
        let id = self.scanners.new_session_id();
        let owner =
            format!("node{} scan {} {id}", self.env.node_id, self.bucket.dir_name_display());
        let ledger_entry = self.env.ledger.register(ResourceKind::ScanSession, owner);
        let origin = SessionOrigin {
            id,
            bucket: self.bucket,
            leader_epoch,
            log_offset,
            limit,
            now_ms: self.env.clock.now_mono_ms(),
        };
        let session =
            Arc::new(ScanSession::new(origin, iterator, ledger_entry).with_stop(self.stop.clone()));
        if let Err(error) = self.scanners.register(session.clone()) {
            // Never counted, so closing it is all the rollback there is.
            session.close_or_defer(true);
            return Err(error);
        }
        Ok(OpenedScan::Session(session))
    }

    fn leader_kv_and_epoch(&self) -> Result<(Arc<KvTablet>, u32), ApiError> {
        let state = self.lock().map_err(|e| e.to_api_error())?;
        match &state.role {
            Role::Leader { kv, .. } => Ok((kv.clone(), state.leader_epoch)),
            Role::Follower => Err(self.not_leader_error()),
        }
    }

    fn not_leader_error(&self) -> ApiError {
        ApiError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "Leader not local for bucket {} on tabletServer {}",
                self.bucket, self.env.node_id
            ),
        )
    }

    /// The state, unless the replica stopped; a lock poisoned by a panic stops it.
    fn lock(&self) -> Result<MutexGuard<'_, ReplicaState>, KvError> {
        let state =
            lock_or_stop(&self.state, &self.stop, &self.bucket).map_err(KvError::ReplicaStopped)?;
        match self.stop.reason() {
            Some(reason) => Err(KvError::ReplicaStopped(reason.to_string())),
            None => Ok(state),
        }
    }
}

fn check_epoch(state: &ReplicaState, leader_epoch: u32) -> Result<(), KvError> {
    if state.stopped {
        return Err(KvError::NotLeader("replica stopped".to_string()));
    }
    if leader_epoch < state.leader_epoch {
        return Err(KvError::FencedLeaderEpoch {
            requested: leader_epoch,
            current: state.leader_epoch,
        });
    }
    Ok(())
}

/// Closes the leader's KV (if any); its flush task then ends by itself, after the flush step
/// in flight (see [`KvTablet::run_flush_loop`]).
/// The tasks of a term that ended.
pub struct EndedTerm {
    /// The flush task, which the next term waits for.
    pub flush: Option<Task>,
    /// The snapshot and tiering tasks, already aborted.
    pub aborted: Vec<Task>,
}

fn end_term(state: &mut ReplicaState) -> EndedTerm {
    match std::mem::replace(&mut state.role, Role::Follower) {
        Role::Leader { kv, flush_task, snapshot_task, tiering_task } => {
            kv.close();
            // A snapshot in flight is dropped at its next await: it deletes nothing remote,
            // and the next term clears its local checkpoint. An upload of a segment is dropped
            // the same way; an object it left uncommitted is the orphan sweep's.
            let aborted: Vec<Task> = snapshot_task.into_iter().chain(tiering_task).collect();
            for task in &aborted {
                task.abort();
            }
            EndedTerm { flush: Some(flush_task), aborted }
        }
        Role::Follower => EndedTerm { flush: None, aborted: Vec::new() },
    }
}
