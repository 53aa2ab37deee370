//! `kvtablet-sim`: run or replay one seed, or sweep a range of seeds.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kvtablet_core::mutant::{Mutant, Mutants};
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::prng::DecisionTape;
use kvtablet_sim::shrink::{replay_command, shrink, ShrinkOptions};
use kvtablet_sim::sweep::{parse_seed_range, sweep, SweepOptions};
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run_with_tape, RunOptions};

/// A seed allocates and frees small objects by the million; mimalloc runs sweeps about a fifth
/// faster than the system allocator. Allocation addresses never reach a trace.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a run that found a correctness violation (TigerBeetle's convention).
const EXIT_VIOLATION: u8 = 129;

#[derive(Parser)]
#[command(name = "kvtablet-sim", about = "Deterministic simulation of kvtablet under faults")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum TraceArg {
    Short,
    Full,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed and prints its trace; the same seed gives the same trace, bit for bit.
    Run {
        #[arg(long)]
        seed: u64,
        /// A scenario from scenarios/ (swarm, calm, leader-flips, crashes, crashes-rf1,
        /// lossy-network, scan-races, scan-leadership-churn, disk-faults, partitions,
        /// table-partitions, snapshots, recovery, leases).
        #[arg(long, default_value = "swarm")]
        scenario: String,
        #[arg(long, value_enum, default_value = "short")]
        trace: TraceArg,
        /// Switches on a deliberate bug (needs a build with the `mutants` feature).
        #[arg(long)]
        mutant: Vec<String>,
        /// Overrides one plan key on top of the scenario, e.g. `--set clients=1`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A decision tape in hex (a `sim_schedule` fuzz input run with a fixed seed, e.g.
        /// `--tape-hex "$(xxd -p crash-… | tr -d '\n')"`): the scheduler and the fault planner
        /// draw from its bytes first. Given on the command line so that the simulator reads
        /// no file.
        #[arg(long = "tape-hex", value_name = "HEX")]
        tape_hex: Option<String>,
    },
    /// Shrinks a failing seed to a minimal reproduction that fails with the same oracle, and
    /// prints the command that replays it.
    Shrink {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value = "swarm")]
        scenario: String,
        #[arg(long)]
        mutant: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Candidate runs to spend at most.
        #[arg(long, default_value_t = 400)]
        runs_max: u32,
    },
    /// Runs every seed of a range and reports the failing ones.
    Sweep {
        /// A range such as `1..1000` (end exclusive) or `1..=1000`.
        #[arg(long)]
        seeds: String,
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long, default_value = "swarm")]
        scenario: String,
        #[arg(long)]
        mutant: Vec<String>,
        /// Overrides one plan key on top of the scenario, e.g. `--set clients=1`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { seed, scenario, trace, mutant, overrides, tape_hex } => {
            let (scenario_value, mutants) = match run_inputs(&scenario, &overrides, &mutant) {
                Ok(inputs) => inputs,
                Err(error) => return usage_error(&error),
            };
            let trace_mode = match trace {
                TraceArg::Short => TraceMode::Short,
                TraceArg::Full => TraceMode::Full,
            };
            let options = RunOptions { seed, scenario: scenario_value, mutants, trace_mode };
            let tape = match tape_hex.as_deref().map(parse_hex).transpose() {
                Ok(bytes) => bytes.map(|bytes| DecisionTape::new(&bytes)),
                Err(error) => return usage_error(&format!("--tape-hex: {error}")),
            };
            let report = match run_with_tape(&options, tape.as_ref()) {
                Ok(report) => report,
                Err(error) => return usage_error(&error),
            };
            for line in &report.trace_lines {
                println!("{line}");
            }
            println!("trace hash {:016x}", report.trace_hash);
            if report.passed() {
                println!(
                    "seed {seed}: ok ({} steps, {} ms virtual)",
                    report.steps, report.virtual_ms
                );
                ExitCode::SUCCESS
            } else {
                for violation in &report.violations {
                    println!("VIOLATION: {violation}");
                }
                let added = override_map(&overrides);
                let mut replay = replay_command(seed, &scenario, &added, &names(&mutant));
                if let Some(hex) = &tape_hex {
                    replay.push_str(&format!(" --tape-hex {hex}"));
                }
                println!("replay: {replay}");
                ExitCode::from(EXIT_VIOLATION)
            }
        }
        Command::Shrink { seed, scenario, mutant, overrides, runs_max } => {
            let (scenario_value, mutants) = match run_inputs(&scenario, &overrides, &mutant) {
                Ok(inputs) => inputs,
                Err(error) => return usage_error(&error),
            };
            let options = ShrinkOptions { seed, scenario: scenario_value, mutants, runs_max };
            let shrunk = match shrink(&options, &mut |line| println!("shrink: {line}")) {
                Ok(shrunk) => shrunk,
                Err(error) => return usage_error(&error),
            };
            for line in &shrunk.minimal.trace_lines {
                println!("{line}");
            }
            println!(
                "shrunk seed {seed} in {} runs: oracle {}, {} -> {} steps, {} -> {} ms virtual, short trace {} events",
                shrunk.runs,
                shrunk.oracle,
                shrunk.original.steps,
                shrunk.minimal.steps,
                shrunk.original.virtual_ms,
                shrunk.minimal.virtual_ms,
                shrunk.minimal.trace_lines.len()
            );
            println!("replay: {}", shrunk.command(&names(&mutant)));
            ExitCode::from(EXIT_VIOLATION)
        }
        Command::Sweep { seeds, jobs, scenario, mutant, overrides } => {
            let mutants = match parse_mutants(&mutant) {
                Ok(mutants) => mutants,
                Err(error) => return usage_error(&error),
            };
            let (range, scenario_value) =
                match (parse_seed_range(&seeds), scenario_with(&scenario, &overrides)) {
                    (Ok(range), Ok(scenario)) => (range, scenario),
                    (Err(error), _) | (_, Err(error)) => return usage_error(&error),
                };
            let options = SweepOptions {
                seeds: range,
                jobs: jobs.max(1),
                scenario: scenario_value,
                mutants,
                stop_at_first_failure: false,
            };
            let outcome = sweep(&options);
            for failure in &outcome.failures {
                println!("seed {} FAILED: {}", failure.seed, failure.first_violation);
                println!(
                    "  replay: {}",
                    replay_command(
                        failure.seed,
                        &scenario,
                        &override_map(&overrides),
                        &names(&mutant)
                    )
                );
                println!(
                    "  shrink: cargo run --release -p kvtablet-sim{} -- shrink --seed {} --scenario {scenario}{}",
                    if mutant.is_empty() { "" } else { " --features mutants" },
                    failure.seed,
                    names(&mutant).iter().map(|m| format!(" --mutant {m}")).collect::<String>()
                );
            }
            println!(
                "give-ups across the sweep: {}",
                kvtablet_sim::progress::describe_give_ups(&outcome.give_ups)
            );
            println!(
                "swept {} seeds in scenario {scenario}: {} passed, {} failed",
                outcome.seeds_run,
                outcome.seeds_run - outcome.failures.len() as u64,
                outcome.failures.len()
            );
            if outcome.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_VIOLATION)
            }
        }
    }
}

fn parse_mutants(names: &[String]) -> Result<Mutants, String> {
    let mut mutants = Mutants::NONE;
    for name in names {
        let mutant = Mutant::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
            format!("unknown mutant {name:?}; known: {}", known.join(", "))
        })?;
        if !cfg!(feature = "mutants") {
            return Err("this build has no mutants; rebuild with `--features mutants`".to_string());
        }
        mutants = mutants.with(mutant);
    }
    Ok(mutants)
}

/// The scenario with its `--set` overrides, and the mutants, of a run or a shrink.
fn run_inputs(
    scenario: &str,
    overrides: &[String],
    mutant: &[String],
) -> Result<(Scenario, Mutants), String> {
    Ok((scenario_with(scenario, overrides)?, parse_mutants(mutant)?))
}

/// Bytes from hex digits (whitespace ignored).
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".to_string());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(pair, 16).map_err(|_| format!("{pair:?} is not a hex byte"))
        })
        .collect()
}

fn names(mutants: &[String]) -> Vec<&str> {
    mutants.iter().map(String::as_str).collect()
}

fn override_map(overrides: &[String]) -> BTreeMap<String, String> {
    overrides
        .iter()
        .filter_map(|text| text.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// A builtin scenario with `KEY=VALUE` overrides on top.
fn scenario_with(name: &str, overrides: &[String]) -> Result<Scenario, String> {
    let mut scenario = Scenario::builtin(name)?;
    for text in overrides {
        let (key, value) =
            text.split_once('=').ok_or_else(|| format!("--set {text:?}: expected KEY=VALUE"))?;
        scenario = scenario.with_override(key.trim(), value.trim());
    }
    Ok(scenario)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("kvtablet-sim: {message}");
    ExitCode::from(2)
}
