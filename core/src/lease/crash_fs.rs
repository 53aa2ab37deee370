//! A [`LocalFs`] double with a crash model (and [`CrashRemote`], its remote storage), for the lease tests (unit and shuttle): bytes
//! written reach the "disk" only when synced; a rename and a removal are durable when they
//! return (the `LocalFs` contract), so a rename of a file never synced installs an empty
//! file; [`CrashFs::crash`] returns what a crash now would leave. Mutating calls can be made
//! to fail from the `n`-th on ([`CrashFs::fail_from`]), to stop an update at any step. A std
//! mutex: nothing else happens while it is held (under shuttle too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{FsError, LocalFs, RemoteError, RemoteObject, RemoteStorage};

#[derive(Debug, Clone, Default)]
struct CrashFsState {
    /// What reads see.
    files: BTreeMap<String, Vec<u8>>,
    /// What survives a crash.
    durable: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    mutations: usize,
    fail_from: Option<usize>,
}

#[derive(Debug, Default)]
pub struct CrashFs {
    state: Mutex<CrashFsState>,
}

impl CrashFs {
    fn with<T>(&self, f: impl FnOnce(&mut CrashFsState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Every mutating call from the `n`-th (0-based, counted from now) fails; `None` heals.
    pub fn fail_from(&self, n: Option<usize>) {
        self.with(|s| {
            s.mutations = 0;
            s.fail_from = n;
        });
    }

    /// What a crash now leaves: the durable files only, nothing failing.
    pub fn crash(&self) -> CrashFs {
        self.with(|s| CrashFs {
            state: Mutex::new(CrashFsState {
                files: s.durable.clone(),
                durable: s.durable.clone(),
                dirs: s.dirs.clone(),
                mutations: 0,
                fail_from: None,
            }),
        })
    }

    /// Every file and its bytes, as reads see them.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.with(|s| s.files.clone())
    }

    fn mutate<T>(
        &self,
        f: impl FnOnce(&mut CrashFsState) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.with(|s| {
            let index = s.mutations;
            s.mutations += 1;
            if s.fail_from.is_some_and(|from| index >= from) {
                return Err(FsError::Io("injected failure".into()));
            }
            f(s)
        })
    }
}

fn not_found(path: &str) -> FsError {
    FsError::NotFound(path.to_string())
}

impl LocalFs for CrashFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.with(|s| s.dirs.insert(path.to_string()));
        Ok(())
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let prefix = format!("{path}/");
        Ok(self.with(|s| {
            let names: BTreeSet<String> = s
                .files
                .keys()
                .filter_map(|file| file.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
                .collect();
            names.into_iter().collect()
        }))
    }
    fn exists(&self, path: &str) -> bool {
        self.with(|s| s.files.contains_key(path) || s.dirs.contains(path))
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.mutate(|s| {
            s.files.entry(path.to_string()).or_default().extend_from_slice(bytes);
            Ok(())
        })
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.mutate(|s| {
            s.files.insert(path.to_string(), bytes.to_vec());
            Ok(())
        })
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.mutate(|s| {
            let bytes = s.files.get(path).cloned().ok_or_else(|| not_found(path))?;
            s.durable.insert(path.to_string(), bytes);
            Ok(())
        })
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.with(|s| s.files.get(path).cloned()).ok_or_else(|| not_found(path))
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let bytes = self.read(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(bytes[start..start.saturating_add(len).min(bytes.len())].to_vec())
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        Ok(self.read(path)?.len() as u64)
    }
    fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.mutate(|s| {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            s.files.get_mut(path).ok_or_else(|| not_found(path))?.truncate(len);
            if let Some(durable) = s.durable.get_mut(path) {
                durable.truncate(len);
            }
            Ok(())
        })
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.mutate(|s| {
            let bytes = s.files.remove(from).ok_or_else(|| not_found(from))?;
            s.files.insert(to.to_string(), bytes);
            // The rename is durable; the content only as far as it was synced.
            let durable = s.durable.remove(from).unwrap_or_default();
            s.durable.insert(to.to_string(), durable);
            Ok(())
        })
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.mutate(|s| {
            s.files.remove(path);
            s.durable.remove(path);
            Ok(())
        })
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        let prefix = format!("{path}/");
        self.mutate(|s| {
            s.files.retain(|file, _| !file.starts_with(&prefix));
            s.durable.retain(|file, _| !file.starts_with(&prefix));
            Ok(())
        })
    }
    fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// A [`RemoteStorage`] double for the lease crash tests: objects in memory, a put atomic and
/// durable when it returns (so a crash loses nothing of it); the mutating calls (put, delete)
/// fail from the `n`-th on ([`CrashRemote::fail_from`]) with a fatal error (not retried), to
/// stop the mirroring of an update at any step. Every future is ready at once.
#[derive(Debug, Default)]
pub struct CrashRemote {
    state: Mutex<CrashRemoteState>,
}

#[derive(Debug, Default)]
struct CrashRemoteState {
    objects: BTreeMap<String, Vec<u8>>,
    mutations: usize,
    fail_from: Option<usize>,
}

impl CrashRemote {
    fn with<T>(&self, f: impl FnOnce(&mut CrashRemoteState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Every put and delete from the `n`-th (0-based, counted from now) fails; `None` heals.
    pub fn fail_from(&self, n: Option<usize>) {
        self.with(|s| {
            s.mutations = 0;
            s.fail_from = n;
        });
    }

    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.with(|s| s.objects.clone())
    }

    /// Stores `bytes` at `path` now, bypassing the failures.
    pub fn put_now(&self, path: &str, bytes: Vec<u8>) {
        self.with(|s| s.objects.insert(path.to_string(), bytes));
    }

    fn mutate(
        &self,
        f: impl FnOnce(&mut CrashRemoteState),
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let result = self.with(|s| {
            let index = s.mutations;
            s.mutations += 1;
            if s.fail_from.is_some_and(|from| index >= from) {
                return Err(RemoteError::Fatal("injected failure".into()));
            }
            f(s);
            Ok(())
        });
        futures::future::ready(result).boxed()
    }
}

impl RemoteStorage for CrashRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        let path = path.to_string();
        self.mutate(move |s| {
            s.objects.insert(path, bytes);
        })
    }
    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let found = self.with(|s| s.objects.get(path).cloned());
        let result = found.ok_or_else(|| RemoteError::NotFound(path.to_string()));
        futures::future::ready(result).boxed()
    }
    fn get_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let found = self.with(|s| s.objects.get(path).cloned());
        let result = found.ok_or_else(|| RemoteError::NotFound(path.to_string())).map(|bytes| {
            let end = usize::try_from(range.end).unwrap_or(usize::MAX).min(bytes.len());
            let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
            bytes[start..end].to_vec()
        });
        futures::future::ready(result).boxed()
    }
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        let listed = self.with(|s| {
            let objects = s.objects.iter().filter(|(path, _)| path.starts_with(prefix));
            let to_object = |(path, bytes): (&String, &Vec<u8>)| RemoteObject {
                path: path.clone(),
                size_bytes: bytes.len() as u64,
            };
            objects.map(to_object).collect()
        });
        futures::future::ready(Ok(listed)).boxed()
    }
    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        let path = path.to_string();
        self.mutate(move |s| {
            s.objects.remove(&path);
        })
    }
}
