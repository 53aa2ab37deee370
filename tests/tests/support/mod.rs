//! What the cross-crate tests share: a file system on the simulator's `SimFs` whose writes or
//! syncs can be made to fail, as a full or failing disk does.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use kvtablet_core::env::{FsError, LocalFs};
use kvtablet_sim::fs::SimFs;

/// A `SimFs` whose mutating calls fail while `failing_writes` is set (a full disk), and whose
/// syncs fail while `failing_syncs` is set (writes land in the page cache, fsync reports EIO).
#[derive(Default)]
pub struct FailingFs {
    pub inner: SimFs,
    pub failing_writes: AtomicBool,
    pub failing_syncs: AtomicBool,
}

impl FailingFs {
    pub fn set_failing_writes(&self, failing: bool) {
        self.failing_writes.store(failing, Ordering::SeqCst);
    }

    pub fn set_failing_syncs(&self, failing: bool) {
        self.failing_syncs.store(failing, Ordering::SeqCst);
    }

    fn write_check(&self) -> Result<(), FsError> {
        if self.failing_writes.load(Ordering::SeqCst) {
            Err(FsError::Io("no space left on device".to_string()))
        } else {
            Ok(())
        }
    }
}

impl LocalFs for FailingFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.append(path, bytes)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.write(path, bytes)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.write_check()?;
        if self.failing_syncs.load(Ordering::SeqCst) {
            return Err(FsError::Io(format!("fsync {path}: input/output error")));
        }
        self.inner.sync(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        self.inner.read_range(path, offset, len)
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.inner.truncate(path, len)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.write_check()?;
        self.inner.remove_dir_all(path)
    }
    fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }
}
