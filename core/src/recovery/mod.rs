//! KV recovery's side of the remote tier: the tiered changelog segments a rebuild replays,
//! downloaded ahead of it through a bounded prefetch window (Fluss's `RemoteLogFetcher`,
//! `kv.recover.remote-log.*`); and an engine restored from a committed KV snapshot.

pub mod download_retry;
pub mod fetch_window;
pub mod fetcher_config;
pub mod kv_recovery;
pub mod kv_restore;
pub mod recovery_progress;
pub mod remote_log_fetcher;
pub mod temp_file;
#[cfg(all(test, not(feature = "shuttle")))]
pub(crate) mod test_remote;

pub use download_retry::DownloadRetry;
pub use fetch_window::FetcherGauges;
pub use fetcher_config::{FetcherConfig, FetcherConfigError};
pub use kv_recovery::{
    clear_crashed_recoveries, discard_engine_dir, recovery_dir, KvRecovery, Recovered,
    RecoveryError, RecoverySources, RECOVERY_ATTEMPTS_MAX,
};
pub use kv_restore::{restore_dir, restore_engine, KvRestoreError};
pub use recovery_progress::{
    RecoveryPhase, RecoveryProgress, RecoveryTracker, RECOVERY_LOG_INTERVAL_MS,
};
pub use remote_log_fetcher::{
    recovery_temp_dir, FetchError, FetchedSegment, FetcherProbe, RemoteLogFetcher,
};
pub use temp_file::TempFile;
