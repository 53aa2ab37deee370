//! The coordinator's admin RPCs: databases and tables, answered from the catalog. A table
//! created here is hosted and led by the node at once.

use std::sync::Arc;

use bytes::Bytes;

use super::table_json::{log_ttl_ms_of, partial_updates_of, spec_from_table_json, table_json_of};
use super::{blocking, catalog_error, Gateway};
use crate::catalog::{TableInfo, TablePath};
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    CreateDatabaseRequest, CreateDatabaseResponse, CreateTableRequest, CreateTableResponse,
    DatabaseExistsRequest, DatabaseExistsResponse, DropDatabaseRequest, DropDatabaseResponse,
    DropTableRequest, DropTableResponse, GetDatabaseInfoRequest, GetDatabaseInfoResponse,
    GetTableInfoRequest, GetTableInfoResponse, GetTableSchemaRequest, GetTableSchemaResponse,
    ListDatabasesRequest, ListDatabasesResponse, ListTablesRequest, ListTablesResponse,
    PbTablePath, TableExistsRequest, TableExistsResponse,
};
use crate::wire::{WireError, WireResponse};

/// The database JSON answered for a database created without a descriptor.
const EMPTY_DATABASE_JSON: &str = r#"{"version":1,"custom_properties":{}}"#;

pub(crate) fn table_path(path: &PbTablePath) -> TablePath {
    TablePath::new(path.database_name.clone(), path.table_name.clone())
}

impl Gateway {
    pub(crate) async fn create_database(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: CreateDatabaseRequest = decode_request(body)?;
        let descriptor = match &request.database_json {
            Some(json) => Some(String::from_utf8(json.to_vec()).map_err(|_| {
                WireError::new(
                    crate::catalog::codes::INVALID_DATABASE,
                    "database JSON is not UTF-8",
                )
            })?),
            None => None,
        };
        let catalog = Arc::clone(&self.catalog);
        blocking(move || {
            catalog
                .create_database(&request.database_name, descriptor, request.ignore_if_exists)
                .map_err(catalog_error)
        })
        .await?;
        encode_response(&CreateDatabaseResponse {})
    }

    pub(crate) async fn drop_database(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: DropDatabaseRequest = decode_request(body)?;
        let catalog = Arc::clone(&self.catalog);
        let dropped = blocking(move || {
            catalog
                .drop_database(
                    &request.database_name,
                    request.ignore_if_not_exists,
                    request.cascade,
                )
                .map_err(catalog_error)
        })
        .await?;
        for info in dropped {
            self.unhost(&info).await;
        }
        encode_response(&DropDatabaseResponse {})
    }

    pub(crate) fn list_databases(&self, body: &[u8]) -> WireResponse {
        let _request: ListDatabasesRequest = decode_request(body)?;
        encode_response(&ListDatabasesResponse {
            database_name: self.catalog.list_databases(),
            database_summary: Vec::new(),
        })
    }

    pub(crate) fn database_exists(&self, body: &[u8]) -> WireResponse {
        let request: DatabaseExistsRequest = decode_request(body)?;
        encode_response(&DatabaseExistsResponse {
            exists: self.catalog.database_exists(&request.database_name),
        })
    }

    pub(crate) fn get_database_info(&self, body: &[u8]) -> WireResponse {
        let request: GetDatabaseInfoRequest = decode_request(body)?;
        let info = self.catalog.get_database(&request.database_name).map_err(catalog_error)?;
        let json = info.descriptor_json.unwrap_or_else(|| EMPTY_DATABASE_JSON.to_string());
        encode_response(&GetDatabaseInfoResponse {
            database_json: Bytes::from(json),
            created_time: info.created_time_ms,
            modified_time: info.modified_time_ms,
        })
    }

    pub(crate) async fn create_table(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: CreateTableRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let spec = spec_from_table_json(&request.table_json)?;
        let catalog = Arc::clone(&self.catalog);
        let info = blocking(move || {
            catalog.create_table(&path, spec, request.ignore_if_exists).map_err(catalog_error)
        })
        .await?;
        let partial_updates = Some(partial_updates_of(&info)?);
        let log_ttl_ms = log_ttl_ms_of(&info.properties)?;
        self.node
            .host_table(
                info.table_id,
                &info.path,
                info.bucket_count,
                info.is_partitioned(),
                partial_updates,
                log_ttl_ms,
            )
            .await
            .map_err(|error| {
                WireError::unknown_server_error(format!("cannot host table {}: {error}", info.path))
            })?;
        if info.is_partitioned() {
            // An automatically partitioned table gets its first partitions at once.
            self.auto_partition_tick(self.catalog.now_wall_ms()).await?;
        }
        encode_response(&CreateTableResponse {})
    }

    pub(crate) async fn drop_table(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: DropTableRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let catalog = Arc::clone(&self.catalog);
        let dropped = blocking(move || {
            catalog.drop_table(&path, request.ignore_if_not_exists).map_err(catalog_error)
        })
        .await?;
        if let Some(info) = dropped {
            self.unhost(&info).await;
        }
        encode_response(&DropTableResponse {})
    }

    /// Stops serving a dropped table's buckets (the catalog has forgotten the table already).
    async fn unhost(&self, info: &TableInfo) {
        self.node.unhost_table(info.table_id).await;
    }

    pub(crate) fn get_table_info(&self, body: &[u8]) -> WireResponse {
        let request: GetTableInfoRequest = decode_request(body)?;
        let info =
            self.catalog.get_table(&table_path(&request.table_path)).map_err(catalog_error)?;
        encode_response(&GetTableInfoResponse {
            table_id: info.table_id,
            schema_id: info.schema_id,
            table_json: table_json_of(&info)?,
            created_time: info.created_time_ms,
            modified_time: info.modified_time_ms,
            remote_data_dir: None,
        })
    }

    pub(crate) fn list_tables(&self, body: &[u8]) -> WireResponse {
        let request: ListTablesRequest = decode_request(body)?;
        let tables = self.catalog.list_tables(&request.database_name).map_err(catalog_error)?;
        encode_response(&ListTablesResponse { table_name: tables })
    }

    pub(crate) fn table_exists(&self, body: &[u8]) -> WireResponse {
        let request: TableExistsRequest = decode_request(body)?;
        encode_response(&TableExistsResponse {
            exists: self.catalog.table_exists(&table_path(&request.table_path)),
        })
    }

    pub(crate) fn get_table_schema(&self, body: &[u8]) -> WireResponse {
        let request: GetTableSchemaRequest = decode_request(body)?;
        let schema = self
            .catalog
            .get_schema(&table_path(&request.table_path), request.schema_id)
            .map_err(catalog_error)?;
        encode_response(&GetTableSchemaResponse {
            schema_id: schema.schema_id,
            schema_json: Bytes::from(schema.schema_json),
        })
    }
}
