//! The simulated coordinator's KV snapshot leases, kept as production keeps them: the snapshot
//! store opened with a `KvSnapshotLeaseManager` on the coordinator's own simulated disk, the
//! lease expiry loop (`run_lease_expiry_loop`) spawned on the coordinator's executor, and the
//! cleanup of what expired leases let go of deleted as a commit's is. The coordinator crashes
//! and restarts here: its disk loses what was not synced, the stores are reopened from it
//! (retention applied at start-up, its cleanup deleted), the new service replaces the old and
//! a new loop replaces the old one. The oracle of a restart: the leases reopened from disk
//! equal the leases the coordinator held (and had acknowledged) before the crash. A crashed
//! incarnation's remote operations die with it (`fenced_remote.rs`), as a crashed server's do.
//!
//! The leases are mirrored to remote storage as in prod (`lease_remote::mirror_leases`, awaited
//! before each answer and spawned after each expiry check, under the remote store's faults), and
//! opened with `KvSnapshotLeaseManager::open_with_remote`. Every other restart whose remote
//! copies are current (nothing to put or delete, no put in flight) also loses the lease
//! directory: the leases come back from the remote copies alone, under the same oracle. The
//! copies are read at a restart as the store holds them (the restart is synchronous here), and
//! at quiescence none may be left.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::env::{Clock, Executor, LocalFs, RemoteStorage};
use kvtablet_core::lease::lease_remote::{RemoteLeaseCopies, REMOTE_LEASE_ROOT};
use kvtablet_core::lease::{KvSnapshotLeaseManager, LeaseConfig};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::snapshot::lease_expiry_loop::run_lease_expiry_loop;
use kvtablet_core::snapshot::orphan_sweep::Uploads;
use kvtablet_core::snapshot::snapshot_service::{LeaderEpochOf, SnapshotService};
use kvtablet_core::snapshot::{SnapshotStore, SnapshotStoreConfig};
use kvtablet_core::task::Task;
use kvtablet_core::tiering::RemoteLogStore;

use kvtablet_core::message::{Request, Response};
use kvtablet_core::TableBucket;

use crate::checker::Checker;
use crate::client::COORDINATOR_NODE;
use crate::clients_running::ClientsRunning;
use crate::coordinator::Coordinator;
use crate::executor::SimExecutor;
use crate::fault_log::FaultLog;
use crate::fenced_remote::{Fence, FencedRemote};
use crate::fs::{DiskFaults, SimFs};
use crate::lease_consumer::LeaseConsumer;
use crate::lease_oracle::{LeaseOracle, LeaseOracleBounds};
use crate::network::SimNetwork;
use crate::plan::RunPlan;
use crate::prng::{Prng, Streams};
use crate::remote::SimRemoteStorage;

const LEASE_DIR: &str = "coordinator/kv-snapshot-leases";
const STORE_DIR: &str = "coordinator/kv-snapshots";
/// The consumers' nodes.
const LEASE_CONSUMER_NODE_BASE: kvtablet_core::message::NodeId = 400;
/// Steps the quiescence may take to let every lease expire.
const QUIESCE_STEPS_MAX: u64 = 2_000_000;

/// What opening the stores needs, again at every restart.
pub struct LeaseStoreParts {
    pub executor: Arc<dyn Executor>,
    pub clock: Arc<dyn Clock>,
    pub ledger: Ledger,
    pub remote: Arc<dyn RemoteStorage>,
    /// The same store, read directly for the lease copies at a restart.
    pub sim_remote: Arc<SimRemoteStorage>,
    pub leader_epoch_of: LeaderEpochOf,
    /// The remote-log manifests; on a disk of their own, which the crashes spare.
    pub remote_logs: Arc<RemoteLogStore>,
    pub lease_config: LeaseConfig,
    pub mutants: Mutants,
    /// The faults of the coordinator's disk (each incarnation's drawn from a stream of its
    /// own), and where they are counted.
    pub disk_faults: DiskFaults,
    pub fault_log: Arc<FaultLog>,
    pub seed: u64,
}

pub struct CoordinatorLeases {
    parts: LeaseStoreParts,
    /// The disk of the current incarnation (a restart copies what survived to a new one, so
    /// that the crashed incarnation's late work cannot touch the new one's files).
    disk: Arc<SimFs>,
    /// Cuts the current incarnation off the remote store when it crashes.
    fence: Fence,
    expiry_loop: Option<Task>,
    restarts: u64,
    /// Restarts that lost the lease directory.
    lease_dir_losses: u64,
    pub oracle: Arc<LeaseOracle>,
    /// Draws the coordinator's crash times (a stream of its own).
    prng: Prng,
    crash_interval_ms: Option<u64>,
    next_crash_ms: Option<u64>,
    next_check_ms: u64,
}

impl CoordinatorLeases {
    /// Opens the stores on an empty disk; the caller serves the service and calls `start`.
    pub fn open(
        parts: LeaseStoreParts,
        oracle: Arc<LeaseOracle>,
        mut prng: Prng,
        crash_interval_ms: Option<u64>,
    ) -> (CoordinatorLeases, Arc<SnapshotService>) {
        let disk = Arc::new(SimFs::new());
        let fence = Fence::new();
        let service = open_service(&parts, disk.clone(), &fence)
            .expect("empty lease and snapshot stores open");
        set_disk_faults(&parts, &disk, 0);
        let now_ms = parts.clock.now_mono_ms();
        let next_crash_ms = crash_interval_ms.map(|ms| next_time(&mut prng, now_ms, ms));
        let leases = CoordinatorLeases {
            next_check_ms: now_ms + parts.lease_config.expiration_check_interval_ms,
            parts,
            disk,
            fence,
            expiry_loop: None,
            restarts: 0,
            lease_dir_losses: 0,
            oracle,
            prng,
            crash_interval_ms,
            next_crash_ms,
        };
        (leases, service)
    }

    /// When the world should stop next for a lease event (a check or a crash).
    pub fn next_event_ms(&self) -> Option<u64> {
        Some(self.next_crash_ms.map_or(self.next_check_ms, |at| at.min(self.next_check_ms)))
    }

    /// The events due at `now_ms`: the oracle's step check, and a crash and restart of the
    /// coordinator (the new service returned for the coordinator to serve, with the problems
    /// the restart oracle found).
    pub fn on_events(
        &mut self,
        now_ms: u64,
        current: &Arc<SnapshotService>,
    ) -> (Option<Arc<SnapshotService>>, Vec<String>) {
        if self.next_check_ms <= now_ms {
            self.oracle.check_step(current, "at a periodic check");
            self.next_check_ms = now_ms + self.parts.lease_config.expiration_check_interval_ms;
        }
        if self.next_crash_ms.is_none_or(|at| at > now_ms) {
            return (None, Vec::new());
        }
        self.next_crash_ms = self.crash_interval_ms.map(|ms| next_time(&mut self.prng, now_ms, ms));
        match self.crash_and_restart(current) {
            Ok((service, problems)) => {
                self.start(service.clone());
                (Some(service), problems)
            }
            Err(problem) => (None, vec![problem]),
        }
    }

    /// Stops the world's lease events (the heal: no more crashes, no more disk faults).
    pub fn stop_crashes(&mut self) {
        self.crash_interval_ms = None;
        self.next_crash_ms = None;
        self.disk.clear_faults();
    }

    /// Spawns the lease expiry loop of `service` (the current one).
    pub fn start(&mut self, service: Arc<SnapshotService>) {
        let loop_future = run_lease_expiry_loop(
            self.parts.executor.clone(),
            self.parts.ledger.clone(),
            service.clone(),
        );
        let name = format!("lease expiry loop {}", self.restarts);
        self.expiry_loop =
            Some(Task::spawn(&self.parts.executor, &self.parts.ledger, name, loop_future));
        // Start-up mirroring: the copies left behind are put, the superseded deleted.
        if let Some(mirroring) = service.mirror_leases() {
            self.spawn_detached("mirror the leases at start-up", mirroring);
        }
        // The start-up orphan sweep, as in prod (with leaders uploading beside it): the
        // deletions that a crash cut short.
        let sweeping = service.sweep_orphans(Uploads::InFlight);
        self.spawn_detached("sweep orphans at start-up", sweeping.map(drop).boxed());
        // Start-up retention: the snapshots whose last lease went just before a crash.
        let cleanup = service.store().apply_retention();
        if !cleanup.is_empty() {
            let deleting = service.delete(cleanup);
            self.spawn_detached("delete after start-up retention", deleting.map(drop).boxed());
        }
    }

    /// Spawns start-up work that runs to its end on its own (in the ledger).
    fn spawn_detached(&self, name: &str, work: BoxFuture<'static, ()>) {
        let _task = Task::spawn(&self.parts.executor, &self.parts.ledger, name, work);
    }

    /// The expiry loop's name if it ended while the coordinator runs (it ends by itself only
    /// for a coordinator without leases, which this one is not): leases would never expire.
    pub fn ended_expiry_loop(&self) -> Option<String> {
        let task = self.expiry_loop.as_ref()?;
        task.has_ended().then(|| task.name().to_string())
    }

    /// Stops the expiry loop (at shutdown, and at a crash).
    pub fn stop(&mut self) {
        if let Some(task) = self.expiry_loop.take() {
            task.abort();
        }
    }

    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn lease_dir_losses(&self) -> u64 {
        self.lease_dir_losses
    }

    /// A crash and restart of the coordinator: `before` is the service that ran. Returns the
    /// new service (for the coordinator to serve) and the problems the restart oracle found.
    pub fn crash_and_restart(
        &mut self,
        before: &SnapshotService,
    ) -> Result<(Arc<SnapshotService>, Vec<String>), String> {
        self.stop();
        self.fence.bring_down();
        let leases_before = before.store().leases().map(|leases| leases.leases());
        let kept_before: Vec<_> = before
            .store()
            .buckets()
            .into_iter()
            .map(|bucket| (bucket, before.store().kept_points(bucket)))
            .collect();
        self.disk.crash();
        let remote_current =
            before.store().leases().is_some_and(|leases| leases.remote_is_current());
        let lose_lease_dir = remote_current && self.restarts % 2 == 1;
        if lose_lease_dir {
            self.lease_dir_losses += 1;
        }
        let disk = Arc::new(SimFs::new());
        for path in self.disk.file_paths() {
            if lose_lease_dir && path.starts_with(&format!("{LEASE_DIR}/")) {
                continue;
            }
            let bytes = self.disk.read(&path).map_err(|e| format!("read {path}: {e}"))?;
            if let Some((parent, _)) = path.rsplit_once('/') {
                disk.create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            disk.write(&path, &bytes).map_err(|e| e.to_string())?;
            disk.sync(&path).map_err(|e| e.to_string())?;
        }
        self.disk = disk;
        self.fence = Fence::new();
        self.restarts += 1;
        let service = open_service(&self.parts, self.disk.clone(), &self.fence)
            .map_err(|error| format!("lease: the coordinator's stores do not reopen: {error}"))?;
        set_disk_faults(&self.parts, &self.disk, self.restarts);
        let mut problems = Vec::new();
        let leases_after = service.store().leases().map(|leases| leases.leases());
        if leases_after != leases_before {
            problems.push(format!(
                "lease: a coordinator restart changed the leases: before {leases_before:?}, after \
                 {leases_after:?}"
            ));
        }
        let kept_after: Vec<_> = service
            .store()
            .buckets()
            .into_iter()
            .map(|bucket| (bucket, service.store().kept_points(bucket)))
            .collect();
        if kept_after != kept_before {
            problems.push(format!(
                "lease: a coordinator restart changed the kept snapshots: before \
                 {kept_before:?}, after {kept_after:?}"
            ));
        }
        Ok((service, problems))
    }
}

/// Switches the faults of incarnation `incarnation`'s disk on (after its stores opened).
fn set_disk_faults(parts: &LeaseStoreParts, disk: &SimFs, incarnation: u64) {
    if parts.disk_faults.is_none() {
        return;
    }
    let prng = Streams::new(parts.seed).stream(&format!("coordinator-disk-faults-{incarnation}"));
    disk.set_faults(parts.disk_faults, prng, parts.fault_log.clone());
}

fn next_time(prng: &mut Prng, now_ms: u64, mean_ms: u64) -> u64 {
    now_ms + prng.range_inclusive(mean_ms / 2, mean_ms + mean_ms / 2).max(1)
}

/// Opens the stores of an incarnation whose remote operations go through `fence`.
fn open_service(
    parts: &LeaseStoreParts,
    disk: Arc<SimFs>,
    fence: &Fence,
) -> Result<Arc<SnapshotService>, String> {
    let mut copies = RemoteLeaseCopies::default();
    for path in parts.sim_remote.paths() {
        if path.starts_with(REMOTE_LEASE_ROOT) {
            if let Some(bytes) = parts.sim_remote.peek(&path) {
                copies.objects.insert(path, bytes);
            }
        }
    }
    let leases = KvSnapshotLeaseManager::open_with_remote(
        disk.clone(),
        LEASE_DIR.to_string(),
        parts.clock.clone(),
        parts.ledger.clone(),
        LeaseConfig { mutants: parts.mutants, ..parts.lease_config },
        Some(copies),
    )
    .map_err(|error| error.to_string())?;
    let store = SnapshotStore::open_with_leases(
        disk,
        STORE_DIR.to_string(),
        SnapshotStoreConfig { mutants: parts.mutants, ..SnapshotStoreConfig::default() },
        Arc::new(leases),
    )
    .map_err(|error| error.to_string())?;
    Ok(Arc::new(
        SnapshotService::new(
            Arc::new(store),
            Arc::new(FencedRemote::new(parts.remote.clone(), fence.clone())),
            parts.clock.clone(),
            parts.leader_epoch_of.clone(),
        )
        .with_remote_logs(parts.remote_logs.clone()),
    ))
}

/// The world's parts the consumers run on.
pub struct WorldParts<'a> {
    pub exec: &'a SimExecutor,
    pub net: &'a SimNetwork,
    pub streams: &'a Streams,
    pub remote: &'a Arc<SimRemoteStorage>,
    pub coordinator: &'a Arc<Coordinator>,
    pub clients_running: &'a Arc<ClientsRunning>,
    pub buckets: Vec<TableBucket>,
}

/// What the world hands over to build the `leases` scenario's coordinator stores.
pub struct Build<'a> {
    pub plan: &'a RunPlan,
    pub exec: &'a SimExecutor,
    pub streams: &'a Streams,
    pub ledger: &'a Ledger,
    pub remote: &'a Arc<SimRemoteStorage>,
    pub checker: &'a Arc<Checker>,
    pub coordinator: &'a Arc<Coordinator>,
    pub fault_log: &'a Arc<FaultLog>,
    pub leader_epoch_of: LeaderEpochOf,
    pub remote_logs: Arc<RemoteLogStore>,
}

/// For a plan with lease consumers: opens the coordinator's lease and snapshot stores, serves
/// them in place of the plain store, and has the oracle watch every snapshot request the
/// coordinator answers. `None` for any other plan.
pub fn open_in_world(build: Build<'_>) -> Option<CoordinatorLeases> {
    let plan = build.plan;
    if plan.leases.consumers == 0 {
        return None;
    }
    let parts = LeaseStoreParts {
        executor: build.exec.executor_for(COORDINATOR_NODE),
        clock: build.exec.clock_for(COORDINATOR_NODE),
        ledger: build.ledger.clone(),
        remote: build.remote.clone(),
        sim_remote: build.remote.clone(),
        leader_epoch_of: build.leader_epoch_of,
        remote_logs: build.remote_logs,
        lease_config: LeaseConfig {
            expiration_check_interval_ms: plan.leases.check_interval_ms,
            ..LeaseConfig::default()
        },
        mutants: plan.mutants,
        disk_faults: DiskFaults {
            fsync_failure: plan.leases.coordinator_disk_faults,
            disk_full: plan.leases.coordinator_disk_faults,
            ..DiskFaults::none()
        },
        fault_log: build.fault_log.clone(),
        seed: plan.seed,
    };
    let bounds = LeaseOracleBounds {
        net_delay_ms_max: plan.faults.net_delay_ms_max,
        check_interval_ms: plan.leases.check_interval_ms,
        slow_disk_ms_max: plan.faults.slow_disk_ms_max,
        num_retained: SnapshotStoreConfig::default().num_retained,
        coordinator_disk_faults: !plan.leases.coordinator_disk_faults.is_never(),
    };
    let oracle = Arc::new(LeaseOracle::new(
        parts.clock.clone(),
        build.checker.clone(),
        build.remote.clone(),
        bounds,
    ));
    let watching = oracle.clone();
    build.coordinator.watch_leases(Box::new(move |service, request, response| {
        if let (Request::CommitKvSnapshot { snapshot }, Response::Ok) = (request, response) {
            watching.committed(snapshot.files().map(|file| file.remote_path.clone()));
        }
        if SnapshotService::serves(request) {
            watching.check_step(service, &format!("after {}", request.kind()));
        }
    }));
    let (leases, service) = CoordinatorLeases::open(
        parts,
        oracle,
        build.streams.stream("coordinator-crashes"),
        plan.leases.coordinator_crash_interval_ms,
    );
    build.coordinator.serve_snapshots(service);
    Some(leases)
}

impl CoordinatorLeases {
    /// Starts the expiry loop and the consumers.
    pub fn start_run(&mut self, plan: &Arc<RunPlan>, world: WorldParts<'_>) {
        if let Some(service) = world.coordinator.snapshots() {
            self.start(service);
        }
        for index in 0..plan.leases.consumers {
            let node = LEASE_CONSUMER_NODE_BASE + index;
            let consumer = LeaseConsumer {
                node,
                rpc: world.net.endpoint(node),
                clock: world.exec.clock_for(node),
                remote: world.remote.clone(),
                prng: world.streams.stream(&format!("lease-consumer-{node}")),
                plan: plan.clone(),
                oracle: self.oracle.clone(),
                coordinator: Arc::downgrade(world.coordinator),
                buckets: world.buckets.clone(),
            };
            let running = world.clients_running.clone();
            world.exec.spawn(
                node,
                format!("lease consumer {node}"),
                async move {
                    consumer.run().await;
                    running.finished();
                }
                .boxed(),
            );
        }
    }

    /// At quiescence: no more crashes; virtual time runs past the end of every lease the
    /// oracle knows of plus its grace, so that the expiry loop drops them all; then no lease
    /// is left, each bucket keeps only its retention window (the step check), and the loop
    /// stops.
    pub fn quiesce(
        &mut self,
        exec: &SimExecutor,
        service: &Arc<SnapshotService>,
    ) -> Result<(), String> {
        self.stop_crashes();
        let now_wall_ms = self.oracle.now_wall_ms();
        let end_wall_ms = self.oracle.last_pin_end_wall_ms() + self.oracle.grace_ms() + 1;
        let wait_ms = end_wall_ms.saturating_sub(now_wall_ms);
        exec.run_for_bounded(wait_ms, QUIESCE_STEPS_MAX)
            .map_err(|error| format!("lease: the leases did not expire: {error}"))?;
        self.oracle.check_step(service, "at quiescence");
        self.stop();
        exec.run_for_bounded(1, QUIESCE_STEPS_MAX)
            .map_err(|error| format!("lease: the expiry loop did not stop: {error}"))?;
        let left = service.store().leases().map(|leases| leases.leases()).unwrap_or_default();
        if !left.is_empty() {
            return Err(format!(
                "lease: {} leases left after every lease ended plus a check interval: {left:?}",
                left.len()
            ));
        }
        let copies: Vec<String> = self
            .parts
            .sim_remote
            .paths()
            .into_iter()
            .filter(|path| path.starts_with(REMOTE_LEASE_ROOT))
            .collect();
        if !copies.is_empty() {
            return Err(format!(
                "lease: {} remote lease copies left after every lease ended: {copies:?}",
                copies.len()
            ));
        }
        Ok(())
    }
}
