//! The progress ledger: what the workload tried, what it got, and every give-up with its
//! reason, so that a run that did nothing cannot pass silently.
//!
//! What "the progress its plan allows" means, precisely:
//! - during faults, an operation may give up (after its bounded retries); each give-up is
//!   counted by operation and reason (`put:timeout`, `lookup:NotLeaderOrFollower`, ...) and
//!   printed in the run's summary line and the sweep's totals;
//! - a plan with a non-zero upsert weight lets writes succeed: if its clients sent puts, at
//!   least one must have been acknowledged during the workload;
//! - once faults stop and every server is back (the heal), a prober must write and then read
//!   back every bucket within [`HEAL_PROGRESS_BOUND_MS`] of virtual time, and the cluster must
//!   settle (one current leader per bucket, flushed to its high watermark) within the same
//!   bound; otherwise the run fails with the names of the tasks still pending.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Virtual time the healed cluster has to serve the prober and to settle.
pub const HEAL_PROGRESS_BOUND_MS: u64 = 60_000;

#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    puts_sent: u64,
    /// `operation:reason` → count.
    give_ups: BTreeMap<String, u64>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// A put batch was sent for the first time (its resends are not counted again).
    pub fn note_put_sent(&self) {
        self.lock().puts_sent += 1;
    }

    pub fn puts_sent(&self) -> u64 {
        self.lock().puts_sent
    }

    /// An operation stopped retrying without an answer it could use.
    pub fn give_up(&self, operation: &str, reason: &str) {
        *self.lock().give_ups.entry(format!("{operation}:{reason}")).or_insert(0) += 1;
    }

    pub fn give_ups(&self) -> BTreeMap<String, u64> {
        self.lock().give_ups.clone()
    }

    /// `total (op:reason=n, ...)`, or `0` when nothing gave up.
    pub fn give_ups_summary(&self) -> String {
        describe_give_ups(&self.give_ups())
    }

    fn lock(&self) -> MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `total (op:reason=n, ...)`, or `0` when nothing gave up.
pub fn describe_give_ups(give_ups: &BTreeMap<String, u64>) -> String {
    let total: u64 = give_ups.values().sum();
    if total == 0 {
        return "0".to_string();
    }
    let parts: Vec<String> = give_ups.iter().map(|(k, n)| format!("{k}={n}")).collect();
    format!("{total} ({})", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn give_ups_are_counted_by_operation_and_reason() {
        let progress = Progress::new();
        assert_eq!(progress.give_ups_summary(), "0");
        progress.give_up("put", "timeout");
        progress.give_up("put", "timeout");
        progress.give_up("lookup", "NotLeaderOrFollower");
        assert_eq!(progress.give_ups_summary(), "3 (lookup:NotLeaderOrFollower=1 put:timeout=2)");
    }
}
