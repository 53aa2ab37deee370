//! A planted bug's failing seed shrinks to a short reproduction that fails with the same
//! oracle and replays from its printed overrides. Needs the `mutants` feature:
//! `cargo test -p kvtablet-sim --features mutants --test shrink`.

#![cfg(feature = "mutants")]

use kvtablet_core::mutant::{Mutant, Mutants};
use kvtablet_sim::checker::oracle_of;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::shrink::{shrink, ShrinkOptions};
use kvtablet_sim::sweep::{sweep, SweepOptions};
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

/// The short trace a reproduction may have at most.
const SHORT_TRACE_EVENTS_MAX: usize = 50;
/// How far the test looks for a mutant's first catching seed.
const FIRST_SEED_SEARCH_MAX: u64 = 200;

#[test]
fn an_update_logged_as_insert_shrinks_to_a_short_trace_with_the_same_oracle() {
    let mutants = Mutants::NONE.with(Mutant::UpdateLoggedAsInsert);
    let options = ShrinkOptions {
        seed: 1,
        scenario: Scenario::builtin("swarm").expect("builtin scenario"),
        mutants,
        runs_max: 400,
    };
    let mut log = Vec::new();
    let shrunk = shrink(&options, &mut |line| log.push(line.to_string())).expect("seed 1 fails");
    let command = shrunk.command(&["update-logged-as-insert"]);
    println!("{}\n{}\n{command}", log.join("\n"), shrunk.minimal.trace_lines.join("\n"));

    assert_eq!(shrunk.oracle, "changelog", "{:?}", shrunk.original.violations);
    let events = shrunk.minimal.trace_lines.len();
    assert!(
        events <= SHORT_TRACE_EVENTS_MAX,
        "the reproduction's short trace has {events} events:\n{}",
        shrunk.minimal.trace_lines.join("\n")
    );
    assert!(shrunk.original.steps > 10 * shrunk.minimal.steps);
    assert!(shrunk.original.virtual_ms > shrunk.minimal.virtual_ms);
    let plan = &shrunk.minimal.plan;
    assert_eq!((plan.clients, plan.scan_clients, plan.servers), (1, 0, 1));
    assert_eq!(plan.faults.leader_flip_interval_ms, None, "no fault kind is needed");
    assert_eq!(plan.faults.crash_interval_ms, None);

    // The printed overrides replay it.
    let scenario = shrunk
        .overrides
        .iter()
        .fold(Scenario::builtin("swarm").expect("builtin"), |s, (k, v)| s.with_override(k, v));
    let replay = run(&RunOptions { seed: 1, scenario, mutants, trace_mode: TraceMode::Short })
        .expect("plan");
    assert_eq!(replay.trace_lines, shrunk.minimal.trace_lines);
    assert!(replay.violations.iter().any(|v| oracle_of(v) == "changelog"));
    for (key, value) in &shrunk.overrides {
        assert!(command.contains(&format!(" --set {key}={value}")), "{command}");
    }
}

#[test]
fn shrinking_never_trades_the_oracle_for_another() {
    let mutants = Mutants::NONE.with(Mutant::StaleEpochWriteAccepted);
    let scenario = Scenario::builtin("swarm").expect("builtin scenario");
    // The seed is found, not written down: a change to the draws moves it.
    let sweep_options = SweepOptions {
        seeds: 1..FIRST_SEED_SEARCH_MAX + 1,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        scenario: scenario.clone(),
        mutants,
        stop_at_first_failure: true,
    };
    let seed = sweep(&sweep_options)
        .failures
        .first()
        .map(|failure| failure.seed)
        .expect("the mutant is caught (sim/tests/mutants_caught.rs)");
    let options = ShrinkOptions { seed, scenario, mutants, runs_max: 400 };
    let shrunk = shrink(&options, &mut |_| {}).expect("the first catching seed fails");
    let original_oracle = oracle_of(&shrunk.original.violations[0]);
    assert_eq!(shrunk.oracle, original_oracle);
    assert!(
        shrunk.minimal.violations.iter().any(|v| oracle_of(v) == original_oracle),
        "{:?}",
        shrunk.minimal.violations
    );
}
