//! Group commit under preemption: concurrent puts to one bucket share syncs, and each is
//! acknowledged only once a sync covering its batch returned (checked by opening the log from
//! what a crash at the moment of the acknowledgement would keep); a failed shared sync fails
//! every put waiting on it and stops the log.

use std::sync::Arc;

use kvtablet_core::error::ErrorCode;
use kvtablet_core::log::{LogConfig, LogTablet, WriterBatch};
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::TableBucket;

use kvtablet_core::tablet_dirs::{bucket_dirs, TablePath};

use crate::support::{call, explore, value, Budget, LogModel, MemFs, World, TABLE_ID};

const PUTS: u8 = 3;

/// The end of `bucket`'s log as a crash now would leave it.
fn durable_end(fs: &MemFs, bucket: TableBucket) -> u64 {
    let copy: Arc<MemFs> = Arc::new(fs.synced_copy());
    let log = LogTablet::open(
        copy,
        format!(
            "data/{}",
            bucket_dirs(
                &TablePath::new("shuttle", "table"),
                bucket.table_id,
                None,
                bucket.bucket_id
            )
            .log_dir
        ),
        bucket,
        LogConfig::DEFAULT,
        Mutants::NONE,
    )
    .expect("the crashed copy opens");
    log.log_end_offset()
}

/// The first put, alone: it creates the segment (a sync of its own) at offset 0.
fn warm_up(server: &kvtablet_core::tablet_server::TabletServer, bucket: TableBucket) {
    let writes = vec![KvWrite { key: b"w".to_vec(), value: Some(value(b"w")) }];
    assert!(matches!(
        call(server, Request::PutKv { bucket, writes, writer: None, target_columns: None }),
        Response::PutKv { end_offset: 1, .. }
    ));
}

/// One execution: `PUTS` writers put to one bucket at once; every acknowledged batch was
/// durable when it was acknowledged and is in the log once, at its offsets.
pub fn concurrent_puts_share_syncs(mutants: Mutants) {
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    warm_up(&server, bucket);
    let syncs_before = world.fs.syncs();
    let threads: Vec<_> = (0..PUTS)
        .map(|index| {
            let server = server.clone();
            let fs = world.fs.clone();
            shuttle::thread::spawn(move || {
                let writer = WriterBatch { writer_id: i64::from(index) + 1, batch_sequence: 0 };
                let writes =
                    vec![KvWrite { key: vec![b'k', index], value: Some(value(&[index])) }];
                match call(&server, Request::PutKv { bucket, writes, writer: Some(writer), target_columns: None }) {
                    Response::PutKv { base_offset, end_offset, duplicate } => {
                        assert!(!duplicate, "a batch sent once answered as a duplicate");
                        let durable = durable_end(&fs, bucket);
                        assert!(
                            durable >= end_offset,
                            "{writer:?} acknowledged at {base_offset}..{end_offset}, durable to {durable}"
                        );
                        (writer, base_offset, end_offset)
                    }
                    other => panic!("a put answered {other:?}"),
                }
            })
        })
        .collect();
    // A flush racing the puts takes only what is synced and parked: a batch that another
    // put's sync covered before its own put parked its values must not be claimed as flushed.
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
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().expect("put")).collect();
    flusher.join().expect("flusher");
    let syncs = world.fs.syncs() - syncs_before;
    assert!(syncs <= u64::from(PUTS), "{syncs} syncs for {PUTS} puts");
    let log = world.logs.open(bucket).expect("log");
    let model = LogModel::read(&log);
    model.assert_consistent();
    for (writer, base_offset, end_offset) in answers {
        let batches = model.batch_of(writer);
        assert_eq!(batches.len(), 1, "{writer:?} acknowledged but not in the log once");
        assert_eq!((batches[0].base_offset, batches[0].end_offset()), (base_offset, end_offset));
    }
    let high_watermark = log.high_watermark();
    assert_eq!(high_watermark, u64::from(PUTS) + 1);
    // Quiescent: everything flushed, the engine equals the changelog.
    let kv = server.leader_kv(bucket).expect("leads");
    while shuttle::future::block_on(kv.flush_once()).expect("flush") {}
    let keys: Vec<Vec<u8>> =
        std::iter::once(b"w".to_vec()).chain((0..PUTS).map(|index| vec![b'k', index])).collect();
    let state = model.state_at(high_watermark);
    match call(&server, Request::Lookup { bucket, keys: keys.clone() }) {
        Response::Lookup { values, read_offset } => {
            assert_eq!(read_offset, high_watermark, "flushed to the high watermark");
            let expected: Vec<Option<Vec<u8>>> =
                keys.iter().map(|key| state.get(key).cloned()).collect();
            assert_eq!(values, expected, "the engine differs from the changelog");
        }
        other => panic!("the final lookup answered {other:?}"),
    }
    drop(kv);
    let ledger = world.env.ledger.clone();
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

/// One execution: the disk's syncs fail while `PUTS` writers put at once; every put fails
/// (retriably), none is acknowledged, and the log stops with nothing committed.
pub fn failed_shared_sync_fails_every_waiter(mutants: Mutants) {
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    warm_up(&server, bucket);
    world.fs.fail_syncs(true);
    let threads: Vec<_> = (0..PUTS)
        .map(|index| {
            let server = server.clone();
            shuttle::thread::spawn(move || {
                let writes = vec![KvWrite { key: vec![b'k', index], value: Some(value(&[index])) }];
                match call(
                    &server,
                    Request::PutKv { bucket, writes, writer: None, target_columns: None },
                ) {
                    Response::Error(error) => {
                        assert_eq!(error.code, ErrorCode::NotLeaderOrFollower, "{error:?}");
                        assert!(error.code.is_retriable());
                    }
                    other => panic!("a put answered {other:?} with every sync failing"),
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("put");
    }
    let log = world.logs.open(bucket).expect("log");
    assert!(log.stopped().is_some(), "a failed sync stops the log");
    assert_eq!(log.high_watermark(), 1, "nothing of a failed sync is committed");
    assert_eq!(durable_end(&world.fs, bucket), 1);
    let ledger = world.env.ledger.clone();
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

#[test]
fn concurrent_puts_are_acknowledged_only_once_durable_under_preemption() {
    explore("group commit", Budget::from_env(500, 4), || {
        concurrent_puts_share_syncs(Mutants::NONE)
    });
}

#[test]
fn a_failed_shared_sync_fails_every_waiter_under_preemption() {
    explore("failed shared sync", Budget::from_env(500, 4), || {
        failed_shared_sync_fails_every_waiter(Mutants::NONE)
    });
}
