//! The coordinator's KV snapshot RPCs over real sockets: GetLatestKvSnapshots (1023),
//! GetKvSnapshotMetadata (1024) and ListKvSnapshots (1064) report exactly what the node's
//! snapshot store keeps (ids, log offsets, files under the remote data directory), and refuse
//! with Fluss's codes.

// Tests may read wall time, read files directly and own a tokio runtime.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::snapshot::{SnapshotPoint, SnapshotStore};
use kvtablet_core::TableBucket;
use kvtablet_prod::catalog::codes;
use kvtablet_prod::client::{admin, ClientError, Connection, ConnectionConfig, RemoteTable};
use kvtablet_prod::config::ServeConfig;
use kvtablet_prod::node::NodeHandle;
use kvtablet_prod::served_node::ServedNode;
use kvtablet_prod::wire::error::{CORRUPT_MESSAGE, KV_SNAPSHOT_NOT_EXIST, UNKNOWN_TABLE_OR_BUCKET};
use kvtablet_prod::wire::messages::{
    CreatePartitionRequest, CreatePartitionResponse, GetKvSnapshotMetadataRequest,
    GetKvSnapshotMetadataResponse, GetLatestKvSnapshotsRequest, GetLatestKvSnapshotsResponse,
    ListKvSnapshotsRequest, ListKvSnapshotsResponse, PbKeyValue, PbKvSnapshot, PbPartitionSpec,
    PbTablePath,
};
use kvtablet_prod::wire::ApiKey;

const SNAPSHOT_INTERVAL_MS: u64 = 200;
const NUM_RETAINED: u32 = 2;
const BUCKETS: i32 = 2;
/// How long a test waits for a flush or a snapshot before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A served node that snapshots every [`SNAPSHOT_INTERVAL_MS`], and a connection to it.
async fn start(dir: &Path) -> (ServedNode, Connection) {
    let mut config = ServeConfig::default();
    config.data_dir = dir.to_path_buf();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.metrics_listen = None;
    config.snapshot_interval_ms = SNAPSHOT_INTERVAL_MS;
    config.snapshot_num_retained = NUM_RETAINED;
    config.engine_write_buffer_bytes = 4 << 20;
    let served = ServedNode::start_with(&config, tokio::runtime::Handle::current())
        .await
        .expect("the node starts");
    let connection = Connection::connect(&served.addr().to_string(), ConnectionConfig::DEFAULT)
        .await
        .expect("the client connects");
    (served, connection)
}

fn path(table: &str) -> PbTablePath {
    PbTablePath { database_name: support::DATABASE.into(), table_name: table.into() }
}

/// Waits until every bucket of `table` is flushed to its log end and its latest committed
/// snapshot is at that offset (nothing is written meanwhile, so no newer one follows).
async fn wait_for_snapshots(handle: &NodeHandle, table: &RemoteTable, partition_id: Option<i64>) {
    let store = handle.snapshot_store().clone();
    for bucket_id in 0..table.bucket_count {
        let bucket = TableBucket { table_id: table.table_id, partition_id, bucket_id };
        support::wait_for(&format!("a snapshot of {bucket} at its log end"), || {
            let kv = handle.leader_kv(bucket)?;
            let end = kv.log().log_end_offset();
            let latest = store.kept_points(bucket).last().copied()?;
            (end > 0 && kv.flushed_log_offset() == end && latest.log_offset == end).then_some(())
        })
        .await;
    }
}

fn expected_entry(bucket_id: i32, point: Option<SnapshotPoint>) -> PbKvSnapshot {
    PbKvSnapshot {
        bucket_id,
        snapshot_id: point.map(|point| point.snapshot_id as i64),
        log_offset: point.map(|point| point.log_offset as i64),
    }
}

async fn latest(
    connection: &Connection,
    table: &str,
    partition: Option<&str>,
) -> GetLatestKvSnapshotsResponse {
    let request = GetLatestKvSnapshotsRequest {
        table_path: path(table),
        partition_name: partition.map(Into::into),
    };
    connection.call(ApiKey::GetLatestKvSnapshots, &request).await.expect("answered")
}

async fn metadata(
    connection: &Connection,
    request: &GetKvSnapshotMetadataRequest,
) -> Result<GetKvSnapshotMetadataResponse, ClientError> {
    connection.call(ApiKey::GetKvSnapshotMetadata, request).await
}

/// The Fluss code of a refused call.
fn refused<T: std::fmt::Debug>(outcome: Result<T, ClientError>) -> (i32, String) {
    match outcome {
        Err(ClientError::Server { code, message, .. }) => (code, message),
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn buckets_of(
    store: &SnapshotStore,
    table_id: i64,
    partition_id: Option<i64>,
) -> Vec<(i32, Vec<SnapshotPoint>)> {
    (0..BUCKETS)
        .map(|bucket_id| {
            (bucket_id, store.kept_points(TableBucket { table_id, partition_id, bucket_id }))
        })
        .collect()
}

#[test]
fn snapshot_rpcs_report_the_kept_snapshots_their_offsets_and_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = start(dir.path()).await;
        let handle = served.node().handle().expect("running");
        let table = support::create_table(&connection, "snapshots", BUCKETS).await;

        // Nothing written: one entry per bucket, without a snapshot.
        let none = latest(&connection, "snapshots", None).await;
        assert_eq!(none.table_id, table.table_id);
        assert_eq!(none.partition_id, None);
        let expected: Vec<_> = (0..BUCKETS).map(|bucket| expected_entry(bucket, None)).collect();
        assert_eq!(none.latest_snapshots, expected);
        let listed: ListKvSnapshotsResponse = connection
            .call(
                ApiKey::ListKvSnapshots,
                &ListKvSnapshotsRequest { table_id: table.table_id, partition_id: None },
            )
            .await
            .expect("answered");
        assert_eq!(listed.active_snapshots, Vec::new());

        // Three rounds of writes, each snapshotted: two snapshots per bucket are kept.
        let mut model: BTreeMap<i32, _> = BTreeMap::new();
        for round in 0..3 {
            let rows: Vec<_> = (0..40).map(|i| support::row(round * 1_000 + i)).collect();
            support::put_rows(&connection, &table, &rows, 20).await;
            wait_for_snapshots(&handle, &table, None).await;
            model = buckets_of(handle.snapshot_store(), table.table_id, None).into_iter().collect();
        }
        for (bucket, kept) in &model {
            assert_eq!(kept.len(), NUM_RETAINED as usize, "bucket {bucket} keeps two snapshots");
        }

        let answer = latest(&connection, "snapshots", None).await;
        assert_eq!(answer.table_id, table.table_id);
        let expected: Vec<_> = model
            .iter()
            .map(|(bucket, kept)| expected_entry(*bucket, kept.last().copied()))
            .collect();
        assert_eq!(answer.latest_snapshots, expected);

        let listed: ListKvSnapshotsResponse = connection
            .call(
                ApiKey::ListKvSnapshots,
                &ListKvSnapshotsRequest { table_id: table.table_id, partition_id: None },
            )
            .await
            .expect("answered");
        assert_eq!(listed.table_id, table.table_id);
        assert_eq!(listed.partition_id, None);
        let expected: Vec<_> = model
            .iter()
            .flat_map(|(bucket, kept)| {
                kept.iter().map(|point| expected_entry(*bucket, Some(*point)))
            })
            .collect();
        assert_eq!(listed.active_snapshots, expected);

        // Every kept snapshot's files, as absolute paths under the remote directory.
        let remote_root = dir.path().canonicalize().expect("data dir").join("remote");
        for (bucket_id, kept) in &model {
            let bucket =
                TableBucket { table_id: table.table_id, partition_id: None, bucket_id: *bucket_id };
            for point in kept {
                let request = GetKvSnapshotMetadataRequest {
                    table_id: table.table_id,
                    partition_id: None,
                    bucket_id: *bucket_id,
                    snapshot_id: point.snapshot_id as i64,
                };
                let answer = metadata(&connection, &request).await.expect("answered");
                assert_eq!(answer.log_offset, point.log_offset as i64);
                let stored =
                    handle.snapshot_store().kept_snapshot(bucket, point.snapshot_id).expect("kept");
                let expected: Vec<(String, String)> = stored
                    .files()
                    .map(|file| {
                        (
                            remote_root.join(&file.remote_path).display().to_string(),
                            file.local_name.clone(),
                        )
                    })
                    .collect();
                let got: Vec<(String, String)> = answer
                    .snapshot_files
                    .iter()
                    .map(|file| (file.remote_path.clone(), file.local_file_name.clone()))
                    .collect();
                assert!(
                    !got.is_empty(),
                    "snapshot {} of {bucket} lists no file",
                    point.snapshot_id
                );
                assert_eq!(got, expected);
                for (file, stored) in answer.snapshot_files.iter().zip(stored.files()) {
                    let size = std::fs::metadata(&file.remote_path).expect("the file exists").len();
                    assert_eq!(size, stored.size_bytes, "{}", file.remote_path);
                }
            }
            // The first snapshot was dropped by retention: it no longer exists.
            let dropped = kept[0].snapshot_id - 1;
            let request = GetKvSnapshotMetadataRequest {
                table_id: table.table_id,
                partition_id: None,
                bucket_id: *bucket_id,
                snapshot_id: dropped as i64,
            };
            let (code, message) = refused(metadata(&connection, &request).await);
            assert_eq!(code, KV_SNAPSHOT_NOT_EXIST, "{message}");
        }
        served.stop().await;
    });
}

#[test]
fn snapshot_rpcs_refuse_with_flusss_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = start(dir.path()).await;
        let table = support::create_table(&connection, "plain", BUCKETS).await;

        // A table missing by path is TABLE_NOT_EXIST (7), by id UNKNOWN_TABLE_OR_BUCKET (21).
        let request =
            GetLatestKvSnapshotsRequest { table_path: path("missing"), partition_name: None };
        let (code, message) = refused(
            connection
                .call::<_, GetLatestKvSnapshotsResponse>(ApiKey::GetLatestKvSnapshots, &request)
                .await,
        );
        assert_eq!(code, codes::TABLE_NOT_EXIST, "{message}");
        let request =
            ListKvSnapshotsRequest { table_id: table.table_id + 1_000, partition_id: None };
        let (code, message) = refused(
            connection.call::<_, ListKvSnapshotsResponse>(ApiKey::ListKvSnapshots, &request).await,
        );
        assert_eq!(code, UNKNOWN_TABLE_OR_BUCKET, "{message}");

        // A partition of a table without partitions: TABLE_NOT_PARTITIONED (37).
        let request = GetLatestKvSnapshotsRequest {
            table_path: path("plain"),
            partition_name: Some("x".into()),
        };
        let (code, message) = refused(
            connection
                .call::<_, GetLatestKvSnapshotsResponse>(ApiKey::GetLatestKvSnapshots, &request)
                .await,
        );
        assert_eq!(code, codes::TABLE_NOT_PARTITIONED, "{message}");
        let request = ListKvSnapshotsRequest { table_id: table.table_id, partition_id: Some(1) };
        let (code, message) = refused(
            connection.call::<_, ListKvSnapshotsResponse>(ApiKey::ListKvSnapshots, &request).await,
        );
        assert_eq!(code, codes::TABLE_NOT_PARTITIONED, "{message}");

        // GetKvSnapshotMetadata finds no kept snapshot: KV_SNAPSHOT_NOT_EXIST (41), whatever is
        // missing, as Fluss answers.
        let absent = |table_id, partition_id, bucket_id, snapshot_id| {
            GetKvSnapshotMetadataRequest { table_id, partition_id, bucket_id, snapshot_id }
        };
        for request in [
            absent(table.table_id, None, 0, 1),         // never committed
            absent(table.table_id, None, 0, -1),        // a negative id
            absent(table.table_id, None, BUCKETS, 1),   // no such bucket
            absent(table.table_id, None, -1, 1),        // no such bucket
            absent(table.table_id, Some(3), 0, 1),      // no such partition
            absent(table.table_id + 1_000, None, 0, 1), // no such table
        ] {
            let (code, message) = refused(metadata(&connection, &request).await);
            assert_eq!(code, KV_SNAPSHOT_NOT_EXIST, "{request:?}: {message}");
        }

        // A body that is not the message: CORRUPT_MESSAGE (3), and the connection serves on.
        for key in
            [ApiKey::GetLatestKvSnapshots, ApiKey::GetKvSnapshotMetadata, ApiKey::ListKvSnapshots]
        {
            let outcome = connection
                .call_raw(key, Bytes::from_static(&[0xff, 0xff, 0xff]), CALL_TIMEOUT)
                .await;
            let (code, message) = refused(outcome);
            assert_eq!(code, CORRUPT_MESSAGE, "{key}: {message}");
        }

        // A partitioned table: its snapshots are per partition.
        let mut descriptor = support::descriptor(BUCKETS);
        descriptor.partition_keys = vec!["name".to_string()];
        admin::create_table(&connection, support::DATABASE, "parted", &descriptor, false)
            .await
            .expect("partitioned table created");
        let spec = PbPartitionSpec {
            partition_key_values: vec![PbKeyValue { key: "name".into(), value: "p1".into() }],
        };
        let _: CreatePartitionResponse = connection
            .call(
                ApiKey::CreatePartition,
                &CreatePartitionRequest {
                    table_path: path("parted"),
                    partition_spec: spec,
                    ignore_if_exists: false,
                },
            )
            .await
            .expect("partition created");
        let request =
            GetLatestKvSnapshotsRequest { table_path: path("parted"), partition_name: None };
        let (code, message) = refused(
            connection
                .call::<_, GetLatestKvSnapshotsResponse>(ApiKey::GetLatestKvSnapshots, &request)
                .await,
        );
        assert_eq!(code, codes::PARTITION_NOT_EXISTS, "no partition name: {message}");
        let request = GetLatestKvSnapshotsRequest {
            table_path: path("parted"),
            partition_name: Some("p9".into()),
        };
        let (code, message) = refused(
            connection
                .call::<_, GetLatestKvSnapshotsResponse>(ApiKey::GetLatestKvSnapshots, &request)
                .await,
        );
        assert_eq!(code, codes::PARTITION_NOT_EXISTS, "an unknown partition: {message}");
        let parted = RemoteTable::fetch(&connection, support::DATABASE, "parted")
            .await
            .expect("table metadata")
            .fetch_partition(&connection, "p1")
            .await
            .expect("partition metadata");
        let partition_id = parted.partition_id.expect("a partition id");
        let answer = latest(&connection, "parted", Some("p1")).await;
        assert_eq!(answer.partition_id, Some(partition_id));
        let expected: Vec<_> = (0..BUCKETS).map(|bucket| expected_entry(bucket, None)).collect();
        assert_eq!(answer.latest_snapshots, expected);
        let request = ListKvSnapshotsRequest { table_id: parted.table_id, partition_id: None };
        let (code, message) = refused(
            connection.call::<_, ListKvSnapshotsResponse>(ApiKey::ListKvSnapshots, &request).await,
        );
        assert_eq!(code, codes::PARTITION_NOT_EXISTS, "no partition id: {message}");
        let request = ListKvSnapshotsRequest {
            table_id: parted.table_id,
            partition_id: Some(partition_id + 50),
        };
        let (code, message) = refused(
            connection.call::<_, ListKvSnapshotsResponse>(ApiKey::ListKvSnapshots, &request).await,
        );
        assert_eq!(code, codes::PARTITION_NOT_EXISTS, "another partition id: {message}");

        // A partition's snapshots, once written. The snapshot RPCs do not read rows, so the
        // writes go to the tablet server directly (the Rust client writes no partitions yet).
        let handle = served.node().handle().expect("running");
        for bucket_id in 0..BUCKETS {
            let bucket = TableBucket {
                table_id: parted.table_id,
                partition_id: Some(partition_id),
                bucket_id,
            };
            let writes =
                (0..10u8).map(|i| KvWrite { key: vec![i], value: Some(vec![1, 0, i]) }).collect();
            let request = Request::PutKv { bucket, writes, writer: None, target_columns: None };
            match handle.request(request).await.expect("answered") {
                Response::PutKv { .. } => {}
                other => panic!("PutKv of {bucket}: {other:?}"),
            }
        }
        wait_for_snapshots(&handle, &parted, Some(partition_id)).await;
        let kept = buckets_of(handle.snapshot_store(), parted.table_id, Some(partition_id));
        let answer = latest(&connection, "parted", Some("p1")).await;
        let expected: Vec<_> = kept
            .iter()
            .map(|(bucket, kept)| expected_entry(*bucket, kept.last().copied()))
            .collect();
        assert_eq!(answer.latest_snapshots, expected);
        let listed: ListKvSnapshotsResponse = connection
            .call(
                ApiKey::ListKvSnapshots,
                &ListKvSnapshotsRequest {
                    table_id: parted.table_id,
                    partition_id: Some(partition_id),
                },
            )
            .await
            .expect("answered");
        assert_eq!(listed.partition_id, Some(partition_id));
        let expected: Vec<_> = kept
            .iter()
            .flat_map(|(bucket, kept)| {
                kept.iter().map(|point| expected_entry(*bucket, Some(*point)))
            })
            .collect();
        assert_eq!(listed.active_snapshots, expected);
        let (bucket_id, points) = &kept[0];
        let request =
            absent(parted.table_id, Some(partition_id), *bucket_id, points[0].snapshot_id as i64);
        let answer = metadata(&connection, &request).await.expect("a partition's snapshot");
        assert_eq!(answer.log_offset, points[0].log_offset as i64);
        let request = absent(parted.table_id, None, *bucket_id, points[0].snapshot_id as i64);
        let (code, message) = refused(metadata(&connection, &request).await);
        assert_eq!(code, KV_SNAPSHOT_NOT_EXIST, "without its partition id: {message}");

        served.stop().await;
    });
}
