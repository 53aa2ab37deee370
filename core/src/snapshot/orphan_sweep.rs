//! The orphan sweep: remote objects that nothing kept needs any more, found by a listing and
//! deleted. It finds what a crash cut short: an upload whose snapshot never committed, and a
//! deletion that a crashed coordinator had not finished (its snapshots' records are gone,
//! so nothing else remembers their files).
//!
//! It runs whenever the coordinator's stores open. With no upload in flight (a node's start,
//! before it leads any bucket) every object no kept snapshot needs is an orphan, and every
//! remote-log object that no manifest records. With uploads in flight (a coordinator that
//! restarts while tablet servers keep uploading) only files of snapshot ids that can no
//! longer commit are (`SnapshotStore::orphans`), and remote-log objects are left alone: a
//! segment is uploaded before its manifest records it.

use std::sync::Arc;

use crate::env::remote_retry::with_remote_retries;
use crate::env::{Clock, RemoteError, RemoteStorage};
use crate::snapshot::snapshot_service::delete_remote_objects;
use crate::snapshot::SnapshotStore;
use crate::tiering::{RemoteLogStore, REMOTE_LOG_ROOT};

/// Where every snapshot object lives in the remote store.
pub const SNAPSHOT_REMOTE_ROOT: &str = "kv/";

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    /// Orphans found.
    pub orphans: usize,
    /// Of those, the ones still there after the deletion's retries (the next sweep's).
    pub left: usize,
}

/// Whether a leader may be uploading while the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploads {
    /// No bucket is led: nothing can be in flight.
    Idle,
    /// Leaders may be uploading snapshots and tiering segments.
    InFlight,
}

/// Lists the remote store and deletes the orphans of `store` (and, idle only, of
/// `remote_logs`). Each listing and deletion is retried (`remote_retry`); fails only when the
/// remote store cannot be listed.
pub async fn sweep_orphans(
    remote: &Arc<dyn RemoteStorage>,
    clock: &Arc<dyn Clock>,
    store: &SnapshotStore,
    remote_logs: Option<&RemoteLogStore>,
    uploads: Uploads,
) -> Result<SweepOutcome, RemoteError> {
    let listed = with_remote_retries(clock, || remote.list(SNAPSHOT_REMOTE_ROOT)).await?;
    let mut orphans = store.sweep_orphans(&listed, uploads == Uploads::InFlight);
    if let (Some(remote_logs), Uploads::Idle) = (remote_logs, uploads) {
        let listed_logs = with_remote_retries(clock, || remote.list(REMOTE_LOG_ROOT)).await?;
        orphans.extend(remote_logs.orphans(&listed_logs));
    }
    if orphans.is_empty() {
        return Ok(SweepOutcome::default());
    }
    let count = orphans.len();
    let left = delete_remote_objects(remote.clone(), clock.clone(), orphans).await;
    tracing::info!(orphans = count, left = left.len(), "kv snapshot orphan sweep");
    Ok(SweepOutcome { orphans: count, left: left.len() })
}
