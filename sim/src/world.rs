//! One seeded run: builds the simulated cluster, drives the workload and the fault plan,
//! heals, checks the end state and the leak ledger, and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::Env;
use kvtablet_core::kv::{KvTabletConfig, PartialUpdates};

/// Bytes of each led bucket's pre-write buffer in the simulator (about ten small changes).
const SIM_PRE_WRITE_BUFFER_BYTES: u64 = 1024;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::LogConfig;
use kvtablet_core::message::NodeId;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::snapshot::rpc_snapshot_committer::RpcSnapshotCommitter;
use kvtablet_core::snapshot::snapshot_service::{LeaderEpochOf, SnapshotService};
use kvtablet_core::snapshot::{
    SnapshotSchedule, SnapshotStore, SnapshotStoreConfig, SnapshotUploadConfig,
};
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::tiering::{RemoteLogStore, RpcRemoteLogCommitter, TieringSchedule};
use kvtablet_core::TableBucket;

use crate::checker::{Checker, LiveServers};
use crate::client::{Client, COORDINATOR_NODE, SCHEMA_ID, TABLE_ID};
use crate::clients_running::ClientsRunning;
use crate::coordinator::Coordinator;
use crate::executor::{SimError, SimExecutor, SlowDisk};
use crate::fault_log::FaultLog;
use crate::faulty_engine::{EngineFaultSwitch, FaultyEngineFactory};
use crate::fs::SimFs;
use crate::network::{NetFaults, SimNetwork};
use crate::plan::{RunPlan, Scenario};
use crate::prng::{DecisionTape, Prng, Ratio, Streams};
use crate::progress::HEAL_PROGRESS_BOUND_MS;
use crate::recovery_watch::RecoveryWatch;
use crate::remote::{RemoteFaults, SimRemoteStorage};
use crate::replication::ClusterLogs;
use crate::sim_row::SimPartialUpdates;
use crate::table_partitions::{sim_table_path, TablePartitions, SIM_DATABASE, SIM_TABLE};
use crate::trace::{Trace, TraceMode};

const CLIENT_NODE_BASE: NodeId = 100;
const SCAN_CLIENT_NODE_BASE: NodeId = 200;
/// A run that has not finished its workload after this much virtual time is livelocked.
const VIRTUAL_TIME_MS_MAX: u64 = 30 * 60 * 1000;
/// Faults stop after this much virtual time, workload finished or not: a plan hostile enough
/// to slow the clients without stopping them (leadership moved every 40 ms, say) then ends in
/// the liveness phase, where a cluster without faults must let every client finish before
/// `VIRTUAL_TIME_MS_MAX`. Seeds rarely run this long (recovery's longest about 15 minutes).
const FAULT_PHASE_MS_MAX: u64 = 20 * 60 * 1000;
const STEPS_MAX: u64 = 20_000_000;
const HEAL_STEPS_MAX: u64 = 2_000_000;
/// Remote operations that fail transiently while the data plane catches up after the heal.
const DATA_PLANE_REMOTE_FAILURES: Ratio = Ratio::new(1, 5);
/// Snapshot objects damaged per run at most: until the heal repairs it (or a fallback to the
/// previous snapshot exists), a bucket whose latest snapshot is damaged cannot restore, so an
/// unbounded stream of damage made recovery runs mostly unavailable and many times longer.
const SNAPSHOT_CORRUPTIONS_MAX: usize = 6;
/// With snapshot corruption on, the share of restore reads of a snapshot's private file that
/// find it damaged at rest (within the same budget as the timed damage).
const SNAPSHOT_ROT_ON_READ: Ratio = Ratio::new(1, 20);
/// How often the world looks for servers whose changelog stopped after a failed sync.
const LOG_DIR_CHECK_INTERVAL_MS: u64 = 100;
/// The progress prober's node (after the heal).
const PROBER_NODE: NodeId = 300;
/// Partition turnovers (oldest dropped, new one created) per run at most: each creates a
/// partition's worth of buckets, so an unbounded churn made long runs many times slower.
const PARTITION_TURNOVERS_MAX: u32 = 12;

/// How to run one seed.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    pub scenario: Scenario,
    pub mutants: Mutants,
    pub trace_mode: TraceMode,
}

/// What one seed did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub plan: RunPlan,
    pub trace_hash: u64,
    pub trace_lines: Vec<String>,
    pub violations: Vec<String>,
    pub steps: u64,
    pub virtual_ms: u64,
    pub client_ops: u32,
    pub counts: crate::checker::CheckCounts,
    /// Operations that gave up, by `operation:reason`.
    pub give_ups: BTreeMap<String, u64>,
    /// Restores and recovery checks the run saw.
    pub recovery: crate::recovery_watch::RecoveryCounts,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A simulated tablet server's disk, which survives its crashes (except for unsynced bytes).
struct ServerDisk {
    fs: Arc<SimFs>,
    engines: Arc<MemEngineFactory>,
    incarnation: u64,
}

struct World {
    plan: Arc<RunPlan>,
    streams: Streams,
    exec: SimExecutor,
    net: SimNetwork,
    remote: Arc<SimRemoteStorage>,
    /// Every server's remote reads, counted against recovery's download bound.
    recovery_reads: Arc<crate::recovery_reads::RecoveryReads>,
    logs: ClusterLogs,
    ledger: Ledger,
    live: LiveServers,
    disks: BTreeMap<NodeId, ServerDisk>,
    checker: Arc<Checker>,
    coordinator: Arc<Coordinator>,
    trace: Arc<Mutex<Trace>>,
    faults: Prng,
    clients_running: Arc<ClientsRunning>,
    chaos: Chaos,
    /// Snapshot files the world deleted from the remote store (see
    /// `maybe_damage_latest_snapshots`): a kept snapshot missing one is not a violation.
    damaged_snapshot_paths: BTreeSet<String>,
    /// Restores, recovery temp directories and leadership calls, watched.
    recovery: Arc<RecoveryWatch>,
    /// Damage done to committed snapshots' objects, undone at the heal.
    corruption: SnapshotCorruption,
    /// Draws which crashes and leadership moves aim at a recovery in flight.
    recovery_targeting: Prng,
    /// The coordinator's KV snapshot leases (the `leases` scenario only).
    leases: Option<crate::coordinator_leases::CoordinatorLeases>,
}

/// The snapshot-corruption fault: when the next damage is due, and how many were done (the
/// remote store keeps what it damaged for the heal's repair). Its own stream, so that switching
/// it on changes no other draw.
struct SnapshotCorruption {
    prng: Prng,
    next_at: Option<u64>,
    done: usize,
}

/// The storage, partition, pause and clock faults of a run (see `impl World` at the end).
struct Chaos {
    log: Arc<FaultLog>,
    /// Off once the heal phase starts.
    on: bool,
    engine_switches: BTreeMap<NodeId, EngineFaultSwitch>,
    prng: Prng,
    next_partition: Option<u64>,
    partition_heals_at: Option<u64>,
    next_pause: Option<u64>,
    paused: Option<(NodeId, u64)>,
    next_clock_step: Option<u64>,
    buggify: Arc<crate::buggify::Buggify>,
}

/// Runs one seed to the end and reports; never panics on a violation, it reports it. A panic
/// inside the run (a failed assertion in the code under test) is reported as a violation.
pub fn run(options: &RunOptions) -> Result<RunReport, String> {
    run_with_tape(options, None)
}

/// [`run`], with the scheduler's and the fault planner's decisions taken from `tape` first
/// (fuzzer-driven scheduling); the same tape and seed give the same trace.
pub fn run_with_tape(
    options: &RunOptions,
    tape: Option<&DecisionTape>,
) -> Result<RunReport, String> {
    let plan = Arc::new(RunPlan::draw(options.seed, &options.scenario, options.mutants)?);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_plan(plan.clone(), options, tape)
    }));
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-text panic".to_string());
        Ok(RunReport {
            plan: (*plan).clone(),
            trace_hash: 0,
            trace_lines: Vec::new(),
            violations: vec![format!("panic: {message}")],
            steps: 0,
            virtual_ms: 0,
            client_ops: plan.client_ops,
            counts: crate::checker::CheckCounts::default(),
            give_ups: BTreeMap::new(),
            recovery: crate::recovery_watch::RecoveryCounts::default(),
        })
    })
}

fn run_plan(
    plan: Arc<RunPlan>,
    options: &RunOptions,
    tape: Option<&DecisionTape>,
) -> Result<RunReport, String> {
    let mut world = World::build(plan.clone(), options.trace_mode);
    if let Some(tape) = tape {
        world.feed_decisions_from(tape);
    }
    for line in plan.describe() {
        world.note(COORDINATOR_NODE, "plan", line);
    }
    world.start();
    if let Err(error) = world.drive_workload() {
        world.checker.violation(format!("workload did not finish: {error}"));
    } else if let Err(error) = world.heal_and_check() {
        world.checker.violation(format!("cluster did not heal: {error}"));
    }
    world.quiesce_leases();
    world.shutdown_and_check_leaks();
    world.sweep_and_check_snapshots();
    let second_leaders = world.logs.replication_reentered();
    if second_leaders > 0 {
        world.checker.violation(format!(
            "{second_leaders} batches published by a follower of a bucket while it took its \
             leader's batches: two leaders at once"
        ));
    }
    let deposed_batches = world.logs.published_when_deposed();
    if deposed_batches > 0 {
        world.checker.violation(format!(
            "{deposed_batches} batches published by a leader whose followers had been fenced at \
             a newer epoch: two leaders at once"
        ));
    }
    for _ in 0..world.remote.rot_count() {
        world.chaos.log.record(crate::fault_log::FaultKind::SnapshotCorruption);
    }
    let fired = world.chaos.log.summary();
    world.note(COORDINATOR_NODE, "faults-fired", fired);
    let buggified = world.chaos.buggify.summary();
    world.note(COORDINATOR_NODE, "buggify-fired", buggified);
    let violations = world.checker.violations();
    for violation in &violations {
        world.note(COORDINATOR_NODE, "violation", violation.clone());
    }
    let counts = world.checker.counts();
    world.note(
        COORDINATOR_NODE,
        "checked",
        format!(
            "puts_sent={} puts_acked={} lookups={} row_reads={} errors={} buckets_at_quiescence={} scan_pages={} scans_completed={} handoffs={} probes={} snapshots={} tiered_segments={} remote_expiries={} gave_up={}",
            world.checker.progress.puts_sent(),
            counts.puts_acked,
            counts.lookups_checked,
            counts.row_reads_checked,
            counts.errors_seen,
            counts.buckets_checked_at_quiescence,
            counts.scan_pages,
            counts.scans_completed,
            counts.handoffs_checked,
            counts.probes_checked,
            counts.snapshots_checked,
            counts.tiered_segments_checked,
            counts.remote_expiries_checked,
            world.checker.progress.give_ups_summary()
        ),
    );
    let mut recovered = world.recovery.counts();
    recovered.broken_snapshots = world.coordinator.broken_reports();
    if recovered.restores + recovered.restore_failures > 0 {
        // Printed only in runs that restored an engine, so that the others trace as they did.
        world.note(
            COORDINATOR_NODE,
            "recovery-checked",
            format!(
                "restores={} restore_failures={} recovered_engines_checked={} temp_dir_checks={}",
                recovered.restores,
                recovered.restore_failures,
                counts.recovered_engines_checked,
                recovered.temp_dir_checks
            ),
        );
    }
    let steps = world.exec.steps();
    let virtual_ms = world.exec.now_mono_ms();
    world.note(
        COORDINATOR_NODE,
        "end",
        format!("steps={steps} virtual_ms={virtual_ms} violations={}", violations.len()),
    );
    let trace = lock(&world.trace);
    Ok(RunReport {
        plan: (*plan).clone(),
        trace_hash: trace.hash(),
        trace_lines: trace.lines().to_vec(),
        violations,
        steps,
        virtual_ms,
        client_ops: plan.client_ops,
        counts,
        give_ups: world.checker.progress.give_ups(),
        recovery: recovered,
    })
}

impl World {
    fn build(plan: Arc<RunPlan>, trace_mode: TraceMode) -> World {
        let streams = Streams::new(plan.seed);
        let exec = SimExecutor::new(&streams);
        exec.set_slow_disk(SlowDisk {
            one_in: plan.faults.slow_disk_one_in,
            delay_ms_max: plan.faults.slow_disk_ms_max,
        });
        let net_faults = NetFaults {
            delay_ms_max: plan.faults.net_delay_ms_max,
            drop: plan.faults.net_drop,
            duplicate: plan.faults.net_duplicate,
        };
        let net = SimNetwork::new(&exec, &streams, net_faults);
        let remote = Arc::new(SimRemoteStorage::new(&exec, &streams, plan.faults.remote));
        let fault_log = Arc::new(FaultLog::new());
        let log_config = LogConfig { segment_bytes_max: plan.segment_bytes_max };
        let logs =
            ClusterLogs::new(plan.servers, plan.replication_factor, log_config, plan.mutants);
        let ledger = Ledger::new();
        let live: LiveServers = Arc::new(Mutex::new(BTreeMap::new()));
        let trace = Arc::new(Mutex::new(Trace::new(trace_mode)));
        let checker = Arc::new(Checker::new(
            logs.clone(),
            live.clone(),
            trace.clone(),
            exec.clock_for(COORDINATOR_NODE),
            plan.scanner,
            TablePartitions::new(TABLE_ID, plan.bucket_count(), plan.table_partitions > 0),
        ));
        checker.set_fault_log(fault_log.clone());
        let coordinator = Arc::new(Coordinator::new(
            net.endpoint(COORDINATOR_NODE),
            exec.executor_for(COORDINATOR_NODE),
            exec.clock_for(COORDINATOR_NODE),
            ledger.clone(),
            checker.clone(),
        ));
        net.register(COORDINATOR_NODE, coordinator.clone());
        checker.set_remote(remote.as_ref().clone());
        let mut leases = None;
        if plan.snapshot_interval_ms.is_some() || plan.tiering_interval_ms.is_some() {
            // The coordinator's own disk (it does not crash in these runs).
            let coordinator_disk = Arc::new(SimFs::new());
            let store = SnapshotStore::open(
                coordinator_disk.clone(),
                "coordinator/kv-snapshots".to_string(),
                SnapshotStoreConfig { mutants: plan.mutants, ..SnapshotStoreConfig::default() },
            )
            .expect("an empty snapshot store opens");
            let epochs = Arc::downgrade(&coordinator);
            let leader_epoch_of: LeaderEpochOf = Arc::new(move |bucket| {
                epochs.upgrade().and_then(|coordinator| coordinator.current_epoch_of(bucket))
            });
            let remote_logs = Arc::new(
                RemoteLogStore::open(coordinator_disk, "coordinator/remote-log".to_string())
                    .expect("an empty remote-log store opens"),
            );
            checker.set_remote_logs(remote_logs.clone());
            coordinator.serve_snapshots(Arc::new(
                SnapshotService::new(
                    Arc::new(store),
                    remote.clone(),
                    exec.clock_for(COORDINATOR_NODE),
                    leader_epoch_of.clone(),
                )
                .with_remote_logs(remote_logs.clone()),
            ));
            // The `leases` scenario: a coordinator that keeps leases (and crashes) instead.
            leases = crate::coordinator_leases::open_in_world(crate::coordinator_leases::Build {
                plan: &plan,
                exec: &exec,
                streams: &streams,
                ledger: &ledger,
                remote: &remote,
                checker: &checker,
                coordinator: &coordinator,
                fault_log: &fault_log,
                leader_epoch_of,
                remote_logs,
            });
        }
        let weak_coordinator = Arc::downgrade(&coordinator);
        checker.set_leader_of(Arc::new(move |bucket| {
            weak_coordinator.upgrade().and_then(|coordinator| coordinator.leader_of(bucket))
        }));
        let faults = streams.stream("faults");
        let chaos = Chaos::new(&plan, &streams, fault_log, &exec);
        let recovery = Arc::new(RecoveryWatch::new(
            checker.clone(),
            ledger.clone(),
            exec.clock_for(COORDINATOR_NODE),
        ));
        watch_fetcher_bounds(&exec, &ledger, &checker, plan.recovery_fetcher);
        let recovery_reads = crate::recovery_reads::RecoveryReads::new(
            plan.recovery_fetcher.download_threads,
            &checker,
        );
        if plan.faults.snapshot_corruption_interval_ms.is_some() {
            // Damage found by a read, which only restores (and no oracle) make of a snapshot's
            // private files: aimed at restores, where a timed damage is mostly superseded by
            // the bucket's next snapshot before anything reads it.
            remote.set_rot_on_read(
                SNAPSHOT_ROT_ON_READ,
                "/snap-",
                SNAPSHOT_CORRUPTIONS_MAX as u32,
                streams.stream("snapshot-rot-on-read"),
            );
        }
        let mut corruption_prng = streams.stream("snapshot-corruption");
        let corruption = SnapshotCorruption {
            next_at: plan
                .faults
                .snapshot_corruption_interval_ms
                .map(|ms| draw_after(&mut corruption_prng, exec.now_mono_ms(), ms)),
            prng: corruption_prng,
            done: 0,
        };
        World {
            plan,
            streams,
            exec,
            net,
            recovery_reads,
            remote,
            logs,
            ledger,
            live,
            disks: BTreeMap::new(),
            checker,
            coordinator,
            trace,
            faults,
            clients_running: Arc::new(ClientsRunning::default()),
            chaos,
            damaged_snapshot_paths: BTreeSet::new(),
            recovery,
            corruption,
            recovery_targeting: streams.stream("recovery-targeting"),
            leases,
        }
    }

    /// The schedule and the fault stream draw from `tape` first.
    fn feed_decisions_from(&mut self, tape: &DecisionTape) {
        self.exec.feed_schedule_from(tape);
        let faults = std::mem::replace(&mut self.faults, Prng::from_seed(0));
        self.faults = faults.fed_by(tape.clone());
    }

    fn server_config(&self, node: NodeId) -> TabletServerConfig {
        TabletServerConfig {
            tables: vec![TableConfig {
                table_id: TABLE_ID,
                path: sim_table_path(),
                bucket_count: self.plan.bucket_count(),
                schema_ids: vec![SCHEMA_ID],
                partial_updates: Some(PartialUpdates(Arc::new(SimPartialUpdates))),
                log_ttl_ms: None,
                partitioned: self.partitions().is_partitioned(),
            }],
            // A small pre-write buffer, so that a flush stalled by engine faults (or a slow
            // disk) turns into STORAGE_BACKPRESSURE, which the writers resend after a delay.
            kv: KvTabletConfig {
                pre_write_buffer_bytes_max: SIM_PRE_WRITE_BUFFER_BYTES,
                recovery_fetcher: self.plan.recovery_fetcher,
                ..KvTabletConfig::DEFAULT
            },
            limits: RequestLimits::DEFAULT,
            scanner: self.plan.scanner,
            snapshots: self.plan.snapshot_interval_ms.map(|interval_ms| {
                Arc::new(SnapshotSchedule {
                    interval_ms,
                    committer: Arc::new(RpcSnapshotCommitter::new(
                        self.net.endpoint(node),
                        COORDINATOR_NODE,
                        self.plan.request_timeout_ms,
                    )),
                    upload: SnapshotUploadConfig {
                        retry_backoff_ms_min: 20,
                        retry_backoff_ms_max: 500,
                        ..SnapshotUploadConfig::default()
                    },
                })
            }),
            tiering: self.plan.tiering_interval_ms.map(|interval_ms| {
                Arc::new(TieringSchedule {
                    interval_ms,
                    local_retention: self.plan.local_retention,
                    remote_log_ttl_ms: self.plan.remote_log_ttl_ms,
                    committer: Arc::new(RpcRemoteLogCommitter::new(
                        self.net.endpoint(node),
                        COORDINATOR_NODE,
                        self.plan.request_timeout_ms,
                    )),
                    attempts_max: 5,
                    retry_backoff_ms_min: 20,
                    retry_backoff_ms_max: 500,
                })
            }),
        }
    }

    fn partitions(&self) -> &TablePartitions {
        &self.checker.partitions
    }

    fn start(&mut self) {
        for _ in 0..self.plan.table_partitions {
            self.partitions().create();
        }
        for node in 1..=self.plan.servers {
            self.start_server(node, false);
        }
        for bucket in self.partitions().live_buckets() {
            self.register_and_lead(bucket);
        }
        let per_client = self.plan.client_ops / self.plan.clients;
        let remainder = self.plan.client_ops % self.plan.clients;
        self.clients_running
            .set(self.plan.clients + self.plan.scan_clients + self.plan.leases.consumers);
        if let Some(leases) = &mut self.leases {
            let world = crate::coordinator_leases::WorldParts {
                exec: &self.exec,
                net: &self.net,
                streams: &self.streams,
                remote: &self.remote,
                coordinator: &self.coordinator,
                clients_running: &self.clients_running,
                buckets: self.checker.partitions.live_buckets(),
            };
            leases.start_run(&self.plan, world);
        }
        for index in 0..self.plan.scan_clients {
            let node = SCAN_CLIENT_NODE_BASE + index;
            let client = crate::scan_client::ScanClient::new(
                crate::scan_client::ClientNode {
                    node_id: node,
                    rpc: self.net.endpoint(node),
                    clock: self.exec.clock_for(node),
                    executor: self.exec.executor_for(node),
                    ledger: self.ledger.clone(),
                },
                self.streams.stream(&format!("scan-client-{node}")),
                self.plan.clone(),
                self.checker.clone(),
            );
            let running = self.clients_running.clone();
            let run = crate::scan_client::spawnable(client);
            self.exec.spawn(
                node,
                format!("scan client {node}"),
                async move {
                    run.await;
                    running.finished();
                }
                .boxed(),
            );
        }
        for index in 0..self.plan.clients {
            let node = CLIENT_NODE_BASE + index;
            let ops = per_client + u32::from(index < remainder);
            let client = Client::new(
                node,
                self.net.endpoint(node),
                self.exec.clock_for(node),
                self.streams.stream(&format!("client-{node}")),
                self.plan.clone(),
                self.checker.clone(),
                ops,
            );
            let running = self.clients_running.clone();
            self.exec.spawn(
                node,
                format!("client {node}"),
                async move {
                    client.run().await;
                    running.finished();
                }
                .boxed(),
            );
        }
    }

    /// Starts (or restarts) a tablet server on its disk; `lose_disk` models a replaced machine.
    fn start_server(&mut self, node: NodeId, lose_disk: bool) {
        let disk = self.disks.entry(node).or_insert_with(|| {
            let fs = Arc::new(SimFs::new());
            ServerDisk { engines: Arc::new(MemEngineFactory::new(fs.clone())), fs, incarnation: 0 }
        });
        if lose_disk {
            disk.fs = Arc::new(SimFs::new());
            disk.engines = Arc::new(MemEngineFactory::new(disk.fs.clone()));
        }
        disk.incarnation += 1;
        let disk_stream = format!("disk-faults-{node}-{}", disk.incarnation);
        if self.chaos.on {
            apply_disk_faults(&self.plan, &self.streams, &disk.fs, &disk_stream, &self.chaos.log);
        }
        let engine_faults = self.plan.faults.engine;
        let observer = self.recovery.checkpoint_observer(node, disk.incarnation);
        self.recovery.set_disk(node, disk.fs.clone());
        let engines = self.chaos.faulty_engines(
            node,
            &self.streams,
            engine_faults,
            disk.engines.clone(),
            observer,
        );
        let entropy = crate::prng::SimEntropy::with_buggify(
            self.streams.stream(&format!("entropy-{node}-{}", disk.incarnation)),
            self.chaos.buggify.clone(),
        );
        let env = Env {
            node_id: node,
            clock: self.exec.clock_for(node),
            executor: self.exec.executor_for(node),
            remote: Arc::new(self.recovery_reads.wrap(node, self.remote.clone())),
            rpc: self.net.endpoint(node),
            fs: disk.fs.clone(),
            entropy: Arc::new(entropy),
            engines,
            ledger: self.ledger.clone(),
            mutants: self.plan.mutants,
        };
        let logs = self.logs.server_started(node, disk.fs.clone());
        let server = TabletServer::start(env, self.server_config(node), logs);
        // The partitions that exist now, as a server learns them from the coordinator.
        for partition_id in self.partitions().live_partitions() {
            if let Err(error) = server.add_partition(
                TABLE_ID,
                partition_id,
                &TablePartitions::name_of(partition_id),
            ) {
                self.checker.violation(format!(
                    "node {node} refused partition {partition_id} at start: {error}"
                ));
            }
        }
        self.net.register(node, self.recovery.watching(node, server.clone()));
        self.net.set_node_up(node, true);
        lock(&self.live).insert(node, server);
        self.coordinator.set_server_live(node, true);
    }

    /// A new bucket gets a leader: its home server, or another replica.
    fn register_and_lead(&self, bucket: TableBucket) {
        self.coordinator.register_bucket(bucket);
        let leader = (bucket.bucket_id as u32 % self.plan.servers) + 1;
        self.assign(bucket, Some(leader));
    }

    /// Drops the oldest partition and creates the next, as automatic partitioning does: the
    /// coordinator forgets the dropped buckets, every live server stops serving them (their
    /// replicas stopped, scans closed, engines released), and the new partition's buckets get
    /// leaders on every server that serves it.
    fn turn_over_partition(&mut self) {
        let now = self.exec.now_mono_ms();
        let servers: Vec<(NodeId, Arc<TabletServer>)> =
            lock(&self.live).iter().map(|(node, server)| (*node, server.clone())).collect();
        if let Some(dropped) = self.partitions().drop_oldest(now) {
            self.note(COORDINATOR_NODE, "drop-partition", format!("p{dropped}"));
            for bucket in self.partitions().buckets_of(Some(dropped)) {
                self.coordinator.unregister_bucket(bucket);
            }
            for (node, server) in &servers {
                let removal = server.remove_partition(TABLE_ID, dropped);
                let (checker, server) = (self.checker.clone(), server.clone());
                self.exec.spawn(
                    *node,
                    format!("remove partition p{dropped}"),
                    async move {
                        removal.await;
                        checker.check_partition_released(&server, dropped);
                    }
                    .boxed(),
                );
            }
        }
        let created = self.partitions().create();
        self.note(COORDINATOR_NODE, "create-partition", format!("p{created}"));
        for (node, server) in &servers {
            if let Err(error) =
                server.add_partition(TABLE_ID, created, &TablePartitions::name_of(created))
            {
                self.checker
                    .violation(format!("node {node} refused new partition {created}: {error}"));
            }
        }
        for bucket in self.partitions().buckets_of(Some(created)) {
            self.register_and_lead(bucket);
        }
    }

    /// A live bucket drawn from the fault stream.
    fn pick_live_bucket(&mut self) -> Option<TableBucket> {
        let buckets = self.partitions().live_buckets();
        self.faults.pick(&buckets).copied()
    }

    /// Moves `bucket`'s leadership to `preferred` if it may lead (a live, in-sync replica after
    /// catching up), else to another replica that may, else to nobody until one comes back.
    fn assign(&self, bucket: TableBucket, preferred: Option<NodeId>) {
        // The fence comes first: it completes the deposed leader's writes waiting for their
        // sync (they may be acknowledged), so the candidates catch up after it, with them.
        // Catching up before it chose a leader that could lack a committed batch whenever its
        // replication failed.
        let leader_epoch = self.coordinator.leader_epoch_of(bucket) + 1;
        self.logs.fence(bucket, leader_epoch);
        self.checker.note_fenced_epoch(bucket, leader_epoch);
        let live = self.coordinator.live_servers();
        let candidates = preferred
            .into_iter()
            .chain(self.logs.replicas(bucket))
            .filter(|node| live.contains(node));
        let mut leader = None;
        for candidate in candidates {
            if self.logs.prepare_leader(bucket, candidate) {
                leader = Some(candidate);
                break;
            }
        }
        if leader.is_none() && self.coordinator.leader_of(bucket).is_none() && preferred.is_some() {
            return;
        }
        let assignment = self.coordinator.assign(bucket, leader);
        assert_eq!(assignment.leader_epoch, leader_epoch, "the coordinator assigns one at a time");
        self.note(
            COORDINATOR_NODE,
            "assign",
            format_args!(
                "{} leader {:?} -> {:?} epoch {}",
                bucket.dir_name_display(),
                assignment.previous,
                assignment.leader,
                assignment.leader_epoch
            ),
        );
    }

    fn drive_workload(&mut self) -> Result<(), SimError> {
        let faults = self.plan.faults.clone();
        let mut next_flip = faults.leader_flip_interval_ms.map(|ms| self.next_time(ms));
        let mut next_crash = faults.crash_interval_ms.map(|ms| self.next_time(ms));
        let mut next_retention = faults.retention_interval_ms.map(|ms| self.next_time(ms));
        let mut next_ttl_jump = faults.ttl_jump_interval_ms.map(|ms| self.next_time(ms));
        let churn_ms =
            self.plan.table_partition_churn_ms.filter(|_| self.plan.table_partitions > 0);
        let mut next_churn = churn_ms.map(|ms| self.next_time(ms));
        let mut turnovers_left = PARTITION_TURNOVERS_MAX;
        // Only a failed sync stops a log: without fsync faults there is nothing to watch.
        let watch_log_dirs = !faults.disk.fsync_failure.is_never();
        let mut next_log_dir_check =
            watch_log_dirs.then(|| self.exec.now_mono_ms() + LOG_DIR_CHECK_INTERVAL_MS);
        let mut restarts: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut faults_stopped = false;
        loop {
            if self.clients_running.none() {
                return Ok(());
            }
            if !faults_stopped && self.exec.now_mono_ms() > FAULT_PHASE_MS_MAX {
                faults_stopped = true;
                (next_flip, next_crash, next_retention, next_ttl_jump, next_churn) =
                    (None, None, None, None, None);
                self.corruption.next_at = None;
                self.stop_faults();
            }
            if self.exec.now_mono_ms() > VIRTUAL_TIME_MS_MAX {
                return Err(SimError::StepBudgetExhausted {
                    max_steps: STEPS_MAX,
                    mono_ms: self.exec.now_mono_ms(),
                    pending: self.exec.pending_tasks(),
                });
            }
            let next_fault = [
                next_flip,
                next_crash,
                next_retention,
                next_ttl_jump,
                next_log_dir_check,
                next_churn,
            ]
            .into_iter()
            .chain(self.chaos.next_events())
            .chain([self.corruption.next_at])
            .chain(self.leases.as_ref().map(|leases| leases.next_event_ms()))
            .flatten()
            .chain(restarts.values().copied())
            .min();
            match next_fault {
                Some(at_ms) => {
                    // An alarm task makes the executor stop at exactly the fault's instant.
                    let sleep = self.exec.sleep_until(at_ms);
                    self.exec.spawn(COORDINATOR_NODE, "fault-alarm", sleep.boxed());
                    let clients_running = self.clients_running.clone();
                    let exec = self.exec.clone();
                    self.exec.run_until(
                        || exec.now_mono_ms() >= at_ms || clients_running.none(),
                        STEPS_MAX,
                    )?;
                }
                None => {
                    let clients_running = self.clients_running.clone();
                    self.exec.run_until(|| clients_running.none(), STEPS_MAX)?;
                    continue;
                }
            }
            let now = self.exec.now_mono_ms();
            if next_flip.is_some_and(|at| at <= now) {
                self.flip_leader();
                next_flip = faults.leader_flip_interval_ms.map(|ms| self.next_time(ms));
            }
            if next_crash.is_some_and(|at| at <= now) {
                if let Some(node) = self.crash_random_server() {
                    let delay_ms =
                        self.faults.range_inclusive(10, faults.restart_delay_ms_max.max(10));
                    restarts.insert(node, now + delay_ms);
                }
                next_crash = faults.crash_interval_ms.map(|ms| self.next_time(ms));
            }
            if next_ttl_jump.is_some_and(|at| at <= now) {
                self.jump_to_ttl_boundary();
                next_ttl_jump = faults.ttl_jump_interval_ms.map(|ms| self.next_time(ms));
            }
            if next_churn.is_some_and(|at| at <= now) {
                self.turn_over_partition();
                turnovers_left -= 1;
                next_churn = churn_ms.filter(|_| turnovers_left > 0).map(|ms| self.next_time(ms));
            }
            if next_retention.is_some_and(|at| at <= now) {
                self.run_retention();
                next_retention = faults.retention_interval_ms.map(|ms| self.next_time(ms));
            }
            self.fire_chaos(now);
            if self.corruption.next_at.is_some_and(|at| at <= now) {
                self.corrupt_a_snapshot();
                let more = self.corruption.done < SNAPSHOT_CORRUPTIONS_MAX;
                self.corruption.next_at = faults
                    .snapshot_corruption_interval_ms
                    .filter(|_| more)
                    .map(|ms| draw_after(&mut self.corruption.prng, now, ms));
            }
            self.run_lease_events(now);
            if next_log_dir_check.is_some_and(|at| at <= now) {
                for node in self.halt_servers_with_stopped_logs() {
                    let delay_ms =
                        self.faults.range_inclusive(10, faults.restart_delay_ms_max.max(10));
                    restarts.insert(node, now + delay_ms);
                }
                next_log_dir_check = Some(now + LOG_DIR_CHECK_INTERVAL_MS);
            }
            let due: Vec<NodeId> =
                restarts.iter().filter(|(_, at)| **at <= now).map(|(n, _)| *n).collect();
            for node in due {
                restarts.remove(&node);
                self.restart_server(node);
            }
            self.audit_ledger("during the run");
            self.check_recovery_now();
        }
    }

    fn next_time(&mut self, mean_ms: u64) -> u64 {
        let delay_ms = self.faults.range_inclusive(mean_ms / 2, mean_ms + mean_ms / 2).max(1);
        self.exec.now_mono_ms() + delay_ms
    }

    fn flip_leader(&mut self) {
        let Some(mut bucket) = self.pick_live_bucket() else { return };
        // In a recovery scenario, often a bucket whose recovery is in flight.
        if let Some(target) = self.recovery_target(self.recovery.buckets_leading_in_flight()) {
            bucket = target;
        }
        let live = self.coordinator.live_servers();
        let replicas: Vec<NodeId> =
            self.logs.replicas(bucket).into_iter().filter(|node| live.contains(node)).collect();
        let Some(target) = self.faults.pick(&replicas).copied() else { return };
        self.assign(bucket, Some(target));
    }

    /// Crashes a random server, never the last one up (the fault atlas keeps the run
    /// recoverable); returns it.
    fn crash_random_server(&mut self) -> Option<NodeId> {
        let live = self.coordinator.live_servers();
        if live.len() < 2 {
            return None;
        }
        let mut node = *self.faults.pick(&live)?;
        // In a recovery scenario, often a node whose recovery is in flight.
        let recovering: Vec<NodeId> = self
            .recovery
            .nodes_leading_in_flight()
            .into_iter()
            .filter(|node| live.contains(node))
            .collect();
        if let Some(target) = self.recovery_target(recovering) {
            node = target;
        }
        // A replaced machine loses its disk only where another live replica holds everything
        // committed: the fault atlas never destroys the last copy of acknowledged data.
        let all_buckets = self.partitions().live_buckets();
        let lose_disk =
            self.faults.chance(Ratio::new(1, 4)) && self.logs.disk_is_redundant(node, &all_buckets);
        self.note(
            node,
            "crash",
            format!("node {node} crashes (disk {})", if lose_disk { "lost" } else { "kept" }),
        );
        self.take_down_server(node, lose_disk);
        if !lose_disk {
            self.maybe_lose_engines(node);
        }
        Some(node)
    }

    /// In one crash in four that keeps the disk (the plan's `engine_loss`), the node's KV
    /// engines are lost (every `kv/`
    /// directory deleted, as an operator clearing a corrupt engine would): its changelogs
    /// stay, and a bucket whose local log retention already deleted the early segments must
    /// then restore its engine from the latest KV snapshot when it leads again. Drawn from a
    /// stream of its own, so that the other faults keep their draws.
    fn maybe_lose_engines(&mut self, node: NodeId) {
        let Some(disk) = self.disks.get_mut(&node) else { return };
        let stream = format!("engine-loss-{node}-{}", disk.incarnation);
        if !self.streams.stream(&stream).chance(self.plan.faults.engine_loss) {
            return;
        }
        let removed = self.chaos.log.god_view(|| remove_kv_dirs(disk.fs.as_ref()));
        disk.engines = Arc::new(MemEngineFactory::new(disk.fs.clone()));
        self.note(node, "crash", format!("node {node} loses its KV engines ({removed:?})"));
        self.maybe_damage_latest_snapshots(node);
    }

    /// In one engine loss in two, the latest KV snapshot of every bucket is found damaged in
    /// the remote store (a file of its own directory deleted, as a lifecycle rule or an
    /// operator might): a recovery from it must report it broken and fall back to the previous
    /// snapshot (and the remote tier), or to the remote tier alone (not with remote
    /// retention on: see below). The store-files oracle excuses the deleted files. Drawn from
    /// a stream of its own.
    fn maybe_damage_latest_snapshots(&mut self, node: NodeId) {
        // Not where consumers lease snapshots: the lease oracle holds every deletion of a
        // leased file to be the coordinator's, and an operator's deletion is not one.
        if self.plan.leases.consumers > 0 {
            return;
        }
        let Some(service) = self.coordinator.snapshots() else { return };
        let Some(disk) = self.disks.get(&node) else { return };
        let stream = format!("snapshot-damage-{node}-{}", disk.incarnation);
        if !self.streams.stream(&stream).chance(Ratio::new(1, 2)) {
            return;
        }
        let mut damaged = 0;
        for bucket in service.store().buckets() {
            let Some(latest) = service.store().latest(bucket) else { continue };
            let Some(file) = latest.private_files.first() else { continue };
            // Once remote retention may have deleted the head of the remote tier, a bucket
            // whose every kept snapshot is damaged has lost data that no rule could keep: the
            // latest is damaged only while an older kept one is whole to fall back to.
            let fallback = service.store().kept(bucket).iter().any(|kept| {
                kept.snapshot_id != latest.snapshot_id
                    && kept
                        .private_files
                        .iter()
                        .all(|file| !self.damaged_snapshot_paths.contains(&file.remote_path))
            });
            if self.plan.remote_log_ttl_ms.is_some() && !fallback {
                continue;
            }
            if self.remote.remove_now(&file.remote_path) {
                self.damaged_snapshot_paths.insert(file.remote_path.clone());
                damaged += 1;
            }
        }
        self.note(node, "crash", format!("{damaged} latest KV snapshots damaged"));
    }

    /// Halts every live server whose changelog stopped after a failed sync, as a broker whose
    /// only log directory failed halts (Kafka's log-dir failure handling): what the failed
    /// sync left in the page cache is in doubt, so the server comes back only by reopening
    /// its logs from the disk. Returns the halted servers.
    fn halt_servers_with_stopped_logs(&mut self) -> Vec<NodeId> {
        let halted = self.logs.servers_with_stopped_logs();
        for node in &halted {
            self.note(*node, "halt", format!("node {node} halts: a changelog sync failed"));
            self.take_down_server(*node, false);
        }
        halted
    }

    /// Takes `node` down as a crash does (unsynced bytes lost; the whole disk if `lose_disk`)
    /// and moves its leaderships to live replicas.
    fn take_down_server(&mut self, node: NodeId, lose_disk: bool) {
        self.coordinator.set_server_live(node, false);
        self.checker.note_crash(node);
        lock(&self.live).remove(&node);
        self.logs.server_stopped(node);
        self.net.set_node_up(node, false);
        self.exec.kill_node(node);
        if let Some(disk) = self.disks.get(&node) {
            disk.fs.crash();
        }
        if lose_disk {
            if let Some(disk) = self.disks.get_mut(&node) {
                disk.fs = Arc::new(SimFs::new());
                disk.engines = Arc::new(MemEngineFactory::new(disk.fs.clone()));
            }
        }
        let survivors = self.coordinator.live_servers();
        for bucket in self.coordinator.buckets_led_by(Some(node)) {
            let replicas: Vec<NodeId> = self
                .logs
                .replicas(bucket)
                .into_iter()
                .filter(|node| survivors.contains(node))
                .collect();
            let target = self.faults.pick(&replicas).copied();
            self.assign(bucket, target);
        }
    }

    fn restart_server(&mut self, node: NodeId) {
        self.note(node, "restart", format!("node {node} restarts"));
        self.start_server(node, false);
        for bucket in self.coordinator.buckets_led_by(None) {
            self.assign(bucket, Some(node));
        }
    }

    /// Moves the clock to exactly a live session's TTL boundary (or one past it), where the
    /// evictor's strict comparison and a racing continuation meet.
    fn jump_to_ttl_boundary(&mut self) {
        let servers: Vec<Arc<TabletServer>> = lock(&self.live).values().cloned().collect();
        let Some(server) = self.faults.pick(&servers).cloned() else { return };
        let sessions = server.scanners().sessions();
        let Some(session) = self.faults.pick(&sessions).cloned() else { return };
        let target_ms = session.last_access_ms + self.plan.scanner.ttl_ms + self.faults.below(2);
        if target_ms <= self.exec.now_mono_ms() {
            return;
        }
        self.note(
            server.node_id(),
            "ttl-jump",
            format!("to {target_ms} for session of {}", session.bucket.dir_name_display()),
        );
        self.exec.advance_to(target_ms);
        self.checker.note_clock_jump();
    }

    fn run_retention(&mut self) {
        let Some(bucket) = self.pick_live_bucket() else { return };
        let leader = self.coordinator.leader_of(bucket);
        let Some(log) = self.logs.reference_log(bucket, leader) else { return };
        self.check_min_retain_offsets(bucket);
        let requested = self.faults.range_inclusive(0, log.high_watermark());
        match log.delete_segments_below(requested) {
            Ok(start) => self.note(
                COORDINATOR_NODE,
                "retention",
                format!("{} below {requested}: log start {start}", bucket.dir_name_display()),
            ),
            Err(error) => self.checker.on_storage_failure(&format!("retention on {bucket}"), error),
        }
    }

    /// Liveness phase: faults stop, every server comes back, every bucket gets a leader under
    /// a fresh epoch, and everything acknowledged must become flushed and readable.
    fn heal_and_check(&mut self) -> Result<(), SimError> {
        self.stop_injecting_faults();
        self.halt_servers_with_stopped_logs();
        // A server keeps refusing a damaged log until it restarts; the heal repaired the
        // disks, and an operator restarts the servers that refused.
        for node in self.logs.servers_with_refused_logs() {
            self.note(node, "halt", format!("node {node} restarts after the repair of its disk"));
            self.take_down_server(node, false);
        }
        for node in 1..=self.plan.servers {
            if !lock(&self.live).contains_key(&node) {
                self.restart_server(node);
            }
        }
        let buckets = self.partitions().live_buckets();
        for bucket in &buckets {
            let leader = self.coordinator.leader_of(*bucket);
            self.assign(*bucket, leader.or_else(|| self.logs.replicas(*bucket).first().copied()));
        }
        self.check_writes_acknowledged();
        self.probe_progress(&buckets)?;
        let live = self.live.clone();
        let coordinator = self.coordinator.clone();
        let recovery = self.recovery.clone();
        // Settled: every bucket led at its latest epoch and flushed, and no leadership call
        // still handled anywhere (a superseded term's recovery still owns its files).
        let settled = move || {
            !recovery.any_call_in_flight()
                && buckets.iter().all(|bucket| {
                    let Some(leader) = coordinator.leader_of(*bucket) else { return false };
                    let Some(server) = lock(&live).get(&leader).cloned() else { return false };
                    let Some(kv) = server.leader_kv(*bucket) else { return false };
                    let log = kv.log().clone();
                    let latest_epoch = coordinator.leader_epoch_of(*bucket);
                    kv.leader_epoch() == latest_epoch
                        && log.leader_epoch() == latest_epoch
                        && kv.flushed_log_offset() == log.high_watermark()
                })
        };
        let deadline_ms = self.exec.now_mono_ms() + HEAL_PROGRESS_BOUND_MS;
        let exec = self.exec.clone();
        let settled = std::cell::RefCell::new(settled);
        self.exec.run_until(
            || (settled.borrow_mut())() || exec.now_mono_ms() >= deadline_ms,
            HEAL_STEPS_MAX,
        )?;
        if !(settled.borrow_mut())() {
            self.checker.violation(format!(
                "no progress: the healed cluster did not settle within {HEAL_PROGRESS_BOUND_MS} ms; pending tasks: {}",
                self.pending_task_names()
            ));
        }
        // A recovery still in flight after the heal's bound is one that spins.
        self.check_recovery_now();
        for bucket in self.partitions().live_buckets() {
            self.checker.check_quiescent_state(bucket);
            self.check_min_retain_offsets(bucket);
        }
        let incarnations = self.live_incarnations();
        self.recovery.check_quiescent(&|node| incarnations.get(&node).copied());
        self.checker.check_dropped_partitions_released(TABLE_ID);
        // Abandoned sessions must be reclaimed by the evictor within TTL plus an interval.
        let scanner = self.plan.scanner;
        self.exec.run_for(scanner.ttl_ms + 2 * scanner.expiration_interval_ms + 1)?;
        self.checker.check_no_sessions_left(&self.ledger);
        self.audit_ledger("after the TTL and an eviction interval without scans");
        self.checker.check_scanner_registries();
        self.check_data_plane_catches_up()
    }

    /// With the faults healed (but for transient remote failures) and no more writes, each
    /// live bucket's snapshots, tiering and local retention catch up within the heal's bound
    /// ([`crate::data_plane_lag`]).
    fn check_data_plane_catches_up(&mut self) -> Result<(), SimError> {
        let buckets = self.partitions().live_buckets();
        let (plan, live, coordinator) =
            (self.plan.clone(), self.live.clone(), self.coordinator.clone());
        let exec = self.exec.clone();
        let first_lag = move || {
            let clock_of = |node| exec.clock_for(node);
            buckets.iter().find_map(|bucket| {
                crate::data_plane_lag::lag_of(*bucket, &plan, &live, &coordinator, &clock_of)
                    .map(|lag| format!("{}: {lag}", bucket.dir_name_display()))
            })
        };
        // The remote store fails now and then meanwhile: a background loop must live through
        // failures (one that ends on its first would otherwise be replaced by the heal's
        // fresh terms before anything could fail it).
        self.remote.set_faults(RemoteFaults {
            transient_failure: DATA_PLANE_REMOTE_FAILURES,
            ..RemoteFaults::none()
        });
        let deadline_ms = self.exec.now_mono_ms() + HEAL_PROGRESS_BOUND_MS;
        let exec = self.exec.clone();
        self.exec.run_until(
            || first_lag().is_none() || exec.now_mono_ms() >= deadline_ms,
            HEAL_STEPS_MAX,
        )?;
        self.remote.set_faults(RemoteFaults::none());
        if let Some(lag) = first_lag() {
            self.checker.violation(format!(
                "no progress: the data plane did not catch up within {HEAL_PROGRESS_BOUND_MS} ms of the heal: {lag}"
            ));
        }
        self.check_background_loops_run("while the data plane caught up");
        Ok(())
    }

    /// The plan lets writes succeed (a non-zero upsert weight): puts sent during the workload
    /// must have had at least one acknowledgement.
    fn check_writes_acknowledged(&self) {
        let sent = self.checker.progress.puts_sent();
        if self.plan.weights.upsert > 0 && sent > 0 && self.checker.counts().puts_acked == 0 {
            self.checker.violation(format!(
                "no progress: {sent} put batches sent, none acknowledged; give-ups {}",
                self.checker.progress.give_ups_summary()
            ));
        }
    }

    /// After the heal, a prober must write and read back every bucket within the bound.
    fn probe_progress(&mut self, buckets: &[TableBucket]) -> Result<(), SimError> {
        let deadline_ms = self.exec.now_mono_ms() + HEAL_PROGRESS_BOUND_MS;
        let failures: Arc<Mutex<Option<Vec<String>>>> = Arc::new(Mutex::new(None));
        let mut prober = Client::new(
            PROBER_NODE,
            self.net.endpoint(PROBER_NODE),
            self.exec.clock_for(PROBER_NODE),
            self.streams.stream("prober"),
            self.plan.clone(),
            self.checker.clone(),
            0,
        );
        let buckets = buckets.to_vec();
        let outcome = failures.clone();
        let probe = async move {
            let mut failed = Vec::new();
            for bucket in buckets {
                if let Err(reason) = prober.write_and_read_back(bucket, deadline_ms).await {
                    failed.push(format!("{}: {reason}", bucket.dir_name_display()));
                }
            }
            *lock(&outcome) = Some(failed);
        };
        self.exec.spawn(PROBER_NODE, "progress prober", probe.boxed());
        let exec = self.exec.clone();
        let done = failures.clone();
        self.exec.run_until(
            || lock(&done).is_some() || exec.now_mono_ms() > deadline_ms + 1,
            HEAL_STEPS_MAX,
        )?;
        match lock(&failures).take() {
            Some(failed) if failed.is_empty() => {}
            Some(failed) => self.checker.violation(format!(
                "no progress after the heal: the prober could not write and read back {}; give-ups {}",
                failed.join("; "),
                self.checker.progress.give_ups_summary()
            )),
            None => self.checker.violation(format!(
                "no progress after the heal: the prober did not finish within {HEAL_PROGRESS_BOUND_MS} ms; pending tasks: {}",
                self.pending_task_names()
            )),
        }
        Ok(())
    }

    /// Every engine snapshot and iterator of a live server belongs to a live scan session.
    fn audit_ledger(&self, when: &str) {
        let servers = lock(&self.live).clone();
        for text in crate::ledger_audit::unowned_engine_resources(&self.ledger, &servers, when) {
            self.checker.violation(text);
        }
        self.check_nothing_stopped(when);
        self.check_background_loops_run(when);
    }

    /// A leader's background loops (flush, KV snapshots, tiering) run for as long as its term,
    /// a server's session evictor for as long as the server, and the coordinator's lease
    /// expiry loop for as long as the coordinator: one that ended on a failure would leave its
    /// term (or its server) without it, unreported.
    fn check_background_loops_run(&self, when: &str) {
        for (node, server) in lock(&self.live).iter() {
            for (bucket, task) in server.ended_background_loops() {
                let owner = match bucket {
                    Some(bucket) => format!("its term of {}", bucket.dir_name_display()),
                    None => "the server".to_string(),
                };
                self.checker.violation(format!(
                    "node {node}'s task `{task}` ended {when} while {owner} runs"
                ));
            }
        }
        if let Some(task) = self.leases.as_ref().and_then(|leases| leases.ended_expiry_loop()) {
            self.checker.violation(format!(
                "the coordinator's task `{task}` ended {when} while the coordinator runs"
            ));
        }
    }

    /// A replica (or a server) stops on a corrupt or fatal engine error or a caught panic.
    /// The simulator injects only transient engine errors, so any stop is a bug: a panic that
    /// core caught to fail safe still fails the run.
    fn check_nothing_stopped(&self, when: &str) {
        for (node, server) in lock(&self.live).iter() {
            let failures = server.failures();
            if let Some(reason) = failures.server {
                self.checker.violation(format!("node {node} stopped serving {when}: {reason}"));
            }
            for (bucket, reason) in failures.replicas {
                self.checker.violation(format!(
                    "node {node}'s replica of {bucket} stopped {when}: {reason}"
                ));
            }
        }
    }

    fn pending_task_names(&self) -> String {
        let names: Vec<String> = self
            .exec
            .pending_tasks()
            .into_iter()
            .map(|(name, node)| format!("{name}@{node}"))
            .collect();
        names.join(", ")
    }

    /// Shuts every server down cleanly; afterwards no task may be left and the leak ledger
    /// must be empty.
    fn shutdown_and_check_leaks(&mut self) {
        let servers: Vec<(NodeId, Arc<TabletServer>)> =
            std::mem::take(&mut *lock(&self.live)).into_iter().collect();
        for (node, server) in servers {
            self.net.set_node_up(node, false);
            self.exec.spawn(node, "shutdown", server.shutdown());
        }
        if let Err(error) = self.exec.run_to_completion(HEAL_STEPS_MAX) {
            self.checker.violation(format!("tasks left after shutdown: {error}"));
        }
        // Without this the world outlives the run: handlers and their network hold each other.
        self.net.unregister_all();
        let leaked = self.ledger.live();
        if !leaked.is_empty() {
            let names: Vec<String> =
                leaked.iter().map(|r| format!("{:?} of {}", r.kind, r.owner)).collect();
            self.checker
                .violation(format!("leak ledger not empty at quiescence: {}", names.join(", ")));
        }
    }

    /// Every live replica's log of `bucket` keeps what its latest committed snapshot needs.
    fn check_min_retain_offsets(&self, bucket: TableBucket) {
        for node in self.logs.replicas(bucket) {
            if let Some(log) = self.logs.log_on(node, bucket) {
                self.checker.check_min_retain(node, &log);
            }
        }
    }

    /// At quiescence (every server down, nothing in flight): the orphan sweep runs as the
    /// coordinator runs it, then every kept snapshot's files must be in the remote store, and
    /// nothing else under `kv/`.
    fn sweep_and_check_snapshots(&mut self) {
        let Some(service) = self.coordinator.snapshots() else { return };
        if let Some(leases) = &self.leases {
            leases.oracle.check_no_leaked_files(&service);
        }
        let listed: Vec<kvtablet_core::env::RemoteObject> = self
            .remote
            .paths()
            .into_iter()
            .filter(|path| path.starts_with("kv/"))
            .map(|path| kvtablet_core::env::RemoteObject { path, size_bytes: 0 })
            .collect();
        // Every server is down: no upload is in flight.
        let orphans = service.store().sweep_orphans(&listed, false);
        if !orphans.is_empty() {
            self.note(COORDINATOR_NODE, "orphan-sweep", format!("{} objects", orphans.len()));
            let cleanup = kvtablet_core::snapshot::Cleanup { paths: orphans };
            let deleting = service.delete(cleanup);
            self.exec.spawn(
                COORDINATOR_NODE,
                "orphan sweep",
                async move {
                    let _left = deleting.await;
                }
                .boxed(),
            );
            if let Err(error) = self.exec.run_to_completion(HEAL_STEPS_MAX) {
                self.checker.violation(format!("orphan sweep did not finish: {error}"));
            }
        }
        for problem in crate::snapshot_oracle::check_store_files(
            service.store(),
            &self.remote,
            true,
            &self.damaged_snapshot_paths,
        ) {
            self.checker.violation(problem);
        }
        self.sweep_and_check_remote_logs(&service);
    }

    /// At quiescence: remote changelog objects that no manifest lists (uploads whose commit
    /// was refused, lost or never made) are swept, then nothing but what the manifests list
    /// is left under `log/`.
    fn sweep_and_check_remote_logs(&mut self, service: &Arc<SnapshotService>) {
        let Some(store) = service.remote_logs().cloned() else { return };
        let listed: Vec<kvtablet_core::env::RemoteObject> = self
            .remote
            .paths()
            .into_iter()
            .map(|path| kvtablet_core::env::RemoteObject { path, size_bytes: 0 })
            .collect();
        let orphans = store.orphans(&listed);
        if !orphans.is_empty() {
            self.note(COORDINATOR_NODE, "remote-log-sweep", format!("{} objects", orphans.len()));
            let deleting = service.delete(kvtablet_core::snapshot::Cleanup { paths: orphans });
            self.exec.spawn(
                COORDINATOR_NODE,
                "remote log orphan sweep",
                async move {
                    let _left = deleting.await;
                }
                .boxed(),
            );
            if let Err(error) = self.exec.run_to_completion(HEAL_STEPS_MAX) {
                self.checker.violation(format!("remote log orphan sweep did not finish: {error}"));
            }
        }
        for problem in crate::tiering_oracle::check_remote_log_objects(&store, &self.remote) {
            self.checker.violation(problem);
        }
    }

    /// The `leases` scenario's events (its checks, the coordinator's crashes) due at `now`.
    fn run_lease_events(&mut self, now: u64) {
        let Some(leases) = &mut self.leases else { return };
        let Some(current) = self.coordinator.snapshots() else { return };
        let (restarted, problems) = leases.on_events(now, &current);
        if let Some(service) = restarted {
            self.note(COORDINATOR_NODE, "crash", "the coordinator crashes and restarts");
            self.coordinator.serve_snapshots(service);
        }
        for problem in problems {
            self.checker.violation(problem);
        }
    }

    /// At the end of the `leases` scenario: every lease expires, the expiry loop lets go of
    /// its snapshots, then the loop stops (before the shutdown's leak check).
    fn quiesce_leases(&mut self) {
        let Some(leases) = &mut self.leases else { return };
        let Some(service) = self.coordinator.snapshots() else { return };
        if let Err(problem) = leases.quiesce(&self.exec, &service) {
            self.checker.violation(problem);
        }
        let restarts = leases.restarts();
        let lease_dir_losses = leases.lease_dir_losses();
        let counts = leases.oracle.counts();
        self.note(
            COORDINATOR_NODE,
            "leases-checked",
            format!(
                "reads={} injected_not_found={} steps={} coordinator_restarts={restarts} \
                 lease_dir_losses={lease_dir_losses}",
                counts.reads_checked, counts.injected_not_found, counts.steps_checked
            ),
        );
    }

    /// Records a transition; `format_args!` formats it straight into the trace.
    fn note(&self, node: NodeId, kind: &str, detail: impl std::fmt::Display) {
        let now = self.exec.now_mono_ms();
        lock(&self.trace).record_transition(now, node, kind, detail);
    }
}

/// Switches `disk`'s faults on at the plan's rates, drawing from the stream `stream`.
fn apply_disk_faults(
    plan: &RunPlan,
    streams: &Streams,
    disk: &SimFs,
    stream: &str,
    log: &Arc<FaultLog>,
) {
    if !plan.faults.disk.is_none() {
        disk.set_faults(plan.faults.disk, streams.stream(stream), log.clone());
    }
}

impl Chaos {
    fn new(plan: &RunPlan, streams: &Streams, log: Arc<FaultLog>, exec: &SimExecutor) -> Chaos {
        let mut prng = streams.stream("chaos");
        let now = exec.now_mono_ms();
        let f = &plan.faults;
        Chaos {
            log,
            on: true,
            engine_switches: BTreeMap::new(),
            next_partition: f.partition_interval_ms.map(|ms| draw_after(&mut prng, now, ms)),
            partition_heals_at: None,
            next_pause: f.pause_interval_ms.map(|ms| draw_after(&mut prng, now, ms)),
            paused: None,
            next_clock_step: f.clock_step_interval_ms.map(|ms| draw_after(&mut prng, now, ms)),
            prng,
            buggify: Arc::new(crate::buggify::Buggify::new(
                streams,
                f.buggify_site_active,
                f.buggify_fire,
            )),
        }
    }

    /// The instants at which a chaos event is due.
    fn next_events(&self) -> [Option<u64>; 5] {
        [
            self.next_partition,
            self.partition_heals_at,
            self.next_pause,
            self.paused.map(|(_, until)| until),
            self.next_clock_step,
        ]
    }

    /// The node's engine factory with the plan's engine faults (one switch per node, kept
    /// across restarts).
    fn faulty_engines(
        &mut self,
        node: NodeId,
        streams: &Streams,
        faults: crate::faulty_engine::EngineFaults,
        engines: Arc<MemEngineFactory>,
        observer: crate::faulty_engine::CheckpointOpened,
    ) -> Arc<dyn kvtablet_core::engine::KvEngineFactory> {
        let log = self.log.clone();
        let switch = self
            .engine_switches
            .entry(node)
            .or_insert_with(|| {
                EngineFaultSwitch::new(streams.stream(&format!("engine-faults-{node}")), log)
            })
            .clone();
        if self.on && !faults.is_none() {
            switch.set(faults);
        }
        Arc::new(FaultyEngineFactory::wrap(engines, switch).observing_checkpoints(observer))
    }
}

/// A time drawn around `mean_ms` after `now`.
fn draw_after(prng: &mut Prng, now: u64, mean_ms: u64) -> u64 {
    now + prng.range_inclusive(mean_ms / 2, mean_ms + mean_ms / 2).max(1)
}

impl World {
    /// Fires the partition, pause and clock events due at `now`.
    fn fire_chaos(&mut self, now: u64) {
        let f = self.plan.faults.clone();
        if self.chaos.partition_heals_at.is_some_and(|at| at <= now) {
            self.chaos.partition_heals_at = None;
            self.net.heal();
            self.note(COORDINATOR_NODE, "partition", "healed".to_string());
        }
        if self.chaos.next_partition.is_some_and(|at| at <= now) {
            if self.chaos.partition_heals_at.is_none() {
                let until = now + self.chaos.prng.range_inclusive(1, f.partition_ms_max.max(1));
                self.cut_network(f.partition_one_way);
                self.chaos.partition_heals_at = Some(until);
            }
            self.chaos.next_partition =
                f.partition_interval_ms.map(|ms| draw_after(&mut self.chaos.prng, now, ms));
        }
        if let Some((node, until)) = self.chaos.paused {
            if until <= now {
                self.chaos.paused = None;
                self.exec.resume_node(node);
                // A paused evictor stretches the node's session timings.
                self.checker.note_resume(node);
                self.note(node, "resume", format!("node {node} resumes"));
            }
        }
        if self.chaos.next_pause.is_some_and(|at| at <= now) {
            let live = self.coordinator.live_servers();
            let node = self.chaos.prng.pick(&live).copied();
            let until = now + self.chaos.prng.range_inclusive(1, f.pause_ms_max.max(1));
            if let (None, Some(node)) = (self.chaos.paused, node) {
                self.exec.pause_node(node);
                self.chaos.paused = Some((node, until));
                self.note(node, "pause", format!("node {node} paused until {until}"));
            }
            self.chaos.next_pause =
                f.pause_interval_ms.map(|ms| draw_after(&mut self.chaos.prng, now, ms));
        }
        if self.chaos.next_clock_step.is_some_and(|at| at <= now) {
            let node = 1 + self.chaos.prng.below(u64::from(self.plan.servers)) as NodeId;
            let skew_max = f.clock_skew_ms_max.max(1);
            let offset_ms =
                self.chaos.prng.range_inclusive(0, 2 * skew_max) as i64 - skew_max as i64;
            let before = self.exec.time().wall_offset_ms(node);
            self.exec.set_wall_offset(node, offset_ms);
            self.note(node, "clock-step", format!("wall offset {before}ms -> {offset_ms}ms"));
            self.chaos.next_clock_step =
                f.clock_step_interval_ms.map(|ms| draw_after(&mut self.chaos.prng, now, ms));
        }
    }

    /// Cuts one server off from a random part of the cluster (coordinator, clients, other
    /// servers), both ways or, with probability `one_way`, in one direction only.
    fn cut_network(&mut self, one_way: Ratio) {
        let servers: Vec<NodeId> = (1..=self.plan.servers).collect();
        let Some(victim) = self.chaos.prng.pick(&servers).copied() else { return };
        let mut others: Vec<NodeId> = vec![COORDINATOR_NODE];
        others.extend(servers.iter().copied().filter(|node| *node != victim));
        others.extend((0..self.plan.clients).map(|i| CLIENT_NODE_BASE + i));
        others.extend((0..self.plan.scan_clients).map(|i| SCAN_CLIENT_NODE_BASE + i));
        // Everyone, or a random half of the others.
        let whole = self.chaos.prng.chance(Ratio::new(1, 2));
        let side: Vec<NodeId> = others
            .into_iter()
            .filter(|_| whole | self.chaos.prng.chance(Ratio::new(1, 2)))
            .collect();
        let single = self.chaos.prng.chance(one_way);
        let inbound = self.chaos.prng.chance(Ratio::new(1, 2));
        for other in &side {
            if !single || !inbound {
                self.net.set_link_up(victim, *other, false);
            }
            if !single || inbound {
                self.net.set_link_up(*other, victim, false);
            }
        }
        let direction = match (single, inbound) {
            (false, _) => "both ways",
            (true, true) => "inbound only",
            (true, false) => "outbound only",
        };
        self.note(
            victim,
            "partition",
            format!("node {victim} cut from {} node(s) {direction}", side.len()),
        );
    }

    /// Ends the fault phase while clients still run: no fault is drawn or injected from now
    /// on (the servers that are down still restart when due).
    fn stop_faults(&mut self) {
        self.note(
            COORDINATOR_NODE,
            "faults-stop",
            format!("the fault phase ends at {FAULT_PHASE_MS_MAX} ms; the clients still run"),
        );
        self.stop_injecting_faults();
        if let Some(leases) = self.leases.as_mut() {
            leases.stop_crashes();
        }
    }

    /// No slow disk, no chaos (see [`World::heal_chaos`]) and a network that neither delays
    /// nor drops nor duplicates: shared by the end of the fault phase and the heal.
    fn stop_injecting_faults(&mut self) {
        self.exec.set_slow_disk(SlowDisk::default());
        self.heal_chaos();
        self.net.set_faults(NetFaults {
            delay_ms_max: 1,
            drop: Ratio::NEVER,
            duplicate: Ratio::NEVER,
        });
    }

    /// The heal phase's first step: every storage, remote, partition, pause and clock fault
    /// stops (bit rot is scrubbed: a repair from a healthy replica).
    fn heal_chaos(&mut self) {
        self.chaos.on = false;
        self.chaos.buggify.switch_off();
        for disk in self.disks.values() {
            disk.fs.clear_faults();
        }
        for switch in self.chaos.engine_switches.values() {
            switch.clear();
        }
        self.remote.set_faults(RemoteFaults::none());
        // Damaged snapshot objects are repaired (from a replica of the store), so that a
        // restore that could only fail before may succeed now.
        for path in self.remote.repair_damage() {
            self.note(COORDINATOR_NODE, "repair", format!("snapshot object {path}"));
        }
        self.net.heal();
        self.chaos.partition_heals_at = None;
        if let Some((node, _)) = self.chaos.paused.take() {
            self.exec.resume_node(node);
            self.checker.note_resume(node);
        }
        for node in 1..=self.plan.servers {
            self.exec.set_wall_offset(node, 0);
        }
    }
}

impl World {
    /// With the plan's `recovery_targeting`, one of `candidates` (drawn from a stream of its
    /// own, so that the other faults keep their draws); `None` otherwise.
    fn recovery_target<T: Copy>(&mut self, candidates: Vec<T>) -> Option<T> {
        let share = self.plan.faults.recovery_targeting;
        if share.is_never() || candidates.is_empty() {
            return None;
        }
        let prng = &mut self.recovery_targeting;
        if !prng.chance(share) {
            return None;
        }
        prng.pick(&candidates).copied()
    }

    /// Each live node's incarnation.
    fn live_incarnations(&self) -> BTreeMap<NodeId, u64> {
        let live = lock(&self.live);
        self.disks
            .iter()
            .filter(|(node, _)| live.contains_key(node))
            .map(|(node, disk)| (*node, disk.incarnation))
            .collect()
    }

    /// The recovery oracles at a fault instant: recovered engines against the model, and
    /// leadership calls that stopped progressing.
    fn check_recovery_now(&self) {
        let incarnations = self.live_incarnations();
        let exec = self.exec.clone();
        let checker = self.checker.clone();
        self.recovery.check_now(&|node| incarnations.get(&node).copied(), &|node, since| {
            exec.is_paused(node) || checker.paused_since(node, since)
        });
    }

    /// Damages one byte of a private file (never reused by a later snapshot) of a bucket's
    /// latest committed KV snapshot, at rest in the remote store: a restore must find the
    /// mismatch and fail typed (or fall back), never open it.
    fn corrupt_a_snapshot(&mut self) {
        let buckets = self.partitions().live_buckets();
        if let Some(bucket) = self.corruption.prng.pick(&buckets).copied() {
            self.corrupt_latest_snapshot_of(bucket);
        }
    }

    fn corrupt_latest_snapshot_of(&mut self, bucket: TableBucket) {
        let Some(service) = self.coordinator.snapshots() else { return };
        let Some(snapshot) = service.store().latest(bucket) else { return };
        let prng = &mut self.corruption.prng;
        let private: Vec<&kvtablet_core::snapshot::completed_snapshot::SnapshotFile> =
            snapshot.files().filter(|file| file.remote_path.contains("/snap-")).collect();
        let Some(file) = prng.pick(&private).copied() else { return };
        let index = prng.below(file.size_bytes.max(1));
        let flip = prng.range_inclusive(1, 255) as u8;
        if self.remote.damage(&file.remote_path, index, flip).is_none() {
            return;
        }
        self.corruption.done += 1;
        self.chaos.log.record(crate::fault_log::FaultKind::SnapshotCorruption);
        self.note(
            COORDINATOR_NODE,
            "corrupt",
            format!(
                "snapshot {} of {}: {} byte {index}",
                snapshot.snapshot_id, snapshot.bucket, file.remote_path
            ),
        );
    }
}

/// The fetcher bounds (`fetcher_bounds.rs`) sampled at every scheduling step; the first
/// breach is reported (later ones are the same fault).
fn watch_fetcher_bounds(
    exec: &SimExecutor,
    ledger: &Ledger,
    checker: &Arc<Checker>,
    config: kvtablet_core::recovery::FetcherConfig,
) {
    // The bounds are a function of the fetchers' live entries alone, tallied as they change.
    let tally = crate::fetcher_bounds::FetcherTally::attach(ledger);
    let checker = Arc::downgrade(checker);
    let reported = std::sync::atomic::AtomicBool::new(false);
    exec.set_step_observer(Arc::new(move || {
        if reported.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(holdings) = tally.take_changed() else { return };
        let problems = crate::fetcher_bounds::violations_of(holdings, config);
        if problems.is_empty() {
            return;
        }
        reported.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(checker) = checker.upgrade() {
            for problem in problems {
                checker.violation(format!("at a scheduling step: {problem}"));
            }
        }
    }));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes every bucket's `kv-{bucket}` directory (and a restore's `kv-{bucket}.restore`) of
/// the simulated table, partitions included, as an operator who lost the KV disk would find
/// it; the logs stay. Returns how many went.
fn remove_kv_dirs(
    fs: &dyn kvtablet_core::env::LocalFs,
) -> Result<usize, kvtablet_core::env::FsError> {
    use kvtablet_core::env::FsError;
    let table_dir = format!("{SIM_DATABASE}/{SIM_TABLE}-{TABLE_ID}");
    let mut removed = 0;
    let mut dirs = vec![table_dir];
    while let Some(dir) = dirs.pop() {
        let names = match fs.list_dir(&dir) {
            Ok(names) => names,
            Err(FsError::NotFound(_)) => continue,
            Err(error) => return Err(error),
        };
        for name in names {
            let path = format!("{dir}/{name}");
            if name.starts_with("kv-") {
                fs.remove_dir_all(&path)?;
                removed += 1;
            } else if name.contains("-p") {
                // A partition's directory, `{name}-p{id}`.
                dirs.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_log::FaultKind;

    #[test]
    fn nothing_of_a_world_outlives_its_run() {
        let scenario = Scenario::builtin("calm").expect("builtin scenario");
        let plan = Arc::new(RunPlan::draw(3, &scenario, Mutants::NONE).expect("plan"));
        let mut world = World::build(plan, TraceMode::HashOnly);
        world.start();
        world.drive_workload().expect("the workload finishes");
        world.heal_and_check().expect("the cluster heals");
        let servers: Vec<std::sync::Weak<TabletServer>> =
            lock(&world.live).values().map(Arc::downgrade).collect();
        assert!(!servers.is_empty());
        world.shutdown_and_check_leaks();
        assert_eq!(world.checker.violations(), Vec::<String>::new());
        let checker = Arc::downgrade(&world.checker);
        let coordinator = Arc::downgrade(&world.coordinator);
        drop(world);
        assert!(checker.upgrade().is_none(), "the checker outlived its world");
        assert!(coordinator.upgrade().is_none(), "the coordinator outlived its world");
        assert!(servers.iter().all(|server| server.upgrade().is_none()), "a server outlived it");
    }

    #[test]
    fn storage_faults_fire_and_the_run_still_passes() {
        let scenario = Scenario::builtin("disk-faults").expect("builtin scenario");
        let plan = Arc::new(RunPlan::draw(2, &scenario, Mutants::NONE).expect("plan"));
        let mut world = World::build(plan, TraceMode::HashOnly);
        world.start();
        world.drive_workload().expect("the workload finishes");
        world.heal_and_check().expect("the cluster heals");
        world.shutdown_and_check_leaks();
        assert_eq!(world.checker.violations(), Vec::<String>::new());
        let log = world.chaos.log.clone();
        for kind in [
            FaultKind::FsyncFailure,
            FaultKind::ReadError,
            FaultKind::DiskFull,
            FaultKind::EngineWriteError,
            FaultKind::EngineReadError,
            FaultKind::EngineIteratorError,
        ] {
            assert!(log.fired(kind) > 0, "{kind:?} never fired: {}", log.summary());
        }
        assert!(world.checker.counts().puts_acked > 0, "writes still get through");
    }

    #[test]
    fn partitions_pauses_and_clock_steps_happen_and_heal() {
        let scenario = Scenario::builtin("partitions").expect("builtin scenario");
        let plan = Arc::new(RunPlan::draw(4, &scenario, Mutants::NONE).expect("plan"));
        let mut world = World::build(plan, TraceMode::Short);
        world.start();
        world.drive_workload().expect("the workload finishes");
        world.heal_and_check().expect("the cluster heals");
        assert!((1..=3).all(|node| !world.exec.is_paused(node)), "the heal resumes every node");
        assert!((1..=3).all(|node| world.exec.time().wall_offset_ms(node) == 0));
        world.shutdown_and_check_leaks();
        assert_eq!(world.checker.violations(), Vec::<String>::new());
        let lines = lock(&world.trace).lines().to_vec();
        for kind in [" partition node", " pause ", " resume ", " clock-step ", "inbound only"] {
            assert!(lines.iter().any(|line| line.contains(kind)), "no {kind:?} in the trace");
        }
    }
}
