//! Changelog tiering: closed log segments uploaded to remote storage and recorded in the
//! coordinator's per-bucket remote-log manifest, local retention bounded by what the remote
//! tier holds, and reads of the tiered range.

pub mod log_tierer;
pub mod remote_log_reader;
pub mod remote_log_segment;
pub mod remote_log_store;
pub mod rpc_remote_log_committer;

pub use log_tierer::{
    run_tiering_loop, RemoteLogCommitter, TieringCommitError, TieringSchedule,
    TIERING_INTERVAL_MS_DEFAULT,
};
pub use remote_log_reader::{check_segment_bytes, read_remote_log, RemoteLogReadError};
pub use remote_log_segment::{remote_log_dir, RemoteLogSegment, REMOTE_LOG_ROOT};
pub use remote_log_store::{
    RemoteLogCommit, RemoteLogManifest, RemoteLogRefusal, RemoteLogStore, RemoteLogStoreError,
};
pub use rpc_remote_log_committer::RpcRemoteLogCommitter;
