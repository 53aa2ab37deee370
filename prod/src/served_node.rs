//! A node served over the wire in this process: catalog, node, gateway and wire server on one
//! data directory, what `kvtablet serve --listen` runs, without the signal handling. Tests and
//! benchmarks start one on `127.0.0.1:0` and stop it with [`ServedNode::stop`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogConfig, CatalogError};
use crate::disk_fs::DiskFs;
use crate::gateway::FlussGateway;
use crate::node::{Node, NodeConfig, NodeError};
use crate::system_clock::SystemClock;
use crate::wire::{WireConfig, WireServer};

#[derive(Debug, thiserror::Error)]
pub enum ServedNodeError {
    #[error("cannot open the data directory: {0}")]
    Fs(#[from] kvtablet_core::env::FsError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("the node stopped while starting")]
    Stopped,
}

/// A running node with its wire server.
pub struct ServedNode {
    addr: SocketAddr,
    node: Node,
    stop: Option<oneshot::Sender<()>>,
    wire: Option<JoinHandle<()>>,
}

impl ServedNode {
    /// Opens the catalog under `data_dir`, hosts and leads every table in it, and serves the
    /// Fluss protocol on `listen` (port 0 picks a free port; see [`ServedNode::addr`]).
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        wire_config: WireConfig,
        runtime: Handle,
    ) -> Result<ServedNode, ServedNodeError> {
        let catalog = Arc::new(Catalog::open(
            Arc::new(DiskFs::new(data_dir)?),
            Arc::new(SystemClock::new()),
            CatalogConfig::DEFAULT,
        )?);
        let tables: Vec<(i64, i32)> =
            catalog.tables().iter().map(|table| (table.table_id, table.bucket_count)).collect();
        let mut node = Node::start(NodeConfig::for_tables(data_dir, &tables), runtime).await?;
        let Some(handle) = node.handle() else {
            return Err(ServedNodeError::Stopped);
        };
        let server = match WireServer::bind(listen, wire_config).await {
            Ok(server) => server,
            Err(error) => {
                node.shutdown().await;
                return Err(ServedNodeError::Listen(error));
            }
        };
        let addr = server.local_addr();
        let gateway = Arc::new(FlussGateway::new(catalog, handle, addr));
        let (stop, stopped) = oneshot::channel::<()>();
        let wire = tokio::spawn(server.serve(gateway, async move {
            let _ = stopped.await;
        }));
        Ok(ServedNode { addr, node, stop: Some(stop), wire: Some(wire) })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Stops the wire server (answering what is in flight), then the node. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(wire) = self.wire.take() {
            let _ = wire.await;
        }
        self.node.shutdown().await;
    }
}
