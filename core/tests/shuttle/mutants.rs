//! The harness catches the check-then-act mutants, those of the components the simulator
//! does not run yet or does not reach (`Mutant::OUTSIDE_SIMULATION`: recovery's fetcher, a
//! lease expired at its deadline), and the other KV snapshot lease mutants too,
//! built with `--features shuttle,mutants`: each is found on every seed within its budget,
//! under the schedulers its case names, and the same budget passes with the mutant off.
//!
//! The first failing execution of each, per seed, is printed by the test and recorded in
//! `cases` with the budget derived from it.

use kvtablet_core::mutant::{Mutant, Mutants};

use crate::support::{first_failure, Budget, SchedulerKind};

struct Case {
    mutant: Mutant,
    body: fn(Mutants),
    /// The schedulers that must catch it, each within this many executions on every seed of
    /// 1..=SEEDS. Any change to core's locking shifts the schedules, so the budgets leave room.
    budgets: &'static [(SchedulerKind, usize)],
}

const SEEDS: u64 = 5;

fn cases() -> Vec<Case> {
    use SchedulerKind::{Pct, Random};
    // First failing executions measured over seeds 1..=10 (5,000 executions allowed);
    // budgets are about three times the worst.
    vec![
        // Random [1, 3, 21, 9, 3, 4, 1, 8, 6, 1]; PCT [332, 259, 124, 42, 15, 84, 30, 39, 68, 54].
        Case {
            mutant: Mutant::ScanLimitCheckAndRegisterSplit,
            body: crate::scanner_manager::scanner_lifecycle,
            budgets: &[(Random, 100), (Pct, 1_000)],
        },
        // Random [2, 1, 1, 1, 1, 1, 1, 1, 2, 1]; PCT [39, 20, 11, 105, 21, 101, 19, 14, 43, 17].
        Case {
            mutant: Mutant::WriterCheckAndAppendSplit,
            body: crate::writer_state::writer_resends,
            budgets: &[(Random, 20), (Pct, 400)],
        },
        // PCT [119, 179, 27, 6, 18, 136, 182, 21, 4, 55]; the random scheduler found it on
        // none of seeds 1..=5 within 5,000 executions (the window is a few steps wide).
        Case {
            mutant: Mutant::EvictorActsOnStalePick,
            body: crate::scanner_manager::scanner_eviction,
            budgets: &[(Pct, 600)],
        },
        // A flush between a put's write and the parking of its values, after another put's
        // sync covered the batch (group commit: a put's own sync comes after its parking).
        // Random [68, 261, 440, 13, 44, 48, 189, 350, 23, 100];
        // PCT [38, 408, 455, 838, 73, 1385, 32, 1063, 283, 184].
        Case {
            mutant: Mutant::FlushPastUnparkedBatch,
            body: crate::group_commit::concurrent_puts_share_syncs,
            budgets: &[(Random, 1_500), (Pct, 4_000)],
        },
        // Not a preemption-only mutant (the simulator's sweep catches it too): the case shows
        // that the group-commit body's durability check (every acknowledged batch is in what a
        // crash at its acknowledgement keeps) fails without the sync. [1; 5] under both.
        Case {
            mutant: Mutant::AppendAcknowledgedBeforeSync,
            body: crate::group_commit::concurrent_puts_share_syncs,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // Recovery's remote-log fetcher (`remote_log_fetcher::fetcher_lifecycle`: a whole
        // iteration, a close mid-iteration, a failure). Measured over seeds 1..=10, 5,000
        // executions allowed. A blocking write that completes after the close or the drain
        // stopped its slot: caught by the ledger's TempFile entry left after close.
        // Random [1; 10]; PCT [19, 66, 63, 7, 3, 23, 13, 22, 67, 39].
        Case {
            mutant: Mutant::FetcherCancelDropsDownloadedFile,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 200)],
        },
        // The close returns while a blocking write still runs (its task, then its file, in
        // the ledger after close). Random [3, 8, 3, 1, 2, 9, 3, 1, 10, 2];
        // PCT [491, 744, 1622, 2505, 1202, 3392, -, 1504, -, 1374] (none on seeds 7 and 9
        // within 5,000: the window is one step of the write's thread), so PCT is not asked.
        Case {
            mutant: Mutant::FetcherCloseSkipsWait,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 30)],
        },
        // Deterministic (a unit-test kind of bug, caught by the body's check that a closed
        // fetcher answers `FetchError::Closed`): [1; 10] under both.
        Case {
            mutant: Mutant::FetcherClosedReusable,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // Needs downloads that complete out of order (the consumer then gets another
        // segment's bytes). Random [1, 1, 2, 1, 2, 1, 2, 2, 4, 3]; PCT [1; 10].
        Case {
            mutant: Mutant::FetcherMatchesByIdentity,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // Deterministic (segment 1 fails its first two gets): [1; 10] under both.
        Case {
            mutant: Mutant::FetcherNoRetry,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // Deterministic (the ledger after the failure's drain): [1; 10] under both.
        Case {
            mutant: Mutant::FetcherSlotLeakedOnFailure,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // Needs the downloads to run ahead of the consumer (the monitor's or the high-water
        // mark's window check). Random [1, 4, 1, 1, 2, 2, 2, 5, 1, 1]; PCT [1; 10].
        Case {
            mutant: Mutant::FetcherWindowUnbounded,
            body: crate::remote_log_fetcher::fetcher_lifecycle,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // KV snapshot leases (`kv_snapshot_leases::lease_races`): each is caught by the body's
        // deterministic tail on the first execution, whatever the races before it did; the
        // races catch the two counting mutants earlier when a commit lands between a lease's
        // two acquires or the sweeper expires the tiering lease. [1; 10] under both for all six.
        Case {
            mutant: Mutant::LeaseExpiryKeepsRefcount,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        Case {
            mutant: Mutant::LeaseReacquireKeepsOldPin,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        Case {
            mutant: Mutant::LeaseReleaseKeepsEmptyTable,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        Case {
            mutant: Mutant::LeaseAppliedBeforePersist,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        Case {
            mutant: Mutant::LeaseExpiresAtDeadline,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
        // The crash at the end of the body finds the lease files renamed in unsynced (empty).
        Case {
            mutant: Mutant::LeaseRenamedWithoutSync,
            body: crate::kv_snapshot_leases::lease_races,
            budgets: &[(Random, 20), (Pct, 20)],
        },
    ]
}

#[test]
fn the_harness_catches_each_check_then_act_mutant_and_passes_without_it() {
    let mut report = Vec::new();
    let mut missed = Vec::new();
    for case in cases() {
        for &(kind, iterations) in case.budgets {
            let mut firsts = Vec::new();
            for seed in 1..=SEEDS {
                let budget = Budget { iterations, seeds: 1, first_seed: seed, pct_depth: 3 };
                let body = case.body;
                let on = Mutants::NONE.with(case.mutant);
                let first = first_failure(kind, seed, budget, move || body(on));
                if first.is_none() {
                    missed.push(format!("{} {kind:?} seed {seed}", case.mutant.name()));
                }
                firsts.push(first);
                let off = first_failure(kind, seed, budget, move || body(Mutants::NONE));
                assert_eq!(off, None, "{} off: the harness fails anyway", case.mutant.name());
            }
            report.push(format!(
                "{} {kind:?}: first failing execution for seeds 1..={SEEDS}: {firsts:?}",
                case.mutant.name()
            ));
        }
    }
    println!("{}", report.join("\n"));
    for mutant in Mutant::PREEMPTION_ONLY {
        assert!(
            cases().iter().any(|case| case.mutant == *mutant),
            "{} is left to the shuttle harness, which has no case for it",
            mutant.name()
        );
    }
    for mutant in Mutant::OUTSIDE_SIMULATION {
        assert!(
            cases().iter().any(|case| case.mutant == *mutant),
            "{} is outside the simulation and has no case here",
            mutant.name()
        );
    }
    assert!(
        missed.is_empty(),
        "mutants not caught within their budget: {missed:?}\n{}",
        report.join("\n")
    );
}
