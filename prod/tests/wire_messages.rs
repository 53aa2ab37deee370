//! Every wire message struct round-trips (encode → decode gives it back), and the bytes of a
//! few are pinned: field numbers, proto2 `required` (always encoded), packed repeated fields.

use std::fmt::Debug;

use bytes::Bytes;
use kvtablet_prod::wire::messages::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + Debug>(message: &M) -> Result<(), TestCaseError> {
    let bytes = message.encode_to_vec();
    prop_assert_eq!(bytes.len(), message.encoded_len());
    let decoded = M::decode(bytes.as_slice())
        .map_err(|error| TestCaseError::fail(format!("decode failed: {error}")))?;
    prop_assert_eq!(&decoded, message);
    // Decoding from `Bytes` (as the server does) gives the same message.
    let shared = M::decode(Bytes::from(bytes))
        .map_err(|error| TestCaseError::fail(format!("decode from Bytes failed: {error}")))?;
    prop_assert_eq!(&shared, message);
    Ok(())
}

fn s() -> impl Strategy<Value = String> + Clone {
    ".{0,8}"
}

fn b() -> impl Strategy<Value = Bytes> + Clone {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn i32s() -> impl Strategy<Value = Vec<i32>> + Clone {
    vec(any::<i32>(), 0..4)
}

/// A finite float: NaN is not equal to itself.
fn f32s() -> impl Strategy<Value = f32> + Clone {
    -1.0e6f32..1.0e6f32
}

/// `Type { field: strategy, ... }` as a strategy (at most 12 fields).
macro_rules! message {
    ($ty:ident {}) => {
        Just($ty {})
    };
    ($ty:ident { $($field:ident : $strategy:expr),+ $(,)? }) => {
        ($($strategy,)+).prop_map(|($($field,)+)| $ty { $($field,)+ })
    };
}

fn table_path() -> impl Strategy<Value = PbTablePath> + Clone {
    message!(PbTablePath { database_name: s(), table_name: s() })
}

fn physical_table_path() -> impl Strategy<Value = PbPhysicalTablePath> + Clone {
    message!(PbPhysicalTablePath { database_name: s(), table_name: s(), partition_name: of(s()) })
}

fn key_value() -> impl Strategy<Value = PbKeyValue> + Clone {
    message!(PbKeyValue { key: s(), value: s() })
}

fn api_version() -> impl Strategy<Value = PbApiVersion> + Clone {
    message!(PbApiVersion {
        api_key: any::<i32>(),
        min_version: any::<i32>(),
        max_version: any::<i32>()
    })
}

fn server_node() -> impl Strategy<Value = PbServerNode> + Clone {
    message!(PbServerNode {
        node_id: any::<i32>(),
        host: s(),
        port: any::<i32>(),
        listeners: of(s()),
        rack: of(s()),
    })
}

fn bucket_metadata() -> impl Strategy<Value = PbBucketMetadata> + Clone {
    message!(PbBucketMetadata {
        bucket_id: any::<i32>(),
        leader_id: of(any::<i32>()),
        replica_id: i32s(),
        leader_epoch: of(any::<i32>()),
    })
}

fn table_metadata() -> impl Strategy<Value = PbTableMetadata> + Clone {
    message!(PbTableMetadata {
        table_path: table_path(),
        table_id: any::<i64>(),
        schema_id: any::<i32>(),
        table_json: b(),
        bucket_metadata: vec(bucket_metadata(), 0..3),
        created_time: any::<i64>(),
        modified_time: any::<i64>(),
        remote_data_dir: of(s()),
    })
}

fn partition_metadata() -> impl Strategy<Value = PbPartitionMetadata> + Clone {
    message!(PbPartitionMetadata {
        table_id: any::<i64>(),
        partition_name: s(),
        partition_id: any::<i64>(),
        bucket_metadata: vec(bucket_metadata(), 0..3),
    })
}

fn database_summary() -> impl Strategy<Value = PbDatabaseSummary> + Clone {
    message!(PbDatabaseSummary {
        database_name: s(),
        created_time: any::<i64>(),
        table_count: any::<i32>()
    })
}

fn put_kv_req_for_bucket() -> impl Strategy<Value = PbPutKvReqForBucket> + Clone {
    message!(PbPutKvReqForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        records: b()
    })
}

fn put_kv_resp_for_bucket() -> impl Strategy<Value = PbPutKvRespForBucket> + Clone {
    message!(PbPutKvRespForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        error_code: of(any::<i32>()),
        error_message: of(s()),
        log_end_offset: of(any::<i64>()),
        pressure: of(f32s()),
    })
}

fn lookup_req_for_bucket() -> impl Strategy<Value = PbLookupReqForBucket> + Clone {
    message!(PbLookupReqForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        keys: vec(b(), 0..4),
        original_partition_name: of(s()),
    })
}

fn value() -> impl Strategy<Value = PbValue> + Clone {
    message!(PbValue { values: of(b()) })
}

fn lookup_resp_for_bucket() -> impl Strategy<Value = PbLookupRespForBucket> + Clone {
    message!(PbLookupRespForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        error_code: of(any::<i32>()),
        error_message: of(s()),
        values: vec(value(), 0..4),
        original_partition_name: of(s()),
    })
}

fn prefix_lookup_req_for_bucket() -> impl Strategy<Value = PbPrefixLookupReqForBucket> + Clone {
    message!(PbPrefixLookupReqForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        keys: vec(b(), 0..4)
    })
}

fn value_list() -> impl Strategy<Value = PbValueList> + Clone {
    message!(PbValueList { values: vec(b(), 0..4) })
}

fn prefix_lookup_resp_for_bucket() -> impl Strategy<Value = PbPrefixLookupRespForBucket> + Clone {
    message!(PbPrefixLookupRespForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        error_code: of(any::<i32>()),
        error_message: of(s()),
        value_lists: vec(value_list(), 0..3),
    })
}

fn list_offsets_resp_for_bucket() -> impl Strategy<Value = PbListOffsetsRespForBucket> + Clone {
    message!(PbListOffsetsRespForBucket {
        bucket_id: any::<i32>(),
        error_code: of(any::<i32>()),
        error_message: of(s()),
        offset: of(any::<i64>()),
    })
}

fn literal_value() -> impl Strategy<Value = PbLiteralValue> + Clone {
    (
        (any::<i32>(), any::<bool>(), of(any::<bool>()), of(any::<i32>()), of(any::<i64>())),
        (of(f32s()), of(-1.0e12f64..1.0e12f64), of(s()), of(b())),
        (of(any::<i64>()), of(any::<i64>()), of(any::<i32>()), of(b())),
    )
        .prop_map(
            |(
                (literal_type, is_null, boolean_value, int_value, bigint_value),
                (float_value, double_value, string_value, binary_value),
                (
                    decimal_value,
                    timestamp_millis_value,
                    timestamp_nano_of_millis_value,
                    decimal_bytes,
                ),
            )| PbLiteralValue {
                literal_type,
                is_null,
                boolean_value,
                int_value,
                bigint_value,
                float_value,
                double_value,
                string_value,
                binary_value,
                decimal_value,
                timestamp_millis_value,
                timestamp_nano_of_millis_value,
                decimal_bytes,
            },
        )
}

fn leaf_predicate() -> impl Strategy<Value = PbLeafPredicate> + Clone {
    message!(PbLeafPredicate {
        function: 0..13,
        field_id: any::<i32>(),
        literals: vec(literal_value(), 0..3)
    })
}

fn leaf_only_predicate() -> impl Strategy<Value = PbPredicate> + Clone {
    message!(PbPredicate { r#type: Just(0), leaf: of(leaf_predicate()), compound: Just(None) })
}

fn compound_predicate() -> impl Strategy<Value = PbCompoundPredicate> + Clone {
    message!(PbCompoundPredicate { function: 0..2, children: vec(leaf_only_predicate(), 0..3) })
}

fn predicate() -> impl Strategy<Value = PbPredicate> + Clone {
    message!(PbPredicate {
        r#type: 0..2,
        leaf: of(leaf_predicate()),
        compound: of(compound_predicate())
    })
}

fn fetch_log_req_for_bucket() -> impl Strategy<Value = PbFetchLogReqForBucket> + Clone {
    message!(PbFetchLogReqForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        fetch_offset: any::<i64>(),
        max_fetch_bytes: any::<i32>(),
    })
}

fn fetch_log_req_for_table() -> impl Strategy<Value = PbFetchLogReqForTable> + Clone {
    message!(PbFetchLogReqForTable {
        table_id: any::<i64>(),
        projection_pushdown_enabled: any::<bool>(),
        projected_fields: i32s(),
        buckets_req: vec(fetch_log_req_for_bucket(), 0..3),
        filter_predicate: of(predicate()),
        filter_schema_id: of(any::<i32>()),
    })
}

fn remote_log_segment() -> impl Strategy<Value = PbRemoteLogSegment> + Clone {
    message!(PbRemoteLogSegment {
        remote_log_segment_id: s(),
        remote_log_start_offset: any::<i64>(),
        remote_log_end_offset: any::<i64>(),
        segment_size_in_bytes: any::<i32>(),
        max_timestamp: of(any::<i64>()),
    })
}

fn remote_log_fetch_info() -> impl Strategy<Value = PbRemoteLogFetchInfo> + Clone {
    message!(PbRemoteLogFetchInfo {
        remote_log_tablet_dir: s(),
        partition_name: of(s()),
        remote_log_segments: vec(remote_log_segment(), 0..3),
        first_start_pos: of(any::<i32>()),
    })
}

fn fetch_log_resp_for_bucket() -> impl Strategy<Value = PbFetchLogRespForBucket> + Clone {
    message!(PbFetchLogRespForBucket {
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        error_code: of(any::<i32>()),
        error_message: of(s()),
        high_watermark: of(any::<i64>()),
        log_start_offset: of(any::<i64>()),
        remote_log_fetch_info: of(remote_log_fetch_info()),
        records: of(b()),
        filtered_end_offset: of(any::<i64>()),
    })
}

fn fetch_log_resp_for_table() -> impl Strategy<Value = PbFetchLogRespForTable> + Clone {
    message!(PbFetchLogRespForTable {
        table_id: any::<i64>(),
        buckets_resp: vec(fetch_log_resp_for_bucket(), 0..3)
    })
}

fn scan_req_for_bucket() -> impl Strategy<Value = PbScanReqForBucket> + Clone {
    message!(PbScanReqForBucket {
        table_id: any::<i64>(),
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        limit: of(any::<i64>()),
    })
}

macro_rules! round_trips {
    ($($name:ident: $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(message in $strategy) {
                    round_trip(&message)?;
                }
            )*
        }
    };
}

round_trips! {
    error_response: message!(ErrorResponse { error_code: any::<i32>(), error_message: of(s()) });
    api_versions_request: message!(ApiVersionsRequest { client_software_name: s(), client_software_version: s() });
    api_versions_response: message!(ApiVersionsResponse { api_versions: vec(api_version(), 0..4), server_type: of(any::<i32>()) });
    pb_api_version: api_version();
    pb_table_path: table_path();
    pb_physical_table_path: physical_table_path();
    pb_key_value: key_value();
    metadata_request: message!(MetadataRequest {
        table_path: vec(table_path(), 0..3),
        partitions_path: vec(physical_table_path(), 0..3),
        partitions_id: vec(any::<i64>(), 0..4),
    });
    metadata_response: message!(MetadataResponse {
        coordinator_server: of(server_node()),
        tablet_servers: vec(server_node(), 0..3),
        table_metadata: vec(table_metadata(), 0..2),
        partition_metadata: vec(partition_metadata(), 0..2),
    });
    pb_server_node: server_node();
    pb_table_metadata: table_metadata();
    pb_partition_metadata: partition_metadata();
    pb_bucket_metadata: bucket_metadata();
    create_database_request: message!(CreateDatabaseRequest { database_name: s(), ignore_if_exists: any::<bool>(), database_json: of(b()) });
    create_database_response: message!(CreateDatabaseResponse {});
    drop_database_request: message!(DropDatabaseRequest { database_name: s(), ignore_if_not_exists: any::<bool>(), cascade: any::<bool>() });
    drop_database_response: message!(DropDatabaseResponse {});
    list_databases_request: message!(ListDatabasesRequest { include_summary: of(any::<bool>()) });
    list_databases_response: message!(ListDatabasesResponse { database_name: vec(s(), 0..3), database_summary: vec(database_summary(), 0..3) });
    pb_database_summary: database_summary();
    database_exists_request: message!(DatabaseExistsRequest { database_name: s() });
    database_exists_response: message!(DatabaseExistsResponse { exists: any::<bool>() });
    get_database_info_request: message!(GetDatabaseInfoRequest { database_name: s() });
    get_database_info_response: message!(GetDatabaseInfoResponse { database_json: b(), created_time: any::<i64>(), modified_time: any::<i64>() });
    create_table_request: message!(CreateTableRequest { table_path: table_path(), table_json: b(), ignore_if_exists: any::<bool>() });
    create_table_response: message!(CreateTableResponse {});
    drop_table_request: message!(DropTableRequest { table_path: table_path(), ignore_if_not_exists: any::<bool>() });
    drop_table_response: message!(DropTableResponse {});
    get_table_info_request: message!(GetTableInfoRequest { table_path: table_path() });
    get_table_info_response: message!(GetTableInfoResponse {
        table_id: any::<i64>(),
        schema_id: any::<i32>(),
        table_json: b(),
        created_time: any::<i64>(),
        modified_time: any::<i64>(),
        remote_data_dir: of(s()),
    });
    list_tables_request: message!(ListTablesRequest { database_name: s() });
    list_tables_response: message!(ListTablesResponse { table_name: vec(s(), 0..4) });
    table_exists_request: message!(TableExistsRequest { table_path: table_path() });
    table_exists_response: message!(TableExistsResponse { exists: any::<bool>() });
    get_table_schema_request: message!(GetTableSchemaRequest { table_path: table_path(), schema_id: of(any::<i32>()) });
    get_table_schema_response: message!(GetTableSchemaResponse { schema_id: any::<i32>(), schema_json: b() });
    init_writer_request: message!(InitWriterRequest { table_path: vec(table_path(), 0..3) });
    init_writer_response: message!(InitWriterResponse { writer_id: any::<i64>() });
    get_file_system_security_token_request: message!(GetFileSystemSecurityTokenRequest {});
    get_file_system_security_token_response: message!(GetFileSystemSecurityTokenResponse {
        schema: s(),
        token: b(),
        expiration_time: of(any::<i64>()),
        addition_info: vec(key_value(), 0..3),
    });
    put_kv_request: message!(PutKvRequest {
        acks: any::<i32>(),
        table_id: any::<i64>(),
        timeout_ms: any::<i32>(),
        target_columns: i32s(),
        buckets_req: vec(put_kv_req_for_bucket(), 0..3),
        agg_mode: of(any::<i32>()),
    });
    pb_put_kv_req_for_bucket: put_kv_req_for_bucket();
    put_kv_response: message!(PutKvResponse { buckets_resp: vec(put_kv_resp_for_bucket(), 0..3) });
    pb_put_kv_resp_for_bucket: put_kv_resp_for_bucket();
    lookup_request: message!(LookupRequest {
        table_id: any::<i64>(),
        buckets_req: vec(lookup_req_for_bucket(), 0..3),
        insert_if_not_exists: of(any::<bool>()),
        acks: of(any::<i32>()),
        timeout_ms: of(any::<i32>()),
    });
    pb_lookup_req_for_bucket: lookup_req_for_bucket();
    lookup_response: message!(LookupResponse { buckets_resp: vec(lookup_resp_for_bucket(), 0..3) });
    pb_lookup_resp_for_bucket: lookup_resp_for_bucket();
    pb_value: value();
    prefix_lookup_request: message!(PrefixLookupRequest { table_id: any::<i64>(), buckets_req: vec(prefix_lookup_req_for_bucket(), 0..3) });
    pb_prefix_lookup_req_for_bucket: prefix_lookup_req_for_bucket();
    prefix_lookup_response: message!(PrefixLookupResponse { buckets_resp: vec(prefix_lookup_resp_for_bucket(), 0..3) });
    pb_prefix_lookup_resp_for_bucket: prefix_lookup_resp_for_bucket();
    pb_value_list: value_list();
    limit_scan_request: message!(LimitScanRequest {
        table_id: any::<i64>(),
        partition_id: of(any::<i64>()),
        bucket_id: any::<i32>(),
        limit: any::<i32>(),
    });
    limit_scan_response: message!(LimitScanResponse {
        error_code: of(any::<i32>()),
        error_message: of(s()),
        is_log_table: of(any::<bool>()),
        records: of(b()),
    });
    list_offsets_request: message!(ListOffsetsRequest {
        follower_server_id: any::<i32>(),
        offset_type: 0..3,
        table_id: any::<i64>(),
        partition_id: of(any::<i64>()),
        bucket_id: i32s(),
        start_timestamp: of(any::<i64>()),
    });
    list_offsets_response: message!(ListOffsetsResponse { buckets_resp: vec(list_offsets_resp_for_bucket(), 0..3) });
    pb_list_offsets_resp_for_bucket: list_offsets_resp_for_bucket();
    fetch_log_request: message!(FetchLogRequest {
        follower_server_id: any::<i32>(),
        max_bytes: any::<i32>(),
        tables_req: vec(fetch_log_req_for_table(), 0..2),
        max_wait_ms: of(any::<i32>()),
        min_bytes: of(any::<i32>()),
        read_preference: of(any::<i32>()),
    });
    pb_fetch_log_req_for_table: fetch_log_req_for_table();
    pb_fetch_log_req_for_bucket: fetch_log_req_for_bucket();
    fetch_log_response: message!(FetchLogResponse { tables_resp: vec(fetch_log_resp_for_table(), 0..2) });
    pb_fetch_log_resp_for_table: fetch_log_resp_for_table();
    pb_fetch_log_resp_for_bucket: fetch_log_resp_for_bucket();
    pb_remote_log_fetch_info: remote_log_fetch_info();
    pb_remote_log_segment: remote_log_segment();
    pb_predicate: predicate();
    pb_leaf_predicate: leaf_predicate();
    pb_compound_predicate: compound_predicate();
    pb_literal_value: literal_value();
    pb_scan_req_for_bucket: scan_req_for_bucket();
    scan_kv_request: message!(ScanKvRequest {
        scanner_id: of(b()),
        bucket_scan_req: of(scan_req_for_bucket()),
        call_seq_id: of(any::<i32>()),
        batch_size_bytes: of(any::<i32>()),
        close_scanner: of(any::<bool>()),
    });
    scan_kv_response: message!(ScanKvResponse {
        error_code: of(any::<i32>()),
        error_message: of(s()),
        scanner_id: of(b()),
        has_more_results: of(any::<bool>()),
        records: of(b()),
        log_offset: of(any::<i64>()),
    });
}

#[test]
fn the_captured_api_versions_body_decodes() {
    let request = ApiVersionsRequest::decode(&b"\x0a\x0afluss-rust\x12\x051.0.0"[..]).unwrap();
    assert_eq!(request.client_software_name, "fluss-rust");
    assert_eq!(request.client_software_version, "1.0.0");
}

#[test]
fn required_fields_are_always_encoded() {
    assert_eq!(InitWriterResponse { writer_id: 0 }.encode_to_vec(), [0x08, 0x00]);
    assert_eq!(
        GetFileSystemSecurityTokenResponse::default().encode_to_vec(),
        [0x0a, 0x00, 0x12, 0x00],
        "empty schema and token, as the client expects"
    );
    assert_eq!(DatabaseExistsResponse { exists: false }.encode_to_vec(), [0x08, 0x00]);
    // Optional fields are left out when absent.
    assert_eq!(ApiVersionsResponse::default().encode_to_vec(), Vec::<u8>::new());
    assert_eq!(PbValue::default().encode_to_vec(), Vec::<u8>::new());
}

#[test]
fn field_numbers_and_packing_match_fluss() {
    // PutKvRequest: 1 acks, 2 table_id, 3 timeout_ms, 4 packed target_columns, 5 buckets_req.
    let put = PutKvRequest {
        acks: -1,
        table_id: 3,
        timeout_ms: 30_000,
        target_columns: vec![0, 2],
        buckets_req: vec![PbPutKvReqForBucket {
            partition_id: None,
            bucket_id: 1,
            records: Bytes::from_static(b"kv"),
        }],
        agg_mode: None,
    };
    let mut expected = vec![0x08];
    expected.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expected.extend([0x10, 0x03, 0x18, 0xb0, 0xea, 0x01, 0x22, 0x02, 0x00, 0x02]);
    expected.extend([0x2a, 0x06, 0x10, 0x01, 0x1a, 0x02, b'k', b'v']);
    assert_eq!(put.encode_to_vec(), expected);

    // LimitScanRequest starts at field 2.
    let scan = LimitScanRequest { table_id: 1, partition_id: None, bucket_id: 2, limit: 3 };
    assert_eq!(scan.encode_to_vec(), [0x10, 0x01, 0x20, 0x02, 0x28, 0x03]);

    // PbBucketMetadata.replica_id is packed (field 3, wire type 2).
    let bucket = PbBucketMetadata {
        bucket_id: 0,
        leader_id: Some(1),
        replica_id: vec![1],
        leader_epoch: None,
    };
    assert_eq!(bucket.encode_to_vec(), [0x08, 0x00, 0x10, 0x01, 0x1a, 0x01, 0x01]);

    // A lookup miss is an empty PbValue; a hit carries field 1.
    let response = PbLookupRespForBucket {
        bucket_id: 0,
        values: vec![PbValue { values: None }, PbValue { values: Some(Bytes::from_static(b"v")) }],
        ..PbLookupRespForBucket::default()
    };
    assert_eq!(response.encode_to_vec(), [0x10, 0x00, 0x2a, 0x00, 0x2a, 0x03, 0x0a, 0x01, b'v']);

    // ScanKvResponse fields 1..6.
    let scan_kv = ScanKvResponse {
        error_code: None,
        error_message: None,
        scanner_id: Some(Bytes::from_static(b"s")),
        has_more_results: Some(true),
        records: None,
        log_offset: Some(7),
    };
    assert_eq!(scan_kv.encode_to_vec(), [0x1a, 0x01, b's', 0x20, 0x01, 0x30, 0x07]);
}

#[test]
fn unpacked_repeated_numbers_are_accepted_too() {
    // Field 4 target_columns sent unpacked (wire type 0), as a proto2 encoder may.
    let put = PutKvRequest::decode(&[0x20, 0x01, 0x20, 0x02][..]).unwrap();
    assert_eq!(put.target_columns, vec![1, 2]);
}

#[test]
fn unknown_fields_are_skipped() {
    // InitWriterResponse with an extra field 15 (varint) before writer_id.
    let response = InitWriterResponse::decode(&[0x78, 0x05, 0x08, 0x2a][..]).unwrap();
    assert_eq!(response.writer_id, 42);
}
