//! What the catalog holds: databases, tables and their schema versions, and the rules a new
//! one must follow.
//!
//! Schemas are opaque here: a schema is its JSON text (as Fluss clients send and expect it)
//! plus the column names the catalog needs to check keys against. Parsing the JSON into data
//! types is the format layer's business.

use std::collections::BTreeMap;

use super::auto_partition::AutoPartitioning;
use super::error::CatalogError;

/// Longest database or table name Fluss accepts.
pub const MAX_NAME_LEN: usize = 200;

/// Table property naming the KV value format: `COMPACTED` (the default) or `INDEXED`.
pub const PROP_KV_FORMAT: &str = "table.kv.format";
/// The KV value formats (`format::RowFormat`).
pub const KV_FORMATS: [&str; 2] = ["COMPACTED", "INDEXED"];
/// Table property naming the lake format, which changes how keys are encoded and assigned to
/// buckets even with lake tiering off (`format::TableEncoding`).
pub const PROP_DATALAKE_FORMAT: &str = "table.datalake.format";
/// The lake formats the clients know (`format::LakeFormat`).
pub const DATALAKE_FORMATS: [&str; 3] = ["paimon", "iceberg", "lance"];
/// Table property naming the KV format version. Fluss's coordinator sets it to
/// [`KV_FORMAT_VERSION_DEFAULT`] on every primary-key table that does not set it.
pub const PROP_KV_FORMAT_VERSION: &str = "table.kv.format-version";
/// The KV format version a new primary-key table gets (Fluss 0.8 and later: 2).
pub const KV_FORMAT_VERSION_DEFAULT: &str = "2";
/// Table property naming the changelog format; only `ARROW` is supported.
pub const PROP_LOG_FORMAT: &str = "table.log.format";
/// Table property choosing the changelog image; only `FULL` (`-U` and `+U`) is supported.
pub const PROP_CHANGELOG_IMAGE: &str = "table.changelog.image";
/// Table property switching lake tiering on (`true`); not supported, so refused.
pub const PROP_DATALAKE_ENABLED: &str = "table.datalake.enabled";
/// Table property choosing what a delete does (`ALLOW`, `IGNORE`, `DISABLE`); only `ALLOW`.
pub const PROP_DELETE_BEHAVIOR: &str = "table.delete.behavior";
/// Table property asking for replicas on several tablet servers; this node is the only one.
pub const PROP_REPLICATION_FACTOR: &str = "table.replication.factor";
/// Tablet servers a replica can be placed on.
pub const TABLET_SERVER_COUNT: u32 = 1;
/// Table properties for features this server does not have: refused rather than ignored.
pub const UNSUPPORTED_PROPS: [&str; 2] = ["table.merge-engine", "table.auto-increment.fields"];

/// A database and a table in it: core's, which names the table's local directories.
pub use kvtablet_core::tablet_dirs::TablePath;

/// A database as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    /// The database descriptor JSON a client sent (comment, custom properties), if any.
    pub descriptor_json: Option<String>,
    pub created_time_ms: i64,
    pub modified_time_ms: i64,
}

/// One version of a table's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    pub schema_id: i32,
    /// The schema JSON (`{"version":1,"columns":[...],"primary_key":[...],...}`), opaque here.
    pub schema_json: String,
    /// Column names in schema order; their count is the row's field count.
    pub columns: Vec<String>,
}

/// A table to create, as a client describes it. Fields left empty or `None` get defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableSpec {
    /// The schema JSON, stored and returned verbatim.
    pub schema_json: String,
    /// Column names in schema order.
    pub columns: Vec<String>,
    /// Required: this server hosts primary-key tables only.
    pub primary_key: Vec<String>,
    /// Empty means the primary key.
    pub bucket_key: Vec<String>,
    /// Empty for a table without partitions; otherwise a subset of the primary key.
    pub partition_key: Vec<String>,
    /// `None` means [`CatalogConfig::default_bucket_count`].
    pub bucket_count: Option<i32>,
    pub properties: BTreeMap<String, String>,
    pub custom_properties: BTreeMap<String, String>,
    pub comment: Option<String>,
}

/// A table as stored, with its current schema. Everything needed to rebuild the table
/// descriptor JSON a client expects (schema, bucket count and key, properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub table_id: i64,
    pub path: TablePath,
    /// The current (latest) schema id.
    pub schema_id: i32,
    /// The current schema JSON.
    pub schema_json: String,
    /// Column names of the current schema.
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    pub bucket_key: Vec<String>,
    /// Empty for a table without partitions.
    pub partition_key: Vec<String>,
    /// Buckets of the table, or of each partition of a partitioned table.
    pub bucket_count: i32,
    pub properties: BTreeMap<String, String>,
    pub custom_properties: BTreeMap<String, String>,
    pub comment: Option<String>,
    pub created_time_ms: i64,
    pub modified_time_ms: i64,
}

impl TableInfo {
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    pub fn is_partitioned(&self) -> bool {
        !self.partition_key.is_empty()
    }

    /// The key a row is stored under and looked up by: the primary key less the partition
    /// keys (a partition holds one value of each), in primary-key order (Fluss's physical
    /// primary key).
    pub fn physical_primary_key(&self) -> Vec<String> {
        physical_primary_key(&self.primary_key, &self.partition_key)
    }
}

/// The primary key less the partition keys, in primary-key order.
pub fn physical_primary_key(primary_key: &[String], partition_key: &[String]) -> Vec<String> {
    primary_key.iter().filter(|name| !partition_key.contains(*name)).cloned().collect()
}

/// Catalog-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Buckets of a table created without a bucket count (Fluss's `default.bucket.number`).
    pub default_bucket_count: i32,
    /// Most buckets a table may have (each partition of a partitioned table has this many).
    pub max_bucket_count: i32,
    /// Most partitions a partitioned table may have (Fluss's `max.partition.num`).
    pub max_partitions_per_table: usize,
    /// Most buckets over all partitions of a partitioned table (Fluss's `max.bucket.num`).
    pub max_buckets_per_partitioned_table: i64,
}

impl CatalogConfig {
    pub const DEFAULT: CatalogConfig = CatalogConfig {
        default_bucket_count: 1,
        max_bucket_count: 1024,
        max_partitions_per_table: 1000,
        max_buckets_per_partitioned_table: 128_000,
    };
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig::DEFAULT
    }
}

/// Why `name` is not a valid database or table name, if it is not: Fluss's rule is 1 to 200
/// characters from `[A-Za-z0-9_-]`.
pub fn invalid_name_reason(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the empty string is not allowed".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "{name:?} contains {bad:?}; only ASCII alphanumerics, '_' and '-' are allowed"
        ));
    }
    None
}

pub(crate) fn validate_database_name(name: &str) -> Result<(), CatalogError> {
    match invalid_name_reason(name) {
        Some(reason) => Err(CatalogError::InvalidDatabase(format!("database name: {reason}"))),
        None => Ok(()),
    }
}

pub(crate) fn validate_table_name(name: &str) -> Result<(), CatalogError> {
    match invalid_name_reason(name) {
        Some(reason) => Err(CatalogError::InvalidTable(format!("table name: {reason}"))),
        None => Ok(()),
    }
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    names
        .iter()
        .enumerate()
        .find(|(index, name)| names[..*index].contains(*name))
        .map(|(_, name)| name.as_str())
}

/// Checks a schema's column list (non-empty, unique, non-empty names).
pub(crate) fn validate_columns(columns: &[String]) -> Result<(), CatalogError> {
    if columns.is_empty() {
        return Err(CatalogError::InvalidTable("the schema has no columns".to_string()));
    }
    if columns.iter().any(String::is_empty) {
        return Err(CatalogError::InvalidTable("a column has an empty name".to_string()));
    }
    if let Some(duplicate) = first_duplicate(columns) {
        return Err(CatalogError::InvalidTable(format!("column {duplicate:?} appears twice")));
    }
    Ok(())
}

/// Resolved and checked: what [`TableSpec`] becomes in a [`TableInfo`] (less ids and times).
pub(crate) struct ResolvedSpec {
    pub bucket_key: Vec<String>,
    pub bucket_count: i32,
    /// The client's properties plus the defaults Fluss's coordinator adds.
    pub properties: BTreeMap<String, String>,
}

pub(crate) fn validate_table_spec(
    spec: &TableSpec,
    config: &CatalogConfig,
) -> Result<ResolvedSpec, CatalogError> {
    if spec.schema_json.trim().is_empty() {
        return Err(CatalogError::InvalidTable("the schema JSON is empty".to_string()));
    }
    validate_columns(&spec.columns)?;
    if spec.primary_key.is_empty() {
        return Err(CatalogError::InvalidTable(
            "a primary key is required: log tables are not supported".to_string(),
        ));
    }
    if let Some(duplicate) = first_duplicate(&spec.primary_key) {
        return Err(CatalogError::InvalidTable(format!(
            "primary key column {duplicate:?} appears twice"
        )));
    }
    if let Some(missing) = spec.primary_key.iter().find(|name| !spec.columns.contains(*name)) {
        return Err(CatalogError::InvalidTable(format!(
            "primary key column {missing:?} is not a column of the schema"
        )));
    }
    validate_partition_key(spec)?;
    let physical_key = physical_primary_key(&spec.primary_key, &spec.partition_key);
    let bucket_key =
        if spec.bucket_key.is_empty() { physical_key.clone() } else { spec.bucket_key.clone() };
    if let Some(duplicate) = first_duplicate(&bucket_key) {
        return Err(CatalogError::InvalidTable(format!(
            "bucket key column {duplicate:?} appears twice"
        )));
    }
    if let Some(outside) = bucket_key.iter().find(|name| !physical_key.contains(*name)) {
        return Err(CatalogError::InvalidTable(format!(
            "bucket key column {outside:?} is not part of the primary key {physical_key:?} \
             (less the partition keys); bucket keys must be a subset of it"
        )));
    }
    let bucket_count = spec.bucket_count.unwrap_or(config.default_bucket_count);
    if !(1..=config.max_bucket_count).contains(&bucket_count) {
        return Err(CatalogError::InvalidConfig(format!(
            "bucket count {bucket_count} is outside 1..={}",
            config.max_bucket_count
        )));
    }
    validate_properties(&spec.properties)?;
    AutoPartitioning::of_properties(&spec.properties, &spec.partition_key)?;
    let mut properties = spec.properties.clone();
    properties
        .entry(PROP_KV_FORMAT_VERSION.to_string())
        .or_insert_with(|| KV_FORMAT_VERSION_DEFAULT.to_string());
    Ok(ResolvedSpec { bucket_key, bucket_count, properties })
}

/// Fluss's rules for a partitioned primary-key table: partition keys are distinct columns of
/// the primary key, and leave at least one primary-key column (the key a row is stored under
/// within its partition). Their types are checked where the schema's types are known (the
/// table descriptor's decoding).
fn validate_partition_key(spec: &TableSpec) -> Result<(), CatalogError> {
    if spec.partition_key.is_empty() {
        return Ok(());
    }
    if let Some(duplicate) = first_duplicate(&spec.partition_key) {
        return Err(CatalogError::InvalidTable(format!(
            "partition key column {duplicate:?} appears twice"
        )));
    }
    if let Some(missing) = spec.partition_key.iter().find(|name| !spec.columns.contains(*name)) {
        return Err(CatalogError::InvalidTable(format!(
            "partition key column {missing:?} is not a column of the schema"
        )));
    }
    if spec.partition_key.iter().any(|name| !spec.primary_key.contains(name)) {
        return Err(CatalogError::InvalidTable(format!(
            "Partitioned Primary Key Table requires partition key {:?} is a subset of the \
             primary key {:?}.",
            spec.partition_key, spec.primary_key
        )));
    }
    if physical_primary_key(&spec.primary_key, &spec.partition_key).is_empty() {
        return Err(CatalogError::InvalidTable(format!(
            "the primary key {:?} has no column besides the partition keys {:?}",
            spec.primary_key, spec.partition_key
        )));
    }
    Ok(())
}

fn validate_properties(properties: &BTreeMap<String, String>) -> Result<(), CatalogError> {
    let only = |key: &str, allowed: &str| -> Result<(), CatalogError> {
        match properties.get(key) {
            Some(value) if !value.eq_ignore_ascii_case(allowed) => {
                Err(CatalogError::InvalidConfig(format!(
                    "{key}={value} is not supported; only {allowed}"
                )))
            }
            _ => Ok(()),
        }
    };
    let one_of = |key: &str, allowed: &[&str]| -> Result<(), CatalogError> {
        match properties.get(key) {
            Some(value) if !allowed.iter().any(|a| value.eq_ignore_ascii_case(a)) => {
                Err(CatalogError::InvalidConfig(format!(
                    "{key}={value} is not supported; only {}",
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    };
    one_of(PROP_KV_FORMAT, &KV_FORMATS)?;
    one_of(PROP_DATALAKE_FORMAT, &DATALAKE_FORMATS)?;
    only(PROP_LOG_FORMAT, "ARROW")?;
    only(PROP_CHANGELOG_IMAGE, "FULL")?;
    only(PROP_DELETE_BEHAVIOR, "ALLOW")?;
    if properties.get(PROP_DATALAKE_ENABLED).is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
        return Err(CatalogError::InvalidConfig(format!(
            "{PROP_DATALAKE_ENABLED}: lake tiering is not supported"
        )));
    }
    if let Some(factor) = properties.get(PROP_REPLICATION_FACTOR) {
        match factor.trim().parse::<u32>() {
            Ok(factor) if (1..=TABLET_SERVER_COUNT).contains(&factor) => {}
            _ => {
                return Err(CatalogError::InvalidReplicationFactor(format!(
                    "{PROP_REPLICATION_FACTOR}={factor}: the replication factor must be 1 to \
                     the number of tablet servers ({TABLET_SERVER_COUNT})"
                )))
            }
        }
    }
    if let Some(version) = properties.get(PROP_KV_FORMAT_VERSION) {
        if version != "1" && version != "2" {
            return Err(CatalogError::InvalidConfig(format!(
                "{PROP_KV_FORMAT_VERSION}={version} is not supported; only 1 or 2"
            )));
        }
    }
    if let Some(key) = UNSUPPORTED_PROPS.iter().find(|key| properties.contains_key(**key)) {
        return Err(CatalogError::InvalidConfig(format!("{key} is not supported")));
    }
    Ok(())
}
