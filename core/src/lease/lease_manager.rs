//! Every KV snapshot lease of the coordinator (Fluss's `KvSnapshotLeaseManager`), the number
//! of leases pinning each `(bucket, snapshot id)`, and their persistence.
//!
//! Semantics, as Fluss's:
//! - A lease pins at most one snapshot per bucket, across any tables and buckets.
//! - [`KvSnapshotLeaseManager::acquire`] always resets the expiration to now + duration (so a
//!   renewal, an acquire with no buckets, can shorten it and creates an empty lease if there
//!   was none); re-acquiring a bucket moves its pin (the old snapshot is unpinned).
//! - A release of an unknown lease or of a bucket not pinned is a successful no-op (a retry is
//!   safe); a lease whose last bucket is released is dropped; a drop of an unknown lease
//!   succeeds.
//! - Expiry is strict: a lease expires once the wall clock is *past* its expiration
//!   (`expirationTime < now` in Fluss's `expireLeases`).
//!
//! The changes (acquire, release, drop, expiry) are the crate's only: they run through
//! `SnapshotStore`, under its lock, so that retention and pins never interleave.
//!
//! Counts never go negative: a decrement of a count that is zero is a bug and asserts, and
//! [`KvSnapshotLeaseManager::check`] recounts everything from the leases.
//!
//! **Persistence: one file per lease.** Every change of a lease writes that lease's whole new
//! state to a temp file, syncs it and renames it over the lease's file (a lease whose last
//! pin goes, or that is dropped or expires, has its file removed), and only then changes the
//! state in memory, which is what retention consults. So the state a restart loads is always
//! one that was acknowledged or one being acknowledged, nothing acknowledged is lost, and
//! retention never acts on a pin or an unpin that a crash could undo. One file per lease
//! rather than one file for all: an update costs the size of the lease it changes (bounded by
//! the buckets a lease may pin), not that of every lease, and every write is a full write of
//! its lease, so there is no journal whose tail a restart must replay. Fluss does the same in
//! spirit (one ZooKeeper node per lease plus its table files, rewritten on each update).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::env::{Clock, LocalFs};
use crate::lease::kv_snapshot_lease::{expiration_passed, KvSnapshotLease};
use crate::lease::lease_config::{
    LeaseConfig, LEASED_SNAPSHOTS_PER_BUCKET_MAX, LEASE_ID_BYTES_MAX,
};
use crate::lease::lease_error::LeaseError;
use crate::lease::lease_file::{
    decode_lease_file, encode_lease_file, lease_file_name, LeaseRecord, LEASE_FILE_SUFFIX,
    TEMP_SUFFIX,
};
use crate::lease::lease_remote::{parse_remote_lease_path, remote_lease_path, RemoteLeaseCopies};
use crate::ledger::{Ledger, LedgerEntry, ResourceKind};
use crate::mutant::Mutant;
use crate::sync::{Mutex, MutexGuard};
use crate::table_bucket::TableBucket;

/// In the lease directory, once it holds every lease (see
/// [`KvSnapshotLeaseManager::open_with_remote`]).
pub const LEASE_DIR_COMPLETE: &str = "complete";

/// A pin a lease let go of: its bucket and snapshot id.
pub type Unpinned = (TableBucket, u64);

/// The manager's gauges (Fluss's coordinator metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseGauges {
    /// Leases held (Fluss's `kvSnapshotLeaseCount`).
    pub lease_count: usize,
    /// Pinned bucket slots over all leases (Fluss's `leasedKvSnapshotCount`).
    pub leased_bucket_count: usize,
    /// Distinct `(bucket, snapshot id)` pairs some lease pins.
    pub leased_snapshot_count: usize,
}

/// What an expiry check dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub lease_ids: Vec<String>,
    pub unpinned: Vec<Unpinned>,
}

struct HeldLease {
    lease: KvSnapshotLease,
    /// The version of the lease's local file (see [`KvSnapshotLeaseManager`]).
    version: u64,
    remote: RemoteCopyState,
    _entry: LedgerEntry,
}

/// Where a lease's remote copies stand (a manager that mirrors its leases only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RemoteCopyState {
    /// The version whose copy remote storage has, confirmed.
    confirmed: Option<u64>,
    /// The versions whose copies may be in remote storage (put, being put, or found there at
    /// the open): deleted once a newer one is confirmed, or with the lease.
    objects: BTreeSet<u64>,
    /// The version a put is in flight for (not handed out twice).
    putting: Option<u64>,
}

/// A lease copy to put in remote storage: the bytes of the lease's local file at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLeasePut {
    pub lease_id: String,
    pub version: u64,
    pub path: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
struct LeaseState {
    leases: BTreeMap<String, HeldLease>,
    /// Every lease by `(expiration, id)`: the expiry check reads the due ones from the front
    /// rather than scanning every lease (with 100,000 leases and none due, a scan took
    /// hundreds of microseconds under the store's lock at every check).
    by_expiration: BTreeSet<(u64, String)>,
    ref_counts: BTreeMap<(TableBucket, u64), u32>,
    leased_bucket_count: usize,
    /// The version the next write of a lease gets: above every version on disk or remote.
    next_version: u64,
    /// Leases whose remote copy is not confirmed at their version (mirroring only).
    remote_behind: BTreeSet<String>,
    /// Remote copies to delete (of leases gone, or superseded by a confirmed newer one), kept
    /// until their deletion is confirmed: a copy left behind could bring its lease back.
    remote_deletions: BTreeSet<String>,
    /// Puts handed out and not finished.
    remote_puts_in_flight: usize,
}

impl LeaseState {
    fn increment(&mut self, bucket: TableBucket, snapshot_id: u64) {
        let count = self.ref_counts.entry((bucket, snapshot_id)).or_insert(0);
        *count = count.checked_add(1).expect("a reference count below u32::MAX");
    }

    fn decrement(&mut self, bucket: TableBucket, snapshot_id: u64) {
        let count = self.ref_counts.get_mut(&(bucket, snapshot_id));
        let count = count.expect("a pin being released was counted");
        assert!(*count > 0, "reference count of {bucket} snapshot {snapshot_id} below zero");
        *count -= 1;
        if *count == 0 {
            self.ref_counts.remove(&(bucket, snapshot_id));
        }
    }

    /// The version of a write about to be made (raised even if the write fails: a file
    /// renamed by a write that then reported a failure keeps a version no other write gets).
    fn take_version(&mut self) -> u64 {
        let version = self.next_version;
        self.next_version += 1;
        version
    }

    fn leased_ids(&self, bucket: TableBucket) -> impl Iterator<Item = u64> + '_ {
        self.ref_counts.range((bucket, 0)..=(bucket, u64::MAX)).map(|((_, id), _)| *id)
    }
}

pub struct KvSnapshotLeaseManager {
    fs: Arc<dyn LocalFs>,
    dir: String,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    config: LeaseConfig,
    /// Whether every lease is also copied to remote storage (opened with its copies).
    mirrored: bool,
    state: Mutex<LeaseState>,
}

impl std::fmt::Debug for KvSnapshotLeaseManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSnapshotLeaseManager").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl KvSnapshotLeaseManager {
    /// Loads every lease file under `dir` (created if missing) and rebuilds the counts. A
    /// leftover temp file (a crash before its rename) is removed: the lease file it was to
    /// replace is still whole. A damaged lease file refuses the open: without it, retention
    /// could delete a snapshot a consumer holds. The leases are not copied to remote storage.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        dir: String,
        clock: Arc<dyn Clock>,
        ledger: Ledger,
        config: LeaseConfig,
    ) -> Result<KvSnapshotLeaseManager, LeaseError> {
        KvSnapshotLeaseManager::open_with_remote(fs, dir, clock, ledger, config, None)
    }

    /// [`KvSnapshotLeaseManager::open`] of a manager that also keeps every lease in remote
    /// storage (`remote`: every copy there, `lease_remote::fetch_remote_lease_copies`), and
    /// the rule that recovers from either side:
    ///
    /// - For each lease, the copy with the highest version wins, local or remote; a remote
    ///   copy that is damaged (checksum, or a path that does not match the lease and version
    ///   inside) is never used, and a remote copy wins only when strictly newer. A winning
    ///   remote copy is written to the local directory (temp, sync, rename).
    /// - The directory's marker file (`LEASE_DIR_COMPLETE`, written once the directory holds
    ///   every lease) says whether the local directory is whole. With it, a lease that has
    ///   remote copies but no local file was dropped (the deletion of its copies did not
    ///   finish) and its copies are deleted; without it (a lost or fresh directory, or one
    ///   that predates the copies), such a lease is recovered, and a lease whose every remote
    ///   copy is damaged refuses the open, as a damaged local file does.
    /// - Every copy but the chosen version's is deleted once the chosen version is confirmed
    ///   remote (at once if remote storage has it; else after its put).
    pub fn open_with_remote(
        fs: Arc<dyn LocalFs>,
        dir: String,
        clock: Arc<dyn Clock>,
        ledger: Ledger,
        config: LeaseConfig,
        remote: Option<RemoteLeaseCopies>,
    ) -> Result<KvSnapshotLeaseManager, LeaseError> {
        config.assert_valid();
        fs.create_dir_all(&dir).map_err(LeaseError::Io)?;
        let manager = KvSnapshotLeaseManager {
            fs,
            dir,
            clock,
            ledger,
            config,
            mirrored: remote.is_some(),
            state: Mutex::new(LeaseState::default()),
        };
        // By file name (the hex of the id), as the remote copies are named.
        let mut local: BTreeMap<String, LeaseRecord> = BTreeMap::new();
        let mut complete = false;
        for name in manager.fs.list_dir(&manager.dir).map_err(LeaseError::Io)? {
            let path = format!("{}/{name}", manager.dir);
            if name == LEASE_DIR_COMPLETE {
                complete = true;
                continue;
            }
            if name.ends_with(TEMP_SUFFIX) {
                manager.fs.remove_file(&path).map_err(LeaseError::Io)?;
                continue;
            }
            if !name.ends_with(LEASE_FILE_SUFFIX) {
                continue;
            }
            let bytes = manager.fs.read(&path).map_err(LeaseError::Io)?;
            let record = decode_lease_file(&bytes).map_err(|error| LeaseError::Corrupt {
                path: path.clone(),
                detail: error.to_string(),
            })?;
            if name != lease_file_name(&record.lease_id) {
                let detail = format!("holds lease {:?}", record.lease_id);
                return Err(LeaseError::Corrupt { path, detail });
            }
            local.insert(name, record);
        }
        let mut state = LeaseState::default();
        let mut version_max = local.values().map(|record| record.version).max().unwrap_or(0);
        let Some(remote) = remote else {
            for record in local.into_values() {
                manager.apply(
                    &mut state,
                    &record.lease_id,
                    Some(record.lease),
                    record.version,
                    false,
                );
            }
            state.next_version = version_max + 1;
            *manager.lock() = state;
            return Ok(manager);
        };
        let copies = RemoteCopiesByLease::sort(&remote);
        version_max = version_max.max(copies.version_max);
        // Each lease's winning record, its remote copies, and whether the winner is remote.
        let mut chosen: BTreeMap<String, (LeaseRecord, RemoteCopyState, bool)> = BTreeMap::new();
        let mut deletions: BTreeSet<String> = BTreeSet::new();
        for (file_name, lease_copies) in &copies.by_file_name {
            let local_record = local.remove(file_name);
            let best_remote = lease_copies.best.as_ref();
            let (record, from_remote) = match (local_record, best_remote) {
                (None, _) if complete => {
                    deletions.extend(lease_copies.paths.values().cloned());
                    continue;
                }
                (None, None) => {
                    let path = lease_copies.paths.values().next().cloned().unwrap_or_default();
                    let detail = "every remote copy of a lease missing locally is damaged".into();
                    return Err(LeaseError::Corrupt { path, detail });
                }
                (Some(local), Some(remote)) if remote.version > local.version => {
                    (remote.clone(), true)
                }
                (Some(local), _) => (local, false),
                (None, Some(remote)) => (remote.clone(), true),
            };
            let mut copy_state = RemoteCopyState {
                confirmed: None,
                objects: lease_copies.paths.keys().copied().collect(),
                putting: None,
            };
            if best_remote.is_some_and(|best| best.version == record.version) {
                copy_state.confirmed = Some(record.version);
                for (version, path) in &lease_copies.paths {
                    if *version != record.version {
                        deletions.insert(path.clone());
                    }
                }
                copy_state.objects = BTreeSet::from([record.version]);
            }
            chosen.insert(record.lease_id.clone(), (record, copy_state, from_remote));
        }
        for record in local.into_values() {
            let lease_id = record.lease_id.clone();
            chosen.entry(lease_id).or_insert((record, RemoteCopyState::default(), false));
        }
        for (lease_id, (record, copy_state, from_remote)) in chosen {
            // A remote copy that won is written locally before anything relies on it.
            if from_remote {
                manager.write_lease(&lease_id, record.version, &record.lease)?;
            }
            manager.apply(&mut state, &lease_id, Some(record.lease), record.version, false);
            if copy_state.confirmed == Some(record.version) {
                state.remote_behind.remove(&lease_id);
            }
            if let Some(held) = state.leases.get_mut(&lease_id) {
                held.remote = copy_state;
            }
        }
        if !complete {
            let marker = format!("{}/{LEASE_DIR_COMPLETE}", manager.dir);
            manager.fs.write(&marker, b"").map_err(LeaseError::Io)?;
            manager.fs.sync(&marker).map_err(LeaseError::Io)?;
        }
        state.next_version = version_max + 1;
        state.remote_deletions = deletions;
        *manager.lock() = state;
        Ok(manager)
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Pins each `(bucket, snapshot id)` of `pins` under `lease_id` (a later pair of the same
    /// bucket wins) and sets the lease's expiration to now + `duration_ms`, creating the lease
    /// if needed. Durable before the state in memory changes. Returns the pins the lease moved
    /// away from (their snapshots may now be unleased).
    pub(crate) fn acquire(
        &self,
        lease_id: &str,
        duration_ms: u64,
        pins: &[(TableBucket, u64)],
    ) -> Result<Vec<Unpinned>, LeaseError> {
        check_lease_id(lease_id)?;
        let duration_ms_max = self.config.lease_duration_ms_max;
        if duration_ms > duration_ms_max {
            return Err(LeaseError::DurationTooLong { duration_ms, duration_ms_max });
        }
        let buckets_max = self.config.buckets_per_lease_max;
        let too_many = |buckets| LeaseError::TooManyBuckets {
            lease_id: lease_id.to_string(),
            buckets,
            buckets_max,
        };
        if pins.len() > buckets_max {
            return Err(too_many(pins.len()));
        }
        let expiration_ms = self.clock.now_wall_ms().saturating_add(duration_ms);
        let mut state = self.lock();
        let current = state.leases.get(lease_id).map(|held| &held.lease);
        if current.is_none() && state.leases.len() >= self.config.leases_max {
            let detail = format!("{} leases held", state.leases.len());
            return Err(LeaseError::LimitReached { detail });
        }
        let mut next = current.cloned().unwrap_or_else(|| KvSnapshotLease::new(expiration_ms));
        next.expiration_ms = expiration_ms;
        for &(bucket, snapshot_id) in pins {
            if next.pinned(bucket) != Some(snapshot_id) {
                let leased: BTreeSet<u64> = state.leased_ids(bucket).collect();
                if !leased.contains(&snapshot_id) && leased.len() >= LEASED_SNAPSHOTS_PER_BUCKET_MAX
                {
                    let detail = format!("{bucket} has {} leased snapshots", leased.len());
                    return Err(LeaseError::LimitReached { detail });
                }
            }
            next.pin(bucket, snapshot_id);
        }
        if next.pin_count() > buckets_max {
            return Err(too_many(next.pin_count()));
        }
        let current_count = current.map_or(0, KvSnapshotLease::pin_count);
        let pins_after = state.leased_bucket_count - current_count + next.pin_count();
        if pins_after > self.config.pins_max {
            let detail = format!("{pins_after} pinned buckets over all leases");
            return Err(LeaseError::LimitReached { detail });
        }
        let keep_old_pin = self.config.mutants.is_on(Mutant::LeaseReacquireKeepsOldPin);
        // Retention consults the state in memory: it changes only once the disk has it.
        let early = self.config.mutants.is_on(Mutant::LeaseAppliedBeforePersist);
        let mut unpinned = Vec::new();
        let version = state.take_version();
        if early {
            unpinned = self.apply(&mut state, lease_id, Some(next.clone()), version, keep_old_pin);
        }
        self.write_lease(lease_id, version, &next)?;
        if !early {
            unpinned = self.apply(&mut state, lease_id, Some(next), version, keep_old_pin);
        }
        Ok(unpinned)
    }

    /// Unpins `buckets` of `lease_id`: unknown leases and buckets are skipped; a lease left
    /// with no pin is dropped. Returns what was unpinned.
    pub(crate) fn release(
        &self,
        lease_id: &str,
        buckets: &[TableBucket],
    ) -> Result<Vec<Unpinned>, LeaseError> {
        check_lease_id(lease_id)?;
        if buckets.len() > self.config.buckets_per_lease_max {
            return Err(LeaseError::TooManyBuckets {
                lease_id: lease_id.to_string(),
                buckets: buckets.len(),
                buckets_max: self.config.buckets_per_lease_max,
            });
        }
        let mut state = self.lock();
        let Some(held) = state.leases.get(lease_id) else { return Ok(Vec::new()) };
        let mut next = held.lease.clone();
        let keep_empty_table = self.config.mutants.is_on(Mutant::LeaseReleaseKeepsEmptyTable);
        let released = buckets.iter().filter(|b| next.unpin(**b, keep_empty_table).is_some());
        // A lease that pins nothing (every pin of its acquire was refused, or already
        // released) goes with the release too, though no pin of it was left to release.
        if released.count() == 0 && !next.is_empty() {
            return Ok(Vec::new());
        }
        if next.is_empty() {
            self.remove_lease_file(lease_id)?;
            return Ok(self.apply(&mut state, lease_id, None, 0, false));
        }
        let version = state.take_version();
        self.write_lease(lease_id, version, &next)?;
        Ok(self.apply(&mut state, lease_id, Some(next), version, false))
    }

    /// Drops `lease_id` and every pin it holds; an unknown lease is a no-op.
    pub(crate) fn drop_lease(&self, lease_id: &str) -> Result<Vec<Unpinned>, LeaseError> {
        check_lease_id(lease_id)?;
        let mut state = self.lock();
        if !state.leases.contains_key(lease_id) {
            return Ok(Vec::new());
        }
        self.remove_lease_file(lease_id)?;
        Ok(self.apply(&mut state, lease_id, None, 0, false))
    }

    /// Drops every lease whose expiration the wall clock has passed. A disk failure stops the
    /// check with what it dropped so far (the rest waits for the next check).
    pub(crate) fn expire(&self) -> Expired {
        let now_ms = self.clock.now_wall_ms();
        let at_deadline = self.config.mutants.is_on(Mutant::LeaseExpiresAtDeadline);
        let keep_counts = self.config.mutants.is_on(Mutant::LeaseExpiryKeepsRefcount);
        let mut state = self.lock();
        let due: Vec<String> = state
            .by_expiration
            .iter()
            .take_while(|(expiration_ms, _)| expiration_passed(*expiration_ms, now_ms, at_deadline))
            .map(|(_, lease_id)| lease_id.clone())
            .collect();
        let mut expired = Expired::default();
        for lease_id in due {
            // Not made durable one by one (a directory sync per lease cost milliseconds each,
            // under the store's lock): a file a crash brings back holds an expired lease,
            // which the first check after the restart expires again.
            let path = format!("{}/{}", self.dir, lease_file_name(&lease_id));
            if let Err(error) = self.fs.remove_file_lazily(&path).map_err(LeaseError::Io) {
                tracing::warn!(%error, lease_id, "failed to expire a kv snapshot lease");
                break;
            }
            expired.unpinned.extend(self.apply(&mut state, &lease_id, None, 0, keep_counts));
            expired.lease_ids.push(lease_id);
        }
        expired
    }

    /// Whether every lease is also kept in remote storage.
    pub fn is_mirrored(&self) -> bool {
        self.mirrored
    }

    /// Whether a remote copy is to be put or deleted.
    pub fn has_remote_work(&self) -> bool {
        if !self.mirrored {
            return false;
        }
        let state = self.lock();
        !state.remote_behind.is_empty() || !state.remote_deletions.is_empty()
    }

    /// Leases whose remote copy is not confirmed at their current version.
    pub fn remote_behind_count(&self) -> usize {
        self.lock().remote_behind.len()
    }

    /// Whether remote storage holds exactly the leases, at their versions: nothing to put or
    /// delete, and no put in flight (whose copy could still land).
    pub fn remote_is_current(&self) -> bool {
        let state = self.lock();
        state.remote_behind.is_empty()
            && state.remote_deletions.is_empty()
            && state.remote_puts_in_flight == 0
    }

    /// The copies to put now: every lease whose remote copy is behind and not being put
    /// already, encoded at its current version. Each must be answered with
    /// [`KvSnapshotLeaseManager::finish_remote_put`].
    pub fn take_remote_puts(&self) -> Vec<RemoteLeasePut> {
        if !self.mirrored {
            return Vec::new();
        }
        let mut state = self.lock();
        let LeaseState { leases, remote_behind, remote_puts_in_flight, .. } = &mut *state;
        let mut puts = Vec::new();
        for lease_id in remote_behind.iter() {
            let Some(held) = leases.get_mut(lease_id) else { continue };
            if held.remote.putting == Some(held.version) {
                continue;
            }
            held.remote.putting = Some(held.version);
            held.remote.objects.insert(held.version);
            *remote_puts_in_flight += 1;
            puts.push(RemoteLeasePut {
                lease_id: lease_id.clone(),
                version: held.version,
                path: remote_lease_path(lease_id, held.version),
                bytes: encode_lease_file(lease_id, held.version, &held.lease),
            });
        }
        puts
    }

    /// The outcome of a put [`KvSnapshotLeaseManager::take_remote_puts`] handed out. Once the
    /// lease's current version is confirmed, its older copies are to be deleted; a confirmed
    /// copy of a lease gone since (or of an earlier lease of the same id) is deleted too.
    pub fn finish_remote_put(&self, lease_id: &str, version: u64, confirmed: bool) {
        let mut state = self.lock();
        let LeaseState { leases, remote_behind, remote_deletions, remote_puts_in_flight, .. } =
            &mut *state;
        *remote_puts_in_flight = remote_puts_in_flight.saturating_sub(1);
        let path = remote_lease_path(lease_id, version);
        let Some(held) = leases.get_mut(lease_id) else {
            if confirmed {
                remote_deletions.insert(path);
            }
            return;
        };
        if held.remote.putting == Some(version) {
            held.remote.putting = None;
        }
        if !held.remote.objects.contains(&version) {
            if confirmed {
                remote_deletions.insert(path);
            }
            return;
        }
        if !confirmed || held.version != version {
            // Failed (put again later), or superseded (deleted once the newer is confirmed).
            return;
        }
        held.remote.confirmed = Some(version);
        let older = std::mem::replace(&mut held.remote.objects, BTreeSet::from([version]));
        let older = older.into_iter().filter(|v| *v != version);
        remote_deletions.extend(older.map(|v| remote_lease_path(lease_id, v)));
        remote_behind.remove(lease_id);
    }

    /// The remote copies to delete, in path order (so a lease's oldest copy first). Each
    /// stays listed until [`KvSnapshotLeaseManager::finish_remote_deletion`] confirms it.
    pub fn remote_deletions(&self) -> Vec<String> {
        self.lock().remote_deletions.iter().cloned().collect()
    }

    /// A remote copy's deletion is confirmed.
    pub fn finish_remote_deletion(&self, path: &str) {
        self.lock().remote_deletions.remove(path);
    }

    /// Whether some lease pins `snapshot_id` of `bucket`.
    pub fn is_leased(&self, bucket: TableBucket, snapshot_id: u64) -> bool {
        self.lock().ref_counts.contains_key(&(bucket, snapshot_id))
    }

    /// The ids of `bucket`'s snapshots some lease pins, in order.
    pub fn leased_snapshot_ids(&self, bucket: TableBucket) -> BTreeSet<u64> {
        self.lock().leased_ids(bucket).collect()
    }

    /// How many leases pin `snapshot_id` of `bucket`.
    pub fn ref_count(&self, bucket: TableBucket, snapshot_id: u64) -> u32 {
        self.lock().ref_counts.get(&(bucket, snapshot_id)).copied().unwrap_or(0)
    }

    pub fn lease(&self, lease_id: &str) -> Option<KvSnapshotLease> {
        self.lock().leases.get(lease_id).map(|held| held.lease.clone())
    }

    /// Every lease, in id order.
    pub fn leases(&self) -> Vec<(String, KvSnapshotLease)> {
        let state = self.lock();
        state.leases.iter().map(|(id, held)| (id.clone(), held.lease.clone())).collect()
    }

    pub fn gauges(&self) -> LeaseGauges {
        let state = self.lock();
        LeaseGauges {
            lease_count: state.leases.len(),
            leased_bucket_count: state.leased_bucket_count,
            leased_snapshot_count: state.ref_counts.len(),
        }
    }

    /// Recounts everything from the leases and compares: the reference counts, the pinned
    /// buckets, and that no lease keeps a table entry without a bucket.
    pub fn check(&self) -> Result<(), String> {
        let state = self.lock();
        let mut ref_counts: BTreeMap<(TableBucket, u64), u32> = BTreeMap::new();
        let mut leased_bucket_count = 0;
        for (lease_id, held) in &state.leases {
            if held.lease.has_empty_table() {
                return Err(format!("lease {lease_id} keeps a table entry without a bucket"));
            }
            for (bucket, snapshot_id) in held.lease.pins() {
                *ref_counts.entry((bucket, snapshot_id)).or_insert(0) += 1;
                leased_bucket_count += 1;
            }
        }
        if ref_counts != state.ref_counts {
            return Err(format!(
                "reference counts {:?} but the leases pin {ref_counts:?}",
                state.ref_counts
            ));
        }
        let by_expiration: BTreeSet<(u64, String)> = state
            .leases
            .iter()
            .map(|(lease_id, held)| (held.lease.expiration_ms, lease_id.clone()))
            .collect();
        if by_expiration != state.by_expiration {
            return Err("the expiry index does not match the leases".to_string());
        }
        if leased_bucket_count != state.leased_bucket_count {
            return Err(format!(
                "{} pinned buckets counted, {leased_bucket_count} pinned",
                state.leased_bucket_count
            ));
        }
        Ok(())
    }

    /// Replaces `lease_id`'s lease by `next` at `version` (`None`: removes it) in memory and
    /// moves the counts: every pin that goes is decremented (unless `keep_unpinned_counts`, a
    /// mutant's switch), every new one incremented. Returns the pins that went. A mirrored
    /// lease's remote copy is behind from here until its put is confirmed; a removed lease's
    /// copies are to be deleted.
    fn apply(
        &self,
        state: &mut LeaseState,
        lease_id: &str,
        next: Option<KvSnapshotLease>,
        version: u64,
        keep_unpinned_counts: bool,
    ) -> Vec<Unpinned> {
        let mut old = state.leases.remove(lease_id);
        if let Some(held) = &old {
            state.by_expiration.remove(&(held.lease.expiration_ms, lease_id.to_string()));
        }
        if self.mirrored {
            if next.is_some() {
                state.remote_behind.insert(lease_id.to_string());
            } else {
                state.remote_behind.remove(lease_id);
                if let Some(held) = &mut old {
                    let gone = std::mem::take(&mut held.remote.objects);
                    let paths = gone.into_iter().map(|v| remote_lease_path(lease_id, v));
                    state.remote_deletions.extend(paths);
                }
            }
        }
        let old_pins: BTreeMap<TableBucket, u64> =
            old.as_ref().map(|held| held.lease.pins().collect()).unwrap_or_default();
        let new_pins: BTreeMap<TableBucket, u64> =
            next.as_ref().map(|lease| lease.pins().collect()).unwrap_or_default();
        let mut unpinned = Vec::new();
        for (&bucket, &snapshot_id) in &old_pins {
            if new_pins.get(&bucket) != Some(&snapshot_id) {
                unpinned.push((bucket, snapshot_id));
                if !keep_unpinned_counts {
                    state.decrement(bucket, snapshot_id);
                }
            }
        }
        for (&bucket, &snapshot_id) in &new_pins {
            if old_pins.get(&bucket) != Some(&snapshot_id) {
                state.increment(bucket, snapshot_id);
            }
        }
        assert!(state.leased_bucket_count >= old_pins.len(), "pinned buckets below zero");
        state.leased_bucket_count = state.leased_bucket_count - old_pins.len() + new_pins.len();
        if let Some(lease) = next {
            let (entry, remote) = match old {
                Some(held) => (held._entry, held.remote),
                None => (
                    self.ledger.register(ResourceKind::Lease, format!("kv lease {lease_id}")),
                    RemoteCopyState::default(),
                ),
            };
            state.by_expiration.insert((lease.expiration_ms, lease_id.to_string()));
            let held = HeldLease { lease, version, remote, _entry: entry };
            state.leases.insert(lease_id.to_string(), held);
        }
        unpinned
    }

    /// Temp, sync, rename: the lease's file is its old state or its new one, never a mix.
    fn write_lease(
        &self,
        lease_id: &str,
        version: u64,
        lease: &KvSnapshotLease,
    ) -> Result<(), LeaseError> {
        let path = format!("{}/{}", self.dir, lease_file_name(lease_id));
        let temp_path = format!("{path}{TEMP_SUFFIX}");
        let bytes = encode_lease_file(lease_id, version, lease);
        self.fs.write(&temp_path, &bytes).map_err(LeaseError::Io)?;
        if !self.config.mutants.is_on(Mutant::LeaseRenamedWithoutSync) {
            self.fs.sync(&temp_path).map_err(LeaseError::Io)?;
        }
        self.fs.rename(&temp_path, &path).map_err(LeaseError::Io)
    }

    fn remove_lease_file(&self, lease_id: &str) -> Result<(), LeaseError> {
        let path = format!("{}/{}", self.dir, lease_file_name(lease_id));
        self.fs.remove_file(&path).map_err(LeaseError::Io)
    }

    /// Poisoning is carried past: the only panics under this lock are the assertions of
    /// `apply`, bugs whose damage [`KvSnapshotLeaseManager::check`] reports.
    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A lease's remote copies: each version's path, and the newest copy that checks out.
#[derive(Default)]
struct LeaseCopies {
    paths: BTreeMap<u64, String>,
    best: Option<LeaseRecord>,
}

/// The remote copies by the file name of their lease.
struct RemoteCopiesByLease {
    by_file_name: BTreeMap<String, LeaseCopies>,
    version_max: u64,
}

impl RemoteCopiesByLease {
    /// A copy checks out when it decodes (checksum and all) and holds the lease and version
    /// its path names. Objects under the root that are no lease copy are left alone.
    fn sort(copies: &RemoteLeaseCopies) -> RemoteCopiesByLease {
        let mut sorted = RemoteCopiesByLease { by_file_name: BTreeMap::new(), version_max: 0 };
        for (path, bytes) in &copies.objects {
            let Some((hex, version)) = parse_remote_lease_path(path) else {
                tracing::warn!(path, "an object among the remote lease copies is no lease copy");
                continue;
            };
            sorted.version_max = sorted.version_max.max(version);
            let file_name = format!("{hex}{LEASE_FILE_SUFFIX}");
            let lease_copies = sorted.by_file_name.entry(file_name.clone()).or_default();
            lease_copies.paths.insert(version, path.clone());
            match decode_lease_file(bytes) {
                Ok(record)
                    if record.version == version
                        && lease_file_name(&record.lease_id) == file_name =>
                {
                    if lease_copies.best.as_ref().is_none_or(|best| best.version < version) {
                        lease_copies.best = Some(record);
                    }
                }
                Ok(_) => tracing::warn!(path, "a remote lease copy holds another lease or version"),
                Err(error) => tracing::warn!(path, %error, "a remote lease copy is damaged"),
            }
        }
        sorted
    }
}

fn check_lease_id(lease_id: &str) -> Result<(), LeaseError> {
    if lease_id.is_empty() {
        return Err(LeaseError::InvalidLeaseId { detail: "empty".into() });
    }
    if lease_id.len() > LEASE_ID_BYTES_MAX {
        let detail = format!("{} bytes, at most {LEASE_ID_BYTES_MAX}", lease_id.len());
        return Err(LeaseError::InvalidLeaseId { detail });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::*;
    use futures::executor::block_on;

    use crate::env::RemoteStorage;
    use crate::lease::crash_fs::{CrashFs, CrashRemote};
    use crate::lease::lease_remote::{fetch_remote_lease_copies, mirror_leases};
    use crate::mutant::Mutants;

    pub(crate) const DIR: &str = "coordinator/kv-snapshot-leases";

    /// Wall time that moves only when a test says so.
    #[derive(Debug, Default)]
    pub(crate) struct TestClock {
        pub(crate) now_ms: AtomicU64,
    }

    impl TestClock {
        pub(crate) fn at(now_ms: u64) -> Arc<TestClock> {
            Arc::new(TestClock { now_ms: AtomicU64::new(now_ms) })
        }
        pub(crate) fn set(&self, now_ms: u64) {
            self.now_ms.store(now_ms, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now_mono_ms(&self) -> u64 {
            self.now_ms.load(Ordering::SeqCst)
        }
        fn now_wall_ms(&self) -> u64 {
            self.now_ms.load(Ordering::SeqCst)
        }
        fn sleep_until(&self, _deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
            futures::future::pending().boxed()
        }
    }

    pub(crate) fn open(
        fs: Arc<dyn LocalFs>,
        clock: Arc<TestClock>,
        mutants: Mutants,
    ) -> Result<KvSnapshotLeaseManager, LeaseError> {
        let config = LeaseConfig { mutants, ..LeaseConfig::default() };
        KvSnapshotLeaseManager::open(fs, DIR.into(), clock, Ledger::new(), config)
    }

    fn b(bucket_id: i32) -> TableBucket {
        TableBucket::new(7, bucket_id)
    }

    fn manager() -> (Arc<CrashFs>, Arc<TestClock>, KvSnapshotLeaseManager) {
        let fs = Arc::new(CrashFs::default());
        let clock = TestClock::at(1_000);
        let manager = open(fs.clone(), clock.clone(), Mutants::NONE).expect("open");
        (fs, clock, manager)
    }

    #[test]
    fn leases_count_their_pins_and_a_reacquire_moves_the_pin() {
        let (_fs, _clock, leases) = manager();
        assert_eq!(leases.acquire("a", 100, &[(b(1), 1), (b(2), 1)]), Ok(vec![]));
        assert_eq!(leases.acquire("b", 100, &[(b(1), 1)]), Ok(vec![]));
        assert_eq!(leases.ref_count(b(1), 1), 2);
        let gauges =
            LeaseGauges { lease_count: 2, leased_bucket_count: 3, leased_snapshot_count: 2 };
        assert_eq!(leases.gauges(), gauges);
        assert_eq!(leases.acquire("a", 100, &[(b(1), 2)]), Ok(vec![(b(1), 1)]), "moved");
        assert_eq!(leases.ref_count(b(1), 1), 1);
        assert_eq!(leases.ref_count(b(1), 2), 1);
        assert_eq!(leases.leased_snapshot_ids(b(1)), BTreeSet::from([1, 2]));
        assert_eq!(leases.acquire("a", 100, &[(b(1), 2)]), Ok(vec![]), "same pin again");
        assert_eq!(leases.ref_count(b(1), 2), 1, "counted once");
        assert_eq!(leases.check(), Ok(()));
    }

    #[test]
    fn an_acquire_resets_the_expiration_and_a_renewal_creates_an_empty_lease() {
        let (_fs, clock, leases) = manager();
        assert_eq!(leases.acquire("renewed", 500, &[]), Ok(vec![]));
        assert_eq!(leases.lease("renewed").map(|lease| lease.expiration_ms), Some(1_500));
        clock.set(1_200);
        leases.acquire("renewed", 100, &[]).expect("shortened");
        assert_eq!(leases.lease("renewed").map(|lease| lease.expiration_ms), Some(1_300));
        assert!(leases.lease("renewed").is_some_and(|lease| lease.is_empty()));
    }

    #[test]
    fn releases_of_unknown_leases_and_buckets_succeed_and_the_last_release_drops_the_lease() {
        let (_fs, _clock, leases) = manager();
        assert_eq!(leases.release("nobody", &[b(1)]), Ok(vec![]));
        leases.acquire("a", 100, &[(b(1), 1), (TableBucket::new(8, 0), 4)]).expect("acquire");
        assert_eq!(leases.release("a", &[b(1)]), Ok(vec![(b(1), 1)]));
        assert_eq!(leases.release("a", &[b(1)]), Ok(vec![]), "a retry");
        assert_eq!(leases.lease("a").map(|lease| lease.table_ids().collect()), Some(vec![8]));
        assert_eq!(
            leases.release("a", &[TableBucket::new(8, 0)]),
            Ok(vec![(TableBucket::new(8, 0), 4)])
        );
        assert_eq!(leases.lease("a"), None, "dropped with its last bucket");
        assert_eq!(leases.gauges(), LeaseGauges::default());
        assert_eq!(leases.drop_lease("a"), Ok(vec![]), "unknown");
        assert_eq!(leases.check(), Ok(()));
    }

    #[test]
    fn a_release_drops_a_lease_that_pins_nothing() {
        let (_fs, _clock, leases) = manager();
        // Every snapshot the consumer asked for was gone: its acquire pinned nothing.
        leases.acquire("a", 100, &[]).expect("acquire");
        assert!(leases.lease("a").is_some_and(|lease| lease.is_empty()));
        assert_eq!(leases.release("a", &[b(1)]), Ok(vec![]));
        assert_eq!(leases.lease("a"), None, "dropped: a released lease holds nothing");
        assert_eq!(leases.check(), Ok(()));
    }

    #[test]
    fn a_lease_expires_only_once_the_clock_is_past_its_expiration() {
        let (_fs, clock, leases) = manager();
        leases.acquire("a", 100, &[(b(1), 1)]).expect("acquire");
        clock.set(1_100);
        assert_eq!(leases.expire(), Expired::default(), "valid at its expiration");
        clock.set(1_101);
        let expired = leases.expire();
        assert_eq!(expired.lease_ids, vec!["a".to_string()]);
        assert_eq!(expired.unpinned, vec![(b(1), 1)]);
        assert_eq!(leases.ref_count(b(1), 1), 0);
        assert_eq!(leases.check(), Ok(()));
    }

    #[test]
    fn limits_are_refused_with_typed_errors() {
        let fs = Arc::new(CrashFs::default());
        let config = LeaseConfig {
            leases_max: 1,
            buckets_per_lease_max: 2,
            pins_max: 2,
            ..LeaseConfig::default()
        };
        let leases =
            KvSnapshotLeaseManager::open(fs, DIR.into(), TestClock::at(0), Ledger::new(), config)
                .expect("open");
        assert!(matches!(leases.acquire("", 1, &[]), Err(LeaseError::InvalidLeaseId { .. })));
        let long = "x".repeat(LEASE_ID_BYTES_MAX + 1);
        assert!(matches!(leases.acquire(&long, 1, &[]), Err(LeaseError::InvalidLeaseId { .. })));
        let too_long = leases.acquire("a", u64::MAX, &[]);
        assert!(matches!(too_long, Err(LeaseError::DurationTooLong { .. })));
        let three = [(b(1), 1), (b(2), 1), (b(3), 1)];
        assert!(matches!(leases.acquire("a", 1, &three), Err(LeaseError::TooManyBuckets { .. })));
        leases.acquire("a", 1, &three[..2]).expect("two");
        let full = leases.acquire("b", 1, &[]).expect_err("one lease at most");
        assert!(full.is_retriable());
        assert!(matches!(
            leases.acquire("a", 1, &three[2..]),
            Err(LeaseError::TooManyBuckets { .. })
        ));
        assert_eq!(leases.check(), Ok(()));
        assert_eq!(leases.gauges().leased_bucket_count, 2, "a refusal changes nothing");
    }

    #[test]
    fn a_bucket_has_a_bounded_number_of_leased_snapshots() {
        let (_fs, _clock, leases) = manager();
        for id in 0..LEASED_SNAPSHOTS_PER_BUCKET_MAX as u64 {
            leases.acquire(&format!("l{id}"), 1, &[(b(1), id)]).expect("acquire");
        }
        let refused = leases.acquire("one-more", 1, &[(b(1), 999)]).expect_err("full");
        assert!(matches!(refused, LeaseError::LimitReached { .. }));
        leases.acquire("one-more", 1, &[(b(1), 0)]).expect("an already leased snapshot");
    }

    #[test]
    fn a_damaged_lease_file_refuses_the_open_and_a_leftover_temp_file_is_removed() {
        let (fs, clock, leases) = manager();
        leases.acquire("a", 100, &[(b(1), 1)]).expect("acquire");
        drop(leases);
        let path = format!("{DIR}/{}", lease_file_name("a"));
        fs.write(&format!("{path}.tmp"), b"half").expect("write");
        let reopened = open(fs.clone(), clock.clone(), Mutants::NONE).expect("open");
        assert_eq!(reopened.ref_count(b(1), 1), 1);
        assert!(!fs.exists(&format!("{path}.tmp")));
        fs.write(&path, b"rot").expect("write");
        assert!(matches!(open(fs, clock, Mutants::NONE), Err(LeaseError::Corrupt { .. })));
    }

    #[test]
    fn an_expired_lease_whose_file_a_crash_brought_back_expires_again_at_the_first_check() {
        let (fs, clock, leases) = manager();
        leases.acquire("a", 100, &[(b(1), 1)]).expect("acquire");
        let path = format!("{DIR}/{}", lease_file_name("a"));
        let bytes = fs.read(&path).expect("the lease's file");
        clock.set(1_101);
        assert_eq!(leases.expire().lease_ids, vec!["a".to_string()]);
        drop(leases);
        // The expiry's removal is lazy: a crash may undo it.
        fs.write(&path, &bytes).expect("write");
        let reopened = open(fs, clock, Mutants::NONE).expect("open");
        assert_eq!(reopened.ref_count(b(1), 1), 1, "back until the first check");
        assert_eq!(reopened.expire().lease_ids, vec!["a".to_string()]);
        assert_eq!(reopened.check(), Ok(()));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(&'static str, Vec<(TableBucket, u64)>),
        Release(&'static str, Vec<TableBucket>),
        Drop(&'static str),
        Expire,
    }

    fn script() -> Vec<Op> {
        vec![
            Op::Acquire("a", vec![(b(1), 1), (b(2), 1)]),
            Op::Acquire("b", vec![(b(1), 1)]),
            Op::Acquire("a", vec![(b(1), 2)]),
            Op::Release("a", vec![b(2)]),
            Op::Acquire("c", vec![]),
            Op::Drop("b"),
            Op::Expire,
            Op::Release("a", vec![b(1)]),
        ]
    }

    fn run(leases: &KvSnapshotLeaseManager, clock: &TestClock, op: &Op) -> Result<(), LeaseError> {
        match op {
            Op::Acquire(id, pins) => leases.acquire(id, 100, pins).map(drop),
            Op::Release(id, buckets) => leases.release(id, buckets).map(drop),
            Op::Drop(id) => leases.drop_lease(id).map(drop),
            Op::Expire => {
                clock.set(clock.now_wall_ms() + 150);
                leases.expire();
                Ok(())
            }
        }
    }

    /// Stops the script at every mutating file-system call in turn (the call and every one
    /// after it fail, as after a crash), then crashes and reopens: the reopened leases are
    /// exactly those acknowledged, and a failed operation changed nothing in memory.
    pub(crate) fn check_crash_at_any_step(mutants: Mutants) -> Result<(), String> {
        for fail_at in 0..40 {
            let fs = Arc::new(CrashFs::default());
            let clock = TestClock::at(1_000);
            let leases = open(fs.clone(), clock.clone(), mutants).map_err(|e| e.to_string())?;
            fs.fail_from(Some(fail_at));
            for op in script() {
                let before = leases.leases();
                if run(&leases, &clock, &op).is_err() {
                    if leases.leases() != before {
                        return Err(format!("a failed {op:?} changed memory (step {fail_at})"));
                    }
                    break;
                }
            }
            let acknowledged = leases.leases();
            leases.check()?;
            let crashed: Arc<dyn LocalFs> = Arc::new(fs.crash());
            let reopened = open(crashed, clock, mutants)
                .map_err(|error| format!("reopen after a crash at step {fail_at}: {error}"))?;
            if reopened.leases() != acknowledged {
                return Err(format!("a crash at step {fail_at} lost acknowledged leases"));
            }
            reopened.check()?;
        }
        Ok(())
    }

    /// A lease acquired for 100 ms is still there at its expiration and gone a millisecond
    /// later.
    pub(crate) fn check_expiry_is_strict(mutants: Mutants) -> Result<(), String> {
        let clock = TestClock::at(1_000);
        let leases = open(Arc::new(CrashFs::default()), clock.clone(), mutants)
            .map_err(|e| e.to_string())?;
        leases.acquire("a", 100, &[(b(1), 1)]).map_err(|e| e.to_string())?;
        clock.set(1_100);
        if !leases.expire().lease_ids.is_empty() {
            return Err("a lease expired at its expiration millisecond".into());
        }
        clock.set(1_101);
        if leases.expire().lease_ids != vec!["a".to_string()] {
            return Err("a lease outlived its expiration".into());
        }
        leases.check()
    }

    fn open_mirrored(
        fs: Arc<dyn LocalFs>,
        remote: &Arc<CrashRemote>,
        clock: &Arc<TestClock>,
    ) -> Result<Arc<KvSnapshotLeaseManager>, LeaseError> {
        let remote_storage: Arc<dyn RemoteStorage> = remote.clone();
        let copies = block_on(fetch_remote_lease_copies(remote_storage, clock.clone()))?;
        let config = LeaseConfig::default();
        let clock: Arc<dyn Clock> = clock.clone();
        KvSnapshotLeaseManager::open_with_remote(
            fs,
            DIR.into(),
            clock,
            Ledger::new(),
            config,
            Some(copies),
        )
        .map(Arc::new)
    }

    fn mirror(leases: &Arc<KvSnapshotLeaseManager>, remote: &Arc<CrashRemote>) {
        let remote: Arc<dyn RemoteStorage> = remote.clone();
        let clock: Arc<dyn Clock> = TestClock::at(0);
        if let Some(mirroring) = mirror_leases(leases, &remote, &clock) {
            block_on(mirroring);
        }
    }

    #[test]
    fn leases_come_back_from_remote_storage_when_the_local_directory_is_lost() {
        let (fs, remote, clock) =
            (Arc::new(CrashFs::default()), Arc::new(CrashRemote::default()), TestClock::at(1_000));
        let leases = open_mirrored(fs.clone(), &remote, &clock).expect("open");
        leases.acquire("a", 100, &[(b(1), 1), (b(2), 1)]).expect("acquire");
        leases.acquire("b", 100, &[(b(1), 2)]).expect("acquire");
        leases.acquire("a", 500, &[]).expect("renew");
        mirror(&leases, &remote);
        assert!(!leases.has_remote_work());
        let copies: Vec<String> = remote.objects().into_keys().collect();
        assert_eq!(copies, vec![remote_lease_path("a", 3), remote_lease_path("b", 2)]);
        let lost = Arc::new(CrashFs::default());
        let recovered = open_mirrored(lost.clone(), &remote, &clock).expect("recovered");
        assert_eq!(recovered.leases(), leases.leases());
        assert_eq!(recovered.check(), Ok(()));
        assert!(!recovered.has_remote_work(), "the copies were current");
        assert!(lost.exists(&format!("{DIR}/{LEASE_DIR_COMPLETE}")));
        let reopened = open(Arc::new(lost.crash()), clock.clone(), Mutants::NONE).expect("open");
        assert_eq!(reopened.leases(), leases.leases(), "written back to the directory, synced");
        recovered.acquire("c", 100, &[]).expect("a version above every copy's");
        assert_eq!(recovered.lock().leases.get("c").map(|held| held.version), Some(4));
    }

    #[test]
    fn a_stale_or_damaged_remote_copy_never_overrides_a_newer_local_one() {
        let (fs, remote, clock) =
            (Arc::new(CrashFs::default()), Arc::new(CrashRemote::default()), TestClock::at(1_000));
        let leases = open_mirrored(fs.clone(), &remote, &clock).expect("open");
        leases.acquire("a", 100, &[(b(1), 1)]).expect("acquire");
        mirror(&leases, &remote);
        remote.fail_from(Some(0));
        leases.acquire("a", 100, &[(b(1), 2)]).expect("moved, locally");
        mirror(&leases, &remote);
        assert!(leases.has_remote_work(), "the remote copy is behind");
        let newer_locally = leases.leases();
        // A damaged copy that claims a newer version.
        remote.put_now(&remote_lease_path("a", 99), b"rot".to_vec());
        remote.fail_from(None);
        drop(leases);
        let reopened = open_mirrored(Arc::new(fs.crash()), &remote, &clock).expect("open");
        assert_eq!(reopened.leases(), newer_locally);
        mirror(&reopened, &remote);
        let copies: Vec<String> = remote.objects().into_keys().collect();
        assert_eq!(copies, vec![remote_lease_path("a", 2)], "stale and damaged copies go");
        reopened.acquire("b", 100, &[]).expect("acquire");
        let version = reopened.lock().leases.get("b").map(|held| held.version);
        assert_eq!(version, Some(100), "above every copy's version, damaged or not");
        // A lease whose only copy is damaged, with no local file and no whole directory:
        // refused, as a damaged local file is.
        remote.put_now(&remote_lease_path("z", 5), b"rot".to_vec());
        let refused = open_mirrored(Arc::new(CrashFs::default()), &remote, &clock);
        assert!(matches!(refused, Err(LeaseError::Corrupt { .. })));
    }

    #[test]
    fn a_dropped_lease_whose_copy_was_left_is_not_brought_back_while_the_directory_is_whole() {
        let (fs, remote, clock) =
            (Arc::new(CrashFs::default()), Arc::new(CrashRemote::default()), TestClock::at(1_000));
        let leases = open_mirrored(fs.clone(), &remote, &clock).expect("open");
        leases.acquire("a", 100, &[(b(1), 1)]).expect("acquire");
        mirror(&leases, &remote);
        remote.fail_from(Some(0));
        leases.drop_lease("a").expect("dropped locally");
        mirror(&leases, &remote);
        assert_eq!(remote.objects().len(), 1, "its copy is left");
        remote.fail_from(None);
        drop(leases);
        let reopened = open_mirrored(Arc::new(fs.crash()), &remote, &clock).expect("open");
        assert_eq!(reopened.leases(), vec![]);
        mirror(&reopened, &remote);
        assert!(remote.objects().is_empty(), "deleted after the restart");
    }

    /// Stops the script at every mutating call, local (the lease files) or remote (the
    /// copies), then crashes: reopened with its directory, the manager holds exactly what was
    /// acknowledged locally; reopened on a lost directory from the remote copies alone, each
    /// lease is as acknowledged in both places, or as the update in doubt left it locally (an
    /// expiry check that drops several leases may leave some copies deleted, not others).
    #[test]
    fn a_crash_at_any_local_or_remote_step_loses_nothing_acknowledged() {
        for remote_side in [false, true] {
            for fail_at in 0..60 {
                let step =
                    format!("{} step {fail_at}", if remote_side { "remote" } else { "local" });
                let fs = Arc::new(CrashFs::default());
                let remote = Arc::new(CrashRemote::default());
                let clock = TestClock::at(1_000);
                let leases = open_mirrored(fs.clone(), &remote, &clock).expect("open");
                if remote_side {
                    remote.fail_from(Some(fail_at));
                } else {
                    fs.fail_from(Some(fail_at));
                }
                let mut in_both_places = leases.leases();
                for op in script() {
                    let before = leases.leases();
                    if run(&leases, &clock, &op).is_err() {
                        assert_eq!(leases.leases(), before, "a failed {op:?} changed memory");
                        break;
                    }
                    mirror(&leases, &remote);
                    if leases.has_remote_work() {
                        break;
                    }
                    in_both_places = leases.leases();
                }
                let locally = leases.leases();
                assert_eq!(leases.check(), Ok(()), "{step}");
                drop(leases);
                remote.fail_from(None);
                let crashed = Arc::new(fs.crash());
                let recovered = open_mirrored(Arc::new(CrashFs::default()), &remote, &clock)
                    .unwrap_or_else(|error| panic!("{step}: recovery from remote: {error}"));
                let got: BTreeMap<_, _> = recovered.leases().into_iter().collect();
                let both: BTreeMap<_, _> = in_both_places.iter().cloned().collect();
                let local: BTreeMap<_, _> = locally.iter().cloned().collect();
                for lease_id in got.keys().chain(both.keys()).chain(local.keys()) {
                    let recovered = got.get(lease_id);
                    assert!(
                        recovered == both.get(lease_id) || recovered == local.get(lease_id),
                        "{step}: lease {lease_id} recovered as {recovered:?}, acknowledged in \
                         both places {:?}, locally {:?}",
                        both.get(lease_id),
                        local.get(lease_id)
                    );
                }
                let reopened = open_mirrored(crashed, &remote, &clock)
                    .unwrap_or_else(|error| panic!("{step}: reopen: {error}"));
                assert_eq!(reopened.leases(), locally, "{step}");
                mirror(&reopened, &remote);
                assert!(!reopened.has_remote_work(), "{step}");
                assert_eq!(remote.objects().len(), locally.len(), "{step}: one copy per lease");
            }
        }
    }

    #[test]
    fn a_lease_expires_strictly_after_its_expiration() {
        assert_eq!(check_expiry_is_strict(Mutants::NONE), Ok(()));
    }

    #[test]
    fn a_crash_at_any_step_of_an_update_loses_nothing_acknowledged() {
        assert_eq!(check_crash_at_any_step(Mutants::NONE), Ok(()));
    }
}
