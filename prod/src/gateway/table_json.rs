//! Table descriptor JSON on the wire ↔ the catalog's [`TableSpec`] and [`TableInfo`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kvtablet_core::kv::PartialUpdates;
use serde_json::Value;

use super::partitions::check_partition_key_types;
use crate::catalog::{codes, TableInfo, TableSpec};
use crate::format::{
    CompactedPartialUpdates, Schema, SchemaError, TableDescriptor, TableEncoding, TableSchema,
};
use crate::wire::WireError;

/// What the catalog needs from a CreateTable `table_json`. A bucket count that is not positive
/// is left to the catalog, which refuses it with INVALID_CONFIG; a descriptor that does not
/// parse is INVALID_TABLE.
pub(crate) fn spec_from_table_json(bytes: &[u8]) -> Result<TableSpec, WireError> {
    let invalid_table = |message: String| WireError::new(codes::INVALID_TABLE, message);
    let mut node: Value = serde_json::from_slice(bytes)
        .map_err(|error| invalid_table(format!("table descriptor is not JSON: {error}")))?;
    let bucket_count = match node.as_object_mut().and_then(|obj| obj.remove("bucket_count")) {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(value.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| {
                WireError::new(codes::INVALID_CONFIG, format!("invalid bucket_count {value}"))
            })?)
        }
    };
    let descriptor = TableDescriptor::from_json(&node)
        .map_err(|error| invalid_table(format!("invalid table descriptor: {error}")))?;
    descriptor.check_column_types().map_err(|error| invalid_table(error.to_string()))?;
    check_partition_key_types(&descriptor)?;
    check_encoding(&descriptor)?;
    log_ttl_ms_of(&descriptor.properties)?;
    Ok(TableSpec {
        schema_json: descriptor.schema.to_json().to_string(),
        columns: descriptor.schema.columns.iter().map(|column| column.name.clone()).collect(),
        primary_key: descriptor.schema.primary_key.clone(),
        bucket_key: descriptor.bucket_keys,
        partition_key: descriptor.partition_keys,
        bucket_count,
        properties: descriptor.properties,
        custom_properties: descriptor.custom_properties,
        comment: descriptor.comment,
    })
}

/// Fluss's `table.log.ttl` table property: how long the remote tier keeps a changelog
/// segment (a duration; `None` when unset: the node's `table.log.ttl`). A bad value is
/// INVALID_CONFIG at CreateTable.
pub const PROP_LOG_TTL: &str = "table.log.ttl";

pub fn log_ttl_ms_of(properties: &BTreeMap<String, String>) -> Result<Option<u64>, WireError> {
    properties
        .get(PROP_LOG_TTL)
        .map(|value| {
            crate::config::units::parse_duration_ms(value).map_err(|error| {
                WireError::new(codes::INVALID_CONFIG, format!("{PROP_LOG_TTL}={value:?}: {error}"))
            })
        })
        .transpose()
}

/// The table's encoding options (`table.kv.format`, `table.datalake.format`,
/// `table.kv.format-version`) must name formats the clients know and fit its columns:
/// INVALID_CONFIG otherwise, as the catalog answers other bad properties.
fn check_encoding(descriptor: &TableDescriptor) -> Result<(), WireError> {
    let invalid_config =
        |error: SchemaError| WireError::new(codes::INVALID_CONFIG, error.to_string());
    TableEncoding::for_new_table(&descriptor.properties)
        .map_err(invalid_config)?
        .check_descriptor(descriptor)
        .map_err(invalid_config)
}

fn schema_of(info: &TableInfo) -> Result<Schema, WireError> {
    Schema::from_json_str(&info.schema_json).map_err(|error| {
        WireError::unknown_server_error(format!(
            "stored schema of {} is invalid: {error}",
            info.path
        ))
    })
}

/// The descriptor JSON a client builds its `TableInfo` from.
pub(crate) fn table_json_of(info: &TableInfo) -> Result<Bytes, WireError> {
    let descriptor = TableDescriptor {
        schema: schema_of(info)?,
        comment: info.comment.clone(),
        partition_keys: info.partition_key.clone(),
        bucket_keys: info.bucket_key.clone(),
        bucket_count: Some(info.bucket_count),
        properties: info.properties.clone(),
        custom_properties: info.custom_properties.clone(),
    };
    Ok(Bytes::from(descriptor.to_json_string()))
}

/// The resolved schema the row and log encoders use. Its key is the one rows are stored
/// under: for a partitioned table, the primary key less the partition keys (the physical
/// primary key that clients encode, look up and prefix-look up by).
pub(crate) fn table_schema_of(info: &TableInfo) -> Result<TableSchema, WireError> {
    let schema_id = i16::try_from(info.schema_id).map_err(|_| {
        WireError::unknown_server_error(format!("schema id {} out of range", info.schema_id))
    })?;
    let invalid = |error: String| {
        WireError::unknown_server_error(format!(
            "stored schema of {} is invalid: {error}",
            info.path
        ))
    };
    let schema = schema_of(info)?;
    let encoding = TableEncoding::from_properties(&info.properties)
        .map_err(|error| invalid(error.to_string()))?;
    let mut table_schema = TableSchema::new(schema_id, &schema, &info.bucket_key)
        .map_err(|error| invalid(error.to_string()))?
        .with_encoding(encoding);
    if info.is_partitioned() {
        table_schema.primary_key = info
            .physical_primary_key()
            .iter()
            .map(|name| {
                schema.column_index(name).ok_or_else(|| invalid(format!("no column {name}")))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(table_schema)
}

/// The table's partial-update rule (PutKv with target columns), from its current schema.
pub fn partial_updates_of(info: &TableInfo) -> Result<PartialUpdates, WireError> {
    let schema = table_schema_of(info)?;
    Ok(PartialUpdates(Arc::new(CompactedPartialUpdates::new(schema))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_log_ttl_is_a_duration_and_anything_else_is_invalid_config() {
        let properties = |value: &str| BTreeMap::from([(PROP_LOG_TTL.to_string(), value.into())]);
        assert_eq!(log_ttl_ms_of(&BTreeMap::new()).unwrap(), None);
        assert_eq!(log_ttl_ms_of(&properties("2 h")).unwrap(), Some(2 * 3_600_000));
        let refused = log_ttl_ms_of(&properties("soon")).unwrap_err();
        assert_eq!(refused.code, codes::INVALID_CONFIG);
    }
}
