//! KV snapshot upload throughput and incremental reuse on RocksDB, in a node on a temporary
//! data directory (remote store: `data_dir/remote`, the embedded default, on the same disk).
//!
//! - Loads one bucket with `keys` rows of `VALUE_BYTES`-byte incompressible values (~100 MB in
//!   the full run) through the node's PutKv path and waits for the flush.
//! - `FULL_RUNS` full snapshots (core's `take_snapshot` without a base, called directly so that
//!   it can be timed; the node's own loop is set to 10 minutes and never fires): checkpoint
//!   (which flushes the memtable), verification of every block's checksum, files read back
//!   with their CRC-32C, upload (each object synced to disk), commit to the node's
//!   coordinator. Bytes of the snapshot per wall second, each run and the median.
//! - `ROUNDS` incremental rounds: a tenth of the keys (a different tenth each round) get new
//!   values, flush, snapshot with the previous one as the base. For each round: the share of
//!   the snapshot's bytes reused from earlier snapshots (not uploaded again), the bytes
//!   uploaded, the time, and the table files. RocksDB reuses a table file only while it
//!   survives between checkpoints: a compaction rewrites the files it merges (level
//!   compaction starts at 4 level-0 files, and every checkpoint flushes one), so the rounds
//!   show the share with and without a compaction in between.
//!
//! Times are printed, never asserted. Every loop is bounded.
//!
//! Run: `cargo bench -p kvtablet-prod --bench kv_snapshot` (well under 2 minutes on 2 cores);
//! `-- --quick` or `KVTABLET_BENCH_QUICK=1` for a run of a few seconds (10 MB).

// prod may read wall time and own a tokio runtime; measuring them is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{put, wait_for_flush, BUCKET, MIB, VALUE_BYTES};

use kvtablet_core::snapshot::rpc_snapshot_committer::RpcSnapshotCommitter;
use kvtablet_core::snapshot::{
    take_snapshot, CompletedSnapshot, SnapshotCommitter, SnapshotUploadConfig,
};
use kvtablet_prod::node::{Node, NodeConfig, NodeHandle};
use kvtablet_prod::snapshot_coordinator::COORDINATOR_NODE_ID;

const FULL_KEYS: usize = 100_000;
const QUICK_KEYS: usize = 10_000;
/// Full snapshots of the loaded bucket (each uploads everything again); the median is reported.
const FULL_RUNS: usize = 3;
/// Incremental rounds, each changing a tenth of the keys.
const ROUNDS: usize = 5;

async fn snapshot(
    node: &Node,
    handle: &NodeHandle,
    committer: &Arc<dyn SnapshotCommitter>,
    previous: Option<&CompletedSnapshot>,
) -> (CompletedSnapshot, Duration) {
    let kv = handle.leader_kv(BUCKET).expect("the bucket is led");
    let started = Instant::now();
    let taken =
        take_snapshot(node.env(), &kv, committer, previous, &SnapshotUploadConfig::default())
            .await
            .expect("the snapshot is taken")
            .expect("something was flushed since the previous one");
    (taken, started.elapsed())
}

fn table_files(snapshot: &CompletedSnapshot) -> String {
    let mut names: Vec<String> = snapshot
        .shared_files
        .iter()
        .map(|file| format!("{} {:.1} MiB", file.local_name, file.size_bytes as f64 / MIB))
        .collect();
    names.sort();
    names.join(", ")
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var("KVTABLET_BENCH_QUICK").is_ok_and(|value| value != "0");
    let keys = if quick { QUICK_KEYS } else { FULL_KEYS };
    println!(
        "kv_snapshot{}: one bucket, {keys} keys of {VALUE_BYTES}-byte incompressible values, \
         RocksDB, remote store on the same disk, {} cores",
        if quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("snapshot-bench")
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let config = NodeConfig {
            buckets: vec![BUCKET],
            // The node's own loop stays out of the way; the bench takes the snapshots.
            snapshot_interval_ms: 10 * 60 * 1_000,
            ..NodeConfig::new(data_dir.path())
        };
        let mut node =
            Node::start(config, tokio::runtime::Handle::current()).await.expect("node starts");
        let handle = node.handle().expect("running");
        let committer: Arc<dyn SnapshotCommitter> = Arc::new(RpcSnapshotCommitter::new(
            node.env().rpc.clone(),
            COORDINATOR_NODE_ID,
            60_000,
        ));

        let loading = Instant::now();
        put(&node, 0..keys, 0).await;
        wait_for_flush(&handle).await;
        let load_time = loading.elapsed();
        let value_mib = (keys * VALUE_BYTES) as f64 / MIB;
        println!(
            "load: {value_mib:.0} MiB of values in {:.1} s ({:.1} MiB/s through PutKv, flushed)",
            load_time.as_secs_f64(),
            value_mib / load_time.as_secs_f64()
        );

        let mut rates = Vec::new();
        let mut last_full = None;
        for run in 1..=FULL_RUNS {
            // Something must be flushed since the base; without a base nothing is skipped.
            let (full, took) = snapshot(&node, &handle, &committer, None).await;
            let full_mib = full.size_bytes() as f64 / MIB;
            rates.push(full_mib / took.as_secs_f64());
            println!(
                "full snapshot {run}: {full_mib:.1} MiB in {} files, {:.2} s: {:.1} MiB/s \
                 (checkpoint + verify + read with CRC-32C + upload + commit)",
                full.files().count(),
                took.as_secs_f64(),
                full_mib / took.as_secs_f64()
            );
            println!("  table files: {}", table_files(&full));
            last_full = Some(full);
        }
        rates.sort_by(f64::total_cmp);
        println!("full snapshot median: {:.1} MiB/s", rates[rates.len() / 2]);
        let full = last_full.expect("at least one full snapshot");

        let mut previous = full;
        let mut uploaded_before: BTreeSet<String> =
            previous.files().map(|file| file.remote_path.clone()).collect();
        for round in 1..=ROUNDS {
            // Round r changes the keys congruent to r - 1 modulo 10: a different tenth each time.
            put(&node, (round - 1..keys).step_by(10), round).await;
            wait_for_flush(&handle).await;
            let (taken, took) = snapshot(&node, &handle, &committer, Some(&previous)).await;
            let total = taken.size_bytes();
            let reused: u64 = taken
                .files()
                .filter(|file| uploaded_before.contains(&file.remote_path))
                .map(|file| file.size_bytes)
                .sum();
            let uploaded = total - reused;
            println!(
                "incremental {round} (10% of keys changed): {:.1} MiB, {:.1}% reused, \
                 {:.1} MiB uploaded in {:.2} s ({:.1} MiB/s of uploaded bytes)",
                total as f64 / MIB,
                100.0 * reused as f64 / total.max(1) as f64,
                uploaded as f64 / MIB,
                took.as_secs_f64(),
                uploaded as f64 / MIB / took.as_secs_f64()
            );
            println!("  table files: {}", table_files(&taken));
            uploaded_before.extend(taken.files().map(|file| file.remote_path.clone()));
            previous = taken;
        }
        node.shutdown().await;
    });
}
