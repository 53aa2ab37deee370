//! The metrics endpoint over real loopback sockets: a node, the gateway wrapped in the metering
//! decorator and the wire server, with requests sent over the Fluss protocol and `/metrics`
//! scraped over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kvtablet_core::message::{BucketScanRequest, Request, Response, ScanKvRequest};
use kvtablet_core::TableBucket;
use kvtablet_prod::catalog::{Catalog, CatalogConfig, TablePath, TableSpec};
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::format::{
    encode_key, encode_row, Column, DataType, Datum, KvRecordBatchBuilder, Row, Schema, TypeRoot,
};
use kvtablet_prod::gateway::FlussGateway;
use kvtablet_prod::metrics::metrics_server::Render;
use kvtablet_prod::metrics::{MeteredHandler, MetricsServer, NodeMetrics};
use kvtablet_prod::node::{Node, NodeConfig};
use kvtablet_prod::system_clock::SystemClock;
use kvtablet_prod::wire::messages::{
    LookupRequest, LookupResponse, PbLookupReqForBucket, PbPutKvReqForBucket, PutKvRequest,
    PutKvResponse,
};
use kvtablet_prod::wire::{
    ApiKey, FrameCodec, RequestFrame, ResponseFrame, WireConfig, WireHandler, WireServer,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);
const LOCALHOST_ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// Sends one request frame and reads its response.
async fn call(
    stream: &mut TcpStream,
    key: ApiKey,
    request_id: i32,
    body: Vec<u8>,
) -> ResponseFrame {
    let frame = RequestFrame {
        api_key: key.id(),
        api_version: key.min_version(),
        request_id,
        body: Bytes::from(body),
    };
    let mut buf = BytesMut::new();
    FrameCodec::default().encode_request(&frame, &mut buf).expect("encodes");
    timeout(STEP, stream.write_all(&buf)).await.expect("sent in time").expect("sent");
    let mut length = [0u8; 4];
    timeout(STEP, stream.read_exact(&mut length)).await.expect("answer in time").expect("read");
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    timeout(STEP, stream.read_exact(&mut rest)).await.expect("body in time").expect("read");
    let mut frame = BytesMut::from(&length[..]);
    frame.put_slice(&rest);
    FrameCodec::default().decode_response(&mut frame).expect("decodes").expect("whole frame")
}

fn success_body(frame: ResponseFrame) -> Bytes {
    match frame {
        ResponseFrame::Success { body, .. } => body,
        other => panic!("expected a success, got {other:?}"),
    }
}

/// Table 1's schema: a STRING primary key `k` and a STRING value `v`.
fn schema() -> Schema {
    let columns = vec![
        Column::new(0, "k", DataType::not_null(TypeRoot::String)),
        Column::new(1, "v", DataType::nullable(TypeRoot::String)),
    ];
    Schema::new(columns, vec!["k".to_string()]).expect("schema")
}

/// The key bytes of `k`.
fn key(k: &str) -> Vec<u8> {
    encode_key(&[DataType::not_null(TypeRoot::String)], &[Datum::String(k.to_string())])
        .expect("key")
}

/// Upserts of `(k, v)` rows into bucket 0 of table 1.
fn put_kv(records: &[(&str, &str)]) -> Vec<u8> {
    let types: Vec<DataType> = schema().columns.iter().map(|c| c.data_type.clone()).collect();
    let mut batch = KvRecordBatchBuilder::new(1, -1, -1);
    for (k, v) in records {
        let row = Row::new(vec![Datum::String(k.to_string()), Datum::String(v.to_string())]);
        let value = encode_row(&types, &row).expect("row");
        batch.append(&key(k), Some(&value)).expect("appends");
    }
    PutKvRequest {
        acks: -1,
        table_id: 1,
        timeout_ms: 10_000,
        target_columns: Vec::new(),
        buckets_req: vec![PbPutKvReqForBucket {
            partition_id: None,
            bucket_id: 0,
            records: Bytes::from(batch.build().expect("builds")),
        }],
        agg_mode: None,
    }
    .encode_to_vec()
}

/// GETs `path` and returns the status line, the head and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = timeout(STEP, TcpStream::connect(addr)).await.expect("in time").expect("conn");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    timeout(STEP, stream.write_all(request.as_bytes())).await.expect("in time").expect("sent");
    let mut response = Vec::new();
    timeout(STEP, stream.read_to_end(&mut response)).await.expect("in time").expect("read");
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

/// The value of the sample line `name{labels} value`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_errors_latency_scanners_and_flush_lag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = Arc::new(
        Catalog::open(
            Arc::new(DiskFs::new(dir.path()).expect("fs")),
            Arc::new(SystemClock::new()),
            CatalogConfig::DEFAULT,
        )
        .expect("catalog"),
    );
    // Table 1, buckets 0..4, schema id 1, in the catalog (PutKv decodes rows with its schema)
    // and hosted by the node.
    catalog.create_database("db", None, false).expect("database");
    let spec = TableSpec {
        schema_json: schema().to_json_string(),
        columns: vec!["k".to_string(), "v".to_string()],
        primary_key: vec!["k".to_string()],
        bucket_key: Vec::new(),
        partition_key: Vec::new(),
        bucket_count: Some(4),
        properties: Default::default(),
        custom_properties: Default::default(),
        comment: None,
    };
    let table = catalog.create_table(&TablePath::new("db", "t"), spec, false).expect("table");
    assert_eq!(table.table_id, 1);
    let mut node = Node::start(NodeConfig::new(dir.path()), tokio::runtime::Handle::current())
        .await
        .expect("node starts");
    let handle = node.handle().expect("running");

    let wire = WireServer::bind(SocketAddr::from(LOCALHOST_ANY_PORT), WireConfig::default())
        .await
        .expect("wire binds");
    let wire_addr = wire.local_addr();
    let metrics = Arc::new(NodeMetrics::new());
    let gateway =
        Arc::new(FlussGateway::new(catalog, handle.clone(), wire_addr).expect("gateway opens"));
    let metered: Arc<dyn WireHandler> = Arc::new(MeteredHandler::new(gateway, metrics.clone()));
    let metrics_server =
        MetricsServer::bind(SocketAddr::from(LOCALHOST_ANY_PORT)).await.expect("metrics bind");
    let metrics_addr = metrics_server.local_addr();
    assert_ne!(metrics_addr.port(), 0);
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let wire_task = tokio::spawn(wire.serve(metered, until_stopped(stopped.clone())));
    let stats_handle = handle.clone();
    let render: Render = Arc::new(move || metrics.render(Some(&stats_handle.stats())));
    let metrics_task = tokio::spawn(metrics_server.serve(render, until_stopped(stopped)));

    let mut client =
        timeout(STEP, TcpStream::connect(wire_addr)).await.expect("in time").expect("connects");
    // Answered by the wire server itself: not counted.
    success_body(call(&mut client, ApiKey::ApiVersions, 1, Vec::new()).await);
    let put = call(&mut client, ApiKey::PutKv, 2, put_kv(&[("k1", "v1"), ("k2", "v2")])).await;
    let put = PutKvResponse::decode(success_body(put)).expect("put response");
    assert_eq!(put.buckets_resp[0].error_code, None, "{put:?}");
    let lookup = LookupRequest {
        table_id: 1,
        buckets_req: vec![PbLookupReqForBucket {
            partition_id: None,
            bucket_id: 0,
            keys: vec![Bytes::from(key("k1"))],
            original_partition_name: None,
        }],
        insert_if_not_exists: None,
        acks: None,
        timeout_ms: None,
    };
    let lookup = call(&mut client, ApiKey::Lookup, 3, lookup.encode_to_vec()).await;
    let lookup = LookupResponse::decode(success_body(lookup)).expect("lookup response");
    assert_eq!(lookup.buckets_resp[0].error_code, None, "{lookup:?}");
    // A malformed body: CORRUPT_MESSAGE (3).
    let corrupt = call(&mut client, ApiKey::PutKv, 4, vec![0xff, 0xff, 0xff]).await;
    assert!(matches!(corrupt, ResponseFrame::Error { error_code: 3, .. }), "{corrupt:?}");
    // Advertised but not served: UNSUPPORTED_VERSION (2).
    let refused = call(&mut client, ApiKey::ProduceLog, 5, Vec::new()).await;
    assert!(matches!(refused, ResponseFrame::Error { error_code: 2, .. }), "{refused:?}");

    // Scans read flushed data: wait (bounded) until the two rows are flushed, then open a
    // session with a one-byte page so that it stays open after its first page.
    let bucket = TableBucket::new(1, 0);
    let mut flushed = false;
    for _ in 0..200 {
        let stats = handle.stats();
        let led = stats.buckets.iter().find(|b| b.bucket == bucket).expect("bucket 0 hosted");
        if led.flushed_offset == Some(2) {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(flushed, "bucket 0 flushed within 5 s: {:?}", handle.stats());
    let open = Request::ScanKv(ScanKvRequest {
        bucket_scan_req: Some(BucketScanRequest { bucket, limit: None }),
        call_seq_id: Some(0),
        batch_size_bytes: Some(1),
        ..ScanKvRequest::default()
    });
    match timeout(STEP, handle.request(open)).await.expect("in time").expect("answered") {
        Response::ScanKv(page) => assert_eq!(page.has_more_results, Some(true), "{page:?}"),
        other => panic!("expected a scan page, got {other:?}"),
    }

    let (status, head, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Type: application/openmetrics-text"), "{head}");
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    };
    expect("kvtablet_requests_total{api=\"PUT_KV\"}", 2.0);
    expect("kvtablet_requests_total{api=\"LOOKUP\"}", 1.0);
    expect("kvtablet_requests_total{api=\"PRODUCE_LOG\"}", 1.0);
    expect("kvtablet_request_errors_total{api=\"PUT_KV\",error_code=\"3\"}", 1.0);
    expect("kvtablet_request_errors_total{api=\"PRODUCE_LOG\",error_code=\"2\"}", 1.0);
    assert_eq!(sample(&text, "kvtablet_request_errors_total{api=\"LOOKUP\""), None, "{text}");
    assert!(!text.contains("API_VERSIONS"), "ApiVersions is not the gateway's: {text}");
    expect("kvtablet_request_duration_seconds_count{api=\"PUT_KV\"}", 2.0);
    expect("kvtablet_request_duration_seconds_count{api=\"LOOKUP\"}", 1.0);
    expect("kvtablet_request_duration_seconds_bucket{le=\"+Inf\",api=\"LOOKUP\"}", 1.0);
    let lookup_seconds =
        sample(&text, "kvtablet_request_duration_seconds_sum{api=\"LOOKUP\"}").expect("a sum");
    assert!(lookup_seconds > 0.0 && lookup_seconds < STEP.as_secs_f64(), "{lookup_seconds}");
    expect("kvtablet_scanner_sessions", 1.0);
    for bucket_id in 0..4 {
        let series = format!(
            "kvtablet_bucket_flush_lag_offsets{{table_id=\"1\",bucket_id=\"{bucket_id}\"}}"
        );
        expect(&series, 0.0);
    }
    expect("kvtablet_flush_lag_max_offsets", 0.0);
    // The node's flush loops and scan evictor run: none has ended.
    expect("kvtablet_background_loops_ended", 0.0);
    assert!(text.ends_with("# EOF\n"), "{text}");

    let (status, _, _) = http_get(metrics_addr, "/nothing-here").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    drop(client);
    let _ = stop.send(true);
    timeout(STEP * 2, wire_task).await.expect("wire server stops in time").expect("joined");
    timeout(STEP, metrics_task).await.expect("metrics server stops in time").expect("joined");
    node.shutdown().await;
}
