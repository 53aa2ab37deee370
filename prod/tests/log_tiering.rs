//! Changelog tiering in the production node: closed segments are uploaded to the remote data
//! directory (`data_dir/remote/log/...`) and recorded in the node's remote-log manifests, local
//! segments then go once a KV snapshot covers them, the local log stays bounded while the
//! remote tier holds the history, and FetchLog from offset 0 still reads the whole changelog,
//! also after a restart. ListOffsets earliest stays 0.

// A test owns its runtime, reads wall time to bound its waits and reads files directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::time::{Duration, Instant};

mod support;
use support::{put_resending_on_backpressure, runtime, wait_for, POLL_INTERVAL, WAIT_MAX};

use kvtablet_core::error::ErrorCode;
use kvtablet_core::log::{LocalRetention, LogBatch};
use kvtablet_core::message::{KvWrite, OffsetSpec, Request, Response};
use kvtablet_core::tablet_dirs::{self, BucketDirs};
use kvtablet_core::TableBucket;
use kvtablet_prod::node::{unnamed_table_path, Node, NodeConfig};

const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
const SEGMENT_BYTES: u64 = 8 * 1024;
const PUTS: usize = 300;
const WRITES_PER_PUT: usize = 4;
const VALUE_BYTES: usize = 100;
const FETCH_BYTES_MAX: u64 = 64 * 1024;
/// Rounds of fetches from 0 at most (each returns at least one batch).
const FETCHES_MAX: usize = 10_000;

fn config(dir: &Path, tiering: bool) -> NodeConfig {
    config_retaining(dir, tiering, LocalRetention { segments_kept: 1, ..LocalRetention::default() })
}

fn config_retaining(dir: &Path, tiering: bool, local_retention: LocalRetention) -> NodeConfig {
    NodeConfig {
        buckets: vec![BUCKET],
        snapshot_interval_ms: 100,
        segment_bytes_max: SEGMENT_BYTES,
        // Without tiering the tick never comes within the test.
        tiering_interval_ms: if tiering { 100 } else { 24 * 3_600_000 },
        local_retention,
        ..NodeConfig::new(dir)
    }
}

async fn start(dir: &Path, tiering: bool) -> Node {
    Node::start(config(dir, tiering), tokio::runtime::Handle::current())
        .await
        .expect("the node starts")
}

fn value(index: usize) -> Vec<u8> {
    let mut value = vec![1, 0];
    value.extend(format!("row {index} ").bytes().cycle().take(VALUE_BYTES));
    value
}

/// Writes `PUTS` batches; returns the log end offset.
async fn write(node: &Node) -> u64 {
    let mut end = 0;
    for put in 0..PUTS {
        let writes = (0..WRITES_PER_PUT)
            .map(|i| {
                let index = put * WRITES_PER_PUT + i;
                KvWrite { key: format!("key-{index:06}").into_bytes(), value: Some(value(index)) }
            })
            .collect();
        end = put_resending_on_backpressure(node, BUCKET, writes).await;
    }
    end
}

/// Every batch from offset 0 to `end`, by FetchLog, in order and without a gap.
async fn fetch_all(node: &Node, end: u64) -> Vec<LogBatch> {
    let mut batches: Vec<LogBatch> = Vec::new();
    let mut offset = 0;
    for _ in 0..FETCHES_MAX {
        if offset >= end {
            return batches;
        }
        let request =
            Request::FetchLog { bucket: BUCKET, from_offset: offset, max_bytes: FETCH_BYTES_MAX };
        match node.request(request).await.expect("answered") {
            Response::FetchLog { batches: fetched, log_start_offset, .. } => {
                assert_eq!(log_start_offset, 0, "the remote tier starts the changelog at 0");
                assert!(!fetched.is_empty(), "a fetch at {offset} below {end} returned nothing");
                for batch in fetched {
                    if batch.end_offset() <= offset {
                        continue;
                    }
                    assert_eq!(batch.base_offset, offset, "the changelog has no gap");
                    offset = batch.end_offset();
                    batches.push(batch);
                }
            }
            Response::Error(error) if error.code == ErrorCode::LeaderNotAvailable => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            other => panic!("fetch at {offset} refused: {other:?}"),
        }
    }
    panic!("fetching the changelog did not end");
}

/// The bucket's local directories (Fluss's layout, under the data directory).
fn bucket_dirs() -> BucketDirs {
    let path = unnamed_table_path(BUCKET.table_id);
    tablet_dirs::bucket_dirs(&path, BUCKET.table_id, None, BUCKET.bucket_id)
}

fn local_log_bytes(dir: &Path) -> u64 {
    let log_dir = dir.join(bucket_dirs().log_dir);
    std::fs::read_dir(&log_dir)
        .expect("the log directory")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

fn remote_segment_count(dir: &Path) -> usize {
    let remote_dir = dir.join("remote").join("log").join(BUCKET.dir_name());
    std::fs::read_dir(&remote_dir).map_or(0, |entries| entries.count())
}

#[test]
fn tiered_changelog_keeps_local_disk_bounded_and_is_read_whole_from_offset_zero() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let node = start(dir.path(), true).await;
        let end = write(&node).await;
        let handle = node.handle().expect("running");
        // The local log keeps the active segment and one closed one; the rest is tiered.
        wait_for("local retention", || {
            let log = handle.leader_kv(BUCKET)?.log().clone();
            (log.segment_count() <= 3 && log.log_start_offset() > 0).then_some(())
        })
        .await;
        let log = handle.leader_kv(BUCKET).expect("leads").log().clone();
        assert!(log.remote_end_offset() >= log.log_start_offset());
        assert!(remote_segment_count(dir.path()) > 0, "segments are in the remote directory");
        assert!(local_log_bytes(dir.path()) <= 4 * SEGMENT_BYTES + 1024);
        let earliest = node
            .request(Request::ListOffsets { bucket: BUCKET, spec: OffsetSpec::Earliest })
            .await
            .expect("answered");
        assert_eq!(earliest, Response::Offset { offset: 0 });
        let before_restart = fetch_all(&node, end).await;
        let records: usize = before_restart.iter().map(|batch| batch.records.len()).sum();
        assert_eq!(records, PUTS * WRITES_PER_PUT, "every record from offset 0");
        let mut node = node;
        node.shutdown().await;

        // After a restart the node reads the remote tier from its manifests again.
        let restarted = start(dir.path(), true).await;
        let after_restart = fetch_all(&restarted, end).await;
        assert_eq!(after_restart, before_restart);
        let mut restarted = restarted;
        restarted.shutdown().await;
    });
}

/// The age and size bounds delete tiered segments that the segment count alone would keep.
#[test]
fn age_and_size_bounds_delete_tiered_segments_the_count_keeps() {
    let runtime = runtime();
    let by_age = LocalRetention { segments_kept: 1_000, age_ms_max: Some(1), size_bytes_max: None };
    let by_size = LocalRetention {
        segments_kept: 1_000,
        age_ms_max: None,
        size_bytes_max: Some(3 * SEGMENT_BYTES),
    };
    // By age every closed segment goes once tiered and covered by a snapshot: the active
    // one is left. By size the local log shrinks to the bound, plus at most one segment.
    for (retention, local_bytes_max) in [(by_age, 2 * SEGMENT_BYTES), (by_size, 4 * SEGMENT_BYTES)]
    {
        let dir = tempfile::tempdir().expect("temp dir");
        runtime.block_on(async {
            let node = Node::start(
                config_retaining(dir.path(), true, retention),
                tokio::runtime::Handle::current(),
            )
            .await
            .expect("node starts");
            let end = write(&node).await;
            let handle = node.handle().expect("running");
            wait_for("local retention", || {
                let log = handle.leader_kv(BUCKET)?.log().clone();
                (log.log_start_offset() > 0 && local_log_bytes(dir.path()) <= local_bytes_max)
                    .then_some(())
            })
            .await;
            let records: usize =
                fetch_all(&node, end).await.iter().map(|batch| batch.records.len()).sum();
            assert_eq!(records, PUTS * WRITES_PER_PUT, "{retention:?}: every record from 0");
            let mut node = node;
            node.shutdown().await;
        });
    }
}

/// Every key's value by Lookup, waiting while the bucket is not ready (restoring).
async fn lookup_all(node: &Node) -> Vec<Option<Vec<u8>>> {
    let keys: Vec<Vec<u8>> =
        (0..PUTS * WRITES_PER_PUT).map(|index| format!("key-{index:06}").into_bytes()).collect();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let request = Request::Lookup { bucket: BUCKET, keys: keys.clone() };
        match node.request(request).await.expect("answered") {
            Response::Lookup { values, .. } => return values,
            Response::Error(error) if error.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            other => panic!("lookup refused: {other:?}"),
        }
    }
}

/// A node whose KV directories are deleted while it is down, after local retention removed
/// the early changelog segments, restores each engine from the latest KV snapshot and
/// rebuilds it from the local log: every value is back, and the changelog reads whole.
#[test]
fn a_lost_engine_is_restored_from_the_latest_snapshot_after_local_retention() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let node = start(dir.path(), true).await;
        let end = write(&node).await;
        {
            // Dropped before the shutdown: a handle keeps the node's engines open.
            let handle = node.handle().expect("running");
            let store = node.snapshot_store().clone();
            wait_for("retention and a snapshot at the end", || {
                let log = handle.leader_kv(BUCKET)?.log().clone();
                let covered = store.latest(BUCKET).is_some_and(|s| s.log_offset == end);
                (covered && log.log_start_offset() > 0).then_some(())
            })
            .await;
        }
        let values_before = lookup_all(&node).await;
        assert!(values_before.iter().all(Option::is_some), "every key was written");
        let changelog_before = fetch_all(&node, end).await;
        let mut node = node;
        node.shutdown().await;
        assert_eq!(node.env().ledger.live(), Vec::new(), "a shutdown leaves no task running");

        let kv_dir = dir.path().join(bucket_dirs().kv_dir);
        std::fs::remove_dir_all(kv_dir).expect("the KV directory is deleted");
        let restarted = start(dir.path(), true).await;
        assert_eq!(lookup_all(&restarted).await, values_before, "every value is restored");
        assert_eq!(fetch_all(&restarted, end).await, changelog_before);
        let handle = restarted.handle().expect("running");
        let kv = handle.leader_kv(BUCKET).expect("leads again");
        assert!(kv.log().log_start_offset() > 0, "the early segments are still only remote");
        let mut restarted = restarted;
        restarted.shutdown().await;
    });
}

#[test]
fn without_tiering_no_local_segment_is_deleted() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let node = start(dir.path(), false).await;
        let end = write(&node).await;
        // Snapshots commit (so the minimum retain offset rises), but nothing is tiered.
        let store = node.snapshot_store().clone();
        wait_for("a snapshot", || store.latest(BUCKET).filter(|s| s.log_offset == end)).await;
        let handle = node.handle().expect("running");
        let log = handle.leader_kv(BUCKET).expect("leads").log().clone();
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(remote_segment_count(dir.path()), 0);
        let with_history = local_log_bytes(dir.path());
        assert!(with_history > 8 * SEGMENT_BYTES, "{with_history} bytes of local log");
        let mut node = node;
        node.shutdown().await;
    });
}

/// Remote log retention (`table.log.ttl`, here 300 ms): the remote tier's expired segments go
/// from the manifest and then from the remote directory, only below the oldest kept KV
/// snapshot's log offset, so that ListOffsets earliest moves up, FetchLog reads the changelog
/// whole from there, and an engine lost afterwards is still restored from a snapshot with
/// every value.
#[test]
fn remote_retention_deletes_expired_segments_below_the_oldest_kept_snapshot_only() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || NodeConfig { remote_log_ttl_ms: Some(300), ..config(dir.path(), true) };
    runtime.block_on(async {
        let node = Node::start(config(), tokio::runtime::Handle::current()).await.expect("starts");
        let end = write(&node).await;
        let start_offset = {
            let handle = node.handle().expect("running");
            let remote_logs = handle.remote_logs().expect("tiering").clone();
            let store = node.snapshot_store().clone();
            let bucket_dir = dir.path().join("remote").join("log").join(BUCKET.dir_name());
            // Retention ran, and the deletions it allowed are done: the remote directory holds
            // exactly the manifest's segments.
            wait_for("remote retention and its deletions", || {
                let manifest = remote_logs.manifest(BUCKET);
                let covered = store.latest(BUCKET).is_some_and(|s| s.log_offset == end);
                let listed: std::collections::BTreeSet<String> = std::fs::read_dir(&bucket_dir)
                    .ok()?
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .map(|name| format!("{}/{name}", kvtablet_core::tiering::remote_log_dir(BUCKET)))
                    .collect();
                let recorded: std::collections::BTreeSet<String> =
                    manifest.segments.iter().map(|segment| segment.path()).collect();
                (covered && manifest.start_offset > 0 && listed == recorded)
                    .then_some(manifest.start_offset)
            })
            .await
        };
        let oldest_kept = node.snapshot_store().kept(BUCKET).iter().map(|s| s.log_offset).min();
        assert!(
            oldest_kept.is_some_and(|oldest| start_offset <= oldest),
            "the remote start {start_offset} is at or below the oldest kept snapshot {oldest_kept:?}"
        );
        let earliest = node
            .request(Request::ListOffsets { bucket: BUCKET, spec: OffsetSpec::Earliest })
            .await
            .expect("answered");
        let Response::Offset { offset: earliest } = earliest else { panic!("{earliest:?}") };
        assert!(earliest > 0, "ListOffsets earliest moved up with the remote start");
        let below = node
            .request(Request::FetchLog { bucket: BUCKET, from_offset: 0, max_bytes: 1024 })
            .await
            .expect("answered");
        assert!(
            matches!(&below, Response::Error(error) if error.code == ErrorCode::LogOffsetOutOfRange),
            "offset 0 is gone: {below:?}"
        );
        let values_before = lookup_all(&node).await;
        let mut node = node;
        node.shutdown().await;

        // Nothing a recovery needs was deleted: a lost engine comes back with every value.
        std::fs::remove_dir_all(dir.path().join(bucket_dirs().kv_dir)).expect("KV dir deleted");
        let restarted = Node::start(config(), tokio::runtime::Handle::current()).await.expect("starts");
        assert_eq!(lookup_all(&restarted).await, values_before, "every value is restored");
        let mut restarted = restarted;
        restarted.shutdown().await;
    });
}

/// A tiered segment the remote store cannot find for a moment (an eventually consistent
/// listing, a transient answer) is asked for again, not reported as a corrupt log: the fetch
/// waits for it within the remote reads' retries and returns its batches.
#[test]
fn a_tiered_segment_missing_for_a_moment_is_read_once_it_is_back() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let mut node = start(dir.path(), true).await;
        write(&node).await;
        let handle = node.handle().expect("running");
        wait_for("local retention", || {
            let log = handle.leader_kv(BUCKET)?.log().clone();
            (log.log_start_offset() > 0).then_some(())
        })
        .await;
        let remote_dir = dir.path().join("remote").join("log").join(BUCKET.dir_name());
        let first_segment = std::fs::read_dir(&remote_dir)
            .expect("the remote tier")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
            .min()
            .expect("a tiered segment");
        let away = first_segment.with_extension("away");
        std::fs::rename(&first_segment, &away).expect("the segment goes away");
        // Back well before the retries' backoffs (at least 75 + 150 + 300 + 600 ms) run out.
        let (from, to) = (away.clone(), first_segment.clone());
        let back = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            std::fs::rename(&from, &to).expect("the segment comes back");
        });
        let request = Request::FetchLog { bucket: BUCKET, from_offset: 0, max_bytes: 1 };
        match node.request(request).await.expect("answered") {
            Response::FetchLog { batches, .. } => {
                assert_eq!(batches.first().map(|batch| batch.base_offset), Some(0));
            }
            other => panic!("the fetch of the tiered range failed: {other:?}"),
        }
        back.await.expect("the segment came back");
        node.shutdown().await;
    });
}
