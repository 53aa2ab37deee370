//! The wire client's connection over real loopback sockets, against a scripted handler:
//! pipelined requests answered out of order reach their callers by request id, a deadline
//! ends one call without harming the others, an ERROR_RESPONSE is a typed error, and a server
//! that goes away fails the calls in flight and every later one; `WireRpc` then reports the
//! node unreachable.

// A test owns its runtime and reads wall time to bound its waits.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{Rpc, RpcError};
use kvtablet_core::message::{Request, ScanKvRequest};
use kvtablet_prod::client::{ClientError, Connection, ConnectionConfig, WireRpc};
use kvtablet_prod::wire::error::{decode_request, encode_response};
use kvtablet_prod::wire::messages::{InitWriterResponse, LookupRequest};
use kvtablet_prod::wire::{ApiKey, WireConfig, WireError, WireHandler, WireResponse, WireServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Lookup sleeps `table_id` milliseconds, then answers `InitWriterResponse{writer_id:
/// table_id}`; every other key is refused with code 39.
struct Scripted;

impl WireHandler for Scripted {
    fn handle(&self, api_key: i16, _version: i16, body: Bytes) -> BoxFuture<'static, WireResponse> {
        async move {
            match ApiKey::from_id(api_key) {
                Some(ApiKey::Lookup) => {
                    let request: LookupRequest = decode_request(&body)?;
                    let delay_ms = request.table_id.clamp(0, 10_000) as u64;
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    encode_response(&InitWriterResponse { writer_id: request.table_id })
                }
                _ => Err(WireError::new(39, format!("api key {api_key} is not served"))),
            }
        }
        .boxed()
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

async fn start() -> Running {
    let config = WireConfig { shutdown_grace: Duration::from_millis(50), ..WireConfig::default() };
    let server =
        WireServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.expect("binds");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.serve(Arc::new(Scripted), async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), server }
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.server.await;
    }
}

fn sleeping(delay_ms: i64) -> LookupRequest {
    LookupRequest {
        table_id: delay_ms,
        buckets_req: Vec::new(),
        insert_if_not_exists: None,
        acks: None,
        timeout_ms: None,
    }
}

async fn echo(connection: &Connection, delay_ms: i64) -> Result<i64, ClientError> {
    let response: InitWriterResponse = connection.call(ApiKey::Lookup, &sleeping(delay_ms)).await?;
    Ok(response.writer_id)
}

fn run(test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finished in time");
    });
}

#[test]
fn pipelined_requests_answered_out_of_order_reach_their_callers() {
    run(async {
        let server = start().await;
        let connection = Connection::connect(&server.addr.to_string(), ConnectionConfig::DEFAULT)
            .await
            .expect("connects");
        // The first request is answered last.
        let delays = [400, 0, 200, 0, 100, 0];
        let answers =
            futures::future::join_all(delays.iter().map(|delay| echo(&connection, *delay))).await;
        let answers: Vec<i64> = answers.into_iter().map(|a| a.expect("answered")).collect();
        assert_eq!(answers, delays);
        server.stop().await;
    });
}

#[test]
fn a_deadline_ends_one_call_and_the_connection_goes_on() {
    run(async {
        let server = start().await;
        let connection = Connection::connect(&server.addr.to_string(), ConnectionConfig::DEFAULT)
            .await
            .expect("connects");
        let late = connection
            .call_with_timeout::<_, InitWriterResponse>(
                ApiKey::Lookup,
                &sleeping(500),
                Duration::from_millis(50),
            )
            .await;
        assert!(matches!(late, Err(ClientError::Timeout { .. })), "{late:?}");
        assert!(late.unwrap_err().outcome_unknown());
        // The late response arrives meanwhile and is dropped; later calls are unaffected.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(echo(&connection, 0).await.expect("answered"), 0);
        assert!(!connection.is_closed());
        server.stop().await;
    });
}

#[test]
fn an_error_response_is_a_typed_server_error() {
    run(async {
        let server = start().await;
        let connection = Connection::connect(&server.addr.to_string(), ConnectionConfig::DEFAULT)
            .await
            .expect("connects");
        let refused =
            connection.call_raw(ApiKey::PutKv, Bytes::new(), Duration::from_secs(10)).await;
        match refused {
            Err(error @ ClientError::Server { code: 39, .. }) => {
                assert_eq!(error.server_code(), Some(39));
                assert!(!error.outcome_unknown(), "a refusal is an answer");
            }
            other => panic!("expected a server error, got {other:?}"),
        }
        server.stop().await;
    });
}

#[test]
fn a_server_that_goes_away_fails_calls_in_flight_and_later_ones() {
    run(async {
        let server = start().await;
        let addr = server.addr.to_string();
        let connection = Arc::new(
            Connection::connect(&addr, ConnectionConfig::DEFAULT).await.expect("connects"),
        );
        let in_flight = {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move { echo(&connection, 5_000).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A shutdown grace far below the handler's sleep: the server drops the connection.
        server.stop().await;
        let outcome = in_flight.await.expect("the caller ran");
        assert!(matches!(outcome, Err(ClientError::ClosedInFlight { .. })), "{outcome:?}");
        let later = echo(&connection, 0).await;
        assert!(matches!(later, Err(ClientError::Closed(_))), "{later:?}");
        assert!(connection.is_closed());

        // WireRpc reconnects on the next call; with nobody listening the node is unreachable.
        let rpc = WireRpc::new(addr, Arc::clone(&connection));
        let request = Request::ScanKv(ScanKvRequest {
            scanner_id: Some(vec![1]),
            call_seq_id: Some(1),
            batch_size_bytes: Some(1),
            ..ScanKvRequest::default()
        });
        let outcome = rpc.call(1, request, 1_000).await;
        assert_eq!(outcome, Err(RpcError::Unreachable(1)));

        let refused =
            Connection::connect(&server_addr_after_stop(), ConnectionConfig::DEFAULT).await;
        assert!(matches!(refused, Err(ClientError::Connect { .. })), "{refused:?}");
    });
}

/// An address nobody listens on: bound, then freed.
fn server_addr_after_stop() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    addr
}
