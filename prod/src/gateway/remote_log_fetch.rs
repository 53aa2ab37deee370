//! FetchLog below the local log start, answered as a Fluss tablet server answers it: with the
//! tiered segments' remote location (`remote_log_fetch_info`), which the client downloads and
//! reads itself, so that the node does not serve the tiered range.
//!
//! What the official clients need (fluss-rs 1.0.0, on which pyfluss 1.0.0 is built;
//! `client/table/remote_log.rs`, `credentials.rs`, `scanner.rs`):
//! - the file `{remote_log_tablet_dir}/{segment id}/{start offset:020}.log` for each listed
//!   segment, read through opendal (`file://` when the directory has no scheme, `s3://`
//!   with the properties of GetFileSystemSecurityToken), parsed from `first_start_pos` as
//!   Fluss log record batches (V0 Arrow batches of every column: a remote read gets no
//!   projection pushdown), the records below the fetch offset skipped;
//! - each segment after the first read from its start offset, and dropped as stale unless it
//!   starts where the one before ended: the segments listed are contiguous;
//! - a GetFileSystemSecurityToken answer before any download ([`ClientRemoteAccess::token`]).
//!
//! The tiered segments themselves are kvtablet's CRC-framed changelog frames, which the
//! clients cannot parse. So each segment a client is sent gets a Fluss-format copy, written
//! the first time a fetch needs it, at the segment's companion path
//! (`RemoteLogSegment::companion_path`), which the segment id and tablet directory sent make
//! the client's path: core's manifest rules keep it while the segment is recorded and delete
//! it with the segment. Written lazily rather than at tiering time: tiering (core, run by the
//! simulator too) stays free of the wire format, segments no client reads remotely cost
//! nothing, and segments tiered before this existed are served the same way. A copy written
//! while retention removed its segment is deleted again by the writer (it checks the
//! manifest after its put), so none outlives its segment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::env::RemoteStorage;
use kvtablet_core::log::LogBatch;
use kvtablet_core::tiering::{read_remote_log, remote_log_dir, RemoteLogSegment, RemoteLogStore};
use kvtablet_core::TableBucket;

use super::log_requests::to_i64;
use crate::config::remote::ClientRemoteAccess;
use crate::wire::messages::{PbRemoteLogFetchInfo, PbRemoteLogSegment};

/// Encodes a tiered segment's batches in the clients' record format.
pub(crate) type EncodeSegment<'a> = dyn Fn(&[LogBatch]) -> Result<Vec<u8>, String> + Sync + 'a;

/// Segments listed in one FetchLog answer at most (the client downloads them ahead, four at
/// a time by default: `client.scanner.remote-log.prefetch-num`).
pub const REMOTE_SEGMENTS_PER_FETCH_MAX: usize = 4;
/// Copies remembered as written; past it the memory is cleared (a copy is then looked up in
/// the remote store again, not rewritten).
const WRITTEN_COPIES_MAX: usize = 100_000;

/// Counts of the tiered range's reads, for `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteLogReadStats {
    /// Record bytes of offsets below the local log start that FetchLog answered itself
    /// (clients that cannot read the remote tier, or a copy that could not be written).
    served_through_node_bytes: AtomicU64,
    /// FetchLog answers that sent the client to the remote tier.
    remote_fetch_infos: AtomicU64,
    /// Fluss-format copies written.
    copies_written: AtomicU64,
}

impl RemoteLogReadStats {
    pub fn served_through_node_bytes(&self) -> u64 {
        self.served_through_node_bytes.load(Ordering::Relaxed)
    }

    pub fn remote_fetch_infos(&self) -> u64 {
        self.remote_fetch_infos.load(Ordering::Relaxed)
    }

    pub fn copies_written(&self) -> u64 {
        self.copies_written.load(Ordering::Relaxed)
    }

    pub(crate) fn add_served_through_node(&self, bytes: usize) {
        self.served_through_node_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Why a fetch below the local log start could not send the client to the remote tier (it is
/// then served through the node).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading tiered segment {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("encoding tiered segment {path} for the clients: {detail}")]
    Encode { path: String, detail: String },
    #[error("writing the clients' copy {path}: {detail}")]
    Write { path: String, detail: String },
    #[error("tiered segment {path} left the manifest while its copy was written")]
    Removed { path: String },
}

/// The node's side of the clients' remote reads: how they reach the remote store, the copies
/// written, and the counts.
pub(crate) struct RemoteLogReads {
    access: ClientRemoteAccess,
    /// The remote data directory as the clients name it (an absolute path or
    /// `s3://bucket/prefix`).
    root: String,
    /// Copies known to be in the remote store: companion path → size in bytes.
    written: Mutex<BTreeMap<String, u64>>,
    /// One copy is written at a time, so two fetches of a segment do not both write it.
    writing: tokio::sync::Mutex<()>,
    stats: Arc<RemoteLogReadStats>,
}

impl RemoteLogReads {
    pub(crate) fn new(access: ClientRemoteAccess, root: &str) -> RemoteLogReads {
        RemoteLogReads {
            access,
            root: root.trim_end_matches('/').to_string(),
            written: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
            stats: Arc::new(RemoteLogReadStats::default()),
        }
    }

    pub(crate) fn access(&self) -> &ClientRemoteAccess {
        &self.access
    }

    pub(crate) fn stats(&self) -> &Arc<RemoteLogReadStats> {
        &self.stats
    }

    /// The segments of `bucket` from `from_offset` to be read remotely: contiguous, the
    /// first holding `from_offset`, none wholly at or above `local_start_offset`.
    pub(crate) fn segments_to_send(
        remote_logs: &RemoteLogStore,
        bucket: TableBucket,
        from_offset: u64,
        local_start_offset: u64,
    ) -> Vec<RemoteLogSegment> {
        let covering = remote_logs.segments_covering(bucket, from_offset, local_start_offset);
        let mut segments: Vec<RemoteLogSegment> = Vec::new();
        for segment in covering {
            let follows =
                segments.last().is_none_or(|last| last.end_offset == segment.start_offset);
            if !follows || segments.len() == REMOTE_SEGMENTS_PER_FETCH_MAX {
                break;
            }
            segments.push(segment);
        }
        segments
    }

    /// Makes sure the client's copy of each of `segments` is in the remote store (writing it
    /// with `encode` when it is not) and returns the fetch answer's remote-log information.
    pub(crate) async fn fetch_info(
        &self,
        remote: &Arc<dyn RemoteStorage>,
        remote_logs: &RemoteLogStore,
        segments: &[RemoteLogSegment],
        encode: &EncodeSegment<'_>,
    ) -> Result<PbRemoteLogFetchInfo, CopyError> {
        let bucket = segments.first().map(|segment| segment.bucket).ok_or_else(|| {
            CopyError::Read { path: String::new(), detail: "no segment".to_string() }
        })?;
        let mut listed = Vec::with_capacity(segments.len());
        for segment in segments {
            let size_bytes = self.ensure_copy(remote, remote_logs, segment, encode).await?;
            listed.push(PbRemoteLogSegment {
                remote_log_segment_id: segment.companion_dir_name(),
                remote_log_start_offset: to_i64(segment.start_offset),
                remote_log_end_offset: to_i64(segment.end_offset),
                segment_size_in_bytes: i32::try_from(size_bytes).unwrap_or(i32::MAX),
                max_timestamp: Some(to_i64(segment.max_timestamp_ms)),
            });
        }
        self.stats.remote_fetch_infos.fetch_add(1, Ordering::Relaxed);
        Ok(PbRemoteLogFetchInfo {
            remote_log_tablet_dir: self.tablet_dir(bucket),
            partition_name: None,
            remote_log_segments: listed,
            // The client skips the records below its fetch offset.
            first_start_pos: Some(0),
        })
    }

    /// `{root}/log/{bucket}`: with a segment's companion directory name as its id, the
    /// client's `{dir}/{id}/{start offset:020}.log` is the segment's companion path.
    pub(crate) fn tablet_dir(&self, bucket: TableBucket) -> String {
        format!("{}/{}", self.root, remote_log_dir(bucket))
    }

    /// The size of `segment`'s copy, written first if the remote store lacks it.
    async fn ensure_copy(
        &self,
        remote: &Arc<dyn RemoteStorage>,
        remote_logs: &RemoteLogStore,
        segment: &RemoteLogSegment,
        encode: &EncodeSegment<'_>,
    ) -> Result<u64, CopyError> {
        let path = segment.companion_path();
        if let Some(&size_bytes) = self.lock_written().get(&path) {
            return Ok(size_bytes);
        }
        let _writing = self.writing.lock().await;
        if let Some(&size_bytes) = self.lock_written().get(&path) {
            return Ok(size_bytes);
        }
        let write_error =
            |detail: String| CopyError::Write { path: path.clone(), detail: detail.clone() };
        let listed = remote.list(&path).await.map_err(|error| write_error(error.to_string()))?;
        let size_bytes = match listed.iter().find(|object| object.path == path) {
            Some(object) => object.size_bytes,
            None => {
                let batches =
                    read_remote_log(remote.as_ref(), segment, segment.start_offset, u64::MAX)
                        .await
                        .map_err(|error| CopyError::Read {
                            path: segment.path(),
                            detail: error.to_string(),
                        })?;
                let bytes = encode(&batches)
                    .map_err(|detail| CopyError::Encode { path: segment.path(), detail })?;
                let size_bytes = bytes.len() as u64;
                remote.put(&path, bytes).await.map_err(|error| write_error(error.to_string()))?;
                // Checked after the put: a retention that removed the segment before this
                // point deleted its objects before the copy landed, so the copy is ours to
                // delete; one after it deletes the copy itself.
                if !remote_logs.records(segment) {
                    if let Err(error) = remote.delete(&path).await {
                        tracing::warn!(%path, %error, "a copy of a removed segment is left");
                    }
                    return Err(CopyError::Removed { path: segment.path() });
                }
                self.stats.copies_written.fetch_add(1, Ordering::Relaxed);
                size_bytes
            }
        };
        let mut written = self.lock_written();
        if written.len() >= WRITTEN_COPIES_MAX {
            written.clear();
        }
        written.insert(path, size_bytes);
        Ok(size_bytes)
    }

    /// Poisoning is harmless: the map changes by single inserts and a clear.
    fn lock_written(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
