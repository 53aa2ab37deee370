//! The `kvtablet` binary.
// The binary owns the process: it may build the tokio runtime that the library only borrows.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cli;

use std::process::ExitCode;

use clap::Parser;
use kvtablet_prod::scan_command::{self, ScanCommandOptions, ScanTarget};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries the test-support commands' output.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let handle = runtime.handle().clone();
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cli::serve(args, handle).await,
            Command::Scan { server, database, table, partition, bucket, batch_size_bytes } => {
                let target = ScanTarget { server, database, table, partition, bucket };
                let options =
                    ScanCommandOptions { batch_size_bytes, ..ScanCommandOptions::DEFAULT };
                scan_command::run(target, options, handle).await.map(drop).map_err(Into::into)
            }
            Command::WriteStream { data_dir, count } => {
                cli::write_stream(data_dir, count, handle).await
            }
            Command::Dump { data_dir, lookup_count } => {
                cli::dump(data_dir, lookup_count, handle).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "kvtablet failed");
            ExitCode::FAILURE
        }
    }
}
