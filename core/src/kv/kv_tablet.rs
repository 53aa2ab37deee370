//! One bucket's primary-key state as its leader holds it.
//!
//! A put computes the changelog against the latest state (unflushed buffer first, then the
//! engine), appends it to the log, and parks the new values in the pre-write buffer. A flush
//! task moves buffered changes below the high watermark into the engine, together with the new
//! flushed offset in the same atomic engine write; the write runs as blocking work, outside
//! the tablet's lock. Reads see flushed data only, as in Fluss, from an engine snapshot, and
//! report the flushed offset stored in that snapshot, which matches its data exactly.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::sync::{lock_for_teardown, lock_or_stop, Mutex, MutexGuard, Stop, StopCause};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::engine::{EngineSnapshot, KeyRange, KvEngine, WriteBatch};
use crate::env::Env;
use crate::kv::changelog_replay::{apply_batches, check_progress};
use crate::kv::kv_error::KvError;
use crate::kv::row_merger::{MergedValue, RowMerger};
use crate::log::log_batch::WriterBatch;
use crate::log::LogError;
use crate::log::{
    AppendMeta, Appended, ChangeRecord, ChangeType, LogTablet, SequenceCheck, SyncTicket,
};
use crate::message::KvWrite;
use crate::mutant::Mutant;
use crate::notify::Notify;
use crate::recovery::FetcherConfig;
use crate::table_bucket::TableBucket;
use crate::task::{catch_blocking_panic, panic_message, run_blocking, stop_on_panic};

/// One value (or `None`) per looked-up key.
pub type LookupValues = Vec<Option<Vec<u8>>>;

/// Serialises the writes into one engine across the tablets that use it in turn: a new term's
/// rebuild waits for a deposed term's flush write still in flight, and that write, once it has
/// the lock, finds its tablet closed and is dropped. Without it a late write of an older term
/// could land after the rebuild and move the engine's flushed offset (and values) backwards.
pub type EngineWriteLock = Arc<Mutex<()>>;

/// Limits of one KV tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvTabletConfig {
    /// Changes per atomic engine write during flush (Fluss: 500).
    pub flush_batch_records_max: usize,
    /// Bytes of changelog read per step while rebuilding from the log.
    pub recover_read_bytes_max: u64,
    /// Rows a prefix lookup may return before it is refused.
    pub prefix_lookup_rows_max: usize,
    /// Backoff between failed flush attempts (Fluss: 100 ms → 1 s).
    pub flush_retry_backoff_ms_min: u64,
    pub flush_retry_backoff_ms_max: u64,
    /// How long a read waits for the flush to reach the high watermark it saw on arrival,
    /// so that it sees every write acknowledged before it; after that it is refused as
    /// retriable (`LEADER_NOT_AVAILABLE`) rather than answered from older data.
    pub read_wait_ms_max: u64,
    /// Bytes of keys and values acknowledged (or written) but not yet flushed into the engine
    /// that the pre-write buffer may hold; a put arriving while it holds this much or more is
    /// refused with `STORAGE_BACKPRESSURE` (retriable) before anything is written.
    pub pre_write_buffer_bytes_max: u64,
    /// How a recovery from KV snapshots downloads (Fluss's `kv.recover.remote-log.*`): the
    /// remote-log fetcher's window and downloads, and the same bound on the snapshot's files.
    pub recovery_fetcher: FetcherConfig,
}

impl KvTabletConfig {
    pub const DEFAULT: KvTabletConfig = KvTabletConfig {
        flush_batch_records_max: 500,
        recover_read_bytes_max: 16 * 1024 * 1024,
        prefix_lookup_rows_max: 100_000,
        flush_retry_backoff_ms_min: 100,
        flush_retry_backoff_ms_max: 1_000,
        read_wait_ms_max: 2_000,
        pre_write_buffer_bytes_max: 64 * 1024 * 1024,
        recovery_fetcher: FetcherConfig::DEFAULT,
    };
}

/// A change that is in the log but not yet in the engine.
#[derive(Debug, Clone)]
struct PendingChange {
    offset: u64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

#[derive(Debug)]
struct KvState {
    /// Unflushed changes in log order.
    pending: VecDeque<PendingChange>,
    /// Bytes of `pending` (keys and values plus a fixed overhead each), against
    /// `pre_write_buffer_bytes_max`.
    pending_bytes: u64,
    /// The newest unflushed change of each key, by the offset that made it.
    latest_unflushed: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    /// Every change below this offset is in the engine; none at or above it is.
    flushed_log_offset: u64,
    /// Every batch below this offset has its changes in `pending` (or flushed): the end of the
    /// log as this term knows it. Values are parked when their batch is written, before its
    /// sync, so it is usually ahead of the high watermark; the high watermark can be ahead of it
    /// when another put's sync covered a batch whose values are still being parked, and past it
    /// lie other terms' batches (a newer leader's, replicated before this one hears that it was
    /// deposed), which the flush must never claim.
    parked_end_offset: u64,
    closed: bool,
}

/// What one flush step produced, applied to the engine by the caller.
struct FlushPlan {
    batch: WriteBatch,
    flushed_log_offset: u64,
}

/// Where a put's batch lies in the changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub base_offset: u64,
    pub end_offset: u64,
    /// The writer's batch had been appended before: these are its original offsets and
    /// nothing was written now.
    pub duplicate: bool,
}

pub struct KvTablet {
    bucket: TableBucket,
    leader_epoch: u32,
    log: Arc<LogTablet>,
    engine: Arc<dyn KvEngine>,
    engine_writes: EngineWriteLock,
    env: Env,
    config: KvTabletConfig,
    state: Mutex<KvState>,
    /// Held by a put from the computation of its changes to their parking.
    put_lock: futures::lock::Mutex<()>,
    /// Held by a flush from its plan to the publication of its offset: two flushes planning
    /// from the same offset would race their engine writes.
    flush_lock: futures::lock::Mutex<()>,
    flush_wanted: Notify,
    /// Notified whenever the flushed offset moves or the tablet closes.
    flushed: Notify,
    /// Set by a corrupt or fatal flush error or a panic; shared with the replica, which stops
    /// with it.
    stop: Arc<Stop>,
}

/// A put's batch, computed and not yet appended.
struct PreparedAppend {
    meta: AppendMeta,
    changes: Vec<ChangeRecord>,
}

enum Prepared {
    Duplicate(PutOutcome),
    Append(PreparedAppend),
}

impl std::fmt::Debug for KvTablet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvTablet")
            .field("bucket", &self.bucket)
            .field("leader_epoch", &self.leader_epoch)
            .finish_non_exhaustive()
    }
}

impl KvTablet {
    /// Brings `engine` up to the log's high watermark by replaying the changelog from the
    /// flushed offset stored in the engine, then returns a tablet that leads under
    /// `leader_epoch`. Every tablet that uses `engine` must be given the same `engine_writes`.
    pub fn open(
        env: Env,
        config: KvTabletConfig,
        log: Arc<LogTablet>,
        engine: Arc<dyn KvEngine>,
        engine_writes: EngineWriteLock,
        leader_epoch: u32,
    ) -> Result<KvTablet, KvError> {
        // A batch written in an earlier term and still waiting for its sync is synced now, so
        // that the rebuild below covers every batch this term's puts will follow.
        log.sync_all()?;
        let flushed_log_offset = {
            let _writes = lock_engine_writes(&engine_writes);
            let engine_offset = engine.flushed_log_offset()?.unwrap_or(0);
            replay_log(&log, engine.as_ref(), engine_offset, &config)?
        };
        assert_eq!(flushed_log_offset, log.high_watermark(), "rebuild stops at the high watermark");
        Ok(KvTablet {
            bucket: log.bucket(),
            leader_epoch,
            log,
            engine,
            engine_writes,
            env,
            config,
            state: Mutex::new(KvState {
                pending: VecDeque::new(),
                pending_bytes: 0,
                latest_unflushed: BTreeMap::new(),
                flushed_log_offset,
                parked_end_offset: flushed_log_offset,
                closed: false,
            }),
            put_lock: futures::lock::Mutex::new(()),
            flush_lock: futures::lock::Mutex::new(()),
            flush_wanted: Notify::new(),
            flushed: Notify::new(),
            stop: Arc::new(Stop::new()),
        })
    }

    /// The tablet stops with `stop` (its replica's): what stops one stops the other.
    pub fn with_stop(mut self, stop: Arc<Stop>) -> KvTablet {
        self.stop = stop;
        self
    }

    /// The engine this tablet writes and the write lock it shares with the engine's other
    /// tablets, for the next term.
    pub fn engine_and_write_lock(&self) -> (Arc<dyn KvEngine>, EngineWriteLock) {
        (self.engine.clone(), self.engine_writes.clone())
    }

    /// Why the tablet stopped (a corrupt or fatal flush error, a panic), if it did.
    pub fn stopped(&self) -> Option<String> {
        self.stop.reason().map(str::to_string)
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    pub fn leader_epoch(&self) -> u32 {
        self.leader_epoch
    }

    /// The flushed offset, also of a stopped tablet (for reports: it is a number read, not
    /// an act on the state in doubt).
    pub fn flushed_log_offset(&self) -> u64 {
        lock_for_teardown(&self.state).flushed_log_offset
    }

    pub fn log(&self) -> &Arc<LogTablet> {
        &self.log
    }

    /// Stops serving; later calls fail with `NotLeader`. Buffered changes stay in the log.
    pub fn close(&self) {
        lock_for_teardown(&self.state).closed = true;
        self.flush_wanted.notify();
        self.flushed.notify();
    }

    /// Whether the tablet was closed (its term ended) or stopped.
    pub fn is_closed(&self) -> bool {
        self.stop.reason().is_some() || lock_for_teardown(&self.state).closed
    }

    /// Waits until every write acknowledged before this call is flushed, that is until the
    /// flushed offset reaches the high watermark as it is now; a read that follows sees them
    /// all (Fluss's reads may miss them: they read whatever was flushed). Refused as retriable
    /// when the flush does not get there within `read_wait_ms_max`.
    pub fn wait_for_acknowledged(self: &Arc<Self>) -> BoxFuture<'static, Result<(), KvError>> {
        let this = self.clone();
        async move {
            if this.env.mutants.is_on(Mutant::ReadsMissAcknowledgedWrites) {
                return Ok(());
            }
            let target = this.log.high_watermark();
            let deadline_ms = this.env.clock.now_mono_ms() + this.config.read_wait_ms_max;
            loop {
                let flushed = this.flushed.notified();
                {
                    let state = this.lock()?;
                    if state.closed {
                        return Err(KvError::NotLeader(format!(
                            "{} is closed on this server",
                            this.bucket
                        )));
                    }
                    if state.flushed_log_offset >= target {
                        return Ok(());
                    }
                }
                let now_ms = this.env.clock.now_mono_ms();
                if now_ms >= deadline_ms {
                    return Err(KvError::NotReady(format!(
                        "{} has not flushed up to offset {target} within {} ms",
                        this.bucket, this.config.read_wait_ms_max
                    )));
                }
                let timeout = this.env.clock.sleep(deadline_ms - now_ms);
                futures::future::select(flushed, timeout).await;
            }
        }
        .boxed()
    }

    /// Applies `writes` in order as one changelog batch; returns its offsets `[base, end)`.
    ///
    /// Three phases: the changes are computed in the caller's task; the write of the batch and
    /// the parking of its new values run as blocking work on the executor (off the async
    /// workers in production, a scheduling point in the simulator); then the sync. Puts of one
    /// tablet are serialised from the computation to the parking, so each sees the one before;
    /// the sync is outside, so that the puts written while one sync runs share the next
    /// (group commit). The put is answered only once a sync covering its batch has returned
    /// (a duplicate's too: its original may still be waiting for that sync).
    ///
    /// `merger` is a partial update's rule (see [`RowMerger`]); `None` is Fluss's default:
    /// a write replaces the whole value.
    pub fn put(
        self: &Arc<Self>,
        writes: Vec<KvWrite>,
        writer: Option<WriterBatch>,
        merger: Option<Arc<dyn RowMerger>>,
    ) -> BoxFuture<'static, Result<PutOutcome, KvError>> {
        let this = self.clone();
        async move {
            let (outcome, ticket) = {
                let _serialised = if this.env.mutants.is_on(Mutant::PutsNotSerialised) {
                    None
                } else {
                    Some(this.put_lock.lock().await)
                };
                match this.prepare_put(&writes, writer, merger.as_deref())? {
                    Prepared::Duplicate(outcome) => {
                        (outcome, SyncTicket::through(outcome.end_offset))
                    }
                    Prepared::Append(prepared) => {
                        let name = format!(
                            "append node{} {}",
                            this.env.node_id,
                            this.bucket.dir_name_display()
                        );
                        let committer = this.clone();
                        run_blocking(&this.env.executor, &this.env.ledger, name, move || {
                            committer.write_put(prepared)
                        })
                        .await
                        .unwrap_or_else(|| {
                            Err(KvError::NotLeader(format!(
                                "{} stopped during an append",
                                this.bucket
                            )))
                        })?
                    }
                }
            };
            if this.log.is_synced_through(ticket) {
                return Ok(outcome);
            }
            let name = format!("sync node{} {}", this.env.node_id, this.bucket.dir_name_display());
            let log = this.log.clone();
            run_blocking(&this.env.executor, &this.env.ledger, name, move || {
                log.sync_through(ticket)
            })
            .await
            .unwrap_or_else(|| {
                Err(LogError::Stopped {
                    dir: this.bucket.dir_name(),
                    detail: "stopped during a sync".to_string(),
                })
            })?;
            // The batches that sync covered may be flushed now.
            this.flush_wanted.notify();
            Ok(outcome)
        }
        .boxed()
    }

    /// [`KvTablet::put`] without the hand-off to the executor, for tests that drive a tablet
    /// directly: the same phases, run inline.
    pub fn put_inline(
        &self,
        writes: &[KvWrite],
        writer: Option<WriterBatch>,
    ) -> Result<PutOutcome, KvError> {
        self.put_inline_merged(writes, writer, None)
    }

    /// [`KvTablet::put_inline`] with a partial update's rule.
    pub fn put_inline_merged(
        &self,
        writes: &[KvWrite],
        writer: Option<WriterBatch>,
        merger: Option<&dyn RowMerger>,
    ) -> Result<PutOutcome, KvError> {
        let (outcome, ticket) = {
            let _serialised = self.put_lock.try_lock().expect("no put in flight");
            match self.prepare_put(writes, writer, merger)? {
                Prepared::Duplicate(outcome) => (outcome, SyncTicket::through(outcome.end_offset)),
                Prepared::Append(append) => self.write_put(append)?,
            }
        };
        self.log.sync_through(ticket)?;
        self.flush_wanted.notify();
        Ok(outcome)
    }

    /// The first phase of a put: the changelog of `writes` against the latest state (the
    /// unflushed buffer first, then the engine), or the original offsets of a duplicate.
    fn prepare_put(
        &self,
        writes: &[KvWrite],
        writer: Option<WriterBatch>,
        merger: Option<&dyn RowMerger>,
    ) -> Result<Prepared, KvError> {
        // Writes are fenced by the log's epoch check at append, not here.
        let state = self.lock()?;
        if state.closed {
            return Err(KvError::NotLeader(format!("{} is closed on this server", self.bucket)));
        }
        // Puts are serialised, so the verdict holds until the append, which checks again.
        // Deciding first spares a duplicate the work of building its changes.
        if let Some(writer) = writer {
            if let SequenceCheck::Duplicate { base_offset, end_offset } =
                self.log.check_sequence(writer)
            {
                return Ok(Prepared::Duplicate(PutOutcome {
                    base_offset,
                    end_offset,
                    duplicate: true,
                }));
            }
        }
        // Refused before anything is written, so the writer's state is as if the batch never
        // arrived and its resend (after the flush caught up) is appended in sequence.
        if state.pending_bytes >= self.config.pre_write_buffer_bytes_max {
            return Err(KvError::Backpressure(format!(
                "{} holds {} unflushed bytes, the limit is {}",
                self.bucket, state.pending_bytes, self.config.pre_write_buffer_bytes_max
            )));
        }
        // The values this put has written so far: a later write of the same key in the batch
        // sees them. Borrowed from the request unless a merge made a new value.
        let mut overlay: BTreeMap<&[u8], Option<Cow<'_, [u8]>>> = BTreeMap::new();
        let mut changes = Vec::with_capacity(writes.len() * 2);
        for write in writes {
            let current: Option<Vec<u8>> = match overlay.get(write.key.as_slice()) {
                Some(value) => value.as_deref().map(<[u8]>::to_vec),
                None => match state.latest_unflushed.get(&write.key) {
                    Some((_, value)) => value.clone(),
                    None => self.engine.get(&write.key)?,
                },
            };
            let new_value: Option<Cow<'_, [u8]>> = match merger {
                None => write.value.as_deref().map(Cow::Borrowed),
                Some(merger) => match merged_value(merger, write, current.as_deref(), &self.env)? {
                    Some(value) => value,
                    // Nothing changes (an update of key columns only, a delete of a missing
                    // key): nothing is logged and the key keeps what it holds.
                    None => continue,
                },
            };
            append_changes(
                &mut changes,
                &write.key,
                new_value.as_deref(),
                current,
                self.env.mutants.is_on(Mutant::UpdateLoggedAsInsert),
            );
            overlay.insert(&write.key, new_value);
        }
        let meta = AppendMeta { commit_timestamp_ms: self.env.clock.now_wall_ms(), writer };
        Ok(Prepared::Append(PreparedAppend { meta, changes }))
    }

    /// The second phase: writes the batch (unsynced) and parks its new values, where the next
    /// put computes its changes against them; the flush takes them only once they are below
    /// the high watermark, that is synced. Returns what the put waits for.
    fn write_put(&self, prepared: PreparedAppend) -> Result<(PutOutcome, SyncTicket), KvError> {
        let (appended, ticket) =
            self.log.write_as_leader(self.leader_epoch, prepared.meta, prepared.changes)?;
        let batch = match appended {
            Appended::Batch(batch) => batch,
            Appended::Duplicate { base_offset, end_offset } => {
                return Ok((PutOutcome { base_offset, end_offset, duplicate: true }, ticket));
            }
        };
        let (base_offset, end_offset) = (batch.base_offset, batch.end_offset());
        let mut state = self.lock()?;
        for record in batch.records {
            let value = match record.change_type {
                ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly => {
                    Some(record.value)
                }
                ChangeType::Delete => None,
                ChangeType::UpdateBefore => continue,
            };
            state.pending_bytes += change_bytes(&record.key, value.as_deref());
            state.latest_unflushed.insert(record.key.clone(), (record.offset, value.clone()));
            state.pending.push_back(PendingChange {
                offset: record.offset,
                key: record.key,
                value,
            });
        }
        assert!(end_offset > state.parked_end_offset, "batches are parked in log order");
        state.parked_end_offset = end_offset;
        drop(state);
        self.flush_wanted.notify();
        Ok((PutOutcome { base_offset, end_offset, duplicate: false }, ticket))
    }

    /// Point lookups of flushed data; returns the values and the flushed offset read at.
    pub fn lookup(&self, keys: &[Vec<u8>]) -> Result<(LookupValues, u64), KvError> {
        let (snapshot, read_offset) = self.read_snapshot()?;
        let values = keys.iter().map(|key| snapshot.get(key)).collect::<Result<Vec<_>, _>>()?;
        Ok((values, read_offset))
    }

    /// Values of flushed keys starting with `prefix`, in key order.
    pub fn prefix_lookup(&self, prefix: &[u8]) -> Result<(Vec<Vec<u8>>, u64), KvError> {
        let (snapshot, read_offset) = self.read_snapshot()?;
        let values = scan_values(
            snapshot,
            KeyRange::prefix(prefix),
            self.config.prefix_lookup_rows_max + 1,
            self.env.mutants.is_on(Mutant::IteratorErrorIgnored),
        )?;
        if values.len() > self.config.prefix_lookup_rows_max {
            return Err(KvError::RequestTooLarge(format!(
                "prefix matches more than {} rows",
                self.config.prefix_lookup_rows_max
            )));
        }
        Ok((values, read_offset))
    }

    /// The first `limit` flushed values in key order.
    pub fn limit_scan(&self, limit: usize) -> Result<(Vec<Vec<u8>>, u64), KvError> {
        let (snapshot, read_offset) = self.read_snapshot()?;
        let ignore_error = self.env.mutants.is_on(Mutant::IteratorErrorIgnored);
        Ok((scan_values(snapshot, KeyRange::all(), limit, ignore_error)?, read_offset))
    }

    /// Writes a checkpoint of the engine into `dir` (for a KV snapshot) and returns the flushed
    /// log offset it holds. Both happen under the engine's write lock, so no flush write lands
    /// between the copy and the offset read: every change below the offset is in the
    /// checkpoint and none above it. Blocking work (call it through `run_blocking`). Refused
    /// once the tablet no longer leads.
    pub fn checkpoint_blocking(&self, dir: &str) -> Result<u64, KvError> {
        let writes = lock_engine_writes(&self.engine_writes);
        drop(self.lock_for_read()?);
        self.engine.checkpoint(dir)?;
        let flushed_log_offset = self.engine.flushed_log_offset()?.unwrap_or(0);
        drop(writes);
        Ok(flushed_log_offset)
    }

    /// A snapshot for a scan session and the flushed offset it matches exactly. It checks no
    /// leadership: the caller holds the replica's leader lock, which is what fences scans.
    pub fn scan_snapshot(&self) -> Result<(Arc<dyn EngineSnapshot>, u64), KvError> {
        self.snapshot_with_offset()
    }

    /// A point-in-time engine view and the flushed offset it matches exactly, for a tablet
    /// that still leads.
    pub fn read_snapshot(&self) -> Result<(Arc<dyn EngineSnapshot>, u64), KvError> {
        let leading = self.lock_for_read()?;
        let snapshot = self.snapshot_with_offset();
        drop(leading);
        snapshot
    }

    /// The offset comes from the snapshot itself: the flush writes it in the same atomic
    /// engine write as the data, so it matches the data even while a flush write is landing
    /// (the tablet's own offset is published only after the write).
    fn snapshot_with_offset(&self) -> Result<(Arc<dyn EngineSnapshot>, u64), KvError> {
        let snapshot = self.engine.snapshot()?;
        // An engine without an offset has never been written: it holds what lies below 0.
        let flushed_log_offset = snapshot.flushed_log_offset()?.unwrap_or(0);
        Ok((snapshot, flushed_log_offset))
    }

    /// Flushes until the buffer below the high watermark is empty or the tablet closes. Runs as
    /// the tablet's background task, which ends by itself once the tablet is closed: at most the
    /// flush step in flight finishes first, so that joining the task also waits for its engine
    /// write (aborting it would leave that write running unseen). A transient (I/O) engine
    /// error is retried after a backoff that doubles from `flush_retry_backoff_ms_min` to
    /// `flush_retry_backoff_ms_max`; any other error, or a panic, stops the tablet (and its
    /// replica) and ends the loop.
    pub fn run_flush_loop(self: Arc<Self>) -> BoxFuture<'static, ()> {
        let component = format!("flush of {} on node{}", self.bucket, self.env.node_id);
        let flushing = stop_on_panic(self.clone().flush_loop(), self.stop.clone(), component);
        async move {
            flushing.await;
            if self.stop.is_stopped() {
                // Wakes the reads waiting for a flush that will not come.
                self.close();
            }
        }
        .boxed()
    }

    fn flush_loop(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async move {
            let mut backoff_ms = self.config.flush_retry_backoff_ms_min;
            loop {
                let wanted = self.flush_wanted.notified();
                match self.flush_once().await {
                    Ok(true) => {
                        backoff_ms = self.config.flush_retry_backoff_ms_min;
                        self.env.executor.yield_now().await;
                    }
                    Ok(false) => {
                        match self.lock() {
                            Ok(state) if !state.closed => {}
                            _ => return,
                        }
                        wanted.await;
                    }
                    Err(error) if !error.is_transient_storage_error() => {
                        let reason = format!("flush failed: {error}");
                        self.stop.stop(&self.bucket, StopCause::Fatal, reason);
                        return;
                    }
                    Err(error) => {
                        // Woken early only by `close`: the offset moves in this loop alone.
                        let closing = self.flushed.notified();
                        if self.lock().map_or(true, |state| state.closed) {
                            return;
                        }
                        tracing::warn!(bucket = %self.bucket, %error, backoff_ms, "failed to flush; retrying");
                        futures::future::select(self.env.clock.sleep(backoff_ms), closing).await;
                        backoff_ms = (backoff_ms * 2).min(self.config.flush_retry_backoff_ms_max);
                    }
                }
            }
        }
        .boxed()
    }

    /// Moves one chunk of buffered changes below the high watermark into the engine. Returns
    /// whether anything moved. Flushes are serialised (the tablet's flush task, and callers
    /// such as tests); the plan is made under the state lock, the engine write runs as
    /// blocking work without it (a scheduling point in the simulator), and the new offset is
    /// published after the write.
    pub fn flush_once(self: &Arc<Self>) -> BoxFuture<'_, Result<bool, KvError>> {
        async move {
            let _serialised = self.flush_lock.lock().await;
            let plan = {
                let mut state = self.lock()?;
                let Some(plan) = self.plan_flush(&state) else { return Ok(false) };
                if self.env.mutants.is_on(Mutant::FlushAdvancesOffsetBeforeWrite) {
                    self.publish_flush(&mut state, plan.flushed_log_offset);
                }
                plan
            };
            let flushed_log_offset = plan.flushed_log_offset;
            let name =
                format!("flush write node{} {}", self.env.node_id, self.bucket.dir_name_display());
            let this = self.clone();
            let fenced = !self.env.mutants.is_on(Mutant::DeposedFlushWriteLands);
            let written = run_blocking(&self.env.executor, &self.env.ledger, name, move || {
                let _writes = fenced.then(|| lock_engine_writes(&this.engine_writes));
                // A deposed term's write must not land after the next term's rebuild.
                if fenced && this.lock()?.closed {
                    return Ok(false);
                }
                match catch_blocking_panic(|| this.engine.write(&plan.batch)) {
                    Ok(written) => written.map(|()| true).map_err(KvError::from),
                    Err(panic) => {
                        // The engine's state is in doubt: the tablet serves nothing more.
                        let reason =
                            format!("its flush write panicked: {}", panic_message(&*panic));
                        this.stop.stop(&this.bucket, StopCause::Panic, reason.clone());
                        Err(KvError::ReplicaStopped(reason))
                    }
                }
            })
            .await
            // Dropped unrun: only a simulated crash does that, and it ends this task too.
            .unwrap_or(Ok(false))?;
            if !written {
                return Ok(false);
            }
            if !self.env.mutants.is_on(Mutant::FlushAdvancesOffsetBeforeWrite) {
                let mut state = self.lock()?;
                self.publish_flush(&mut state, flushed_log_offset);
            }
            Ok(true)
        }
        .boxed()
    }

    fn plan_flush(&self, state: &KvState) -> Option<FlushPlan> {
        if state.closed {
            return None;
        }
        // Only what is committed and parked: a batch being parked holds changes not yet in
        // `pending`, and a newer term's batches never will; flushing past them would skip them.
        let mut high_watermark = self.log.high_watermark();
        if !self.env.mutants.is_on(Mutant::FlushPastUnparkedBatch) {
            high_watermark = high_watermark.min(state.parked_end_offset);
        }
        if state.flushed_log_offset >= high_watermark {
            return None;
        }
        let mut batch = WriteBatch::new();
        let mut taken = 0usize;
        for change in state.pending.iter() {
            if change.offset >= high_watermark || taken == self.config.flush_batch_records_max {
                break;
            }
            match &change.value {
                Some(value) => batch.put(change.key.clone(), value.clone()),
                None => batch.delete(change.key.clone()),
            }
            taken += 1;
        }
        // Everything below the first change left behind is in the engine after this batch.
        let flushed_log_offset = match state.pending.get(taken) {
            Some(next) if next.offset < high_watermark => next.offset,
            _ => high_watermark,
        };
        assert!(flushed_log_offset > state.flushed_log_offset, "a flush step makes progress");
        batch.set_flushed_log_offset(flushed_log_offset);
        Some(FlushPlan { batch, flushed_log_offset })
    }

    fn publish_flush(&self, state: &mut KvState, flushed_log_offset: u64) {
        while state.pending.front().is_some_and(|change| change.offset < flushed_log_offset) {
            let change = state.pending.pop_front().expect("front exists");
            state.pending_bytes -= change_bytes(&change.key, change.value.as_deref());
            let newest = state
                .latest_unflushed
                .get(&change.key)
                .is_some_and(|(offset, _)| *offset == change.offset);
            if newest {
                state.latest_unflushed.remove(&change.key);
            }
        }
        assert!(state.pending.front().is_none_or(|change| change.offset >= flushed_log_offset));
        state.flushed_log_offset = flushed_log_offset;
        self.flushed.notify();
    }

    /// The state, unless the tablet stopped (a fatal flush error, a panic); a lock poisoned by
    /// a panic stops it.
    fn lock(&self) -> Result<MutexGuard<'_, KvState>, KvError> {
        let state =
            lock_or_stop(&self.state, &self.stop, &self.bucket).map_err(KvError::ReplicaStopped)?;
        match self.stop.reason() {
            Some(reason) => Err(KvError::ReplicaStopped(reason.to_string())),
            None => Ok(state),
        }
    }

    fn lock_for_read(&self) -> Result<MutexGuard<'_, KvState>, KvError> {
        let state = self.lock()?;
        if state.closed {
            return Err(KvError::NotLeader(format!("{} is closed on this server", self.bucket)));
        }
        // The log knows the newest epoch; a deposed leader must not serve stale reads while
        // its own notification is still in flight.
        let log_epoch = self.log.leader_epoch();
        if log_epoch != self.leader_epoch {
            return Err(KvError::NotLeader(format!(
                "{} is led under epoch {log_epoch}, not {}",
                self.bucket, self.leader_epoch
            )));
        }
        Ok(state)
    }
}

fn lock_engine_writes(lock: &EngineWriteLock) -> MutexGuard<'_, ()> {
    // Holds no data: a panic under it leaves nothing in doubt.
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one buffered change counts against the pre-write buffer's limit.
fn change_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    const OVERHEAD_BYTES: u64 = 64;
    (key.len() + value.map_or(0, <[u8]>::len)) as u64 + OVERHEAD_BYTES
}

/// What a write leaves in its key under a partial update's `merger`, given the key's current
/// value: `Some(None)` removes the key, `None` changes nothing (see [`RowMerger`]).
fn merged_value<'w>(
    merger: &dyn RowMerger,
    write: &'w KvWrite,
    current: Option<&[u8]>,
    env: &Env,
) -> Result<Option<Option<Cow<'w, [u8]>>>, KvError> {
    match (&write.value, current) {
        (Some(new), current) => {
            let old =
                if env.mutants.is_on(Mutant::PartialUpdateIgnoresOldRow) { None } else { current };
            Ok(match merger.merge(old, new)? {
                MergedValue::Unchanged if current.is_some() => None,
                // Nothing to keep unchanged: the write's own row is the new value.
                MergedValue::Unchanged => Some(Some(Cow::Borrowed(new.as_slice()))),
                MergedValue::Changed(value) => Some(Some(Cow::Owned(value))),
            })
        }
        (None, Some(old)) => Ok(Some(merger.delete(old)?.map(Cow::Owned))),
        (None, None) => Ok(None),
    }
}

/// The changelog of one write given the key's current value, as Fluss's default merger and
/// full changelog image produce it: `+I` for a new key, `-U`/`+U` for an update, `-D` with the
/// old value for a delete, and nothing for a delete of a missing key.
fn append_changes(
    changes: &mut Vec<ChangeRecord>,
    key: &[u8],
    new_value: Option<&[u8]>,
    current: Option<Vec<u8>>,
    update_logged_as_insert: bool,
) {
    let key = key.to_vec();
    match (new_value, current) {
        (Some(new), None) => {
            changes.push(ChangeRecord { change_type: ChangeType::Insert, key, value: new.to_vec() })
        }
        (Some(new), Some(_)) if update_logged_as_insert => {
            changes.push(ChangeRecord { change_type: ChangeType::Insert, key, value: new.to_vec() })
        }
        (Some(new), Some(old)) => {
            changes.push(ChangeRecord {
                change_type: ChangeType::UpdateBefore,
                key: key.clone(),
                value: old,
            });
            changes.push(ChangeRecord {
                change_type: ChangeType::UpdateAfter,
                key,
                value: new.to_vec(),
            });
        }
        (None, Some(old)) => {
            changes.push(ChangeRecord { change_type: ChangeType::Delete, key, value: old })
        }
        (None, None) => {}
    }
}

/// Replays the changelog from `from_offset` to the high watermark into `engine`; returns the
/// new flushed offset.
fn replay_log(
    log: &LogTablet,
    engine: &dyn KvEngine,
    from_offset: u64,
    config: &KvTabletConfig,
) -> Result<u64, KvError> {
    let high_watermark = log.high_watermark();
    if from_offset > high_watermark {
        return Err(KvError::Engine(crate::engine::EngineError::Corrupt(format!(
            "engine flushed offset {from_offset} is past the log's high watermark {high_watermark}"
        ))));
    }
    let log_start_offset = log.log_start_offset();
    if from_offset < log_start_offset {
        return Err(KvError::LogTruncated { log_start_offset, engine_offset: from_offset });
    }
    let mut next_offset = from_offset;
    while next_offset < high_watermark {
        let batches = log.read(next_offset, config.recover_read_bytes_max)?;
        if batches.is_empty() {
            return Err(KvError::LogTruncated { log_start_offset, engine_offset: next_offset });
        }
        let mut write = WriteBatch::new();
        let batch_end =
            apply_batches(&mut write, &batches, next_offset, high_watermark, "the local log")?;
        // Without progress the loop would spin forever (Fluss's recovery hazard).
        check_progress(next_offset, batch_end, high_watermark, "the local log")?;
        write.set_flushed_log_offset(batch_end);
        engine.write(&write)?;
        next_offset = batch_end;
    }
    Ok(next_offset)
}

/// Up to `rows_max` values of `range` from `snapshot`, in key order; an iterator error is
/// reported, never mistaken for the end.
fn scan_values(
    snapshot: Arc<dyn EngineSnapshot>,
    range: KeyRange,
    rows_max: usize,
    ignore_iterator_error: bool,
) -> Result<Vec<Vec<u8>>, KvError> {
    let mut iterator = snapshot.iter(range)?;
    iterator.seek_to_first();
    let mut values = Vec::new();
    while iterator.valid() && values.len() < rows_max {
        values.push(iterator.value().to_vec());
        iterator.next();
    }
    if !ignore_iterator_error {
        iterator.status()?;
    }
    Ok(values)
}
