//! The bucket changelog: appends, reads, segment rolling, reopen after a crash, epoch fencing
//! and retention bounded by the minimum retain offset.

use std::sync::Arc;

use kvtablet_core::env::LocalFs;
use kvtablet_core::log::{ChangeRecord, ChangeType, LogConfig, LogError, LogTablet};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::TableBucket;
use kvtablet_sim::fs::SimFs;

const DIR: &str = "log/t1-b0";

fn open(fs: &Arc<SimFs>, segment_bytes_max: u64) -> LogTablet {
    let fs: Arc<dyn LocalFs> = fs.clone();
    LogTablet::open(
        fs,
        DIR.to_string(),
        TableBucket::new(1, 0),
        LogConfig { segment_bytes_max },
        Mutants::NONE,
    )
    .expect("log opens")
}

fn insert(key: &str) -> Vec<ChangeRecord> {
    vec![ChangeRecord {
        change_type: ChangeType::Insert,
        key: key.as_bytes().to_vec(),
        value: b"\x01\x00v".to_vec(),
    }]
}

#[test]
fn appends_get_dense_offsets_and_read_back_in_order() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    log.fence(1).expect("fence");
    let first = log.append_as_leader(1, insert("a")).expect("append");
    let empty = log.append_as_leader(1, Vec::new()).expect("append");
    let second = log.append_as_leader(1, insert("b")).expect("append");
    assert_eq!((first.base_offset, first.end_offset()), (0, 1));
    assert_eq!(
        (empty.base_offset, empty.end_offset()),
        (1, 2),
        "an empty batch still takes an offset"
    );
    assert_eq!((second.base_offset, second.end_offset()), (2, 3));
    assert_eq!(log.high_watermark(), 3);
    let batches = log.read(1, u64::MAX).expect("read");
    assert_eq!(batches.iter().map(|b| b.base_offset).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(batches[1].records[0].key, b"b");
}

#[test]
fn segments_roll_and_survive_reopen() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 128);
    log.fence(3).expect("fence");
    for index in 0..20 {
        log.append_as_leader(3, insert(&format!("key-{index:02}"))).expect("append");
    }
    assert!(log.segment_count() > 1, "128-byte segments must roll");
    drop(log);
    fs.crash();
    let reopened = open(&fs, 128);
    assert_eq!(reopened.log_end_offset(), 20, "synced appends survive a crash");
    assert_eq!(reopened.leader_epoch(), 3, "the fenced epoch survives a crash");
    let keys: Vec<Vec<u8>> = reopened
        .read(0, u64::MAX)
        .expect("read")
        .into_iter()
        .flat_map(|b| b.records)
        .map(|r| r.key)
        .collect();
    assert_eq!(keys.len(), 20);
    assert_eq!(keys[19], b"key-19");
}

#[test]
fn a_torn_tail_is_cut_off_on_reopen() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    log.append_as_leader(0, insert("a")).expect("append");
    drop(log);
    let segment = format!("{DIR}/{:020}.log", 0);
    fs.append(&segment, &[7, 0, 0, 0, 1, 2]).expect("append garbage");
    fs.sync(&segment).expect("sync");
    let reopened = open(&fs, 1 << 20);
    assert_eq!(reopened.log_end_offset(), 1);
    let next = reopened.append_as_leader(0, insert("b")).expect("append after repair");
    assert_eq!(next.base_offset, 1);
    assert_eq!(reopened.read(0, u64::MAX).expect("read").len(), 2);
}

#[test]
fn a_fenced_epoch_can_neither_append_nor_fence_back() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    log.fence(5).expect("fence");
    let stale = log.append_as_leader(4, insert("a"));
    assert!(matches!(stale, Err(LogError::FencedLeaderEpoch { requested: 4, current: 5 })));
    assert!(matches!(log.fence(4), Err(LogError::FencedLeaderEpoch { .. })));
    assert_eq!(log.log_end_offset(), 0, "nothing was appended under the stale epoch");
    log.append_as_leader(5, insert("a")).expect("the current epoch appends");
}

#[test]
fn retention_never_deletes_at_or_above_the_minimum_retain_offset() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 64);
    for index in 0..30 {
        log.append_as_leader(0, insert(&format!("k{index:02}"))).expect("append");
    }
    assert_eq!(
        log.delete_segments_below(25).expect("retention"),
        0,
        "min retain 0 keeps everything"
    );
    log.set_min_retain_offset(10);
    let start = log.delete_segments_below(25).expect("retention");
    assert!(start > 0 && start <= 10, "log start {start} must move up but not past 10");
    assert!(log.read(start, u64::MAX).is_ok());
    assert!(matches!(log.read(0, u64::MAX), Err(LogError::OffsetOutOfRange { .. })));
    let records: usize =
        log.read(start, u64::MAX).expect("read").iter().map(|b| b.records.len()).sum();
    assert_eq!(records as u64, 30 - start);
}
