//! Why a lease request was refused, and whether to ask again.

use crate::env::{FsError, RemoteError};
use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease id is empty or longer than `LEASE_ID_BYTES_MAX`: never retried.
    #[error("invalid lease id: {detail}")]
    InvalidLeaseId { detail: String },
    /// The duration is above the configured maximum: never retried.
    #[error("lease duration {duration_ms} ms is above the maximum {duration_ms_max} ms")]
    DurationTooLong { duration_ms: u64, duration_ms_max: u64 },
    /// The lease would pin more buckets than a lease may (or the request names more): never
    /// retried as is.
    #[error("lease {lease_id} would pin {buckets} buckets, more than {buckets_max}")]
    TooManyBuckets { lease_id: String, buckets: usize, buckets_max: usize },
    /// Every lease slot, pin or per-bucket snapshot slot is taken: retriable, once other
    /// leases are released or expire.
    #[error("lease limit reached: {detail}")]
    LimitReached { detail: String },
    /// The table does not exist (Fluss's `UnknownTableOrBucketException`, 21).
    #[error("unknown table {table_id}")]
    UnknownTable { table_id: i64 },
    /// The table has no primary key (Fluss's `NonPrimaryKeyTableException`, 20).
    #[error("table {table_id} has no primary key")]
    NonPrimaryKeyTable { table_id: i64 },
    /// This coordinator keeps no leases.
    #[error("this coordinator keeps no KV snapshot leases")]
    NotServed,
    /// The disk failed; nothing changed. Retriable.
    #[error("lease store I/O failure: {0}")]
    Io(FsError),
    /// A lease file failed its checks when the manager was opened.
    #[error("lease file {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    /// The remote lease copies could not be fetched at start-up: retriable when the remote
    /// store's failure is.
    #[error("remote lease copies: {0}")]
    Remote(RemoteError),
}

impl LeaseError {
    pub fn is_retriable(&self) -> bool {
        match self {
            LeaseError::LimitReached { .. } | LeaseError::Io(_) => true,
            LeaseError::Remote(error) => error.is_retriable(),
            _ => false,
        }
    }

    /// The error as it travels on the wire. Fluss answers its validation errors with codes 21
    /// and 20 and anything else as an `UnknownServerException` (-1); an I/O failure is
    /// `STORAGE_EXCEPTION` here, so that a client asks again.
    pub fn api_error(&self) -> ApiError {
        let code = match self {
            LeaseError::UnknownTable { .. } => ErrorCode::UnknownTableOrBucket,
            LeaseError::NonPrimaryKeyTable { .. } => ErrorCode::NonPrimaryKeyTable,
            LeaseError::NotServed => ErrorCode::UnsupportedVersion,
            LeaseError::Io(_) | LeaseError::LimitReached { .. } => ErrorCode::StorageException,
            _ => ErrorCode::UnknownServerError,
        };
        ApiError::new(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_carry_fluss_codes_and_only_transient_ones_are_retried() {
        assert_eq!(LeaseError::UnknownTable { table_id: 3 }.api_error().code.wire_code(), 21);
        assert_eq!(LeaseError::NonPrimaryKeyTable { table_id: 3 }.api_error().code.wire_code(), 20);
        assert_eq!(LeaseError::NotServed.api_error().code.wire_code(), 2);
        let invalid = LeaseError::InvalidLeaseId { detail: "empty".into() };
        assert_eq!(invalid.api_error().code.wire_code(), -1);
        assert!(!invalid.is_retriable());
        assert!(LeaseError::Io(FsError::Io("disk".into())).is_retriable());
        assert!(LeaseError::Io(FsError::Io("disk".into())).api_error().is_retriable());
        assert!(LeaseError::LimitReached { detail: "full".into() }.is_retriable());
    }
}
