//! The scanner manager's memory of drained sessions: final pages are kept for a retry, within
//! a count and a byte bound, and a forgotten one is remembered as expired.

use std::sync::Arc;

use bytes::Bytes;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::{KeyRange, KvEngine, KvEngineFactory, WriteBatch};
use kvtablet_core::env::Env;
use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::message::ScanKvResponse;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::scan_session::{ScanSession, SessionOrigin};
use kvtablet_core::scan::scanner_manager::SessionLookup;
use kvtablet_core::scan::{ScannerConfig, ScannerManager};
use kvtablet_core::TableBucket;
use kvtablet_sim::executor::SimExecutor;
use kvtablet_sim::fs::SimFs;
use kvtablet_sim::network::{NetFaults, SimNetwork};
use kvtablet_sim::prng::{SimEntropy, Streams};
use kvtablet_sim::remote::{RemoteFaults, SimRemoteStorage};

struct Bench {
    manager: ScannerManager,
    engine: Arc<dyn KvEngine>,
    ledger: Ledger,
}

fn bench(sessions_per_server_max: u32) -> Bench {
    let streams = Streams::new(3);
    let exec = SimExecutor::new(&streams);
    let fs = Arc::new(SimFs::new());
    let ledger = Ledger::new();
    let env = Env {
        node_id: 1,
        clock: exec.clock_for(1),
        executor: exec.executor_for(1),
        remote: Arc::new(SimRemoteStorage::new(&exec, &streams, RemoteFaults::none())),
        rpc: SimNetwork::new(&exec, &streams, NetFaults::none()).endpoint(1),
        fs: fs.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(MemEngineFactory::new(fs.clone())),
        ledger: ledger.clone(),
        mutants: Mutants::NONE,
    };
    let config = ScannerConfig { sessions_per_server_max, ..ScannerConfig::DEFAULT };
    let engine = MemEngineFactory::new(fs).open("kv").expect("engine");
    let mut batch = WriteBatch::new();
    batch.put(b"k".to_vec(), b"\x01\x00v".to_vec());
    engine.write(&batch).expect("write");
    Bench { manager: ScannerManager::new(env, config), engine, ledger }
}

/// A drained session of `bucket` and the final page it served, `page_bytes` long.
fn finished(
    bench: &Bench,
    bucket: TableBucket,
    page_bytes: usize,
) -> (Arc<ScanSession>, ScanKvResponse) {
    let mut iterator =
        bench.engine.snapshot().expect("snapshot").iter(KeyRange::all()).expect("iterator");
    iterator.seek_to_first();
    let origin = SessionOrigin {
        id: bench.manager.new_session_id(),
        bucket,
        leader_epoch: 1,
        log_offset: 1,
        limit: None,
        now_ms: 0,
    };
    let entry = bench.ledger.register(ResourceKind::ScanSession, "test");
    let session = Arc::new(ScanSession::new(origin, iterator, entry));
    let response = ScanKvResponse {
        scanner_id: Some(session.id().as_bytes().to_vec()),
        has_more_results: Some(false),
        records: Some(Bytes::from(vec![0u8; page_bytes])),
        ..ScanKvResponse::default()
    };
    (session, response)
}

#[test]
fn final_pages_are_kept_within_a_count_bound_and_forgotten_as_expired() {
    let bench = bench(2);
    let bucket = TableBucket::new(1, 0);
    let mut ids = Vec::new();
    // The count bound is 2 × sessions_per_server_max = 4 pages.
    for _ in 0..5 {
        let (session, page) = finished(&bench, bucket, 16);
        bench.manager.remember_finished(&session, 3, 100, &page);
        ids.push(session.id().to_string());
        session.close_or_defer(true);
    }
    let oldest = &ids[0];
    assert!(
        bench.manager.finished_page(oldest, Some(3), 100).is_none(),
        "the oldest page is forgotten"
    );
    assert!(
        matches!(bench.manager.lookup(oldest), SessionLookup::Expired),
        "and its id is remembered as expired"
    );
    for id in &ids[1..] {
        assert!(bench.manager.finished_page(id, Some(3), 100).is_some(), "page of {id} is kept");
        assert!(
            bench.manager.finished_page(id, Some(2), 100).is_none(),
            "only a repeat of the last request"
        );
        assert!(bench.manager.finished_page(id, Some(3), 99).is_none(), "with the same batch size");
    }
}

#[test]
fn final_pages_are_kept_within_a_byte_bound() {
    let bench = bench(200);
    let bucket = TableBucket::new(1, 0);
    let mut ids = Vec::new();
    // 64 MiB bound: three 30 MiB pages cannot all stay.
    for _ in 0..3 {
        let (session, page) = finished(&bench, bucket, 30 * 1024 * 1024);
        bench.manager.remember_finished(&session, 1, 100, &page);
        ids.push(session.id().to_string());
        session.close_or_defer(true);
    }
    assert!(bench.manager.finished_page(&ids[0], Some(1), 100).is_none());
    assert!(matches!(bench.manager.lookup(&ids[0]), SessionLookup::Expired));
    assert!(bench.manager.finished_page(&ids[1], Some(1), 100).is_some());
    assert!(bench.manager.finished_page(&ids[2], Some(1), 100).is_some());
}

#[test]
fn a_leadership_close_forgets_the_buckets_final_pages_as_expired() {
    let bench = bench(200);
    let (kept, kept_page) = finished(&bench, TableBucket::new(1, 1), 16);
    let (dropped, dropped_page) = finished(&bench, TableBucket::new(1, 0), 16);
    bench.manager.remember_finished(&kept, 1, 100, &kept_page);
    bench.manager.remember_finished(&dropped, 1, 100, &dropped_page);
    bench.manager.close_bucket(TableBucket::new(1, 0));
    assert!(bench.manager.finished_page(dropped.id(), Some(1), 100).is_none());
    assert!(matches!(bench.manager.lookup(dropped.id()), SessionLookup::Expired));
    assert!(
        bench.manager.finished_page(kept.id(), Some(1), 100).is_some(),
        "other buckets are untouched"
    );
}
