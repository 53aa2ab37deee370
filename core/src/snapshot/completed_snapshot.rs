//! A completed KV snapshot: which remote files make up the engine's state of one bucket at one
//! log offset, and the checksummed encoding of that record (the snapshot's `_METADATA` file and
//! the entries of the coordinator's store).
//!
//! Remote layout, relative to the remote store's root (Fluss's, with our bucket directory
//! names):
//!
//! ```text
//! kv/{bucket}/shared/s{first snapshot id}-{file name}   immutable engine files, reused
//! kv/{bucket}/snap-{snapshot id}/{file name}              the snapshot's private files
//! kv/{bucket}/snap-{snapshot id}/_METADATA                this record
//! ```

use crate::byte_reader::{ByteReader, ByteWriter, Truncated};
use crate::table_bucket::TableBucket;

/// The name of a snapshot's metadata file in its private directory.
pub const METADATA_FILE_NAME: &str = "_METADATA";
/// A snapshot lists at most this many files; a longer list is refused as corrupt.
pub const SNAPSHOT_FILES_MAX: usize = 100_000;
/// Longest file path kept in a snapshot record.
pub const FILE_PATH_BYTES_MAX: usize = 4_096;

const MAGIC: &[u8; 8] = b"KVTSNAPM";
const FORMAT_VERSION: u16 = 1;
/// Smallest encoding of one file: two empty strings, a size and two checksums.
const FILE_BYTES_MIN: usize = 4 + 4 + 8 + 4 + 32;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotFile {
    /// Where it is, relative to the remote store's root.
    pub remote_path: String,
    /// Its name in the engine's checkpoint directory, where a download puts it back.
    pub local_name: String,
    pub size_bytes: u64,
    /// CRC-32C of its bytes, checked on every download.
    pub crc32c: u32,
    /// SHA-256 of its bytes: the file's identity when a later snapshot reuses it. A CRC-32C
    /// cannot be: every file that ends with a CRC-32C of what precedes it (a MemEngine run,
    /// a manifest) has the same CRC-32C, the polynomial's residue, so two runs of one size
    /// from different engines would pass for each other.
    pub sha256: [u8; 32],
}

/// The SHA-256 of `bytes`, as [`SnapshotFile::sha256`] records it.
pub fn content_sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The remote files of one bucket's engine at `log_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSnapshot {
    pub bucket: TableBucket,
    /// Increases with every snapshot of the bucket; allocated by the coordinator's store.
    pub snapshot_id: u64,
    /// The leader epoch of the term that took it: the store refuses a deposed leader's.
    pub leader_epoch: u32,
    /// The engine's flushed log offset at the checkpoint: every change below it is in the
    /// snapshot and none at or above it, so the snapshot plus the changelog from here is the
    /// bucket's state at any later offset.
    pub log_offset: u64,
    /// Immutable engine files in the bucket's `shared/` area, which later snapshots reuse.
    pub shared_files: Vec<SnapshotFile>,
    /// Files in the snapshot's own directory (the engine's manifest and the like).
    pub private_files: Vec<SnapshotFile>,
}

/// Why bytes are not a snapshot record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDecodeError {
    #[error(transparent)]
    Truncated(#[from] Truncated),
    #[error("not a snapshot record: {0}")]
    Corrupt(String),
}

impl CompletedSnapshot {
    /// Every file of the snapshot, shared first.
    pub fn files(&self) -> impl Iterator<Item = &SnapshotFile> {
        self.shared_files.iter().chain(&self.private_files)
    }

    pub fn size_bytes(&self) -> u64 {
        self.files().map(|file| file.size_bytes).sum()
    }

    /// This record, framed: magic, version, payload length, CRC-32C of the payload, payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = ByteWriter::new();
        self.encode_into(&mut payload);
        frame(&payload.into_bytes())
    }

    pub fn decode(bytes: &[u8]) -> Result<CompletedSnapshot, SnapshotDecodeError> {
        let payload = unframe(bytes)?;
        let mut reader = ByteReader::new(payload);
        let snapshot = CompletedSnapshot::decode_from(&mut reader)?;
        if !reader.is_empty() {
            return Err(SnapshotDecodeError::Corrupt("trailing bytes after the record".into()));
        }
        Ok(snapshot)
    }

    /// The payload alone, for records nested in another frame (the store's).
    pub(crate) fn encode_into(&self, writer: &mut ByteWriter) {
        encode_bucket(writer, self.bucket);
        writer.u64(self.snapshot_id);
        writer.u32(self.leader_epoch);
        writer.u64(self.log_offset);
        for files in [&self.shared_files, &self.private_files] {
            writer.count(files.len());
            for file in files {
                writer.sized(file.remote_path.as_bytes());
                writer.sized(file.local_name.as_bytes());
                writer.u64(file.size_bytes);
                writer.u32(file.crc32c);
                writer.raw(&file.sha256);
            }
        }
    }

    pub(crate) fn decode_from(
        reader: &mut ByteReader<'_>,
    ) -> Result<CompletedSnapshot, SnapshotDecodeError> {
        let bucket = decode_bucket(reader)?;
        let snapshot_id = reader.u64("snapshot id")?;
        let leader_epoch = reader.u32("leader epoch")?;
        let log_offset = reader.u64("log offset")?;
        let shared_files = decode_files(reader)?;
        let private_files = decode_files(reader)?;
        if shared_files.len() + private_files.len() > SNAPSHOT_FILES_MAX {
            return Err(SnapshotDecodeError::Corrupt("too many files".into()));
        }
        Ok(CompletedSnapshot {
            bucket,
            snapshot_id,
            leader_epoch,
            log_offset,
            shared_files,
            private_files,
        })
    }
}

/// The bucket's directory in the remote store.
pub fn bucket_dir(bucket: TableBucket) -> String {
    format!("kv/{}", bucket.dir_name())
}

/// The remote path of an immutable file first uploaded by snapshot `snapshot_id`.
pub fn shared_file_path(bucket: TableBucket, snapshot_id: u64, local_name: &str) -> String {
    format!("{}/shared/s{snapshot_id}-{local_name}", bucket_dir(bucket))
}

/// The snapshot's private directory.
pub fn snapshot_dir(bucket: TableBucket, snapshot_id: u64) -> String {
    format!("{}/snap-{snapshot_id}", bucket_dir(bucket))
}

/// The snapshot id a remote path under the bucket's directory belongs to: the id in its
/// `snap-{id}/` directory or its `shared/s{id}-` name. `None` for anything else.
pub fn snapshot_id_of_path(bucket: TableBucket, path: &str) -> Option<u64> {
    let rest = path.strip_prefix(&bucket_dir(bucket))?.strip_prefix('/')?;
    if let Some(name) = rest.strip_prefix("shared/s") {
        return name.split_once('-')?.0.parse().ok();
    }
    rest.strip_prefix("snap-")?.split_once('/')?.0.parse().ok()
}

pub(crate) fn encode_bucket(writer: &mut ByteWriter, bucket: TableBucket) {
    writer.i64(bucket.table_id);
    match bucket.partition_id {
        Some(partition_id) => {
            writer.u8(1);
            writer.i64(partition_id);
        }
        None => writer.u8(0),
    }
    writer.i32(bucket.bucket_id);
}

pub(crate) fn decode_bucket(
    reader: &mut ByteReader<'_>,
) -> Result<TableBucket, SnapshotDecodeError> {
    let table_id = reader.i64("table id")?;
    let partition_id = match reader.u8("partition tag")? {
        0 => None,
        1 => Some(reader.i64("partition id")?),
        tag => return Err(SnapshotDecodeError::Corrupt(format!("partition tag {tag}"))),
    };
    let bucket_id = reader.i32("bucket id")?;
    Ok(TableBucket { table_id, partition_id, bucket_id })
}

fn decode_files(reader: &mut ByteReader<'_>) -> Result<Vec<SnapshotFile>, SnapshotDecodeError> {
    let count = reader.count(FILE_BYTES_MIN, "file count")?;
    if count > SNAPSHOT_FILES_MAX {
        return Err(SnapshotDecodeError::Corrupt(format!("{count} files")));
    }
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let remote_path = decode_path(reader, "remote path")?;
        let local_name = decode_path(reader, "local name")?;
        let size_bytes = reader.u64("file size")?;
        let crc32c = reader.u32("file checksum")?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(reader.take(32, "file hash")?);
        files.push(SnapshotFile { remote_path, local_name, size_bytes, crc32c, sha256 });
    }
    Ok(files)
}

fn decode_path(
    reader: &mut ByteReader<'_>,
    what: &'static str,
) -> Result<String, SnapshotDecodeError> {
    let bytes = reader.sized(what)?;
    if bytes.len() > FILE_PATH_BYTES_MAX {
        return Err(SnapshotDecodeError::Corrupt(format!("{what} of {} bytes", bytes.len())));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| SnapshotDecodeError::Corrupt(format!("{what} is not UTF-8")))
}

/// magic (8) | format version u16 | payload length u32 | CRC-32C u32 of the payload | payload
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    frame_with_magic(MAGIC, payload)
}

pub(crate) fn unframe(bytes: &[u8]) -> Result<&[u8], SnapshotDecodeError> {
    unframe_with_magic(MAGIC, bytes)
}

pub(crate) fn frame_with_magic(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut writer = ByteWriter::new();
    writer.raw(magic);
    writer.u16(FORMAT_VERSION);
    writer.sized(payload);
    writer.u32(crc32c::crc32c(payload));
    writer.into_bytes()
}

pub(crate) fn unframe_with_magic<'a>(
    magic: &[u8; 8],
    bytes: &'a [u8],
) -> Result<&'a [u8], SnapshotDecodeError> {
    let mut reader = ByteReader::new(bytes);
    if reader.take(magic.len(), "magic")? != magic {
        return Err(SnapshotDecodeError::Corrupt("bad magic".into()));
    }
    let version = reader.u16("format version")?;
    if version != FORMAT_VERSION {
        return Err(SnapshotDecodeError::Corrupt(format!("format version {version}")));
    }
    let payload = reader.sized("payload")?;
    let crc = reader.u32("checksum")?;
    if !reader.is_empty() {
        return Err(SnapshotDecodeError::Corrupt("trailing bytes after the frame".into()));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(SnapshotDecodeError::Corrupt("checksum mismatch".into()));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(snapshot_id: u64) -> CompletedSnapshot {
        let bucket = TableBucket { table_id: 3, partition_id: Some(9), bucket_id: 2 };
        CompletedSnapshot {
            bucket,
            snapshot_id,
            leader_epoch: 4,
            log_offset: 1_234,
            shared_files: vec![SnapshotFile {
                remote_path: shared_file_path(bucket, 1, "000007.memrun"),
                local_name: "000007.memrun".into(),
                size_bytes: 4_096,
                crc32c: 0xdead_beef,
                sha256: content_sha256(b"run"),
            }],
            private_files: vec![SnapshotFile {
                remote_path: format!("{}/MEMMANIFEST", snapshot_dir(bucket, snapshot_id)),
                local_name: "MEMMANIFEST".into(),
                size_bytes: 80,
                crc32c: 7,
                sha256: content_sha256(b"manifest"),
            }],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let snapshot = sample(5);
        assert_eq!(CompletedSnapshot::decode(&snapshot.encode()), Ok(snapshot));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = sample(5).encode();
        for cut in 0..bytes.len() {
            assert!(CompletedSnapshot::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x20;
            assert!(CompletedSnapshot::decode(&damaged).is_err(), "flip at {index}");
        }
    }

    #[test]
    fn paths_name_their_snapshot() {
        let bucket = TableBucket::new(1, 0);
        assert_eq!(shared_file_path(bucket, 12, "000003.sst"), "kv/t1-b0/shared/s12-000003.sst");
        assert_eq!(snapshot_id_of_path(bucket, "kv/t1-b0/shared/s12-000003.sst"), Some(12));
        assert_eq!(snapshot_id_of_path(bucket, "kv/t1-b0/snap-40/_METADATA"), Some(40));
        assert_eq!(snapshot_id_of_path(bucket, "kv/t1-b1/snap-40/_METADATA"), None);
        assert_eq!(snapshot_id_of_path(bucket, "kv/t1-b0/other"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = CompletedSnapshot::decode(&bytes);
        }
    }
}
