//! A bucket's engine rebuilt from the coordinator's KV snapshots and the remote tier, for a
//! replica whose fresh engine the local log cannot rebuild (Fluss's `Replica.createKv` /
//! `initKvTablet` / `KvRecoverHelper`): the caller then replays the local log from where this
//! leaves the engine (the local log's start, or the snapshot's offset when the local log
//! still holds it).
//!
//! Rules:
//! - At most [`RECOVERY_ATTEMPTS_MAX`] attempts (Fluss's `INIT_KV_TABLET_MAX_RETRY_TIMES`),
//!   each from the newest kept snapshot not found broken. A snapshot whose files are missing
//!   or damaged is reported broken to the coordinator (which forgets it) and the previous one
//!   is used; a transient failure retries after a backoff; anything else ends the recovery.
//! - An engine an attempt opened and could not finish is closed and its directory destroyed
//!   before anything else happens.
//! - When the snapshot's `log_offset` is below the local log's start, the tiered segments
//!   covering `[log_offset, local start)` are downloaded through a [`RemoteLogFetcher`] (its
//!   own temporary directory, closed on every path) and replayed with the one changelog rule
//!   ([`crate::kv::changelog_replay`]) up to exactly the local start: the boundary is decided
//!   by offsets, and a remote tier that does not reach it, or a replay that ends anywhere
//!   else, is a typed error.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::engine::{EngineError, KvEngine, WriteBatch};
use crate::env::{Env, LocalFs};
use crate::kv::changelog_replay::{apply_batches, check_progress, ReplayError};
use crate::log::LogBatch;
use crate::mutant::Mutant;
use crate::recovery::fetcher_config::{FetcherConfig, FetcherConfigError};
use crate::recovery::kv_restore::RESTORE_SUFFIX;
use crate::recovery::kv_restore::{restore_engine, KvRestoreError};
use crate::recovery::recovery_progress::{RecoveryPhase, RecoveryTracker};
use crate::recovery::remote_log_fetcher::{recovery_temp_dir, FetchError, RemoteLogFetcher};
use crate::snapshot::completed_snapshot::CompletedSnapshot;
use crate::snapshot::snapshot_uploader::{CommitterError, SnapshotCommitter};
use crate::table_bucket::TableBucket;
use crate::task::run_blocking;
use crate::tiering::remote_log_reader::decode_frames;
use crate::tiering::{RemoteLogCommitter, RemoteLogSegment, TieringCommitError};

/// Fluss's `INIT_KV_TABLET_MAX_RETRY_TIMES`.
pub const RECOVERY_ATTEMPTS_MAX: u32 = 5;
/// Log batches of the remote tier per atomic engine write.
const REMOTE_BATCHES_PER_WRITE: usize = 64;
/// The backoff before a retry after a transient failure; it doubles per attempt.
const RETRY_BACKOFF_MS_MIN: u64 = 200;
const RETRY_BACKOFF_MS_MAX: u64 = 5_000;

/// Where a recovery finds what it restores from.
#[derive(Clone)]
pub struct RecoverySources {
    pub snapshots: Arc<dyn SnapshotCommitter>,
    /// The remote tier's manifest; `None` when tiering is off.
    pub remote_logs: Option<Arc<dyn RemoteLogCommitter>>,
    /// The remote-log fetcher's window and downloads; the snapshot's files are downloaded
    /// with the same bound (`download_threads`) and retry.
    pub fetcher: FetcherConfig,
}

/// Why a recovery gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The coordinator keeps no snapshot of the bucket (or every kept one is broken).
    #[error("no usable KV snapshot of {bucket} ({broken} found broken)")]
    NoSnapshot { bucket: TableBucket, broken: usize },
    #[error("coordinator's snapshots: {0}")]
    Snapshots(CommitterError),
    #[error("coordinator's remote-log manifest: {0}")]
    RemoteLogs(TieringCommitError),
    #[error("restore: {0}")]
    Restore(KvRestoreError),
    /// The snapshot needs changelog the local log no longer holds, and tiering is off.
    #[error("snapshot at {log_offset} needs the changelog below the local start {local_start_offset}, and no remote tier is configured")]
    NoRemoteTier { log_offset: u64, local_start_offset: u64 },
    /// The remote tier does not hold all of `[from_offset, to_offset)`.
    #[error("the remote tier holds [{from_offset}, {to_offset}) only up to {covered_offset}")]
    RemoteGap { from_offset: u64, to_offset: u64, covered_offset: u64 },
    #[error("fetcher: {0}")]
    FetcherConfig(FetcherConfigError),
    #[error("remote fetch: {0}")]
    Fetch(FetchError),
    #[error("replay: {0}")]
    Replay(ReplayError),
    #[error("engine: {0}")]
    Engine(EngineError),
    /// Blocking work was dropped unrun (the node is going down).
    #[error("the recovery was abandoned")]
    Abandoned,
    /// Every attempt failed; the last failure.
    #[error("{attempts} recovery attempts failed, the last: {last}")]
    AttemptsExhausted { attempts: u32, last: Box<RecoveryError> },
}

impl RecoveryError {
    /// True when a later recovery may succeed where this one failed.
    pub fn is_retriable(&self) -> bool {
        match self {
            RecoveryError::NoSnapshot { .. }
            | RecoveryError::NoRemoteTier { .. }
            | RecoveryError::FetcherConfig(_)
            | RecoveryError::Replay(_) => false,
            // A tiering that has not caught up yet may.
            RecoveryError::RemoteGap { .. } => true,
            RecoveryError::Snapshots(error) => {
                matches!(error, CommitterError::NoAnswer(_))
                    || matches!(error, CommitterError::Refused(e) if e.is_retriable())
            }
            RecoveryError::RemoteLogs(error) => {
                matches!(error, TieringCommitError::NoAnswer(_))
                    || matches!(error, TieringCommitError::Refused(e) if e.is_retriable())
            }
            RecoveryError::Restore(error) => error.is_retriable(),
            RecoveryError::Fetch(error) => error.is_retriable(),
            RecoveryError::Engine(error) => error.is_retriable(),
            RecoveryError::Abandoned => true,
            RecoveryError::AttemptsExhausted { last, .. } => last.is_retriable(),
        }
    }
}

/// One bucket's recovery: what it rebuilds, from where, into which directory.
pub struct KvRecovery<'a> {
    pub env: &'a Env,
    pub bucket: TableBucket,
    /// The local log's start: the remote replay ends exactly here. (The bucket's retention
    /// runs only in a led term, so it does not move while the new term recovers.)
    pub local_start_offset: u64,
    pub engine_dir: &'a str,
    pub sources: &'a RecoverySources,
    pub tracker: &'a RecoveryTracker,
}

/// What a successful recovery hands the caller: the engine, at `flushed_offset` (the local
/// log's start, or the snapshot's offset when the local log holds it), and the snapshot used
/// (none when every kept one was broken and the remote tier rebuilt the engine from 0).
pub struct Recovered {
    pub engine: Arc<dyn KvEngine>,
    pub snapshot: Option<CompletedSnapshot>,
    pub flushed_offset: u64,
}

impl KvRecovery<'_> {
    /// Restores the engine from the newest usable snapshot and replays the remote tier up to
    /// the local log's start, in at most [`RECOVERY_ATTEMPTS_MAX`] attempts.
    pub async fn run(&self) -> Result<Recovered, RecoveryError> {
        // The restore and the fetcher share the bound: refused before anything is downloaded.
        self.sources.fetcher.validate().map_err(RecoveryError::FetcherConfig)?;
        // What a recovery cut by a crash left (its fetcher never closed) goes first: the
        // directory is this bucket's, and a bucket recovers once at a time (its leadership
        // changes are serialised).
        let (fs, dir) = (self.env.fs.clone(), recovery_dir(self.engine_dir));
        let name = format!("clear {dir} node{}", self.env.node_id);
        let cleared = run_blocking(&self.env.executor, &self.env.ledger, name, move || {
            fs.remove_dir_all(&dir)
        });
        if let Some(Err(error)) = cleared.await {
            tracing::warn!(dir = recovery_dir(self.engine_dir), %error, "failed to clear a recovery directory");
        }
        let mut broken: BTreeSet<u64> = BTreeSet::new();
        let mut last = None;
        for attempt in 1..=RECOVERY_ATTEMPTS_MAX {
            self.tracker.start(attempt, RecoveryPhase::Download);
            let error = match self.attempt(&mut broken).await {
                Ok(recovered) => return Ok(recovered),
                Err(error) => error,
            };
            tracing::warn!(bucket = %self.bucket, attempt, %error, "kv recovery attempt failed");
            let next_may_do_better = error.is_retriable()
                || matches!(error, RecoveryError::Restore(KvRestoreError::Broken { .. }));
            if !next_may_do_better {
                return Err(error);
            }
            last = Some(error);
            if attempt < RECOVERY_ATTEMPTS_MAX {
                let doublings = (attempt - 1).min(16);
                let backoff_ms = (RETRY_BACKOFF_MS_MIN << doublings).min(RETRY_BACKOFF_MS_MAX);
                self.env.clock.sleep(backoff_ms).await;
            }
        }
        let last = last.expect("every attempt failed with an error");
        Err(RecoveryError::AttemptsExhausted {
            attempts: RECOVERY_ATTEMPTS_MAX,
            last: Box::new(last),
        })
    }

    /// One attempt; a snapshot it finds broken is added to `broken` (and reported).
    async fn attempt(&self, broken: &mut BTreeSet<u64>) -> Result<Recovered, RecoveryError> {
        let kept =
            self.sources.snapshots.kept(self.bucket).await.map_err(RecoveryError::Snapshots)?;
        let Some(snapshot) = kept.into_iter().find(|kept| !broken.contains(&kept.snapshot_id))
        else {
            return self.rebuild_from_remote_tier_only(broken.len()).await;
        };
        self.tracker.update(|progress| {
            progress.snapshot_id = snapshot.snapshot_id;
            progress.bytes_total = snapshot.files().map(|file| file.size_bytes).sum();
        });
        let local_start_offset = self.local_start_offset;
        // The remote replay is planned (its segments listed) before the restore, so that its
        // fetcher can fill the window while the restored engine is checked and opened.
        let mut remote = None;
        if snapshot.log_offset < local_start_offset {
            remote = Some(self.plan_remote_replay(snapshot.log_offset, local_start_offset).await?);
        }
        let prefetch = async {
            if let Some(remote) = remote.as_mut() {
                remote.fetcher.prefetch().await;
            }
        };
        let fetcher = &self.sources.fetcher;
        let restored = restore_engine(
            self.env,
            &snapshot,
            self.engine_dir,
            fetcher,
            Some(self.tracker),
            prefetch,
        )
        .await;
        let engine = match restored {
            Ok(engine) => engine,
            Err(error) => {
                if let Some(remote) = remote {
                    remote.close_unused().await;
                }
                // The restore may have opened the checkpoint before it failed (a flushed offset
                // that does not match the record): nothing of it may be opened later.
                discard_engine_dir(self.env, self.engine_dir).await;
                if matches!(error, KvRestoreError::Broken { .. }) {
                    self.report_broken(&snapshot, &error, broken).await;
                } else if self.env.mutants.is_on(Mutant::RecoveryTransientFailureSkipsSnapshot) {
                    broken.insert(snapshot.snapshot_id);
                }
                return Err(RecoveryError::Restore(error));
            }
        };
        let Some(remote) = remote else {
            let flushed_offset = snapshot.log_offset;
            return Ok(Recovered { engine, snapshot: Some(snapshot), flushed_offset });
        };
        match self.replay_remote(&engine, remote).await {
            Ok(()) => {
                let flushed_offset = local_start_offset;
                Ok(Recovered { engine, snapshot: Some(snapshot), flushed_offset })
            }
            Err(error) => {
                self.discard(engine).await;
                Err(error)
            }
        }
    }

    /// Without a usable snapshot, an empty engine and the remote tier from offset 0 (which
    /// holds everything below the local log's start when tiering is on); without a remote
    /// tier, nothing can help.
    async fn rebuild_from_remote_tier_only(
        &self,
        broken: usize,
    ) -> Result<Recovered, RecoveryError> {
        if self.sources.remote_logs.is_none() || self.local_start_offset == 0 {
            return Err(RecoveryError::NoSnapshot { bucket: self.bucket, broken });
        }
        tracing::warn!(
            bucket = %self.bucket,
            broken,
            "no usable KV snapshot: the engine is rebuilt from the remote tier alone"
        );
        let to_offset = self.local_start_offset;
        let remote = self.plan_remote_replay(0, to_offset).await?;
        // Whatever a failed attempt left in the directory goes first.
        discard_engine_dir(self.env, self.engine_dir).await;
        let (engines, dir) = (self.env.engines.clone(), self.engine_dir.to_string());
        let name = format!("open {} node{}", self.engine_dir, self.env.node_id);
        let opened =
            run_blocking(&self.env.executor, &self.env.ledger, name, move || engines.open(&dir));
        let opened = opened.await.ok_or(RecoveryError::Abandoned);
        let engine = match opened.and_then(|opened| opened.map_err(RecoveryError::Engine)) {
            Ok(engine) => engine,
            Err(error) => {
                remote.close_unused().await;
                return Err(error);
            }
        };
        match self.replay_remote(&engine, remote).await {
            Ok(()) => Ok(Recovered { engine, snapshot: None, flushed_offset: to_offset }),
            Err(error) => {
                self.discard(engine).await;
                Err(error)
            }
        }
    }

    /// Reports `snapshot` broken to the coordinator (best effort: a lost report is made again
    /// by the next recovery that finds it) and skips it from now on.
    async fn report_broken(
        &self,
        snapshot: &CompletedSnapshot,
        error: &KvRestoreError,
        broken: &mut BTreeSet<u64>,
    ) {
        // The mutant: the broken snapshot is retried as if the failure were passing.
        if self.env.mutants.is_on(Mutant::RecoveryBrokenSnapshotNotReported) {
            return;
        }
        tracing::warn!(
            bucket = %self.bucket,
            snapshot_id = snapshot.snapshot_id,
            %error,
            "a KV snapshot is broken: reported, and the previous one is used"
        );
        broken.insert(snapshot.snapshot_id);
        let reported = self.sources.snapshots.report_broken(self.bucket, snapshot.snapshot_id);
        if let Err(report_error) = reported.await {
            tracing::warn!(bucket = %self.bucket, %report_error, "failed to report a broken KV snapshot");
        }
    }

    /// Closes `engine` and destroys its directory, so that nothing of a failed attempt is
    /// opened by the next one.
    async fn discard(&self, engine: Arc<dyn KvEngine>) {
        drop(engine);
        discard_engine_dir(self.env, self.engine_dir).await;
    }

    /// The remote replay of `[from_offset, to_offset)`: the remote tier's segments that cover
    /// it, checked for a gap, and the fetcher that will download them (not started).
    async fn plan_remote_replay(
        &self,
        from_offset: u64,
        to_offset: u64,
    ) -> Result<RemoteReplay, RecoveryError> {
        assert!(from_offset < to_offset, "a remote replay covers something");
        let Some(remote_logs) = &self.sources.remote_logs else {
            return Err(RecoveryError::NoRemoteTier {
                log_offset: from_offset,
                local_start_offset: to_offset,
            });
        };
        // The mutants: the remote replay runs on to the remote tier's end, past the local
        // start (overlap), or stops one offset short of it (gap); the boundary check of
        // `replay_remote` reports either.
        let remote_to_offset = if self.env.mutants.is_on(Mutant::RecoveryRemoteReplayPastBoundary) {
            u64::MAX
        } else if self.env.mutants.is_on(Mutant::RecoveryRemoteReplayShortOfBoundary) {
            to_offset - 1
        } else {
            to_offset
        };
        let segments = remote_logs
            .segments_covering(self.bucket, from_offset, remote_to_offset)
            .await
            .map_err(RecoveryError::RemoteLogs)?;
        check_coverage(&segments, from_offset, to_offset)?;
        let bytes_total = segments.iter().map(|segment| segment.size_bytes).sum();
        let temp_dir = recovery_temp_dir(&recovery_dir(self.engine_dir), self.env.entropy.as_ref());
        let fetcher = RemoteLogFetcher::new(self.env, self.sources.fetcher, temp_dir, segments)
            .map_err(RecoveryError::FetcherConfig)?;
        Ok(RemoteReplay { fetcher, from_offset, to_offset, remote_to_offset, bytes_total })
    }

    /// Replays `remote` into `engine`, whose flushed offset is its `from_offset`; afterwards it
    /// is exactly its `to_offset`. The fetcher is closed on every path.
    async fn replay_remote(
        &self,
        engine: &Arc<dyn KvEngine>,
        remote: RemoteReplay,
    ) -> Result<(), RecoveryError> {
        let RemoteReplay { mut fetcher, from_offset, to_offset, remote_to_offset, bytes_total } =
            remote;
        self.tracker.update(|progress| {
            progress.phase = RecoveryPhase::RemoteReplay;
            progress.bytes_downloaded = 0;
            progress.bytes_total = bytes_total;
            progress.offset_replayed = from_offset;
            progress.offset_target = to_offset;
        });
        let replayed =
            self.replay_fetched(&mut fetcher, engine, from_offset, remote_to_offset).await;
        // Closed on every path; a cancelled recovery drops the fetcher, whose drop stops its
        // downloads and removes its directory.
        let closed = fetcher.close().await;
        let ended_offset = replayed?;
        closed.map_err(RecoveryError::Fetch)?;
        if ended_offset != to_offset {
            return Err(RecoveryError::Replay(ReplayError::Boundary {
                ended_offset,
                next_start_offset: to_offset,
            }));
        }
        Ok(())
    }

    /// Applies the fetched segments from `from_offset` until `to_offset`; returns where the
    /// replay ended.
    async fn replay_fetched(
        &self,
        fetcher: &mut RemoteLogFetcher,
        engine: &Arc<dyn KvEngine>,
        from_offset: u64,
        to_offset: u64,
    ) -> Result<u64, RecoveryError> {
        let probe = fetcher.probe();
        let mut next_offset = from_offset;
        while let Some(fetched) = fetcher.next().await.map_err(RecoveryError::Fetch)? {
            if next_offset >= to_offset {
                break;
            }
            let (fs, engine) = (self.env.fs.clone(), engine.clone());
            let (segment, path) = (fetched.segment().clone(), fetched.path().to_string());
            let name = format!("replay {} node{}", segment.segment_id(), self.env.node_id);
            let applied = run_blocking(&self.env.executor, &self.env.ledger, name, move || {
                replay_segment_file(
                    fs.as_ref(),
                    engine.as_ref(),
                    &segment,
                    &path,
                    next_offset,
                    to_offset,
                )
            });
            let ended_offset = applied.await.ok_or(RecoveryError::Abandoned)??;
            // The segment's file is deleted now, before the next one is asked for.
            drop(fetched);
            check_progress(next_offset, ended_offset, to_offset, "the remote tier")
                .map_err(RecoveryError::Replay)?;
            next_offset = ended_offset;
            let gauges = probe.gauges();
            self.tracker.update(|progress| {
                progress.bytes_downloaded = gauges.bytes_downloaded;
                progress.offset_replayed = next_offset;
            });
        }
        Ok(next_offset)
    }
}

/// A remote replay planned before its engine exists.
struct RemoteReplay {
    fetcher: RemoteLogFetcher,
    from_offset: u64,
    /// The local log's start, where the replay must end.
    to_offset: u64,
    /// Where the replay is asked to stop: `to_offset` (a mutant moves it).
    remote_to_offset: u64,
    bytes_total: u64,
}

impl RemoteReplay {
    /// Closes the fetcher of a replay that will not run (its engine could not be opened); a
    /// directory it cannot remove is cleared by the bucket's next recovery.
    async fn close_unused(mut self) {
        if let Err(error) = self.fetcher.close().await {
            tracing::warn!(dir = self.fetcher.temp_dir(), %error, "failed to close an unused recovery fetcher");
        }
    }
}

const RECOVERY_SUFFIX: &str = ".recovery";

/// The directory under which a recovery of `engine_dir` keeps its temporary files.
pub fn recovery_dir(engine_dir: &str) -> String {
    format!("{engine_dir}{RECOVERY_SUFFIX}")
}

/// Deletes what recoveries cut by a crash left under a table's directory (`table_dir`, and its
/// partitions' `{name}-p{id}` directories): every engine's restore and recovery directory
/// (`kv-{bucket}.restore`, `kv-{bucket}.recovery`). Called when a server starts serving the
/// table, before any of its buckets can recover, since a bucket may never recover on this
/// node again. Returns how many went; a failure is logged and left to the next start.
pub fn clear_crashed_recoveries(fs: &dyn LocalFs, table_dir: &str) -> usize {
    let mut cleared = 0;
    let mut dirs = vec![table_dir.to_string()];
    while let Some(dir) = dirs.pop() {
        let Ok(names) = fs.list_dir(&dir) else { continue };
        for name in names {
            let path = format!("{dir}/{name}");
            let leftover = name.starts_with("kv-")
                && (name.ends_with(RESTORE_SUFFIX) || name.ends_with(RECOVERY_SUFFIX));
            if leftover {
                match fs.remove_dir_all(&path) {
                    Ok(()) => cleared += 1,
                    Err(error) => {
                        tracing::warn!(path, %error, "a crashed recovery's directory is left")
                    }
                }
            } else if dir == table_dir && name.contains("-p") {
                dirs.push(path);
            }
        }
    }
    cleared
}

/// Destroys the engine in `engine_dir` (every handle dropped before), logging a failure.
pub async fn discard_engine_dir(env: &Env, engine_dir: &str) {
    let (engines, dir) = (env.engines.clone(), engine_dir.to_string());
    let name = format!("discard {engine_dir} node{}", env.node_id);
    let destroyed = run_blocking(&env.executor, &env.ledger, name, move || engines.destroy(&dir));
    if let Some(Err(error)) = destroyed.await {
        tracing::warn!(dir = engine_dir, %error, "failed to destroy a partly recovered engine");
    }
}

/// Whether `segments` (in order) hold every offset of `[from_offset, to_offset)`.
fn check_coverage(
    segments: &[RemoteLogSegment],
    from_offset: u64,
    to_offset: u64,
) -> Result<(), RecoveryError> {
    let mut covered_offset = from_offset;
    for segment in segments {
        if segment.start_offset > covered_offset {
            break;
        }
        covered_offset = covered_offset.max(segment.end_offset);
    }
    if covered_offset < to_offset {
        return Err(RecoveryError::RemoteGap { from_offset, to_offset, covered_offset });
    }
    Ok(())
}

/// Applies the records of one downloaded segment file in `[from_offset, to_offset)` to
/// `engine`, each write with the offset it reaches; returns where it ended.
fn replay_segment_file(
    fs: &dyn crate::env::LocalFs,
    engine: &dyn KvEngine,
    segment: &RemoteLogSegment,
    path: &str,
    from_offset: u64,
    to_offset: u64,
) -> Result<u64, RecoveryError> {
    let bytes = fs.read(path).map_err(|error| RecoveryError::Fetch(FetchError::Local(error)))?;
    let (start, end) = (segment.start_offset, segment.end_offset);
    let batches: Vec<LogBatch> = decode_frames(path, &bytes, start, end, from_offset, u64::MAX)
        .map_err(|source| {
            RecoveryError::Fetch(FetchError::Corrupt { segment_id: segment.segment_id(), source })
        })?;
    let mut next_offset = from_offset;
    for chunk in batches.chunks(REMOTE_BATCHES_PER_WRITE) {
        let mut write = WriteBatch::new();
        let ended_offset =
            apply_batches(&mut write, chunk, next_offset, to_offset, "the remote tier")
                .map_err(RecoveryError::Replay)?;
        if ended_offset == next_offset {
            break;
        }
        write.set_flushed_log_offset(ended_offset);
        engine.write(&write).map_err(RecoveryError::Engine)?;
        next_offset = ended_offset;
    }
    Ok(next_offset)
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::engine::mem_engine::MemEngineFactory;
    use crate::engine::KvEngineFactory;
    use crate::env::{Entropy, FsError, LocalFs, Rpc, RpcError};
    use crate::ledger::{Ledger, ResourceKind};
    use crate::log::log_batch::{encode_batch, LogRecord};
    use crate::log::ChangeType;
    use crate::message::{NodeId, Request, Response};
    use crate::mutant::Mutants;
    use crate::recovery::kv_restore::{restore_engine, RANGED_FILE_BYTES_MIN};
    use crate::recovery::test_remote::MemRemote;
    use crate::recovery::DownloadRetry;
    use crate::scan::kv_scanner::testing::TestRuntime;
    use crate::snapshot::completed_snapshot::{content_sha256, snapshot_dir, SnapshotFile};
    use crate::tiering::RemoteLogManifest;

    const ENGINE_DIR: &str = "kv/t1-b0";

    struct NoRpc;

    impl Rpc for NoRpc {
        fn call(
            &self,
            target: NodeId,
            _request: Request,
            _timeout_ms: u64,
        ) -> BoxFuture<'static, Result<Response, RpcError>> {
            futures::future::ready(Err(RpcError::Unreachable(target))).boxed()
        }
    }

    struct Counter(AtomicU64);

    impl Entropy for Counter {
        fn next_u64(&self) -> u64 {
            self.0.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst)
        }
    }

    /// The coordinator's side: kept snapshots (newest first), reports, the remote manifest.
    #[derive(Default)]
    struct FakeCoordinator {
        kept: Mutex<Vec<CompletedSnapshot>>,
        reported: Mutex<Vec<u64>>,
        manifest: Mutex<RemoteLogManifest>,
    }

    fn no_answer<T: Send + 'static>() -> BoxFuture<'static, Result<T, CommitterError>> {
        futures::future::ready(Err(CommitterError::NoAnswer("not in this test".into()))).boxed()
    }

    impl SnapshotCommitter for FakeCoordinator {
        fn allocate_snapshot_id(
            &self,
            _bucket: TableBucket,
        ) -> BoxFuture<'static, Result<u64, CommitterError>> {
            no_answer()
        }

        fn commit(
            &self,
            _snapshot: CompletedSnapshot,
        ) -> BoxFuture<'static, Result<(), CommitterError>> {
            no_answer()
        }

        fn latest(
            &self,
            _bucket: TableBucket,
        ) -> BoxFuture<'static, Result<Option<CompletedSnapshot>, CommitterError>> {
            no_answer()
        }

        fn kept(
            &self,
            _bucket: TableBucket,
        ) -> BoxFuture<'static, Result<Vec<CompletedSnapshot>, CommitterError>> {
            futures::future::ready(Ok(self.kept.lock().unwrap().clone())).boxed()
        }

        fn report_broken(
            &self,
            _bucket: TableBucket,
            snapshot_id: u64,
        ) -> BoxFuture<'static, Result<(), CommitterError>> {
            self.reported.lock().unwrap().push(snapshot_id);
            self.kept.lock().unwrap().retain(|kept| kept.snapshot_id != snapshot_id);
            futures::future::ready(Ok(())).boxed()
        }
    }

    impl RemoteLogCommitter for FakeCoordinator {
        fn remote_end_offset(
            &self,
            _bucket: TableBucket,
        ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
            futures::future::ready(Ok(self.manifest.lock().unwrap().end_offset())).boxed()
        }

        fn commit(
            &self,
            _segment: RemoteLogSegment,
        ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
            futures::future::ready(Err(TieringCommitError::NoAnswer("not here".into()))).boxed()
        }

        fn segment_holding(
            &self,
            _bucket: TableBucket,
            offset: u64,
        ) -> BoxFuture<'static, Result<Option<RemoteLogSegment>, TieringCommitError>> {
            let segment = self.manifest.lock().unwrap().segment_holding(offset).cloned();
            futures::future::ready(Ok(segment)).boxed()
        }

        fn segments_covering(
            &self,
            _bucket: TableBucket,
            from_offset: u64,
            to_offset: u64,
        ) -> BoxFuture<'static, Result<Vec<RemoteLogSegment>, TieringCommitError>> {
            let covering = self.manifest.lock().unwrap().segments_covering(from_offset, to_offset);
            futures::future::ready(Ok(covering)).boxed()
        }

        fn remote_start_offset(
            &self,
            _bucket: TableBucket,
        ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
            futures::future::ready(Ok(self.manifest.lock().unwrap().start_offset)).boxed()
        }

        fn expire(
            &self,
            _bucket: TableBucket,
            _leader_epoch: u32,
            _expire_before_ms: u64,
        ) -> BoxFuture<'static, Result<u64, TieringCommitError>> {
            futures::future::ready(Err(TieringCommitError::NoAnswer("not here".into()))).boxed()
        }
    }

    struct Fixture {
        runtime: TestRuntime,
        env: Env,
        remote: Arc<MemRemote>,
        fs: Arc<TestFs>,
        coordinator: Arc<FakeCoordinator>,
        /// Whether the recovery has a remote tier.
        tiering: bool,
    }

    fn bucket() -> TableBucket {
        TableBucket::new(1, 0)
    }

    /// The record at `offset` puts `k{offset % 4}` = `v{offset}`.
    fn record(offset: u64) -> LogRecord {
        LogRecord {
            offset,
            change_type: ChangeType::Insert,
            key: format!("k{}", offset % 4).into_bytes(),
            value: format!("v{offset}").into_bytes(),
        }
    }

    fn fixture() -> Fixture {
        let runtime = TestRuntime::new();
        let remote = Arc::new(MemRemote::new(runtime.clock()));
        let fs = Arc::new(TestFs::default());
        let env = Env {
            node_id: 1,
            clock: runtime.clock(),
            executor: runtime.executor(),
            remote: remote.clone(),
            rpc: Arc::new(NoRpc),
            fs: fs.clone(),
            entropy: Arc::new(Counter(AtomicU64::new(1))),
            engines: Arc::new(MemEngineFactory::new(fs.clone())),
            ledger: Ledger::new(),
            mutants: Mutants::NONE,
        };
        Fixture { runtime, env, remote, fs, coordinator: Arc::default(), tiering: true }
    }

    impl Fixture {
        /// Commits snapshot `snapshot_id` of the changelog's first `log_offset` records.
        fn snapshot(&self, snapshot_id: u64, log_offset: u64) -> CompletedSnapshot {
            let source_dir = format!("source-{snapshot_id}");
            let checkpoint_dir = format!("checkpoint-{snapshot_id}");
            let engine = self.env.engines.open(&source_dir).unwrap();
            let mut write = WriteBatch::new();
            for offset in 0..log_offset {
                let record = record(offset);
                write.put(record.key, record.value);
            }
            write.set_flushed_log_offset(log_offset);
            engine.write(&write).unwrap();
            engine.checkpoint(&checkpoint_dir).unwrap();
            let mut private_files = Vec::new();
            for name in self.fs.list_dir(&checkpoint_dir).unwrap() {
                let bytes = self.fs.read(&format!("{checkpoint_dir}/{name}")).unwrap();
                let remote_path = format!("{}/{name}", snapshot_dir(bucket(), snapshot_id));
                private_files.push(SnapshotFile {
                    remote_path: remote_path.clone(),
                    local_name: name,
                    size_bytes: bytes.len() as u64,
                    crc32c: crc32c::crc32c(&bytes),
                    sha256: content_sha256(&bytes),
                });
                self.remote.insert(&remote_path, bytes);
            }
            let snapshot = CompletedSnapshot {
                bucket: bucket(),
                snapshot_id,
                leader_epoch: 1,
                log_offset,
                shared_files: Vec::new(),
                private_files,
            };
            self.coordinator.kept.lock().unwrap().insert(0, snapshot.clone());
            snapshot
        }

        /// Tiers `[start_offset, end_offset)` as one segment of one-record batches.
        fn tier(&self, start_offset: u64, end_offset: u64) {
            let mut bytes = Vec::new();
            for offset in start_offset..end_offset {
                let batch = LogBatch {
                    base_offset: offset,
                    leader_epoch: 1,
                    offset_count: 1,
                    commit_timestamp_ms: offset,
                    writer: None,
                    records: vec![record(offset)],
                };
                bytes.extend(encode_batch(&batch));
            }
            let segment = RemoteLogSegment {
                bucket: bucket(),
                leader_epoch: 1,
                start_offset,
                end_offset,
                size_bytes: bytes.len() as u64,
                max_timestamp_ms: end_offset,
                sha256: content_sha256(&bytes),
            };
            self.remote.insert(&segment.path(), bytes);
            self.coordinator.manifest.lock().unwrap().segments.push(segment);
        }

        fn recover(&mut self, local_start_offset: u64) -> Result<(u64, u64), RecoveryError> {
            let env = self.env.clone();
            let remote_logs: Arc<dyn RemoteLogCommitter> = self.coordinator.clone();
            let sources = RecoverySources {
                snapshots: self.coordinator.clone(),
                remote_logs: self.tiering.then_some(remote_logs),
                fetcher: FetcherConfig::DEFAULT,
            };
            self.runtime.run(async move {
                let tracker = RecoveryTracker::new(bucket(), env.clock.clone(), 1_000);
                let recovery = KvRecovery {
                    env: &env,
                    bucket: bucket(),
                    local_start_offset,
                    engine_dir: ENGINE_DIR,
                    sources: &sources,
                    tracker: &tracker,
                };
                let recovered = recovery.run().await?;
                let engine_offset = recovered.engine.flushed_log_offset().unwrap().unwrap_or(0);
                assert_eq!(engine_offset, recovered.flushed_offset);
                Ok((recovered.snapshot.map_or(0, |snapshot| snapshot.snapshot_id), engine_offset))
            })
        }

        /// The engine left in the engine's directory: its value of `k{n}` for each n < 4.
        fn engine_values(&self) -> Vec<Option<String>> {
            let engine = self.env.engines.open(ENGINE_DIR).unwrap();
            (0..4)
                .map(|n| {
                    let value = engine.get(format!("k{n}").as_bytes()).unwrap();
                    value.map(|bytes| String::from_utf8(bytes).unwrap())
                })
                .collect()
        }

        fn reported(&self) -> Vec<u64> {
            self.coordinator.reported.lock().unwrap().clone()
        }

        /// Files under the recovery's temporary directories, and live temp files and tasks.
        fn leftovers(&self) -> (Vec<String>, usize) {
            let tmp = format!("{}/tmp", recovery_dir(ENGINE_DIR));
            let mut files = self.fs.list_dir(&tmp).unwrap_or_default();
            files.extend(
                self.fs.list_dir(&crate::recovery::restore_dir(ENGINE_DIR)).unwrap_or_default(),
            );
            let kinds = [ResourceKind::TempFile, ResourceKind::PrefetchSlot, ResourceKind::Task];
            (files, self.env.ledger.live_of(&kinds).len())
        }
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|value| Some(value.to_string())).collect()
    }

    #[test]
    fn a_snapshot_the_local_log_still_covers_is_restored_without_the_remote_tier() {
        let mut f = fixture();
        f.snapshot(1, 4);
        assert_eq!(f.recover(2), Ok((1, 4)));
        assert_eq!(f.engine_values(), some(&["v0", "v1", "v2", "v3"]));
        assert_eq!(f.reported(), Vec::<u64>::new());
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_broken_latest_snapshot_is_reported_and_the_previous_one_is_used() {
        let mut f = fixture();
        f.snapshot(1, 2);
        let latest = f.snapshot(2, 4);
        f.remote.remove(&latest.private_files[0].remote_path);
        f.tier(0, 3);
        // The previous snapshot is below the local start: the remote tier fills the rest.
        assert_eq!(f.recover(3), Ok((1, 3)));
        assert_eq!(f.reported(), vec![2]);
        assert_eq!(
            f.engine_values(),
            some(&["v0", "v1", "v2"]).into_iter().chain([None]).collect::<Vec<_>>()
        );
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_corrupt_snapshot_file_is_broken_like_a_missing_one() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let latest = f.snapshot(2, 6);
        f.remote.corrupt(&latest.private_files[0].remote_path);
        assert_eq!(f.recover(0), Ok((1, 4)));
        assert_eq!(f.reported(), vec![2]);
    }

    #[test]
    fn the_remote_replay_ends_exactly_at_the_local_start_across_segments() {
        let mut f = fixture();
        f.snapshot(1, 1);
        f.tier(0, 3);
        f.tier(3, 9);
        // Records 1..6 come from the remote tier, none at or above 6 (the local log's).
        assert_eq!(f.recover(6), Ok((1, 6)));
        assert_eq!(f.engine_values(), some(&["v4", "v5", "v2", "v3"]));
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_recovery_cancelled_during_the_remote_replay_leaves_no_file_or_task() {
        let mut f = fixture();
        f.snapshot(1, 1);
        f.tier(0, 3);
        f.tier(3, 9);
        for segment in f.coordinator.manifest.lock().unwrap().segments.iter() {
            f.remote.set_latency_ms(&segment.path(), 1_000);
        }
        let env = f.env.clone();
        let remote_logs: Arc<dyn RemoteLogCommitter> = f.coordinator.clone();
        let sources = RecoverySources {
            snapshots: f.coordinator.clone(),
            remote_logs: Some(remote_logs),
            fetcher: FetcherConfig::DEFAULT,
        };
        let cancelled = f.runtime.run(async move {
            let tracker = RecoveryTracker::new(bucket(), env.clock.clone(), 1_000);
            let recovery = KvRecovery {
                env: &env,
                bucket: bucket(),
                local_start_offset: 6,
                engine_dir: ENGINE_DIR,
                sources: &sources,
                tracker: &tracker,
            };
            let running = recovery.run().boxed_local();
            let deadline = env.clock.sleep(500);
            let cancelled = match futures::future::select(running, deadline).await {
                futures::future::Either::Left(_) => false,
                futures::future::Either::Right(_) => true,
            };
            let phase = tracker.progress().map(|progress| progress.phase);
            assert_eq!(phase, Some(RecoveryPhase::RemoteReplay), "cut in the remote replay");
            // The downloads the drop abandoned end by themselves.
            env.clock.sleep(5_000).await;
            cancelled
        });
        assert!(cancelled, "the recovery was still downloading");
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn what_a_crashed_recovery_left_is_cleared_by_the_next_one() {
        let mut f = fixture();
        let stale = format!("{}/tmp/remote-log-recovery-0badc0de", recovery_dir(ENGINE_DIR));
        f.fs.create_dir_all(&stale).unwrap();
        f.fs.write(&format!("{stale}/00000000000000000000.log"), b"partial").unwrap();
        f.snapshot(1, 1);
        f.tier(0, 4);
        assert_eq!(f.recover(4), Ok((1, 4)));
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_remote_tier_short_of_the_local_start_is_a_gap_and_the_engine_is_destroyed() {
        let mut f = fixture();
        f.snapshot(1, 1);
        f.tier(0, 3);
        let error = f.recover(6).unwrap_err();
        let RecoveryError::AttemptsExhausted { attempts, last } = &error else {
            panic!("a gap the tiering may still fill is retried: {error}")
        };
        assert_eq!(*attempts, RECOVERY_ATTEMPTS_MAX);
        assert_eq!(
            **last,
            RecoveryError::RemoteGap { from_offset: 1, to_offset: 6, covered_offset: 3 }
        );
        assert_eq!(f.engine_values(), vec![None; 4], "nothing of the restored engine is left");
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_snapshot_whose_engine_disagrees_with_its_record_is_broken_and_left_unopenable() {
        let mut f = fixture();
        f.tiering = false;
        f.snapshot(1, 4);
        // The record says 5; the engine it names holds 4.
        f.coordinator.kept.lock().unwrap()[0].log_offset = 5;
        let error = f.recover(5).unwrap_err();
        assert_eq!(error, RecoveryError::NoSnapshot { bucket: bucket(), broken: 1 });
        assert_eq!(f.reported(), vec![1]);
        assert_eq!(f.engine_values(), vec![None; 4], "the opened checkpoint is destroyed");
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_restore_that_fails_after_its_downloads_closes_the_fetcher_it_started() {
        let mut f = fixture();
        f.snapshot(1, 4);
        // The record says 5; the engine it names holds 4. The remote replay from 5 is planned,
        // and its fetcher started, before the restore opens the engine and finds it broken.
        f.coordinator.kept.lock().unwrap()[0].log_offset = 5;
        f.tier(0, 4);
        f.tier(4, 8);
        let later = f.coordinator.manifest.lock().unwrap().segments[1].path();
        assert_eq!(f.recover(8), Ok((0, 8)), "rebuilt from the remote tier alone");
        assert_eq!(f.reported(), vec![1]);
        // Prefetched while the broken engine opened, then downloaded again by the rebuild.
        assert_eq!(f.remote.gets(&later), 2);
        assert_eq!(f.engine_values(), some(&["v4", "v5", "v6", "v7"]));
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_transient_download_failure_retries_the_same_snapshot() {
        let mut f = fixture();
        let snapshot = f.snapshot(1, 4);
        // Every download attempt of the first recovery attempt fails.
        let path = &snapshot.private_files[0].remote_path;
        f.remote.fail_transiently(path, DownloadRetry::DEFAULT.attempts_max);
        assert_eq!(f.recover(0), Ok((1, 4)));
        assert_eq!(f.reported(), Vec::<u64>::new());
    }

    /// How a checkpoint check fails in [`FailingCheckpointChecks`].
    #[derive(Clone, Copy)]
    enum CheckFailure {
        /// A read of the disk that holds the download failed.
        LocalRead,
        /// The engine finds damage after a byte of a downloaded file rotted on the local disk.
        LocalRot,
        /// The engine finds damage in files that still match their records (the snapshot's
        /// own).
        SnapshotDamage,
    }

    /// Engines of `inner` whose checkpoint check fails as `failure` says the first `failures`
    /// times.
    struct FailingCheckpointChecks {
        inner: Arc<dyn KvEngineFactory>,
        fs: Arc<TestFs>,
        failures: AtomicU64,
        failure: CheckFailure,
    }

    impl KvEngineFactory for FailingCheckpointChecks {
        fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
            self.inner.open(dir)
        }
        fn open_checkpoint(&self, from: &str, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
            self.inner.open_checkpoint(from, dir)
        }
        fn destroy(&self, dir: &str) -> Result<(), EngineError> {
            self.inner.destroy(dir)
        }
        fn is_immutable_file(&self, file_name: &str) -> bool {
            self.inner.is_immutable_file(file_name)
        }
        fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
            let failing = self
                .failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
                .is_ok();
            if !failing {
                return self.inner.verify_checkpoint(dir);
            }
            let damage = || EngineError::Corrupt(format!("{dir}: a block checksum does not match"));
            match self.failure {
                CheckFailure::LocalRead => {
                    Err(EngineError::Io(format!("{dir}: read failed (injected)")))
                }
                CheckFailure::LocalRot => {
                    let path = format!("{dir}/{}", self.fs.list_dir(dir).unwrap()[0]);
                    let mut bytes = self.fs.read(&path).unwrap();
                    bytes[0] ^= 0x5a;
                    self.fs.write(&path, &bytes).unwrap();
                    Err(damage())
                }
                CheckFailure::SnapshotDamage => Err(damage()),
            }
        }
    }

    /// The fixture's engines, with the first checkpoint check failing as `failure` says.
    fn with_failing_check(f: &mut Fixture, failure: CheckFailure) {
        let (inner, fs) = (f.env.engines.clone(), f.fs.clone());
        let failures = AtomicU64::new(1);
        f.env.engines = Arc::new(FailingCheckpointChecks { inner, fs, failures, failure });
    }

    #[test]
    fn a_local_read_failure_while_checking_a_download_retries_and_reports_nothing_broken() {
        let mut f = fixture();
        with_failing_check(&mut f, CheckFailure::LocalRead);
        f.snapshot(1, 2);
        f.snapshot(2, 4);
        // The newest snapshot is whole: a failed read of the local disk does not make it broken
        // (the coordinator would forget it, and retention could then delete the log it kept).
        assert_eq!(f.recover(0), Ok((2, 4)));
        assert_eq!(f.reported(), Vec::<u64>::new());
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_download_that_rotted_on_the_local_disk_fails_the_recovery_and_reports_nothing_broken() {
        let mut f = fixture();
        with_failing_check(&mut f, CheckFailure::LocalRot);
        f.snapshot(1, 2);
        f.snapshot(2, 4);
        // A failing local disk ends this recovery (the next leadership call tries again), and
        // the healthy snapshot is not reported broken.
        let error = f.recover(0).unwrap_err();
        assert!(
            matches!(&error, RecoveryError::Restore(KvRestoreError::Local(FsError::Io(detail)))
                if detail.contains("damaged on the local disk")),
            "{error}"
        );
        assert_eq!(f.reported(), Vec::<u64>::new());
        assert_eq!(f.leftovers(), (vec![], 0));
        assert_eq!(f.recover(0), Ok((2, 4)), "the same snapshot, downloaded again");
    }

    #[test]
    fn a_checkpoint_damaged_in_files_that_match_their_records_is_broken() {
        let mut f = fixture();
        with_failing_check(&mut f, CheckFailure::SnapshotDamage);
        f.snapshot(1, 2);
        f.snapshot(2, 4);
        assert_eq!(f.recover(0), Ok((1, 2)), "the previous snapshot");
        assert_eq!(f.reported(), vec![2]);
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_file_not_found_but_listed_is_asked_again_and_reports_nothing_broken() {
        let mut f = fixture();
        f.snapshot(1, 2);
        let latest = f.snapshot(2, 4);
        // Every download attempt of the first recovery attempt is answered not-found, while a
        // listing shows the file: the snapshot is not known to be broken.
        let path = &latest.private_files[0].remote_path;
        f.remote.answer_not_found(path, DownloadRetry::DEFAULT.attempts_max);
        assert_eq!(f.recover(0), Ok((2, 4)));
        assert_eq!(f.reported(), Vec::<u64>::new());
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn recovery_gives_up_after_five_attempts_and_says_whether_to_retry() {
        let mut f = fixture();
        let snapshot = f.snapshot(1, 4);
        f.remote.fail_transiently(&snapshot.private_files[0].remote_path, u32::MAX);
        let error = f.recover(0).unwrap_err();
        assert!(
            matches!(
                error,
                RecoveryError::AttemptsExhausted { attempts: RECOVERY_ATTEMPTS_MAX, .. }
            ),
            "{error}"
        );
        assert!(error.is_retriable());
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn with_every_snapshot_broken_the_remote_tier_alone_rebuilds_the_engine() {
        let mut f = fixture();
        let only = f.snapshot(1, 4);
        f.remote.remove(&only.private_files[0].remote_path);
        f.tier(0, 5);
        assert_eq!(f.recover(5), Ok((0, 5)));
        assert_eq!(f.reported(), vec![1]);
        assert_eq!(f.engine_values(), some(&["v4", "v1", "v2", "v3"]));
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn without_a_usable_snapshot_or_a_remote_tier_recovery_ends_at_once() {
        let mut f = fixture();
        f.tiering = false;
        assert_eq!(f.recover(3), Err(RecoveryError::NoSnapshot { bucket: bucket(), broken: 0 }));
        let only = f.snapshot(1, 4);
        f.remote.remove(&only.private_files[0].remote_path);
        let error = f.recover(3).unwrap_err();
        assert_eq!(error, RecoveryError::NoSnapshot { bucket: bucket(), broken: 1 });
        assert!(!error.is_retriable());
        assert_eq!(f.reported(), vec![1]);
    }

    /// Adds `count` files the engine ignores to the newest kept snapshot, each taking
    /// `latency_ms` to download; returns the snapshot and the files' remote paths.
    fn with_extra_files(
        f: &Fixture,
        count: usize,
        latency_ms: u64,
    ) -> (CompletedSnapshot, Vec<String>) {
        let mut kept = f.coordinator.kept.lock().unwrap();
        let snapshot = &mut kept[0];
        let mut paths = Vec::new();
        for n in 0..count {
            let bytes = format!("extra file {n}").into_bytes();
            let remote_path = format!("{}/extra-{n}", snapshot_dir(bucket(), snapshot.snapshot_id));
            f.remote.insert(&remote_path, bytes.clone());
            f.remote.set_latency_ms(&remote_path, latency_ms);
            snapshot.private_files.push(SnapshotFile {
                remote_path: remote_path.clone(),
                local_name: format!("extra-{n}"),
                size_bytes: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
                sha256: content_sha256(&bytes),
            });
            paths.push(remote_path);
        }
        (snapshot.clone(), paths)
    }

    /// Restores `snapshot` with `download_threads` downloads at once; returns the outcome (the
    /// engine dropped) and the progress's downloaded bytes.
    fn restore(
        f: &mut Fixture,
        snapshot: CompletedSnapshot,
        download_threads: usize,
    ) -> (Result<(), KvRestoreError>, u64) {
        let env = f.env.clone();
        let fetcher = FetcherConfig { download_threads, ..FetcherConfig::DEFAULT };
        f.runtime.run(async move {
            let tracker = RecoveryTracker::new(bucket(), env.clock.clone(), 1_000);
            tracker.start(1, RecoveryPhase::Download);
            let restored =
                restore_engine(&env, &snapshot, ENGINE_DIR, &fetcher, Some(&tracker), async {})
                    .await;
            let downloaded = tracker.progress().map_or(0, |progress| progress.bytes_downloaded);
            (restored.map(drop), downloaded)
        })
    }

    #[test]
    fn a_restore_downloads_at_most_download_threads_files_at_once() {
        for download_threads in [1, 3] {
            let mut f = fixture();
            f.snapshot(1, 4);
            let (snapshot, _) = with_extra_files(&f, 7, 100);
            let (restored, downloaded) = restore(&mut f, snapshot.clone(), download_threads);
            assert_eq!(restored, Ok(()));
            assert_eq!(f.remote.gets_running_max(), download_threads);
            assert_eq!(downloaded, snapshot.size_bytes(), "every file counts once");
            assert_eq!(f.engine_values(), some(&["v0", "v1", "v2", "v3"]));
            assert_eq!(f.leftovers(), (vec![], 0));
        }
    }

    #[test]
    fn a_restore_file_that_fails_for_good_cancels_the_others_and_leaves_no_file() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let (snapshot, paths) = with_extra_files(&f, 6, 10_000);
        // The first extra file is missing (asked again with backoffs for about 1.5 s); two
        // others are downloading then, and the rest wait for a free download.
        f.remote.remove(&paths[0]);
        f.remote.set_latency_ms(&paths[0], 0);
        let (restored, _) = restore(&mut f, snapshot, 3);
        assert!(matches!(restored, Err(KvRestoreError::Broken { snapshot_id: 1, .. })));
        let attempts_max = DownloadRetry::DEFAULT.attempts_max;
        assert_eq!(f.remote.gets(&paths[0]), attempts_max, "a missing object is asked again");
        assert_eq!(f.remote.gets(&paths[1]), 1, "downloading when the failure came");
        assert_eq!(f.remote.gets(&paths[3]), 0, "no download starts after the failure");
        assert_eq!(f.leftovers(), (vec![], 0), "no file written, no temp file or task left");
    }
    /// Adds one file of `size_bytes` the engine ignores to the newest kept snapshot; returns
    /// the snapshot and the file's remote path.
    fn with_large_file(f: &Fixture, size_bytes: usize) -> (CompletedSnapshot, String) {
        let mut kept = f.coordinator.kept.lock().unwrap();
        let snapshot = &mut kept[0];
        let bytes: Vec<u8> = (0..size_bytes).map(|n| (n % 251) as u8).collect();
        let remote_path = format!("{}/large", snapshot_dir(bucket(), snapshot.snapshot_id));
        f.remote.insert(&remote_path, bytes.clone());
        f.remote.set_latency_ms(&remote_path, 100);
        snapshot.private_files.push(SnapshotFile {
            remote_path: remote_path.clone(),
            local_name: "large".to_string(),
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            sha256: content_sha256(&bytes),
        });
        (snapshot.clone(), remote_path)
    }

    #[test]
    fn a_large_restore_file_downloads_as_ranges_on_every_free_download() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let size_bytes = 2 * RANGED_FILE_BYTES_MIN as usize + 100;
        let (snapshot, path) = with_large_file(&f, size_bytes);
        let (restored, downloaded) = restore(&mut f, snapshot.clone(), 3);
        assert_eq!(restored, Ok(()));
        assert_eq!(f.remote.gets(&path), 3, "one range per download, each asked once");
        assert_eq!(f.remote.gets_running_max(), 3);
        assert_eq!(downloaded, snapshot.size_bytes());
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_restore_downloads_its_ranged_files_first_then_the_small_ones() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let (snapshot, large) = with_large_file(&f, RANGED_FILE_BYTES_MIN as usize + 100);
        let small: Vec<String> = snapshot
            .files()
            .filter(|file| file.remote_path != large)
            .map(|file| file.remote_path.clone())
            .collect();
        assert!(!small.is_empty());
        let (restored, _) = restore(&mut f, snapshot, 1);
        assert_eq!(restored, Ok(()));
        let order = f.remote.gets_in_order();
        let first_small = order.iter().position(|path| small.contains(path)).expect("small");
        assert!(
            order[..first_small].iter().all(|path| *path == large) && first_small == 1,
            "the large file's one range goes before every small file: {order:?}"
        );
    }

    #[test]
    fn a_recovery_fetches_its_segments_after_the_snapshots_downloads_never_beside_them() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let (_, large) = with_large_file(&f, 2 * RANGED_FILE_BYTES_MIN as usize + 100);
        for offset in 4..8 {
            f.tier(offset, offset + 1);
        }
        let segments = f.coordinator.manifest.lock().unwrap().segments.clone();
        for segment in &segments {
            f.remote.set_latency_ms(&segment.path(), 100);
        }
        assert_eq!(f.recover(8), Ok((1, 8)));
        assert_eq!(f.remote.gets(&large), 3, "three ranges");
        for segment in &segments {
            assert_eq!(f.remote.gets(&segment.path()), 1, "each segment downloaded once");
        }
        assert!(f.remote.gets_running_max() <= 3, "{}", f.remote.gets_running_max());
        assert_eq!(f.engine_values(), some(&["v4", "v5", "v6", "v7"]));
        assert_eq!(f.leftovers(), (vec![], 0));
    }

    #[test]
    fn a_large_restore_file_that_does_not_match_is_downloaded_again_whole_then_broken() {
        let mut f = fixture();
        f.snapshot(1, 4);
        let (snapshot, path) = with_large_file(&f, RANGED_FILE_BYTES_MIN as usize + 1);
        f.remote.corrupt(&path);
        let (restored, _) = restore(&mut f, snapshot, 3);
        assert!(matches!(restored, Err(KvRestoreError::Broken { snapshot_id: 1, .. })));
        let attempts_max = DownloadRetry::DEFAULT.attempts_max;
        assert_eq!(f.remote.gets(&path), 3 + (attempts_max - 1), "three ranges, then whole");
        assert_eq!(f.leftovers(), (vec![], 0));
    }
}
