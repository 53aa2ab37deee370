//! An in-memory [`LocalFs`] with a crash model.
//!
//! Each file remembers what a crash would leave of it: the synced bytes, and whether its
//! directory entry is durable. [`SimFs::crash`] rolls the whole file system back to that state,
//! enforcing the durability contract of `local_fs.rs`:
//! - bytes from `append`/`write` survive only once `sync` of the file has returned;
//! - a file created by `append`/`write` survives only once it has been synced (or renamed);
//! - `rename`, `remove_*`, `truncate` and `create_dir_all` are durable when they return.
//!
//! A rename of a file that was never synced is durable but carries only the synced bytes
//! (possibly none) across a crash: the classic "empty file after rename" outcome that a
//! write-temp-then-rename protocol without `sync` suffers on real file systems.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use kvtablet_core::env::{FsError, LocalFs};

use crate::clock::lock;

/// What a file holds beyond its synced bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unsynced {
    /// The visible content is exactly the synced bytes.
    Clean,
    /// Appended after the synced bytes (the common log-segment case, kept apart so that `sync`
    /// costs the tail, not the whole file).
    Tail(Vec<u8>),
    /// The whole visible content, after a `write` replaced the file.
    Replaced(Vec<u8>),
}

#[derive(Debug, Clone)]
struct SimFile {
    synced: Vec<u8>,
    unsynced: Unsynced,
    /// Whether the directory entry survives a crash.
    entry_durable: bool,
}

impl SimFile {
    fn new_unsynced() -> SimFile {
        SimFile { synced: Vec::new(), unsynced: Unsynced::Clean, entry_durable: false }
    }

    fn len_bytes(&self) -> usize {
        match &self.unsynced {
            Unsynced::Clean => self.synced.len(),
            Unsynced::Tail(tail) => self.synced.len() + tail.len(),
            Unsynced::Replaced(content) => content.len(),
        }
    }

    fn visible(&self) -> Vec<u8> {
        match &self.unsynced {
            Unsynced::Clean => self.synced.clone(),
            Unsynced::Tail(tail) => [self.synced.as_slice(), tail.as_slice()].concat(),
            Unsynced::Replaced(content) => content.clone(),
        }
    }

    fn read_range(&self, offset: usize, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.len_bytes());
        if offset >= end {
            return Vec::new();
        }
        match &self.unsynced {
            Unsynced::Clean => self.synced[offset..end].to_vec(),
            Unsynced::Replaced(content) => content[offset..end].to_vec(),
            Unsynced::Tail(tail) => {
                let synced_len = self.synced.len();
                let mut out = Vec::with_capacity(end - offset);
                if offset < synced_len {
                    out.extend_from_slice(&self.synced[offset..end.min(synced_len)]);
                }
                if end > synced_len {
                    out.extend_from_slice(
                        &tail[offset.max(synced_len) - synced_len..end - synced_len],
                    );
                }
                out
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        match &mut self.unsynced {
            Unsynced::Clean => self.unsynced = Unsynced::Tail(bytes.to_vec()),
            Unsynced::Tail(tail) => tail.extend_from_slice(bytes),
            Unsynced::Replaced(content) => content.extend_from_slice(bytes),
        }
    }

    fn sync(&mut self) {
        match std::mem::replace(&mut self.unsynced, Unsynced::Clean) {
            Unsynced::Clean => {}
            Unsynced::Tail(tail) => self.synced.extend_from_slice(&tail),
            Unsynced::Replaced(content) => self.synced = content,
        }
        self.entry_durable = true;
    }

    /// Cuts both the visible and the crash-surviving content to `len`: the truncation itself is
    /// durable, bytes below `len` that were not synced stay unsynced.
    fn truncate(&mut self, len: usize) {
        self.synced.truncate(len);
        match &mut self.unsynced {
            Unsynced::Clean => {}
            Unsynced::Tail(tail) => {
                // After cutting, `synced.len() <= len`; keep the part of the tail below `len`.
                let keep = len.saturating_sub(self.synced.len());
                tail.truncate(keep);
                if tail.is_empty() {
                    self.unsynced = Unsynced::Clean;
                }
            }
            Unsynced::Replaced(content) => content.truncate(len),
        }
    }

    fn crash(&mut self) {
        self.unsynced = Unsynced::Clean;
    }
}

#[derive(Debug, Default)]
struct FsState {
    files: BTreeMap<String, SimFile>,
    /// Every directory but the root (""), which always exists. Durable when created.
    dirs: BTreeSet<String>,
}

impl FsState {
    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    fn parent_must_be_dir(&self, path: &str) -> Result<(), FsError> {
        let parent = parent_of(path);
        if self.is_dir(parent) {
            Ok(())
        } else if self.files.contains_key(parent) {
            Err(FsError::Io(format!("{path}: parent {parent} is a file")))
        } else {
            Err(FsError::NotFound(format!("{path}: parent directory {parent} is missing")))
        }
    }

    fn file(&self, path: &str) -> Result<&SimFile, FsError> {
        match self.files.get(path) {
            Some(file) => Ok(file),
            None if self.is_dir(path) => Err(FsError::Io(format!("{path} is a directory"))),
            None => Err(FsError::NotFound(path.to_string())),
        }
    }

    fn file_mut(&mut self, path: &str) -> Result<&mut SimFile, FsError> {
        if self.is_dir(path) {
            return Err(FsError::Io(format!("{path} is a directory")));
        }
        self.files.get_mut(path).ok_or_else(|| FsError::NotFound(path.to_string()))
    }

    /// The file at `path`, created (not durably) if missing.
    fn file_or_create(&mut self, path: &str) -> Result<&mut SimFile, FsError> {
        if self.is_dir(path) {
            return Err(FsError::Io(format!("{path} is a directory")));
        }
        if !self.files.contains_key(path) {
            self.parent_must_be_dir(path)?;
        }
        Ok(self.files.entry(path.to_string()).or_insert_with(SimFile::new_unsynced))
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        let child_file =
            self.files.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix));
        let child_dir =
            self.dirs.range(prefix.clone()..).next().is_some_and(|p| p.starts_with(&prefix));
        child_file || child_dir
    }

    /// Removes `dir` and everything under it; returns the removed files.
    fn remove_tree(&mut self, dir: &str) -> Vec<(String, SimFile)> {
        let prefix = format!("{dir}/");
        let file_paths: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        let removed = file_paths
            .into_iter()
            .filter_map(|path| self.files.remove(&path).map(|file| (path, file)))
            .collect();
        let dir_paths: Vec<String> = self
            .dirs
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for path in dir_paths {
            self.dirs.remove(&path);
        }
        self.dirs.remove(dir);
        removed
    }
}

/// A node's local disk, in memory. Share it as `Arc<SimFs>` and hand out `Arc<dyn LocalFs>`.
#[derive(Debug, Default)]
pub struct SimFs {
    state: Mutex<FsState>,
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// A power loss: every unsynced byte and every file whose directory entry was never made
    /// durable disappear. Returns the number of files lost entirely.
    pub fn crash(&self) -> usize {
        let mut state = lock(&self.state);
        let before = state.files.len();
        state.files.retain(|_, file| file.entry_durable);
        for file in state.files.values_mut() {
            file.crash();
        }
        before - state.files.len()
    }

    /// Bytes that a crash now would lose, over all files (content replaced by an unsynced
    /// `write` counts whole).
    pub fn unsynced_bytes(&self) -> u64 {
        let state = lock(&self.state);
        let total: usize = state
            .files
            .values()
            .map(|file| match &file.unsynced {
                Unsynced::Clean => 0,
                Unsynced::Tail(tail) => tail.len(),
                Unsynced::Replaced(content) => content.len(),
            })
            .sum();
        total as u64
    }

    /// How many leading bytes of the file a crash now would keep (0 for a missing file or one
    /// whose directory entry is not durable yet).
    pub fn durable_len(&self, path: &str) -> u64 {
        let Ok(path) = normalize(path) else { return 0 };
        let state = lock(&self.state);
        let Some(file) = state.files.get(&path).filter(|file| file.entry_durable) else {
            return 0;
        };
        let durable = match &file.unsynced {
            Unsynced::Clean | Unsynced::Tail(_) => file.synced.len(),
            Unsynced::Replaced(content) => {
                content.iter().zip(&file.synced).take_while(|(a, b)| a == b).count()
            }
        };
        durable as u64
    }

    /// Every file path, sorted.
    pub fn file_paths(&self) -> Vec<String> {
        lock(&self.state).files.keys().cloned().collect()
    }
}

impl LocalFs for SimFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        let mut state = lock(&self.state);
        let mut prefix = String::new();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if state.files.contains_key(&prefix) {
                return Err(FsError::AlreadyExists(format!("{prefix} is a file")));
            }
            state.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let path = normalize(path)?;
        let state = lock(&self.state);
        if !state.is_dir(&path) {
            return Err(match state.files.contains_key(&path) {
                true => FsError::Io(format!("{path} is not a directory")),
                false => FsError::NotFound(path),
            });
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let direct_child = |child: &String| -> Option<String> {
            let rest = child.strip_prefix(&prefix)?;
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
        };
        let mut names: BTreeSet<String> = state.files.keys().filter_map(direct_child).collect();
        names.extend(state.dirs.iter().filter_map(direct_child));
        Ok(names.into_iter().collect())
    }

    fn exists(&self, path: &str) -> bool {
        let Ok(path) = normalize(path) else { return false };
        let state = lock(&self.state);
        state.is_dir(&path) || state.files.contains_key(&path)
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path)?;
        lock(&self.state).file_or_create(&path)?.append(bytes);
        Ok(())
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path)?;
        lock(&self.state).file_or_create(&path)?.unsynced = Unsynced::Replaced(bytes.to_vec());
        Ok(())
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        lock(&self.state).file_mut(&path)?.sync();
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let path = normalize(path)?;
        Ok(lock(&self.state).file(&path)?.visible())
    }

    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        let path = normalize(path)?;
        let state = lock(&self.state);
        let file = state.file(&path)?;
        // Offsets beyond usize are beyond any in-memory file: they read as past the end.
        let offset = usize::try_from(offset_bytes).unwrap_or(usize::MAX);
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        Ok(file.read_range(offset, len))
    }

    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        let path = normalize(path)?;
        Ok(lock(&self.state).file(&path)?.len_bytes() as u64)
    }

    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        let path = normalize(path)?;
        let mut state = lock(&self.state);
        let file = state.file_mut(&path)?;
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        if len > file.len_bytes() {
            return Err(FsError::Io(format!(
                "{path}: cannot truncate {} bytes up to {len_bytes}",
                file.len_bytes()
            )));
        }
        file.truncate(len);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let from = normalize(from)?;
        let to = normalize(to)?;
        if from.is_empty() || to.is_empty() {
            return Err(FsError::Io("cannot rename the root directory".to_string()));
        }
        let mut state = lock(&self.state);
        if from == to {
            return match state.is_dir(&from) || state.files.contains_key(&from) {
                true => Ok(()),
                false => Err(FsError::NotFound(from)),
            };
        }
        state.parent_must_be_dir(&to)?;
        if let Some(mut file) = state.files.remove(&from) {
            if state.is_dir(&to) {
                state.files.insert(from, file);
                return Err(FsError::AlreadyExists(format!("{to} is a directory")));
            }
            // The rename is durable, so the entry is; the unsynced content stays unsynced.
            file.entry_durable = true;
            state.files.insert(to, file);
            return Ok(());
        }
        if !state.is_dir(&from) {
            return Err(FsError::NotFound(from));
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(FsError::Io(format!("cannot move {from} into itself ({to})")));
        }
        if state.files.contains_key(&to) || (state.is_dir(&to) && state.has_children(&to)) {
            return Err(FsError::AlreadyExists(to));
        }
        // An empty target directory is replaced, as POSIX rename does.
        state.dirs.remove(&to);
        let from_prefix = format!("{from}/");
        let moved_dirs: Vec<String> = state
            .dirs
            .range(from_prefix.clone()..)
            .take_while(|path| path.starts_with(&from_prefix))
            .cloned()
            .collect();
        let moved_files = state.remove_tree(&from);
        let relocate =
            |path: &str| format!("{to}/{}", path.strip_prefix(&from_prefix).unwrap_or(path));
        state.dirs.insert(to.clone());
        for path in moved_dirs {
            state.dirs.insert(relocate(&path));
        }
        for (path, mut file) in moved_files {
            // Moving the directory is durable, so every entry under it is.
            file.entry_durable = true;
            state.files.insert(relocate(&path), file);
        }
        Ok(())
    }

    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        let mut state = lock(&self.state);
        if state.is_dir(&path) {
            return Err(FsError::Io(format!("{path} is a directory")));
        }
        state.files.remove(&path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        if path.is_empty() {
            return Err(FsError::Io("cannot remove the root directory".to_string()));
        }
        let mut state = lock(&self.state);
        if state.files.contains_key(&path) {
            return Err(FsError::Io(format!("{path} is not a directory")));
        }
        state.remove_tree(&path);
        Ok(())
    }

    fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// The parent of a normalized path; "" (the root) for a top-level name.
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Canonical form of a relative path: no empty, "." or ".." components, no leading or trailing
/// "/". The root is "". A path that climbs above the root is refused.
pub fn normalize(path: &str) -> Result<String, FsError> {
    let mut components: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err(FsError::Io(format!("path {path:?} leaves the file system root")));
                }
            }
            name => components.push(name),
        }
    }
    Ok(components.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with_dir(dir: &str) -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(dir).expect("create dir");
        fs
    }

    #[test]
    fn normalize_canonicalises_and_refuses_escapes() {
        assert_eq!(normalize("/a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalize("a/b/../c").unwrap(), "a/c");
        assert_eq!(normalize("").unwrap(), "");
        assert_eq!(normalize("/").unwrap(), "");
        assert!(normalize("a/../..").is_err());
    }

    #[test]
    fn append_write_read_and_ranges() {
        let fs = fs_with_dir("log");
        fs.append("log/seg", b"hello").unwrap();
        fs.sync("log/seg").unwrap();
        fs.append("log//seg", b" world").unwrap();
        assert_eq!(fs.read("log/seg").unwrap(), b"hello world");
        assert_eq!(fs.file_len("log/seg").unwrap(), 11);
        assert_eq!(fs.read_range("log/seg", 3, 5).unwrap(), b"lo wo");
        assert_eq!(fs.read_range("log/seg", 8, 100).unwrap(), b"rld");
        assert_eq!(fs.read_range("log/seg", 50, 5).unwrap(), b"");
        assert_eq!(fs.read_range("log/seg", u64::MAX, u64::MAX).unwrap(), b"");
        fs.write("log/seg", b"new").unwrap();
        assert_eq!(fs.read("log/seg").unwrap(), b"new");
        fs.append("log/seg", b"er").unwrap();
        assert_eq!(fs.read_range("log/seg", 1, 3).unwrap(), b"ewe");
    }

    #[test]
    fn missing_parents_and_files_are_errors() {
        let fs = SimFs::new();
        assert!(matches!(fs.append("no/such/file", b"x"), Err(FsError::NotFound(_))));
        assert!(matches!(fs.read("nothing"), Err(FsError::NotFound(_))));
        assert!(matches!(fs.sync("nothing"), Err(FsError::NotFound(_))));
        assert!(matches!(fs.list_dir("nothing"), Err(FsError::NotFound(_))));
        fs.remove_file("nothing").unwrap();
        fs.remove_dir_all("nothing").unwrap();
        fs.append("top", b"x").unwrap();
        assert!(fs.create_dir_all("top/sub").is_err(), "a file blocks the directory");
        assert!(matches!(fs.read(""), Err(FsError::Io(_))), "the root is a directory");
    }

    #[test]
    fn list_dir_shows_direct_children_sorted() {
        let fs = fs_with_dir("a/b/c");
        fs.append("a/z", b"").unwrap();
        fs.append("a/b/file", b"").unwrap();
        fs.create_dir_all("ab").unwrap();
        assert_eq!(fs.list_dir("a").unwrap(), vec!["b", "z"]);
        assert_eq!(fs.list_dir("").unwrap(), vec!["a", "ab"]);
        assert_eq!(fs.list_dir("a/b").unwrap(), vec!["c", "file"]);
        assert!(fs.exists("a/b/c") && fs.exists("a/z") && !fs.exists("a/y"));
    }

    #[test]
    fn crash_keeps_only_synced_bytes_of_durable_files() {
        let fs = fs_with_dir("d");
        fs.append("d/synced", b"abc").unwrap();
        fs.sync("d/synced").unwrap();
        fs.append("d/synced", b"def").unwrap();
        fs.append("d/never-synced", b"lost").unwrap();
        fs.write("d/replaced", b"old").unwrap();
        fs.sync("d/replaced").unwrap();
        fs.write("d/replaced", b"new content").unwrap();
        assert_eq!(fs.unsynced_bytes(), 3 + 4 + 11);

        assert_eq!(fs.crash(), 1);
        assert_eq!(fs.read("d/synced").unwrap(), b"abc");
        assert!(!fs.exists("d/never-synced"));
        assert_eq!(fs.read("d/replaced").unwrap(), b"old");
        assert!(fs.exists("d"), "directories are durable once created");
        assert_eq!(fs.unsynced_bytes(), 0);
    }

    #[test]
    fn truncate_is_durable_and_keeps_unsynced_bytes_unsynced() {
        let fs = fs_with_dir("d");
        fs.append("d/f", b"0123456789").unwrap();
        fs.sync("d/f").unwrap();
        fs.append("d/f", b"abcdef").unwrap();
        fs.truncate("d/f", 12).unwrap();
        assert_eq!(fs.read("d/f").unwrap(), b"0123456789ab");
        assert!(fs.truncate("d/f", 13).is_err(), "truncate does not extend");
        fs.truncate("d/f", 4).unwrap();
        assert_eq!(fs.read("d/f").unwrap(), b"0123");
        fs.append("d/f", b"xy").unwrap();
        fs.crash();
        assert_eq!(fs.read("d/f").unwrap(), b"0123");
    }

    #[test]
    fn rename_is_durable_but_carries_only_synced_bytes() {
        let fs = fs_with_dir("d");
        fs.write("d/tmp-good", b"checkpoint").unwrap();
        fs.sync("d/tmp-good").unwrap();
        fs.rename("d/tmp-good", "d/good").unwrap();
        fs.write("d/tmp-bad", b"never synced").unwrap();
        fs.rename("d/tmp-bad", "d/bad").unwrap();
        assert_eq!(fs.read("d/bad").unwrap(), b"never synced");
        fs.crash();
        assert_eq!(fs.read("d/good").unwrap(), b"checkpoint");
        assert_eq!(fs.read("d/bad").unwrap(), b"", "renamed before sync: empty after a crash");
        assert!(!fs.exists("d/tmp-good") && !fs.exists("d/tmp-bad"));
    }

    #[test]
    fn rename_replaces_files_and_moves_directories() {
        let fs = fs_with_dir("a/sub");
        fs.append("a/sub/f", b"1").unwrap();
        fs.append("a/g", b"2").unwrap();
        fs.append("target", b"old").unwrap();
        fs.rename("a/g", "target").unwrap();
        assert_eq!(fs.read("target").unwrap(), b"2");
        assert!(fs.rename("missing", "x").is_err());
        assert!(matches!(fs.rename("a", "a/sub/inner"), Err(FsError::Io(_))));
        fs.create_dir_all("b").unwrap();
        fs.rename("a", "b").unwrap();
        assert_eq!(fs.read("b/sub/f").unwrap(), b"1");
        assert_eq!(fs.list_dir("b").unwrap(), vec!["sub"]);
        assert!(!fs.exists("a") && !fs.exists("a/sub/f"));
        fs.create_dir_all("c/full").unwrap();
        assert!(matches!(fs.rename("b", "c"), Err(FsError::AlreadyExists(_))));
        fs.crash();
        assert_eq!(fs.read("b/sub/f").unwrap(), b"", "moved durably, bytes never synced");
    }

    #[test]
    fn remove_dir_all_removes_the_tree_only() {
        let fs = fs_with_dir("x/y");
        fs.append("x/y/f", b"1").unwrap();
        fs.append("xz", b"2").unwrap();
        fs.remove_dir_all("x").unwrap();
        assert!(!fs.exists("x") && !fs.exists("x/y") && !fs.exists("x/y/f"));
        assert!(fs.exists("xz"));
        assert!(fs.remove_dir_all("xz").is_err());
        assert!(fs.remove_file("").is_err());
        assert!(fs.remove_dir_all("/").is_err());
        assert_eq!(fs.file_paths(), vec!["xz"]);
        assert_eq!(fs.host_path("xz"), None);
    }
}
