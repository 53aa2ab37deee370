//! An in-memory [`RemoteStorage`] shared by the whole simulated cluster, with seeded faults.
//!
//! Every operation draws its fate from the store's own stream when it is issued (first poll),
//! waits its latency on the virtual clock, then takes effect atomically at the end of that
//! latency: that instant is the operation's linearization point. Dropping the future before
//! then cancels the operation, which then has no effect.
//!
//! A transient failure of a `put` or `delete` may still have taken effect (a timeout after
//! the write landed): retries must be idempotent, as against a real object store.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{Clock, RemoteError, RemoteObject, RemoteStorage};

use crate::clock::lock;
use crate::executor::SimExecutor;
use crate::network::NETWORK_NODE;
use crate::prng::{Prng, Ratio, Streams};

/// Fault rates of the remote store. The default is fault-free with no latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteFaults {
    /// Each operation takes a uniformly drawn latency in `0..=latency_ms_max`.
    pub latency_ms_max: u64,
    /// Any operation fails with [`RemoteError::Transient`].
    pub transient_failure: Ratio,
    /// A get of an object that exists answers [`RemoteError::NotFound`]: a reader racing a
    /// garbage collector that deleted the object between listing and reading it.
    pub not_found: Ratio,
    /// Given a transient failure of a `put` or `delete`, the write happened anyway.
    pub failed_write_applied: Ratio,
    /// Given a failed `put` that happened anyway, only a prefix of the object landed (a
    /// multipart upload completed with parts missing, a non-atomic store): readers must check
    /// what they read.
    pub partial_upload: Ratio,
    /// A slow operation (an object store's latency tail): its latency is drawn in
    /// `latency_ms_max..=latency_tail_ms_max` instead, so that with a small `latency_ms_max`
    /// most operations take a few ms and some take hundreds. Drawn from a stream of its own
    /// (`remote-latency-tail`), so that the store's other draws are what they were without it.
    pub latency_tail: Ratio,
    pub latency_tail_ms_max: u64,
}

impl RemoteFaults {
    /// No latency, no failure.
    pub fn none() -> RemoteFaults {
        RemoteFaults::default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Fate {
    latency_ms: u64,
    transient_failure: bool,
    not_found: bool,
    failed_write_applied: bool,
    partial_upload: bool,
    /// Per mille of the object that a partial upload keeps.
    partial_keep_permille: u64,
}

#[derive(Debug)]
struct RemoteState {
    /// `Arc` so that a get clones a pointer, not the object.
    objects: BTreeMap<String, Arc<Vec<u8>>>,
    faults: RemoteFaults,
    prng: Prng,
    /// The latency tail's own stream.
    tail_prng: Prng,
    operations: u64,
    /// Damage at rest found by reads (see [`SimRemoteStorage::set_rot_on_read`]).
    rot: Option<ReadRot>,
    /// Every damage done at rest, in order (path, bytes before, bytes after), for the repair.
    damaged: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Repairs run so far ([`SimRemoteStorage::repair_damage`]).
    repairs: u64,
}

/// Bit rot at rest that a read finds: a get of an object whose path contains `scope` first
/// damages it, with probability `ratio`, at most `left` more times; what it damaged is kept
/// for the repair.
#[derive(Debug)]
struct ReadRot {
    ratio: Ratio,
    scope: String,
    left: u32,
    prng: Prng,
    /// Damages done, repaired or not.
    count: usize,
}

impl RemoteState {
    /// Maybe damages the object at `path` before a read sees it (one draw per read in scope).
    fn maybe_rot(&mut self, path: &str) {
        let Some(rot) = self.rot.as_mut() else { return };
        if rot.left == 0 || !path.contains(rot.scope.as_str()) || !rot.prng.chance(rot.ratio) {
            return;
        }
        let Some(object) = self.objects.get_mut(path).filter(|object| !object.is_empty()) else {
            return;
        };
        let original = object.as_ref().clone();
        let mut damaged = original.clone();
        let at = rot.prng.below(damaged.len() as u64) as usize;
        damaged[at] ^= rot.prng.range_inclusive(1, 255) as u8;
        *object = Arc::new(damaged.clone());
        rot.left -= 1;
        rot.count += 1;
        self.damaged.push((path.to_string(), original, damaged));
    }
}

/// The cluster's object store. Cloning shares it.
#[derive(Clone)]
pub struct SimRemoteStorage {
    state: Arc<Mutex<RemoteState>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SimRemoteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRemoteStorage")
            .field("object_count", &self.object_count())
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

impl SimRemoteStorage {
    /// A store timed by `executor`'s virtual clock, drawing its faults from
    /// `streams.stream("remote")`.
    pub fn new(
        executor: &SimExecutor,
        streams: &Streams,
        faults: RemoteFaults,
    ) -> SimRemoteStorage {
        // Only monotonic time is read, which every node shares: the node id does not matter.
        let store = SimRemoteStorage::with_clock(
            executor.clock_for(NETWORK_NODE),
            streams.stream("remote"),
            faults,
        );
        lock(&store.state).tail_prng = streams.stream("remote-latency-tail");
        store
    }

    /// A store drawing its faults from `prng`, which should be a stream of its own; `clock`
    /// only times latencies, so any node's clock will do.
    pub fn with_clock(clock: Arc<dyn Clock>, prng: Prng, faults: RemoteFaults) -> SimRemoteStorage {
        SimRemoteStorage {
            state: Arc::new(Mutex::new(RemoteState {
                objects: BTreeMap::new(),
                faults,
                prng,
                // Replaced by `new` with the seed's stream; a store built here from one stream
                // draws its tail from a fixed one.
                tail_prng: Prng::from_seed(0),
                operations: 0,
                rot: None,
                damaged: Vec::new(),
                repairs: 0,
            })),
            clock,
        }
    }

    /// Changes the fault rates for operations issued from now on.
    pub fn set_faults(&self, faults: RemoteFaults) {
        lock(&self.state).faults = faults;
    }

    pub fn faults(&self) -> RemoteFaults {
        lock(&self.state).faults
    }

    /// The object as stored now, bypassing latency and faults (for checkers).
    pub fn peek(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.state).objects.get(path).map(|bytes| bytes.as_ref().clone())
    }

    /// Deletes an object at once, bypassing latency and faults (the world damaging the store
    /// on purpose); whether it was there.
    pub fn remove_now(&self, path: &str) -> bool {
        lock(&self.state).objects.remove(path).is_some()
    }

    /// Stores `bytes` at `path` now, bypassing latency and faults and drawing nothing (a test
    /// seeding the store with what an earlier, committed upload left).
    pub fn put_now(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.state).objects.insert(path.to_string(), Arc::new(bytes));
    }

    /// Every stored path, sorted (for checkers).
    pub fn paths(&self) -> Vec<String> {
        lock(&self.state).objects.keys().cloned().collect()
    }

    pub fn object_count(&self) -> usize {
        lock(&self.state).objects.len()
    }

    /// Operations issued so far.
    pub fn operations(&self) -> u64 {
        lock(&self.state).operations
    }

    /// Damages the stored object at `path` in place (bit rot at rest, bypassing latency and
    /// faults): the byte at `index` modulo its length is XORed with `flip` (made non-zero).
    /// Returns the object's bytes before and after, or `None` for a missing or empty object.
    pub fn damage(&self, path: &str, index: u64, flip: u8) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut state = lock(&self.state);
        let object = state.objects.get_mut(path)?;
        if object.is_empty() {
            return None;
        }
        let original = object.as_ref().clone();
        let mut damaged = original.clone();
        let at = (index % damaged.len() as u64) as usize;
        damaged[at] ^= flip.max(1);
        *object = Arc::new(damaged.clone());
        state.damaged.push((path.to_string(), original.clone(), damaged.clone()));
        Some((original, damaged))
    }

    /// From now on, a read of an object whose path contains `scope` first damages it at
    /// rest with probability `ratio` (one byte flipped), at most `damages_max` times in all,
    /// drawing from `prng` (a stream of its own). `Ratio::NEVER` switches it off.
    pub fn set_rot_on_read(&self, ratio: Ratio, scope: &str, damages_max: u32, prng: Prng) {
        let mut state = lock(&self.state);
        state.rot = (!ratio.is_never()).then(|| ReadRot {
            ratio,
            scope: scope.to_string(),
            left: damages_max,
            prng,
            count: 0,
        });
    }

    /// Stops the rot on read and repairs every damage done at rest ([`Self::damage`] and the
    /// rot on read), newest first, so that an object damaged twice gets back its bytes from
    /// before the first; an object deleted or replaced since is left alone. Returns the paths
    /// repaired.
    pub fn repair_damage(&self) -> Vec<String> {
        let damaged = {
            let mut state = lock(&self.state);
            if let Some(rot) = state.rot.as_mut() {
                rot.left = 0;
            }
            state.repairs += 1;
            std::mem::take(&mut state.damaged)
        };
        damaged
            .into_iter()
            .rev()
            .filter_map(|(path, original, damaged)| {
                self.repair(&path, &damaged, original).then_some(path)
            })
            .collect()
    }

    /// Repairs run so far: a snapshot damaged before one may restore whole after it.
    pub fn repairs(&self) -> u64 {
        lock(&self.state).repairs
    }

    /// Damages the rot on read did so far, repaired or not.
    pub fn rot_count(&self) -> usize {
        lock(&self.state).rot.as_ref().map_or(0, |rot| rot.count)
    }

    /// Puts `original` back at `path` if the object there is still `damaged` (a repair from
    /// a replica of the store); an object deleted or replaced since is left alone. Returns
    /// whether it repaired.
    fn repair(&self, path: &str, damaged: &[u8], original: Vec<u8>) -> bool {
        let mut state = lock(&self.state);
        match state.objects.get_mut(path) {
            Some(object) if object.as_slice() == damaged => {
                *object = Arc::new(original);
                true
            }
            _ => false,
        }
    }

    /// Draws every decision of one operation, always the same number of draws whatever the
    /// rates, so that changing one rate does not reshuffle the others.
    fn draw_fate(&self) -> Fate {
        let mut state = lock(&self.state);
        let faults = state.faults;
        state.operations += 1;
        let slow = !faults.latency_tail.is_never() && state.tail_prng.chance(faults.latency_tail);
        let tail_ms = if slow {
            let low = faults.latency_ms_max;
            Some(state.tail_prng.range_inclusive(low, faults.latency_tail_ms_max.max(low)))
        } else {
            None
        };
        let prng = &mut state.prng;
        let latency_ms = prng.range_inclusive(0, faults.latency_ms_max);
        Fate {
            latency_ms: tail_ms.unwrap_or(latency_ms),
            transient_failure: prng.chance(faults.transient_failure),
            not_found: prng.chance(faults.not_found),
            failed_write_applied: prng.chance(faults.failed_write_applied),
            partial_upload: prng.chance(faults.partial_upload),
            partial_keep_permille: prng.below(1000),
        }
    }

    /// Issues an operation: draws its fate, waits its latency, then runs `apply` on the store
    /// (or fails it).
    fn operate<T: Send + 'static>(
        &self,
        describe: String,
        is_write: bool,
        read_path: Option<String>,
        apply: impl FnOnce(&mut BTreeMap<String, Arc<Vec<u8>>>, Fate) -> Result<T, RemoteError>
            + Send
            + 'static,
    ) -> BoxFuture<'static, Result<T, RemoteError>> {
        let store = self.clone();
        async move {
            let fate = store.draw_fate();
            let deadline_ms = store.clock.now_mono_ms().saturating_add(fate.latency_ms);
            store.clock.sleep_until(deadline_ms).await;
            let mut state = lock(&store.state);
            if let Some(path) = &read_path {
                state.maybe_rot(path);
            }
            if fate.transient_failure {
                if is_write && fate.failed_write_applied {
                    // The outcome is dropped on purpose: the caller sees the failure.
                    let _ = apply(&mut state.objects, fate);
                }
                return Err(RemoteError::Transient(format!("injected fault: {describe}")));
            }
            apply(&mut state.objects, fate)
        }
        .boxed()
    }
}

impl RemoteStorage for SimRemoteStorage {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        let path = path.to_string();
        let bytes = Arc::new(bytes);
        self.operate(format!("put {path}"), true, None, move |objects, fate| {
            // Only a failed put that landed anyway can be partial (see `operate`).
            let bytes = if fate.transient_failure && fate.partial_upload {
                let keep = bytes.len() as u64 * fate.partial_keep_permille / 1000;
                Arc::new(bytes[..keep as usize].to_vec())
            } else {
                bytes
            };
            objects.insert(path, bytes);
            Ok(())
        })
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.get_range(path, 0..u64::MAX)
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let path = path.to_string();
        self.operate(format!("get {path}"), false, Some(path.clone()), move |objects, fate| {
            let object = match objects.get(&path) {
                Some(object) if !fate.not_found => object,
                _ => return Err(RemoteError::NotFound(path)),
            };
            let len = object.len() as u64;
            let start = range.start.min(len);
            let end = range.end.clamp(start, len);
            // Both bounds are at most the object's length, which fits in usize.
            let (start, end) = (start as usize, end as usize);
            Ok(object[start..end].to_vec())
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        let prefix = prefix.to_string();
        self.operate(format!("list {prefix}"), false, None, move |objects, _fate| {
            Ok(objects
                .range(prefix.clone()..)
                .take_while(|(path, _)| path.starts_with(&prefix))
                .map(|(path, bytes)| RemoteObject {
                    path: path.clone(),
                    size_bytes: bytes.len() as u64,
                })
                .collect())
        })
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        let path = path.to_string();
        self.operate(format!("delete {path}"), true, None, move |objects, _fate| {
            objects.remove(&path);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(executor: &SimExecutor, faults: RemoteFaults) -> SimRemoteStorage {
        SimRemoteStorage::new(executor, &Streams::new(1), faults)
    }

    #[test]
    fn put_get_list_delete_without_faults() {
        let executor = SimExecutor::new(&Streams::new(1));
        let remote = store(&executor, RemoteFaults::default());
        let client = remote.clone();
        let result = executor.block_on(
            1,
            "client",
            async move {
                client.put("snap/1/a", b"alpha".to_vec()).await?;
                client.put("snap/1/b", b"bravo!".to_vec()).await?;
                client.put("snap/2/a", b"x".to_vec()).await?;
                client.put("snap/1/a", b"ALPHA".to_vec()).await?;
                let whole = client.get("snap/1/a").await?;
                let part = client.get_range("snap/1/b", 2..4).await?;
                let clipped = client.get_range("snap/1/b", 4..100).await?;
                let past_end = client.get_range("snap/1/b", 50..100).await?;
                let listed = client.list("snap/1/").await?;
                client.delete("snap/1/a").await?;
                client.delete("snap/1/a").await?;
                let missing = client.get("snap/1/a").await;
                Ok::<_, RemoteError>((whole, part, clipped, past_end, listed, missing))
            },
            1_000,
        );
        let (whole, part, clipped, past_end, listed, missing) =
            result.expect("runs").expect("no faults");
        assert_eq!(whole, b"ALPHA");
        assert_eq!(part, b"av");
        assert_eq!(clipped, b"o!");
        assert_eq!(past_end, b"");
        assert_eq!(
            listed,
            vec![
                RemoteObject { path: "snap/1/a".into(), size_bytes: 5 },
                RemoteObject { path: "snap/1/b".into(), size_bytes: 6 },
            ]
        );
        assert_eq!(missing, Err(RemoteError::NotFound("snap/1/a".into())));
        assert_eq!(remote.paths(), vec!["snap/1/b", "snap/2/a"]);
        assert_eq!(executor.now_mono_ms(), 0, "no latency configured");
    }

    #[test]
    fn latency_uses_virtual_time_and_effects_land_at_the_end() {
        let executor = SimExecutor::new(&Streams::new(2));
        let remote =
            store(&executor, RemoteFaults { latency_ms_max: 100, ..RemoteFaults::default() });
        let client = remote.clone();
        executor.spawn(
            1,
            "put",
            async move {
                client.put("k", b"v".to_vec()).await.ok();
            }
            .boxed(),
        );
        executor.step();
        let issued_at = executor.now_mono_ms();
        executor.run_to_completion(100).expect("finishes");
        assert!(executor.now_mono_ms() - issued_at <= 100);
        assert_eq!(remote.peek("k"), Some(b"v".to_vec()));
    }

    #[test]
    fn injected_faults_show_up_at_roughly_their_rates() {
        let executor = SimExecutor::new(&Streams::new(3));
        let remote = store(&executor, RemoteFaults::default());
        let seeded = remote.clone();
        executor
            .block_on(1, "seed", async move { seeded.put("obj", b"data".to_vec()).await }, 100)
            .expect("runs")
            .expect("no faults while seeding");
        remote.set_faults(RemoteFaults {
            latency_ms_max: 5,
            transient_failure: Ratio::new(1, 4),
            not_found: Ratio::new(1, 4),
            failed_write_applied: Ratio::new(1, 2),
            ..RemoteFaults::default()
        });
        let client = remote.clone();
        let outcomes = executor
            .block_on(
                1,
                "reader",
                async move {
                    let mut outcomes = Vec::new();
                    for _ in 0..400 {
                        outcomes.push(client.get("obj").await);
                    }
                    outcomes
                },
                100_000,
            )
            .expect("runs");
        let transient =
            outcomes.iter().filter(|o| matches!(o, Err(RemoteError::Transient(_)))).count();
        let not_found =
            outcomes.iter().filter(|o| matches!(o, Err(RemoteError::NotFound(_)))).count();
        let ok = outcomes.iter().filter(|o| o.is_ok()).count();
        assert!((60..140).contains(&transient), "about 1/4 transient: {transient}");
        assert!((50..120).contains(&not_found), "about 3/4 * 1/4 not found: {not_found}");
        assert_eq!(ok + transient + not_found, 400);
        assert_eq!(remote.peek("obj"), Some(b"data".to_vec()), "faults never corrupt the store");
    }

    #[test]
    fn a_failed_write_may_or_may_not_have_landed() {
        let executor = SimExecutor::new(&Streams::new(4));
        let remote = store(
            &executor,
            RemoteFaults {
                transient_failure: Ratio::ALWAYS,
                failed_write_applied: Ratio::new(1, 2),
                ..RemoteFaults::default()
            },
        );
        let client = remote.clone();
        let results = executor
            .block_on(
                1,
                "writer",
                async move {
                    let mut results = Vec::new();
                    for index in 0..40 {
                        results.push(client.put(&format!("obj{index:02}"), vec![1]).await);
                    }
                    results
                },
                10_000,
            )
            .expect("runs");
        assert!(results.iter().all(|r| matches!(r, Err(RemoteError::Transient(_)))));
        let landed = remote.object_count();
        assert!(landed > 5 && landed < 35, "some failed puts landed, some did not: {landed}");
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let run = |seed: u64| {
            let executor = SimExecutor::new(&Streams::new(seed));
            let remote = SimRemoteStorage::with_clock(
                executor.clock_for(0),
                Streams::new(seed).stream("remote"),
                RemoteFaults {
                    latency_ms_max: 50,
                    transient_failure: Ratio::new(1, 3),
                    ..RemoteFaults::default()
                },
            );
            let client = remote.clone();
            executor
                .block_on(
                    1,
                    "writer",
                    async move {
                        let mut results = Vec::new();
                        for index in 0..30 {
                            results.push(client.put(&format!("o{index}"), vec![]).await.is_ok());
                        }
                        results
                    },
                    10_000,
                )
                .map(|results| (results, executor.now_mono_ms()))
                .expect("runs")
        };
        assert_eq!(run(8), run(8));
        assert_ne!(run(8), run(9));
    }

    #[test]
    fn a_failed_put_that_landed_may_be_partial() {
        let executor = SimExecutor::new(&Streams::new(5));
        let remote = store(
            &executor,
            RemoteFaults {
                transient_failure: Ratio::ALWAYS,
                failed_write_applied: Ratio::ALWAYS,
                partial_upload: Ratio::ALWAYS,
                ..RemoteFaults::default()
            },
        );
        let client = remote.clone();
        let object: Vec<u8> = (0..200u8).collect();
        let written = object.clone();
        executor
            .block_on(
                1,
                "writer",
                async move {
                    for index in 0..20 {
                        assert!(client
                            .put(&format!("o{index:02}"), written.clone())
                            .await
                            .is_err());
                    }
                },
                10_000,
            )
            .expect("runs");
        let stored: Vec<Vec<u8>> = remote.paths().iter().filter_map(|p| remote.peek(p)).collect();
        assert_eq!(stored.len(), 20);
        assert!(stored.iter().all(|bytes| object.starts_with(bytes) && bytes.len() < 200));
        assert!(stored.iter().any(|bytes| bytes.len() > 50), "prefixes of varied lengths");
    }

    #[test]
    fn a_latency_tail_makes_some_operations_two_orders_of_magnitude_slower() {
        let executor = SimExecutor::new(&Streams::new(6));
        let remote = store(
            &executor,
            RemoteFaults {
                latency_ms_max: 5,
                latency_tail: Ratio::new(1, 10),
                latency_tail_ms_max: 500,
                ..RemoteFaults::default()
            },
        );
        let client = remote.clone();
        let clock = executor.clock_for(1);
        let latencies = executor
            .block_on(
                1,
                "reader",
                async move {
                    let mut latencies = Vec::new();
                    for _ in 0..400 {
                        let before = clock.now_mono_ms();
                        let _ = client.get("missing").await;
                        latencies.push(clock.now_mono_ms() - before);
                    }
                    latencies
                },
                100_000,
            )
            .expect("runs");
        let fast = latencies.iter().filter(|ms| **ms <= 5).count();
        let slow = latencies.iter().filter(|ms| **ms > 50).count();
        assert!(latencies.iter().all(|ms| *ms <= 500), "bounded by the tail's maximum");
        assert!((320..400).contains(&fast), "most operations take a few ms: {fast}");
        assert!((15..70).contains(&slow), "about one in ten of hundreds of ms: {slow}");
    }

    #[test]
    fn a_latency_tail_switched_off_leaves_the_stores_draws_unchanged() {
        let latencies = |faults: RemoteFaults| {
            let executor = SimExecutor::new(&Streams::new(7));
            let client = store(&executor, faults);
            let clock = executor.clock_for(1);
            executor
                .block_on(
                    1,
                    "reader",
                    async move {
                        let mut out = Vec::new();
                        for _ in 0..50 {
                            let before = clock.now_mono_ms();
                            let ok = client.get("missing").await.is_ok();
                            out.push((clock.now_mono_ms() - before, ok));
                        }
                        out
                    },
                    10_000,
                )
                .expect("runs")
        };
        let base = RemoteFaults {
            latency_ms_max: 40,
            transient_failure: Ratio::new(1, 3),
            ..RemoteFaults::default()
        };
        let off = RemoteFaults { latency_tail: Ratio::NEVER, latency_tail_ms_max: 900, ..base };
        assert_eq!(latencies(base), latencies(off));
    }

    #[test]
    fn damage_flips_a_stored_byte_and_the_repair_undoes_it_newest_first_unless_replaced() {
        let executor = SimExecutor::new(&Streams::new(8));
        let remote = store(&executor, RemoteFaults::default());
        let seeded = remote.clone();
        executor
            .block_on(1, "seed", async move { seeded.put("obj", b"abcd".to_vec()).await }, 100)
            .expect("runs")
            .expect("no faults");
        assert_eq!(remote.damage("nothing", 0, 1), None);
        let (original, damaged) = remote.damage("obj", 6, 0).expect("present");
        assert_eq!(original, b"abcd");
        assert_eq!(damaged, b"abbd", "byte 6 mod 4 XOR 1");
        assert_eq!(remote.peek("obj"), Some(damaged.clone()));
        let (_, twice) = remote.damage("obj", 0, 0xff).expect("present");
        assert_ne!(twice, damaged);
        assert_eq!(remote.repair_damage(), vec!["obj".to_string(), "obj".to_string()]);
        assert_eq!(remote.peek("obj"), Some(original), "the bytes from before the first damage");
        remote.put_now("obj", b"new".to_vec());
        remote.damage("obj", 0, 1).expect("present");
        remote.put_now("obj", b"replaced".to_vec());
        assert!(remote.repair_damage().is_empty(), "a replaced object is left alone");
        assert_eq!(remote.peek("obj"), Some(b"replaced".to_vec()));
    }

    #[test]
    fn rot_on_read_damages_objects_in_scope_at_rest_and_is_repaired() {
        let executor = SimExecutor::new(&Streams::new(9));
        let remote = store(&executor, RemoteFaults::default());
        remote.put_now("kv/b/snap-1/MANIFEST", b"manifest".to_vec());
        remote.put_now("kv/b/shared/run", b"run".to_vec());
        remote.set_rot_on_read(Ratio::ALWAYS, "/snap-", 1, Prng::from_seed(3));
        let client = remote.clone();
        let reads = executor
            .block_on(
                1,
                "reader",
                async move {
                    let first = client.get("kv/b/snap-1/MANIFEST").await;
                    let second = client.get("kv/b/snap-1/MANIFEST").await;
                    let shared = client.get("kv/b/shared/run").await;
                    (first, second, shared)
                },
                1_000,
            )
            .expect("runs");
        let (first, second, shared) = reads;
        let damaged = first.expect("read");
        assert_ne!(damaged, b"manifest", "damaged before the first read saw it");
        assert_eq!(second.expect("read"), damaged, "at rest: every later read sees it");
        assert_eq!(shared.expect("read"), b"run", "out of scope");
        assert_eq!(remote.rot_count(), 1, "at most one damage");
        assert_eq!(remote.repair_damage(), vec!["kv/b/snap-1/MANIFEST".to_string()]);
        assert_eq!(remote.peek("kv/b/snap-1/MANIFEST"), Some(b"manifest".to_vec()));
    }
}
