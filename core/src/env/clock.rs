//! Time, read only through this trait so that the simulator owns it.

use futures::future::BoxFuture;

/// Monotonic and wall time in milliseconds, and timers.
///
/// Two clocks on purpose: deadlines (TTL, backoff) use monotonic time, which never goes
/// backwards; wall time is only reported and may jump in the simulator.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary origin; never decreases.
    fn now_mono_ms(&self) -> u64;
    /// Milliseconds since the Unix epoch, as the node believes it.
    fn now_wall_ms(&self) -> u64;
    /// Completes once `now_mono_ms() >= deadline_mono_ms`.
    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()>;

    /// Completes after `duration_ms` of monotonic time.
    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()> {
        let deadline_mono_ms = self.now_mono_ms().saturating_add(duration_ms);
        self.sleep_until(deadline_mono_ms)
    }
}
