//! The leak ledger: every resource with a lifetime registers here and unregisters on drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};

/// The kinds of resources that must all be gone when a node is quiescent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    EngineSnapshot,
    EngineIterator,
    ScanSession,
    Lease,
    PrefetchSlot,
    TempFile,
    Task,
}

/// A live resource, as reported by [`Ledger::live`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveResource {
    pub id: u64,
    pub kind: ResourceKind,
    /// Who created it and why, e.g. `"node2 scan t1-b3"`.
    pub owner: String,
}

/// What happened to a ledger entry, as told to a [`LedgerObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerChange {
    Registered,
    Released,
}

/// Told of every registration and release, in order, under the ledger's lock (so it must not
/// use the ledger): lets a per-step check keep its own tally instead of walking every entry.
pub type LedgerObserver = Arc<dyn Fn(ResourceKind, &str, LedgerChange) + Send + Sync>;

#[derive(Default)]
struct LedgerState {
    next_id: u64,
    /// Owners of the live resources by kind, then by id (ids grow with registration), so that
    /// a look at a few kinds does not walk the many tasks.
    live: BTreeMap<ResourceKind, BTreeMap<u64, String>>,
    observer: Option<LedgerObserver>,
}

impl std::fmt::Debug for LedgerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerState")
            .field("next_id", &self.next_id)
            .field("live", &self.live)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl LedgerState {
    /// The live resources of the kinds `wanted` selects, in registration order.
    fn collect(&self, wanted: impl Fn(ResourceKind) -> bool) -> Vec<LiveResource> {
        let mut resources: Vec<LiveResource> = self
            .live
            .iter()
            .filter(|(kind, _)| wanted(**kind))
            .flat_map(|(kind, owners)| {
                owners.iter().map(|(id, owner)| LiveResource {
                    id: *id,
                    kind: *kind,
                    owner: owner.clone(),
                })
            })
            .collect();
        resources.sort_unstable_by_key(|resource| resource.id);
        resources
    }
}

/// Shared by every component of one process (or one simulated cluster).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    state: Arc<Mutex<LedgerState>>,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Records a new live resource; it stays live until the returned entry is dropped.
    pub fn register(&self, kind: ResourceKind, owner: impl Into<String>) -> LedgerEntry {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        let owner = owner.into();
        if let Some(observer) = &state.observer {
            observer(kind, &owner, LedgerChange::Registered);
        }
        let previous = state.live.entry(kind).or_default().insert(id, owner);
        assert!(previous.is_none(), "ledger id {id} issued twice");
        LedgerEntry { ledger: self.clone(), id, kind }
    }

    /// Every live resource, in creation order.
    pub fn live(&self) -> Vec<LiveResource> {
        lock(&self.state).collect(|_| true)
    }

    /// The live resources of the given kinds, in registration order: what [`Ledger::live`]
    /// returns filtered, without copying the owners of the others (an audit that runs after
    /// every step of a simulation looks at engine resources among many tasks).
    pub fn live_of(&self, kinds: &[ResourceKind]) -> Vec<LiveResource> {
        lock(&self.state).collect(|kind| kinds.contains(&kind))
    }

    /// Whether some live resource of one of `kinds` has an owner label that `matches`, without
    /// copying any label (a per-step check usually answers no).
    pub fn any_live_owner(&self, kinds: &[ResourceKind], matches: impl Fn(&str) -> bool) -> bool {
        let state = lock(&self.state);
        kinds.iter().any(|kind| {
            state.live.get(kind).is_some_and(|owners| owners.values().any(|owner| matches(owner)))
        })
    }

    /// Calls `visit` with the kind and owner label of every live resource of `kinds`, without
    /// copying labels or sorting (for per-step checks over many tasks). `visit` must not use
    /// the ledger: it runs under the ledger's lock.
    pub fn for_each_live_owner(
        &self,
        kinds: &[ResourceKind],
        mut visit: impl FnMut(ResourceKind, &str),
    ) {
        let state = lock(&self.state);
        for kind in kinds {
            for owner in state.live.get(kind).into_iter().flat_map(BTreeMap::values) {
                visit(*kind, owner);
            }
        }
    }

    pub fn count(&self, kind: ResourceKind) -> usize {
        lock(&self.state).live.get(&kind).map_or(0, BTreeMap::len)
    }

    fn release(&self, id: u64, kind: ResourceKind) {
        let mut state = lock(&self.state);
        let removed = state.live.get_mut(&kind).and_then(|owners| owners.remove(&id));
        let Some(owner) = removed else {
            panic!("ledger entry {id} released twice or never registered");
        };
        if let Some(observer) = &state.observer {
            observer(kind, &owner, LedgerChange::Released);
        }
    }

    /// Makes `observer` the ledger's one observer: it is first told of every live resource as
    /// registered (in kind, then registration order), then of every change as it happens.
    ///
    /// # Panics
    /// If the ledger already has an observer: two checks that each need one share a tally.
    pub fn observe(&self, observer: LedgerObserver) {
        let mut state = lock(&self.state);
        assert!(state.observer.is_none(), "the ledger already has an observer");
        for (kind, owners) in &state.live {
            for owner in owners.values() {
                observer(*kind, owner, LedgerChange::Registered);
            }
        }
        state.observer = Some(observer);
    }
}

/// Proof that a resource is live; dropping it records the release.
#[derive(Debug)]
pub struct LedgerEntry {
    ledger: Ledger,
    id: u64,
    kind: ResourceKind,
}

impl LedgerEntry {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for LedgerEntry {
    fn drop(&mut self) {
        self.ledger.release(self.id, self.kind);
    }
}

/// Locks a mutex, carrying on past poisoning: the ledger's maps stay consistent because every
/// critical section is a single insert or remove.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_entries_leave_the_ledger() {
        let ledger = Ledger::new();
        let a = ledger.register(ResourceKind::Task, "a");
        let b = ledger.register(ResourceKind::ScanSession, "b");
        assert_eq!(ledger.live().len(), 2);
        drop(a);
        assert_eq!(ledger.live().len(), 1);
        assert_eq!(ledger.count(ResourceKind::ScanSession), 1);
        assert_eq!(ledger.count(ResourceKind::Task), 0);
        drop(b);
        assert!(ledger.live().is_empty());
    }

    #[test]
    fn live_of_lists_only_the_kinds_asked_for_in_registration_order() {
        let ledger = Ledger::new();
        let _task = ledger.register(ResourceKind::Task, "task");
        let _iterator = ledger.register(ResourceKind::EngineIterator, "iterator");
        let _session = ledger.register(ResourceKind::ScanSession, "session");
        let _snapshot = ledger.register(ResourceKind::EngineSnapshot, "snapshot");
        let engine = [ResourceKind::EngineSnapshot, ResourceKind::EngineIterator];
        let owners: Vec<String> =
            ledger.live_of(&engine).into_iter().map(|resource| resource.owner).collect();
        assert_eq!(owners, ["iterator", "snapshot"]);
        let all: Vec<String> = ledger.live().into_iter().map(|resource| resource.owner).collect();
        assert_eq!(all, ["task", "iterator", "session", "snapshot"], "registration order");
        let expected: Vec<LiveResource> =
            ledger.live().into_iter().filter(|r| engine.contains(&r.kind)).collect();
        assert_eq!(ledger.live_of(&engine), expected);
        assert!(ledger.live_of(&[ResourceKind::Lease]).is_empty());
    }

    #[test]
    fn an_observer_is_told_of_the_live_resources_then_of_every_change_in_order() {
        let ledger = Ledger::new();
        let before = ledger.register(ResourceKind::Task, "before");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        ledger.observe(Arc::new(move |kind, owner, change| {
            lock(&log).push(format!("{change:?} {kind:?} {owner}"));
        }));
        let after = ledger.register(ResourceKind::TempFile, "after");
        drop(before);
        drop(after);
        assert_eq!(
            *lock(&seen),
            [
                "Registered Task before",
                "Registered TempFile after",
                "Released Task before",
                "Released TempFile after"
            ]
        );
    }
}
