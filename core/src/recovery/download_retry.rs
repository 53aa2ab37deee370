//! One segment's download with retries: transient remote failures are retried with an
//! exponential backoff and jitter (Fluss's `ExponentialBackoff(100, 2, 5000, 0.25)`), the
//! bytes are checked against the manifest's size and SHA-256 (the tiering reader's check,
//! [`check_segment_bytes`]), and anything else ends the download.

use crate::env::Env;
use crate::mutant::Mutant;
use crate::recovery::fetcher_config::FetcherConfigError;
use crate::recovery::remote_log_fetcher::FetchError;
use crate::tiering::remote_log_reader::check_segment_bytes;
use crate::tiering::remote_log_segment::RemoteLogSegment;

/// Attempts allowed at most, whatever the configuration says.
pub const ATTEMPTS_MAX_BOUND: u32 = 16;
/// The longest backoff a configuration may ask for.
pub const BACKOFF_MS_MAX_BOUND: u64 = 60_000;

/// How a failed download is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadRetry {
    /// Attempts per download, the first included.
    pub attempts_max: u32,
    /// The backoff before the second attempt; it doubles before each further one.
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    /// Each backoff is drawn from ±this percentage around its nominal value (Fluss: 0.25).
    pub jitter_percent: u64,
}

impl DownloadRetry {
    /// 5 attempts, backoff from 100 ms doubling to 5 s, jitter 0.25.
    pub const DEFAULT: DownloadRetry = DownloadRetry {
        attempts_max: 5,
        backoff_ms_min: 100,
        backoff_ms_max: 5_000,
        jitter_percent: 25,
    };

    pub fn validate(&self) -> Result<(), FetcherConfigError> {
        let refuse = |reason: String| Err(FetcherConfigError::Retry(reason));
        if self.attempts_max == 0 || self.attempts_max > ATTEMPTS_MAX_BOUND {
            return refuse(format!(
                "attempts must be 1 to {ATTEMPTS_MAX_BOUND}, not {}",
                self.attempts_max
            ));
        }
        if self.backoff_ms_min == 0 || self.backoff_ms_min > self.backoff_ms_max {
            return refuse(format!(
                "backoff must start above 0 and at most at its maximum: {}..{} ms",
                self.backoff_ms_min, self.backoff_ms_max
            ));
        }
        if self.backoff_ms_max > BACKOFF_MS_MAX_BOUND {
            return refuse(format!("backoff must stay within {BACKOFF_MS_MAX_BOUND} ms"));
        }
        if self.jitter_percent >= 100 {
            return refuse(format!("jitter must be below 100%, not {}%", self.jitter_percent));
        }
        Ok(())
    }

    /// The wait after failed attempt `attempt` (1-based): `backoff_ms_min × 2^(attempt-1)`,
    /// capped, then moved by a uniform jitter of ±`jitter_percent`, and capped again.
    pub fn backoff_ms(&self, attempt: u32, entropy: &dyn crate::env::Entropy) -> u64 {
        assert!(attempt >= 1, "attempts count from 1");
        let doublings = (attempt - 1).min(32);
        let nominal_ms =
            self.backoff_ms_min.saturating_mul(1u64 << doublings).min(self.backoff_ms_max);
        let spread_ms = nominal_ms * self.jitter_percent / 100;
        let drawn_ms = nominal_ms - spread_ms + entropy.below(2 * spread_ms + 1);
        let backoff_ms = drawn_ms.min(self.backoff_ms_max);
        assert!(backoff_ms >= nominal_ms - spread_ms, "the jitter stays within its spread");
        backoff_ms
    }
}

/// `segment`'s object, checked, after at most `attempts_max` attempts (fewer when a failure
/// is final: not found, fatal, or bytes that are not the manifest's).
pub(crate) async fn download_checked(
    env: &Env,
    retry: &DownloadRetry,
    attempts_max: u32,
    segment: &RemoteLogSegment,
) -> Result<Vec<u8>, FetchError> {
    // The mutant: a transient failure ends the download at once.
    let attempts_max = if env.mutants.is_on(Mutant::FetcherNoRetry) { 1 } else { attempts_max };
    assert!(attempts_max >= 1, "a download makes at least one attempt");
    let path = segment.path();
    let mut attempt = 1;
    loop {
        match env.remote.get(&path).await {
            Ok(bytes) => {
                check_segment_bytes(segment, &path, &bytes).map_err(|error| {
                    FetchError::Corrupt { segment_id: segment.segment_id(), source: error }
                })?;
                return Ok(bytes);
            }
            Err(error) if error.is_retriable() && attempt < attempts_max => {
                let backoff_ms = retry.backoff_ms(attempt, env.entropy.as_ref());
                tracing::debug!(path, attempt, backoff_ms, %error, "recovery download retried");
                env.clock.sleep(backoff_ms).await;
                attempt += 1;
            }
            Err(source) => {
                return Err(FetchError::Download {
                    segment_id: segment.segment_id(),
                    attempts: attempt,
                    source,
                })
            }
        }
    }
}

/// Whether a download that ended with `error` is worth one more synchronous attempt.
pub(crate) fn worth_another_attempt(error: &FetchError) -> bool {
    matches!(error, FetchError::Download { source, .. } if source.is_retriable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Entropy;

    /// Draws the same value every time, so that a test pins the jitter's edges.
    struct Fixed(u64);

    impl Entropy for Fixed {
        fn next_u64(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn the_backoff_doubles_from_100_ms_and_is_capped_at_5_s() {
        let retry = DownloadRetry { jitter_percent: 0, ..DownloadRetry::DEFAULT };
        let waits: Vec<u64> = (1..=8).map(|attempt| retry.backoff_ms(attempt, &Fixed(0))).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(retry.backoff_ms(1_000, &Fixed(0)), 5_000, "no overflow on a long run");
    }

    #[test]
    fn the_jitter_stays_within_a_quarter_and_under_the_cap() {
        let retry = DownloadRetry::DEFAULT;
        // below(51) of 0 is the low edge; of 50 the high edge.
        assert_eq!(retry.backoff_ms(1, &Fixed(0)), 75);
        assert_eq!(retry.backoff_ms(1, &Fixed(50)), 125);
        for draw in [0, 1, 7, 1_000, u64::MAX / 3] {
            for attempt in 1..=10 {
                let wait = retry.backoff_ms(attempt, &Fixed(draw));
                assert!(wait <= 5_000, "attempt {attempt}: {wait}");
                assert!(wait >= 75, "attempt {attempt}: {wait}");
            }
        }
    }

    #[test]
    fn a_retry_policy_out_of_bounds_is_refused() {
        assert_eq!(DownloadRetry::DEFAULT.validate(), Ok(()));
        let bad = [
            DownloadRetry { attempts_max: 0, ..DownloadRetry::DEFAULT },
            DownloadRetry { attempts_max: ATTEMPTS_MAX_BOUND + 1, ..DownloadRetry::DEFAULT },
            DownloadRetry { backoff_ms_min: 0, ..DownloadRetry::DEFAULT },
            DownloadRetry { backoff_ms_min: 6_000, ..DownloadRetry::DEFAULT },
            DownloadRetry { backoff_ms_max: BACKOFF_MS_MAX_BOUND + 1, ..DownloadRetry::DEFAULT },
            DownloadRetry { jitter_percent: 100, ..DownloadRetry::DEFAULT },
        ];
        for retry in bad {
            assert!(retry.validate().is_err(), "{retry:?}");
        }
    }
}
