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
//!
//! Disk faults ([`DiskFaults`], switched on with [`SimFs::set_faults`], off with
//! [`SimFs::clear_faults`]) fire with drawn probabilities from the disk's own stream:
//! - fsync failure: `sync` fails with `FsError::Io`, and, as on Linux after a failed fsync
//!   ("fsyncgate"), the pages are marked clean: the bytes stay readable until a crash, a later
//!   `sync` succeeds without writing them, and a crash leaves zeros in their place;
//! - read error: `read`/`read_range` fail with `FsError::Io`;
//! - disk full: `append`/`write` fail with `FsError::Io("no space ...")` and write nothing;
//! - bit rot: after a successful `sync`, one byte of the file's synced region reads flipped
//!   (the stored truth is kept, so the oracles' god view ([`FaultLog::god_view`]) still reads
//!   it; clearing the faults scrubs the rot, as a repair from a healthy replica would);
//! - torn write: a crash keeps a random prefix of a file's unsynced tail instead of none.
//!
//! A slow disk is not modelled: `LocalFs` is synchronous, so a disk operation cannot take
//! virtual time without making the trait async (issue 8, item 2).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use kvtablet_core::env::{FsError, LocalFs};

use crate::clock::lock;
use crate::fault_log::{FaultKind, FaultLog};
use crate::prng::{Prng, Ratio};

/// Fault rates of one disk, each per operation of its kind (bit rot per successful `sync`,
/// torn write per file with an unsynced tail at a crash). The default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskFaults {
    pub fsync_failure: Ratio,
    pub read_error: Ratio,
    pub disk_full: Ratio,
    pub bit_rot: Ratio,
    pub torn_write: Ratio,
}

impl DiskFaults {
    pub fn none() -> DiskFaults {
        DiskFaults::default()
    }

    pub fn is_none(&self) -> bool {
        [self.fsync_failure, self.read_error, self.disk_full, self.bit_rot, self.torn_write]
            .iter()
            .all(|ratio| ratio.is_never())
    }
}

/// The faults of a disk while they are switched on.
#[derive(Debug)]
struct ActiveFaults {
    faults: DiskFaults,
    prng: Prng,
    log: Arc<FaultLog>,
}

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
    /// Ranges `(start, end)` of `synced` whose writeback failed (a failed fsync): readable
    /// until a crash, zeros after it.
    lost_on_crash: Vec<(usize, usize)>,
    /// Bit rot: byte offsets that read XORed with their mask while faults are on.
    rot: BTreeMap<usize, u8>,
}

impl SimFile {
    fn new_unsynced() -> SimFile {
        SimFile {
            synced: Vec::new(),
            unsynced: Unsynced::Clean,
            entry_durable: false,
            lost_on_crash: Vec::new(),
            rot: BTreeMap::new(),
        }
    }

    /// A failed fsync: the tail's pages are marked clean. They stay visible, but no later
    /// `sync` writes them, and a crash turns them into zeros.
    fn fail_sync(&mut self) {
        if let Unsynced::Tail(tail) = &mut self.unsynced {
            let tail = std::mem::take(tail);
            let start = self.synced.len();
            self.synced.extend_from_slice(&tail);
            self.lost_on_crash.push((start, self.synced.len()));
            self.unsynced = Unsynced::Clean;
        }
        // A replaced file keeps its old durable content: the new one stays unsynced.
    }

    /// Applies the rot overlay to `bytes`, read from `offset`.
    fn rot_into(&self, bytes: &mut [u8], offset: usize) {
        for (at, mask) in self.rot.range(offset..offset.saturating_add(bytes.len())) {
            bytes[at - offset] ^= mask;
        }
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
            Unsynced::Replaced(content) => {
                self.synced = content;
                self.lost_on_crash.clear();
            }
        }
        self.entry_durable = true;
    }

    /// Cuts both the visible and the crash-surviving content to `len`: the truncation itself is
    /// durable, bytes below `len` that were not synced stay unsynced.
    fn truncate(&mut self, len: usize) {
        self.synced.truncate(len);
        self.rot.retain(|at, _| *at < len);
        self.lost_on_crash.retain_mut(|(start, end)| {
            *end = (*end).min(len);
            start < end
        });
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

    /// A power loss; `torn_keep` bytes of an unsynced tail reach the disk anyway.
    fn crash(&mut self, torn_keep: usize) {
        if let Unsynced::Tail(tail) = &self.unsynced {
            let keep = torn_keep.min(tail.len());
            let kept = tail[..keep].to_vec();
            self.synced.extend_from_slice(&kept);
        }
        self.unsynced = Unsynced::Clean;
        for (start, end) in std::mem::take(&mut self.lost_on_crash) {
            let end = end.min(self.synced.len());
            if start < end {
                self.synced[start..end].fill(0);
            }
        }
        let len = self.synced.len();
        self.rot.retain(|at, _| *at < len);
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
        // No path is both a file and a directory: a file found needs no directory check.
        let FsState { files, dirs } = self;
        match files.get_mut(path) {
            Some(file) => Ok(file),
            None if path.is_empty() || dirs.contains(path) => {
                Err(FsError::Io(format!("{path} is a directory")))
            }
            None => Err(FsError::NotFound(path.to_string())),
        }
    }

    /// The file at `path`, created (not durably) if missing.
    fn file_or_create(&mut self, path: &str) -> Result<&mut SimFile, FsError> {
        // No path is both a file and a directory: an existing file needs no directory check.
        if !self.files.contains_key(path) {
            if self.is_dir(path) {
                return Err(FsError::Io(format!("{path} is a directory")));
            }
            self.parent_must_be_dir(path)?;
            return Ok(self.files.entry(path.to_string()).or_insert_with(SimFile::new_unsynced));
        }
        Ok(self.files.get_mut(path).expect("the file exists"))
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
///
/// Lock order: `faults` before `state`.
#[derive(Debug, Default)]
pub struct SimFs {
    state: Mutex<FsState>,
    faults: Mutex<Option<ActiveFaults>>,
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Switches faults on (or changes their rates), drawing from `prng`, which should be a
    /// stream of this disk's own; every fired fault is counted in `log`.
    pub fn set_faults(&self, faults: DiskFaults, prng: Prng, log: Arc<FaultLog>) {
        *lock(&self.faults) = Some(ActiveFaults { faults, prng, log });
    }

    /// Switches faults off and scrubs the bit rot (a repair from a healthy replica). Bytes
    /// already lost to a failed fsync stay lost at the next crash.
    pub fn clear_faults(&self) {
        *lock(&self.faults) = None;
        for file in lock(&self.state).files.values_mut() {
            file.rot.clear();
        }
    }

    pub fn faults(&self) -> DiskFaults {
        lock(&self.faults).as_ref().map_or(DiskFaults::none(), |active| active.faults)
    }

    /// Draws whether the fault `kind` (rate `rate` of the disk's faults) fires now, and counts
    /// it. Never fires with faults off or in the oracles' god view. Draws once whenever faults
    /// are on, so that a rate of zero does not shift later decisions.
    fn fires(&self, kind: FaultKind, rate: impl Fn(&DiskFaults) -> Ratio) -> bool {
        let mut faults = lock(&self.faults);
        let Some(active) = faults.as_mut() else { return false };
        let ratio = rate(&active.faults);
        let fired = active.prng.chance(ratio) && !active.log.in_god_view();
        if fired {
            active.log.record(kind);
        }
        fired
    }

    /// For a read: whether a read error fires now (as [`SimFs::fires`] draws it), and whether
    /// the read sees the bit rot; one look at the faults for both.
    fn read_faults(&self) -> (bool, bool) {
        let mut faults = lock(&self.faults);
        let Some(active) = faults.as_mut() else { return (false, false) };
        let in_god_view = active.log.in_god_view();
        let fired = active.prng.chance(active.faults.read_error) && !in_god_view;
        if fired {
            active.log.record(FaultKind::ReadError);
        }
        (fired, !in_god_view)
    }

    /// A power loss: every unsynced byte and every file whose directory entry was never made
    /// durable disappear (with torn writes on, a random prefix of an unsynced tail may stay).
    /// Returns the number of files lost entirely.
    pub fn crash(&self) -> usize {
        let mut faults = lock(&self.faults);
        let mut state = lock(&self.state);
        let before = state.files.len();
        state.files.retain(|_, file| file.entry_durable);
        for file in state.files.values_mut() {
            let mut torn_keep = 0;
            if let (Some(active), Unsynced::Tail(tail)) = (faults.as_mut(), &file.unsynced) {
                let keep = active.prng.range_inclusive(0, tail.len() as u64) as usize;
                if active.prng.chance(active.faults.torn_write) && keep > 0 {
                    active.log.record(FaultKind::TornWrite);
                    torn_keep = keep;
                }
            }
            file.crash(torn_keep);
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
        let path: &str = &path;
        let state = lock(&self.state);
        let Some(file) = state.files.get(path).filter(|file| file.entry_durable) else {
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

    /// The paths of the files whose path begins with `prefix`, in order, found without
    /// looking at the others.
    pub fn file_paths_under(&self, prefix: &str) -> Vec<String> {
        let state = lock(&self.state);
        let under = state.files.range(prefix.to_string()..).map(|(path, _)| path);
        under.take_while(|path| path.starts_with(prefix)).cloned().collect()
    }
}

impl LocalFs for SimFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        let mut state = lock(&self.state);
        // Every ancestor of a directory is a directory, and no file has a directory's path: an
        // existing directory needs nothing.
        if state.is_dir(path) {
            return Ok(());
        }
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
        let path: &str = &path;
        let state = lock(&self.state);
        if !state.is_dir(path) {
            return Err(match state.files.contains_key(path) {
                true => FsError::Io(format!("{path} is not a directory")),
                false => FsError::NotFound(path.to_string()),
            });
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let direct_child = |child: &String| -> Option<String> {
            let rest = child.strip_prefix(&prefix)?;
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
        };
        // Paths are sorted, so the directory's descendants are one range from its prefix, and
        // its direct children come out of each map sorted and distinct.
        let under = |key: &&String| key.starts_with(&prefix);
        let from = (Bound::Included(prefix.as_str()), Bound::Unbounded);
        let mut names: Vec<String> = state
            .files
            .range::<str, _>(from)
            .map(|(key, _)| key)
            .take_while(under)
            .filter_map(direct_child)
            .collect();
        let files = names.len();
        names.extend(state.dirs.range::<str, _>(from).take_while(under).filter_map(direct_child));
        if files > 0 && names.len() > files {
            names.sort_unstable();
            names.dedup();
        }
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        let Ok(path) = normalize(path) else { return false };
        let path: &str = &path;
        let state = lock(&self.state);
        state.is_dir(path) || state.files.contains_key(path)
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        if self.fires(FaultKind::DiskFull, |f| f.disk_full) {
            return Err(FsError::Io(format!("{path}: no space left on device (injected)")));
        }
        lock(&self.state).file_or_create(path)?.append(bytes);
        Ok(())
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        if self.fires(FaultKind::DiskFull, |f| f.disk_full) {
            return Err(FsError::Io(format!("{path}: no space left on device (injected)")));
        }
        let mut state = lock(&self.state);
        let file = state.file_or_create(path)?;
        file.unsynced = Unsynced::Replaced(bytes.to_vec());
        file.rot.clear();
        Ok(())
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        let fails = self.fires(FaultKind::FsyncFailure, |f| f.fsync_failure);
        let mut faults = lock(&self.faults);
        // Always the same draws while faults are on: (rot?, position, mask).
        let rot = faults.as_mut().map(|active| {
            let rots = active.prng.chance(active.faults.bit_rot) && !active.log.in_god_view();
            let position = active.prng.next_u64();
            let mask = active.prng.range_inclusive(1, 255) as u8;
            (rots, position, mask, active.log.clone())
        });
        drop(faults);
        let mut state = lock(&self.state);
        let file = state.file_mut(path)?;
        if fails {
            file.fail_sync();
            return Err(FsError::Io(format!("{path}: fsync failed (injected)")));
        }
        file.sync();
        if let Some((true, position, mask, log)) = rot {
            if !file.synced.is_empty() {
                let at = (position % file.synced.len() as u64) as usize;
                file.rot.insert(at, mask);
                log.record(FaultKind::BitRot);
            }
        }
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        let (read_fails, rot_visible) = self.read_faults();
        if read_fails {
            return Err(FsError::Io(format!("{path}: read failed (injected)")));
        }
        let state = lock(&self.state);
        let file = state.file(path)?;
        let mut bytes = file.visible();
        if rot_visible {
            file.rot_into(&mut bytes, 0);
        }
        Ok(bytes)
    }

    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        let (read_fails, rot_visible) = self.read_faults();
        if read_fails {
            return Err(FsError::Io(format!("{path}: read failed (injected)")));
        }
        let state = lock(&self.state);
        let file = state.file(path)?;
        // Offsets beyond usize are beyond any in-memory file: they read as past the end.
        let offset = usize::try_from(offset_bytes).unwrap_or(usize::MAX);
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        let mut bytes = file.read_range(offset, len);
        if rot_visible {
            file.rot_into(&mut bytes, offset);
        }
        Ok(bytes)
    }

    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        Ok(lock(&self.state).file(path)?.len_bytes() as u64)
    }

    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        let mut state = lock(&self.state);
        let file = state.file_mut(path)?;
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
        let from = normalize(from)?.into_owned();
        let to = normalize(to)?.into_owned();
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
        let path: &str = &path;
        let mut state = lock(&self.state);
        if state.is_dir(path) {
            return Err(FsError::Io(format!("{path} is a directory")));
        }
        state.files.remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        let path: &str = &path;
        if path.is_empty() {
            return Err(FsError::Io("cannot remove the root directory".to_string()));
        }
        let mut state = lock(&self.state);
        if state.files.contains_key(path) {
            return Err(FsError::Io(format!("{path} is not a directory")));
        }
        state.remove_tree(path);
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
/// A path that is already canonical (every path the log and the engine use) is borrowed as is.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, FsError> {
    if is_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }
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
    Ok(Cow::Owned(components.join("/")))
}

/// Whether `path` is "" or has no empty (a leading, trailing or doubled "/"), "." or ".."
/// component. One pass over the bytes: only a component that starts with "." needs a closer
/// look.
fn is_canonical(path: &str) -> bool {
    let mut previous = b'/';
    for byte in path.bytes() {
        if previous == b'/' {
            match byte {
                b'/' => return false,
                b'.' => return no_dot_components(path),
                _ => {}
            }
        }
        previous = byte;
    }
    previous != b'/' || path.is_empty()
}

/// Whether no component of `path` (which has no empty one) is "." or "..".
fn no_dot_components(path: &str) -> bool {
    path.split('/').all(|component| !matches!(component, "." | ".."))
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
        for canonical in
            ["", "a", "a/b", "data/log/t1-b0/00000000000000000042.log", ".a/b..", "a/...", "a.b/c"]
        {
            assert!(matches!(normalize(canonical).unwrap(), Cow::Borrowed(p) if p == canonical));
        }
        for other in ["/", "/a", "a/", "a//b", ".", "..", "./a", "a/.", "a/./b", "a/..", "a/../b"] {
            assert!(!is_canonical(other), "{other:?}");
        }
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

    fn faulty(faults: DiskFaults) -> (SimFs, Arc<FaultLog>) {
        let fs = fs_with_dir("d");
        let log = Arc::new(FaultLog::new());
        fs.set_faults(faults, Prng::from_seed(7), log.clone());
        (fs, log)
    }

    #[test]
    fn failed_fsync_keeps_bytes_visible_until_a_crash_zeroes_them() {
        let (fs, log) = faulty(DiskFaults { fsync_failure: Ratio::ALWAYS, ..DiskFaults::none() });
        fs.append("d/f", b"lost").unwrap();
        assert!(matches!(fs.sync("d/f"), Err(FsError::Io(_))));
        assert_eq!(fs.read("d/f").unwrap(), b"lost", "the page cache still has the bytes");
        fs.clear_faults();
        fs.append("d/f", b"kept").unwrap();
        fs.sync("d/f").expect("a later fsync succeeds without writing the failed pages");
        fs.crash();
        assert_eq!(fs.read("d/f").unwrap(), b"\0\0\0\0kept");
        assert_eq!(log.fired(FaultKind::FsyncFailure), 1);
    }

    #[test]
    fn truncating_after_a_failed_fsync_forgets_the_lost_range() {
        let (fs, _log) = faulty(DiskFaults::none());
        fs.append("d/f", b"synced").unwrap();
        fs.sync("d/f").unwrap();
        fs.set_faults(
            DiskFaults { fsync_failure: Ratio::ALWAYS, ..DiskFaults::none() },
            Prng::from_seed(1),
            Arc::new(FaultLog::new()),
        );
        fs.append("d/f", b"frame").unwrap();
        assert!(fs.sync("d/f").is_err());
        fs.truncate("d/f", 6).unwrap();
        fs.crash();
        assert_eq!(fs.read("d/f").unwrap(), b"synced");
    }

    #[test]
    fn read_errors_and_disk_full_fail_without_side_effects() {
        let (fs, log) = faulty(DiskFaults {
            read_error: Ratio::ALWAYS,
            disk_full: Ratio::ALWAYS,
            ..DiskFaults::none()
        });
        assert!(matches!(fs.append("d/f", b"x"), Err(FsError::Io(_))));
        assert!(matches!(fs.write("d/g", b"x"), Err(FsError::Io(_))));
        assert!(!fs.exists("d/f") && !fs.exists("d/g"), "a full disk wrote nothing");
        fs.clear_faults();
        fs.append("d/f", b"data").unwrap();
        fs.set_faults(
            DiskFaults { read_error: Ratio::ALWAYS, ..DiskFaults::none() },
            Prng::from_seed(2),
            log.clone(),
        );
        assert!(matches!(fs.read("d/f"), Err(FsError::Io(_))));
        assert!(matches!(fs.read_range("d/f", 0, 2), Err(FsError::Io(_))));
        assert_eq!(log.god_view(|| fs.read("d/f")).unwrap(), b"data", "oracles read the truth");
        assert_eq!(log.fired(FaultKind::DiskFull), 2);
        assert_eq!(log.fired(FaultKind::ReadError), 2);
    }

    #[test]
    fn bit_rot_flips_one_synced_byte_for_readers_but_not_for_the_god_view() {
        let (fs, log) = faulty(DiskFaults { bit_rot: Ratio::ALWAYS, ..DiskFaults::none() });
        fs.append("d/f", b"0123456789").unwrap();
        fs.sync("d/f").unwrap();
        let read = fs.read("d/f").unwrap();
        let flipped = read.iter().zip(b"0123456789").filter(|(a, b)| a != b).count();
        assert_eq!(flipped, 1, "exactly one byte rots: {read:?}");
        let whole = fs.read_range("d/f", 0, 10).unwrap();
        assert_eq!(whole, read, "read_range sees the same rot");
        assert_eq!(log.god_view(|| fs.read("d/f")).unwrap(), b"0123456789");
        fs.crash();
        assert_eq!(fs.read("d/f").unwrap(), read, "rot survives a crash");
        fs.clear_faults();
        assert_eq!(fs.read("d/f").unwrap(), b"0123456789", "clearing faults scrubs the rot");
    }

    #[test]
    fn torn_write_keeps_a_prefix_of_the_unsynced_tail() {
        let mut kept_lengths = BTreeSet::new();
        for seed in 0..40 {
            let fs = fs_with_dir("d");
            fs.set_faults(
                DiskFaults { torn_write: Ratio::ALWAYS, ..DiskFaults::none() },
                Prng::from_seed(seed),
                Arc::new(FaultLog::new()),
            );
            fs.append("d/f", b"ab").unwrap();
            fs.sync("d/f").unwrap();
            fs.append("d/f", b"cdefgh").unwrap();
            fs.crash();
            let after = fs.read("d/f").unwrap();
            assert!(b"abcdefgh".starts_with(&after) && after.len() >= 2, "{after:?}");
            kept_lengths.insert(after.len());
        }
        assert!(kept_lengths.len() > 3, "prefixes of several lengths: {kept_lengths:?}");
    }

    #[test]
    fn faults_are_reproducible_per_seed() {
        let outcomes = |seed: u64| {
            let fs = fs_with_dir("d");
            let faults = DiskFaults {
                fsync_failure: Ratio::new(1, 3),
                read_error: Ratio::new(1, 3),
                disk_full: Ratio::new(1, 3),
                ..DiskFaults::none()
            };
            fs.set_faults(faults, Prng::from_seed(seed), Arc::new(FaultLog::new()));
            (0..30)
                .map(|i| {
                    let path = format!("d/f{}", i % 3);
                    (fs.append(&path, b"x").is_ok(), fs.sync(&path).is_ok(), fs.read(&path).is_ok())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(outcomes(5), outcomes(5));
        assert_ne!(outcomes(5), outcomes(6));
    }
}
