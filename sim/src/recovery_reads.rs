//! The remote reads of a recovery, counted per server and bucket at every instant.
//!
//! On a tablet server only recovery reads remote objects: the snapshot restore (a file whole
//! or in ranges) and the remote-log fetcher (a segment, prefetched or as the synchronous
//! fallback). Together they share one bound, `download-threads` requests at once per bucket:
//! the fetcher starts once the snapshot's downloads are done, never beside them. The
//! fetcher's own bounds (`fetcher_bounds.rs`) see only the fetcher, and a restore's pool
//! only the restore; this sees both, whoever wrote the code that issues the reads.
//!
//! Each server's `Env` gets a [`CountedRemote`] around the cluster's store. A read counts
//! from the call until its future is dropped (answered or abandoned), against the bucket its
//! path names (`kv/{bucket}/…` for snapshot files, `log/{bucket}/…` for segments).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::future::BoxFuture;
use futures::FutureExt;
use kvtablet_core::env::remote_storage::{RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::message::NodeId;

use crate::checker::Checker;

/// Where reads are counted, shared by every server's [`CountedRemote`].
#[derive(Debug)]
pub struct RecoveryReads {
    limit: usize,
    checker: Weak<Checker>,
    state: Mutex<ReadsState>,
}

#[derive(Debug, Default)]
struct ReadsState {
    /// Reads in flight by server and bucket directory name (`t1-b3`).
    running: BTreeMap<(NodeId, String), usize>,
    /// The first breach is reported; later ones are the same fault.
    reported: bool,
}

impl RecoveryReads {
    /// Reads of one bucket on one server beyond `limit` at once are a violation.
    pub fn new(limit: usize, checker: &Arc<Checker>) -> Arc<RecoveryReads> {
        Arc::new(RecoveryReads { limit, checker: Arc::downgrade(checker), state: Mutex::default() })
    }

    /// `inner`, with the reads `node` makes through it counted here.
    pub fn wrap(self: &Arc<Self>, node: NodeId, inner: Arc<dyn RemoteStorage>) -> CountedRemote {
        CountedRemote { node, inner, reads: self.clone() }
    }

    fn start(self: &Arc<Self>, node: NodeId, path: &str) -> Option<ReadGuard> {
        let bucket = bucket_of(path)?.to_string();
        let key = (node, bucket);
        let breach = {
            let mut state = lock(&self.state);
            let running = state.running.entry(key.clone()).or_default();
            *running += 1;
            let running = *running;
            (running > self.limit && !std::mem::replace(&mut state.reported, true))
                .then_some(running)
        };
        if let (Some(running), Some(checker)) = (breach, self.checker.upgrade()) {
            checker.violation(format!(
                "node {} runs {running} remote reads of {} at once (download-threads {}): \
                 the snapshot restore and the remote-log fetcher share that bound",
                key.0, key.1, self.limit
            ));
        }
        Some(ReadGuard { reads: self.clone(), key })
    }
}

/// The bucket directory a remote path names: its second component under `kv/` or `log/`.
fn bucket_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("kv/").or_else(|| path.strip_prefix("log/"))?;
    rest.split('/').next().filter(|bucket| !bucket.is_empty())
}

/// One read in flight; dropping it ends the read.
struct ReadGuard {
    reads: Arc<RecoveryReads>,
    key: (NodeId, String),
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.reads.state);
        if let Some(running) = state.running.get_mut(&self.key) {
            *running -= 1;
            if *running == 0 {
                state.running.remove(&self.key);
            }
        }
    }
}

/// A server's view of the remote store, its reads counted in [`RecoveryReads`].
pub struct CountedRemote {
    node: NodeId,
    inner: Arc<dyn RemoteStorage>,
    reads: Arc<RecoveryReads>,
}

impl CountedRemote {
    fn counted<T: Send + 'static>(
        &self,
        path: &str,
        read: BoxFuture<'static, Result<T, RemoteError>>,
    ) -> BoxFuture<'static, Result<T, RemoteError>> {
        let guard = self.reads.start(self.node, path);
        async move {
            let result = read.await;
            drop(guard);
            result
        }
        .boxed()
    }
}

impl RemoteStorage for CountedRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.put(path, bytes)
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.counted(path, self.inner.get(path))
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.counted(path, self.inner.get_range(path, range))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        self.inner.list(prefix)
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.delete(path)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SimExecutor;
    use crate::prng::Streams;
    use crate::remote::{RemoteFaults, SimRemoteStorage};

    #[test]
    fn reads_count_per_server_and_bucket_until_dropped_and_one_beyond_the_limit_is_named() {
        let exec = SimExecutor::new(&Streams::new(1));
        let checker = Arc::new(Checker::for_tests(exec.clock_for(0)));
        let store: Arc<dyn RemoteStorage> =
            Arc::new(SimRemoteStorage::new(&exec, &Streams::new(1), RemoteFaults::none()));
        let reads = RecoveryReads::new(2, &checker);
        let (node1, node2) = (reads.wrap(1, store.clone()), reads.wrap(2, store));
        let first = node1.get("kv/t1-b0/snap-1/MEMMANIFEST");
        let second = node1.get_range("log/t1-b0/00000000000000000000-e1.log", 0..10);
        // Another server's reads, another bucket's, and what is not a read do not count.
        let elsewhere = [
            node2.get("kv/t1-b0/snap-1/MEMMANIFEST"),
            node1.get("kv/t1-b1/snap-1/MEMMANIFEST"),
            node1.get("coordinator/remote-log/t1-b0"),
        ];
        let _put = node1.put("kv/t1-b0/snap-2/MEMMANIFEST", Vec::new());
        let _list = node1.list("log/t1-b0/");
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        drop(first);
        let third = node1.get("kv/t1-b0/shared/s1-000001.memrun");
        assert!(
            checker.violations().is_empty(),
            "an abandoned read ends: {:?}",
            checker.violations()
        );
        let fourth = node1.get("log/t1-b0/00000000000000000007-e1.log");
        let violations = checker.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("node 1 runs 3 remote reads of t1-b0"), "{violations:?}");
        drop((second, third, fourth, elsewhere));
        assert!(lock(&reads.state).running.is_empty());
    }

    #[test]
    fn a_path_names_its_bucket_under_kv_or_log_and_nothing_else() {
        assert_eq!(bucket_of("kv/t1-b3/snap-4/MANIFEST"), Some("t1-b3"));
        assert_eq!(bucket_of("kv/t1-p2-b0/shared/s1-000001.sst"), Some("t1-p2-b0"));
        assert_eq!(bucket_of("log/t1-b3/00000000000000000012-e2.log"), Some("t1-b3"));
        assert_eq!(bucket_of("coordinator/remote-log/t1-b3"), None);
        assert_eq!(bucket_of("kv//x"), None);
    }
}
