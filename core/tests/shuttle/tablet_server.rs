//! The tablet server's table lifecycle: a table dropped while the coordinator makes its bucket
//! lead.

use kvtablet_core::error::ErrorCode;
use kvtablet_core::ledger::ResourceKind;
use kvtablet_core::message::{Request, Response};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::TableConfig;
use kvtablet_core::TableBucket;

use crate::support::{call, explore, Budget, World, TABLE_ID};

/// One execution: BecomeLeader for a bucket of the table races the table's removal. Once both
/// are done the table's bucket has no replica, and nothing of it (flush task, snapshots) is
/// left in the ledger.
pub fn drop_table_while_leading(mutants: Mutants) {
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    let lead = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            match call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }) {
                Response::Ok => {}
                Response::Error(error) => assert!(
                    matches!(
                        error.code,
                        ErrorCode::UnknownTableOrBucket | ErrorCode::NotLeaderOrFollower
                    ),
                    "{error:?}"
                ),
                other => panic!("BecomeLeader answered {other:?}"),
            }
        })
    };
    let removed = shuttle::future::block_on(server.remove_table(TABLE_ID));
    assert!(removed.is_some(), "the table was hosted");
    lead.join().expect("lead");
    assert!(
        server.replica(bucket).is_none(),
        "a replica of the dropped table {TABLE_ID} is hosted (leading: {:?})",
        server.leader_epoch(bucket)
    );
    let ledger = world.env.ledger.clone();
    // Only the server's own evictor task is left.
    assert_eq!(ledger.count(ResourceKind::Task), 1, "{:?}", ledger.live());
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

#[test]
fn a_dropped_table_keeps_no_replica_under_preemption() {
    explore("drop table while leading", Budget::from_env(1_000, 4), || {
        drop_table_while_leading(Mutants::NONE)
    });
}

/// One execution: BecomeLeader for a bucket of a partition races the partition's removal, as
/// for a dropped table: once both are done the partition's bucket has no replica and nothing
/// of it is left in the ledger, while the other partition of the table is still served.
pub fn drop_partition_while_leading(mutants: Mutants) {
    const PARTITIONED_TABLE_ID: i64 = TABLE_ID + 1;
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let table = TableConfig {
        table_id: PARTITIONED_TABLE_ID,
        path: TablePath::new("shuttle", "partitioned"),
        bucket_count: 1,
        schema_ids: vec![1],
        partial_updates: None,
        partitioned: true,
        log_ttl_ms: None,
    };
    assert_eq!(server.add_table(table), Ok(true));
    assert_eq!(server.add_partition(PARTITIONED_TABLE_ID, 7, "p7"), Ok(true));
    assert_eq!(server.add_partition(PARTITIONED_TABLE_ID, 8, "p8"), Ok(true));
    let bucket =
        TableBucket { table_id: PARTITIONED_TABLE_ID, partition_id: Some(7), bucket_id: 0 };
    let lead = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            match call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }) {
                Response::Ok => {}
                Response::Error(error) => assert!(
                    matches!(
                        error.code,
                        ErrorCode::PartitionNotExists | ErrorCode::NotLeaderOrFollower
                    ),
                    "{error:?}"
                ),
                other => panic!("BecomeLeader answered {other:?}"),
            }
        })
    };
    let removed = shuttle::future::block_on(server.remove_partition(PARTITIONED_TABLE_ID, 7));
    assert!(removed, "the partition was served");
    lead.join().expect("lead");
    assert!(
        server.replica(bucket).is_none(),
        "a replica of the dropped partition is hosted (leading: {:?})",
        server.leader_epoch(bucket)
    );
    assert_eq!(server.partitions(PARTITIONED_TABLE_ID), [8]);
    let ledger = world.env.ledger.clone();
    // Only the server's own evictor task is left.
    assert_eq!(ledger.count(ResourceKind::Task), 1, "{:?}", ledger.live());
    shuttle::future::block_on(server.shutdown());
    assert!(ledger.live().is_empty(), "leaked: {:?}", ledger.live());
}

#[test]
fn a_dropped_partition_keeps_no_replica_under_preemption() {
    explore("drop partition while leading", Budget::from_env(1_000, 4), || {
        drop_partition_while_leading(Mutants::NONE)
    });
}

/// One execution: the server is asked under which epoch it leads a bucket while the bucket
/// moves to a follower at epoch 2. The answer is "epoch 1" or "not leading", never "epoch 2".
pub fn leader_epoch_during_a_demotion(mutants: Mutants) {
    let world = World::new(mutants);
    let server = world.server(1, ScannerConfig::DEFAULT);
    let bucket = TableBucket::new(TABLE_ID, 0);
    assert_eq!(call(&server, Request::BecomeLeader { bucket, leader_epoch: 1 }), Response::Ok);
    let demote = {
        let server = server.clone();
        shuttle::thread::spawn(move || {
            let follow = call(&server, Request::BecomeFollower { bucket, leader_epoch: 2 });
            assert_eq!(follow, Response::Ok);
        })
    };
    let answer = server.leader_epoch(bucket);
    assert!(matches!(answer, Some(1) | None), "claims to lead {bucket} under {answer:?}");
    demote.join().expect("demote");
    assert_eq!(server.leader_epoch(bucket), None);
    shuttle::future::block_on(server.shutdown());
}

#[test]
fn the_epoch_a_server_says_it_leads_under_is_one_it_led_under_preemption() {
    explore("leader epoch during a demotion", Budget::from_env(500, 4), || {
        leader_epoch_during_a_demotion(Mutants::NONE)
    });
}
