//! A bucket's changelog: append-only checksummed batches in size-rolled segment files.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::sync::{lock_noting_poison, Mutex, MutexGuard, Stop};

use crate::byte_reader::{ByteReader, ByteWriter};
use crate::env::{FsError, LocalFs};
use crate::log::change_type::ChangeType;
use crate::log::local_retention::{LocalRetention, RetainedSegment};
use crate::log::log_batch::{
    decode_batch, decode_batch_without_records, encode_batch, is_torn_append, BatchIdentity,
    LogBatch, LogRecord, WriterBatch,
};
use crate::log::replication::{Replicator, SyncedBatch};
use crate::log::writer_state::{SequenceCheck, WriterStates, WRITER_BATCHES_RETAINED};
use crate::mutant::{Mutant, Mutants};
use crate::notify::{Notified, Notify};
use crate::snapshot::completed_snapshot::{frame_with_magic, unframe_with_magic};
use crate::table_bucket::TableBucket;

const EPOCH_FILE: &str = "leader-epoch";
const SEGMENT_SUFFIX: &str = ".log";
/// The writers' state as of the log start, written before retention deletes segments: the
/// duplicate detection of the deleted batches' writers survives a reopen.
const WRITERS_FILE: &str = "writers";
const WRITERS_MAGIC: &[u8; 8] = b"KVTWRITR";

/// Limits of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled before an append would take it past this size.
    pub segment_bytes_max: u64,
}

impl LogConfig {
    /// Fluss's `log.segment.file-size` is 1 GiB; a small default keeps rolling exercised.
    pub const DEFAULT: LogConfig = LogConfig { segment_bytes_max: 1024 * 1024 };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The caller's leader epoch is older than the log's: it is no longer the leader.
    #[error("leader epoch {requested} is fenced by epoch {current}")]
    FencedLeaderEpoch { requested: u32, current: u32 },
    /// A read below the log start: the range was deleted by retention.
    #[error("offset {offset} is below the log start offset {log_start_offset}")]
    OffsetOutOfRange { offset: u64, log_start_offset: u64 },
    /// An idempotent writer's batch skipped a sequence number.
    #[error("out of order batch sequence for writer {writer_id}: {incoming} (incoming), {last} (last appended)")]
    OutOfOrderSequence { writer_id: i64, incoming: i32, last: i32 },
    /// Bytes on disk fail their checksum or framing outside the tail.
    #[error("log corrupt in {path}: {detail}")]
    Corrupt { path: String, detail: String },
    /// A sync failed earlier: what the disk holds is unknown (the "fsyncgate" lesson), so the
    /// log takes no more writes until it is reopened from its files. Retry on another replica
    /// or after the replica has been reopened.
    #[error("log {dir} stopped after a failed sync, until it is reopened from disk: {detail}")]
    Stopped { dir: String, detail: String },
    #[error("log file failure: {0}")]
    Fs(#[from] FsError),
    /// The bucket's table or partition is not served here, so its log has no directory.
    #[error("{bucket} has no log directory: its table or partition is not served here")]
    NoDirectory { bucket: String },
}

impl LogError {
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// One change to append; the log assigns its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub change_type: ChangeType,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What the leader stamps on a batch besides its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendMeta {
    pub commit_timestamp_ms: u64,
    pub writer: Option<WriterBatch>,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The batch is written (from [`LogTablet::append_as_leader`]: and durable).
    Batch(LogBatch),
    /// The writer's batch was appended before at `base_offset..end_offset`; nothing was written.
    Duplicate { base_offset: u64, end_offset: u64 },
}

/// What a written batch (or a duplicate's original) waits for before it may be acknowledged:
/// the log synced through `end_offset`. [`LogTablet::sync_through`] redeems it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTicket {
    end_offset: u64,
}

impl SyncTicket {
    /// A ticket for everything below `end_offset`.
    pub fn through(end_offset: u64) -> SyncTicket {
        SyncTicket { end_offset }
    }

    pub fn end_offset(self) -> u64 {
        self.end_offset
    }
}

/// A batch written at the end of the active segment whose sync has not returned yet: not
/// indexed (no fetch reads it), not below the high watermark, not replicated.
#[derive(Debug)]
struct UnsyncedBatch {
    base_offset: u64,
    position: BatchPosition,
    /// Kept only for the replicator, which is handed the batch once it is synced.
    batch: Option<LogBatch>,
}

#[derive(Debug, Clone, Copy)]
struct BatchPosition {
    end_offset: u64,
    /// The epoch of the leader that appended the batch.
    leader_epoch: u32,
    commit_timestamp_ms: u64,
    position_bytes: u64,
    len_bytes: u64,
    /// The idempotent writer that sent it: retention records it in the writers' state at the
    /// log start before the batch's segment is deleted.
    writer: Option<WriterBatch>,
}

impl BatchPosition {
    fn identity(&self, base_offset: u64) -> BatchIdentity {
        BatchIdentity { base_offset, end_offset: self.end_offset, leader_epoch: self.leader_epoch }
    }
}

/// A closed segment, as the tierer uploads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSegment {
    pub base_offset: u64,
    pub end_offset: u64,
    pub path: String,
    pub size_bytes: u64,
    pub max_timestamp_ms: u64,
}

/// The last published batch of `segments`.
fn last_indexed_batch(segments: &BTreeMap<u64, Segment>) -> Option<&BatchPosition> {
    segments.values().rev().find_map(|segment| segment.batches.values().next_back())
}

#[derive(Debug)]
struct Segment {
    path: String,
    size_bytes: u64,
    end_offset: u64,
    /// Keyed by base offset.
    batches: BTreeMap<u64, BatchPosition>,
}

#[derive(Debug)]
struct LogState {
    /// Keyed by base offset; the last one is the active segment.
    segments: BTreeMap<u64, Segment>,
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
    min_retain_offset: u64,
    /// Everything below it is in the remote tier; 0 until tiering uploads a segment.
    remote_end_offset: u64,
    leader_epoch: u32,
    /// Every batch written, synced or not: the writers' state records a batch when it is
    /// written, so that the writer's next batch follows it and a resend of it is a duplicate
    /// (acknowledged only once the sync covering it returned).
    writers: WriterStates,
    /// The writers' state as of `log_start_offset` (what the batches deleted by retention
    /// left), persisted in the writers file: the base that a rebuild records the log's
    /// batches onto.
    writers_at_start: WriterStates,
    /// Set by a failed sync; the log then refuses every write.
    stopped: Option<String>,
    /// Batches written after `log_end_offset`, in order, all in the active segment, waiting for
    /// a sync. `log_end_offset` (and the index, and the high watermark) move past them only
    /// when a sync that began after they were written has returned.
    unsynced: VecDeque<UnsyncedBatch>,
    /// The end of the last written batch: `log_end_offset` plus the unsynced batches.
    written_end_offset: u64,
}

/// The changelog of one bucket. A leader's append is written ([`LogTablet::write_as_leader`])
/// and then synced ([`LogTablet::sync_through`]) before it is acknowledged, so an acknowledged
/// batch survives a crash; concurrent appends share one sync (group commit). Appends carry the
/// leader epoch and are fenced by it: once a newer leader has fenced the log, the old leader
/// can no longer append.
///
/// Locks: `syncing` (held across a sync, so that syncs never overlap and a failed one is
/// seen by every later one) before `state` (never held across a sync, so that writes go on
/// while one runs).
pub struct LogTablet {
    bucket: TableBucket,
    fs: Arc<dyn LocalFs>,
    dir: String,
    config: LogConfig,
    mutants: Mutants,
    syncing: Mutex<()>,
    state: Mutex<LogState>,
    /// Notified whenever the high watermark moves, for fetches that wait for data.
    appended: Notify,
    replicator: Option<Arc<dyn Replicator>>,
    /// Set when a panic poisoned the state's lock: what it interrupted (an append half
    /// indexed, a truncation half done) is in doubt, so the log neither writes nor serves
    /// reads until it is reopened from its files.
    panicked: Stop,
}

impl std::fmt::Debug for LogTablet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTablet")
            .field("bucket", &self.bucket)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LogTablet {
    /// Opens the log in `dir`, creating it if missing. A torn batch at the tail of the last
    /// segment (an append that crashed before its sync) is cut off; damage anywhere else is an
    /// error.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        dir: String,
        bucket: TableBucket,
        config: LogConfig,
        mutants: Mutants,
    ) -> Result<LogTablet, LogError> {
        assert!(config.segment_bytes_max > 0, "segment_bytes_max must be positive");
        fs.create_dir_all(&dir)?;
        let leader_epoch = read_epoch(fs.as_ref(), &child_path(&dir, EPOCH_FILE, ""))?;
        let mut segment_bases: Vec<u64> = fs
            .list_dir(&dir)?
            .iter()
            .filter_map(|name| name.strip_suffix(SEGMENT_SUFFIX)?.parse::<u64>().ok())
            .collect();
        segment_bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let last_batch_only = mutants.is_on(Mutant::WriterStateKeepsLastBatchOnly);
        let batches_retained = if last_batch_only { 1 } else { WRITER_BATCHES_RETAINED };
        let writers_at_start = match read_writers(
            fs.as_ref(),
            &child_path(&dir, WRITERS_FILE, ""),
            batches_retained,
        )? {
            Some((start_offset, states)) => {
                // A retention that crashed after writing the writers file and before
                // deleting every segment below its offset is finished here.
                while segment_bases.len() > 1 && segment_bases[1] <= start_offset {
                    fs.remove_file(&segment_path(&dir, segment_bases[0]))?;
                    segment_bases.remove(0);
                }
                match segment_bases.first() {
                    Some(first) if *first == start_offset => states,
                    _ => {
                        tracing::warn!(dir, start_offset, "writers file does not match the log start; writers' state rebuilt from the segments alone");
                        WriterStates::retaining(batches_retained)
                    }
                }
            }
            None => WriterStates::retaining(batches_retained),
        };
        let mut writers = writers_at_start.clone();
        // Only a mutant loads the segments into a state that is then thrown away.
        let mut not_rebuilt = WriterStates::new();
        let skip_rebuild = mutants.is_on(Mutant::WriterStateNotRebuiltOnOpen);
        let mut expected_offset: Option<u64> = None;
        for (index, base) in segment_bases.iter().enumerate() {
            let is_last = index + 1 == segment_bases.len();
            let path = segment_path(&dir, *base);
            let rebuilt = if skip_rebuild { &mut not_rebuilt } else { &mut writers };
            let cut_any_damage = mutants.is_on(Mutant::DamagedLastFrameCutAsTorn);
            let segment =
                load_segment(fs.as_ref(), &path, *base, is_last, cut_any_damage, rebuilt)?;
            if let Some(expected) = expected_offset {
                if *base != expected {
                    return Err(LogError::Corrupt {
                        path,
                        detail: format!("segment starts at {base}, previous ended at {expected}"),
                    });
                }
            }
            expected_offset = Some(segment.end_offset);
            segments.insert(*base, segment);
        }
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments.values().last().map_or(0, |s| s.end_offset);
        assert!(log_start_offset <= log_end_offset);
        Ok(LogTablet {
            bucket,
            fs,
            dir,
            config,
            mutants,
            syncing: Mutex::new(()),
            state: Mutex::new(LogState {
                segments,
                log_start_offset,
                log_end_offset,
                // Every batch on disk was synced before it was acknowledged.
                high_watermark: log_end_offset,
                min_retain_offset: 0,
                remote_end_offset: 0,
                leader_epoch,
                writers,
                writers_at_start,
                stopped: None,
                unsynced: VecDeque::new(),
                written_end_offset: log_end_offset,
            }),
            appended: Notify::new(),
            replicator: None,
            panicked: Stop::new(),
        })
    }

    /// Hands every synced leader batch to `replicator` before it is committed.
    pub fn with_replicator(mut self, replicator: Arc<dyn Replicator>) -> LogTablet {
        self.replicator = Some(replicator);
        self
    }

    /// Why the log stopped taking writes, if it did (a failed sync, a panic).
    pub fn stopped(&self) -> Option<String> {
        self.lock().stopped.clone()
    }

    /// Whether the log stopped taking writes: [`LogTablet::stopped`] without the reason.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped.is_some()
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    pub fn leader_epoch(&self) -> u32 {
        self.lock().leader_epoch
    }

    pub fn log_start_offset(&self) -> u64 {
        self.lock().log_start_offset
    }

    pub fn log_end_offset(&self) -> u64 {
        self.lock().log_end_offset
    }

    /// The published batch that starts at `base_offset`, if the log holds one.
    pub fn batch_starting_at(&self, base_offset: u64) -> Option<BatchIdentity> {
        let state = self.lock();
        let (_, segment) = state.segments.range(..=base_offset).next_back()?;
        let position = segment.batches.get(&base_offset)?;
        Some(position.identity(base_offset))
    }

    /// The published batch that ends at `end_offset`, if the log holds one.
    pub fn batch_ending_at(&self, end_offset: u64) -> Option<BatchIdentity> {
        let state = self.lock();
        let (_, segment) = state.segments.range(..end_offset).next_back()?;
        let (base, position) = segment.batches.range(..end_offset).next_back()?;
        (position.end_offset == end_offset).then(|| position.identity(*base))
    }

    /// Every offset below it is durable and acknowledged.
    pub fn high_watermark(&self) -> u64 {
        self.lock().high_watermark
    }

    pub fn min_retain_offset(&self) -> u64 {
        self.lock().min_retain_offset
    }

    /// Raises the log's epoch so that appends under older epochs fail. Fencing with the current
    /// epoch is a no-op; with an older one it fails.
    ///
    /// Batches written under the older epoch and still waiting for their sync are synced
    /// first (as if their appends had completed before the fence), so that a new term starts
    /// from a log with nothing pending.
    pub fn fence(&self, leader_epoch: u32) -> Result<(), LogError> {
        let _syncing = self.lock_syncing();
        let mut state = self.lock();
        if leader_epoch < state.leader_epoch {
            return Err(LogError::FencedLeaderEpoch {
                requested: leader_epoch,
                current: state.leader_epoch,
            });
        }
        if leader_epoch > state.leader_epoch {
            // The new epoch fences in memory even when it cannot be persisted: a deposed
            // leader must stop serving at once. A failed persist stops the log, as a failed
            // sync does: what its directory holds is in doubt until it is reopened.
            if self.mutants.is_on(Mutant::UnpersistedFenceIgnored) {
                write_epoch(self.fs.as_ref(), &self.dir, leader_epoch)?;
            }
            state.leader_epoch = leader_epoch;
            if state.stopped.is_none() {
                self.settle(&mut state)?;
            }
            if let Err(error) = write_epoch(self.fs.as_ref(), &self.dir, leader_epoch) {
                let path = child_path(&self.dir, EPOCH_FILE, "");
                return Err(self.stop(&mut state, &path, error));
            }
        }
        Ok(())
    }

    /// A future that completes at the next move of the high watermark. Create it before
    /// reading, so that an append between the read and the wait is not missed.
    pub fn appended(&self) -> Notified {
        self.appended.notified()
    }

    /// What an append of `writer`'s batch would do, without appending.
    pub fn check_sequence(&self, writer: WriterBatch) -> SequenceCheck {
        if self.mutants.is_on(Mutant::DuplicateBatchReappended) {
            return SequenceCheck::InSequence;
        }
        self.lock().writers.check(writer)
    }

    /// The first offset of the first batch committed at or after `timestamp_ms`, or the high
    /// watermark when there is none (Fluss's ListOffsets by timestamp).
    pub fn offset_for_timestamp(&self, timestamp_ms: u64) -> u64 {
        let state = self.lock();
        state
            .segments
            .values()
            .flat_map(|segment| segment.batches.iter())
            .find(|(_, position)| {
                position.commit_timestamp_ms >= timestamp_ms
                    && position.end_offset <= state.high_watermark
            })
            .map_or(state.high_watermark, |(base, _)| *base)
    }

    /// Appends `changes` as one batch under `leader_epoch` and syncs it: [`Self::write_as_leader`]
    /// then [`Self::sync_through`].
    pub fn append_as_leader(
        &self,
        leader_epoch: u32,
        meta: AppendMeta,
        changes: Vec<ChangeRecord>,
    ) -> Result<Appended, LogError> {
        let (appended, ticket) = self.write_as_leader(leader_epoch, meta, changes)?;
        self.sync_through(ticket)?;
        Ok(appended)
    }

    /// Writes `changes` as one batch under `leader_epoch`, without syncing it. An empty change
    /// list still occupies one offset. A batch of an idempotent writer that was written before
    /// is not written again ([`Appended::Duplicate`], with the original's offsets); one that
    /// skips a sequence number is refused. Either way nothing may be acknowledged before
    /// [`Self::sync_through`] the returned ticket has returned: until then the batch is not
    /// indexed, not below the high watermark, and not replicated.
    pub fn write_as_leader(
        &self,
        leader_epoch: u32,
        meta: AppendMeta,
        changes: Vec<ChangeRecord>,
    ) -> Result<(Appended, SyncTicket), LogError> {
        let mut state = self.lock_unless_panicked()?;
        let fenced = leader_epoch != state.leader_epoch;
        if fenced && !self.mutants.is_on(Mutant::StaleEpochWriteAccepted) {
            return Err(LogError::FencedLeaderEpoch {
                requested: leader_epoch,
                current: state.leader_epoch,
            });
        }
        // Before the writer check: a stopped log may lack batches its writers had acknowledged
        // elsewhere, and its answer would then be a false OUT_OF_ORDER_SEQUENCE.
        if let Some(detail) = &state.stopped {
            return Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.clone() });
        }
        let checked_writer =
            meta.writer.filter(|_| !self.mutants.is_on(Mutant::DuplicateBatchReappended));
        if let Some(writer) = checked_writer {
            match state.writers.check(writer) {
                SequenceCheck::InSequence => {}
                SequenceCheck::Duplicate { base_offset, end_offset } => {
                    // It may still be waiting for its sync: so does the duplicate.
                    let ticket = SyncTicket::through(end_offset);
                    return Ok((Appended::Duplicate { base_offset, end_offset }, ticket));
                }
                SequenceCheck::OutOfOrder { last_sequence } => {
                    return Err(LogError::OutOfOrderSequence {
                        writer_id: writer.writer_id,
                        incoming: writer.batch_sequence,
                        last: last_sequence,
                    });
                }
            }
        }
        if self.mutants.is_on(Mutant::WriterCheckAndAppendSplit) {
            drop(state);
            state = self.lock_unless_panicked()?;
        }
        if !state.unsynced.is_empty() && self.needs_new_segment(&state, &changes) {
            // A segment rolls only with nothing waiting for a sync, so that every unsynced
            // batch lies in the active segment and one sync of it covers them all: sync them
            // now (taking the locks in their order). Nothing else writes as leader meanwhile:
            // the caller serialises its writes.
            drop(state);
            let _syncing = self.lock_syncing();
            state = self.lock_unless_panicked()?;
            self.settle(&mut state)?;
        }
        let base_offset = state.written_end_offset;
        let records: Vec<LogRecord> = changes
            .into_iter()
            .enumerate()
            .map(|(index, change)| LogRecord {
                offset: base_offset + index as u64,
                change_type: change.change_type,
                key: change.key,
                value: change.value,
            })
            .collect();
        let offset_count = u32::try_from(records.len().max(1)).map_err(|_| LogError::Corrupt {
            path: self.dir.clone(),
            detail: "batch with more than u32::MAX records".to_string(),
        })?;
        let batch = LogBatch {
            base_offset,
            leader_epoch,
            offset_count,
            commit_timestamp_ms: meta.commit_timestamp_ms,
            writer: meta.writer,
            records,
        };
        let position = self.write_frame(&mut state, &batch)?;
        state.unsynced.push_back(UnsyncedBatch {
            base_offset,
            position,
            batch: self.replicator.is_some().then(|| batch.clone()),
        });
        let ticket = SyncTicket::through(batch.end_offset());
        Ok((Appended::Batch(batch), ticket))
    }

    /// Returns once the log is synced through `ticket`: at once if a sync already covered it,
    /// after the sync in progress if that covers it, else after a sync of everything written
    /// so far, which this call makes for every batch waiting (group commit). A failed sync
    /// fails every batch it would have covered: it stops the log, and each waiter gets
    /// [`LogError::Stopped`]. Blocking work: it waits for the disk.
    pub fn sync_through(&self, ticket: SyncTicket) -> Result<(), LogError> {
        if self.check_synced(&self.lock(), ticket)? {
            return Ok(());
        }
        let _syncing = self.lock_syncing();
        let (path, target) = {
            let state = self.lock();
            if self.check_synced(&state, ticket)? {
                return Ok(());
            }
            let active = state.segments.values().last().expect("an unsynced batch has a segment");
            (active.path.clone(), state.written_end_offset)
        };
        // The state lock is free during the sync: more batches are written meanwhile, for the
        // next sync. Only this one syncs (`syncing` is held).
        let result = self.sync_file(&path);
        let mut state = self.lock();
        if let Err(error) = result {
            return Err(self.stop(&mut state, &path, error));
        }
        self.publish(&mut state, target);
        drop(state);
        self.appended.notify();
        Ok(())
    }

    /// Whether the log is synced through `ticket` (nothing left to wait for), without waiting.
    pub fn is_synced_through(&self, ticket: SyncTicket) -> bool {
        self.lock().log_end_offset >= ticket.end_offset
    }

    /// Syncs every batch written so far (a new term starts from a log with nothing pending).
    /// A stopped log refuses, also with nothing pending: it may lack batches that were
    /// committed elsewhere (its replication failed with it), so no term may start on it.
    pub fn sync_all(&self) -> Result<(), LogError> {
        let _syncing = self.lock_syncing();
        let mut state = self.lock();
        if let Some(detail) = &state.stopped {
            return Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.clone() });
        }
        self.settle(&mut state)?;
        drop(state);
        self.appended.notify();
        Ok(())
    }

    /// Whether everything below `ticket` is synced; an error when it is not and the log has
    /// stopped (the sync that would have covered it failed).
    fn check_synced(&self, state: &LogState, ticket: SyncTicket) -> Result<bool, LogError> {
        if state.log_end_offset >= ticket.end_offset {
            return Ok(true);
        }
        if let Some(detail) = &state.stopped {
            return Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.clone() });
        }
        assert!(ticket.end_offset <= state.written_end_offset, "a ticket is for a written batch");
        Ok(false)
    }

    /// Syncs the unsynced batches inline and publishes them. The caller holds `syncing`. A
    /// stopped log has none to settle: the sync that failed was theirs, and a later sync that
    /// succeeds proves nothing about them (the "fsyncgate" lesson), so they are never published.
    fn settle(&self, state: &mut LogState) -> Result<(), LogError> {
        let Some(active) = state.segments.values().last() else { return Ok(()) };
        if state.unsynced.is_empty() {
            return Ok(());
        }
        if let Some(detail) = &state.stopped {
            return Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.clone() });
        }
        let path = active.path.clone();
        if let Err(error) = self.sync_file(&path) {
            return Err(self.stop(state, &path, error));
        }
        let target = state.written_end_offset;
        self.publish(state, target);
        Ok(())
    }

    /// One sync of a segment file (the only place a changelog file is synced).
    fn sync_file(&self, path: &str) -> Result<(), FsError> {
        if self.mutants.is_on(Mutant::AppendAcknowledgedBeforeSync) {
            return Ok(());
        }
        match self.fs.sync(path) {
            Err(_) if self.mutants.is_on(Mutant::FailedSyncTreatedAsSuccess) => Ok(()),
            result => result,
        }
    }

    /// The unsynced batches that end at or below `target` were synced: index them, hand them
    /// to the replicator, and move the log end and the high watermark past them.
    fn publish(&self, state: &mut LogState, target: u64) {
        while state.unsynced.front().is_some_and(|unsynced| unsynced.position.end_offset <= target)
        {
            let unsynced = state.unsynced.pop_front().expect("front exists");
            // Only a replicator (the simulator's) needs it: production does not look it up.
            let previous_batch_epoch = self.replicator.as_ref().and_then(|_| {
                last_indexed_batch(&state.segments)
                    .filter(|position| position.end_offset == unsynced.base_offset)
                    .map(|position| position.leader_epoch)
            });
            let active = state.segments.values_mut().last().expect("the active segment exists");
            assert_eq!(active.end_offset, unsynced.base_offset, "batches are published in order");
            active.batches.insert(unsynced.base_offset, unsynced.position);
            active.end_offset = unsynced.position.end_offset;
            let segment_path = active.path.clone();
            if let (Some(replicator), Some(batch)) = (&self.replicator, &unsynced.batch) {
                replicator.replicate(SyncedBatch {
                    bucket: self.bucket,
                    batch,
                    segment_path: &segment_path,
                    position_bytes: unsynced.position.position_bytes,
                    len_bytes: unsynced.position.len_bytes,
                    log_leader_epoch: state.leader_epoch,
                    previous_batch_epoch,
                });
            }
            state.log_end_offset = unsynced.position.end_offset;
        }
        // The replicated log is ideal: a synced (and replicated) append is committed.
        state.high_watermark = state.log_end_offset;
        assert!(state.log_end_offset <= state.written_end_offset);
    }

    /// Whether a batch of `changes` at the log end would roll the segment (an estimate of its
    /// frame from the change sizes; the write decides with the exact frame).
    fn needs_new_segment(&self, state: &LogState, changes: &[ChangeRecord]) -> bool {
        let estimate: u64 = changes
            .iter()
            .map(|change| (change.key.len() + change.value.len()) as u64 + 64)
            .sum::<u64>()
            + 128;
        match state.segments.values().last() {
            None => true,
            Some(active) => {
                active.size_bytes > 0
                    && active.size_bytes + estimate > self.config.segment_bytes_max
            }
        }
    }

    /// Appends a batch another replica led, at this log's end, and syncs it: the follower's
    /// side of replication, and how a lagging replica catches up before it leads. The batch
    /// keeps its epoch; fencing is the leader's business.
    pub fn append_replicated(&self, batch: &LogBatch) -> Result<(), LogError> {
        let _syncing = self.lock_syncing();
        let mut state = self.lock_unless_panicked()?;
        self.settle(&mut state)?;
        if batch.base_offset != state.log_end_offset {
            return Err(LogError::Corrupt {
                path: self.dir.clone(),
                detail: format!(
                    "replicated batch at {} where the log ends at {}",
                    batch.base_offset, state.log_end_offset
                ),
            });
        }
        let position = self.write_frame(&mut state, batch)?;
        let path = state.segments.values().last().expect("just written").path.clone();
        if let Err(error) = self.sync_file(&path) {
            return Err(self.stop(&mut state, &path, error));
        }
        state.unsynced.push_back(UnsyncedBatch {
            base_offset: batch.base_offset,
            position,
            batch: None,
        });
        let target = state.written_end_offset;
        self.publish(&mut state, target);
        drop(state);
        self.appended.notify();
        Ok(())
    }

    /// Cuts every batch at or above `offset` (a suffix that another replica's history
    /// replaced) and rebuilds the writers' state from what is left. Durable when it returns.
    pub fn truncate_to(&self, offset: u64) -> Result<(), LogError> {
        let _syncing = self.lock_syncing();
        let mut state = self.lock_unless_panicked()?;
        self.settle(&mut state)?;
        if offset >= state.log_end_offset {
            return Ok(());
        }
        if offset < state.high_watermark.min(state.min_retain_offset) {
            return Err(LogError::Corrupt {
                path: self.dir.clone(),
                detail: format!("truncation to {offset} below the minimum retain offset"),
            });
        }
        let doomed: Vec<u64> = state.segments.range(offset..).map(|(base, _)| *base).collect();
        for base in doomed {
            // The segment that starts exactly at `offset` goes too, unless it is the only one.
            if base == offset && state.segments.len() == 1 {
                break;
            }
            if let Some(segment) = state.segments.remove(&base) {
                self.fs.remove_file(&segment.path)?;
            }
        }
        if let Some(segment) = state.segments.values_mut().last() {
            let cut_bytes = segment
                .batches
                .range(offset..)
                .next()
                .map_or(segment.size_bytes, |(_, position)| position.position_bytes);
            self.fs.truncate(&segment.path, cut_bytes)?;
            segment.batches.retain(|base, _| *base < offset);
            segment.size_bytes = cut_bytes;
            segment.end_offset = segment
                .batches
                .values()
                .last()
                .map_or(segment.end_offset.min(offset), |position| position.end_offset);
        }
        state.log_end_offset = state.segments.values().last().map_or(offset, |s| s.end_offset);
        state.written_end_offset = state.log_end_offset;
        state.log_start_offset = state.segments.keys().next().copied().unwrap_or(offset);
        state.high_watermark = state.high_watermark.min(state.log_end_offset);
        let mut writers = state.writers_at_start.clone();
        for segment in state.segments.values() {
            for (base, position) in &segment.batches {
                if let Some(writer) = position.writer {
                    writers.record(writer, *base, position.end_offset);
                }
            }
        }
        state.writers = writers;
        Ok(())
    }

    /// Writes `batch` at the end of what is written (rolling the segment if needed, which only
    /// happens with no batch waiting for a sync) and records it for its writer; it is not
    /// synced or indexed yet ([`Self::publish`]). A failed write is cut off and leaves the log
    /// usable; a failed sync stops the log.
    fn write_frame(
        &self,
        state: &mut LogState,
        batch: &LogBatch,
    ) -> Result<BatchPosition, LogError> {
        if let Some(detail) = &state.stopped {
            return Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.clone() });
        }
        let base_offset = batch.base_offset;
        assert_eq!(base_offset, state.written_end_offset, "a batch is written at the log end");
        let frame = encode_batch(batch);
        let frame_bytes = frame.len() as u64;
        let needs_new_segment = match state.segments.values().last() {
            None => true,
            Some(active) => {
                active.size_bytes > 0
                    && active.size_bytes + frame_bytes > self.config.segment_bytes_max
            }
        };
        if needs_new_segment && state.unsynced.is_empty() {
            let path = segment_path(&self.dir, base_offset);
            self.fs.write(&path, &[])?;
            if let Err(error) = self.fs.sync(&path) {
                return Err(self.stop(state, &path, error));
            }
            state.segments.insert(
                base_offset,
                Segment { path, size_bytes: 0, end_offset: base_offset, batches: BTreeMap::new() },
            );
        }
        let active = state.segments.values_mut().last().expect("a segment was just ensured");
        let path = active.path.clone();
        let position_bytes = active.size_bytes;
        if let Err(error) = self.fs.append(&path, &frame) {
            // A failed write may have left a partial frame; cut it so the next append lands on
            // a frame boundary. If even that fails, the file's end is unknown: stop.
            if let Err(cut_error) = self.fs.truncate(&path, position_bytes) {
                return Err(self.stop(state, &path, cut_error));
            }
            return Err(error.into());
        }
        let active = state.segments.values_mut().last().expect("the active segment exists");
        active.size_bytes += frame_bytes;
        state.written_end_offset = batch.end_offset();
        if let Some(writer) = batch.writer {
            state.writers.record(writer, batch.base_offset, batch.end_offset());
        }
        Ok(BatchPosition {
            end_offset: batch.end_offset(),
            leader_epoch: batch.leader_epoch,
            commit_timestamp_ms: batch.commit_timestamp_ms,
            position_bytes,
            len_bytes: frame_bytes,
            writer: batch.writer,
        })
    }

    /// Stops the log after a failed sync and returns the error to answer with.
    fn stop(&self, state: &mut LogState, path: &str, error: impl std::fmt::Display) -> LogError {
        let detail = format!("write or sync of {path} failed: {error}");
        tracing::error!(bucket = %self.bucket, %detail, "changelog stopped");
        state.stopped = Some(detail.clone());
        LogError::Stopped { dir: self.dir.clone(), detail }
    }

    /// Batches that end after `from_offset`, in order, until `max_bytes` is reached (at least
    /// one batch when any exists). Reading below the log start fails.
    pub fn read(&self, from_offset: u64, max_bytes: u64) -> Result<Vec<LogBatch>, LogError> {
        let state = self.lock_unless_panicked()?;
        if from_offset < state.log_start_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset: state.log_start_offset,
            });
        }
        let first_segment = state
            .segments
            .range(..=from_offset)
            .next_back()
            .map_or(state.log_start_offset, |(base, _)| *base);
        let mut batches = Vec::new();
        let mut read_bytes = 0u64;
        for segment in state.segments.range(first_segment..).map(|(_, s)| s) {
            let first_batch =
                segment.batches.range(..=from_offset).next_back().map_or(0, |(base, _)| *base);
            for (base, position) in segment.batches.range(first_batch..) {
                if position.end_offset <= from_offset {
                    continue;
                }
                if !batches.is_empty() && read_bytes + position.len_bytes > max_bytes {
                    return Ok(batches);
                }
                let bytes = self.fs.read_range(
                    &segment.path,
                    position.position_bytes,
                    position.len_bytes,
                )?;
                let (batch, _) = decode_batch(&bytes).map_err(|error| LogError::Corrupt {
                    path: segment.path.clone(),
                    detail: format!("batch at {base}: {error}"),
                })?;
                if batch.base_offset != *base {
                    return Err(LogError::Corrupt {
                        path: segment.path.clone(),
                        detail: format!("expected batch at {base}, found {}", batch.base_offset),
                    });
                }
                read_bytes += position.len_bytes;
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    /// Retention never deletes a segment that holds an offset at or above this: what the
    /// latest committed KV snapshot does not hold, recovery replays from here.
    pub fn set_min_retain_offset(&self, offset: u64) {
        let mut state = self.lock();
        state.min_retain_offset = offset;
    }

    /// Everything below `offset` is in the remote tier. Never moves back.
    pub fn set_remote_end_offset(&self, offset: u64) {
        let mut state = self.lock();
        state.remote_end_offset = state.remote_end_offset.max(offset);
    }

    pub fn remote_end_offset(&self) -> u64 {
        self.lock().remote_end_offset
    }

    /// Deletes whole segments that end at or below `min(requested, min retain offset, remote
    /// end, high watermark)`, never the active one: a local segment goes only once recovery no
    /// longer needs it and the remote tier holds it. Returns the new log start offset.
    pub fn delete_segments_below(&self, requested_offset: u64) -> Result<u64, LogError> {
        let mut state = self.lock_unless_panicked()?;
        let start_before = state.log_start_offset;
        let limit = self.retention_limit_of(&state, requested_offset);
        let active_base = state.segments.keys().last().copied();
        let doomed: Vec<u64> = state
            .segments
            .iter()
            .filter(|(base, segment)| Some(**base) != active_base && segment.end_offset <= limit)
            .map(|(base, _)| *base)
            .collect();
        if doomed.is_empty() {
            return Ok(state.log_start_offset);
        }
        // The writers' state at the new start (the deleted batches recorded onto the old
        // start's) is durable before any segment goes, so a crash in between loses nothing.
        let mut writers_at_start = state.writers_at_start.clone();
        for base in &doomed {
            for (batch_base, position) in &state.segments[base].batches {
                if let Some(writer) = position.writer {
                    writers_at_start.record(writer, *batch_base, position.end_offset);
                }
            }
        }
        let new_start = state
            .segments
            .keys()
            .find(|base| !doomed.contains(base))
            .copied()
            .expect("the active segment is never deleted");
        if !self.mutants.is_on(Mutant::RetentionForgetsWriterState) {
            write_writers(self.fs.as_ref(), &self.dir, new_start, &writers_at_start)?;
        }
        state.writers_at_start = writers_at_start;
        for base in doomed {
            if let Some(segment) = state.segments.remove(&base) {
                self.fs.remove_file(&segment.path)?;
            }
        }
        state.log_start_offset =
            state.segments.keys().next().copied().unwrap_or(state.log_end_offset);
        // Off under the retention mutants, so that they measure the simulator's oracles.
        if !self.mutants.is_on(Mutant::RetentionIgnoresMinRetain)
            && !self.mutants.is_on(Mutant::RetentionIgnoresRemoteEnd)
        {
            assert!(
                state.log_start_offset
                    <= start_before.max(state.min_retain_offset.min(state.remote_end_offset)),
                "retention deleted past the minimum retain offset or the remote end"
            );
        }
        Ok(state.log_start_offset)
    }

    /// The offset at or below which [`Self::delete_segments_below`] deletes whole closed
    /// segments when asked for `requested_offset`.
    pub fn retention_limit(&self, requested_offset: u64) -> u64 {
        let state = self.lock();
        self.retention_limit_of(&state, requested_offset)
    }

    /// Retention's own bounds on `requested_offset`: the minimum retain offset, the remote end
    /// and the high watermark.
    fn retention_limit_of(&self, state: &LogState, requested_offset: u64) -> u64 {
        let mut limit = requested_offset.min(state.high_watermark);
        if !self.mutants.is_on(Mutant::RetentionIgnoresMinRetain) {
            limit = limit.min(state.min_retain_offset);
        }
        if !self.mutants.is_on(Mutant::RetentionIgnoresRemoteEnd) {
            limit = limit.min(state.remote_end_offset);
        }
        limit
    }

    /// The closed segment that holds `offset` (the next one the remote tier needs), if it is
    /// closed (not the active one) and wholly below the high watermark.
    pub fn closed_segment_holding(&self, offset: u64) -> Option<ClosedSegment> {
        let state = self.lock();
        let active_base = state.segments.keys().last().copied()?;
        let (base, segment) = state.segments.range(..=offset).next_back()?;
        if *base == active_base || segment.end_offset <= offset {
            return None;
        }
        if segment.end_offset > state.high_watermark {
            return None;
        }
        let max_timestamp_ms = segment_max_timestamp_ms(segment);
        Some(ClosedSegment {
            base_offset: *base,
            end_offset: segment.end_offset,
            path: segment.path.clone(),
            size_bytes: segment.size_bytes,
            max_timestamp_ms,
        })
    }

    /// The offset below which local retention may delete under `retention` at `now_wall_ms`.
    /// Retention's own bounds apply on top ([`Self::delete_segments_below`]).
    pub fn local_retention_offset(&self, retention: &LocalRetention, now_wall_ms: u64) -> u64 {
        let state = self.lock();
        let segments: Vec<RetainedSegment> = state
            .segments
            .iter()
            .map(|(base, segment)| RetainedSegment {
                base_offset: *base,
                size_bytes: segment.size_bytes,
                max_timestamp_ms: segment_max_timestamp_ms(segment),
            })
            .collect();
        retention.offset(&segments, state.log_start_offset, now_wall_ms)
    }

    /// Number of segment files, for tests and metrics.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The state, also after a panic poisoned its lock, for what only reports its numbers
    /// (offsets, epoch) or raises the fence. A poisoned lock stops the log: it is recorded as
    /// stopped (so writes refuse, as after a failed sync) and [`Self::lock_unless_panicked`]
    /// refuses reads too.
    fn lock(&self) -> MutexGuard<'_, LogState> {
        let mut state = lock_noting_poison(&self.state, &self.panicked, &self.bucket);
        if let (Some(detail), None) = (self.panicked.reason(), &state.stopped) {
            state.stopped = Some(format!("changelog {}: {detail}", self.dir));
        }
        state
    }

    /// The state for reading or changing the log's contents, refused once a panic stopped it.
    fn lock_unless_panicked(&self) -> Result<MutexGuard<'_, LogState>, LogError> {
        let state = self.lock();
        match self.panicked.reason() {
            Some(detail) => {
                Err(LogError::Stopped { dir: self.dir.clone(), detail: detail.to_string() })
            }
            None => Ok(state),
        }
    }

    /// Taken before `state`, never while holding it.
    fn lock_syncing(&self) -> MutexGuard<'_, ()> {
        self.syncing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `{dir}/{name}{suffix}`, built without the formatting machinery: every fence writes the
/// epoch file through a temporary one.
fn child_path(dir: &str, name: &str, suffix: &str) -> String {
    let mut path = String::with_capacity(dir.len() + 1 + name.len() + suffix.len());
    path.push_str(dir);
    path.push('/');
    path.push_str(name);
    path.push_str(suffix);
    path
}

/// `{dir}/{base_offset:020}.log`, built without the formatting machinery: a reopen builds
/// one per segment.
fn segment_path(dir: &str, base_offset: u64) -> String {
    // u64::MAX has 20 digits, so 20 zero-padded digits hold every offset.
    let mut digits = [b'0'; 20];
    let mut rest = base_offset;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    child_path(dir, std::str::from_utf8(&digits).expect("ASCII digits"), SEGMENT_SUFFIX)
}

fn load_segment(
    fs: &dyn LocalFs,
    path: &str,
    base_offset: u64,
    is_last: bool,
    cut_any_damage: bool,
    writers: &mut WriterStates,
) -> Result<Segment, LogError> {
    let bytes = fs.read(path)?;
    let mut segment = Segment {
        path: path.to_string(),
        size_bytes: 0,
        end_offset: base_offset,
        batches: BTreeMap::new(),
    };
    // In ascending offset order; built into the map at once at the end.
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        match decode_batch_without_records(&bytes[position..]) {
            Ok((batch, len)) => {
                if batch.base_offset != segment.end_offset {
                    return Err(LogError::Corrupt {
                        path: path.to_string(),
                        detail: format!(
                            "batch at {} where {} was expected",
                            batch.base_offset, segment.end_offset
                        ),
                    });
                }
                if let Some(writer) = batch.writer {
                    writers.record(writer, batch.base_offset, batch.end_offset());
                }
                batches.push((
                    batch.base_offset,
                    BatchPosition {
                        end_offset: batch.end_offset(),
                        leader_epoch: batch.leader_epoch,
                        commit_timestamp_ms: batch.commit_timestamp_ms,
                        position_bytes: position as u64,
                        len_bytes: len as u64,
                        writer: batch.writer,
                    },
                ));
                segment.end_offset = batch.end_offset();
                position += len;
            }
            // The tail of the last segment may hold an append that crashed before its sync:
            // it was never acknowledged, so it is cut off. A torn append is the last frame of
            // the file; a bad frame with whole frames after it is damage to acknowledged
            // batches, and cutting there would drop them silently.
            Err(error)
                if is_last && (cut_any_damage || is_torn_append(&bytes[position..], &error)) =>
            {
                tracing::warn!(path, position, %error, "cutting a torn tail off the log");
                fs.truncate(path, position as u64)?;
                break;
            }
            Err(error) => {
                return Err(LogError::Corrupt { path: path.to_string(), detail: error.to_string() })
            }
        }
    }
    segment.size_bytes = position as u64;
    segment.batches = BTreeMap::from_iter(batches);
    Ok(segment)
}

fn read_epoch(fs: &dyn LocalFs, path: &str) -> Result<u32, LogError> {
    let bytes = match fs.read(path) {
        Ok(bytes) => bytes,
        Err(FsError::NotFound(_)) => return Ok(0),
        Err(error) => return Err(error.into()),
    };
    let corrupt =
        || LogError::Corrupt { path: path.to_string(), detail: "bad epoch file".to_string() };
    let epoch_bytes: [u8; 4] =
        bytes.get(0..4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
    let crc_bytes: [u8; 4] = bytes.get(4..8).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
    if crc32c::crc32c(&epoch_bytes) != u32::from_le_bytes(crc_bytes) || bytes.len() != 8 {
        return Err(corrupt());
    }
    Ok(u32::from_le_bytes(epoch_bytes))
}

/// Replaces the epoch file atomically: a crash leaves the old epoch or the new one.
fn write_epoch(fs: &dyn LocalFs, dir: &str, leader_epoch: u32) -> Result<(), LogError> {
    let epoch_bytes = leader_epoch.to_le_bytes();
    let mut bytes = epoch_bytes.to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&epoch_bytes).to_le_bytes());
    let temp_path = child_path(dir, EPOCH_FILE, ".tmp");
    fs.write(&temp_path, &bytes)?;
    fs.sync(&temp_path)?;
    fs.rename(&temp_path, &child_path(dir, EPOCH_FILE, ""))?;
    Ok(())
}

/// The writers file: `(log start offset, writers' state as of it)`, or `None` when there is
/// none (no retention ran yet).
fn read_writers(
    fs: &dyn LocalFs,
    path: &str,
    batches_retained: usize,
) -> Result<Option<(u64, WriterStates)>, LogError> {
    let bytes = match fs.read(path) {
        Ok(bytes) => bytes,
        Err(FsError::NotFound(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let corrupt = |detail: String| LogError::Corrupt { path: path.to_string(), detail };
    let payload =
        unframe_with_magic(WRITERS_MAGIC, &bytes).map_err(|error| corrupt(error.to_string()))?;
    let mut reader = ByteReader::new(payload);
    let start_offset =
        reader.u64("log start offset").map_err(|error| corrupt(error.to_string()))?;
    let states = WriterStates::decode_from(&mut reader, batches_retained)
        .map_err(|error| corrupt(error.to_string()))?;
    if !reader.is_empty() {
        return Err(corrupt("trailing bytes in the writers file".to_string()));
    }
    Ok(Some((start_offset, states)))
}

/// Replaces the writers file atomically (temp, sync, rename).
fn write_writers(
    fs: &dyn LocalFs,
    dir: &str,
    start_offset: u64,
    states: &WriterStates,
) -> Result<(), LogError> {
    let mut writer = ByteWriter::new();
    writer.u64(start_offset);
    states.encode_into(&mut writer);
    let bytes = frame_with_magic(WRITERS_MAGIC, writer.bytes());
    let temp_path = child_path(dir, WRITERS_FILE, ".tmp");
    fs.write(&temp_path, &bytes)?;
    fs.sync(&temp_path)?;
    fs.rename(&temp_path, &child_path(dir, WRITERS_FILE, ""))?;
    Ok(())
}

/// The commit time of the newest batch of `segment` (wall clock); 0 when it holds none.
fn segment_max_timestamp_ms(segment: &Segment) -> u64 {
    segment.batches.values().map(|position| position.commit_timestamp_ms).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_join_with_a_slash() {
        assert_eq!(child_path("data/log/t1-b0", EPOCH_FILE, ""), "data/log/t1-b0/leader-epoch");
        assert_eq!(child_path("d", EPOCH_FILE, ".tmp"), format!("d/{EPOCH_FILE}.tmp"));
    }

    #[test]
    fn segment_paths_are_twenty_zero_padded_digits() {
        for base_offset in [0, 7, 1234, 10_000_000_000, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                segment_path("data/log/t1-b0", base_offset),
                format!("data/log/t1-b0/{base_offset:020}{SEGMENT_SUFFIX}")
            );
        }
    }
}
