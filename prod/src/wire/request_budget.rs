//! The node-wide budget of request bytes in flight: a frame's bytes are counted from before
//! its body is read until its handler has answered, and a connection waits for budget before
//! it reads a body. A slow or stalled sender therefore holds at most its own frame's share,
//! and the node's request memory stays within `net.max-request-bytes-in-flight` however many
//! connections start large frames.
//!
//! Frames above [`SMALL_FRAME_BYTES`] share three quarters of the budget; the last quarter is
//! kept for small frames, so that metadata, lookups and small writes of other clients are
//! served while large frames wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::wire_stats::WireStats;

/// Frames up to this size never wait behind large ones.
pub const SMALL_FRAME_BYTES: usize = 64 * 1024;

/// The bytes large frames may hold together: the budget minus the quarter kept for small ones.
pub fn large_frame_share(budget_bytes: usize) -> usize {
    budget_bytes - budget_bytes / 4
}

/// The budget shared by every connection of one server.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    /// Every frame takes its size from here.
    all: Arc<Semaphore>,
    /// Large frames take their size from here first.
    large: Arc<Semaphore>,
    stats: Arc<WireStats>,
}

/// Budget held for one frame; given back when dropped.
#[derive(Debug)]
pub(crate) struct BudgetPermit {
    _all: OwnedSemaphorePermit,
    _large: Option<OwnedSemaphorePermit>,
    bytes: usize,
    stats: Arc<WireStats>,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.stats.request_bytes_in_flight.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl RequestBudget {
    pub(crate) fn new(budget_bytes: usize, stats: Arc<WireStats>) -> RequestBudget {
        let budget_bytes = budget_bytes.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            all: Arc::new(Semaphore::new(budget_bytes)),
            large: Arc::new(Semaphore::new(large_frame_share(budget_bytes))),
            stats,
        }
    }

    /// The budget for a frame of `bytes`, at once if it is free.
    pub(crate) fn try_acquire(&self, bytes: usize) -> Option<BudgetPermit> {
        let permits = u32::try_from(bytes).ok()?;
        let large = if bytes > SMALL_FRAME_BYTES {
            Some(Arc::clone(&self.large).try_acquire_many_owned(permits).ok()?)
        } else {
            None
        };
        let all = Arc::clone(&self.all).try_acquire_many_owned(permits).ok()?;
        Some(self.permit(all, large, bytes))
    }

    /// The budget for a frame of `bytes`, waiting (first come, first served) until it is
    /// free. `None` if the frame can never fit (the server's config prevents that).
    pub(crate) async fn acquire(self: Arc<Self>, bytes: usize) -> Option<BudgetPermit> {
        let permits = u32::try_from(bytes).ok()?;
        self.stats.connections_waiting_for_budget.fetch_add(1, Ordering::Relaxed);
        let large = if bytes > SMALL_FRAME_BYTES {
            Arc::clone(&self.large).acquire_many_owned(permits).await.ok()
        } else {
            None
        };
        let all = Arc::clone(&self.all).acquire_many_owned(permits).await.ok();
        self.stats.connections_waiting_for_budget.fetch_sub(1, Ordering::Relaxed);
        if bytes > SMALL_FRAME_BYTES && large.is_none() {
            return None;
        }
        Some(self.permit(all?, large, bytes))
    }

    fn permit(
        &self,
        all: OwnedSemaphorePermit,
        large: Option<OwnedSemaphorePermit>,
        bytes: usize,
    ) -> BudgetPermit {
        let now = self.stats.request_bytes_in_flight.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.stats.request_bytes_in_flight_peak.fetch_max(now, Ordering::Relaxed);
        BudgetPermit { _all: all, _large: large, bytes, stats: Arc::clone(&self.stats) }
    }
}

/// Counts bytes a connection has read but not yet accounted to a frame (at most one read
/// chunk per connection), so that the stats show every buffered byte.
#[derive(Debug)]
pub(crate) struct UnaccountedBytes {
    bytes: usize,
    stats: Arc<WireStats>,
}

impl UnaccountedBytes {
    pub(crate) fn new(stats: Arc<WireStats>) -> Self {
        UnaccountedBytes { bytes: 0, stats }
    }

    pub(crate) fn set(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.stats.unaccounted_read_bytes.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.stats.unaccounted_read_bytes.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for UnaccountedBytes {
    fn drop(&mut self) {
        self.set(0);
    }
}
