//! A bucket's engine rebuilt from a committed KV snapshot, for a replica that must lead but
//! whose local engine cannot be brought up to date from the local log (its directory was lost
//! after local retention deleted the early segments). The snapshot's files are downloaded
//! (size, CRC-32C and SHA-256 checked; transient failures retried with backoff) into a
//! temporary checkpoint directory beside the engine's, each a [`TempFile`] in the leak
//! ledger, verified by the engine, and opened in the engine's directory; the temporary
//! directory is removed whatever happens. The replay from the snapshot's `log_offset` is the
//! caller's (the KV tablet's usual rebuild).
//!
//! Rules:
//! - At most the fetcher's `download_threads` requests run at once (the bound of the
//!   remote-log fetcher, [`FetcherConfig`]), as futures polled by the restore itself (no task
//!   of its own), and at most that many files are held (downloading or being written), so at
//!   most that many files' bytes are in memory at once. A file larger than
//!   [`RANGED_FILE_BYTES_MIN`] downloads as `download_threads` ranges that the free downloads
//!   share (one large table file does not leave the others idle); it is checked whole in the
//!   blocking work that writes it (not on the loop that keeps the downloads busy), and
//!   downloaded again whole (with the attempts left) on a mismatch.
//! - The first failure ends the restore: the downloads still running are aborted, the writes
//!   already running are waited for, and every file written is deleted (its ledger entry
//!   with it) before the error is returned.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::engine::{EngineError, KvEngine};
use crate::env::{Env, FsError, LocalFs, RemoteError};
use crate::mutant::{Mutant, Mutants};
use crate::recovery::download_retry::DownloadRetry;
use crate::recovery::fetcher_config::FetcherConfig;
use crate::recovery::recovery_progress::RecoveryTracker;
use crate::recovery::temp_file::TempFile;
use crate::snapshot::completed_snapshot::{CompletedSnapshot, SnapshotFile};
use crate::task::run_blocking;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvRestoreError {
    /// A download failed after its retries (or with a failure that retrying cannot help).
    #[error("downloading {path}: {source}")]
    Remote { path: String, source: RemoteError },
    /// A file is missing or does not match its record, or the engine refuses the checkpoint:
    /// the snapshot is broken and another one must be used.
    #[error("snapshot {snapshot_id} is broken: {detail}")]
    Broken { snapshot_id: u64, detail: String },
    #[error("local file system: {0}")]
    Local(FsError),
    #[error("engine: {0}")]
    Engine(EngineError),
    /// The blocking work was dropped unrun (a crash in the simulator).
    #[error("the restore was abandoned")]
    Abandoned,
}

impl KvRestoreError {
    /// True when the same restore may succeed if repeated.
    pub fn is_retriable(&self) -> bool {
        match self {
            KvRestoreError::Remote { source, .. } => source.is_retriable(),
            KvRestoreError::Broken { .. } => false,
            KvRestoreError::Local(error) => error.is_retriable(),
            KvRestoreError::Engine(error) => error.is_retriable(),
            KvRestoreError::Abandoned => true,
        }
    }
}

/// The temporary checkpoint directory of a restore into `engine_dir`.
pub fn restore_dir(engine_dir: &str) -> String {
    format!("{engine_dir}{RESTORE_SUFFIX}")
}

pub(crate) const RESTORE_SUFFIX: &str = ".restore";

/// Replaces whatever is in `engine_dir` with `snapshot`'s engine and opens it, downloading at
/// most `fetcher.download_threads` files at once, each with `fetcher.retry`. `downloaded` runs
/// once every file has been downloaded and checked, beside the last writes and the engine's
/// check and open (a recovery starts its remote-log fetcher there, which keeps the download
/// bound: the snapshot's downloads are over); it is dropped unrun when the restore fails
/// before.
pub async fn restore_engine(
    env: &Env,
    snapshot: &CompletedSnapshot,
    engine_dir: &str,
    fetcher: &FetcherConfig,
    tracker: Option<&RecoveryTracker>,
    downloaded: impl Future<Output = ()> + Send,
) -> Result<Arc<dyn KvEngine>, KvRestoreError> {
    let checkpoint_dir = restore_dir(engine_dir);
    // A restore cancelled midway (its leadership call dropped) removes the directory as it
    // goes: nothing of it may outlive the restore.
    let mut guard = RestoreDirGuard { fs: env.fs.clone(), dir: Some(checkpoint_dir.clone()) };
    let restored =
        download_and_open(env, snapshot, engine_dir, &checkpoint_dir, fetcher, tracker, downloaded)
            .await;
    let fs = env.fs.clone();
    let dir = checkpoint_dir.clone();
    let name = format!("remove {checkpoint_dir} node{}", env.node_id);
    match run_blocking(&env.executor, &env.ledger, name, move || fs.remove_dir_all(&dir)).await {
        Some(Ok(())) => guard.dir = None,
        // Left for the next restore or the server's next start, which remove it.
        Some(Err(error)) => {
            guard.dir = None;
            tracing::warn!(dir = checkpoint_dir, %error, "failed to remove a restore directory");
        }
        // The removal was dropped unrun: the guard removes the directory now.
        None => {}
    }
    restored
}

/// Removes a restore's directory when the restore is dropped before it removed it itself.
struct RestoreDirGuard {
    fs: Arc<dyn LocalFs>,
    dir: Option<String>,
}

impl Drop for RestoreDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if let Err(error) = self.fs.remove_dir_all(&dir) {
                tracing::warn!(dir, %error, "failed to remove a cancelled restore's directory");
            }
        }
    }
}

async fn download_and_open(
    env: &Env,
    snapshot: &CompletedSnapshot,
    engine_dir: &str,
    checkpoint_dir: &str,
    fetcher: &FetcherConfig,
    tracker: Option<&RecoveryTracker>,
    downloaded: impl Future<Output = ()> + Send,
) -> Result<Arc<dyn KvEngine>, KvRestoreError> {
    let (fs, dir) = (env.fs.clone(), checkpoint_dir.to_string());
    blocking(env, format!("prepare {checkpoint_dir}"), move || {
        fs.remove_dir_all(&dir)?;
        fs.create_dir_all(&dir)
    })
    .await?
    .map_err(KvRestoreError::Local)?;
    // Deleted when dropped: once the engine has copied them, or on any failure.
    let files = download_files(env, snapshot, checkpoint_dir, fetcher, tracker, downloaded).await?;
    let (engines, dir, target) =
        (env.engines.clone(), checkpoint_dir.to_string(), engine_dir.to_string());
    let (fs, snapshot_id, mutants) = (env.fs.clone(), snapshot.snapshot_id, env.mutants);
    let records: Vec<SnapshotFile> = snapshot.files().cloned().collect();
    let open = blocking(env, format!("open {checkpoint_dir}"), move || {
        if let Err(error) = engines.verify_checkpoint(&dir) {
            let local = LocalCopy { fs: fs.as_ref(), dir: &dir, records: &records };
            return Err(checkpoint_failure(snapshot_id, error, &local, mutants));
        }
        engines.open_checkpoint(&dir, &target).map_err(KvRestoreError::Engine)
    });
    let engine = open.await??;
    drop(files);
    let flushed = engine.flushed_log_offset().map_err(KvRestoreError::Engine)?.unwrap_or(0);
    if flushed != snapshot.log_offset {
        return Err(KvRestoreError::Broken {
            snapshot_id,
            detail: format!(
                "its engine holds flushed offset {flushed}, its record says {}",
                snapshot.log_offset
            ),
        });
    }
    Ok(engine)
}

/// A file larger than this downloads as `download_threads` ranges of (nearly) equal size, so
/// that one large table file keeps every download busy; a smaller one in one request.
pub const RANGED_FILE_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// What one of the restore's futures ended with.
enum Event {
    /// A whole file, checked against its record.
    Whole { file: usize, outcome: Result<Vec<u8>, KvRestoreError> },
    /// Range `index` of a file downloaded in ranges (checked once the file is whole).
    Range { file: usize, index: usize, outcome: Result<Vec<u8>, KvRestoreError> },
    /// A file downloaded in ranges, checked: its parts, or `None` when they do not match its
    /// record.
    Checked { file: usize, outcome: Result<Option<Vec<Vec<u8>>>, KvRestoreError> },
    /// A file written and synced.
    Written { outcome: Result<TempFile, KvRestoreError> },
    /// The caller's `downloaded` future ended.
    Downloaded,
}

/// A file downloading in ranges: the ranges received so far, in place.
struct Ranges {
    range_bytes: u64,
    parts: Vec<Option<Vec<u8>>>,
    next_range: usize,
    received: usize,
}

/// Every file of `snapshot`, written into `checkpoint_dir` and synced. At most
/// `fetcher.download_threads` requests run at once, and at most that many files are held
/// (downloading, or downloaded and being checked or written) at once, so at most that many
/// files' bytes are in memory. The files downloaded in ranges go first, largest first, then
/// the others, smallest first. A file of more than
/// [`RANGED_FILE_BYTES_MIN`] downloads as ranges, which the free downloads take before a new
/// file is started; the whole is checked against the file's record (a mismatch downloads it
/// again whole, with the attempts left). `downloaded` runs once every file has been
/// downloaded and checked (no download can follow), beside the last writes and syncs. On the
/// first failure the downloads still running are aborted and the writes still running waited
/// for; every file written is then deleted (dropped) before the failure is returned.
async fn download_files<'a>(
    env: &'a Env,
    snapshot: &'a CompletedSnapshot,
    checkpoint_dir: &str,
    fetcher: &'a FetcherConfig,
    tracker: Option<&RecoveryTracker>,
    downloaded: impl Future<Output = ()> + Send + 'a,
) -> Result<Vec<TempFile>, KvRestoreError> {
    // The configuration is validated by its owner; a zero would never download anything.
    let configured_threads = if env.mutants.is_on(Mutant::RestoreThreadsFromDefault) {
        FetcherConfig::DEFAULT.download_threads
    } else {
        fetcher.download_threads
    };
    let download_threads = configured_threads.max(1)
        + usize::from(env.mutants.is_on(Mutant::RestoreDownloadsBeyondThreads));
    let retry = &fetcher.retry;
    let snapshot_id = snapshot.snapshot_id;
    let owner = format!("node{} restore {}", env.node_id, snapshot.bucket);
    // The files that download in ranges first, largest first, then the others smallest
    // first. A large file's check, write and sync then overlap the downloads that follow,
    // where a large file last left them all idle after its last range (smallest first
    // throughout, the kv_recovery bench's 256 MiB restore spent 0.3 s there: 1.44 of the
    // bound, 1.34 this way); the small files, whose time is mostly the request's latency,
    // run side by side at the end.
    let mut files: Vec<&SnapshotFile> = snapshot.files().collect();
    files.sort_by_key(|file| {
        let ranged = file.size_bytes > RANGED_FILE_BYTES_MIN;
        (!ranged, if ranged { u64::MAX - file.size_bytes } else { file.size_bytes })
    });
    let mut running: FuturesUnordered<BoxFuture<'a, Event>> = FuturesUnordered::new();
    // The abort handles of the downloads started, aborted together on the first failure
    // (aborting a download that has finished does nothing: a write runs to its end).
    let mut aborts: Vec<AbortHandle> = Vec::new();
    let mut downloads = 0;
    // Files downloaded in ranges whose check is running.
    let mut checks = 0;
    // Files started and not yet written (their bytes may be in memory).
    let mut held = 0;
    let mut next_file = 0;
    let mut ranged: BTreeMap<usize, Ranges> = BTreeMap::new();
    // Files downloaded in ranges that did not match their record: downloaded again whole.
    let mut again_whole: VecDeque<usize> = VecDeque::new();
    let mut downloaded = Some(downloaded);
    let mut written = Vec::new();
    let mut failure: Option<KvRestoreError> = None;
    loop {
        while failure.is_none() && downloads < download_threads {
            let (abort, registration) = AbortHandle::new_pair();
            let started: BoxFuture<'a, Event> = if let Some(index) = again_whole.pop_front() {
                // The ranged download was its first attempt.
                let attempts_max = retry.attempts_max - 1;
                let file = files[index];
                let download = download_checked(env, snapshot_id, file, retry, attempts_max);
                whole(index, Abortable::new(download, registration))
            } else if let Some((&index, range)) =
                ranged.iter_mut().find(|(_, range)| range.next_range < range.parts.len())
            {
                let part = range.next_range;
                range.next_range += 1;
                let start = part as u64 * range.range_bytes;
                let end = (start + range.range_bytes).min(files[index].size_bytes);
                let download = download_range(env, snapshot_id, files[index], start..end, retry);
                let download = Abortable::new(download, registration);
                async move {
                    let outcome = download.await.unwrap_or(Err(KvRestoreError::Abandoned));
                    Event::Range { file: index, index: part, outcome }
                }
                .boxed()
            } else if held < download_threads && next_file < files.len() {
                let (index, file) = (next_file, files[next_file]);
                next_file += 1;
                held += 1;
                if file.size_bytes > RANGED_FILE_BYTES_MIN {
                    let range_bytes = file.size_bytes.div_ceil(download_threads as u64);
                    let count = file.size_bytes.div_ceil(range_bytes) as usize;
                    let parts = (0..count).map(|_| None).collect();
                    ranged.insert(index, Ranges { range_bytes, parts, next_range: 0, received: 0 });
                    continue;
                }
                let download = download_checked(env, snapshot_id, file, retry, retry.attempts_max);
                whole(index, Abortable::new(download, registration))
            } else {
                break;
            };
            aborts.push(abort);
            downloads += 1;
            running.push(started);
        }
        let nothing_to_download = downloads == 0
            && checks == 0
            && next_file == files.len()
            && again_whole.is_empty()
            && ranged.is_empty();
        let start_fetcher =
            nothing_to_download || env.mutants.is_on(Mutant::RestoreFetcherStartsBesideDownloads);
        if failure.is_none() && start_fetcher {
            if let Some(downloaded) = downloaded.take() {
                running.push(downloaded.map(|()| Event::Downloaded).boxed());
            }
        }
        let Some(event) = running.next().await else { break };
        let outcome = match event {
            Event::Downloaded => Ok(()),
            Event::Written { outcome } => {
                held -= 1;
                outcome.map(|file| {
                    if let Some(tracker) = tracker {
                        let size_bytes = file.size_bytes();
                        tracker.update(|progress| progress.bytes_downloaded += size_bytes);
                    }
                    written.push(file);
                })
            }
            Event::Checked { file, outcome: Ok(None) } => {
                checks -= 1;
                // Still held: downloaded again whole, or the snapshot is broken.
                let path = &files[file].remote_path;
                // The caller's future starts only once every check has ended, so this second
                // download never runs beside its downloads.
                assert!(downloaded.is_some(), "a check ended after the caller's future started");
                if retry.attempts_max <= 1 {
                    let failure = RemoteError::Corrupt(format!("{path} does not match its record"));
                    Err(final_failure(env, snapshot_id, files[file], failure).await)
                } else {
                    tracing::debug!(path, "a file downloaded in ranges does not match its record");
                    again_whole.push_back(file);
                    Ok(())
                }
            }
            Event::Checked { file, outcome: Ok(Some(parts)) } => {
                checks -= 1;
                if failure.is_none() {
                    let path = format!("{checkpoint_dir}/{}", files[file].local_name);
                    running.push(write_file(env, path, &owner, parts));
                }
                Ok(())
            }
            Event::Checked { outcome: Err(error), .. } => {
                checks -= 1;
                Err(error)
            }
            Event::Whole { file, outcome } => {
                downloads -= 1;
                outcome.map(|bytes| {
                    if failure.is_none() {
                        let path = format!("{checkpoint_dir}/{}", files[file].local_name);
                        running.push(write_file(env, path, &owner, vec![bytes]));
                    }
                })
            }
            Event::Range { file, index, outcome } => {
                downloads -= 1;
                outcome.map(|bytes| {
                    let range = ranged.get_mut(&file).expect("a ranged file is held");
                    range.parts[index] = Some(bytes);
                    range.received += 1;
                    if range.received == range.parts.len() && failure.is_none() {
                        let range = ranged.remove(&file).expect("just found");
                        let parts = range.parts.into_iter().flatten().collect();
                        checks += 1;
                        running.push(check_file(env, file, files[file].clone(), parts));
                    }
                })
            }
        };
        match outcome {
            Ok(()) => {}
            // An aborted download's own outcome; the failure that aborted it is kept.
            Err(error) if failure.is_some() => {
                tracing::debug!(%error, "a restore download ended after another failed");
            }
            Err(error) => {
                for abort in &aborts {
                    abort.abort();
                }
                failure = Some(error);
            }
        }
    }
    // On a failure, the files written are dropped (deleted) here.
    match failure {
        None => Ok(written),
        Some(error) => Err(error),
    }
}

fn whole<'a>(
    file: usize,
    download: Abortable<impl Future<Output = Result<Vec<u8>, KvRestoreError>> + Send + 'a>,
) -> BoxFuture<'a, Event> {
    async move {
        let outcome = download.await.unwrap_or(Err(KvRestoreError::Abandoned));
        Event::Whole { file, outcome }
    }
    .boxed()
}

/// Whether `parts`, downloaded in ranges, are `record`'s bytes, checked as blocking work (off
/// the loop that keeps the downloads busy).
fn check_file<'a>(
    env: &'a Env,
    file: usize,
    record: SnapshotFile,
    parts: Vec<Vec<u8>>,
) -> BoxFuture<'a, Event> {
    async move {
        let checked = blocking(env, format!("check {}", record.remote_path), move || {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            matches_record(&record, &slices).then_some(parts)
        });
        Event::Checked { file, outcome: checked.await }
    }
    .boxed()
}

/// `parts`, one after the other, written to `path` as a [`TempFile`] of `owner` (in the
/// ledger before its first byte is written) and synced, as blocking work that runs to its end
/// even when the restore fails. Synced here, while other files still download: the engine
/// opened on the checkpoint must survive a crash, and its copy (which syncs every file) then
/// finds nothing left to write back.
fn write_file<'a>(
    env: &'a Env,
    path: String,
    owner: &str,
    parts: Vec<Vec<u8>>,
) -> BoxFuture<'a, Event> {
    let mut temp = TempFile::register(env.fs.clone(), &env.ledger, path, owner);
    async move {
        let written = blocking(env, format!("write {}", temp.path()), move || {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            temp.write_parts(&parts)?;
            temp.sync().map(|()| temp)
        })
        .await;
        let outcome = written.and_then(|written| written.map_err(KvRestoreError::Local));
        Event::Written { outcome }
    }
    .boxed()
}

/// Whether `parts`, one after the other, are `file`'s bytes, by size, CRC-32C and SHA-256.
fn matches_record(file: &SnapshotFile, parts: &[&[u8]]) -> bool {
    use sha2::Digest;
    let size_bytes: u64 = parts.iter().map(|part| part.len() as u64).sum();
    if size_bytes != file.size_bytes {
        return false;
    }
    let (mut crc32c, mut sha256) = (0, sha2::Sha256::new());
    for part in parts {
        crc32c = crc32c::crc32c_append(crc32c, part);
        sha256.update(part);
    }
    crc32c == file.crc32c && <[u8; 32]>::from(sha256.finalize()) == file.sha256
}

/// `range` of `file`, after at most `retry.attempts_max` attempts; a missing object is asked
/// again too, as a whole file is. The bytes are checked once the file is whole.
async fn download_range(
    env: &Env,
    snapshot_id: u64,
    file: &SnapshotFile,
    range: std::ops::Range<u64>,
    retry: &DownloadRetry,
) -> Result<Vec<u8>, KvRestoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match env.remote.get_range(&file.remote_path, range.clone()).await {
            Ok(bytes) => return Ok(bytes),
            Err(error) => error,
        };
        let retriable = failure.is_retriable() || matches!(failure, RemoteError::NotFound(_));
        if !retriable || attempt >= retry.attempts_max {
            return Err(final_failure(env, snapshot_id, file, failure).await);
        }
        let backoff_ms = retry.backoff_ms(attempt, env.entropy.as_ref());
        env.clock.sleep(backoff_ms).await;
    }
}

/// The downloaded files of a restore, on the local disk, with their records.
struct LocalCopy<'a> {
    fs: &'a dyn LocalFs,
    dir: &'a str,
    records: &'a [SnapshotFile],
}

impl LocalCopy<'_> {
    /// The first file whose local copy no longer matches its record (every file matched when
    /// it was written), or a failure to read one.
    fn damaged_file(&self) -> Result<Option<&str>, FsError> {
        for record in self.records {
            let bytes = self.fs.read(&format!("{}/{}", self.dir, record.local_name))?;
            if !matches_record(record, &[&bytes]) {
                return Ok(Some(&record.local_name));
            }
        }
        Ok(None)
    }
}

/// A failed check of the downloaded checkpoint: only damage to the snapshot itself breaks it.
/// An I/O failure of the local disk that holds the download says nothing about the snapshot,
/// and neither does damage done on that disk after the download (each file matched its
/// record when it was written: a copy that no longer does rotted locally). A healthy snapshot
/// reported broken is forgotten by the coordinator, after which remote retention may delete
/// the log that only it made unnecessary.
fn checkpoint_failure(
    snapshot_id: u64,
    error: EngineError,
    local: &LocalCopy<'_>,
    mutants: Mutants,
) -> KvRestoreError {
    if mutants.is_on(Mutant::RestoreLocalFailureBreaksSnapshot) {
        return KvRestoreError::Broken { snapshot_id, detail: error.to_string() };
    }
    if !matches!(error, EngineError::Corrupt(_)) {
        return KvRestoreError::Engine(error);
    }
    // The mutant: damage found by the engine is taken for the snapshot's, unasked.
    if mutants.is_on(Mutant::RestoreLocalDamageBreaksSnapshot) {
        return KvRestoreError::Broken { snapshot_id, detail: error.to_string() };
    }
    match local.damaged_file() {
        Ok(None) => KvRestoreError::Broken { snapshot_id, detail: error.to_string() },
        Ok(Some(name)) => KvRestoreError::Local(FsError::Io(format!(
            "{}/{name} was damaged on the local disk after its download ({error})",
            local.dir
        ))),
        Err(read) => KvRestoreError::Local(read),
    }
}

/// A download's last failure. A file damaged breaks the snapshot; so does a missing one, but
/// only once a listing confirms that it is gone: a healthy snapshot reported broken is
/// forgotten by the coordinator (and remote retention may then delete the log that only it
/// made unnecessary), so a not-found that the listing contradicts (a reader racing a store
/// that has not caught up) or cannot check is a failed download, not damage.
async fn final_failure(
    env: &Env,
    snapshot_id: u64,
    file: &SnapshotFile,
    failure: RemoteError,
) -> KvRestoreError {
    let broken = || KvRestoreError::Broken { snapshot_id, detail: failure.to_string() };
    let retry_later = |source| KvRestoreError::Remote { path: file.remote_path.clone(), source };
    match &failure {
        RemoteError::Corrupt(_) => broken(),
        RemoteError::NotFound(_)
            if env.mutants.is_on(Mutant::RestoreNotFoundUnconfirmedBreaksSnapshot) =>
        {
            broken()
        }
        RemoteError::NotFound(_) => match env.remote.list(&file.remote_path).await {
            Ok(listed) if listed.iter().all(|object| object.path != file.remote_path) => broken(),
            Ok(_) => retry_later(RemoteError::Transient(format!("{failure}, yet listed"))),
            // Not known to be gone: the listing's own failure says whether to retry.
            Err(listing) => retry_later(listing),
        },
        _ => retry_later(failure.clone()),
    }
}

/// `file`'s bytes, checked against its record, after at most `attempts_max` attempts.
async fn download_checked(
    env: &Env,
    snapshot_id: u64,
    file: &SnapshotFile,
    retry: &DownloadRetry,
    attempts_max: u32,
) -> Result<Vec<u8>, KvRestoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match env.remote.get(&file.remote_path).await {
            Ok(bytes) if matches_record(file, &[&bytes]) => return Ok(bytes),
            // Damaged in transit or at rest: a retry tells the two apart.
            Ok(_) => {
                RemoteError::Corrupt(format!("{} does not match its record", file.remote_path))
            }
            Err(error) => error,
        };
        // A missing object may be a listing that has not caught up yet: asked again too.
        let retriable = failure.is_retriable() || matches!(failure, RemoteError::NotFound(_));
        if !retriable || attempt >= attempts_max {
            return Err(final_failure(env, snapshot_id, file, failure).await);
        }
        let backoff_ms = retry.backoff_ms(attempt, env.entropy.as_ref());
        env.clock.sleep(backoff_ms).await;
    }
}

async fn blocking<R: Send + 'static>(
    env: &Env,
    what: String,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, KvRestoreError> {
    let name = format!("{what} node{}", env.node_id);
    run_blocking(&env.executor, &env.ledger, name, work).await.ok_or(KvRestoreError::Abandoned)
}
