//! The changelog RPCs: FetchLog (a bucket's changelog as V0 Arrow log batches, with
//! projection, waiting up to `max_wait_ms` for data) and ListOffsets.
//!
//! The changelog is stored as the core's log batches, whose values are `schema_id ++
//! CompactedRow`; each is decoded with the table's schema and re-encoded as one Fluss
//! LogRecordBatch V0 with the same base offset, commit timestamp and change types.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::log::LogBatch;
use kvtablet_core::message::{OffsetSpec, Request, Response};
use kvtablet_core::TableBucket;

use super::kv_requests::{bucket_of, unexpected};
use super::remote_log_fetch::RemoteLogReads;
use super::{bucket_error, Gateway};
use crate::format::log_record_batch::project_columns;
use crate::format::value_record_batch::decode_stored_value;
use crate::format::{
    encode_log_batch, DataType, FormatError, LogBatchMeta, LogRecord, TableSchema,
};
use crate::wire::error::{decode_request, encode_response};
use crate::wire::messages::{
    FetchLogRequest, FetchLogResponse, ListOffsetsRequest, ListOffsetsResponse,
    PbFetchLogReqForBucket, PbFetchLogReqForTable, PbFetchLogRespForBucket, PbFetchLogRespForTable,
    PbListOffsetsRespForBucket, PbRemoteLogFetchInfo,
};
use crate::wire::{WireError, WireResponse};

/// `fetch_offset` that means "from the log start" (`FetchParams.FETCH_FROM_EARLIEST_OFFSET`).
const FETCH_FROM_EARLIEST_OFFSET: i64 = -2;
/// A fetch never waits longer than this, whatever it asks: a waiting fetch holds one of its
/// connection's in-flight slots, and shutdown waits for it (within the wire server's grace).
/// A client that asked for longer simply polls again.
const FETCH_WAIT_MS_MAX: u64 = 5_000;
/// The most changelog bytes one fetch reads and re-encodes, whatever its `max_bytes` asks
/// (the client's own default, `client.scanner.log.fetch.max-bytes`, is 16 MiB). The first
/// batch is returned whole even when it is larger, so that a fetch always makes progress.
pub const FETCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// ListOffsets `offset_type` values.
const OFFSET_TYPE_EARLIEST: i32 = 0;
const OFFSET_TYPE_LATEST: i32 = 1;
const OFFSET_TYPE_TIMESTAMP: i32 = 2;

/// A table of a fetch, resolved once per request.
struct FetchTable {
    schema: TableSchema,
    /// The types of `schema`'s columns, what stored rows are decoded with.
    types: Vec<DataType>,
    /// Column positions sent, ascending; `None`: every column.
    projection: Option<Vec<usize>>,
}

impl Gateway {
    pub(crate) async fn fetch_log(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: FetchLogRequest = decode_request(body)?;
        let max_wait_ms =
            u64::try_from(request.max_wait_ms.unwrap_or(0)).unwrap_or(0).min(FETCH_WAIT_MS_MAX);
        let min_bytes = usize::try_from(request.min_bytes.unwrap_or(1)).unwrap_or(1).max(1);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(max_wait_ms);
        let tables: Vec<Result<FetchTable, ApiError>> =
            request.tables_req.iter().map(|table| self.fetch_table(table)).collect();
        loop {
            // Subscribed before the read, so an append between the read and the wait wakes us.
            let appended: Vec<_> = request
                .tables_req
                .iter()
                .flat_map(|table| {
                    table.buckets_req.iter().filter_map(|bucket| {
                        self.node.log_appended(TableBucket::new(table.table_id, bucket.bucket_id))
                    })
                })
                .collect();
            let (response, bytes, answered) = self.fetch_once(&request, &tables).await;
            let waited_enough = tokio::time::Instant::now() >= deadline;
            if bytes >= min_bytes || answered > 0 || waited_enough || appended.is_empty() {
                return encode_response(&response);
            }
            // Either an append or the deadline: read again either way.
            let sleep = std::pin::pin!(tokio::time::sleep_until(deadline));
            let _ = futures::future::select(select_all(appended), sleep).await;
        }
    }

    fn fetch_table(&self, table: &PbFetchLogReqForTable) -> Result<FetchTable, ApiError> {
        let (_, schema) = self.table_with_schema(table.table_id)?;
        let projection = if table.projection_pushdown_enabled {
            let positions = table
                .projected_fields
                .iter()
                .map(|&field| usize::try_from(field))
                .collect::<Result<Vec<usize>, _>>()
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidColumnProjection,
                        format!("negative projected field in {:?}", table.projected_fields),
                    )
                })?;
            project_columns(&schema.columns, Some(&positions)).map_err(|error| {
                ApiError::new(
                    ErrorCode::InvalidColumnProjection,
                    format!("invalid projection: {error}"),
                )
            })?;
            Some(positions)
        } else {
            None
        };
        Ok(FetchTable { types: schema.data_types(), schema, projection })
    }

    /// One pass over every requested bucket. Returns the response, the record bytes in it and
    /// the number of buckets answered without records that need no wait: an error, or the
    /// remote tier to read.
    async fn fetch_once(
        &self,
        request: &FetchLogRequest,
        tables: &[Result<FetchTable, ApiError>],
    ) -> (FetchLogResponse, usize, usize) {
        let mut budget_bytes = usize::try_from(request.max_bytes).unwrap_or(0).min(FETCH_BYTES_MAX);
        let mut total_bytes = 0usize;
        let mut answered = 0usize;
        let mut tables_resp = Vec::with_capacity(request.tables_req.len());
        for (table_req, table) in request.tables_req.iter().zip(tables) {
            let mut buckets_resp = Vec::with_capacity(table_req.buckets_req.len());
            for bucket_req in &table_req.buckets_req {
                let mut response = PbFetchLogRespForBucket {
                    partition_id: bucket_req.partition_id,
                    bucket_id: bucket_req.bucket_id,
                    error_code: None,
                    error_message: None,
                    high_watermark: None,
                    log_start_offset: None,
                    remote_log_fetch_info: None,
                    records: None,
                    filtered_end_offset: None,
                };
                // The first bucket with data is served whole; later ones share what is left.
                let outcome = match table {
                    Ok(table) if budget_bytes > 0 || total_bytes == 0 => {
                        self.fetch_bucket(table_req.table_id, bucket_req, table, budget_bytes).await
                    }
                    Ok(_) => self.bucket_offsets(table_req.table_id, bucket_req).await,
                    Err(error) => Err(error.clone()),
                };
                match outcome {
                    Ok(fetched) => {
                        response.high_watermark = Some(fetched.high_watermark);
                        response.log_start_offset = Some(fetched.log_start_offset);
                        if fetched.remote_log_fetch_info.is_some() {
                            answered += 1;
                            response.remote_log_fetch_info = fetched.remote_log_fetch_info;
                        }
                        if !fetched.records.is_empty() {
                            total_bytes += fetched.records.len();
                            budget_bytes = budget_bytes.saturating_sub(fetched.records.len());
                            response.records = Some(Bytes::from(fetched.records));
                        }
                    }
                    Err(error) => {
                        answered += 1;
                        (response.error_code, response.error_message) = bucket_error(&error);
                    }
                }
                buckets_resp.push(response);
            }
            tables_resp.push(PbFetchLogRespForTable { table_id: table_req.table_id, buckets_resp });
        }
        (FetchLogResponse { tables_resp }, total_bytes, answered)
    }

    async fn core_fetch(
        &self,
        bucket: TableBucket,
        from_offset: u64,
        max_bytes: u64,
    ) -> Result<(Vec<LogBatch>, u64, u64), ApiError> {
        let request = Request::FetchLog { bucket, from_offset, max_bytes };
        match self.call(request).await? {
            Response::FetchLog { batches, high_watermark, log_start_offset } => {
                Ok((batches, high_watermark, log_start_offset))
            }
            response => Err(unexpected("fetch_log", &response)),
        }
    }

    /// The bucket's offsets without records, for a bucket past the response's byte budget.
    async fn bucket_offsets(
        &self,
        table_id: i64,
        bucket_req: &PbFetchLogReqForBucket,
    ) -> Result<FetchedBucket, ApiError> {
        let bucket = bucket_of(table_id, bucket_req.partition_id, bucket_req.bucket_id)?;
        let high_watermark = self.list_offset(bucket, OffsetSpec::Latest).await?;
        let log_start_offset = self.list_offset(bucket, OffsetSpec::Earliest).await?;
        Ok(FetchedBucket {
            high_watermark: to_i64(high_watermark),
            log_start_offset: to_i64(log_start_offset),
            records: Vec::new(),
            remote_log_fetch_info: None,
        })
    }

    async fn fetch_bucket(
        &self,
        table_id: i64,
        bucket_req: &PbFetchLogReqForBucket,
        table: &FetchTable,
        budget_bytes: usize,
    ) -> Result<FetchedBucket, ApiError> {
        let bucket = bucket_of(table_id, bucket_req.partition_id, bucket_req.bucket_id)?;
        let from_offset = match bucket_req.fetch_offset {
            FETCH_FROM_EARLIEST_OFFSET => self.list_offset(bucket, OffsetSpec::Earliest).await?,
            offset => u64::try_from(offset).map_err(|_| {
                ApiError::new(
                    ErrorCode::LogOffsetOutOfRange,
                    format!("fetch offset {offset} of {bucket} is negative"),
                )
            })?,
        };
        // Read before the fetch: an offset below it is surely served from the remote tier
        // (the local log start only moves up).
        let local_start_offset =
            self.node.changelog(bucket).map_or(0, |log| log.log_start_offset());
        if from_offset < local_start_offset {
            if let Some(fetched) = self
                .fetch_remote_info(table_id, bucket_req, bucket, from_offset, local_start_offset)
                .await?
            {
                return Ok(fetched);
            }
        }
        let max_bytes = usize::try_from(bucket_req.max_fetch_bytes).unwrap_or(0).min(budget_bytes);
        // The stored frames are about the size of the Arrow batches they become.
        let (batches, high_watermark, log_start_offset) =
            self.core_fetch(bucket, from_offset, max_bytes.max(1) as u64).await?;
        if from_offset > high_watermark {
            return Err(ApiError::new(
                ErrorCode::LogOffsetOutOfRange,
                format!(
                    "fetch offset {from_offset} of {bucket} is beyond the high watermark {high_watermark}"
                ),
            ));
        }
        let mut records = Vec::new();
        for batch in &batches {
            let encoded = encode_batch(batch, table).map_err(|error| {
                ApiError::new(
                    ErrorCode::CorruptRecord,
                    format!("changelog batch at {} of {bucket}: {error}", batch.base_offset),
                )
            })?;
            if batch.base_offset < local_start_offset {
                self.remote_reads.stats().add_served_through_node(encoded.len());
            }
            records.extend_from_slice(&encoded);
        }
        Ok(FetchedBucket {
            high_watermark: to_i64(high_watermark),
            log_start_offset: to_i64(log_start_offset),
            records,
            remote_log_fetch_info: None,
        })
    }

    /// A fetch from `from_offset`, below the local log start, answered with the tiered
    /// segments for the client to read itself (`remote_log_fetch`); `None` when it is to be
    /// served through the node: clients cannot reach the remote store, no tiered segment
    /// holds the offset (the node's path answers the error), or the segment's copy could not
    /// be written (logged).
    async fn fetch_remote_info(
        &self,
        table_id: i64,
        bucket_req: &PbFetchLogReqForBucket,
        bucket: TableBucket,
        from_offset: u64,
        local_start_offset: u64,
    ) -> Result<Option<FetchedBucket>, ApiError> {
        let Some(remote_logs) = self.node.remote_logs() else { return Ok(None) };
        if !self.remote_reads.access().is_direct() {
            return Ok(None);
        }
        let segments =
            RemoteLogReads::segments_to_send(remote_logs, bucket, from_offset, local_start_offset);
        if segments.is_empty() {
            return Ok(None);
        }
        // Also the leadership check: only the leader sends a client to the remote tier.
        let mut fetched = self.bucket_offsets(table_id, bucket_req).await?;
        // Every column: the clients apply their projection to a remote segment themselves.
        let (_, schema) = self.table_with_schema(table_id)?;
        let table = FetchTable { types: schema.data_types(), schema, projection: None };
        let encode = |batches: &[LogBatch]| -> Result<Vec<u8>, String> {
            let mut bytes = Vec::new();
            for batch in batches {
                let encoded = encode_batch(batch, &table).map_err(|error| {
                    format!("changelog batch at {}: {error}", batch.base_offset)
                })?;
                bytes.extend_from_slice(&encoded);
            }
            Ok(bytes)
        };
        let remote = &self.node.env().remote;
        match self.remote_reads.fetch_info(remote, remote_logs, &segments, &encode).await {
            Ok(info) => {
                fetched.remote_log_fetch_info = Some(info);
                Ok(Some(fetched))
            }
            Err(error) => {
                tracing::warn!(%bucket, %error, "tiered range served through the node");
                Ok(None)
            }
        }
    }

    async fn list_offset(&self, bucket: TableBucket, spec: OffsetSpec) -> Result<u64, ApiError> {
        match self.call(Request::ListOffsets { bucket, spec }).await? {
            Response::Offset { offset } => Ok(offset),
            response => Err(unexpected("list_offsets", &response)),
        }
    }

    pub(crate) async fn list_offsets(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: ListOffsetsRequest = decode_request(body)?;
        let spec = match request.offset_type {
            OFFSET_TYPE_EARLIEST => OffsetSpec::Earliest,
            OFFSET_TYPE_LATEST => OffsetSpec::Latest,
            OFFSET_TYPE_TIMESTAMP => {
                let timestamp_ms = request
                    .start_timestamp
                    .and_then(|timestamp| u64::try_from(timestamp).ok())
                    .ok_or_else(|| {
                        WireError::corrupt_message(format!(
                            "offset type TIMESTAMP needs a non-negative start timestamp, got {:?}",
                            request.start_timestamp
                        ))
                    })?;
                OffsetSpec::Timestamp { timestamp_ms }
            }
            other => {
                return Err(WireError::corrupt_message(format!("unknown offset type {other}")))
            }
        };
        let mut buckets_resp = Vec::with_capacity(request.bucket_id.len());
        for &bucket_id in &request.bucket_id {
            let mut response = PbListOffsetsRespForBucket {
                bucket_id,
                error_code: None,
                error_message: None,
                offset: None,
            };
            let outcome = match bucket_of(request.table_id, request.partition_id, bucket_id) {
                Ok(bucket) => self.list_offset(bucket, spec).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(offset) => response.offset = Some(to_i64(offset)),
                Err(error) => (response.error_code, response.error_message) = bucket_error(&error),
            }
            buckets_resp.push(response);
        }
        encode_response(&ListOffsetsResponse { buckets_resp })
    }
}

/// What one bucket of a fetch answers.
struct FetchedBucket {
    high_watermark: i64,
    log_start_offset: i64,
    /// Concatenated LogRecordBatch V0 bytes.
    records: Vec<u8>,
    /// The tiered segments to read instead, for a fetch below the local log start.
    remote_log_fetch_info: Option<PbRemoteLogFetchInfo>,
}

/// Offsets are far below `i64::MAX`; saturating keeps a corrupt one from wrapping negative.
pub(super) fn to_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// One stored changelog batch as a LogRecordBatch V0 of `table`'s (projected) columns.
fn encode_batch(batch: &LogBatch, table: &FetchTable) -> Result<Vec<u8>, FormatError> {
    let records = batch
        .records
        .iter()
        .map(|record| {
            let (schema_id, row) = decode_stored_value(&record.value)?;
            if schema_id != table.schema.schema_id {
                return Err(FormatError::InvalidValue(format!(
                    "a value of schema {schema_id} in a table of schema {}",
                    table.schema.schema_id
                )));
            }
            let row = table.schema.encoding.row_format.decode_row(&table.types, row)?;
            Ok(LogRecord { change_type: record.change_type, row })
        })
        .collect::<Result<Vec<LogRecord>, FormatError>>()?;
    let mut meta = LogBatchMeta::changelog(
        to_i64(batch.base_offset),
        i64::try_from(batch.commit_timestamp_ms).unwrap_or(i64::MAX),
        table.schema.schema_id,
    );
    if let Some(writer) = batch.writer {
        meta.writer_id = writer.writer_id;
        meta.batch_sequence = writer.batch_sequence;
    }
    encode_log_batch(&meta, &table.schema.columns, table.projection.as_deref(), &records)
}
