//! Shrinking: a failing seed reduced to a minimal reproduction that still fails with the same
//! oracle.
//!
//! The seed stays fixed; the plan shrinks through scenario overrides (the keys of
//! `Scenario::apply`): each fault kind and each optional operation switched off, then every
//! count (clients, scan clients, servers, buckets, operations, keys) brought down to the
//! smallest value that still fails, pass after pass until nothing more can go. Named streams
//! keep the decisions of what is left unchanged where they can (a removed client does not
//! shift the others' draws), which is what makes a greedy search work. A candidate counts
//! only if one of its violations comes from the oracle that caught the original run
//! (`checker::oracle_of`), so that shrinking never trades the bug for another one.
//!
//! The result is one command: `kvtablet-sim run --seed N --scenario X --set key=value ...`.

use std::collections::BTreeMap;

use kvtablet_core::mutant::{Mutant, Mutants};

use crate::checker::oracle_of;
use crate::plan::{RunPlan, Scenario};
use crate::trace::TraceMode;
use crate::world::{run, RunOptions, RunReport};

/// Switches: an override that turns one fault kind or one optional operation off. Every new
/// fault kind's override key belongs here, so that shrinking can rule it out.
const SWITCHES: &[(&str, &str)] = &[
    ("crash_interval_ms", "off"),
    ("leader_flip_interval_ms", "off"),
    ("ttl_jump_interval_ms", "off"),
    ("retention_interval_ms", "off"),
    ("net_drop_percent", "0"),
    ("net_duplicate_percent", "0"),
    ("net_delay_ms_max", "1"),
    ("weight_limit_scan", "0"),
    ("weight_prefix_lookup", "0"),
    ("weight_lookup", "0"),
    ("weight_delete", "0"),
    ("partial_update", "off"),
    ("table_partition_churn_ms", "off"),
    ("table_partitions", "0"),
    ("snapshot_interval_ms", "off"),
    ("tiering_interval_ms", "off"),
    ("snapshot_corruption_interval_ms", "off"),
    ("engine_loss", "off"),
    ("remote_latency_tail", "off"),
    ("recovery_targeting", "off"),
];

/// A count that shrinking brings down: its override key, its smallest allowed value, and its
/// value in a plan.
struct Count {
    key: &'static str,
    min: u64,
    of: fn(&RunPlan) -> u64,
}

/// In the order they are tried: what removes the most work first.
const COUNTS: &[Count] = &[
    Count { key: "clients", min: 1, of: |p| u64::from(p.clients) },
    Count { key: "scan_clients", min: 0, of: |p| u64::from(p.scan_clients) },
    Count { key: "servers", min: 1, of: |p| u64::from(p.servers) },
    Count { key: "buckets_per_server", min: 1, of: |p| u64::from(p.buckets_per_server) },
    Count { key: "client_ops", min: 0, of: |p| u64::from(p.client_ops) },
    Count { key: "scan_ops_per_client", min: 0, of: |p| u64::from(p.scan_ops_per_client) },
    Count { key: "keys_per_bucket", min: 1, of: |p| u64::from(p.keys_per_bucket) },
];

/// Counts are tried at each of their few smallest values before a bisection.
const SMALL_VALUES_TRIED: u64 = 3;

/// What to shrink.
#[derive(Debug, Clone)]
pub struct ShrinkOptions {
    pub seed: u64,
    pub scenario: Scenario,
    pub mutants: Mutants,
    /// At most this many runs are spent on candidates.
    pub runs_max: u32,
}

/// A shrunk reproduction.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The oracle that caught the original run, and still catches the minimal one.
    pub oracle: String,
    /// The overrides shrinking added to the scenario's own.
    pub overrides: BTreeMap<String, String>,
    /// The scenario with them.
    pub scenario: Scenario,
    /// The original run (hash-only trace).
    pub original: RunReport,
    /// The minimal run, with its short trace.
    pub minimal: RunReport,
    /// Candidate runs spent.
    pub runs: u32,
}

impl Shrunk {
    /// The command that replays the minimal reproduction.
    pub fn command(&self, mutants: &[&str]) -> String {
        replay_command(self.minimal.plan.seed, &self.scenario.name, &self.overrides, mutants)
    }
}

/// `kvtablet-sim run` with the seed, the scenario, the overrides and the mutants.
pub fn replay_command(
    seed: u64,
    scenario: &str,
    overrides: &BTreeMap<String, String>,
    mutants: &[&str],
) -> String {
    let mut command = String::from("cargo run --release -p kvtablet-sim");
    if !mutants.is_empty() {
        command.push_str(" --features mutants");
    }
    command.push_str(&format!(" -- run --seed {seed} --scenario {scenario}"));
    for (key, value) in overrides {
        command.push_str(&format!(" --set {key}={value}"));
    }
    for mutant in mutants {
        command.push_str(&format!(" --mutant {mutant}"));
    }
    command.push_str(" --trace full");
    command
}

/// The names of the mutants in `mutants`, for a replay command.
pub fn mutant_names(mutants: Mutants) -> Vec<&'static str> {
    Mutant::ALL.iter().filter(|m| mutants.is_on(**m)).map(|m| m.name()).collect()
}

/// Shrinks a failing seed; `progress` hears of every accepted reduction. Fails when the seed
/// passes or its plan is invalid.
pub fn shrink(options: &ShrinkOptions, progress: &mut dyn FnMut(&str)) -> Result<Shrunk, String> {
    let mut search = Search { options, runs: 0 };
    let original = search.run(&options.scenario, TraceMode::HashOnly)?;
    let Some(first) = original.violations.first() else {
        return Err(format!("seed {} passes: nothing to shrink", options.seed));
    };
    let oracle = oracle_of(first);
    progress(&format!(
        "seed {} fails with oracle {oracle}: {first} ({} steps, {} ms virtual)",
        options.seed, original.steps, original.virtual_ms
    ));
    let mut overrides: BTreeMap<String, String> = BTreeMap::new();
    let mut plan = original.plan.clone();
    loop {
        let before = overrides.clone();
        for (key, off) in SWITCHES {
            let Some(candidate) = search.candidate(&overrides, key, off, &plan)? else { continue };
            if search.still_fails(&candidate.0, &oracle)? {
                progress(&format!("{key}={off} still fails"));
                overrides.insert((*key).to_string(), (*off).to_string());
                plan = candidate.1;
            }
        }
        for count in COUNTS {
            let current = (count.of)(&plan);
            if current <= count.min {
                continue;
            }
            // The few smallest values first (small plans are what a reader wants, and failing
            // is not monotonic in a count), then a bisection between the largest value known
            // to pass and the smallest known to fail.
            let mut fails = current;
            let mut low = count.min;
            while low < fails
                && low < count.min + SMALL_VALUES_TRIED
                && search.runs < options.runs_max
            {
                match search.candidate(&overrides, count.key, &low.to_string(), &plan)? {
                    Some(candidate) if search.still_fails(&candidate.0, &oracle)? => fails = low,
                    _ => low += 1,
                }
            }
            while low < fails && search.runs < options.runs_max {
                let value = low + (fails - low) / 2;
                match search.candidate(&overrides, count.key, &value.to_string(), &plan)? {
                    Some(candidate) if search.still_fails(&candidate.0, &oracle)? => fails = value,
                    _ => low = value + 1,
                }
            }
            if fails < current {
                progress(&format!("{}={fails} still fails (was {current})", count.key));
                overrides.insert(count.key.to_string(), fails.to_string());
                plan = search.plan(&search.scenario_with(&overrides))?;
            }
        }
        if overrides == before || search.runs >= options.runs_max {
            break;
        }
    }
    let scenario = search.scenario_with(&overrides);
    let minimal = search.run(&scenario, TraceMode::Short)?;
    if !minimal.violations.iter().any(|v| oracle_of(v) == oracle) {
        return Err(format!("the shrunk plan no longer fails with {oracle}: not deterministic?"));
    }
    Ok(Shrunk { oracle, overrides, scenario, original, minimal, runs: search.runs })
}

struct Search<'a> {
    options: &'a ShrinkOptions,
    runs: u32,
}

impl Search<'_> {
    fn scenario_with(&self, overrides: &BTreeMap<String, String>) -> Scenario {
        overrides.iter().fold(self.options.scenario.clone(), |scenario, (key, value)| {
            scenario.with_override(key, value)
        })
    }

    fn plan(&self, scenario: &Scenario) -> Result<RunPlan, String> {
        RunPlan::draw(self.options.seed, scenario, self.options.mutants)
    }

    /// `overrides` plus `key = value`, with its plan, unless that plan is invalid or the same
    /// as `current` (nothing to learn from running it).
    fn candidate(
        &self,
        overrides: &BTreeMap<String, String>,
        key: &str,
        value: &str,
        current: &RunPlan,
    ) -> Result<Option<(Scenario, RunPlan)>, String> {
        let mut candidate = overrides.clone();
        candidate.insert(key.to_string(), value.to_string());
        let scenario = self.scenario_with(&candidate);
        match self.plan(&scenario) {
            Ok(plan) if plan == *current => Ok(None),
            Ok(plan) => Ok(Some((scenario, plan))),
            // An invalid combination (say, every operation off) is simply not a candidate.
            Err(_) => Ok(None),
        }
    }

    fn still_fails(&mut self, scenario: &Scenario, oracle: &str) -> Result<bool, String> {
        if self.runs >= self.options.runs_max {
            return Ok(false);
        }
        self.runs += 1;
        let report = self.run(scenario, TraceMode::HashOnly)?;
        Ok(report.violations.iter().any(|violation| oracle_of(violation) == oracle))
    }

    fn run(&self, scenario: &Scenario, trace_mode: TraceMode) -> Result<RunReport, String> {
        let options = RunOptions {
            seed: self.options.seed,
            scenario: scenario.clone(),
            mutants: self.options.mutants,
            trace_mode,
        };
        quietly(|| run(&options))
    }
}

/// Runs `f` without the default panic hook: a panic inside a run is reported as its
/// violation, and a shrink provokes many.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let value = f();
    std::panic::set_hook(previous_hook);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passing_seed_has_nothing_to_shrink() {
        let options = ShrinkOptions {
            seed: 1,
            scenario: Scenario::builtin("calm").expect("builtin scenario"),
            mutants: Mutants::NONE,
            runs_max: 10,
        };
        let error = shrink(&options, &mut |_| {}).expect_err("seed 1 of calm passes");
        assert!(error.contains("passes"), "{error}");
    }

    #[test]
    fn the_replay_command_carries_every_override() {
        let overrides: BTreeMap<String, String> = [("clients", "1"), ("crash_interval_ms", "off")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            replay_command(7, "swarm", &overrides, &["update-logged-as-insert"]),
            "cargo run --release -p kvtablet-sim --features mutants -- run --seed 7 --scenario swarm \
             --set clients=1 --set crash_interval_ms=off --mutant update-logged-as-insert --trace full"
        );
    }

    #[test]
    fn every_switch_and_count_is_a_known_override() {
        let scenario = SWITCHES
            .iter()
            .copied()
            .chain(COUNTS.iter().map(|count| (count.key, "1")))
            .fold(Scenario::builtin("swarm").expect("builtin"), |s, (k, v)| s.with_override(k, v));
        RunPlan::draw(1, &scenario, Mutants::NONE).expect("every key is known to the plan");
    }
}
