//! Local files (log segments, temp files, checkpoints), only through this trait.

/// Local file-system errors. `is_retriable` says whether repeating the call may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("file not found: {0}")]
    NotFound(String),
    #[error("file already exists: {0}")]
    AlreadyExists(String),
    /// The disk failed or is full; durable state may be behind. Not retried in place.
    #[error("local I/O failure: {0}")]
    Io(String),
}

impl FsError {
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// A local file system rooted at a directory; paths are relative and `/`-separated.
///
/// Durability contract (what the simulator's crash model enforces): bytes written by `append`
/// or `write` survive a crash only after `sync` of that file returns; `rename` and `remove_*`
/// are durable when they return; a directory entry created by `append` becomes durable with the
/// first `sync` of the file.
pub trait LocalFs: Send + Sync + 'static {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError>;
    /// File and directory names directly under `path`, sorted.
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError>;
    fn exists(&self, path: &str) -> bool;
    /// Appends to the file, creating it (and not its parents) if missing.
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError>;
    /// Replaces the whole content of the file, creating it if missing. Not durable until `sync`.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError>;
    fn sync(&self, path: &str) -> Result<(), FsError>;
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError>;
    /// Reads up to `len_bytes` from `offset_bytes`; shorter at the end of the file.
    fn read_range(&self, path: &str, offset_bytes: u64, len_bytes: u64)
        -> Result<Vec<u8>, FsError>;
    fn file_len(&self, path: &str) -> Result<u64, FsError>;
    /// Cuts the file to `len_bytes`; durable when it returns.
    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError>;
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError>;
    /// Removing a missing file succeeds.
    fn remove_file(&self, path: &str) -> Result<(), FsError>;
    /// [`LocalFs::remove_file`] without its durability: after a crash the file may be back.
    /// For files whose return is harmless (an expired lease's: it is expired again at the
    /// next check), where a directory sync per file would cost more than the removal. The
    /// default is the durable removal.
    fn remove_file_lazily(&self, path: &str) -> Result<(), FsError> {
        self.remove_file(path)
    }
    /// Removing a missing directory succeeds.
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError>;
    /// The absolute host path, for engines (RocksDB) that must open files themselves; `None`
    /// when the file system is not backed by the host (the simulator).
    fn host_path(&self, path: &str) -> Option<std::path::PathBuf>;
}
