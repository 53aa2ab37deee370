//! KV snapshot leases (Fluss 1056–1058): a client pins `(bucket, snapshot id)` pairs under a
//! lease id of its choosing, so that retention keeps those snapshots until the lease is
//! released, dropped or expires. Field numbers are Fluss's `FlussApi.proto`.

use std::collections::BTreeMap;

use kvtablet_core::TableBucket;

/// AcquireKvSnapshotLease (1056): pin each listed snapshot and set the lease's expiration to
/// now + `lease_duration_ms` (no snapshots: a renewal).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AcquireKvSnapshotLeaseRequest {
    #[prost(string, required, tag = "1")]
    pub lease_id: String,
    #[prost(int64, required, tag = "2")]
    pub lease_duration_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub snapshots_to_lease: Vec<PbKvSnapshotLeaseForTable>,
}

/// The requested snapshots that are not kept (so not pinned).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AcquireKvSnapshotLeaseResponse {
    #[prost(message, repeated, tag = "1")]
    pub unavailable_snapshots: Vec<PbKvSnapshotLeaseForTable>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbKvSnapshotLeaseForTable {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(message, repeated, tag = "2")]
    pub bucket_snapshots: Vec<PbKvSnapshotLeaseForBucket>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbKvSnapshotLeaseForBucket {
    #[prost(int64, optional, tag = "1")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "2")]
    pub bucket_id: i32,
    #[prost(int64, required, tag = "3")]
    pub snapshot_id: i64,
}

/// ReleaseKvSnapshotLease (1057): unpin the listed buckets of the lease.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReleaseKvSnapshotLeaseRequest {
    #[prost(string, required, tag = "1")]
    pub lease_id: String,
    #[prost(message, repeated, tag = "2")]
    pub buckets_to_release: Vec<PbTableBucket>,
}

/// A bucket of a table, partitioned or not.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbTableBucket {
    #[prost(int64, required, tag = "1")]
    pub table_id: i64,
    #[prost(int64, optional, tag = "2")]
    pub partition_id: Option<i64>,
    #[prost(int32, required, tag = "3")]
    pub bucket_id: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReleaseKvSnapshotLeaseResponse {}

/// DropKvSnapshotLease (1058): forget the lease and everything it pins.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropKvSnapshotLeaseRequest {
    #[prost(string, required, tag = "1")]
    pub lease_id: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DropKvSnapshotLeaseResponse {}

/// `(bucket, snapshot id)` pairs as the wire groups them, by table.
pub fn lease_tables(pairs: &[(TableBucket, u64)]) -> Vec<PbKvSnapshotLeaseForTable> {
    let mut tables: BTreeMap<i64, Vec<PbKvSnapshotLeaseForBucket>> = BTreeMap::new();
    for (bucket, snapshot_id) in pairs {
        tables.entry(bucket.table_id).or_default().push(PbKvSnapshotLeaseForBucket {
            partition_id: bucket.partition_id,
            bucket_id: bucket.bucket_id,
            snapshot_id: i64::try_from(*snapshot_id).unwrap_or(i64::MAX),
        });
    }
    tables
        .into_iter()
        .map(|(table_id, bucket_snapshots)| PbKvSnapshotLeaseForTable {
            table_id,
            bucket_snapshots,
        })
        .collect()
}

/// The wire's grouped pairs, flat; a negative snapshot id (never a real one) is skipped.
pub fn lease_pairs(tables: &[PbKvSnapshotLeaseForTable]) -> Vec<(TableBucket, u64)> {
    tables
        .iter()
        .flat_map(|table| {
            table.bucket_snapshots.iter().filter_map(move |bucket| {
                let snapshot_id = u64::try_from(bucket.snapshot_id).ok()?;
                let table_bucket = TableBucket {
                    table_id: table.table_id,
                    partition_id: bucket.partition_id,
                    bucket_id: bucket.bucket_id,
                };
                Some((table_bucket, snapshot_id))
            })
        })
        .collect()
}
