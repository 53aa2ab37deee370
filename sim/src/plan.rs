//! What one seed runs: topology, workload mix and fault plan, drawn swarm-style (each fault
//! kind's intensity per seed, some kinds switched off entirely), then overridden by a scenario.

use std::collections::BTreeMap;

use kvtablet_core::log::LocalRetention;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::recovery::FetcherConfig;
use kvtablet_core::scan::ScannerConfig;

use crate::faulty_engine::EngineFaults;
use crate::fs::DiskFaults;
use crate::prng::{Prng, Ratio, Streams};
use crate::remote::RemoteFaults;

/// Relative weights of the client operations; a zero switches an operation off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpWeights {
    pub upsert: u64,
    pub delete: u64,
    pub lookup: u64,
    pub prefix_lookup: u64,
    pub limit_scan: u64,
}

/// Faults and their intensities for one seed; `None` switches a kind off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// Mean interval between leadership changes (epoch bumps, moves between servers).
    pub leader_flip_interval_ms: Option<u64>,
    /// Mean interval between server crashes.
    pub crash_interval_ms: Option<u64>,
    pub restart_delay_ms_max: u64,
    pub net_delay_ms_max: u64,
    pub net_drop: Ratio,
    pub net_duplicate: Ratio,
    /// Mean interval between log-retention passes.
    pub retention_interval_ms: Option<u64>,
    /// Mean interval between clock jumps that land exactly on a live session's TTL boundary.
    pub ttl_jump_interval_ms: Option<u64>,
    /// One in how many disk operations (appends with their sync) is slow, and up to how slow;
    /// a zero maximum is a fast disk.
    pub slow_disk_one_in: u64,
    pub slow_disk_ms_max: u64,
    /// Every server's disk (its changelog, engine and catalog files).
    pub disk: DiskFaults,
    /// Every server's storage engines.
    pub engine: EngineFaults,
    /// The cluster's object store.
    pub remote: RemoteFaults,
    /// Mean interval between network partitions (one server cut off from some other nodes).
    pub partition_interval_ms: Option<u64>,
    /// A partition lasts up to this long before it heals.
    pub partition_ms_max: u64,
    /// The share of partitions that cut one direction only.
    pub partition_one_way: Ratio,
    /// Mean interval between pauses of one server (none of its tasks runs).
    pub pause_interval_ms: Option<u64>,
    pub pause_ms_max: u64,
    /// Mean interval between wall-clock steps of one node (forwards or backwards).
    pub clock_step_interval_ms: Option<u64>,
    /// A node's wall clock is offset by up to this much either way.
    pub clock_skew_ms_max: u64,
    /// BUGGIFY: the share of core's sites switched on in this seed, and how often an active
    /// site fires.
    pub buggify_site_active: Ratio,
    pub buggify_fire: Ratio,
    /// Of the crashes that keep the disk, the share that loses the node's KV engines (its
    /// `kv/` directory), so that its buckets restore from a KV snapshot when they lead again.
    pub engine_loss: Ratio,
    /// Mean interval between damages of a committed KV snapshot's object in the remote store
    /// (a byte of one of its private files flipped at rest; repaired at the heal); `None`
    /// damages nothing.
    pub snapshot_corruption_interval_ms: Option<u64>,
    /// The share of crashes and leadership moves aimed at a node or bucket whose recovery (a
    /// `BecomeLeader` call) is in flight, so that recoveries are cut at every step.
    pub recovery_targeting: Ratio,
}

impl FaultPlan {
    /// Whether any fault can make a storage operation fail.
    pub fn has_storage_faults(&self) -> bool {
        !self.disk.is_none() || !self.engine.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub seed: u64,
    pub scenario: String,
    pub servers: u32,
    /// Replicas per bucket (1 or every server): with 1, a lost sync is a lost write.
    pub replication_factor: u32,
    pub buckets_per_server: u32,
    pub clients: u32,
    pub client_ops: u32,
    pub keys_per_bucket: u32,
    pub segment_bytes_max: u64,
    pub request_timeout_ms: u64,
    pub weights: OpWeights,
    pub faults: FaultPlan,
    pub mutants: Mutants,
    /// Clients that run full scans (open, page, close, abandon, probe).
    pub scan_clients: u32,
    pub scan_ops_per_client: u32,
    pub scanner: ScannerConfig,
    /// Share of put batches sent as partial updates (target columns: the key and some value
    /// columns, merged into the existing rows).
    pub partial_update: Ratio,
    /// Partitions of the table alive at a time; 0 is a non-partitioned table.
    pub table_partitions: u32,
    /// Mean interval between partition turnovers (the oldest dropped, a new one created, as
    /// automatic partitioning does); `None` keeps the first partitions for the whole run.
    pub table_partition_churn_ms: Option<u64>,
    /// Interval of every leader's periodic KV snapshot (Fluss's `kv.snapshot.interval`);
    /// `None` takes none.
    pub snapshot_interval_ms: Option<u64>,
    /// Interval of every leader's changelog tiering and local retention (Fluss's
    /// `remote.log.task-interval-duration`); `None` tiers nothing.
    pub tiering_interval_ms: Option<u64>,
    /// What a leader keeps locally once tiered: closed segments (Fluss's
    /// `table.log.tiered.local-segments`), and optional age and size bounds.
    pub local_retention: LocalRetention,
    /// Remote log retention (Fluss's `table.log.ttl` on the remote tier); `None` keeps every
    /// tiered segment.
    pub remote_log_ttl_ms: Option<u64>,
    /// The KV snapshot lease consumers (off unless a scenario sets `lease_consumers`).
    pub leases: LeasePlan,
    /// Every server's recovery downloads: `kv.recover.remote-log.prefetch-num` and
    /// `download-threads` (Fluss's defaults, 4 and 3, in a third of the seeds).
    pub recovery_fetcher: FetcherConfig,
}

/// The `leases` workload: consumers modelled on the tiering service (PR 3286), each pinning the
/// latest snapshots of some buckets under a lease and reading their files slowly. Drawn from a
/// stream of its own, so that a seed's plan is what it was before leases existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePlan {
    /// Consumers at once; 0 runs none (and the coordinator keeps no leases).
    pub consumers: u32,
    /// Rounds (list, acquire, read, release) per consumer.
    pub rounds_per_consumer: u32,
    /// Buckets a consumer pins per round at most.
    pub buckets_per_round_max: u32,
    /// Each consumer's lease duration (short, so that expiry races the reads).
    pub duration_ms: u64,
    /// The coordinator's expiry check interval (`expiration-check-interval`).
    pub check_interval_ms: u64,
    /// A consumer sleeps up to this long before each file it reads.
    pub read_delay_ms_max: u64,
    /// The share of rounds a consumer crashes in (its lease is left to expire).
    pub consumer_crash: Ratio,
    /// The share of rounds whose release is skipped (the next round's acquire moves the pins).
    pub release_skipped: Ratio,
    /// Mean interval between coordinator crashes (lease and snapshot stores reopened from its
    /// disk); `None`: the coordinator never crashes.
    pub coordinator_crash_interval_ms: Option<u64>,
    /// The share of the coordinator's file syncs that fail, and of its writes that find the
    /// disk full (its lease and snapshot files; never its reads, which a restart needs).
    pub coordinator_disk_faults: Ratio,
}

impl LeasePlan {
    fn draw(prng: &mut Prng) -> LeasePlan {
        let duration_ms = prng.range_inclusive(150, 3_000);
        LeasePlan {
            consumers: 0,
            rounds_per_consumer: prng.range_inclusive(3, 12) as u32,
            buckets_per_round_max: prng.range_inclusive(1, 6) as u32,
            duration_ms,
            check_interval_ms: prng.range_inclusive(10, 500),
            read_delay_ms_max: prng.range_inclusive(1, duration_ms / 2),
            consumer_crash: Ratio::new(1, prng.range_inclusive(3, 10)),
            release_skipped: Ratio::new(1, prng.range_inclusive(3, 10)),
            coordinator_crash_interval_ms: Some(prng.range_inclusive(300, 3_000)),
            // Off in a third of the seeds, where oracle 13's retention check is strict.
            coordinator_disk_faults: {
                let one_in = prng.range_inclusive(5, 50);
                if prng.chance(Ratio::new(1, 3)) {
                    Ratio::NEVER
                } else {
                    Ratio::new(1, one_in)
                }
            },
        }
    }
}

impl RunPlan {
    /// The plan of `seed` under `scenario`.
    pub fn draw(seed: u64, scenario: &Scenario, mutants: Mutants) -> Result<RunPlan, String> {
        let mut prng = Streams::new(seed).stream("plan");
        let mut plan = RunPlan {
            seed,
            scenario: scenario.name.clone(),
            servers: 3,
            replication_factor: 3,
            buckets_per_server: 8,
            clients: 4,
            client_ops: 2_000,
            keys_per_bucket: prng.range_inclusive(4, 24) as u32,
            segment_bytes_max: prng.range_inclusive(256, 4096),
            request_timeout_ms: 2_000,
            weights: draw_weights(&mut prng),
            faults: draw_faults(&mut prng, &mut Streams::new(seed).stream("plan-faults")),
            mutants,
            scan_clients: prng.range_inclusive(1, 6) as u32,
            scan_ops_per_client: prng.range_inclusive(10, 40) as u32,
            scanner: draw_scanner_config(&mut prng),
            partial_update: Ratio::NEVER,
            table_partitions: 0,
            table_partition_churn_ms: None,
            snapshot_interval_ms: None,
            tiering_interval_ms: None,
            local_retention: LocalRetention::default(),
            remote_log_ttl_ms: None,
            leases: LeasePlan::draw(&mut Streams::new(seed).stream("plan-leases")),
            recovery_fetcher: draw_recovery_fetcher(
                &mut Streams::new(seed).stream("plan-recovery-fetcher"),
            ),
        };
        plan.replication_factor = if prng.chance(Ratio::new(1, 3)) { 1 } else { plan.servers };
        let slow_disk = !prng.chance(Ratio::new(1, 3));
        plan.faults.slow_disk_one_in = prng.range_inclusive(1, 8);
        plan.faults.slow_disk_ms_max = if slow_disk { prng.range_inclusive(1, 50) } else { 0 };
        // Swarm style: off in a third of the seeds, else one batch in 2 to 6.
        plan.partial_update = if prng.chance(Ratio::new(1, 3)) {
            Ratio::NEVER
        } else {
            Ratio::new(1, prng.range_inclusive(2, 6))
        };
        draw_table_partitions(&mut plan, &mut Streams::new(seed).stream("plan-table-partitions"));
        draw_snapshots(&mut plan, &mut Streams::new(seed).stream("plan-snapshots"));
        draw_tiering(&mut plan, &mut Streams::new(seed).stream("plan-tiering"));
        scenario.apply(&mut plan)?;
        plan.replication_factor = plan.replication_factor.min(plan.servers);
        plan.check()?;
        Ok(plan)
    }

    /// The table's bucket count: of each partition when partitioned, so that the live
    /// partitions together have about as many buckets as a non-partitioned table.
    pub fn bucket_count(&self) -> i32 {
        let buckets = self.servers * self.buckets_per_server;
        (buckets / self.table_partitions.max(1)).max(1) as i32
    }

    /// The plan as text, printed first in every trace.
    pub fn describe(&self) -> Vec<String> {
        let on_off =
            |value: Option<u64>| value.map_or("off".to_string(), |ms| format!("every ~{ms}ms"));
        let bound = |value: Option<u64>| value.map_or("off".to_string(), |max| max.to_string());
        let ratio = |ratio: Ratio| {
            if ratio.is_never() {
                "off".to_string()
            } else {
                format!("{}/{}", ratio.num, ratio.den)
            }
        };
        let w = &self.weights;
        let f = &self.faults;
        let mut lines = vec![
            format!("plan seed={} scenario={}", self.seed, self.scenario),
            format!(
                "plan topology servers={} replication_factor={} buckets={} clients={} client_ops={} keys_per_bucket={} segment_bytes_max={}",
                self.servers,
                self.replication_factor,
                self.bucket_count(),
                self.clients,
                self.client_ops,
                self.keys_per_bucket,
                self.segment_bytes_max
            ),
            format!(
                "plan weights upsert={} delete={} lookup={} prefix_lookup={} limit_scan={} partial_update={}",
                w.upsert,
                w.delete,
                w.lookup,
                w.prefix_lookup,
                w.limit_scan,
                ratio(self.partial_update)
            ),
            format!(
                "plan table partitions={} churn={}",
                if self.table_partitions == 0 {
                    "off".to_string()
                } else {
                    self.table_partitions.to_string()
                },
                on_off(self.table_partition_churn_ms.filter(|_| self.table_partitions > 0))
            ),
            format!("plan snapshots interval={}", on_off(self.snapshot_interval_ms)),
            format!(
                "plan tiering interval={} local_segments_kept={} local_age_ms_max={} local_size_bytes_max={} remote_log_ttl_ms={}",
                on_off(self.tiering_interval_ms),
                self.local_retention.segments_kept,
                bound(self.local_retention.age_ms_max),
                bound(self.local_retention.size_bytes_max),
                bound(self.remote_log_ttl_ms)
            ),
            format!(
                "plan faults leader_flips={} crashes={} restart_delay_ms_max={} retention={}",
                on_off(f.leader_flip_interval_ms),
                on_off(f.crash_interval_ms),
                f.restart_delay_ms_max,
                on_off(f.retention_interval_ms)
            ),
            format!(
                "plan net delay_ms_max={} drop={}/{} duplicate={}/{}",
                f.net_delay_ms_max, f.net_drop.num, f.net_drop.den, f.net_duplicate.num, f.net_duplicate.den
            ),
            format!(
                "plan disk fsync_failure={} read_error={} disk_full={} bit_rot={} torn_write={} slow=1/{} slow_ms_max={}",
                ratio(f.disk.fsync_failure),
                ratio(f.disk.read_error),
                ratio(f.disk.disk_full),
                ratio(f.disk.bit_rot),
                ratio(f.disk.torn_write),
                f.slow_disk_one_in,
                f.slow_disk_ms_max
            ),
            format!(
                "plan engine write_error={} write_applied={} read_error={} iterator_error={} open_error={}",
                ratio(f.engine.write_error),
                ratio(f.engine.write_applied),
                ratio(f.engine.read_error),
                ratio(f.engine.iterator_error),
                ratio(f.engine.open_error)
            ),
            format!(
                "plan remote latency_ms_max={} transient={} not_found={} failed_write_applied={} partial_upload={}",
                f.remote.latency_ms_max,
                ratio(f.remote.transient_failure),
                ratio(f.remote.not_found),
                ratio(f.remote.failed_write_applied),
                ratio(f.remote.partial_upload)
            ),
            format!(
                "plan partitions={} partition_ms_max={} one_way={} pauses={} pause_ms_max={} clock_steps={} clock_skew_ms_max={}",
                on_off(f.partition_interval_ms),
                f.partition_ms_max,
                ratio(f.partition_one_way),
                on_off(f.pause_interval_ms),
                f.pause_ms_max,
                on_off(f.clock_step_interval_ms),
                f.clock_skew_ms_max
            ),
            format!(
                "plan buggify site_active={} fire={}",
                ratio(f.buggify_site_active),
                ratio(f.buggify_fire)
            ),
            format!(
                "plan scans clients={} ops_per_client={} ttl_ms={} expiration_interval_ms={} per_bucket_max={} per_server_max={} batch_bytes_max={} ttl_jumps={}",
                self.scan_clients,
                self.scan_ops_per_client,
                self.scanner.ttl_ms,
                self.scanner.expiration_interval_ms,
                self.scanner.sessions_per_bucket_max,
                self.scanner.sessions_per_server_max,
                self.scanner.batch_bytes_max,
                on_off(f.ttl_jump_interval_ms)
            ),
        ];
        // Only when a recovery knob is off its default, so that the other plans print (and
        // hash) as they did before these knobs existed.
        let recovery_default = f.engine_loss == ENGINE_LOSS_DEFAULT
            && f.snapshot_corruption_interval_ms.is_none()
            && f.recovery_targeting.is_never()
            && f.remote.latency_tail.is_never();
        let fetcher = self.recovery_fetcher;
        if fetcher != FetcherConfig::DEFAULT {
            lines.push(format!(
                "plan recovery_fetcher prefetch_num={} download_threads={}",
                fetcher.prefetch_num, fetcher.download_threads
            ));
        }
        if !recovery_default {
            lines.push(format!(
                "plan recovery engine_loss={} snapshot_corruption={} targeting={} remote_latency_tail={} remote_latency_tail_ms_max={}",
                ratio(f.engine_loss),
                on_off(f.snapshot_corruption_interval_ms),
                ratio(f.recovery_targeting),
                ratio(f.remote.latency_tail),
                f.remote.latency_tail_ms_max
            ));
        }
        // Only when on: the traces of runs without leases stay as they were.
        let l = &self.leases;
        if l.consumers > 0 {
            lines.push(format!(
                "plan leases consumers={} rounds={} buckets_per_round_max={} duration_ms={} check_interval_ms={} read_delay_ms_max={} consumer_crash={} release_skipped={} coordinator_crashes={} coordinator_disk_faults={}",
                l.consumers,
                l.rounds_per_consumer,
                l.buckets_per_round_max,
                l.duration_ms,
                l.check_interval_ms,
                l.read_delay_ms_max,
                ratio(l.consumer_crash),
                ratio(l.release_skipped),
                on_off(l.coordinator_crash_interval_ms),
                ratio(l.coordinator_disk_faults)
            ));
        }
        lines
    }

    fn check(&self) -> Result<(), String> {
        self.recovery_fetcher.validate().map_err(|error| error.to_string())?;
        let w = &self.weights;
        if w.upsert + w.delete + w.lookup + w.prefix_lookup + w.limit_scan == 0 {
            return Err("every client operation is switched off".to_string());
        }
        if self.servers == 0
            || self.replication_factor == 0
            || self.buckets_per_server == 0
            || self.clients == 0
            || self.keys_per_bucket == 0
        {
            return Err("topology needs at least one server, bucket, client and key".to_string());
        }
        Ok(())
    }
}

/// Swarm style, from a stream of its own (so the rest of a seed's plan is what it was before
/// partitions existed): a partitioned table in a third of the seeds, with 1 to 3 partitions
/// alive at a time, turned over (oldest dropped, new one created) in most of them.
fn draw_table_partitions(plan: &mut RunPlan, prng: &mut Prng) {
    let partitioned = prng.chance(Ratio::new(1, 3));
    let partitions = prng.range_inclusive(1, 3) as u32;
    let churn = !prng.chance(Ratio::new(1, 4));
    let churn_ms = prng.range_inclusive(300, 3_000);
    if partitioned {
        plan.table_partitions = partitions;
        plan.table_partition_churn_ms = churn.then_some(churn_ms);
    }
}

/// From a stream of its own: Fluss's defaults in a third of the seeds, else a window of 1 to 4
/// segments and 1 to that many downloads at once, so that a bound that ignores its
/// configuration for a constant shows (the fetcher and restore bounds are checked against
/// the drawn values).
fn draw_recovery_fetcher(prng: &mut Prng) -> FetcherConfig {
    if prng.chance(Ratio::new(1, 3)) {
        return FetcherConfig::DEFAULT;
    }
    let prefetch_num = prng.range_inclusive(1, 4) as usize;
    let download_threads = prng.range_inclusive(1, prefetch_num as u64) as usize;
    FetcherConfig { prefetch_num, download_threads, ..FetcherConfig::DEFAULT }
}

/// From a stream of its own: snapshots in every seed (as in production, where they are always
/// on), every 0.5 to 5 s per led bucket, so that a run takes hundreds across every fault
/// (at 0.1 to 2 s a seed cost 1.8 times as much CPU as without snapshots; the `snapshots`
/// scenario takes one every 150 ms).
fn draw_snapshots(plan: &mut RunPlan, prng: &mut Prng) {
    plan.snapshot_interval_ms = Some(prng.range_inclusive(500, 5_000));
}

/// From a stream of its own: changelog tiering in every seed (as in production, where it is
/// always on), every 0.3 to 3 s per led bucket, keeping 0 to 2 closed segments locally, and in
/// half the seeds each also an age bound (0.2 to 3 s) and a local size bound (1 to 4 segments'
/// worth), so that retention deletes local segments by every rule and reads below the local
/// log start go to the remote tier. A scenario may turn it off (`tiering_interval_ms = off`).
fn draw_tiering(plan: &mut RunPlan, prng: &mut Prng) {
    let interval_ms = prng.range_inclusive(300, 3_000);
    plan.local_retention.segments_kept = prng.range_inclusive(0, 2) as usize;
    plan.tiering_interval_ms = Some(interval_ms);
    let age_on = prng.chance(Ratio::new(1, 2));
    let age_ms_max = prng.range_inclusive(200, 3_000);
    plan.local_retention.age_ms_max = age_on.then_some(age_ms_max);
    let size_on = prng.chance(Ratio::new(1, 2));
    let size_bytes_max = plan.segment_bytes_max * prng.range_inclusive(1, 4);
    plan.local_retention.size_bytes_max = size_on.then_some(size_bytes_max);
    // Drawn last, so that the draws above stay what they were. In a third of the seeds the
    // remote tier keeps a segment only 0.5 to 5 s, so remote retention runs against KV
    // recovery's needs.
    let ttl_on = prng.chance(Ratio::new(1, 3));
    let ttl_ms = prng.range_inclusive(500, 5_000);
    plan.remote_log_ttl_ms = ttl_on.then_some(ttl_ms);
}

fn draw_weights(prng: &mut Prng) -> OpWeights {
    // Swarm testing: each operation is off in a quarter of the seeds, but upserts always run so
    // that there is state to read.
    let weight = |prng: &mut Prng| {
        if prng.chance(Ratio::new(1, 4)) {
            0
        } else {
            prng.range_inclusive(1, 10)
        }
    };
    OpWeights {
        upsert: prng.range_inclusive(3, 10),
        delete: weight(prng),
        lookup: weight(prng),
        prefix_lookup: weight(prng),
        limit_scan: weight(prng),
    }
}

/// Short TTLs so that expiry races happen within a run; the interval stays at most a quarter
/// of the TTL so that the probes' timing rules hold; limits low enough to be hit.
fn draw_scanner_config(prng: &mut Prng) -> ScannerConfig {
    let ttl_ms = prng.range_inclusive(400, 4_000);
    ScannerConfig {
        ttl_ms,
        expiration_interval_ms: prng.range_inclusive(20, ttl_ms / 4),
        sessions_per_bucket_max: prng.range_inclusive(1, 8) as u32,
        sessions_per_server_max: prng.range_inclusive(2, 24) as u32,
        // Often small enough to bind on buckets of a few dozen rows (the page-cap oracle).
        batch_bytes_max: {
            let high = [128, 512, 4_096][prng.below(3) as usize];
            prng.range_inclusive(16, high) as u32
        },
    }
}

fn draw_faults(prng: &mut Prng, extra: &mut Prng) -> FaultPlan {
    let maybe = |prng: &mut Prng, low: u64, high: u64| {
        if prng.chance(Ratio::new(1, 3)) {
            None
        } else {
            Some(prng.range_inclusive(low, high))
        }
    };
    let leader_flip_interval_ms = maybe(prng, 50, 2_000);
    let crash_interval_ms = maybe(prng, 500, 10_000);
    let retention_interval_ms = maybe(prng, 50, 1_000);
    let net_on = !prng.chance(Ratio::new(1, 3));
    let ttl_jump_interval_ms = maybe(prng, 200, 3_000);
    FaultPlan {
        leader_flip_interval_ms,
        crash_interval_ms,
        restart_delay_ms_max: prng.range_inclusive(10, 3_000),
        net_delay_ms_max: if net_on { prng.range_inclusive(1, 200) } else { 1 },
        net_drop: if net_on { Ratio::new(prng.range_inclusive(0, 5), 100) } else { Ratio::NEVER },
        net_duplicate: if net_on {
            Ratio::new(prng.range_inclusive(0, 5), 100)
        } else {
            Ratio::NEVER
        },
        retention_interval_ms,
        ttl_jump_interval_ms,
        slow_disk_one_in: 1,
        slow_disk_ms_max: 0,
        ..draw_more_faults(extra)
    }
}

/// The storage, remote, partition, pause and clock faults, from a stream of their own so that
/// the rest of a seed's plan is what it was before they existed. Swarm style: each kind is off
/// in a fraction of the seeds, and its rate is drawn when on.
fn draw_more_faults(prng: &mut Prng) -> FaultPlan {
    // One in `1 / rate` operations, `rate` drawn between the bounds; off in a third of seeds.
    let rate = |prng: &mut Prng, one_in_min: u64, one_in_max: u64| {
        let on = !prng.chance(Ratio::new(1, 3));
        let one_in = prng.range_inclusive(one_in_min, one_in_max);
        if on {
            Ratio::new(1, one_in)
        } else {
            Ratio::NEVER
        }
    };
    let interval = |prng: &mut Prng, low: u64, high: u64| {
        let on = !prng.chance(Ratio::new(1, 2));
        let ms = prng.range_inclusive(low, high);
        on.then_some(ms)
    };
    // Storage faults as a whole are off in half of the seeds, so that the strict form of
    // "storage errors never reach a client" keeps being checked.
    let storage_on = prng.chance(Ratio::new(1, 2));
    let mut disk = DiskFaults {
        fsync_failure: rate(prng, 20, 400),
        read_error: rate(prng, 50, 1_000),
        disk_full: rate(prng, 50, 1_000),
        bit_rot: rate(prng, 500, 5_000),
        torn_write: rate(prng, 1, 3),
    };
    let mut engine = EngineFaults {
        write_error: rate(prng, 20, 400),
        // Drawn last (below), so that the draws before it are what they were.
        write_applied: Ratio::NEVER,
        read_error: rate(prng, 50, 1_000),
        iterator_error: rate(prng, 100, 2_000),
        open_error: rate(prng, 4, 20),
    };
    if !storage_on {
        disk = DiskFaults::none();
        engine = EngineFaults::none();
    }
    let remote_on = !prng.chance(Ratio::new(1, 3));
    let remote = RemoteFaults {
        latency_ms_max: prng.range_inclusive(0, 500),
        transient_failure: Ratio::new(prng.range_inclusive(0, 10), 100),
        not_found: Ratio::new(prng.range_inclusive(0, 5), 100),
        failed_write_applied: Ratio::new(prng.range_inclusive(0, 2), 2),
        partial_upload: Ratio::new(prng.range_inclusive(0, 2), 2),
        // Off unless a scenario switches it on (drawn from no stream here, so that the swarm's
        // plans are what they were).
        latency_tail: Ratio::NEVER,
        latency_tail_ms_max: 0,
    };
    let partition_interval_ms = interval(prng, 300, 5_000);
    let partition_ms_max = prng.range_inclusive(50, 3_000);
    let partition_one_way = Ratio::new(prng.range_inclusive(0, 2), 2);
    let pause_interval_ms = interval(prng, 500, 8_000);
    let pause_ms_max = prng.range_inclusive(20, 3_000);
    let clock_step_interval_ms = interval(prng, 200, 5_000);
    let clock_skew_ms_max = prng.range_inclusive(1, 120_000);
    let buggify_on = !prng.chance(Ratio::new(1, 3));
    let buggify_fire = Ratio::new(1, prng.range_inclusive(5, 50));
    // A failed engine write that landed anyway (an ambiguous outcome): the flush retries the
    // same batch, and reads take their offset from the snapshot they read, so neither a read
    // nor the retry may show it. Drawn for half of the failed writes at most.
    let write_applied = Ratio::new(prng.range_inclusive(0, 1), 2);
    if storage_on {
        engine.write_applied = write_applied;
    }
    FaultPlan {
        leader_flip_interval_ms: None,
        crash_interval_ms: None,
        restart_delay_ms_max: 0,
        net_delay_ms_max: 1,
        net_drop: Ratio::NEVER,
        net_duplicate: Ratio::NEVER,
        retention_interval_ms: None,
        ttl_jump_interval_ms: None,
        disk,
        engine,
        remote: if remote_on { remote } else { RemoteFaults::none() },
        partition_interval_ms,
        partition_ms_max,
        partition_one_way,
        pause_interval_ms,
        pause_ms_max,
        clock_step_interval_ms,
        clock_skew_ms_max,
        slow_disk_one_in: 1,
        slow_disk_ms_max: 0,
        buggify_site_active: if buggify_on { Ratio::new(1, 2) } else { Ratio::NEVER },
        buggify_fire,
        engine_loss: ENGINE_LOSS_DEFAULT,
        snapshot_corruption_interval_ms: None,
        recovery_targeting: Ratio::NEVER,
    }
}

/// One crash in four that keeps the disk loses the node's KV engines, unless a scenario says
/// otherwise (`engine_loss`).
pub const ENGINE_LOSS_DEFAULT: Ratio = Ratio::new(1, 4);

/// Overrides of the drawn plan, from a `scenarios/*.scenario` file: `key = value` lines,
/// `#` comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub overrides: BTreeMap<String, String>,
}

/// The scenarios shipped in `scenarios/`, compiled in so that the binary needs no files.
const BUILTIN_SCENARIOS: &[(&str, &str)] = &[
    ("swarm", include_str!("../../scenarios/swarm.scenario")),
    ("calm", include_str!("../../scenarios/calm.scenario")),
    ("leader-flips", include_str!("../../scenarios/leader-flips.scenario")),
    ("crashes", include_str!("../../scenarios/crashes.scenario")),
    ("crashes-rf1", include_str!("../../scenarios/crashes-rf1.scenario")),
    ("lossy-network", include_str!("../../scenarios/lossy-network.scenario")),
    ("scan-races", include_str!("../../scenarios/scan-races.scenario")),
    ("scan-leadership-churn", include_str!("../../scenarios/scan-leadership-churn.scenario")),
    ("disk-faults", include_str!("../../scenarios/disk-faults.scenario")),
    ("partitions", include_str!("../../scenarios/partitions.scenario")),
    ("table-partitions", include_str!("../../scenarios/table-partitions.scenario")),
    ("snapshots", include_str!("../../scenarios/snapshots.scenario")),
    ("recovery", include_str!("../../scenarios/recovery.scenario")),
    ("leases", include_str!("../../scenarios/leases.scenario")),
];

impl Scenario {
    pub fn builtin(name: &str) -> Result<Scenario, String> {
        let (_, text) =
            BUILTIN_SCENARIOS.iter().find(|(builtin, _)| *builtin == name).ok_or_else(|| {
                format!("unknown scenario {name:?}; known: {}", Scenario::names().join(", "))
            })?;
        Scenario::parse(name, text)
    }

    pub fn names() -> Vec<&'static str> {
        BUILTIN_SCENARIOS.iter().map(|(name, _)| *name).collect()
    }

    pub fn parse(name: &str, text: &str) -> Result<Scenario, String> {
        let mut overrides = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                format!("scenario {name} line {}: expected key = value", index + 1)
            })?;
            overrides.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(Scenario { name: name.to_string(), overrides })
    }

    /// This scenario with `key = value` set on top of its own overrides (what
    /// `kvtablet-sim run --set key=value` and shrinking add); checked when a plan is drawn.
    pub fn with_override(mut self, key: &str, value: &str) -> Scenario {
        self.overrides.insert(key.to_string(), value.to_string());
        self
    }

    fn apply(&self, plan: &mut RunPlan) -> Result<(), String> {
        for (key, value) in &self.overrides {
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    format!("scenario {}: {key} = {value:?} is not a number", self.name)
                })
            };
            let interval = || -> Result<Option<u64>, String> {
                if value == "off" {
                    Ok(None)
                } else {
                    number().map(Some)
                }
            };
            // A rate as `off`, `always` or `1/N` (one in N operations).
            let rate = || -> Result<Ratio, String> {
                let bad = || {
                    format!("scenario {}: {key} = {value:?} is not off, always or 1/N", self.name)
                };
                match value.as_str() {
                    "off" => Ok(Ratio::NEVER),
                    "always" => Ok(Ratio::ALWAYS),
                    _ => {
                        let (num, den) = value.split_once('/').ok_or_else(bad)?;
                        let num = num.trim().parse::<u64>().map_err(|_| bad())?;
                        let den = den.trim().parse::<u64>().map_err(|_| bad())?;
                        Ok(Ratio::new(num, den))
                    }
                }
            };
            match key.as_str() {
                "servers" => plan.servers = number()? as u32,
                "replication_factor" => plan.replication_factor = number()? as u32,
                "buckets_per_server" => plan.buckets_per_server = number()? as u32,
                "clients" => plan.clients = number()? as u32,
                "client_ops" => plan.client_ops = number()? as u32,
                "keys_per_bucket" => plan.keys_per_bucket = number()? as u32,
                "segment_bytes_max" => plan.segment_bytes_max = number()?.max(64),
                "leader_flip_interval_ms" => plan.faults.leader_flip_interval_ms = interval()?,
                "crash_interval_ms" => plan.faults.crash_interval_ms = interval()?,
                "retention_interval_ms" => plan.faults.retention_interval_ms = interval()?,
                "ttl_jump_interval_ms" => plan.faults.ttl_jump_interval_ms = interval()?,
                "slow_disk_ms_max" => plan.faults.slow_disk_ms_max = number()?,
                "slow_disk_one_in" => plan.faults.slow_disk_one_in = number()?.max(1),
                "scan_clients" => plan.scan_clients = number()? as u32,
                "scan_ops_per_client" => plan.scan_ops_per_client = number()? as u32,
                "scanner_ttl_ms" => {
                    plan.scanner.ttl_ms = number()?;
                    plan.scanner.expiration_interval_ms =
                        plan.scanner.expiration_interval_ms.min(plan.scanner.ttl_ms / 4).max(1);
                }
                "lease_consumers" => plan.leases.consumers = number()? as u32,
                "lease_duration_ms" => plan.leases.duration_ms = number()?.max(1),
                "lease_check_interval_ms" => plan.leases.check_interval_ms = number()?.max(1),
                "lease_read_delay_ms_max" => plan.leases.read_delay_ms_max = number()?,
                "lease_consumer_crash" => plan.leases.consumer_crash = rate()?,
                "lease_release_skipped" => plan.leases.release_skipped = rate()?,
                "coordinator_disk_faults" => plan.leases.coordinator_disk_faults = rate()?,
                "coordinator_crash_interval_ms" => {
                    plan.leases.coordinator_crash_interval_ms = interval()?;
                }
                "scanner_per_bucket_max" => plan.scanner.sessions_per_bucket_max = number()? as u32,
                "scanner_per_server_max" => plan.scanner.sessions_per_server_max = number()? as u32,
                "net_delay_ms_max" => plan.faults.net_delay_ms_max = number()?.max(1),
                "net_drop_percent" => plan.faults.net_drop = Ratio::new(number()?, 100),
                "net_duplicate_percent" => plan.faults.net_duplicate = Ratio::new(number()?, 100),
                "restart_delay_ms_max" => plan.faults.restart_delay_ms_max = number()?,
                "weight_upsert" => plan.weights.upsert = number()?,
                "weight_delete" => plan.weights.delete = number()?,
                "weight_lookup" => plan.weights.lookup = number()?,
                "weight_prefix_lookup" => plan.weights.prefix_lookup = number()?,
                "weight_limit_scan" => plan.weights.limit_scan = number()?,
                "partial_update" => plan.partial_update = rate()?,
                "table_partitions" => plan.table_partitions = number()? as u32,
                "table_partition_churn_ms" => plan.table_partition_churn_ms = interval()?,
                "snapshot_interval_ms" => plan.snapshot_interval_ms = interval()?,
                "tiering_interval_ms" => plan.tiering_interval_ms = interval()?,
                "local_segments_kept" => {
                    plan.local_retention.segments_kept = number()? as usize;
                }
                "local_age_ms_max" => plan.local_retention.age_ms_max = interval()?,
                "local_size_bytes_max" => plan.local_retention.size_bytes_max = interval()?,
                "remote_log_ttl_ms" => plan.remote_log_ttl_ms = interval()?,
                "disk_fsync_failure" => plan.faults.disk.fsync_failure = rate()?,
                "disk_read_error" => plan.faults.disk.read_error = rate()?,
                "disk_full" => plan.faults.disk.disk_full = rate()?,
                "disk_bit_rot" => plan.faults.disk.bit_rot = rate()?,
                "disk_torn_write" => plan.faults.disk.torn_write = rate()?,
                "engine_write_error" => plan.faults.engine.write_error = rate()?,
                "engine_write_applied" => plan.faults.engine.write_applied = rate()?,
                "engine_read_error" => plan.faults.engine.read_error = rate()?,
                "engine_iterator_error" => plan.faults.engine.iterator_error = rate()?,
                "engine_open_error" => plan.faults.engine.open_error = rate()?,
                "remote_latency_ms_max" => plan.faults.remote.latency_ms_max = number()?,
                "remote_transient" => plan.faults.remote.transient_failure = rate()?,
                "remote_not_found" => plan.faults.remote.not_found = rate()?,
                "remote_partial_upload" => plan.faults.remote.partial_upload = rate()?,
                "remote_latency_tail" => plan.faults.remote.latency_tail = rate()?,
                "remote_latency_tail_ms_max" => {
                    plan.faults.remote.latency_tail_ms_max = number()?;
                }
                "engine_loss" => plan.faults.engine_loss = rate()?,
                "recovery_prefetch_num" => {
                    plan.recovery_fetcher.prefetch_num = number()? as usize;
                }
                "recovery_download_threads" => {
                    plan.recovery_fetcher.download_threads = number()? as usize;
                }
                "recovery_targeting" => plan.faults.recovery_targeting = rate()?,
                "snapshot_corruption_interval_ms" => {
                    plan.faults.snapshot_corruption_interval_ms = interval()?;
                }
                "partition_interval_ms" => plan.faults.partition_interval_ms = interval()?,
                "partition_ms_max" => plan.faults.partition_ms_max = number()?.max(1),
                "partition_one_way" => plan.faults.partition_one_way = rate()?,
                "pause_interval_ms" => plan.faults.pause_interval_ms = interval()?,
                "pause_ms_max" => plan.faults.pause_ms_max = number()?.max(1),
                "clock_step_interval_ms" => plan.faults.clock_step_interval_ms = interval()?,
                "clock_skew_ms_max" => plan.faults.clock_skew_ms_max = number()?.max(1),
                "buggify_site_active" => plan.faults.buggify_site_active = rate()?,
                "buggify_fire" => plan.faults.buggify_fire = rate()?,
                _ => return Err(format!("scenario {}: unknown key {key:?}", self.name)),
            }
        }
        Ok(())
    }
}
