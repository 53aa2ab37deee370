//! The harness catches the check-then-act mutants (built with `--features shuttle,mutants`):
//! each is found on every seed within its budget, under both schedulers, and the same budget
//! passes with the mutant off.
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
    assert!(
        missed.is_empty(),
        "mutants not caught within their budget: {missed:?}\n{}",
        report.join("\n")
    );
}
