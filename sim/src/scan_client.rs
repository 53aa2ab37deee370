//! A simulated client of full-scan sessions: it opens scans with random budgets and limits,
//! pages through them, retries pages, sends concurrent duplicates, closes early or abandons
//! sessions, and later probes abandoned and never-issued ids to check the TTL contract.

use std::sync::Arc;

use futures::FutureExt;
use kvtablet_core::env::{Clock, Executor, Rpc, RpcError};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::message::{
    BucketScanRequest, NodeId, Request, Response, ScanKvRequest, ScanKvResponse,
};
use kvtablet_core::scan::bootstrap::{bootstrap, BootstrapOptions};
use kvtablet_core::scan::kv_scanner::KvScannerOptions;
use kvtablet_core::scan::value_record_batch::{record_size_bytes, HEADER_BYTES};
use kvtablet_core::{ErrorCode, TableBucket};

use crate::checker::Checker;
use crate::leader_cache::LeaderCache;
use crate::plan::RunPlan;
use crate::prng::{Prng, Ratio};

const TRANSPORT_RETRIES_MAX: u32 = 3;
const PAGES_MAX: u32 = 10_000;

/// An open session as the client knows it.
#[derive(Debug, Clone)]
struct Session {
    server: NodeId,
    crash_count: u64,
    bucket: TableBucket,
    id: Vec<u8>,
    leader_epoch: u32,
    next_seq: i32,
    batch_size_bytes: i32,
    log_offset: u64,
    limit: Option<i64>,
    /// When the last request that passed validation was sent and answered: the server's last
    /// access lies between the two.
    last_valid_send_ms: u64,
    last_valid_recv_ms: u64,
    last_page: ScanKvResponse,
}

/// What a client process has of its node: its id and its seams.
pub struct ClientNode {
    pub node_id: NodeId,
    pub rpc: Arc<dyn Rpc>,
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
    pub ledger: Ledger,
}

enum Ending {
    Complete,
    CloseEarly,
    Abandon,
}

pub struct ScanClient {
    node_id: NodeId,
    rpc: Arc<dyn Rpc>,
    clock: Arc<dyn Clock>,
    executor: Arc<dyn Executor>,
    ledger: Ledger,
    prng: Prng,
    plan: Arc<RunPlan>,
    checker: Arc<Checker>,
    leaders: LeaderCache,
    abandoned: Vec<Session>,
}

impl ScanClient {
    pub fn new(node: ClientNode, prng: Prng, plan: Arc<RunPlan>, checker: Arc<Checker>) -> Self {
        let ClientNode { node_id, rpc, clock, executor, ledger } = node;
        ScanClient {
            node_id,
            rpc,
            clock,
            executor,
            ledger,
            prng,
            plan,
            checker,
            leaders: LeaderCache::new(),
            abandoned: Vec::new(),
        }
    }

    pub async fn run(mut self) {
        for _ in 0..self.plan.scan_ops_per_client {
            match self.prng.below(12) {
                0..=6 => self.scan_once().await,
                7 | 8 => self.probe_abandoned().await,
                9 => self.probe_never_issued().await,
                _ => self.bootstrap_once().await,
            }
            let think_ms = self.prng.range_inclusive(0, 50);
            self.clock.sleep(think_ms).await;
        }
        // Sessions still abandoned are left to the TTL evictor; the end-of-run check finds them
        // gone.
    }

    fn batch_size_bytes(&mut self) -> i32 {
        match self.prng.below(4) {
            0 => self.prng.range_inclusive(1, 16) as i32,
            1 => self.prng.range_inclusive(17, 300) as i32,
            2 => 4096,
            _ => 1 << 20,
        }
    }

    async fn call(
        &self,
        server: NodeId,
        request: ScanKvRequest,
    ) -> Result<ScanKvResponse, RpcError> {
        match self.rpc.call(server, Request::ScanKv(request), self.plan.request_timeout_ms).await? {
            Response::ScanKv(response) => Ok(response),
            Response::Error(error) => Ok(ScanKvResponse::error(error)),
            other => {
                self.checker.violation(format!("ScanKv answered with {other:?}"));
                Ok(ScanKvResponse::default())
            }
        }
    }

    fn continuation(session: &Session, call_seq_id: i32) -> ScanKvRequest {
        ScanKvRequest {
            scanner_id: Some(session.id.clone()),
            call_seq_id: Some(call_seq_id),
            batch_size_bytes: Some(session.batch_size_bytes),
            ..ScanKvRequest::default()
        }
    }

    async fn scan_once(&mut self) {
        let Some(bucket) = self.checker.partitions.pick_bucket(&mut self.prng) else { return };
        let Some(server) =
            self.leaders.leader_of(&self.rpc, bucket, self.plan.request_timeout_ms).await
        else {
            return self.checker.progress.give_up("scan-open", "no-leader");
        };
        let limit = self
            .prng
            .chance(Ratio::new(1, 3))
            .then(|| self.prng.range_inclusive(1, u64::from(self.plan.keys_per_bucket) + 2) as i64);
        let batch_size_bytes = self.batch_size_bytes();
        let request = ScanKvRequest {
            bucket_scan_req: Some(BucketScanRequest { bucket, limit }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(batch_size_bytes),
            ..ScanKvRequest::default()
        };
        let epoch_at_send = self.checker.log_epoch(bucket);
        let crash_count = self.checker.crash_count(server);
        let send_ms = self.clock.now_mono_ms();
        let response = match self.call(server, request).await {
            Ok(response) => response,
            Err(error) => return self.checker.progress.give_up("scan-open", rpc_reason(&error)),
        };
        self.checker.check_partition_answer(
            &format!("scan open by client {}", self.node_id),
            bucket,
            send_ms,
            response.error.as_ref(),
        );
        self.checker.check_scanner_registries();
        if let Some(error) = &response.error {
            self.checker.progress.give_up("scan-open", &format!("{:?}", error.code));
            self.checker.note(
                self.node_id,
                "scan-open-error",
                format!("{} {:?}", bucket.dir_name_display(), error.code),
            );
            self.checker
                .on_error(&format!("scan open by client {} on {bucket}", self.node_id), error);
            if matches!(error.code, ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable)
            {
                self.leaders.forget(bucket);
            }
            return;
        }
        let values = self.checker.on_scan_page(self.node_id, bucket, epoch_at_send, &response);
        self.check_page_cap(bucket, batch_size_bytes, &values);
        let Some(log_offset) = response.log_offset.and_then(|o| u64::try_from(o).ok()) else {
            return self
                .checker
                .violation(format!("scan open on {bucket} answered without a log_offset"));
        };
        let Some(id) = response.scanner_id.clone() else {
            if response.has_more_results != Some(false) || !values.is_empty() {
                self.checker
                    .violation(format!("scan of {bucket} without a scanner id but with rows"));
            }
            self.checker.note(
                self.node_id,
                "scan-empty",
                format!("{} at {log_offset}", bucket.dir_name_display()),
            );
            return self.finish_complete(server, bucket, log_offset, limit, &values).await;
        };
        let session = Session {
            server,
            crash_count,
            bucket,
            id,
            leader_epoch: response.leader_epoch.unwrap_or(0),
            next_seq: 1,
            batch_size_bytes,
            log_offset,
            limit,
            last_valid_send_ms: send_ms,
            last_valid_recv_ms: self.clock.now_mono_ms(),
            last_page: response.clone(),
        };
        self.checker.note(
            self.node_id,
            "scan-open",
            format!("{} n{server} id {} at {log_offset} size {batch_size_bytes} limit {limit:?} more {:?}", bucket.dir_name_display(), String::from_utf8_lossy(&session.id), response.has_more_results),
        );
        let ending = match self.prng.below(20) {
            0..=11 => Ending::Complete,
            12..=14 => Ending::CloseEarly,
            _ => Ending::Abandon,
        };
        let pages_before_ending = self.prng.range_inclusive(0, 3) as u32;
        self.page_through(
            session,
            values,
            response.has_more_results == Some(true),
            ending,
            pages_before_ending,
        )
        .await;
    }

    async fn page_through(
        &mut self,
        mut session: Session,
        mut values: Vec<Vec<u8>>,
        mut has_more: bool,
        ending: Ending,
        pages_before_ending: u32,
    ) {
        let mut pages = 0u32;
        while has_more && pages < PAGES_MAX {
            match ending {
                Ending::CloseEarly if pages >= pages_before_ending => {
                    return self.close(&session).await
                }
                Ending::Abandon if pages >= pages_before_ending => {
                    self.checker.note(
                        self.node_id,
                        "scan-abandon",
                        format!("{} after {pages} pages", session.bucket.dir_name_display()),
                    );
                    self.abandoned.push(session);
                    return;
                }
                _ => {}
            }
            if self.prng.chance(Ratio::new(1, 8)) && !self.retry_last_page(&session).await {
                return;
            }
            if self.prng.chance(Ratio::new(1, 6)) {
                // A slow reader: half a TTL between pages, which every page must refresh.
                let pause_ms = self.checker.scanner_config().ttl_ms / 2;
                self.checker.note(self.node_id, "scan-pause", format!("{pause_ms} ms"));
                self.clock.sleep(pause_ms).await;
            }
            let page = if self.prng.chance(Ratio::new(1, 12)) {
                self.concurrent_pair(&mut session).await
            } else {
                self.next_page(&mut session).await
            };
            let Some((page_values, more)) = page else { return };
            values.extend(page_values);
            has_more = more;
            pages += 1;
        }
        self.finish_complete(
            session.server,
            session.bucket,
            session.log_offset,
            session.limit,
            &values,
        )
        .await;
    }

    /// Sends the next continuation, retrying the same `call_seq_id` on a transport timeout.
    /// Returns the page's values and whether more follow, or `None` if the scan ended early.
    async fn next_page(&mut self, session: &mut Session) -> Option<(Vec<Vec<u8>>, bool)> {
        let request = Self::continuation(session, session.next_seq);
        for attempt in 0..=TRANSPORT_RETRIES_MAX {
            if attempt > 0 {
                self.checker.note(
                    self.node_id,
                    "scan-transport-retry",
                    format!("seq {}", session.next_seq),
                );
            }
            let epoch_at_send = self.checker.log_epoch(session.bucket);
            let send_ms = self.clock.now_mono_ms();
            match self.call(session.server, request.clone()).await {
                Err(RpcError::Timeout(_)) => continue,
                Err(error @ RpcError::Unreachable(_)) => {
                    self.checker.progress.give_up("scan-page", rpc_reason(&error));
                    return None;
                }
                Ok(response) => return self.accept_page(session, response, epoch_at_send, send_ms),
            }
        }
        self.checker.progress.give_up("scan-page", "timeout");
        None
    }

    /// Two identical continuations at once: one is served, the other is refused as concurrent
    /// or, if it arrives after, answered from the cache. Neither may break the session.
    async fn concurrent_pair(&mut self, session: &mut Session) -> Option<(Vec<Vec<u8>>, bool)> {
        let request = Self::continuation(session, session.next_seq);
        let epoch_at_send = self.checker.log_epoch(session.bucket);
        let send_ms = self.clock.now_mono_ms();
        self.checker.note(self.node_id, "scan-pair", format!("seq {}", session.next_seq));
        let (first, second) = futures::join!(
            self.call(session.server, request.clone()),
            self.call(session.server, request)
        );
        let pages: Vec<ScanKvResponse> =
            [first, second].into_iter().filter_map(Result::ok).collect();
        let served: Vec<&ScanKvResponse> = pages.iter().filter(|r| r.error.is_none()).collect();
        if let [a, b] = served.as_slice() {
            if a != b {
                self.checker.violation(format!(
                    "two copies of continuation {} on {} got different pages",
                    session.next_seq, session.bucket
                ));
            }
        }
        // A storage error ends the session too (checked below like any storage error).
        let ended_by_storage_error = pages.iter().any(|r| {
            r.error.as_ref().is_some_and(|error| error.code == ErrorCode::KvStorageException)
        });
        let ended_by_other =
            served.iter().any(|r| r.has_more_results == Some(false)) || ended_by_storage_error;
        for error in pages.iter().filter_map(|r| r.error.as_ref()) {
            if error.code == ErrorCode::UnknownScannerId && ended_by_other {
                continue;
            }
            self.check_session_error(session, error.code, &error.message, send_ms);
        }
        match served.first() {
            Some(page) => {
                let page = (*page).clone();
                self.accept_page(session, page, epoch_at_send, send_ms)
            }
            None => {
                // The twin's UNKNOWN_SCANNER_ID after the session ended is expected: the
                // session ends with the other answer.
                let mut pages = pages;
                if ended_by_other {
                    pages.sort_by_key(|r| {
                        r.error.as_ref().is_some_and(|e| e.code == ErrorCode::UnknownScannerId)
                    });
                }
                let page = pages.into_iter().next()?;
                self.accept_page(session, page, epoch_at_send, send_ms)
            }
        }
    }

    fn accept_page(
        &mut self,
        session: &mut Session,
        response: ScanKvResponse,
        epoch_at_send: u32,
        send_ms: u64,
    ) -> Option<(Vec<Vec<u8>>, bool)> {
        self.checker.check_scanner_registries();
        if let Some(error) = &response.error {
            self.checker.progress.give_up("scan-page", &format!("{:?}", error.code));
            self.check_session_error(session, error.code, &error.message, send_ms);
            return None;
        }
        let values =
            self.checker.on_scan_page(self.node_id, session.bucket, epoch_at_send, &response);
        self.check_page_cap(session.bucket, session.batch_size_bytes, &values);
        self.checker.note(
            self.node_id,
            "scan-page",
            format!(
                "{} seq {} rows {} more {:?}",
                String::from_utf8_lossy(&session.id),
                session.next_seq,
                values.len(),
                response.has_more_results
            ),
        );
        session.next_seq += 1;
        session.last_valid_send_ms = send_ms;
        session.last_valid_recv_ms = self.clock.now_mono_ms();
        let more = response.has_more_results == Some(true);
        session.last_page = response;
        Some((values, more))
    }

    /// An error on a session the client still holds: `UNKNOWN_SCANNER_ID` is only legitimate
    /// if the server lost its memory (crash) or forgot the id (more than 2 × TTL since the
    /// last access).
    fn check_session_error(&self, session: &Session, code: ErrorCode, message: &str, send_ms: u64) {
        self.checker.note(
            self.node_id,
            "scan-error",
            format!("{} {code:?}", session.bucket.dir_name_display()),
        );
        // A delayed network duplicate of an older continuation is out of order and ends the
        // session, as it must; where duplicates are on, a vanished session proves nothing.
        let same_incarnation = self.checker.crash_count(session.server) == session.crash_count
            && !self.duplicates_possible();
        let within_memory = self.clock.now_mono_ms().saturating_sub(session.last_valid_send_ms)
            <= 2 * self.checker.scanner_config().ttl_ms;
        // The server's last access lies at or after the last valid request's send, and its
        // verdict at or before now: EXPIRED needs more than the TTL between the two, unless
        // the session's term ended (a leadership close remembers ids as expired) or the clock
        // jumped.
        let ttl_ms = self.checker.scanner_config().ttl_ms;
        let idle_at_most_ms = self.clock.now_mono_ms().saturating_sub(session.last_valid_send_ms);
        let same_term = self.checker.log_epoch(session.bucket) == session.leader_epoch
            && self.checker.server_leads_under(
                session.server,
                session.bucket,
                session.leader_epoch,
            );
        let expired_early = same_incarnation
            && same_term
            && !self.checker.clock_jumped_since(session.last_valid_send_ms)
            && idle_at_most_ms <= ttl_ms;
        // A dropped partition's sessions are closed with its replicas.
        if self.checker.partitions.dropped_by(session.bucket, self.clock.now_mono_ms())
            && matches!(
                code,
                ErrorCode::ScannerExpired
                    | ErrorCode::UnknownScannerId
                    | ErrorCode::PartitionNotExists
                    | ErrorCode::NotLeaderOrFollower
            )
        {
            return;
        }
        match code {
            ErrorCode::ScannerExpired if expired_early => self.checker.violation(format!(
                "continuation of a live session on {} (node {}) answered SCANNER_EXPIRED at most {idle_at_most_ms} ms after its last valid access, within the TTL of {ttl_ms} ms",
                session.bucket, session.server
            )),
            ErrorCode::ScannerExpired | ErrorCode::NotLeaderOrFollower | ErrorCode::TooManyScanners => {}
            ErrorCode::UnknownScannerId if !same_incarnation || !within_memory => {}
            ErrorCode::UnknownScannerId => self.checker.violation(format!(
                "continuation of a live session on {} (node {}) answered UNKNOWN_SCANNER_ID {} ms after its last valid request",
                session.bucket,
                session.server,
                send_ms.saturating_sub(session.last_valid_send_ms)
            )),
            ErrorCode::InvalidScanRequest if message.contains("Concurrent") => {}
            _ => self.checker.on_error(&format!("scan continuation on {}", session.bucket), &kvtablet_core::ApiError::new(code, message)),
        }
    }

    /// Repeats the last page's request: the server answers with the same bytes (Fluss would
    /// end the scan). Returns whether the scan can go on.
    async fn retry_last_page(&mut self, session: &Session) -> bool {
        let request = Self::continuation(session, session.next_seq - 1);
        self.checker.note(self.node_id, "scan-retry-last", format!("seq {}", session.next_seq - 1));
        let send_ms = self.clock.now_mono_ms();
        let Ok(response) = self.call(session.server, request).await else { return false };
        match &response.error {
            None => {
                if response != session.last_page {
                    self.checker.violation(format!(
                        "a retry of page {} on {} got a different page",
                        session.next_seq - 1,
                        session.bucket
                    ));
                }
                true
            }
            Some(error) if error.message.contains("Out-of-order") => {
                self.checker.violation(format!(
                    "a transport retry of the last page on {} ended the scan: {}",
                    session.bucket, error.message
                ));
                false
            }
            Some(error) => {
                self.check_session_error(session, error.code, &error.message, send_ms);
                error.message.contains("Concurrent")
            }
        }
    }

    async fn close(&mut self, session: &Session) {
        let request = ScanKvRequest {
            scanner_id: Some(session.id.clone()),
            close_scanner: Some(true),
            batch_size_bytes: Some(session.batch_size_bytes),
            ..ScanKvRequest::default()
        };
        if let Ok(response) = self.call(session.server, request).await {
            if response.error.is_some() || response.has_more_results != Some(false) {
                self.checker.violation(format!(
                    "closing a session on {} answered {response:?}",
                    session.bucket
                ));
            }
        }
    }

    async fn finish_complete(
        &mut self,
        server: NodeId,
        bucket: TableBucket,
        log_offset: u64,
        limit: Option<i64>,
        values: &[Vec<u8>],
    ) {
        self.checker.note(
            self.node_id,
            "scan-complete",
            format!("{} {} rows at {log_offset}", bucket.dir_name_display(), values.len()),
        );
        self.checker.on_scan_complete(bucket, log_offset, limit, values);
        if limit.is_some() || !self.prng.chance(Ratio::new(1, 2)) {
            return;
        }
        // Follow the changelog from the scan's offset and compare with the model.
        let mut batches = Vec::new();
        let mut from_offset = log_offset;
        for _ in 0..64 {
            let request = Request::FetchLog { bucket, from_offset, max_bytes: 64 * 1024 };
            match self.rpc.call(server, request, self.plan.request_timeout_ms).await {
                Ok(Response::FetchLog { batches: fetched, high_watermark, .. }) => {
                    let Some(last) = fetched.last() else { break };
                    from_offset = last.end_offset();
                    batches.extend(fetched);
                    if from_offset >= high_watermark {
                        break;
                    }
                }
                _ => return,
            }
        }
        self.checker.check_handoff(bucket, log_offset, values, &batches);
    }

    /// Probes an abandoned session on a schedule relative to its last valid access, and
    /// checks the answer against the TTL contract.
    async fn probe_abandoned(&mut self) {
        if self.abandoned.is_empty() {
            return;
        }
        let index = self.prng.below(self.abandoned.len() as u64) as usize;
        let session = self.abandoned.swap_remove(index);
        let config = self.checker.scanner_config();
        let expect_expired = self.prng.chance(Ratio::new(1, 2));
        // A request that fails validation before the lookup must not refresh the TTL.
        let bad_probe_at_ms = session.last_valid_recv_ms + config.ttl_ms * 4 / 5;
        self.sleep_until(bad_probe_at_ms).await;
        let bad = ScanKvRequest {
            batch_size_bytes: Some(0),
            ..Self::continuation(&session, session.next_seq)
        };
        if let Ok(response) = self.call(session.server, bad).await {
            if response.error.as_ref().map(|e| e.code) != Some(ErrorCode::InvalidScanRequest) {
                self.checker.violation(format!(
                    "a continuation with batch_size_bytes=0 was answered {response:?}"
                ));
            }
        }
        if expect_expired {
            self.sleep_until(
                session.last_valid_recv_ms + config.ttl_ms + 2 * config.expiration_interval_ms + 1,
            )
            .await;
        }
        let send_ms = self.clock.now_mono_ms();
        let epoch_at_send = self.checker.log_epoch(session.bucket);
        let Ok(response) =
            self.call(session.server, Self::continuation(&session, session.next_seq)).await
        else {
            return;
        };
        self.checker.count_probe();
        let recv_ms = self.clock.now_mono_ms();
        let same_incarnation = self.checker.crash_count(session.server) == session.crash_count
            && !self.duplicates_possible();
        // The session's server may hear of its demotion before the new leader fences the log.
        let same_term = epoch_at_send == session.leader_epoch
            && self.checker.log_epoch(session.bucket) == session.leader_epoch
            && self.checker.server_leads_under(
                session.server,
                session.bucket,
                session.leader_epoch,
            );
        let code = response.error.as_ref().map(|e| e.code);
        self.checker.note(
            self.node_id,
            "scan-probe",
            format!(
                "{} {:?} after {} ms",
                session.bucket.dir_name_display(),
                code,
                send_ms - session.last_valid_recv_ms
            ),
        );
        // A clock jump lands the evictor's timer and the probe on one instant, in either order.
        let no_jump = !self.checker.clock_jumped_since(session.last_valid_send_ms)
            && !self.checker.paused_since(session.server, session.last_valid_send_ms);
        let must_live = same_incarnation
            && same_term
            && no_jump
            && recv_ms - session.last_valid_send_ms <= config.ttl_ms;
        let must_expire = same_incarnation
            && no_jump
            && send_ms - session.last_valid_recv_ms
                > config.ttl_ms + 2 * config.expiration_interval_ms
            && recv_ms - session.last_valid_send_ms <= 2 * config.ttl_ms;
        if must_live && response.error.is_some() {
            self.checker.violation(format!(
                "abandoned session on {} answered {code:?} {} ms after its last valid access, within the TTL of {} ms",
                session.bucket,
                recv_ms - session.last_valid_send_ms,
                config.ttl_ms
            ));
        }
        if must_expire && code != Some(ErrorCode::ScannerExpired) {
            self.checker.violation(format!(
                "abandoned session on {} answered {code:?} {} ms after its last valid access; TTL {} ms, eviction every {} ms: it must be SCANNER_EXPIRED",
                session.bucket,
                send_ms - session.last_valid_recv_ms,
                config.ttl_ms,
                config.expiration_interval_ms
            ));
        }
        if response.error.is_none() {
            let values =
                self.checker.on_scan_page(self.node_id, session.bucket, epoch_at_send, &response);
            self.check_page_cap(session.bucket, session.batch_size_bytes, &values);
            if response.has_more_results == Some(true) {
                let mut next = session.clone();
                next.next_seq += 1;
                self.close(&next).await;
            }
        }
    }

    async fn probe_never_issued(&mut self) {
        let live = self.plan.servers;
        let server = self.prng.range_inclusive(1, u64::from(live)) as NodeId;
        let id = format!("{:016x}{:016x}", self.prng.next_u64(), self.prng.next_u64()).into_bytes();
        let request = ScanKvRequest {
            scanner_id: Some(id),
            call_seq_id: Some(1),
            batch_size_bytes: Some(100),
            ..ScanKvRequest::default()
        };
        if let Ok(response) = self.call(server, request).await {
            self.checker.count_probe();
            let code = response.error.as_ref().map(|e| e.code);
            if code != Some(ErrorCode::UnknownScannerId) {
                self.checker.violation(format!(
                    "a never-issued scanner id on node {server} was answered {code:?}"
                ));
            }
        }
    }

    /// The library's snapshot-then-changelog bootstrap (pipelined `KvScanner`, then FetchLog
    /// from the scan's `log_offset`), checked against the model at the offset it reached.
    async fn bootstrap_once(&mut self) {
        let Some(bucket) = self.checker.partitions.pick_bucket(&mut self.prng) else { return };
        let Some(leader) =
            self.leaders.leader_of(&self.rpc, bucket, self.plan.request_timeout_ms).await
        else {
            return;
        };
        let batch_size_bytes = self.batch_size_bytes();
        let options = BootstrapOptions {
            scan: KvScannerOptions {
                batch_size_bytes,
                request_timeout_ms: self.plan.request_timeout_ms,
                ..KvScannerOptions::DEFAULT
            },
            fetch_log_bytes_max: 4096,
            fetch_log_requests_max: 256,
            fetch_log_poll_interval_ms: 20,
        };
        let outcome = bootstrap(
            self.rpc.clone(),
            self.executor.clone(),
            self.clock.clone(),
            self.ledger.clone(),
            leader,
            bucket,
            options,
            &crate::client::key_of_value,
            None,
        )
        .await;
        match outcome {
            // The partition was dropped under the bootstrap (or before it): it may end anyhow.
            Err(error) if self.checker.partitions.dropped_by(bucket, self.clock.now_mono_ms()) => {
                self.checker.progress.give_up("bootstrap", "partition-dropped");
                self.checker.note(
                    self.node_id,
                    "bootstrap-dropped",
                    format!("{} {error}", bucket.dir_name_display()),
                );
            }
            Ok(result) => {
                let detail = format!(
                    "{} {} rows from {} to {}",
                    bucket.dir_name_display(),
                    result.rows.len(),
                    result.snapshot_log_offset,
                    result.applied_until_offset
                );
                self.checker.note(self.node_id, "bootstrap", detail);
                self.checker.check_bootstrap(bucket, result.applied_until_offset, &result.rows);
            }
            Err(error) if error.is_restartable() => {
                self.checker.progress.give_up("bootstrap", "restartable");
                self.checker.note(
                    self.node_id,
                    "bootstrap-restart",
                    format!("{} {error}", bucket.dir_name_display()),
                );
                self.leaders.forget(bucket);
            }
            // A storage error is a violation unless an injected storage fault explains it.
            Err(kvtablet_core::scan::bootstrap::BootstrapError::FetchLog(error))
                if matches!(
                    error.code,
                    ErrorCode::KvStorageException | ErrorCode::LogStorageException
                ) =>
            {
                self.checker
                    .on_error(&format!("bootstrap of {bucket}: fetching the changelog"), &error)
            }
            Err(error) => self.checker.violation(format!("bootstrap of {bucket} failed: {error}")),
        }
    }

    /// A page respects the batch cap: the server fills it while it is smaller than the
    /// smaller of the requested size and its `kv.scanner` max batch size, and always with at
    /// least one row, so everything but the last row fits below that budget.
    fn check_page_cap(&self, bucket: TableBucket, requested_bytes: i32, values: &[Vec<u8>]) {
        let cap_bytes = u64::from(self.checker.scanner_config().batch_bytes_max);
        let budget_bytes = u64::try_from(requested_bytes.max(1)).unwrap_or(1).min(cap_bytes);
        let Some((_, before_last)) = values.split_last() else { return };
        let bytes_before_last = HEADER_BYTES as u64
            + before_last.iter().map(|v| record_size_bytes(v) as u64).sum::<u64>();
        if !before_last.is_empty() && bytes_before_last >= budget_bytes {
            self.checker.violation(format!(
                "scan page on {bucket} with {} rows: {bytes_before_last} bytes before its last row, over the budget of {budget_bytes} (requested {requested_bytes}, cap {cap_bytes})",
                values.len()
            ));
        }
    }

    fn duplicates_possible(&self) -> bool {
        !self.plan.faults.net_duplicate.is_never()
    }

    async fn sleep_until(&self, at_ms: u64) {
        let now_ms = self.clock.now_mono_ms();
        if at_ms > now_ms {
            self.clock.sleep(at_ms - now_ms).await;
        }
    }
}

fn rpc_reason(error: &RpcError) -> &'static str {
    match error {
        RpcError::Timeout(_) => "timeout",
        RpcError::Unreachable(_) => "unreachable",
    }
}

/// Keeps the future `Send` for the executor.
pub fn spawnable(client: ScanClient) -> futures::future::BoxFuture<'static, ()> {
    client.run().boxed()
}
