//! The idempotent writer state under concurrent resends of one batch: straight at the log
//! (`LogTablet::append_as_leader`), and through the server with a leadership change racing.

use kvtablet_core::error::ErrorCode;
use kvtablet_core::log::{AppendMeta, Appended, ChangeRecord, ChangeType, WriterBatch};
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::TableBucket;

use crate::support::{call, explore, value, Budget, LogModel, World, TABLE_ID};

const RESENDS: usize = 3;

fn resend_to_the_log(world: &World) {
    let log = world.logs.open(TableBucket::new(TABLE_ID, 1)).expect("log opens");
    log.fence(1).expect("fence");
    let writer = WriterBatch { writer_id: 11, batch_sequence: 0 };
    let threads: Vec<_> = (0..RESENDS)
        .map(|_| {
            let log = log.clone();
            shuttle::thread::spawn(move || {
                let change = ChangeRecord {
                    change_type: ChangeType::Insert,
                    key: b"k".to_vec(),
                    value: value(b"v"),
                };
                let meta = AppendMeta { commit_timestamp_ms: 1, writer: Some(writer) };
                match log.append_as_leader(1, meta, vec![change]).expect("append") {
                    Appended::Batch(batch) => (batch.base_offset, batch.end_offset(), true),
                    Appended::Duplicate { base_offset, end_offset } => {
                        (base_offset, end_offset, false)
                    }
                }
            })
        })
        .collect();
    let answers: Vec<(u64, u64, bool)> =
        threads.into_iter().map(|t| t.join().expect("resend")).collect();
    let model = LogModel::read(&log);
    model.assert_consistent();
    assert_eq!(answers.iter().filter(|a| a.2).count(), 1, "appended by more than one: {answers:?}");
    let appended = model.batch_of(writer);
    for (base_offset, end_offset, _) in &answers {
        assert_eq!(
            (*base_offset, *end_offset),
            (appended[0].base_offset, appended[0].end_offset())
        );
    }
}

fn resend_through_the_server(world: &World) {
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    let writer = WriterBatch { writer_id: 12, batch_sequence: 0 };
    let mut threads: Vec<_> = (0..RESENDS - 1)
        .map(|_| {
            let server = server.clone();
            shuttle::thread::spawn(move || {
                let writes = vec![KvWrite { key: b"k".to_vec(), value: Some(value(b"w")) }];
                match call(
                    &server,
                    Request::PutKv { bucket, writes, writer: Some(writer), target_columns: None },
                ) {
                    Response::PutKv { base_offset, end_offset, .. } => {
                        Some((base_offset, end_offset))
                    }
                    Response::Error(error) => {
                        assert_eq!(error.code, ErrorCode::NotLeaderOrFollower, "{error:?}");
                        None
                    }
                    other => panic!("a put answered {other:?}"),
                }
            })
        })
        .collect();
    {
        let server = server.clone();
        threads.push(shuttle::thread::spawn(move || {
            assert_eq!(
                call(&server, Request::BecomeLeader { bucket, leader_epoch: 2 }),
                Response::Ok
            );
            None
        }));
    }
    let answers: Vec<Option<(u64, u64)>> =
        threads.into_iter().map(|t| t.join().expect("resend")).collect();
    let log = world.logs.open(bucket).expect("log");
    let model = LogModel::read(&log);
    model.assert_consistent();
    let appended = model.batch_of(writer);
    for (base_offset, end_offset) in answers.into_iter().flatten() {
        let batch = appended.first().expect("an acknowledged batch is in the log");
        assert_eq!((base_offset, end_offset), (batch.base_offset, batch.end_offset()));
    }
    let ledger = world.env.ledger.clone();
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

/// One execution: resends straight at a log, then through a server.
pub fn writer_resends(mutants: Mutants) {
    let world = World::new(mutants);
    resend_to_the_log(&world);
    resend_through_the_server(&world);
}

#[test]
fn a_resent_batch_is_appended_once_under_preemption() {
    explore("writer resends", Budget::from_env(1_000, 4), || writer_resends(Mutants::NONE));
}
