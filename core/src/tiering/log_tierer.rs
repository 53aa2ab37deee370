//! The leader's changelog tiering: one task per led term, a tick every `interval_ms` (Fluss's
//! `remote.log.task-interval-duration`). Each tick uploads the closed segments above the
//! bucket's remote end, in order, commits each to the coordinator's remote-log manifest under
//! the term's epoch, raises the log's remote end only after the commit, and then runs local
//! retention under the schedule's [`LocalRetention`] (a count of closed segments kept, Fluss's
//! `table.log.tiered.local-segments`, and optional age and size bounds), and never deletes
//! what the log's own bounds protect (the minimum retain offset of the latest KV snapshot,
//! the remote end, the high watermark).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{Env, RemoteError};
use crate::log::{ClosedSegment, LocalRetention, LogError, LogTablet};
use crate::mutant::Mutant;
use crate::snapshot::completed_snapshot::content_sha256;
use crate::table_bucket::TableBucket;
use crate::task::run_blocking;
use crate::tiering::remote_log_reader::decode_frames;
use crate::tiering::remote_log_segment::RemoteLogSegment;
use crate::tiering::remote_log_store::RemoteLogStoreError;

/// Fluss's `remote.log.task-interval-duration` default: 1 minute.
pub const TIERING_INTERVAL_MS_DEFAULT: u64 = 60 * 1_000;
/// Segments uploaded per tick at most, so that one tick of a long backlog ends.
const SEGMENTS_PER_TICK_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TieringCommitError {
    /// The coordinator answered no: final for this segment.
    #[error("refused by the coordinator: {0}")]
    Refused(RemoteLogStoreError),
    /// No answer: the commit may or may not have landed; ask again.
    #[error("no answer from the coordinator: {0}")]
    NoAnswer(String),
}

/// The leader's calls to the coordinator's remote-log manifest.
pub trait RemoteLogCommitter: Send + Sync + 'static {
    /// The bucket's remote end as the coordinator records it.
    fn remote_end_offset(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>>;
    /// Records `segment`; answers the remote end after it.
    fn commit(
        &self,
        segment: RemoteLogSegment,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>>;
    /// The recorded segment that holds `offset`, if any.
    fn segment_holding(
        &self,
        bucket: TableBucket,
        offset: u64,
    ) -> BoxFuture<'static, Result<Option<RemoteLogSegment>, TieringCommitError>>;
    /// The recorded segments that together hold `[from_offset, to_offset)`, in offset order;
    /// the list stops short where the remote tier has a gap.
    fn segments_covering(
        &self,
        bucket: TableBucket,
        from_offset: u64,
        to_offset: u64,
    ) -> BoxFuture<'static, Result<Vec<RemoteLogSegment>, TieringCommitError>>;
    /// The bucket's remote log start (0 until remote retention removed a segment).
    fn remote_start_offset(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>>;
    /// Remote retention under `leader_epoch`: the coordinator removes the expired segments
    /// (`RemoteLogStore::expire`) and deletes them; answers the remote log start after it.
    fn expire(
        &self,
        bucket: TableBucket,
        leader_epoch: u32,
        expire_before_ms: u64,
    ) -> BoxFuture<'static, Result<u64, TieringCommitError>>;
}

/// When and how a server's leaders tier their changelogs.
#[derive(Clone)]
pub struct TieringSchedule {
    pub interval_ms: u64,
    pub local_retention: LocalRetention,
    /// Fluss's `table.log.ttl` on the remote tier: each tick asks the coordinator to delete
    /// the segments whose newest batch is older than this (KV recovery's needs permitting);
    /// `None` keeps them forever. A table's own `log_ttl_ms` wins ([`TieringSchedule::for_table`]).
    pub remote_log_ttl_ms: Option<u64>,
    pub committer: Arc<dyn RemoteLogCommitter>,
    /// Attempts per upload and per commit, with exponential backoff between them.
    pub attempts_max: u32,
    pub retry_backoff_ms_min: u64,
    pub retry_backoff_ms_max: u64,
}

impl PartialEq for TieringSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.interval_ms == other.interval_ms
            && self.local_retention == other.local_retention
            && self.remote_log_ttl_ms == other.remote_log_ttl_ms
            && self.attempts_max == other.attempts_max
            && self.retry_backoff_ms_min == other.retry_backoff_ms_min
            && self.retry_backoff_ms_max == other.retry_backoff_ms_max
            && Arc::ptr_eq(&self.committer, &other.committer)
    }
}

impl Eq for TieringSchedule {}

impl std::fmt::Debug for TieringSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieringSchedule")
            .field("interval_ms", &self.interval_ms)
            .field("local_retention", &self.local_retention)
            .field("remote_log_ttl_ms", &self.remote_log_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl TieringSchedule {
    /// The schedule of a table whose `table.log.ttl` is `log_ttl_ms` (`None`: the node's).
    pub fn for_table(self: &Arc<Self>, log_ttl_ms: Option<u64>) -> Arc<TieringSchedule> {
        match log_ttl_ms {
            Some(ttl_ms) if Some(ttl_ms) != self.remote_log_ttl_ms => {
                Arc::new(TieringSchedule { remote_log_ttl_ms: Some(ttl_ms), ..(**self).clone() })
            }
            _ => Arc::clone(self),
        }
    }
}

/// Why a tick stopped before it tiered everything it could.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TickError {
    #[error("reading the local segment: {0}")]
    Local(LogError),
    #[error("upload: {0}")]
    Remote(RemoteError),
    #[error("coordinator: {0}")]
    Coordinator(TieringCommitError),
    #[error("abandoned")]
    Abandoned,
}

/// The tiering loop of the term `leader_epoch` of `log`. It ends when the replica aborts it
/// at the end of the term; an upload it leaves uncommitted is an orphan for the sweep.
pub fn run_tiering_loop(
    env: Env,
    log: Arc<LogTablet>,
    leader_epoch: u32,
    schedule: Arc<TieringSchedule>,
) -> BoxFuture<'static, ()> {
    async move {
        assert!(schedule.interval_ms > 0, "a tiering interval is positive");
        let bucket = log.bucket();
        let mut remote_end_known = false;
        loop {
            let deadline_ms = env.clock.now_mono_ms().saturating_add(schedule.interval_ms);
            env.clock.sleep_until(deadline_ms).await;
            if log.leader_epoch() != leader_epoch {
                return;
            }
            if !remote_end_known {
                match schedule.committer.remote_end_offset(bucket).await {
                    Ok(end_offset) => {
                        log.set_remote_end_offset(end_offset);
                        remote_end_known = true;
                    }
                    Err(error) => {
                        tracing::info!(%bucket, %error, "remote log end unknown; asked again at the next tick");
                        continue;
                    }
                }
            }
            match tier_closed_segments(&env, &log, leader_epoch, &schedule).await {
                Ok(()) => {}
                Err(TickError::Coordinator(TieringCommitError::Refused(error)))
                    if !error.is_retriable() =>
                {
                    tracing::warn!(%bucket, %error, "remote log segment refused");
                    if matches!(error, RemoteLogStoreError::Fenced { .. }) {
                        return;
                    }
                    // The remote end may have moved under another term: asked again.
                    remote_end_known = false;
                    continue;
                }
                Err(error) => {
                    tracing::info!(%bucket, %error, "changelog tiering failed; the next tick tries again");
                    if env.mutants.is_on(Mutant::TieringLoopEndsOnFailure) {
                        return;
                    }
                    continue;
                }
            }
            if let Some(ttl_ms) = schedule.remote_log_ttl_ms {
                let expire_before_ms = env.clock.now_wall_ms().saturating_sub(ttl_ms);
                match schedule.committer.expire(bucket, leader_epoch, expire_before_ms).await {
                    Ok(start_offset) => {
                        tracing::debug!(%bucket, start_offset, "remote log retention ran");
                    }
                    Err(TieringCommitError::Refused(RemoteLogStoreError::Fenced { .. })) => return,
                    Err(error) => {
                        tracing::info!(%bucket, %error, "remote log retention failed; the next tick tries again");
                    }
                }
            }
            let requested =
                log.local_retention_offset(&schedule.local_retention, env.clock.now_wall_ms());
            let retained = log.clone();
            let name = format!("log retention node{} {}", env.node_id, bucket.dir_name_display());
            match run_blocking(&env.executor, &env.ledger, name, move || {
                retained.delete_segments_below(requested)
            })
            .await
            {
                Some(Ok(_)) | None => {}
                Some(Err(error)) => {
                    tracing::warn!(%bucket, %error, "local log retention failed");
                }
            }
        }
    }
    .boxed()
}

/// Uploads and commits the closed segments above the remote end, oldest first.
async fn tier_closed_segments(
    env: &Env,
    log: &Arc<LogTablet>,
    leader_epoch: u32,
    schedule: &TieringSchedule,
) -> Result<(), TickError> {
    for _ in 0..SEGMENTS_PER_TICK_MAX {
        let Some(closed) = log.closed_segment_holding(log.remote_end_offset()) else {
            return Ok(());
        };
        let bytes = read_segment(env, log, &closed).await?;
        // Bytes that rotted on the local disk are never uploaded: every frame's checksum and
        // the offsets are checked first (the remote copy would pass its own SHA-256).
        decode_frames(&closed.path, &bytes, closed.base_offset, closed.end_offset, u64::MAX, 0)
            .map_err(|error| {
                TickError::Local(LogError::Corrupt {
                    path: closed.path.clone(),
                    detail: error.to_string(),
                })
            })?;
        let segment = RemoteLogSegment {
            bucket: log.bucket(),
            leader_epoch,
            start_offset: closed.base_offset,
            end_offset: closed.end_offset,
            size_bytes: bytes.len() as u64,
            max_timestamp_ms: closed.max_timestamp_ms,
            sha256: content_sha256(&bytes),
        };
        put_with_retry(env, schedule, &segment.path(), bytes).await?;
        if env.mutants.is_on(Mutant::TieringRemoteEndRaisedBeforeCommit) {
            log.set_remote_end_offset(segment.end_offset);
        }
        let remote_end_offset = commit_with_retry(env, schedule, &segment).await?;
        log.set_remote_end_offset(remote_end_offset);
        tracing::debug!(
            bucket = %segment.bucket,
            segment_id = %segment.segment_id(),
            remote_end_offset,
            "changelog segment tiered"
        );
    }
    Ok(())
}

/// The segment's bytes as synced: the file's first `size_bytes` (a closed segment never
/// grows; a read of a file that retention deleted meanwhile fails and the tick ends).
async fn read_segment(
    env: &Env,
    log: &Arc<LogTablet>,
    closed: &ClosedSegment,
) -> Result<Vec<u8>, TickError> {
    let fs = env.fs.clone();
    let (path, size_bytes) = (closed.path.clone(), closed.size_bytes);
    let name = format!("read segment node{} {}", env.node_id, log.bucket().dir_name_display());
    run_blocking(&env.executor, &env.ledger, name, move || fs.read_range(&path, 0, size_bytes))
        .await
        .ok_or(TickError::Abandoned)?
        .map_err(|error| TickError::Local(error.into()))
        .and_then(|bytes| {
            if bytes.len() as u64 == closed.size_bytes {
                Ok(bytes)
            } else {
                Err(TickError::Local(LogError::Corrupt {
                    path: closed.path.clone(),
                    detail: format!("{} bytes read of {}", bytes.len(), closed.size_bytes),
                }))
            }
        })
}

async fn put_with_retry(
    env: &Env,
    schedule: &TieringSchedule,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), TickError> {
    let mut backoff_ms = schedule.retry_backoff_ms_min;
    let attempts_max = schedule.attempts_max.max(1);
    for attempt in 1..=attempts_max {
        match env.remote.put(path, bytes.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retriable() && attempt < attempts_max => {
                backoff(env, &mut backoff_ms, schedule.retry_backoff_ms_max).await;
            }
            Err(error) => return Err(TickError::Remote(error)),
        }
    }
    unreachable!("the last attempt returns")
}

/// Commits until an answer: a commit without one may have landed, and committing the same
/// segment again is how the leader asks (the manifest accepts a recorded segment again).
async fn commit_with_retry(
    env: &Env,
    schedule: &TieringSchedule,
    segment: &RemoteLogSegment,
) -> Result<u64, TickError> {
    let mut backoff_ms = schedule.retry_backoff_ms_min;
    let attempts_max = schedule.attempts_max.max(1);
    for attempt in 1..=attempts_max {
        match schedule.committer.commit(segment.clone()).await {
            Ok(remote_end_offset) => return Ok(remote_end_offset),
            Err(TieringCommitError::NoAnswer(_)) if attempt < attempts_max => {
                backoff(env, &mut backoff_ms, schedule.retry_backoff_ms_max).await;
            }
            Err(error) => return Err(TickError::Coordinator(error)),
        }
    }
    unreachable!("the last attempt returns")
}

async fn backoff(env: &Env, backoff_ms: &mut u64, backoff_ms_max: u64) {
    let deadline_ms = env.clock.now_mono_ms().saturating_add(*backoff_ms);
    env.clock.sleep_until(deadline_ms).await;
    *backoff_ms = backoff_ms.saturating_mul(2).min(backoff_ms_max);
}
