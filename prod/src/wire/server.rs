//! The TCP server of the Fluss wire protocol.
//!
//! One tokio task per connection. Within a connection, requests are answered **concurrently**:
//! the task keeps reading while up to [`WireConfig::max_in_flight_per_connection`] handler
//! futures are pending, polls them together, and writes each response as soon as it is ready,
//! so responses may leave in a different order than their requests (the Fluss client matches
//! them by request id). At the in-flight limit the task stops reading, which pushes back on the
//! client through TCP. Handler futures run on the connection's task; a handler with heavy or
//! blocking work should hand it to its own tasks.
//!
//! The server answers ApiVersions itself (every key of [`ApiKey::ALL`]; `server_type` left out
//! because one port plays both the coordinator and the tablet server). An unknown api key or a
//! version outside the advertised range gets an ERROR_RESPONSE `UNSUPPORTED_VERSION` (2), never
//! silence; a malformed ApiVersions body gets `CORRUPT_MESSAGE` (3), as should any malformed
//! body a handler decodes (see [`crate::wire::error::decode_request`]). A handler that panics
//! answers `UNKNOWN_SERVER_ERROR` (-1), is logged at error and counted, and shuts the server
//! down as its `shutdown` future would: the panic may have left the handler's state in doubt,
//! so nothing more is served from it ([`WireStats::handler_panicked`] tells the node).
//!
//! A framing error (negative, too short or oversized length, or a stream that ends inside a
//! frame) closes only that connection: nothing more is read from it, the requests before the
//! bad frame are answered, then it is closed.
//!
//! Bounded memory and time (see [`WireConfig`]): a frame's bytes count against the node-wide
//! budget of request bytes in flight from before its body is read until its handler answers,
//! and a connection waits for budget before it reads a body (see [`RequestBudget`]); a frame
//! that has started must be complete within `frame_read_timeout` of its body being allowed in,
//! and a connection with nothing in flight and nothing sent for `idle_timeout` is closed. At
//! the connection limit a new connection gets one ERROR_RESPONSE `NETWORK_EXCEPTION` (1) that
//! names the limit, to its first request, and is closed. [`WireStats`] counts all of it.
//!
//! Shutdown: once the `shutdown` future completes the server stops accepting; every connection
//! stops reading, answers the requests it already has and closes. The server waits for them at
//! most [`WireConfig::shutdown_grace`], then drops whatever is left.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use bytes::{Buf, Bytes, BytesMut};
use futures::future::OptionFuture;
use futures::future::{self, BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::wire::api_key::ApiKey;
use crate::wire::error::{decode_request, ResponseBody, WireError, WireResponse};
use crate::wire::frame::{FrameCodec, FrameError, RequestFrame, ResponseFrame};
use crate::wire::frame::{DEFAULT_MAX_FRAME_SIZE, LENGTH_FIELD_LEN, REQUEST_HEADER_LEN};
use crate::wire::messages::{ApiVersionsRequest, ApiVersionsResponse, PbApiVersion};
use crate::wire::request_budget::UnaccountedBytes;
use crate::wire::request_budget::{large_frame_share, BudgetPermit, RequestBudget};
use crate::wire::wire_stats::WireStats;

/// The smallest `max_frame_size` accepted: every error response must fit.
pub const MIN_MAX_FRAME_SIZE: usize = 1024;
/// Error messages are cut to this many bytes so that an error response always fits.
const MAX_ERROR_MESSAGE_LEN: usize = 512;
/// The most a connection reads before it knows which frame the bytes belong to; such bytes
/// are not yet counted in the budget, so this bounds what escapes it per connection.
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// Refused connections being answered at once; beyond this a refused connection is closed
/// without an answer.
const REFUSALS_IN_PROGRESS_MAX: usize = 64;
/// How long a refused connection has to send its first request header.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Fluss's `NETWORK_EXCEPTION` (retriable): the answer of a refused connection.
const NETWORK_EXCEPTION: i32 = 1;

/// Limits of the wire server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireConfig {
    /// The largest frame accepted or sent, counted after the length field
    /// (`net.max-frame-size`). A request above it closes its connection; a response above it
    /// is replaced by an `UNKNOWN_SERVER_ERROR` response. At least [`MIN_MAX_FRAME_SIZE`].
    pub max_frame_size: usize,
    /// Requests of one connection being handled at once; at the limit the connection is not
    /// read until one is answered.
    pub max_in_flight_per_connection: usize,
    /// Connections open at once; one more is answered an error that says so and closed.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests to be answered.
    pub shutdown_grace: Duration,
    /// Request bytes held at once over every connection (`net.max-request-bytes-in-flight`):
    /// frames being read or handled. Frames above 64 KiB share three quarters of it, which
    /// must hold the largest frame.
    pub request_bytes_in_flight_max: usize,
    /// How long a frame may take to arrive once it has started and its body is allowed in
    /// (`net.frame-read-timeout`); a slower one closes its connection.
    pub frame_read_timeout: Duration,
    /// A connection with no request in flight that sends nothing for this long is closed
    /// (`net.max-idle-time`).
    pub idle_timeout: Duration,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_in_flight_per_connection: 64,
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
            request_bytes_in_flight_max: 256 * 1024 * 1024,
            frame_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl WireConfig {
    /// What [`WireServer::bind`] refuses, as a message naming the settings.
    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|error| error.to_string())
    }

    fn validate(&self) -> std::io::Result<()> {
        let invalid =
            |message: String| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, message));
        if self.max_frame_size < MIN_MAX_FRAME_SIZE || self.max_frame_size > i32::MAX as usize {
            return invalid(format!(
                "max_frame_size {} is outside {MIN_MAX_FRAME_SIZE}..={}",
                self.max_frame_size,
                i32::MAX
            ));
        }
        if self.max_in_flight_per_connection == 0 {
            return invalid("max_in_flight_per_connection is 0".to_string());
        }
        if self.max_connections == 0 {
            return invalid("max_connections is 0".to_string());
        }
        let frame = self.max_frame_size + LENGTH_FIELD_LEN;
        if large_frame_share(self.request_bytes_in_flight_max) < frame {
            return invalid(format!(
                "net.max-request-bytes-in-flight ({} bytes) must hold a largest frame ({} bytes) \
                 in three quarters of it: at least {} bytes",
                self.request_bytes_in_flight_max,
                frame,
                frame.div_ceil(3) * 4
            ));
        }
        if self.frame_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return invalid("the frame read and idle timeouts must be longer than 0".to_string());
        }
        Ok(())
    }
}

/// Serves every api key but ApiVersions. `api_key` is one of [`ApiKey::ALL`] and
/// `api_version` is within its advertised range: the server has checked both.
///
/// The body is the raw protobuf request; decode it with
/// [`decode_request`](crate::wire::error::decode_request) so that a malformed one is answered
/// `CORRUPT_MESSAGE`. Whole-request errors (a missing database, an existing table, a key that
/// is advertised but not served) are an `Err`, sent as an ERROR_RESPONSE; per-bucket errors go
/// inside the response body.
pub trait WireHandler: Send + Sync {
    fn handle(
        &self,
        api_key: i16,
        api_version: i16,
        body: Bytes,
    ) -> BoxFuture<'static, WireResponse>;
}

/// A bound listener, not yet serving.
pub struct WireServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: WireConfig,
    stats: Arc<WireStats>,
}

impl WireServer {
    /// Binds `addr` (port 0 picks a free port; see [`WireServer::local_addr`]).
    pub async fn bind(addr: SocketAddr, config: WireConfig) -> std::io::Result<WireServer> {
        config.validate()?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(WireServer { listener, local_addr, config, stats: Arc::new(WireStats::default()) })
    }

    /// The server's counters, live while it serves.
    pub fn stats(&self) -> Arc<WireStats> {
        Arc::clone(&self.stats)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts and serves connections until `shutdown` completes, then shuts down cleanly (see
    /// the module documentation). Must run inside a tokio runtime.
    pub async fn serve(self, handler: Arc<dyn WireHandler>, shutdown: impl Future<Output = ()>) {
        let WireServer { listener, local_addr, config, stats } = self;
        let codec = FrameCodec::new(config.max_frame_size);
        let shared = Arc::new(Shared {
            handler,
            codec,
            api_versions: api_versions_body(),
            max_in_flight: config.max_in_flight_per_connection,
            budget: Arc::new(RequestBudget::new(
                config.request_bytes_in_flight_max,
                Arc::clone(&stats),
            )),
            frame_read_timeout: config.frame_read_timeout,
            idle_timeout: config.idle_timeout,
            stats: Arc::clone(&stats),
        });
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut refusals = JoinSet::new();
        tracing::info!(%local_addr, "wire server listening");
        let mut shutdown = std::pin::pin!(shutdown);
        let handler_panicked = Arc::clone(&stats);
        let mut handler_panicked = std::pin::pin!(handler_panicked.handler_panicked());
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = &mut handler_panicked => {
                    tracing::error!(%local_addr,
                        "a request handler panicked; the wire server shuts down");
                    break;
                }
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = joined {
                        tracing::warn!(%error, "wire connection task failed");
                    }
                }
                Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= config.max_connections {
                            stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, limit = config.max_connections,
                                "too many wire connections; refusing the new one");
                            if refusals.len() < REFUSALS_IN_PROGRESS_MAX {
                                refusals.spawn(refuse_connection(
                                    stream,
                                    peer,
                                    codec,
                                    config.max_connections,
                                ));
                            }
                            continue;
                        }
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                        }
                        connections.spawn(serve_connection(
                            stream,
                            peer,
                            Arc::clone(&shared),
                            stopped.clone(),
                        ));
                    }
                    Err(error) => {
                        // Such as running out of file descriptors: wait a little, go on.
                        tracing::warn!(%error, "cannot accept a wire connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        refusals.abort_all();
        let _ = stop.send(true);
        tracing::info!(%local_addr, open = connections.len(), "wire server shutting down");
        let grace = tokio::time::sleep(config.shutdown_grace);
        let mut grace = std::pin::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace => {
                    tracing::warn!(left = connections.len(),
                        "wire connections still open after the shutdown grace; dropping them");
                    connections.shutdown().await;
                    break;
                }
                joined = connections.join_next() => match joined {
                    None => break,
                    Some(Err(error)) => tracing::warn!(%error, "wire connection task failed"),
                    Some(Ok(())) => {}
                },
            }
        }
        tracing::info!(%local_addr, "wire server stopped");
    }
}

/// What every connection task shares.
struct Shared {
    handler: Arc<dyn WireHandler>,
    codec: FrameCodec,
    /// The ApiVersions response body, the same for every request.
    api_versions: Bytes,
    max_in_flight: usize,
    budget: Arc<RequestBudget>,
    frame_read_timeout: Duration,
    idle_timeout: Duration,
    stats: Arc<WireStats>,
}

/// The ApiVersions response: every key with its range, no `server_type`.
fn api_versions_body() -> Bytes {
    use prost::Message;
    let api_versions = ApiKey::ALL
        .iter()
        .map(|key| PbApiVersion {
            api_key: i32::from(key.id()),
            min_version: i32::from(key.min_version()),
            max_version: i32::from(key.max_version()),
        })
        .collect();
    Bytes::from(ApiVersionsResponse { api_versions, server_type: None }.encode_to_vec())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "wire connection opened");
    shared.stats.connections_open.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = stream.into_split();
    let (responses, queued) = mpsc::channel(shared.max_in_flight);
    // Both halves run on this one task, so dropping it (at the end of the shutdown grace)
    // drops both.
    let ((), ()) = tokio::join!(
        read_requests(reader, responses, &shared, peer, stopped),
        write_responses(writer, queued, peer),
    );
    shared.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%peer, "wire connection closed");
}

/// Answers the first request of a connection over the limit with an ERROR_RESPONSE that says
/// so, then closes it. Bounded in time; reads nothing but the request header.
async fn refuse_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    codec: FrameCodec,
    limit: usize,
) {
    let mut header = [0u8; LENGTH_FIELD_LEN + REQUEST_HEADER_LEN];
    let read = tokio::time::timeout(REFUSAL_READ_TIMEOUT, stream.read_exact(&mut header)).await;
    let Ok(Ok(_)) = read else {
        tracing::debug!(%peer, "refused connection sent no request header");
        return;
    };
    let request_id = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let frame = ResponseFrame::Error {
        request_id,
        error_code: NETWORK_EXCEPTION,
        error_message: Some(format!(
            "the server has reached its limit of {limit} connections (net.max-connections); \
             close idle connections or try again later"
        )),
    };
    let mut out = BytesMut::new();
    if codec.encode_response(&frame, &mut out).is_err() {
        return;
    }
    let answered = async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        // Read what the client still sends until it closes, so that closing with unread bytes
        // does not reset the connection before the client has read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    if let Ok(Err(error)) = tokio::time::timeout(REFUSAL_READ_TIMEOUT, answered).await {
        tracing::debug!(%peer, %error, "cannot answer a refused connection");
    }
}

/// What the reader waits for next, besides responses and shutdown.
enum FrameState {
    /// Nothing of a frame is buffered.
    Between,
    /// Part of a frame whose size is not known yet (fewer than four bytes), or whose budget is
    /// held: it must be complete by the deadline.
    Arriving { deadline: Instant },
    /// A frame of this size waits for budget before its body is read; no deadline runs.
    AwaitingBudget,
}

/// Reads and dispatches requests, and queues their responses, until the peer stops sending,
/// a framing error, a frame that does not arrive in time, an idle timeout or a shutdown; then
/// answers what is in flight and returns, and dropping `responses` lets the writer finish and
/// close. Returns at once if the stream breaks.
async fn read_requests(
    mut reader: OwnedReadHalf,
    responses: mpsc::Sender<OutgoingFrame>,
    shared: &Shared,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut in_flight = FuturesUnordered::new();
    let mut reading = !*stopped.borrow();
    // The budget held for the frame at the front of `buf`, and the wait for it.
    let mut permit: Option<BudgetPermit> = None;
    let mut acquiring: Option<BoxFuture<'static, Option<BudgetPermit>>> = None;
    let mut state = FrameState::Between;
    let mut last_activity = Instant::now();
    let mut unaccounted = UnaccountedBytes::new(Arc::clone(&shared.stats));
    loop {
        // Dispatch every complete frame whose budget is held; learn the size of the next one.
        let mut frame_size = None;
        while reading && in_flight.len() < shared.max_in_flight {
            match shared.codec.request_frame_size(&buf) {
                Ok(None) => break,
                Ok(Some(size)) => {
                    if permit.is_none() && acquiring.is_none() {
                        permit = shared.budget.try_acquire(size);
                        if permit.is_none() {
                            acquiring = Some(Arc::clone(&shared.budget).acquire(size).boxed());
                            state = FrameState::AwaitingBudget;
                        }
                    }
                    if permit.is_none() || buf.len() < size {
                        frame_size = Some(size);
                        break;
                    }
                    match shared.codec.decode_request(&mut buf) {
                        Ok(Some(frame)) => {
                            in_flight.push(dispatch(frame, shared, permit.take()));
                            // The next frame's clock starts with its first byte.
                            state = FrameState::Between;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            framing_error(peer, &error);
                            reading = false;
                        }
                    }
                }
                Err(error) => {
                    framing_error(peer, &error);
                    reading = false;
                }
            }
        }
        if !reading {
            buf.clear();
            permit = None;
            acquiring = None;
            state = FrameState::Between;
        }
        match (&state, buf.is_empty()) {
            (FrameState::AwaitingBudget, _) if acquiring.is_some() => {}
            (FrameState::Arriving { .. }, false) => {}
            (_, true) => state = FrameState::Between,
            (_, false) => {
                state =
                    FrameState::Arriving { deadline: Instant::now() + shared.frame_read_timeout }
            }
        }
        // Bytes of a frame whose budget is held are accounted; others are one read chunk.
        unaccounted.set(if permit.is_some() { 0 } else { buf.len() });
        if !reading && in_flight.is_empty() {
            return;
        }
        let can_read = reading && in_flight.len() < shared.max_in_flight && acquiring.is_none();
        // Read the rest of the current frame once its budget is held; otherwise one chunk.
        let read_limit = match (frame_size, &permit) {
            (Some(size), Some(_)) => size.saturating_sub(buf.len()),
            _ => READ_CHUNK_BYTES.saturating_sub(buf.len()).max(1),
        };
        let deadline = match state {
            FrameState::Arriving { deadline } if can_read => Some(deadline),
            _ => None,
        };
        let idle = (reading && in_flight.is_empty() && buf.is_empty())
            .then(|| last_activity + shared.idle_timeout);
        tokio::select! {
            biased;
            Some(response) = in_flight.next(), if !in_flight.is_empty() => {
                last_activity = Instant::now();
                if in_flight.len() + 1 == shared.max_in_flight {
                    // Reading resumes: the frame in progress was not read while it was paused.
                    if let FrameState::Arriving { deadline } = &mut state {
                        *deadline = last_activity + shared.frame_read_timeout;
                    }
                }
                if responses.send(response).await.is_err() {
                    // The writer failed: the peer is gone.
                    return;
                }
            }
            _ = stopped.changed(), if reading => {
                // A shutdown (or the server gone): answer what is in flight, read no more.
                reading = false;
            }
            Some(acquired) = OptionFuture::from(acquiring.as_mut()) => {
                acquiring = None;
                match acquired {
                    Some(acquired) => {
                        permit = Some(acquired);
                        state = FrameState::Arriving {
                            deadline: Instant::now() + shared.frame_read_timeout,
                        };
                    }
                    None => {
                        tracing::warn!(%peer, "a frame cannot fit the request budget");
                        reading = false;
                    }
                }
            }
            read = read_some(&mut reader, &mut buf, read_limit), if can_read => {
                last_activity = Instant::now();
                match read {
                    Ok(0) => {
                        if let Err(error) = shared.codec.check_eof(&buf) {
                            framing_error(peer, &error);
                        }
                        reading = false;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%peer, %error, "wire connection read failed");
                        return;
                    }
                }
            }
            () = sleep_until_some(deadline), if deadline.is_some() => {
                shared.stats.frames_timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, buffered = buf.len(), timeout = ?shared.frame_read_timeout,
                    "a request frame did not arrive in time; closing the connection");
                reading = false;
            }
            () = sleep_until_some(idle), if idle.is_some() => {
                shared.stats.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, timeout = ?shared.idle_timeout,
                    "closing an idle wire connection");
                reading = false;
            }
            else => return,
        }
    }
}

/// Reads at most `limit` bytes into `buf` (reserving room for them first).
async fn read_some(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limit: usize,
) -> std::io::Result<usize> {
    buf.reserve(limit);
    reader.read_buf(&mut buf.limit(limit)).await
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => future::pending().await,
    }
}

fn framing_error(peer: SocketAddr, error: &FrameError) {
    tracing::warn!(%peer, %error, "wire framing error; closing the connection");
}

/// Writes queued responses in the order they are ready, then closes the write side.
async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut queued: mpsc::Receiver<OutgoingFrame>,
    peer: SocketAddr,
) {
    while let Some(frame) = queued.recv().await {
        let OutgoingFrame { header, body } = frame;
        // Vectored: the body's tail (a scan page of megabytes) is never copied into the frame.
        if let Err(error) =
            writer.write_all_buf(&mut header.chain(body.head).chain(body.tail)).await
        {
            tracing::debug!(%peer, %error, "wire connection write failed");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// The encoded response frame to one request; `permit` (the frame's share of the request
/// budget) is given back once the handler has answered.
fn dispatch(
    frame: RequestFrame,
    shared: &Shared,
    permit: Option<BudgetPermit>,
) -> BoxFuture<'static, OutgoingFrame> {
    let RequestFrame { api_key, api_version, request_id, body } = frame;
    let codec = shared.codec;
    let outcome: BoxFuture<'static, WireResponse> = match ApiKey::check(api_key, api_version) {
        Err(error) => {
            tracing::debug!(api_key, api_version, %error, "refusing a request");
            future::ready(Err(WireError::unsupported_version(error.to_string()))).boxed()
        }
        Ok(ApiKey::ApiVersions) => {
            let answer = decode_request::<ApiVersionsRequest>(&body)
                .map(|_request| ResponseBody::from(shared.api_versions.clone()));
            future::ready(answer).boxed()
        }
        Ok(key) => {
            let handler = &shared.handler;
            let stats = Arc::clone(&shared.stats);
            // Caught to answer the request and stop the server, never to go on serving.
            match std::panic::catch_unwind(AssertUnwindSafe(|| {
                handler.handle(api_key, api_version, body)
            })) {
                Ok(pending) => AssertUnwindSafe(pending)
                    .catch_unwind()
                    .map(move |outcome| {
                        outcome.unwrap_or_else(|panic| Err(handler_panicked(key, &stats, &panic)))
                    })
                    .boxed(),
                Err(panic) => future::ready(Err(handler_panicked(key, &stats, &panic))).boxed(),
            }
        }
    };
    outcome
        .map(move |outcome| {
            drop(permit);
            encode_outcome(codec, request_id, outcome)
        })
        .boxed()
}

fn handler_panicked(
    key: ApiKey,
    stats: &WireStats,
    panic: &Box<dyn std::any::Any + Send>,
) -> WireError {
    let message = kvtablet_core::task::panic_message(panic.as_ref());
    tracing::error!(%key, panic = message, "wire handler panicked; the server shuts down");
    stats.record_handler_panic();
    WireError::unknown_server_error(format!(
        "internal error while handling {key}; the server shuts down"
    ))
}

/// A response frame as it leaves: the header, then the handler's body as it was returned.
struct OutgoingFrame {
    header: Bytes,
    body: ResponseBody,
}

/// The response frame for `outcome`; a success too large for a frame becomes an error.
fn encode_outcome(codec: FrameCodec, request_id: i32, outcome: WireResponse) -> OutgoingFrame {
    let mut dst = BytesMut::new();
    let error = match outcome {
        Ok(body) => {
            let len = body.len();
            match codec.success_header(request_id, len) {
                Ok(header) => return OutgoingFrame { header, body },
                Err(error) => {
                    tracing::error!(request_id, len, %error, "response too large");
                    WireError::unknown_server_error(format!("response too large: {error}"))
                }
            }
        }
        Err(error) => error,
    };
    let frame = ResponseFrame::Error {
        request_id,
        error_code: error.code,
        error_message: Some(truncate(error.message, MAX_ERROR_MESSAGE_LEN)),
    };
    // Fits: max_frame_size >= MIN_MAX_FRAME_SIZE, and the message is cut to well below it.
    if let Err(error) = codec.encode_response(&frame, &mut dst) {
        tracing::error!(request_id, %error, "cannot encode an error response");
    }
    OutgoingFrame { header: dst.freeze(), body: ResponseBody::default() }
}

/// Cuts `message` to at most `max` bytes, on a character boundary.
fn truncate(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn api_versions_lists_every_key_without_server_type() {
        let response = ApiVersionsResponse::decode(api_versions_body()).unwrap();
        assert_eq!(response.server_type, None);
        assert_eq!(response.api_versions.len(), ApiKey::ALL.len());
        let put_kv = response.api_versions.iter().find(|v| v.api_key == 1016).unwrap();
        assert_eq!((put_kv.min_version, put_kv.max_version), (0, 2));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo".to_string(), 2), "h");
        assert_eq!(truncate("héllo".to_string(), 3), "hé");
        assert_eq!(truncate("short".to_string(), 512), "short");
    }

    #[test]
    fn an_oversized_success_becomes_an_error() {
        let codec = FrameCodec::new(MIN_MAX_FRAME_SIZE);
        let frame = encode_outcome(codec, 9, Ok(Bytes::from(vec![0; MIN_MAX_FRAME_SIZE]).into()));
        assert!(frame.body.is_empty());
        let decoded =
            codec.decode_response(&mut BytesMut::from(&frame.header[..])).unwrap().unwrap();
        assert!(matches!(
            decoded,
            ResponseFrame::Error { request_id: 9, error_code: -1, error_message: Some(_) }
        ));
        let long = encode_outcome(codec, 1, Err(WireError::new(7, "x".repeat(10_000))));
        assert!(long.header.len() < MIN_MAX_FRAME_SIZE);
    }

    #[test]
    fn a_success_leaves_as_its_header_then_the_body_uncopied() {
        let codec = FrameCodec::default();
        let head = Bytes::from(vec![3u8; 17]);
        let tail = Bytes::from(vec![7u8; 4096]);
        let body = ResponseBody { head: head.clone(), tail: tail.clone() };
        let frame = encode_outcome(codec, 5, Ok(body.clone()));
        assert_eq!(frame.body.head.as_ptr(), head.as_ptr(), "the head is the handler's bytes");
        assert_eq!(frame.body.tail.as_ptr(), tail.as_ptr(), "the tail is the handler's bytes");
        let mut expected = BytesMut::new();
        codec
            .encode_response(
                &ResponseFrame::Success { request_id: 5, body: body.to_bytes() },
                &mut expected,
            )
            .unwrap();
        let joined: Vec<u8> = frame
            .header
            .chain(frame.body.head)
            .chain(frame.body.tail)
            .copy_to_bytes(expected.len())
            .to_vec();
        assert_eq!(joined, expected.to_vec(), "the bytes on the wire are unchanged");
    }

    #[test]
    fn config_is_validated() {
        assert!(WireConfig::default().validate().is_ok());
        let small = WireConfig { max_frame_size: 100, ..WireConfig::default() };
        assert!(small.validate().is_err());
        let none = WireConfig { max_in_flight_per_connection: 0, ..WireConfig::default() };
        assert!(none.validate().is_err());
    }
}
