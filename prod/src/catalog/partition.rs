//! Partitions of partitioned tables: CreatePartition, DropPartition and ListPartitionInfos on
//! the catalog, with Fluss's rules and errors.
//!
//! A partition is one value per partition key; its name is the values joined by `$` in
//! partition-key order (Fluss's `ResolvedPartitionSpec`). Partition ids come from one counter
//! for the whole catalog, persisted with it, so they increase monotonically and are never
//! reused, not even for a partition created again after a drop.

use super::codec::State;
use super::model::{invalid_name_reason, TableInfo, TablePath};
use super::{Catalog, CatalogError};

/// Separates the values of a partition's name (Fluss's `PARTITION_SPEC_SEPARATOR`).
pub const PARTITION_NAME_SEPARATOR: char = '$';
/// The prefix Fluss reserves for internal names; a new partition's value may not start with it.
const INTERNAL_NAME_PREFIX: &str = "__";
/// The id of the first partition ever created in a catalog.
pub const FIRST_PARTITION_ID: i64 = 0;

/// A partition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Unique in the catalog, never reused.
    pub partition_id: i64,
    /// One value per partition key, in partition-key order.
    pub values: Vec<String>,
}

impl PartitionInfo {
    /// Fluss's partition name: the values joined by `$`.
    pub fn name(&self) -> String {
        partition_name(&self.values)
    }

    /// `(partition key, value)` pairs in partition-key order.
    pub fn spec(&self, partition_key: &[String]) -> Vec<(String, String)> {
        partition_key.iter().cloned().zip(self.values.iter().cloned()).collect()
    }
}

/// The name of the partition holding `values`.
pub fn partition_name(values: &[String]) -> String {
    values.join(&PARTITION_NAME_SEPARATOR.to_string())
}

/// The values of a partition spec (`(key, value)` pairs, any order) in partition-key order,
/// checked as Fluss does: the table is partitioned, every partition key is given once and
/// nothing else, and every value is a valid name (on creation, also without the internal
/// prefix `__`).
pub fn resolve_partition_spec(
    table: &TableInfo,
    spec: &[(String, String)],
    is_create: bool,
) -> Result<Vec<String>, CatalogError> {
    if !table.is_partitioned() {
        return Err(CatalogError::TableNotPartitioned(table.path.clone()));
    }
    check_spec_keys(table, spec)?;
    if spec.len() != table.partition_key.len() {
        return Err(CatalogError::InvalidPartition(format!(
            "PartitionSpec size is not equal to partition keys size for partitioned table {}.",
            table.path
        )));
    }
    let mut values = Vec::with_capacity(table.partition_key.len());
    for key in &table.partition_key {
        let Some((_, value)) = spec.iter().find(|(name, _)| name == key) else {
            return Err(CatalogError::InvalidPartition(format!(
                "PartitionSpec {spec:?} does not contain partition key '{key}' for partitioned \
                 table {}.",
                table.path
            )));
        };
        let reason = invalid_name_reason(value).or_else(|| {
            (is_create && value.starts_with(INTERNAL_NAME_PREFIX))
                .then(|| format!("'{INTERNAL_NAME_PREFIX}' is not allowed as prefix"))
        });
        if let Some(reason) = reason {
            return Err(CatalogError::InvalidPartition(format!(
                "The partition value {value} is invalid: {reason}"
            )));
        }
        values.push(value.clone());
    }
    Ok(values)
}

/// Every key of a (possibly partial) spec is a partition key of the table, named once.
fn check_spec_keys(table: &TableInfo, spec: &[(String, String)]) -> Result<(), CatalogError> {
    for (index, (key, _)) in spec.iter().enumerate() {
        if !table.partition_key.contains(key) {
            return Err(CatalogError::InvalidPartition(format!(
                "'{key}' is not a partition key of table {} (partition keys {:?})",
                table.path, table.partition_key
            )));
        }
        if spec[..index].iter().any(|(other, _)| other == key) {
            return Err(CatalogError::InvalidPartition(format!(
                "partition key '{key}' appears twice in the partition spec"
            )));
        }
    }
    Ok(())
}

/// Whether `partition` has every value a partial spec asks for.
fn matches_partial_spec(
    table: &TableInfo,
    partition: &PartitionInfo,
    partial: &[(String, String)],
) -> bool {
    partial.iter().all(|(key, value)| {
        table
            .partition_key
            .iter()
            .position(|name| name == key)
            .and_then(|index| partition.values.get(index))
            .is_some_and(|held| held == value)
    })
}

/// A partition with the table it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePartition {
    pub table: TableInfo,
    pub partition: PartitionInfo,
}

impl Catalog {
    /// CreatePartition. Returns the new partition, or with `ignore_if_exists` the existing one
    /// (its id unchanged). Refused: a table that is missing (TABLE_NOT_EXIST) or not
    /// partitioned (TABLE_NOT_PARTITIONED), a bad spec (PARTITION_SPEC_INVALID), an existing
    /// partition (PARTITION_ALREADY_EXISTS), and a partition over the table's limits
    /// (PARTITION_MAX_NUM, BUCKET_MAX_NUM).
    pub fn create_partition(
        &self,
        path: &TablePath,
        spec: &[(String, String)],
        ignore_if_exists: bool,
    ) -> Result<TablePartition, CatalogError> {
        let config = *self.config();
        self.mutate(|state, _now_ms| {
            let next_partition_id = state.next_partition_id;
            let entry = state
                .tables
                .get_mut(path)
                .ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
            let values = resolve_partition_spec(&entry.info, spec, true)?;
            if let Some(existing) = entry.partitions.iter().find(|p| p.values == values) {
                let found =
                    TablePartition { table: entry.info.clone(), partition: existing.clone() };
                return if ignore_if_exists {
                    Ok((found, false))
                } else {
                    Err(CatalogError::PartitionAlreadyExists {
                        path: path.clone(),
                        name: partition_name(&values),
                    })
                };
            }
            let partitions = entry.partitions.len();
            if partitions >= config.max_partitions_per_table {
                return Err(CatalogError::TooManyPartitions(format!(
                    "table {path} has {partitions} partitions; at most {} are allowed \
                     (max.partition.num)",
                    config.max_partitions_per_table
                )));
            }
            let buckets =
                (partitions as i64 + 1).saturating_mul(i64::from(entry.info.bucket_count));
            if buckets > config.max_buckets_per_partitioned_table {
                return Err(CatalogError::TooManyBuckets(format!(
                    "a new partition of table {path} would make {buckets} buckets; at most {} \
                     are allowed (max.bucket.num)",
                    config.max_buckets_per_partitioned_table
                )));
            }
            let partition = PartitionInfo { partition_id: next_partition_id, values };
            entry.partitions.push(partition.clone());
            let created = TablePartition { table: entry.info.clone(), partition };
            state.next_partition_id =
                next_partition_id.checked_add(1).ok_or(CatalogError::PartitionIdsExhausted)?;
            Ok((created, true))
        })
    }

    /// DropPartition. Returns the dropped partition (`None` when it was missing and that is
    /// ignored); its id is never given to another partition.
    pub fn drop_partition(
        &self,
        path: &TablePath,
        spec: &[(String, String)],
        ignore_if_not_exists: bool,
    ) -> Result<Option<TablePartition>, CatalogError> {
        self.mutate(|state, _now_ms| {
            let entry = state
                .tables
                .get_mut(path)
                .ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
            let values = resolve_partition_spec(&entry.info, spec, false)?;
            match entry.partitions.iter().position(|p| p.values == values) {
                Some(index) => {
                    let partition = entry.partitions.remove(index);
                    Ok((Some(TablePartition { table: entry.info.clone(), partition }), true))
                }
                None if ignore_if_not_exists => Ok((None, false)),
                None => Err(CatalogError::PartitionNotExist {
                    path: path.clone(),
                    name: partition_name(&values),
                }),
            }
        })
    }

    /// ListPartitionInfos: the table's partitions in id order, only those holding every value
    /// of `partial_spec` when one is given (whose keys must be partition keys).
    pub fn list_partitions(
        &self,
        path: &TablePath,
        partial_spec: Option<&[(String, String)]>,
    ) -> Result<Vec<PartitionInfo>, CatalogError> {
        let state = self.lock();
        let entry =
            state.tables.get(path).ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
        if !entry.info.is_partitioned() {
            return Err(CatalogError::TableNotPartitioned(path.clone()));
        }
        let partial = partial_spec.unwrap_or_default();
        check_spec_keys(&entry.info, partial)?;
        Ok(entry
            .partitions
            .iter()
            .filter(|partition| matches_partial_spec(&entry.info, partition, partial))
            .cloned()
            .collect())
    }

    /// The partition of `path` named `name` (Metadata by partition path).
    pub fn partition_by_name(
        &self,
        path: &TablePath,
        name: &str,
    ) -> Result<TablePartition, CatalogError> {
        let state = self.lock();
        let entry =
            state.tables.get(path).ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
        entry
            .partitions
            .iter()
            .find(|partition| partition.name() == name)
            .map(|partition| TablePartition {
                table: entry.info.clone(),
                partition: partition.clone(),
            })
            .ok_or_else(|| CatalogError::PartitionNotExist {
                path: path.clone(),
                name: name.to_string(),
            })
    }

    /// The partition with `partition_id`, in whichever table holds it (Metadata by id).
    pub fn partition_by_id(&self, partition_id: i64) -> Option<TablePartition> {
        find_partition(&self.lock(), partition_id)
    }

    /// The id the next created partition will get.
    pub fn next_partition_id(&self) -> i64 {
        self.lock().next_partition_id
    }
}

fn find_partition(state: &State, partition_id: i64) -> Option<TablePartition> {
    state.tables.values().find_map(|entry| {
        let partition = entry.partitions.iter().find(|p| p.partition_id == partition_id)?;
        Some(TablePartition { table: entry.info.clone(), partition: partition.clone() })
    })
}
