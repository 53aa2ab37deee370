//! The bucket changelog: appends, reads, segment rolling, reopen after a crash, epoch fencing
//! and retention bounded by the minimum retain offset.

use std::sync::Arc;

use kvtablet_core::env::LocalFs;
use kvtablet_core::log::{
    AppendMeta, Appended, ChangeRecord, ChangeType, LogBatch, LogConfig, LogError, LogRegistry,
    LogTablet, WriterBatch,
};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::tablet_dirs::TablePath;
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

/// After a failed sync the file may have grown while its data never reached the disk: a crash
/// leaves zeros where the last frame was. Reopening cuts them like a torn append and keeps
/// every synced batch (the log used to refuse to open: "implausible frame length 0").
#[test]
fn a_zero_filled_tail_is_cut_like_a_torn_append() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    for key in ["a", "b"] {
        append(&log, 0, insert(key)).expect("append");
    }
    drop(log);
    let segment = format!("{DIR}/{:020}.log", 0);
    fs.append(&segment, &[0u8; 64]).expect("zeros appended");
    fs.sync(&segment).expect("zeros synced");
    fs.crash();
    let reopened = open(&fs, 1 << 20);
    assert_eq!(reopened.log_end_offset(), 2, "both synced batches stay, the zeros go");
    append(&reopened, 0, insert("c")).expect("appends carry on");
    assert_eq!(reopened.read(0, u64::MAX).expect("read").len(), 3);
}

/// Damage to the last whole frame (a rotted byte in its body, or in its length field) is a
/// synced, maybe acknowledged batch, not a torn append: the log refuses to open instead of
/// cutting it (a rotted disk used to lose acknowledged writes silently this way), and opens
/// whole once the damage is repaired.
#[test]
fn damage_to_the_last_whole_frame_is_refused_not_cut() {
    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    for key in ["a", "b"] {
        append(&log, 0, insert(key)).expect("append");
    }
    drop(log);
    let segment = format!("{DIR}/{:020}.log", 0);
    let good = fs.read(&segment).expect("read");
    let first_len = u32::from_le_bytes(good[0..4].try_into().expect("4 bytes")) as usize;
    let last_frame = 4 + first_len;
    // A bit of the last frame's body; then the high bits of its length, making it run past
    // the end of the file (truncated) or past any plausible frame (implausible).
    for (at, mask) in [(good.len() - 1, 0x40), (last_frame + 1, 0x01), (last_frame + 3, 0x80)] {
        let mut rotted = good.clone();
        rotted[at] ^= mask;
        fs.write(&segment, &rotted).expect("write");
        fs.sync(&segment).expect("sync");
        let fs_dyn: Arc<dyn LocalFs> = fs.clone();
        let reopened = LogTablet::open(
            fs_dyn,
            DIR.to_string(),
            TableBucket::new(1, 0),
            LogConfig { segment_bytes_max: 1 << 20 },
            Mutants::NONE,
        );
        assert!(matches!(reopened, Err(LogError::Corrupt { .. })), "byte {at}: {reopened:?}");
        assert_eq!(fs.read(&segment).expect("read"), rotted, "byte {at}: nothing was cut");
    }
    fs.write(&segment, &good).expect("repaired");
    fs.sync(&segment).expect("repair synced");
    assert_eq!(open(&fs, 1 << 20).log_end_offset(), 2, "no acknowledged batch was dropped");
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
fn retention_never_deletes_at_or_above_the_minimum_retain_offset_or_the_remote_end() {
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
    assert_eq!(
        log.delete_segments_below(25).expect("retention"),
        0,
        "nothing is in the remote tier: everything stays local"
    );
    log.set_remote_end_offset(30);
    log.set_remote_end_offset(5);
    assert_eq!(log.remote_end_offset(), 30, "the remote end never moves back");
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

/// A disk whose syncs can be made to fail, over a `SimFs`.
struct FailingSyncFs {
    inner: Arc<SimFs>,
    fail_syncs: std::sync::atomic::AtomicBool,
}

impl FailingSyncFs {
    /// Over `disk`; syncs succeed until [`FailingSyncFs::set_syncs_failing`] says otherwise.
    fn over(disk: &Arc<SimFs>) -> Arc<FailingSyncFs> {
        Arc::new(FailingSyncFs {
            inner: disk.clone(),
            fail_syncs: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn set_syncs_failing(&self, fail: bool) {
        self.fail_syncs.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A log registry under `data` with 1 MiB segments.
fn registry(fs: Arc<dyn LocalFs>) -> LogRegistry {
    let logs = LogRegistry::new(fs, "data".to_string(), LogConfig { segment_bytes_max: 1 << 20 });
    logs.dirs().add_table(1, &TablePath::new("test", "table")).expect("name");
    logs
}

impl LocalFs for FailingSyncFs {
    fn create_dir_all(&self, path: &str) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, kvtablet_core::env::FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.append(path, bytes)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.write(path, bytes)
    }
    fn sync(&self, path: &str) -> Result<(), kvtablet_core::env::FsError> {
        if self.fail_syncs.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(kvtablet_core::env::FsError::Io("injected sync failure".to_string()));
        }
        self.inner.sync(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, kvtablet_core::env::FsError> {
        self.inner.read(path)
    }
    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, kvtablet_core::env::FsError> {
        self.inner.read_range(path, offset_bytes, len_bytes)
    }
    fn file_len(&self, path: &str) -> Result<u64, kvtablet_core::env::FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.truncate(path, len_bytes)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &str) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), kvtablet_core::env::FsError> {
        self.inner.remove_dir_all(path)
    }
    fn host_path(&self, path: &str) -> Option<std::path::PathBuf> {
        self.inner.host_path(path)
    }
}

#[test]
fn a_failed_sync_stops_the_log_until_it_is_reopened_from_disk() {
    let disk = Arc::new(SimFs::new());
    let fs = FailingSyncFs::over(&disk);
    let dyn_fs: Arc<dyn LocalFs> = fs.clone();
    let log = LogTablet::open(
        dyn_fs,
        DIR.to_string(),
        TableBucket::new(1, 0),
        LogConfig { segment_bytes_max: 1 << 20 },
        Mutants::NONE,
    )
    .expect("log opens");
    log.fence(1).expect("fence");
    append(&log, 1, insert("a")).expect("first append");
    fs.set_syncs_failing(true);
    assert!(matches!(append(&log, 1, insert("b")), Err(LogError::Stopped { .. })));
    // The disk is healthy again, but the log does not trust its page cache: it stays stopped.
    fs.set_syncs_failing(false);
    assert!(matches!(append(&log, 1, insert("c")), Err(LogError::Stopped { .. })));
    assert!(log.stopped().is_some());
    assert_eq!(log.high_watermark(), 1, "the failed batch was never committed");
    drop(log);
    disk.crash();
    let reopened = open(&disk, 1 << 20);
    assert!(reopened.stopped().is_none());
    assert_eq!(reopened.log_end_offset(), 1, "only the synced batch survives");
    append(&reopened, 1, insert("d")).expect("a reopened log takes writes");
}

/// A stopped log may lack batches that were committed on another replica (its replication
/// failed with it): it answers every write with its stop, never with a writer's sequence
/// check, and no term starts on it. Both used to slip through: a stopped candidate led, and
/// a writer whose acknowledged batch it lacked got OUT_OF_ORDER_SEQUENCE (the simulator's
/// scan-leadership-churn seeds 176 and 846 of 1,000).
#[test]
fn a_stopped_log_refuses_writes_before_the_sequence_check_and_starts_no_term() {
    let disk = Arc::new(SimFs::new());
    let fs = FailingSyncFs::over(&disk);
    let dyn_fs: Arc<dyn LocalFs> = fs.clone();
    let log = LogTablet::open(
        dyn_fs,
        DIR.to_string(),
        TableBucket::new(1, 0),
        LogConfig { segment_bytes_max: 1 << 20 },
        Mutants::NONE,
    )
    .expect("log opens");
    log.fence(1).expect("fence");
    let writer = |batch_sequence| Some(WriterBatch { writer_id: 7, batch_sequence });
    append_as(&log, 0, writer(0), "a").expect("first batch");
    fs.set_syncs_failing(true);
    // The epoch file's sync fails: the fence holds in memory and the log stops.
    assert!(log.fence(2).is_err());
    fs.set_syncs_failing(false);
    assert!(log.stopped().is_some());

    // Batch 1 was committed elsewhere; batch 2 arrives here.
    let out_of_order = log.append_as_leader(
        2,
        AppendMeta { commit_timestamp_ms: 0, writer: writer(2) },
        insert("c"),
    );
    assert!(matches!(out_of_order, Err(LogError::Stopped { .. })), "{out_of_order:?}");
    assert!(matches!(log.sync_all(), Err(LogError::Stopped { .. })), "no term starts on it");
}

#[test]
fn truncation_cuts_a_suffix_and_forgets_its_writer_batches() {
    let disk = Arc::new(SimFs::new());
    let log = open(&disk, 200);
    log.fence(1).expect("fence");
    let writer = |seq| Some(WriterBatch { writer_id: 7, batch_sequence: seq });
    for (seq, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        append_as(&log, 0, writer(seq as i32), key).expect("append");
    }
    assert!(log.segment_count() > 1, "the test needs several segments");
    log.truncate_to(2).expect("truncate");
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.read(0, 1 << 20).expect("read").len(), 2);
    // Batch 2 is no longer in the log, so its resend is appended again, in sequence.
    match append_as(&log, 0, writer(2), "c2").expect("resend") {
        Appended::Batch(batch) => assert_eq!(batch.base_offset, 2),
        Appended::Duplicate { .. } => panic!("a truncated batch is not a duplicate"),
    }
    // Batch 1 survived the cut and is still recognised.
    assert!(matches!(
        append_as(&log, 0, writer(1), "b").expect("resend"),
        Appended::Duplicate { base_offset: 1, end_offset: 2 }
    ));
    drop(log);
    let reopened = open(&disk, 200);
    assert_eq!(reopened.log_end_offset(), 3, "the cut and the new batch are durable");
}

#[test]
fn a_replicated_batch_lands_at_the_followers_end_with_its_epoch() {
    let leader_disk = Arc::new(SimFs::new());
    let follower_disk = Arc::new(SimFs::new());
    let leader = open(&leader_disk, 1 << 20);
    let follower = open(&follower_disk, 1 << 20);
    leader.fence(3).expect("fence");
    let batch = append(&leader, 3, insert("a")).expect("append");
    follower.append_replicated(&batch).expect("replicate");
    assert_eq!(follower.read(0, 1 << 20).expect("read"), vec![batch.clone()]);
    assert!(follower.append_replicated(&batch).is_err(), "a batch not at the end is refused");
    follower_disk.crash();
    drop(follower);
    assert_eq!(open(&follower_disk, 1 << 20).log_end_offset(), 1, "replicated batches are synced");
}

/// A new epoch that cannot be persisted still fences the log in memory (a deposed leader must
/// stop at once; it used to keep appending and serving reads under its old epoch when the
/// epoch file's write failed), and the log stops until it is reopened from disk.
#[test]
fn a_fence_that_cannot_be_persisted_still_fences_and_stops_the_log() {
    use kvtablet_sim::fault_log::FaultLog;
    use kvtablet_sim::fs::DiskFaults;
    use kvtablet_sim::prng::{Ratio, Streams};

    let fs = Arc::new(SimFs::new());
    let log = open(&fs, 1 << 20);
    append(&log, 0, insert("a")).expect("append");
    fs.set_faults(
        DiskFaults { disk_full: Ratio::ALWAYS, ..DiskFaults::none() },
        Streams::new(1).stream("disk"),
        Arc::new(FaultLog::new()),
    );
    let fenced = log.fence(1);
    assert!(matches!(fenced, Err(LogError::Stopped { .. })), "{fenced:?}");
    assert_eq!(log.leader_epoch(), 1, "fenced in memory");
    fs.clear_faults();
    assert!(append(&log, 0, insert("b")).is_err(), "the deposed epoch appends nothing");
    assert!(log.stopped().is_some(), "stopped until reopened");
    let reopened = open(&fs, 1 << 20);
    assert_eq!(reopened.log_end_offset(), 1);
    reopened.fence(1).expect("the fence persists after reopening");
    append(&reopened, 1, insert("b")).expect("the new epoch appends");
}

#[test]
fn a_log_that_refused_to_open_stays_refused_until_the_registry_is_made_again() {
    let fs = Arc::new(SimFs::new());
    let bucket = TableBucket::new(1, 0);
    let first = registry(fs.clone());
    let log = first.open(bucket).expect("log opens");
    for key in ["a", "b", "c"] {
        append(&log, 0, insert(key)).expect("append");
    }
    drop(log);
    let first = registry(fs.clone());
    let segment = format!("data/test/table-1/log-{}/{:020}.log", bucket.bucket_id, 0);
    let healthy = fs.read(&segment).expect("read");
    let mut damaged = healthy.clone();
    damaged[5] ^= 0x40;
    fs.write(&segment, &damaged).expect("write");
    fs.sync(&segment).expect("sync");
    assert!(matches!(first.open(bucket), Err(LogError::Corrupt { .. })));
    assert!(first.has_refused_logs());

    // Repaired behind the running registry's back: it keeps refusing without reading again.
    fs.write(&segment, &healthy).expect("write");
    fs.sync(&segment).expect("sync");
    assert!(matches!(first.open(bucket), Err(LogError::Corrupt { .. })));
    // A restart makes a new registry, which reads the files again.
    let restarted = registry(fs.clone());
    assert_eq!(restarted.open(bucket).expect("opens after the repair").log_end_offset(), 3);
    assert!(!restarted.has_refused_logs());
}

#[test]
fn a_registry_reports_a_stopped_log_until_it_is_made_again() {
    let disk = Arc::new(SimFs::new());
    let fs = FailingSyncFs::over(&disk);
    let logs = registry(fs.clone());
    let healthy = logs.open(TableBucket::new(1, 0)).expect("log opens");
    let failing = logs.open(TableBucket::new(1, 1)).expect("log opens");
    append(&healthy, 0, insert("a")).expect("append");
    assert!(!logs.has_stopped_logs());
    fs.set_syncs_failing(true);
    assert!(matches!(append(&failing, 0, insert("b")), Err(LogError::Stopped { .. })));
    fs.set_syncs_failing(false);
    assert!(failing.is_stopped() && !healthy.is_stopped());
    assert!(logs.has_stopped_logs(), "one stopped log is enough");
    let restarted = registry(disk);
    restarted.open(TableBucket::new(1, 1)).expect("log reopens");
    assert!(!restarted.has_stopped_logs());
}
