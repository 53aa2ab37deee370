//! The leader's side of a KV snapshot: checkpoint the engine, upload what the last snapshot
//! does not already hold, commit to the coordinator, and only then raise the log's minimum
//! retain offset.
//!
//! Rules:
//! - The checkpoint and its `log_offset` are one point in time
//!   ([`KvTablet::checkpoint_blocking`]), and the checkpoint is verified against the
//!   engine's own checksums before anything of it is uploaded.
//! - An immutable engine file ([`crate::engine::KvEngineFactory::is_immutable_file`]) already
//!   in the previous committed snapshot under the same name, size and SHA-256 is reused,
//!   not uploaded again; every other file is uploaded, immutable ones to the bucket's
//!   `shared/` area under this snapshot's id, private ones to the snapshot's directory.
//! - Transient remote failures are retried with a doubling backoff, a bounded number of
//!   times; anything else ends the attempt.
//! - A commit whose answer was lost is asked again by committing again (the store's commit
//!   is idempotent), a bounded number of times.
//! - The leader never deletes a remote object: the coordinator's store decides what may go
//!   (a refused snapshot's own uploads included) and its owner deletes it; what an attempt
//!   that ends without an answer leaves behind, the orphan sweep finds later.
//! - The minimum retain offset is raised only after the commit succeeded (Fluss had a bug
//!   here: raised first, a failed commit left the log without what recovery needs).
//! - The local checkpoint directory is removed whatever the outcome, and is in the leak
//!   ledger while it exists.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::env::{Env, FsError, RemoteError};
use crate::kv::kv_error::KvError;
use crate::kv::kv_tablet::KvTablet;
use crate::ledger::ResourceKind;
use crate::mutant::Mutant;
use crate::snapshot::completed_snapshot::{
    bucket_dir, content_sha256, shared_file_path, snapshot_dir, CompletedSnapshot, SnapshotFile,
    METADATA_FILE_NAME, SNAPSHOT_FILES_MAX,
};
use crate::snapshot::snapshot_store::SnapshotStoreError;
use crate::table_bucket::TableBucket;
use crate::task::run_blocking;

/// The coordinator's answers a leader needs, over whatever transport the binding has.
pub trait SnapshotCommitter: Send + Sync + 'static {
    /// A new snapshot id for `bucket`, durable at the coordinator before it is returned.
    fn allocate_snapshot_id(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<u64, CommitterError>>;
    /// Commits `snapshot` under its leader epoch. Idempotent.
    fn commit(&self, snapshot: CompletedSnapshot)
        -> BoxFuture<'static, Result<(), CommitterError>>;
    /// The bucket's latest committed snapshot, if any.
    fn latest(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<Option<CompletedSnapshot>, CommitterError>>;
    /// The bucket's kept snapshots, newest first (what a recovery may restore from).
    fn kept(
        &self,
        bucket: TableBucket,
    ) -> BoxFuture<'static, Result<Vec<CompletedSnapshot>, CommitterError>>;
    /// Reports snapshot `snapshot_id` broken (a file missing or damaged): the coordinator
    /// forgets it, so that the previous one is used from now on. Idempotent.
    fn report_broken(
        &self,
        bucket: TableBucket,
        snapshot_id: u64,
    ) -> BoxFuture<'static, Result<(), CommitterError>>;
}

/// A coordinator call's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitterError {
    /// The coordinator answered no: final.
    #[error("refused by the coordinator: {0}")]
    Refused(SnapshotStoreError),
    /// No answer (timeout, unreachable, the coordinator's disk failed): the call may or may
    /// not have taken effect; ask again.
    #[error("no answer from the coordinator: {0}")]
    NoAnswer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUploadConfig {
    /// Where checkpoints are written on the node's own disk before upload.
    pub local_dir: String,
    /// Attempts per remote object (Fluss: 5), and per commit.
    pub attempts_max: u32,
    pub retry_backoff_ms_min: u64,
    pub retry_backoff_ms_max: u64,
}

impl Default for SnapshotUploadConfig {
    fn default() -> Self {
        SnapshotUploadConfig {
            local_dir: "kv-snapshots".into(),
            attempts_max: 5,
            retry_backoff_ms_min: 100,
            retry_backoff_ms_max: 5_000,
        }
    }
}

/// Why a snapshot attempt ended without a committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The tablet no longer leads, or its engine failed.
    #[error("checkpoint failed: {0}")]
    Checkpoint(KvError),
    #[error("local file failure: {0}")]
    Local(FsError),
    #[error("upload failed: {0}")]
    Remote(RemoteError),
    #[error("coordinator: {0}")]
    Coordinator(CommitterError),
    /// A bound was exceeded (too many files in the checkpoint).
    #[error("snapshot too large: {0}")]
    TooLarge(String),
    /// The blocking work was dropped unrun (the node is going down).
    #[error("abandoned")]
    Abandoned,
}

impl SnapshotError {
    /// Whether the next periodic attempt may do better (every cause but a final refusal or
    /// a lost leadership is passing).
    pub fn is_retriable(&self) -> bool {
        match self {
            SnapshotError::Checkpoint(error) => error.is_retriable(),
            SnapshotError::Local(_) | SnapshotError::Remote(_) | SnapshotError::Abandoned => true,
            SnapshotError::Coordinator(CommitterError::NoAnswer(_)) => true,
            SnapshotError::Coordinator(CommitterError::Refused(error)) => error.is_retriable(),
            SnapshotError::TooLarge(_) => false,
        }
    }
}

/// One checkpoint file read back for upload.
struct LocalFile {
    name: String,
    bytes: Vec<u8>,
    crc32c: u32,
    sha256: [u8; 32],
}

/// Takes one snapshot of `tablet`'s engine, unless nothing was flushed since `previous` (the
/// bucket's latest committed snapshot as the leader knows it): `Ok(None)`. On success the
/// log's minimum retain offset has been raised to the snapshot's `log_offset`.
pub async fn take_snapshot(
    env: &Env,
    tablet: &Arc<KvTablet>,
    committer: &Arc<dyn SnapshotCommitter>,
    previous: Option<&CompletedSnapshot>,
    config: &SnapshotUploadConfig,
) -> Result<Option<CompletedSnapshot>, SnapshotError> {
    let bucket = tablet.bucket();
    let previous_offset = previous.map(|snapshot| snapshot.log_offset);
    if previous_offset.is_some_and(|offset| offset >= tablet.flushed_log_offset()) {
        return Ok(None);
    }
    let snapshot_id =
        committer.allocate_snapshot_id(bucket).await.map_err(SnapshotError::Coordinator)?;
    let local_dir = format!("{}/{}/snap-{snapshot_id}", config.local_dir, bucket_dir(bucket));
    let temp_entry = env.ledger.register(
        ResourceKind::TempFile,
        format!("node{} snapshot checkpoint {local_dir}", env.node_id),
    );
    let outcome =
        checkpoint_upload_commit(env, tablet, committer, previous, config, snapshot_id, &local_dir)
            .await;
    let fs = env.fs.clone();
    let dir = local_dir.clone();
    let name = format!("remove snapshot checkpoint node{} {}", env.node_id, bucket.dir_name());
    // A failed removal leaves a directory that the next attempt of this id never reuses
    // (ids increase) and a restart clears; it does not change the outcome.
    let _ = run_blocking(&env.executor, &env.ledger, name, move || fs.remove_dir_all(&dir)).await;
    drop(temp_entry);
    let snapshot = outcome?;
    if previous_offset.is_some_and(|offset| offset >= snapshot.log_offset) {
        // Committed, but no newer than what the log already keeps for.
        return Ok(Some(snapshot));
    }
    // Only now: the coordinator holds the snapshot, so the log below it is no longer needed
    // for recovery.
    if !env.mutants.is_on(Mutant::SnapshotCommitLeavesRetainOffset) {
        tablet.log().set_min_retain_offset(snapshot.log_offset);
    }
    Ok(Some(snapshot))
}

async fn checkpoint_upload_commit(
    env: &Env,
    tablet: &Arc<KvTablet>,
    committer: &Arc<dyn SnapshotCommitter>,
    previous: Option<&CompletedSnapshot>,
    config: &SnapshotUploadConfig,
    snapshot_id: u64,
    local_dir: &str,
) -> Result<CompletedSnapshot, SnapshotError> {
    let bucket = tablet.bucket();
    let read_early = env.mutants.is_on(Mutant::SnapshotOffsetReadBeforeCheckpoint);
    let early_offset = tablet.flushed_log_offset();
    let (mut log_offset, files) = checkpoint_and_read(env, tablet, local_dir).await?;
    if read_early {
        log_offset = early_offset;
    }
    if env.mutants.is_on(Mutant::SnapshotRetainRaisedBeforeCommit) {
        tablet.log().set_min_retain_offset(log_offset);
    }
    let mut fresh_paths = Vec::new();
    let mut snapshot = CompletedSnapshot {
        bucket,
        snapshot_id,
        leader_epoch: tablet.leader_epoch(),
        log_offset,
        shared_files: Vec::new(),
        private_files: Vec::new(),
    };
    for file in files {
        let immutable = env.engines.is_immutable_file(&file.name);
        let size_bytes = file.bytes.len() as u64;
        let reused = previous.filter(|_| immutable).and_then(|previous| {
            previous.shared_files.iter().find(|shared| {
                shared.local_name == file.name
                    && shared.size_bytes == size_bytes
                    && shared.sha256 == file.sha256
            })
        });
        if let Some(reused) = reused {
            snapshot.shared_files.push(reused.clone());
            continue;
        }
        let remote_path = if immutable {
            shared_file_path(bucket, snapshot_id, &file.name)
        } else {
            format!("{}/{}", snapshot_dir(bucket, snapshot_id), file.name)
        };
        put_with_retry(env, config, &remote_path, file.bytes).await?;
        fresh_paths.push(remote_path.clone());
        let uploaded = SnapshotFile {
            remote_path,
            local_name: file.name,
            size_bytes,
            crc32c: file.crc32c,
            sha256: file.sha256,
        };
        if immutable {
            snapshot.shared_files.push(uploaded);
        } else {
            snapshot.private_files.push(uploaded);
        }
    }
    let metadata_path = format!("{}/{METADATA_FILE_NAME}", snapshot_dir(bucket, snapshot_id));
    put_with_retry(env, config, &metadata_path, snapshot.encode()).await?;
    fresh_paths.push(metadata_path);
    if env.mutants.is_on(Mutant::SnapshotAmbiguousCommitDeletesUploads) {
        if let Err(error) = committer.commit(snapshot.clone()).await {
            if matches!(error, CommitterError::NoAnswer(_)) {
                for path in &fresh_paths {
                    let _ = env.remote.delete(path).await;
                }
            }
            return Err(SnapshotError::Coordinator(error));
        }
        return Ok(snapshot);
    }
    commit_with_retry(env, committer, config, &snapshot).await?;
    Ok(snapshot)
}

/// The checkpoint, and its files read back with their checksums, as one piece of blocking
/// work.
async fn checkpoint_and_read(
    env: &Env,
    tablet: &Arc<KvTablet>,
    local_dir: &str,
) -> Result<(u64, Vec<LocalFile>), SnapshotError> {
    let tablet = tablet.clone();
    let fs = env.fs.clone();
    let engines = env.engines.clone();
    let skip_verification = env.mutants.is_on(Mutant::SnapshotCheckpointNotVerified);
    let dir = local_dir.to_string();
    let name = format!("snapshot checkpoint node{} {}", env.node_id, tablet.bucket().dir_name());
    run_blocking(&env.executor, &env.ledger, name, move || {
        // A directory left by a crashed attempt would mix its files into this one.
        fs.remove_dir_all(&dir).map_err(SnapshotError::Local)?;
        let log_offset = tablet.checkpoint_blocking(&dir).map_err(SnapshotError::Checkpoint)?;
        // Bytes that rotted on the local disk must never be uploaded and committed.
        if !skip_verification {
            engines
                .verify_checkpoint(&dir)
                .map_err(|error| SnapshotError::Checkpoint(error.into()))?;
        }
        let names = fs.list_dir(&dir).map_err(SnapshotError::Local)?;
        if names.len() > SNAPSHOT_FILES_MAX {
            return Err(SnapshotError::TooLarge(format!("{} files", names.len())));
        }
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let bytes = fs.read(&format!("{dir}/{name}")).map_err(SnapshotError::Local)?;
            let crc32c = crc32c::crc32c(&bytes);
            let sha256 = content_sha256(&bytes);
            files.push(LocalFile { name, bytes, crc32c, sha256 });
        }
        Ok((log_offset, files))
    })
    .await
    .unwrap_or(Err(SnapshotError::Abandoned))
}

async fn put_with_retry(
    env: &Env,
    config: &SnapshotUploadConfig,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), SnapshotError> {
    let mut backoff_ms = config.retry_backoff_ms_min;
    for attempt in 1..=config.attempts_max.max(1) {
        match env.remote.put(path, bytes.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retriable() && attempt < config.attempts_max => {
                tracing::debug!(path, attempt, %error, "snapshot upload retried");
                backoff(env, &mut backoff_ms, config.retry_backoff_ms_max).await;
            }
            Err(error) => return Err(SnapshotError::Remote(error)),
        }
    }
    unreachable!("the last attempt returns")
}

async fn commit_with_retry(
    env: &Env,
    committer: &Arc<dyn SnapshotCommitter>,
    config: &SnapshotUploadConfig,
    snapshot: &CompletedSnapshot,
) -> Result<(), SnapshotError> {
    let mut backoff_ms = config.retry_backoff_ms_min;
    for attempt in 1..=config.attempts_max.max(1) {
        match committer.commit(snapshot.clone()).await {
            Ok(()) => return Ok(()),
            Err(CommitterError::NoAnswer(reason)) if attempt < config.attempts_max => {
                tracing::debug!(bucket = %snapshot.bucket, attempt, reason, "snapshot commit asked again");
                backoff(env, &mut backoff_ms, config.retry_backoff_ms_max).await;
            }
            Err(error) => return Err(SnapshotError::Coordinator(error)),
        }
    }
    unreachable!("the last attempt returns")
}

async fn backoff(env: &Env, backoff_ms: &mut u64, backoff_ms_max: u64) {
    let deadline_ms = env.clock.now_mono_ms().saturating_add(*backoff_ms);
    env.clock.sleep_until(deadline_ms).await;
    *backoff_ms = backoff_ms.saturating_mul(2).min(backoff_ms_max);
}
