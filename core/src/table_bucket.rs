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
        match self.partition_id {
            Some(partition_id) => {
                format!("t{}-p{}-b{}", self.table_id, partition_id, self.bucket_id)
            }
            None => format!("t{}-b{}", self.table_id, self.bucket_id),
        }
    }
}

impl TableBucket {
    /// The bucket whose [`TableBucket::dir_name`] is `name`; `None` for any other name.
    pub fn from_dir_name(name: &str) -> Option<TableBucket> {
        let rest = name.strip_prefix('t')?;
        let (table, rest) = rest.split_once('-')?;
        let (partition_id, bucket) = match rest.strip_prefix('p') {
            Some(rest) => {
                let (partition, bucket) = rest.split_once('-')?;
                (Some(partition.parse().ok()?), bucket)
            }
            None => (None, rest),
        };
        let bucket = TableBucket {
            table_id: table.parse().ok()?,
            partition_id,
            bucket_id: bucket.strip_prefix('b')?.parse().ok()?,
        };
        // Only the canonical spelling (no signs, no leading zeros) names a bucket.
        (bucket.dir_name() == name).then_some(bucket)
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
    fn a_directory_name_names_its_bucket_and_nothing_else_does() {
        for bucket in [
            TableBucket::new(3, 7),
            TableBucket { table_id: 12, partition_id: Some(40), bucket_id: 0 },
        ] {
            assert_eq!(TableBucket::from_dir_name(&bucket.dir_name()), Some(bucket));
        }
        for name in ["t1", "t1-b", "x1-b2", "t1-p-b2", "t01-b2", "t1-b+2", "t1-b2-", "t1-q3-b2"] {
            assert_eq!(TableBucket::from_dir_name(name), None, "{name}");
        }
    }
}
