//! The wire server over real loopback sockets: the captured pyfluss handshake, refusals,
//! framing errors that close one connection only, out-of-order answers and clean shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use kvtablet_prod::wire::error::{decode_request, encode_response};
use kvtablet_prod::wire::messages::{
    ApiVersionsResponse, CreateDatabaseRequest, CreateDatabaseResponse, InitWriterResponse,
    LookupRequest,
};
use kvtablet_prod::wire::{
    ApiKey, FrameCodec, RequestFrame, ResponseFrame, WireConfig, WireError, WireHandler,
    WireResponse, WireServer,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);

/// The first frame pyfluss 1.0.0 sends on every connection.
const CAPTURED_API_VERSIONS: &[u8] =
    b"\x00\x00\x00\x1b\x03\xe8\x00\x00\x00\x00\x00\x00\x0a\x0afluss-rust\x12\x051.0.0";

/// CreateDatabase decodes its body; Lookup sleeps `table_id` milliseconds and echoes it as an
/// InitWriterResponse; InitWriter panics; everything else is refused with code 39.
struct TestHandler {
    handled: AtomicUsize,
}

impl WireHandler for TestHandler {
    fn handle(&self, api_key: i16, _version: i16, body: Bytes) -> BoxFuture<'static, WireResponse> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        async move {
            match ApiKey::from_id(api_key) {
                Some(ApiKey::CreateDatabase) => {
                    let request: CreateDatabaseRequest = decode_request(&body)?;
                    if request.database_name == "exists" {
                        return Err(WireError::new(6, "database exists already"));
                    }
                    encode_response(&CreateDatabaseResponse {})
                }
                Some(ApiKey::Lookup) => {
                    let request: LookupRequest = decode_request(&body)?;
                    let delay = request.table_id.clamp(0, 2_000) as u64;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    encode_response(&InitWriterResponse { writer_id: request.table_id })
                }
                Some(ApiKey::InitWriter) => panic!("deliberate handler panic"),
                _ => Err(WireError::new(39, format!("api key {api_key} is not served"))),
            }
        }
        .boxed()
    }
}

struct Running {
    addr: SocketAddr,
    handler: Arc<TestHandler>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Running {
    async fn start(config: WireConfig) -> Running {
        let server = WireServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let handler = Arc::new(TestHandler { handled: AtomicUsize::new(0) });
        let (stop, stopped) = oneshot::channel::<()>();
        let as_dyn: Arc<dyn WireHandler> = handler.clone();
        let server = tokio::spawn(server.serve(as_dyn, async move {
            let _ = stopped.await;
        }));
        Running { addr, handler, stop: Some(stop), server }
    }

    async fn connect(&self) -> TcpStream {
        timeout(STEP, TcpStream::connect(self.addr)).await.expect("connect in time").unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(STEP * 2, &mut self.server).await.expect("server stops in time").unwrap();
    }
}

fn request(api_key: i16, api_version: i16, request_id: i32, body: &[u8]) -> Vec<u8> {
    let frame =
        RequestFrame { api_key, api_version, request_id, body: Bytes::copy_from_slice(body) };
    let mut buf = BytesMut::new();
    FrameCodec::default().encode_request(&frame, &mut buf).unwrap();
    buf.to_vec()
}

/// Reads exactly one response frame.
async fn read_response(stream: &mut TcpStream) -> ResponseFrame {
    let mut length = [0u8; 4];
    timeout(STEP, stream.read_exact(&mut length)).await.expect("response in time").unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    timeout(STEP, stream.read_exact(&mut rest)).await.expect("response body in time").unwrap();
    let mut frame = BytesMut::from(&length[..]);
    frame.put_slice(&rest);
    FrameCodec::default().decode_response(&mut frame).unwrap().expect("one whole frame")
}

/// Whether the server closed the connection: EOF or a reset, within the step timeout.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 64];
    for _ in 0..1000 {
        match timeout(STEP, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
    false
}

fn error_of(frame: ResponseFrame) -> (i32, i32, String) {
    match frame {
        ResponseFrame::Error { request_id, error_code, error_message } => {
            (request_id, error_code, error_message.unwrap_or_default())
        }
        other => panic!("expected an error response, got {other:?}"),
    }
}

async fn assert_handshake_works(stream: &mut TcpStream, request_id: i32) {
    let mut frame = CAPTURED_API_VERSIONS.to_vec();
    frame[8..12].copy_from_slice(&request_id.to_be_bytes());
    stream.write_all(&frame).await.unwrap();
    match read_response(stream).await {
        ResponseFrame::Success { request_id: id, body } => {
            assert_eq!(id, request_id);
            let response = ApiVersionsResponse::decode(body).unwrap();
            assert_eq!(response.api_versions.len(), ApiKey::ALL.len());
        }
        other => panic!("expected ApiVersions, got {other:?}"),
    }
}

#[tokio::test]
async fn captured_api_versions_frame_gets_every_key() {
    let running = Running::start(WireConfig::default()).await;
    let mut stream = running.connect().await;
    stream.write_all(CAPTURED_API_VERSIONS).await.unwrap();

    // Read the raw bytes: i32 length | i8 type 0 | i32 request id 0 | body.
    let mut header = [0u8; 9];
    timeout(STEP, stream.read_exact(&mut header)).await.unwrap().unwrap();
    let mut fields = &header[..];
    let length = fields.get_i32() as usize;
    assert_eq!(fields.get_u8(), 0, "SUCCESS");
    assert_eq!(fields.get_i32(), 0, "request id");
    let mut body = vec![0u8; length - 5];
    timeout(STEP, stream.read_exact(&mut body)).await.unwrap().unwrap();

    let response = ApiVersionsResponse::decode(body.as_slice()).unwrap();
    assert_eq!(response.server_type, None, "one port plays both roles");
    let range = |id: i32| {
        let version = response.api_versions.iter().find(|v| v.api_key == id);
        version.map(|v| (v.min_version, v.max_version))
    };
    assert_eq!(range(1016), Some((0, 2)), "PutKv");
    assert_eq!(range(1017), Some((0, 1)), "Lookup");
    assert_eq!(range(1034), Some((0, 1)), "PrefixLookup");
    assert_eq!(range(1061), Some((0, 0)), "ScanKv");
    for id in [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1010, 1011, 1012, 1015] {
        assert_eq!(range(id), Some((0, 0)), "{id}");
    }
    for id in [1021, 1025, 1026, 1033, 1035] {
        assert_eq!(range(id), Some((0, 0)), "{id}");
    }
    assert_eq!(range(1013), None, "private UpdateMetadata is not advertised");
    assert_eq!(running.handler.handled.load(Ordering::SeqCst), 0, "answered by the server");
    running.stop().await;
}

#[tokio::test]
async fn unknown_keys_versions_and_corrupt_bodies_get_error_responses() {
    let running = Running::start(WireConfig::default()).await;
    let mut stream = running.connect().await;

    stream.write_all(&request(9999, 0, 1, b"")).await.unwrap();
    let (id, code, message) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (1, 2), "UNSUPPORTED_VERSION for an unknown key: {message}");

    stream.write_all(&request(1016, 3, 2, b"")).await.unwrap();
    let (id, code, message) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (2, 2), "PutKv v3 is out of range: {message}");

    stream.write_all(&request(1000, 1, 3, b"")).await.unwrap();
    let (id, code, _) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (3, 2), "ApiVersions v1 is out of range");

    // A field 1 of wire type "length-delimited" whose length runs past the end.
    stream.write_all(&request(1000, 0, 4, b"\x0a\x7fshort")).await.unwrap();
    let (id, code, _) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (4, 3), "CORRUPT_MESSAGE from the server's own ApiVersions");

    stream.write_all(&request(1001, 0, 5, b"\x0a\x7fshort")).await.unwrap();
    let (id, code, _) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (5, 3), "CORRUPT_MESSAGE from a handler's decode_request");

    let create = CreateDatabaseRequest {
        database_name: "exists".into(),
        ignore_if_exists: false,
        database_json: None,
    };
    stream.write_all(&request(1001, 0, 6, &create.encode_to_vec())).await.unwrap();
    let (id, code, message) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code, message.as_str()), (6, 6, "database exists already"));

    let create = CreateDatabaseRequest { database_name: "fresh".into(), ..create };
    stream.write_all(&request(1001, 0, 7, &create.encode_to_vec())).await.unwrap();
    assert_eq!(
        read_response(&mut stream).await,
        ResponseFrame::Success { request_id: 7, body: Bytes::new() }
    );

    assert_handshake_works(&mut stream, 8).await;
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_answered_then_the_server_shuts_down() {
    let running = Running::start(WireConfig::default()).await;
    let mut stream = running.connect().await;
    let mut bystander = running.connect().await;
    assert_handshake_works(&mut bystander, 1).await;

    stream.write_all(&request(1026, 0, 8, b"")).await.unwrap();
    let (id, code, _) = error_of(read_response(&mut stream).await);
    assert_eq!((id, code), (8, -1), "the request is answered UNKNOWN_SERVER_ERROR");
    // The panic may have left the handler's state in doubt: no request is served from it
    // any more. The server shuts down by itself, closing every connection.
    assert!(closed_by_server(&mut stream).await, "the connection closes");
    assert!(closed_by_server(&mut bystander).await, "every connection closes");
    let Running { addr, mut server, stop: _keep_open, .. } = running;
    timeout(STEP * 2, &mut server).await.expect("the server stops by itself").unwrap();
    let refused = timeout(STEP, TcpStream::connect(addr)).await.expect("connect answers");
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() {
    let config = WireConfig { max_frame_size: 64 * 1024, ..WireConfig::default() };
    let running = Running::start(config).await;
    let mut healthy = running.connect().await;
    assert_handshake_works(&mut healthy, 0).await;

    let cases: [(&str, Vec<u8>); 4] = [
        ("negative length", b"\xff\xff\xff\xf0garbage garbage".to_vec()),
        ("oversized length", b"\x00\x10\x00\x01\x03\xe8\x00\x00".to_vec()),
        ("shorter than the header", b"\x00\x00\x00\x03\x03\xe8\x00".to_vec()),
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut bad = running.connect().await;
        bad.write_all(&bytes).await.unwrap();
        assert!(closed_by_server(&mut bad).await, "{what}: the connection is closed");
        assert_handshake_works(&mut healthy, 1).await;
    }

    // A frame cut short by the end of the stream.
    let mut truncated = running.connect().await;
    truncated.write_all(&CAPTURED_API_VERSIONS[..20]).await.unwrap();
    truncated.shutdown().await.unwrap();
    assert!(closed_by_server(&mut truncated).await, "truncated frame: closed");

    // A valid request followed by garbage on the same connection: the request is answered,
    // then the connection is closed.
    let mut mixed = running.connect().await;
    let mut bytes = CAPTURED_API_VERSIONS.to_vec();
    bytes.extend_from_slice(b"\xff\xff\xff\xff");
    mixed.write_all(&bytes).await.unwrap();
    assert!(matches!(read_response(&mut mixed).await, ResponseFrame::Success { .. }));
    assert!(closed_by_server(&mut mixed).await);

    assert_handshake_works(&mut healthy, 2).await;
    let mut fresh = running.connect().await;
    assert_handshake_works(&mut fresh, 0).await;
    running.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_by_request_id() {
    let running = Running::start(WireConfig::default()).await;
    let mut stream = running.connect().await;
    // Lookup with table_id = delay in ms: the slowest is sent first.
    let delays = [300i64, 200, 100, 0];
    let mut bytes = Vec::new();
    for (request_id, delay) in delays.iter().enumerate() {
        let lookup = LookupRequest { table_id: *delay, ..LookupRequest::default() };
        bytes.extend(request(1017, 1, request_id as i32, &lookup.encode_to_vec()));
    }
    bytes.extend(request(9999, 0, 4, b""));
    stream.write_all(&bytes).await.unwrap();

    let mut answered = Vec::new();
    for _ in 0..=delays.len() {
        match read_response(&mut stream).await {
            ResponseFrame::Success { request_id, body } => {
                let writer_id = InitWriterResponse::decode(body).unwrap().writer_id;
                assert_eq!(writer_id, delays[request_id as usize], "matched by request id");
                answered.push(request_id);
            }
            ResponseFrame::Error { request_id, error_code, .. } => {
                assert_eq!((request_id, error_code), (4, 2));
                answered.push(request_id);
            }
        }
    }
    let mut sorted = answered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
    assert_ne!(answered, sorted, "answered concurrently, not in request order: {answered:?}");
    running.stop().await;
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests_then_stops_accepting() {
    let running = Running::start(WireConfig::default()).await;
    let mut stream = running.connect().await;
    let lookup = LookupRequest { table_id: 500, ..LookupRequest::default() };
    stream.write_all(&request(1017, 0, 42, &lookup.encode_to_vec())).await.unwrap();
    // Let the request reach the handler before shutting down.
    for _ in 0..200 {
        if running.handler.handled.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(running.handler.handled.load(Ordering::SeqCst), 1);
    let addr = running.addr;
    let stopping = tokio::spawn(running.stop());

    match read_response(&mut stream).await {
        ResponseFrame::Success { request_id, body } => {
            assert_eq!(request_id, 42);
            assert_eq!(InitWriterResponse::decode(body).unwrap().writer_id, 500);
        }
        other => panic!("the in-flight request must be answered, got {other:?}"),
    }
    assert!(closed_by_server(&mut stream).await, "then the connection closes");
    timeout(STEP, stopping).await.expect("serve returns").unwrap();
    let refused = timeout(STEP, TcpStream::connect(addr)).await.expect("connect answers");
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_grace_bounds_a_stuck_handler() {
    let config = WireConfig { shutdown_grace: Duration::from_millis(200), ..Default::default() };
    let running = Running::start(config).await;
    let mut stream = running.connect().await;
    let lookup = LookupRequest { table_id: 2_000, ..LookupRequest::default() };
    stream.write_all(&request(1017, 0, 1, &lookup.encode_to_vec())).await.unwrap();
    for _ in 0..200 {
        if running.handler.handled.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = tokio::time::Instant::now();
    running.stop().await;
    assert!(started.elapsed() < Duration::from_millis(1_500), "took {:?}", started.elapsed());
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test]
async fn a_connection_over_the_limit_is_told_so_before_it_is_closed() {
    let config = WireConfig { max_connections: 2, ..WireConfig::default() };
    let running = Running::start(config).await;
    let mut first = running.connect().await;
    let mut second = running.connect().await;
    assert_handshake_works(&mut first, 1).await;
    assert_handshake_works(&mut second, 2).await;

    let mut third = running.connect().await;
    let mut frame = CAPTURED_API_VERSIONS.to_vec();
    frame[8..12].copy_from_slice(&77i32.to_be_bytes());
    third.write_all(&frame).await.unwrap();
    let (request_id, code, message) = error_of(read_response(&mut third).await);
    assert_eq!((request_id, code), (77, 1), "NETWORK_EXCEPTION to the first request");
    assert!(message.contains("limit of 2 connections"), "{message}");
    assert!(closed_by_server(&mut third).await);

    // The connections within the limit carry on; one closing frees a slot.
    assert_handshake_works(&mut first, 3).await;
    drop(second);
    let mut admitted = None;
    for _ in 0..200 {
        let mut candidate = running.connect().await;
        candidate.write_all(&frame).await.unwrap();
        if matches!(read_response(&mut candidate).await, ResponseFrame::Success { .. }) {
            admitted = Some(candidate);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(admitted.is_some(), "a freed slot is given to a new connection");
    running.stop().await;
}

#[tokio::test]
async fn a_stalled_frame_and_an_idle_connection_are_closed_while_others_are_served() {
    let config = WireConfig {
        frame_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..WireConfig::default()
    };
    let running = Running::start(config).await;
    // Half a frame, then nothing more.
    let mut stalled = running.connect().await;
    stalled.write_all(&CAPTURED_API_VERSIONS[..20]).await.unwrap();
    // A header only (the body never comes).
    let mut headless = running.connect().await;
    headless.write_all(&CAPTURED_API_VERSIONS[..2]).await.unwrap();
    // A working connection that then goes quiet.
    let mut idle = running.connect().await;
    assert_handshake_works(&mut idle, 1).await;
    // A busy one, sending a request more often than the idle timeout.
    let mut busy = running.connect().await;

    for round in 0..8 {
        assert_handshake_works(&mut busy, round).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(closed_by_server(&mut stalled).await, "a started frame must arrive in time");
    assert!(closed_by_server(&mut headless).await, "a started header must arrive in time");
    assert!(closed_by_server(&mut idle).await, "an idle connection is closed");
    assert_handshake_works(&mut busy, 99).await;
    running.stop().await;
}
