//! The node as its own coordinator for KV snapshots: core's [`SnapshotService`] behind an
//! [`RpcHandler`] on the node's loopback network, its store on the node's disk, and the orphan
//! sweep run at start-up before any bucket is led.
//!
//! The leaders reach it through core's `RpcSnapshotCommitter` at [`COORDINATOR_NODE_ID`], as
//! they would reach a remote coordinator. The store's writes are synced to disk, so a request
//! is answered from the blocking pool, never on an async worker. The deletions a commit allows
//! run afterwards as a task of their own; what they leave (a failed deletion, a crash) is found
//! by the next start's orphan sweep.

use std::sync::{Arc, Weak};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{Clock, LocalFs, RpcHandler};
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::lease::lease_manager::LEASE_DIR_COMPLETE;
use kvtablet_core::lease::lease_remote::{
    fetch_remote_lease_copies, mirror_leases, RemoteLeaseCopies,
};
use kvtablet_core::lease::{KvSnapshotLeaseManager, LeaseConfig, LeaseError};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::snapshot::lease_expiry_loop::run_lease_expiry_loop;
use kvtablet_core::snapshot::snapshot_service::{LeaderEpochOf, SnapshotService};
use kvtablet_core::snapshot::{Cleanup, SnapshotStore, SnapshotStoreConfig, SnapshotStoreError};
use kvtablet_core::tablet_server::TabletServer;
use kvtablet_core::task::{run_blocking, Task};
use kvtablet_core::tiering::{RemoteLogStore, RemoteLogStoreError};
use kvtablet_core::Env;

/// The id the coordinator's snapshot service answers under on the node's loopback network
/// (0 is the local client, 1 the tablet server).
pub const COORDINATOR_NODE_ID: NodeId = 2;
/// Relative to the data directory: one file per bucket with snapshots.
pub const SNAPSHOT_STORE_DIR: &str = "coordinator/kv-snapshots";
/// Relative to the data directory: one file per KV snapshot lease.
pub const LEASE_DIR: &str = "coordinator/kv-snapshot-leases";

/// Opens (or creates) the store and its leases under the data directory, and applies the
/// retention to what was loaded (a lease that expired or was released while the node was
/// down lets its snapshots go; the start-up orphan sweep deletes their files). A damaged
/// bucket or lease file refuses the open: the node must not decide from a record it cannot
/// read which remote files may go.
///
/// The leases are also kept in remote storage (`REMOTE_LEASE_ROOT`): their copies are fetched
/// first, and a lease directory that was lost (or a fresh data directory on the same remote
/// storage) gets its leases back from them (`KvSnapshotLeaseManager::open_with_remote` has the
/// rule). Then the copies that are behind are put and those superseded deleted. Remote
/// storage that cannot be listed refuses the start only when the lease directory is not whole.
pub async fn open_snapshot_store(
    env: &Env,
    num_retained: usize,
    leases: LeaseConfig,
) -> Result<Arc<SnapshotStore>, SnapshotStoreOpenError> {
    let parts = CoordinatorParts {
        fs: env.fs.clone(),
        clock: env.clock.clone(),
        ledger: env.ledger.clone(),
        mutants: env.mutants,
    };
    let copies = match fetch_remote_lease_copies(env.remote.clone(), env.clock.clone()).await {
        Ok(copies) => copies,
        // A whole lease directory needs no copy; every lease is put again, and the copies of
        // this listing are dealt with at a start that can read them.
        Err(error) if env.fs.exists(&format!("{LEASE_DIR}/{LEASE_DIR_COMPLETE}")) => {
            tracing::warn!(%error, "remote lease copies unreadable; the lease directory is whole");
            RemoteLeaseCopies::default()
        }
        Err(error) => return Err(error.into()),
    };
    let store = open_snapshot_store_on(&parts, num_retained, leases, Some(copies))?;
    // The copies left behind are put and the superseded deleted in a task of their own (a
    // remote store that fails does not hold the start up).
    if let Some(lease_manager) = store.leases() {
        if let Some(mirroring) = mirror_leases(lease_manager, &env.remote, &env.clock) {
            // The handle is dropped on purpose: the mirroring runs to its end by itself.
            let _task =
                Task::spawn(&env.executor, &env.ledger, "mirror kv snapshot leases", mirroring);
        }
    }
    Ok(store)
}

/// The parts of the node's environment the coordinator's stores use (the lease benchmark opens
/// the stores on them without a whole node).
#[derive(Clone)]
pub struct CoordinatorParts {
    pub fs: Arc<dyn LocalFs>,
    pub clock: Arc<dyn Clock>,
    pub ledger: Ledger,
    pub mutants: Mutants,
}

/// [`open_snapshot_store`] on `parts`, given the remote lease copies (`None`: the leases are
/// kept locally only, as the lease benchmark keeps them).
pub fn open_snapshot_store_on(
    parts: &CoordinatorParts,
    num_retained: usize,
    leases: LeaseConfig,
    remote_copies: Option<RemoteLeaseCopies>,
) -> Result<Arc<SnapshotStore>, SnapshotStoreOpenError> {
    let leases = KvSnapshotLeaseManager::open_with_remote(
        parts.fs.clone(),
        LEASE_DIR.to_string(),
        parts.clock.clone(),
        parts.ledger.clone(),
        LeaseConfig { mutants: parts.mutants, ..leases },
        remote_copies,
    )?;
    let config = SnapshotStoreConfig { num_retained, mutants: parts.mutants };
    let store = SnapshotStore::open_with_leases(
        parts.fs.clone(),
        SNAPSHOT_STORE_DIR.to_string(),
        config,
        Arc::new(leases),
    )?;
    // What it lets go of is no kept snapshot's: the orphan sweep that follows deletes it.
    let _released = store.apply_retention();
    Ok(Arc::new(store))
}

/// Why the snapshot store or its leases did not open.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreOpenError {
    #[error("kv snapshot store: {0}")]
    Store(#[from] SnapshotStoreError),
    #[error("kv snapshot leases: {0}")]
    Leases(#[from] LeaseError),
}

/// Relative to the data directory: one remote-log manifest file per tiered bucket.
pub const REMOTE_LOG_STORE_DIR: &str = "coordinator/remote-log";

/// Opens (or creates) the remote-log manifests under the data directory; a damaged file
/// refuses the open, as for the snapshot store.
pub fn open_remote_log_store(env: &Env) -> Result<Arc<RemoteLogStore>, RemoteLogStoreError> {
    RemoteLogStore::open(env.fs.clone(), REMOTE_LOG_STORE_DIR.to_string()).map(Arc::new)
}

/// Answers `AllocateKvSnapshotId` and `CommitKvSnapshot` for the node's leaders.
pub struct SnapshotCoordinator {
    service: Arc<SnapshotService>,
    env: Env,
}

impl SnapshotCoordinator {
    /// A coordinator over `store` whose leader epochs are those `server` leads under (a
    /// weak reference: the server's leaders hold the network that holds this handler).
    pub fn new(
        env: &Env,
        store: Arc<SnapshotStore>,
        remote_logs: Arc<RemoteLogStore>,
        server: Weak<TabletServer>,
    ) -> Self {
        let leader_epoch_of: LeaderEpochOf =
            Arc::new(move |bucket| server.upgrade().and_then(|server| server.leader_epoch(bucket)));
        let service =
            SnapshotService::new(store, env.remote.clone(), env.clock.clone(), leader_epoch_of)
                .with_remote_logs(remote_logs);
        SnapshotCoordinator { service: Arc::new(service), env: env.clone() }
    }

    pub fn store(&self) -> &Arc<SnapshotStore> {
        self.service.store()
    }

    /// Starts the lease expiry check (every `kv.snapshot.lease.expiration-check-interval`),
    /// a task in the ledger that the node aborts at shutdown.
    pub fn spawn_lease_expiry(&self) -> Task {
        let looping = run_lease_expiry_loop(
            self.env.executor.clone(),
            self.env.ledger.clone(),
            Arc::clone(&self.service),
        );
        Task::spawn(&self.env.executor, &self.env.ledger, "kv snapshot lease expiry", looping)
    }

    /// The lease counts, for metrics.
    pub fn service(&self) -> &Arc<SnapshotService> {
        &self.service
    }

    /// Deletes `cleanup`'s objects in a task of their own (in the leak ledger while it runs).
    fn spawn_deletion(env: &Env, service: &Arc<SnapshotService>, cleanup: Cleanup) {
        let count = cleanup.paths.len();
        let deleting = service.delete(cleanup);
        let task = async move {
            let left = deleting.await;
            tracing::debug!(
                deleted = count - left.len(),
                left = left.len(),
                "kv snapshot files deleted"
            );
        };
        // The handle is dropped on purpose: the deletion runs to its end by itself.
        let _task =
            Task::spawn(&env.executor, &env.ledger, "delete kv snapshot files", task.boxed());
    }
}

impl RpcHandler for SnapshotCoordinator {
    fn handle(&self, _from: NodeId, request: Request) -> BoxFuture<'static, Response> {
        if !SnapshotService::serves(&request) {
            let error = ApiError::new(
                ErrorCode::UnsupportedVersion,
                format!("the coordinator serves KV snapshot requests only, not {}", request.kind()),
            );
            return futures::future::ready(Response::Error(error)).boxed();
        }
        let service = Arc::clone(&self.service);
        let env = self.env.clone();
        let name = format!("kv snapshot coordinator {}", request.kind());
        let answered = run_blocking(&env.executor, &env.ledger, name, move || {
            let answer = service.handle(&request);
            (service, answer, request)
        });
        async move {
            match answered.await {
                Some((service, Some((response, cleanup)), request)) => {
                    if !cleanup.is_empty() {
                        SnapshotCoordinator::spawn_deletion(&env, &service, cleanup);
                    }
                    // A lease change is answered once remote storage has it too.
                    if let Some(mirroring) = service.mirror_before_answering(&request) {
                        mirroring.await;
                    }
                    response
                }
                // Checked above; kept total rather than trusted.
                Some((_, None, _)) => Response::Error(ApiError::new(
                    ErrorCode::UnsupportedVersion,
                    "not a KV snapshot request",
                )),
                // The blocking work panicked (logged and counted by the executor) or was
                // dropped: the leader does not know whether it took effect and asks again.
                None => Response::Error(ApiError::new(
                    ErrorCode::UnknownServerError,
                    "the snapshot coordinator failed to answer",
                )),
            }
        }
        .boxed()
    }
}
