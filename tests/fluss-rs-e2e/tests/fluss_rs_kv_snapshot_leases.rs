//! The official Rust client, `fluss-rs` 1.0.0, leases KV snapshots through its admin:
//! `create_kv_snapshot_lease` (AcquireKvSnapshotLease, 1056), `release_kv_snapshot_lease`
//! (1057) and `drop_kv_snapshot_lease` (1058). The node snapshots every 200 ms and keeps one
//! snapshot per bucket (`kv.snapshot.num-retained=1`), so a snapshot outside that window
//! survives only by its lease: the test leases every bucket's snapshot, keeps writing until
//! newer snapshots were committed, reads every file of the leased ones (all still there), and
//! after the release sees them go within one expiry check; a second lease that is left to
//! expire frees its snapshots the same way. Every wait is bounded.

// Like prod, the test runs on the real clock; it reads wall time only to bound its waits.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fluss::client::{FlussAdmin, FlussTable};
use fluss::metadata::{
    KvSnapshot, KvSnapshotLeaseForBucket, KvSnapshotLeaseForTable, TableBucket, TablePath,
};
use fluss::row::GenericRow;
use fluss::rpc::message::OffsetSpec;
use fluss::rpc::FlussError;

use support::{
    assert_api_error, bounded, create_id_name_table, refused, wait_for_snapshots_at, Node,
};

const BUCKETS: i32 = 2;
const ROWS_PER_ROUND: i32 = 40;
const LEASE_ID: &str = "e2e-reader";
const SHORT_LEASE_ID: &str = "e2e-short";
/// The expiry check's interval (`kv.snapshot.lease.expiration-check-interval`).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(100);
const GONE_WAIT_MAX: Duration = Duration::from_secs(30);

/// Upserts rows `0..ROWS_PER_ROUND` with values of `round`; returns each bucket's log end.
async fn write_round(
    admin: &FlussAdmin,
    table: &FlussTable<'_>,
    path: &TablePath,
    round: i32,
) -> BTreeMap<i32, i64> {
    let writer = table.new_upsert().expect("new_upsert").create_writer().expect("create_writer");
    for id in 0..ROWS_PER_ROUND {
        let mut row = GenericRow::new(2);
        row.set_field(0, id);
        row.set_field(1, format!("row {id} round {round}"));
        writer.upsert(&row).expect("upsert queued");
    }
    bounded("flush", writer.flush()).await;
    bounded(
        "list_offsets",
        admin.list_offsets(path, &(0..BUCKETS).collect::<Vec<_>>(), OffsetSpec::Latest),
    )
    .await
    .into_iter()
    .collect()
}

/// A lease request for each bucket's snapshot in `snapshots`.
fn lease_of(table_id: i64, snapshots: &BTreeMap<i32, KvSnapshot>) -> Vec<KvSnapshotLeaseForTable> {
    let bucket_snapshots = snapshots
        .iter()
        .map(|(bucket, snapshot)| KvSnapshotLeaseForBucket {
            partition_id: None,
            bucket_id: *bucket,
            snapshot_id: snapshot.snapshot_id.expect("a snapshot id"),
        })
        .collect();
    vec![KvSnapshotLeaseForTable { table_id, bucket_snapshots }]
}

/// Every file of each bucket's snapshot in `snapshots`, read whole from the remote directory.
async fn read_every_file(
    admin: &FlussAdmin,
    table_id: i64,
    snapshots: &BTreeMap<i32, KvSnapshot>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (bucket, snapshot) in snapshots {
        let snapshot_id = snapshot.snapshot_id.expect("a snapshot id");
        let metadata = bounded(
            "get_kv_snapshot_metadata",
            admin.get_kv_snapshot_metadata(table_id, None, *bucket, snapshot_id),
        )
        .await;
        assert!(!metadata.snapshot_files.is_empty(), "bucket {bucket} lists no file");
        for file in &metadata.snapshot_files {
            if let Err(error) = std::fs::read(&file.remote_path) {
                panic!("bucket {bucket}: file {} unreadable: {error}", file.remote_path);
            }
            files.push(PathBuf::from(&file.remote_path));
        }
    }
    files
}

/// The snapshot ids `list_kv_snapshots` answers, by bucket.
async fn listed(admin: &FlussAdmin, table_id: i64) -> BTreeMap<i32, Vec<i64>> {
    let listed = bounded("list_kv_snapshots", admin.list_kv_snapshots(table_id, None)).await;
    let mut by_bucket: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for snapshot in listed.active_snapshots {
        by_bucket.entry(snapshot.bucket_id).or_default().extend(snapshot.snapshot_id);
    }
    by_bucket
}

/// Waits until none of `files` exists any more (the snapshots they belong to were let go).
async fn wait_until_gone(what: &str, files: &[PathBuf]) {
    let deadline = Instant::now() + GONE_WAIT_MAX;
    loop {
        let left: Vec<&Path> =
            files.iter().map(PathBuf::as_path).filter(|file| file.exists()).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still there after {GONE_WAIT_MAX:?}: {left:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Files of `older` that no snapshot of `newer` lists (shared files may be reused).
fn only_in(older: &[PathBuf], newer: &[PathBuf]) -> Vec<PathBuf> {
    older.iter().filter(|file| !newer.contains(file)).cloned().collect()
}

#[test]
fn fluss_rs_leases_keep_snapshots_until_released_or_expired() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let node = Node::start_with(
        &data_dir,
        &[
            "kv.snapshot.interval=200 ms",
            "kv.snapshot.num-retained=1",
            "kv.snapshot.lease.expiration-check-interval=500 ms",
            "kv.rocksdb.writebuffer.size=4 mb",
        ],
    );
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let admin = connection.get_admin().expect("admin");
        let path = create_id_name_table(&admin, "lease", BUCKETS).await;
        let table = bounded("get_table", connection.get_table(&path)).await;
        let table_id = table.get_table_info().get_table_id();

        // Lease every bucket's latest snapshot; a snapshot never taken is answered unavailable.
        let ends = write_round(&admin, &table, &path, 0).await;
        let leased = wait_for_snapshots_at(&admin, &path, &ends).await;
        let mut request = lease_of(table_id, &leased);
        request[0].bucket_snapshots.push(KvSnapshotLeaseForBucket {
            partition_id: None,
            bucket_id: 0,
            snapshot_id: 1_000_000,
        });
        let acquired = bounded(
            "create_kv_snapshot_lease",
            admin.create_kv_snapshot_lease(LEASE_ID, 600_000, request),
        )
        .await;
        let unavailable: Vec<(i64, i32, i64)> = acquired
            .unavailable_snapshots
            .iter()
            .flat_map(|table| {
                table.bucket_snapshots.iter().map(|b| (table.table_id, b.bucket_id, b.snapshot_id))
            })
            .collect();
        assert_eq!(unavailable, vec![(table_id, 0, 1_000_000)], "only the unknown snapshot");
        let leased_files = read_every_file(&admin, table_id, &leased).await;

        // Newer snapshots are committed and retention (one kept) runs: the leased ones stay,
        // listed beside the latest, and every one of their files is still there.
        let ends = write_round(&admin, &table, &path, 1).await;
        let newer = wait_for_snapshots_at(&admin, &path, &ends).await;
        for (bucket, snapshot) in &newer {
            assert_ne!(snapshot.snapshot_id, leased[bucket].snapshot_id, "bucket {bucket}");
        }
        let ids = listed(&admin, table_id).await;
        for (bucket, snapshot) in &leased {
            let kept = &ids[bucket];
            assert!(kept.contains(&snapshot.snapshot_id.unwrap()), "bucket {bucket}: {kept:?}");
            assert!(
                kept.contains(&newer[bucket].snapshot_id.unwrap()),
                "bucket {bucket}: {kept:?}"
            );
        }
        assert_eq!(read_every_file(&admin, table_id, &leased).await, leased_files);

        // A renewal (no snapshots) and an unknown lease's drop both succeed.
        bounded("renew", admin.create_kv_snapshot_lease(LEASE_ID, 600_000, Vec::new())).await;
        bounded("drop of an unknown lease", admin.drop_kv_snapshot_lease("never-acquired")).await;

        // Released: the leased snapshots go, with the files no newer snapshot reuses.
        let newer_files = read_every_file(&admin, table_id, &newer).await;
        let buckets: Vec<TableBucket> =
            (0..BUCKETS).map(|bucket| TableBucket::new(table_id, bucket)).collect();
        bounded("release_kv_snapshot_lease", admin.release_kv_snapshot_lease(LEASE_ID, buckets))
            .await;
        wait_until_gone("released", &only_in(&leased_files, &newer_files)).await;
        let ids = listed(&admin, table_id).await;
        for (bucket, snapshot) in &leased {
            assert!(!ids[bucket].contains(&snapshot.snapshot_id.unwrap()), "bucket {bucket}");
        }

        // A short lease left to expire frees its snapshots at the next check after expiry.
        bounded(
            "create_kv_snapshot_lease (short)",
            admin.create_kv_snapshot_lease(SHORT_LEASE_ID, 300, lease_of(table_id, &newer)),
        )
        .await;
        let ends = write_round(&admin, &table, &path, 2).await;
        let newest = wait_for_snapshots_at(&admin, &path, &ends).await;
        let newest_files = read_every_file(&admin, table_id, &newest).await;
        tokio::time::sleep(Duration::from_millis(300) + CHECK_INTERVAL).await;
        wait_until_gone("expired", &only_in(&newer_files, &newest_files)).await;
        let ids = listed(&admin, table_id).await;
        for (bucket, snapshot) in &newest {
            assert_eq!(ids[bucket], vec![snapshot.snapshot_id.unwrap()], "bucket {bucket}");
        }
        bounded("drop_kv_snapshot_lease", admin.drop_kv_snapshot_lease(SHORT_LEASE_ID)).await;

        // Fluss's refusals: a table that does not exist (21).
        let missing = vec![KvSnapshotLeaseForTable {
            table_id: table_id + 1_000,
            bucket_snapshots: vec![KvSnapshotLeaseForBucket {
                partition_id: None,
                bucket_id: 0,
                snapshot_id: 1,
            }],
        }];
        let error = refused(
            "a lease on a missing table",
            admin.create_kv_snapshot_lease("e2e-missing", 60_000, missing),
        )
        .await;
        assert_api_error(
            "a lease on a missing table",
            &error,
            FlussError::UnknownTableOrBucketException,
        );
    });
    drop(node);
}
