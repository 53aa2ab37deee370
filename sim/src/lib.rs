//! kvtablet-sim: a deterministic simulator for kvtablet-core. One seed fixes the task
//! schedule, virtual time, network delays and faults, so every failing run can be replayed.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod buggify;
pub mod checker;
pub mod client;
pub mod clients_running;
pub mod clock;
pub mod coordinator;
pub mod coordinator_leases;
pub mod data_plane_lag;
pub mod executor;
pub mod fault_log;
pub mod faulty_engine;
pub mod fenced_remote;
pub mod fetcher_bounds;
pub mod fs;
pub mod leader_cache;
pub mod lease_consumer;
pub mod lease_oracle;
pub mod ledger_audit;
pub mod model;
pub mod network;
pub mod plan;
pub mod prng;
pub mod progress;
pub mod ready_set;
pub mod recovery_reads;
pub mod recovery_watch;
pub mod remote;
pub mod replication;
pub mod scan_client;
pub mod script;
pub mod shrink;
pub mod sim_row;
pub mod snapshot_oracle;
pub mod sweep;
pub mod table_partitions;
pub mod tiering_oracle;
pub mod trace;
pub mod world;
pub mod writer_pipeline;
