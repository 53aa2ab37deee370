//! The fetcher's configuration, validated once at construction: Fluss's
//! `kv.recover.remote-log.prefetch-num` and `kv.recover.remote-log.download-threads`, checked
//! against each other (Fluss leaves that unchecked), and the retry of each download.

use crate::recovery::download_retry::DownloadRetry;

/// Prefetch slots allowed at most: each may hold a whole segment on the local disk.
pub const PREFETCH_NUM_MAX: usize = 64;
/// Download tasks allowed at most.
pub const DOWNLOAD_THREADS_MAX: usize = 32;

/// How far a recovery downloads ahead of its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherConfig {
    /// Segments downloaded (or downloading) but not yet handed to the consumer, at most
    /// (Fluss's `kv.recover.remote-log.prefetch-num`). 1 keeps Fluss's historical one-step
    /// prefetch: the next segment downloads while the consumer reads the current one.
    pub prefetch_num: usize,
    /// Downloads running at once, at most (Fluss's `kv.recover.remote-log.download-threads`).
    pub download_threads: usize,
    pub retry: DownloadRetry,
}

impl FetcherConfig {
    /// Fluss's defaults: 4 slots, 3 downloads, 5 attempts from 100 ms to 5 s with jitter 0.25.
    pub const DEFAULT: FetcherConfig =
        FetcherConfig { prefetch_num: 4, download_threads: 3, retry: DownloadRetry::DEFAULT };

    /// Every bound, or the first one broken.
    pub fn validate(&self) -> Result<(), FetcherConfigError> {
        if self.prefetch_num == 0 || self.prefetch_num > PREFETCH_NUM_MAX {
            return Err(FetcherConfigError::PrefetchNum { value: self.prefetch_num });
        }
        if self.download_threads == 0 || self.download_threads > DOWNLOAD_THREADS_MAX {
            return Err(FetcherConfigError::DownloadThreads { value: self.download_threads });
        }
        if self.download_threads > self.prefetch_num {
            return Err(FetcherConfigError::ThreadsExceedSlots {
                download_threads: self.download_threads,
                prefetch_num: self.prefetch_num,
            });
        }
        self.retry.validate()
    }
}

/// A configuration the fetcher refuses, naming the Fluss key and the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetcherConfigError {
    #[error("kv.recover.remote-log.prefetch-num must be 1 to {PREFETCH_NUM_MAX}, not {value}")]
    PrefetchNum { value: usize },
    #[error(
        "kv.recover.remote-log.download-threads must be 1 to {DOWNLOAD_THREADS_MAX}, not {value}"
    )]
    DownloadThreads { value: usize },
    /// Every download holds a prefetch slot, so threads beyond the slots would never run.
    #[error(
        "kv.recover.remote-log.download-threads ({download_threads}) exceeds \
         kv.recover.remote-log.prefetch-num ({prefetch_num}): every download holds a prefetch \
         slot, so the extra threads would never run"
    )]
    ThreadsExceedSlots { download_threads: usize, prefetch_num: usize },
    #[error("download retry: {0}")]
    Retry(String),
    /// Segments are matched by id, so two with one id would be confused.
    #[error("segment {0} is listed twice")]
    DuplicateSegment(String),
    #[error("the fetcher needs a temporary directory of its own")]
    NoTempDir,
}

impl FetcherConfigError {
    /// A configuration is refused the same way every time.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(prefetch_num: usize, download_threads: usize) -> FetcherConfig {
        FetcherConfig { prefetch_num, download_threads, ..FetcherConfig::DEFAULT }
    }

    #[test]
    fn flusss_defaults_are_valid() {
        assert_eq!(FetcherConfig::DEFAULT.validate(), Ok(()));
        assert_eq!(
            (FetcherConfig::DEFAULT.prefetch_num, FetcherConfig::DEFAULT.download_threads),
            (4, 3)
        );
        assert_eq!(with(1, 1).validate(), Ok(()));
        assert_eq!(with(PREFETCH_NUM_MAX, DOWNLOAD_THREADS_MAX).validate(), Ok(()));
    }

    #[test]
    fn zero_and_oversized_limits_are_refused_naming_the_key() {
        assert_eq!(with(0, 1).validate(), Err(FetcherConfigError::PrefetchNum { value: 0 }));
        let too_many = PREFETCH_NUM_MAX + 1;
        assert_eq!(
            with(too_many, 1).validate(),
            Err(FetcherConfigError::PrefetchNum { value: too_many })
        );
        assert_eq!(with(4, 0).validate(), Err(FetcherConfigError::DownloadThreads { value: 0 }));
        let error = with(PREFETCH_NUM_MAX, DOWNLOAD_THREADS_MAX + 1).validate().unwrap_err();
        assert!(error.to_string().contains("download-threads"), "{error}");
        assert!(!error.is_retriable());
    }

    #[test]
    fn more_download_threads_than_prefetch_slots_is_refused_with_the_reason() {
        let error = with(2, 3).validate().unwrap_err();
        assert_eq!(
            error,
            FetcherConfigError::ThreadsExceedSlots { download_threads: 3, prefetch_num: 2 }
        );
        assert!(error.to_string().contains("would never run"), "{error}");
        assert_eq!(with(3, 3).validate(), Ok(()), "as many threads as slots is fine");
    }

    #[test]
    fn a_broken_retry_policy_is_refused() {
        let mut config = FetcherConfig::DEFAULT;
        config.retry.attempts_max = 0;
        assert!(matches!(config.validate(), Err(FetcherConfigError::Retry(_))));
    }
}
