//! Typed requests and responses between clients, tablet servers and the coordinator.
//!
//! These are the engine's own messages; `prod` maps the Fluss wire protocol onto them and
//! drops the fields the wire has no room for (such as `read_offset`).

use bytes::Bytes;

use crate::error::ApiError;
use crate::lease::LeaseError;
use crate::log::{LogBatch, WriterBatch};
use crate::snapshot::{CompletedSnapshot, SnapshotStoreError};
use crate::table_bucket::TableBucket;
use crate::tiering::{RemoteLogSegment, RemoteLogStoreError};

/// A node of the cluster: a tablet server, the coordinator or a client.
pub type NodeId = u32;

/// One upsert (`value = Some`) or delete (`value = None`) of a primary key.
///
/// A value is opaque bytes that start with the little-endian `i16` schema id, as Fluss stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Who leads a bucket, as the coordinator last decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLeader {
    pub bucket: TableBucket,
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Coordinator → tablet server: lead `bucket` from `leader_epoch` on.
    BecomeLeader { bucket: TableBucket, leader_epoch: u32 },
    /// Coordinator → tablet server: stop leading `bucket`; `leader_epoch` is the new epoch.
    BecomeFollower { bucket: TableBucket, leader_epoch: u32 },
    /// Client → leader: upserts and deletes, applied in order as one batch. With `writer`, a
    /// batch resent after a lost response is recognised and not applied twice.
    /// `target_columns` makes it a partial update: only those columns (indexes into the
    /// table's columns, the key columns among them) are written, merged into existing rows.
    PutKv {
        bucket: TableBucket,
        writes: Vec<KvWrite>,
        writer: Option<WriterBatch>,
        target_columns: Option<Vec<u32>>,
    },
    /// Client → leader: point lookups.
    Lookup { bucket: TableBucket, keys: Vec<Vec<u8>> },
    /// Client → leader: every value whose key starts with `prefix`, in key order.
    PrefixLookup { bucket: TableBucket, prefix: Vec<u8> },
    /// Client → leader: the first `limit` values in key order.
    LimitScan { bucket: TableBucket, limit: u32 },
    /// Client → coordinator: the current leaders of every bucket.
    Metadata,
    /// Client → leader: open, continue or close a full-scan session (Fluss api key 1061).
    ScanKv(ScanKvRequest),
    /// Client → leader: changelog batches from `from_offset` up to the high watermark.
    FetchLog { bucket: TableBucket, from_offset: u64, max_bytes: u64 },
    /// Client → leader: one offset of the bucket's changelog.
    ListOffsets { bucket: TableBucket, spec: OffsetSpec },
    /// Leader → coordinator: a new KV snapshot id for `bucket`, durable before the answer.
    AllocateKvSnapshotId { bucket: TableBucket },
    /// Leader → coordinator: commit a completed KV snapshot (Fluss's CommitKvSnapshot, 1022).
    /// Idempotent: asking again after a lost answer is safe.
    CommitKvSnapshot { snapshot: Box<CompletedSnapshot> },
    /// Leader → coordinator: the bucket's latest committed KV snapshot, which a new term's
    /// first snapshot reuses files of.
    GetLatestKvSnapshot { bucket: TableBucket },
    /// Leader → coordinator: the bucket's kept KV snapshots, newest first (a recovery falls
    /// back from a broken one to the one before it).
    ListKvSnapshots { bucket: TableBucket },
    /// Leader → coordinator: snapshot `snapshot_id` of `bucket` is broken (a file missing or
    /// damaged): the coordinator forgets it and deletes what no kept snapshot needs (Fluss
    /// #3790). Idempotent.
    ReportBrokenKvSnapshot { bucket: TableBucket, snapshot_id: u64 },
    /// Leader → coordinator: record a tiered changelog segment in the bucket's remote-log
    /// manifest (Fluss's CommitRemoteLogManifest). Idempotent.
    CommitRemoteLogSegment { segment: Box<RemoteLogSegment> },
    /// Leader → coordinator: the bucket's remote end (everything below it is tiered).
    GetRemoteLogEnd { bucket: TableBucket },
    /// Leader → coordinator: the tiered segment that holds `offset` (a fetch below the local
    /// log start is served from it).
    GetRemoteLogSegment { bucket: TableBucket, offset: u64 },
    /// Leader → coordinator: remote log retention (`table.log.ttl` on the remote tier) of the
    /// bucket under `leader_epoch`: the oldest segments whose newest batch is older than
    /// `expire_before_ms` and that KV recovery no longer needs are removed from the manifest,
    /// then deleted. Answered `RemoteLogStart`.
    ExpireRemoteLog { bucket: TableBucket, leader_epoch: u32, expire_before_ms: u64 },
    /// Leader → coordinator: the first offset the bucket's remote tier holds (ListOffsets
    /// earliest). Answered `RemoteLogStart`.
    GetRemoteLogStart { bucket: TableBucket },
    /// Client → coordinator: pin each `(bucket, snapshot id)` under `lease_id` and set the
    /// lease's expiration to now + `duration_ms` (Fluss's AcquireKvSnapshotLease, 1056; with
    /// no snapshots, a renewal). Answered `KvSnapshotLeaseAcquired`.
    AcquireKvSnapshotLease {
        lease_id: String,
        duration_ms: u64,
        snapshots: Vec<(TableBucket, u64)>,
    },
    /// Client → coordinator: unpin `buckets` of `lease_id` (ReleaseKvSnapshotLease, 1057).
    /// Unknown leases and buckets are no-ops. Answered `Ok`.
    ReleaseKvSnapshotLease { lease_id: String, buckets: Vec<TableBucket> },
    /// Client → coordinator: drop `lease_id` (DropKvSnapshotLease, 1058); unknown: a no-op.
    /// Answered `Ok`.
    DropKvSnapshotLease { lease_id: String },
    /// Leader → coordinator: the tiered segments that together hold `[from_offset,
    /// to_offset)`, in offset order (a KV recovery replays them); the list stops short where
    /// the remote tier has a gap.
    ListRemoteLogSegments { bucket: TableBucket, from_offset: u64, to_offset: u64 },
}

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next acknowledged batch gets.
    Latest,
    /// The first offset committed at or after this wall-clock time, else the high watermark.
    Timestamp { timestamp_ms: u64 },
}

/// `PbScanReqForBucket`: which bucket to scan and an optional row limit across all batches
/// (absent or `<= 0` is unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketScanRequest {
    pub bucket: TableBucket,
    pub limit: Option<i64>,
}

/// `ScanKvRequest`: exactly one of `scanner_id` (continue or close) and `bucket_scan_req`
/// (open) is set. Every data request carries `call_seq_id` (0 at open, then +1 per
/// continuation) and a positive `batch_size_bytes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanKvRequest {
    pub scanner_id: Option<Vec<u8>>,
    pub bucket_scan_req: Option<BucketScanRequest>,
    pub call_seq_id: Option<i32>,
    pub batch_size_bytes: Option<i32>,
    pub close_scanner: Option<bool>,
}

/// `ScanKvResponse`. Errors travel in the body, as Fluss sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanKvResponse {
    pub error: Option<ApiError>,
    pub scanner_id: Option<Vec<u8>>,
    pub has_more_results: Option<bool>,
    /// A `DefaultValueRecordBatch` (see `scan::value_record_batch`).
    pub records: Option<Bytes>,
    /// Set on the first response only: every change below it is in the scan, none at or
    /// above it.
    pub log_offset: Option<i64>,
    /// Not on the wire: the leader epoch the session was opened under, for the simulator's
    /// fencing oracle.
    pub leader_epoch: Option<u32>,
}

impl ScanKvResponse {
    pub fn error(error: ApiError) -> ScanKvResponse {
        ScanKvResponse { error: Some(error), ..ScanKvResponse::default() }
    }
}

impl Request {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::BecomeLeader { .. } => "become_leader",
            Request::BecomeFollower { .. } => "become_follower",
            Request::PutKv { .. } => "put_kv",
            Request::Lookup { .. } => "lookup",
            Request::PrefixLookup { .. } => "prefix_lookup",
            Request::LimitScan { .. } => "limit_scan",
            Request::Metadata => "metadata",
            Request::ScanKv(_) => "scan_kv",
            Request::FetchLog { .. } => "fetch_log",
            Request::ListOffsets { .. } => "list_offsets",
            Request::AllocateKvSnapshotId { .. } => "allocate_kv_snapshot_id",
            Request::CommitKvSnapshot { .. } => "commit_kv_snapshot",
            Request::GetLatestKvSnapshot { .. } => "get_latest_kv_snapshot",
            Request::ListKvSnapshots { .. } => "list_kv_snapshots",
            Request::ReportBrokenKvSnapshot { .. } => "report_broken_kv_snapshot",
            Request::CommitRemoteLogSegment { .. } => "commit_remote_log_segment",
            Request::GetRemoteLogEnd { .. } => "get_remote_log_end",
            Request::GetRemoteLogSegment { .. } => "get_remote_log_segment",
            Request::ExpireRemoteLog { .. } => "expire_remote_log",
            Request::GetRemoteLogStart { .. } => "get_remote_log_start",
            Request::AcquireKvSnapshotLease { .. } => "acquire_kv_snapshot_lease",
            Request::ReleaseKvSnapshotLease { .. } => "release_kv_snapshot_lease",
            Request::DropKvSnapshotLease { .. } => "drop_kv_snapshot_lease",
            Request::ListRemoteLogSegments { .. } => "list_remote_log_segments",
        }
    }

    /// The bucket the request is about, when it names one (a scan continuation names only its
    /// session).
    pub fn bucket(&self) -> Option<TableBucket> {
        match self {
            Request::BecomeLeader { bucket, .. }
            | Request::BecomeFollower { bucket, .. }
            | Request::PutKv { bucket, .. }
            | Request::Lookup { bucket, .. }
            | Request::PrefixLookup { bucket, .. }
            | Request::LimitScan { bucket, .. }
            | Request::FetchLog { bucket, .. }
            | Request::ListOffsets { bucket, .. }
            | Request::AllocateKvSnapshotId { bucket }
            | Request::GetLatestKvSnapshot { bucket }
            | Request::GetRemoteLogEnd { bucket }
            | Request::GetRemoteLogSegment { bucket, .. }
            | Request::ExpireRemoteLog { bucket, .. }
            | Request::GetRemoteLogStart { bucket }
            | Request::ListKvSnapshots { bucket }
            | Request::ReportBrokenKvSnapshot { bucket, .. }
            | Request::ListRemoteLogSegments { bucket, .. } => Some(*bucket),
            Request::CommitKvSnapshot { snapshot } => Some(snapshot.bucket),
            Request::CommitRemoteLogSegment { segment } => Some(segment.bucket),
            Request::ScanKv(request) => request.bucket_scan_req.as_ref().map(|open| open.bucket),
            Request::Metadata
            | Request::AcquireKvSnapshotLease { .. }
            | Request::ReleaseKvSnapshotLease { .. }
            | Request::DropKvSnapshotLease { .. } => None,
        }
    }
}

impl Response {
    /// A short name for errors and traces (never the whole payload).
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Ok => "ok",
            Response::PutKv { .. } => "put_kv",
            Response::Lookup { .. } => "lookup",
            Response::Rows { .. } => "rows",
            Response::Metadata { .. } => "metadata",
            Response::ScanKv(_) => "scan_kv",
            Response::FetchLog { .. } => "fetch_log",
            Response::Offset { .. } => "offset",
            Response::KvSnapshotId { .. } => "kv_snapshot_id",
            Response::LatestKvSnapshot(_) => "latest_kv_snapshot",
            Response::KeptKvSnapshots(_) => "kept_kv_snapshots",
            Response::KvSnapshotRefused(_) => "kv_snapshot_refused",
            Response::RemoteLogEnd { .. } => "remote_log_end",
            Response::RemoteLogStart { .. } => "remote_log_start",
            Response::RemoteLogSegment(_) => "remote_log_segment",
            Response::RemoteLogSegments(_) => "remote_log_segments",
            Response::RemoteLogRefused(_) => "remote_log_refused",
            Response::KvSnapshotLeaseAcquired { .. } => "kv_snapshot_lease_acquired",
            Response::KvSnapshotLeaseRefused(_) => "kv_snapshot_lease_refused",
            Response::Error(_) => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok,
    /// The batch occupies changelog offsets `base_offset..end_offset` and is durable.
    /// `duplicate`: the writer's batch had been appended before, at these offsets, and was not
    /// applied again.
    PutKv {
        base_offset: u64,
        end_offset: u64,
        duplicate: bool,
    },
    /// One entry per requested key, read at the flushed offset `read_offset`.
    Lookup {
        values: Vec<Option<Vec<u8>>>,
        read_offset: u64,
    },
    /// Values in key order, read at the flushed offset `read_offset`.
    Rows {
        values: Vec<Vec<u8>>,
        read_offset: u64,
    },
    Metadata {
        leaders: Vec<BucketLeader>,
    },
    ScanKv(ScanKvResponse),
    /// Whole batches below the high watermark, in order.
    FetchLog {
        batches: Vec<LogBatch>,
        high_watermark: u64,
        log_start_offset: u64,
    },
    /// The offset ListOffsets asked for.
    Offset {
        offset: u64,
    },
    /// A KV snapshot id, durable at the coordinator.
    KvSnapshotId {
        snapshot_id: u64,
    },
    /// A bucket's latest committed KV snapshot, if it has one.
    LatestKvSnapshot(Option<Box<CompletedSnapshot>>),
    /// A bucket's kept KV snapshots, newest first.
    KeptKvSnapshots(Vec<CompletedSnapshot>),
    /// The coordinator's snapshot store refused or failed (its verdict says whether to ask
    /// again).
    KvSnapshotRefused(SnapshotStoreError),
    /// The bucket's remote end, after the commit that asked.
    RemoteLogEnd {
        end_offset: u64,
    },
    /// The bucket's remote log start (after the retention that asked).
    RemoteLogStart {
        start_offset: u64,
    },
    /// The tiered segment asked for, if one holds the offset.
    RemoteLogSegment(Option<Box<RemoteLogSegment>>),
    /// Tiered segments in offset order.
    RemoteLogSegments(Vec<RemoteLogSegment>),
    /// The coordinator's remote-log store refused or failed.
    RemoteLogRefused(RemoteLogStoreError),
    /// A lease acquired (or renewed): the requested pairs that are not kept, which it does
    /// not pin (Fluss's `unavailable_snapshots`).
    KvSnapshotLeaseAcquired {
        unavailable: Vec<(TableBucket, u64)>,
    },
    /// A lease request refused or failed (`LeaseError::api_error` is its wire form; its
    /// verdict says whether to ask again).
    KvSnapshotLeaseRefused(LeaseError),
    Error(ApiError),
}
