//! Every shipped mutant is caught by the simulator's sweep: the write path's within 500
//! seeds, the scan sessions' within 2,000. Needs the `mutants` feature: `cargo test -p kvtablet-sim --features mutants --test mutants_caught`.

#![cfg(feature = "mutants")]

use kvtablet_core::mutant::{Mutant, Mutants};
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::sweep::{sweep, SweepOptions};

/// The seed budget each mutant must be caught within.
fn seeds_max(mutant: Mutant) -> u64 {
    match mutant {
        Mutant::FlushAdvancesOffsetBeforeWrite
        | Mutant::StaleEpochWriteAccepted
        | Mutant::RetentionIgnoresMinRetain
        | Mutant::UpdateLoggedAsInsert
        | Mutant::DuplicateBatchReappended => 500,
        // The progress, page-cap, pipelined-writer, ledger-audit and expiry-timing oracles
        // catch these within a few seeds (first catching seeds 1, 2, 1, 3 and 15).
        Mutant::PutAlwaysRefused
        | Mutant::PageOverCap
        | Mutant::WriterStateKeepsLastBatchOnly
        | Mutant::ClosedSessionIteratorKept
        | Mutant::ContinuationSkipsTtlRefresh => 200,
        _ => 2_000,
    }
}

/// Mutants that no run can reach yet: the writer state is only rebuilt when a log is opened
/// from its files, and the simulator never reopens a log (the shared, never-crashing log).
/// Remove from here once each server's log is reopened from its disk on restart.
fn awaits_log_reopen(mutant: Mutant) -> bool {
    mutant == Mutant::WriterStateNotRebuiltOnOpen
}

fn first_failing_seed(mutant: Mutant) -> Option<u64> {
    let options = SweepOptions {
        seeds: 1..seeds_max(mutant) + 1,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        scenario: Scenario::builtin("swarm").expect("builtin scenario"),
        mutants: Mutants::NONE.with(mutant),
        stop_at_first_failure: true,
    };
    sweep(&options).failures.first().map(|failure| failure.seed)
}

#[test]
fn every_mutant_is_caught_within_its_seed_budget() {
    let mut escaped = Vec::new();
    for mutant in Mutant::ALL.iter().filter(|m| !awaits_log_reopen(**m)) {
        match first_failing_seed(*mutant) {
            Some(seed) => println!("mutant {} caught by seed {seed}", mutant.name()),
            None => escaped.push((mutant.name(), seeds_max(*mutant))),
        }
    }
    assert!(escaped.is_empty(), "mutants not caught within their seed budget: {escaped:?}");
}
