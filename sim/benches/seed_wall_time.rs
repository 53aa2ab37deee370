//! Simulator throughput, in release mode, on one thread: seeds per second per core and
//! simulated seconds per wall second, for the default scenario (swarm) and for the
//! fault-heaviest named one, plus the wall time of single seeds. Run with
//! `cargo bench -p kvtablet-sim --bench seed_wall_time`; `KVTABLET_BENCH_SEEDS` (default 30)
//! sets the seeds per scenario and `KVTABLET_BENCH_SCENARIOS` (comma-separated) the scenarios.
//! Prints figures; never asserts a time.
//!
//! Seeds per second per core are given twice: per wall second, and per second of CPU time of
//! the measuring thread, which other load on a shared machine barely changes (it still pays
//! for cache misses that the load causes).

// Measuring wall time is this binary's whole purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

/// The binary's allocator (see sim/src/main.rs), so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let seeds: u64 =
        std::env::var("KVTABLET_BENCH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let scenarios = std::env::var("KVTABLET_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "swarm,crashes-rf1,lossy-network".to_string());
    for name in scenarios.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        measure(name, seeds);
    }
}

fn measure(name: &str, seeds: u64) {
    let scenario = Scenario::builtin(name).expect("builtin scenario");
    let mut samples_ms = Vec::new();
    let mut steps_total = 0u64;
    let mut virtual_ms_total = 0u64;
    let started_all = Instant::now();
    let cpu_started_s = thread_cpu_s();
    for seed in 1..=seeds {
        let options = RunOptions {
            seed,
            scenario: scenario.clone(),
            mutants: Mutants::NONE,
            trace_mode: TraceMode::HashOnly,
        };
        let started = Instant::now();
        let report = run(&options).expect("valid plan");
        samples_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        steps_total += report.steps;
        virtual_ms_total += report.virtual_ms;
        assert!(report.passed(), "{name} seed {seed} failed: {:?}", report.violations);
    }
    let wall_s = started_all.elapsed().as_secs_f64();
    let cpu_s = thread_cpu_s() - cpu_started_s;
    let mut sorted = samples_ms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mean = samples_ms.iter().sum::<f64>() / samples_ms.len() as f64;
    println!("scenario {name}, seeds 1..={seeds}, one thread:");
    println!(
        "  {:.1} seeds/s/core, {:.0} simulated s per wall s",
        seeds as f64 / wall_s,
        virtual_ms_total as f64 / 1000.0 / wall_s
    );
    println!(
        "  seed wall time: seed 1 {:.1} ms, min {:.1} ms, median {:.1} ms, mean {:.1} ms, max {:.1} ms",
        samples_ms[0],
        sorted[0],
        sorted[sorted.len() / 2],
        mean,
        sorted[sorted.len() - 1]
    );
    println!(
        "  {:.1} seeds per CPU second of this thread, {:.0} simulated s per CPU second",
        seeds as f64 / cpu_s,
        virtual_ms_total as f64 / 1000.0 / cpu_s
    );
    println!("  mean executor steps per seed: {}", steps_total / seeds);
}

/// CPU time (user and system) consumed by the calling thread, in seconds, from
/// `/proc/thread-self/stat` (fields 14 and 15, in clock ticks of 1/100 s on Linux).
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3, so fields 14 and 15 are at 11 and 12.
    let ticks = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    (ticks(11) + ticks(12)) as f64 / 100.0
}
