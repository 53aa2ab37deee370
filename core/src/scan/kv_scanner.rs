//! The client side of a full scan of one bucket (FIP-17 `ScanKv`), written only against the
//! core seams (`Rpc`, `Executor`, `Clock`, `Ledger`) so that the same scanner runs in-process,
//! in the simulator and over the wire.
//!
//! Protocol, as Fluss's `KvBatchScanner` speaks it (spec §1.11): the open request carries
//! `bucket_scan_req`, `call_seq_id = 0` and `batch_size_bytes`; the k-th continuation carries
//! the scanner id and `call_seq_id = k`; a close carries `close_scanner = true` and
//! `batch_size_bytes` and no `call_seq_id` (closes are exempt from sequence validation).
//!
//! Differences from Fluss's client, on purpose:
//! - Pipelining runs in a spawned task, so the next batch is fetched while the caller works
//!   on the current one even when the transport's futures are lazy.
//! - A continuation that times out is resent with the same `call_seq_id` and the same
//!   `batch_size_bytes`: this server answers a repeat of its last `call_seq_id` with the cached
//!   batch, so a lost response costs one round trip instead of the whole scan.
//! - An open that times out is not retried: the server may have opened a session we cannot
//!   name, and retrying would pin a second snapshot. The orphan is reclaimed by the TTL.

use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{Clock, Executor, Rpc, RpcError};
use crate::error::{ApiError, ErrorCode};
use crate::ledger::Ledger;
use crate::message::{BucketScanRequest, NodeId, Request, Response, ScanKvRequest, ScanKvResponse};
use crate::scan::value_record_batch::ValueBatch;
use crate::table_bucket::TableBucket;
use crate::task::Task;

/// Client-side settings of a scan. There is no `Default`: start from [`KvScannerOptions::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvScannerOptions {
    /// `client.scanner.kv.fetch.max-bytes`: the batch size asked of the server; values below
    /// 1 are sent as 1 (the server still returns at least one row per batch).
    pub batch_size_bytes: i32,
    /// Rows to return across all batches; `None` (or `<= 0`, as the server reads it) is
    /// unlimited.
    pub limit: Option<i64>,
    /// Deadline of each request, open, continuation and close alike.
    pub request_timeout_ms: u64,
    /// How many times an open refused with `TOO_MANY_SCANNERS` is repeated.
    pub open_retries_max: u32,
    /// Sleep before the first repeated open; it doubles before each further one.
    pub open_backoff_ms_min: u64,
    /// How many times a continuation that timed out is resent with the same `call_seq_id`.
    pub transport_retries_max: u32,
}

impl KvScannerOptions {
    pub const DEFAULT: KvScannerOptions = KvScannerOptions {
        batch_size_bytes: 4 * 1024 * 1024,
        limit: None,
        request_timeout_ms: 30_000,
        open_retries_max: 3,
        open_backoff_ms_min: 100,
        transport_retries_max: 3,
    };

    /// The batch size as sent: Fluss's client sends `max(1, value)`.
    pub fn effective_batch_size_bytes(&self) -> i32 {
        self.batch_size_bytes.max(1)
    }
}

/// Why a scan ended early. Each variant says what the caller should do; a restart means a new
/// [`KvScanner::open`], whose snapshot differs, so rows already returned must be discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// `SCANNER_EXPIRED` (66): the session idled past the server's TTL or was closed by a
    /// leadership change. Restart the scan from the beginning.
    #[error("scanner expired; restart the scan from the beginning: {0}")]
    Expired(ApiError),
    /// `UNKNOWN_SCANNER_ID` (67): the server does not know the session. Restart the scan from
    /// the beginning.
    #[error("scanner unknown to the server; restart the scan from the beginning: {0}")]
    UnknownScanner(ApiError),
    /// `NOT_LEADER_OR_FOLLOWER` (12), or another code saying the target does not lead the
    /// bucket (`FENCED_LEADER_EPOCH`, `LEADER_NOT_AVAILABLE`). Refresh metadata, then restart.
    #[error("the target does not lead the bucket; refresh metadata and restart the scan: {0}")]
    NotLeader(ApiError),
    /// `TOO_MANY_SCANNERS` (69), still refused after the open retries. Back off, then restart.
    #[error("too many scanners on the server after the open retries; back off and restart: {0}")]
    TooManyScanners(ApiError),
    /// `INVALID_SCAN_REQUEST` (68): a client bug or a concurrent request on the session. Do
    /// not retry as is.
    #[error("the server rejected the scan request as invalid; do not retry: {0}")]
    InvalidRequest(ApiError),
    /// `KV_STORAGE_EXCEPTION` (11) or `STORAGE_EXCEPTION` (26): the server could not read the
    /// bucket. A restart may succeed.
    #[error("storage failure on the server; the scan may be restarted: {0}")]
    Storage(ApiError),
    /// Any other API error; [`ApiError::is_retriable`] decides whether a restart may help.
    #[error("scan failed: {0}")]
    Other(ApiError),
    /// No response: the open timed out, the target was unreachable, or a continuation still
    /// timed out after its retries. Restart the scan.
    #[error("scan request got no response; restart the scan: {0}")]
    Transport(RpcError),
    /// The response broke the ScanKv protocol (undecodable records, a missing field, the wrong
    /// response kind). A server bug: do not retry.
    #[error("the server broke the ScanKv protocol; do not retry: {0}")]
    Protocol(String),
    /// The executor dropped the request task before it answered (it is shutting down). Do not
    /// retry on this executor.
    #[error("the scan's request task was dropped before it answered; the executor is stopping")]
    Cancelled,
}

impl ScanError {
    /// Classifies an API error by Fluss code.
    pub fn from_api_error(error: ApiError) -> ScanError {
        match error.code {
            ErrorCode::ScannerExpired => ScanError::Expired(error),
            ErrorCode::UnknownScannerId => ScanError::UnknownScanner(error),
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::LeaderNotAvailable => ScanError::NotLeader(error),
            ErrorCode::TooManyScanners => ScanError::TooManyScanners(error),
            ErrorCode::InvalidScanRequest => ScanError::InvalidRequest(error),
            ErrorCode::KvStorageException | ErrorCode::StorageException => {
                ScanError::Storage(error)
            }
            _ => ScanError::Other(error),
        }
    }

    /// True when a fresh scan (a new open; after a metadata refresh for `NotLeader`, after a
    /// backoff for `TooManyScanners`) may succeed.
    pub fn is_restartable(&self) -> bool {
        match self {
            ScanError::Expired(_)
            | ScanError::UnknownScanner(_)
            | ScanError::NotLeader(_)
            | ScanError::TooManyScanners(_)
            | ScanError::Transport(_) => true,
            ScanError::Storage(error) | ScanError::Other(error) => error.is_retriable(),
            ScanError::InvalidRequest(_) | ScanError::Protocol(_) | ScanError::Cancelled => false,
        }
    }

    /// False when the server has already dropped the session, so that sending a close would
    /// only cost a round trip.
    fn session_may_be_live(&self) -> bool {
        !matches!(
            self,
            ScanError::Expired(_) | ScanError::UnknownScanner(_) | ScanError::NotLeader(_)
        )
    }
}

/// Where the server-side session stands, as far as this client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    /// The server holds a session under `scanner_id` and has more batches.
    Open,
    /// The server sent its last batch and ended the session itself (or never opened one, for
    /// an empty bucket). No close is needed.
    Drained,
    /// The client closed it, or an error ended it.
    Closed,
}

/// The continuation sent ahead of the caller, running in its own task.
struct InFlightContinuation {
    call_seq_id: i32,
    outcome: oneshot::Receiver<Result<Response, RpcError>>,
    /// Kept for its name in debugging; the task ends on its own (bounded retries).
    _task: Task,
}

/// A full scan of one bucket at the snapshot the leader took when the scan opened.
///
/// Batches come back in key order; values only (ScanKv does not return keys). Every change
/// below [`KvScanner::log_offset`] is in the scan and none at or above it.
///
/// Dropping an undrained scanner sends a best-effort close from a background task.
pub struct KvScanner {
    rpc: Arc<dyn Rpc>,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    leader: NodeId,
    bucket: TableBucket,
    options: KvScannerOptions,
    batch_size_bytes: i32,
    scanner_id: Option<Vec<u8>>,
    log_offset: u64,
    leader_epoch: Option<u32>,
    state: SessionState,
    /// A batch received but not yet handed to the caller (the open's, or none).
    ready: Option<ValueBatch>,
    in_flight: Option<InFlightContinuation>,
    /// The error that ended the scan, returned again by every later `next_batch`, so that a
    /// failed scan never looks drained.
    failure: Option<ScanError>,
}

impl std::fmt::Debug for KvScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvScanner")
            .field("leader", &self.leader)
            .field("bucket", &self.bucket)
            .field("log_offset", &self.log_offset)
            .field("state", &self.state)
            .field("in_flight_call_seq_id", &self.in_flight.as_ref().map(|c| c.call_seq_id))
            .finish_non_exhaustive()
    }
}

impl KvScanner {
    /// Opens a scan of `bucket` on `leader`. A refusal with `TOO_MANY_SCANNERS` is repeated
    /// up to `open_retries_max` times after sleeping `open_backoff_ms_min`, doubling each time
    /// (100, 200, 400 ms by default). An empty bucket gives a scanner that yields nothing but
    /// still reports its `log_offset`.
    ///
    /// When more batches remain, the first continuation is already on its way when this
    /// returns.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        rpc: Arc<dyn Rpc>,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
        ledger: Ledger,
        leader: NodeId,
        bucket: TableBucket,
        options: KvScannerOptions,
    ) -> Result<KvScanner, ScanError> {
        let batch_size_bytes = options.effective_batch_size_bytes();
        let open_request = ScanKvRequest {
            bucket_scan_req: Some(BucketScanRequest { bucket, limit: options.limit }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(batch_size_bytes),
            ..ScanKvRequest::default()
        };
        let mut backoff_ms = options.open_backoff_ms_min;
        let mut retries_done = 0u32;
        let response = loop {
            let outcome = rpc
                .call(leader, Request::ScanKv(open_request.clone()), options.request_timeout_ms)
                .await
                .map_err(ScanError::Transport)?;
            match scan_kv_response(outcome) {
                Err(ScanError::TooManyScanners(error))
                    if retries_done < options.open_retries_max =>
                {
                    tracing::debug!(%bucket, retries_done, backoff_ms, %error, "scan open refused; backing off");
                    clock.sleep(backoff_ms).await;
                    backoff_ms = backoff_ms.saturating_mul(2);
                    retries_done += 1;
                }
                other => break other?,
            }
        };
        let log_offset = match response.log_offset {
            Some(offset) => u64::try_from(offset).map_err(|_| {
                ScanError::Protocol(format!("negative log_offset {offset} in the open response"))
            })?,
            None => {
                return Err(ScanError::Protocol("the open response has no log_offset".to_string()))
            }
        };
        let mut scanner = KvScanner {
            rpc,
            executor,
            clock,
            ledger,
            leader,
            bucket,
            options,
            batch_size_bytes,
            scanner_id: response.scanner_id.clone(),
            log_offset,
            leader_epoch: response.leader_epoch,
            state: SessionState::Open,
            ready: None,
            in_flight: None,
            failure: None,
        };
        match scanner.accept_batch(response, 0) {
            Ok(values) => {
                scanner.ready = Some(values).filter(|values| !values.is_empty());
                Ok(scanner)
            }
            Err(error) => {
                scanner.fail(error.clone());
                Err(error)
            }
        }
    }

    /// The flushed log offset the snapshot was taken at (exclusive): follow the changelog from
    /// here to continue the scan without gap or duplicate.
    pub fn log_offset(&self) -> u64 {
        self.log_offset
    }

    /// The server's session id; `None` for an empty bucket (no session was opened).
    pub fn scanner_id(&self) -> Option<&[u8]> {
        self.scanner_id.as_deref()
    }

    /// The leader epoch the session was opened under, when the server reports it (the
    /// simulator does; the wire has no field for it).
    pub fn leader_epoch(&self) -> Option<u32> {
        self.leader_epoch
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    /// The next batch, its values in key order (read in place, without a copy per value); `Ok(None)` once the scan is drained. After
    /// an error every later call returns the same error. A batch is never empty unless the
    /// server sends an empty non-final batch, which this server does not.
    ///
    /// Cancel-safe: dropping the returned future keeps the in-flight continuation, and the
    /// next call picks it up.
    pub async fn next_batch(&mut self) -> Result<Option<ValueBatch>, ScanError> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        if let Some(values) = self.ready.take() {
            return Ok(Some(values));
        }
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Ok(None);
        };
        let outcome = (&mut in_flight.outcome).await;
        let call_seq_id = in_flight.call_seq_id;
        self.in_flight = None;
        let accepted = match outcome {
            Ok(Ok(response)) => scan_kv_response(response)
                .and_then(|response| self.accept_batch(response, call_seq_id)),
            Ok(Err(rpc_error)) => Err(ScanError::Transport(rpc_error)),
            Err(oneshot::Canceled) => Err(ScanError::Cancelled),
        };
        match accepted {
            Ok(values) if values.is_empty() && self.state != SessionState::Open => Ok(None),
            Ok(values) => Ok(Some(values)),
            Err(error) => {
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    /// Closes the session: waits for the in-flight continuation (bounded by its timeouts),
    /// then sends `close_scanner` unless the session already ended. Best effort: a failed
    /// close is left to the server's TTL. Nothing is sent after a natural drain.
    pub async fn close(mut self) {
        if self.state != SessionState::Open {
            return;
        }
        self.state = SessionState::Closed;
        let Some(scanner_id) = self.scanner_id.clone() else {
            return;
        };
        let in_flight = self.in_flight.take();
        self.close_request(scanner_id, in_flight).await;
    }

    /// Decodes one response and, if the server has more, sends the next continuation at once.
    fn accept_batch(
        &mut self,
        response: ScanKvResponse,
        call_seq_id: i32,
    ) -> Result<ValueBatch, ScanError> {
        let has_more = response.has_more_results.unwrap_or(false);
        if let (Some(received), Some(ours)) = (&response.scanner_id, &self.scanner_id) {
            if received != ours {
                return Err(ScanError::Protocol(format!(
                    "response for call_seq_id {call_seq_id} names another scanner"
                )));
            }
        }
        let values = match &response.records {
            Some(records) => ValueBatch::parse(records.clone()).map_err(|error| {
                ScanError::Protocol(format!("batch of call_seq_id {call_seq_id}: {error}"))
            })?,
            None => ValueBatch::empty(),
        };
        if has_more {
            if self.scanner_id.is_none() {
                return Err(ScanError::Protocol(
                    "has_more_results without a scanner_id".to_string(),
                ));
            }
            let next_call_seq_id = call_seq_id
                .checked_add(1)
                .ok_or_else(|| ScanError::Protocol("call_seq_id would overflow i32".to_string()))?;
            self.send_continuation(next_call_seq_id);
        } else {
            self.state = SessionState::Drained;
        }
        Ok(values)
    }

    /// Spawns the continuation `call_seq_id`, resending it on timeout, so that one request is
    /// always in flight ahead of the caller.
    fn send_continuation(&mut self, call_seq_id: i32) {
        debug_assert!(self.in_flight.is_none(), "one continuation in flight at a time");
        let request = ScanKvRequest {
            scanner_id: self.scanner_id.clone(),
            call_seq_id: Some(call_seq_id),
            batch_size_bytes: Some(self.batch_size_bytes),
            ..ScanKvRequest::default()
        };
        let (sender, outcome) = oneshot::channel();
        let call = call_resending_on_timeout(
            Arc::clone(&self.rpc),
            Arc::clone(&self.clock),
            self.leader,
            request,
            self.options.request_timeout_ms,
            self.options.transport_retries_max,
        );
        let task = Task::spawn(
            &self.executor,
            &self.ledger,
            format!("kv-scan {} seq {call_seq_id}", self.bucket.dir_name_display()),
            async move {
                let _ = sender.send(call.await);
            }
            .boxed(),
        );
        self.in_flight = Some(InFlightContinuation { call_seq_id, outcome, _task: task });
    }

    /// Ends the scan with `error`; closes the session in the background unless the server
    /// already dropped it.
    fn fail(&mut self, error: ScanError) {
        let session_was_open = self.state == SessionState::Open;
        self.state = SessionState::Closed;
        self.ready = None;
        let in_flight = self.in_flight.take();
        if session_was_open && error.session_may_be_live() {
            if let Some(scanner_id) = self.scanner_id.clone() {
                self.spawn_close(scanner_id, in_flight);
            }
        }
        self.failure = Some(error);
    }

    fn spawn_close(&self, scanner_id: Vec<u8>, in_flight: Option<InFlightContinuation>) {
        let close = self.close_request(scanner_id, in_flight);
        // Fire and forget: the task ends on its own, bounded by the request timeouts.
        let _task = Task::spawn(
            &self.executor,
            &self.ledger,
            format!("kv-scan {} close", self.bucket.dir_name_display()),
            close,
        );
    }

    /// The close as a self-contained future: first let the in-flight continuation finish
    /// (a close racing it would be rejected as a concurrent request), then close unless that
    /// continuation ended the session.
    fn close_request(
        &self,
        scanner_id: Vec<u8>,
        in_flight: Option<InFlightContinuation>,
    ) -> BoxFuture<'static, ()> {
        let rpc = Arc::clone(&self.rpc);
        let leader = self.leader;
        let bucket = self.bucket;
        let timeout_ms = self.options.request_timeout_ms;
        let request = ScanKvRequest {
            scanner_id: Some(scanner_id),
            batch_size_bytes: Some(self.batch_size_bytes),
            close_scanner: Some(true),
            ..ScanKvRequest::default()
        };
        async move {
            if let Some(in_flight) = in_flight {
                if let Ok(Ok(response)) = in_flight.outcome.await {
                    let session_ended = match scan_kv_response(response) {
                        Ok(response) => !response.has_more_results.unwrap_or(false),
                        Err(error) => !error.session_may_be_live(),
                    };
                    if session_ended {
                        return;
                    }
                }
            }
            match rpc.call(leader, Request::ScanKv(request), timeout_ms).await {
                Ok(Response::ScanKv(ScanKvResponse { error: None, .. })) => {}
                outcome => tracing::debug!(%bucket, ?outcome, "best-effort scan close failed"),
            }
        }
        .boxed()
    }
}

impl Drop for KvScanner {
    fn drop(&mut self) {
        if self.state != SessionState::Open {
            return;
        }
        self.state = SessionState::Closed;
        if let Some(scanner_id) = self.scanner_id.clone() {
            let in_flight = self.in_flight.take();
            self.spawn_close(scanner_id, in_flight);
        }
    }
}

/// Sends `request`, resending it (same `call_seq_id`, same batch size) after each timeout up to
/// `resends_max` times. `Unreachable` is final: the request was not applied, and the node is
/// gone.
///
/// A request can reach the server while another holds the session (the original of a resend,
/// or a network duplicate of the previous continuation); the server refuses it as concurrent
/// without harming the session, so it is sent again after a pause, within the same budget.
fn call_resending_on_timeout(
    rpc: Arc<dyn Rpc>,
    clock: Arc<dyn Clock>,
    leader: NodeId,
    request: ScanKvRequest,
    timeout_ms: u64,
    resends_max: u32,
) -> BoxFuture<'static, Result<Response, RpcError>> {
    async move {
        let mut resends_done = 0u32;
        loop {
            let outcome = rpc.call(leader, Request::ScanKv(request.clone()), timeout_ms).await;
            let refused_as_concurrent = is_concurrent_refusal(&outcome);
            match outcome {
                Err(RpcError::Timeout(node)) if resends_done < resends_max => {
                    tracing::debug!(node, call_seq_id = ?request.call_seq_id, "scan continuation timed out; resending");
                    resends_done += 1;
                }
                Ok(_) if refused_as_concurrent && resends_done < resends_max => {
                    resends_done += 1;
                    clock.sleep(CONCURRENT_REFUSAL_PAUSE_MS << resends_done.min(6)).await;
                }
                outcome => return outcome,
            }
        }
    }
    .boxed()
}

/// Base pause before resending after a concurrent refusal; it doubles with every resend.
const CONCURRENT_REFUSAL_PAUSE_MS: u64 = 10;

/// The server's answer to a second request on a session that a first one still holds
/// (`INVALID_SCAN_REQUEST`, which Fluss also uses for malformed requests, so the message
/// tells them apart).
fn is_concurrent_refusal(outcome: &Result<Response, RpcError>) -> bool {
    let error = match outcome {
        Ok(Response::ScanKv(ScanKvResponse { error: Some(error), .. }))
        | Ok(Response::Error(error)) => error,
        _ => return false,
    };
    error.code == ErrorCode::InvalidScanRequest
        && error.message.starts_with("Concurrent scan request")
}

/// The ScanKv body of a response, or the error it carries. Errors may come in the body (as
/// Fluss sends them) or as `Response::Error` (from request validation before the scan path).
fn scan_kv_response(response: Response) -> Result<ScanKvResponse, ScanError> {
    match response {
        Response::ScanKv(ScanKvResponse { error: Some(error), .. }) | Response::Error(error) => {
            Err(ScanError::from_api_error(error))
        }
        Response::ScanKv(response) => Ok(response),
        other => {
            Err(ScanError::Protocol(format!("expected a ScanKv response, got {}", other.kind())))
        }
    }
}

/// A single-threaded runtime with virtual time and a scripted leader, for unit tests of the
/// client code in this module and in `bootstrap` (core cannot depend on the simulator).
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Poll, Waker};

    use futures::channel::oneshot;
    use futures::executor::LocalPool;
    use futures::future::BoxFuture;
    use futures::task::{LocalSpawnExt, SpawnExt};
    use futures::FutureExt;

    use crate::env::{Clock, Executor, Rpc, RpcError};
    use crate::error::ApiError;
    use crate::log::LogBatch;
    use crate::message::{NodeId, Request, Response, ScanKvRequest, ScanKvResponse};
    use crate::scan::value_record_batch::ValueRecordBatchBuilder;

    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    type Inbox = Arc<Mutex<Vec<BoxFuture<'static, ()>>>>;

    struct QueueExecutor {
        inbox: Inbox,
    }

    impl Executor for QueueExecutor {
        fn spawn(&self, _name: String, task: BoxFuture<'static, ()>) {
            lock(&self.inbox).push(task);
        }

        fn spawn_blocking(&self, _name: String, work: Box<dyn FnOnce() + Send + 'static>) {
            lock(&self.inbox).push(async move { work() }.boxed());
        }

        fn yield_now(&self) -> BoxFuture<'static, ()> {
            let mut yielded = false;
            futures::future::poll_fn(move |context| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
                context.waker().wake_by_ref();
                Poll::Pending
            })
            .boxed()
        }
    }

    #[derive(Default)]
    struct ClockState {
        now_ms: u64,
        timers: Vec<(u64, Waker)>,
    }

    /// Virtual time: it moves only when every task is stalled, to the earliest timer.
    #[derive(Default)]
    pub(crate) struct VirtualClock {
        state: Arc<Mutex<ClockState>>,
    }

    impl VirtualClock {
        /// Jumps to the earliest pending timer and wakes everything due; false when none.
        fn fire_next_timer(&self) -> bool {
            let mut state = lock(&self.state);
            let Some(deadline) = state.timers.iter().map(|(deadline, _)| *deadline).min() else {
                return false;
            };
            state.now_ms = state.now_ms.max(deadline);
            let now_ms = state.now_ms;
            let (due, pending): (Vec<_>, Vec<_>) =
                std::mem::take(&mut state.timers).into_iter().partition(|(d, _)| *d <= now_ms);
            state.timers = pending;
            drop(state);
            for (_, waker) in due {
                waker.wake();
            }
            true
        }
    }

    impl Clock for VirtualClock {
        fn now_mono_ms(&self) -> u64 {
            lock(&self.state).now_ms
        }

        fn now_wall_ms(&self) -> u64 {
            lock(&self.state).now_ms
        }

        fn sleep_until(&self, deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
            let state = Arc::clone(&self.state);
            futures::future::poll_fn(move |context| {
                let mut state = lock(&state);
                if state.now_ms >= deadline_mono_ms {
                    return Poll::Ready(());
                }
                state.timers.push((deadline_mono_ms, context.waker().clone()));
                Poll::Pending
            })
            .boxed()
        }
    }

    pub(crate) struct TestRuntime {
        pool: LocalPool,
        inbox: Inbox,
        pub(crate) clock: Arc<VirtualClock>,
    }

    impl TestRuntime {
        pub(crate) fn new() -> TestRuntime {
            TestRuntime {
                pool: LocalPool::new(),
                inbox: Inbox::default(),
                clock: Arc::new(VirtualClock::default()),
            }
        }

        pub(crate) fn executor(&self) -> Arc<dyn Executor> {
            Arc::new(QueueExecutor { inbox: Arc::clone(&self.inbox) })
        }

        pub(crate) fn clock(&self) -> Arc<dyn Clock> {
            Arc::clone(&self.clock) as Arc<dyn Clock>
        }

        /// Runs `future` to completion together with every spawned task, advancing virtual
        /// time whenever everything is stalled.
        pub(crate) fn run<T: 'static>(&mut self, future: impl Future<Output = T> + 'static) -> T {
            let (sender, mut receiver) = oneshot::channel();
            self.pool
                .spawner()
                .spawn_local(async move {
                    let _ = sender.send(future.await);
                })
                .expect("the local pool accepts tasks");
            for _ in 0..100_000 {
                self.settle();
                if let Ok(Some(output)) = receiver.try_recv() {
                    return output;
                }
                assert!(self.clock.fire_next_timer(), "deadlock: the future waits on nothing");
            }
            panic!("the future did not finish within 100000 timer steps");
        }

        /// Runs every task until none is ready, without moving time.
        pub(crate) fn settle(&mut self) {
            for _ in 0..100_000 {
                self.pool.run_until_stalled();
                let spawned = std::mem::take(&mut *lock(&self.inbox));
                if spawned.is_empty() {
                    return;
                }
                for task in spawned {
                    self.pool.spawner().spawn(task).expect("the local pool accepts tasks");
                }
            }
            panic!("tasks kept spawning tasks");
        }

        /// Like `settle`, and also fires timers until none is left.
        pub(crate) fn settle_with_time(&mut self) {
            for _ in 0..100_000 {
                self.settle();
                if !self.clock.fire_next_timer() {
                    return;
                }
            }
            panic!("timers kept firing");
        }
    }

    /// What the scripted leader does with one attempt of a request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// Apply the request, then lose the response (the client sees a timeout).
        TimeoutAfterApply,
        /// Lose the request (the client sees a timeout).
        TimeoutBeforeApply,
        Unreachable,
        /// Answer with this error in the body and drop the session.
        Error(ApiError),
    }

    /// A leader serving one bucket: a sorted list of values for ScanKv (at most one session)
    /// and a list of changelog batches for FetchLog.
    #[derive(Default)]
    pub(crate) struct ScriptedLeaderState {
        pub(crate) values: Vec<Vec<u8>>,
        pub(crate) values_per_batch: usize,
        pub(crate) snapshot_log_offset: i64,
        /// How many opens are refused with TOO_MANY_SCANNERS before one succeeds.
        pub(crate) open_refusals: u32,
        /// Faults by `call_seq_id`, consumed one per attempt.
        pub(crate) faults: BTreeMap<i32, Vec<Fault>>,
        /// Replaces the records of this `call_seq_id` with these bytes.
        pub(crate) corrupt_records: BTreeMap<i32, Vec<u8>>,
        pub(crate) log: Vec<LogBatch>,
        pub(crate) log_batches_per_fetch: usize,
        /// Every request, as the leader saw it (lost requests included).
        pub(crate) requests: Vec<Request>,
        pub(crate) session: Option<Session>,
        pub(crate) next_session_id: u32,
    }

    pub(crate) struct Session {
        id: Vec<u8>,
        next_index: usize,
        last_call_seq_id: i32,
        last_response: ScanKvResponse,
    }

    impl ScriptedLeaderState {
        pub(crate) fn scan_requests(&self) -> Vec<ScanKvRequest> {
            self.requests
                .iter()
                .filter_map(|request| match request {
                    Request::ScanKv(scan) => Some(scan.clone()),
                    _ => None,
                })
                .collect()
        }

        pub(crate) fn continuation_seq_ids(&self) -> Vec<i32> {
            self.scan_requests()
                .iter()
                .filter(|r| r.scanner_id.is_some() && r.close_scanner != Some(true))
                .filter_map(|r| r.call_seq_id)
                .collect()
        }

        pub(crate) fn close_count(&self) -> usize {
            self.scan_requests().iter().filter(|r| r.close_scanner == Some(true)).count()
        }

        pub(crate) fn session_open(&self) -> bool {
            self.session.is_some()
        }

        fn batch_from(&mut self, call_seq_id: i32) -> ScanKvResponse {
            let session = self.session.as_mut().expect("a session");
            let end = (session.next_index + self.values_per_batch.max(1)).min(self.values.len());
            let mut builder = ValueRecordBatchBuilder::new();
            for value in &self.values[session.next_index..end] {
                builder.append(value);
            }
            session.next_index = end;
            let has_more = end < self.values.len();
            let records =
                self.corrupt_records.get(&call_seq_id).cloned().unwrap_or_else(|| builder.build());
            let response = ScanKvResponse {
                scanner_id: Some(session.id.clone()),
                has_more_results: Some(has_more),
                records: Some(bytes::Bytes::from(records)),
                ..ScanKvResponse::default()
            };
            session.last_call_seq_id = call_seq_id;
            session.last_response = response.clone();
            if !has_more {
                self.session = None;
            }
            response
        }

        fn serve_scan(&mut self, request: &ScanKvRequest) -> ScanKvResponse {
            let error = |code, message: &str| ScanKvResponse::error(ApiError::new(code, message));
            use crate::error::ErrorCode;
            if let Some(scan) = &request.bucket_scan_req {
                assert!(request.scanner_id.is_none());
                assert_eq!(request.call_seq_id, Some(0), "the open carries call_seq_id 0");
                assert!(request.batch_size_bytes.is_some_and(|size| size > 0));
                let _ = scan;
                if self.open_refusals > 0 {
                    self.open_refusals -= 1;
                    return error(ErrorCode::TooManyScanners, "per-bucket limit of 8 reached");
                }
                assert!(self.session.is_none(), "the fake leader holds one session");
                if self.values.is_empty() {
                    return ScanKvResponse {
                        has_more_results: Some(false),
                        log_offset: Some(self.snapshot_log_offset),
                        ..ScanKvResponse::default()
                    };
                }
                self.next_session_id += 1;
                self.session = Some(Session {
                    id: format!("{:032x}", self.next_session_id).into_bytes(),
                    next_index: 0,
                    last_call_seq_id: -1,
                    last_response: ScanKvResponse::default(),
                });
                let mut response = self.batch_from(0);
                response.log_offset = Some(self.snapshot_log_offset);
                response.leader_epoch = Some(7);
                return response;
            }
            let Some(session) = self.session.as_ref() else {
                if request.close_scanner == Some(true) {
                    return ScanKvResponse {
                        scanner_id: request.scanner_id.clone(),
                        has_more_results: Some(false),
                        ..ScanKvResponse::default()
                    };
                }
                return error(ErrorCode::UnknownScannerId, "unknown scanner id");
            };
            assert_eq!(request.scanner_id.as_ref(), Some(&session.id));
            if request.close_scanner == Some(true) {
                assert!(request.batch_size_bytes.is_some(), "a close carries batch_size_bytes");
                let id = session.id.clone();
                self.session = None;
                return ScanKvResponse {
                    scanner_id: Some(id),
                    has_more_results: Some(false),
                    ..ScanKvResponse::default()
                };
            }
            let call_seq_id = request.call_seq_id.expect("a continuation carries call_seq_id");
            if call_seq_id == session.last_call_seq_id {
                return session.last_response.clone();
            }
            if call_seq_id != session.last_call_seq_id + 1 {
                self.session = None;
                return error(ErrorCode::InvalidScanRequest, "out of order");
            }
            self.batch_from(call_seq_id)
        }

        fn serve_fetch_log(&mut self, from_offset: u64) -> Response {
            let high_watermark = self.log.last().map_or(0, |batch| batch.end_offset());
            let batches = self
                .log
                .iter()
                .filter(|batch| batch.end_offset() > from_offset)
                .take(self.log_batches_per_fetch.max(1))
                .cloned()
                .collect();
            Response::FetchLog { batches, high_watermark, log_start_offset: 0 }
        }

        fn serve(&mut self, request: Request) -> Result<Response, RpcError> {
            self.requests.push(request.clone());
            let call_seq_id = match &request {
                Request::ScanKv(scan) if scan.close_scanner != Some(true) => scan.call_seq_id,
                _ => None,
            };
            let fault = call_seq_id
                .and_then(|seq| self.faults.get_mut(&seq))
                .and_then(|faults| (!faults.is_empty()).then(|| faults.remove(0)));
            match fault {
                Some(Fault::TimeoutBeforeApply) => return Err(RpcError::Timeout(1)),
                Some(Fault::Unreachable) => return Err(RpcError::Unreachable(1)),
                Some(Fault::Error(error)) => {
                    self.session = None;
                    return Ok(Response::ScanKv(ScanKvResponse::error(error)));
                }
                Some(Fault::TimeoutAfterApply) | None => {}
            }
            let response = match &request {
                Request::ScanKv(scan) => Response::ScanKv(self.serve_scan(scan)),
                Request::FetchLog { from_offset, .. } => self.serve_fetch_log(*from_offset),
                other => panic!("the scripted leader does not serve {}", other.kind()),
            };
            match fault {
                Some(Fault::TimeoutAfterApply) => Err(RpcError::Timeout(1)),
                _ => Ok(response),
            }
        }
    }

    /// The scripted leader as an `Rpc`. Its futures are lazy: nothing reaches the leader until
    /// the future is polled, as with a real transport that sends on first poll.
    #[derive(Clone, Default)]
    pub(crate) struct ScriptedLeader {
        pub(crate) state: Arc<Mutex<ScriptedLeaderState>>,
    }

    pub(crate) const LEADER: NodeId = 1;

    impl ScriptedLeader {
        pub(crate) fn with(state: ScriptedLeaderState) -> ScriptedLeader {
            ScriptedLeader { state: Arc::new(Mutex::new(state)) }
        }

        pub(crate) fn state(&self) -> MutexGuard<'_, ScriptedLeaderState> {
            lock(&self.state)
        }

        pub(crate) fn rpc(&self) -> Arc<dyn Rpc> {
            Arc::new(self.clone())
        }
    }

    impl Rpc for ScriptedLeader {
        fn call(
            &self,
            target: NodeId,
            request: Request,
            _timeout_ms: u64,
        ) -> BoxFuture<'static, Result<Response, RpcError>> {
            assert_eq!(target, LEADER);
            let state = Arc::clone(&self.state);
            async move { lock(&state).serve(request) }.boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Fault, ScriptedLeader, ScriptedLeaderState, TestRuntime, LEADER};
    use super::*;
    use crate::ledger::ResourceKind;

    fn values(count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|i| format!("value-{i:04}").into_bytes()).collect()
    }

    fn leader_with_values(count: usize, per_batch: usize) -> ScriptedLeader {
        ScriptedLeader::with(ScriptedLeaderState {
            values: values(count),
            values_per_batch: per_batch,
            snapshot_log_offset: 42,
            ..ScriptedLeaderState::default()
        })
    }

    fn open(
        runtime: &mut TestRuntime,
        leader: &ScriptedLeader,
        ledger: &Ledger,
        options: KvScannerOptions,
    ) -> Result<KvScanner, ScanError> {
        let opening = KvScanner::open(
            leader.rpc(),
            runtime.executor(),
            runtime.clock(),
            ledger.clone(),
            LEADER,
            TableBucket::new(1, 0),
            options,
        );
        runtime.run(opening)
    }

    /// Drains the scanner; returns every value or the first error.
    fn drain(
        runtime: &mut TestRuntime,
        scanner: KvScanner,
    ) -> (KvScanner, Result<Vec<Vec<u8>>, ScanError>) {
        runtime.run(async move {
            let mut scanner = scanner;
            let mut all = Vec::new();
            for _ in 0..10_000 {
                match scanner.next_batch().await {
                    Ok(Some(batch)) => all.extend(batch.to_vecs()),
                    Ok(None) => return (scanner, Ok(all)),
                    Err(error) => return (scanner, Err(error)),
                }
            }
            panic!("the scan did not end");
        })
    }

    fn next(runtime: &mut TestRuntime, scanner: KvScanner) -> (KvScanner, Option<Vec<Vec<u8>>>) {
        runtime.run(async move {
            let mut scanner = scanner;
            let batch = scanner.next_batch().await.expect("a batch");
            (scanner, batch.map(|batch| batch.to_vecs()))
        })
    }

    #[test]
    fn the_next_continuation_is_sent_before_the_caller_asks() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        assert_eq!(scanner.log_offset(), 42);
        assert_eq!(scanner.leader_epoch(), Some(7));
        runtime.settle();
        assert_eq!(leader.state().continuation_seq_ids(), vec![1], "seq 1 is in flight at open");

        // The open's batch is handed out without a new request.
        let (scanner, batch) = next(&mut runtime, scanner);
        assert_eq!(batch, Some(values(10)[0..3].to_vec()));
        runtime.settle();
        assert_eq!(leader.state().continuation_seq_ids(), vec![1]);

        // Receiving batch 1 sends seq 2 at once.
        let (scanner, batch) = next(&mut runtime, scanner);
        assert_eq!(batch, Some(values(10)[3..6].to_vec()));
        runtime.settle();
        assert_eq!(leader.state().continuation_seq_ids(), vec![1, 2]);

        let (scanner, rest) = drain(&mut runtime, scanner);
        assert_eq!(rest.expect("drains"), values(10)[6..].to_vec());
        let scan_requests = leader.state().scan_requests();
        assert!(scan_requests
            .iter()
            .all(|r| r.batch_size_bytes == Some(KvScannerOptions::DEFAULT.batch_size_bytes)));
        assert_eq!(leader.state().continuation_seq_ids(), vec![1, 2, 3]);

        // A natural drain sends no close, neither from `close` nor from drop.
        runtime.run(scanner.close());
        runtime.settle_with_time();
        assert_eq!(leader.state().close_count(), 0);
        assert!(ledger.live().is_empty(), "{:?}", ledger.live());
    }

    #[test]
    fn a_timed_out_continuation_is_resent_with_the_same_seq_and_batch_size() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        // seq 2: the first attempt is applied but its response lost, the second never arrives.
        leader.state().faults.insert(2, vec![Fault::TimeoutAfterApply, Fault::TimeoutBeforeApply]);
        let options = KvScannerOptions { batch_size_bytes: 0, ..KvScannerOptions::DEFAULT };
        let scanner = open(&mut runtime, &leader, &ledger, options).expect("opens");
        let (_scanner, all) = drain(&mut runtime, scanner);
        assert_eq!(all.expect("the scan survives two timeouts"), values(10));
        assert_eq!(leader.state().continuation_seq_ids(), vec![1, 2, 2, 2, 3]);
        assert!(
            leader.state().scan_requests().iter().all(|r| r.batch_size_bytes == Some(1)),
            "batch_size_bytes is max(1, value) on every request"
        );
    }

    #[test]
    fn a_continuation_that_keeps_timing_out_ends_the_scan_and_closes_it() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        leader.state().faults.insert(1, vec![Fault::TimeoutBeforeApply; 4]);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (scanner, outcome) = drain(&mut runtime, scanner);
        let error = outcome.expect_err("four timeouts exceed three resends");
        assert_eq!(error, ScanError::Transport(RpcError::Timeout(1)));
        assert!(error.is_restartable());
        assert_eq!(leader.state().continuation_seq_ids(), vec![1, 1, 1, 1]);
        runtime.settle_with_time();
        assert_eq!(leader.state().close_count(), 1, "a best-effort close follows");
        assert!(!leader.state().session_open());
        // A failed scan never looks drained.
        let (_scanner, again) = drain(&mut runtime, scanner);
        assert_eq!(again, Err(error));
        runtime.settle_with_time();
        assert!(ledger.live().is_empty(), "{:?}", ledger.live());
    }

    #[test]
    fn an_unreachable_leader_ends_the_scan_without_resending() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        leader.state().faults.insert(1, vec![Fault::Unreachable]);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (_scanner, outcome) = drain(&mut runtime, scanner);
        assert_eq!(outcome, Err(ScanError::Transport(RpcError::Unreachable(1))));
        assert_eq!(leader.state().continuation_seq_ids(), vec![1]);
    }

    #[test]
    fn too_many_scanners_at_open_is_retried_with_doubling_backoff() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(5, 10);
        leader.state().open_refusals = 2;
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        assert_eq!(runtime.clock.now_mono_ms(), 100 + 200);
        assert_eq!(leader.state().scan_requests().len(), 3);
        let (_scanner, all) = drain(&mut runtime, scanner);
        assert_eq!(all.expect("drains"), values(5));
    }

    #[test]
    fn too_many_scanners_after_every_retry_is_reported() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(5, 10);
        leader.state().open_refusals = 4;
        let error = open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT)
            .expect_err("four refusals exceed three retries");
        assert!(matches!(error, ScanError::TooManyScanners(_)), "{error:?}");
        assert!(error.is_restartable());
        assert_eq!(runtime.clock.now_mono_ms(), 100 + 200 + 400);
        assert_eq!(leader.state().scan_requests().len(), 4);
    }

    #[test]
    fn dropping_an_open_scanner_closes_it_after_the_in_flight_continuation() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (scanner, _batch) = next(&mut runtime, scanner);
        drop(scanner);
        runtime.settle_with_time();
        let requests = leader.state().scan_requests();
        let last = requests.last().expect("requests");
        assert_eq!(last.close_scanner, Some(true));
        assert_eq!(last.batch_size_bytes, Some(KvScannerOptions::DEFAULT.batch_size_bytes));
        assert_eq!(leader.state().continuation_seq_ids(), vec![1], "no continuation after drop");
        assert_eq!(leader.state().close_count(), 1);
        assert!(!leader.state().session_open());
        assert_eq!(ledger.count(ResourceKind::Task), 0);
    }

    #[test]
    fn close_sends_a_close_unless_the_scan_is_drained() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        runtime.run(scanner.close());
        assert_eq!(leader.state().close_count(), 1);
        assert!(!leader.state().session_open());
        runtime.settle_with_time();
        assert_eq!(leader.state().close_count(), 1, "drop after close sends nothing");
        assert!(ledger.live().is_empty());
    }

    #[test]
    fn an_empty_bucket_yields_nothing_but_reports_its_log_offset() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(0, 3);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        assert_eq!(scanner.log_offset(), 42);
        assert_eq!(scanner.scanner_id(), None);
        let (scanner, all) = drain(&mut runtime, scanner);
        assert_eq!(all.expect("drains"), Vec::<Vec<u8>>::new());
        drop(scanner);
        runtime.settle_with_time();
        assert_eq!(leader.state().scan_requests().len(), 1, "no continuation and no close");
        assert!(ledger.live().is_empty());
    }

    #[test]
    fn a_scan_that_fits_one_batch_ends_at_open() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(3, 3);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (scanner, all) = drain(&mut runtime, scanner);
        assert_eq!(all.expect("drains"), values(3));
        drop(scanner);
        runtime.settle_with_time();
        assert_eq!(leader.state().scan_requests().len(), 1);
    }

    #[test]
    fn expiry_ends_the_scan_without_a_close() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        let expired = ApiError::new(ErrorCode::ScannerExpired, "expired");
        leader.state().faults.insert(2, vec![Fault::Error(expired.clone())]);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (scanner, outcome) = drain(&mut runtime, scanner);
        assert_eq!(outcome, Err(ScanError::Expired(expired)));
        assert!(outcome.unwrap_err().is_restartable());
        drop(scanner);
        runtime.settle_with_time();
        assert_eq!(leader.state().close_count(), 0);
        assert!(ledger.live().is_empty());
    }

    #[test]
    fn not_leader_and_unknown_scanner_are_classified_for_restart() {
        let not_leader =
            ScanError::from_api_error(ApiError::new(ErrorCode::NotLeaderOrFollower, ""));
        assert!(matches!(not_leader, ScanError::NotLeader(_)) && not_leader.is_restartable());
        let unknown = ScanError::from_api_error(ApiError::new(ErrorCode::UnknownScannerId, ""));
        assert!(matches!(unknown, ScanError::UnknownScanner(_)) && unknown.is_restartable());
        let invalid = ScanError::from_api_error(ApiError::new(ErrorCode::InvalidScanRequest, ""));
        assert!(matches!(invalid, ScanError::InvalidRequest(_)) && !invalid.is_restartable());
        let storage = ScanError::from_api_error(ApiError::new(ErrorCode::KvStorageException, ""));
        assert!(matches!(storage, ScanError::Storage(_)) && storage.is_restartable());
    }

    #[test]
    fn undecodable_records_end_the_scan_and_close_it() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_with_values(10, 3);
        leader.state().corrupt_records.insert(1, vec![200, 0, 0, 0, 0]);
        let scanner =
            open(&mut runtime, &leader, &ledger, KvScannerOptions::DEFAULT).expect("opens");
        let (_scanner, outcome) = drain(&mut runtime, scanner);
        assert!(matches!(outcome, Err(ScanError::Protocol(_))), "{outcome:?}");
        runtime.settle_with_time();
        assert_eq!(leader.state().close_count(), 1);
    }
}
