//! An in-memory [`RemoteStorage`] for unit tests, with faults per object: latency (on the
//! test's virtual clock), transient failures, missing objects and corrupt bytes. It counts the
//! gets of each object and the most running at once.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::{Clock, RemoteError, RemoteObject, RemoteStorage};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Vec<u8>>,
    latency_ms: BTreeMap<String, u64>,
    /// Gets of the object still to fail transiently (`u32::MAX`: every one).
    transient_failures: BTreeMap<String, u32>,
    /// Gets of the object still to answer not-found although it is there.
    false_not_found: BTreeMap<String, u32>,
    corrupt: BTreeSet<String>,
    gets: BTreeMap<String, u32>,
    /// Every get's path, in the order asked.
    gets_in_order: Vec<String>,
    gets_running: usize,
    gets_running_max: usize,
}

pub(crate) struct MemRemote {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemRemote {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> MemRemote {
        MemRemote { clock, state: Arc::default() }
    }

    pub(crate) fn insert(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.state).objects.insert(path.to_string(), bytes);
    }

    pub(crate) fn set_latency_ms(&self, path: &str, latency_ms: u64) {
        lock(&self.state).latency_ms.insert(path.to_string(), latency_ms);
    }

    /// The next `count` gets of `path` fail transiently (`u32::MAX`: all of them).
    pub(crate) fn fail_transiently(&self, path: &str, count: u32) {
        lock(&self.state).transient_failures.insert(path.to_string(), count);
    }

    /// The next `count` gets of `path` answer not-found although it is there (a store whose
    /// reads have not caught up); a listing shows it.
    pub(crate) fn answer_not_found(&self, path: &str, count: u32) {
        lock(&self.state).false_not_found.insert(path.to_string(), count);
    }

    pub(crate) fn corrupt(&self, path: &str) {
        lock(&self.state).corrupt.insert(path.to_string());
    }

    pub(crate) fn remove(&self, path: &str) {
        lock(&self.state).objects.remove(path);
    }

    pub(crate) fn gets(&self, path: &str) -> u32 {
        lock(&self.state).gets.get(path).copied().unwrap_or(0)
    }

    /// Every get's path (a ranged get's too), in the order they were asked.
    pub(crate) fn gets_in_order(&self) -> Vec<String> {
        lock(&self.state).gets_in_order.clone()
    }

    pub(crate) fn gets_running_max(&self) -> usize {
        lock(&self.state).gets_running_max
    }
}

/// Counts a get as running until it is dropped (answered or cancelled).
struct Running(Arc<Mutex<State>>);

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.0).gets_running -= 1;
    }
}

impl RemoteStorage for MemRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.insert(path, bytes);
        futures::future::ready(Ok(())).boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let (latency_ms, running) = {
            let mut state = lock(&self.state);
            *state.gets.entry(path.to_string()).or_default() += 1;
            state.gets_in_order.push(path.to_string());
            state.gets_running += 1;
            state.gets_running_max = state.gets_running_max.max(state.gets_running);
            (state.latency_ms.get(path).copied().unwrap_or(0), Running(self.state.clone()))
        };
        let sleep = self.clock.sleep(latency_ms);
        let state = self.state.clone();
        let path = path.to_string();
        async move {
            sleep.await;
            let _running = running;
            let mut state = lock(&state);
            if let Some(left) = state.transient_failures.get_mut(&path) {
                if *left > 0 {
                    *left = left.saturating_sub(u32::from(*left != u32::MAX));
                    return Err(RemoteError::Transient(format!("{path}: injected")));
                }
            }
            if let Some(left) = state.false_not_found.get_mut(&path).filter(|left| **left > 0) {
                *left -= 1;
                return Err(RemoteError::NotFound(path));
            }
            let mut bytes = state
                .objects
                .get(&path)
                .cloned()
                .ok_or_else(|| RemoteError::NotFound(path.clone()))?;
            if state.corrupt.contains(&path) {
                if let Some(byte) = bytes.last_mut() {
                    *byte ^= 0x5a;
                }
            }
            Ok(bytes)
        }
        .boxed()
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let whole = self.get(path);
        async move {
            let bytes = whole.await?;
            let end = (range.end as usize).min(bytes.len());
            let start = (range.start as usize).min(end);
            Ok(bytes[start..end].to_vec())
        }
        .boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        let listed = lock(&self.state)
            .objects
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(path, bytes)| RemoteObject {
                path: path.clone(),
                size_bytes: bytes.len() as u64,
            })
            .collect();
        futures::future::ready(Ok(listed)).boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.remove(path);
        futures::future::ready(Ok(())).boxed()
    }
}
