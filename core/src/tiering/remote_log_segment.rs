//! One closed changelog segment in the remote tier, as the remote-log manifest records it,
//! and where its object lives.

use crate::byte_reader::{ByteReader, ByteWriter};
use crate::snapshot::completed_snapshot::{decode_bucket, encode_bucket};
use crate::snapshot::SnapshotDecodeError;
use crate::table_bucket::TableBucket;

/// Where every remote changelog object lives (Fluss: `{remote.data.dir}/log/...`).
pub const REMOTE_LOG_ROOT: &str = "log/";
/// The suffix of a segment's companion directory ([`RemoteLogSegment::companion_path`]).
const COMPANION_DIR_SUFFIX: &str = ".copy";

/// A segment uploaded by the leader of `leader_epoch`: the batches `[start_offset,
/// end_offset)`, byte for byte as the leader's local segment file held them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogSegment {
    pub bucket: TableBucket,
    /// The epoch of the leader that uploaded it. With the start offset it is the segment's id:
    /// a leader uploads a closed segment once, and its bytes never change.
    pub leader_epoch: u32,
    pub start_offset: u64,
    /// Exclusive.
    pub end_offset: u64,
    pub size_bytes: u64,
    /// The largest commit timestamp of its batches.
    pub max_timestamp_ms: u64,
    /// SHA-256 of the object, checked on every download.
    pub sha256: [u8; 32],
}

/// The remote directory of a bucket's changelog.
pub fn remote_log_dir(bucket: TableBucket) -> String {
    format!("{REMOTE_LOG_ROOT}{}", bucket.dir_name())
}

impl RemoteLogSegment {
    /// `e{epoch}-{start offset}`, unique per bucket.
    pub fn segment_id(&self) -> String {
        format!("e{}-{:020}", self.leader_epoch, self.start_offset)
    }

    /// `log/{bucket}/{start offset:020}-e{epoch}.log`: sorted by start offset when listed.
    pub fn path(&self) -> String {
        format!(
            "{}/{:020}-e{}.log",
            remote_log_dir(self.bucket),
            self.start_offset,
            self.leader_epoch
        )
    }

    /// The name of the directory, beside [`RemoteLogSegment::path`], that holds the segment's
    /// companion object: `{bucket}-{start offset:020}-e{epoch}.copy`, unique in the whole
    /// remote store (a client names its local copy of a segment by it, for every bucket it
    /// reads into one directory, as Fluss's segment ids are UUIDs).
    pub fn companion_dir_name(&self) -> String {
        format!(
            "{}-{:020}-e{}{COMPANION_DIR_SUFFIX}",
            self.bucket.dir_name_display(),
            self.start_offset,
            self.leader_epoch
        )
    }

    /// `log/{bucket}/{bucket}-{start offset:020}-e{epoch}.copy/{start offset:020}.log`: where a binding
    /// may keep one object derived from the segment (prod: the segment in the clients' record
    /// format, which they download themselves). Core never writes it; the manifest's rules
    /// treat it as part of its segment: never an orphan while the segment is recorded, and
    /// deleted with it.
    pub fn companion_path(&self) -> String {
        format!(
            "{}/{}/{:020}.log",
            remote_log_dir(self.bucket),
            self.companion_dir_name(),
            self.start_offset
        )
    }

    /// The segment's object and its companion: every path that goes when it goes.
    pub fn object_paths(&self) -> [String; 2] {
        [self.path(), self.companion_path()]
    }

    /// Whether the segment holds `offset`.
    pub fn holds(&self, offset: u64) -> bool {
        self.start_offset <= offset && offset < self.end_offset
    }

    pub fn encode_into(&self, writer: &mut ByteWriter) {
        encode_bucket(writer, self.bucket);
        writer.u32(self.leader_epoch);
        writer.u64(self.start_offset);
        writer.u64(self.end_offset);
        writer.u64(self.size_bytes);
        writer.u64(self.max_timestamp_ms);
        writer.raw(&self.sha256);
    }

    pub fn decode_from(
        reader: &mut ByteReader<'_>,
    ) -> Result<RemoteLogSegment, SnapshotDecodeError> {
        let bucket = decode_bucket(reader)?;
        let leader_epoch = reader.u32("leader epoch")?;
        let start_offset = reader.u64("start offset")?;
        let end_offset = reader.u64("end offset")?;
        let size_bytes = reader.u64("size")?;
        let max_timestamp_ms = reader.u64("max timestamp")?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(reader.take(32, "sha256")?);
        if start_offset >= end_offset {
            return Err(SnapshotDecodeError::Corrupt(format!(
                "remote segment {start_offset}..{end_offset} is empty"
            )));
        }
        Ok(RemoteLogSegment {
            bucket,
            leader_epoch,
            start_offset,
            end_offset,
            size_bytes,
            max_timestamp_ms,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> RemoteLogSegment {
        RemoteLogSegment {
            bucket: TableBucket { table_id: 3, partition_id: Some(9), bucket_id: 1 },
            leader_epoch: 4,
            start_offset: 100,
            end_offset: 250,
            size_bytes: 4096,
            max_timestamp_ms: 1_700_000_000_000,
            sha256: [7; 32],
        }
    }

    #[test]
    fn a_remote_segment_round_trips_and_every_cut_is_refused() {
        let mut writer = ByteWriter::new();
        segment().encode_into(&mut writer);
        let bytes = writer.into_bytes();
        let decoded = RemoteLogSegment::decode_from(&mut ByteReader::new(&bytes)).unwrap();
        assert_eq!(decoded, segment());
        for cut in 0..bytes.len() {
            assert!(RemoteLogSegment::decode_from(&mut ByteReader::new(&bytes[..cut])).is_err());
        }
    }

    #[test]
    fn remote_segment_paths_sort_by_start_offset_and_name_the_epoch() {
        let path = segment().path();
        assert!(path.starts_with(REMOTE_LOG_ROOT));
        assert!(path.ends_with("/00000000000000000100-e4.log"), "{path}");
        assert_eq!(segment().segment_id(), "e4-00000000000000000100");
        assert!(segment().holds(100) && segment().holds(249) && !segment().holds(250));
        assert_eq!(
            segment().companion_path(),
            format!(
                "{}/{}-00000000000000000100-e4.copy/00000000000000000100.log",
                remote_log_dir(segment().bucket),
                segment().bucket.dir_name()
            )
        );
    }
}
