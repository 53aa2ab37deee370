//! A lease's file: `{hex of the lease id}.lease`, one checksummed frame (the snapshot store's
//! framing: magic, format version, sized payload, CRC32C). The payload: the lease id, the
//! lease's version (a number the coordinator raises at every write of any lease, so that of
//! two copies of a lease the newer is known: see `lease_remote`), the expiration and the pins.
//! Files of the first format (magic `KVTLEASE`, no version) still decode, as version 0. The
//! remote copy of a lease holds the same bytes. The decoder checks every length against the
//! bytes left and every count against a hard cap before it allocates, and never panics on
//! damaged bytes.

use crate::byte_reader::{ByteReader, ByteWriter};
use crate::lease::kv_snapshot_lease::KvSnapshotLease;
use crate::lease::lease_config::{BUCKETS_PER_LEASE_HARD_MAX, LEASE_ID_BYTES_MAX};
use crate::snapshot::completed_snapshot::{
    decode_bucket, encode_bucket, frame_with_magic, unframe_with_magic,
};
use crate::snapshot::SnapshotDecodeError;

const MAGIC: &[u8; 8] = b"KVTLEAS2";
/// The first format's magic: no version in the payload.
const MAGIC_UNVERSIONED: &[u8; 8] = b"KVTLEASE";
pub const LEASE_FILE_SUFFIX: &str = ".lease";
pub const TEMP_SUFFIX: &str = ".tmp";
/// A pin takes at least this many bytes: table id, partition tag, bucket id, snapshot id.
const PIN_BYTES_MIN: usize = 8 + 1 + 4 + 8;

/// The file name of `lease_id`'s lease: the id's bytes in hex (any string is a valid id).
pub fn lease_file_name(lease_id: &str) -> String {
    let mut name = String::with_capacity(lease_id.len() * 2 + LEASE_FILE_SUFFIX.len());
    for byte in lease_id.as_bytes() {
        name.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        name.push(char::from(b"0123456789abcdef"[usize::from(byte & 0x0f)]));
    }
    name.push_str(LEASE_FILE_SUFFIX);
    name
}

/// A lease as a file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub lease_id: String,
    pub version: u64,
    pub lease: KvSnapshotLease,
}

pub fn encode_lease_file(lease_id: &str, version: u64, lease: &KvSnapshotLease) -> Vec<u8> {
    let mut writer = ByteWriter::new();
    writer.sized(lease_id.as_bytes());
    writer.u64(version);
    writer.u64(lease.expiration_ms);
    writer.count(lease.pin_count());
    for (bucket, snapshot_id) in lease.pins() {
        encode_bucket(&mut writer, bucket);
        writer.u64(snapshot_id);
    }
    frame_with_magic(MAGIC, writer.bytes())
}

pub fn decode_lease_file(bytes: &[u8]) -> Result<LeaseRecord, SnapshotDecodeError> {
    let corrupt = |detail: &str| SnapshotDecodeError::Corrupt(detail.to_string());
    let versioned = !bytes.starts_with(MAGIC_UNVERSIONED);
    let magic = if versioned { MAGIC } else { MAGIC_UNVERSIONED };
    let payload = unframe_with_magic(magic, bytes)?;
    let mut reader = ByteReader::new(payload);
    let id_bytes = reader.sized("lease id")?;
    if id_bytes.is_empty() || id_bytes.len() > LEASE_ID_BYTES_MAX {
        return Err(corrupt("lease id length"));
    }
    let lease_id = String::from_utf8(id_bytes.to_vec()).map_err(|_| corrupt("lease id utf-8"))?;
    let version = if versioned { reader.u64("version")? } else { 0 };
    let mut lease = KvSnapshotLease::new(reader.u64("expiration")?);
    let count = reader.count(PIN_BYTES_MIN, "pin count")?;
    if count > BUCKETS_PER_LEASE_HARD_MAX {
        return Err(corrupt("too many pins"));
    }
    let mut previous = None;
    for _ in 0..count {
        let bucket = decode_bucket(&mut reader)?;
        let snapshot_id = reader.u64("snapshot id")?;
        if previous.is_some_and(|previous| previous >= bucket) {
            return Err(corrupt("pins out of order"));
        }
        previous = Some(bucket);
        lease.pin(bucket, snapshot_id);
    }
    if !reader.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(LeaseRecord { lease_id, version, lease })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::table_bucket::TableBucket;

    fn sample() -> KvSnapshotLease {
        let mut lease = KvSnapshotLease::new(1_700_000_000_000);
        lease.pin(TableBucket::new(7, 1), 3);
        lease.pin(TableBucket { table_id: 8, partition_id: Some(2), bucket_id: 0 }, 9);
        lease
    }

    #[test]
    fn a_lease_file_round_trips_and_its_name_is_the_ids_hex() {
        let bytes = encode_lease_file("tiering-ä/1", 12, &sample());
        let record = LeaseRecord { lease_id: "tiering-ä/1".into(), version: 12, lease: sample() };
        assert_eq!(decode_lease_file(&bytes), Ok(record));
        assert_eq!(lease_file_name("a/"), "612f.lease");
        let longest = "x".repeat(LEASE_ID_BYTES_MAX);
        assert!(lease_file_name(&longest).len() + TEMP_SUFFIX.len() <= 255);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_refused() {
        let bytes = encode_lease_file("lease", 3, &sample());
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[index] ^= 1 << bit;
                assert!(decode_lease_file(&damaged).is_err(), "flip at {index}.{bit}");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode_lease_file(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn a_file_of_the_unversioned_format_decodes_as_version_0() {
        let mut writer = ByteWriter::new();
        writer.sized(b"old");
        writer.u64(55);
        writer.count(1);
        encode_bucket(&mut writer, TableBucket::new(7, 1));
        writer.u64(3);
        let bytes = frame_with_magic(MAGIC_UNVERSIONED, writer.bytes());
        let mut lease = KvSnapshotLease::new(55);
        lease.pin(TableBucket::new(7, 1), 3);
        let record = LeaseRecord { lease_id: "old".into(), version: 0, lease };
        assert_eq!(decode_lease_file(&bytes), Ok(record));
    }

    proptest! {
        #[test]
        fn the_decoder_never_panics_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = decode_lease_file(&bytes);
        }
    }
}
