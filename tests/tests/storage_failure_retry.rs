//! A storage failure does not wedge a writer: an append that fails on the disk (full, or a
//! failed fsync) is answered with a retriable error, and the writer's state is as if the batch
//! never arrived, so the client's resend of the same batch (same writer, same sequence) is
//! appended, not refused as out of order or taken for a duplicate. Checked on the live log
//! and on the log reopened from disk (as a replica restarted after the failure sees it).

use std::sync::Arc;

use kvtablet_core::kv::KvError;
use kvtablet_core::log::{
    AppendMeta, Appended, ChangeRecord, ChangeType, LogConfig, LogTablet, WriterBatch,
};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::{ErrorCode, TableBucket};

mod support;
use support::FailingFs;

const DIR: &str = "log/1-0";

fn open(fs: &Arc<FailingFs>) -> LogTablet {
    LogTablet::open(
        fs.clone(),
        DIR.to_string(),
        TableBucket::new(1, 0),
        LogConfig::DEFAULT,
        Mutants::NONE,
    )
    .expect("the log opens")
}

fn append(log: &LogTablet, sequence: i32) -> Result<Appended, KvError> {
    let meta = AppendMeta {
        commit_timestamp_ms: 1_000,
        writer: Some(WriterBatch { writer_id: 7, batch_sequence: sequence }),
    };
    let change = ChangeRecord {
        change_type: ChangeType::Insert,
        key: vec![sequence as u8],
        value: vec![1, 0, sequence as u8],
    };
    log.append_as_leader(log.leader_epoch(), meta, vec![change]).map_err(KvError::from)
}

fn assert_appended(outcome: Result<Appended, KvError>, what: &str) {
    match outcome {
        Ok(Appended::Batch(_)) => {}
        other => panic!("{what}: expected a new batch, got {other:?}"),
    }
}

#[test]
fn a_failed_append_is_retriable_and_its_resend_is_appended() {
    for failing_syncs in [false, true] {
        let fs = Arc::new(FailingFs::default());
        let log = open(&fs);
        assert_appended(append(&log, 0), "the first batch");
        if failing_syncs {
            fs.set_failing_syncs(true);
        } else {
            fs.set_failing_writes(true);
        }
        let error = append(&log, 1).expect_err("the disk fails");
        // A failed write is cut off and retried in place; after a failed sync the log stops
        // until it is reopened, and the client retries elsewhere (or after the reopen).
        let expected = if failing_syncs {
            ErrorCode::NotLeaderOrFollower
        } else {
            ErrorCode::StorageException
        };
        assert_eq!(error.code(), expected, "{error}");
        assert!(error.is_retriable(), "the client resends the same batch: {error}");
        fs.set_failing_syncs(false);
        fs.set_failing_writes(false);

        // The replica reopened from disk (what a restart, or a log that stops after a failed
        // fsync, leads to) knows nothing of the failed batch.
        drop(log);
        let reopened = open(&fs);
        // The unsynced frame of a failed sync may or may not be on disk after the reopen; either
        // way the resend is the batch's one copy.
        if reopened.log_end_offset() == 1 {
            assert_appended(append(&reopened, 1), "the resent batch after reopening");
        }
        assert_eq!(reopened.log_end_offset(), 2);
        assert!(matches!(append(&reopened, 1), Ok(Appended::Duplicate { .. })));
        assert_appended(append(&reopened, 2), "the writer carries on");
        assert_eq!(reopened.log_end_offset(), 3);
    }
}

#[test]
fn a_failed_append_leaves_the_live_log_ready_for_the_resend() {
    let fs = Arc::new(FailingFs::default());
    let log = open(&fs);
    assert_appended(append(&log, 0), "the first batch");
    fs.set_failing_writes(true);
    assert!(append(&log, 1).expect_err("the disk is full").is_retriable());
    fs.set_failing_writes(false);
    // Unless the log refuses all writes after a failure (then the test above covers the
    // reopened log), the same batch is appended on the live log.
    match append(&log, 1) {
        Ok(Appended::Batch(batch)) => assert_eq!(batch.base_offset, 1),
        Err(error) => assert!(error.is_retriable(), "{error}"),
        Ok(other) => panic!("the resend was taken for {other:?}"),
    }
}
