//! Catalog errors, each mapped to the Fluss error code a client sees.

use kvtablet_core::env::FsError;

use super::model::TablePath;

/// Fluss's wire numbers for the codes the catalog answers with (`Errors.java` upstream; the
/// core's `ErrorCode` does not carry the admin codes).
pub mod codes {
    pub const UNKNOWN_SERVER_ERROR: i32 = -1;
    pub const DATABASE_NOT_EXIST: i32 = 4;
    pub const DATABASE_NOT_EMPTY: i32 = 5;
    pub const DATABASE_ALREADY_EXIST: i32 = 6;
    pub const TABLE_NOT_EXIST: i32 = 7;
    pub const TABLE_ALREADY_EXIST: i32 = 8;
    pub const SCHEMA_NOT_EXIST: i32 = 9;
    pub const INVALID_TABLE: i32 = 15;
    pub const INVALID_DATABASE: i32 = 16;
    pub const INVALID_REPLICATION_FACTOR: i32 = 17;
    pub const STORAGE_EXCEPTION: i32 = 26;
    pub const PARTITION_NOT_EXISTS: i32 = 36;
    pub const TABLE_NOT_PARTITIONED: i32 = 37;
    pub const INVALID_CONFIG: i32 = 39;
    pub const PARTITION_ALREADY_EXISTS: i32 = 42;
    pub const PARTITION_SPEC_INVALID: i32 = 43;
    pub const PARTITION_MAX_NUM: i32 = 45;
    pub const BUCKET_MAX_NUM: i32 = 49;
}

/// What a catalog operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("database {0} does not exist")]
    DatabaseNotExist(String),
    #[error("database {database} is not empty: it holds {table_count} table(s)")]
    DatabaseNotEmpty { database: String, table_count: usize },
    #[error("database {0} already exists")]
    DatabaseAlreadyExist(String),
    #[error("table {0} does not exist")]
    TableNotExist(TablePath),
    #[error("table {0} already exists")]
    TableAlreadyExist(TablePath),
    #[error("schema {schema_id} of table {path} does not exist")]
    SchemaNotExist { path: TablePath, schema_id: i32 },
    /// A database name Fluss would refuse.
    #[error("invalid database: {0}")]
    InvalidDatabase(String),
    /// A table name, schema or key layout that is refused (or not supported here).
    #[error("invalid table: {0}")]
    InvalidTable(String),
    /// A bucket count or table property that is refused (or not supported here).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A replication factor above the number of tablet servers (this node is the only one).
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// The catalog file could not be read or written; the change was not made (or its
    /// durability is unknown, as with any failed sync).
    #[error("catalog storage: {0}")]
    Storage(#[from] FsError),
    /// The catalog file does not decode or fails its checksum; nothing was guessed.
    #[error("catalog file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// No table id is left (2^63 allocations).
    #[error("table ids are exhausted")]
    TableIdsExhausted,
    #[error("partition {name} of table {path} does not exist")]
    PartitionNotExist { path: TablePath, name: String },
    #[error("partition {name} of table {path} already exists")]
    PartitionAlreadyExists { path: TablePath, name: String },
    /// A partition operation on a table without partition keys.
    #[error("table {0} is not partitioned")]
    TableNotPartitioned(TablePath),
    /// A partition spec that does not name every partition key once, names another column,
    /// or has a value Fluss refuses.
    #[error("invalid partition spec: {0}")]
    InvalidPartition(String),
    /// The table has as many partitions as it may have.
    #[error("too many partitions: {0}")]
    TooManyPartitions(String),
    /// The table's partitions would have more buckets than it may have.
    #[error("too many buckets: {0}")]
    TooManyBuckets(String),
    /// No partition id is left (2^63 allocations).
    #[error("partition ids are exhausted")]
    PartitionIdsExhausted,
}

impl CatalogError {
    /// The Fluss error code sent to clients.
    pub fn error_code(&self) -> i32 {
        match self {
            CatalogError::DatabaseNotExist(_) => codes::DATABASE_NOT_EXIST,
            CatalogError::DatabaseNotEmpty { .. } => codes::DATABASE_NOT_EMPTY,
            CatalogError::DatabaseAlreadyExist(_) => codes::DATABASE_ALREADY_EXIST,
            CatalogError::TableNotExist(_) => codes::TABLE_NOT_EXIST,
            CatalogError::TableAlreadyExist(_) => codes::TABLE_ALREADY_EXIST,
            CatalogError::SchemaNotExist { .. } => codes::SCHEMA_NOT_EXIST,
            CatalogError::InvalidDatabase(_) => codes::INVALID_DATABASE,
            CatalogError::InvalidTable(_) => codes::INVALID_TABLE,
            CatalogError::InvalidConfig(_) => codes::INVALID_CONFIG,
            CatalogError::InvalidReplicationFactor(_) => codes::INVALID_REPLICATION_FACTOR,
            CatalogError::Storage(_) => codes::STORAGE_EXCEPTION,
            CatalogError::PartitionNotExist { .. } => codes::PARTITION_NOT_EXISTS,
            CatalogError::PartitionAlreadyExists { .. } => codes::PARTITION_ALREADY_EXISTS,
            CatalogError::TableNotPartitioned(_) => codes::TABLE_NOT_PARTITIONED,
            CatalogError::InvalidPartition(_) => codes::PARTITION_SPEC_INVALID,
            CatalogError::TooManyPartitions(_) => codes::PARTITION_MAX_NUM,
            CatalogError::TooManyBuckets(_) => codes::BUCKET_MAX_NUM,
            CatalogError::Corrupt { .. }
            | CatalogError::TableIdsExhausted
            | CatalogError::PartitionIdsExhausted => codes::UNKNOWN_SERVER_ERROR,
        }
    }

    /// Whether repeating the same call may succeed. API errors are final; a failed disk is not
    /// retried in place (like [`FsError::is_retriable`]).
    pub fn is_retriable(&self) -> bool {
        false
    }
}
