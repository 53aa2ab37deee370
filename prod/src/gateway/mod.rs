//! The Fluss gateway: the [`WireHandler`] that maps the wire protocol onto the catalog and the
//! node's tablet server. One port plays both the coordinator (admin RPCs) and the tablet server
//! (metadata, writes, reads).
//!
//! Nothing here panics on bytes from the network: bodies are decoded with
//! [`decode_request`], record batches with the `format` decoders, and every error is answered.

mod admin;
mod kv_requests;
mod kv_snapshot_leases;
mod kv_snapshots;
mod log_requests;
mod metadata;
mod partitions;
mod remote_log_fetch;
mod scan_kv;
mod table_json;

pub use kv_requests::{
    LIMIT_SCAN_ROWS_MAX, LOOKUP_KEYS_MAX, PREFIX_BYTES_MAX, PREFIX_LOOKUP_PREFIXES_MAX,
};
pub use log_requests::FETCH_BYTES_MAX;
pub use remote_log_fetch::{RemoteLogReadStats, REMOTE_SEGMENTS_PER_FETCH_MAX};
pub use table_json::{log_ttl_ms_of, partial_updates_of, PROP_LOG_TTL};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::writer_id_allocator::{WriterIdAllocator, WriterIdError};

use crate::catalog::{Catalog, CatalogError, TableInfo};
use crate::format::TableSchema;
use crate::node::NodeHandle;
use crate::wire::error::{decode_request, encode_response, AUTHENTICATE_EXCEPTION};
use crate::wire::messages::{
    GetFileSystemSecurityTokenResponse, InitWriterRequest, InitWriterResponse, PbKeyValue,
};
use crate::wire::{ApiKey, WireError, WireHandler, WireResponse};

/// Serves the Fluss RPCs of one node.
pub struct FlussGateway {
    inner: Arc<Gateway>,
}

/// What every request handler shares.
pub(crate) struct Gateway {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) node: NodeHandle,
    /// The address clients are told to connect to, for the coordinator and the tablet server.
    pub(crate) advertised: SocketAddr,
    writer_ids: Arc<WriterIdAllocator>,
    /// The clients' reads of the tiered changelog.
    remote_reads: remote_log_fetch::RemoteLogReads,
}

/// Where the writer-id counter is kept, beside the catalog (Fluss's coordinator hands out
/// writer ids too).
pub const WRITER_ID_MARK_FILE: &str = "catalog/writer_ids.bin";
/// Writer ids reserved per durable write of the mark.
pub const WRITER_ID_BLOCK: u64 = 1024;

impl FlussGateway {
    /// A gateway for the catalog's tables on `node`; opens the writer-id counter
    /// ([`WRITER_ID_MARK_FILE`]) in the catalog's directory.
    pub fn new(
        catalog: Arc<Catalog>,
        node: NodeHandle,
        advertised: SocketAddr,
    ) -> Result<FlussGateway, WriterIdError> {
        let writer_ids =
            Arc::new(WriterIdAllocator::open(catalog.fs(), WRITER_ID_MARK_FILE, WRITER_ID_BLOCK)?);
        let remote_reads = remote_log_fetch::RemoteLogReads::new(
            node.client_remote_access().clone(),
            node.remote_root(),
        );
        Ok(FlussGateway {
            inner: Arc::new(Gateway { catalog, node, advertised, writer_ids, remote_reads }),
        })
    }

    /// The counts of the tiered range's reads (clients sent to the remote tier, bytes served
    /// through the node), for `/metrics`.
    pub fn remote_log_read_stats(&self) -> Arc<RemoteLogReadStats> {
        Arc::clone(self.inner.remote_reads.stats())
    }
}

/// How often automatic partitioning runs (Fluss's `auto-partition.check.interval`).
pub const AUTO_PARTITION_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);

impl FlussGateway {
    /// Automatic partitioning (see `Catalog::auto_partition_tick`) now, then every
    /// `interval` until `stopped` completes. A failed pass is logged and tried again at the
    /// next one.
    pub fn auto_partitioning(
        &self,
        interval: Duration,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let gateway = Arc::clone(&self.inner);
        async move {
            let mut stopped = std::pin::pin!(stopped);
            loop {
                if let Err(error) = gateway.auto_partition_tick(gateway.catalog.now_wall_ms()).await
                {
                    tracing::error!(%error, "automatic partitioning failed");
                }
                let tick = std::pin::pin!(tokio::time::sleep(interval));
                if let futures::future::Either::Left(_) =
                    futures::future::select(stopped.as_mut(), tick).await
                {
                    return;
                }
            }
        }
    }
}

impl WireHandler for FlussGateway {
    fn handle(
        &self,
        api_key: i16,
        _api_version: i16,
        body: Bytes,
    ) -> BoxFuture<'static, WireResponse> {
        let gateway = Arc::clone(&self.inner);
        async move {
            let Some(key) = ApiKey::from_id(api_key) else {
                return Err(WireError::unsupported_version(format!("unknown api key {api_key}")));
            };
            gateway.dispatch(key, body).await
        }
        .boxed()
    }
}

impl Gateway {
    async fn dispatch(self: Arc<Self>, key: ApiKey, body: Bytes) -> WireResponse {
        match key {
            ApiKey::CreateDatabase => self.create_database(&body).await,
            ApiKey::DropDatabase => self.drop_database(&body).await,
            ApiKey::ListDatabases => self.list_databases(&body),
            ApiKey::DatabaseExists => self.database_exists(&body),
            ApiKey::GetDatabaseInfo => self.get_database_info(&body),
            ApiKey::CreateTable => self.create_table(&body).await,
            ApiKey::DropTable => self.drop_table(&body).await,
            ApiKey::GetTableInfo => self.get_table_info(&body),
            ApiKey::ListTables => self.list_tables(&body),
            ApiKey::TableExists => self.table_exists(&body),
            ApiKey::GetTableSchema => self.get_table_schema(&body),
            ApiKey::Metadata => self.metadata(&body),
            ApiKey::CreatePartition => self.create_partition(&body).await,
            ApiKey::DropPartition => self.drop_partition(&body).await,
            ApiKey::ListPartitionInfos => self.list_partition_infos(&body),
            ApiKey::InitWriter => {
                let _request: InitWriterRequest = decode_request(&body)?;
                let writer_ids = Arc::clone(&self.writer_ids);
                // A new block of ids is made durable (write, fsync, rename) before it is used.
                let writer_id = blocking(move || {
                    writer_ids.allocate().map_err(|error| {
                        let code = if error.is_retriable() {
                            ErrorCode::StorageException
                        } else {
                            ErrorCode::UnknownServerError
                        };
                        tracing::error!(%error, "cannot allocate a writer id");
                        WireError::from(ApiError::new(code, error.to_string()))
                    })
                })
                .await?;
                encode_response(&InitWriterResponse { writer_id })
            }
            ApiKey::GetFileSystemSecurityToken => {
                let token = self.remote_reads.access().token();
                encode_response(&GetFileSystemSecurityTokenResponse {
                    schema: token.schema,
                    token: Bytes::from(token.token),
                    expiration_time: None,
                    addition_info: token
                        .addition_info
                        .into_iter()
                        .map(|(key, value)| PbKeyValue { key, value })
                        .collect(),
                })
            }
            ApiKey::PutKv => self.put_kv(&body).await,
            ApiKey::Lookup => self.lookup(&body).await,
            ApiKey::PrefixLookup => self.prefix_lookup(&body).await,
            ApiKey::LimitScan => self.limit_scan(&body).await,
            ApiKey::FetchLog => self.fetch_log(&body).await,
            ApiKey::ListOffsets => self.list_offsets(&body).await,
            ApiKey::ScanKv => self.scan_kv(&body).await,
            ApiKey::GetLatestKvSnapshots => self.get_latest_kv_snapshots(&body).await,
            ApiKey::GetKvSnapshotMetadata => self.get_kv_snapshot_metadata(&body).await,
            ApiKey::ListKvSnapshots => self.list_kv_snapshots(&body).await,
            ApiKey::AcquireKvSnapshotLease => self.acquire_kv_snapshot_lease(&body).await,
            ApiKey::ReleaseKvSnapshotLease => self.release_kv_snapshot_lease(&body).await,
            ApiKey::DropKvSnapshotLease => self.drop_kv_snapshot_lease(&body).await,
            // Sent only by a client configured for SASL: refused at once, naming the feature,
            // with the code the clients give up on (not the retriable one, 51).
            ApiKey::Authenticate => Err(WireError::new(
                AUTHENTICATE_EXCEPTION,
                "SASL authentication is not supported by kvtablet: connect with the PLAINTEXT \
                 protocol (no security.protocol or SASL settings)",
            )),
            other => Err(WireError::unsupported_version(format!(
                "{} is not served by this server",
                other.name()
            ))),
        }
    }
}

/// A catalog error as the client must see it.
impl Gateway {
    /// The table a data request names by id, with the schema its rows are decoded by; a table
    /// that does not exist is UNKNOWN_TABLE_OR_BUCKET.
    pub(crate) fn table_with_schema(
        &self,
        table_id: i64,
    ) -> Result<(TableInfo, TableSchema), ApiError> {
        let info = self.catalog.table_by_id(table_id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownTableOrBucket,
                format!("table {table_id} does not exist"),
            )
        })?;
        let schema = table_json::table_schema_of(&info)
            .map_err(|error| ApiError::new(ErrorCode::UnknownServerError, error.message))?;
        Ok((info, schema))
    }
}

pub(crate) fn catalog_error(error: CatalogError) -> WireError {
    WireError::new(error.error_code(), error.to_string())
}

/// A core error as a per-bucket `(error_code, error_message)`.
pub(crate) fn bucket_error(error: &ApiError) -> (Option<i32>, Option<String>) {
    (Some(error.code.wire_code()), Some(error.message.clone()))
}

/// Runs blocking catalog work (file writes and fsync) off the connection's task.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| WireError::unknown_server_error(format!("catalog task failed: {error}")))?
}
