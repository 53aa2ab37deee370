//! The tiering oracles' reads of the remote tier: a manifest segment's object, taken from the
//! remote store in the god view and checked against the manifest, and the objects under
//! `log/` at quiescence.

use kvtablet_core::log::LogBatch;
use kvtablet_core::tiering::remote_log_reader::decode_segment;
use kvtablet_core::tiering::{RemoteLogSegment, RemoteLogStore, REMOTE_LOG_ROOT};

use crate::remote::SimRemoteStorage;

/// The batches of `segment` that end after `from_offset`.
pub fn read_tiered_segment(
    remote: &Option<SimRemoteStorage>,
    segment: &RemoteLogSegment,
    from_offset: u64,
) -> Result<Vec<LogBatch>, String> {
    let path = segment.path();
    let Some(remote) = remote else { return Err("no remote store".to_string()) };
    let Some(bytes) = remote.peek(&path) else {
        return Err(format!(
            "the remote-log manifest lists {path}, which is not in the remote store"
        ));
    };
    decode_segment(segment, &path, &bytes, from_offset, u64::MAX).map_err(|e| e.to_string())
}

/// At quiescence, after the orphan sweep: every object under `log/` is one a manifest lists.
pub fn check_remote_log_objects(store: &RemoteLogStore, remote: &SimRemoteStorage) -> Vec<String> {
    let listed: Vec<kvtablet_core::env::RemoteObject> = remote
        .paths()
        .into_iter()
        .filter(|path| path.starts_with(REMOTE_LOG_ROOT))
        .map(|path| kvtablet_core::env::RemoteObject { path, size_bytes: 0 })
        .collect();
    store
        .orphans(&listed)
        .into_iter()
        .map(|path| format!("remote object {path} is in no remote-log manifest at quiescence"))
        .collect()
}
