//! Automatic partitioning by time (`table.auto-partition.*`), as Fluss's coordinator does it:
//! a partitioned table with one partition key may ask for a partition per time unit, created
//! `num-precreate` units ahead (the current one included) and dropped once older than
//! `num-retention` units before the current one.
//!
//! The work is one function of the time, [`Catalog::auto_partition_tick`], so that a test
//! drives it with any clock; the node calls it at start-up, after a CreateTable and then
//! periodically (see `gateway::auto_partition`).
//!
//! Partition names follow Fluss's formats per time unit, in the table's time zone: `yyyy`
//! (YEAR), `yyyyQ` (QUARTER), `yyyyMM` (MONTH), `yyyyMMdd` (DAY), `yyyyMMddHH` (HOUR). Time
//! zones are `UTC` (the default here; Fluss's is the coordinator's system zone) or a fixed
//! offset (`+08:00`, `UTC-05:30`); a region name is refused (INVALID_CONFIG), since this
//! server carries no time-zone database.

use std::collections::BTreeMap;

use super::model::TableInfo;
use super::partition::{partition_name, TablePartition};
use super::{Catalog, CatalogError};

pub const PROP_AUTO_PARTITION_ENABLED: &str = "table.auto-partition.enabled";
pub const PROP_AUTO_PARTITION_TIME_UNIT: &str = "table.auto-partition.time-unit";
pub const PROP_AUTO_PARTITION_NUM_PRECREATE: &str = "table.auto-partition.num-precreate";
pub const PROP_AUTO_PARTITION_NUM_RETENTION: &str = "table.auto-partition.num-retention";
pub const PROP_AUTO_PARTITION_TIME_ZONE: &str = "table.auto-partition.time-zone";
/// Fluss's key naming the auto-partition key of a table with several partition keys; only
/// tables with one partition key are auto-partitioned here.
pub const PROP_AUTO_PARTITION_KEY: &str = "table.auto-partition.key";

/// Fluss's defaults.
const NUM_PRECREATE_DEFAULT: u32 = 2;
const NUM_RETENTION_DEFAULT: u32 = 7;
/// Bounds on both counts: far beyond any sensible table, well within the date arithmetic.
const NUM_MAX: u32 = 10_000;

const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

/// The span of one auto-created partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Year,
    Quarter,
    Month,
    Day,
    Hour,
}

impl TimeUnit {
    fn parse(value: &str) -> Option<TimeUnit> {
        match value.to_ascii_uppercase().as_str() {
            "YEAR" => Some(TimeUnit::Year),
            "QUARTER" => Some(TimeUnit::Quarter),
            "MONTH" => Some(TimeUnit::Month),
            "DAY" => Some(TimeUnit::Day),
            "HOUR" => Some(TimeUnit::Hour),
            _ => None,
        }
    }
}

/// A table's automatic partitioning, resolved from its properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoPartitioning {
    pub time_unit: TimeUnit,
    pub num_precreate: u32,
    pub num_retention: u32,
    /// The time zone's fixed offset from UTC.
    pub utc_offset_minutes: i32,
}

impl AutoPartitioning {
    /// The table's automatic partitioning, `None` when it is not enabled; refuses settings
    /// Fluss refuses or this server does not support (INVALID_CONFIG).
    pub fn of_properties(
        properties: &BTreeMap<String, String>,
        partition_key: &[String],
    ) -> Result<Option<AutoPartitioning>, CatalogError> {
        let invalid = |message: String| Err(CatalogError::InvalidConfig(message));
        let enabled = match properties.get(PROP_AUTO_PARTITION_ENABLED) {
            None => false,
            Some(value) if value.eq_ignore_ascii_case("true") => true,
            Some(value) if value.eq_ignore_ascii_case("false") => false,
            Some(value) => return invalid(format!("{PROP_AUTO_PARTITION_ENABLED}={value}")),
        };
        if !enabled {
            return Ok(None);
        }
        match partition_key {
            [] => {
                return invalid(format!("{PROP_AUTO_PARTITION_ENABLED} needs a partitioned table"))
            }
            [_] => {}
            [..] => {
                return invalid(format!(
                    "automatic partitioning of a table with several partition keys \
                     ({PROP_AUTO_PARTITION_KEY}) is not supported"
                ))
            }
        }
        if let Some(key) = properties.get(PROP_AUTO_PARTITION_KEY) {
            if !partition_key.contains(key) {
                return invalid(format!("{PROP_AUTO_PARTITION_KEY}={key} is not a partition key"));
            }
        }
        let time_unit = match properties.get(PROP_AUTO_PARTITION_TIME_UNIT) {
            None => TimeUnit::Day,
            Some(value) => match TimeUnit::parse(value) {
                Some(unit) => unit,
                None => {
                    return invalid(format!(
                        "{PROP_AUTO_PARTITION_TIME_UNIT}={value}; one of YEAR, QUARTER, MONTH, \
                         DAY, HOUR"
                    ))
                }
            },
        };
        let count = |key: &str, default: u32| -> Result<u32, CatalogError> {
            match properties.get(key) {
                None => Ok(default),
                Some(value) => {
                    value.trim().parse::<u32>().ok().filter(|n| *n <= NUM_MAX).ok_or_else(|| {
                        CatalogError::InvalidConfig(format!("{key}={value}; 0..={NUM_MAX}"))
                    })
                }
            }
        };
        let num_precreate = count(PROP_AUTO_PARTITION_NUM_PRECREATE, NUM_PRECREATE_DEFAULT)?;
        let num_retention = count(PROP_AUTO_PARTITION_NUM_RETENTION, NUM_RETENTION_DEFAULT)?;
        let utc_offset_minutes = match properties.get(PROP_AUTO_PARTITION_TIME_ZONE) {
            None => 0,
            Some(zone) => match parse_utc_offset_minutes(zone) {
                Some(minutes) => minutes,
                None => {
                    return invalid(format!(
                        "{PROP_AUTO_PARTITION_TIME_ZONE}={zone}; only UTC or a fixed offset \
                         such as +08:00 is supported"
                    ))
                }
            },
        };
        Ok(Some(AutoPartitioning { time_unit, num_precreate, num_retention, utc_offset_minutes }))
    }

    /// The name of the partition `step` units after the one holding `now_ms` (negative: before).
    pub fn partition_name_at(&self, now_ms: i64, step: i64) -> String {
        let local_ms = now_ms.saturating_add(i64::from(self.utc_offset_minutes) * MS_PER_MINUTE);
        let days = local_ms.div_euclid(MS_PER_DAY);
        let (year, month, _) = civil_from_days(days);
        match self.time_unit {
            TimeUnit::Year => format!("{:04}", year.saturating_add(step)),
            TimeUnit::Quarter => {
                let (year, month) = add_months(year, month, step.saturating_mul(3));
                format!("{year:04}{}", (month - 1) / 3 + 1)
            }
            TimeUnit::Month => {
                let (year, month) = add_months(year, month, step);
                format!("{year:04}{month:02}")
            }
            TimeUnit::Day => {
                let (year, month, day) = civil_from_days(days.saturating_add(step));
                format!("{year:04}{month:02}{day:02}")
            }
            TimeUnit::Hour => {
                let shifted = local_ms.saturating_add(step.saturating_mul(MS_PER_HOUR));
                let (year, month, day) = civil_from_days(shifted.div_euclid(MS_PER_DAY));
                let hour = shifted.rem_euclid(MS_PER_DAY) / MS_PER_HOUR;
                format!("{year:04}{month:02}{day:02}{hour:02}")
            }
        }
    }
}

/// `UTC`, `Z`, `GMT`, or a fixed offset `+HH:MM`, `-HH`, `UTC+HH:MM`: its minutes east of UTC.
fn parse_utc_offset_minutes(zone: &str) -> Option<i32> {
    let zone = zone.trim();
    let offset =
        ["UTC", "GMT", "Z"].iter().find_map(|prefix| zone.strip_prefix(prefix)).unwrap_or(zone);
    if offset.is_empty() {
        return Some(0);
    }
    let (sign, rest) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((hours, minutes)) => (hours, minutes),
        None => (rest, "0"),
    };
    let all_digits = |text: &str| {
        !text.is_empty() && text.len() <= 2 && text.bytes().all(|b| b.is_ascii_digit())
    };
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours <= 18 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

/// `(year, month 1..=12)` plus `months`.
fn add_months(year: i64, month: i64, months: i64) -> (i64, i64) {
    let total = year.saturating_mul(12).saturating_add(month - 1).saturating_add(months);
    (total.div_euclid(12), total.rem_euclid(12) + 1)
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What one tick changed: partitions created ahead and partitions dropped past retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoPartitionChanges {
    pub created: Vec<TablePartition>,
    pub dropped: Vec<TablePartition>,
}

/// Whether `name` has the shape of an automatic partition's name for `partitioning` (so that
/// a partition created by hand with another value is never dropped by retention).
fn is_auto_partition_name(partitioning: &AutoPartitioning, name: &str) -> bool {
    let len = partitioning.partition_name_at(0, 0).len();
    name.len() == len && name.bytes().all(|b| b.is_ascii_digit())
}

impl Catalog {
    /// The catalog clock's wall time in ms, what [`Catalog::auto_partition_tick`] is driven
    /// with in production.
    pub fn now_wall_ms(&self) -> i64 {
        self.now_ms()
    }

    /// One pass of automatic partitioning at `now_ms` (wall-clock ms): for every table that
    /// enables it, creates the partitions of the current unit and the `num-precreate - 1`
    /// after it that are missing, and drops the automatic partitions older than
    /// `num-retention` units before the current one. A partition refused by a table's limits
    /// is skipped (logged); the tick goes on with the other tables.
    pub fn auto_partition_tick(&self, now_ms: i64) -> Result<AutoPartitionChanges, CatalogError> {
        let mut changes = AutoPartitionChanges::default();
        for table in self.tables() {
            let Ok(Some(partitioning)) =
                AutoPartitioning::of_properties(&table.properties, &table.partition_key)
            else {
                continue;
            };
            self.auto_partition_table(&table, &partitioning, now_ms, &mut changes)?;
        }
        Ok(changes)
    }

    fn auto_partition_table(
        &self,
        table: &TableInfo,
        partitioning: &AutoPartitioning,
        now_ms: i64,
        changes: &mut AutoPartitionChanges,
    ) -> Result<(), CatalogError> {
        let key = &table.partition_key[0];
        let oldest_kept =
            partitioning.partition_name_at(now_ms, -i64::from(partitioning.num_retention));
        for partition in self.list_partitions(&table.path, None)? {
            let name = partition.name();
            if is_auto_partition_name(partitioning, &name) && name < oldest_kept {
                let spec = [(key.clone(), name)];
                if let Some(dropped) = self.drop_partition(&table.path, &spec, true)? {
                    changes.dropped.push(dropped);
                }
            }
        }
        let existing: Vec<String> =
            self.list_partitions(&table.path, None)?.iter().map(|p| p.name()).collect();
        for step in 0..i64::from(partitioning.num_precreate) {
            let value = partitioning.partition_name_at(now_ms, step);
            if existing.contains(&partition_name(std::slice::from_ref(&value))) {
                continue;
            }
            match self.create_partition(&table.path, &[(key.clone(), value)], true) {
                Ok(created) => changes.created.push(created),
                Err(
                    error @ (CatalogError::TooManyPartitions(_) | CatalogError::TooManyBuckets(_)),
                ) => {
                    tracing::warn!(table = %table.path, %error, "automatic partition not created");
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitioning(time_unit: TimeUnit, utc_offset_minutes: i32) -> AutoPartitioning {
        AutoPartitioning { time_unit, num_precreate: 2, num_retention: 7, utc_offset_minutes }
    }

    /// 2024-11-11T23:30:00Z.
    const NOW_MS: i64 = 1_731_367_800_000;

    #[test]
    fn names_follow_flusss_format_per_time_unit() {
        let name = |unit, step| partitioning(unit, 0).partition_name_at(NOW_MS, step);
        assert_eq!(name(TimeUnit::Year, 0), "2024");
        assert_eq!(name(TimeUnit::Year, -3), "2021");
        assert_eq!(name(TimeUnit::Quarter, 0), "20244");
        assert_eq!(name(TimeUnit::Quarter, 1), "20251");
        assert_eq!(name(TimeUnit::Month, 0), "202411");
        assert_eq!(name(TimeUnit::Month, 2), "202501");
        assert_eq!(name(TimeUnit::Day, 0), "20241111");
        assert_eq!(name(TimeUnit::Day, 20), "20241201");
        assert_eq!(name(TimeUnit::Day, -11), "20241031");
        assert_eq!(name(TimeUnit::Hour, 0), "2024111123");
        assert_eq!(name(TimeUnit::Hour, 1), "2024111200");
    }

    #[test]
    fn names_are_in_the_tables_time_zone() {
        assert_eq!(partitioning(TimeUnit::Day, 8 * 60).partition_name_at(NOW_MS, 0), "20241112");
        assert_eq!(
            partitioning(TimeUnit::Hour, -(5 * 60 + 30)).partition_name_at(NOW_MS, 0),
            "2024111118"
        );
    }

    #[test]
    fn leap_days_and_the_epoch_are_dated_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn only_utc_and_fixed_offsets_are_time_zones() {
        assert_eq!(parse_utc_offset_minutes("UTC"), Some(0));
        assert_eq!(parse_utc_offset_minutes("+08:00"), Some(480));
        assert_eq!(parse_utc_offset_minutes("UTC-05:30"), Some(-330));
        assert_eq!(parse_utc_offset_minutes("-3"), Some(-180));
        assert_eq!(parse_utc_offset_minutes("Asia/Shanghai"), None);
        assert_eq!(parse_utc_offset_minutes("+25:00"), None);
        assert_eq!(parse_utc_offset_minutes("+1:2:3"), None);
    }
}
