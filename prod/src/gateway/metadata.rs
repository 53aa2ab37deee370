//! Metadata: this node as the coordinator and the only tablet server, and the tables asked
//! for, every bucket led by this node.

use kvtablet_core::TableBucket;

use super::admin::table_path;
use super::table_json::table_json_of;
use super::{catalog_error, Gateway};
use crate::node::SERVER_NODE_ID;
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    MetadataRequest, MetadataResponse, PbBucketMetadata, PbServerNode, PbTableMetadata, PbTablePath,
};
use crate::wire::WireResponse;

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

    pub(crate) fn metadata(&self, body: &[u8]) -> WireResponse {
        let request: MetadataRequest = decode_request(body)?;
        let node_id = SERVER_NODE_ID as i32;
        let mut table_metadata = Vec::with_capacity(request.table_path.len());
        for path in &request.table_path {
            let info = self.catalog.get_table(&table_path(path)).map_err(catalog_error)?;
            let bucket_metadata = (0..info.bucket_count)
                .map(|bucket_id| {
                    let bucket = TableBucket::new(info.table_id, bucket_id);
                    let leader_epoch = self.node.leader_epoch(bucket);
                    PbBucketMetadata {
                        bucket_id,
                        // A bucket still being opened has no leader yet: the client retries.
                        leader_id: leader_epoch.map(|_| node_id),
                        replica_id: vec![node_id],
                        leader_epoch: leader_epoch.and_then(|epoch| i32::try_from(epoch).ok()),
                    }
                })
                .collect();
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
            partition_metadata: Vec::new(),
        })
    }
}
