//! The `leases` scenario: consumers lease snapshots and read their files while leaders commit,
//! retention runs, leases expire and the coordinator crashes; oracle 13 holds on clean code,
//! and the run is the same bit for bit when replayed.

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions, RunReport};

fn run_leases(seed: u64) -> RunReport {
    let options = RunOptions {
        seed,
        scenario: Scenario::builtin("leases").expect("builtin scenario"),
        mutants: Mutants::NONE,
        trace_mode: TraceMode::Short,
    };
    run(&options).expect("plan is valid")
}

/// The numbers of the run's `leases-checked` line.
fn lease_counts(report: &RunReport) -> Vec<(String, u64)> {
    let line = report
        .trace_lines
        .iter()
        .find(|line| line.contains(" leases-checked "))
        .expect("a leases run reports its lease checks");
    let fields = line.split(" leases-checked ").nth(1).expect("fields");
    fields
        .split_whitespace()
        .map(|field| {
            let (key, value) = field.split_once('=').expect("key=value");
            (key.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn consumers_read_leased_files_across_coordinator_restarts_and_the_oracles_hold() {
    let report = run_leases(5);
    assert!(report.passed(), "violations: {:?}", report.violations);
    let counts = lease_counts(&report);
    let count = |key: &str| counts.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v);
    assert!(count("reads") > 0, "no leased file was read: {counts:?}");
    assert!(count("injected_not_found") > 0, "no injected not-found was told apart: {counts:?}");
    assert!(count("coordinator_restarts") > 0, "the coordinator never restarted: {counts:?}");
    assert!(count("steps") > count("reads"), "the step checks did not run: {counts:?}");
    assert!(report.trace_lines.iter().any(|line| line.contains(" plan leases consumers=4 ")));
}

#[test]
fn a_leases_seed_replays_to_the_same_trace() {
    assert_eq!(run_leases(7).trace_hash, run_leases(7).trace_hash);
}
