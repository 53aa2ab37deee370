//! The bucket changelog: appends, reads, segment rolling, reopen after a crash, epoch fencing
//! and retention bounded by the minimum retain offset.

use std::sync::Arc;

use kvtablet_core::env::LocalFs;
use kvtablet_core::log::{
    AppendMeta, Appended, ChangeRecord, ChangeType, LogBatch, LogConfig, LogError, LogTablet,
    WriterBatch,
};
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

/// An append without a writer, stamped at time 0.
fn append(
    log: &LogTablet,
    leader_epoch: u32,
    changes: Vec<ChangeRecord>,
) -> Result<LogBatch, LogError> {
    let meta = AppendMeta { commit_timestamp_ms: 0, writer: None };
    match log.append_as_leader(leader_epoch, meta, changes)? {
        Appended::Batch(batch) => Ok(batch),
        Appended::Duplicate { .. } => panic!("a batch without a writer is never a duplicate"),
    }
}

fn append_as(
    log: &LogTablet,
    commit_timestamp_ms: u64,
    writer: Option<WriterBatch>,
    key: &str,
) -> Result<Appended, LogError> {
    log.append_as_leader(1, AppendMeta { commit_timestamp_ms, writer }, insert(key))
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
    let first = append(&log, 1, insert("a")).expect("append");
    let empty = append(&log, 1, Vec::new()).expect("append");
    let second = append(&log, 1, insert("b")).expect("append");
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
        append(&log, 3, insert(&format!("key-{index:02}"))).expect("append");
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
    append(&log, 0, insert("a")).expect("append");
    drop(log);
    let segment = format!("{DIR}/{:020}.log", 0);
    fs.append(&segment, &[7, 0, 0, 0, 1, 2]).expect("append garbage");
    fs.sync(&segment).expect("sync");
    let reopened = open(&fs, 1 << 20);
    assert_eq!(reopened.log_end_offset(), 1);
    let next = append(&reopened, 0, insert("b")).expect("append after repair");
    assert_eq!(next.base_offset, 1);
    assert_eq!(reopened.read(0, u64::MAX).expect("read").len(), 2);
}

#[test]
fn damage_before_the_last_frame_is_an_error_not_a_torn_tail() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    for key in ["a", "b", "c"] {
        append(&log, 0, insert(key)).expect("append");
    }
    drop(log);
    let segment = format!("{DIR}/{:020}.log", 0);
    let mut bytes = fs.read(&segment).expect("read");
    // The last byte of the first frame: its value, covered by its checksum.
    let first_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    bytes[3 + first_len] ^= 0x40;
    fs.write(&segment, &bytes).expect("write");
    fs.sync(&segment).expect("sync");
    let fs_dyn: Arc<dyn LocalFs> = fs.clone();
    let reopened = LogTablet::open(
        fs_dyn,
        DIR.to_string(),
        TableBucket::new(1, 0),
        LogConfig { segment_bytes_max: 1 << 20 },
        Mutants::NONE,
    );
    assert!(matches!(reopened, Err(LogError::Corrupt { .. })), "{reopened:?}");
    assert_eq!(fs.read(&segment).expect("read").len(), bytes.len(), "nothing was cut");
}

#[test]
fn a_fenced_epoch_can_neither_append_nor_fence_back() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    log.fence(5).expect("fence");
    let stale = append(&log, 4, insert("a"));
    assert!(matches!(stale, Err(LogError::FencedLeaderEpoch { requested: 4, current: 5 })));
    assert!(matches!(log.fence(4), Err(LogError::FencedLeaderEpoch { .. })));
    assert_eq!(log.log_end_offset(), 0, "nothing was appended under the stale epoch");
    append(&log, 5, insert("a")).expect("the current epoch appends");
}

#[test]
fn retention_never_deletes_at_or_above_the_minimum_retain_offset() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 64);
    for index in 0..30 {
        append(&log, 0, insert(&format!("k{index:02}"))).expect("append");
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

#[test]
fn a_resent_writer_batch_is_a_duplicate_also_after_reopen() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    log.fence(1).expect("fence");
    let writer = |batch_sequence| Some(WriterBatch { writer_id: 9, batch_sequence });
    let Appended::Batch(first) = append_as(&log, 10, writer(0), "a").expect("append") else {
        panic!("the first batch is new");
    };
    append_as(&log, 11, writer(1), "b").expect("append");
    assert_eq!(
        append_as(&log, 12, writer(0), "a").expect("resend"),
        Appended::Duplicate { base_offset: first.base_offset, end_offset: first.end_offset() }
    );
    assert_eq!(log.log_end_offset(), 2, "the duplicate wrote nothing");
    drop(log);
    fs.crash();
    let log = open(&fs, 1 << 20);
    log.fence(1).expect("fence");
    assert!(matches!(
        append_as(&log, 13, writer(1), "b").expect("resend after reopen"),
        Appended::Duplicate { base_offset: 1, end_offset: 2 }
    ));
    assert!(matches!(
        append_as(&log, 14, writer(3), "c"),
        Err(LogError::OutOfOrderSequence { writer_id: 9, incoming: 3, last: 1 })
    ));
    assert!(matches!(append_as(&log, 15, writer(2), "c"), Ok(Appended::Batch(_))));
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn commit_timestamps_survive_reopen_and_answer_offset_for_timestamp() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 64);
    log.fence(1).expect("fence");
    for (index, timestamp_ms) in [100u64, 200, 300, 400].iter().enumerate() {
        append_as(&log, *timestamp_ms, None, &format!("k{index}")).expect("append");
    }
    drop(log);
    fs.crash();
    let log = open(&fs, 64);
    assert!(log.segment_count() > 1, "the search crosses segments");
    let batches = log.read(0, u64::MAX).expect("read");
    let stamps: Vec<u64> = batches.iter().map(|batch| batch.commit_timestamp_ms).collect();
    assert_eq!(stamps, [100, 200, 300, 400]);
    assert_eq!(log.offset_for_timestamp(0), 0);
    assert_eq!(log.offset_for_timestamp(200), 1);
    assert_eq!(log.offset_for_timestamp(201), 2);
    assert_eq!(log.offset_for_timestamp(401), 4, "past the last batch: the high watermark");
}
