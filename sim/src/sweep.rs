//! Runs many seeds, in parallel across OS threads. Each seed is still one single-threaded,
//! deterministic run; threads only share the list of seeds to take.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use kvtablet_core::mutant::Mutants;

use crate::plan::Scenario;
use crate::trace::TraceMode;
use crate::world::{run, RunOptions};

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub seeds: Range<u64>,
    pub jobs: usize,
    pub scenario: Scenario,
    pub mutants: Mutants,
    /// Stops taking new seeds after the first failure (used to measure how fast a mutant is
    /// caught).
    pub stop_at_first_failure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepFailure {
    pub seed: u64,
    pub first_violation: String,
}

#[derive(Debug, Clone, Default)]
pub struct SweepOutcome {
    pub seeds_run: u64,
    /// Sorted by seed.
    pub failures: Vec<SweepFailure>,
    /// Give-ups of every seed, by `operation:reason`, summed.
    pub give_ups: BTreeMap<String, u64>,
}

/// Parses `A..B` (end exclusive) or `A..=B`.
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let parse =
        |s: &str| s.trim().parse::<u64>().map_err(|_| format!("bad seed {s:?} in range {text:?}"));
    if let Some((start, end)) = text.split_once("..=") {
        let end = parse(end)?.checked_add(1).ok_or("seed range end overflows")?;
        return Ok(parse(start)?..end);
    }
    if let Some((start, end)) = text.split_once("..") {
        return Ok(parse(start)?..parse(end)?);
    }
    let seed = parse(text)?;
    Ok(seed..seed + 1)
}

pub fn sweep(options: &SweepOptions) -> SweepOutcome {
    // A panic inside a seed is reported as that seed's violation; the default hook would
    // print every one of them with a backtrace.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = sweep_quietly(options);
    std::panic::set_hook(previous_hook);
    outcome
}

fn sweep_quietly(options: &SweepOptions) -> SweepOutcome {
    let next_seed = AtomicU64::new(options.seeds.start);
    let stop = AtomicBool::new(false);
    let seeds_run = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let give_ups: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                if seed >= options.seeds.end {
                    return;
                }
                let run_options = RunOptions {
                    seed,
                    scenario: options.scenario.clone(),
                    mutants: options.mutants,
                    trace_mode: TraceMode::HashOnly,
                };
                let first_violation = match run(&run_options) {
                    Ok(report) => {
                        let mut totals = give_ups.lock().unwrap_or_else(|p| p.into_inner());
                        for (reason, count) in &report.give_ups {
                            *totals.entry(reason.clone()).or_insert(0) += count;
                        }
                        report.violations.into_iter().next()
                    }
                    Err(error) => Some(error),
                };
                seeds_run.fetch_add(1, Ordering::Relaxed);
                if let Some(first_violation) = first_violation {
                    if options.stop_at_first_failure {
                        stop.store(true, Ordering::Relaxed);
                    }
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(SweepFailure { seed, first_violation });
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|f| f.seed);
    let give_ups = give_ups.into_inner().unwrap_or_else(|p| p.into_inner());
    SweepOutcome { seeds_run: seeds_run.into_inner(), failures, give_ups }
}
