//! A node whose KV directory of one bucket was lost (after local retention removed the early
//! changelog) starts and serves while that bucket recovers from its KV snapshot in the
//! background: with the snapshot's downloads held, the node has started, the recovering
//! bucket answers LEADER_NOT_AVAILABLE (retriable) at once, the other bucket takes puts and
//! lookups, and `/metrics` shows the recovery (its phase and progress, one bucket
//! recovering). Once the downloads go on, the bucket serves every value it had, and the
//! recovery's gauges are gone. Before, the node's start awaited every bucket's recovery
//! (through a loopback call whose 60 s timeout a long recovery exceeded), so nothing was
//! served until all had recovered.

// A test owns its runtime, reads wall time to bound its waits and deletes files directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::error::ErrorCode;
use kvtablet_core::log::LocalRetention;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::snapshot::completed_snapshot::bucket_dir;
use kvtablet_core::tablet_dirs;
use kvtablet_core::TableBucket;
use kvtablet_prod::metrics::NodeMetrics;
use kvtablet_prod::node::{unnamed_table_path, Node, NodeConfig};
use support::{runtime, wait_for, POLL_INTERVAL, WAIT_MAX};
use tokio::sync::watch;

const SERVED: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
const RECOVERING: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 1 };
const SEGMENT_BYTES: u64 = 2 * 1024;
const PUTS: usize = 60;
const WRITES_PER_PUT: usize = 4;
const VALUE_BYTES: usize = 100;
/// How long the test waits for something that should come before it calls the node stuck.
/// How long the snapshot's downloads are held at most: the test releases them long before,
/// and a node that never serves still ends the test.
const HOLD_MAX: Duration = Duration::from_secs(120);

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        buckets: vec![SERVED, RECOVERING],
        snapshot_interval_ms: 100,
        segment_bytes_max: SEGMENT_BYTES,
        tiering_interval_ms: 100,
        local_retention: LocalRetention { segments_kept: 1, ..LocalRetention::default() },
        ..NodeConfig::new(dir)
    }
}

/// The remote store, with every read of one bucket's KV snapshots held until released.
struct HeldSnapshotReads {
    inner: Arc<dyn RemoteStorage>,
    held_prefix: String,
    released: watch::Receiver<bool>,
}

impl HeldSnapshotReads {
    fn read<T: Send + 'static>(
        &self,
        path: &str,
        read: BoxFuture<'static, Result<T, RemoteError>>,
    ) -> BoxFuture<'static, Result<T, RemoteError>> {
        if !path.starts_with(&self.held_prefix) {
            return read;
        }
        let mut released = self.released.clone();
        async move {
            let _ = tokio::time::timeout(HOLD_MAX, released.wait_for(|released| *released)).await;
            read.await
        }
        .boxed()
    }
}

impl RemoteStorage for HeldSnapshotReads {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.put(path, bytes)
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.read(path, self.inner.get(path))
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.read(path, self.inner.get_range(path, range))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        self.inner.list(prefix)
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.delete(path)
    }
}

fn key(index: usize) -> Vec<u8> {
    format!("key-{index:06}").into_bytes()
}

fn value(index: usize) -> Vec<u8> {
    let mut value = vec![1, 0];
    value.extend(format!("row {index} ").bytes().cycle().take(VALUE_BYTES));
    value
}

async fn put(node: &Node, bucket: TableBucket, indexes: Range<usize>) -> Response {
    let writes = indexes.map(|index| KvWrite { key: key(index), value: Some(value(index)) });
    let request =
        Request::PutKv { bucket, writes: writes.collect(), writer: None, target_columns: None };
    node.request(request).await.expect("answered")
}

/// Writes `PUTS` batches to `bucket`; returns the log end offset.
async fn write(node: &Node, bucket: TableBucket) -> u64 {
    let mut end = 0;
    for batch in 0..PUTS {
        let first = batch * WRITES_PER_PUT;
        match put(node, bucket, first..first + WRITES_PER_PUT).await {
            Response::PutKv { end_offset, .. } => end = end_offset,
            other => panic!("put refused: {other:?}"),
        }
    }
    end
}

async fn lookup(node: &Node, bucket: TableBucket) -> Response {
    let keys = (0..PUTS * WRITES_PER_PUT).map(key).collect();
    node.request(Request::Lookup { bucket, keys }).await.expect("answered")
}

fn metrics_of(node: &Node, metrics: &NodeMetrics) -> String {
    let handle = node.handle().expect("running");
    metrics.render_with_wire(None, None, 0, None, Some(&handle.recovery_stats()))
}

#[test]
fn a_bucket_recovering_from_its_snapshot_answers_not_ready_while_the_node_serves_the_others() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let node = Node::start(config(dir.path()), tokio::runtime::Handle::current())
            .await
            .expect("the node starts");
        let end = write(&node, RECOVERING).await;
        {
            // Dropped before the shutdown: a handle keeps the node's engines open.
            let handle = node.handle().expect("running");
            let store = node.snapshot_store().clone();
            wait_for("retention and a snapshot at the end", || {
                let log = handle.leader_kv(RECOVERING)?.log().clone();
                let covered = store.latest(RECOVERING).is_some_and(|s| s.log_offset == end);
                (covered && log.log_start_offset() > 0).then_some(())
            })
            .await;
        }
        let Response::Lookup { values: values_before, .. } = lookup(&node, RECOVERING).await
        else {
            panic!("the lookup is answered")
        };
        assert!(values_before.iter().all(Option::is_some), "every key was written");
        let mut node = node;
        node.shutdown().await;
        let path = unnamed_table_path(RECOVERING.table_id);
        let kv_dir = tablet_dirs::bucket_dirs(&path, RECOVERING.table_id, None, 1).kv_dir;
        std::fs::remove_dir_all(dir.path().join(kv_dir)).expect("the KV directory is deleted");

        let (release, released) = watch::channel(false);
        let held_prefix = format!("{}/", bucket_dir(RECOVERING));
        let layer = move |inner| -> Arc<dyn RemoteStorage> {
            Arc::new(HeldSnapshotReads { inner, held_prefix, released })
        };
        let starting = Node::start_with_remote_layer(
            config(dir.path()),
            tokio::runtime::Handle::current(),
            layer,
        );
        let started = tokio::time::timeout(WAIT_MAX, starting).await;
        let _ = release.send(started.is_err());
        let mut node = started
            .expect("the node starts while a bucket's snapshot downloads are held")
            .expect("the node starts");
        let metrics = NodeMetrics::new();

        let recovering = lookup(&node, RECOVERING).await;
        let served = put(&node, SERVED, 0..WRITES_PER_PUT).await;
        let served_lookup = lookup(&node, SERVED).await;
        let during = metrics_of(&node, &metrics);
        let _ = release.send(true);
        match recovering {
            Response::Error(error) => {
                assert_eq!(error.code, ErrorCode::LeaderNotAvailable, "{error}");
                assert!(error.is_retriable());
            }
            other => panic!("a recovering bucket answered {other:?}"),
        }
        assert!(matches!(served, Response::PutKv { .. }), "the other bucket takes puts: {served:?}");
        let Response::Lookup { values, .. } = served_lookup else {
            panic!("the other bucket answers lookups: {served_lookup:?}")
        };
        assert_eq!(values[0], Some(value(0)));
        assert!(during.contains("kvtablet_kv_recovering_buckets 1\n"), "{during}");
        let phase = "kvtablet_kv_recovery_phase{table_id=\"1\",partition_id=\"\",bucket_id=\"1\",\
                     phase=\"download\"} 1\n";
        assert!(during.contains(phase), "{during}");
        let attempt = "kvtablet_kv_recovery_attempt{table_id=\"1\",partition_id=\"\",\
                       bucket_id=\"1\"} 1\n";
        assert!(during.contains(attempt), "{during}");
        assert!(
            !during.contains("kvtablet_kv_recovery_download_total_bytes{table_id=\"1\",partition_id=\"\",bucket_id=\"1\"} 0\n"),
            "the snapshot's size is known: {during}"
        );

        let deadline = Instant::now() + WAIT_MAX;
        let values_after = loop {
            match lookup(&node, RECOVERING).await {
                Response::Lookup { values, .. } => break values,
                Response::Error(error) if error.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                other => panic!("the recovered bucket's lookup: {other:?}"),
            }
        };
        assert_eq!(values_after, values_before, "every value is restored");
        let after = metrics_of(&node, &metrics);
        assert!(after.contains("kvtablet_kv_recovering_buckets 0\n"), "{after}");
        assert!(!after.contains("kvtablet_kv_recovery_phase{"), "{after}");
        node.shutdown().await;
        // A snapshot's checkpoint in flight at the shutdown is blocking work that ends by
        // itself; the background recovery is a task the shutdown ends.
        let ledger = node.env().ledger.clone();
        wait_for("every task and blocking work to end", || ledger.live().is_empty().then_some(()))
            .await;
    });
}
