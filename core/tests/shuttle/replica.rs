//! A replica's leadership transitions (follower, leader again, stop) racing puts, lookups and
//! flushes, checked against the changelog.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvtablet_core::error::ErrorCode;
use kvtablet_core::log::WriterBatch;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::TableBucket;

use crate::support::{call, explore, value, Budget, LogModel, World, TABLE_ID};

const KEYS: [&[u8]; 2] = [b"a", b"b"];

fn keys() -> Vec<Vec<u8>> {
    KEYS.iter().map(|k| k.to_vec()).collect()
}

/// What a lookup returned.
type Read = (Vec<Option<Vec<u8>>>, u64);

pub fn leadership_against_io(mutants: Mutants) {
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);

    let writer = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for sequence in 0..3u8 {
                let write = KvWrite {
                    key: KEYS[usize::from(sequence) % KEYS.len()].to_vec(),
                    value: (sequence != 2).then(|| value(&[sequence])),
                };
                let id = WriterBatch { writer_id: 5, batch_sequence: i32::from(sequence) };
                let request = Request::PutKv {
                    bucket,
                    writes: vec![write.clone()],
                    writer: Some(id),
                    target_columns: None,
                };
                match call(&server, request) {
                    Response::PutKv { base_offset, end_offset, duplicate } => {
                        assert!(!duplicate, "a batch sent once answered as a duplicate");
                        acknowledged.push((id, write, base_offset, end_offset));
                    }
                    // Not led right now: the batch is dropped, and its sequence is not reused.
                    Response::Error(error) => {
                        assert_eq!(error.code, ErrorCode::NotLeaderOrFollower, "{error:?}");
                        return acknowledged;
                    }
                    other => panic!("a put answered {other:?}"),
                }
            }
            acknowledged
        })
    };
    let reader = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let mut reads: Vec<Read> = Vec::new();
            for _ in 0..3 {
                match call(&server, Request::Lookup { bucket, keys: keys() }) {
                    Response::Lookup { values, read_offset } => {
                        if let Some((_, previous)) = reads.last() {
                            assert!(read_offset >= *previous, "read offsets went backwards");
                        }
                        reads.push((values, read_offset));
                    }
                    Response::Error(error) => {
                        assert_eq!(error.code, ErrorCode::NotLeaderOrFollower, "{error:?}")
                    }
                    other => panic!("a lookup answered {other:?}"),
                }
            }
            reads
        })
    };
    let flusher = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            for _ in 0..2 {
                if let Some(kv) = server.leader_kv(bucket) {
                    shuttle::future::block_on(kv.flush_once()).expect("a flush never fails here");
                }
            }
        })
    };
    let coordinator = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let follow = call(&server, Request::BecomeFollower { bucket, leader_epoch: 2 });
            assert_eq!(follow, Response::Ok);
            let lead = call(&server, Request::BecomeLeader { bucket, leader_epoch: 3 });
            assert_eq!(lead, Response::Ok);
        })
    };
    let acknowledged = writer.join().expect("writer");
    let reads = reader.join().expect("reader");
    flusher.join().expect("flusher");
    coordinator.join().expect("coordinator");

    // Quiescent: flush everything, then compare with the changelog.
    let kv = server.leader_kv(bucket).expect("leads under epoch 3");
    while shuttle::future::block_on(kv.flush_once()).expect("flush") {}
    let model = LogModel::read(kv.log());
    model.assert_consistent();
    for (id, write, base_offset, end_offset) in &acknowledged {
        let batches = model.batch_of(*id);
        assert_eq!(batches.len(), 1, "{id:?} acknowledged but not in the log once");
        assert_eq!((batches[0].base_offset, batches[0].end_offset()), (*base_offset, *end_offset));
        let state = model.state_at(*end_offset);
        assert_eq!(state.get(&write.key), write.value.as_ref(), "{id:?} is not what was written");
    }
    let expect = |state: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<Option<Vec<u8>>> {
        keys().iter().map(|k| state.get(k).cloned()).collect()
    };
    for (values, read_offset) in &reads {
        assert_eq!(values, &expect(&model.state_at(*read_offset)), "read at {read_offset}");
    }
    let high_watermark = kv.log().high_watermark();
    match call(&server, Request::Lookup { bucket, keys: keys() }) {
        Response::Lookup { values, read_offset } => {
            assert_eq!(read_offset, high_watermark, "flushed to the high watermark");
            assert_eq!(values, expect(&model.state_at(high_watermark)));
        }
        other => panic!("the final lookup answered {other:?}"),
    }
    let ledger = world.env.ledger.clone();
    drop(kv);
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
    let _ = Arc::strong_count(&server);
}

#[test]
fn leadership_changes_keep_puts_reads_and_flushes_consistent_under_preemption() {
    explore("replica leadership", Budget::from_env(2_000, 4), || {
        leadership_against_io(Mutants::NONE)
    });
}

/// One execution: the server shuts down (every replica stopped) while a put, a lookup, a
/// flush and a scan are in flight. Once all are done nothing is left in the leak ledger, and
/// an acknowledged put is in the log.
pub fn shutdown_against_io(mutants: Mutants) {
    use kvtablet_core::message::{BucketScanRequest, ScanKvRequest};

    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    let seed_rows = KEYS.iter().map(|k| KvWrite { key: k.to_vec(), value: Some(value(k)) });
    let seeded =
        Request::PutKv { bucket, writes: seed_rows.collect(), writer: None, target_columns: None };
    assert!(matches!(call(&server, seeded), Response::PutKv { .. }));
    let log = server.leader_kv(bucket).expect("leads").log().clone();

    let writer = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let writes = vec![KvWrite { key: b"c".to_vec(), value: Some(value(b"c")) }];
            let id = WriterBatch { writer_id: 9, batch_sequence: 0 };
            match call(
                &server,
                Request::PutKv { bucket, writes, writer: Some(id), target_columns: None },
            ) {
                Response::PutKv { base_offset, .. } => Some(base_offset),
                Response::Error(_) => None,
                other => panic!("a put answered {other:?}"),
            }
        })
    };
    let scanner = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let open = ScanKvRequest {
                bucket_scan_req: Some(BucketScanRequest { bucket, limit: None }),
                call_seq_id: Some(0),
                batch_size_bytes: Some(1),
                ..ScanKvRequest::default()
            };
            let Response::ScanKv(page) = call(&server, Request::ScanKv(open)) else {
                panic!("a scan open answered something else")
            };
            if let Some(id) = page.scanner_id.filter(|_| page.has_more_results == Some(true)) {
                let next = ScanKvRequest {
                    scanner_id: Some(id),
                    call_seq_id: Some(1),
                    batch_size_bytes: Some(1),
                    ..ScanKvRequest::default()
                };
                let _ = call(&server, Request::ScanKv(next));
            }
        })
    };
    let reader_and_flusher = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            if let Some(kv) = server.leader_kv(bucket) {
                let _ = shuttle::future::block_on(kv.flush_once());
            }
            let _ = call(&server, Request::Lookup { bucket, keys: keys() });
        })
    };
    shuttle::future::block_on(server.shutdown());
    let acknowledged = writer.join().expect("writer");
    scanner.join().expect("scanner");
    reader_and_flusher.join().expect("reader and flusher");

    let model = LogModel::read(&log);
    model.assert_consistent();
    if let Some(base_offset) = acknowledged {
        let batch = model.batch_of(WriterBatch { writer_id: 9, batch_sequence: 0 });
        assert_eq!(batch.first().map(|b| b.base_offset), Some(base_offset));
    }
    let ledger = world.env.ledger.clone();
    assert!(ledger.live().is_empty(), "left after shutdown: {:?}", ledger.live());
}

#[test]
fn a_shutdown_racing_requests_leaves_nothing_behind_under_preemption() {
    explore("shutdown against requests", Budget::from_env(1_000, 4), || {
        shutdown_against_io(Mutants::NONE)
    });
}
