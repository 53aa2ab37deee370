//! The leader's KV RPCs: PutKv, Lookup, PrefixLookup and LimitScan, mapped onto the core's
//! requests bucket by bucket. Values travel as stored: `schema_id (i16 LE) ++ CompactedRow`.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::log::WriterBatch;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::TableBucket;

use super::{bucket_error, Gateway};
use crate::catalog::TableInfo;
use crate::format::kv_record_batch::{NO_BATCH_SEQUENCE, NO_WRITER_ID};
use crate::format::{
    encode_stored_value, encode_value_batch, CompactedPartialUpdates, KvRecordBatch,
    RecordValidator, TableSchema,
};
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    LimitScanRequest, LimitScanResponse, LookupRequest, LookupResponse, PbLookupRespForBucket,
    PbPrefixLookupRespForBucket, PbPutKvReqForBucket, PbPutKvRespForBucket, PbValue, PbValueList,
    PrefixLookupRequest, PrefixLookupResponse, PutKvRequest, PutKvResponse,
};
use crate::wire::WireResponse;

/// Keys one Lookup may ask for, over all its buckets: each key's value may be large, and the
/// answer is built in memory before it is sent.
pub const LOOKUP_KEYS_MAX: usize = 10_000;
/// Prefixes one PrefixLookup may ask for, over all its buckets.
pub const PREFIX_LOOKUP_PREFIXES_MAX: usize = 1_024;
/// The longest prefix a PrefixLookup may send (the longest primary key the core accepts).
pub const PREFIX_BYTES_MAX: usize = 64 * 1024;
/// The most rows a LimitScan may ask for; a larger limit is refused, not quietly cut.
pub const LIMIT_SCAN_ROWS_MAX: i32 = 1_000_000;

/// A request that asks for more than a bound allows: `RECORD_TOO_LARGE` (13), not retriable.
fn too_large(message: String) -> ApiError {
    ApiError::new(ErrorCode::RecordTooLarge, message)
}

/// The bucket of a request. Whether its table serves it (a partition id for a partitioned
/// table, a served partition, none for any other table) is core's check.
pub(super) fn bucket_of(
    table_id: i64,
    partition_id: Option<i64>,
    bucket_id: i32,
) -> Result<TableBucket, ApiError> {
    Ok(TableBucket { table_id, partition_id, bucket_id })
}

/// The idempotent writer of a PutKv batch: both fields set, or neither.
fn writer_of(batch: &KvRecordBatch<'_>) -> Result<Option<WriterBatch>, ApiError> {
    match (batch.writer_id, batch.batch_sequence) {
        (NO_WRITER_ID, NO_BATCH_SEQUENCE) => Ok(None),
        (writer_id @ 0.., batch_sequence @ 0..) => {
            Ok(Some(WriterBatch { writer_id, batch_sequence }))
        }
        (writer_id, batch_sequence) => Err(ApiError::new(
            ErrorCode::CorruptRecord,
            format!(
                "kv record batch with writer id {writer_id} and batch sequence {batch_sequence}"
            ),
        )),
    }
}

pub(super) fn unexpected(request: &str, response: &Response) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownServerError,
        format!("{request} answered unexpectedly with {}", response.kind()),
    )
}

impl Gateway {
    pub(crate) async fn call(&self, request: Request) -> Result<Response, ApiError> {
        match self.node.request(request).await {
            Ok(Response::Error(error)) => Err(error),
            Ok(response) => Ok(response),
            Err(error) => Err(ApiError::new(ErrorCode::UnknownServerError, error.to_string())),
        }
    }

    /// The validator of a PutKv's rows: the table's current schema, which must have a
    /// primary key.
    fn record_validator(table: &(TableInfo, TableSchema)) -> Result<RecordValidator, ApiError> {
        let (info, schema) = table;
        RecordValidator::new(schema).map_err(|_| {
            ApiError::new(
                ErrorCode::NonPrimaryKeyTable,
                format!("{} has no primary key: it takes no PutKv", info.path),
            )
        })
    }

    /// The target columns of a partial update (`None` for whole rows), checked against the
    /// table's schema: the primary key among them, every omitted column nullable.
    fn target_columns(
        schema: &TableSchema,
        target_columns: &[i32],
    ) -> Result<Option<Vec<u32>>, ApiError> {
        if target_columns.is_empty() {
            return Ok(None);
        }
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidTargetColumn, message);
        let target_columns = target_columns
            .iter()
            .map(|index| u32::try_from(*index))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| invalid(format!("negative target column in {target_columns:?}")))?;
        CompactedPartialUpdates::new(schema.clone())
            .check_target_columns(&target_columns)
            .map_err(|error| error.to_api_error())?;
        Ok(Some(target_columns))
    }

    async fn put_bucket(
        &self,
        table_id: i64,
        validator: &Result<RecordValidator, ApiError>,
        target_columns: &Result<Option<Vec<u32>>, ApiError>,
        request: &PbPutKvReqForBucket,
    ) -> Result<u64, ApiError> {
        let bucket = bucket_of(table_id, request.partition_id, request.bucket_id)?;
        let validator = validator.as_ref().map_err(Clone::clone)?;
        let target_columns = target_columns.as_ref().map_err(Clone::clone)?.clone();
        let batch = KvRecordBatch::decode(&request.records).map_err(|e| e.to_api_error())?;
        let writer = writer_of(&batch)?;
        // Every row is decoded against the schema before anything is appended: a row the
        // readers could not decode must never reach the changelog.
        validator.check_batch(&batch).map_err(|error| {
            ApiError::new(ErrorCode::CorruptRecord, format!("{bucket}: {error}"))
        })?;
        let writes = batch
            .records
            .iter()
            .map(|record| KvWrite {
                key: record.key.to_vec(),
                value: record.value.map(|row| encode_stored_value(batch.schema_id, row)),
            })
            .collect();
        match self.call(Request::PutKv { bucket, writes, writer, target_columns }).await? {
            Response::PutKv { end_offset, duplicate: false, .. } => Ok(end_offset),
            // As Fluss answers a resent batch; the client counts it as acknowledged.
            Response::PutKv { base_offset, end_offset, duplicate: true } => Err(ApiError::new(
                ErrorCode::DuplicateSequence,
                format!(
                    "batch {} of writer {} was already written at offsets {base_offset}..{end_offset}",
                    batch.batch_sequence, batch.writer_id
                ),
            )),
            response => Err(unexpected("put_kv", &response)),
        }
    }

    pub(crate) async fn put_kv(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: PutKvRequest = decode_request(body)?;
        let table_id = request.table_id;
        let table = self.table_with_schema(table_id);
        let validator = table.as_ref().map_err(Clone::clone).and_then(Self::record_validator);
        let validator = &validator;
        // Checked before any row: an omitted NOT NULL column is a bad target, not a bad row.
        tracing::debug!(table_id, target_columns = ?request.target_columns, "put_kv");
        let target_columns = table
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|(_, schema)| Self::target_columns(schema, &request.target_columns));
        let target_columns = &target_columns;
        let answers = join_all(request.buckets_req.iter().map(|bucket| async move {
            let outcome = self.put_bucket(table_id, validator, target_columns, bucket).await;
            let mut response = PbPutKvRespForBucket {
                partition_id: bucket.partition_id,
                bucket_id: bucket.bucket_id,
                error_code: None,
                error_message: None,
                log_end_offset: None,
                pressure: None,
            };
            match outcome {
                Ok(end_offset) => response.log_end_offset = i64::try_from(end_offset).ok(),
                Err(error) => {
                    (response.error_code, response.error_message) = bucket_error(&error);
                }
            }
            response
        }))
        .await;
        encode_response(&PutKvResponse { buckets_resp: answers })
    }

    pub(crate) async fn lookup(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: LookupRequest = decode_request(body)?;
        let table_id = request.table_id;
        let keys: usize = request.buckets_req.iter().map(|bucket| bucket.keys.len()).sum();
        let bound = (keys > LOOKUP_KEYS_MAX).then(|| {
            too_large(format!(
                "a lookup of {keys} keys; at most {LOOKUP_KEYS_MAX} keys per request"
            ))
        });
        let bound = &bound;
        tracing::debug!(
            table_id,
            buckets = request.buckets_req.len(),
            keys = request.buckets_req.iter().map(|b| b.keys.len()).sum::<usize>(),
            "lookup"
        );
        let answers = join_all(request.buckets_req.iter().map(|bucket_req| async move {
            let mut response = PbLookupRespForBucket {
                partition_id: bucket_req.partition_id,
                bucket_id: bucket_req.bucket_id,
                error_code: None,
                error_message: None,
                values: Vec::new(),
                original_partition_name: None,
            };
            let outcome = async {
                let bucket = bucket_of(table_id, bucket_req.partition_id, bucket_req.bucket_id)?;
                if let Some(error) = bound {
                    return Err(error.clone());
                }
                let keys = bucket_req.keys.iter().map(|key| key.to_vec()).collect();
                match self.call(Request::Lookup { bucket, keys }).await? {
                    Response::Lookup { values, .. } => Ok(values),
                    response => Err(unexpected("lookup", &response)),
                }
            }
            .await;
            match outcome {
                Ok(values) => {
                    response.values = values
                        .into_iter()
                        .map(|value| PbValue { values: value.map(Bytes::from) })
                        .collect();
                }
                Err(error) => {
                    (response.error_code, response.error_message) = bucket_error(&error);
                }
            }
            response
        }))
        .await;
        tracing::debug!(table_id, buckets = answers.len(), "lookup answered");
        encode_response(&LookupResponse { buckets_resp: answers })
    }

    pub(crate) async fn prefix_lookup(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: PrefixLookupRequest = decode_request(body)?;
        let table_id = request.table_id;
        let prefixes: usize = request.buckets_req.iter().map(|bucket| bucket.keys.len()).sum();
        let longest = request
            .buckets_req
            .iter()
            .flat_map(|bucket| bucket.keys.iter().map(Bytes::len))
            .max()
            .unwrap_or(0);
        let bound = if prefixes > PREFIX_LOOKUP_PREFIXES_MAX {
            Some(too_large(format!(
                "a prefix lookup of {prefixes} prefixes; at most {PREFIX_LOOKUP_PREFIXES_MAX} \
                 per request"
            )))
        } else if longest > PREFIX_BYTES_MAX {
            Some(too_large(format!(
                "a prefix of {longest} bytes; at most {PREFIX_BYTES_MAX} bytes"
            )))
        } else {
            None
        };
        let bound = &bound;
        let answers = join_all(request.buckets_req.iter().map(|bucket_req| async move {
            let mut response = PbPrefixLookupRespForBucket {
                partition_id: bucket_req.partition_id,
                bucket_id: bucket_req.bucket_id,
                error_code: None,
                error_message: None,
                value_lists: Vec::new(),
            };
            let outcome = async {
                let bucket = bucket_of(table_id, bucket_req.partition_id, bucket_req.bucket_id)?;
                if let Some(error) = bound {
                    return Err(error.clone());
                }
                let mut lists = Vec::with_capacity(bucket_req.keys.len());
                for prefix in &bucket_req.keys {
                    let request = Request::PrefixLookup { bucket, prefix: prefix.to_vec() };
                    match self.call(request).await? {
                        Response::Rows { values, .. } => lists.push(PbValueList {
                            values: values.into_iter().map(Bytes::from).collect(),
                        }),
                        response => return Err(unexpected("prefix_lookup", &response)),
                    }
                }
                Ok(lists)
            }
            .await;
            match outcome {
                Ok(lists) => response.value_lists = lists,
                Err(error) => {
                    (response.error_code, response.error_message) = bucket_error(&error);
                }
            }
            response
        }))
        .await;
        encode_response(&PrefixLookupResponse { buckets_resp: answers })
    }

    pub(crate) async fn limit_scan(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: LimitScanRequest = decode_request(body)?;
        let outcome = async {
            let bucket = bucket_of(request.table_id, request.partition_id, request.bucket_id)?;
            if request.limit > LIMIT_SCAN_ROWS_MAX {
                return Err(too_large(format!(
                    "a limit scan of {} rows; at most {LIMIT_SCAN_ROWS_MAX} rows",
                    request.limit
                )));
            }
            let limit = u32::try_from(request.limit).unwrap_or(0);
            match self.call(Request::LimitScan { bucket, limit }).await? {
                Response::Rows { values, .. } => {
                    encode_value_batch(values.iter().map(Vec::as_slice))
                        .map_err(|error| error.to_api_error())
                }
                response => Err(unexpected("limit_scan", &response)),
            }
        }
        .await;
        let response = match outcome {
            Ok(records) => LimitScanResponse {
                error_code: None,
                error_message: None,
                is_log_table: Some(false),
                records: Some(Bytes::from(records)),
            },
            Err(error) => {
                let (error_code, error_message) = bucket_error(&error);
                LimitScanResponse { error_code, error_message, is_log_table: None, records: None }
            }
        };
        encode_response(&response)
    }
}
