//! How many workload clients are still running: read before every step of a run, so it is an
//! atomic counter (a load is a plain read) rather than a locked one.

use std::sync::atomic::{AtomicU32, Ordering};

/// The count of running clients, shared by the world and the clients' tasks.
#[derive(Debug, Default)]
pub struct ClientsRunning {
    count: AtomicU32,
}

impl ClientsRunning {
    /// Starts the count at `clients`.
    pub fn set(&self, clients: u32) {
        self.count.store(clients, Ordering::SeqCst);
    }

    /// One client is done.
    pub fn finished(&self) {
        let before = self.count.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "more clients finished than were started");
    }

    /// Whether every client is done.
    pub fn none(&self) -> bool {
        self.count.load(Ordering::SeqCst) == 0
    }
}
