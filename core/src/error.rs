//! API errors: Fluss's error codes, with a retry verdict attached to each.

/// Fluss's error codes (`fluss-rpc/.../protocol/Errors.java`); the numbers are the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    UnknownServerError,
    NetworkException,
    UnsupportedVersion,
    CorruptMessage,
    SchemaNotExist,
    KvStorageException,
    NotLeaderOrFollower,
    CorruptRecord,
    RecordTooLarge,
    LogOffsetOutOfRange,
    LogStorageException,
    RequestTimeOut,
    NonPrimaryKeyTable,
    UnknownTableOrBucket,
    FencedLeaderEpoch,
    StorageException,
    LeaderNotAvailable,
    ScannerExpired,
    UnknownScannerId,
    InvalidScanRequest,
    TooManyScanners,
    StorageBackpressure,
    /// A writer's batch skipped a sequence number: an earlier batch was lost.
    OutOfOrderSequence,
    /// A writer's batch was already appended; the client counts it as acknowledged.
    DuplicateSequence,
    /// A fetch asked for columns the table does not have, or not in ascending order.
    InvalidColumnProjection,
    /// A partial update's target columns are not allowed (a key column missing, an omitted
    /// column that is NOT NULL, a table without partial updates).
    InvalidTargetColumn,
    /// A partition id or name that no partition of the table has (any more).
    PartitionNotExists,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn wire_code(self) -> i32 {
        match self {
            ErrorCode::UnknownServerError => -1,
            ErrorCode::NetworkException => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::CorruptMessage => 3,
            ErrorCode::SchemaNotExist => 9,
            ErrorCode::KvStorageException => 11,
            ErrorCode::NotLeaderOrFollower => 12,
            ErrorCode::CorruptRecord => 14,
            ErrorCode::LogStorageException => 10,
            ErrorCode::RecordTooLarge => 13,
            ErrorCode::LogOffsetOutOfRange => 19,
            ErrorCode::RequestTimeOut => 25,
            ErrorCode::NonPrimaryKeyTable => 20,
            ErrorCode::UnknownTableOrBucket => 21,
            ErrorCode::FencedLeaderEpoch => 24,
            ErrorCode::StorageException => 26,
            ErrorCode::LeaderNotAvailable => 44,
            ErrorCode::ScannerExpired => 66,
            ErrorCode::UnknownScannerId => 67,
            ErrorCode::InvalidScanRequest => 68,
            ErrorCode::TooManyScanners => 69,
            ErrorCode::StorageBackpressure => 72,
            ErrorCode::OutOfOrderSequence => 31,
            ErrorCode::DuplicateSequence => 32,
            ErrorCode::InvalidColumnProjection => 34,
            ErrorCode::InvalidTargetColumn => 35,
            ErrorCode::PartitionNotExists => 36,
        }
    }

    /// Whether a client may repeat the same request (possibly after refreshing metadata).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NetworkException
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::StorageBackpressure
                | ErrorCode::KvStorageException
                | ErrorCode::StorageException
                | ErrorCode::RequestTimeOut
        )
    }
}

/// An error as it travels in a response: a code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} ({}): {message}", code.wire_code())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub fn is_retriable(&self) -> bool {
        self.code.is_retriable()
    }
}
