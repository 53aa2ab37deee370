//! The one place core takes its locks and atomics from: std's by default, shuttle's under the
//! `shuttle` feature, so that the randomised-scheduler tests (`core/tests/shuttle_*.rs`) can
//! preempt at every lock acquisition of the real components. `Arc` and `Weak` stay std's
//! (shuttle's are the same types).
//!
//! With the feature on, the locks only work inside a shuttle execution (`shuttle::check_*`),
//! so only the shuttle tests are run with it.

#[cfg(not(feature = "shuttle"))]
pub use std::sync::{Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{Mutex, MutexGuard};

/// Atomics, for code whose correctness depends on them; none does today. (Flags that only
/// observers read, such as the ledger's change count and a task's end, are std's: see there.)
pub mod atomic {
    #[cfg(not(feature = "shuttle"))]
    pub use std::sync::atomic::{
        AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };

    #[cfg(feature = "shuttle")]
    pub use shuttle::sync::atomic::{
        AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

/// What stopped a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A corrupt or fatal storage error: the component's data cannot be trusted.
    Fatal,
    /// A panic (a failed assertion, a bug) in the component or while its lock was held.
    Panic,
}

/// Why a component (a replica, a tablet) stopped: set once, by the first fatal error or panic,
/// and never cleared. A stopped component refuses further work with that reason until it is
/// rebuilt from disk (its node restarted).
#[derive(Debug, Default)]
pub struct Stop {
    reason: std::sync::OnceLock<(StopCause, String)>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops `component` for `reason` unless it stopped already; the first stop is logged at
    /// error. Returns whether this call stopped it.
    pub fn stop(
        &self,
        component: &dyn std::fmt::Display,
        cause: StopCause,
        reason: String,
    ) -> bool {
        let first = self.reason.set((cause, reason)).is_ok();
        if first {
            let reason = self.reason();
            tracing::error!(%component, ?cause, reason, "stopped: it serves nothing until its node restarts");
        }
        first
    }

    /// Why it stopped; `None` while it runs.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(|(_, reason)| reason.as_str())
    }

    /// What stopped it; `None` while it runs.
    pub fn cause(&self) -> Option<StopCause> {
        self.reason.get().map(|(cause, _)| *cause)
    }

    pub fn is_stopped(&self) -> bool {
        self.reason.get().is_some()
    }
}

/// Locks `mutex`, the state of `component`. A panic in a holder of the lock poisoned it and
/// left that state in doubt: `component` stops (loudly, through `stop`) and the lock is
/// refused with the stop's reason, now and from then on. A component that already stopped
/// for another reason is still locked: the caller decides what a stopped component may do.
pub fn lock_or_stop<'a, T>(
    mutex: &'a Mutex<T>,
    stop: &Stop,
    component: &dyn std::fmt::Display,
) -> Result<MutexGuard<'a, T>, String> {
    match mutex.lock() {
        Ok(guard) => Ok(guard),
        Err(poisoned) if SHUTTLE => Ok(poisoned.into_inner()),
        Err(_poisoned) => {
            let reason = "a panic while its lock was held left its state in doubt".to_string();
            stop.stop(component, StopCause::Panic, reason);
            Err(stop.reason().unwrap_or("poisoned").to_string())
        }
    }
}

/// Locks `mutex`, part of the state of `component`, for callers that cannot refuse (they
/// report, tear down, or are fenced elsewhere): a lock poisoned by a panic stops `component`
/// (loudly, through `stop`) and the state is handed out as the panic left it. The component
/// must refuse new work at its door once `stop` is set; what is already under way finishes.
pub fn lock_noting_poison<'a, T>(
    mutex: &'a Mutex<T>,
    stop: &Stop,
    component: &dyn std::fmt::Display,
) -> MutexGuard<'a, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) if SHUTTLE => poisoned.into_inner(),
        Err(poisoned) => {
            let reason = "a panic while its lock was held left its state in doubt".to_string();
            stop.stop(component, StopCause::Panic, reason);
            poisoned.into_inner()
        }
    }
}

/// Under shuttle every panic already fails the execution. Reacting to the poisoned lock it
/// leaves would raise a second panic (a refused request failing its test) while the first
/// still unwinds across a scheduling point (a lock released on the way out), which shuttle
/// cannot untangle; so there a poisoned lock hands its state on, and the first panic fails the
/// test.
const SHUTTLE: bool = cfg!(feature = "shuttle");

/// Locks `mutex` even if a panic poisoned it, for tearing a stopped component down (aborting
/// its tasks, dropping its engine) and reporting its last numbers: neither acts on the state
/// in doubt, they only end it or show it.
pub fn lock_for_teardown<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;

    fn poisoned(value: u32) -> Mutex<u32> {
        let mutex = Mutex::new(value);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = mutex.lock().expect("fresh");
            panic!("deliberate panic under the lock");
        }));
        assert!(mutex.is_poisoned());
        mutex
    }

    #[test]
    fn a_poisoned_lock_stops_its_component_and_is_refused_from_then_on() {
        let stop = Stop::new();
        assert!(lock_or_stop(&Mutex::new(1), &stop, &"c").is_ok());
        assert_eq!(stop.cause(), None);
        let mutex = poisoned(1);
        let refused = lock_or_stop(&mutex, &stop, &"c").expect_err("poisoned");
        assert!(refused.contains("panic"), "{refused}");
        assert_eq!(stop.cause(), Some(StopCause::Panic));
        assert!(lock_or_stop(&mutex, &stop, &"c").is_err(), "still refused");
        assert_eq!(*lock_for_teardown(&mutex), 1, "teardown still reaches the state");
    }

    #[test]
    fn lock_noting_poison_hands_out_the_state_and_stops_the_component() {
        let stop = Stop::new();
        let mutex = poisoned(7);
        assert_eq!(*lock_noting_poison(&mutex, &stop, &"c"), 7);
        assert_eq!(stop.cause(), Some(StopCause::Panic));
    }

    #[test]
    fn the_first_stop_wins() {
        let stop = Stop::new();
        assert!(stop.stop(&"c", StopCause::Fatal, "corrupt".into()));
        assert!(!stop.stop(&"c", StopCause::Panic, "later".into()));
        assert_eq!((stop.cause(), stop.reason()), (Some(StopCause::Fatal), Some("corrupt")));
    }
}
