//! Errors of the KV path, each mapped to a Fluss error code.

use crate::engine::EngineError;
use crate::error::{ApiError, ErrorCode};
use crate::kv::changelog_replay::ReplayError;
use crate::log::LogError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// This replica does not lead the bucket (any more): refresh metadata and retry.
    #[error("not the leader of {0}")]
    NotLeader(String),
    /// A leadership change carried an epoch older than the one already seen.
    #[error("leader epoch {requested} is older than the current epoch {current}")]
    FencedLeaderEpoch { requested: u32, current: u32 },
    #[error("unknown table or bucket: {0}")]
    UnknownTableOrBucket(String),
    /// The bucket names a partition its table does not have (never created, or dropped):
    /// do not retry.
    #[error("partition does not exist: {0}")]
    PartitionNotExists(String),
    /// A record in the request is malformed: do not retry it.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A partial update's target columns are refused: do not retry it.
    #[error("invalid target columns: {0}")]
    InvalidTargetColumn(String),
    #[error("schema id {0} does not exist for this table")]
    SchemaNotExist(i16),
    /// The request asks for more than a configured limit allows.
    #[error("request too large: {0}")]
    RequestTooLarge(String),
    /// The changelog no longer holds the offsets needed to rebuild the KV.
    #[error(
        "log start offset {log_start_offset} is above the engine's flushed offset {engine_offset}"
    )]
    LogTruncated { log_start_offset: u64, engine_offset: u64 },
    /// An idempotent writer's batch skipped a sequence number: do not retry it.
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// The bucket cannot answer yet (its flush is behind what the read must see): retry.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The pre-write buffer is full (the flush is behind): nothing was written; resend the
    /// same batch after a short delay.
    #[error("storage backpressure: {0}")]
    Backpressure(String),
    #[error("engine failure: {0}")]
    Engine(#[from] EngineError),
    #[error("log failure: {0}")]
    Log(LogError),
    /// A rebuild's replay of the changelog could not continue (a gap, no progress): the
    /// changelog it read does not hold what the engine needs.
    #[error("changelog replay: {0}")]
    Replay(#[from] ReplayError),
    /// The replica stopped after a corrupt or fatal engine error or a panic that left its
    /// state in doubt; it serves nothing until its node restarts and rebuilds it from disk.
    /// Another replica may lead the bucket meanwhile, so the client may retry.
    #[error("replica stopped: {0}")]
    ReplicaStopped(String),
}

impl From<LogError> for KvError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::FencedLeaderEpoch { requested, current } => {
                KvError::NotLeader(format!("leader epoch {requested} fenced by {current}"))
            }
            error @ LogError::OutOfOrderSequence { .. } => {
                KvError::OutOfOrderSequence(error.to_string())
            }
            // The client retries elsewhere, or here once the replica was reopened from disk.
            error @ LogError::Stopped { .. } => KvError::NotLeader(error.to_string()),
            error @ LogError::NoDirectory { .. } => {
                KvError::UnknownTableOrBucket(error.to_string())
            }
            other => KvError::Log(other),
        }
    }
}

impl KvError {
    pub fn code(&self) -> ErrorCode {
        match self {
            KvError::NotLeader(_) => ErrorCode::NotLeaderOrFollower,
            KvError::NotReady(_) => ErrorCode::LeaderNotAvailable,
            KvError::Backpressure(_) => ErrorCode::StorageBackpressure,
            KvError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            KvError::UnknownTableOrBucket(_) => ErrorCode::UnknownTableOrBucket,
            KvError::PartitionNotExists(_) => ErrorCode::PartitionNotExists,
            KvError::InvalidRecord(_) => ErrorCode::CorruptRecord,
            KvError::SchemaNotExist(_) => ErrorCode::SchemaNotExist,
            KvError::InvalidTargetColumn(_) => ErrorCode::InvalidTargetColumn,
            KvError::RequestTooLarge(_) => ErrorCode::RecordTooLarge,
            KvError::LogTruncated { .. }
            | KvError::Replay(_)
            | KvError::Engine(_)
            | KvError::ReplicaStopped(_) => ErrorCode::KvStorageException,
            // The disk failed (full, a failed write or sync): nothing of the batch was
            // acknowledged or recorded for its writer, so the client may resend the same batch.
            KvError::Log(LogError::Fs(_)) => ErrorCode::StorageException,
            KvError::Log(_) => ErrorCode::LogStorageException,
            KvError::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequence,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.code().is_retriable()
    }

    /// Whether a failed flush may be tried again after a backoff: only an engine I/O error
    /// is transient. A corrupt or closed engine, or anything else, stops the replica.
    pub fn is_transient_storage_error(&self) -> bool {
        matches!(self, KvError::Engine(error) if error.is_retriable())
    }

    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::FsError;

    #[test]
    fn a_failed_disk_write_is_retriable_and_a_corrupt_log_is_not() {
        let full = KvError::from(LogError::Fs(FsError::Io("no space left on device".into())));
        assert_eq!(full.code(), ErrorCode::StorageException);
        assert!(full.is_retriable(), "the client resends the same batch");
        let corrupt = KvError::from(LogError::Corrupt { path: "p".into(), detail: "d".into() });
        assert_eq!(corrupt.code(), ErrorCode::LogStorageException);
        assert!(!corrupt.is_retriable());
    }

    #[test]
    fn only_an_engine_io_error_is_a_transient_flush_error() {
        assert!(KvError::Engine(EngineError::Io("eio".into())).is_transient_storage_error());
        assert!(!KvError::Engine(EngineError::Corrupt("bad".into())).is_transient_storage_error());
        assert!(!KvError::Engine(EngineError::Closed).is_transient_storage_error());
        let stopped = KvError::ReplicaStopped("flush failed".into());
        assert!(!stopped.is_transient_storage_error());
        assert_eq!(stopped.code(), ErrorCode::KvStorageException);
    }
}
