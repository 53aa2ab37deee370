//! `kvtablet-sim`: run or replay one seed, or sweep a range of seeds.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kvtablet_core::mutant::{Mutant, Mutants};
use kvtablet_sim::plan::Scenario;
use kvtablet_sim::sweep::{parse_seed_range, sweep, SweepOptions};
use kvtablet_sim::trace::TraceMode;
use kvtablet_sim::world::{run, RunOptions};

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
        /// A scenario from scenarios/ (swarm, calm, leader-flips, crashes, lossy-network,
        /// scan-races, disk-faults, partitions).
        #[arg(long, default_value = "swarm")]
        scenario: String,
        #[arg(long, value_enum, default_value = "short")]
        trace: TraceArg,
        /// Switches on a deliberate bug (needs a build with the `mutants` feature).
        #[arg(long)]
        mutant: Vec<String>,
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
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { seed, scenario, trace, mutant } => {
            let mutants = match parse_mutants(&mutant) {
                Ok(mutants) => mutants,
                Err(error) => return usage_error(&error),
            };
            let scenario_value = match Scenario::builtin(&scenario) {
                Ok(scenario) => scenario,
                Err(error) => return usage_error(&error),
            };
            let trace_mode = match trace {
                TraceArg::Short => TraceMode::Short,
                TraceArg::Full => TraceMode::Full,
            };
            let options = RunOptions { seed, scenario: scenario_value, mutants, trace_mode };
            let report = match run(&options) {
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
                println!("replay: {}", replay_command(seed, &scenario, &mutant));
                ExitCode::from(EXIT_VIOLATION)
            }
        }
        Command::Sweep { seeds, jobs, scenario, mutant } => {
            let mutants = match parse_mutants(&mutant) {
                Ok(mutants) => mutants,
                Err(error) => return usage_error(&error),
            };
            let (range, scenario_value) =
                match (parse_seed_range(&seeds), Scenario::builtin(&scenario)) {
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
                println!("  replay: {}", replay_command(failure.seed, &scenario, &mutant));
            }
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

fn replay_command(seed: u64, scenario: &str, mutants: &[String]) -> String {
    let mut command = String::from("cargo run --release -p kvtablet-sim");
    if !mutants.is_empty() {
        command.push_str(" --features mutants");
    }
    command.push_str(&format!(" -- run --seed {seed} --scenario {scenario} --trace full"));
    for mutant in mutants {
        command.push_str(&format!(" --mutant {mutant}"));
    }
    command
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("kvtablet-sim: {message}");
    ExitCode::from(2)
}
