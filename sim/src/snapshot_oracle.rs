//! The KV-snapshot oracles' god view: a committed snapshot restored from what the remote
//! store holds (bypassing its faults) and read in full, and the store's files checked against
//! the remote objects.

use std::collections::BTreeSet;
use std::sync::Arc;

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{KeyRange, KvEngineFactory};
use kvtablet_core::env::LocalFs;
use kvtablet_core::snapshot::completed_snapshot::content_sha256;
use kvtablet_core::snapshot::{CompletedSnapshot, SnapshotStore};

use crate::fs::SimFs;
use crate::remote::SimRemoteStorage;

const RESTORE_DIR: &str = "restore";

/// Every row of the engine that `snapshot`'s files restore, in key order, after checking each
/// file's presence, size and checksum.
pub fn restore(
    remote: &SimRemoteStorage,
    snapshot: &CompletedSnapshot,
) -> Result<crate::checker::Rows, String> {
    let scratch = Arc::new(SimFs::new());
    scratch.create_dir_all(RESTORE_DIR).map_err(|e| e.to_string())?;
    for file in snapshot.files() {
        let bytes = remote
            .peek(&file.remote_path)
            .ok_or_else(|| format!("its file {} is missing", file.remote_path))?;
        if bytes.len() as u64 != file.size_bytes
            || crc32c::crc32c(&bytes) != file.crc32c
            || content_sha256(&bytes) != file.sha256
        {
            return Err(format!("its file {} does not match its record", file.remote_path));
        }
        let path = format!("{RESTORE_DIR}/{}", file.local_name);
        scratch.write(&path, &bytes).map_err(|e| e.to_string())?;
    }
    let engine = MemEngineFactory::new(scratch)
        .open_checkpoint(RESTORE_DIR, "engine")
        .map_err(|e| format!("it does not open: {e}"))?;
    let flushed = engine.flushed_log_offset().map_err(|e| e.to_string())?.unwrap_or(0);
    if flushed != snapshot.log_offset {
        return Err(format!(
            "its engine holds flushed offset {flushed}, its record says {}",
            snapshot.log_offset
        ));
    }
    let view = engine.snapshot().map_err(|e| e.to_string())?;
    let mut iterator = view.iter(KeyRange::all()).map_err(|e| e.to_string())?;
    iterator.seek_to_first();
    let mut rows = Vec::new();
    while iterator.valid() {
        rows.push((iterator.key().to_vec(), iterator.value().to_vec()));
        iterator.next();
    }
    iterator.status().map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Problems with the snapshots `store` keeps: a file missing or damaged in `remote`; and,
/// when `quiescent`, any object under `kv/` that no kept snapshot needs (an orphan that
/// cleanup and the orphan sweep should have removed). A file in `damaged` was deleted by the
/// world on purpose (a recovery must find its snapshot broken): its absence is excused.
pub fn check_store_files(
    store: &SnapshotStore,
    remote: &SimRemoteStorage,
    quiescent: bool,
    damaged: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut needed = BTreeSet::new();
    for bucket in store.buckets() {
        if let Some(record) = store.bucket(bucket) {
            // The store's own rule for what a kept snapshot needs, its metadata file included.
            needed.extend(record.needed_paths());
        }
        for snapshot in store.kept(bucket) {
            for file in snapshot.files() {
                match remote.peek(&file.remote_path) {
                    None if damaged.contains(&file.remote_path) => {}
                    None => problems.push(format!(
                        "snapshot file deleted while kept: {} of snapshot {} of {bucket}",
                        file.remote_path, snapshot.snapshot_id
                    )),
                    Some(bytes) if content_sha256(&bytes) != file.sha256 => problems.push(format!(
                        "snapshot file damaged while kept: {} of snapshot {} of {bucket}",
                        file.remote_path, snapshot.snapshot_id
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if quiescent {
        for path in remote.paths().into_iter().filter(|path| path.starts_with("kv/")) {
            if !needed.contains(&path) {
                problems.push(format!("orphan snapshot file at quiescence: {path}"));
            }
        }
    }
    problems
}
