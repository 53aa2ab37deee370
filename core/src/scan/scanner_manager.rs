//! The registry of one tablet server's scan sessions: limits, TTL eviction, the memory of
//! expired ids, and closing a bucket's sessions when its leadership changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::{lock_noting_poison, Mutex, MutexGuard, Stop};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::engine::EngineIterator;
use crate::env::Env;
use crate::error::{ApiError, ErrorCode};
use crate::message::ScanKvResponse;
use crate::mutant::Mutant;
use crate::notify::Notify;
use crate::scan::scan_session::{CloseOutcome, ScanSession};
use crate::scan::scanner_config::ScannerConfig;
use crate::table_bucket::TableBucket;

/// What a scanner id resolves to.
#[derive(Debug, Clone)]
pub enum SessionLookup {
    Live(Arc<ScanSession>),
    /// Evicted by TTL or closed by a leadership change within the last 2 × TTL.
    Expired,
    Unknown,
}

/// Counts, for metrics and the simulator's oracles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannerCounts {
    pub total: i64,
    pub per_bucket: BTreeMap<TableBucket, i64>,
    pub registered: usize,
}

/// A registered session as the simulator's oracles see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub bucket: TableBucket,
    pub leader_epoch: u32,
    pub last_access_ms: u64,
    pub in_use: bool,
}

#[derive(Default)]
struct ManagerState {
    sessions: BTreeMap<String, Arc<ScanSession>>,
    /// Id → when it was evicted or closed by a leadership change.
    recently_expired: BTreeMap<String, u64>,
    /// Sessions whose resources are alive (registered, or closed but deferred to a holder).
    per_bucket: BTreeMap<TableBucket, i64>,
    total: i64,
    closed: bool,
    /// The final page of each recently drained session, so that a transport retry of it is
    /// answered rather than told the id is unknown. Bounded by count, bytes and the TTL.
    finished: BTreeMap<String, FinishedScan>,
    finished_bytes: usize,
    /// Only the `ClosedSessionIteratorKept` mutant fills this: ended sessions' cursors, held
    /// for the server's lifetime.
    kept_iterators: Vec<Box<dyn EngineIterator>>,
}

/// At most this many bytes of final pages are kept for retries; older ones are forgotten
/// (and their ids remembered as expired, so a retry restarts the scan).
const FINISHED_PAGES_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
struct FinishedScan {
    bucket: TableBucket,
    leader_epoch: u32,
    call_seq_id: i32,
    batch_size_bytes: i32,
    response: ScanKvResponse,
    finished_ms: u64,
}

pub struct ScannerManager {
    config: ScannerConfig,
    env: Env,
    state: Mutex<ManagerState>,
    /// The registry is the whole server's: a panic that poisons its lock stops the tablet
    /// server, which shares this stop and refuses every request from then on.
    stop: Arc<Stop>,
    /// Notified when a session is registered or the registry shuts down: the evictor waits on
    /// it while it has nothing to evict or forget, instead of waking every interval.
    work_arrived: Notify,
}

impl std::fmt::Debug for ScannerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannerManager").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ScannerManager {
    pub fn new(env: Env, config: ScannerConfig) -> ScannerManager {
        assert!(config.validate().is_ok(), "invalid scanner config {config:?}");
        ScannerManager {
            config,
            env,
            state: Mutex::new(ManagerState::default()),
            stop: Arc::new(Stop::new()),
            work_arrived: Notify::new(),
        }
    }

    /// What a panic in the registry (a poisoned lock) stops: its tablet server.
    pub fn stop_signal(&self) -> &Arc<Stop> {
        &self.stop
    }

    pub fn config(&self) -> &ScannerConfig {
        &self.config
    }

    /// A fresh id: 32 lowercase hex characters, as Fluss's dashless UUIDs.
    pub fn new_session_id(&self) -> String {
        self.env.entropy.id_hex()
    }

    /// The cheap check before a snapshot is opened; `register` checks again atomically.
    pub fn check_limits(&self, bucket: TableBucket) -> Result<(), ApiError> {
        let state = self.lock();
        self.limit_error(&state, bucket)
    }

    /// Adds `session`, counting it, unless a limit is reached; the caller then closes it.
    pub fn register(&self, session: Arc<ScanSession>) -> Result<(), ApiError> {
        let mut state = self.lock();
        if state.closed {
            return Err(ApiError::new(
                ErrorCode::NotLeaderOrFollower,
                "the scanner manager is shut down",
            ));
        }
        self.limit_error(&state, session.bucket())?;
        if self.env.mutants.is_on(Mutant::ScanLimitCheckAndRegisterSplit) {
            drop(state);
            state = self.lock();
        }
        state.total += 1;
        *state.per_bucket.entry(session.bucket()).or_insert(0) += 1;
        assert!(state.total <= i64::from(self.config.sessions_per_server_max));
        assert!(
            state.per_bucket[&session.bucket()] <= i64::from(self.config.sessions_per_bucket_max)
        );
        let previous = state.sessions.insert(session.id().to_string(), session);
        assert!(previous.is_none(), "scanner id issued twice");
        drop(state);
        self.work_arrived.notify();
        Ok(())
    }

    /// Resolves an id without touching its TTL.
    pub fn lookup(&self, id: &str) -> SessionLookup {
        let state = self.lock();
        if let Some(session) = state.sessions.get(id) {
            return SessionLookup::Live(session.clone());
        }
        if state.recently_expired.contains_key(id) {
            return SessionLookup::Expired;
        }
        SessionLookup::Unknown
    }

    /// Keeps a drained session's final page, or the failure that ended a session, for a
    /// retry of its request.
    pub fn remember_finished(
        &self,
        session: &ScanSession,
        call_seq_id: i32,
        batch_size_bytes: i32,
        response: &ScanKvResponse,
    ) {
        let id = session.id();
        let finished_ms = self.env.clock.now_mono_ms();
        let mut state = self.lock();
        let capacity = 2 * self.config.sessions_per_server_max as usize;
        let page_bytes = response.records.as_ref().map_or(0, |r| r.len());
        while state.finished.len() >= capacity
            || (!state.finished.is_empty()
                && state.finished_bytes + page_bytes > FINISHED_PAGES_BYTES_MAX)
        {
            let oldest =
                state.finished.iter().min_by_key(|(_, f)| f.finished_ms).map(|(id, _)| id.clone());
            let Some(oldest) = oldest else { break };
            forget_finished(&mut state, &oldest);
            // A retry of a forgotten final page must restart the scan: say expired.
            state.recently_expired.insert(oldest, finished_ms);
        }
        let finished = FinishedScan {
            bucket: session.bucket(),
            leader_epoch: session.leader_epoch(),
            call_seq_id,
            batch_size_bytes,
            response: response.clone(),
            finished_ms,
        };
        state.finished_bytes += page_bytes;
        if let Some(replaced) = state.finished.insert(id.to_string(), finished) {
            state.finished_bytes -= replaced.response.records.as_ref().map_or(0, |r| r.len());
        }
    }

    /// The final page of a drained session, with its bucket and epoch, if this request
    /// repeats the one that got it.
    pub fn finished_page(
        &self,
        id: &str,
        call_seq_id: Option<i32>,
        batch_size_bytes: i32,
    ) -> Option<(TableBucket, u32, ScanKvResponse)> {
        let state = self.lock();
        let finished = state.finished.get(id)?;
        let repeat = Some(finished.call_seq_id) == call_seq_id
            && finished.batch_size_bytes == batch_size_bytes;
        repeat.then(|| (finished.bucket, finished.leader_epoch, finished.response.clone()))
    }

    /// Ends a session: unregisters it (remembering the id as expired if asked), and closes it
    /// now or, if a request holds it, when that request releases it.
    pub fn end(&self, session: &Arc<ScanSession>, record_expired: bool, force: bool) {
        {
            let mut state = self.lock();
            let registered =
                state.sessions.get(session.id()).is_some_and(|s| Arc::ptr_eq(s, session));
            if registered {
                state.sessions.remove(session.id());
            }
            if record_expired {
                let now_ms = self.env.clock.now_mono_ms();
                state.recently_expired.insert(session.id().to_string(), now_ms);
            }
        }
        if self.env.mutants.is_on(Mutant::ClosedSessionIteratorKept) {
            self.lock().kept_iterators.extend(session.take_iterator());
        }
        if session.close_or_defer(force) == CloseOutcome::ClosedNow {
            self.uncount(session.bucket());
        }
    }

    /// Gives back a request's hold on `session`, performing a close deferred to it.
    pub fn release(&self, session: &Arc<ScanSession>) {
        if session.release() {
            self.uncount(session.bucket());
        }
    }

    /// Closes every session of `bucket` (its leadership changed) and remembers their ids as
    /// expired, so that a late continuation learns to restart rather than that the id is
    /// unknown. Callers hold the replica's leader lock, so no session of the old term can be
    /// registered afterwards.
    pub fn close_bucket(&self, bucket: TableBucket) {
        let sessions: Vec<Arc<ScanSession>> = {
            let state = self.lock();
            state.sessions.values().filter(|s| s.bucket() == bucket).cloned().collect()
        };
        {
            let now_ms = self.env.clock.now_mono_ms();
            let mut state = self.lock();
            let dropped: Vec<String> = state
                .finished
                .iter()
                .filter(|(_, f)| f.bucket == bucket)
                .map(|(id, _)| id.clone())
                .collect();
            for id in dropped {
                forget_finished(&mut state, &id);
                state.recently_expired.insert(id, now_ms);
            }
        }
        let record_expired = !self.env.mutants.is_on(Mutant::LeadershipCloseForgetsIds);
        for session in &sessions {
            self.end(session, record_expired, false);
        }
        if self.env.mutants.is_on(Mutant::ScanCountersResetOnClose) {
            self.lock().per_bucket.remove(&bucket);
        }
    }

    /// One evictor pass: forgets expired ids older than 2 × TTL and ends sessions idle for
    /// longer than the TTL, except those a request holds right now (it refreshes them).
    pub fn evict_expired(&self) -> usize {
        let now_ms = self.env.clock.now_mono_ms();
        let ttl_ms = self.config.ttl_ms;
        let ignore_in_use = self.env.mutants.is_on(Mutant::EvictorIgnoresInUse);
        let stale_pick = self.env.mutants.is_on(Mutant::EvictorActsOnStalePick);
        let doomed: Vec<Arc<ScanSession>> = {
            let mut state = self.lock();
            if state.closed {
                return 0;
            }
            state
                .recently_expired
                .retain(|_, evicted_ms| now_ms.saturating_sub(*evicted_ms) <= 2 * ttl_ms);
            let stale: Vec<String> = state
                .finished
                .iter()
                .filter(|(_, f)| now_ms.saturating_sub(f.finished_ms) > ttl_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                forget_finished(&mut state, &id);
                state.recently_expired.insert(id, now_ms);
            }
            state
                .sessions
                .values()
                .filter(|s| now_ms.saturating_sub(s.last_access_ms()) > ttl_ms)
                .filter(|s| ignore_in_use || !s.is_in_use())
                .cloned()
                .collect()
        };
        // The pass picked them under the manager's lock; a request may have taken one since.
        // Each is closed only if it is still idle and free under its own lock, so a session a
        // request refreshed after the pick is not evicted under that request.
        let mut evicted = 0;
        for session in &doomed {
            if ignore_in_use || stale_pick {
                self.end(session, true, ignore_in_use);
                evicted += 1;
            } else if self.evict_if_idle(session, now_ms, ttl_ms) {
                evicted += 1;
            }
        }
        evicted
    }

    /// Closes `session` if it has been idle for longer than `ttl_ms` at `now_ms` and no request
    /// holds it, then unregisters it and remembers its id as expired. Returns whether it did.
    fn evict_if_idle(&self, session: &Arc<ScanSession>, now_ms: u64, ttl_ms: u64) -> bool {
        if !session.close_if_idle(now_ms, ttl_ms) {
            return false;
        }
        {
            let mut state = self.lock();
            let registered =
                state.sessions.get(session.id()).is_some_and(|s| Arc::ptr_eq(s, session));
            if registered {
                state.sessions.remove(session.id());
            }
            state.recently_expired.insert(session.id().to_string(), now_ms);
        }
        self.uncount(session.bucket());
        true
    }

    /// Whether an evictor pass would find nothing to do: no session, no kept final page and
    /// no remembered id (or the registry is shut down).
    fn nothing_to_evict(&self) -> bool {
        let state = self.lock();
        state.closed
            || (state.sessions.is_empty()
                && state.finished.is_empty()
                && state.recently_expired.is_empty())
    }

    /// The evictor task: a pass every `expiration_interval_ms` until shutdown, parked while
    /// there is nothing to evict (an idle server's evictor does not wake up at all). Passes
    /// stay on one grid of intervals from the evictor's start, so a wake-up does not move
    /// their phase to the registration that caused it: the phase between a session's last
    /// access and the next pass varies as it did before parking existed.
    pub fn run_evictor(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async move {
            let started_ms = self.env.clock.now_mono_ms();
            let interval_ms = self.config.expiration_interval_ms.max(1);
            loop {
                // Taken before the check, so that a registration right after it is not missed.
                let work_arrived = self.work_arrived.notified();
                if self.nothing_to_evict() {
                    work_arrived.await;
                }
                let now_ms = self.env.clock.now_mono_ms();
                let ticks = now_ms.saturating_sub(started_ms) / interval_ms + 1;
                let next_pass_ms = started_ms.saturating_add(ticks.saturating_mul(interval_ms));
                self.env.clock.sleep(next_pass_ms.saturating_sub(now_ms).max(1)).await;
                if self.lock().closed {
                    return;
                }
                self.evict_expired();
            }
        }
        .boxed()
    }

    /// Ends every session; later registrations fail.
    pub fn shutdown(&self) {
        let sessions: Vec<Arc<ScanSession>> = {
            let mut state = self.lock();
            state.closed = true;
            state.finished.clear();
            state.finished_bytes = 0;
            state.sessions.values().cloned().collect()
        };
        self.work_arrived.notify();
        for session in &sessions {
            self.end(session, false, false);
        }
    }

    pub fn counts(&self) -> ScannerCounts {
        let state = self.lock();
        ScannerCounts {
            total: state.total,
            per_bucket: state.per_bucket.clone(),
            registered: state.sessions.len(),
        }
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<ScanSession>> = self.lock().sessions.values().cloned().collect();
        sessions
            .iter()
            .map(|s| SessionInfo {
                id: s.id().to_string(),
                bucket: s.bucket(),
                leader_epoch: s.leader_epoch(),
                last_access_ms: s.last_access_ms(),
                in_use: s.is_in_use(),
            })
            .collect()
    }

    fn limit_error(&self, state: &ManagerState, bucket: TableBucket) -> Result<(), ApiError> {
        let server_max = i64::from(self.config.sessions_per_server_max);
        if state.total >= server_max {
            return Err(ApiError::new(
                ErrorCode::TooManyScanners,
                format!("Too many scanners: server-wide limit of {server_max} reached"),
            ));
        }
        let bucket_max = i64::from(self.config.sessions_per_bucket_max);
        if state.per_bucket.get(&bucket).copied().unwrap_or(0) >= bucket_max {
            return Err(ApiError::new(
                ErrorCode::TooManyScanners,
                format!("Too many scanners: per-bucket limit of {bucket_max} reached for {bucket}"),
            ));
        }
        Ok(())
    }

    fn uncount(&self, bucket: TableBucket) {
        let mut state = self.lock();
        state.total -= 1;
        let remaining = {
            let count = state.per_bucket.entry(bucket).or_insert(0);
            *count -= 1;
            *count
        };
        assert!(state.total >= 0, "server scanner counter went negative");
        assert!(remaining >= 0, "scanner counter of {bucket} went negative");
        if remaining == 0 {
            state.per_bucket.remove(&bucket);
        }
    }

    /// Also a poisoned registry is locked, to be reported and shut down: the tablet server it
    /// stopped refuses every request at its door.
    fn lock(&self) -> MutexGuard<'_, ManagerState> {
        lock_noting_poison(&self.state, &self.stop, &"scanner manager")
    }
}

fn forget_finished(state: &mut ManagerState, id: &str) {
    if let Some(finished) = state.finished.remove(id) {
        let page_bytes = finished.response.records.as_ref().map_or(0, |r| r.len());
        assert!(state.finished_bytes >= page_bytes, "final-page byte count went negative");
        state.finished_bytes -= page_bytes;
    }
}
