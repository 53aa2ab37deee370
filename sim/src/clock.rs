//! Virtual time: one monotonic clock for the whole simulated cluster, per-node wall clocks,
//! and timers that the executor fires when nothing else can run.
//!
//! Time moves only when the executor (or a fault) says so: a run of a million simulated
//! seconds takes as long as its computation, and every timer fires in a reproducible order.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Waker};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::Clock;
use kvtablet_core::message::NodeId;

/// The wall-clock reading at monotonic time zero unless configured otherwise:
/// 2024-01-01T00:00:00Z, so that wall times look like real timestamps in traces.
pub const DEFAULT_BASE_WALL_MS: u64 = 1_704_067_200_000;

/// A timer's key: deadline first, then registration order, so that timers due at the same
/// millisecond fire in a fixed order.
type TimerKey = (u64, u64);

#[derive(Debug)]
struct TimeState {
    mono_ms: u64,
    base_wall_ms: u64,
    /// Signed per-node offsets added to the wall clock (drift, NTP steps).
    wall_offsets_ms: BTreeMap<NodeId, i64>,
    timers: BTreeMap<TimerKey, Waker>,
    next_timer_seq: u64,
}

/// The shared virtual time of one simulation. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SimTime {
    shared: Arc<SharedTime>,
}

#[derive(Debug)]
struct SharedTime {
    /// `TimeState::mono_ms`, mirrored for reads without the lock: the clock is read far more
    /// often than it moves, and it only moves under the lock.
    mono_ms: AtomicU64,
    state: Mutex<TimeState>,
}

impl SimTime {
    pub fn new(base_wall_ms: u64) -> SimTime {
        SimTime {
            shared: Arc::new(SharedTime {
                mono_ms: AtomicU64::new(0),
                state: Mutex::new(TimeState {
                    mono_ms: 0,
                    base_wall_ms,
                    wall_offsets_ms: BTreeMap::new(),
                    timers: BTreeMap::new(),
                    next_timer_seq: 0,
                }),
            }),
        }
    }

    pub fn now_mono_ms(&self) -> u64 {
        self.shared.mono_ms.load(Ordering::Acquire)
    }

    /// `base_wall + mono + offset(node)`, clamped at zero.
    pub fn now_wall_ms(&self, node: NodeId) -> u64 {
        let state = lock(&self.shared.state);
        let offset_ms = state.wall_offsets_ms.get(&node).copied().unwrap_or(0);
        state.base_wall_ms.saturating_add(state.mono_ms).saturating_add_signed(offset_ms)
    }

    /// Sets the wall-clock offset of `node`; a change models a clock step (forwards or
    /// backwards), repeated small changes model drift. Monotonic time is unaffected.
    pub fn set_wall_offset(&self, node: NodeId, offset_ms: i64) {
        lock(&self.shared.state).wall_offsets_ms.insert(node, offset_ms);
    }

    pub fn wall_offset_ms(&self, node: NodeId) -> i64 {
        lock(&self.shared.state).wall_offsets_ms.get(&node).copied().unwrap_or(0)
    }

    /// The earliest pending timer deadline.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        lock(&self.shared.state).timers.keys().next().map(|(deadline_ms, _)| *deadline_ms)
    }

    pub fn timer_count(&self) -> usize {
        lock(&self.shared.state).timers.len()
    }

    /// Moves monotonic time forward to `mono_ms` and wakes every timer due by then, in
    /// deadline order. A target in the past is ignored: monotonic time never goes backwards.
    /// Returns the number of timers woken.
    pub fn advance_to(&self, mono_ms: u64) -> usize {
        let (first, more) = {
            let mut state = lock(&self.shared.state);
            if mono_ms > state.mono_ms {
                state.mono_ms = mono_ms;
                self.shared.mono_ms.store(mono_ms, Ordering::Release);
            }
            let now_ms = state.mono_ms;
            // Timers are keyed by deadline: the due ones come first, in firing order (usually
            // one or two, so they are taken off the front rather than split off, and only a
            // second one needs a vector).
            let mut first = None;
            let mut more = Vec::new();
            while let Some(timer) = state.timers.first_entry() {
                if timer.key().0 > now_ms {
                    break;
                }
                let waker = timer.remove();
                if first.is_none() {
                    first = Some(waker);
                } else {
                    more.push(waker);
                }
            }
            (first, more)
        };
        // Woken outside the lock, in firing order: a waker may call back into the simulator.
        let count = usize::from(first.is_some()) + more.len();
        for waker in first.into_iter().chain(more) {
            waker.wake();
        }
        count
    }

    /// A future that completes once monotonic time reaches `deadline_mono_ms`.
    pub fn sleep_until(&self, deadline_mono_ms: u64) -> Sleep {
        Sleep { time: self.clone(), deadline_mono_ms, timer: None }
    }

    /// The clock that `node` sees.
    pub fn clock_for(&self, node: NodeId) -> SimClock {
        SimClock { time: self.clone(), node }
    }

    /// Polls a sleep until `deadline_mono_ms` under one lock: `None` once the deadline has
    /// passed (its timer, if any, taken out), else the key of its registered or refreshed
    /// timer.
    fn poll_sleep(
        &self,
        timer: Option<TimerKey>,
        deadline_mono_ms: u64,
        waker: &Waker,
    ) -> Option<TimerKey> {
        let mut state = lock(&self.shared.state);
        if state.mono_ms >= deadline_mono_ms {
            let removed = timer.and_then(|key| state.timers.remove(&key));
            drop(state);
            // Dropped after the lock is released: dropping a waker may run arbitrary code.
            drop(removed);
            return None;
        }
        if let Some(key) = timer {
            if let Some(existing) = state.timers.get_mut(&key) {
                if !existing.will_wake(waker) {
                    existing.clone_from(waker);
                }
                return Some(key);
            }
        }
        let key = (deadline_mono_ms, state.next_timer_seq);
        state.next_timer_seq += 1;
        state.timers.insert(key, waker.clone());
        Some(key)
    }

    fn disarm(&self, key: TimerKey) {
        let removed = lock(&self.shared.state).timers.remove(&key);
        // Dropped after the lock is released: dropping a waker may run arbitrary code.
        drop(removed);
    }
}

/// Returned by [`SimTime::sleep_until`]. Dropping it cancels its timer, so an abandoned sleep
/// (the loser of a timeout race) does not make time jump to a deadline nobody waits for.
#[derive(Debug)]
pub struct Sleep {
    time: SimTime,
    deadline_mono_ms: u64,
    timer: Option<TimerKey>,
}

impl Sleep {
    pub fn deadline_mono_ms(&self) -> u64 {
        self.deadline_mono_ms
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self.time.poll_sleep(self.timer, self.deadline_mono_ms, cx.waker());
        self.timer = timer;
        match timer {
            None => Poll::Ready(()),
            Some(_) => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            self.time.disarm(key);
        }
    }
}

/// One node's [`Clock`]: shared monotonic time, the node's own wall-clock offset.
#[derive(Debug, Clone)]
pub struct SimClock {
    time: SimTime,
    node: NodeId,
}

impl SimClock {
    pub fn node(&self) -> NodeId {
        self.node
    }
}

impl Clock for SimClock {
    fn now_mono_ms(&self) -> u64 {
        self.time.now_mono_ms()
    }

    fn now_wall_ms(&self) -> u64 {
        self.time.now_wall_ms(self.node)
    }

    fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        self.time.sleep_until(deadline_mono_ms).boxed()
    }
}

/// Locks simulator state without ever blocking.
///
/// The simulator runs on one thread, so a lock that is already held means re-entry (a waker
/// or a drop running inside a critical section): a bug that would otherwise hang the run
/// silently. Poisoning is passed over because every critical section leaves the state
/// consistent before it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => {
            panic!("simulator state locked re-entrantly or from a second thread")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once(future: &mut Sleep, waker: &Waker) -> Poll<()> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn sleep_completes_only_at_its_deadline() {
        let time = SimTime::new(DEFAULT_BASE_WALL_MS);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut sleep = time.sleep_until(100);
        assert_eq!(poll_once(&mut sleep, &waker), Poll::Pending);
        assert_eq!(poll_once(&mut sleep, &waker), Poll::Pending);
        assert_eq!(time.timer_count(), 1, "re-polling must not register a second timer");
        assert_eq!(time.next_deadline_ms(), Some(100));

        assert_eq!(time.advance_to(99), 0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert_eq!(time.advance_to(100), 1);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(&mut sleep, &waker), Poll::Ready(()));
        assert_eq!(time.timer_count(), 0);
    }

    #[test]
    fn dropped_sleep_cancels_its_timer() {
        let time = SimTime::new(0);
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut sleep = time.sleep_until(50);
        assert_eq!(poll_once(&mut sleep, &waker), Poll::Pending);
        assert_eq!(time.timer_count(), 1);
        drop(sleep);
        assert_eq!(time.timer_count(), 0);
        assert_eq!(time.next_deadline_ms(), None);
    }

    #[test]
    fn monotonic_time_never_goes_back_and_wall_time_follows_offsets() {
        let time = SimTime::new(1_000_000);
        time.advance_to(500);
        time.advance_to(200);
        assert_eq!(time.now_mono_ms(), 500);
        let clock = time.clock_for(3);
        assert_eq!(clock.now_wall_ms(), 1_000_500);
        time.set_wall_offset(3, -2_000);
        assert_eq!(clock.now_wall_ms(), 998_500, "a backwards wall step is allowed");
        assert_eq!(time.now_wall_ms(4), 1_000_500, "other nodes keep their own offset");
        time.set_wall_offset(4, -5_000_000);
        assert_eq!(time.now_wall_ms(4), 0, "wall time clamps at the epoch");
        assert_eq!(clock.now_mono_ms(), 500);
    }

    #[test]
    fn timers_due_together_all_fire() {
        let time = SimTime::new(0);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut sleeps: Vec<Sleep> =
            [30, 10, 20, 10].iter().map(|ms| time.sleep_until(*ms)).collect();
        for sleep in &mut sleeps {
            assert_eq!(poll_once(sleep, &waker), Poll::Pending);
        }
        assert_eq!(time.next_deadline_ms(), Some(10));
        assert_eq!(time.advance_to(20), 3);
        assert_eq!(time.next_deadline_ms(), Some(30));
        assert_eq!(time.advance_to(u64::MAX), 1);
        assert_eq!(counter.0.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn sleep_in_the_past_is_ready_at_once() {
        let time = SimTime::new(0);
        time.advance_to(10);
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut sleep = time.sleep_until(5);
        assert_eq!(poll_once(&mut sleep, &waker), Poll::Ready(()));
        assert_eq!(time.timer_count(), 0);
    }
}
