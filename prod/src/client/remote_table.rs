//! A table as the server describes it (Metadata): id, current schema, bucket count and the
//! leader of each bucket; plus what a client does with that description: decode a stored value
//! of any schema version, and build the PutKv and Lookup requests for rows and keys.

use std::collections::BTreeMap;

use bytes::Bytes;
use kvtablet_core::message::NodeId;

use super::connection::Connection;
use super::error::ClientError;
use crate::format::key_encoding::{bucket_key_of_row, primary_key_of_row};
use crate::format::kv_record_batch::{KvRecordBatchBuilder, NO_BATCH_SEQUENCE, NO_WRITER_ID};
use crate::format::value_record_batch::decode_stored_value;
use crate::format::{FormatError, Row, Schema, TableDescriptor, TableSchema};
use crate::wire::messages::{
    GetTableSchemaRequest, GetTableSchemaResponse, LookupRequest, MetadataRequest,
    MetadataResponse, PbBucketMetadata, PbLookupReqForBucket, PbPhysicalTablePath,
    PbPutKvReqForBucket, PbServerNode, PbTablePath, PutKvRequest,
};
use crate::wire::ApiKey;

/// `acks` of a PutKv: every replica.
const ACKS_ALL: i32 = -1;

/// Where a bucket's leader can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLeader {
    pub node_id: NodeId,
    /// `host:port`, as the server advertises it.
    pub addr: String,
}

/// The leader of each bucket that has a reachable one, by bucket id.
fn leaders_of(
    tablet_servers: &[PbServerNode],
    buckets: &[PbBucketMetadata],
) -> BTreeMap<i32, BucketLeader> {
    let servers: BTreeMap<i32, &PbServerNode> =
        tablet_servers.iter().map(|server| (server.node_id, server)).collect();
    buckets
        .iter()
        .filter_map(|bucket| {
            let server = servers.get(&bucket.leader_id?)?;
            let node_id = NodeId::try_from(server.node_id).ok()?;
            Some((bucket.bucket_id, BucketLeader { node_id, addr: server_addr(server) }))
        })
        .collect()
}

/// One table of the server, resolved by name.
#[derive(Debug, Clone)]
pub struct RemoteTable {
    pub database: String,
    pub table: String,
    pub table_id: i64,
    pub descriptor: TableDescriptor,
    /// The current schema.
    pub schema: TableSchema,
    pub bucket_count: i32,
    /// The partition the buckets and leaders are those of (see
    /// [`RemoteTable::fetch_partition`]); `None` for the table's own buckets.
    pub partition_id: Option<i64>,
    /// By bucket id; a bucket without a reachable leader is absent.
    pub leaders: BTreeMap<i32, BucketLeader>,
}

impl RemoteTable {
    /// Asks the server (Metadata) for `database.table`. A missing table is the server's
    /// ERROR_RESPONSE (code 7, `TABLE_NOT_EXIST`, or 4 for a missing database).
    pub async fn fetch(
        connection: &Connection,
        database: &str,
        table: &str,
    ) -> Result<RemoteTable, ClientError> {
        let request = MetadataRequest {
            table_path: vec![table_path(database, table)],
            partitions_path: Vec::new(),
            partitions_id: Vec::new(),
        };
        let response: MetadataResponse = connection.call(ApiKey::Metadata, &request).await?;
        let malformed =
            |reason: String| ClientError::Decode { api: ApiKey::Metadata.name(), reason };
        let metadata = response
            .table_metadata
            .iter()
            .find(|m| m.table_path.database_name == database && m.table_path.table_name == table)
            .ok_or_else(|| malformed(format!("no metadata for {database}.{table}")))?;
        let descriptor = TableDescriptor::from_json_bytes(&metadata.table_json)
            .map_err(|error| malformed(format!("table_json of {database}.{table}: {error}")))?;
        let schema_id = i16::try_from(metadata.schema_id)
            .map_err(|_| malformed(format!("schema id {} out of range", metadata.schema_id)))?;
        let schema = TableSchema::from_descriptor(schema_id, &descriptor)
            .map_err(|error| malformed(format!("schema of {database}.{table}: {error}")))?;
        let leaders = leaders_of(&response.tablet_servers, &metadata.bucket_metadata);
        let bucket_count = descriptor
            .bucket_count
            .unwrap_or_else(|| i32::try_from(metadata.bucket_metadata.len()).unwrap_or(i32::MAX));
        Ok(RemoteTable {
            database: database.to_string(),
            table: table.to_string(),
            table_id: metadata.table_id,
            descriptor,
            schema,
            bucket_count,
            partition_id: None,
            leaders,
        })
    }

    /// Asks the server (Metadata by partition path) for partition `partition_name` of this
    /// table, whose buckets and leaders the returned table then describes. A missing partition
    /// is the server's ERROR_RESPONSE (code 36, `PARTITION_NOT_EXISTS`).
    pub async fn fetch_partition(
        mut self,
        connection: &Connection,
        partition_name: &str,
    ) -> Result<RemoteTable, ClientError> {
        let request = MetadataRequest {
            table_path: Vec::new(),
            partitions_path: vec![PbPhysicalTablePath {
                database_name: self.database.clone(),
                table_name: self.table.clone(),
                partition_name: Some(partition_name.to_string()),
            }],
            partitions_id: Vec::new(),
        };
        let response: MetadataResponse = connection.call(ApiKey::Metadata, &request).await?;
        let metadata = response
            .partition_metadata
            .iter()
            .find(|m| m.table_id == self.table_id && m.partition_name == partition_name)
            .ok_or_else(|| ClientError::Decode {
                api: ApiKey::Metadata.name(),
                reason: format!("no metadata for partition {partition_name}"),
            })?;
        self.partition_id = Some(metadata.partition_id);
        self.leaders = leaders_of(&response.tablet_servers, &metadata.bucket_metadata);
        Ok(self)
    }

    /// Schema version `schema_id` of this table (GetTableSchema), for values written before
    /// the current schema.
    pub async fn fetch_schema(
        &self,
        connection: &Connection,
        schema_id: i16,
    ) -> Result<TableSchema, ClientError> {
        if schema_id == self.schema.schema_id {
            return Ok(self.schema.clone());
        }
        let request = GetTableSchemaRequest {
            table_path: table_path(&self.database, &self.table),
            schema_id: Some(i32::from(schema_id)),
        };
        let response: GetTableSchemaResponse =
            connection.call(ApiKey::GetTableSchema, &request).await?;
        let malformed =
            |reason: String| ClientError::Decode { api: ApiKey::GetTableSchema.name(), reason };
        let text = std::str::from_utf8(&response.schema_json)
            .map_err(|error| malformed(format!("schema_json is not UTF-8: {error}")))?;
        let schema = Schema::from_json_str(text)
            .map_err(|error| malformed(format!("schema {schema_id}: {error}")))?;
        TableSchema::new(schema_id, &schema, &self.descriptor.bucket_keys)
            .map(|old| old.with_encoding(self.schema.encoding))
            .map_err(|error| malformed(format!("schema {schema_id}: {error}")))
    }

    /// The schema id a stored value (`schema_id ++ CompactedRow`) was written with.
    pub fn schema_id_of(value: &[u8]) -> Result<i16, FormatError> {
        decode_stored_value(value).map(|(schema_id, _row)| schema_id)
    }

    /// Decodes a stored value with `schema` (the one its schema id names).
    pub fn decode_value(schema: &TableSchema, value: &[u8]) -> Result<Row, FormatError> {
        let (_schema_id, row) = decode_stored_value(value)?;
        schema.encoding.row_format.decode_row(&schema.data_types(), row)
    }

    /// The bucket `row` belongs to, by the table's lake format.
    pub fn bucket_of_row(&self, row: &Row) -> Result<i32, FormatError> {
        let bucket_key = bucket_key_of_row(&self.schema, row)?;
        self.schema.encoding.bucket_function().bucket_of(&bucket_key, self.bucket_count)
    }

    /// Upserts of `rows` (current schema, no writer id), one batch per bucket, in one PutKv.
    pub fn put_request(&self, rows: &[Row]) -> Result<PutKvRequest, FormatError> {
        let types = self.schema.data_types();
        let mut batches: BTreeMap<i32, KvRecordBatchBuilder> = BTreeMap::new();
        for row in rows {
            let key = primary_key_of_row(&self.schema, row)?;
            let value = self.schema.encoding.row_format.encode_row(&types, row)?;
            let bucket_id = self.bucket_of_row(row)?;
            batches
                .entry(bucket_id)
                .or_insert_with(|| {
                    KvRecordBatchBuilder::new(
                        self.schema.schema_id,
                        NO_WRITER_ID,
                        NO_BATCH_SEQUENCE,
                    )
                })
                .append(&key, Some(&value))?;
        }
        let buckets_req = batches
            .into_iter()
            .map(|(bucket_id, batch)| {
                Ok(PbPutKvReqForBucket {
                    partition_id: None,
                    bucket_id,
                    records: Bytes::from(batch.build()?),
                })
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        Ok(PutKvRequest {
            acks: ACKS_ALL,
            table_id: self.table_id,
            timeout_ms: 30_000,
            target_columns: Vec::new(),
            buckets_req,
            agg_mode: None,
        })
    }

    /// Lookups of the primary keys of `rows` (only the key columns are read), grouped by
    /// bucket; the answer of each bucket lists values in the order of its keys here.
    pub fn lookup_request(&self, rows: &[Row]) -> Result<LookupRequest, FormatError> {
        let mut keys: BTreeMap<i32, Vec<Bytes>> = BTreeMap::new();
        for row in rows {
            let key = primary_key_of_row(&self.schema, row)?;
            keys.entry(self.bucket_of_row(row)?).or_default().push(Bytes::from(key));
        }
        Ok(LookupRequest {
            table_id: self.table_id,
            buckets_req: keys
                .into_iter()
                .map(|(bucket_id, keys)| PbLookupReqForBucket {
                    partition_id: None,
                    bucket_id,
                    keys,
                    original_partition_name: None,
                })
                .collect(),
            insert_if_not_exists: None,
            acks: None,
            timeout_ms: None,
        })
    }
}

fn table_path(database: &str, table: &str) -> PbTablePath {
    PbTablePath { database_name: database.to_string(), table_name: table.to_string() }
}

/// `host:port`, with an IPv6 host in brackets.
fn server_addr(server: &PbServerNode) -> String {
    if server.host.contains(':') {
        format!("[{}]:{}", server.host, server.port)
    } else {
        format!("{}:{}", server.host, server.port)
    }
}
