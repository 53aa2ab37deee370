//! Duplicate detection for idempotent writers: per writer, the last few batches a bucket's log
//! appended for it, so that a batch the writer resends after a lost response is recognised
//! instead of being applied twice.
//!
//! Rules, as Fluss's `WriterStateManager` applies them: a batch whose sequence is one of the
//! retained batches' is a duplicate (answered with the original offsets); one whose sequence
//! follows the writer's last (wrapping from `i32::MAX` to 0) is appended; anything else is out
//! of order. A writer the log does not know starts at sequence 0, as in Fluss: a client
//! pipelines up to 5 batches, so a new writer's batch 1 can arrive before its batch 0, and
//! accepting it would append the writer's batches out of order and then refuse batch 0 for
//! good. A live writer whose state was forgotten (evicted past [`WRITERS_MAX`], or lost with
//! retention before a reopen) is therefore told its batch is out of order, and must start a
//! new writer (Fluss answers UNKNOWN_WRITER_ID there; kvtablet has no such code yet).

use std::collections::{BTreeMap, VecDeque};

use crate::byte_reader::{ByteReader, ByteWriter, Truncated};
use crate::log::log_batch::WriterBatch;

/// Batches remembered per writer (Fluss keeps 5, as many as a writer may have in flight).
pub const WRITER_BATCHES_RETAINED: usize = 5;
/// Writers remembered per bucket; past it, the writer idle for longest is forgotten.
pub const WRITERS_MAX: usize = 4096;

/// Where a retained batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RetainedBatch {
    batch_sequence: i32,
    base_offset: u64,
    end_offset: u64,
}

/// The verdict on an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    InSequence,
    /// Already appended at `base_offset..end_offset`: do not append it again.
    Duplicate { base_offset: u64, end_offset: u64 },
    /// A batch between the writer's last and this one is missing (`last_sequence` -1: the
    /// writer is unknown and this is not its first batch).
    OutOfOrder { last_sequence: i32 },
}

/// The retained batches of every writer of one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterStates {
    /// Oldest batch first.
    writers: BTreeMap<i64, VecDeque<RetainedBatch>>,
    /// Batches kept per writer: [`WRITER_BATCHES_RETAINED`] (fewer only under a mutant).
    batches_retained: usize,
}

impl Default for WriterStates {
    fn default() -> Self {
        WriterStates::retaining(WRITER_BATCHES_RETAINED)
    }
}

fn follows(last_sequence: i32, next_sequence: i32) -> bool {
    match last_sequence.checked_add(1) {
        Some(expected) => next_sequence == expected,
        None => next_sequence == 0,
    }
}

impl WriterStates {
    pub fn new() -> Self {
        WriterStates::default()
    }

    /// Keeps `batches_retained` batches per writer (at least one).
    pub fn retaining(batches_retained: usize) -> Self {
        WriterStates { writers: BTreeMap::new(), batches_retained: batches_retained.max(1) }
    }

    pub fn check(&self, writer: WriterBatch) -> SequenceCheck {
        let Some(batches) = self.writers.get(&writer.writer_id) else {
            return if writer.batch_sequence == 0 {
                SequenceCheck::InSequence
            } else {
                SequenceCheck::OutOfOrder { last_sequence: -1 }
            };
        };
        if let Some(retained) =
            batches.iter().find(|retained| retained.batch_sequence == writer.batch_sequence)
        {
            return SequenceCheck::Duplicate {
                base_offset: retained.base_offset,
                end_offset: retained.end_offset,
            };
        }
        let last = batches.back().expect("a known writer has a retained batch");
        if follows(last.batch_sequence, writer.batch_sequence) {
            SequenceCheck::InSequence
        } else {
            SequenceCheck::OutOfOrder { last_sequence: last.batch_sequence }
        }
    }

    /// Records an appended batch (also while the log is loaded from disk).
    pub fn record(&mut self, writer: WriterBatch, base_offset: u64, end_offset: u64) {
        assert!(base_offset < end_offset, "a batch occupies at least one offset");
        if self.writers.len() >= WRITERS_MAX && !self.writers.contains_key(&writer.writer_id) {
            self.forget_longest_idle();
        }
        let retained = self.batches_retained;
        // Room for one batch over the limit: the oldest is dropped after the push.
        let batches = self
            .writers
            .entry(writer.writer_id)
            .or_insert_with(|| VecDeque::with_capacity(retained + 1));
        if let Some(last) = batches.back() {
            assert!(last.end_offset <= base_offset, "batches are recorded in log order");
        }
        batches.push_back(RetainedBatch {
            batch_sequence: writer.batch_sequence,
            base_offset,
            end_offset,
        });
        while batches.len() > self.batches_retained {
            batches.pop_front();
        }
        assert!(self.writers.len() <= WRITERS_MAX);
    }

    pub fn writer_count(&self) -> usize {
        self.writers.len()
    }

    /// The end offset of the last batch recorded, 0 when none was.
    pub fn last_end_offset(&self) -> u64 {
        let last_batches = self.writers.values().filter_map(|batches| batches.back());
        last_batches.map(|batch| batch.end_offset).max().unwrap_or(0)
    }

    /// writer count u32 | per writer: id i64, batch count u32, per batch: sequence i32, base
    /// u64, end u64. Writers in id order, batches oldest first.
    pub fn encode_into(&self, writer: &mut ByteWriter) {
        writer.count(self.writers.len());
        for (writer_id, batches) in &self.writers {
            writer.i64(*writer_id);
            writer.count(batches.len());
            for batch in batches {
                writer.i32(batch.batch_sequence);
                writer.u64(batch.base_offset);
                writer.u64(batch.end_offset);
            }
        }
    }

    /// Decodes what [`Self::encode_into`] wrote, keeping `batches_retained` per writer; every
    /// count is bounded before anything is allocated, and batches must be in log order.
    pub fn decode_from(
        reader: &mut ByteReader<'_>,
        batches_retained: usize,
    ) -> Result<WriterStates, WriterStateDecodeError> {
        let mut states = WriterStates::retaining(batches_retained);
        let writer_count = reader.count(12, "writer count")?;
        if writer_count > WRITERS_MAX {
            return Err(WriterStateDecodeError::Invalid("too many writers"));
        }
        for _ in 0..writer_count {
            let writer_id = reader.i64("writer id")?;
            let batch_count = reader.count(20, "batch count")?;
            if batch_count == 0 || batch_count > WRITER_BATCHES_RETAINED {
                return Err(WriterStateDecodeError::Invalid("batch count out of range"));
            }
            if states.writers.contains_key(&writer_id) {
                return Err(WriterStateDecodeError::Invalid("a writer twice"));
            }
            let mut previous_end = 0;
            for _ in 0..batch_count {
                let batch_sequence = reader.i32("batch sequence")?;
                let base_offset = reader.u64("base offset")?;
                let end_offset = reader.u64("end offset")?;
                if base_offset >= end_offset || base_offset < previous_end {
                    return Err(WriterStateDecodeError::Invalid("batches out of order"));
                }
                previous_end = end_offset;
                states.record(WriterBatch { writer_id, batch_sequence }, base_offset, end_offset);
            }
        }
        Ok(states)
    }

    fn forget_longest_idle(&mut self) {
        let idle = self
            .writers
            .iter()
            .min_by_key(|(_, batches)| batches.back().map_or(0, |last| last.end_offset))
            .map(|(writer_id, _)| *writer_id);
        if let Some(writer_id) = idle {
            self.writers.remove(&writer_id);
        }
    }
}

/// Why a persisted writer state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriterStateDecodeError {
    #[error("writer state truncated: {0}")]
    Truncated(#[from] Truncated),
    #[error("writer state invalid: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(writer_id: i64, batch_sequence: i32) -> WriterBatch {
        WriterBatch { writer_id, batch_sequence }
    }

    #[test]
    fn writer_states_round_trip_through_their_encoding() {
        let mut states = WriterStates::new();
        for sequence in 0..8 {
            let base = sequence as u64 * 10;
            states.record(batch(7, sequence), base, base + 4);
            states.record(batch(-3, sequence), base + 4, base + 5);
        }
        let mut writer = ByteWriter::new();
        states.encode_into(&mut writer);
        let bytes = writer.into_bytes();
        let decoded =
            WriterStates::decode_from(&mut ByteReader::new(&bytes), WRITER_BATCHES_RETAINED)
                .expect("decodes");
        assert_eq!(decoded, states);
        assert_eq!(decoded.last_end_offset(), 75);
        for cut in 0..bytes.len() {
            let mut reader = ByteReader::new(&bytes[..cut]);
            assert!(
                WriterStates::decode_from(&mut reader, WRITER_BATCHES_RETAINED).is_err(),
                "a cut at {cut} is refused"
            );
        }
    }

    #[test]
    fn a_new_writer_starts_at_sequence_zero() {
        let states = WriterStates::new();
        assert_eq!(states.check(batch(1, 0)), SequenceCheck::InSequence);
        // Its batch 1 overtook batch 0 in flight: appending it would reorder the writer.
        assert_eq!(states.check(batch(1, 1)), SequenceCheck::OutOfOrder { last_sequence: -1 });
        assert_eq!(states.check(batch(1, 17)), SequenceCheck::OutOfOrder { last_sequence: -1 });
    }

    #[test]
    fn the_next_sequence_is_appended_and_a_gap_is_out_of_order() {
        let mut states = WriterStates::new();
        states.record(batch(1, 0), 0, 3);
        assert_eq!(states.check(batch(1, 1)), SequenceCheck::InSequence);
        assert_eq!(states.check(batch(1, 2)), SequenceCheck::OutOfOrder { last_sequence: 0 });
        assert_eq!(states.check(batch(2, 0)), SequenceCheck::InSequence, "writers are separate");
    }

    #[test]
    fn a_resent_batch_is_a_duplicate_with_its_original_offsets() {
        let mut states = WriterStates::new();
        for sequence in 0..WRITER_BATCHES_RETAINED as i32 + 2 {
            let base = sequence as u64 * 10;
            states.record(batch(7, sequence), base, base + 4);
        }
        assert_eq!(
            states.check(batch(7, 6)),
            SequenceCheck::Duplicate { base_offset: 60, end_offset: 64 }
        );
        assert_eq!(
            states.check(batch(7, 2)),
            SequenceCheck::Duplicate { base_offset: 20, end_offset: 24 }
        );
        // Sequences 0 and 1 are no longer retained: a resend that old is out of order.
        assert_eq!(states.check(batch(7, 1)), SequenceCheck::OutOfOrder { last_sequence: 6 });
    }

    #[test]
    fn the_sequence_wraps_to_zero_after_the_maximum() {
        let mut states = WriterStates::new();
        states.record(batch(3, i32::MAX), 0, 1);
        assert_eq!(states.check(batch(3, 0)), SequenceCheck::InSequence);
        assert_eq!(
            states.check(batch(3, 1)),
            SequenceCheck::OutOfOrder { last_sequence: i32::MAX }
        );
    }

    #[test]
    fn past_the_writer_limit_the_longest_idle_writer_is_forgotten() {
        let mut states = WriterStates::new();
        for writer_id in 0..WRITERS_MAX as i64 {
            let base = writer_id as u64;
            states.record(batch(writer_id, 0), base, base + 1);
        }
        // Writer 0 appended first and never again: it goes when a new writer arrives.
        states.record(batch(0, 1), 10_000, 10_001);
        states.record(batch(1_000_000, 0), 10_001, 10_002);
        assert_eq!(states.writer_count(), WRITERS_MAX);
        assert!(matches!(states.check(batch(0, 1)), SequenceCheck::Duplicate { .. }));
        assert_eq!(states.check(batch(1, 0)), SequenceCheck::InSequence, "writer 1 forgotten");
        assert_eq!(states.check(batch(1, 1)), SequenceCheck::OutOfOrder { last_sequence: -1 });
    }
}
