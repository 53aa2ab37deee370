//! The coordinator's KV snapshot RPCs, answered from the node's own snapshot store (the node
//! is its own snapshot coordinator): GetLatestKvSnapshots (1023), GetKvSnapshotMetadata (1024)
//! and ListKvSnapshots (1064).
//!
//! The refusals are Fluss's: a table missing by path is TABLE_NOT_EXIST (7), by id
//! UNKNOWN_TABLE_OR_BUCKET (21); a table without a primary key NON_PRIMARY_KEY_TABLE (20); a
//! partition name or id for a table without partitions TABLE_NOT_PARTITIONED (37), none for a
//! partitioned table or one it does not have PARTITION_NOT_EXISTS (36). GetKvSnapshotMetadata
//! answers every lookup that finds no kept snapshot (unknown table, partition or bucket, an id
//! never committed or dropped by retention) with KV_SNAPSHOT_NOT_EXIST (41), as Fluss's
//! coordinator does.
//!
//! Every answer is bounded by the table's bucket count (one entry per bucket, or one per kept
//! snapshot of each bucket) or by one snapshot's file list. The store is read from the
//! blocking pool: a commit holds its lock while it syncs the bucket's file.

use std::sync::Arc;

use kvtablet_core::snapshot::{SnapshotPoint, SnapshotStore};
use kvtablet_core::TableBucket;

use super::admin::table_path;
use super::{blocking, catalog_error, Gateway};
use crate::catalog::{codes, TableInfo};
use crate::wire::error::{
    decode_request, encode_response, KV_SNAPSHOT_NOT_EXIST, NON_PRIMARY_KEY_TABLE,
    UNKNOWN_TABLE_OR_BUCKET,
};
use crate::wire::messages::{
    GetKvSnapshotMetadataRequest, GetKvSnapshotMetadataResponse, GetLatestKvSnapshotsRequest,
    GetLatestKvSnapshotsResponse, ListKvSnapshotsRequest, ListKvSnapshotsResponse, PbKvSnapshot,
    PbRemotePathAndLocalFile,
};
use crate::wire::{WireError, WireResponse};

impl Gateway {
    /// GetLatestKvSnapshots: one entry per bucket of the table (or of the named partition),
    /// with the latest kept snapshot's id and log offset, both absent for a bucket without one.
    pub(crate) async fn get_latest_kv_snapshots(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: GetLatestKvSnapshotsRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let info = self.catalog.get_table(&path).map_err(catalog_error)?;
        check_primary_key(&info)?;
        let partition_id = match (request.partition_name.as_deref(), info.is_partitioned()) {
            (None, false) => None,
            (Some(name), false) => {
                return Err(WireError::new(
                    codes::TABLE_NOT_PARTITIONED,
                    format!("table {path} is not partitioned, but partition '{name}' was given"),
                ))
            }
            (None, true) => {
                return Err(WireError::new(
                    codes::PARTITION_NOT_EXISTS,
                    format!("table {path} is partitioned, but no partition name was given"),
                ))
            }
            (Some(name), true) => Some(
                self.catalog
                    .partition_by_name(&path, name)
                    .map_err(catalog_error)?
                    .partition
                    .partition_id,
            ),
        };
        let table_id = info.table_id;
        let store = Arc::clone(self.node.snapshot_store());
        let latest_snapshots = blocking(move || {
            buckets(&info, partition_id)
                .map(|bucket| {
                    let latest = store.kept_points(bucket).last().copied();
                    pb_snapshot(bucket.bucket_id, latest)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        encode_response(&GetLatestKvSnapshotsResponse { table_id, partition_id, latest_snapshots })
    }

    /// ListKvSnapshots: every kept snapshot of every bucket of the table (or of the given
    /// partition), oldest first per bucket; a bucket without one has no entry.
    pub(crate) async fn list_kv_snapshots(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: ListKvSnapshotsRequest = decode_request(body)?;
        let info = self.catalog.table_by_id(request.table_id).ok_or_else(|| {
            WireError::new(
                UNKNOWN_TABLE_OR_BUCKET,
                format!("table {} does not exist", request.table_id),
            )
        })?;
        check_primary_key(&info)?;
        let partition_id = self.partition_of(&info, request.partition_id)?;
        let table_id = info.table_id;
        let store = Arc::clone(self.node.snapshot_store());
        let active_snapshots = blocking(move || {
            let mut active = Vec::new();
            for bucket in buckets(&info, partition_id) {
                for point in store.kept_points(bucket) {
                    active.push(pb_snapshot(bucket.bucket_id, Some(point))?);
                }
            }
            Ok(active)
        })
        .await?;
        encode_response(&ListKvSnapshotsResponse { table_id, partition_id, active_snapshots })
    }

    /// GetKvSnapshotMetadata: the kept snapshot's log offset and files, each as its absolute
    /// path under the remote data directory and its name in the engine's directory.
    pub(crate) async fn get_kv_snapshot_metadata(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: GetKvSnapshotMetadataRequest = decode_request(body)?;
        let bucket = TableBucket {
            table_id: request.table_id,
            partition_id: request.partition_id,
            bucket_id: request.bucket_id,
        };
        let not_exist = |why: &str| {
            WireError::new(
                KV_SNAPSHOT_NOT_EXIST,
                format!("kv snapshot {} of {bucket} does not exist: {why}", request.snapshot_id),
            )
        };
        let info =
            self.catalog.table_by_id(request.table_id).ok_or_else(|| not_exist("no such table"))?;
        self.partition_of(&info, request.partition_id)
            .map_err(|error| not_exist(&error.message))?;
        if !(0..info.bucket_count).contains(&request.bucket_id) {
            return Err(not_exist(&format!("the table has {} buckets", info.bucket_count)));
        }
        let snapshot_id =
            u64::try_from(request.snapshot_id).map_err(|_| not_exist("a negative id"))?;
        let store: Arc<SnapshotStore> = Arc::clone(self.node.snapshot_store());
        let snapshot =
            blocking(move || Ok(store.kept_snapshot(bucket, snapshot_id))).await?.ok_or_else(
                || not_exist("it is not kept (never committed, or dropped by retention)"),
            )?;
        let root = self.node.remote_root().trim_end_matches('/');
        encode_response(&GetKvSnapshotMetadataResponse {
            log_offset: wire_i64(snapshot.log_offset, "log offset")?,
            snapshot_files: snapshot
                .files()
                .map(|file| PbRemotePathAndLocalFile {
                    remote_path: format!("{root}/{}", file.remote_path),
                    local_file_name: file.local_name.clone(),
                })
                .collect(),
        })
    }

    /// The partition a request by table id names: none for a table without partitions, one of
    /// the table's own for a partitioned table.
    fn partition_of(
        &self,
        info: &TableInfo,
        partition_id: Option<i64>,
    ) -> Result<Option<i64>, WireError> {
        match (partition_id, info.is_partitioned()) {
            (None, false) => Ok(None),
            (Some(partition_id), false) => Err(WireError::new(
                codes::TABLE_NOT_PARTITIONED,
                format!(
                    "table {} is not partitioned, but partition {partition_id} was given",
                    info.path
                ),
            )),
            (None, true) => Err(WireError::new(
                codes::PARTITION_NOT_EXISTS,
                format!("table {} is partitioned, but no partition id was given", info.path),
            )),
            (Some(partition_id), true) => self
                .catalog
                .partition_by_id(partition_id)
                .filter(|found| found.table.table_id == info.table_id)
                .map(|_| Some(partition_id))
                .ok_or_else(|| {
                    WireError::new(
                        codes::PARTITION_NOT_EXISTS,
                        format!("table {} has no partition {partition_id}", info.path),
                    )
                }),
        }
    }
}

/// Fluss keeps KV snapshots for primary-key tables only.
fn check_primary_key(info: &TableInfo) -> Result<(), WireError> {
    if info.primary_key.is_empty() {
        return Err(WireError::new(
            NON_PRIMARY_KEY_TABLE,
            format!("table {} is not a primary key table, so it has no kv snapshots", info.path),
        ));
    }
    Ok(())
}

/// The buckets `0..bucket_count` of the table, or of its partition.
fn buckets(info: &TableInfo, partition_id: Option<i64>) -> impl Iterator<Item = TableBucket> {
    let table_id = info.table_id;
    (0..info.bucket_count).map(move |bucket_id| TableBucket { table_id, partition_id, bucket_id })
}

fn pb_snapshot(bucket_id: i32, point: Option<SnapshotPoint>) -> Result<PbKvSnapshot, WireError> {
    Ok(match point {
        Some(point) => PbKvSnapshot {
            bucket_id,
            snapshot_id: Some(wire_i64(point.snapshot_id, "snapshot id")?),
            log_offset: Some(wire_i64(point.log_offset, "log offset")?),
        },
        None => PbKvSnapshot { bucket_id, snapshot_id: None, log_offset: None },
    })
}

/// A stored id or offset as the wire's `int64`; one past `i64::MAX` cannot be stored by this
/// server, so it is a server error rather than a wrapped value.
fn wire_i64(value: u64, what: &str) -> Result<i64, WireError> {
    i64::try_from(value).map_err(|_| {
        WireError::unknown_server_error(format!("the stored {what} {value} is out of range"))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::TablePath;

    fn table(primary_key: &[&str], partition_key: &[&str], bucket_count: i32) -> TableInfo {
        TableInfo {
            table_id: 5,
            path: TablePath::new("db", "t"),
            schema_id: 1,
            schema_json: String::new(),
            columns: vec!["id".into(), "dt".into(), "v".into()],
            primary_key: primary_key.iter().map(|column| column.to_string()).collect(),
            bucket_key: vec!["id".into()],
            partition_key: partition_key.iter().map(|column| column.to_string()).collect(),
            bucket_count,
            properties: BTreeMap::new(),
            custom_properties: BTreeMap::new(),
            comment: None,
            created_time_ms: 0,
            modified_time_ms: 0,
        }
    }

    /// The catalog refuses tables without a primary key, so the wire tests cannot reach this.
    #[test]
    fn a_table_without_a_primary_key_is_refused_as_fluss_refuses_it() {
        let error = check_primary_key(&table(&[], &[], 3)).expect_err("a log table");
        assert_eq!(error.code, NON_PRIMARY_KEY_TABLE);
        assert!(error.message.contains("db.t"), "{}", error.message);
        assert_eq!(check_primary_key(&table(&["id"], &[], 3)), Ok(()));
    }

    #[test]
    fn answers_cover_each_bucket_once_and_absent_snapshots_are_absent_fields() {
        let buckets: Vec<TableBucket> = buckets(&table(&["id"], &[], 3), Some(9)).collect();
        assert_eq!(
            buckets,
            (0..3)
                .map(|bucket_id| TableBucket { table_id: 5, partition_id: Some(9), bucket_id })
                .collect::<Vec<_>>()
        );
        assert_eq!(
            pb_snapshot(2, None),
            Ok(PbKvSnapshot { bucket_id: 2, snapshot_id: None, log_offset: None })
        );
        let point = SnapshotPoint { snapshot_id: 4, log_offset: 70 };
        assert_eq!(
            pb_snapshot(1, Some(point)),
            Ok(PbKvSnapshot { bucket_id: 1, snapshot_id: Some(4), log_offset: Some(70) })
        );
        let huge = SnapshotPoint { snapshot_id: u64::MAX, log_offset: 0 };
        assert_eq!(pb_snapshot(1, Some(huge)).map_err(|error| error.code), Err(-1));
    }
}
