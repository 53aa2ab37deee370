//! The shuttle harness: core's real components on real threads under shuttle's randomised
//! and PCT schedulers, which preempt at every lock acquisition and atomic operation. Built
//! only with `--features shuttle` (core's `sync` module then hands out shuttle's locks):
//! `cargo test --release -p kvtablet-core --features shuttle --test shuttle`.
//!
//! A failure names the seed to replay: `KVTABLET_SHUTTLE_SEED=N KVTABLET_SHUTTLE_SEEDS=1`
//! (and `KVTABLET_SHUTTLE_ITERATIONS` to change the executions per seed and scheduler).
#![cfg(feature = "shuttle")]

mod group_commit;
mod kv_snapshot_leases;
#[cfg(feature = "mutants")]
mod mutants;
mod remote_log_fetcher;
mod replica;
mod scanner_manager;
mod support;
mod tablet_server;
mod writer_state;
