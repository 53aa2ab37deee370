//! A bucket's KV recovery as others see it while it runs: the phase (the snapshot's download,
//! the replay of the remote tier, the replay of the local log), bytes downloaded of the
//! total, offsets replayed of the target. The replica updates it; the tablet server's
//! [`crate::tablet_server::TabletServer::recovery_stats`] reads it (metrics), and it is logged
//! at most once per `log_interval_ms` of the env's clock (and at every change of phase).

use std::sync::Arc;

use crate::env::Clock;
use crate::sync::Mutex;
use crate::table_bucket::TableBucket;

/// How often a running recovery logs its progress at most (ms of the env's clock).
pub const RECOVERY_LOG_INTERVAL_MS: u64 = 5_000;

/// What a recovery is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecoveryPhase {
    /// Downloading the KV snapshot's files.
    Download,
    /// Replaying the tiered changelog from the snapshot's offset to the local log's start.
    RemoteReplay,
    /// Replaying the local log up to the high watermark.
    LocalReplay,
}

impl RecoveryPhase {
    pub fn name(self) -> &'static str {
        match self {
            RecoveryPhase::Download => "download",
            RecoveryPhase::RemoteReplay => "remote_replay",
            RecoveryPhase::LocalReplay => "local_replay",
        }
    }
}

/// One moment of a bucket's recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryProgress {
    pub phase: RecoveryPhase,
    /// The attempt running, from 1 (at most [`crate::recovery::RECOVERY_ATTEMPTS_MAX`]).
    pub attempt: u32,
    /// The snapshot restored from; 0 before one is chosen.
    pub snapshot_id: u64,
    /// Of the phase's downloads (the snapshot's files, or the remote segments).
    pub bytes_downloaded: u64,
    pub bytes_total: u64,
    /// The replay stands here, on its way to `offset_target`.
    pub offset_replayed: u64,
    pub offset_target: u64,
}

/// The shared record of one bucket's recovery; `None` while none runs.
pub struct RecoveryTracker {
    bucket: TableBucket,
    clock: Arc<dyn Clock>,
    log_interval_ms: u64,
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    progress: Option<RecoveryProgress>,
    logged_at_ms: Option<u64>,
}

impl std::fmt::Debug for RecoveryTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryTracker").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

impl RecoveryTracker {
    pub fn new(bucket: TableBucket, clock: Arc<dyn Clock>, log_interval_ms: u64) -> Self {
        RecoveryTracker {
            bucket,
            clock,
            log_interval_ms,
            state: Mutex::new(TrackerState::default()),
        }
    }

    /// The recovery's progress, `None` when none runs.
    pub fn progress(&self) -> Option<RecoveryProgress> {
        self.lock().progress
    }

    /// Starts (or restarts, for a new attempt) the record at `phase`.
    pub fn start(&self, attempt: u32, phase: RecoveryPhase) {
        let progress = RecoveryProgress {
            phase,
            attempt,
            snapshot_id: 0,
            bytes_downloaded: 0,
            bytes_total: 0,
            offset_replayed: 0,
            offset_target: 0,
        };
        self.set(progress);
    }

    /// Changes the record (nothing when no recovery runs), and logs it when the phase changed
    /// or the last log is `log_interval_ms` old.
    pub fn update(&self, change: impl FnOnce(&mut RecoveryProgress)) {
        let Some(mut progress) = self.progress() else { return };
        change(&mut progress);
        self.set(progress);
    }

    /// The recovery ended (either way): nothing runs any more.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.progress = None;
        state.logged_at_ms = None;
    }

    fn set(&self, progress: RecoveryProgress) {
        let now_ms = self.clock.now_mono_ms();
        let log = {
            let mut state = self.lock();
            let phase_changed = state.progress.is_none_or(|before| before.phase != progress.phase);
            let due = state
                .logged_at_ms
                .is_none_or(|logged_ms| now_ms.saturating_sub(logged_ms) >= self.log_interval_ms);
            state.progress = Some(progress);
            let log = phase_changed || due;
            if log {
                state.logged_at_ms = Some(now_ms);
            }
            log
        };
        if log {
            tracing::info!(
                bucket = %self.bucket,
                phase = progress.phase.name(),
                attempt = progress.attempt,
                snapshot_id = progress.snapshot_id,
                bytes_downloaded = progress.bytes_downloaded,
                bytes_total = progress.bytes_total,
                offset_replayed = progress.offset_replayed,
                offset_target = progress.offset_target,
                "kv recovery progress"
            );
        }
    }

    /// Carries on past poisoning: the record is replaced whole under the lock, so a panic
    /// cannot leave it half changed.
    fn lock(&self) -> crate::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::future::BoxFuture;

    use super::*;

    #[derive(Default)]
    struct TestClock(AtomicU64);

    impl TestClock {
        fn advance_ms(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now_mono_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        fn now_wall_ms(&self) -> u64 {
            self.now_mono_ms()
        }

        fn sleep_until(&self, _deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
            unreachable!("the tracker never sleeps")
        }
    }

    #[test]
    fn progress_is_readable_while_a_recovery_runs_and_gone_after_it() {
        let clock = Arc::new(TestClock::default());
        let tracker = RecoveryTracker::new(TableBucket::new(1, 0), clock.clone(), 1_000);
        assert_eq!(tracker.progress(), None);
        tracker.update(|progress| progress.offset_replayed = 9);
        assert_eq!(tracker.progress(), None, "no record without a recovery");
        tracker.start(2, RecoveryPhase::Download);
        tracker.update(|progress| {
            progress.bytes_downloaded = 5;
            progress.bytes_total = 10;
        });
        let progress = tracker.progress().unwrap();
        assert_eq!((progress.attempt, progress.phase), (2, RecoveryPhase::Download));
        assert_eq!((progress.bytes_downloaded, progress.bytes_total), (5, 10));
        tracker.finish();
        assert_eq!(tracker.progress(), None);
    }

    #[test]
    fn a_recovery_logs_at_phase_changes_and_at_most_once_per_interval() {
        let clock = Arc::new(TestClock::default());
        let tracker = RecoveryTracker::new(TableBucket::new(1, 0), clock.clone(), 1_000);
        tracker.start(1, RecoveryPhase::RemoteReplay);
        let logged = || tracker.lock().logged_at_ms;
        let first = logged().unwrap();
        clock.advance_ms(400);
        tracker.update(|progress| progress.offset_replayed = 1);
        assert_eq!(logged(), Some(first), "not due yet");
        clock.advance_ms(600);
        tracker.update(|progress| progress.offset_replayed = 2);
        assert_eq!(logged(), Some(first + 1_000), "due after the interval");
        clock.advance_ms(1);
        tracker.update(|progress| progress.phase = RecoveryPhase::LocalReplay);
        assert_eq!(logged(), Some(first + 1_001), "a new phase is logged at once");
    }
}
