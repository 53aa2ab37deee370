//! The coordinator's admin calls a client needs to set up tables: CreateDatabase and
//! CreateTable. Refusals are the server's ERROR_RESPONSE codes (6 database exists, 8 table
//! exists, 4 no database, 15 invalid table, 39 invalid config).

use bytes::Bytes;

use super::connection::Connection;
use super::error::ClientError;
use crate::format::TableDescriptor;
use crate::wire::messages::{
    CreateDatabaseRequest, CreateDatabaseResponse, CreateTableRequest, CreateTableResponse,
    PbTablePath,
};
use crate::wire::ApiKey;

pub async fn create_database(
    connection: &Connection,
    database: &str,
    ignore_if_exists: bool,
) -> Result<(), ClientError> {
    let request = CreateDatabaseRequest {
        database_name: database.to_string(),
        ignore_if_exists,
        database_json: None,
    };
    let _created: CreateDatabaseResponse =
        connection.call(ApiKey::CreateDatabase, &request).await?;
    Ok(())
}

pub async fn create_table(
    connection: &Connection,
    database: &str,
    table: &str,
    descriptor: &TableDescriptor,
    ignore_if_exists: bool,
) -> Result<(), ClientError> {
    let request = CreateTableRequest {
        table_path: PbTablePath {
            database_name: database.to_string(),
            table_name: table.to_string(),
        },
        table_json: Bytes::from(descriptor.to_json_string()),
        ignore_if_exists,
    };
    let _created: CreateTableResponse = connection.call(ApiKey::CreateTable, &request).await?;
    Ok(())
}
