//! Where a bucket's local files live: Fluss's layout, `{database}/{table}-{table_id}/log-{bucket}`
//! and `kv-{bucket}`, with `{partition}-p{partition_id}/` between them for a partitioned
//! table's bucket. The paths are relative to the node's data directory.
//!
//! The names come from the tables and partitions the node serves ([`TabletDirs::add_table`],
//! [`TabletDirs::add_partition`]); a bucket whose table or partition is not registered has no
//! directory, so that nothing is ever created under a guessed name. A name that is not a
//! single plain path component is refused when it is registered, never turned into a path.

use std::collections::BTreeMap;

use crate::sync::{Mutex, MutexGuard};
use crate::table_bucket::TableBucket;

/// Fluss's limit on database, table and partition names.
pub const DIR_NAME_BYTES_MAX: usize = 200;
/// Tables whose names a node remembers at once.
pub const TABLES_MAX: usize = 100_000;
/// Partitions of one table whose names a node remembers at once.
pub const PARTITIONS_PER_TABLE_MAX: usize = 100_000;

/// A table's name, as its directory spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TablePath {
    pub database: String,
    pub table: String,
}

impl TablePath {
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> TablePath {
        TablePath { database: database.into(), table: table.into() }
    }
}

impl std::fmt::Display for TablePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// A bucket's two local directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDirs {
    /// The changelog's segments.
    pub log_dir: String,
    /// The KV engine's files.
    pub kv_dir: String,
}

/// Why a name cannot be registered. Never retriable: the name is what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabletDirsError {
    #[error("{what} name {name:?} cannot name a directory: {reason}")]
    BadName { what: &'static str, name: String, reason: &'static str },
    #[error("table {table_id} is registered as {registered}, not {requested}")]
    RenamedTable { table_id: i64, registered: TablePath, requested: TablePath },
    #[error("partition {partition_id} of table {table_id} is registered as {registered:?}, not {requested:?}")]
    RenamedPartition { table_id: i64, partition_id: i64, registered: String, requested: String },
    #[error("table {table_id} is not registered")]
    UnknownTable { table_id: i64 },
    #[error("too many {what} (at most {max})")]
    TooMany { what: &'static str, max: usize },
}

/// The one rule: the directories of `bucket_id` of table `table_id` named `path`, in partition
/// `partition` (name and id) when the table is partitioned.
pub fn bucket_dirs(
    path: &TablePath,
    table_id: i64,
    partition: Option<(&str, i64)>,
    bucket_id: i32,
) -> BucketDirs {
    let mut parent = table_dir(path, table_id);
    if let Some((name, partition_id)) = partition {
        parent = format!("{parent}/{name}-p{partition_id}");
    }
    BucketDirs {
        log_dir: format!("{parent}/log-{bucket_id}"),
        kv_dir: format!("{parent}/kv-{bucket_id}"),
    }
}

/// The directory of table `table_id` named `path`, which holds its buckets' and partitions'.
pub fn table_dir(path: &TablePath, table_id: i64) -> String {
    format!("{}/{}-{table_id}", path.database, path.table)
}

/// Whether `name` is a file name in the local layout's sense: one plain path component.
fn check_name(what: &'static str, name: &str) -> Result<(), TabletDirsError> {
    let bad = |reason| Err(TabletDirsError::BadName { what, name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > DIR_NAME_BYTES_MAX {
        return bad("it is longer than 200 bytes");
    }
    if name == "." || name == ".." {
        return bad("it names a directory itself");
    }
    if name.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return bad("it holds a separator or a control character");
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct TableNames {
    path: TablePath,
    partitions: BTreeMap<i64, String>,
}

/// The names of the tables and partitions a node serves, and the directories they give.
#[derive(Debug, Default)]
pub struct TabletDirs {
    tables: Mutex<BTreeMap<i64, TableNames>>,
}

impl TabletDirs {
    pub fn new() -> TabletDirs {
        TabletDirs::default()
    }

    /// Registers table `table_id`'s name. The same name again is a no-op; another name for a
    /// registered id is refused (the directories would move).
    pub fn add_table(&self, table_id: i64, path: &TablePath) -> Result<(), TabletDirsError> {
        check_name("database", &path.database)?;
        check_name("table", &path.table)?;
        let mut tables = self.lock();
        match tables.get(&table_id) {
            Some(registered) if registered.path == *path => Ok(()),
            Some(registered) => Err(TabletDirsError::RenamedTable {
                table_id,
                registered: registered.path.clone(),
                requested: path.clone(),
            }),
            None if tables.len() >= TABLES_MAX => {
                Err(TabletDirsError::TooMany { what: "tables", max: TABLES_MAX })
            }
            None => {
                let names = TableNames { path: path.clone(), partitions: BTreeMap::new() };
                tables.insert(table_id, names);
                Ok(())
            }
        }
    }

    /// Registers partition `partition_id` of registered table `table_id`, as for tables.
    pub fn add_partition(
        &self,
        table_id: i64,
        partition_id: i64,
        name: &str,
    ) -> Result<(), TabletDirsError> {
        check_name("partition", name)?;
        let mut tables = self.lock();
        let table = tables.get_mut(&table_id).ok_or(TabletDirsError::UnknownTable { table_id })?;
        match table.partitions.get(&partition_id) {
            Some(registered) if registered == name => Ok(()),
            Some(registered) => Err(TabletDirsError::RenamedPartition {
                table_id,
                partition_id,
                registered: registered.clone(),
                requested: name.to_string(),
            }),
            None if table.partitions.len() >= PARTITIONS_PER_TABLE_MAX => {
                Err(TabletDirsError::TooMany { what: "partitions", max: PARTITIONS_PER_TABLE_MAX })
            }
            None => {
                table.partitions.insert(partition_id, name.to_string());
                Ok(())
            }
        }
    }

    /// Forgets a dropped partition's name.
    pub fn remove_partition(&self, table_id: i64, partition_id: i64) {
        if let Some(table) = self.lock().get_mut(&table_id) {
            table.partitions.remove(&partition_id);
        }
    }

    /// Forgets a dropped table's names.
    pub fn remove_table(&self, table_id: i64) {
        self.lock().remove(&table_id);
    }

    /// The bucket's directories; `None` when its table or partition is not registered.
    pub fn dirs(&self, bucket: TableBucket) -> Option<BucketDirs> {
        let tables = self.lock();
        let table = tables.get(&bucket.table_id)?;
        let partition = match bucket.partition_id {
            Some(partition_id) => {
                Some((table.partitions.get(&partition_id)?.as_str(), partition_id))
            }
            None => None,
        };
        Some(bucket_dirs(&table.path, bucket.table_id, partition, bucket.bucket_id))
    }

    /// Poisoning is harmless: the maps change by single inserts and removals.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<i64, TableNames>> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> TablePath {
        TablePath::new("shop", "orders")
    }

    #[test]
    fn a_bucket_lives_where_fluss_puts_it() {
        let dirs = TabletDirs::new();
        dirs.add_table(7, &orders()).expect("table");
        assert_eq!(
            dirs.dirs(TableBucket::new(7, 2)),
            Some(BucketDirs {
                log_dir: "shop/orders-7/log-2".into(),
                kv_dir: "shop/orders-7/kv-2".into()
            })
        );
        dirs.add_partition(7, 12, "2024$eu").expect("partition");
        let bucket = TableBucket { table_id: 7, partition_id: Some(12), bucket_id: 0 };
        assert_eq!(
            dirs.dirs(bucket).map(|d| d.log_dir),
            Some("shop/orders-7/2024$eu-p12/log-0".into())
        );
    }

    #[test]
    fn an_unregistered_table_or_partition_has_no_directory() {
        let dirs = TabletDirs::new();
        assert_eq!(dirs.dirs(TableBucket::new(7, 0)), None);
        dirs.add_table(7, &orders()).expect("table");
        let bucket = TableBucket { table_id: 7, partition_id: Some(3), bucket_id: 0 };
        assert_eq!(dirs.dirs(bucket), None);
        dirs.add_partition(7, 3, "p").expect("partition");
        assert!(dirs.dirs(bucket).is_some());
        dirs.remove_partition(7, 3);
        assert_eq!(dirs.dirs(bucket), None);
        dirs.remove_table(7);
        assert_eq!(dirs.dirs(TableBucket::new(7, 0)), None);
    }

    #[test]
    fn names_that_are_not_one_path_component_are_refused() {
        let dirs = TabletDirs::new();
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(201)] {
            assert!(
                matches!(
                    dirs.add_table(1, &TablePath::new(bad, "t")),
                    Err(TabletDirsError::BadName { .. })
                ),
                "{bad:?}"
            );
            assert!(dirs.add_table(1, &TablePath::new("db", bad)).is_err(), "{bad:?}");
        }
        dirs.add_table(1, &TablePath::new("db", "t")).expect("table");
        assert!(dirs.add_partition(1, 1, "../x").is_err());
        assert!(matches!(
            dirs.add_partition(2, 1, "p"),
            Err(TabletDirsError::UnknownTable { table_id: 2 })
        ));
    }

    #[test]
    fn a_registered_id_keeps_its_name() {
        let dirs = TabletDirs::new();
        dirs.add_table(1, &orders()).expect("table");
        dirs.add_table(1, &orders()).expect("same name again");
        assert!(matches!(
            dirs.add_table(1, &TablePath::new("shop", "returns")),
            Err(TabletDirsError::RenamedTable { .. })
        ));
        dirs.add_partition(1, 5, "a").expect("partition");
        dirs.add_partition(1, 5, "a").expect("same name again");
        assert!(dirs.add_partition(1, 5, "b").is_err());
    }
}
