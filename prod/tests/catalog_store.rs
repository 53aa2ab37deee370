//! The catalog on a real disk (`DiskFs` in a temp dir): admin operations and their Fluss error
//! codes, persistence across reopen, atomic replacement, corruption detection.
// Tests on a real disk: they damage the catalog file with std::fs on purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use kvtablet_core::env::{Clock, FsError, LocalFs};
use kvtablet_prod::catalog::{
    codes, Catalog, CatalogConfig, CatalogError, TableInfo, TablePath, TableSpec, CATALOG_FILE,
    CATALOG_TEMP_FILE, DEFAULT_DATABASE, FIRST_SCHEMA_ID, FIRST_TABLE_ID,
};
use kvtablet_prod::disk_fs::DiskFs;

/// Wall time set by the test.
struct FixedClock(AtomicU64);

impl FixedClock {
    fn new(now_ms: u64) -> Arc<Self> {
        Arc::new(FixedClock(AtomicU64::new(now_ms)))
    }
    fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_mono_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn now_wall_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, _deadline_mono_ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::ready(()))
    }
}

/// A `DiskFs` whose renames can be made to fail, to check that a failed write changes nothing.
struct FlakyFs {
    inner: DiskFs,
    fail_renames: AtomicBool,
}

impl LocalFs for FlakyFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.append(path, bytes)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.write(path, bytes)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.inner.sync(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        self.inner.read_range(path, offset, len)
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.inner.truncate(path, len)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        if self.fail_renames.load(Ordering::SeqCst) {
            return Err(FsError::Io("injected rename failure".to_string()));
        }
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_dir_all(path)
    }
    fn host_path(&self, path: &str) -> Option<PathBuf> {
        self.inner.host_path(path)
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<FixedClock>,
}

impl Fixture {
    fn new() -> Self {
        Fixture { dir: tempfile::tempdir().expect("tempdir"), clock: FixedClock::new(1_000) }
    }
    fn fs(&self) -> DiskFs {
        DiskFs::new(self.dir.path()).expect("DiskFs")
    }
    fn try_open(&self) -> Result<Catalog, CatalogError> {
        Catalog::open(Arc::new(self.fs()), self.clock.clone(), CatalogConfig::DEFAULT)
    }
    fn open(&self) -> Catalog {
        self.try_open().expect("open catalog")
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join(CATALOG_FILE)
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// `(a INT, b STRING, v DOUBLE)`, key `(a, b)`, bucket key `a`, 4 buckets.
fn composite_spec() -> TableSpec {
    TableSpec {
        schema_json: r#"{"version":1,"columns":[{"name":"a","data_type":{"type":"INTEGER","nullable":false},"id":0},{"name":"b","data_type":{"type":"STRING","nullable":false},"id":1},{"name":"v","data_type":{"type":"DOUBLE"},"id":2}],"primary_key":["a","b"],"highest_field_id":2}"#.to_string(),
        columns: strings(&["a", "b", "v"]),
        primary_key: strings(&["a", "b"]),
        bucket_key: strings(&["a"]),
        bucket_count: Some(4),
        properties: BTreeMap::from([("table.replication.factor".to_string(), "1".to_string())]),
        custom_properties: BTreeMap::from([("owner".to_string(), "e2e".to_string())]),
        comment: Some("composite key".to_string()),
        ..TableSpec::default()
    }
}

/// `(id INT, name STRING)`, key `id`, defaults for everything else.
fn simple_spec() -> TableSpec {
    TableSpec {
        schema_json: r#"{"version":1,"columns":[{"name":"id","data_type":{"type":"INTEGER","nullable":false},"id":0},{"name":"name","data_type":{"type":"STRING"},"id":1}],"primary_key":["id"],"highest_field_id":1}"#.to_string(),
        columns: strings(&["id", "name"]),
        primary_key: strings(&["id"]),
        ..TableSpec::default()
    }
}

fn code(result: Result<impl std::fmt::Debug, CatalogError>) -> i32 {
    result.expect_err("expected an error").error_code()
}

#[test]
fn a_new_catalog_is_empty_and_writes_nothing_until_changed() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    assert!(catalog.list_databases().is_empty());
    assert!(catalog.tables().is_empty());
    assert_eq!(catalog.next_table_id(), FIRST_TABLE_ID);
    assert!(!fixture.file().exists());
    catalog.create_database("db", None, false).expect("create db");
    assert!(fixture.file().exists());
    assert!(!fixture.dir.path().join(CATALOG_TEMP_FILE).exists());
}

#[test]
fn everything_survives_a_reopen() {
    let fixture = Fixture::new();
    let (composite, simple, evolved, database) = {
        let catalog = fixture.open();
        catalog.create_database("db", Some(r#"{"comment":"hi"}"#.to_string()), false).unwrap();
        catalog.create_database("other", None, false).unwrap();
        fixture.clock.set(2_000);
        let composite = catalog.create_table(&TablePath::new("db", "t"), composite_spec(), false);
        let simple = catalog.create_table(&TablePath::new("db", "s"), simple_spec(), false);
        fixture.clock.set(3_000);
        let evolved = catalog
            .add_schema_version(
                &TablePath::new("db", "s"),
                r#"{"version":1,"columns":[],"extra":true}"#.to_string(),
                strings(&["id", "name", "extra"]),
            )
            .unwrap();
        (composite.unwrap(), simple.unwrap(), evolved, catalog.get_database("db").unwrap())
    };
    assert_eq!(composite.table_id, FIRST_TABLE_ID);
    assert_eq!(simple.table_id, FIRST_TABLE_ID + 1);
    assert_eq!(composite.created_time_ms, 2_000);
    assert_eq!(evolved.schema_id, FIRST_SCHEMA_ID + 1);
    assert_eq!(evolved.modified_time_ms, 3_000);
    assert_eq!(evolved.created_time_ms, 2_000);
    assert_eq!(database.created_time_ms, 1_000);

    let catalog = fixture.open();
    assert_eq!(catalog.list_databases(), ["db", "other"]);
    assert_eq!(catalog.get_database("db").unwrap(), database);
    assert_eq!(catalog.list_tables("db").unwrap(), ["s", "t"]);
    assert!(catalog.list_tables("other").unwrap().is_empty());
    assert_eq!(catalog.get_table(&TablePath::new("db", "t")).unwrap(), composite);
    assert_eq!(catalog.get_table(&TablePath::new("db", "s")).unwrap(), evolved);
    assert_eq!(catalog.table_by_id(composite.table_id).unwrap(), composite);
    assert_eq!(catalog.table_by_id(99), None);
    let first = catalog.get_schema(&TablePath::new("db", "s"), Some(FIRST_SCHEMA_ID)).unwrap();
    assert_eq!(first.schema_json, simple.schema_json);
    assert_eq!(first.columns, ["id", "name"]);
    let latest = catalog.get_schema(&TablePath::new("db", "s"), None).unwrap();
    assert_eq!(latest.schema_id, FIRST_SCHEMA_ID + 1);
    assert_eq!(latest.columns, ["id", "name", "extra"]);
    assert_eq!(catalog.schemas(&TablePath::new("db", "s")).unwrap().len(), 2);
    assert_eq!(catalog.next_table_id(), FIRST_TABLE_ID + 2);
}

#[test]
fn defaults_fill_the_bucket_count_and_key() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    catalog.create_database("db", None, false).unwrap();
    let table = catalog.create_table(&TablePath::new("db", "s"), simple_spec(), false).unwrap();
    assert_eq!(table.bucket_count, CatalogConfig::DEFAULT.default_bucket_count);
    assert_eq!(table.bucket_key, ["id"]);
    assert_eq!(table.schema_id, FIRST_SCHEMA_ID);
    assert_eq!(table.column_count(), 2);
    let composite = catalog.create_table(&TablePath::new("db", "t"), composite_spec(), false);
    let composite = composite.unwrap();
    assert_eq!(composite.bucket_count, 4);
    assert_eq!(composite.bucket_key, ["a"]);
    assert_eq!(composite.primary_key, ["a", "b"]);
}

#[test]
fn table_ids_are_never_reused_across_restarts() {
    let fixture = Fixture::new();
    {
        let catalog = fixture.open();
        catalog.create_database("db", None, false).unwrap();
        let first = catalog.create_table(&TablePath::new("db", "a"), simple_spec(), false);
        let second = catalog.create_table(&TablePath::new("db", "b"), simple_spec(), false);
        assert_eq!(first.unwrap().table_id + 1, second.unwrap().table_id);
        // Dropping the newest table does not give its id back.
        catalog.drop_table(&TablePath::new("db", "b"), false).unwrap();
    }
    {
        let catalog = fixture.open();
        let third = catalog.create_table(&TablePath::new("db", "b"), simple_spec(), false);
        assert_eq!(third.unwrap().table_id, FIRST_TABLE_ID + 2);
        // Nor does dropping every table and the database.
        let dropped = catalog.drop_database("db", false, true).unwrap();
        assert_eq!(dropped.len(), 2);
    }
    let catalog = fixture.open();
    assert!(catalog.tables().is_empty());
    catalog.create_database("db", None, false).unwrap();
    let fourth = catalog.create_table(&TablePath::new("db", "a"), simple_spec(), false);
    assert_eq!(fourth.unwrap().table_id, FIRST_TABLE_ID + 3);
}

#[test]
fn ignore_flags_make_repeats_no_ops() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    catalog.create_database("db", None, false).unwrap();
    fixture.clock.set(5_000);
    catalog.create_database("db", Some("{}".to_string()), true).unwrap();
    assert_eq!(catalog.get_database("db").unwrap().created_time_ms, 1_000);
    assert_eq!(catalog.get_database("db").unwrap().descriptor_json, None);

    let path = TablePath::new("db", "t");
    let created = catalog.create_table(&path, composite_spec(), false).unwrap();
    let again = catalog.create_table(&path, simple_spec(), true).unwrap();
    assert_eq!(again, created, "the existing table is returned unchanged");
    assert_eq!(catalog.next_table_id(), created.table_id + 1, "no id spent");

    assert_eq!(catalog.drop_table(&TablePath::new("db", "missing"), true).unwrap(), None);
    assert_eq!(catalog.drop_table(&TablePath::new("nodb", "missing"), true).unwrap(), None);
    assert!(catalog.drop_database("nodb", true, false).unwrap().is_empty());
}

#[test]
fn exists_and_lists() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    assert!(!catalog.database_exists("db"));
    catalog.create_database("db", None, false).unwrap();
    assert!(catalog.database_exists("db"));
    let path = TablePath::new("db", "t");
    assert!(!catalog.table_exists(&path));
    assert!(!catalog.table_exists(&TablePath::new("nodb", "t")));
    catalog.create_table(&path, composite_spec(), false).unwrap();
    assert!(catalog.table_exists(&path));
    assert_eq!(catalog.tables().len(), 1);
    catalog.drop_table(&path, false).unwrap();
    assert!(!catalog.table_exists(&path));
    assert!(catalog.list_tables("db").unwrap().is_empty());
}

#[test]
fn every_error_carries_its_fluss_code() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    let path = TablePath::new("db", "t");

    // 4 DATABASE_NOT_EXIST
    assert_eq!(code(catalog.get_database("db")), codes::DATABASE_NOT_EXIST);
    assert_eq!(code(catalog.list_tables("db")), codes::DATABASE_NOT_EXIST);
    assert_eq!(code(catalog.drop_database("db", false, true)), codes::DATABASE_NOT_EXIST);
    assert_eq!(code(catalog.create_table(&path, simple_spec(), false)), codes::DATABASE_NOT_EXIST);
    assert_eq!(code(catalog.create_table(&path, simple_spec(), true)), codes::DATABASE_NOT_EXIST);

    // 6 DATABASE_ALREADY_EXIST
    catalog.create_database("db", None, false).unwrap();
    assert_eq!(code(catalog.create_database("db", None, false)), codes::DATABASE_ALREADY_EXIST);

    // 8 TABLE_ALREADY_EXIST
    catalog.create_table(&path, simple_spec(), false).unwrap();
    assert_eq!(code(catalog.create_table(&path, simple_spec(), false)), codes::TABLE_ALREADY_EXIST);

    // 5 DATABASE_NOT_EMPTY, and nothing dropped
    let error = catalog.drop_database("db", false, false).unwrap_err();
    assert_eq!(error.error_code(), codes::DATABASE_NOT_EMPTY);
    assert_eq!(error, CatalogError::DatabaseNotEmpty { database: "db".into(), table_count: 1 });
    assert_eq!(code(catalog.drop_database("db", true, false)), codes::DATABASE_NOT_EMPTY);
    assert!(catalog.table_exists(&path));

    // 7 TABLE_NOT_EXIST
    let missing = TablePath::new("db", "missing");
    assert_eq!(code(catalog.get_table(&missing)), codes::TABLE_NOT_EXIST);
    assert_eq!(code(catalog.drop_table(&missing, false)), codes::TABLE_NOT_EXIST);
    assert_eq!(code(catalog.drop_table(&TablePath::new("x", "y"), false)), codes::TABLE_NOT_EXIST);
    assert_eq!(code(catalog.get_schema(&missing, None)), codes::TABLE_NOT_EXIST);
    assert_eq!(code(catalog.schemas(&missing)), codes::TABLE_NOT_EXIST);
    let columns = strings(&["id", "name", "x"]);
    assert_eq!(
        code(catalog.add_schema_version(&missing, "{}".into(), columns)),
        codes::TABLE_NOT_EXIST
    );

    // 9 SCHEMA_NOT_EXIST
    assert_eq!(code(catalog.get_schema(&path, Some(2))), codes::SCHEMA_NOT_EXIST);
    assert_eq!(code(catalog.get_schema(&path, Some(0))), codes::SCHEMA_NOT_EXIST);

    // 16 INVALID_DATABASE
    let too_long = "x".repeat(201);
    for bad in ["", "a.b", "white space", "slash/", "ünïcode", too_long.as_str()] {
        assert_eq!(
            code(catalog.create_database(bad, None, false)),
            codes::INVALID_DATABASE,
            "{bad:?}"
        );
        let bad_path = TablePath::new(bad, "t");
        assert_eq!(
            code(catalog.create_table(&bad_path, simple_spec(), false)),
            codes::INVALID_DATABASE
        );
    }
    catalog.create_database(&"x".repeat(200), None, false).expect("200 characters are fine");
    catalog.create_database("Ok_name-1", None, false).expect("letters, digits, _ and -");

    // 15 INVALID_TABLE
    let too_long = "t".repeat(201);
    for bad in ["", "a.b", "x y", too_long.as_str()] {
        let bad_path = TablePath::new("db", bad);
        assert_eq!(
            code(catalog.create_table(&bad_path, simple_spec(), false)),
            codes::INVALID_TABLE,
            "{bad:?}"
        );
    }
    let invalid_table =
        |spec: TableSpec| code(catalog.create_table(&TablePath::new("db", "new"), spec, false));
    let no_key = TableSpec { primary_key: vec![], bucket_key: vec![], ..composite_spec() };
    assert_eq!(invalid_table(no_key), codes::INVALID_TABLE);
    let key_not_a_column = TableSpec { primary_key: strings(&["a", "zz"]), ..composite_spec() };
    assert_eq!(invalid_table(key_not_a_column), codes::INVALID_TABLE);
    let duplicate_key = TableSpec { primary_key: strings(&["a", "a"]), ..composite_spec() };
    assert_eq!(invalid_table(duplicate_key), codes::INVALID_TABLE);
    let bucket_key_outside = TableSpec { bucket_key: strings(&["v"]), ..composite_spec() };
    assert_eq!(invalid_table(bucket_key_outside), codes::INVALID_TABLE);
    // Partitioned by its bucket key: the bucket key must be outside the partition keys.
    let bucket_key_partitions = TableSpec { partition_key: strings(&["a"]), ..composite_spec() };
    assert_eq!(invalid_table(bucket_key_partitions), codes::INVALID_TABLE);
    let no_columns = TableSpec { columns: vec![], ..composite_spec() };
    assert_eq!(invalid_table(no_columns), codes::INVALID_TABLE);
    let duplicate_column = TableSpec { columns: strings(&["a", "b", "a"]), ..composite_spec() };
    assert_eq!(invalid_table(duplicate_column), codes::INVALID_TABLE);
    let no_schema = TableSpec { schema_json: " ".into(), ..composite_spec() };
    assert_eq!(invalid_table(no_schema), codes::INVALID_TABLE);
    let dropped_column = strings(&["id"]);
    assert_eq!(
        code(catalog.add_schema_version(&path, "{}".into(), dropped_column)),
        codes::INVALID_TABLE
    );
    let same_columns = strings(&["id", "name"]);
    assert_eq!(
        code(catalog.add_schema_version(&path, "{}".into(), same_columns)),
        codes::INVALID_TABLE
    );

    // 39 INVALID_CONFIG
    for bucket_count in [0, -1, CatalogConfig::DEFAULT.max_bucket_count + 1] {
        let spec = TableSpec { bucket_count: Some(bucket_count), ..composite_spec() };
        assert_eq!(invalid_table(spec), codes::INVALID_CONFIG, "{bucket_count} buckets");
    }
    for (key, value) in [
        ("table.kv.format", "ALIGNED"),
        ("table.log.format", "INDEXED"),
        ("table.changelog.image", "WAL"),
        ("table.merge-engine", "first_row"),
        ("table.datalake.format", "hudi"),
        ("table.kv.format-version", "3"),
        // Accepted and then lost otherwise: lake tiering, deletes ignored or refused.
        ("table.datalake.enabled", "true"),
        ("table.delete.behavior", "IGNORE"),
        ("table.delete.behavior", "DISABLE"),
    ] {
        let mut spec = composite_spec();
        spec.properties.insert(key.to_string(), value.to_string());
        assert_eq!(invalid_table(spec), codes::INVALID_CONFIG, "{key}={value}");
    }

    // 17 INVALID_REPLICATION_FACTOR: this node is the only tablet server.
    for factor in ["0", "2", "3", "many"] {
        let mut spec = composite_spec();
        spec.properties.insert("table.replication.factor".to_string(), factor.to_string());
        assert_eq!(invalid_table(spec), codes::INVALID_REPLICATION_FACTOR, "factor {factor}");
    }
    let mut accepted = composite_spec();
    accepted.properties.insert("table.kv.format".into(), "compacted".into());
    accepted.properties.insert("table.log.format".into(), "ARROW".into());
    accepted.properties.insert("table.replication.factor".into(), "1".into());
    accepted.properties.insert("table.datalake.enabled".into(), "false".into());
    accepted.properties.insert("table.delete.behavior".into(), "allow".into());
    catalog
        .create_table(&TablePath::new("db", "fine"), accepted, false)
        .expect("supported formats");
    // Options that only change the encoding of keys and values: stored as given.
    let mut encodings = composite_spec();
    encodings.properties.insert("table.kv.format".into(), "INDEXED".into());
    encodings.properties.insert("table.datalake.format".into(), "Paimon".into());
    let created = catalog
        .create_table(&TablePath::new("db", "encodings"), encodings, false)
        .expect("INDEXED values and a paimon lake format");
    assert_eq!(created.properties.get("table.kv.format").map(String::as_str), Some("INDEXED"));
    assert_eq!(created.properties.get("table.datalake.format").map(String::as_str), Some("Paimon"));

    // None of the refusals spent a table id (three tables were created).
    assert_eq!(catalog.next_table_id(), FIRST_TABLE_ID + 3);
    // API errors are final.
    assert!(!CatalogError::TableNotExist(path).is_retriable());
}

#[test]
fn a_failed_write_changes_nothing() {
    let fixture = Fixture::new();
    let fs = Arc::new(FlakyFs { inner: fixture.fs(), fail_renames: AtomicBool::new(false) });
    let catalog = Catalog::open(fs.clone(), fixture.clock.clone(), CatalogConfig::DEFAULT).unwrap();
    catalog.create_database("db", None, false).unwrap();
    fs.fail_renames.store(true, Ordering::SeqCst);
    let error = catalog.create_table(&TablePath::new("db", "t"), simple_spec(), false).unwrap_err();
    assert!(matches!(error, CatalogError::Storage(_)), "{error:?}");
    assert_eq!(error.error_code(), codes::STORAGE_EXCEPTION);
    assert!(!catalog.table_exists(&TablePath::new("db", "t")));
    assert_eq!(catalog.next_table_id(), FIRST_TABLE_ID);
    assert_eq!(code(catalog.create_database("other", None, false)), codes::STORAGE_EXCEPTION);
    assert!(!catalog.database_exists("other"));
    // The interrupted write left a temp file; reopening ignores it.
    assert!(fixture.dir.path().join(CATALOG_TEMP_FILE).exists());
    drop(catalog);
    let reopened = fixture.open();
    assert_eq!(reopened.list_databases(), ["db"]);
    assert!(reopened.tables().is_empty());
    assert!(!fixture.dir.path().join(CATALOG_TEMP_FILE).exists());
    fs.fail_renames.store(false, Ordering::SeqCst);
}

#[test]
fn a_leftover_temp_file_is_ignored() {
    let fixture = Fixture::new();
    {
        let catalog = fixture.open();
        catalog.create_database("db", None, false).unwrap();
    }
    let committed = std::fs::read(fixture.file()).unwrap();
    // A newer, complete catalog that was written but never renamed (a crash between the two)…
    let newer_dir = tempfile::tempdir().unwrap();
    {
        let fs = Arc::new(DiskFs::new(newer_dir.path()).unwrap());
        let newer = Catalog::open(fs, fixture.clock.clone(), CatalogConfig::DEFAULT).unwrap();
        newer.create_database("db", None, false).unwrap();
        newer.create_database("unacknowledged", None, false).unwrap();
    }
    let newer_bytes = std::fs::read(newer_dir.path().join(CATALOG_FILE)).unwrap();
    let temp = fixture.dir.path().join(CATALOG_TEMP_FILE);
    std::fs::write(&temp, &newer_bytes).unwrap();
    let catalog = fixture.open();
    assert_eq!(catalog.list_databases(), ["db"]);
    assert!(!temp.exists());
    // …and a torn one: ignored too.
    std::fs::write(&temp, &newer_bytes[..newer_bytes.len() / 2]).unwrap();
    drop(catalog);
    let catalog = fixture.open();
    assert_eq!(catalog.list_databases(), ["db"]);
    catalog.create_database("after", None, false).unwrap();
    assert_ne!(std::fs::read(fixture.file()).unwrap(), committed);
    drop(catalog);
    assert_eq!(fixture.open().list_databases(), ["after", "db"]);
}

fn assert_corrupt(fixture: &Fixture, bytes: &[u8], what: &str) {
    std::fs::write(fixture.file(), bytes).unwrap();
    match fixture.try_open() {
        Err(CatalogError::Corrupt { path, reason }) => {
            assert!(path.ends_with(CATALOG_FILE), "{path}");
            assert!(!reason.is_empty());
        }
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_corrupt_catalog_is_detected_never_misread() {
    let fixture = Fixture::new();
    {
        let catalog = fixture.open();
        catalog.create_database("db", Some("{}".to_string()), false).unwrap();
        catalog.create_table(&TablePath::new("db", "t"), composite_spec(), false).unwrap();
        catalog.create_table(&TablePath::new("db", "s"), simple_spec(), false).unwrap();
    }
    let good = std::fs::read(fixture.file()).unwrap();

    assert_corrupt(&fixture, b"", "empty file");
    assert_corrupt(&fixture, b"not a catalog at all, just some text", "garbage");
    let mut trailing = good.clone();
    trailing.push(0);
    assert_corrupt(&fixture, &trailing, "a trailing byte");
    let corrupt = fixture.try_open().unwrap_err();
    assert_eq!(corrupt.error_code(), codes::UNKNOWN_SERVER_ERROR);
    assert!(corrupt.to_string().contains("corrupt"), "{corrupt}");
    // Every truncation and every single flipped bit is refused, and none panics.
    for len in 0..good.len() {
        assert_corrupt(&fixture, &good[..len], &format!("truncated to {len}"));
    }
    for position in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = good.clone();
            flipped[position] ^= bit;
            assert_corrupt(&fixture, &flipped, &format!("bit {bit:#x} of byte {position} flipped"));
        }
    }
    // The intact file still opens.
    std::fs::write(fixture.file(), &good).unwrap();
    let catalog = fixture.open();
    assert_eq!(catalog.list_tables("db").unwrap(), ["s", "t"]);
}

#[test]
fn the_default_database_is_created_only_when_there_is_no_database() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    assert!(catalog.create_default_database_if_none().unwrap());
    assert_eq!(catalog.list_databases(), strings(&[DEFAULT_DATABASE]));
    assert!(!catalog.create_default_database_if_none().unwrap(), "it exists now");
    drop(catalog);

    // Durable before the node serves, and a dropped `fluss` stays dropped while another
    // database exists (Fluss's coordinator checks for any database, not for `fluss`).
    let catalog = fixture.open();
    assert_eq!(catalog.list_databases(), strings(&[DEFAULT_DATABASE]));
    catalog.create_database("other", None, false).unwrap();
    catalog.drop_database(DEFAULT_DATABASE, false, false).unwrap();
    drop(catalog);
    let catalog = fixture.open();
    assert!(!catalog.create_default_database_if_none().unwrap());
    assert_eq!(catalog.list_databases(), strings(&["other"]));
}

fn kv_format_version(table: &TableInfo) -> Option<&str> {
    table.properties.get("table.kv.format-version").map(String::as_str)
}

#[test]
fn a_new_table_gets_kv_format_version_2_unless_it_sets_one() {
    let fixture = Fixture::new();
    let catalog = fixture.open();
    catalog.create_database("db", None, false).unwrap();
    let defaulted = catalog.create_table(&TablePath::new("db", "t2"), composite_spec(), false);
    let defaulted = defaulted.expect("created");
    assert_eq!(kv_format_version(&defaulted), Some("2"));
    assert_eq!(
        defaulted.properties.get("table.replication.factor").map(String::as_str),
        Some("1"),
        "the client's own properties are kept"
    );
    let mut version_1 = composite_spec();
    version_1.properties.insert("table.kv.format-version".into(), "1".into());
    let kept = catalog.create_table(&TablePath::new("db", "t1"), version_1, false).unwrap();
    assert_eq!(kv_format_version(&kept), Some("1"));
    drop(catalog);
    let reopened = fixture.open();
    let table = reopened.get_table(&TablePath::new("db", "t2")).unwrap();
    assert_eq!(kv_format_version(&table), Some("2"));
}
