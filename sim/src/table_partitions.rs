//! The simulated table's partitions: which exist, which were dropped and when, and the buckets
//! the workload may address. Shared by the world (which creates and drops partitions, as the
//! coordinator does), the clients (which pick buckets from it) and the checker (which decides
//! whether a `PARTITION_NOT_EXISTS` answer, or a success, was legitimate).
//!
//! A non-partitioned table has one fixed set of buckets, none naming a partition. A
//! partitioned one has `live` partitions at a time, each with the table's bucket count; ids
//! are never reused (Fluss's rule), so a dropped partition's buckets never come back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::tablet_dirs::{bucket_dirs, BucketDirs, TablePath};
use kvtablet_core::TableBucket;

use crate::prng::{Prng, Ratio};

/// The simulated table's name: its buckets live in `sim/table-{table id}/`.
pub const SIM_DATABASE: &str = "sim";
pub const SIM_TABLE: &str = "table";

/// The simulated table's name.
pub fn sim_table_path() -> TablePath {
    TablePath::new(SIM_DATABASE, SIM_TABLE)
}

/// Where a tablet server keeps `bucket`'s files (core's layout, with the simulator's names):
/// the engine's directory, and the log's under the registry's root.
pub fn sim_bucket_dirs(bucket: TableBucket) -> BucketDirs {
    let name = bucket.partition_id.map(TablePartitions::name_of);
    let partition = name.as_deref().zip(bucket.partition_id);
    bucket_dirs(&sim_table_path(), bucket.table_id, partition, bucket.bucket_id)
}

/// How often a client deliberately addresses a dropped partition (as a client with stale
/// metadata does), so that the refusal is exercised even without an in-flight race.
const STALE_PICK: Ratio = Ratio::new(1, 25);

#[derive(Debug)]
struct PartitionsState {
    live: BTreeSet<i64>,
    /// Dropped partitions and the virtual time of their drop.
    dropped: BTreeMap<i64, u64>,
    next_id: i64,
}

#[derive(Clone)]
pub struct TablePartitions {
    table_id: i64,
    /// Buckets per partition (or of the table, when not partitioned).
    bucket_count: i32,
    partitioned: bool,
    state: Arc<Mutex<PartitionsState>>,
}

impl TablePartitions {
    pub fn new(table_id: i64, bucket_count: i32, partitioned: bool) -> TablePartitions {
        assert!(bucket_count > 0, "a table has at least one bucket");
        TablePartitions {
            table_id,
            bucket_count,
            partitioned,
            state: Arc::new(Mutex::new(PartitionsState {
                live: BTreeSet::new(),
                dropped: BTreeMap::new(),
                next_id: 0,
            })),
        }
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    pub fn bucket_count(&self) -> i32 {
        self.bucket_count
    }

    /// Creates a partition under a fresh id; returns the id.
    pub fn create(&self) -> i64 {
        assert!(self.partitioned, "only a partitioned table has partitions");
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.live.insert(id);
        id
    }

    /// Drops the oldest live partition at `now_ms`; returns its id.
    pub fn drop_oldest(&self, now_ms: u64) -> Option<i64> {
        let mut state = self.lock();
        let id = state.live.pop_first()?;
        state.dropped.insert(id, now_ms);
        Some(id)
    }

    /// A partition's name, as its directories spell it (`{name}-p{id}`).
    pub fn name_of(partition_id: i64) -> String {
        format!("part{partition_id}")
    }

    /// Ids of the live partitions, in order.
    pub fn live_partitions(&self) -> Vec<i64> {
        self.lock().live.iter().copied().collect()
    }

    /// The buckets of partition `partition_id` (or of the table, for `None`).
    pub fn buckets_of(&self, partition_id: Option<i64>) -> Vec<TableBucket> {
        (0..self.bucket_count)
            .map(|bucket_id| TableBucket { table_id: self.table_id, partition_id, bucket_id })
            .collect()
    }

    /// Every bucket the table has now, in order.
    pub fn live_buckets(&self) -> Vec<TableBucket> {
        if !self.partitioned {
            return self.buckets_of(None);
        }
        self.live_partitions().into_iter().flat_map(|id| self.buckets_of(Some(id))).collect()
    }

    /// Every bucket of a dropped partition, in order.
    pub fn dropped_buckets(&self) -> Vec<TableBucket> {
        let dropped: Vec<i64> = self.lock().dropped.keys().copied().collect();
        dropped.into_iter().flat_map(|id| self.buckets_of(Some(id))).collect()
    }

    /// A bucket for a client's next operation: a live one, now and then one of a dropped
    /// partition (a client with stale metadata). `None` while no partition exists.
    pub fn pick_bucket(&self, prng: &mut Prng) -> Option<TableBucket> {
        let bucket_id = prng.below(self.bucket_count as u64) as i32;
        if !self.partitioned {
            return Some(TableBucket::new(self.table_id, bucket_id));
        }
        let (live, dropped) = {
            let state = self.lock();
            let live: Vec<i64> = state.live.iter().copied().collect();
            let dropped: Vec<i64> = state.dropped.keys().copied().collect();
            (live, dropped)
        };
        let stale = !dropped.is_empty() && prng.chance(STALE_PICK);
        let pool = if stale || live.is_empty() { &dropped } else { &live };
        let partition_id = *prng.pick(pool)?;
        Some(TableBucket { table_id: self.table_id, partition_id: Some(partition_id), bucket_id })
    }

    /// When `bucket`'s partition was dropped, if it was.
    pub fn dropped_at_ms(&self, bucket: TableBucket) -> Option<u64> {
        let partition_id = bucket.partition_id?;
        self.lock().dropped.get(&partition_id).copied()
    }

    /// Whether `bucket`'s partition had been dropped by `at_ms`.
    pub fn dropped_by(&self, bucket: TableBucket, at_ms: u64) -> bool {
        self.dropped_at_ms(bucket).is_some_and(|dropped_ms| dropped_ms <= at_ms)
    }

    fn lock(&self) -> MutexGuard<'_, PartitionsState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_partition_ids_are_never_reused() {
        let partitions = TablePartitions::new(1, 2, true);
        let first = partitions.create();
        let second = partitions.create();
        assert_eq!(partitions.drop_oldest(10), Some(first));
        let third = partitions.create();
        assert!(third > second && second > first, "{first} {second} {third}");
        assert_eq!(partitions.live_partitions(), vec![second, third]);
        assert!(partitions
            .dropped_by(TableBucket { table_id: 1, partition_id: Some(first), bucket_id: 0 }, 10));
        assert!(!partitions
            .dropped_by(TableBucket { table_id: 1, partition_id: Some(first), bucket_id: 0 }, 9));
        assert_eq!(partitions.live_buckets().len(), 4);
        assert_eq!(partitions.dropped_buckets().len(), 2);
    }

    #[test]
    fn a_non_partitioned_table_has_only_buckets_without_a_partition() {
        let table = TablePartitions::new(1, 3, false);
        assert_eq!(table.live_buckets(), table.buckets_of(None));
        let mut prng = Prng::from_seed(7);
        for _ in 0..20 {
            assert_eq!(table.pick_bucket(&mut prng).unwrap().partition_id, None);
        }
    }
}
