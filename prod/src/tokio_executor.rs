//! Tasks on a tokio runtime.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::Executor;
use kvtablet_core::task::panic_message;
use tokio::runtime::Handle;

/// Spawns onto the runtime behind `handle`; usable from any thread, inside the runtime or not.
///
/// A task or blocking work that panics is not dropped silently, as tokio would: the panic is
/// logged at error with the task's name and counted ([`TokioExecutor::task_panics`], the
/// `kvtablet_task_panics` gauge). Core stops the component whose state a panic left in doubt
/// (a poisoned lock, `task::stop_on_panic`); this is the node-wide record of every one.
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: Handle,
    panics: Arc<AtomicU64>,
}

impl TokioExecutor {
    pub fn new(handle: Handle) -> Self {
        TokioExecutor { handle, panics: Arc::new(AtomicU64::new(0)) }
    }

    /// Tasks and blocking work that panicked since the executor was made (clones share it).
    pub fn task_panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
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
        let panics = Arc::clone(&self.panics);
        drop(self.handle.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                record_panic(&panics, &name, panic.as_ref());
            }
        }));
    }

    fn spawn_blocking(&self, name: String, work: Box<dyn FnOnce() + Send + 'static>) {
        tracing::trace!(task = %name, "spawn_blocking");
        let panics = Arc::clone(&self.panics);
        drop(self.handle.spawn_blocking(move || {
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                record_panic(&panics, &name, panic.as_ref());
            }
        }));
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        tokio::task::yield_now().boxed()
    }
}

/// The unwind was caught only to make it loud: what the task owned is dropped with it, and
/// core has already stopped the component a held lock or `stop_on_panic` tied it to.
fn record_panic(panics: &AtomicU64, name: &str, panic: &(dyn std::any::Any + Send)) {
    panics.fetch_add(1, Ordering::Relaxed);
    tracing::error!(task = %name, panic = panic_message(panic), "a task panicked");
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
        assert_eq!(executor.task_panics(), 0);
    }

    #[test]
    fn a_panicked_task_or_blocking_work_is_counted_and_the_executor_carries_on() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("test runtime");
        let executor = TokioExecutor::new(runtime.handle().clone());
        executor.spawn("panics".to_string(), async { panic!("deliberate task panic") }.boxed());
        executor.spawn_blocking(
            "panics-blocking".to_string(),
            Box::new(|| panic!("deliberate blocking panic")),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while executor.task_panics() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(executor.clone().task_panics(), 2, "both panics are counted");
        let (sender, receiver) = mpsc::channel();
        executor.spawn(
            "after".to_string(),
            async move {
                let _ = sender.send(());
            }
            .boxed(),
        );
        receiver.recv_timeout(std::time::Duration::from_secs(5)).expect("still runs tasks");
    }
}
