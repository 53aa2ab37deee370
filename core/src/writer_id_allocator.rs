//! Writer ids that never repeat, whatever the clock does: a counter whose high mark is made
//! durable before any id below it is handed out.
//!
//! The changelog remembers the last batch sequence of every writer id it has seen; an id
//! handed to a second writer would make the idempotence check acknowledge that writer's first
//! batches as duplicates without writing them. So ids come from a counter in one small file
//! (Fluss gets them from its coordinator, which keeps the counter in ZooKeeper), never from
//! the wall clock.
//!
//! Ids are reserved in blocks: to hand out ids `[end, end + block)` the allocator first writes
//! the new high mark `end + block` to a temp file, syncs it and renames it over the mark file
//! (durable when the rename returns, per the [`LocalFs`] contract). Only then does it hand out
//! ids from the block. A crash at any point leaves the old mark or the new one; either is at
//! least every id ever handed out, so a reopened allocator starts above all of them (the
//! unused rest of a block is skipped, never reissued). A failed reservation hands out nothing
//! and is tried again at the next allocation.
//!
//! The file is 16 bytes: magic `KVWI`, the high mark (u64 LE), a CRC-32C of the first 12
//! bytes. A mark that fails its check is an error at open, never silently reset (a reset
//! would reissue every id).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::env::{FsError, LocalFs};

const MAGIC: [u8; 4] = *b"KVWI";
const FILE_LEN: usize = 16;
/// The first id a fresh allocator hands out (writer ids are non-negative; -1 means "none").
pub const FIRST_WRITER_ID: i64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriterIdError {
    /// The mark could not be read or made durable; nothing was handed out.
    #[error("writer id mark {path}: {source}")]
    Fs { path: String, source: FsError },
    /// The mark file is damaged; refusing to guess where the ids stopped.
    #[error("writer id mark {path} is corrupt: {detail}")]
    Corrupt { path: String, detail: String },
    /// Every id up to `i64::MAX` has been reserved.
    #[error("writer ids are exhausted")]
    Exhausted,
}

impl WriterIdError {
    /// A failed reservation may succeed later (the disk was full, a sync failed).
    pub fn is_retriable(&self) -> bool {
        matches!(self, WriterIdError::Fs { .. })
    }
}

/// Ids `[next, end)` are reserved durably and not yet handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reservation {
    next: i64,
    end: i64,
}

/// Hands out writer ids, each once, across restarts and crashes.
pub struct WriterIdAllocator {
    fs: Arc<dyn LocalFs>,
    path: String,
    temp_path: String,
    block_size: i64,
    reservation: Mutex<Reservation>,
}

impl std::fmt::Debug for WriterIdAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterIdAllocator")
            .field("path", &self.path)
            .field("reservation", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl WriterIdAllocator {
    /// Opens the mark at `path` (a fresh allocator if there is none; its directory is created),
    /// reserving `block_size` ids (at least 1) per durable write. A temp file left by a crash is
    /// removed: its mark was never renamed in, so no id of its block was handed out.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        path: &str,
        block_size: u64,
    ) -> Result<WriterIdAllocator, WriterIdError> {
        let temp_path = format!("{path}.tmp");
        let fs_error = |source: FsError| WriterIdError::Fs { path: path.to_string(), source };
        if let Some((parent, _)) = path.rsplit_once('/') {
            fs.create_dir_all(parent).map_err(fs_error)?;
        }
        if fs.exists(&temp_path) {
            fs.remove_file(&temp_path).map_err(fs_error)?;
        }
        let mark = if fs.exists(path) {
            decode_mark(&fs.read(path).map_err(fs_error)?)
                .map_err(|detail| WriterIdError::Corrupt { path: path.to_string(), detail })?
        } else {
            FIRST_WRITER_ID
        };
        let block_size = i64::try_from(block_size).unwrap_or(i64::MAX).max(1);
        Ok(WriterIdAllocator {
            fs,
            path: path.to_string(),
            temp_path,
            block_size,
            reservation: Mutex::new(Reservation { next: mark, end: mark }),
        })
    }

    /// The next id; reserves a new block first when the current one is used up.
    pub fn allocate(&self) -> Result<i64, WriterIdError> {
        let mut reservation = self.lock();
        if reservation.next >= reservation.end {
            let end =
                reservation.end.checked_add(self.block_size).ok_or(WriterIdError::Exhausted)?;
            self.persist(end)?;
            reservation.end = end;
        }
        let id = reservation.next;
        reservation.next += 1;
        Ok(id)
    }

    /// The durable high mark: every id handed out is below it.
    pub fn high_mark(&self) -> i64 {
        self.lock().end
    }

    /// Write, sync, rename: the mark on disk is `end` or what it was, never anything else.
    fn persist(&self, end: i64) -> Result<(), WriterIdError> {
        let fs_error = |source: FsError| WriterIdError::Fs { path: self.path.clone(), source };
        self.fs.write(&self.temp_path, &encode_mark(end)).map_err(fs_error)?;
        self.fs.sync(&self.temp_path).map_err(fs_error)?;
        self.fs.rename(&self.temp_path, &self.path).map_err(fs_error)
    }

    fn lock(&self) -> MutexGuard<'_, Reservation> {
        // The reservation is two integers updated after the durable write: a panic elsewhere
        // cannot leave it half changed.
        self.reservation.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn encode_mark(mark: i64) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..12].copy_from_slice(&mark.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..12]);
    bytes[12..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_mark(bytes: &[u8]) -> Result<i64, String> {
    let bytes: &[u8; FILE_LEN] =
        bytes.try_into().map_err(|_| format!("{} bytes, expected {FILE_LEN}", bytes.len()))?;
    let (body, crc) = bytes.split_at(12);
    let (magic, mark) = body.split_at(4);
    if magic != MAGIC {
        return Err(format!("magic {magic:?}"));
    }
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| "crc field".to_string())?);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!("crc {stored:#010x}, computed {computed:#010x}"));
    }
    let mark = i64::from_le_bytes(mark.try_into().map_err(|_| "mark field".to_string())?);
    if mark < FIRST_WRITER_ID {
        return Err(format!("high mark {mark} is below the first writer id"));
    }
    Ok(mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_damage_is_detected() {
        let bytes = encode_mark(4_096);
        assert_eq!(decode_mark(&bytes), Ok(4_096));
        for index in 0..FILE_LEN {
            let mut damaged = bytes;
            damaged[index] ^= 0x10;
            assert!(decode_mark(&damaged).is_err(), "byte {index} flipped");
        }
        assert!(decode_mark(&bytes[..15]).is_err());
        assert!(decode_mark(&[]).is_err());
    }
}
