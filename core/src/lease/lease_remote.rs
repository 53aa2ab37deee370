//! The remote copies of the coordinator's leases: where they live in remote storage, how they
//! are fetched at start-up, and how one is put.
//!
//! Layout: `coordinator/kv-snapshot-leases/{hex of the lease id}/{version, 20 digits}.lease`,
//! holding the bytes of the lease's local file at that version (`lease_file`: checksummed,
//! with the lease id and the version inside). A lease's copies are versioned objects, never
//! overwritten: a new version is put beside the old one, and the old one is deleted only once
//! the new one is confirmed (new state written before the old is removed, as Fluss writes its
//! ZooKeeper node and per-table files), so two puts of one lease in flight at once cannot
//! leave the older on top. The rule that chooses between copies is
//! `KvSnapshotLeaseManager::open_with_remote`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::remote_retry::with_remote_retries;
use crate::env::{Clock, RemoteError, RemoteStorage};
use crate::lease::lease_error::LeaseError;
use crate::lease::lease_file::{lease_file_name, LEASE_FILE_SUFFIX};
use crate::lease::lease_manager::KvSnapshotLeaseManager;

/// Where every remote lease copy lives, relative to the remote store's root.
pub const REMOTE_LEASE_ROOT: &str = "coordinator/kv-snapshot-leases/";

/// The remote path of `lease_id`'s copy at `version`.
pub fn remote_lease_path(lease_id: &str, version: u64) -> String {
    let file_name = lease_file_name(lease_id);
    let hex = file_name.strip_suffix(LEASE_FILE_SUFFIX).unwrap_or(&file_name);
    format!("{REMOTE_LEASE_ROOT}{hex}/{version:020}{LEASE_FILE_SUFFIX}")
}

/// The hex lease id and the version a remote copy's path names; `None` for any other path.
pub fn parse_remote_lease_path(path: &str) -> Option<(&str, u64)> {
    let rest = path.strip_prefix(REMOTE_LEASE_ROOT)?;
    let (hex, file) = rest.split_once('/')?;
    let digits = file.strip_suffix(LEASE_FILE_SUFFIX)?;
    if hex.is_empty() || digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((hex, digits.parse().ok()?))
}

/// Every object under [`REMOTE_LEASE_ROOT`] and its bytes, as fetched at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteLeaseCopies {
    pub objects: BTreeMap<String, Vec<u8>>,
}

/// Lists and reads every remote lease copy, each read retried with backoff on transient
/// failures. A failure is the start-up's: without the copies, the leases of a lost local
/// directory could not be told from leases that never were.
pub async fn fetch_remote_lease_copies(
    remote: Arc<dyn RemoteStorage>,
    clock: Arc<dyn Clock>,
) -> Result<RemoteLeaseCopies, LeaseError> {
    let listed = with_remote_retries(&clock, || remote.list(REMOTE_LEASE_ROOT))
        .await
        .map_err(LeaseError::Remote)?;
    let mut copies = RemoteLeaseCopies::default();
    for object in listed {
        let bytes = match with_remote_retries(&clock, || remote.get(&object.path)).await {
            Ok(bytes) => bytes,
            // Deleted since the listing (a deletion of an earlier incarnation still running).
            Err(RemoteError::NotFound(_)) => continue,
            Err(error) => return Err(LeaseError::Remote(error)),
        };
        copies.objects.insert(object.path, bytes);
    }
    Ok(copies)
}

/// Brings remote storage up to `leases`: puts the copies that are behind, one after the other
/// (each retried), then deletes the copies to go (of leases gone, and those superseded by a
/// confirmed newer one), a lease's oldest first, stopping at a lease's first failure, so that
/// what a failure leaves of a lease is its newest copies (never an older one alone). `None`
/// when there is nothing to do, and always for leases kept locally only. What fails stays to
/// do: the next call (every lease request and every expiry check makes one, and the start) tries again.
pub fn mirror_leases(
    leases: &Arc<KvSnapshotLeaseManager>,
    remote: &Arc<dyn RemoteStorage>,
    clock: &Arc<dyn Clock>,
) -> Option<BoxFuture<'static, ()>> {
    if !leases.has_remote_work() {
        return None;
    }
    let puts = leases.take_remote_puts();
    let (leases, remote, clock) = (leases.clone(), remote.clone(), clock.clone());
    let mirroring = async move {
        for put in puts {
            let result = put_remote_lease_copy(&remote, &clock, &put.path, put.bytes).await;
            if let Err(error) = &result {
                tracing::warn!(%error, lease_id = put.lease_id, "a remote lease copy is behind");
            }
            leases.finish_remote_put(&put.lease_id, put.version, result.is_ok());
        }
        let mut failed_leases = BTreeSet::new();
        for path in leases.remote_deletions() {
            let lease_dir = path.rsplit_once('/').map_or(path.as_str(), |(dir, _)| dir).to_string();
            if failed_leases.contains(&lease_dir) {
                continue;
            }
            match with_remote_retries(&clock, || remote.delete(&path)).await {
                Ok(()) => leases.finish_remote_deletion(&path),
                Err(error) => {
                    tracing::warn!(%error, path, "a remote lease copy is left to delete");
                    failed_leases.insert(lease_dir);
                }
            }
        }
    };
    Some(mirroring.boxed())
}

/// Puts one copy, retried with backoff on transient failures.
pub async fn put_remote_lease_copy(
    remote: &Arc<dyn RemoteStorage>,
    clock: &Arc<dyn Clock>,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), RemoteError> {
    with_remote_retries(clock, || remote.put(path, bytes.clone())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_copy_path_names_the_lease_and_the_version() {
        let path = remote_lease_path("a/", 42);
        assert_eq!(path, "coordinator/kv-snapshot-leases/612f/00000000000000000042.lease");
        assert_eq!(parse_remote_lease_path(&path), Some(("612f", 42)));
        assert_eq!(parse_remote_lease_path("coordinator/kv-snapshot-leases/612f/42.lease"), None);
        assert_eq!(parse_remote_lease_path("kv/t1-b0/shared/x"), None);
        let max = remote_lease_path("a", u64::MAX);
        assert_eq!(parse_remote_lease_path(&max), Some(("61", u64::MAX)));
    }
}
