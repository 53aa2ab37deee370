//! Deliberate bugs, compiled in only with the `mutants` feature and chosen by name at run time.
//!
//! The simulator's worth is measured by whether it catches these. Without the feature,
//! [`Mutants::is_on`] is a constant `false` and every mutant branch is dead code.

/// A named deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// The flush publishes the new flushed offset before the engine write lands.
    FlushAdvancesOffsetBeforeWrite,
    /// A write under a stale leader epoch is appended instead of fenced.
    StaleEpochWriteAccepted,
    /// Log retention ignores the minimum retain offset: it deletes segments at or above it
    /// (what recovery replays).
    RetentionIgnoresMinRetain,
    /// An update is logged as `+I` without the `-U` of the old value.
    UpdateLoggedAsInsert,
    /// Scan open checks leadership, lets go of the leader lock, then opens and registers
    /// (Fluss review finding 6).
    ScanLeaderCheckOutsideLock,
    /// A continuation refreshes the session's TTL when it is looked up, before the request
    /// is validated (finding 19).
    TtlRefreshedBeforeValidation,
    /// Closing a bucket's sessions resets its counter while closes deferred to in-flight
    /// requests are still to be counted down (finding 4).
    ScanCountersResetOnClose,
    /// The scan's `log_offset` is read outside the lock that gates flushes, apart from the
    /// snapshot (finding 10).
    ScanLogOffsetOutsideFlushLock,
    /// The batch loop does not append at least one row, so a tiny budget returns an empty
    /// page that claims more rows (finding 17).
    NoAtLeastOneRecord,
    /// A leadership close does not remember the ids as expired (finding 14).
    LeadershipCloseForgetsIds,
    /// The TTL evictor closes sessions that a request is using (residual hazard).
    EvictorIgnoresInUse,
    /// A request rejected as concurrent destroys the session it was rejected from (residual
    /// hazard).
    RejectedConcurrentDestroysSession,
    /// A transport retry of the last page is treated as out of order and ends the scan, as
    /// Fluss does.
    RetryOfLastPageEndsScan,
    /// A writer's batch resent after a lost response is appended again instead of being
    /// recognised as a duplicate.
    DuplicateBatchReappended,
    /// The changelog append is acknowledged without syncing the frame: a crash loses it.
    AppendAcknowledgedBeforeSync,
    /// Two puts of a bucket may compute their changes against the same state: the check (the
    /// key's current value) and the act (the append) are no longer one critical section.
    PutsNotSerialised,
    /// The flush moves up to the high watermark even while a batch's values are still being
    /// parked, so it skips them.
    FlushPastUnparkedBatch,
    /// Scan registration checks the limits under one acquisition of the manager's lock and
    /// counts and inserts the session under a second one (check-then-act split).
    ScanLimitCheckAndRegisterSplit,
    /// An append checks the epoch and the writer's sequence under one acquisition of the log's
    /// lock, then appends and records the batch under a second one (check-then-act split).
    WriterCheckAndAppendSplit,
    /// The TTL evictor ends the sessions its pass picked without checking again that they
    /// are still idle and free: a request may have taken one in between.
    EvictorActsOnStalePick,
    /// Reads do not wait for the flush to reach the writes acknowledged before them (Fluss's
    /// behaviour), so a lookup right after an acknowledged upsert may miss it.
    ReadsMissAcknowledgedWrites,
    /// Every put is answered with a retriable error (`LEADER_NOT_AVAILABLE`): nothing is ever
    /// written, and clients give up.
    PutAlwaysRefused,
    /// A scan page is cut at the requested batch size instead of the smaller of it and the
    /// server's cap (`kv.scanner` max batch size).
    PageOverCap,
    /// The writer state keeps only each writer's last batch instead of the last 5, so a
    /// resend of an earlier in-flight batch is appended again.
    WriterStateKeepsLastBatchOnly,
    /// Opening a log does not rebuild its idempotent writers' state from the batches it
    /// loads, so a batch resent after a restart is appended again.
    WriterStateNotRebuiltOnOpen,
    /// A closed scan session's iterator (and the snapshot it pins) is kept in a server-level
    /// list for the server's lifetime.
    ClosedSessionIteratorKept,
    /// A continuation's page does not refresh the session's last access (only the open does),
    /// so a scan read slowly expires within the TTL of its last page.
    ContinuationSkipsTtlRefresh,
    /// Reads treat an invalid engine iterator as the end without asking for its status, so an
    /// iterator error returns a short result as if it were complete.
    IteratorErrorIgnored,
    /// A failed changelog sync is taken for a successful one (the "fsyncgate" mistake): the
    /// batch is acknowledged while its bytes may never reach the disk.
    FailedSyncTreatedAsSuccess,
    /// Opening a log cuts any damaged last frame as if it were a torn append, including a
    /// whole synced frame whose bytes rotted, dropping an acknowledged batch silently.
    DamagedLastFrameCutAsTorn,
    /// A new leader epoch that cannot be persisted is not applied in memory either, so a
    /// deposed leader keeps serving under its old epoch.
    UnpersistedFenceIgnored,
    /// A flush write that was planned before its term ended still lands in the engine after
    /// the next term's rebuild, moving the engine's flushed offset and values backwards: the
    /// ended term's flush task is not joined and its write is not fenced (either guard alone
    /// keeps the rule).
    DeposedFlushWriteLands,
    /// A partial update is merged as if its key held nothing: the columns it did not target
    /// are overwritten with NULL.
    PartialUpdateIgnoresOldRow,
    /// A dropped partition stops being served, but its replicas are left running: their
    /// engines, flush tasks and scan sessions live on for the server's lifetime.
    PartitionDropKeepsReplicas,
    /// A partitioned table's bucket check accepts any partition id, dropped or never created:
    /// a request for a dropped partition is answered as for a bucket led elsewhere.
    PartitionCheckIgnoresDrop,
    /// A KV snapshot raises the log's minimum retain offset before its commit succeeded
    /// (the order Fluss had to fix): a refused snapshot leaves the log trimmed for it.
    SnapshotRetainRaisedBeforeCommit,
    /// Retention drops old snapshots with every file they list, also the shared files that a
    /// kept snapshot still uses.
    SnapshotKeptFileDeleted,
    /// The coordinator accepts a snapshot from a deposed leader (no epoch check).
    SnapshotDeposedLeaderAccepted,
    /// The snapshot's `log_offset` is read from the tablet before the checkpoint, in a step of
    /// its own, so a flush that lands in between is in the snapshot above its offset.
    SnapshotOffsetReadBeforeCheckpoint,
    /// A commit that got no answer is taken as refused and the snapshot's uploads deleted,
    /// though the commit may have landed.
    SnapshotAmbiguousCommitDeletesUploads,
    /// The checkpoint is uploaded without checking it against the engine's checksums, so
    /// bytes that rotted on the local disk are committed.
    SnapshotCheckpointNotVerified,
    /// Retention deletes segments without first persisting the writers' state they leave
    /// behind: after a reopen a writer whose batches were deleted is forgotten.
    RetentionForgetsWriterState,
    /// The tierer raises the log's remote end once a segment is uploaded, before the
    /// coordinator has committed it to the remote-log manifest.
    TieringRemoteEndRaisedBeforeCommit,
    /// Local retention deletes segments that are not yet in the remote tier: it keeps the
    /// minimum retain offset and the high watermark as bounds but forgets the remote end.
    RetentionIgnoresRemoteEnd,
    /// A recovery download whose file is written after its fetcher was closed or drained (a
    /// cancelled prefetch) leaves that file behind instead of deleting it.
    FetcherCancelDropsDownloadedFile,
    /// The fetcher's `close` deletes its temporary directory without waiting for the downloads
    /// in flight, which may still write into it.
    FetcherCloseSkipsWait,
    /// A closed fetcher can be iterated again instead of answering `FetchError::Closed`.
    FetcherClosedReusable,
    /// The fetcher hands out the first completed download (by position in the completion
    /// order) instead of the one whose segment id the consumer asked for.
    FetcherMatchesByIdentity,
    /// A transient remote failure of a recovery download is not retried.
    FetcherNoRetry,
    /// The prefetch slot of a download that failed for good is never released.
    FetcherSlotLeakedOnFailure,
    /// The fetcher's prefetch window is not bounded by `prefetch_num`: downloads run ahead of
    /// the consumer as far as the download threads go.
    FetcherWindowUnbounded,
    /// The lease expiry check drops expired leases without decrementing the reference counts
    /// of their pins, so their snapshots stay "leased" for ever.
    LeaseExpiryKeepsRefcount,
    /// Re-acquiring a bucket pins the new snapshot without unpinning the old one.
    LeaseReacquireKeepsOldPin,
    /// Releasing a table's last pinned bucket leaves the table's entry in the lease, so a
    /// lease whose last bucket goes is not dropped.
    LeaseReleaseKeepsEmptyTable,
    /// An acquire changes the pins in memory, which retention consults, before the lease's new
    /// file is durable: a failed write leaves a moved pin that the disk does not have.
    LeaseAppliedBeforePersist,
    /// The expiry check drops a lease at the millisecond it expires (`<=` for Fluss's `<`).
    LeaseExpiresAtDeadline,
    /// A lease's new file is renamed into place without a sync, so a crash after the
    /// acknowledgement loses what the acquire wrote (a restart loses the leases acquired since
    /// their last durable write).
    LeaseRenamedWithoutSync,
    /// A KV recovery's replay of the remote tier runs past the local log's start instead of
    /// stopping at it (remote and local replays overlap at the boundary).
    RecoveryRemoteReplayPastBoundary,
    /// A KV recovery's replay of the remote tier stops one offset short of the local log's
    /// start (a gap at the boundary).
    RecoveryRemoteReplayShortOfBoundary,
    /// A KV snapshot found broken during a recovery is neither reported nor skipped: every
    /// attempt retries the same broken snapshot.
    RecoveryBrokenSnapshotNotReported,
    /// Remote log retention deletes expired segments at or above the bucket's minimum retain
    /// offset (the oldest kept KV snapshot's `log_offset`), which a KV recovery replays from.
    RemoteRetentionIgnoresMinRetainOffset,
    /// A restore takes a local I/O failure while checking its downloaded checkpoint for
    /// damage: the healthy snapshot is reported broken, and the coordinator forgets it.
    RestoreLocalFailureBreaksSnapshot,
    /// A restore takes a checkpoint the engine finds damaged for a broken snapshot without
    /// checking its local copy against the records: bytes that rotted on the local disk after
    /// the download break a healthy snapshot.
    RestoreLocalDamageBreaksSnapshot,
    /// A restore starts the remote-log fetcher's prefetch with its own first downloads
    /// instead of once they are all done: a recovery runs more remote reads at once than
    /// `download-threads`.
    RestoreFetcherStartsBesideDownloads,
    /// A restore downloads with one thread more than `download-threads`.
    RestoreDownloadsBeyondThreads,
    /// A restore reads its download threads from Fluss's default instead of its
    /// configuration: right only where the two agree.
    RestoreThreadsFromDefault,
    /// A restore takes a file still answered not-found after its retries for a missing one
    /// without asking a listing: a healthy snapshot behind a store whose reads have not caught
    /// up is reported broken.
    RestoreNotFoundUnconfirmedBreaksSnapshot,
    /// A recovery attempt whose restore failed for a passing reason (a download that kept
    /// failing, a local I/O error) skips that snapshot in the next attempts, unreported: the
    /// bucket falls back to an older snapshot while the newest one is whole.
    RecoveryTransientFailureSkipsSnapshot,
    /// A leader's snapshot loop keeps what it knew of the latest snapshot after a failure: once
    /// the coordinator forgot that snapshot (reported broken), every later snapshot reuses its
    /// files and is refused, for ever.
    SnapshotLoopKeepsStaleLatest,
    /// A leader's tiering loop ends on a failed tick (an upload or a commit that failed)
    /// instead of trying again at the next: the term tiers nothing more and local retention
    /// stops with it.
    TieringLoopEndsOnFailure,
    /// A committed snapshot does not raise the log's minimum retain offset: local retention
    /// keeps the whole log for ever (no data is lost, so no data oracle sees it).
    SnapshotCommitLeavesRetainOffset,
}

impl Mutant {
    pub const ALL: &'static [Mutant] = &[
        Mutant::FlushAdvancesOffsetBeforeWrite,
        Mutant::StaleEpochWriteAccepted,
        Mutant::RetentionIgnoresMinRetain,
        Mutant::UpdateLoggedAsInsert,
        Mutant::ScanLeaderCheckOutsideLock,
        Mutant::TtlRefreshedBeforeValidation,
        Mutant::ScanCountersResetOnClose,
        Mutant::ScanLogOffsetOutsideFlushLock,
        Mutant::NoAtLeastOneRecord,
        Mutant::LeadershipCloseForgetsIds,
        Mutant::EvictorIgnoresInUse,
        Mutant::RejectedConcurrentDestroysSession,
        Mutant::RetryOfLastPageEndsScan,
        Mutant::DuplicateBatchReappended,
        Mutant::AppendAcknowledgedBeforeSync,
        Mutant::PutsNotSerialised,
        Mutant::FlushPastUnparkedBatch,
        Mutant::ScanLimitCheckAndRegisterSplit,
        Mutant::WriterCheckAndAppendSplit,
        Mutant::EvictorActsOnStalePick,
        Mutant::ReadsMissAcknowledgedWrites,
        Mutant::PutAlwaysRefused,
        Mutant::PageOverCap,
        Mutant::WriterStateKeepsLastBatchOnly,
        Mutant::WriterStateNotRebuiltOnOpen,
        Mutant::ClosedSessionIteratorKept,
        Mutant::ContinuationSkipsTtlRefresh,
        Mutant::IteratorErrorIgnored,
        Mutant::FailedSyncTreatedAsSuccess,
        Mutant::DamagedLastFrameCutAsTorn,
        Mutant::UnpersistedFenceIgnored,
        Mutant::DeposedFlushWriteLands,
        Mutant::PartialUpdateIgnoresOldRow,
        Mutant::PartitionDropKeepsReplicas,
        Mutant::PartitionCheckIgnoresDrop,
        Mutant::SnapshotRetainRaisedBeforeCommit,
        Mutant::SnapshotKeptFileDeleted,
        Mutant::SnapshotDeposedLeaderAccepted,
        Mutant::SnapshotOffsetReadBeforeCheckpoint,
        Mutant::SnapshotAmbiguousCommitDeletesUploads,
        Mutant::SnapshotCheckpointNotVerified,
        Mutant::RetentionForgetsWriterState,
        Mutant::TieringRemoteEndRaisedBeforeCommit,
        Mutant::RetentionIgnoresRemoteEnd,
        Mutant::FetcherCancelDropsDownloadedFile,
        Mutant::FetcherCloseSkipsWait,
        Mutant::FetcherClosedReusable,
        Mutant::FetcherMatchesByIdentity,
        Mutant::FetcherNoRetry,
        Mutant::FetcherSlotLeakedOnFailure,
        Mutant::FetcherWindowUnbounded,
        Mutant::LeaseExpiryKeepsRefcount,
        Mutant::LeaseReacquireKeepsOldPin,
        Mutant::LeaseReleaseKeepsEmptyTable,
        Mutant::LeaseAppliedBeforePersist,
        Mutant::LeaseExpiresAtDeadline,
        Mutant::LeaseRenamedWithoutSync,
        Mutant::RecoveryRemoteReplayPastBoundary,
        Mutant::RecoveryRemoteReplayShortOfBoundary,
        Mutant::RecoveryBrokenSnapshotNotReported,
        Mutant::RemoteRetentionIgnoresMinRetainOffset,
        Mutant::RestoreLocalFailureBreaksSnapshot,
        Mutant::RestoreLocalDamageBreaksSnapshot,
        Mutant::RestoreFetcherStartsBesideDownloads,
        Mutant::RestoreDownloadsBeyondThreads,
        Mutant::RestoreThreadsFromDefault,
        Mutant::RestoreNotFoundUnconfirmedBreaksSnapshot,
        Mutant::RecoveryTransientFailureSkipsSnapshot,
        Mutant::SnapshotLoopKeepsStaleLatest,
        Mutant::TieringLoopEndsOnFailure,
        Mutant::SnapshotCommitLeavesRetainOffset,
    ];

    /// The mutants that only real preemption reaches: two critical sections with no await
    /// between them, which the single-threaded simulator always runs back to back. The shuttle
    /// harness (`core/tests/shuttle`) catches these; the simulator's sweep skips them.
    pub const PREEMPTION_ONLY: &'static [Mutant] = &[
        Mutant::ScanLimitCheckAndRegisterSplit,
        Mutant::WriterCheckAndAppendSplit,
        Mutant::EvictorActsOnStalePick,
        Mutant::FlushPastUnparkedBatch,
    ];

    /// The mutants the simulator's sweep does not measure: of recovery's `RemoteLogFetcher`
    /// (`crate::recovery`), a closed fetcher that can be iterated again (no recovery touches a
    /// fetcher after closing it), a prefetch without retries (its synchronous fallback
    /// download retries, so the recovery still succeeds: only the fetcher's own tests see it)
    /// and a slot leaked by a failed download (caught by the `recovery` scenario's leak ledger
    /// at seed 1, but a seed then runs for minutes while the leaked slot stalls its window
    /// until the progress bound); and a lease expired at the very millisecond of its
    /// expiration (`LeaseExpiresAtDeadline`), which needs an expiry check at that millisecond
    /// while a consumer still relies on the lease. The shuttle harness (`core/tests/shuttle`),
    /// the simulator's fetcher test (`sim/tests/recovery_fetcher.rs`) and core's unit tests
    /// catch these; the sweep skips them. The fetcher's other mutants are the `recovery`
    /// scenario's, the lease ones the `leases` scenario's, and all are still the shuttle
    /// harness's.
    pub const OUTSIDE_SIMULATION: &'static [Mutant] = &[
        Mutant::FetcherClosedReusable,
        Mutant::FetcherNoRetry,
        Mutant::FetcherSlotLeakedOnFailure,
        Mutant::LeaseExpiresAtDeadline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::FlushAdvancesOffsetBeforeWrite => "flush-advances-offset-before-write",
            Mutant::StaleEpochWriteAccepted => "stale-epoch-write-accepted",
            Mutant::RetentionIgnoresMinRetain => "retention-ignores-min-retain",
            Mutant::UpdateLoggedAsInsert => "update-logged-as-insert",
            Mutant::ScanLeaderCheckOutsideLock => "scan-leader-check-outside-lock",
            Mutant::TtlRefreshedBeforeValidation => "ttl-refreshed-before-validation",
            Mutant::ScanCountersResetOnClose => "scan-counters-reset-on-close",
            Mutant::ScanLogOffsetOutsideFlushLock => "scan-log-offset-outside-flush-lock",
            Mutant::NoAtLeastOneRecord => "no-at-least-one-record",
            Mutant::LeadershipCloseForgetsIds => "leadership-close-forgets-ids",
            Mutant::EvictorIgnoresInUse => "evictor-ignores-in-use",
            Mutant::RejectedConcurrentDestroysSession => "rejected-concurrent-destroys-session",
            Mutant::RetryOfLastPageEndsScan => "retry-of-last-page-ends-scan",
            Mutant::DuplicateBatchReappended => "duplicate-batch-reappended",
            Mutant::AppendAcknowledgedBeforeSync => "append-acknowledged-before-sync",
            Mutant::PutsNotSerialised => "puts-not-serialised",
            Mutant::FlushPastUnparkedBatch => "flush-past-unparked-batch",
            Mutant::ScanLimitCheckAndRegisterSplit => "scan-limit-check-and-register-split",
            Mutant::WriterCheckAndAppendSplit => "writer-check-and-append-split",
            Mutant::EvictorActsOnStalePick => "evictor-acts-on-stale-pick",
            Mutant::ReadsMissAcknowledgedWrites => "reads-miss-acknowledged-writes",
            Mutant::PutAlwaysRefused => "put-always-refused",
            Mutant::PageOverCap => "page-over-cap",
            Mutant::WriterStateKeepsLastBatchOnly => "writer-state-keeps-last-batch-only",
            Mutant::WriterStateNotRebuiltOnOpen => "writer-state-not-rebuilt-on-open",
            Mutant::ClosedSessionIteratorKept => "closed-session-iterator-kept",
            Mutant::ContinuationSkipsTtlRefresh => "continuation-skips-ttl-refresh",
            Mutant::IteratorErrorIgnored => "iterator-error-ignored",
            Mutant::FailedSyncTreatedAsSuccess => "failed-sync-treated-as-success",
            Mutant::DamagedLastFrameCutAsTorn => "damaged-last-frame-cut-as-torn",
            Mutant::UnpersistedFenceIgnored => "unpersisted-fence-ignored",
            Mutant::DeposedFlushWriteLands => "deposed-flush-write-lands",
            Mutant::PartialUpdateIgnoresOldRow => "partial-update-ignores-old-row",
            Mutant::PartitionDropKeepsReplicas => "partition-drop-keeps-replicas",
            Mutant::PartitionCheckIgnoresDrop => "partition-check-ignores-drop",
            Mutant::SnapshotRetainRaisedBeforeCommit => "snapshot-retain-raised-before-commit",
            Mutant::SnapshotKeptFileDeleted => "snapshot-kept-file-deleted",
            Mutant::SnapshotDeposedLeaderAccepted => "snapshot-deposed-leader-accepted",
            Mutant::SnapshotOffsetReadBeforeCheckpoint => "snapshot-offset-read-before-checkpoint",
            Mutant::SnapshotAmbiguousCommitDeletesUploads => {
                "snapshot-ambiguous-commit-deletes-uploads"
            }
            Mutant::SnapshotCheckpointNotVerified => "snapshot-checkpoint-not-verified",
            Mutant::RetentionForgetsWriterState => "retention-forgets-writer-state",
            Mutant::TieringRemoteEndRaisedBeforeCommit => "tiering-remote-end-raised-before-commit",
            Mutant::RetentionIgnoresRemoteEnd => "retention-ignores-remote-end",
            Mutant::FetcherCancelDropsDownloadedFile => "fetcher-cancel-drops-downloaded-file",
            Mutant::FetcherCloseSkipsWait => "fetcher-close-skips-wait",
            Mutant::FetcherClosedReusable => "fetcher-closed-reusable",
            Mutant::FetcherMatchesByIdentity => "fetcher-matches-by-identity",
            Mutant::FetcherNoRetry => "fetcher-no-retry",
            Mutant::FetcherSlotLeakedOnFailure => "fetcher-slot-leaked-on-failure",
            Mutant::FetcherWindowUnbounded => "fetcher-window-unbounded",
            Mutant::LeaseExpiryKeepsRefcount => "lease-expiry-keeps-refcount",
            Mutant::LeaseReacquireKeepsOldPin => "lease-reacquire-keeps-old-pin",
            Mutant::LeaseReleaseKeepsEmptyTable => "lease-release-keeps-empty-table",
            Mutant::LeaseAppliedBeforePersist => "lease-applied-before-persist",
            Mutant::LeaseExpiresAtDeadline => "lease-expires-at-deadline",
            Mutant::LeaseRenamedWithoutSync => "lease-renamed-without-sync",
            Mutant::RecoveryRemoteReplayPastBoundary => "recovery-remote-replay-past-boundary",
            Mutant::RecoveryRemoteReplayShortOfBoundary => {
                "recovery-remote-replay-short-of-boundary"
            }
            Mutant::RecoveryBrokenSnapshotNotReported => "recovery-broken-snapshot-not-reported",
            Mutant::RemoteRetentionIgnoresMinRetainOffset => {
                "remote-retention-ignores-min-retain-offset"
            }
            Mutant::RestoreLocalFailureBreaksSnapshot => "restore-local-failure-breaks-snapshot",
            Mutant::RestoreLocalDamageBreaksSnapshot => "restore-local-damage-breaks-snapshot",
            Mutant::RestoreFetcherStartsBesideDownloads => {
                "restore-fetcher-starts-beside-downloads"
            }
            Mutant::RestoreDownloadsBeyondThreads => "restore-downloads-beyond-threads",
            Mutant::RestoreThreadsFromDefault => "restore-threads-from-default",
            Mutant::RestoreNotFoundUnconfirmedBreaksSnapshot => {
                "restore-not-found-unconfirmed-breaks-snapshot"
            }
            Mutant::RecoveryTransientFailureSkipsSnapshot => {
                "recovery-transient-failure-skips-snapshot"
            }
            Mutant::SnapshotLoopKeepsStaleLatest => "snapshot-loop-keeps-stale-latest",
            Mutant::TieringLoopEndsOnFailure => "tiering-loop-ends-on-failure",
            Mutant::SnapshotCommitLeavesRetainOffset => "snapshot-commit-leaves-retain-offset",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.iter().copied().find(|m| m.name() == name)
    }

    fn bit(self) -> u128 {
        let index = Mutant::ALL.iter().position(|m| *m == self).unwrap_or(0);
        1u128 << index
    }
}

/// The set of mutants switched on for one run; empty in production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutants(u128);

impl Mutants {
    pub const NONE: Mutants = Mutants(0);

    pub fn with(self, mutant: Mutant) -> Mutants {
        Mutants(self.0 | mutant.bit())
    }

    /// Whether `mutant` is on. Always false unless the crate is built with `mutants`.
    #[inline(always)]
    pub fn is_on(self, mutant: Mutant) -> bool {
        cfg!(feature = "mutants") && (self.0 & mutant.bit()) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_round_trips_through_its_name() {
        for mutant in Mutant::ALL {
            assert_eq!(Mutant::from_name(mutant.name()), Some(*mutant));
        }
        assert_eq!(Mutant::from_name("no-such-mutant"), None);
        assert!(Mutant::ALL.len() <= 128, "the mutant set is a u128 bitmap");
    }
}
