//! Local disk used with and without changelog tiering after writing the same data: one bucket
//! of a node on a temporary data directory (remote store: `data_dir/remote`, the embedded
//! default), `keys` rows of incompressible 1,000-byte values written once and then updated
//! `UPDATE_ROUNDS` times (each update logs `-U` and `+U`), with 1 MiB segments, a KV snapshot
//! every second and, in the tiered run, a tiering tick every 500 ms keeping the default two
//! closed segments locally. After the writes it waits (bounded) until a snapshot covers the
//! log end and, with tiering, local retention has run, then prints the bytes of the local
//! changelog, of the whole local data directory (KV included, remote excluded) and of the
//! remote tier.
//!
//! Sizes are printed, never asserted. Every loop is bounded.
//!
//! Run: `cargo bench -p kvtablet-prod --bench tiering_disk` (about a minute on 2 cores);
//! `-- --quick` or `KVTABLET_BENCH_QUICK=1` for a run of a few seconds.

// prod may read wall time and own a tokio runtime; measuring them is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::path::Path;
use std::time::Instant;

use kvtablet_prod::node::{Node, NodeConfig};
use support::{put, wait_for_flush, BUCKET, MIB, POLL_INTERVAL, VALUE_BYTES, WAIT_MAX};

const FULL_KEYS: usize = 10_000;
const QUICK_KEYS: usize = 1_000;
const UPDATE_ROUNDS: usize = 4;
const SEGMENT_BYTES: u64 = 1024 * 1024;

/// Bytes of the files under `dir` that `counted` accepts, skipping the subdirectory `skip` of
/// `dir` (if any).
fn tree_bytes(dir: &Path, skip: Option<&Path>, counted: impl Fn(&Path) -> bool) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(metadata) = entry.metadata() else { continue };
            if metadata.is_dir() {
                if Some(path.as_path()) != skip {
                    pending.push(path);
                }
            } else if counted(&path) {
                total += metadata.len();
            }
        }
    }
    total
}

/// Every file.
fn any_file(_: &Path) -> bool {
    true
}

/// A file of a bucket's changelog directory (Fluss's layout:
/// `{data}/{database}/{table}-{table_id}/log-{bucket}`).
fn in_changelog_dir(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir.to_string_lossy().starts_with("log-"))
}

struct Usage {
    changelog_local: u64,
    data_dir_local: u64,
    changelog_remote: u64,
    write_seconds: f64,
}

async fn run(keys: usize, tiering: bool) -> Usage {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let config = NodeConfig {
        buckets: vec![BUCKET],
        snapshot_interval_ms: 1_000,
        segment_bytes_max: SEGMENT_BYTES,
        // Without tiering the tick never comes within the run.
        tiering_interval_ms: if tiering { 500 } else { 24 * 3_600_000 },
        ..NodeConfig::new(data_dir.path())
    };
    let mut node =
        Node::start(config, tokio::runtime::Handle::current()).await.expect("node starts");
    let handle = node.handle().expect("running");
    let writing = Instant::now();
    for round in 0..=UPDATE_ROUNDS {
        put(&node, 0..keys, round).await;
    }
    wait_for_flush(&handle).await;
    let write_seconds = writing.elapsed().as_secs_f64();
    let log = handle.leader_kv(BUCKET).expect("the bucket is led").log().clone();
    let end = log.log_end_offset();
    let store = node.snapshot_store().clone();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let covered = store.latest(BUCKET).is_some_and(|snapshot| snapshot.log_offset == end);
        // Tiered: the closed segments are all uploaded and all but the kept ones deleted.
        let settled = !tiering || (log.segment_count() <= 3 && log.log_start_offset() > 0);
        if covered && settled {
            break;
        }
        assert!(Instant::now() < deadline, "retention did not settle");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let remote = data_dir.path().join("remote");
    let usage = Usage {
        changelog_local: tree_bytes(data_dir.path(), Some(&remote), in_changelog_dir),
        data_dir_local: tree_bytes(data_dir.path(), Some(&remote), any_file),
        changelog_remote: tree_bytes(&remote.join("log"), None, any_file),
        write_seconds,
    };
    node.shutdown().await;
    usage
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var("KVTABLET_BENCH_QUICK").is_ok_and(|value| value != "0");
    let keys = if quick { QUICK_KEYS } else { FULL_KEYS };
    let written_mib = (keys * VALUE_BYTES * (1 + UPDATE_ROUNDS)) as f64 / MIB;
    println!(
        "tiering_disk{}: one bucket, {keys} keys of {VALUE_BYTES}-byte values written, then \
         updated {UPDATE_ROUNDS} times ({written_mib:.0} MiB of values put), 1 MiB segments",
        if quick { " (quick)" } else { "" },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tiering-bench")
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut local = Vec::new();
        for tiering in [false, true] {
            let usage = run(keys, tiering).await;
            println!(
                "{}: local changelog {:.1} MiB, local data directory {:.1} MiB (KV included), \
                 remote changelog {:.1} MiB; written in {:.1} s",
                if tiering { "with tiering   " } else { "without tiering" },
                usage.changelog_local as f64 / MIB,
                usage.data_dir_local as f64 / MIB,
                usage.changelog_remote as f64 / MIB,
                usage.write_seconds,
            );
            local.push(usage.data_dir_local);
        }
        println!(
            "local data directory with tiering: {:.1}% of without",
            100.0 * local[1] as f64 / local[0].max(1) as f64
        );
    });
}
