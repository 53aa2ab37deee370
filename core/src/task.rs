//! A spawned task that can be aborted and awaited, and that is registered in the leak ledger.

use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable, BoxFuture, FutureExt};

use crate::env::executor::Executor;
use crate::ledger::{Ledger, ResourceKind};
use crate::sync::{Stop, StopCause};
// Not `crate::sync`'s: the flag orders nothing in core (only observers read it), and under
// shuttle its store, made while a panicking task unwinds, would be a scheduling point that
// shuttle cannot run.
use std::sync::atomic::{AtomicBool, Ordering};

/// `future`, a background task of `component`, with a panic in it noticed: instead of the task
/// dying silently (an executor drops a panicked task) while the component carries on without
/// it, the component stops (logged at error with the panic's message). The unwind is caught
/// only to stop the component whose state the panic left in doubt, which then serves nothing.
pub fn stop_on_panic(
    future: BoxFuture<'static, ()>,
    stop: Arc<Stop>,
    component: String,
) -> BoxFuture<'static, ()> {
    async move {
        if let Err(panic) = catch_panic(future).await {
            let reason = format!("its task panicked: {}", panic_message(panic.as_ref()));
            stop.stop(&component, StopCause::Panic, reason);
        }
    }
    .boxed()
}

/// A caught panic's payload.
pub type Panic = Box<dyn std::any::Any + Send>;

/// `future`'s output, or the panic it raised, for the callers that stop what the panic left in
/// doubt (never to carry on with it).
///
/// Under the `shuttle` feature the panic is not caught: shuttle cannot run on while a task's
/// unwinding crosses a scheduling point (a lock released on the way out), so there a panic
/// ends the execution and fails the test, as every panic did before core caught any.
pub fn catch_panic<T: Send + 'static>(
    future: BoxFuture<'static, T>,
) -> BoxFuture<'static, Result<T, Panic>> {
    #[cfg(not(feature = "shuttle"))]
    return std::panic::AssertUnwindSafe(future).catch_unwind().boxed();
    #[cfg(feature = "shuttle")]
    return future.map(Ok).boxed();
}

/// `work`'s result, or the panic it raised: [`catch_panic`] for synchronous work (a blocking
/// engine write), with the same exception under the `shuttle` feature.
pub fn catch_blocking_panic<R>(work: impl FnOnce() -> R) -> Result<R, Panic> {
    #[cfg(not(feature = "shuttle"))]
    return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    #[cfg(feature = "shuttle")]
    return Ok(work());
}

/// The message of a caught panic, if it carried one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}

/// Runs `work` as blocking work on `executor` (a thread of the blocking pool in production,
/// one scheduled step in the simulator, which may also delay it as a slow disk would) and
/// returns its result, or `None` when the executor dropped the work unrun (a simulated crash).
/// The ledger holds an entry until the work has run or been dropped.
pub fn run_blocking<R: Send + 'static>(
    executor: &Arc<dyn Executor>,
    ledger: &Ledger,
    name: String,
    work: impl FnOnce() -> R + Send + 'static,
) -> BoxFuture<'static, Option<R>> {
    let (result_sender, result) = oneshot::channel();
    let entry = ledger.register(ResourceKind::Task, name.clone());
    executor.spawn_blocking(
        name,
        Box::new(move || {
            let result = work();
            // Released before the result is seen, so a caller that has its answer finds the
            // ledger without it.
            drop(entry);
            let _ = result_sender.send(result);
        }),
    );
    async move { result.await.ok() }.boxed()
}

/// Waits for `task` to end, if there is one.
pub async fn join_if_some(task: Option<Task>) {
    if let Some(task) = task {
        task.join().await;
    }
}

/// Handle to a background task. Dropping the handle does not stop the task; call
/// [`Task::abort`] or make the task return.
#[derive(Debug)]
pub struct Task {
    name: String,
    abort: AbortHandle,
    done: Option<oneshot::Receiver<()>>,
    ended: Arc<AtomicBool>,
}

/// Marks its task ended when dropped: when the task's future returns, is aborted, or is
/// dropped unrun by its executor (a simulated crash).
struct EndedOnDrop(Arc<AtomicBool>);

impl Drop for EndedOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Task {
    /// Spawns `future` on `executor` under `name`; the ledger holds an entry until it ends or is
    /// aborted.
    pub fn spawn(
        executor: &Arc<dyn Executor>,
        ledger: &Ledger,
        name: impl Into<String>,
        future: BoxFuture<'static, ()>,
    ) -> Task {
        let name = name.into();
        let (abort, registration) = AbortHandle::new_pair();
        let (done_sender, done) = oneshot::channel();
        let entry = ledger.register(ResourceKind::Task, name.clone());
        let ended = Arc::new(AtomicBool::new(false));
        let ended_on_drop = EndedOnDrop(ended.clone());
        let wrapped = async move {
            let _ = Abortable::new(future, registration).await;
            drop(entry);
            drop(ended_on_drop);
            let _ = done_sender.send(());
        };
        executor.spawn(name.clone(), wrapped.boxed());
        Task { name, abort, done: Some(done), ended }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the task has ended: returned, aborted, or dropped by its executor.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Stops the task at its next await point.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Completes when the task has ended, normally or by abort. A task dropped by its executor
    /// (a simulated crash) also counts as ended.
    pub fn join(mut self) -> BoxFuture<'static, ()> {
        let done = self.done.take();
        async move {
            if let Some(done) = done {
                let _ = done.await;
            }
        }
        .boxed()
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;

    /// Keeps what is spawned; the test runs or drops it.
    #[derive(Default)]
    struct HeldExecutor {
        spawned: std::sync::Mutex<Vec<BoxFuture<'static, ()>>>,
    }

    impl Executor for HeldExecutor {
        fn spawn(&self, _name: String, task: BoxFuture<'static, ()>) {
            self.spawned.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        }

        fn spawn_blocking(&self, _name: String, work: Box<dyn FnOnce() + Send + 'static>) {
            work();
        }

        fn yield_now(&self) -> BoxFuture<'static, ()> {
            async {}.boxed()
        }
    }

    #[test]
    fn a_task_has_ended_once_it_returned_or_was_dropped_unrun_and_not_before() {
        let held = Arc::new(HeldExecutor::default());
        let executor: Arc<dyn Executor> = held.clone();
        let ledger = Ledger::new();
        let returns = Task::spawn(&executor, &ledger, "returns", async {}.boxed());
        let crashed =
            Task::spawn(&executor, &ledger, "crashed", futures::future::pending().boxed());
        assert!(!returns.has_ended() && !crashed.has_ended(), "neither has run yet");
        let mut spawned = std::mem::take(&mut *held.spawned.lock().unwrap());
        let never_ending = spawned.pop().expect("the pending task");
        futures::executor::block_on(spawned.pop().expect("the returning task"));
        assert!(returns.has_ended());
        assert!(!crashed.has_ended(), "a pending task runs on");
        drop(never_ending);
        assert!(crashed.has_ended(), "a task its executor dropped (a crash) has ended");
        assert_eq!(ledger.count(ResourceKind::Task), 0);
    }

    #[test]
    fn a_panicked_task_stops_its_component_with_the_panics_message() {
        let stop = Arc::new(Stop::new());
        let task = async { panic!("deliberate task panic") }.boxed();
        futures::executor::block_on(stop_on_panic(task, stop.clone(), "flush of t1-b0".into()));
        assert_eq!(stop.cause(), Some(StopCause::Panic));
        let reason = stop.reason().expect("stopped");
        assert!(reason.contains("deliberate task panic"), "{reason}");

        let calm = Arc::new(Stop::new());
        futures::executor::block_on(stop_on_panic(async {}.boxed(), calm.clone(), "x".into()));
        assert_eq!(calm.cause(), None, "a task that ends normally stops nothing");
    }
}
