//! What the wire server counts about its connections and the request bytes they hold, for
//! tests and metrics. Every counter is updated as things happen; reading one is a relaxed load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct WireStats {
    /// Bytes of request frames accounted to the budget: being read or being handled.
    pub(crate) request_bytes_in_flight: AtomicUsize,
    /// The most `request_bytes_in_flight` has been.
    pub(crate) request_bytes_in_flight_peak: AtomicUsize,
    /// Bytes read from sockets and not yet accounted to a frame (at most one read chunk per
    /// connection).
    pub(crate) unaccounted_read_bytes: AtomicUsize,
    /// Connections waiting for budget before they read a frame's body.
    pub(crate) connections_waiting_for_budget: AtomicUsize,
    pub(crate) connections_open: AtomicUsize,
    /// Connections refused at the connection limit (answered with an error frame, or closed at
    /// once when too many refusals are already under way).
    pub(crate) connections_refused: AtomicU64,
    /// Connections closed because a frame was not completed within `net.frame-read-timeout`.
    pub(crate) frames_timed_out: AtomicU64,
    /// Connections closed after `net.max-idle-time` without a request.
    pub(crate) connections_idle_closed: AtomicU64,
    /// Requests whose handler panicked. The first one shuts the server down.
    pub(crate) handler_panics: AtomicU64,
    /// Woken when a handler panics.
    handler_panicked: tokio::sync::Notify,
}

impl WireStats {
    pub fn request_bytes_in_flight(&self) -> usize {
        self.request_bytes_in_flight.load(Ordering::Relaxed)
    }

    pub fn request_bytes_in_flight_peak(&self) -> usize {
        self.request_bytes_in_flight_peak.load(Ordering::Relaxed)
    }

    /// Every request byte the server holds: accounted frames plus unaccounted read chunks.
    pub fn request_bytes_buffered(&self) -> usize {
        self.request_bytes_in_flight() + self.unaccounted_read_bytes.load(Ordering::Relaxed)
    }

    pub fn connections_waiting_for_budget(&self) -> usize {
        self.connections_waiting_for_budget.load(Ordering::Relaxed)
    }

    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Ordering::Relaxed)
    }

    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.load(Ordering::Relaxed)
    }

    pub fn frames_timed_out(&self) -> u64 {
        self.frames_timed_out.load(Ordering::Relaxed)
    }

    pub fn connections_idle_closed(&self) -> u64 {
        self.connections_idle_closed.load(Ordering::Relaxed)
    }

    pub fn handler_panics(&self) -> u64 {
        self.handler_panics.load(Ordering::Relaxed)
    }

    /// Counts a handler's panic and wakes whoever waits for one.
    pub(crate) fn record_handler_panic(&self) {
        self.handler_panics.fetch_add(1, Ordering::Relaxed);
        self.handler_panicked.notify_waiters();
    }

    /// Completes once a request handler has panicked (at once if one has).
    pub async fn handler_panicked(&self) {
        loop {
            let notified = self.handler_panicked.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a panic in between is not missed.
            notified.as_mut().enable();
            if self.handler_panics() > 0 {
                return;
            }
            notified.await;
        }
    }
}
