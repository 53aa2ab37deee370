//! ScanKv (1061): the wire `ScanKvRequest`/`ScanKvResponse` mapped onto core's, field for
//! field. Every error travels in the response body with its Fluss code (66–69 for the scan's
//! own errors), as core produces them; only a body that is not a protobuf message is a
//! whole-request error (`CORRUPT_MESSAGE`).
//!
//! The records are core's `Bytes`, written to the socket from core's buffer: the response
//! body's tail (see [`ResponseBody`]), never copied into the frame.

use std::sync::Arc;

use bytes::Bytes;
use kvtablet_core::error::{ApiError, ErrorCode};
use kvtablet_core::message::{self as core, BucketScanRequest, Request, Response};

use super::kv_requests::{bucket_of, unexpected};
use super::{bucket_error, Gateway};
use crate::wire::error::decode_request;
use crate::wire::messages::{PbScanReqForBucket, ScanKvRequest, ScanKvResponse};
use crate::wire::{ResponseBody, WireResponse};
use prost::encoding::WireType;
use prost::Message;

/// The bucket to open a scan on, with its partition (core answers a partition its table does
/// not serve).
fn bucket_scan_request(request: &PbScanReqForBucket) -> Result<BucketScanRequest, ApiError> {
    let bucket = bucket_of(request.table_id, request.partition_id, request.bucket_id)?;
    Ok(BucketScanRequest { bucket, limit: request.limit })
}

/// The core request a wire request stands for.
pub(crate) fn core_request(request: ScanKvRequest) -> Result<core::ScanKvRequest, ApiError> {
    Ok(core::ScanKvRequest {
        scanner_id: request.scanner_id.map(|id| id.to_vec()),
        bucket_scan_req: request.bucket_scan_req.as_ref().map(bucket_scan_request).transpose()?,
        call_seq_id: request.call_seq_id,
        batch_size_bytes: request.batch_size_bytes,
        close_scanner: request.close_scanner,
    })
}

/// The wire response for core's; `leader_epoch` has no wire field and is dropped.
pub(crate) fn wire_response(response: core::ScanKvResponse) -> ScanKvResponse {
    let (error_code, error_message) = match &response.error {
        Some(error) => bucket_error(error),
        None => (None, None),
    };
    ScanKvResponse {
        error_code,
        error_message,
        scanner_id: response.scanner_id.map(Bytes::from),
        has_more_results: response.has_more_results,
        records: response.records,
        log_offset: response.log_offset,
    }
}

fn error_response(error: &ApiError) -> ScanKvResponse {
    wire_response(core::ScanKvResponse::error(error.clone()))
}

impl Gateway {
    pub(crate) async fn scan_kv(self: &Arc<Self>, body: &[u8]) -> WireResponse {
        let request: ScanKvRequest = decode_request(body)?;
        let response = match core_request(request) {
            Err(error) => error_response(&error),
            Ok(request) => match self.node.request(Request::ScanKv(request)).await {
                Ok(Response::ScanKv(response)) => wire_response(response),
                // Refused before the scan handler (an unknown table or bucket, a stopping
                // server): still in the body, where a ScanKv client looks for errors.
                Ok(Response::Error(error)) => error_response(&error),
                Ok(other) => error_response(&unexpected("scan_kv", &other)),
                Err(error) => error_response(&ApiError::new(
                    ErrorCode::UnknownServerError,
                    format!("scan_kv did not reach the tablet server: {error}"),
                )),
            },
        };
        Ok(encode_scan_response(response))
    }
}

/// `ScanKvResponse.records` is field 5, `bytes`.
const RECORDS_FIELD: u32 = 5;

/// Encodes `response` with its records as the body's tail: every other field is encoded into
/// the head, then the records field's key and length, so the page (megabytes) is written
/// straight from core's buffer. Protobuf lets a field come last whatever its number.
fn encode_scan_response(mut response: ScanKvResponse) -> ResponseBody {
    let records = response.records.take();
    let mut head = Vec::with_capacity(response.encoded_len() + 16);
    response.encode_raw(&mut head);
    let Some(records) = records else {
        return ResponseBody::from(Bytes::from(head));
    };
    prost::encoding::encode_key(RECORDS_FIELD, WireType::LengthDelimited, &mut head);
    prost::encoding::encode_varint(records.len() as u64, &mut head);
    ResponseBody { head: Bytes::from(head), tail: records }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvtablet_core::TableBucket;

    #[test]
    fn an_open_request_maps_field_for_field() {
        let wire = ScanKvRequest {
            scanner_id: None,
            bucket_scan_req: Some(PbScanReqForBucket {
                table_id: 5,
                partition_id: None,
                bucket_id: 2,
                limit: Some(10),
            }),
            call_seq_id: Some(0),
            batch_size_bytes: Some(4096),
            close_scanner: None,
        };
        let core = core_request(wire).expect("maps");
        assert_eq!(
            core.bucket_scan_req,
            Some(BucketScanRequest { bucket: TableBucket::new(5, 2), limit: Some(10) })
        );
        assert_eq!((core.call_seq_id, core.batch_size_bytes), (Some(0), Some(4096)));
    }

    #[test]
    fn a_partitioned_bucket_keeps_its_partition() {
        let wire = ScanKvRequest {
            bucket_scan_req: Some(PbScanReqForBucket {
                table_id: 5,
                partition_id: Some(1),
                bucket_id: 0,
                limit: None,
            }),
            ..ScanKvRequest::default()
        };
        let core = core_request(wire).expect("mapped");
        let bucket = TableBucket { table_id: 5, partition_id: Some(1), bucket_id: 0 };
        assert_eq!(core.bucket_scan_req, Some(BucketScanRequest { bucket, limit: None }));
    }

    #[test]
    fn a_page_encodes_as_prost_does_with_its_records_shared() {
        let records = Bytes::from(vec![9u8; 300]);
        let response = ScanKvResponse {
            error_code: None,
            error_message: None,
            scanner_id: Some(Bytes::from_static(b"0123456789abcdef")),
            has_more_results: Some(true),
            records: Some(records.clone()),
            log_offset: Some(42),
        };
        let body = encode_scan_response(response.clone());
        assert_eq!(body.tail.as_ptr(), records.as_ptr(), "the page is not copied");
        let decoded = ScanKvResponse::decode(body.to_bytes()).expect("decodes");
        assert_eq!(decoded, response);
        let without_records = ScanKvResponse { records: None, ..response };
        let body = encode_scan_response(without_records.clone());
        assert!(body.tail.is_empty());
        assert_eq!(body.head.to_vec(), without_records.encode_to_vec());
    }

    #[test]
    fn errors_travel_in_the_body_with_their_fluss_code() {
        let response = wire_response(core::ScanKvResponse::error(ApiError::new(
            ErrorCode::UnknownScannerId,
            "gone",
        )));
        assert_eq!(response.error_code, Some(67));
        assert_eq!(response.error_message.as_deref(), Some("gone"));
        assert_eq!(response.records, None);
    }
}
