//! The node's catalog: databases, tables and schema versions, as Fluss's admin RPCs see them.
//!
//! The whole catalog is one small file, `catalog/catalog.bin` under the node's data directory,
//! rewritten on every change: the new state goes to `catalog/catalog.bin.tmp`, is synced, and
//! is renamed over the old file. A crash leaves either the old or the new file, never a torn
//! one; a temp file left by a crash is ignored and removed at open. The file carries a CRC-32C,
//! so a damaged catalog is reported as [`CatalogError::Corrupt`] at open instead of being
//! misread (see [`codec`] for the layout).
//!
//! Table ids come from a counter persisted in the same file, so they increase monotonically and
//! are never reused, not even after the newest table is dropped and the node restarts. So do
//! partition ids (one counter for every partitioned table; see [`partition`]).
//!
//! Schemas are opaque JSON plus column names (see [`model`]); the wire layer turns Fluss's
//! table descriptor JSON into a [`TableSpec`] and a [`TableInfo`] back into descriptor JSON.
//!
//! Every call is synchronous and a change does blocking file I/O (write, fsync, rename): call
//! the mutating methods from a blocking context (`spawn_blocking`) when on an async runtime.
//! Changes are serialized by one lock; reads take the same lock briefly and clone.

mod auto_partition;
mod codec;
mod error;
mod model;
mod partition;

use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::env::{Clock, LocalFs};

pub use auto_partition::{
    AutoPartitionChanges, AutoPartitioning, TimeUnit, PROP_AUTO_PARTITION_ENABLED,
    PROP_AUTO_PARTITION_KEY, PROP_AUTO_PARTITION_NUM_PRECREATE, PROP_AUTO_PARTITION_NUM_RETENTION,
    PROP_AUTO_PARTITION_TIME_UNIT, PROP_AUTO_PARTITION_TIME_ZONE,
};
pub use error::{codes, CatalogError};
pub use model::{
    invalid_name_reason, physical_primary_key, CatalogConfig, DatabaseInfo, SchemaVersion,
    TableInfo, TablePath, TableSpec, MAX_NAME_LEN, PROP_CHANGELOG_IMAGE, PROP_KV_FORMAT,
    PROP_LOG_FORMAT, UNSUPPORTED_PROPS,
};
pub use partition::{
    partition_name, resolve_partition_spec, PartitionInfo, TablePartition, FIRST_PARTITION_ID,
    PARTITION_NAME_SEPARATOR,
};

use codec::{State, TableEntry};
use model::{validate_columns, validate_database_name, validate_table_name, validate_table_spec};

/// Directory of the catalog, relative to the node's file-system root.
pub const CATALOG_DIR: &str = "catalog";
/// The catalog file.
pub const CATALOG_FILE: &str = "catalog/catalog.bin";
/// Where a new catalog is written before it is renamed over [`CATALOG_FILE`].
pub const CATALOG_TEMP_FILE: &str = "catalog/catalog.bin.tmp";

/// The id of the first table ever created in a catalog.
pub const FIRST_TABLE_ID: i64 = 1;
/// The id of a table's first schema.
pub const FIRST_SCHEMA_ID: i32 = 1;
/// The database a node has when it has none: Fluss's coordinator creates it at start-up when
/// no database exists, and clients and their examples use it.
pub const DEFAULT_DATABASE: &str = "fluss";

/// The catalog of one node. Cheap to share behind an `Arc`.
pub struct Catalog {
    fs: Arc<dyn LocalFs>,
    clock: Arc<dyn Clock>,
    config: CatalogConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Catalog")
            .field("databases", &state.databases.len())
            .field("tables", &state.tables.len())
            .field("next_table_id", &state.next_table_id)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Opens the catalog under `fs`'s root, or starts an empty one if there is none yet (it is
    /// written at the first change). A damaged file is an error, never silently replaced.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        clock: Arc<dyn Clock>,
        config: CatalogConfig,
    ) -> Result<Catalog, CatalogError> {
        fs.create_dir_all(CATALOG_DIR)?;
        if fs.exists(CATALOG_TEMP_FILE) {
            // A change interrupted before its rename: it was never acknowledged.
            tracing::warn!(
                file = CATALOG_TEMP_FILE,
                "removing a catalog temp file left by a crash"
            );
            fs.remove_file(CATALOG_TEMP_FILE)?;
        }
        let state = if fs.exists(CATALOG_FILE) {
            let bytes = fs.read(CATALOG_FILE)?;
            codec::decode(&bytes).map_err(|reason| CatalogError::Corrupt {
                path: fs
                    .host_path(CATALOG_FILE)
                    .map(|path| path.display().to_string())
                    .unwrap_or_else(|| CATALOG_FILE.to_string()),
                reason,
            })?
        } else {
            State::empty(FIRST_TABLE_ID, FIRST_PARTITION_ID)
        };
        tracing::info!(
            databases = state.databases.len(),
            tables = state.tables.len(),
            next_table_id = state.next_table_id,
            "catalog opened"
        );
        Ok(Catalog { fs, clock, config, state: Mutex::new(state) })
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The file system the catalog lives on (the node's data directory).
    pub fn fs(&self) -> Arc<dyn LocalFs> {
        Arc::clone(&self.fs)
    }

    /// Only request handlers change the catalog, and a handler that panics shuts the wire
    /// server and the node down (`wire::server`), so a poisoned catalog is only read on the way
    /// down; the file on disk is written by write-sync-rename and is never half-changed.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_wall_ms()).unwrap_or(i64::MAX)
    }

    /// Applies `change` to a copy of the state; if it changed anything, makes the copy durable
    /// and only then current. A failed write leaves the catalog as it was.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut State, i64) -> Result<(T, bool), CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut state = self.lock();
        let mut next = state.clone();
        let (result, changed) = change(&mut next, self.now_ms())?;
        if changed {
            self.persist(&next)?;
            *state = next;
        }
        Ok(result)
    }

    fn persist(&self, state: &State) -> Result<(), CatalogError> {
        let bytes = codec::encode(state);
        self.fs.write(CATALOG_TEMP_FILE, &bytes)?;
        self.fs.sync(CATALOG_TEMP_FILE)?;
        self.fs.rename(CATALOG_TEMP_FILE, CATALOG_FILE)?;
        Ok(())
    }

    // ----- databases -----

    /// CreateDatabase. `descriptor_json` is the database descriptor (comment, custom
    /// properties) as the client sent it, stored verbatim.
    pub fn create_database(
        &self,
        name: &str,
        descriptor_json: Option<String>,
        ignore_if_exists: bool,
    ) -> Result<(), CatalogError> {
        validate_database_name(name)?;
        self.mutate(|state, now_ms| {
            if state.databases.contains_key(name) {
                return if ignore_if_exists {
                    Ok(((), false))
                } else {
                    Err(CatalogError::DatabaseAlreadyExist(name.to_string()))
                };
            }
            let database = DatabaseInfo {
                name: name.to_string(),
                descriptor_json,
                created_time_ms: now_ms,
                modified_time_ms: now_ms,
            };
            state.databases.insert(name.to_string(), database);
            Ok(((), true))
        })
    }

    /// What a node does at start-up, before it serves, as Fluss's coordinator does: when no
    /// database exists, creates [`DEFAULT_DATABASE`] (durably). A catalog that has any
    /// database, `fluss` or not, is left alone, so a dropped `fluss` stays dropped. Returns
    /// whether it created the database.
    pub fn create_default_database_if_none(&self) -> Result<bool, CatalogError> {
        if !self.lock().databases.is_empty() {
            return Ok(false);
        }
        // Nothing else changes the catalog before the node serves.
        self.create_database(DEFAULT_DATABASE, None, true)?;
        tracing::info!(database = DEFAULT_DATABASE, "created the default database: none existed");
        Ok(true)
    }

    /// DropDatabase. Without `cascade` a database that still has tables is refused
    /// (DATABASE_NOT_EMPTY); with it, its tables go too. Returns the dropped tables, whose
    /// buckets the caller should stop serving and delete.
    pub fn drop_database(
        &self,
        name: &str,
        ignore_if_not_exists: bool,
        cascade: bool,
    ) -> Result<Vec<TableInfo>, CatalogError> {
        self.mutate(|state, _now_ms| {
            if !state.databases.contains_key(name) {
                return if ignore_if_not_exists {
                    Ok((Vec::new(), false))
                } else {
                    Err(CatalogError::DatabaseNotExist(name.to_string()))
                };
            }
            let paths: Vec<TablePath> =
                state.tables.keys().filter(|path| path.database == name).cloned().collect();
            if !paths.is_empty() && !cascade {
                return Err(CatalogError::DatabaseNotEmpty {
                    database: name.to_string(),
                    table_count: paths.len(),
                });
            }
            let dropped = paths
                .iter()
                .filter_map(|path| state.tables.remove(path))
                .map(|entry| entry.info)
                .collect();
            state.databases.remove(name);
            Ok((dropped, true))
        })
    }

    /// ListDatabases, sorted by name.
    pub fn list_databases(&self) -> Vec<String> {
        self.lock().databases.keys().cloned().collect()
    }

    /// DatabaseExists.
    pub fn database_exists(&self, name: &str) -> bool {
        self.lock().databases.contains_key(name)
    }

    /// GetDatabaseInfo.
    pub fn get_database(&self, name: &str) -> Result<DatabaseInfo, CatalogError> {
        self.lock()
            .databases
            .get(name)
            .cloned()
            .ok_or_else(|| CatalogError::DatabaseNotExist(name.to_string()))
    }

    // ----- tables -----

    /// CreateTable. Returns the new table, or with `ignore_if_exists` the existing one (its id
    /// and schema unchanged). The database must exist (DATABASE_NOT_EXIST).
    pub fn create_table(
        &self,
        path: &TablePath,
        spec: TableSpec,
        ignore_if_exists: bool,
    ) -> Result<TableInfo, CatalogError> {
        validate_database_name(&path.database)?;
        validate_table_name(&path.table)?;
        self.mutate(|state, now_ms| {
            if !state.databases.contains_key(&path.database) {
                return Err(CatalogError::DatabaseNotExist(path.database.clone()));
            }
            if let Some(existing) = state.tables.get(path) {
                return if ignore_if_exists {
                    Ok((existing.info.clone(), false))
                } else {
                    Err(CatalogError::TableAlreadyExist(path.clone()))
                };
            }
            let resolved = validate_table_spec(&spec, &self.config)?;
            let table_id = state.next_table_id;
            state.next_table_id = table_id.checked_add(1).ok_or(CatalogError::TableIdsExhausted)?;
            let schema = SchemaVersion {
                schema_id: FIRST_SCHEMA_ID,
                schema_json: spec.schema_json,
                columns: spec.columns,
            };
            let info = TableInfo {
                table_id,
                path: path.clone(),
                schema_id: schema.schema_id,
                schema_json: schema.schema_json.clone(),
                columns: schema.columns.clone(),
                primary_key: spec.primary_key,
                bucket_key: resolved.bucket_key,
                partition_key: spec.partition_key,
                bucket_count: resolved.bucket_count,
                properties: resolved.properties,
                custom_properties: spec.custom_properties,
                comment: spec.comment,
                created_time_ms: now_ms,
                modified_time_ms: now_ms,
            };
            state.tables.insert(path.clone(), TableEntry::new(info.clone(), vec![schema]));
            Ok((info, true))
        })
    }

    /// DropTable. Returns the dropped table (`None` when it was missing and that is ignored);
    /// its partitions go with it.
    pub fn drop_table(
        &self,
        path: &TablePath,
        ignore_if_not_exists: bool,
    ) -> Result<Option<TableInfo>, CatalogError> {
        self.mutate(|state, _now_ms| match state.tables.remove(path) {
            Some(entry) => Ok((Some(entry.info), true)),
            None if ignore_if_not_exists => Ok((None, false)),
            None => Err(CatalogError::TableNotExist(path.clone())),
        })
    }

    /// GetTableInfo (and the table part of Metadata).
    pub fn get_table(&self, path: &TablePath) -> Result<TableInfo, CatalogError> {
        self.lock()
            .tables
            .get(path)
            .map(|entry| entry.info.clone())
            .ok_or_else(|| CatalogError::TableNotExist(path.clone()))
    }

    /// The table with `table_id`, as a tablet request names it.
    pub fn table_by_id(&self, table_id: i64) -> Option<TableInfo> {
        self.lock()
            .tables
            .values()
            .find(|entry| entry.info.table_id == table_id)
            .map(|entry| entry.info.clone())
    }

    /// Every table, ordered by path: what the node hosts.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.lock().tables.values().map(|entry| entry.info.clone()).collect()
    }

    /// ListTables: the table names of `database`, sorted.
    pub fn list_tables(&self, database: &str) -> Result<Vec<String>, CatalogError> {
        let state = self.lock();
        if !state.databases.contains_key(database) {
            return Err(CatalogError::DatabaseNotExist(database.to_string()));
        }
        Ok(state
            .tables
            .keys()
            .filter(|path| path.database == database)
            .map(|path| path.table.clone())
            .collect())
    }

    /// TableExists (false also when the database is missing).
    pub fn table_exists(&self, path: &TablePath) -> bool {
        self.lock().tables.contains_key(path)
    }

    /// The id the next created table will get.
    pub fn next_table_id(&self) -> i64 {
        self.lock().next_table_id
    }

    // ----- schemas -----

    /// GetTableSchema: the schema `schema_id` of the table, or its latest with `None`.
    pub fn get_schema(
        &self,
        path: &TablePath,
        schema_id: Option<i32>,
    ) -> Result<SchemaVersion, CatalogError> {
        let state = self.lock();
        let entry =
            state.tables.get(path).ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
        let found = match schema_id {
            None => entry.schemas.last(),
            Some(wanted) => entry.schemas.iter().find(|schema| schema.schema_id == wanted),
        };
        found.cloned().ok_or_else(|| CatalogError::SchemaNotExist {
            path: path.clone(),
            schema_id: schema_id.unwrap_or(-1),
        })
    }

    /// Every schema version of the table, oldest first.
    pub fn schemas(&self, path: &TablePath) -> Result<Vec<SchemaVersion>, CatalogError> {
        let state = self.lock();
        let entry =
            state.tables.get(path).ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
        Ok(entry.schemas.clone())
    }

    /// Adds a schema version (the only evolution allowed: new columns appended after the
    /// existing ones, the keys unchanged). Returns the table with its new current schema.
    pub fn add_schema_version(
        &self,
        path: &TablePath,
        schema_json: String,
        columns: Vec<String>,
    ) -> Result<TableInfo, CatalogError> {
        if schema_json.trim().is_empty() {
            return Err(CatalogError::InvalidTable("the schema JSON is empty".to_string()));
        }
        validate_columns(&columns)?;
        self.mutate(|state, now_ms| {
            let entry = state
                .tables
                .get_mut(path)
                .ok_or_else(|| CatalogError::TableNotExist(path.clone()))?;
            let old_columns = &entry.info.columns;
            if columns.len() <= old_columns.len() || !columns.starts_with(old_columns) {
                return Err(CatalogError::InvalidTable(format!(
                    "a new schema of {path} must keep the columns {old_columns:?} and append at \
                     least one; got {columns:?}"
                )));
            }
            let schema_id = entry.info.schema_id.checked_add(1).ok_or_else(|| {
                CatalogError::InvalidTable(format!("{path} has no schema id left"))
            })?;
            let schema = SchemaVersion { schema_id, schema_json, columns };
            entry.info.schema_id = schema_id;
            entry.info.schema_json = schema.schema_json.clone();
            entry.info.columns = schema.columns.clone();
            entry.info.modified_time_ms = now_ms;
            entry.schemas.push(schema);
            Ok((entry.info.clone(), true))
        })
    }
}
