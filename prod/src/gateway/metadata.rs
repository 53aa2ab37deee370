//! Metadata: this node as the coordinator and the only tablet server, and the tables and
//! partitions asked for (by path or by id), every bucket led by this node. A partitioned
//! table's own entry has no buckets: they are its partitions'.

use kvtablet_core::TableBucket;

use super::admin::table_path;
use super::table_json::table_json_of;
use super::{catalog_error, Gateway};
use crate::catalog::{codes, TablePartition, TablePath};
use crate::node::SERVER_NODE_ID;
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    MetadataRequest, MetadataResponse, PbBucketMetadata, PbPartitionMetadata, PbServerNode,
    PbTableMetadata, PbTablePath,
};
use crate::wire::{WireError, WireResponse};

impl Gateway {
    fn server_node(&self) -> PbServerNode {
        PbServerNode {
            node_id: SERVER_NODE_ID as i32,
            host: self.advertised.ip().to_string(),
            port: i32::from(self.advertised.port()),
            listeners: None,
            rack: None,
        }
    }

    /// The buckets `0..bucket_count` of a table or of one of its partitions.
    fn bucket_metadata(
        &self,
        table_id: i64,
        partition_id: Option<i64>,
        bucket_count: i32,
    ) -> Vec<PbBucketMetadata> {
        let node_id = SERVER_NODE_ID as i32;
        (0..bucket_count)
            .map(|bucket_id| {
                let bucket = TableBucket { table_id, partition_id, bucket_id };
                let leader_epoch = self.node.leader_epoch(bucket);
                PbBucketMetadata {
                    bucket_id,
                    // A bucket still being opened has no leader yet: the client retries.
                    leader_id: leader_epoch.map(|_| node_id),
                    replica_id: vec![node_id],
                    leader_epoch: leader_epoch.and_then(|epoch| i32::try_from(epoch).ok()),
                }
            })
            .collect()
    }

    fn partition_metadata(&self, found: &TablePartition) -> PbPartitionMetadata {
        let (table, partition) = (&found.table, &found.partition);
        PbPartitionMetadata {
            table_id: table.table_id,
            partition_name: partition.name(),
            partition_id: partition.partition_id,
            bucket_metadata: self.bucket_metadata(
                table.table_id,
                Some(partition.partition_id),
                table.bucket_count,
            ),
        }
    }

    /// The partitions asked for by path (a path without a partition name is its table's) and
    /// by id; a missing one is PARTITION_NOT_EXISTS for the whole request, as in Fluss.
    fn partitions_asked(
        &self,
        request: &MetadataRequest,
        table_paths: &mut Vec<TablePath>,
    ) -> Result<Vec<PbPartitionMetadata>, WireError> {
        let mut partitions = Vec::new();
        for path in &request.partitions_path {
            let table = TablePath::new(path.database_name.clone(), path.table_name.clone());
            match &path.partition_name {
                None => table_paths.push(table),
                Some(name) => {
                    let found =
                        self.catalog.partition_by_name(&table, name).map_err(catalog_error)?;
                    partitions.push(self.partition_metadata(&found));
                }
            }
        }
        for &partition_id in &request.partitions_id {
            let found = self.catalog.partition_by_id(partition_id).ok_or_else(|| {
                WireError::new(
                    codes::PARTITION_NOT_EXISTS,
                    format!("partition with id {partition_id} does not exist"),
                )
            })?;
            partitions.push(self.partition_metadata(&found));
        }
        Ok(partitions)
    }

    pub(crate) fn metadata(&self, body: &[u8]) -> WireResponse {
        let request: MetadataRequest = decode_request(body)?;
        let mut table_paths: Vec<TablePath> = request.table_path.iter().map(table_path).collect();
        let partition_metadata = self.partitions_asked(&request, &mut table_paths)?;
        let mut table_metadata = Vec::with_capacity(table_paths.len());
        for path in &table_paths {
            let info = self.catalog.get_table(path).map_err(catalog_error)?;
            let bucket_metadata = match info.is_partitioned() {
                true => Vec::new(),
                false => self.bucket_metadata(info.table_id, None, info.bucket_count),
            };
            table_metadata.push(PbTableMetadata {
                table_path: PbTablePath {
                    database_name: info.path.database.clone(),
                    table_name: info.path.table.clone(),
                },
                table_id: info.table_id,
                schema_id: info.schema_id,
                table_json: table_json_of(&info)?,
                bucket_metadata,
                created_time: info.created_time_ms,
                modified_time: info.modified_time_ms,
                remote_data_dir: None,
            });
        }
        encode_response(&MetadataResponse {
            coordinator_server: Some(self.server_node()),
            tablet_servers: vec![self.server_node()],
            table_metadata,
            partition_metadata,
        })
    }
}
