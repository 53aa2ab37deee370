//! Wall time of one default simulator seed (3 servers × 8 buckets, 2,000 client operations,
//! swarm faults) in release mode. Run with `cargo bench -p kvtablet-sim --bench seed_wall_time`.
//! Prints min, median and mean over a range of seeds; never asserts a time.

// Measuring wall time is this binary's whole purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

fn main() {
    let seeds: u64 =
        std::env::var("KVTABLET_BENCH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let scenario = Scenario::builtin("swarm").expect("builtin scenario");
    let mut samples_ms = Vec::new();
    let mut steps_total = 0u64;
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
        assert!(report.passed(), "seed {seed} failed: {:?}", report.violations);
    }
    let mut sorted = samples_ms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mean = samples_ms.iter().sum::<f64>() / samples_ms.len() as f64;
    println!(
        "simulator seed wall time over seeds 1..={seeds} (3 servers x 8 buckets, 2000 client ops):"
    );
    println!("  seed 1: {:.1} ms", samples_ms[0]);
    println!(
        "  min {:.1} ms, median {:.1} ms, mean {:.1} ms, max {:.1} ms",
        sorted[0],
        sorted[sorted.len() / 2],
        mean,
        sorted[sorted.len() - 1]
    );
    println!("  mean executor steps per seed: {}", steps_total / seeds);
}
