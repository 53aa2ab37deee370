//! A tablet server: hosts replicas and answers requests for them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use crate::sync::{Mutex, MutexGuard, Stop, StopCause};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{Env, RemoteError, RpcHandler};
use crate::error::{ApiError, ErrorCode};
use crate::kv::{KvError, KvTablet, KvTabletConfig, PartialUpdates, RowMerger};
use crate::log::{LogBatch, LogError, LogRegistry, LogTablet};
use crate::message::{
    KvWrite, NodeId, OffsetSpec, Request, Response, ScanKvRequest, ScanKvResponse,
};
use crate::mutant::Mutant;
use crate::notify::Notified;
use crate::recovery::{clear_crashed_recoveries, DownloadRetry};
use crate::replica::Replica;
use crate::scan::scan_kv_handler::handle_scan_kv;
use crate::scan::scanner_manager::SessionLookup;
use crate::scan::{ScannerConfig, ScannerManager};
use crate::snapshot::SnapshotSchedule;
use crate::table_bucket::TableBucket;
use crate::tablet_dirs::{self, TablePath};
use crate::task::{catch_panic, join_if_some, panic_message, stop_on_panic, Task};
use crate::tiering::{read_remote_log, RemoteLogReadError, TieringSchedule};

/// A primary-key table as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    pub table_id: i64,
    /// The table's database and name: its buckets' local directories are named by them
    /// ([`crate::tablet_dirs`]).
    pub path: TablePath,
    pub bucket_count: i32,
    /// Schema ids a written value may carry.
    pub schema_ids: Vec<i16>,
    /// How a put with target columns merges into existing rows; `None` refuses such puts
    /// with `INVALID_TARGET_COLUMN`.
    pub partial_updates: Option<PartialUpdates>,
    /// A partitioned table's buckets are those of its partitions, each bucket naming its
    /// partition's id; they are served only for the partitions added by
    /// [`TabletServer::add_partition`]. A non-partitioned table's buckets name no partition.
    pub partitioned: bool,
    /// Fluss's `table.log.ttl` on the remote tier; `None`: the server's
    /// (`TieringSchedule::remote_log_ttl_ms`).
    pub log_ttl_ms: Option<u64>,
}

/// A table as the server serves it: its config and, when partitioned, the partitions served.
#[derive(Debug, Clone)]
struct ServedTable {
    config: TableConfig,
    /// Ids of the partitions served; always empty for a non-partitioned table.
    partitions: BTreeSet<i64>,
}

impl ServedTable {
    fn new(config: TableConfig) -> Self {
        ServedTable { config, partitions: BTreeSet::new() }
    }

    /// Whether `bucket` is one of this table's served buckets: a bucket id in range, and a
    /// served partition id for a partitioned table, none for a non-partitioned one. A
    /// partition the table does not have (never added, or removed) is `PartitionNotExists`.
    fn check(&self, bucket: TableBucket) -> Result<(), KvError> {
        if bucket.bucket_id < 0 || bucket.bucket_id >= self.config.bucket_count {
            return Err(KvError::UnknownTableOrBucket(bucket.to_string()));
        }
        match (self.config.partitioned, bucket.partition_id) {
            (false, None) => Ok(()),
            (false, Some(_)) => Err(KvError::UnknownTableOrBucket(format!(
                "{bucket}: table {} is not partitioned",
                bucket.table_id
            ))),
            (true, None) => Err(KvError::UnknownTableOrBucket(format!(
                "{bucket}: table {} is partitioned, a bucket of it names its partition",
                bucket.table_id
            ))),
            (true, Some(partition_id)) if self.partitions.contains(&partition_id) => Ok(()),
            (true, Some(partition_id)) => Err(KvError::PartitionNotExists(format!(
                "partition {partition_id} of table {} ({bucket})",
                bucket.table_id
            ))),
        }
    }
}

/// Per-request limits: everything a client sends is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub writes_per_put_max: usize,
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub lookup_keys_max: usize,
    pub limit_scan_rows_max: u32,
}

impl RequestLimits {
    pub const DEFAULT: RequestLimits = RequestLimits {
        writes_per_put_max: 100_000,
        key_bytes_max: 64 * 1024,
        value_bytes_max: 16 * 1024 * 1024,
        lookup_keys_max: 100_000,
        limit_scan_rows_max: 1_000_000,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletServerConfig {
    pub tables: Vec<TableConfig>,
    pub kv: KvTabletConfig,
    pub limits: RequestLimits,
    pub scanner: ScannerConfig,
    /// Periodic KV snapshots of led buckets; `None` takes none.
    pub snapshots: Option<Arc<SnapshotSchedule>>,
    /// Changelog tiering and local retention of led buckets; `None` tiers nothing and
    /// deletes no local segment.
    pub tiering: Option<Arc<TieringSchedule>>,
}

pub struct TabletServer {
    env: Env,
    config: TabletServerConfig,
    /// The tables served: those of the config, then those added by [`TabletServer::add_table`].
    tables: Mutex<BTreeMap<i64, ServedTable>>,
    logs: LogRegistry,
    replicas: Mutex<Replicas>,
    scanners: Arc<ScannerManager>,
    evictor: Mutex<Option<Task>>,
    /// Set when a panic that no single replica owns (in the scan registry or its evictor, in a
    /// request without a bucket) left the server's shared state in doubt: every request is
    /// refused from then on. The scanner manager's.
    stop: Arc<Stop>,
    this: Weak<TabletServer>,
}

#[derive(Default)]
struct Replicas {
    by_bucket: BTreeMap<TableBucket, Arc<Replica>>,
    /// Set by shutdown, under the same lock, so that no replica is created after it.
    shut_down: bool,
}

impl std::fmt::Debug for TabletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabletServer").field("node_id", &self.env.node_id).finish_non_exhaustive()
    }
}

impl TabletServer {
    pub fn start(env: Env, config: TabletServerConfig, logs: LogRegistry) -> Arc<TabletServer> {
        for table in &config.tables {
            assert!(table.bucket_count > 0, "table {} has no buckets", table.table_id);
            assert!(!table.schema_ids.is_empty(), "table {} has no schema", table.table_id);
            if let Err(error) = logs.dirs().add_table(table.table_id, &table.path) {
                panic!("table {} of the server's config: {error}", table.table_id);
            }
            let table_dir = tablet_dirs::table_dir(&table.path, table.table_id);
            clear_crashed_recoveries(env.fs.as_ref(), &table_dir);
        }
        let tables = config
            .tables
            .iter()
            .map(|table| (table.table_id, ServedTable::new(table.clone())))
            .collect();
        let scanners = Arc::new(ScannerManager::new(env.clone(), config.scanner));
        let stop = scanners.stop_signal().clone();
        let name = format!("scanner-expiration node{}", env.node_id);
        let evictor = stop_on_panic(scanners.clone().run_evictor(), stop.clone(), name.clone());
        let evictor = Task::spawn(&env.executor, &env.ledger, name, evictor);
        Arc::new_cyclic(|this| TabletServer {
            env,
            config,
            tables: Mutex::new(tables),
            logs,
            replicas: Mutex::new(Replicas::default()),
            scanners,
            evictor: Mutex::new(Some(evictor)),
            stop,
            this: this.clone(),
        })
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Serves `table` from now on (its buckets are created by BecomeLeader or
    /// BecomeFollower). Returns `Ok(false)` if a table with the same id is already served, in
    /// which case nothing changes; a table without buckets or schema ids is refused.
    pub fn add_table(&self, table: TableConfig) -> Result<bool, ApiError> {
        if table.bucket_count <= 0 || table.schema_ids.is_empty() {
            return Err(ApiError::new(
                ErrorCode::UnknownTableOrBucket,
                format!("table {} needs at least one bucket and one schema id", table.table_id),
            ));
        }
        let mut tables = self.lock_tables();
        if tables.contains_key(&table.table_id) {
            return Ok(false);
        }
        self.logs.dirs().add_table(table.table_id, &table.path).map_err(|error| {
            ApiError::new(
                ErrorCode::UnknownTableOrBucket,
                format!("table {}: {error}", table.table_id),
            )
        })?;
        let table_dir = tablet_dirs::table_dir(&table.path, table.table_id);
        clear_crashed_recoveries(self.env.fs.as_ref(), &table_dir);
        tables.insert(table.table_id, ServedTable::new(table));
        Ok(true)
    }

    /// Serves partition `partition_id`, named `partition_name`, of the partitioned table
    /// `table_id` from now on (its buckets are created by BecomeLeader or BecomeFollower).
    /// Returns `Ok(false)` if it is served already; a table that is not served or not
    /// partitioned, a negative id, or a name that cannot name a directory is refused.
    pub fn add_partition(
        &self,
        table_id: i64,
        partition_id: i64,
        partition_name: &str,
    ) -> Result<bool, ApiError> {
        let mut tables = self.lock_tables();
        let table = tables.get_mut(&table_id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownTableOrBucket,
                format!("table {table_id} is not served here"),
            )
        })?;
        if !table.config.partitioned || partition_id < 0 {
            return Err(ApiError::new(
                ErrorCode::UnknownTableOrBucket,
                format!(
                    "partition {partition_id} of table {table_id}: the table is {}",
                    if table.config.partitioned { "partitioned" } else { "not partitioned" }
                ),
            ));
        }
        self.logs
            .dirs()
            .add_partition(table_id, partition_id, partition_name)
            .map_err(|error| ApiError::new(ErrorCode::PartitionNotExists, format!("{error}")))?;
        Ok(table.partitions.insert(partition_id))
    }

    /// Stops serving partition `partition_id` of `table_id` (a dropped partition): its buckets
    /// answer PARTITION_NOT_EXISTS from now on, and its replicas are stopped and forgotten, as
    /// [`TabletServer::remove_table`] does for a table. The returned future completes when
    /// their flush tasks have ended; it yields whether the partition was served.
    pub fn remove_partition(&self, table_id: i64, partition_id: i64) -> BoxFuture<'static, bool> {
        // The partition goes first, so that no request can create a replica for it again.
        let removed = self
            .lock_tables()
            .get_mut(&table_id)
            .is_some_and(|table| table.partitions.remove(&partition_id));
        self.logs.dirs().remove_partition(table_id, partition_id);
        let stopped = if self.env.mutants.is_on(Mutant::PartitionDropKeepsReplicas) {
            futures::future::ready(()).boxed()
        } else {
            self.stop_replicas_where(|bucket| {
                bucket.table_id == table_id && bucket.partition_id == Some(partition_id)
            })
        };
        async move {
            stopped.await;
            removed
        }
        .boxed()
    }

    /// The ids of the partitions of `table_id` served, in order (none for a table that is not
    /// served or not partitioned).
    pub fn partitions(&self, table_id: i64) -> Vec<i64> {
        self.lock_tables()
            .get(&table_id)
            .map(|table| table.partitions.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Stops hosting `table_id` (a dropped table): its buckets answer UNKNOWN_TABLE_OR_BUCKET
    /// from now on, and its replicas are stopped and forgotten, which closes their scans, ends
    /// their flush tasks and releases their engines. The returned future completes when the
    /// flush tasks have ended; it yields the table's config, `None` if it was not hosted.
    pub fn remove_table(&self, table_id: i64) -> BoxFuture<'static, Option<TableConfig>> {
        // The table goes first, so that no request can create a replica for it again.
        let removed = self.lock_tables().remove(&table_id).map(|table| table.config);
        self.logs.dirs().remove_table(table_id);
        let stopped = self.stop_replicas_where(|bucket| bucket.table_id == table_id);
        async move {
            stopped.await;
            removed
        }
        .boxed()
    }

    /// Stops and forgets the replicas of the buckets `selected` picks, which closes their
    /// scans, ends their flush tasks and releases their engines; the future completes when the
    /// flush tasks have ended. The caller stops serving those buckets first.
    ///
    /// The replicas are stopped now, not when the future is first polled: a replica that is no
    /// longer registered must not keep serving its scan sessions meanwhile (a continuation
    /// names no bucket, so only the closed session refuses it).
    fn stop_replicas_where(
        &self,
        selected: impl Fn(&TableBucket) -> bool,
    ) -> BoxFuture<'static, ()> {
        let replicas: Vec<Arc<Replica>> = {
            let mut replicas = self.lock_replicas();
            let buckets: Vec<TableBucket> =
                replicas.by_bucket.keys().filter(|bucket| selected(bucket)).copied().collect();
            buckets.iter().filter_map(|bucket| replicas.by_bucket.remove(bucket)).collect()
        };
        let flush_tasks: Vec<Task> =
            replicas.iter().filter_map(|replica| replica.stop().flush).collect();
        async move {
            for task in flush_tasks {
                task.join().await;
            }
        }
        .boxed()
    }

    /// The epoch under which this server leads `bucket`, `None` if it does not lead it.
    pub fn leader_epoch(&self, bucket: TableBucket) -> Option<u32> {
        self.replica(bucket)?.leading_epoch()
    }

    /// The server's scan sessions.
    pub fn scanners(&self) -> &Arc<ScannerManager> {
        &self.scanners
    }

    /// The replica a scan of `bucket` opens on, with Fluss's errors for a bad bucket (21) and
    /// for a bucket this server does not host (12).
    pub fn scan_replica(&self, bucket: TableBucket) -> Result<Arc<Replica>, ApiError> {
        self.check_bucket(bucket).map_err(|e| e.to_api_error())?;
        self.replica(bucket).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "Leader not local for bucket {bucket} on tabletServer {}",
                    self.env.node_id
                ),
            )
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.env.node_id
    }

    pub fn replica(&self, bucket: TableBucket) -> Option<Arc<Replica>> {
        self.lock_replicas().by_bucket.get(&bucket).cloned()
    }

    pub(crate) fn hosted_replicas(&self) -> Vec<Arc<Replica>> {
        self.lock_replicas().by_bucket.values().cloned().collect()
    }

    /// The leader KV of `bucket` if this server leads it.
    pub fn leader_kv(&self, bucket: TableBucket) -> Option<Arc<KvTablet>> {
        self.replica(bucket)?.leader_kv().ok()
    }

    /// Serves one request.
    pub fn handle_request(&self, request: Request) -> BoxFuture<'static, Response> {
        let Some(this) = self.this.upgrade() else {
            return futures::future::ready(Response::Error(
                KvError::NotLeader("tablet server is shutting down".to_string()).to_api_error(),
            ))
            .boxed();
        };
        let is_scan = matches!(request, Request::ScanKv(_));
        // ScanKv answers its errors in the body, as Fluss does.
        let refuse = move |error: ApiError| match is_scan {
            true => Response::ScanKv(ScanKvResponse::error(error)),
            false => Response::Error(error),
        };
        if let Some(reason) = self.stop.reason() {
            let error = ApiError::new(
                ErrorCode::KvStorageException,
                format!("tablet server {} stopped: {reason}", self.env.node_id),
            );
            return futures::future::ready(refuse(error)).boxed();
        }
        let (bucket, kind) = (self.bucket_of(&request), request.kind());
        async move {
            // A panic is caught only to stop what it left in doubt (the request's replica, or
            // the whole server), never to carry on serving from that state.
            let server = this.clone();
            let dispatched = async move { server.dispatch(request).await }.boxed();
            match catch_panic(dispatched).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => Response::Error(error.to_api_error()),
                Err(panic) => {
                    let reason =
                        format!("a {kind} request panicked: {}", panic_message(panic.as_ref()));
                    refuse(this.stop_after_panic(bucket, reason).to_api_error())
                }
            }
        }
        .boxed()
    }

    /// The bucket a request is about: the one it names, or a scan continuation's session's.
    fn bucket_of(&self, request: &Request) -> Option<TableBucket> {
        if let Request::ScanKv(ScanKvRequest { scanner_id: Some(id), .. }) = request {
            let id = std::str::from_utf8(id).ok()?;
            return match self.scanners.lookup(id) {
                SessionLookup::Live(session) => Some(session.bucket()),
                SessionLookup::Expired | SessionLookup::Unknown => None,
            };
        }
        request.bucket()
    }

    /// Stops `bucket`'s replica, or the whole server when the panic belongs to no replica
    /// hosted here; returns the error the request is answered with.
    fn stop_after_panic(&self, bucket: Option<TableBucket>, reason: String) -> KvError {
        match bucket.and_then(|bucket| self.replica(bucket)) {
            Some(replica) => replica.stop_after_panic(reason.clone()),
            None => {
                let server = format!("tablet server {}", self.env.node_id);
                self.stop.stop(&server, StopCause::Panic, reason.clone());
            }
        }
        KvError::ReplicaStopped(reason)
    }

    /// Why the whole server stopped serving (a panic no replica owned), if it did.
    pub fn failure(&self) -> Option<String> {
        self.stop.reason().map(str::to_string)
    }

    /// The scan sessions' evictor's name if it ended while the server serves (it ends by
    /// itself only at shutdown, which takes it first): sessions would then never expire.
    pub(crate) fn ended_evictor(&self) -> Option<String> {
        if self.stop.is_stopped() {
            return None;
        }
        let evictor = self.evictor.lock().unwrap_or_else(|p| p.into_inner());
        evictor.as_ref().filter(|task| task.has_ended()).map(|task| task.name().to_string())
    }

    /// Stops every replica and waits for their tasks to end. Scan sessions end first: they
    /// hold engine snapshots.
    pub fn shutdown(&self) -> BoxFuture<'static, ()> {
        let replicas: Vec<Arc<Replica>> = {
            let mut replicas = self.lock_replicas();
            replicas.shut_down = true;
            std::mem::take(&mut replicas.by_bucket).into_values().collect()
        };
        // Poisoning is harmless: the slot is only ever taken whole.
        let evictor = self.evictor.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(evictor) = &evictor {
            evictor.abort();
        }
        self.scanners.shutdown();
        async move {
            join_if_some(evictor).await;
            // The aborted snapshot and tiering tasks too: a shutdown returns with every task
            // that holds an engine gone (a restart in the same process reopens them).
            for replica in replicas {
                let ended = replica.stop();
                for task in ended.flush.into_iter().chain(ended.aborted) {
                    task.join().await;
                }
            }
        }
        .boxed()
    }

    async fn dispatch(&self, request: Request) -> Result<Response, KvError> {
        match request {
            Request::BecomeLeader { bucket, leader_epoch } => {
                self.check_bucket(bucket)?;
                let replica = self.replica_or_create(bucket)?;
                replica.become_leader(leader_epoch).await?;
                Ok(Response::Ok)
            }
            Request::BecomeFollower { bucket, leader_epoch } => {
                self.check_bucket(bucket)?;
                let replica = self.replica_or_create(bucket)?;
                replica.become_follower(leader_epoch).await?;
                Ok(Response::Ok)
            }
            Request::PutKv { bucket, writes, writer, target_columns } => {
                let table = self.check_bucket(bucket)?;
                self.check_writes(&table, &writes)?;
                let merger = match &target_columns {
                    None => None,
                    Some(target_columns) => Some(partial_updater(&table, target_columns)?),
                };
                if let Some(writer) = writer {
                    if writer.writer_id < 0 || writer.batch_sequence < 0 {
                        return Err(KvError::InvalidRecord(format!(
                            "writer {} with batch sequence {}",
                            writer.writer_id, writer.batch_sequence
                        )));
                    }
                }
                if self.env.mutants.is_on(Mutant::PutAlwaysRefused) {
                    return Err(KvError::NotLeader(format!("{bucket}: every put refused")));
                }
                let put = self.hosted_kv(bucket)?.put(writes, writer, merger).await?;
                Ok(Response::PutKv {
                    base_offset: put.base_offset,
                    end_offset: put.end_offset,
                    duplicate: put.duplicate,
                })
            }
            Request::Lookup { bucket, keys } => {
                self.check_bucket(bucket)?;
                if keys.len() > self.config.limits.lookup_keys_max {
                    return Err(KvError::RequestTooLarge(format!(
                        "{} keys in one lookup; the limit is {}",
                        keys.len(),
                        self.config.limits.lookup_keys_max
                    )));
                }
                let kv = self.hosted_kv(bucket)?;
                kv.wait_for_acknowledged().await?;
                let (values, read_offset) = kv.lookup(&keys)?;
                Ok(Response::Lookup { values, read_offset })
            }
            Request::PrefixLookup { bucket, prefix } => {
                self.check_bucket(bucket)?;
                let kv = self.hosted_kv(bucket)?;
                kv.wait_for_acknowledged().await?;
                let (values, read_offset) = kv.prefix_lookup(&prefix)?;
                Ok(Response::Rows { values, read_offset })
            }
            Request::LimitScan { bucket, limit } => {
                self.check_bucket(bucket)?;
                let limit = limit.min(self.config.limits.limit_scan_rows_max) as usize;
                let kv = self.hosted_kv(bucket)?;
                kv.wait_for_acknowledged().await?;
                let (values, read_offset) = kv.limit_scan(limit)?;
                Ok(Response::Rows { values, read_offset })
            }
            Request::ScanKv(request) => Ok(Response::ScanKv(handle_scan_kv(self, request).await)),
            Request::FetchLog { bucket, from_offset, max_bytes } => {
                self.check_bucket(bucket)?;
                let kv = self.hosted_kv(bucket)?;
                let high_watermark = kv.log().high_watermark();
                let log_start_offset = self.earliest_offset(bucket, kv.log()).await?;
                let batches = match kv.log().read(from_offset, max_bytes) {
                    Ok(batches) => batches,
                    Err(LogError::OffsetOutOfRange { offset, log_start_offset })
                        if self.config.tiering.is_none() =>
                    {
                        return Ok(Response::Error(ApiError::new(
                            ErrorCode::LogOffsetOutOfRange,
                            format!(
                                "offset {offset} is below the log start offset {log_start_offset}"
                            ),
                        )))
                    }
                    Err(LogError::OffsetOutOfRange { offset, log_start_offset }) => {
                        match self.read_tiered(bucket, from_offset, max_bytes).await? {
                            Some(batches) => batches,
                            None => {
                                return Ok(Response::Error(ApiError::new(
                                    ErrorCode::LogOffsetOutOfRange,
                                    format!("offset {offset} is below the local log start offset {log_start_offset} and in no tiered segment"),
                                )))
                            }
                        }
                    }
                    Err(error) => return Err(error.into()),
                };
                let batches =
                    batches.into_iter().filter(|b| b.end_offset() <= high_watermark).collect();
                Ok(Response::FetchLog { batches, high_watermark, log_start_offset })
            }
            Request::ListOffsets { bucket, spec } => {
                self.check_bucket(bucket)?;
                let kv = self.hosted_kv(bucket)?;
                let log = kv.log();
                let offset = match spec {
                    OffsetSpec::Earliest => self.earliest_offset(bucket, log).await?,
                    OffsetSpec::Latest => log.high_watermark(),
                    OffsetSpec::Timestamp { timestamp_ms } => {
                        log.offset_for_timestamp(timestamp_ms)
                    }
                };
                Ok(Response::Offset { offset })
            }
            Request::Metadata
            | Request::AllocateKvSnapshotId { .. }
            | Request::CommitKvSnapshot { .. }
            | Request::GetLatestKvSnapshot { .. }
            | Request::CommitRemoteLogSegment { .. }
            | Request::GetRemoteLogEnd { .. }
            | Request::GetRemoteLogSegment { .. }
            | Request::ExpireRemoteLog { .. }
            | Request::GetRemoteLogStart { .. }
            | Request::AcquireKvSnapshotLease { .. }
            | Request::ReleaseKvSnapshotLease { .. }
            | Request::DropKvSnapshotLease { .. }
            | Request::ListKvSnapshots { .. }
            | Request::ReportBrokenKvSnapshot { .. }
            | Request::ListRemoteLogSegments { .. } => Err(KvError::NotLeader(format!(
                "{} is served by the coordinator, not a tablet server",
                request.kind()
            ))),
        }
    }

    pub(crate) fn check_bucket(&self, bucket: TableBucket) -> Result<TableConfig, KvError> {
        let tables = self.lock_tables();
        let table = tables
            .get(&bucket.table_id)
            .ok_or_else(|| KvError::UnknownTableOrBucket(bucket.to_string()))?;
        match table.check(bucket) {
            Err(KvError::PartitionNotExists(_))
                if self.env.mutants.is_on(Mutant::PartitionCheckIgnoresDrop) => {}
            checked => checked?,
        }
        Ok(table.config.clone())
    }

    fn check_writes(&self, table: &TableConfig, writes: &[KvWrite]) -> Result<(), KvError> {
        let limits = &self.config.limits;
        if writes.is_empty() {
            return Err(KvError::InvalidRecord("a put carries at least one record".to_string()));
        }
        if writes.len() > limits.writes_per_put_max {
            return Err(KvError::RequestTooLarge(format!(
                "{} records in one put; the limit is {}",
                writes.len(),
                limits.writes_per_put_max
            )));
        }
        for write in writes {
            if write.key.is_empty() {
                return Err(KvError::InvalidRecord("a primary key may not be empty".to_string()));
            }
            if write.key.len() > limits.key_bytes_max {
                return Err(KvError::RequestTooLarge(format!("key of {} bytes", write.key.len())));
            }
            let Some(value) = &write.value else { continue };
            if value.len() > limits.value_bytes_max {
                return Err(KvError::RequestTooLarge(format!("value of {} bytes", value.len())));
            }
            let schema_id = match value.get(0..2) {
                Some(bytes) => i16::from_le_bytes([bytes[0], bytes[1]]),
                None => {
                    return Err(KvError::InvalidRecord(
                        "a value starts with its two-byte schema id".to_string(),
                    ))
                }
            };
            if !table.schema_ids.contains(&schema_id) {
                return Err(KvError::SchemaNotExist(schema_id));
            }
        }
        Ok(())
    }

    /// A future that completes at the next append to `bucket`'s changelog, for a fetch that
    /// waits for data; `None` when this server does not lead the bucket. Create it before the
    /// read it follows, so that an append in between is not missed.
    pub fn log_appended(&self, bucket: TableBucket) -> Option<Notified> {
        Some(self.hosted_kv(bucket).ok()?.log().appended())
    }

    /// The first offset of the bucket's changelog (ListOffsets earliest). With tiering it is
    /// the remote log start (asked of the coordinator), or the local one if lower (the local
    /// log may still hold what remote retention deleted): local retention never deletes a
    /// segment above the remote end, and the remote tier is contiguous from its start, so
    /// everything from there on is in one tier or the other (also right after a restart,
    /// before the tierer has asked for the remote end again).
    async fn earliest_offset(&self, bucket: TableBucket, log: &LogTablet) -> Result<u64, KvError> {
        let Some(tiering) = &self.config.tiering else { return Ok(log.log_start_offset()) };
        match tiering.committer.remote_start_offset(bucket).await {
            Ok(remote_start_offset) => Ok(remote_start_offset.min(log.log_start_offset())),
            Err(error) => {
                Err(KvError::NotReady(format!("remote log start of {bucket} unknown: {error}")))
            }
        }
    }

    /// The batches from `from_offset` on of the tiered segment that holds it (asked of the
    /// coordinator's remote-log manifest, downloaded and checked), or `None` when no segment
    /// holds it.
    ///
    /// A segment the manifest lists but the store answers "not found" for is asked again, the
    /// manifest first, up to [`DownloadRetry::DEFAULT`]'s attempts: remote retention may have
    /// removed it meanwhile (then no segment holds the offset any more, and the caller answers
    /// as for any offset below the log start), or the store's answer was transient. Only a
    /// segment still listed and still missing after every attempt is lost: a storage error.
    async fn read_tiered(
        &self,
        bucket: TableBucket,
        from_offset: u64,
        max_bytes: u64,
    ) -> Result<Option<Vec<LogBatch>>, KvError> {
        let Some(tiering) = &self.config.tiering else { return Ok(None) };
        let retry = DownloadRetry::DEFAULT;
        let mut attempt = 1;
        loop {
            let segment = match tiering.committer.segment_holding(bucket, from_offset).await {
                Ok(Some(segment)) => segment,
                Ok(None) => return Ok(None),
                Err(error) => {
                    return Err(KvError::NotReady(format!(
                        "remote log of {bucket} unknown: {error}"
                    )))
                }
            };
            let read = read_remote_log(self.env.remote.as_ref(), &segment, from_offset, max_bytes);
            match read.await {
                Ok(batches) => return Ok(Some(batches)),
                Err(RemoteLogReadError::Remote(RemoteError::NotFound(_)))
                    if attempt < retry.attempts_max =>
                {
                    let backoff_ms = retry.backoff_ms(attempt, self.env.entropy.as_ref());
                    self.env.clock.sleep(backoff_ms).await;
                    attempt += 1;
                }
                Err(error) if error.is_retriable() => {
                    return Err(KvError::NotReady(error.to_string()))
                }
                Err(error) => {
                    return Err(KvError::Log(LogError::Corrupt {
                        path: segment.path(),
                        detail: error.to_string(),
                    }))
                }
            }
        }
    }

    fn hosted_kv(&self, bucket: TableBucket) -> Result<Arc<KvTablet>, KvError> {
        self.replica(bucket)
            .ok_or_else(|| {
                KvError::NotLeader(format!(
                    "{bucket} is not hosted on tablet server {}",
                    self.env.node_id
                ))
            })?
            .leader_kv()
    }

    fn replica_or_create(&self, bucket: TableBucket) -> Result<Arc<Replica>, KvError> {
        let mut replicas = self.lock_replicas();
        if replicas.shut_down {
            return Err(KvError::NotLeader(format!(
                "tablet server {} is shut down",
                self.env.node_id
            )));
        }
        if let Some(replica) = replicas.by_bucket.get(&bucket) {
            return Ok(replica.clone());
        }
        // Checked again under the replicas' lock: a table removed since the caller's check must
        // not get a replica back, since its removal may already have taken its replicas.
        let table = self.check_bucket(bucket)?;
        // Named by the table and partition served: a removal racing this finds none.
        let no_directory = || LogError::NoDirectory { bucket: bucket.to_string() };
        let opened = self
            .logs
            .dirs()
            .dirs(bucket)
            .ok_or_else(no_directory)
            .and_then(|dirs| Ok((dirs, self.logs.open(bucket)?)));
        let (dirs, log) = match opened {
            Ok(opened) => opened,
            // Its partition or table went since the check: answered as the check answers it.
            Err(error @ LogError::NoDirectory { .. }) => {
                self.check_bucket(bucket)?;
                return Err(KvError::from(error));
            }
            Err(error) => return Err(KvError::from(error)),
        };
        let engine_dir = dirs.kv_dir;
        let replica = Arc::new(Replica::new(
            self.env.clone(),
            self.config.kv,
            log,
            engine_dir,
            self.scanners.clone(),
            self.config.snapshots.clone(),
            self.config.tiering.as_ref().map(|schedule| schedule.for_table(table.log_ttl_ms)),
        ));
        replicas.by_bucket.insert(bucket, replica.clone());
        Ok(replica)
    }

    /// Poisoning is harmless here: the map changes by single inserts and removals of whole
    /// replicas (a new one only after its log opened), so a panic leaves it as it was. A
    /// replica whose own state a panic left in doubt stops itself.
    fn lock_replicas(&self) -> MutexGuard<'_, Replicas> {
        self.replicas.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Poisoning is harmless here, as for the replicas: single inserts and removals.
    fn lock_tables(&self) -> MutexGuard<'_, BTreeMap<i64, ServedTable>> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RpcHandler for TabletServer {
    fn handle(&self, _from: NodeId, request: Request) -> BoxFuture<'static, Response> {
        self.handle_request(request)
    }
}

/// The merger of a put that targets `target_columns` of `table`: the table's rule decides
/// (key columns targeted, omitted columns nullable); a table without one refuses.
fn partial_updater(
    table: &TableConfig,
    target_columns: &[u32],
) -> Result<Arc<dyn RowMerger>, KvError> {
    match &table.partial_updates {
        Some(PartialUpdates(rule)) => rule.partial_updater(target_columns),
        None => Err(KvError::InvalidTargetColumn(format!(
            "table {} does not take partial updates (target columns {target_columns:?})",
            table.table_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(partitioned: bool, partitions: &[i64]) -> ServedTable {
        let config = TableConfig {
            table_id: 7,
            path: TablePath::new("test", "orders"),
            bucket_count: 2,
            schema_ids: vec![1],
            partial_updates: None,
            log_ttl_ms: None,
            partitioned,
        };
        ServedTable { config, partitions: partitions.iter().copied().collect() }
    }

    fn bucket(partition_id: Option<i64>, bucket_id: i32) -> TableBucket {
        TableBucket { table_id: 7, partition_id, bucket_id }
    }

    #[test]
    fn a_non_partitioned_table_serves_only_buckets_without_a_partition() {
        let table = served(false, &[]);
        assert_eq!(table.check(bucket(None, 1)), Ok(()));
        let partitioned = table.check(bucket(Some(3), 1)).unwrap_err();
        assert_eq!(partitioned.code(), ErrorCode::UnknownTableOrBucket, "{partitioned}");
        let out_of_range = table.check(bucket(None, 2)).unwrap_err();
        assert_eq!(out_of_range.code(), ErrorCode::UnknownTableOrBucket);
    }

    #[test]
    fn a_partitioned_table_serves_only_buckets_of_its_served_partitions() {
        let table = served(true, &[3, 5]);
        assert_eq!(table.check(bucket(Some(3), 0)), Ok(()));
        assert_eq!(table.check(bucket(Some(5), 1)), Ok(()));
        let without_partition = table.check(bucket(None, 0)).unwrap_err();
        assert_eq!(without_partition.code(), ErrorCode::UnknownTableOrBucket);
        let missing = table.check(bucket(Some(4), 0)).unwrap_err();
        assert_eq!(missing.code(), ErrorCode::PartitionNotExists, "{missing}");
        assert!(!missing.is_retriable(), "a missing partition is final");
        let out_of_range = table.check(bucket(Some(3), 2)).unwrap_err();
        assert_eq!(out_of_range.code(), ErrorCode::UnknownTableOrBucket);
    }

    #[test]
    fn partition_not_exists_travels_as_code_36() {
        assert_eq!(ErrorCode::PartitionNotExists.wire_code(), 36);
    }
}
