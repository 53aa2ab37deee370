//! The official Rust client, `fluss-rs` 1.0.0, reads the node's KV snapshots through its
//! admin: `get_latest_kv_snapshots` (GetLatestKvSnapshots, 1023), `get_kv_snapshot_metadata`
//! (GetKvSnapshotMetadata, 1024) and `list_kv_snapshots` (ListKvSnapshots, 1064). The node
//! snapshots every 200 ms (`-D kv.snapshot.interval=200 ms`); the test waits (bounded) until
//! every bucket's latest snapshot covers what was written, then checks ids, log offsets and
//! files (under the node's remote directory), and the refusals' codes.

// Like prod, the test runs on the real clock (the root clippy.toml's lists are for core and
// sim); it reads wall time only to bound its wait.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use fluss::metadata::{KvSnapshot, TablePath};
use fluss::row::GenericRow;
use fluss::rpc::message::OffsetSpec;
use fluss::rpc::FlussError;

use support::{
    assert_api_error, bounded, create_id_name_table, refused, wait_for_snapshots_at, Node,
};

const BUCKETS: i32 = 3;
const ROWS: i32 = 60;
#[test]
fn fluss_rs_reads_the_latest_snapshots_their_files_and_the_kept_ones() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let node = Node::start_with(
        &data_dir,
        &["kv.snapshot.interval=200 ms", "kv.rocksdb.writebuffer.size=4 mb"],
    );
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let admin = connection.get_admin().expect("admin");
        let path = create_id_name_table(&admin, "snap", BUCKETS).await;
        let table = bounded("get_table", connection.get_table(&path)).await;
        let table_id = table.get_table_info().get_table_id();

        // Nothing written yet: every bucket is listed, without a snapshot.
        let latest =
            bounded("get_latest_kv_snapshots", admin.get_latest_kv_snapshots(&path, None)).await;
        assert_eq!(latest.table_id, table_id);
        assert_eq!(latest.partition_id, None);
        let buckets: Vec<i32> =
            latest.latest_snapshots.iter().map(|snapshot| snapshot.bucket_id).collect();
        assert_eq!(buckets, (0..BUCKETS).collect::<Vec<_>>());
        assert!(
            latest
                .latest_snapshots
                .iter()
                .all(|snapshot| snapshot.snapshot_id.is_none() && snapshot.log_offset.is_none()),
            "{latest:?}"
        );

        let writer =
            table.new_upsert().expect("new_upsert").create_writer().expect("create_writer");
        for id in 0..ROWS {
            let mut row = GenericRow::new(2);
            row.set_field(0, id);
            row.set_field(1, format!("row {id}"));
            writer.upsert(&row).expect("upsert queued");
        }
        bounded("flush", writer.flush()).await;
        let ends: BTreeMap<i32, i64> = bounded(
            "list_offsets",
            admin.list_offsets(&path, &(0..BUCKETS).collect::<Vec<_>>(), OffsetSpec::Latest),
        )
        .await
        .into_iter()
        .collect();
        assert_eq!(ends.len(), BUCKETS as usize);
        assert_eq!(ends.values().sum::<i64>(), i64::from(ROWS), "one insert per row");

        let latest = wait_for_snapshots_at(&admin, &path, &ends).await;

        // Each latest snapshot's files: under the node's remote directory, present on disk.
        let remote_root = data_dir.canonicalize().expect("data dir").join("remote");
        for (bucket, snapshot) in &latest {
            let snapshot_id = snapshot.snapshot_id.expect("a snapshot id");
            let metadata = bounded(
                "get_kv_snapshot_metadata",
                admin.get_kv_snapshot_metadata(table_id, None, *bucket, snapshot_id),
            )
            .await;
            assert_eq!(Some(metadata.log_offset), snapshot.log_offset, "bucket {bucket}");
            assert!(!metadata.snapshot_files.is_empty(), "bucket {bucket} lists no file");
            for file in &metadata.snapshot_files {
                let remote = Path::new(&file.remote_path);
                assert!(
                    remote.starts_with(&remote_root),
                    "{} is not under {}",
                    file.remote_path,
                    remote_root.display()
                );
                assert!(remote.is_file(), "{} is not a file", file.remote_path);
                assert!(!file.local_file_name.is_empty(), "{}", file.remote_path);
                assert!(file.remote_path.ends_with(&file.local_file_name), "{file:?}");
            }
        }

        // The kept snapshots: the latest of each bucket among them, at most two per bucket.
        let listed = bounded("list_kv_snapshots", admin.list_kv_snapshots(table_id, None)).await;
        assert_eq!(listed.table_id, table_id);
        assert_eq!(listed.partition_id, None);
        for (bucket, snapshot) in &latest {
            let kept: Vec<&KvSnapshot> =
                listed.active_snapshots.iter().filter(|kept| kept.bucket_id == *bucket).collect();
            assert!((1..=2).contains(&kept.len()), "bucket {bucket}: {kept:?}");
            assert_eq!(
                kept.last().copied(),
                Some(snapshot),
                "bucket {bucket}: the latest is kept last"
            );
        }

        // Refusals, with Fluss's codes.
        let error = refused(
            "metadata of a snapshot never taken",
            admin.get_kv_snapshot_metadata(table_id, None, 0, 1_000_000),
        )
        .await;
        assert_api_error(
            "metadata of a snapshot never taken",
            &error,
            FlussError::KvSnapshotNotExist,
        );
        let missing = TablePath::new("snap", "missing");
        let error =
            refused("latest of a missing table", admin.get_latest_kv_snapshots(&missing, None))
                .await;
        assert_api_error("latest of a missing table", &error, FlussError::TableNotExist);
        let error =
            refused("list of a missing table", admin.list_kv_snapshots(table_id + 1_000, None))
                .await;
        assert_api_error(
            "list of a missing table",
            &error,
            FlussError::UnknownTableOrBucketException,
        );
        let error = refused(
            "latest of a partition of a plain table",
            admin.get_latest_kv_snapshots(&path, Some("p")),
        )
        .await;
        assert_api_error(
            "latest of a partition of a plain table",
            &error,
            FlussError::TableNotPartitionedException,
        );
    });
    drop(node);
}
