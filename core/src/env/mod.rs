//! The seams through which `core` touches the world. Every implementation lives in `sim` or
//! `prod`; nothing in `core` reads time, spawns threads, draws randomness or does I/O except
//! through these.

pub mod clock;
pub mod entropy;
pub mod executor;
pub mod local_fs;
pub mod remote_retry;
pub mod remote_storage;
pub mod rpc;

use std::sync::Arc;

pub use clock::Clock;
pub use entropy::Entropy;
pub use executor::Executor;
pub use local_fs::{FsError, LocalFs};
pub use remote_storage::{RemoteError, RemoteObject, RemoteStorage};
pub use rpc::{Rpc, RpcError, RpcHandler};

use crate::engine::KvEngineFactory;
use crate::ledger::Ledger;
use crate::message::NodeId;
use crate::mutant::Mutants;

/// Everything one node needs from its environment, as one value, so that the engine is written
/// once and bound twice (simulated and real).
#[derive(Clone)]
pub struct Env {
    pub node_id: NodeId,
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
    pub remote: Arc<dyn RemoteStorage>,
    pub rpc: Arc<dyn Rpc>,
    /// The node's own local files (temp files, engine directories).
    pub fs: Arc<dyn LocalFs>,
    pub entropy: Arc<dyn Entropy>,
    pub engines: Arc<dyn KvEngineFactory>,
    pub ledger: Ledger,
    pub mutants: Mutants,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}
