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

/// Atomics, for code that needs them; none does today.
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
