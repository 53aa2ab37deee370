//! The official Rust client, `fluss-rs` 1.0.0, reads a changelog whose early segments exist
//! only in the remote tier: the node answers FetchLog below its local log start with the
//! segments' remote location and the client downloads them itself (from the local remote data
//! directory, with the empty token GetFileSystemSecurityToken answers), as from a Fluss server.
//! The node writes each segment's copy in the clients' format the first time it sends a client
//! to it, so the copies' presence shows that the client went to the remote tier.

// Like prod, the test runs on the real clock; it reads wall time only to bound its wait, and
// the node's files to see local retention.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use fluss::client::EARLIEST_OFFSET;
use fluss::row::{DataGetters, GenericRow};

use support::{assert_offsets_dense, bounded, create_id_name_table, read_changelog, Node};

const BUCKETS: i32 = 2;
const ROWS: i32 = 50;
const ROUNDS: i32 = 12;
const RETENTION_WAIT_MAX: Duration = Duration::from_secs(60);

/// The first offset each bucket's local changelog still holds (its first segment's name).
fn local_log_starts(data_dir: &Path) -> Vec<u64> {
    let mut starts = Vec::new();
    for table in std::fs::read_dir(data_dir.join("tier")).into_iter().flatten().flatten() {
        for bucket in std::fs::read_dir(table.path()).into_iter().flatten().flatten() {
            if !bucket.file_name().to_string_lossy().starts_with("log-") {
                continue;
            }
            let first = std::fs::read_dir(bucket.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|file| {
                    file.file_name().to_str()?.strip_suffix(".log")?.parse::<u64>().ok()
                })
                .min();
            starts.extend(first);
        }
    }
    starts
}

/// The clients' copies of tiered segments in the remote data directory.
fn client_copies(data_dir: &Path) -> usize {
    let log_root = data_dir.join("remote").join("log");
    std::fs::read_dir(log_root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|bucket| std::fs::read_dir(bucket.path()).into_iter().flatten().flatten())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".copy"))
        .count()
}

#[test]
fn fluss_rs_reads_the_tiered_changelog_from_the_remote_tier_itself() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let node = Node::start_with(
        &data_dir,
        &[
            "log.segment.file-size=2 kb",
            "remote.log.task-interval-duration=100 ms",
            "kv.snapshot.interval=100 ms",
            "table.log.tiered.local-segments=1",
            "kv.rocksdb.writebuffer.size=4 mb",
        ],
    );
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let admin = connection.get_admin().expect("admin");
        let path = create_id_name_table(&admin, "tier", BUCKETS).await;
        let table = bounded("get_table", connection.get_table(&path)).await;
        let writer =
            table.new_upsert().expect("new_upsert").create_writer().expect("create_writer");
        for round in 0..ROUNDS {
            for id in 0..ROWS {
                let mut row = GenericRow::new(2);
                row.set_field(0, id);
                row.set_field(1, format!("round {round} row {id} {}", "x".repeat(60)));
                writer.upsert(&row).expect("upsert queued");
            }
            bounded("flush", writer.flush()).await;
        }
        let deadline = Instant::now() + RETENTION_WAIT_MAX;
        loop {
            let starts = local_log_starts(&data_dir);
            if starts.len() == BUCKETS as usize && starts.iter().all(|start| *start > 0) {
                break;
            }
            assert!(Instant::now() < deadline, "local retention did not run: {starts:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(client_copies(&data_dir), 0, "no client has read the remote tier yet");

        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        for bucket in 0..BUCKETS {
            bounded("subscribe", scanner.subscribe(bucket, EARLIEST_OFFSET)).await;
        }
        // +I for each row's first version, then -U and +U for each later one.
        let expected = (ROWS + (ROUNDS - 1) * 2 * ROWS) as usize;
        let changes = read_changelog(&scanner, expected, |row| row.get_int(0).expect("id")).await;
        assert_offsets_dense(&changes);
        assert!(client_copies(&data_dir) > 0, "the client read tiered segments remotely");
    });
}
