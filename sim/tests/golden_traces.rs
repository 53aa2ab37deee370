//! Golden traces: a curated scenario's short trace, and the trace hashes of a pinned list of
//! swarm seeds. Any change to behaviour shows up here as a diff to review; CI never accepts
//! snapshots by itself.

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions, RunReport};

fn run_seed(seed: u64, scenario: &str, trace_mode: TraceMode) -> RunReport {
    let options = RunOptions {
        seed,
        scenario: Scenario::builtin(scenario).expect("builtin scenario"),
        mutants: Mutants::NONE,
        trace_mode,
    };
    run(&options).expect("valid plan")
}

#[test]
fn calm_scenario_short_trace() {
    let report = run_seed(1, "calm", TraceMode::Short);
    assert!(report.passed(), "{:?}", report.violations);
    insta::assert_snapshot!("calm_seed_1", report.trace_lines.join("\n"));
}

#[test]
fn pinned_swarm_seeds_keep_their_trace_hashes() {
    let mut table = String::new();
    for seed in 1..=12 {
        let report = run_seed(seed, "swarm", TraceMode::HashOnly);
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        let c = report.counts;
        table.push_str(&format!(
            "seed {seed:>2} hash {:016x} puts={} lookups={} row_reads={}\n",
            report.trace_hash, c.puts_acked, c.lookups_checked, c.row_reads_checked
        ));
    }
    insta::assert_snapshot!("swarm_seed_hashes", table);
}
