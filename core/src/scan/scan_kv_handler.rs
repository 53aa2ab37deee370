//! The `ScanKv` request path: validation, open, continuation, close.
//!
//! Where Fluss ends a session, this ends it too, with two exceptions that fix its residual
//! hazards: a request rejected as concurrent leaves the session alone, and a repeat of the
//! last `call_seq_id` with the same batch size is answered with the cached page.

use std::sync::Arc;

use crate::error::{ApiError, ErrorCode};
use crate::message::{ScanKvRequest, ScanKvResponse};
use crate::mutant::Mutant;
use crate::replica::OpenedScan;
use crate::scan::scan_session::{FillError, ScanSession};
use crate::scan::scanner_manager::SessionLookup;
use crate::tablet_server::TabletServer;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidScanRequest, message)
}

/// Serves one `ScanKv` request. Errors travel in the response body.
pub async fn handle_scan_kv(server: &TabletServer, request: ScanKvRequest) -> ScanKvResponse {
    let mutants = server.env().mutants;
    if mutants.is_on(Mutant::TtlRefreshedBeforeValidation) {
        // The mutant touches the session as soon as it sees the id, whatever follows.
        if let Some(id) = request.scanner_id.as_deref().and_then(|b| std::str::from_utf8(b).ok()) {
            if let SessionLookup::Live(session) = server.scanners().lookup(id) {
                session.mark_accessed(server.env().clock.now_mono_ms());
            }
        }
    }
    if let Err(error) = validate_shape(&request) {
        return ScanKvResponse::error(error);
    }
    match &request.bucket_scan_req {
        Some(_) => open(server, request).await,
        None => continue_or_close(server, request).await,
    }
}

/// The checks that need no session (Fluss §1.6 step 1).
fn validate_shape(request: &ScanKvRequest) -> Result<(), ApiError> {
    let close = request.close_scanner == Some(true);
    match (&request.scanner_id, &request.bucket_scan_req) {
        (Some(_), Some(_)) => {
            return Err(invalid("ScanKv request must not set both scanner_id and bucket_scan_req."))
        }
        (None, None) => {
            return Err(invalid("ScanKv request must set either scanner_id or bucket_scan_req."))
        }
        (None, Some(_)) if close => {
            return Err(invalid(
                "ScanKv request must not set close_scanner together with bucket_scan_req.",
            ))
        }
        _ => {}
    }
    if !close {
        match request.batch_size_bytes {
            None => {
                return Err(invalid(
                    "batch_size_bytes is required for data-fetching scan requests.",
                ))
            }
            Some(size) if size <= 0 => {
                return Err(invalid("batch_size_bytes must be greater than 0."))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_call_seq_id(request: &ScanKvRequest, expected: i32) -> Result<i32, ApiError> {
    match request.call_seq_id {
        None => Err(invalid(
            "call_seq_id is required for ScanKV requests to ensure in-order processing and at-least-once semantics.",
        )),
        Some(id) if id != expected => {
            Err(invalid(format!("Out-of-order scan request: expected callSeqId={expected} but got {id}.")))
        }
        Some(id) => Ok(id),
    }
}

async fn open(server: &TabletServer, request: ScanKvRequest) -> ScanKvResponse {
    let Some(scan) = request.bucket_scan_req.clone() else {
        return ScanKvResponse::error(invalid("no bucket"));
    };
    let replica = match server.scan_replica(scan.bucket) {
        Ok(replica) => replica,
        Err(error) => return ScanKvResponse::error(error),
    };
    if let Err(error) = check_call_seq_id(&request, 0) {
        return ScanKvResponse::error(error);
    }
    if let Err(error) = server.scanners().check_limits(scan.bucket) {
        return ScanKvResponse::error(error);
    }
    // Other opens may pass the same check meanwhile: registration must check again.
    if server.env().entropy.buggify("scan.open.yield_after_limit_check") {
        server.env().executor.yield_now().await;
    }
    let session = match replica.open_scan(scan.limit).await {
        Err(error) => return ScanKvResponse::error(error),
        Ok(OpenedScan::Empty { log_offset }) => {
            return ScanKvResponse {
                has_more_results: Some(false),
                log_offset: Some(log_offset as i64),
                leader_epoch: Some(replica.leader_epoch()),
                ..ScanKvResponse::default()
            }
        }
        Ok(OpenedScan::Session(session)) => session,
    };
    let response = serve_page(server, &session, 0, batch_size(&request));
    // A failed open leaves the client no id to retry with.
    finish(server, &session, None, &response);
    response
}

async fn continue_or_close(server: &TabletServer, request: ScanKvRequest) -> ScanKvResponse {
    let scanner_id = request.scanner_id.clone().unwrap_or_default();
    let close = request.close_scanner == Some(true);
    let closed_response = || ScanKvResponse {
        scanner_id: Some(scanner_id.clone()),
        has_more_results: Some(false),
        ..ScanKvResponse::default()
    };
    let lookup = match std::str::from_utf8(&scanner_id) {
        Ok(id) => server.scanners().lookup(id),
        Err(_) => SessionLookup::Unknown,
    };
    // A repeat of a drained session's final request is answered from the kept page, unless
    // the term that served it has ended since: then the scan must restart (expired), as after
    // a leadership close, not be told that the id is unknown.
    let repeat_of_final_page = match &lookup {
        SessionLookup::Live(_) => None,
        _ if close || !retry_allowed(server) => None,
        _ => finished_page(server, &scanner_id, &request),
    };
    let lookup = match repeat_of_final_page {
        Some(FinalPage::Serve(page)) => return page,
        Some(FinalPage::TermEnded) => SessionLookup::Expired,
        None => lookup,
    };
    let session = match lookup {
        SessionLookup::Live(session) => session,
        // Closing a session that is already gone succeeds: there is nothing the client could do.
        _ if close => return closed_response(),
        SessionLookup::Expired => {
            return ScanKvResponse::error(ApiError::new(
                ErrorCode::ScannerExpired,
                "Scanner session has expired due to inactivity. Please start a new scan.",
            ))
        }
        SessionLookup::Unknown => {
            return ScanKvResponse::error(ApiError::new(
                ErrorCode::UnknownScannerId,
                "Unknown scanner ID. The session may have expired or never existed.",
            ))
        }
    };
    if !session.try_acquire() {
        if close {
            // The request holding the session closes it when it is done.
            server.scanners().end(&session, false, false);
            return closed_response();
        }
        if server.env().mutants.is_on(Mutant::RejectedConcurrentDestroysSession) {
            server.scanners().end(&session, false, true);
        }
        return ScanKvResponse::error(invalid(format!(
            "Concurrent scan request on scanner ID for bucket {}, or session is closing; only one in-flight scanKv RPC per scanner is allowed.",
            session.bucket()
        )));
    }
    // Filling a batch takes time in a real server; the simulator may run others meanwhile.
    server.env().executor.yield_now().await;
    if close {
        server.scanners().end(&session, false, false);
        server.scanners().release(&session);
        return closed_response();
    }
    let response = serve_continuation(server, &session, &request);
    let repeatable = request.call_seq_id.map(|call_seq_id| (call_seq_id, batch_size(&request)));
    finish(server, &session, repeatable, &response);
    response
}

fn retry_allowed(server: &TabletServer) -> bool {
    !server.env().mutants.is_on(Mutant::RetryOfLastPageEndsScan)
}

/// The cached final page of a drained session, if this repeats its request and the server
/// still leads the term that served it.
/// A kept final page that a repeated request matches.
enum FinalPage {
    /// The term that served it still holds: the same page again.
    Serve(ScanKvResponse),
    /// The bucket's leadership moved on since (a fence may precede the leadership close): the
    /// page may not be served again.
    TermEnded,
}

fn finished_page(
    server: &TabletServer,
    scanner_id: &[u8],
    request: &ScanKvRequest,
) -> Option<FinalPage> {
    let id = std::str::from_utf8(scanner_id).ok()?;
    let (bucket, leader_epoch, page) =
        server.scanners().finished_page(id, request.call_seq_id, batch_size(request))?;
    Some(if may_serve(server, bucket, leader_epoch) {
        FinalPage::Serve(page)
    } else {
        FinalPage::TermEnded
    })
}

fn may_serve(
    server: &TabletServer,
    bucket: crate::table_bucket::TableBucket,
    leader_epoch: u32,
) -> bool {
    server.replica(bucket).is_some_and(|r| r.may_serve_under(leader_epoch))
}

fn not_leader_any_more(session: &ScanSession) -> ApiError {
    ApiError::new(
        ErrorCode::NotLeaderOrFollower,
        format!(
            "Leader is no longer local for bucket {}; client should restart the scan against the new leader.",
            session.bucket()
        ),
    )
}

fn serve_continuation(
    server: &TabletServer,
    session: &Arc<ScanSession>,
    request: &ScanKvRequest,
) -> ScanKvResponse {
    let batch_size_bytes = batch_size(request);
    if !may_serve(server, session.bucket(), session.leader_epoch()) {
        return ScanKvResponse::error(not_leader_any_more(session));
    }
    if retry_allowed(server) && request.call_seq_id == Some(session.call_seq_id()) {
        if let Some(page) = session.cached_page(session.call_seq_id(), batch_size_bytes) {
            session.mark_accessed(server.env().clock.now_mono_ms());
            return page;
        }
    }
    let call_seq_id = match check_call_seq_id(request, session.call_seq_id() + 1) {
        Ok(id) => id,
        Err(error) => return ScanKvResponse::error(error),
    };
    serve_page(server, session, call_seq_id, batch_size_bytes)
}

/// Builds the page for `call_seq_id` and remembers it. The TTL is refreshed here, after every
/// check passed.
fn serve_page(
    server: &TabletServer,
    session: &Arc<ScanSession>,
    call_seq_id: i32,
    batch_size_bytes: i32,
) -> ScanKvResponse {
    if call_seq_id == 0 || !server.env().mutants.is_on(Mutant::ContinuationSkipsTtlRefresh) {
        session.mark_accessed(server.env().clock.now_mono_ms());
    }
    let cap_bytes = server.scanners().config().batch_bytes_max as usize;
    let requested_bytes = batch_size_bytes.max(1) as usize;
    let mut budget_bytes = if server.env().mutants.is_on(Mutant::PageOverCap) {
        requested_bytes
    } else {
        requested_bytes.min(cap_bytes)
    };
    // A server may answer with less than asked (one record at least): clients must page on.
    if server.env().entropy.buggify("scan.page.short") {
        budget_bytes = 1;
    }
    let at_least_one = !server.env().mutants.is_on(Mutant::NoAtLeastOneRecord);
    let (records, has_more) = match session.fill_batch(budget_bytes, at_least_one) {
        Ok(page) => page,
        Err(FillError::ClosedUnderRequest(id)) => {
            return ScanKvResponse::error(ApiError::new(
                ErrorCode::UnknownServerError,
                format!("scanner session {id} was closed under an in-flight request"),
            ))
        }
        Err(FillError::Engine(error)) => {
            return ScanKvResponse::error(ApiError::new(
                ErrorCode::KvStorageException,
                error.to_string(),
            ))
        }
    };
    let response = ScanKvResponse {
        scanner_id: Some(session.id().as_bytes().to_vec()),
        has_more_results: Some(has_more),
        records: Some(bytes::Bytes::from(records)),
        // Only the first response carries it.
        log_offset: (call_seq_id == 0).then_some(session.log_offset() as i64),
        leader_epoch: Some(session.leader_epoch()),
        ..ScanKvResponse::default()
    };
    session.remember_page(call_seq_id, batch_size_bytes, &response);
    response
}

/// Ends the session if the scan is over or failed (the cursor may have moved past rows that
/// were never sent, so a failed session cannot be resumed), then releases the request's hold.
///
/// A drained session's final page is kept for a retry of its request, and so is a failure
/// of `repeatable` (the continuation's call sequence id and batch size): a client whose answer
/// was lost and who repeats the request learns the same failure, not that the id is unknown.
/// A lost leadership is remembered as expired instead (the page may not be served again).
fn finish(
    server: &TabletServer,
    session: &Arc<ScanSession>,
    repeatable: Option<(i32, i32)>,
    response: &ScanKvResponse,
) {
    let lost_leadership =
        response.error.as_ref().is_some_and(|e| e.code == ErrorCode::NotLeaderOrFollower);
    let kept_for = if response.error.is_none() && response.has_more_results == Some(false) {
        Some((session.call_seq_id(), session.last_batch_size_bytes()))
    } else if response.error.is_some() && !lost_leadership {
        repeatable
    } else {
        None
    };
    if let Some((call_seq_id, batch_size_bytes)) = kept_for {
        server.scanners().remember_finished(session, call_seq_id, batch_size_bytes, response);
    }
    let over = response.error.is_some() || response.has_more_results != Some(true);
    if over {
        // A session lost to a leadership change is remembered as expired, as a leadership
        // close does, so that a racing request is told to restart rather than that the id is
        // unknown.
        server.scanners().end(session, lost_leadership, false);
    }
    server.scanners().release(session);
}

fn batch_size(request: &ScanKvRequest) -> i32 {
    request.batch_size_bytes.unwrap_or(1)
}
