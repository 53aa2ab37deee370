//! The identity of a bucket.

use std::fmt;

/// `(table id, optional partition id, bucket id)`, compared by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableBucket {
    pub table_id: i64,
    pub partition_id: Option<i64>,
    pub bucket_id: i32,
}

impl TableBucket {
    pub fn new(table_id: i64, bucket_id: i32) -> Self {
        TableBucket { table_id, partition_id: None, bucket_id }
    }

    /// A directory name unique to this bucket, stable across restarts.
    pub fn dir_name(&self) -> String {
        self.dir_name_display().to_string()
    }

    /// [`TableBucket::dir_name`] for formatting into other text without building it first.
    pub fn dir_name_display(&self) -> DirName {
        DirName(*self)
    }
}

/// Displays (and debug-prints) as [`TableBucket::dir_name`] does.
#[derive(Clone, Copy)]
pub struct DirName(TableBucket);

impl fmt::Debug for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl fmt::Display for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // Padding applies to the whole name.
            return f.pad(&self.to_string());
        }
        let TableBucket { table_id, partition_id, bucket_id } = self.0;
        match partition_id {
            Some(partition_id) => write!(f, "t{table_id}-p{partition_id}-b{bucket_id}"),
            None => write!(f, "t{table_id}-b{bucket_id}"),
        }
    }
}

impl fmt::Display for TableBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition_id {
            Some(partition_id) => write!(
                f,
                "TableBucket{{tableId={}, partitionId={}, bucket={}}}",
                self.table_id, partition_id, self.bucket_id
            ),
            None => {
                write!(f, "TableBucket{{tableId={}, bucket={}}}", self.table_id, self.bucket_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dir_name_display_formats_as_the_dir_name() {
        let plain = TableBucket::new(3, 7);
        let partitioned = TableBucket { table_id: 1, partition_id: Some(12), bucket_id: 0 };
        assert_eq!(plain.dir_name(), "t3-b7");
        assert_eq!(partitioned.dir_name(), "t1-p12-b0");
        for bucket in [plain, partitioned] {
            let name = bucket.dir_name();
            let display = bucket.dir_name_display();
            assert_eq!(format!("{display}"), name);
            assert_eq!(format!("{display:?}"), format!("{name:?}"));
            assert_eq!(
                format!("{display:>12}|{display:<12}|{display:.3}"),
                format!("{name:>12}|{name:<12}|{name:.3}")
            );
        }
    }
}
