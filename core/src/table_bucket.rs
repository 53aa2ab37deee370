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
