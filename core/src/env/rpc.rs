//! Typed request/response transport between nodes.

use futures::future::BoxFuture;

use crate::message::{NodeId, Request, Response};

/// A call that produced no response. Whether the request took effect is unknown for
/// `Timeout`, so a retry must be safe to repeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No response within the deadline; the request may or may not have been applied.
    #[error("rpc to node {0} timed out")]
    Timeout(NodeId),
    /// The target is not reachable (down, unknown); the request was not applied.
    #[error("node {0} unreachable")]
    Unreachable(NodeId),
}

impl RpcError {
    pub fn is_retriable(&self) -> bool {
        true
    }
}

/// One node's view of the network: it sends from its own id.
pub trait Rpc: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>>;
}

/// What a node runs for each request it receives.
pub trait RpcHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, request: Request) -> BoxFuture<'static, Response>;
}
