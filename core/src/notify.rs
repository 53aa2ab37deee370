//! An async wake-up signal that never blocks a thread, so that it works on the simulator's
//! single thread as on tokio.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct NotifyState {
    /// Bumped by every `notify`; a waiter completes once it differs from what it saw.
    generation: u64,
    wakers: Vec<Waker>,
}

/// Wakes every task waiting on it. A `notify` before `notified().await` is not lost as long as
/// the future was created before the `notify`.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    state: Arc<Mutex<NotifyState>>,
}

impl Notify {
    pub fn new() -> Self {
        Notify::default()
    }

    pub fn notify(&self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.generation = state.generation.wrapping_add(1);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that completes at the first `notify` after this call.
    pub fn notified(&self) -> Notified {
        let seen = lock(&self.state).generation;
        Notified { state: self.state.clone(), seen }
    }
}

/// Returned by [`Notify::notified`].
#[derive(Debug)]
pub struct Notified {
    state: Arc<Mutex<NotifyState>>,
    seen: u64,
}

impl Future for Notified {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.generation != self.seen {
            return Poll::Ready(());
        }
        // A bounded list: re-polls by the same task replace their earlier waker.
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Poisoning is harmless here: the state is a generation counter and a list of wakers, each
/// updated in one step; at worst a waker too many is woken.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn notify_after_creation_completes_the_waiter() {
        let notify = Notify::new();
        let mut waiter = notify.notified();
        assert!((&mut waiter).now_or_never().is_none());
        notify.notify();
        assert!(waiter.now_or_never().is_some());
    }

    #[test]
    fn notify_before_creation_is_not_seen() {
        let notify = Notify::new();
        notify.notify();
        assert!(notify.notified().now_or_never().is_none());
    }
}
