//! Local files on the host's disk, rooted at one directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use kvtablet_core::env::{FsError, LocalFs};

/// A [`LocalFs`] on `std::fs`, rooted at an absolute directory.
///
/// Durability: `sync` is `fsync` of the file. Directory entries are made durable eagerly: when
/// a file or directory is created, renamed or removed, its parent directory is fsynced before
/// the call returns, which is at least what the [`LocalFs`] contract asks for.
#[derive(Debug, Clone)]
pub struct DiskFs {
    root: PathBuf,
}

impl DiskFs {
    /// Creates `root` if it is missing and resolves it to an absolute path.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, FsError> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|error| map_io("create root", root, error))?;
        let root = fs::canonicalize(root).map_err(|error| map_io("resolve root", root, error))?;
        Ok(DiskFs { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of `path`, refusing anything that could leave the root.
    fn resolve(&self, path: &str) -> Result<PathBuf, FsError> {
        let relative = Path::new(path);
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(FsError::Io(format!("path escapes the root: {path:?}")));
                }
            }
        }
        Ok(self.root.join(relative))
    }

    /// Fsyncs the directory holding `host_path`, so that an entry created, renamed or removed
    /// there survives a crash.
    fn sync_parent(&self, host_path: &Path) -> Result<(), FsError> {
        match host_path.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), FsError> {
    // On Linux a directory opened read-only can be fsynced; that is how its entries are made
    // durable.
    let handle = File::open(dir).map_err(|error| map_io("open directory", dir, error))?;
    handle.sync_all().map_err(|error| map_io("sync directory", dir, error))
}

fn map_io(operation: &str, host_path: &Path, error: io::Error) -> FsError {
    let shown = host_path.display().to_string();
    match error.kind() {
        ErrorKind::NotFound => FsError::NotFound(shown),
        ErrorKind::AlreadyExists => FsError::AlreadyExists(shown),
        _ => FsError::Io(format!("{operation} {shown}: {error}")),
    }
}

fn open_for_reading(host_path: &Path) -> Result<File, FsError> {
    File::open(host_path).map_err(|error| map_io("open", host_path, error))
}

impl LocalFs for DiskFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        // Remember the highest missing ancestor: every directory from there down is new, and
        // each new entry must be fsynced in its parent.
        let mut first_missing = None;
        let mut probe = Some(host_path.as_path());
        while let Some(candidate) = probe {
            if candidate.exists() || candidate == self.root {
                break;
            }
            first_missing = Some(candidate.to_path_buf());
            probe = candidate.parent();
        }
        fs::create_dir_all(&host_path).map_err(|error| map_io("create dir", &host_path, error))?;
        if let Some(first_missing) = first_missing {
            let mut created = host_path.as_path();
            loop {
                self.sync_parent(created)?;
                if created == first_missing {
                    break;
                }
                match created.parent() {
                    Some(parent) => created = parent,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let host_path = self.resolve(path)?;
        let entries =
            fs::read_dir(&host_path).map_err(|error| map_io("list", &host_path, error))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| map_io("list", &host_path, error))?;
            let name = entry.file_name().into_string().map_err(|raw| {
                FsError::Io(format!("non UTF-8 name {raw:?} in {}", host_path.display()))
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).map(|host_path| host_path.exists()).unwrap_or(false)
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        let (mut file, created) = match OpenOptions::new().append(true).open(&host_path) {
            Ok(file) => (file, false),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&host_path)
                    .map_err(|error| map_io("create", &host_path, error))?;
                (file, true)
            }
            Err(error) => return Err(map_io("open for append", &host_path, error)),
        };
        if created {
            self.sync_parent(&host_path)?;
        }
        file.write_all(bytes).map_err(|error| map_io("append", &host_path, error))
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        let created = !host_path.exists();
        let mut file =
            File::create(&host_path).map_err(|error| map_io("create", &host_path, error))?;
        if created {
            self.sync_parent(&host_path)?;
        }
        file.write_all(bytes).map_err(|error| map_io("write", &host_path, error))
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        // fsync through any descriptor flushes the file's data: no need for the writer's one.
        let file = open_for_reading(&host_path)?;
        file.sync_all().map_err(|error| map_io("sync", &host_path, error))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let host_path = self.resolve(path)?;
        let mut file = open_for_reading(&host_path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|error| map_io("read", &host_path, error))?;
        Ok(bytes)
    }

    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        let host_path = self.resolve(path)?;
        let mut file = open_for_reading(&host_path)?;
        file.seek(SeekFrom::Start(offset_bytes))
            .map_err(|error| map_io("seek", &host_path, error))?;
        let mut bytes = Vec::new();
        file.take(len_bytes)
            .read_to_end(&mut bytes)
            .map_err(|error| map_io("read", &host_path, error))?;
        Ok(bytes)
    }

    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        let host_path = self.resolve(path)?;
        let metadata =
            fs::metadata(&host_path).map_err(|error| map_io("stat", &host_path, error))?;
        Ok(metadata.len())
    }

    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&host_path)
            .map_err(|error| map_io("open for truncate", &host_path, error))?;
        file.set_len(len_bytes).map_err(|error| map_io("truncate", &host_path, error))?;
        // The contract makes truncation durable on return.
        file.sync_all().map_err(|error| map_io("sync", &host_path, error))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let from_host_path = self.resolve(from)?;
        let to_host_path = self.resolve(to)?;
        fs::rename(&from_host_path, &to_host_path)
            .map_err(|error| map_io("rename", &from_host_path, error))?;
        self.sync_parent(&to_host_path)?;
        if from_host_path.parent() != to_host_path.parent() {
            self.sync_parent(&from_host_path)?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        match fs::remove_file(&host_path) {
            Ok(()) => self.sync_parent(&host_path),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(map_io("remove", &host_path, error)),
        }
    }

    /// The unlink alone: the directory is not synced.
    fn remove_file_lazily(&self, path: &str) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        match fs::remove_file(&host_path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(map_io("remove", &host_path, error)),
        }
    }

    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let host_path = self.resolve(path)?;
        if host_path == self.root {
            return Err(FsError::Io("refusing to remove the root directory".to_string()));
        }
        match fs::remove_dir_all(&host_path) {
            Ok(()) => self.sync_parent(&host_path),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(map_io("remove dir", &host_path, error)),
        }
    }

    fn host_path(&self, path: &str) -> Option<PathBuf> {
        self.resolve(path).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_fs() -> (tempfile::TempDir, DiskFs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = DiskFs::new(dir.path()).expect("DiskFs");
        (dir, disk)
    }

    #[test]
    fn append_sync_and_read_back() {
        let (_dir, disk) = temp_fs();
        disk.create_dir_all("log/t1-b0").expect("mkdir");
        disk.append("log/t1-b0/00.log", b"hello ").expect("append");
        disk.append("log/t1-b0/00.log", b"world").expect("append");
        disk.sync("log/t1-b0/00.log").expect("sync");
        assert_eq!(disk.read("log/t1-b0/00.log").expect("read"), b"hello world");
        assert_eq!(disk.file_len("log/t1-b0/00.log").expect("len"), 11);
        assert!(disk.exists("log/t1-b0/00.log"));
        assert!(!disk.exists("log/t1-b0/01.log"));
    }

    #[test]
    fn read_range_is_clipped_at_the_end() {
        let (_dir, disk) = temp_fs();
        disk.write("data", b"0123456789").expect("write");
        assert_eq!(disk.read_range("data", 2, 3).expect("range"), b"234");
        assert_eq!(disk.read_range("data", 8, 100).expect("range"), b"89");
        assert_eq!(disk.read_range("data", 50, 10).expect("range"), b"");
    }

    #[test]
    fn write_replaces_and_truncate_cuts() {
        let (_dir, disk) = temp_fs();
        disk.write("file", b"first version").expect("write");
        disk.write("file", b"second").expect("write");
        assert_eq!(disk.read("file").expect("read"), b"second");
        disk.truncate("file", 3).expect("truncate");
        assert_eq!(disk.read("file").expect("read"), b"sec");
        assert_eq!(
            disk.truncate("missing", 0),
            Err(FsError::NotFound(disk.root().join("missing").display().to_string()))
        );
    }

    #[test]
    fn rename_moves_the_file() {
        let (_dir, disk) = temp_fs();
        disk.create_dir_all("a").expect("mkdir");
        disk.create_dir_all("b").expect("mkdir");
        disk.write("a/tmp", b"payload").expect("write");
        disk.rename("a/tmp", "b/final").expect("rename");
        assert!(!disk.exists("a/tmp"));
        assert_eq!(disk.read("b/final").expect("read"), b"payload");
        assert!(matches!(disk.rename("a/tmp", "b/other"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn list_dir_is_sorted() {
        let (_dir, disk) = temp_fs();
        disk.create_dir_all("segments").expect("mkdir");
        for name in ["c", "a", "b10", "b2"] {
            disk.append(&format!("segments/{name}"), b"x").expect("append");
        }
        disk.create_dir_all("segments/d").expect("mkdir");
        assert_eq!(disk.list_dir("segments").expect("list"), ["a", "b10", "b2", "c", "d"]);
        assert!(matches!(disk.list_dir("nowhere"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn removing_missing_things_succeeds() {
        let (_dir, disk) = temp_fs();
        disk.remove_file("ghost").expect("remove missing file");
        disk.remove_dir_all("ghost-dir").expect("remove missing dir");
        disk.create_dir_all("x/y").expect("mkdir");
        disk.write("x/y/z", b"1").expect("write");
        disk.remove_dir_all("x").expect("remove dir");
        assert!(!disk.exists("x"));
    }

    #[test]
    fn paths_cannot_leave_the_root() {
        let (_dir, disk) = temp_fs();
        assert!(matches!(disk.read("../etc/passwd"), Err(FsError::Io(_))));
        assert!(matches!(disk.append("a/../../b", b"x"), Err(FsError::Io(_))));
        assert!(matches!(disk.write("/tmp/absolute", b"x"), Err(FsError::Io(_))));
        assert_eq!(disk.host_path("../x"), None);
        assert!(!disk.exists("../"));
    }

    #[test]
    fn host_path_is_absolute_under_the_root() {
        let (_dir, disk) = temp_fs();
        let host_path = disk.host_path("kv/t1-b0").expect("host path");
        assert!(host_path.is_absolute());
        assert!(host_path.starts_with(disk.root()));
    }

    #[test]
    fn append_does_not_create_parents() {
        let (_dir, disk) = temp_fs();
        assert!(matches!(disk.append("no/such/dir/file", b"x"), Err(FsError::NotFound(_))));
    }
}
