//! The scanner manager's lifecycle on real threads: scans that open, page, close and abandon,
//! the TTL evictor and a leadership change, all racing, with the invariants checked during the
//! run and at its end.

use std::sync::Arc;

use kvtablet_core::env::Clock;
use kvtablet_core::error::ErrorCode;
use kvtablet_core::ledger::ResourceKind;
use kvtablet_core::message::{BucketScanRequest, KvWrite, Request, Response, ScanKvRequest};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_server::TabletServer;
use kvtablet_core::TableBucket;
use shuttle::sync::atomic::{AtomicBool, Ordering};

use crate::support::{call, value, Budget, World, TABLE_ID};

pub const CONFIG: ScannerConfig = ScannerConfig {
    ttl_ms: 1_000,
    expiration_interval_ms: 500,
    sessions_per_bucket_max: 1,
    sessions_per_server_max: 2,
    batch_bytes_max: 1024,
};
const ROWS_PER_BUCKET: u8 = 6;

fn bucket(id: i32) -> TableBucket {
    TableBucket::new(TABLE_ID, id)
}

/// What a scan client does after its open.
#[derive(Debug, Clone, Copy)]
enum ClientPlan {
    /// Pages `continuations` times, then closes, then sends a late continuation.
    PageThenClose { continuations: i32 },
    /// Pages `continuations` times and walks away.
    PageThenAbandon { continuations: i32 },
}

struct Shared {
    server: Arc<TabletServer>,
    world: World,
    /// Set before bucket 0's leadership change to epoch 2 starts.
    bucket0_moving: AtomicBool,
    /// Set once it has returned.
    bucket0_moved: AtomicBool,
}

/// A scan page or error, with the facts its checks need.
fn scan(shared: &Shared, request: ScanKvRequest) -> kvtablet_core::message::ScanKvResponse {
    match call(&shared.server, Request::ScanKv(request)) {
        Response::ScanKv(response) => response,
        other => panic!("a ScanKv request answered {other:?}"),
    }
}

fn continuation(id: &[u8], call_seq_id: i32) -> ScanKvRequest {
    ScanKvRequest {
        scanner_id: Some(id.to_vec()),
        call_seq_id: Some(call_seq_id),
        batch_size_bytes: Some(1),
        ..ScanKvRequest::default()
    }
}

fn run_client(shared: &Shared, scanned: TableBucket, plan: ClientPlan) {
    let clock = &shared.world.clock;
    let ttl_ms = CONFIG.ttl_ms;
    let moved_before =
        |b: TableBucket| b == bucket(0) && shared.bucket0_moved.load(Ordering::SeqCst);
    let moving = |b: TableBucket| b == bucket(0) && shared.bucket0_moving.load(Ordering::SeqCst);
    // A page of a term that ended before the request started must never be served.
    let check_epoch = |fenced: bool, response: &kvtablet_core::message::ScanKvResponse| {
        if response.records.is_some() && fenced {
            assert_ne!(
                response.leader_epoch,
                Some(1),
                "a page of {scanned}'s closed term 1 was served to a request sent after the close"
            );
        }
    };
    let fenced = moved_before(scanned);
    let opened_ms = clock.now_mono_ms();
    let open = scan(
        shared,
        ScanKvRequest {
            bucket_scan_req: Some(BucketScanRequest { bucket: scanned, limit: None }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(1),
            ..ScanKvRequest::default()
        },
    );
    check_epoch(fenced, &open);
    if let Some(error) = &open.error {
        assert!(
            matches!(error.code, ErrorCode::TooManyScanners | ErrorCode::NotLeaderOrFollower),
            "open of {scanned} refused with {error:?}"
        );
        return;
    }
    let Some(id) = open.scanner_id.clone() else { return };
    let mut last_page_sent_ms = opened_ms;
    let (continuations, close) = match plan {
        ClientPlan::PageThenClose { continuations } => (continuations, true),
        ClientPlan::PageThenAbandon { continuations } => (continuations, false),
    };
    let mut more = open.has_more_results == Some(true);
    for call_seq_id in 1..=continuations {
        if !more {
            break;
        }
        let fenced = moved_before(scanned);
        let sent_ms = clock.now_mono_ms();
        let page = scan(shared, continuation(&id, call_seq_id));
        check_epoch(fenced, &page);
        match &page.error {
            None => {
                last_page_sent_ms = sent_ms;
                more = page.has_more_results == Some(true);
            }
            Some(error) => {
                let now_ms = clock.now_mono_ms();
                match error.code {
                    ErrorCode::ScannerExpired => assert!(
                        moving(scanned) || now_ms.saturating_sub(last_page_sent_ms) > ttl_ms,
                        "{scanned}: SCANNER_EXPIRED at {now_ms} ms although a page was served \
                         for a request sent at {last_page_sent_ms} ms (TTL {ttl_ms} ms) and \
                         the leadership did not change"
                    ),
                    ErrorCode::NotLeaderOrFollower => assert!(moving(scanned)),
                    // Refused as "concurrent or closing": the session is being ended.
                    ErrorCode::InvalidScanRequest => {}
                    _ => panic!("{scanned}: continuation {call_seq_id} answered {error:?}"),
                }
                return;
            }
        }
    }
    if close && more {
        let closed = scan(
            shared,
            ScanKvRequest {
                scanner_id: Some(id.clone()),
                close_scanner: Some(true),
                ..ScanKvRequest::default()
            },
        );
        assert!(closed.error.is_none(), "{scanned}: close answered {:?}", closed.error);
        // No page of a closed session: a late continuation is an error.
        let late = scan(shared, continuation(&id, continuations + 1));
        assert!(late.error.is_some() && late.records.is_none(), "a closed session served {late:?}");
    }
}

fn assert_counters_consistent(server: &TabletServer, context: &str) {
    let counts = server.scanners().counts();
    assert!(counts.total >= 0, "{context}: total {}", counts.total);
    assert!(counts.total <= i64::from(CONFIG.sessions_per_server_max), "{context}: {counts:?}");
    for (b, count) in &counts.per_bucket {
        assert!(*count >= 0, "{context}: {b} counter {count}");
        assert!(*count <= i64::from(CONFIG.sessions_per_bucket_max), "{context}: {counts:?}");
    }
    let sum: i64 = counts.per_bucket.values().sum();
    assert_eq!(sum, counts.total, "{context}: per-bucket counters do not add up: {counts:?}");
}

/// A server leading buckets `0..bucket_count` under epoch 1, each holding
/// [`ROWS_PER_BUCKET`] flushed rows.
fn scanning_world(mutants: Mutants, bucket_count: i32) -> Arc<Shared> {
    let world = World::new(mutants);
    let server = world.server(bucket_count, CONFIG);
    for b in (0..bucket_count).map(bucket) {
        let lead = call(&server, Request::BecomeLeader { bucket: b, leader_epoch: 1 });
        assert_eq!(lead, Response::Ok);
        let writes = (0..ROWS_PER_BUCKET)
            .map(|k| KvWrite { key: vec![b'k', k], value: Some(value(&[k])) })
            .collect();
        let put =
            call(&server, Request::PutKv { bucket: b, writes, writer: None, target_columns: None });
        assert!(matches!(put, Response::PutKv { .. }), "{put:?}");
        let kv = server.leader_kv(b).expect("leads");
        while shuttle::future::block_on(kv.flush_once()).expect("flush") {}
    }
    Arc::new(Shared {
        server,
        world,
        bucket0_moving: AtomicBool::new(false),
        bucket0_moved: AtomicBool::new(false),
    })
}

fn spawn_client(
    shared: &Arc<Shared>,
    scanned: TableBucket,
    plan: ClientPlan,
) -> shuttle::thread::JoinHandle<()> {
    let shared = shared.clone();
    shuttle::thread::spawn(move || run_client(&shared, scanned, plan))
}

/// The evictor as its task runs it: a pass once the TTL has run out.
fn spawn_evictor(shared: &Arc<Shared>) -> shuttle::thread::JoinHandle<()> {
    let shared = shared.clone();
    shuttle::thread::spawn(move || {
        shared.world.clock.advance(CONFIG.ttl_ms + 1);
        shared.server.scanners().evict_expired();
    })
}

/// After every thread joined: counters equal the registered sessions, none of a closed term,
/// and after the TTL and shutdown the leak ledger is empty.
fn check_quiescent_then_release(shared: &Shared) {
    let server = &shared.server;
    assert_counters_consistent(server, "at quiescence");
    let counts = server.scanners().counts();
    let sessions = server.scanners().sessions();
    assert_eq!(counts.total, sessions.len() as i64, "{counts:?} vs {sessions:?}");
    assert_eq!(counts.registered, sessions.len());
    for session in &sessions {
        assert_eq!(counts.per_bucket.get(&session.bucket).copied(), Some(1), "{counts:?}");
        assert!(!session.in_use, "{session:?} held at quiescence");
        let moved = shared.bucket0_moved.load(Ordering::SeqCst);
        assert!(
            !(moved && session.bucket == bucket(0) && session.leader_epoch == 1),
            "{session:?} outlived its term"
        );
    }
    let ledger = &shared.world.env.ledger;
    assert_eq!(ledger.count(ResourceKind::ScanSession), sessions.len(), "{:?}", ledger.live());
    shared.world.clock.advance(CONFIG.ttl_ms + 1);
    server.scanners().evict_expired();
    assert_eq!(server.scanners().counts().total, 0);
    assert_eq!(ledger.count(ResourceKind::ScanSession), 0, "{:?}", ledger.live());
    assert_eq!(ledger.count(ResourceKind::EngineIterator), 0, "{:?}", ledger.live());
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

/// One execution of everything at once: on three buckets (one session each, two per
/// server), scans that open, page, close and abandon, the evictor's pass and bucket 0's
/// leadership change race each other.
pub fn scanner_lifecycle(mutants: Mutants) {
    let shared = scanning_world(mutants, 3);
    let mut threads = vec![
        spawn_client(&shared, bucket(0), ClientPlan::PageThenClose { continuations: 2 }),
        spawn_client(&shared, bucket(0), ClientPlan::PageThenAbandon { continuations: 1 }),
        spawn_client(&shared, bucket(1), ClientPlan::PageThenAbandon { continuations: 3 }),
        spawn_client(&shared, bucket(2), ClientPlan::PageThenClose { continuations: 1 }),
        spawn_evictor(&shared),
    ];
    {
        let shared = shared.clone();
        threads.push(shuttle::thread::spawn(move || {
            shared.bucket0_moving.store(true, Ordering::SeqCst);
            let moved =
                call(&shared.server, Request::BecomeLeader { bucket: bucket(0), leader_epoch: 2 });
            assert_eq!(moved, Response::Ok);
            shared.bucket0_moved.store(true, Ordering::SeqCst);
        }));
    }
    assert_counters_consistent(&shared.server, "during the run");
    for thread in threads {
        thread.join().expect("a racing thread failed");
    }
    check_quiescent_then_release(&shared);
}

/// One execution of a scan paging while the evictor's pass runs: fewer threads, so that the
/// narrow window between the pass's pick and its act is reached often.
pub fn scanner_eviction(mutants: Mutants) {
    let shared = scanning_world(mutants, 1);
    let threads = vec![
        spawn_client(&shared, bucket(0), ClientPlan::PageThenAbandon { continuations: 5 }),
        spawn_evictor(&shared),
    ];
    for thread in threads {
        thread.join().expect("a racing thread failed");
    }
    check_quiescent_then_release(&shared);
}

#[test]
fn scanner_sessions_stay_counted_fenced_and_released_under_preemption() {
    let budget = Budget::from_env(2_000, 4);
    crate::support::explore("scanner lifecycle", budget, || scanner_lifecycle(Mutants::NONE));
}

#[test]
fn the_evictor_never_ends_a_session_a_request_just_refreshed() {
    let budget = Budget::from_env(2_000, 4);
    crate::support::explore("scanner eviction", budget, || scanner_eviction(Mutants::NONE));
}
