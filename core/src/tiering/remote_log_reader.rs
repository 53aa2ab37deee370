//! Reads of the tiered range of a changelog: the batches of one remote segment, downloaded
//! whole and checked against the manifest's size and SHA-256 before a byte of it is decoded.

use crate::env::{RemoteError, RemoteStorage};
use crate::log::log_batch::{decode_batch, LogBatch};
use crate::snapshot::completed_snapshot::content_sha256;
use crate::tiering::remote_log_segment::RemoteLogSegment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteLogReadError {
    #[error("remote log read: {0}")]
    Remote(RemoteError),
    /// The object does not match its manifest entry, or does not decode: not retriable.
    #[error("remote log segment {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
}

impl RemoteLogReadError {
    pub fn is_retriable(&self) -> bool {
        match self {
            RemoteLogReadError::Remote(error) => error.is_retriable(),
            RemoteLogReadError::Corrupt { .. } => false,
        }
    }
}

/// The batches of `segment` that end after `from_offset`, in order, until `max_bytes` of
/// frames (at least one batch when any remains).
pub async fn read_remote_log(
    remote: &dyn RemoteStorage,
    segment: &RemoteLogSegment,
    from_offset: u64,
    max_bytes: u64,
) -> Result<Vec<LogBatch>, RemoteLogReadError> {
    let path = segment.path();
    let bytes = remote.get(&path).await.map_err(RemoteLogReadError::Remote)?;
    decode_segment(segment, &path, &bytes, from_offset, max_bytes)
}

/// The checks and the decoding of [`read_remote_log`], on bytes already downloaded.
pub fn decode_segment(
    segment: &RemoteLogSegment,
    path: &str,
    bytes: &[u8],
    from_offset: u64,
    max_bytes: u64,
) -> Result<Vec<LogBatch>, RemoteLogReadError> {
    check_segment_bytes(segment, path, bytes)?;
    decode_frames(path, bytes, segment.start_offset, segment.end_offset, from_offset, max_bytes)
}

/// Whether `bytes`, downloaded from `path`, are the object `segment` records: its size and
/// SHA-256. The one check of a downloaded segment, for reads and for recovery's prefetch
/// (`crate::recovery`).
pub fn check_segment_bytes(
    segment: &RemoteLogSegment,
    path: &str,
    bytes: &[u8],
) -> Result<(), RemoteLogReadError> {
    let corrupt = |detail: String| RemoteLogReadError::Corrupt { path: path.to_string(), detail };
    if bytes.len() as u64 != segment.size_bytes {
        return Err(corrupt(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            segment.size_bytes
        )));
    }
    if content_sha256(bytes) != segment.sha256 {
        return Err(corrupt("SHA-256 mismatch".to_string()));
    }
    Ok(())
}

/// The batches framed in `bytes`, which must be exactly `start_offset..end_offset` with every
/// frame's checksum right; those that end after `from_offset` are returned, until `max_bytes`
/// (at least one). The tierer checks a local segment with it before uploading it.
pub fn decode_frames(
    path: &str,
    bytes: &[u8],
    start_offset: u64,
    end_offset: u64,
    from_offset: u64,
    max_bytes: u64,
) -> Result<Vec<LogBatch>, RemoteLogReadError> {
    let corrupt = |detail: String| RemoteLogReadError::Corrupt { path: path.to_string(), detail };
    let mut batches = Vec::new();
    let mut read_bytes = 0u64;
    let mut position = 0usize;
    let mut expected_offset = start_offset;
    while position < bytes.len() {
        let (batch, len) = decode_batch(&bytes[position..])
            .map_err(|error| corrupt(format!("frame at byte {position}: {error}")))?;
        if batch.base_offset != expected_offset {
            return Err(corrupt(format!(
                "batch at {} where {expected_offset} was expected",
                batch.base_offset
            )));
        }
        position += len;
        expected_offset = batch.end_offset();
        if batch.end_offset() <= from_offset {
            continue;
        }
        if !batches.is_empty() && read_bytes + len as u64 > max_bytes {
            // The rest is not decoded: a reader stops at its budget.
            return Ok(batches);
        }
        read_bytes += len as u64;
        batches.push(batch);
    }
    if expected_offset != end_offset {
        return Err(corrupt(format!("ends at {expected_offset}, expected {end_offset}")));
    }
    Ok(batches)
}
