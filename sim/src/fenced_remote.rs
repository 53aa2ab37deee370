//! One incarnation's view of the remote store, cut off when that incarnation crashes.
//!
//! A crashed process issues no request, and a request it had in flight dies with it: this is
//! how the simulator kills a tablet server (its tasks are dropped, and a remote operation takes
//! effect only at the end of its latency, when its future is polled). The simulated
//! coordinator's lease and snapshot stores restart without the coordinator's tasks being
//! killed: a request handler of the crashed incarnation can still be awaiting a remote copy.
//! Through a [`FencedRemote`] it cannot touch the store once its incarnation is down: an
//! operation in flight is dropped before its effect, and a new one fails at once, as `Fatal`
//! so that nothing retries it. Without the fence such a zombie retried a lease copy's put and
//! landed it after the next incarnation had deleted the copy (leases seed 800): a lease that
//! comes back from a lost directory, which no process that had really crashed could do.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures::future::{poll_fn, BoxFuture};
use futures::FutureExt;
use kvtablet_core::env::remote_storage::{RemoteError, RemoteObject, RemoteStorage};

/// Whether an incarnation still runs; shared by its [`FencedRemote`] and whoever crashes it.
#[derive(Debug, Clone)]
pub struct Fence {
    up: Arc<AtomicBool>,
}

impl Fence {
    pub fn new() -> Fence {
        Fence { up: Arc::new(AtomicBool::new(true)) }
    }

    /// The incarnation crashed: its remote operations in flight never take effect.
    pub fn bring_down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

impl Default for Fence {
    fn default() -> Self {
        Fence::new()
    }
}

/// The remote store as the incarnation behind `fence` sees it.
pub struct FencedRemote {
    inner: Arc<dyn RemoteStorage>,
    fence: Fence,
}

impl FencedRemote {
    pub fn new(inner: Arc<dyn RemoteStorage>, fence: Fence) -> FencedRemote {
        FencedRemote { inner, fence }
    }

    /// `operation`, dropped unpolled as soon as the fence is down (checked at every poll, so
    /// before the effect that the poll at the end of the latency would apply).
    fn fenced<T: Send + 'static>(
        &self,
        operation: BoxFuture<'static, Result<T, RemoteError>>,
    ) -> BoxFuture<'static, Result<T, RemoteError>> {
        let fence = self.fence.clone();
        let mut operation = operation;
        async move {
            // Ending here drops `operation`, unpolled from then on.
            poll_fn(|cx| {
                if !fence.is_up() {
                    let crashed = "the incarnation that issued it crashed".to_string();
                    return Poll::Ready(Err(RemoteError::Fatal(crashed)));
                }
                operation.poll_unpin(cx)
            })
            .await
        }
        .boxed()
    }
}

impl RemoteStorage for FencedRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.fenced(self.inner.put(path, bytes))
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.fenced(self.inner.get(path))
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.fenced(self.inner.get_range(path, range))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        self.fenced(self.inner.list(prefix))
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.fenced(self.inner.delete(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SimExecutor;
    use crate::prng::Streams;
    use crate::remote::{RemoteFaults, SimRemoteStorage};

    #[test]
    fn an_operation_in_flight_when_the_fence_goes_down_never_lands_and_a_new_one_fails() {
        let executor = SimExecutor::new(&Streams::new(1));
        let faults = RemoteFaults { latency_ms_max: 50, ..RemoteFaults::default() };
        let store = Arc::new(SimRemoteStorage::new(&executor, &Streams::new(1), faults));
        let fence = Fence::new();
        let remote = FencedRemote::new(store.clone(), fence.clone());
        let result = Arc::new(std::sync::Mutex::new(None));
        let answer = result.clone();
        let put = remote.put("a", b"late".to_vec());
        executor.spawn(
            0,
            "put",
            async move {
                *answer.lock().unwrap() = Some(put.await);
            }
            .boxed(),
        );
        // The put is polled once (its latency starts), then the incarnation crashes.
        executor.step();
        fence.bring_down();
        executor.run_for(100).unwrap();
        assert!(store.peek("a").is_none(), "a crashed incarnation's put landed");
        let outcome = result.lock().unwrap().clone();
        assert!(matches!(outcome, Some(Err(RemoteError::Fatal(_)))), "{outcome:?}");
        let delete = remote.delete("b").now_or_never();
        assert!(matches!(delete, Some(Err(RemoteError::Fatal(_)))), "{delete:?}");
    }
}
