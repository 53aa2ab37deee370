//! The `recovery` scenario does what it promises: engines are lost and restored from KV
//! snapshots, damaged snapshot files meet restores, which report them broken and fall back to
//! an earlier snapshot (or fail typed, NOT_READY, when none helps), and every
//! oracle (the recovery ones among them) holds. A seed that stops restoring, or whose damage
//! no restore meets any more, fails here instead of passing a sweep that checked nothing.

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

#[test]
fn the_recovery_scenario_restores_engines_and_meets_damaged_snapshots() {
    let options = RunOptions {
        seed: 2,
        scenario: Scenario::builtin("recovery").expect("builtin scenario"),
        mutants: Mutants::NONE,
        trace_mode: TraceMode::HashOnly,
    };
    let report = run(&options).expect("valid plan");
    assert!(report.passed(), "{:?}", report.violations);
    let recovery = report.recovery;
    assert!(recovery.restores > 10, "{recovery:?}");
    assert!(recovery.broken_snapshots > 0, "damaged snapshots reported broken: {recovery:?}");
    assert!(recovery.temp_dir_checks > 10, "{recovery:?}");
    assert!(report.counts.recovered_engines_checked > 10, "{:?}", report.counts);
    assert!(report.plan.faults.snapshot_corruption_interval_ms.is_some());
}
