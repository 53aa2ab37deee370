//! One tablet-server process: the real environment bound together, the tablet server started on
//! it, and its buckets led from the start. The node is its own coordinator: it appoints itself
//! leader of every bucket and answers its leaders' KV snapshot requests
//! ([`crate::snapshot_coordinator`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{FsError, RemoteError, RemoteStorage, Rpc, RpcError, RpcHandler};
use kvtablet_core::kv::{KvTablet, KvTabletConfig, PartialUpdates};
use kvtablet_core::lease::{LeaseConfig, LeaseGauges};
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::log::{LocalRetention, LogConfig, LogError, LogRegistry, LogTablet};
use kvtablet_core::message::{NodeId, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::snapshot::orphan_sweep::{sweep_orphans, Uploads};
use kvtablet_core::snapshot::rpc_snapshot_committer::RpcSnapshotCommitter;
use kvtablet_core::snapshot::snapshot_service::SnapshotService;
use kvtablet_core::snapshot::snapshot_store::NUM_RETAINED_DEFAULT;
use kvtablet_core::snapshot::{
    SnapshotSchedule, SnapshotStore, SnapshotStoreError, SnapshotUploadConfig,
    SNAPSHOT_INTERVAL_MS_DEFAULT,
};
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::tablet_server_stats::{RecoveryStats, ServerStats};
use kvtablet_core::task::Task;
use kvtablet_core::tiering::{
    RemoteLogStore, RemoteLogStoreError, RpcRemoteLogCommitter, TieringSchedule,
    TIERING_INTERVAL_MS_DEFAULT,
};
use kvtablet_core::{Env, ErrorCode, TableBucket};
use tokio::runtime::Handle;

use crate::config::remote::{ClientRemoteAccess, RemoteDataDir, S3Config};
use crate::disk_fs::DiskFs;
use crate::object_store_remote::ObjectStoreRemote;
use crate::os_entropy::{EntropyError, OsEntropy};
use crate::rocks_engine::{RocksEngineFactory, WRITE_BUFFER_BYTES_DEFAULT};
use crate::snapshot_coordinator::{
    open_remote_log_store, open_snapshot_store, SnapshotCoordinator, SnapshotStoreOpenError,
    COORDINATOR_NODE_ID,
};
use crate::system_clock::SystemClock;
use crate::tokio_executor::TokioExecutor;

/// The id this process serves under; there is one tablet server per process for now.
pub const SERVER_NODE_ID: NodeId = 1;
/// The id the in-process clients (the test-support commands) send from.
pub const LOCAL_CLIENT_NODE_ID: NodeId = 0;

/// Table id of the buckets hosted by default.
pub const DEFAULT_TABLE_ID: i64 = 1;
/// Number of buckets hosted by default.
pub const DEFAULT_BUCKET_COUNT: i32 = 4;
/// The one schema the default table has.
pub const DEFAULT_SCHEMA_ID: i16 = 1;

/// What one node runs and where it keeps its files.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Everything the node persists lives under this directory.
    pub data_dir: PathBuf,
    /// The buckets this node hosts and leads.
    pub buckets: Vec<TableBucket>,
    /// Schema ids a written value may start with, for every hosted table.
    pub schema_ids: Vec<i16>,
    /// Limits of full-scan sessions (`kv.scanner.*`).
    pub scanner: ScannerConfig,
    /// Limits of each led bucket's KV tablet (`kv.pre-write-buffer.max-size`).
    pub kv: KvTabletConfig,
    /// How each table merges partial updates (PutKv with target columns); a table missing
    /// here refuses them.
    pub partial_updates: BTreeMap<i64, PartialUpdates>,
    /// Each hosted table's database and name, which name its local directories; a table
    /// missing here is [`unnamed_table_path`].
    pub table_paths: BTreeMap<i64, TablePath>,
    /// `kv.snapshot.interval`: how often each led bucket takes a KV snapshot (positive).
    pub snapshot_interval_ms: u64,
    /// `kv.snapshot.num-retained`: completed snapshots kept per bucket (at least 1).
    pub snapshot_num_retained: usize,
    /// `kv.snapshot.lease.expiration-check-interval`: how often expired KV snapshot leases
    /// are dropped (and the snapshots they alone kept deleted).
    pub lease_expiration_check_interval_ms: u64,
    /// `kv.rocksdb.writebuffer.size`: each bucket's RocksDB memtable, in bytes.
    pub engine_write_buffer_bytes: usize,
    /// `remote.data.dir`: where KV snapshots are uploaded (by default `remote` in
    /// `data_dir`).
    pub remote_data_dir: RemoteDataDir,
    /// `s3.*`: how an `s3://` remote data directory is reached.
    pub s3: S3Config,
    /// `log.segment.file-size`: a changelog segment rolls before it grows past this.
    pub segment_bytes_max: u64,
    /// `remote.log.task-interval-duration`: each leader's tiering and local retention tick.
    pub tiering_interval_ms: u64,
    /// `table.log.tiered.local-*`: what each bucket keeps locally once tiered.
    pub local_retention: LocalRetention,
    /// `table.log.ttl`: how long the remote tier keeps a segment (`None`: forever), for tables
    /// without their own.
    pub remote_log_ttl_ms: Option<u64>,
    /// The `table.log.ttl` of the tables that set one, by table id.
    pub log_ttl_ms: BTreeMap<i64, u64>,
}

impl NodeConfig {
    /// Hosts table [`DEFAULT_TABLE_ID`], buckets `0..DEFAULT_BUCKET_COUNT`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self::for_tables(data_dir, &[(DEFAULT_TABLE_ID, DEFAULT_BUCKET_COUNT)])
    }

    /// Hosts buckets `0..bucket_count` of every `(table_id, bucket_count)` given (the tables of
    /// the catalog), with schema id [`DEFAULT_SCHEMA_ID`].
    pub fn for_tables(data_dir: impl Into<PathBuf>, tables: &[(i64, i32)]) -> Self {
        let buckets = tables
            .iter()
            .flat_map(|&(table_id, bucket_count)| {
                (0..bucket_count).map(move |bucket_id| TableBucket::new(table_id, bucket_id))
            })
            .collect();
        NodeConfig {
            data_dir: data_dir.into(),
            buckets,
            schema_ids: vec![DEFAULT_SCHEMA_ID],
            scanner: ScannerConfig::DEFAULT,
            kv: KvTabletConfig::DEFAULT,
            partial_updates: BTreeMap::new(),
            table_paths: BTreeMap::new(),
            snapshot_interval_ms: SNAPSHOT_INTERVAL_MS_DEFAULT,
            snapshot_num_retained: NUM_RETAINED_DEFAULT,
            lease_expiration_check_interval_ms: LeaseConfig::default().expiration_check_interval_ms,
            engine_write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            remote_data_dir: RemoteDataDir::InDataDir,
            s3: S3Config::default(),
            segment_bytes_max: LogConfig::DEFAULT.segment_bytes_max,
            tiering_interval_ms: TIERING_INTERVAL_MS_DEFAULT,
            local_retention: LocalRetention::default(),
            remote_log_ttl_ms: Some(LOG_TTL_MS_DEFAULT),
            log_ttl_ms: BTreeMap::new(),
        }
    }

    /// Refuses what the tablet server would reject at start (it asserts its config).
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.schema_ids.is_empty() {
            return Err(NodeError::InvalidConfig("no schema ids".to_string()));
        }
        if let Some(bucket) = self.buckets.iter().find(|bucket| bucket.bucket_id < 0) {
            return Err(NodeError::InvalidConfig(format!("negative bucket id in {bucket}")));
        }
        if let Some(bucket) = self.buckets.iter().find(|bucket| bucket.partition_id.is_some()) {
            return Err(NodeError::InvalidConfig(format!("partitioned {bucket} is not supported")));
        }
        self.scanner.validate().map_err(NodeError::InvalidConfig)?;
        self.s3.validate().map_err(NodeError::InvalidConfig)?;
        let fetcher = self.kv.recovery_fetcher.validate();
        fetcher.map_err(|error| NodeError::InvalidConfig(error.to_string()))?;
        if self.snapshot_interval_ms == 0 {
            return Err(NodeError::InvalidConfig("the snapshot interval is 0".to_string()));
        }
        if self.snapshot_num_retained == 0 {
            return Err(NodeError::InvalidConfig("no snapshot is retained".to_string()));
        }
        if self.segment_bytes_max == 0 {
            return Err(NodeError::InvalidConfig("the segment size is 0".to_string()));
        }
        if self.tiering_interval_ms == 0 {
            return Err(NodeError::InvalidConfig("the tiering interval is 0".to_string()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("local storage: {0}")]
    Fs(#[from] FsError),
    #[error("remote storage: {0}")]
    Remote(#[from] RemoteError),
    #[error("changelog: {0}")]
    Log(#[from] LogError),
    #[error("kv snapshot store: {0}")]
    SnapshotStore(#[from] SnapshotStoreError),
    #[error(transparent)]
    SnapshotStoreOpen(#[from] SnapshotStoreOpenError),
    #[error("remote log store: {0}")]
    RemoteLogStore(#[from] RemoteLogStoreError),
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    #[error("invalid node config: {0}")]
    InvalidConfig(String),
    #[error("request failed: {0}")]
    Rpc(#[from] RpcError),
    #[error("{request} for {bucket} answered {response:?}")]
    Rejected { request: &'static str, bucket: TableBucket, response: Box<Response> },
}

/// In-process delivery between the nodes of this process: a request is a function call on the
/// registered handler. Each sender gets its own [`LoopbackRpc`] view.
#[derive(Default)]
pub struct LoopbackNetwork {
    handlers: RwLock<BTreeMap<NodeId, Arc<dyn RpcHandler>>>,
}

impl LoopbackNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(LoopbackNetwork::default())
    }

    pub fn register(&self, node_id: NodeId, handler: Arc<dyn RpcHandler>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        handlers.insert(node_id, handler);
    }

    /// Makes the node unreachable; also breaks the cycle server → env → rpc → server.
    pub fn unregister(&self, node_id: NodeId) {
        let mut handlers = self.handlers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        handlers.remove(&node_id);
    }

    /// Poisoning of the handlers' map is harmless: single inserts, removals and reads.
    fn handler(&self, node_id: NodeId) -> Option<Arc<dyn RpcHandler>> {
        let handlers = self.handlers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        handlers.get(&node_id).cloned()
    }

    /// The network as seen by `from`.
    pub fn endpoint(self: &Arc<Self>, from: NodeId) -> LoopbackRpc {
        LoopbackRpc { from, network: Arc::clone(self) }
    }
}

/// One sender's view of a [`LoopbackNetwork`].
#[derive(Clone)]
pub struct LoopbackRpc {
    from: NodeId,
    network: Arc<LoopbackNetwork>,
}

impl Rpc for LoopbackRpc {
    fn call(
        &self,
        target: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        let Some(handler) = self.network.handler(target) else {
            return futures::future::ready(Err(RpcError::Unreachable(target))).boxed();
        };
        let response = handler.handle(self.from, request);
        async move {
            tokio::time::timeout(Duration::from_millis(timeout_ms), response)
                .await
                .map_err(|_elapsed| RpcError::Timeout(target))
        }
        .boxed()
    }
}

/// A started tablet server, seen as what the node needs from it.
struct RunningServer {
    server: Arc<TabletServer>,
    handler: Arc<dyn RpcHandler>,
    shutdown: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

/// What the wire gateway needs from a running node, cheap to clone: requests to its tablet
/// server, and the hosting of a table created at run time.
#[derive(Clone)]
pub struct NodeHandle {
    client: LoopbackRpc,
    logs: LogRegistry,
    server: Arc<TabletServer>,
    schema_ids: Vec<i16>,
    executor: TokioExecutor,
    snapshot_store: Arc<SnapshotStore>,
    snapshot_service: Arc<SnapshotService>,
    remote_root: String,
    client_remote_access: ClientRemoteAccess,
    env: Env,
    recoveries: Recoveries,
}

/// The leadership calls that recover a bucket's engine from KV snapshots, run in the
/// background (one per bucket at most: a newer one replaces it); aborted at shutdown.
type Recoveries = Arc<std::sync::Mutex<BTreeMap<TableBucket, Task>>>;

impl NodeHandle {
    /// The coordinator's record of every bucket's KV snapshots (the node is its own
    /// coordinator).
    pub fn snapshot_store(&self) -> &Arc<SnapshotStore> {
        &self.snapshot_store
    }

    /// The remote data directory (an absolute local path, or `s3://bucket/prefix`): a
    /// snapshot file's remote path is relative to it.
    pub fn remote_root(&self) -> &str {
        &self.remote_root
    }

    /// How clients read the tiered changelog themselves (`remote.data.dir` and `s3.*`).
    pub fn client_remote_access(&self) -> &ClientRemoteAccess {
        &self.client_remote_access
    }

    /// The coordinator's remote-log manifests (`None` without tiering).
    pub fn remote_logs(&self) -> Option<&Arc<RemoteLogStore>> {
        self.snapshot_service.remote_logs()
    }

    /// The node's environment (its remote store, for the clients' copies of tiered segments).
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Sends `request` to this node's tablet server, as a local client.
    pub async fn request(&self, request: Request) -> Result<Response, RpcError> {
        self.client.call(SERVER_NODE_ID, request, LOCAL_REQUEST_TIMEOUT_MS).await
    }

    /// The KV snapshot leases' counts, for metrics (`None` without leases).
    pub fn lease_gauges(&self) -> Option<LeaseGauges> {
        self.snapshot_service.lease_gauges()
    }

    /// Sends `request` to this node's snapshot coordinator (KV snapshot leases), as a local
    /// client.
    pub async fn coordinator_request(&self, request: Request) -> Result<Response, RpcError> {
        self.client.call(COORDINATOR_NODE_ID, request, LOCAL_REQUEST_TIMEOUT_MS).await
    }

    /// The tablet server's scan sessions and bucket offsets, for metrics.
    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// The buckets recovering their KV engines from snapshots, with their progress, for
    /// metrics.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.server.recovery_stats()
    }

    /// Tasks and blocking work of the node that panicked (each logged at error).
    pub fn task_panics(&self) -> u64 {
        self.executor.task_panics()
    }

    /// Hosts and leads buckets `0..bucket_count` of `table_id` (each at its log's epoch + 1),
    /// unless the table is hosted already. A partitioned table has no buckets of its own:
    /// those of each partition are led by [`NodeHandle::host_partition`]. `partial_updates` is
    /// the table's merge rule for PutKv with target columns (`None` refuses them), `log_ttl_ms`
    /// its `table.log.ttl` (`None`: the node's).
    pub async fn host_table(
        &self,
        table_id: i64,
        path: &TablePath,
        bucket_count: i32,
        partitioned: bool,
        partial_updates: Option<PartialUpdates>,
        log_ttl_ms: Option<u64>,
    ) -> Result<(), NodeError> {
        let schema_ids = self.schema_ids.clone();
        let table = TableConfig {
            table_id,
            path: path.clone(),
            bucket_count,
            schema_ids,
            log_ttl_ms,
            partitioned,
            partial_updates,
        };
        let added = self.server.add_table(table).map_err(|error| {
            NodeError::InvalidConfig(format!("cannot host table {table_id}: {error:?}"))
        })?;
        if !added || partitioned {
            return Ok(());
        }
        for bucket_id in 0..bucket_count {
            lead_bucket(self, TableBucket::new(table_id, bucket_id)).await?;
        }
        Ok(())
    }

    /// Hosts and leads buckets `0..bucket_count` of partition `partition_id`, named
    /// `partition_name`, of the hosted partitioned table `table_id`, unless the partition is
    /// hosted already.
    pub async fn host_partition(
        &self,
        table_id: i64,
        partition_id: i64,
        partition_name: &str,
        bucket_count: i32,
    ) -> Result<(), NodeError> {
        let added = self.server.add_partition(table_id, partition_id, partition_name);
        let added = added.map_err(|error| {
            NodeError::InvalidConfig(format!(
                "cannot host partition {partition_id} of table {table_id}: {error:?}"
            ))
        })?;
        if !added {
            return Ok(());
        }
        for bucket_id in 0..bucket_count {
            let bucket = TableBucket { table_id, partition_id: Some(partition_id), bucket_id };
            lead_bucket(self, bucket).await?;
        }
        Ok(())
    }

    /// Stops serving a dropped partition, as [`NodeHandle::unhost_table`] does for a table:
    /// its buckets answer PARTITION_NOT_EXISTS from now on (core's `remove_partition`).
    pub async fn unhost_partition(&self, table_id: i64, partition_id: i64) {
        let hosted = self.server.remove_partition(table_id, partition_id).await;
        tracing::info!(table_id, partition_id, hosted, "partition no longer hosted");
    }
}

impl NodeHandle {
    /// Stops serving a dropped table: its buckets answer UNKNOWN_TABLE_OR_BUCKET from now on,
    /// their scans are closed and their engines released (core's `remove_table`). Their files
    /// stay on disk.
    pub async fn unhost_table(&self, table_id: i64) {
        let removed = self.server.remove_table(table_id).await;
        tracing::info!(table_id, hosted = removed.is_some(), "table no longer hosted");
    }

    /// The epoch under which this node leads `bucket`, `None` if it does not lead it.
    pub fn leader_epoch(&self, bucket: TableBucket) -> Option<u32> {
        self.server.leader_epoch(bucket)
    }

    /// The changelog of `bucket`, if this node has opened it (every hosted bucket's is).
    pub fn changelog(&self, bucket: TableBucket) -> Option<Arc<LogTablet>> {
        self.logs.get(bucket)
    }

    /// The KV tablet of the term under which this node leads `bucket`, `None` if it does not
    /// lead it.
    pub fn leader_kv(&self, bucket: TableBucket) -> Option<Arc<KvTablet>> {
        self.server.leader_kv(bucket)
    }

    /// Completes at the next append to `bucket`'s changelog (see
    /// [`TabletServer::log_appended`]); `None` if this node does not lead the bucket.
    pub fn log_appended(&self, bucket: TableBucket) -> Option<kvtablet_core::notify::Notified> {
        self.server.log_appended(bucket)
    }
}

/// How often a leadership call is checked for a recovery from KV snapshots having started.
const RECOVERY_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// A recovery that failed (NOT_READY) is tried again after this, doubling up to the maximum.
const RECOVERY_RETRY_BACKOFF_MIN_MS: u64 = 1_000;
const RECOVERY_RETRY_BACKOFF_MAX_MS: u64 = 30_000;

/// Leads `bucket` under an epoch one past the one its log remembers. Returns once the term
/// is open, or once the bucket recovers its engine from KV snapshots (its local engine was
/// lost): that recovery, which can take minutes, goes on in the background while the bucket
/// answers LEADER_NOT_AVAILABLE (retriable), and a failed one is tried again, as a
/// coordinator's next leadership call would, until it succeeds or the node stops. The call
/// goes to the tablet server directly, without the loopback's request timeout, which a long
/// recovery would exceed.
async fn lead_bucket(handle: &NodeHandle, bucket: TableBucket) -> Result<(), NodeError> {
    let leader_epoch = handle.logs.open(bucket)?.leader_epoch() + 1;
    let mut leading = become_leader(handle, bucket, leader_epoch);
    loop {
        tokio::select! {
            response = &mut leading => match response {
                // A recovery that failed at once is tried again in the background too.
                Response::Error(error) if error.code == ErrorCode::LeaderNotAvailable => {
                    leading = futures::future::ready(Response::Error(error)).boxed();
                    break;
                }
                response => return led(bucket, leader_epoch, response),
            },
            () = tokio::time::sleep(RECOVERY_CHECK_INTERVAL) => {}
        }
        if handle.server.is_recovering(bucket) {
            break;
        }
    }
    tracing::info!(%bucket, leader_epoch, "bucket recovering its KV engine in the background");
    let name = format!("kv recovery {}", bucket.dir_name_display());
    let recovery = recover_until_led(handle.clone(), bucket, leader_epoch, leading);
    let task = Task::spawn(&handle.env.executor, &handle.env.ledger, name, recovery.boxed());
    let replaced = lock_recoveries(&handle.recoveries).insert(bucket, task);
    if let Some(replaced) = replaced {
        replaced.abort();
    }
    Ok(())
}

fn become_leader(
    handle: &NodeHandle,
    bucket: TableBucket,
    leader_epoch: u32,
) -> BoxFuture<'static, Response> {
    handle.server.handle_request(Request::BecomeLeader { bucket, leader_epoch })
}

fn led(bucket: TableBucket, leader_epoch: u32, response: Response) -> Result<(), NodeError> {
    if response != Response::Ok {
        return Err(NodeError::Rejected {
            request: "become_leader",
            bucket,
            response: Box::new(response),
        });
    }
    tracing::info!(%bucket, leader_epoch, "leading bucket");
    Ok(())
}

/// Awaits `leading`, a leadership call recovering `bucket`'s engine, and calls again after a
/// backoff while the recovery fails retriably (NOT_READY); ends at success or at any other
/// answer (logged).
async fn recover_until_led(
    handle: NodeHandle,
    bucket: TableBucket,
    leader_epoch: u32,
    mut leading: BoxFuture<'static, Response>,
) {
    let mut backoff_ms = RECOVERY_RETRY_BACKOFF_MIN_MS;
    loop {
        let response = leading.await;
        match response {
            Response::Ok => {
                tracing::info!(%bucket, leader_epoch, "bucket recovered; leading it");
                return;
            }
            Response::Error(error) if error.code == ErrorCode::LeaderNotAvailable => {
                tracing::warn!(%bucket, %error, backoff_ms, "KV recovery failed; trying again");
            }
            other => {
                tracing::error!(%bucket, leader_epoch, response = ?other, "KV recovery ended without leadership");
                return;
            }
        }
        let clock = &handle.env.clock;
        clock.sleep_until(clock.now_mono_ms().saturating_add(backoff_ms)).await;
        backoff_ms = backoff_ms.saturating_mul(2).min(RECOVERY_RETRY_BACKOFF_MAX_MS);
        leading = become_leader(&handle, bucket, leader_epoch);
    }
}

fn lock_recoveries(
    recoveries: &Recoveries,
) -> std::sync::MutexGuard<'_, BTreeMap<TableBucket, Task>> {
    // A map of handles: a panic while it was held cannot leave it half changed.
    recoveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running node: environment, changelogs and tablet server.
pub struct Node {
    config: NodeConfig,
    env: Env,
    logs: LogRegistry,
    network: Arc<LoopbackNetwork>,
    client: LoopbackRpc,
    server: Option<RunningServer>,
    snapshot_store: Arc<SnapshotStore>,
    /// The coordinator's service, for its lease gauges.
    snapshot_service: Arc<SnapshotService>,
    /// The lease expiry check, aborted at shutdown.
    lease_expiry: Option<Task>,
    remote_root: String,
    executor: TokioExecutor,
    recoveries: Recoveries,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("data_dir", &self.config.data_dir)
            .field("buckets", &self.config.buckets)
            .finish_non_exhaustive()
    }
}

/// Fluss's `table.log.ttl` default: 7 days.
pub const LOG_TTL_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1_000;

/// Relative to the node's [`DiskFs`] root, the data directory: the registry puts each log in
/// Fluss's `{database}/{table}-{table_id}/[{partition}-p{partition_id}/]log-{bucket}` under it,
/// next to the engine's `kv-{bucket}` (core's `tablet_dirs`).
const LOG_ROOT_DIR: &str = ".";

/// Long enough for a durable write on a slow disk; the requests come from this process.
const LOCAL_REQUEST_TIMEOUT_MS: u64 = 60_000;

impl Node {
    /// Opens the node's files under `config.data_dir`, starts the tablet server on `runtime`,
    /// and makes it leader of every configured bucket.
    pub async fn start(config: NodeConfig, runtime: Handle) -> Result<Node, NodeError> {
        Node::start_with_remote_layer(config, runtime, |remote| remote).await
    }

    /// As [`Node::start`], with the remote data directory's store seen through `layer` (tests
    /// wrap it to slow or fail some requests).
    pub async fn start_with_remote_layer(
        config: NodeConfig,
        runtime: Handle,
        layer: impl FnOnce(Arc<dyn RemoteStorage>) -> Arc<dyn RemoteStorage>,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        let network = LoopbackNetwork::new();
        let executor = TokioExecutor::new(runtime);
        let fs = DiskFs::new(&config.data_dir)?;
        let remote =
            ObjectStoreRemote::open(&config.remote_data_dir, &config.s3, fs.root()).await?;
        tracing::info!(remote = remote.name(), "remote data directory");
        let remote_root = remote.name().to_string();
        let env = build_env(
            fs,
            layer(Arc::new(remote)),
            config.engine_write_buffer_bytes,
            executor.clone(),
            network.endpoint(SERVER_NODE_ID),
        )?;
        let log_config = LogConfig { segment_bytes_max: config.segment_bytes_max };
        let logs = LogRegistry::new(env.fs.clone(), LOG_ROOT_DIR.to_string(), log_config);
        let lease_config = LeaseConfig {
            expiration_check_interval_ms: config.lease_expiration_check_interval_ms,
            ..LeaseConfig::default()
        };
        let snapshot_store =
            open_snapshot_store(&env, config.snapshot_num_retained, lease_config).await?;
        let remote_logs = open_remote_log_store(&env)?;
        // Nothing is led yet, so no upload is in flight (`Uploads::Idle`): every object no kept
        // snapshot needs is an orphan (an upload or a deletion an earlier incarnation did not
        // finish), and every object under `log/` that no remote-log manifest lists.
        let swept = sweep_orphans(
            &env.remote,
            &env.clock,
            &snapshot_store,
            Some(&remote_logs),
            Uploads::Idle,
        );
        match swept.await {
            Ok(outcome) if outcome.left > 0 => {
                tracing::warn!(left = outcome.left, "kv snapshot orphans left for the next start")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "kv snapshot orphan sweep skipped"),
        }
        let server = start_tablet_server(
            &env,
            &config,
            &logs,
            snapshot_schedule(&env, &config),
            tiering_schedule(&env, &config),
        );
        let coordinator = SnapshotCoordinator::new(
            &env,
            Arc::clone(&snapshot_store),
            Arc::clone(&remote_logs),
            Arc::downgrade(&server.server),
        );
        let lease_expiry = coordinator.spawn_lease_expiry();
        let snapshot_service = Arc::clone(coordinator.service());
        network.register(COORDINATOR_NODE_ID, Arc::new(coordinator));
        network.register(SERVER_NODE_ID, Arc::clone(&server.handler));
        let client = network.endpoint(LOCAL_CLIENT_NODE_ID);
        let mut node = Node {
            config,
            env,
            logs,
            network,
            client,
            server: Some(server),
            snapshot_store,
            snapshot_service,
            lease_expiry: Some(lease_expiry),
            remote_root,
            executor,
            recoveries: Recoveries::default(),
        };
        if let Err(error) = node.lead_all_buckets().await {
            node.shutdown().await;
            return Err(error);
        }
        tracing::info!(
            data_dir = %node.config.data_dir.display(),
            buckets = node.config.buckets.len(),
            "node started"
        );
        Ok(node)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The coordinator's record of every bucket's KV snapshots.
    pub fn snapshot_store(&self) -> &Arc<SnapshotStore> {
        &self.snapshot_store
    }

    /// Without a coordinator the node appoints itself: each bucket is led under an epoch one
    /// past the one its log remembers, which fences any writer of an earlier incarnation.
    async fn lead_all_buckets(&self) -> Result<(), NodeError> {
        let Some(handle) = self.handle() else {
            return Ok(());
        };
        for bucket in self.config.buckets.clone() {
            lead_bucket(&handle, bucket).await?;
        }
        Ok(())
    }

    /// A handle on the running tablet server; `None` after shutdown.
    pub fn handle(&self) -> Option<NodeHandle> {
        let server = self.server.as_ref()?;
        Some(NodeHandle {
            client: self.client.clone(),
            logs: self.logs.clone(),
            server: Arc::clone(&server.server),
            schema_ids: self.config.schema_ids.clone(),
            executor: self.executor.clone(),
            snapshot_store: Arc::clone(&self.snapshot_store),
            snapshot_service: Arc::clone(&self.snapshot_service),
            remote_root: self.remote_root.clone(),
            client_remote_access: ClientRemoteAccess::of(
                &self.config.remote_data_dir,
                &self.config.s3,
                std::env::var("AWS_REGION").ok(),
            ),
            env: self.env.clone(),
            recoveries: Arc::clone(&self.recoveries),
        })
    }

    /// Sends `request` to this node's tablet server, as a local client.
    pub async fn request(&self, request: Request) -> Result<Response, RpcError> {
        self.client.call(SERVER_NODE_ID, request, LOCAL_REQUEST_TIMEOUT_MS).await
    }

    /// Stops the tablet server and waits for it, then the snapshot coordinator (the leaders'
    /// snapshot loops end with the server). Idempotent. Returns the owners of work still
    /// running when the wait for it gave up (see [`Self::wait_for_unabortable_work`]): none,
    /// unless some blocking work outlived `SHUTDOWN_WORK_WAIT_MS`.
    pub async fn shutdown(&mut self) -> Vec<String> {
        if let Some(lease_expiry) = self.lease_expiry.take() {
            lease_expiry.abort();
            lease_expiry.join().await;
        }
        // Recoveries still running end with the node; a restart starts them again.
        let recoveries = std::mem::take(&mut *lock_recoveries(&self.recoveries));
        for (_, recovery) in recoveries {
            recovery.abort();
            recovery.join().await;
        }
        if let Some(server) = self.server.take() {
            self.network.unregister(SERVER_NODE_ID);
            (server.shutdown)().await;
            self.network.unregister(COORDINATOR_NODE_ID);
            let left_running = self.wait_for_unabortable_work().await;
            tracing::info!("node stopped");
            return left_running;
        }
        Vec::new()
    }

    /// Waits, at most `SHUTDOWN_WORK_WAIT_MS`, until nothing but leases is left in the leak
    /// ledger; returns the owners of what is left then. Blocking work cannot be aborted (a
    /// RocksDB checkpoint of a snapshot, a file write): a shutdown that returned while one still
    /// ran would leave it holding an engine, and a restart in the same process would find the
    /// engine's lock taken. A lease is no work: it is a consumer's durable grant, held by the
    /// coordinator's lease manager until a release or its expiry, and it outlives the node.
    async fn wait_for_unabortable_work(&self) -> Vec<String> {
        let clock = self.env.clock.clone();
        let deadline_ms = clock.now_mono_ms() + SHUTDOWN_WORK_WAIT_MS;
        loop {
            let live: Vec<String> = self
                .env
                .ledger
                .live()
                .into_iter()
                .filter(|resource| resource.kind != ResourceKind::Lease)
                .map(|resource| resource.owner)
                .collect();
            if live.is_empty() {
                return live;
            }
            if clock.now_mono_ms() >= deadline_ms {
                tracing::warn!(?live, "the node stops with work still running");
                return live;
            }
            clock.sleep(SHUTDOWN_WORK_POLL_MS).await;
        }
    }
}

/// How long a shutdown waits for work it cannot abort before it returns anyway.
const SHUTDOWN_WORK_WAIT_MS: u64 = 60_000;
const SHUTDOWN_WORK_POLL_MS: u64 = 10;

/// The real environment: disk files under `fs`'s root (the data directory), RocksDB engines in
/// the same tree (the tablet server names their directories `…/kv-{bucket}`), remote objects in
/// `remote` (`remote.data.dir`).
///
/// The engine factory is rooted at the data directory, like the [`DiskFs`], so that a directory
/// name means the same place to both: core creates and removes engine and checkpoint
/// directories through `fs` and hands the same names to the engines.
fn build_env(
    fs: DiskFs,
    remote: Arc<dyn RemoteStorage>,
    engine_write_buffer_bytes: usize,
    executor: TokioExecutor,
    rpc: LoopbackRpc,
) -> Result<Env, NodeError> {
    let engines = RocksEngineFactory::new(fs.root().to_path_buf())
        .with_write_buffer_bytes(engine_write_buffer_bytes);
    let env = Env {
        node_id: SERVER_NODE_ID,
        clock: Arc::new(SystemClock::new()),
        executor: Arc::new(executor),
        remote,
        rpc: Arc::new(rpc),
        fs: Arc::new(fs),
        entropy: Arc::new(OsEntropy::new()?),
        engines: Arc::new(engines),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    Ok(env)
}

/// The leaders' KV snapshots: every `kv.snapshot.interval`, committed to this node's own
/// coordinator over the loopback network.
fn snapshot_schedule(env: &Env, config: &NodeConfig) -> Arc<SnapshotSchedule> {
    Arc::new(SnapshotSchedule {
        interval_ms: config.snapshot_interval_ms,
        committer: Arc::new(RpcSnapshotCommitter::new(
            env.rpc.clone(),
            COORDINATOR_NODE_ID,
            LOCAL_REQUEST_TIMEOUT_MS,
        )),
        upload: SnapshotUploadConfig::default(),
    })
}

/// The leaders' changelog tiering: every `remote.log.task-interval-duration`, committed to
/// this node's own coordinator's remote-log manifests.
fn tiering_schedule(env: &Env, config: &NodeConfig) -> Arc<TieringSchedule> {
    Arc::new(TieringSchedule {
        interval_ms: config.tiering_interval_ms,
        local_retention: config.local_retention,
        remote_log_ttl_ms: config.remote_log_ttl_ms,
        committer: Arc::new(RpcRemoteLogCommitter::new(
            env.rpc.clone(),
            COORDINATOR_NODE_ID,
            LOCAL_REQUEST_TIMEOUT_MS,
        )),
        attempts_max: 5,
        retry_backoff_ms_min: 100,
        retry_backoff_ms_max: 5_000,
    })
}

/// The name of a table hosted without one (a node configured by table ids alone, as the
/// benchmarks and tests do): its directories are `kvtablet/table{table_id}-{table_id}/`.
pub fn unnamed_table_path(table_id: i64) -> TablePath {
    TablePath::new("kvtablet", format!("table{table_id}"))
}

/// One table entry per table among the hosted buckets, sized to cover them all.
fn server_config(
    config: &NodeConfig,
    snapshots: Arc<SnapshotSchedule>,
    tiering: Arc<TieringSchedule>,
) -> TabletServerConfig {
    let mut bucket_counts: BTreeMap<i64, i32> = BTreeMap::new();
    for bucket in &config.buckets {
        let bucket_count = bucket_counts.entry(bucket.table_id).or_insert(0);
        *bucket_count = (*bucket_count).max(bucket.bucket_id.saturating_add(1));
    }
    let tables = bucket_counts
        .into_iter()
        .map(|(table_id, bucket_count)| TableConfig {
            table_id,
            path: config
                .table_paths
                .get(&table_id)
                .cloned()
                .unwrap_or_else(|| unnamed_table_path(table_id)),
            bucket_count,
            schema_ids: config.schema_ids.clone(),
            partial_updates: config.partial_updates.get(&table_id).cloned(),
            log_ttl_ms: config.log_ttl_ms.get(&table_id).copied(),
            partitioned: false,
        })
        .collect();
    TabletServerConfig {
        tables,
        kv: config.kv,
        limits: RequestLimits::DEFAULT,
        scanner: config.scanner,
        snapshots: Some(snapshots),
        tiering: Some(tiering),
    }
}

fn start_tablet_server(
    env: &Env,
    config: &NodeConfig,
    logs: &LogRegistry,
    snapshots: Arc<SnapshotSchedule>,
    tiering: Arc<TieringSchedule>,
) -> RunningServer {
    let server =
        TabletServer::start(env.clone(), server_config(config, snapshots, tiering), logs.clone());
    let handler: Arc<dyn RpcHandler> = server.clone();
    RunningServer {
        server: Arc::clone(&server),
        handler,
        shutdown: Box::new(move || server.shutdown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvtablet_core::error::ErrorCode;
    use kvtablet_core::message::KvWrite;

    #[test]
    fn the_default_config_hosts_four_buckets_of_table_one() {
        let config = NodeConfig::new("/tmp/unused");
        let schedule = Arc::new(SnapshotSchedule {
            interval_ms: config.snapshot_interval_ms,
            committer: Arc::new(RpcSnapshotCommitter::new(
                Arc::new(LoopbackNetwork::new().endpoint(LOCAL_CLIENT_NODE_ID)),
                COORDINATOR_NODE_ID,
                LOCAL_REQUEST_TIMEOUT_MS,
            )),
            upload: SnapshotUploadConfig::default(),
        });
        let env_network = LoopbackNetwork::new();
        let tiering = Arc::new(TieringSchedule {
            interval_ms: config.tiering_interval_ms,
            local_retention: config.local_retention,
            remote_log_ttl_ms: config.remote_log_ttl_ms,
            committer: Arc::new(RpcRemoteLogCommitter::new(
                Arc::new(env_network.endpoint(LOCAL_CLIENT_NODE_ID)),
                COORDINATOR_NODE_ID,
                LOCAL_REQUEST_TIMEOUT_MS,
            )),
            attempts_max: 5,
            retry_backoff_ms_min: 100,
            retry_backoff_ms_max: 5_000,
        });
        let server = server_config(&config, schedule, tiering);
        assert_eq!(config.buckets.len(), 4);
        assert_eq!(server.tables.len(), 1);
        assert_eq!(server.tables[0].table_id, 1);
        assert_eq!(server.tables[0].bucket_count, 4);
        assert_eq!(server.tables[0].schema_ids, [1]);
        assert_eq!(server.scanner, ScannerConfig::DEFAULT);
        let snapshots = server.snapshots.expect("snapshots are taken");
        assert_eq!(snapshots.interval_ms, 10 * 60 * 1_000);
        assert_eq!(config.snapshot_num_retained, 2);
        let tiering = server.tiering.expect("changelogs are tiered");
        assert_eq!(tiering.interval_ms, 60 * 1_000);
        assert_eq!(tiering.local_retention, LocalRetention::default());
    }

    #[test]
    fn a_table_added_at_run_time_is_hosted_and_led() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let handle = runtime.handle().clone();
        runtime.block_on(async move {
            let mut node =
                Node::start(NodeConfig::for_tables(dir.path(), &[]), handle).await.expect("starts");
            let bucket = TableBucket::new(7, 1);
            let put = || Request::PutKv {
                bucket,
                writes: vec![KvWrite { key: b"k".to_vec(), value: Some(b"\x01\x00v".to_vec()) }],
                writer: None,
                target_columns: None,
            };
            let before = node.request(put()).await.expect("answered");
            assert!(matches!(before, Response::Error(_)), "{before:?}");
            let node_handle = node.handle().expect("running");
            node_handle.host_table(7, &unnamed_table_path(7), 2, false, None, None).await.expect("hosts");
            // Hosting again changes nothing.
            node_handle
                .host_table(7, &unnamed_table_path(7), 2, false, None, None)
                .await
                .expect("hosts again");
            let after = node.request(put()).await.expect("answered");
            assert_eq!(after, Response::PutKv { base_offset: 0, end_offset: 1, duplicate: false });
            assert!(node_handle.stats().buckets.iter().any(|b| b.bucket.table_id == 7));
            node_handle.unhost_table(7).await;
            assert!(
                node_handle.stats().buckets.iter().all(|b| b.bucket.table_id != 7),
                "the dropped table's replicas are gone"
            );
            let dropped = node.request(put()).await.expect("answered");
            assert!(
                matches!(&dropped, Response::Error(error) if error.code == ErrorCode::UnknownTableOrBucket),
                "{dropped:?}"
            );
            node.shutdown().await;
        });
    }

    #[test]
    fn a_partition_added_at_run_time_is_led_and_refused_once_removed() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let handle = runtime.handle().clone();
        runtime.block_on(async move {
            let mut node =
                Node::start(NodeConfig::for_tables(dir.path(), &[]), handle).await.expect("starts");
            let node_handle = node.handle().expect("running");
            node_handle
                .host_table(9, &unnamed_table_path(9), 2, true, None, None)
                .await
                .expect("hosts the table");
            assert!(
                node_handle.stats().buckets.iter().all(|b| b.bucket.table_id != 9),
                "a partitioned table has no buckets of its own"
            );
            let in_partition = |partition_id| TableBucket {
                table_id: 9,
                partition_id: Some(partition_id),
                bucket_id: 1,
            };
            let put = |bucket| Request::PutKv {
                bucket,
                writes: vec![KvWrite { key: b"k".to_vec(), value: Some(b"\x01\x00v".to_vec()) }],
                writer: None,
                target_columns: None,
            };
            let code_of = |response: Response| match response {
                Response::Error(error) => Some(error.code),
                _ => None,
            };
            let missing = node.request(put(in_partition(4))).await.expect("answered");
            assert_eq!(code_of(missing), Some(ErrorCode::PartitionNotExists));
            node_handle.host_partition(9, 4, "p4", 2).await.expect("hosts the partition");
            node_handle.host_partition(9, 5, "p5", 2).await.expect("hosts another partition");
            let written = node.request(put(in_partition(4))).await.expect("answered");
            assert_eq!(
                written,
                Response::PutKv { base_offset: 0, end_offset: 1, duplicate: false }
            );
            let unpartitioned = TableBucket::new(9, 1);
            let refused = node.request(put(unpartitioned)).await.expect("answered");
            assert_eq!(code_of(refused), Some(ErrorCode::UnknownTableOrBucket));

            node_handle.unhost_partition(9, 4).await;
            assert!(
                node_handle.stats().buckets.iter().all(|b| b.bucket.partition_id != Some(4)),
                "the dropped partition's replicas are gone"
            );
            let dropped = node.request(put(in_partition(4))).await.expect("answered");
            assert_eq!(code_of(dropped), Some(ErrorCode::PartitionNotExists));
            let other = node.request(put(in_partition(5))).await.expect("answered");
            assert_eq!(other, Response::PutKv { base_offset: 0, end_offset: 1, duplicate: false });
            node.shutdown().await;
        });
    }

    #[test]
    fn configs_the_server_would_reject_are_refused() {
        let mut config = NodeConfig::new("/tmp/unused");
        assert!(config.validate().is_ok());
        config.buckets.push(TableBucket::new(2, -1));
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
        let mut config = NodeConfig::new("/tmp/unused");
        config.schema_ids.clear();
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
        let mut config = NodeConfig::new("/tmp/unused");
        config.scanner.ttl_ms = 0;
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
        let mut config = NodeConfig::new("/tmp/unused");
        config.snapshot_interval_ms = 0;
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
        let mut config = NodeConfig::new("/tmp/unused");
        config.snapshot_num_retained = 0;
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
        let mut config = NodeConfig::new("/tmp/unused");
        config.kv.recovery_fetcher.download_threads = config.kv.recovery_fetcher.prefetch_num + 1;
        assert!(matches!(config.validate(), Err(NodeError::InvalidConfig(_))));
    }
}
