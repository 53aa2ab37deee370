//! What the injected faults did in one run, shared by every faulty component (disks, engines)
//! and the oracles.
//!
//! Two jobs:
//! - counting the faults that actually fired, by kind, so that an oracle can tell an error the
//!   run's faults explain from one they cannot (a storage error with no storage fault injected
//!   is still a bug), and so that the run summary names them;
//! - the oracles' god view: while [`FaultLog::god_view`] runs, faulty components answer
//!   truthfully (no EIO, no bit rot on reads), so that the model reads what is really stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::clock::lock;

/// The kinds of injected fault, as counted and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    FsyncFailure,
    ReadError,
    DiskFull,
    BitRot,
    TornWrite,
    EngineWriteError,
    EngineReadError,
    EngineIteratorError,
    EngineOpenError,
    /// A byte of a committed KV snapshot's object flipped at rest in the remote store.
    SnapshotCorruption,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::FsyncFailure => "fsync_failure",
            FaultKind::ReadError => "read_error",
            FaultKind::DiskFull => "disk_full",
            FaultKind::BitRot => "bit_rot",
            FaultKind::TornWrite => "torn_write",
            FaultKind::EngineWriteError => "engine_write_error",
            FaultKind::EngineReadError => "engine_read_error",
            FaultKind::EngineIteratorError => "engine_iterator_error",
            FaultKind::EngineOpenError => "engine_open_error",
            FaultKind::SnapshotCorruption => "snapshot_corruption",
        }
    }

    /// Whether a client may see a storage error because of this fault.
    pub fn surfaces_as_storage_error(self) -> bool {
        // A torn write only changes what a crash keeps; a damaged snapshot fails a restore,
        // which answers NOT_READY; everything else fails an operation.
        !matches!(self, FaultKind::TornWrite | FaultKind::SnapshotCorruption)
    }
}

/// Counts of fired faults and the god-view switch. Share it as `Arc<FaultLog>`.
#[derive(Debug, Default)]
pub struct FaultLog {
    fired: Mutex<BTreeMap<FaultKind, u64>>,
    god_view_depth: AtomicU32,
}

impl FaultLog {
    pub fn new() -> FaultLog {
        FaultLog::default()
    }

    pub fn record(&self, kind: FaultKind) {
        *lock(&self.fired).entry(kind).or_insert(0) += 1;
    }

    pub fn fired(&self, kind: FaultKind) -> u64 {
        lock(&self.fired).get(&kind).copied().unwrap_or(0)
    }

    /// Faults fired so far that can make an operation fail with a storage error.
    pub fn storage_errors_explained(&self) -> u64 {
        lock(&self.fired)
            .iter()
            .filter(|(kind, _)| kind.surfaces_as_storage_error())
            .map(|(_, count)| *count)
            .sum()
    }

    /// `kind=count` for every kind that fired, in kind order (for the run summary).
    pub fn summary(&self) -> String {
        let fired = lock(&self.fired);
        if fired.is_empty() {
            return "none".to_string();
        }
        fired
            .iter()
            .map(|(kind, count)| format!("{}={count}", kind.name()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `read` with every fault suspended: what the oracles read is the stored truth.
    pub fn god_view<T>(&self, read: impl FnOnce() -> T) -> T {
        self.god_view_depth.fetch_add(1, Ordering::SeqCst);
        let _restore = GodViewGuard { log: self };
        read()
    }

    pub fn in_god_view(&self) -> bool {
        self.god_view_depth.load(Ordering::SeqCst) > 0
    }
}

struct GodViewGuard<'a> {
    log: &'a FaultLog,
}

impl Drop for GodViewGuard<'_> {
    fn drop(&mut self) {
        self.log.god_view_depth.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fired_faults_and_explains_storage_errors() {
        let log = FaultLog::new();
        assert_eq!(log.summary(), "none");
        log.record(FaultKind::TornWrite);
        assert_eq!(log.storage_errors_explained(), 0, "a torn write fails no operation");
        log.record(FaultKind::FsyncFailure);
        log.record(FaultKind::FsyncFailure);
        assert_eq!(log.fired(FaultKind::FsyncFailure), 2);
        assert_eq!(log.storage_errors_explained(), 2);
        assert_eq!(log.summary(), "fsync_failure=2 torn_write=1");
    }

    #[test]
    fn god_view_nests_and_ends_with_its_closure() {
        let log = FaultLog::new();
        assert!(!log.in_god_view());
        let inner = log.god_view(|| log.god_view(|| log.in_god_view()) && log.in_god_view());
        assert!(inner);
        assert!(!log.in_god_view());
    }
}
