//! The one rule for applying a bucket's changelog to its engine, shared by every rebuild: the
//! local log's replay ([`crate::kv::KvTablet::open`]) and KV recovery's replay of the remote
//! tier ([`crate::recovery::kv_recovery`]).
//!
//! Rules:
//! - `+I`, `+U` and append-only records put their row, `-D` deletes the key, `-U` is skipped
//!   (the `+U` after it carries the new row).
//! - A replay applies exactly the records of `[from_offset, to_offset)`, in offset order:
//!   a record below `from_offset` is already in the engine, one at or above `to_offset` is
//!   the next source's (no overlap at a boundary), and batches that do not continue where the
//!   last one ended are a gap, reported (never skipped over).
//! - A step that applies nothing while offsets remain is reported, never spun on; nothing read
//!   from disk or the network makes it panic.

use crate::engine::WriteBatch;
use crate::log::{ChangeType, LogBatch};

/// Why a replay could not continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The batches skip offsets: the next one starts above where the replay stands.
    #[error("{source_name} has a gap: the replay stands at {expected_offset}, the next batch starts at {found_offset}")]
    Gap { source_name: &'static str, expected_offset: u64, found_offset: u64 },
    /// A read returned nothing new although offsets below the target remain.
    #[error("{source_name} made no progress at {next_offset} (target {to_offset})")]
    NoProgress { source_name: &'static str, next_offset: u64, to_offset: u64 },
    /// Two sources of one rebuild do not meet: the first ended at `ended_offset`, the second
    /// starts at `next_start_offset`.
    #[error(
        "the remote replay ended at {ended_offset}, the local log starts at {next_start_offset}"
    )]
    Boundary { ended_offset: u64, next_start_offset: u64 },
}

impl ReplayError {
    /// Never: the same bytes give the same answer. A new rebuild may choose other sources.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// Adds to `write` the changes of the records of `batches` in `[from_offset, to_offset)`
/// (the batches in offset order, as a log read returns them) and returns the offset the
/// replay stands at afterwards: `from_offset` moved past every batch applied, at most
/// `to_offset`. The caller stores that offset with the write.
pub fn apply_batches(
    write: &mut WriteBatch,
    batches: &[LogBatch],
    from_offset: u64,
    to_offset: u64,
    source_name: &'static str,
) -> Result<u64, ReplayError> {
    assert!(from_offset <= to_offset, "a replay's range is ordered");
    let mut next_offset = from_offset;
    for batch in batches {
        if batch.end_offset() <= next_offset {
            continue;
        }
        if batch.base_offset >= to_offset {
            break;
        }
        if batch.base_offset > next_offset {
            return Err(ReplayError::Gap {
                source_name,
                expected_offset: next_offset,
                found_offset: batch.base_offset,
            });
        }
        for record in &batch.records {
            if record.offset < next_offset || record.offset >= to_offset {
                continue;
            }
            match record.change_type {
                ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly => {
                    write.put(record.key.clone(), record.value.clone())
                }
                ChangeType::Delete => write.delete(record.key.clone()),
                ChangeType::UpdateBefore => {}
            }
        }
        next_offset = batch.end_offset().min(to_offset);
    }
    assert!(next_offset >= from_offset && next_offset <= to_offset, "a replay stays in range");
    Ok(next_offset)
}

/// The check after a step: it moved the replay forward, or it is reported.
pub fn check_progress(
    before_offset: u64,
    after_offset: u64,
    to_offset: u64,
    source_name: &'static str,
) -> Result<(), ReplayError> {
    if after_offset > before_offset || before_offset >= to_offset {
        return Ok(());
    }
    Err(ReplayError::NoProgress { source_name, next_offset: before_offset, to_offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::WriteOp;
    use crate::log::LogRecord;

    fn batch(base_offset: u64, records: &[(ChangeType, &str)]) -> LogBatch {
        LogBatch {
            base_offset,
            leader_epoch: 1,
            offset_count: records.len().max(1) as u32,
            commit_timestamp_ms: 0,
            writer: None,
            records: records
                .iter()
                .enumerate()
                .map(|(i, (change_type, key))| LogRecord {
                    offset: base_offset + i as u64,
                    change_type: *change_type,
                    key: key.as_bytes().to_vec(),
                    value: format!("v{}", base_offset + i as u64).into_bytes(),
                })
                .collect(),
        }
    }

    fn keys_put(write: &WriteBatch) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        write
            .ops()
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value } => (key.clone(), Some(value.clone())),
                WriteOp::Delete { key } => (key.clone(), None),
            })
            .collect()
    }

    #[test]
    fn only_the_records_of_the_range_are_applied_and_minus_u_is_skipped() {
        let batches = vec![
            batch(0, &[(ChangeType::Insert, "a"), (ChangeType::Insert, "b")]),
            batch(2, &[(ChangeType::UpdateBefore, "a"), (ChangeType::UpdateAfter, "a")]),
            batch(4, &[(ChangeType::Delete, "b"), (ChangeType::Insert, "c")]),
        ];
        let mut write = WriteBatch::new();
        let end = apply_batches(&mut write, &batches, 1, 5, "test").unwrap();
        assert_eq!(end, 5);
        assert_eq!(
            keys_put(&write),
            vec![
                (b"b".to_vec(), Some(b"v1".to_vec())),
                (b"a".to_vec(), Some(b"v3".to_vec())),
                (b"b".to_vec(), None),
            ]
        );
    }

    #[test]
    fn batches_that_skip_offsets_are_a_gap_not_skipped_over() {
        let batches =
            vec![batch(0, &[(ChangeType::Insert, "a")]), batch(2, &[(ChangeType::Insert, "b")])];
        let mut write = WriteBatch::new();
        let gap = apply_batches(&mut write, &batches, 0, 3, "test").unwrap_err();
        assert_eq!(
            gap,
            ReplayError::Gap { source_name: "test", expected_offset: 1, found_offset: 2 }
        );
        assert!(!gap.is_retriable());
    }

    #[test]
    fn a_step_without_progress_is_reported_and_one_at_the_target_is_not() {
        assert!(check_progress(4, 6, 9, "test").is_ok());
        assert!(check_progress(9, 9, 9, "test").is_ok());
        assert_eq!(
            check_progress(4, 4, 9, "test"),
            Err(ReplayError::NoProgress { source_name: "test", next_offset: 4, to_offset: 9 })
        );
        let mut write = WriteBatch::new();
        let batches = vec![batch(0, &[(ChangeType::Insert, "a")])];
        // Everything read is below where the replay stands: nothing new.
        assert_eq!(apply_batches(&mut write, &batches, 3, 9, "test"), Ok(3));
    }
}
