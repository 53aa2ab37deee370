//! KV snapshots in the production node: a bucket's leader snapshots RocksDB into the remote
//! data directory (`data_dir/remote`) and commits to the node's own coordinator. A committed
//! snapshot, downloaded and opened by a fresh engine, holds exactly the rows written below its
//! `log_offset`; the next one reuses the previous one's unchanged table files; the store and
//! the remote directory survive a restart with no orphan left; the changelog's minimum retain
//! offset follows the latest snapshot.

// A test owns its runtime, reads wall time to bound its waits and reads files directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kvtablet_core::engine::{KeyRange, KvEngineFactory};
use kvtablet_core::error::ErrorCode;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::snapshot::completed_snapshot::{snapshot_dir, METADATA_FILE_NAME};
use kvtablet_core::snapshot::CompletedSnapshot;
use kvtablet_core::TableBucket;
use kvtablet_prod::node::{Node, NodeConfig, NodeHandle};
use kvtablet_prod::rocks_engine::RocksEngineFactory;
use kvtablet_prod::snapshot_coordinator::COORDINATOR_NODE_ID;
use support::{put_resending_on_backpressure, runtime, wait_for};

const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
const SNAPSHOT_INTERVAL_MS: u64 = 200;
const ROWS: usize = 5_000;
const VALUE_BYTES: usize = 200;
const WRITES_PER_PUT: usize = 500;
/// Schema id 1, little-endian, as every stored value starts.
const SCHEMA_PREFIX: [u8; 2] = [1, 0];

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

async fn start(dir: &Path, snapshot_interval_ms: u64) -> Node {
    let config = NodeConfig { buckets: vec![BUCKET], snapshot_interval_ms, ..NodeConfig::new(dir) };
    Node::start(config, tokio::runtime::Handle::current()).await.expect("the node starts")
}

fn key(index: usize) -> Vec<u8> {
    format!("key-{index:06}").into_bytes()
}

/// A value that differs per key and per `round`, so a restored stale value shows.
fn value(index: usize, round: u32) -> Vec<u8> {
    let mut value = SCHEMA_PREFIX.to_vec();
    let text = format!("round {round} row {index} ");
    value.extend(text.bytes().cycle().take(VALUE_BYTES));
    value
}

/// Writes `rows` in batches, resending a batch refused with backpressure; adds them to `model`.
async fn put_rows(node: &Node, rows: Vec<(Vec<u8>, Vec<u8>)>, model: &mut Rows) {
    for batch in rows.chunks(WRITES_PER_PUT) {
        let writes: Vec<KvWrite> = batch
            .iter()
            .map(|(key, value)| KvWrite { key: key.clone(), value: Some(value.clone()) })
            .collect();
        put_resending_on_backpressure(node, BUCKET, writes).await;
        model.extend(batch.iter().cloned());
    }
}

/// Waits until everything written is flushed into the engine; returns the log end offset.
async fn wait_for_flush(handle: &NodeHandle) -> u64 {
    wait_for("the flush", || {
        let kv = handle.leader_kv(BUCKET)?;
        let end = kv.log().log_end_offset();
        (kv.flushed_log_offset() == end).then_some(end)
    })
    .await
}

/// Waits for a committed snapshot of [`BUCKET`] whose `log_offset` is `log_offset`.
async fn wait_for_snapshot_at(node: &Node, log_offset: u64) -> CompletedSnapshot {
    let store = node.snapshot_store().clone();
    wait_for(&format!("a snapshot at log offset {log_offset}"), || {
        store.latest(BUCKET).filter(|snapshot| snapshot.log_offset == log_offset)
    })
    .await
}

fn remote_root(dir: &Path) -> std::path::PathBuf {
    dir.join("remote")
}

/// Every file of `snapshot` read from the remote directory (size and CRC-32C checked) into
/// `scratch/checkpoint`, opened there by a fresh RocksDB factory; the engine's rows and its
/// flushed offset.
fn restore(data_dir: &Path, snapshot: &CompletedSnapshot, scratch: &Path) -> (Rows, Option<u64>) {
    let checkpoint = scratch.join("checkpoint");
    std::fs::create_dir_all(&checkpoint).expect("scratch dir");
    for file in snapshot.files() {
        let bytes = std::fs::read(remote_root(data_dir).join(&file.remote_path))
            .unwrap_or_else(|error| panic!("{} is missing: {error}", file.remote_path));
        assert_eq!(bytes.len() as u64, file.size_bytes, "{}", file.remote_path);
        assert_eq!(crc32c::crc32c(&bytes), file.crc32c, "{}", file.remote_path);
        assert_eq!(
            kvtablet_core::snapshot::completed_snapshot::content_sha256(&bytes),
            file.sha256,
            "{}",
            file.remote_path
        );
        std::fs::write(checkpoint.join(&file.local_name), bytes).expect("write");
    }
    let factory = RocksEngineFactory::new(scratch.to_path_buf());
    let engine = factory.open_checkpoint("checkpoint", "restored").expect("the snapshot opens");
    let flushed = engine.flushed_log_offset().expect("offset");
    let mut iterator =
        engine.snapshot().expect("engine snapshot").iter(KeyRange::all()).expect("iterator");
    iterator.seek_to_first();
    let mut rows = Rows::new();
    while iterator.valid() {
        rows.insert(iterator.key().to_vec(), iterator.value().to_vec());
        iterator.next();
    }
    iterator.status().expect("the restored engine reads");
    (rows, flushed)
}

/// Every remote path a kept snapshot needs, its metadata file included.
fn needed_paths(snapshots: &[CompletedSnapshot]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for snapshot in snapshots {
        paths.extend(snapshot.files().map(|file| file.remote_path.clone()));
        paths.insert(format!(
            "{}/{METADATA_FILE_NAME}",
            snapshot_dir(snapshot.bucket, snapshot.snapshot_id)
        ));
    }
    paths
}

/// Every file under `root/kv`, as remote paths.
fn remote_kv_paths(data_dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                out.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = remote_root(data_dir);
    let mut paths = BTreeSet::new();
    walk(&root, &root.join("kv"), &mut paths);
    paths
}

fn plant(data_dir: &Path, remote_path: &str) {
    let path = remote_root(data_dir).join(remote_path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, b"orphan").expect("write");
}

#[test]
fn snapshots_restore_the_rows_reuse_files_and_survive_a_restart_without_orphans() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("scratch dir");
    runtime().block_on(async {
        let mut node = start(dir.path(), SNAPSHOT_INTERVAL_MS).await;
        let handle = node.handle().expect("running");
        let mut model = Rows::new();

        put_rows(&node, (0..ROWS).map(|index| (key(index), value(index, 0))).collect(), &mut model)
            .await;
        let end = wait_for_flush(&handle).await;
        let first = wait_for_snapshot_at(&node, end).await;
        let (restored, flushed) = restore(dir.path(), &first, &scratch.path().join("first"));
        assert_eq!(flushed, Some(first.log_offset));
        assert_eq!(restored.len(), ROWS);
        assert!(restored == model, "the first snapshot differs from the rows written");
        assert!(!first.shared_files.is_empty(), "RocksDB's table files are shared");

        // A tenth of the keys change.
        let changed = (0..ROWS).step_by(10).map(|index| (key(index), value(index, 1))).collect();
        put_rows(&node, changed, &mut model).await;
        let end = wait_for_flush(&handle).await;
        let second = wait_for_snapshot_at(&node, end).await;
        let (restored, flushed) = restore(dir.path(), &second, &scratch.path().join("second"));
        assert_eq!(flushed, Some(second.log_offset));
        assert!(restored == model, "the second snapshot differs from the rows written");
        let first_paths: BTreeSet<&str> =
            first.shared_files.iter().map(|file| file.remote_path.as_str()).collect();
        let reused: Vec<&str> = second
            .shared_files
            .iter()
            .map(|file| file.remote_path.as_str())
            .filter(|path| first_paths.contains(path))
            .collect();
        assert!(!reused.is_empty(), "the second snapshot reuses none of the first's files");

        // Objects no kept snapshot needs: an upload of an id never committed, and a bucket the
        // store has no record of.
        let bucket_dir = BUCKET.dir_name();
        plant(dir.path(), &format!("kv/{bucket_dir}/snap-999999/000001.sst"));
        plant(dir.path(), &format!("kv/{bucket_dir}/shared/s999999-000002.sst"));
        plant(
            dir.path(),
            &format!("kv/{}/shared/s1-000003.sst", TableBucket::new(77, 3).dir_name()),
        );
        let kept = node.snapshot_store().kept(BUCKET);
        let latest = node.snapshot_store().latest(BUCKET).expect("a latest snapshot");
        node.shutdown().await;

        // Restarted with a long interval, so that no new snapshot changes what is checked.
        let mut node = start(dir.path(), 10 * 60 * 1_000).await;
        assert_eq!(node.snapshot_store().latest(BUCKET), Some(latest.clone()));
        assert_eq!(node.snapshot_store().kept(BUCKET), kept);
        assert_eq!(remote_kv_paths(dir.path()), needed_paths(&kept), "orphans or missing files");
        let (restored, _) = restore(dir.path(), &latest, &scratch.path().join("after-restart"));
        assert!(restored == model, "the latest snapshot changed across the restart");
        node.shutdown().await;
    });
}

#[test]
fn the_minimum_retain_offset_follows_the_latest_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        let mut node = start(dir.path(), SNAPSHOT_INTERVAL_MS).await;
        let handle = node.handle().expect("running");
        let log = handle.changelog(BUCKET).expect("the bucket's changelog");
        let mut model = Rows::new();
        for round in 0..3u32 {
            let rows = (0..1_000).map(|index| (key(index), value(index, round))).collect();
            put_rows(&node, rows, &mut model).await;
            let end = wait_for_flush(&handle).await;
            let latest = wait_for_snapshot_at(&node, end).await;
            // Raised only after the commit was answered: wait for it, bounded.
            wait_for("the retain offset", || {
                let retained = log.min_retain_offset();
                assert!(retained <= latest.log_offset, "retained {retained} past the snapshot");
                (retained == latest.log_offset).then_some(())
            })
            .await;
            assert_eq!(log.min_retain_offset(), end, "round {round}");
        }
        node.shutdown().await;
    });
}

#[test]
fn the_coordinator_answers_snapshot_requests_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        let mut node = start(dir.path(), 10 * 60 * 1_000).await;
        let rpc = node.env().rpc.clone();
        let answer = rpc.call(COORDINATOR_NODE_ID, Request::Metadata, 10_000).await.expect("answered");
        assert!(matches!(answer, Response::Error(ref error) if error.code == ErrorCode::UnsupportedVersion), "{answer:?}");
        let answer = rpc
            .call(COORDINATOR_NODE_ID, Request::AllocateKvSnapshotId { bucket: BUCKET }, 10_000)
            .await
            .expect("answered");
        assert!(matches!(answer, Response::KvSnapshotId { .. }), "{answer:?}");
        node.shutdown().await;
        let after = rpc.call(COORDINATOR_NODE_ID, Request::Metadata, 10_000).await;
        assert!(after.is_err(), "the coordinator is unregistered with the node: {after:?}");
    });
}
