//! Our own prost structs for the Fluss messages this server reads and writes.
//!
//! Field numbers and types are those of Fluss's `FlussApi.proto` (proto2, package `fluss`);
//! the structs are written by hand, without prost-build. Proto2 `required` scalars and
//! messages are plain fields that prost always encodes; `optional` ones are `Option`s, absent
//! when `None`; `repeated` numeric fields marked `[packed = true]` upstream are packed here,
//! the rest are not. Every `bytes` field is a [`bytes::Bytes`], so that decoding a body held in
//! `Bytes` shares it instead of copying.
//!
//! Decoding arbitrary bytes never panics (prost bounds nesting depth), and unknown fields are
//! skipped, so a newer client's extra fields do not break a request.

mod api_versions;
mod common;
mod database;
mod error_response;
mod fetch_log;
mod init_writer;
mod kv_snapshot;
mod kv_snapshot_lease;
mod limit_scan;
mod list_offsets;
mod lookup;
mod metadata;
mod partition;
mod predicate;
mod prefix_lookup;
mod put_kv;
mod scan_kv;
mod security_token;
mod table;

pub use api_versions::{ApiVersionsRequest, ApiVersionsResponse, PbApiVersion};
pub use common::{PbKeyValue, PbPhysicalTablePath, PbTablePath};
pub use database::{
    CreateDatabaseRequest, CreateDatabaseResponse, DatabaseExistsRequest, DatabaseExistsResponse,
    DropDatabaseRequest, DropDatabaseResponse, GetDatabaseInfoRequest, GetDatabaseInfoResponse,
    ListDatabasesRequest, ListDatabasesResponse, PbDatabaseSummary,
};
pub use error_response::ErrorResponse;
pub use fetch_log::{
    FetchLogRequest, FetchLogResponse, PbFetchLogReqForBucket, PbFetchLogReqForTable,
    PbFetchLogRespForBucket, PbFetchLogRespForTable, PbRemoteLogFetchInfo, PbRemoteLogSegment,
};
pub use init_writer::{InitWriterRequest, InitWriterResponse};
pub use kv_snapshot::{
    GetKvSnapshotMetadataRequest, GetKvSnapshotMetadataResponse, GetLatestKvSnapshotsRequest,
    GetLatestKvSnapshotsResponse, ListKvSnapshotsRequest, ListKvSnapshotsResponse, PbKvSnapshot,
    PbRemotePathAndLocalFile,
};
pub use kv_snapshot_lease::{
    lease_pairs, lease_tables, AcquireKvSnapshotLeaseRequest, AcquireKvSnapshotLeaseResponse,
    DropKvSnapshotLeaseRequest, DropKvSnapshotLeaseResponse, PbKvSnapshotLeaseForBucket,
    PbKvSnapshotLeaseForTable, PbTableBucket, ReleaseKvSnapshotLeaseRequest,
    ReleaseKvSnapshotLeaseResponse,
};
pub use limit_scan::{LimitScanRequest, LimitScanResponse};
pub use list_offsets::{ListOffsetsRequest, ListOffsetsResponse, PbListOffsetsRespForBucket};
pub use lookup::{
    LookupRequest, LookupResponse, PbLookupReqForBucket, PbLookupRespForBucket, PbValue,
};
pub use metadata::{
    MetadataRequest, MetadataResponse, PbBucketMetadata, PbPartitionMetadata, PbServerNode,
    PbTableMetadata,
};
pub use partition::{
    CreatePartitionRequest, CreatePartitionResponse, DropPartitionRequest, DropPartitionResponse,
    ListPartitionInfosRequest, ListPartitionInfosResponse, PbPartitionInfo, PbPartitionSpec,
};
pub use predicate::{PbCompoundPredicate, PbLeafPredicate, PbLiteralValue, PbPredicate};
pub use prefix_lookup::{
    PbPrefixLookupReqForBucket, PbPrefixLookupRespForBucket, PbValueList, PrefixLookupRequest,
    PrefixLookupResponse,
};
pub use put_kv::{PbPutKvReqForBucket, PbPutKvRespForBucket, PutKvRequest, PutKvResponse};
pub use scan_kv::{PbScanReqForBucket, ScanKvRequest, ScanKvResponse};
pub use security_token::{GetFileSystemSecurityTokenRequest, GetFileSystemSecurityTokenResponse};
pub use table::{
    CreateTableRequest, CreateTableResponse, DropTableRequest, DropTableResponse,
    GetTableInfoRequest, GetTableInfoResponse, GetTableSchemaRequest, GetTableSchemaResponse,
    ListTablesRequest, ListTablesResponse, TableExistsRequest, TableExistsResponse,
};

/// `offset_type` of ListOffsets: the log start.
pub const LIST_OFFSETS_EARLIEST: i32 = 0;
/// `offset_type` of ListOffsets: the high watermark.
pub const LIST_OFFSETS_LATEST: i32 = 1;
/// `offset_type` of ListOffsets: the first offset at or after `startTimestamp`.
pub const LIST_OFFSETS_TIMESTAMP: i32 = 2;
/// `fetch_offset` of FetchLog meaning "from the log start".
pub const FETCH_FROM_EARLIEST_OFFSET: i64 = -2;
/// `server_type` of ApiVersions: coordinator.
pub const SERVER_TYPE_COORDINATOR: i32 = 1;
/// `server_type` of ApiVersions: tablet server.
pub const SERVER_TYPE_TABLET_SERVER: i32 = 2;
