//! The whole simulated cluster with the fuzzer choosing its schedule: the first 8 bytes of the
//! input are the seed, the rest a decision tape that the scheduler (which ready task runs,
//! whether a yield takes time) and the fault planner (when and where a leadership change,
//! crash, retention pass or clock jump lands) draw from before the seed's streams take over.
//! Coverage guidance then steers schedules, not only seeds. Any violation is a crash; the
//! message names the seed and the tape's length (the input file is the reproduction).
//!
//! `KVTABLET_FUZZ_SEED=N` fixes the seed, and the whole input is the tape: what the fuzzer
//! finds then is a schedule, not a seed. `KVTABLET_FUZZ_SCENARIO` picks a builtin scenario (default `swarm`); with the `mutants`
//! feature, `KVTABLET_FUZZ_MUTANT` switches a deliberate bug on, to show that the fuzzer finds
//! it.
#![no_main]

use std::sync::OnceLock;

use kvtablet_core::mutant::{Mutant, Mutants};
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::prng::DecisionTape;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run_with_tape, RunOptions};
use libfuzzer_sys::fuzz_target;

struct Setup {
    scenario: Scenario,
    mutants: Mutants,
    seed: Option<u64>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let scenario = std::env::var("KVTABLET_FUZZ_SCENARIO").unwrap_or_else(|_| "swarm".into());
        let scenario =
            Scenario::builtin(&scenario).expect("KVTABLET_FUZZ_SCENARIO: a builtin scenario");
        let mutants = match std::env::var("KVTABLET_FUZZ_MUTANT") {
            Ok(name) => Mutants::NONE
                .with(Mutant::from_name(&name).expect("KVTABLET_FUZZ_MUTANT: a mutant")),
            Err(_) => Mutants::NONE,
        };
        let seed = std::env::var("KVTABLET_FUZZ_SEED")
            .ok()
            .map(|seed| seed.parse().expect("KVTABLET_FUZZ_SEED: a number"));
        Setup { scenario, mutants, seed }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let setup = setup();
    let (seed, tape) = match setup.seed {
        Some(seed) => (seed, DecisionTape::new(bytes)),
        None => {
            let split = bytes.len().min(8);
            let mut seed_bytes = [0u8; 8];
            seed_bytes[..split].copy_from_slice(&bytes[..split]);
            (u64::from_le_bytes(seed_bytes), DecisionTape::new(&bytes[split..]))
        }
    };
    let options = RunOptions {
        seed,
        scenario: setup.scenario.clone(),
        mutants: setup.mutants,
        trace_mode: TraceMode::HashOnly,
    };
    let report = run_with_tape(&options, Some(&tape)).expect("valid plan");
    assert!(
        report.passed(),
        "seed {seed} with a tape of {} bytes ({} consumed): {:?}",
        tape.len(),
        tape.consumed(),
        report.violations
    );
});
