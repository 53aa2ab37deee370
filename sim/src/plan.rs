//! What one seed runs: topology, workload mix and fault plan, drawn swarm-style (each fault
//! kind's intensity per seed, some kinds switched off entirely), then overridden by a scenario.

use std::collections::BTreeMap;

use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;

use crate::prng::{Prng, Ratio, Streams};

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
            faults: draw_faults(&mut prng),
            mutants,
            scan_clients: prng.range_inclusive(1, 6) as u32,
            scan_ops_per_client: prng.range_inclusive(10, 40) as u32,
            scanner: draw_scanner_config(&mut prng),
        };
        plan.replication_factor = if prng.chance(Ratio::new(1, 3)) { 1 } else { plan.servers };
        let slow_disk = !prng.chance(Ratio::new(1, 3));
        plan.faults.slow_disk_one_in = prng.range_inclusive(1, 8);
        plan.faults.slow_disk_ms_max = if slow_disk { prng.range_inclusive(1, 50) } else { 0 };
        scenario.apply(&mut plan)?;
        plan.replication_factor = plan.replication_factor.min(plan.servers);
        plan.check()?;
        Ok(plan)
    }

    pub fn bucket_count(&self) -> i32 {
        (self.servers * self.buckets_per_server) as i32
    }

    /// The plan as text, printed first in every trace.
    pub fn describe(&self) -> Vec<String> {
        let on_off =
            |value: Option<u64>| value.map_or("off".to_string(), |ms| format!("every ~{ms}ms"));
        let w = &self.weights;
        let f = &self.faults;
        vec![
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
                "plan weights upsert={} delete={} lookup={} prefix_lookup={} limit_scan={}",
                w.upsert, w.delete, w.lookup, w.prefix_lookup, w.limit_scan
            ),
            format!(
                "plan faults leader_flips={} crashes={} restart_delay_ms_max={} retention={}",
                on_off(f.leader_flip_interval_ms),
                on_off(f.crash_interval_ms),
                f.restart_delay_ms_max,
                on_off(f.retention_interval_ms)
            ),
            format!(
                "plan disk slow=1/{} slow_ms_max={}",
                f.slow_disk_one_in, f.slow_disk_ms_max
            ),
            format!(
                "plan net delay_ms_max={} drop={}/{} duplicate={}/{}",
                f.net_delay_ms_max, f.net_drop.num, f.net_drop.den, f.net_duplicate.num, f.net_duplicate.den
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
        ]
    }

    fn check(&self) -> Result<(), String> {
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

fn draw_faults(prng: &mut Prng) -> FaultPlan {
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
    }
}

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
            match key.as_str() {
                "servers" => plan.servers = number()? as u32,
                "replication_factor" => plan.replication_factor = number()? as u32,
                "buckets_per_server" => plan.buckets_per_server = number()? as u32,
                "clients" => plan.clients = number()? as u32,
                "client_ops" => plan.client_ops = number()? as u32,
                "keys_per_bucket" => plan.keys_per_bucket = number()? as u32,
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
                _ => return Err(format!("scenario {}: unknown key {key:?}", self.name)),
            }
        }
        Ok(())
    }
}
