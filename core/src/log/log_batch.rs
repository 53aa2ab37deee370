//! Changelog records and batches, and their checksummed on-disk frame.
//!
//! Frame layout, little-endian:
//! `frame_len:u32` (bytes after this field) | `crc32c:u32` (of every byte after it) |
//! `magic:u8` (2) | `base_offset:u64` | `leader_epoch:u32` | `offset_count:u32` |
//! `commit_timestamp_ms:u64` | `writer_id:i64` (-1: none) | `batch_sequence:i32` (-1: none) |
//! `record_count:u32` | records.
//! Magic 1 frames (no timestamp, no writer) are still read, with timestamp 0 and no writer.
//! Record: `change_type:u8` | `key_len:u32` | key | `value_len:u32` | value.
//! Every record is covered by its batch's CRC; decoding never panics on any input.

use crate::log::change_type::ChangeType;

const MAGIC: u8 = 2;
/// The first layout, without commit timestamp and writer.
const MAGIC_V1: u8 = 1;
/// Bytes of a frame before the first record.
pub const FRAME_HEADER_BYTES: usize = 4 + 4 + 1 + 8 + 4 + 4 + 8 + 8 + 4 + 4;
/// Bytes of a magic-1 frame before the first record: the smallest valid frame.
const FRAME_HEADER_BYTES_V1: usize = 4 + 4 + 1 + 8 + 4 + 4 + 4;
/// `writer_id` of a batch no idempotent writer sent.
const NO_WRITER_ID: i64 = -1;
/// No frame may claim more than this; anything bigger is corruption, not data.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One changelog record at its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: u64,
    pub change_type: ChangeType,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// The idempotent writer that sent a batch and the batch's sequence number for this bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriterBatch {
    /// Non-negative: `-1` means "no writer" on the wire and on disk.
    pub writer_id: i64,
    /// Non-negative; wraps from `i32::MAX` to 0.
    pub batch_sequence: i32,
}

/// Records appended together. A batch always occupies at least one offset: a batch whose
/// writes changed nothing still advances the log by one, as Fluss does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub base_offset: u64,
    pub leader_epoch: u32,
    /// Offsets the batch occupies: `max(1, records.len())`.
    pub offset_count: u32,
    /// When the leader appended the batch (its clock, ms since the epoch): Fluss's
    /// `CommitTimestamp`, what ListOffsets by timestamp searches.
    pub commit_timestamp_ms: u64,
    /// Set when an idempotent writer sent the batch; the log rebuilds its duplicate detection
    /// from it.
    pub writer: Option<WriterBatch>,
    pub records: Vec<LogRecord>,
}

impl LogBatch {
    /// The offset after the batch's last.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.offset_count)
    }

    pub fn identity(&self) -> BatchIdentity {
        BatchIdentity {
            base_offset: self.base_offset,
            end_offset: self.end_offset(),
            leader_epoch: self.leader_epoch,
        }
    }
}

/// Where a batch sits in a log and which leader appended it: two logs holding batches with
/// the same identity hold the same batch, and (replicas append only after a batch of the same
/// identity as the leader's previous one) the same log before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub base_offset: u64,
    pub end_offset: u64,
    pub leader_epoch: u32,
}

/// Why bytes did not decode into a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a frame: a torn write at the tail of a log.
    #[error("truncated frame: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated { needed_bytes: usize, available_bytes: usize },
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

/// Encodes `batch` as one frame.
pub fn encode_batch(batch: &LogBatch) -> Vec<u8> {
    assert!(batch.offset_count >= 1, "a batch occupies at least one offset");
    assert!(
        batch.records.len() <= batch.offset_count as usize,
        "more records than offsets in batch at {}",
        batch.base_offset
    );
    let records_bytes: usize =
        batch.records.iter().map(|r| 1 + 4 + r.key.len() + 4 + r.value.len()).sum();
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + records_bytes);
    out.extend_from_slice(&[0u8; 8]); // frame_len and crc, filled in below
    out.push(MAGIC);
    out.extend_from_slice(&batch.base_offset.to_le_bytes());
    out.extend_from_slice(&batch.leader_epoch.to_le_bytes());
    out.extend_from_slice(&batch.offset_count.to_le_bytes());
    out.extend_from_slice(&batch.commit_timestamp_ms.to_le_bytes());
    let (writer_id, batch_sequence) = match batch.writer {
        Some(writer) => {
            assert!(writer.writer_id >= 0 && writer.batch_sequence >= 0, "{writer:?}");
            (writer.writer_id, writer.batch_sequence)
        }
        None => (NO_WRITER_ID, -1),
    };
    out.extend_from_slice(&writer_id.to_le_bytes());
    out.extend_from_slice(&batch_sequence.to_le_bytes());
    out.extend_from_slice(&(batch.records.len() as u32).to_le_bytes());
    for (index, record) in batch.records.iter().enumerate() {
        assert_eq!(record.offset, batch.base_offset + index as u64, "records are dense");
        out.push(record.change_type.to_byte());
        out.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&record.key);
        out.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&record.value);
    }
    let frame_len = (out.len() - 4) as u32;
    let crc = crc32c::crc32c(&out[8..]);
    out[0..4].copy_from_slice(&frame_len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    assert!(out.len() <= FRAME_BYTES_MAX, "batch of {} bytes exceeds the frame limit", out.len());
    out
}

/// Whether `bytes`, whose first frame failed to decode with `error` and which reach the end of
/// the file, are what a crash during an append leaves: a prefix of the append (its header is
/// written first, so its length is right), zeros (the file grew but its data never reached the
/// disk, as after a failed sync), or garbage without a frame in it (stale blocks some file
/// systems expose after a crash). Damage to a whole frame is not: a bad checksum over a whole
/// frame, or an intact frame under a rotted length field, is a batch that was synced and may
/// have been acknowledged, and cutting it would drop it silently.
pub fn is_torn_append(bytes: &[u8], error: &DecodeError) -> bool {
    match error {
        DecodeError::Truncated { .. } => !holds_frame_under_damaged_length(bytes),
        DecodeError::Corrupt(_) => {
            let claimed_len = bytes
                .get(0..4)
                .and_then(|len| len.try_into().ok())
                .map_or(0, |len: [u8; 4]| u32::from_le_bytes(len) as usize);
            let plausible = (FRAME_HEADER_BYTES_V1 - 4..=FRAME_BYTES_MAX).contains(&claimed_len);
            if plausible {
                // A whole frame of plausible length whose checksum or content is wrong.
                return false;
            }
            bytes.iter().all(|byte| *byte == 0) || !holds_frame_under_damaged_length(bytes)
        }
    }
}

/// Whether `bytes`, which start with a frame whose length field does not describe it, hold an
/// intact frame under a damaged length: some prefix of the body matches the stored checksum.
/// A torn append (a prefix of a frame) never does, but for a 2^-32 chance per byte; a frame
/// whose length bits rotted does. One pass of a running checksum over at most one frame.
fn holds_frame_under_damaged_length(bytes: &[u8]) -> bool {
    let Some(stored_crc) = bytes.get(4..8).and_then(|crc| crc.try_into().ok()) else {
        return false;
    };
    let stored_crc = u32::from_le_bytes(stored_crc);
    let body_end = bytes.len().min(FRAME_BYTES_MAX);
    let Some(body) = bytes.get(8..body_end) else { return false };
    let mut crc = 0u32;
    for (index, byte) in body.iter().enumerate() {
        crc = crc32c::crc32c_append(crc, std::slice::from_ref(byte));
        if index + 1 >= FRAME_HEADER_BYTES_V1 - 8 && crc == stored_crc {
            return true;
        }
    }
    false
}

/// Decodes the frame at the start of `bytes`; returns the batch and the frame's length.
pub fn decode_batch(bytes: &[u8]) -> Result<(LogBatch, usize), DecodeError> {
    decode_frame(bytes, true)
}

/// Checks the frame at the start of `bytes` as [`decode_batch`] does, but returns the batch
/// without its records (`records` empty): what opening a log needs, without copying every
/// key and value it holds.
pub fn decode_batch_without_records(bytes: &[u8]) -> Result<(LogBatch, usize), DecodeError> {
    decode_frame(bytes, false)
}

fn decode_frame(bytes: &[u8], keep_records: bool) -> Result<(LogBatch, usize), DecodeError> {
    let mut reader = Reader { bytes, position: 0 };
    let frame_len = reader.u32()? as usize;
    if !(FRAME_HEADER_BYTES_V1 - 4..=FRAME_BYTES_MAX).contains(&frame_len) {
        return Err(DecodeError::Corrupt(format!("implausible frame length {frame_len}")));
    }
    let frame_end = 4 + frame_len;
    if bytes.len() < frame_end {
        return Err(DecodeError::Truncated {
            needed_bytes: frame_end,
            available_bytes: bytes.len(),
        });
    }
    let stored_crc = reader.u32()?;
    let actual_crc = crc32c::crc32c(&bytes[8..frame_end]);
    if stored_crc != actual_crc {
        return Err(DecodeError::Corrupt(format!(
            "crc mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
        )));
    }
    let mut reader = Reader { bytes: &bytes[..frame_end], position: 8 };
    let magic = reader.u8()?;
    if magic != MAGIC && magic != MAGIC_V1 {
        return Err(DecodeError::Corrupt(format!("unknown magic {magic}")));
    }
    let base_offset = reader.u64()?;
    let leader_epoch = reader.u32()?;
    let offset_count = reader.u32()?;
    let (commit_timestamp_ms, writer) = if magic == MAGIC {
        let commit_timestamp_ms = reader.u64()?;
        let writer_id = reader.u64()? as i64;
        let batch_sequence = reader.u32()? as i32;
        let writer = match (writer_id, batch_sequence) {
            (NO_WRITER_ID, -1) => None,
            (0.., 0..) => Some(WriterBatch { writer_id, batch_sequence }),
            _ => {
                return Err(DecodeError::Corrupt(format!(
                    "writer {writer_id} with batch sequence {batch_sequence}"
                )))
            }
        };
        (commit_timestamp_ms, writer)
    } else {
        (0, None)
    };
    let record_count = reader.u32()?;
    if offset_count == 0 || record_count > offset_count {
        return Err(DecodeError::Corrupt(format!(
            "{record_count} records in {offset_count} offsets"
        )));
    }
    let capacity = if keep_records { (record_count as usize).min(frame_len / 9) } else { 0 };
    let mut records = Vec::with_capacity(capacity);
    for index in 0..u64::from(record_count) {
        let type_byte = reader.u8()?;
        let change_type = ChangeType::from_byte(type_byte)
            .ok_or_else(|| DecodeError::Corrupt(format!("unknown change type {type_byte}")))?;
        let key = reader.sized_slice()?;
        let value = reader.sized_slice()?;
        let offset = base_offset
            .checked_add(index)
            .ok_or_else(|| DecodeError::Corrupt("offset overflow".to_string()))?;
        if keep_records {
            records.push(LogRecord {
                offset,
                change_type,
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
    }
    if reader.position != frame_end {
        return Err(DecodeError::Corrupt(format!(
            "{} trailing bytes in frame",
            frame_end - reader.position
        )));
    }
    if base_offset.checked_add(u64::from(offset_count)).is_none() {
        return Err(DecodeError::Corrupt("end offset overflow".to_string()));
    }
    Ok((
        LogBatch { base_offset, leader_epoch, offset_count, commit_timestamp_ms, writer, records },
        frame_end,
    ))
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.position.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or(
            DecodeError::Truncated {
                needed_bytes: self.position.saturating_add(len),
                available_bytes: self.bytes.len(),
            },
        )?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    fn sized_slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_batch() -> LogBatch {
        LogBatch {
            base_offset: 7,
            leader_epoch: 3,
            offset_count: 2,
            commit_timestamp_ms: 1_763_000_000_123,
            writer: Some(WriterBatch { writer_id: 42, batch_sequence: 9 }),
            records: vec![
                LogRecord {
                    offset: 7,
                    change_type: ChangeType::UpdateBefore,
                    key: b"k".to_vec(),
                    value: b"old".to_vec(),
                },
                LogRecord {
                    offset: 8,
                    change_type: ChangeType::UpdateAfter,
                    key: b"k".to_vec(),
                    value: b"new".to_vec(),
                },
            ],
        }
    }

    #[test]
    fn a_batch_round_trips_through_its_frame() {
        let batch = sample_batch();
        let bytes = encode_batch(&batch);
        let (decoded, len) = decode_batch(&bytes).expect("decodes");
        assert_eq!(decoded, batch);
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn a_torn_prefix_is_never_taken_for_a_frame_with_a_damaged_length() {
        let bytes = encode_batch(&sample_batch());
        for cut in 0..bytes.len() {
            assert!(!holds_frame_under_damaged_length(&bytes[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn a_whole_frame_whose_length_rotted_upwards_is_recognised() {
        let mut bytes = encode_batch(&sample_batch());
        let whole = bytes.clone();
        bytes[1] ^= 0x01;
        bytes.extend_from_slice(&whole);
        assert!(matches!(decode_batch(&bytes), Err(DecodeError::Truncated { .. })));
        assert!(holds_frame_under_damaged_length(&bytes));
    }

    #[test]
    fn every_torn_prefix_is_reported_as_truncated() {
        let bytes = encode_batch(&sample_batch());
        for cut in 0..bytes.len() {
            match decode_batch(&bytes[..cut]) {
                Err(DecodeError::Truncated { .. }) => {}
                other => panic!("cut at {cut} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_magic_one_frame_reads_with_timestamp_zero_and_no_writer() {
        // The layout before commit timestamps and writers, built by hand.
        let mut frame = vec![0u8; 8];
        frame.push(MAGIC_V1);
        frame.extend_from_slice(&5u64.to_le_bytes());
        frame.extend_from_slice(&2u32.to_le_bytes());
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.push(ChangeType::Insert.to_byte());
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.extend_from_slice(b"k");
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.extend_from_slice(b"v");
        let frame_len = (frame.len() - 4) as u32;
        let crc = crc32c::crc32c(&frame[8..]);
        frame[0..4].copy_from_slice(&frame_len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        let (batch, len) = decode_batch(&frame).expect("a magic-1 frame decodes");
        assert_eq!(len, frame.len());
        assert_eq!((batch.base_offset, batch.leader_epoch), (5, 2));
        assert_eq!((batch.commit_timestamp_ms, batch.writer), (0, None));
        assert_eq!(batch.records.len(), 1);
    }

    #[test]
    fn a_negative_writer_other_than_none_is_corrupt() {
        let mut bytes = encode_batch(&sample_batch());
        // writer_id sits after magic, base offset, epoch, offset count and timestamp.
        let at = 8 + 1 + 8 + 4 + 4 + 8;
        bytes[at..at + 8].copy_from_slice(&(-7i64).to_le_bytes());
        let crc = crc32c::crc32c(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_batch(&bytes), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = encode_batch(&sample_batch());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(decode_batch(&bytes), Err(DecodeError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn random_batches_round_trip(
            base in 0u64..1_000_000,
            epoch in any::<u32>(),
            commit_timestamp_ms in any::<u64>(),
            writer in proptest::option::of((0i64..=i64::MAX, 0i32..=i32::MAX)),
            records in proptest::collection::vec((1u8..5, proptest::collection::vec(any::<u8>(), 0..16), proptest::collection::vec(any::<u8>(), 0..16)), 0..8),
        ) {
            let records: Vec<LogRecord> = records.into_iter().enumerate().map(|(i, (t, key, value))| LogRecord {
                offset: base + i as u64,
                change_type: ChangeType::from_byte(t).expect("valid"),
                key,
                value,
            }).collect();
            let writer = writer.map(|(writer_id, batch_sequence)| WriterBatch { writer_id, batch_sequence });
            let batch = LogBatch { base_offset: base, leader_epoch: epoch, offset_count: records.len().max(1) as u32, commit_timestamp_ms, writer, records };
            let bytes = encode_batch(&batch);
            let (decoded, len) = decode_batch(&bytes).expect("decodes");
            prop_assert_eq!(decoded, batch);
            prop_assert_eq!(len, bytes.len());
        }
    }
}
