//! Tasks on a tokio runtime.

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::Executor;
use tokio::runtime::Handle;

/// Spawns onto the runtime behind `handle`; usable from any thread, inside the runtime or not.
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: Handle,
}

impl TokioExecutor {
    pub fn new(handle: Handle) -> Self {
        TokioExecutor { handle }
    }

    /// The executor of the runtime the caller runs in; `None` outside a runtime.
    pub fn current() -> Option<Self> {
        Handle::try_current().ok().map(TokioExecutor::new)
    }
}

impl Executor for TokioExecutor {
    fn spawn(&self, name: String, task: BoxFuture<'static, ()>) {
        tracing::trace!(task = %name, "spawn");
        // The join handle is dropped on purpose: awaiting and aborting go through
        // `kvtablet_core::task::Task`, which wraps the future before it gets here.
        drop(self.handle.spawn(task));
    }

    fn spawn_blocking(&self, name: String, work: Box<dyn FnOnce() + Send + 'static>) {
        tracing::trace!(task = %name, "spawn_blocking");
        drop(self.handle.spawn_blocking(work));
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        tokio::task::yield_now().boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn spawned_and_blocking_work_both_run() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("test runtime");
        let executor = TokioExecutor::new(runtime.handle().clone());
        let (sender, receiver) = mpsc::channel();
        let async_sender = sender.clone();
        executor.spawn(
            "async".to_string(),
            async move {
                let _ = async_sender.send("async");
            }
            .boxed(),
        );
        executor.spawn_blocking(
            "blocking".to_string(),
            Box::new(move || {
                let _ = sender.send("blocking");
            }),
        );
        let mut seen = [
            receiver.recv_timeout(std::time::Duration::from_secs(5)).expect("first task"),
            receiver.recv_timeout(std::time::Duration::from_secs(5)).expect("second task"),
        ];
        seen.sort();
        assert_eq!(seen, ["async", "blocking"]);
        runtime.block_on(executor.yield_now());
    }
}
