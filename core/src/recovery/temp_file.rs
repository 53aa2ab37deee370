//! A downloaded segment's local file: in the leak ledger from before its first byte is
//! written, and deleted when the value is dropped.

use std::sync::Arc;

use crate::env::LocalFs;
use crate::ledger::{Ledger, LedgerEntry, ResourceKind};

/// A file in a fetcher's temporary directory. Dropping it deletes the file (deleting a file
/// that was never written succeeds) and releases its ledger entry, in that order, so that a
/// ledger without the entry means a disk without the file.
pub struct TempFile {
    fs: Arc<dyn LocalFs>,
    path: String,
    size_bytes: u64,
    entry: Option<LedgerEntry>,
}

impl TempFile {
    /// Registers `path` as a temporary file of `owner`; the caller writes it next.
    pub fn register(fs: Arc<dyn LocalFs>, ledger: &Ledger, path: String, owner: &str) -> TempFile {
        assert!(!path.is_empty(), "a temporary file has a path");
        let entry = ledger.register(ResourceKind::TempFile, format!("{owner} file {path}"));
        TempFile { fs, path, size_bytes: 0, entry: Some(entry) }
    }

    /// Writes `bytes` as the whole file (not synced: nothing survives a crash on purpose).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), crate::env::FsError> {
        self.fs.write(&self.path, bytes)?;
        self.size_bytes = bytes.len() as u64;
        Ok(())
    }

    /// Writes `parts`, one after the other, as the whole file (not synced).
    pub fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), crate::env::FsError> {
        let Some((first, rest)) = parts.split_first() else { return self.write(&[]) };
        self.write(first)?;
        for part in rest {
            self.fs.append(&self.path, part)?;
            self.size_bytes += part.len() as u64;
        }
        Ok(())
    }

    /// Makes what was written durable.
    pub fn sync(&self) -> Result<(), crate::env::FsError> {
        self.fs.sync(&self.path)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

impl std::fmt::Debug for TempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(error) = self.fs.remove_file(&self.path) {
            // The directory's removal at close takes it with it.
            tracing::warn!(path = self.path, %error, "failed to delete a recovery temp file");
        }
        drop(self.entry.take());
    }
}
