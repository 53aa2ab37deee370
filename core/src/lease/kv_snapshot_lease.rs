//! One KV snapshot lease: when it expires and which snapshot it pins in each bucket.

use std::collections::BTreeMap;

use crate::table_bucket::TableBucket;

/// A lease's state, as persisted. Pins are grouped by table (Fluss's `KvSnapshotTableLease`):
/// a table entry exists only while it pins at least one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSnapshotLease {
    /// Wall-clock milliseconds (the coordinator's `Clock::now_wall_ms`) after which the lease
    /// is expired; persisted, so it must not be monotonic time, whose origin a restart moves.
    pub expiration_ms: u64,
    tables: BTreeMap<i64, BTreeMap<TableBucket, u64>>,
}

impl KvSnapshotLease {
    pub fn new(expiration_ms: u64) -> Self {
        KvSnapshotLease { expiration_ms, tables: BTreeMap::new() }
    }

    /// Pins `snapshot_id` in `bucket`, returning the snapshot the lease pinned there before.
    pub fn pin(&mut self, bucket: TableBucket, snapshot_id: u64) -> Option<u64> {
        self.tables.entry(bucket.table_id).or_default().insert(bucket, snapshot_id)
    }

    /// Unpins `bucket`, returning the snapshot it pinned. The table's entry goes with its last
    /// bucket, unless `keep_empty_table` (a mutant) says otherwise.
    pub fn unpin(&mut self, bucket: TableBucket, keep_empty_table: bool) -> Option<u64> {
        let buckets = self.tables.get_mut(&bucket.table_id)?;
        let snapshot_id = buckets.remove(&bucket)?;
        if buckets.is_empty() && !keep_empty_table {
            self.tables.remove(&bucket.table_id);
        }
        Some(snapshot_id)
    }

    /// The snapshot pinned in `bucket`.
    pub fn pinned(&self, bucket: TableBucket) -> Option<u64> {
        self.tables.get(&bucket.table_id)?.get(&bucket).copied()
    }

    /// Every pin, in bucket order.
    pub fn pins(&self) -> impl Iterator<Item = (TableBucket, u64)> + '_ {
        self.tables.values().flat_map(|buckets| buckets.iter().map(|(b, id)| (*b, *id)))
    }

    pub fn pin_count(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }

    /// The tables the lease pins buckets of (Fluss authorizes a drop on each).
    pub fn table_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.tables.keys().copied()
    }

    /// No table entry at all: what a release of the last bucket leaves, and a renewal creates.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// A table entry that pins nothing: never, outside a mutant.
    pub fn has_empty_table(&self) -> bool {
        self.tables.values().any(BTreeMap::is_empty)
    }

    /// Whether the lease is expired at wall time `now_ms`: strictly after its expiration, as
    /// Fluss's `expireLeases` (`expirationTime < now`), so a lease is still valid at the
    /// millisecond it expires. `at_deadline` (a mutant) expires it at that millisecond.
    pub fn is_expired_at(&self, now_ms: u64, at_deadline: bool) -> bool {
        expiration_passed(self.expiration_ms, now_ms, at_deadline)
    }
}

/// [`KvSnapshotLease::is_expired_at`] of a lease expiring at `expiration_ms` (the rule, for
/// the manager's expiry index, which holds expirations without their leases).
pub fn expiration_passed(expiration_ms: u64, now_ms: u64, at_deadline: bool) -> bool {
    if at_deadline {
        return expiration_ms <= now_ms;
    }
    expiration_ms < now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_moves_within_its_bucket_and_the_last_release_of_a_table_removes_its_entry() {
        let mut lease = KvSnapshotLease::new(10);
        assert_eq!(lease.pin(TableBucket::new(1, 0), 3), None);
        assert_eq!(lease.pin(TableBucket::new(1, 0), 4), Some(3), "moved");
        assert_eq!(lease.pin(TableBucket::new(2, 5), 9), None);
        assert_eq!(lease.pin_count(), 2);
        assert_eq!(lease.table_ids().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(lease.unpin(TableBucket::new(1, 0), false), Some(4));
        assert_eq!(lease.unpin(TableBucket::new(1, 0), false), None, "already released");
        assert_eq!(lease.table_ids().collect::<Vec<_>>(), vec![2]);
        assert!(!lease.has_empty_table());
        assert_eq!(lease.unpin(TableBucket::new(2, 5), false), Some(9));
        assert!(lease.is_empty());
    }

    #[test]
    fn a_lease_is_expired_only_after_its_expiration_millisecond() {
        let lease = KvSnapshotLease::new(100);
        assert!(!lease.is_expired_at(99, false));
        assert!(!lease.is_expired_at(100, false), "still valid at its expiration");
        assert!(lease.is_expired_at(101, false));
        assert!(lease.is_expired_at(100, true), "the off-by-one mutant");
    }
}
