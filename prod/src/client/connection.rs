//! One TCP connection to a Fluss server: ApiVersions on connect, then requests pipelined on the
//! socket and matched to their responses by request id (responses may come back in any
//! order), each with a deadline.
//!
//! Two tasks serve the socket: a writer that sends queued frames (several at once when they
//! pile up, so pipelined small requests share a system call) and a reader that completes the
//! waiting callers. A read or write failure closes the connection: every waiting caller gets
//! [`ClientError::ClosedInFlight`], every later one [`ClientError::Closed`]. Dropping the
//! [`Connection`] sends what is queued, then closes.
//!
//! Nothing here panics on bytes from the server: frames go through [`FrameCodec`], bodies
//! through prost, and a malformed body is a [`ClientError::Decode`] for its caller only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::error::ClientError;
use crate::wire::frame::DEFAULT_MAX_FRAME_SIZE;
use crate::wire::messages::{ApiVersionsRequest, ApiVersionsResponse};
use crate::wire::{ApiKey, FrameCodec, RequestFrame, ResponseFrame};

/// What the client tells the server it is, in ApiVersions.
const CLIENT_SOFTWARE_NAME: &str = "kvtablet";
/// Frames gathered into one write when several are queued; a larger frame goes alone.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Queued frames before a caller waits for the writer.
const WRITE_QUEUE_FRAMES: usize = 1024;

/// Limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Bound on the TCP connect and the ApiVersions handshake, together.
    pub connect_timeout: Duration,
    /// Deadline of a call made with [`Connection::call`].
    pub request_timeout: Duration,
    /// The largest frame sent or accepted, counted after the length field.
    pub max_frame_size: usize,
    /// Requests awaiting their responses at once; one more waits for a slot (its deadline
    /// runs meanwhile).
    pub max_in_flight: usize,
}

impl ConnectionConfig {
    pub const DEFAULT: ConnectionConfig = ConnectionConfig {
        connect_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(30),
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        max_in_flight: 256,
    };
}

/// The callers waiting on this connection, by request id.
#[derive(Default)]
struct Waiting {
    by_request_id: HashMap<i32, oneshot::Sender<ResponseFrame>>,
    /// Why the connection closed; set once, after which nothing is registered.
    closed: Option<String>,
}

struct Shared {
    waiting: Mutex<Waiting>,
}

impl Shared {
    /// Poisoning is harmless here (the client's side): the waiting calls change by single
    /// inserts and removals, and a broken connection fails them all anyway.
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection closed and drops every waiting caller's sender, which wakes it.
    fn close(&self, reason: String) {
        let mut waiting = self.lock();
        if waiting.closed.is_none() {
            tracing::debug!(%reason, "wire client connection closed");
            waiting.closed = Some(reason);
        }
        waiting.by_request_id.clear();
    }

    fn closed_reason(&self) -> Option<String> {
        self.lock().closed.clone()
    }
}

/// One client connection. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Connection {
    addr: SocketAddr,
    config: ConnectionConfig,
    codec: FrameCodec,
    shared: Arc<Shared>,
    frames: mpsc::Sender<Bytes>,
    next_request_id: AtomicI32,
    in_flight: Semaphore,
    /// The version to send for each api key the server advertised, by key id.
    versions: BTreeMap<i16, i16>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("closed", &self.shared.closed_reason())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`; the first address it resolves to) and completes the
    /// ApiVersions handshake, all within `config.connect_timeout`.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection, ClientError> {
        let connect_error =
            |reason: String| ClientError::Connect { addr: addr.to_string(), reason };
        let opening = async {
            let stream =
                TcpStream::connect(addr).await.map_err(|e| connect_error(e.to_string()))?;
            let peer = stream.peer_addr().map_err(|e| connect_error(e.to_string()))?;
            // Small requests must not wait for Nagle; the server sets the same.
            stream.set_nodelay(true).map_err(|e| connect_error(e.to_string()))?;
            let mut connection = Connection::over(stream, peer, config);
            connection.negotiate_versions().await?;
            Ok(connection)
        };
        match tokio::time::timeout(config.connect_timeout, opening).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(connect_error(format!(
                "no connection and handshake within {:?}",
                config.connect_timeout
            ))),
        }
    }

    fn over(stream: TcpStream, addr: SocketAddr, config: ConnectionConfig) -> Connection {
        let codec = FrameCodec::new(config.max_frame_size);
        let shared = Arc::new(Shared { waiting: Mutex::new(Waiting::default()) });
        let (reader, writer) = stream.into_split();
        let (frames, queued) = mpsc::channel(WRITE_QUEUE_FRAMES);
        // The writer ends by itself once every sender is gone (the connection dropped).
        drop(tokio::spawn(write_frames(writer, queued, Arc::clone(&shared))));
        let reader = tokio::spawn(read_responses(reader, codec, Arc::clone(&shared)));
        Connection {
            addr,
            config,
            codec,
            shared,
            frames,
            next_request_id: AtomicI32::new(0),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            versions: BTreeMap::new(),
            reader,
        }
    }

    /// ApiVersions: for each key both sides know, the highest version both accept.
    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest {
            client_software_name: CLIENT_SOFTWARE_NAME.to_string(),
            client_software_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let body = self
            .call_raw_versioned(ApiKey::ApiVersions, 0, request.encode_to_vec().into(), None)
            .await?;
        let response: ApiVersionsResponse = decode_body(ApiKey::ApiVersions, body)?;
        for advertised in response.api_versions {
            let Some(key) = i16::try_from(advertised.api_key).ok().and_then(ApiKey::from_id) else {
                continue;
            };
            let high = i32::from(key.max_version()).min(advertised.max_version);
            let low = i32::from(key.min_version()).max(advertised.min_version);
            if let (true, Ok(version)) = (low <= high, i16::try_from(high)) {
                self.versions.insert(key.id(), version);
            }
        }
        Ok(())
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Whether the connection has failed or been closed by the server; every call on it fails.
    pub fn is_closed(&self) -> bool {
        self.shared.closed_reason().is_some()
    }

    /// Sends `request` under `key` and decodes the response, within the configured request
    /// timeout.
    pub async fn call<Q: Message, R: Message + Default>(
        &self,
        key: ApiKey,
        request: &Q,
    ) -> Result<R, ClientError> {
        self.call_with_timeout(key, request, self.config.request_timeout).await
    }

    /// [`Connection::call`] with its own deadline.
    pub async fn call_with_timeout<Q: Message, R: Message + Default>(
        &self,
        key: ApiKey,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let body = self.call_raw(key, Bytes::from(request.encode_to_vec()), timeout).await?;
        decode_body(key, body)
    }

    /// Sends an encoded body; returns the response body as received (shared, not copied).
    pub async fn call_raw(
        &self,
        key: ApiKey,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let version = *self.versions.get(&key.id()).ok_or(ClientError::Unsupported(key.name()))?;
        self.call_raw_versioned(key, version, body, Some(timeout)).await
    }

    async fn call_raw_versioned(
        &self,
        key: ApiKey,
        api_version: i16,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, ClientError> {
        // The handshake runs under the connect timeout instead.
        let timeout = timeout.unwrap_or(self.config.connect_timeout);
        match tokio::time::timeout(timeout, self.exchange(key, api_version, body)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(ClientError::Timeout { api: key.name(), timeout }),
        }
    }

    /// One request and its response, without a deadline (the caller bounds it). A caller that
    /// gives up leaves its entry behind only until the response or the close removes it.
    async fn exchange(
        &self,
        key: ApiKey,
        api_version: i16,
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        let _slot =
            self.in_flight.acquire().await.map_err(|_closed| {
                ClientError::Closed("the in-flight limit was closed".to_string())
            })?;
        // Request ids run 0, 1, 2, … and wrap within the positive range, as Fluss's do.
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
        let frame = RequestFrame { api_key: key.id(), api_version, request_id, body };
        let mut encoded = BytesMut::new();
        self.codec.encode_request(&frame, &mut encoded)?;
        let (sender, response) = oneshot::channel();
        {
            let mut waiting = self.shared.lock();
            if let Some(reason) = &waiting.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            waiting.by_request_id.insert(request_id, sender);
        }
        let forget = Forget { shared: &self.shared, request_id };
        if self.frames.send(encoded.freeze()).await.is_err() {
            return Err(ClientError::Closed(
                self.shared.closed_reason().unwrap_or_else(|| "the writer stopped".to_string()),
            ));
        }
        let frame = response.await.map_err(|_dropped| ClientError::ClosedInFlight {
            api: key.name(),
            reason: self.shared.closed_reason().unwrap_or_else(|| "closed".to_string()),
        })?;
        drop(forget);
        match frame {
            ResponseFrame::Success { body, .. } => Ok(body),
            ResponseFrame::Error { error_code, error_message, .. } => Err(ClientError::Server {
                api: key.name(),
                code: error_code,
                message: error_message.unwrap_or_default(),
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer sends what is queued and closes the write side once `frames` is dropped;
        // nobody is left to read for.
        self.reader.abort();
        self.shared.close("the connection was dropped".to_string());
    }
}

/// Removes a caller's entry when its future ends early (deadline, cancellation), so that a
/// late response finds nobody and is discarded.
struct Forget<'a> {
    shared: &'a Shared,
    request_id: i32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock().by_request_id.remove(&self.request_id);
    }
}

fn decode_body<R: Message + Default>(key: ApiKey, body: Bytes) -> Result<R, ClientError> {
    R::decode(body)
        .map_err(|error| ClientError::Decode { api: key.name(), reason: error.to_string() })
}

/// Sends queued frames until every sender is gone or a write fails.
async fn write_frames(
    mut writer: OwnedWriteHalf,
    mut queued: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut batch = BytesMut::new();
    while let Some(frame) = queued.recv().await {
        let outcome = if frame.len() >= WRITE_BATCH_BYTES {
            writer.write_all(&frame).await
        } else {
            // Gather what else is queued right now: pipelined requests share one write.
            batch.extend_from_slice(&frame);
            while batch.len() < WRITE_BATCH_BYTES {
                match queued.try_recv() {
                    Ok(next) => batch.extend_from_slice(&next),
                    Err(_empty_or_closed) => break,
                }
            }
            let outcome = writer.write_all(&batch).await;
            batch.clear();
            outcome
        };
        if let Err(error) = outcome {
            shared.close(format!("write failed: {error}"));
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Completes waiting callers until the stream ends or breaks.
async fn read_responses(mut reader: OwnedReadHalf, codec: FrameCodec, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        loop {
            match codec.decode_response(&mut buf) {
                Ok(Some(frame)) => {
                    let request_id = frame.request_id();
                    let waiter = shared.lock().by_request_id.remove(&request_id);
                    match waiter {
                        // The caller may have given up meanwhile; nothing to do then.
                        Some(waiter) => drop(waiter.send(frame)),
                        None => tracing::debug!(request_id, "response for no waiting request"),
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.close(format!("framing error: {error}"));
                    return;
                }
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) => break "the server closed the connection".to_string(),
            Ok(_) => {}
            Err(error) => break format!("read failed: {error}"),
        }
    };
    shared.close(reason);
}
