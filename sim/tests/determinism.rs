//! The same seed gives the same trace, bit for bit; different seeds give different traces.

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

fn trace_hash(seed: u64) -> u64 {
    let options = RunOptions {
        seed,
        scenario: Scenario::builtin("swarm").expect("builtin scenario"),
        mutants: Mutants::NONE,
        trace_mode: TraceMode::HashOnly,
    };
    let report = run(&options).expect("plan is valid");
    assert!(report.passed(), "seed {seed} failed: {:?}", report.violations);
    report.trace_hash
}

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    for seed in [7, 1234] {
        let first = trace_hash(seed);
        let second = trace_hash(seed);
        assert_eq!(first, second, "seed {seed} diverged between two runs");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (1..=4).map(trace_hash).collect();
    assert_eq!(hashes.len(), 4, "four seeds produced only {} distinct traces", hashes.len());
}
