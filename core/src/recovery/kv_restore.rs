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
//! - At most the fetcher's `download_threads` files download at once (the bound of the
//!   remote-log fetcher, [`FetcherConfig`]), as futures polled by the restore itself (no task
//!   of its own), so at most that many files' bytes are held in memory at once.
//! - The first failure ends the restore: the downloads still running are aborted, the writes
//!   already running are waited for, and every file written is deleted (its ledger entry
//!   with it) before the error is returned.

use std::sync::Arc;

use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::engine::{EngineError, KvEngine};
use crate::env::{Env, FsError, LocalFs, RemoteError};
use crate::recovery::download_retry::DownloadRetry;
use crate::recovery::fetcher_config::FetcherConfig;
use crate::recovery::recovery_progress::RecoveryTracker;
use crate::recovery::temp_file::TempFile;
use crate::snapshot::completed_snapshot::{content_sha256, CompletedSnapshot, SnapshotFile};
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
/// most `fetcher.download_threads` files at once, each with `fetcher.retry`.
pub async fn restore_engine(
    env: &Env,
    snapshot: &CompletedSnapshot,
    engine_dir: &str,
    fetcher: &FetcherConfig,
    tracker: Option<&RecoveryTracker>,
) -> Result<Arc<dyn KvEngine>, KvRestoreError> {
    let checkpoint_dir = restore_dir(engine_dir);
    // A restore cancelled midway (its leadership call dropped) removes the directory as it
    // goes: nothing of it may outlive the restore.
    let mut guard = RestoreDirGuard { fs: env.fs.clone(), dir: Some(checkpoint_dir.clone()) };
    let restored =
        download_and_open(env, snapshot, engine_dir, &checkpoint_dir, fetcher, tracker).await;
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
) -> Result<Arc<dyn KvEngine>, KvRestoreError> {
    let (fs, dir) = (env.fs.clone(), checkpoint_dir.to_string());
    blocking(env, format!("prepare {checkpoint_dir}"), move || {
        fs.remove_dir_all(&dir)?;
        fs.create_dir_all(&dir)
    })
    .await?
    .map_err(KvRestoreError::Local)?;
    // Deleted when dropped: once the engine has copied them, or on any failure.
    let files = download_files(env, snapshot, checkpoint_dir, fetcher, tracker).await?;
    let (engines, dir, target) =
        (env.engines.clone(), checkpoint_dir.to_string(), engine_dir.to_string());
    let snapshot_id = snapshot.snapshot_id;
    let engine = blocking(env, format!("open {checkpoint_dir}"), move || {
        engines
            .verify_checkpoint(&dir)
            .map_err(|error| KvRestoreError::Broken { snapshot_id, detail: error.to_string() })?;
        engines.open_checkpoint(&dir, &target).map_err(KvRestoreError::Engine)
    })
    .await??;
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

/// Every file of `snapshot`, written into `checkpoint_dir`, at most
/// `fetcher.download_threads` downloading at once. On the first failure the downloads still
/// running are aborted and the writes still running waited for; every file written is then
/// deleted (dropped) before the failure is returned.
async fn download_files(
    env: &Env,
    snapshot: &CompletedSnapshot,
    checkpoint_dir: &str,
    fetcher: &FetcherConfig,
    tracker: Option<&RecoveryTracker>,
) -> Result<Vec<TempFile>, KvRestoreError> {
    // The configuration is validated by its owner; a zero would never download anything.
    let download_threads = fetcher.download_threads.max(1);
    let owner = format!("node{} restore {}", env.node_id, snapshot.bucket);
    let mut pending = snapshot.files();
    let mut running = FuturesUnordered::new();
    // The abort handles of the downloads started, aborted together on the first failure
    // (aborting a download that has finished does nothing: its write runs to its end).
    let mut aborts: Vec<AbortHandle> = Vec::new();
    let mut files = Vec::new();
    let mut failure: Option<KvRestoreError> = None;
    loop {
        while failure.is_none() && running.len() < download_threads {
            let Some(file) = pending.next() else { break };
            let (abort, registration) = AbortHandle::new_pair();
            aborts.push(abort);
            let path = format!("{checkpoint_dir}/{}", file.local_name);
            let download = Abortable::new(
                download_checked(env, snapshot.snapshot_id, file, &fetcher.retry),
                registration,
            );
            running.push(download_file(env, download, path, &owner));
        }
        let Some(outcome) = running.next().await else { break };
        match outcome {
            Ok(file) => {
                if let Some(tracker) = tracker {
                    tracker.update(|progress| progress.bytes_downloaded += file.size_bytes());
                }
                files.push(file);
            }
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
        None => Ok(files),
        Some(error) => Err(error),
    }
}

/// The file `download` brings, written to `path` as a [`TempFile`] of `owner` (in the ledger
/// before its first byte is written).
async fn download_file(
    env: &Env,
    download: Abortable<impl std::future::Future<Output = Result<Vec<u8>, KvRestoreError>>>,
    path: String,
    owner: &str,
) -> Result<TempFile, KvRestoreError> {
    let bytes = match download.await {
        Ok(downloaded) => downloaded?,
        Err(futures::future::Aborted) => return Err(KvRestoreError::Abandoned),
    };
    let mut temp = TempFile::register(env.fs.clone(), &env.ledger, path, owner);
    let written =
        blocking(env, format!("write {}", temp.path()), move || temp.write(&bytes).map(|()| temp))
            .await?;
    written.map_err(KvRestoreError::Local)
}

/// `file`'s bytes, checked against its record, after at most `retry.attempts_max` attempts.
async fn download_checked(
    env: &Env,
    snapshot_id: u64,
    file: &SnapshotFile,
    retry: &DownloadRetry,
) -> Result<Vec<u8>, KvRestoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match env.remote.get(&file.remote_path).await {
            Ok(bytes)
                if bytes.len() as u64 == file.size_bytes
                    && crc32c::crc32c(&bytes) == file.crc32c
                    && content_sha256(&bytes) == file.sha256 =>
            {
                return Ok(bytes);
            }
            // Damaged in transit or at rest: a retry tells the two apart.
            Ok(_) => {
                RemoteError::Corrupt(format!("{} does not match its record", file.remote_path))
            }
            Err(error) => error,
        };
        // A missing object may be a listing that has not caught up yet: asked again too.
        let retriable = failure.is_retriable() || matches!(failure, RemoteError::NotFound(_));
        if !retriable || attempt >= retry.attempts_max {
            if matches!(failure, RemoteError::Corrupt(_) | RemoteError::NotFound(_)) {
                return Err(KvRestoreError::Broken { snapshot_id, detail: failure.to_string() });
            }
            return Err(KvRestoreError::Remote { path: file.remote_path.clone(), source: failure });
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
