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
        self.dir_name_display().to_plain_string()
    }

    /// [`TableBucket::dir_name`] for formatting into other text without building it first.
    pub fn dir_name_display(&self) -> DirName {
        DirName(*self)
    }
}

/// Displays (and debug-prints) as [`TableBucket::dir_name`] does.
#[derive(Clone, Copy)]
pub struct DirName(TableBucket);

impl DirName {
    /// The name as a `String`, written without padding.
    fn to_plain_string(self) -> String {
        let mut name = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_plain(&mut name);
        name
    }

    // Written piece by piece: task names and trace lines format this name by the thousand.
    fn write_plain(self, out: &mut impl fmt::Write) -> fmt::Result {
        let TableBucket { table_id, partition_id, bucket_id } = self.0;
        out.write_str("t")?;
        write_decimal(out, table_id)?;
        if let Some(partition_id) = partition_id {
            out.write_str("-p")?;
            write_decimal(out, partition_id)?;
        }
        out.write_str("-b")?;
        write_decimal(out, i64::from(bucket_id))
    }
}

impl fmt::Debug for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_plain_string(), f)
    }
}

impl fmt::Display for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // Padding applies to the whole name.
            return f.pad(&self.to_plain_string());
        }
        self.write_plain(f)
    }
}

/// Writes `value` as `Display` does (no padding), without the formatting machinery.
fn write_decimal(out: &mut impl fmt::Write, value: i64) -> fmt::Result {
    // |i64::MIN| has 19 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.write_str("-")?;
    }
    out.write_str(std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?)
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

    #[test]
    fn the_dir_name_display_formats_as_the_dir_name() {
        let plain = TableBucket::new(3, 7);
        let partitioned = TableBucket { table_id: 1, partition_id: Some(12), bucket_id: 0 };
        assert_eq!(plain.dir_name(), "t3-b7");
        assert_eq!(partitioned.dir_name(), "t1-p12-b0");
        let extremes = [
            TableBucket { table_id: i64::MIN, partition_id: Some(i64::MAX), bucket_id: i32::MIN },
            TableBucket { table_id: -1, partition_id: Some(-10), bucket_id: i32::MAX },
            TableBucket { table_id: 1_000_000_007, partition_id: None, bucket_id: -3 },
        ];
        for bucket in extremes {
            let expected = match bucket.partition_id {
                Some(p) => format!("t{}-p{}-b{}", bucket.table_id, p, bucket.bucket_id),
                None => format!("t{}-b{}", bucket.table_id, bucket.bucket_id),
            };
            assert_eq!(bucket.dir_name(), expected);
        }
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
