//! The coordinator's lease expiry loop: sleeps until the expiry check is due
//! (`SnapshotService::next_lease_check_mono_ms`, on the service's clock), runs the tick as
//! blocking work (it syncs files), and deletes what the expired leases let go of and mirrors
//! the leases to remote storage in tasks of their own (the next check never waits for the
//! remote store). The caller
//! spawns it as a task of its own (in the ledger) and aborts it at shutdown; it ends by itself
//! for a coordinator without leases.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::Executor;
use crate::ledger::Ledger;
use crate::snapshot::snapshot_service::SnapshotService;
use crate::snapshot::snapshot_store::Cleanup;
use crate::task::Task;

pub fn run_lease_expiry_loop(
    executor: Arc<dyn Executor>,
    ledger: Ledger,
    service: Arc<SnapshotService>,
) -> BoxFuture<'static, ()> {
    async move {
        let mut mirroring: Option<Task> = None;
        while let Some(due_mono_ms) = service.next_lease_check_mono_ms() {
            service.clock().sleep_until(due_mono_ms).await;
            let ticking = service.clone();
            let tick = crate::task::run_blocking(
                &executor,
                &ledger,
                "kv snapshot lease expiry check".to_string(),
                move || ticking.tick_lease_expiry(),
            );
            // `None`: the blocking work was dropped (a shutdown); the next start checks again.
            let Some(cleanup): Option<Cleanup> = tick.await else { return };
            // The deletions run as a task of their own, as a commit's do: awaited here, a slow
            // or failing remote store (five attempts per object, backing off up to seconds)
            // held back the next checks, and expired leases kept their snapshots for as long.
            if !cleanup.is_empty() {
                let deleting = service.delete(cleanup);
                let _task = Task::spawn(
                    &executor,
                    &ledger,
                    "delete what expired kv snapshot leases let go of",
                    async move {
                        let left = deleting.await;
                        if !left.is_empty() {
                            tracing::warn!(
                                left = left.len(),
                                "expired leases' files left to the orphan sweep"
                            );
                        }
                    }
                    .boxed(),
                );
            }
            // The remote lease copies: the expired leases' go, and what a failure left behind
            // is done again, in a task of its own as well: awaited here, a put retried with
            // backoff held back the next checks (leases seed 1215 of 2,000: an expired lease
            // pinned its snapshot 400 ms past its check). One at a time: while one runs, the
            // next check's work waits for the check after it.
            if mirroring.as_ref().is_none_or(Task::has_ended) {
                mirroring = service.mirror_leases().map(|copies| {
                    Task::spawn(&executor, &ledger, "mirror the kv snapshot leases", copies)
                });
            }
        }
    }
    .boxed()
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::lease::{KvSnapshotLeaseManager, LeaseConfig};
    use crate::message::{Request, Response};
    use crate::recovery::test_remote::MemRemote;
    use crate::scan::kv_scanner::testing::TestRuntime;
    use crate::snapshot::{SnapshotStore, SnapshotStoreConfig};

    #[test]
    fn the_loop_expires_a_lease_at_the_first_check_after_its_expiration() {
        let mut runtime = TestRuntime::new();
        let clock = runtime.clock();
        let fs = Arc::new(TestFs::default());
        let config = LeaseConfig { expiration_check_interval_ms: 1_000, ..LeaseConfig::default() };
        let leases = KvSnapshotLeaseManager::open(
            fs.clone(),
            "leases".into(),
            clock.clone(),
            Ledger::new(),
            config,
        )
        .expect("open");
        let store = SnapshotStore::open_with_leases(
            fs,
            "kv-snapshots".into(),
            SnapshotStoreConfig::default(),
            Arc::new(leases),
        )
        .expect("open");
        let remote = Arc::new(MemRemote::new(clock.clone()));
        let service = Arc::new(SnapshotService::new(
            Arc::new(store),
            remote,
            clock.clone(),
            Arc::new(|_| None),
        ));
        let acquire = Request::AcquireKvSnapshotLease {
            lease_id: "a".into(),
            duration_ms: 1_500,
            snapshots: vec![],
        };
        let acquired = service.handle(&acquire).expect("served").0;
        assert_eq!(acquired, Response::KvSnapshotLeaseAcquired { unavailable: vec![] });
        let ledger = Ledger::new();
        runtime.executor().spawn(
            "lease expiry".into(),
            run_lease_expiry_loop(runtime.executor(), ledger, service.clone()),
        );
        let count = |service: &SnapshotService| service.lease_gauges().expect("leases").lease_count;
        let watched = service.clone();
        let counts = runtime.run(async move {
            let mut counts = Vec::new();
            for at_ms in [999, 1_001, 1_999, 2_001] {
                watched.clock().sleep_until(at_ms).await;
                counts.push(count(&watched));
            }
            counts
        });
        assert_eq!(counts, vec![1, 1, 1, 0], "checked at 0, 1000 (valid) and 2000 (expired)");
    }
}
