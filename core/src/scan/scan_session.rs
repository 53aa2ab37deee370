//! One scan session: a point-in-time engine snapshot with its cursor, the changelog offset it
//! matches, and the state that orders and fences the requests that page through it.

use std::sync::Arc;

use crate::sync::{lock_noting_poison, Mutex, MutexGuard, Stop};

use crate::engine::{EngineError, EngineIterator};
use crate::ledger::LedgerEntry;
use crate::message::ScanKvResponse;
use crate::scan::value_record_batch::ValueRecordBatchBuilder;
use crate::table_bucket::TableBucket;

/// The last page served, kept until the next `call_seq_id` arrives so that a transport retry
/// of it is answered with the same bytes instead of ending the scan.
#[derive(Debug, Clone)]
struct CachedPage {
    call_seq_id: i32,
    batch_size_bytes: i32,
    response: ScanKvResponse,
}

struct SessionState {
    /// `None` once the session is closed: the iterator (and with it the snapshot) is released.
    iterator: Option<Box<dyn EngineIterator>>,
    /// Rows still allowed; negative is unlimited.
    remaining_limit: i64,
    /// The last `call_seq_id` served; -1 before the open.
    call_seq_id: i32,
    last_access_ms: u64,
    in_use: bool,
    closed: bool,
    /// A close that arrived while a request held the session; the holder performs it.
    close_deferred: bool,
    last_page: Option<CachedPage>,
    ledger_entry: Option<LedgerEntry>,
}

/// What `close_or_defer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    ClosedNow,
    /// A request holds the session; it closes the session when it releases it.
    Deferred,
    AlreadyClosed,
}

/// Why a batch could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The session was closed under the request that was filling it.
    #[error("scanner session {0} was closed under an in-flight request")]
    ClosedUnderRequest(String),
    #[error("iterator failed: {0}")]
    Engine(#[from] EngineError),
}

/// Where a session comes from: fixed for its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOrigin {
    pub id: String,
    pub bucket: TableBucket,
    /// The leader epoch of the replica that opened it; pages are only served under it.
    pub leader_epoch: u32,
    /// Every change below this offset is in the session's snapshot, none at or above it.
    pub log_offset: u64,
    /// Rows across all batches; absent or `<= 0` is unlimited.
    pub limit: Option<i64>,
    pub now_ms: u64,
}

pub struct ScanSession {
    id: String,
    bucket: TableBucket,
    leader_epoch: u32,
    log_offset: u64,
    state: Mutex<SessionState>,
    /// The stop of the replica that opened it: a panic that poisons the session's lock leaves
    /// its cursor in doubt, and the replica stops (refusing the session's pages).
    stop: Arc<Stop>,
}

impl std::fmt::Debug for ScanSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanSession")
            .field("id", &self.id)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl ScanSession {
    /// A session positioned on its first row, held (in use) by the request that opens it.
    pub fn new(
        origin: SessionOrigin,
        iterator: Box<dyn EngineIterator>,
        ledger_entry: LedgerEntry,
    ) -> ScanSession {
        let SessionOrigin { id, bucket, leader_epoch, log_offset, limit, now_ms } = origin;
        assert_eq!(id.len(), 32, "scanner ids are 32 hex characters");
        assert!(iterator.valid(), "an empty bucket gets no session");
        ScanSession {
            id,
            bucket,
            leader_epoch,
            log_offset,
            state: Mutex::new(SessionState {
                iterator: Some(iterator),
                remaining_limit: limit.filter(|l| *l > 0).unwrap_or(-1),
                call_seq_id: -1,
                last_access_ms: now_ms,
                in_use: true,
                closed: false,
                close_deferred: false,
                last_page: None,
                ledger_entry: Some(ledger_entry),
            }),
            stop: Arc::new(Stop::new()),
        }
    }

    /// The session stops `stop` (its replica's) if a panic poisons its lock.
    pub fn with_stop(mut self, stop: Arc<Stop>) -> ScanSession {
        self.stop = stop;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    pub fn leader_epoch(&self) -> u32 {
        self.leader_epoch
    }

    pub fn log_offset(&self) -> u64 {
        self.log_offset
    }

    pub fn last_access_ms(&self) -> u64 {
        self.lock().last_access_ms
    }

    pub fn is_in_use(&self) -> bool {
        self.lock().in_use
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn call_seq_id(&self) -> i32 {
        self.lock().call_seq_id
    }

    /// The batch size of the last page served.
    pub fn last_batch_size_bytes(&self) -> i32 {
        self.lock().last_page.as_ref().map_or(0, |page| page.batch_size_bytes)
    }

    /// Takes the one in-flight slot; false if another request holds it or the session closed.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.lock();
        if state.closed || state.in_use {
            return false;
        }
        state.in_use = true;
        true
    }

    /// Gives the slot back; performs a deferred close. Returns whether this call closed it.
    pub fn release(&self) -> bool {
        let mut state = self.lock();
        assert!(state.in_use || state.closed, "release without acquire on {}", self.id);
        state.in_use = false;
        if state.close_deferred && !state.closed {
            close_state(&mut state);
            return true;
        }
        false
    }

    /// Closes now if no request holds the session, else leaves the close to the holder.
    /// `force` closes even under a holder (only the mutants do that).
    pub fn close_or_defer(&self, force: bool) -> CloseOutcome {
        let mut state = self.lock();
        if state.closed {
            return CloseOutcome::AlreadyClosed;
        }
        if state.in_use && !force {
            state.close_deferred = true;
            return CloseOutcome::Deferred;
        }
        close_state(&mut state);
        CloseOutcome::ClosedNow
    }

    /// Closes the session if, at `now_ms`, it has been idle for longer than `ttl_ms` and no
    /// request holds it: the evictor's decision and its act in one critical section. Returns
    /// whether this call closed it.
    pub fn close_if_idle(&self, now_ms: u64, ttl_ms: u64) -> bool {
        let mut state = self.lock();
        let idle = now_ms.saturating_sub(state.last_access_ms) > ttl_ms;
        if state.closed || state.in_use || !idle {
            return false;
        }
        close_state(&mut state);
        true
    }

    /// Takes the cursor out of an idle session (only the `ClosedSessionIteratorKept` mutant
    /// does this, to keep it past the close).
    pub fn take_iterator(&self) -> Option<Box<dyn EngineIterator>> {
        let mut state = self.lock();
        if state.in_use {
            return None;
        }
        state.iterator.take()
    }

    /// Refreshes the TTL: only requests that passed validation call this.
    pub fn mark_accessed(&self, now_ms: u64) {
        let mut state = self.lock();
        state.last_access_ms = state.last_access_ms.max(now_ms);
    }

    /// The cached answer to a repeat of the last request, if this is one.
    pub fn cached_page(&self, call_seq_id: i32, batch_size_bytes: i32) -> Option<ScanKvResponse> {
        let state = self.lock();
        let page = state.last_page.as_ref()?;
        (page.call_seq_id == call_seq_id && page.batch_size_bytes == batch_size_bytes)
            .then(|| page.response.clone())
    }

    /// Records the page just served for `call_seq_id`.
    pub fn remember_page(
        &self,
        call_seq_id: i32,
        batch_size_bytes: i32,
        response: &ScanKvResponse,
    ) {
        let mut state = self.lock();
        assert_eq!(call_seq_id, state.call_seq_id + 1, "pages are served in order");
        state.call_seq_id = call_seq_id;
        state.last_page =
            Some(CachedPage { call_seq_id, batch_size_bytes, response: response.clone() });
    }

    /// Fills the next batch up to `batch_bytes_max` of serialized size. At least one row is
    /// always appended (unless `at_least_one` is off, which only a mutant does), so a budget
    /// below the header size still makes progress. Returns the batch and whether rows remain.
    pub fn fill_batch(
        &self,
        batch_bytes_max: usize,
        at_least_one: bool,
    ) -> Result<(Vec<u8>, bool), FillError> {
        let mut state = self.lock();
        let SessionState { iterator, remaining_limit, .. } = &mut *state;
        let Some(iterator) = iterator.as_mut() else {
            return Err(FillError::ClosedUnderRequest(self.id.clone()));
        };
        // Room for the budget and one more row: the page is written once, never regrown.
        let mut builder =
            ValueRecordBatchBuilder::with_capacity(batch_bytes_max.saturating_add(4096));
        let mut appended_any = !at_least_one;
        while iterator.valid()
            && *remaining_limit != 0
            && (!appended_any || builder.size_bytes() < batch_bytes_max)
        {
            builder.append(iterator.value());
            iterator.next();
            appended_any = true;
            if *remaining_limit > 0 {
                *remaining_limit -= 1;
            }
        }
        let has_more = iterator.valid() && *remaining_limit != 0;
        if !has_more {
            // An invalid iterator is either the end or an error; never report an error as the end.
            iterator.status()?;
        }
        Ok((builder.build(), has_more))
    }

    /// Also a poisoned session is locked, to be reported and torn down: the replica it
    /// stopped refuses its pages.
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        lock_noting_poison(&self.state, &self.stop, &self.bucket)
    }
}

fn close_state(state: &mut SessionState) {
    state.closed = true;
    state.close_deferred = false;
    state.iterator = None;
    state.last_page = None;
    state.ledger_entry = None;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::mem_engine::test_fs::TestFs;
    use crate::engine::mem_engine::MemEngine;
    use crate::engine::{KeyRange, KvEngine, WriteBatch};
    use crate::ledger::{Ledger, ResourceKind};

    fn session_last_accessed_at(last_access_ms: u64) -> (ScanSession, Ledger) {
        let engine = MemEngine::new_detached(Arc::new(TestFs::default()));
        let mut batch = WriteBatch::new();
        batch.put(b"k".to_vec(), b"v".to_vec());
        batch.set_flushed_log_offset(1);
        engine.write(&batch).expect("write");
        let mut iterator =
            engine.snapshot().expect("snapshot").iter(KeyRange::all()).expect("iter");
        iterator.seek_to_first();
        let ledger = Ledger::new();
        let origin = SessionOrigin {
            id: "0".repeat(32),
            bucket: TableBucket::new(1, 0),
            leader_epoch: 1,
            log_offset: 1,
            limit: None,
            now_ms: last_access_ms,
        };
        let entry = ledger.register(ResourceKind::ScanSession, "test");
        (ScanSession::new(origin, iterator, entry), ledger)
    }

    #[test]
    fn an_idle_free_session_is_closed_by_close_if_idle() {
        let (session, ledger) = session_last_accessed_at(1_000);
        assert!(!session.release());
        assert!(!session.close_if_idle(2_000, 1_000), "idle for exactly the TTL is alive");
        assert!(session.close_if_idle(2_001, 1_000));
        assert!(session.is_closed());
        assert_eq!(ledger.count(ResourceKind::ScanSession), 0);
        assert!(!session.close_if_idle(9_999, 1_000), "closed once");
    }

    #[test]
    fn a_session_taken_or_refreshed_after_the_evictor_picked_it_is_not_closed() {
        // The evictor's pass saw the session idle at 2_001; then a request took it.
        let (session, _ledger) = session_last_accessed_at(1_000);
        assert!(!session.close_if_idle(2_001, 1_000), "the opening request holds it");
        session.mark_accessed(2_001);
        assert!(!session.release());
        // Released, but refreshed by the request: not idle any more.
        assert!(!session.close_if_idle(2_001, 1_000));
        assert!(!session.is_closed());
        assert!(session.try_acquire(), "the client can go on paging");
    }
}
