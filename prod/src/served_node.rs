//! A node served over the wire in this process: catalog, node, gateway and wire server on one
//! data directory, what `kvtablet serve --listen` runs, without the signal handling. Tests and
//! benchmarks start one on `127.0.0.1:0` and stop it with [`ServedNode::stop`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use kvtablet_core::kv::KvTabletConfig;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogConfig, CatalogError};
use crate::config::ServeConfig;
use crate::disk_fs::DiskFs;
use crate::gateway::{
    log_ttl_ms_of, partial_updates_of, FlussGateway, AUTO_PARTITION_CHECK_INTERVAL,
};
use crate::metrics::metrics_server::Render;
use crate::metrics::{MeteredHandler, MetricsServer, NodeMetrics};
use crate::node::{Node, NodeConfig, NodeError, NodeHandle};
use crate::system_clock::SystemClock;
use crate::wire::{WireConfig, WireHandler, WireServer, WireStats};

#[derive(Debug, thiserror::Error)]
pub enum ServedNodeError {
    #[error("cannot open the data directory: {0}")]
    Fs(#[from] kvtablet_core::env::FsError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsListen { addr: SocketAddr, source: std::io::Error },
    #[error("the node stopped while starting")]
    Stopped,
    #[error("cannot open the writer-id counter: {0}")]
    WriterIds(#[from] kvtablet_core::writer_id_allocator::WriterIdError),
}

/// A running node with its wire server and, when configured, its metrics endpoint.
pub struct ServedNode {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    node: Node,
    wire_stats: Arc<WireStats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServedNode {
    /// Serves the data directory's tables on `listen` (port 0 picks a free port; see
    /// [`ServedNode::addr`]) with default limits and no metrics endpoint.
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        wire_config: WireConfig,
        runtime: Handle,
    ) -> Result<ServedNode, ServedNodeError> {
        let mut config = ServeConfig::default();
        config.data_dir = data_dir.to_path_buf();
        config.listen = listen;
        config.metrics_listen = None;
        config.wire = wire_config;
        ServedNode::start_with(&config, runtime).await
    }

    /// What `kvtablet serve` runs: opens the catalog under `config.data_dir`, hosts and leads
    /// every table in it, serves the Fluss protocol on `config.listen` through the metering
    /// decorator, and Prometheus metrics on `config.metrics_listen`.
    pub async fn start_with(
        config: &ServeConfig,
        runtime: Handle,
    ) -> Result<ServedNode, ServedNodeError> {
        let catalog = Arc::new(Catalog::open(
            Arc::new(DiskFs::new(&config.data_dir)?),
            Arc::new(SystemClock::new()),
            CatalogConfig::DEFAULT,
        )?);
        catalog.create_default_database_if_none()?;
        // A partitioned table's buckets are its partitions', hosted once the node runs.
        let tables: Vec<(i64, i32)> = catalog
            .tables()
            .iter()
            .filter(|table| !table.is_partitioned())
            .map(|table| (table.table_id, table.bucket_count))
            .collect();
        let node_config = NodeConfig {
            scanner: config.scanner,
            kv: KvTabletConfig {
                pre_write_buffer_bytes_max: config.pre_write_buffer_bytes_max,
                recovery_fetcher: config.recovery_fetcher,
                ..KvTabletConfig::DEFAULT
            },
            table_paths: catalog
                .tables()
                .iter()
                .map(|table| (table.table_id, table.path.clone()))
                .collect(),
            partial_updates: catalog
                .tables()
                .iter()
                .filter_map(|table| Some((table.table_id, partial_updates_of(table).ok()?)))
                .collect(),
            log_ttl_ms: catalog
                .tables()
                .iter()
                .filter_map(|table| Some((table.table_id, log_ttl_ms_of(&table.properties).ok()??)))
                .collect(),
            remote_log_ttl_ms: config.remote_log_ttl_ms,
            snapshot_interval_ms: config.snapshot_interval_ms,
            snapshot_num_retained: config.snapshot_num_retained as usize,
            lease_expiration_check_interval_ms: config.lease_expiration_check_interval_ms,
            engine_write_buffer_bytes: config.engine_write_buffer_bytes,
            remote_data_dir: config.remote_data_dir.clone(),
            s3: config.s3.clone(),
            segment_bytes_max: config.segment_bytes_max,
            tiering_interval_ms: config.tiering_interval_ms,
            local_retention: config.local_retention,
            ..NodeConfig::for_tables(config.data_dir.clone(), &tables)
        };
        let mut node = Node::start(node_config, runtime).await?;
        let (handle, wire, metrics_server) = match (node.handle(), bind_servers(config).await) {
            (Some(handle), Ok((wire, metrics_server))) => (handle, wire, metrics_server),
            (_, bound) => {
                node.shutdown().await;
                return Err(bound.err().unwrap_or(ServedNodeError::Stopped));
            }
        };
        if let Err(error) = host_partitioned_tables(&catalog, &handle).await {
            node.shutdown().await;
            return Err(error.into());
        }
        let addr = wire.local_addr();
        let wire_stats = wire.stats();
        let metrics_addr = metrics_server.as_ref().map(MetricsServer::local_addr);
        let metrics = Arc::new(NodeMetrics::new());
        let gateway = match FlussGateway::new(catalog, handle.clone(), addr) {
            Ok(gateway) => Arc::new(gateway),
            Err(error) => {
                node.shutdown().await;
                return Err(error.into());
            }
        };
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let auto_partitioning = gateway
            .auto_partitioning(AUTO_PARTITION_CHECK_INTERVAL, until_stopped(stopped.clone()));
        let remote_log_reads = gateway.remote_log_read_stats();
        let metered: Arc<dyn WireHandler> = Arc::new(MeteredHandler::new(gateway, metrics.clone()));
        let mut tasks = vec![
            tokio::spawn(wire.serve(metered, until_stopped(stopped.clone()))),
            tokio::spawn(auto_partitioning),
        ];
        if let Some(server) = metrics_server {
            let wire_stats = Arc::clone(&wire_stats);
            let render: Render = Arc::new(move || {
                metrics.set_remote_log_reads(&remote_log_reads);
                metrics.render_with_wire(
                    Some(&handle.stats()),
                    Some(&wire_stats),
                    handle.task_panics(),
                    handle.lease_gauges(),
                    Some(&handle.recovery_stats()),
                )
            });
            tasks.push(tokio::spawn(server.serve(render, until_stopped(stopped))));
        }
        Ok(ServedNode { addr, metrics_addr, node, wire_stats, stop, tasks })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The wire server's counters: connections, request bytes held, timeouts.
    pub fn wire_stats(&self) -> &Arc<WireStats> {
        &self.wire_stats
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Completes when a request handler has panicked: the wire server has shut itself down
    /// (the state behind the handler is in doubt), and the node must stop, loudly.
    pub async fn failed(&self) {
        self.wire_stats.handler_panicked().await;
    }

    /// Stops the wire and metrics servers (answering what is in flight), then the node.
    /// Idempotent.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.node.shutdown().await;
    }
}

/// Binds the wire protocol's port and, unless it is off, the metrics port. A default metrics
/// address that is taken only costs the metrics (another node may run on this machine); one
/// that was configured must bind.
async fn bind_servers(
    config: &ServeConfig,
) -> Result<(WireServer, Option<MetricsServer>), ServedNodeError> {
    let wire = WireServer::bind(config.listen, config.wire.clone())
        .await
        .map_err(|source| ServedNodeError::Listen { addr: config.listen, source })?;
    let Some(addr) = config.metrics_listen else {
        return Ok((wire, None));
    };
    match MetricsServer::bind(addr).await {
        Ok(server) => Ok((wire, Some(server))),
        Err(error) if !config.metrics_listen_is_set() => {
            tracing::warn!(%addr, %error, "cannot serve metrics on the default address; \
                running without them (set metrics.listen to choose another)");
            Ok((wire, None))
        }
        Err(source) => Err(ServedNodeError::MetricsListen { addr, source }),
    }
}

/// Hosts every partitioned table of the catalog and leads the buckets of each of its
/// partitions, as at their creation.
async fn host_partitioned_tables(catalog: &Catalog, node: &NodeHandle) -> Result<(), NodeError> {
    for table in catalog.tables().iter().filter(|table| table.is_partitioned()) {
        let partial_updates = partial_updates_of(table).ok();
        let log_ttl_ms = log_ttl_ms_of(&table.properties).ok().flatten();
        node.host_table(
            table.table_id,
            &table.path,
            table.bucket_count,
            true,
            partial_updates,
            log_ttl_ms,
        )
        .await?;
        // The catalog holds every partition of a partitioned table: listing cannot fail.
        for partition in catalog.list_partitions(&table.path, None).unwrap_or_default() {
            node.host_partition(
                table.table_id,
                partition.partition_id,
                &partition.name(),
                table.bucket_count,
            )
            .await?;
        }
    }
    Ok(())
}
