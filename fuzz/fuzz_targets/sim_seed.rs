//! The whole simulated cluster under a seed drawn from the input: any violation is a crash
//! that `kvtablet-sim run --seed N` replays.
#![no_main]

use kvtablet_core::mutant::Mutants;
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut seed_bytes = [0u8; 8];
    let len = bytes.len().min(8);
    seed_bytes[..len].copy_from_slice(&bytes[..len]);
    let seed = u64::from_le_bytes(seed_bytes);
    let scenario = Scenario::builtin("swarm").expect("builtin scenario");
    let options =
        RunOptions { seed, scenario, mutants: Mutants::NONE, trace_mode: TraceMode::HashOnly };
    let report = run(&options).expect("valid plan");
    assert!(report.passed(), "seed {seed}: {:?}", report.violations);
});
