//! An in-memory [`LocalFs`] for tests that need a file system but no crash model: files are a
//! map from path to bytes, directories a set of paths, and every write is durable at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use kvtablet_core::env::{FsError, LocalFs};

#[derive(Debug, Default)]
pub struct MemFs {
    state: Mutex<MemFsState>,
}

#[derive(Debug, Default)]
struct MemFsState {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl MemFs {
    pub fn new() -> Self {
        MemFs::default()
    }

    /// Changes a file's bytes in place, as a disk fault would; for corruption tests.
    pub fn corrupt(&self, path: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), FsError> {
        let mut state = self.lock();
        let bytes = state.files.get_mut(path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
        edit(bytes);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, MemFsState> {
        // Every critical section is a single map operation, so poisoning cannot break it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn normalize(path: &str) -> String {
    path.trim_matches('/').to_string()
}

fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

impl MemFsState {
    fn parent_exists(&self, path: &str) -> bool {
        parent(path).is_none_or(|parent| self.dirs.contains(parent))
    }

    fn require_parent(&self, path: &str) -> Result<(), FsError> {
        if self.parent_exists(path) {
            Ok(())
        } else {
            Err(FsError::NotFound(format!("parent directory of {path}")))
        }
    }
}

impl LocalFs for MemFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path);
        let mut state = self.lock();
        if state.files.contains_key(&path) {
            return Err(FsError::AlreadyExists(path));
        }
        let mut prefix = String::new();
        for part in path.split('/').filter(|part| !part.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            state.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let path = normalize(path);
        let state = self.lock();
        if !path.is_empty() && !state.dirs.contains(&path) {
            return Err(FsError::NotFound(path));
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let children = state
            .files
            .keys()
            .chain(state.dirs.iter())
            .filter_map(|entry| entry.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect::<BTreeSet<_>>();
        Ok(children.into_iter().collect())
    }

    fn exists(&self, path: &str) -> bool {
        let path = normalize(path);
        let state = self.lock();
        state.files.contains_key(&path) || state.dirs.contains(&path)
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path);
        let mut state = self.lock();
        state.require_parent(&path)?;
        state.files.entry(path).or_default().extend_from_slice(bytes);
        Ok(())
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path);
        let mut state = self.lock();
        state.require_parent(&path)?;
        state.files.insert(path, bytes.to_vec());
        Ok(())
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path);
        if self.lock().files.contains_key(&path) {
            Ok(())
        } else {
            Err(FsError::NotFound(path))
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let path = normalize(path);
        self.lock().files.get(&path).cloned().ok_or(FsError::NotFound(path))
    }

    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        let bytes = self.read(path)?;
        let start = usize::try_from(offset_bytes).unwrap_or(usize::MAX).min(bytes.len());
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        Ok(self.read(path)?.len() as u64)
    }

    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        let path = normalize(path);
        let mut state = self.lock();
        let bytes = state.files.get_mut(&path).ok_or(FsError::NotFound(path))?;
        bytes.truncate(usize::try_from(len_bytes).unwrap_or(usize::MAX));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let (from, to) = (normalize(from), normalize(to));
        let mut state = self.lock();
        state.require_parent(&to)?;
        let bytes = state.files.remove(&from).ok_or(FsError::NotFound(from))?;
        state.files.insert(to, bytes);
        Ok(())
    }

    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.lock().files.remove(&normalize(path));
        Ok(())
    }

    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path);
        let prefix = format!("{path}/");
        let mut state = self.lock();
        state.files.retain(|file, _| !file.starts_with(&prefix));
        state.dirs.retain(|dir| *dir != path && !dir.starts_with(&prefix));
        Ok(())
    }

    fn host_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_need_their_directory_and_listing_is_sorted() {
        let fs = MemFs::new();
        assert!(fs.write("d/f", b"x").is_err());
        fs.create_dir_all("d/sub").expect("mkdir");
        fs.write("d/b", b"1").expect("write");
        fs.append("d/a", b"2").expect("append");
        assert_eq!(fs.list_dir("d").expect("list"), vec!["a", "b", "sub"]);
        assert_eq!(fs.read_range("d/b", 0, 10).expect("read"), b"1");
        fs.remove_dir_all("d").expect("rm");
        assert!(!fs.exists("d/a"));
        assert!(!fs.exists("d"));
    }
}
