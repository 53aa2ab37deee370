//! The node's request memory is bounded across connections: hundreds of loopback connections
//! each start a large PutKv frame and trickle its body into the wire server, and the process's
//! resident memory (and the server's own count of buffered request bytes) stays within the
//! request budget, while another client's requests are answered throughout. The bound is the
//! wire layer's: the handler behind it answers every request at once.

// The test reads its own resident memory from /proc and bounds its waits with wall time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use kvtablet_prod::wire::error::encode_response;
use kvtablet_prod::wire::messages::ListDatabasesResponse;
use kvtablet_prod::wire::{
    ApiKey, FrameCodec, RequestFrame, ResponseFrame, WireConfig, WireHandler, WireResponse,
    WireServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 300;
const FRAME_BYTES: usize = 4 * 1024 * 1024;
/// What each connection sends of its frame's body before it stalls.
const SENT_PER_CONNECTION: usize = 1024 * 1024;
const CHUNK_BYTES: usize = 16 * 1024;
const BUDGET_BYTES: usize = 16 * 1024 * 1024;
/// What the process may grow by besides the budget: task stacks, socket bookkeeping, the
/// allocator's slack.
const SLACK_BYTES: usize = 48 * 1024 * 1024;

/// Answers every request with an empty database list.
struct QuickHandler;

impl WireHandler for QuickHandler {
    fn handle(&self, _key: i16, _version: i16, _body: Bytes) -> BoxFuture<'static, WireResponse> {
        futures::future::ready(encode_response(&ListDatabasesResponse::default())).boxed()
    }
}

/// One request and its answer on the other client's connection.
async fn round_trip(stream: &mut TcpStream, request_id: i32) {
    let frame = RequestFrame {
        api_key: ApiKey::ListDatabases.id(),
        api_version: 0,
        request_id,
        body: Bytes::new(),
    };
    let mut out = BytesMut::new();
    FrameCodec::default().encode_request(&frame, &mut out).expect("encodes");
    stream.write_all(&out).await.expect("the other client sends");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.expect("the other client is answered");
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut rest).await.expect("the whole answer");
    let mut whole = BytesMut::from(&length[..]);
    whole.extend_from_slice(&rest);
    match FrameCodec::default().decode_response(&mut whole).expect("a response frame") {
        Some(ResponseFrame::Success { request_id: id, .. }) => assert_eq!(id, request_id),
        other => panic!("expected a success, got {other:?}"),
    }
}

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Connects, sends the header of a PutKv frame of [`FRAME_BYTES`], then its body in small
/// chunks up to [`SENT_PER_CONNECTION`] (as far as the server lets it), and holds on.
async fn trickle(
    addr: SocketAddr,
    connected: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut stream = TcpStream::connect(addr).await.expect("connects to 127.0.0.1");
    connected.fetch_add(1, Ordering::Relaxed);
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&((FRAME_BYTES - 4) as i32).to_be_bytes());
    header.extend_from_slice(&ApiKey::PutKv.id().to_be_bytes());
    header.extend_from_slice(&0i16.to_be_bytes());
    header.extend_from_slice(&1i32.to_be_bytes());
    if stream.write_all(&header).await.is_err() {
        return;
    }
    let chunk = vec![0x5a; CHUNK_BYTES];
    let mut written = 0;
    while written < SENT_PER_CONNECTION && !stop.load(Ordering::Relaxed) {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        written += CHUNK_BYTES;
        sent.fetch_add(CHUNK_BYTES, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn trickled_large_frames_on_hundreds_of_connections_stay_within_the_request_budget() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = WireConfig {
            max_frame_size: FRAME_BYTES,
            request_bytes_in_flight_max: BUDGET_BYTES,
            frame_read_timeout: Duration::from_secs(600),
            ..WireConfig::default()
        };
        let server = WireServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("binds 127.0.0.1:0");
        let addr = server.local_addr();
        let stats = server.stats();
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let handler: Arc<dyn WireHandler> = Arc::new(QuickHandler);
        let serving = tokio::spawn(server.serve(handler, async move {
            let _ = server_stopped.await;
        }));
        let mut other = TcpStream::connect(addr).await.expect("the other client connects");
        round_trip(&mut other, 0).await;
        let baseline = resident_bytes();

        let sent = Arc::new(AtomicUsize::new(0));
        let connected = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(trickle(addr, connected.clone(), sent.clone(), stop.clone())))
            .collect();

        // Until every connection is open and the senders stop making progress (the server
        // reads only what the budget allows; the kernel's socket buffers take a little more).
        let mut peak_resident = baseline;
        let mut peak_buffered = 0;
        let mut served_requests = 0;
        let mut last_sent = usize::MAX;
        let mut quiet_rounds = 0;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            served_requests += 1;
            tokio::time::timeout(Duration::from_secs(30), round_trip(&mut other, served_requests))
                .await
                .expect("the other client is answered while the budget is taken");
            peak_resident = peak_resident.max(resident_bytes());
            peak_buffered = peak_buffered.max(stats.request_bytes_buffered());
            let now_sent = sent.load(Ordering::Relaxed);
            let all_open = connected.load(Ordering::Relaxed) == CONNECTIONS;
            quiet_rounds = if now_sent == last_sent && all_open { quiet_rounds + 1 } else { 0 };
            last_sent = now_sent;
            if quiet_rounds >= 10 {
                break;
            }
        }
        let growth = peak_resident.saturating_sub(baseline);
        eprintln!(
            "{CONNECTIONS} connections sent {} MiB of {FRAME_BYTES}-byte frames; node resident \
             grew {} MiB (budget {} MiB); request bytes buffered at most {} KiB; {} waiting for \
             budget; {} connections open; {served_requests} requests of another client served",
            sent.load(Ordering::Relaxed) >> 20,
            growth >> 20,
            BUDGET_BYTES >> 20,
            peak_buffered >> 10,
            stats.connections_waiting_for_budget(),
            stats.connections_open(),
        );
        assert_eq!(connected.load(Ordering::Relaxed), CONNECTIONS, "every connection was made");
        assert!(
            peak_buffered <= BUDGET_BYTES + CONNECTIONS * 8 * 1024,
            "{peak_buffered} request bytes buffered"
        );
        assert!(stats.request_bytes_in_flight_peak() <= BUDGET_BYTES);
        assert!(growth <= BUDGET_BYTES + SLACK_BYTES, "resident memory grew {} MiB", growth >> 20);
        assert!(stats.connections_waiting_for_budget() > 0, "most frames wait for budget");

        stop.store(true, Ordering::Relaxed);
        for client in clients {
            let _ = client.await;
        }
        let _ = stop_server.send(());
        serving.await.expect("the server stops");
    });
}
