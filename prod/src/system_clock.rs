//! The real clock: monotonic time from an `Instant` taken at construction, wall time from the
//! system, timers from tokio.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::Clock;

/// Monotonic milliseconds count from the moment the clock was created, so that they start
/// near zero and fit comfortably in a `u64`.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_mono_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn now_wall_ms(&self) -> u64 {
        // A wall clock set before 1970 is reported as the epoch rather than failing the caller:
        // wall time is only ever reported, never used for deadlines.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since_epoch| u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        // `checked_add` fails only for deadlines centuries away; sleeping "forever" is then the
        // faithful reading.
        let deadline = self.origin.checked_add(Duration::from_millis(deadline_mono_ms));
        // The tokio timer is created inside the future, at first poll, so that building the
        // future outside a runtime context does not panic.
        async move {
            match deadline {
                Some(deadline) => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await
                }
                None => futures::future::pending::<()>().await,
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_starts_near_zero_and_never_decreases() {
        let clock = SystemClock::new();
        let first_ms = clock.now_mono_ms();
        let second_ms = clock.now_mono_ms();
        assert!(first_ms < 1_000);
        assert!(second_ms >= first_ms);
        // 2020-01-01 in ms: any sane host clock is past it.
        assert!(clock.now_wall_ms() > 1_577_836_800_000);
    }

    #[test]
    fn sleep_until_waits_for_the_deadline() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("test runtime");
        let clock = SystemClock::new();
        let deadline_mono_ms = clock.now_mono_ms() + 20;
        runtime.block_on(clock.sleep_until(deadline_mono_ms));
        assert!(clock.now_mono_ms() >= deadline_mono_ms);
    }
}
