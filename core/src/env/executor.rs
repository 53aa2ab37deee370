//! Task spawning, only through this trait, so that the simulator owns scheduling.

use futures::future::BoxFuture;

/// Runs named tasks. The simulator runs them on one thread in a seeded order; production runs
/// them on tokio.
///
/// A task that must be awaited or stopped is spawned through [`crate::task::Task`], which adds
/// abort, join and a leak-ledger entry on top of this minimal seam.
pub trait Executor: Send + Sync + 'static {
    /// Starts `task` in the background. `name` shows up in deadlock reports and traces.
    fn spawn(&self, name: String, task: BoxFuture<'static, ()>);
    /// Runs blocking work (disk, engine) off the async workers; the simulator runs it as one
    /// scheduled step.
    fn spawn_blocking(&self, name: String, work: Box<dyn FnOnce() + Send + 'static>);
    /// Gives other tasks a chance to run; an explicit interleaving point for the simulator.
    fn yield_now(&self) -> BoxFuture<'static, ()>;
}
