//! KV snapshot leases kept in remote storage too: a node whose lease directory
//! (`coordinator/kv-snapshot-leases`) is deleted while it is stopped comes back with its leases
//! from their remote copies (`remote/coordinator/kv-snapshot-leases/…`), and the snapshot a
//! lease pins outside the retention window is still kept, its files in the remote directory.
//! A release then lets the snapshot go and deletes the lease's remote copy.

// A test owns its runtime, reads wall time to bound its waits and reads files directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::path::{Path, PathBuf};

use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::snapshot::CompletedSnapshot;
use kvtablet_core::TableBucket;
use kvtablet_prod::node::{Node, NodeConfig, NodeHandle};
use kvtablet_prod::snapshot_coordinator::LEASE_DIR;
use support::{put_resending_on_backpressure, runtime, wait_for};

const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
const SNAPSHOT_INTERVAL_MS: u64 = 200;
const LEASE_ID: &str = "reader";
const LEASE_DURATION_MS: u64 = 60 * 60 * 1_000;

/// One retained snapshot, so that the leased one leaves the window at the next commit.
async fn start(dir: &Path, snapshot_interval_ms: u64) -> Node {
    let config = NodeConfig {
        buckets: vec![BUCKET],
        snapshot_interval_ms,
        snapshot_num_retained: 1,
        ..NodeConfig::new(dir)
    };
    Node::start(config, tokio::runtime::Handle::current()).await.expect("the node starts")
}

async fn put_rows(node: &Node, round: u32) {
    let writes: Vec<KvWrite> = (0..200)
        .map(|index| KvWrite {
            key: format!("key-{index:04}").into_bytes(),
            value: Some([&[1u8, 0][..], format!("round {round} row {index}").as_bytes()].concat()),
        })
        .collect();
    put_resending_on_backpressure(node, BUCKET, writes).await;
}

/// Writes a round of rows and waits for the snapshot that holds them.
async fn snapshot_after_a_round(node: &Node, handle: &NodeHandle, round: u32) -> CompletedSnapshot {
    put_rows(node, round).await;
    let end = wait_for("the flush", || {
        let kv = handle.leader_kv(BUCKET)?;
        let end = kv.log().log_end_offset();
        (kv.flushed_log_offset() == end).then_some(end)
    })
    .await;
    let store = node.snapshot_store().clone();
    wait_for("the snapshot", || store.latest(BUCKET).filter(|s| s.log_offset == end)).await
}

fn remote_lease_copies(data_dir: &Path) -> Vec<PathBuf> {
    let root = data_dir.join("remote").join(LEASE_DIR);
    let mut copies = Vec::new();
    for lease_dir in std::fs::read_dir(&root).into_iter().flatten() {
        let lease_dir = lease_dir.expect("entry").path();
        for copy in std::fs::read_dir(&lease_dir).into_iter().flatten() {
            copies.push(copy.expect("entry").path());
        }
    }
    copies.sort();
    copies
}

fn all_files_in_remote(data_dir: &Path, snapshot: &CompletedSnapshot) -> bool {
    snapshot.files().all(|file| data_dir.join("remote").join(&file.remote_path).is_file())
}

#[test]
fn a_node_whose_lease_directory_was_deleted_gets_its_leases_back_from_remote_storage() {
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        let mut node = start(dir.path(), SNAPSHOT_INTERVAL_MS).await;
        let handle = node.handle().expect("running");
        let leased = snapshot_after_a_round(&node, &handle, 0).await;
        let acquire = Request::AcquireKvSnapshotLease {
            lease_id: LEASE_ID.to_string(),
            duration_ms: LEASE_DURATION_MS,
            snapshots: vec![(BUCKET, leased.snapshot_id)],
        };
        match handle.coordinator_request(acquire).await.expect("answered") {
            Response::KvSnapshotLeaseAcquired { unavailable } => assert!(unavailable.is_empty()),
            other => panic!("acquire refused: {other:?}"),
        }
        assert_eq!(remote_lease_copies(dir.path()).len(), 1, "the lease's remote copy");
        // A newer snapshot: the leased one leaves the window of one, and is kept for the lease.
        let newer = snapshot_after_a_round(&node, &handle, 1).await;
        assert!(newer.snapshot_id > leased.snapshot_id);
        let kept_ids = |node: &Node| -> Vec<u64> {
            node.snapshot_store().kept(BUCKET).iter().map(|s| s.snapshot_id).collect()
        };
        assert!(kept_ids(&node).contains(&leased.snapshot_id));
        let leases_before = node.snapshot_store().leases().expect("leases").leases();
        // A lease is a grant, not work: the shutdown does not wait for it to end.
        assert_eq!(node.shutdown().await, Vec::<String>::new(), "no work left running");

        std::fs::remove_dir_all(dir.path().join(LEASE_DIR)).expect("the lease directory goes");

        let mut node = start(dir.path(), 10 * 60 * 1_000).await;
        let handle = node.handle().expect("running");
        let leases_after = node.snapshot_store().leases().expect("leases").leases();
        assert_eq!(leases_after, leases_before, "the leases came back from remote storage");
        assert!(dir.path().join(LEASE_DIR).join(format!("{}.lease", hex(LEASE_ID))).is_file());
        assert!(kept_ids(&node).contains(&leased.snapshot_id), "the leased snapshot is kept");
        assert!(all_files_in_remote(dir.path(), &leased), "and its files are all there");
        assert_eq!(remote_lease_copies(dir.path()).len(), 1);

        let release = Request::ReleaseKvSnapshotLease {
            lease_id: LEASE_ID.to_string(),
            buckets: vec![BUCKET],
        };
        assert_eq!(handle.coordinator_request(release).await.expect("answered"), Response::Ok);
        assert!(!kept_ids(&node).contains(&leased.snapshot_id), "released, it goes");
        assert_eq!(remote_lease_copies(dir.path()), Vec::<PathBuf>::new(), "and so does its copy");
        node.shutdown().await;
    });
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}
