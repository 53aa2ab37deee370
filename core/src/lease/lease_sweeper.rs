//! The lease expiry check as a tick handler (the style of slatedb's `MessageHandler`): no
//! thread or timer of its own; the coordinator's loop (or the simulator, or a test) calls
//! [`LeaseExpirySweeper::tick`] with the time, and it says whether the check is due.
//!
//! Fluss runs `expireLeases` on a scheduled executor with an initial delay of 0 and a fixed
//! delay of `kv.snapshot.lease.expiration-check-interval` (10 minutes) between checks; this is
//! the same schedule on the monotonic clock. The check itself compares each lease's
//! wall-clock expiration (`KvSnapshotLeaseManager::expire`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseExpirySweeper {
    interval_ms: u64,
    next_check_mono_ms: u64,
}

impl LeaseExpirySweeper {
    /// The first check is due at once (Fluss's initial delay of 0).
    pub fn new(interval_ms: u64, now_mono_ms: u64) -> Self {
        assert!(interval_ms >= 1, "a zero check interval spins");
        LeaseExpirySweeper { interval_ms, next_check_mono_ms: now_mono_ms }
    }

    /// When the next check is due: the loop sleeps until then.
    pub fn next_check_mono_ms(&self) -> u64 {
        self.next_check_mono_ms
    }

    /// Whether a check is due at `now_mono_ms`; when it is, the next one is scheduled an
    /// interval after now (a fixed delay, so a late tick does not bunch checks up).
    pub fn tick(&mut self, now_mono_ms: u64) -> bool {
        if now_mono_ms < self.next_check_mono_ms {
            return false;
        }
        self.next_check_mono_ms = now_mono_ms.saturating_add(self.interval_ms);
        assert!(self.next_check_mono_ms > now_mono_ms || now_mono_ms == u64::MAX);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_check_is_due_at_once_and_the_next_an_interval_after_each_check() {
        let mut sweeper = LeaseExpirySweeper::new(600_000, 5);
        assert_eq!(sweeper.next_check_mono_ms(), 5);
        assert!(sweeper.tick(5));
        assert!(!sweeper.tick(5), "checked already");
        assert!(!sweeper.tick(600_004));
        assert!(sweeper.tick(700_000), "late: the next is an interval after this one");
        assert_eq!(sweeper.next_check_mono_ms(), 1_300_000);
    }
}
