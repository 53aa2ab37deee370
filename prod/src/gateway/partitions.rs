//! The coordinator's partition RPCs: CreatePartition, DropPartition and ListPartitionInfos,
//! answered from the catalog. A partition created here is hosted and led by the node at once;
//! a dropped one is removed from the tablet server (its replicas stopped, scans closed and
//! engines released; its files stay on disk, as a dropped table's do).

use std::sync::Arc;

use super::admin::table_path;
use super::{blocking, catalog_error, Gateway};
use crate::catalog::{codes, AutoPartitionChanges, PartitionInfo, PROP_AUTO_PARTITION_ENABLED};
use crate::format::{TableDescriptor, TypeRoot};
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    CreatePartitionRequest, CreatePartitionResponse, DropPartitionRequest, DropPartitionResponse,
    ListPartitionInfosRequest, ListPartitionInfosResponse, PbKeyValue, PbPartitionInfo,
    PbPartitionSpec,
};
use crate::wire::{WireError, WireResponse};

/// Whether Fluss accepts a column of this type as a partition key
/// (`PartitionUtils.PARTITION_KEY_SUPPORTED_TYPES`).
fn partition_key_type_supported(root: &TypeRoot) -> bool {
    match root {
        TypeRoot::Boolean
        | TypeRoot::TinyInt
        | TypeRoot::SmallInt
        | TypeRoot::Int
        | TypeRoot::BigInt
        | TypeRoot::Float
        | TypeRoot::Double
        | TypeRoot::Char { .. }
        | TypeRoot::String
        | TypeRoot::Binary { .. }
        | TypeRoot::Bytes
        | TypeRoot::Date
        | TypeRoot::Time { .. }
        | TypeRoot::TimestampNtz { .. }
        | TypeRoot::TimestampLtz { .. } => true,
        TypeRoot::Decimal { .. }
        | TypeRoot::Array(..)
        | TypeRoot::Map { .. }
        | TypeRoot::Row(..) => false,
    }
}

/// Refuses a partition key whose column type Fluss does not partition by (INVALID_TABLE),
/// and an automatic partition key that is not a STRING (INVALID_CONFIG). The other
/// partition-key rules are the catalog's.
pub(crate) fn check_partition_key_types(descriptor: &TableDescriptor) -> Result<(), WireError> {
    let auto_partitioned = descriptor
        .properties
        .get(PROP_AUTO_PARTITION_ENABLED)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    for key in &descriptor.partition_keys {
        let Some(column) = descriptor.schema.columns.iter().find(|column| &column.name == key)
        else {
            continue; // the catalog refuses a partition key that is not a column
        };
        if auto_partitioned && column.data_type.root != TypeRoot::String {
            return Err(WireError::new(
                codes::INVALID_CONFIG,
                format!(
                    "the automatic partition key '{key}' must be a STRING, not {}",
                    column.data_type.root.json_name()
                ),
            ));
        }
        if !partition_key_type_supported(&column.data_type.root) {
            return Err(WireError::new(
                codes::INVALID_TABLE,
                format!(
                    "Currently, partitioned table supported partition key type are BOOLEAN, \
                     TINYINT, SMALLINT, INTEGER, BIGINT, FLOAT, DOUBLE and STRING, but got \
                     partition key '{key}' with data type {}.",
                    column.data_type.root.json_name()
                ),
            ));
        }
    }
    Ok(())
}

/// A wire partition spec as `(key, value)` pairs.
fn spec_pairs(spec: &PbPartitionSpec) -> Vec<(String, String)> {
    spec.partition_key_values.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect()
}

fn partition_info(partition: &PartitionInfo, partition_key: &[String]) -> PbPartitionInfo {
    let partition_key_values = partition
        .spec(partition_key)
        .into_iter()
        .map(|(key, value)| PbKeyValue { key, value })
        .collect();
    PbPartitionInfo {
        partition_id: partition.partition_id,
        partition_spec: PbPartitionSpec { partition_key_values },
    }
}

impl Gateway {
    pub(crate) async fn create_partition(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: CreatePartitionRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let spec = spec_pairs(&request.partition_spec);
        let catalog = Arc::clone(&self.catalog);
        let created = blocking(move || {
            catalog.create_partition(&path, &spec, request.ignore_if_exists).map_err(catalog_error)
        })
        .await?;
        let (table, partition) = (&created.table, &created.partition);
        self.node
            .host_partition(
                table.table_id,
                partition.partition_id,
                &partition.name(),
                table.bucket_count,
            )
            .await
            .map_err(|error| {
                WireError::unknown_server_error(format!(
                    "cannot host partition {} of {}: {error}",
                    partition.name(),
                    table.path
                ))
            })?;
        encode_response(&CreatePartitionResponse {})
    }

    pub(crate) async fn drop_partition(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: DropPartitionRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let spec = spec_pairs(&request.partition_spec);
        let catalog = Arc::clone(&self.catalog);
        let dropped = blocking(move || {
            catalog
                .drop_partition(&path, &spec, request.ignore_if_not_exists)
                .map_err(catalog_error)
        })
        .await?;
        if let Some(dropped) = dropped {
            self.node
                .unhost_partition(dropped.table.table_id, dropped.partition.partition_id)
                .await;
        }
        encode_response(&DropPartitionResponse {})
    }

    /// One pass of automatic partitioning at `now_ms` (see
    /// [`crate::catalog::Catalog::auto_partition_tick`]): the partitions it creates are hosted
    /// and led, those it drops unhosted.
    pub(crate) async fn auto_partition_tick(
        self: &Arc<Self>,
        now_ms: i64,
    ) -> Result<AutoPartitionChanges, WireError> {
        let catalog = Arc::clone(&self.catalog);
        let changes =
            blocking(move || catalog.auto_partition_tick(now_ms).map_err(catalog_error)).await?;
        for created in &changes.created {
            let (table, partition) = (&created.table, &created.partition);
            self.node
                .host_partition(
                    table.table_id,
                    partition.partition_id,
                    &partition.name(),
                    table.bucket_count,
                )
                .await
                .map_err(|error| {
                    WireError::unknown_server_error(format!(
                        "cannot host partition {} of {}: {error}",
                        partition.name(),
                        table.path
                    ))
                })?;
        }
        for dropped in &changes.dropped {
            self.node
                .unhost_partition(dropped.table.table_id, dropped.partition.partition_id)
                .await;
        }
        if !changes.created.is_empty() || !changes.dropped.is_empty() {
            tracing::info!(
                created = changes.created.len(),
                dropped = changes.dropped.len(),
                "automatic partitioning"
            );
        }
        Ok(changes)
    }

    pub(crate) fn list_partition_infos(&self, body: &[u8]) -> WireResponse {
        let request: ListPartitionInfosRequest = decode_request(body)?;
        let path = table_path(&request.table_path);
        let partial = request.partial_partition_spec.as_ref().map(spec_pairs);
        let table = self.catalog.get_table(&path).map_err(catalog_error)?;
        let partitions =
            self.catalog.list_partitions(&path, partial.as_deref()).map_err(catalog_error)?;
        encode_response(&ListPartitionInfosResponse {
            partitions_info: partitions
                .iter()
                .map(|partition| partition_info(partition, &table.partition_key))
                .collect(),
        })
    }
}
