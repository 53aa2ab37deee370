//! The changelog: record types, the on-disk batch frame, one bucket's log, and the registry.

pub mod change_type;
pub mod local_retention;
pub mod log_batch;
pub mod log_registry;
pub mod log_tablet;
pub mod replication;
pub mod writer_state;

pub use change_type::ChangeType;
pub use local_retention::{LocalRetention, RetainedSegment, LOCAL_SEGMENTS_KEPT_DEFAULT};
pub use log_batch::{BatchIdentity, LogBatch, LogRecord, WriterBatch};
pub use log_registry::LogRegistry;
pub use log_tablet::{
    AppendMeta, Appended, ChangeRecord, ClosedSegment, LogConfig, LogError, LogTablet, SyncTicket,
};
pub use replication::{Replicator, SyncedBatch};
pub use writer_state::SequenceCheck;
