//! The catalog's partitions: CreatePartition, DropPartition and ListPartitionInfos with Fluss's
//! rules and error codes, ids never reused, limits, persistence, and a catalog file written
//! before partitions existed.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvtablet_core::env::LocalFs;
use kvtablet_prod::catalog::{
    codes, Catalog, CatalogConfig, CatalogError, TablePath, TableSpec, CATALOG_DIR, CATALOG_FILE,
};
use kvtablet_prod::disk_fs::DiskFs;
use kvtablet_prod::system_clock::SystemClock;

fn open(dir: &std::path::Path, config: CatalogConfig) -> Catalog {
    let fs = Arc::new(DiskFs::new(dir).expect("DiskFs"));
    Catalog::open(fs, Arc::new(SystemClock::new()), config).expect("open catalog")
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn spec(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

/// `(id INT, region STRING, day STRING, v STRING)`, key `(id, region, day)`, partitioned by
/// `(region, day)`, 2 buckets per partition.
fn partitioned_spec() -> TableSpec {
    TableSpec {
        schema_json: r#"{"version":1,"columns":[{"name":"id","data_type":{"type":"INTEGER","nullable":false},"id":0},{"name":"region","data_type":{"type":"STRING","nullable":false},"id":1},{"name":"day","data_type":{"type":"STRING","nullable":false},"id":2},{"name":"v","data_type":{"type":"STRING"},"id":3}],"primary_key":["id","region","day"],"highest_field_id":3}"#.to_string(),
        columns: strings(&["id", "region", "day", "v"]),
        primary_key: strings(&["id", "region", "day"]),
        partition_key: strings(&["region", "day"]),
        bucket_count: Some(2),
        properties: BTreeMap::new(),
        ..TableSpec::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, CatalogError>) -> i32 {
    result.expect_err("expected an error").error_code()
}

fn with_table(config: CatalogConfig) -> (tempfile::TempDir, Catalog, TablePath) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = open(dir.path(), config);
    catalog.create_database("db", None, false).expect("database");
    let path = TablePath::new("db", "events");
    catalog.create_table(&path, partitioned_spec(), false).expect("table");
    (dir, catalog, path)
}

#[test]
fn a_partitioned_table_keys_rows_and_buckets_by_its_primary_key_less_the_partition_keys() {
    let (_dir, catalog, path) = with_table(CatalogConfig::DEFAULT);
    let table = catalog.get_table(&path).expect("table");
    assert!(table.is_partitioned());
    assert_eq!(table.partition_key, strings(&["region", "day"]));
    assert_eq!(table.physical_primary_key(), strings(&["id"]));
    assert_eq!(table.bucket_key, strings(&["id"]), "the default bucket key");
}

#[test]
fn partition_keys_outside_the_primary_key_or_covering_it_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = open(dir.path(), CatalogConfig::DEFAULT);
    catalog.create_database("db", None, false).expect("database");
    let refused =
        |spec: TableSpec| code(catalog.create_table(&TablePath::new("db", "t"), spec, false));
    let outside = TableSpec { partition_key: strings(&["v"]), ..partitioned_spec() };
    assert_eq!(refused(outside), codes::INVALID_TABLE);
    let missing = TableSpec { partition_key: strings(&["nope"]), ..partitioned_spec() };
    assert_eq!(refused(missing), codes::INVALID_TABLE);
    let twice = TableSpec { partition_key: strings(&["day", "day"]), ..partitioned_spec() };
    assert_eq!(refused(twice), codes::INVALID_TABLE);
    let whole_key = TableSpec { primary_key: strings(&["region", "day"]), ..partitioned_spec() };
    assert_eq!(refused(whole_key), codes::INVALID_TABLE);
    let bucket_on_partition = TableSpec { bucket_key: strings(&["day"]), ..partitioned_spec() };
    assert_eq!(refused(bucket_on_partition), codes::INVALID_TABLE);
}

#[test]
fn partitions_are_created_listed_and_dropped_with_fluss_errors() {
    let (_dir, catalog, path) = with_table(CatalogConfig::DEFAULT);
    let eu = catalog.create_partition(&path, &spec(&[("day", "d1"), ("region", "EU")]), false);
    let eu = eu.expect("created").partition;
    assert_eq!(eu.name(), "EU$d1", "values joined by '$' in partition-key order");
    assert_eq!(eu.spec(&strings(&["region", "day"])), spec(&[("region", "EU"), ("day", "d1")]));
    let again = catalog.create_partition(&path, &spec(&[("region", "EU"), ("day", "d1")]), false);
    assert_eq!(code(again), codes::PARTITION_ALREADY_EXISTS);
    let ignored = catalog.create_partition(&path, &spec(&[("region", "EU"), ("day", "d1")]), true);
    assert_eq!(ignored.expect("ignored").partition, eu, "the existing partition, unchanged");

    let partial = catalog.create_partition(&path, &spec(&[("region", "US")]), false);
    assert_eq!(code(partial), codes::PARTITION_SPEC_INVALID);
    let other_key = catalog.create_partition(&path, &spec(&[("region", "US"), ("v", "x")]), false);
    assert_eq!(code(other_key), codes::PARTITION_SPEC_INVALID);
    let bad_value =
        catalog.create_partition(&path, &spec(&[("region", "U S"), ("day", "d")]), false);
    assert_eq!(code(bad_value), codes::PARTITION_SPEC_INVALID);
    let internal =
        catalog.create_partition(&path, &spec(&[("region", "__x"), ("day", "d")]), false);
    assert_eq!(code(internal), codes::PARTITION_SPEC_INVALID);
    let empty = catalog.create_partition(&path, &spec(&[("region", ""), ("day", "d")]), false);
    assert_eq!(code(empty), codes::PARTITION_SPEC_INVALID);
    let no_table = catalog.create_partition(&TablePath::new("db", "nope"), &spec(&[]), false);
    assert_eq!(code(no_table), codes::TABLE_NOT_EXIST);

    let plain = TablePath::new("db", "plain");
    let plain_spec = TableSpec { partition_key: Vec::new(), ..partitioned_spec() };
    catalog.create_table(&plain, plain_spec, false).expect("plain table");
    let not_partitioned = catalog.create_partition(&plain, &spec(&[("region", "EU")]), false);
    assert_eq!(code(not_partitioned), codes::TABLE_NOT_PARTITIONED);
    assert_eq!(code(catalog.list_partitions(&plain, None)), codes::TABLE_NOT_PARTITIONED);

    let missing = catalog.drop_partition(&path, &spec(&[("region", "US"), ("day", "d1")]), false);
    assert_eq!(code(missing), codes::PARTITION_NOT_EXISTS);
    let ignored = catalog.drop_partition(&path, &spec(&[("region", "US"), ("day", "d1")]), true);
    assert_eq!(ignored.expect("ignored"), None);
    let dropped = catalog.drop_partition(&path, &spec(&[("region", "EU"), ("day", "d1")]), false);
    assert_eq!(dropped.expect("dropped").expect("was there").partition, eu);
    assert_eq!(catalog.list_partitions(&path, None).expect("listed"), Vec::new());
    assert_eq!(code(catalog.partition_by_name(&path, "EU$d1")), codes::PARTITION_NOT_EXISTS);
    assert_eq!(catalog.partition_by_id(eu.partition_id), None);
}

#[test]
fn a_partial_spec_lists_only_the_partitions_holding_its_values() {
    let (_dir, catalog, path) = with_table(CatalogConfig::DEFAULT);
    for (region, day) in [("EU", "d1"), ("EU", "d2"), ("US", "d1")] {
        catalog.create_partition(&path, &spec(&[("region", region), ("day", day)]), false).unwrap();
    }
    let names = |partial: Option<&[(String, String)]>| -> Vec<String> {
        catalog.list_partitions(&path, partial).expect("listed").iter().map(|p| p.name()).collect()
    };
    assert_eq!(names(None), ["EU$d1", "EU$d2", "US$d1"]);
    assert_eq!(names(Some(&spec(&[("region", "EU")]))), ["EU$d1", "EU$d2"]);
    assert_eq!(names(Some(&spec(&[("day", "d1")]))), ["EU$d1", "US$d1"]);
    assert_eq!(names(Some(&spec(&[("day", "d1"), ("region", "US")]))), ["US$d1"]);
    assert_eq!(names(Some(&spec(&[("day", "d9")]))), Vec::<String>::new());
    let not_a_key = catalog.list_partitions(&path, Some(&spec(&[("v", "x")])));
    assert_eq!(code(not_a_key), codes::PARTITION_SPEC_INVALID);
}

#[test]
fn partition_ids_are_never_reused_across_drops_tables_and_restarts() {
    let (dir, catalog, path) = with_table(CatalogConfig::DEFAULT);
    let eu = spec(&[("region", "EU"), ("day", "d1")]);
    let first = catalog.create_partition(&path, &eu, false).unwrap().partition.partition_id;
    catalog.drop_partition(&path, &eu, false).unwrap();
    let second = catalog.create_partition(&path, &eu, false).unwrap().partition.partition_id;
    assert!(second > first, "{second} after {first}");
    // Dropping the table drops its partitions; a new table of the same name has none.
    catalog.drop_table(&path, false).unwrap();
    catalog.create_table(&path, partitioned_spec(), false).unwrap();
    assert_eq!(catalog.list_partitions(&path, None).unwrap(), Vec::new());
    assert_eq!(catalog.partition_by_id(second), None);
    let third = catalog.create_partition(&path, &eu, false).unwrap().partition;
    assert!(third.partition_id > second);
    drop(catalog);

    let reopened = open(dir.path(), CatalogConfig::DEFAULT);
    assert_eq!(reopened.list_partitions(&path, None).unwrap(), vec![third.clone()]);
    let found = reopened.partition_by_id(third.partition_id).expect("by id");
    assert_eq!((found.table.path, found.partition), (path.clone(), third.clone()));
    assert_eq!(reopened.partition_by_name(&path, "EU$d1").unwrap().partition, third);
    reopened.drop_partition(&path, &eu, false).unwrap();
    drop(reopened);
    let reopened = open(dir.path(), CatalogConfig::DEFAULT);
    assert_eq!(reopened.next_partition_id(), third.partition_id + 1);
    let fourth = reopened.create_partition(&path, &eu, false).unwrap().partition.partition_id;
    assert_eq!(fourth, third.partition_id + 1);
}

#[test]
fn a_table_takes_no_more_partitions_or_buckets_than_its_limits() {
    let config = CatalogConfig { max_partitions_per_table: 2, ..CatalogConfig::DEFAULT };
    let (_dir, catalog, path) = with_table(config);
    catalog.create_partition(&path, &spec(&[("region", "a"), ("day", "1")]), false).unwrap();
    catalog.create_partition(&path, &spec(&[("region", "b"), ("day", "1")]), false).unwrap();
    let third = catalog.create_partition(&path, &spec(&[("region", "c"), ("day", "1")]), false);
    assert_eq!(code(third), codes::PARTITION_MAX_NUM);

    let config = CatalogConfig { max_buckets_per_partitioned_table: 3, ..CatalogConfig::DEFAULT };
    let (_dir, catalog, path) = with_table(config);
    catalog.create_partition(&path, &spec(&[("region", "a"), ("day", "1")]), false).unwrap();
    let second = catalog.create_partition(&path, &spec(&[("region", "b"), ("day", "1")]), false);
    assert_eq!(code(second), codes::BUCKET_MAX_NUM, "2 partitions of 2 buckets exceed 3");
}

/// `tests/fixtures/catalog_v1.bin` was written by the catalog before partitions existed
/// (format version 1): database `shop`, tables `orders` (id 1) and `items` (id 3), the
/// table `users` (id 2) created and dropped.
#[test]
fn a_catalog_file_written_before_partitions_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = DiskFs::new(dir.path()).expect("DiskFs");
    fs.create_dir_all(CATALOG_DIR).unwrap();
    fs.write(CATALOG_FILE, include_bytes!("fixtures/catalog_v1.bin")).unwrap();
    let catalog = open(dir.path(), CatalogConfig::DEFAULT);
    assert_eq!(catalog.list_databases(), ["shop"]);
    assert_eq!(catalog.list_tables("shop").unwrap(), ["items", "orders"]);
    let orders = catalog.get_table(&TablePath::new("shop", "orders")).unwrap();
    assert_eq!((orders.table_id, orders.bucket_count), (1, 4));
    assert!(!orders.is_partitioned());
    assert_eq!(catalog.next_table_id(), 4);
    // The first change writes the current version, which loads again.
    catalog.create_database("more", None, false).unwrap();
    drop(catalog);
    let reopened = open(dir.path(), CatalogConfig::DEFAULT);
    assert_eq!(reopened.get_table(&TablePath::new("shop", "orders")).unwrap(), orders);
    assert_eq!(reopened.next_partition_id(), 0);
}

/// `(id INT, day STRING, v STRING)`, key `(id, day)`, partitioned by `day`, with `properties`.
fn auto_partitioned_spec(properties: &[(&str, &str)]) -> TableSpec {
    TableSpec {
        schema_json: r#"{"version":1,"columns":[{"name":"id","data_type":{"type":"INTEGER","nullable":false},"id":0},{"name":"day","data_type":{"type":"STRING","nullable":false},"id":1},{"name":"v","data_type":{"type":"STRING"},"id":2}],"primary_key":["id","day"],"highest_field_id":2}"#.to_string(),
        columns: strings(&["id", "day", "v"]),
        primary_key: strings(&["id", "day"]),
        partition_key: strings(&["day"]),
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..TableSpec::default()
    }
}

/// 2024-11-11T23:30:00Z.
const NOV_11_2024_23_30_MS: i64 = 1_731_367_800_000;
const DAY_MS: i64 = 86_400_000;

#[test]
fn automatic_partitions_are_created_ahead_and_dropped_past_retention_as_time_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = open(dir.path(), CatalogConfig::DEFAULT);
    catalog.create_database("db", None, false).expect("database");
    let path = TablePath::new("db", "daily");
    let properties = [
        ("table.auto-partition.enabled", "true"),
        ("table.auto-partition.time-unit", "day"),
        ("table.auto-partition.num-precreate", "3"),
        ("table.auto-partition.num-retention", "2"),
    ];
    catalog.create_table(&path, auto_partitioned_spec(&properties), false).expect("table");
    catalog.create_partition(&path, &spec(&[("day", "manual")]), false).expect("by hand");
    let names = || -> Vec<String> {
        catalog.list_partitions(&path, None).expect("listed").iter().map(|p| p.name()).collect()
    };
    let created_names = |changes: &kvtablet_prod::catalog::AutoPartitionChanges| -> Vec<String> {
        changes.created.iter().map(|c| c.partition.name()).collect()
    };

    let first = catalog.auto_partition_tick(NOV_11_2024_23_30_MS).expect("tick");
    assert_eq!(created_names(&first), ["20241111", "20241112", "20241113"]);
    assert!(first.dropped.is_empty());
    let again = catalog.auto_partition_tick(NOV_11_2024_23_30_MS + 60_000).expect("tick");
    assert_eq!(again, Default::default(), "nothing to do within the same day");

    let later = catalog.auto_partition_tick(NOV_11_2024_23_30_MS + 3 * DAY_MS).expect("tick");
    assert_eq!(created_names(&later), ["20241114", "20241115", "20241116"]);
    let dropped: Vec<String> = later.dropped.iter().map(|d| d.partition.name()).collect();
    assert_eq!(dropped, ["20241111"], "kept: the 2 days before the 14th");
    assert_eq!(
        names(),
        ["manual", "20241112", "20241113", "20241114", "20241115", "20241116"],
        "a partition not named by the time format is never dropped"
    );
    let ids: Vec<i64> =
        catalog.list_partitions(&path, None).unwrap().iter().map(|p| p.partition_id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

#[test]
fn automatic_partitioning_settings_fluss_refuses_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = open(dir.path(), CatalogConfig::DEFAULT);
    catalog.create_database("db", None, false).expect("database");
    let refused =
        |spec: TableSpec| code(catalog.create_table(&TablePath::new("db", "t"), spec, false));
    let enabled = ("table.auto-partition.enabled", "true");
    let not_partitioned =
        TableSpec { partition_key: Vec::new(), ..auto_partitioned_spec(&[enabled]) };
    assert_eq!(refused(not_partitioned), codes::INVALID_CONFIG);
    let unit = ("table.auto-partition.time-unit", "WEEK");
    assert_eq!(refused(auto_partitioned_spec(&[enabled, unit])), codes::INVALID_CONFIG);
    let zone = ("table.auto-partition.time-zone", "Asia/Shanghai");
    assert_eq!(refused(auto_partitioned_spec(&[enabled, zone])), codes::INVALID_CONFIG);
    let precreate = ("table.auto-partition.num-precreate", "-1");
    assert_eq!(refused(auto_partitioned_spec(&[enabled, precreate])), codes::INVALID_CONFIG);
    let flag = ("table.auto-partition.enabled", "yes");
    assert_eq!(refused(auto_partitioned_spec(&[flag])), codes::INVALID_CONFIG);
    let offset = ("table.auto-partition.time-zone", "+08:00");
    catalog
        .create_table(&TablePath::new("db", "t"), auto_partitioned_spec(&[enabled, offset]), false)
        .expect("a fixed offset is a time zone");
}
