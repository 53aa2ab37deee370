//! Fixed byte vectors for the Fluss formats: captured from pyfluss 1.0.0 (the spec, §5),
//! or taken from the Fluss reference tests (bucketing and key encoding).

use kvtablet_prod::format::compacted_row::{decode_row, encode_row, Datum, Row, Timestamp};
use kvtablet_prod::format::data_type::{DataType, TypeRoot};
use kvtablet_prod::format::key_encoding::{
    bucket_of, bucket_of_primary_key, decode_key, encode_key, fluss_hash_i32, murmur_hash_bytes,
    primary_key_of_row,
};
use kvtablet_prod::format::kv_record_batch::{KvRecord, KvRecordBatch, KvRecordBatchBuilder};
use kvtablet_prod::format::log_record_batch::{
    decode_log_batch, encode_log_batch, ChangeType, LogBatchHeader, LogBatchMeta, LogRecord,
};
use kvtablet_prod::format::schema::{Column, Schema, TableDescriptor, TableSchema};
use kvtablet_prod::format::value_record_batch::{
    decode_stored_value, decode_value_batch, encode_stored_value, encode_value_batch,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn int(v: i32) -> Datum {
    Datum::Int(v)
}

fn string(s: &str) -> Datum {
    Datum::String(s.to_string())
}

/// `(id INT PK, name STRING)`, as pyfluss creates it.
fn id_name_types() -> Vec<DataType> {
    vec![DataType::not_null(TypeRoot::Int), DataType::nullable(TypeRoot::String)]
}

const SPEC_TABLE_JSON: &str = r#"{"bucket_count":1,"bucket_key":["id"],"custom_properties":{},"partition_key":[],"properties":{},"schema":{"columns":[{"data_type":{"nullable":false,"type":"INTEGER"},"id":0,"name":"id"},{"data_type":{"type":"STRING"},"id":1,"name":"name"}],"highest_field_id":1,"primary_key":["id"],"version":1},"version":1}"#;

/// The PutKv `records` pyfluss sent for upsert(1,'a'), upsert(1,'b'), delete(1), writer 42.
const SPEC_KV_BATCH: &str = "32000000 00 f110c3cb 0100 00 2a00000000000000 00000000 03000000
    06000000 01 01 00 01 01 61
    06000000 01 01 00 01 01 62
    02000000 01 01";

#[test]
fn table_json_from_the_spec_parses_and_reproduces_exactly() {
    let d = TableDescriptor::from_json_str(SPEC_TABLE_JSON).unwrap();
    assert_eq!(d.bucket_count, Some(1));
    assert_eq!(d.bucket_keys, vec!["id".to_string()]);
    assert_eq!(d.schema.primary_key, vec!["id".to_string()]);
    assert_eq!(d.schema.highest_field_id, 1);
    assert_eq!(d.schema.columns.len(), 2);
    assert_eq!(d.schema.columns[0].data_type, DataType::not_null(TypeRoot::Int));
    assert_eq!(d.schema.columns[1].data_type, DataType::nullable(TypeRoot::String));
    assert_eq!(d.schema.columns[1].id, 1);
    assert_eq!(d.to_json_string(), SPEC_TABLE_JSON);
    let ts = TableSchema::from_descriptor(1, &d).unwrap();
    assert_eq!(ts.primary_key, vec![0]);
    assert_eq!(ts.bucket_key, vec![0]);
}

#[test]
fn table_json_defaults_fill_bucket_count_and_key() {
    let text = r#"{"schema":{"columns":[{"name":"id","data_type":{"type":"INTEGER"}},
        {"name":"v","data_type":{"type":"DOUBLE"}}],"primary_key":["id"]},
        "partition_key":[],"properties":{},"custom_properties":{"k":"v"}}"#;
    let mut d = TableDescriptor::from_json_str(text).unwrap();
    // Primary-key columns become NOT NULL; missing ids are positions.
    assert_eq!(d.schema.columns[0].data_type, DataType::not_null(TypeRoot::Int));
    assert_eq!(d.schema.columns[1].id, 1);
    assert_eq!(d.schema.highest_field_id, 1);
    assert_eq!(d.bucket_count, None);
    d.apply_defaults(3);
    assert_eq!(d.bucket_count, Some(3));
    assert_eq!(d.bucket_keys, vec!["id".to_string()]);
    let again = TableDescriptor::from_json_str(&d.to_json_string()).unwrap();
    assert_eq!(again, d);
}

#[test]
fn all_supported_type_names() {
    for (name, root) in [
        ("BOOLEAN", TypeRoot::Boolean),
        ("TINYINT", TypeRoot::TinyInt),
        ("SMALLINT", TypeRoot::SmallInt),
        ("INTEGER", TypeRoot::Int),
        ("BIGINT", TypeRoot::BigInt),
        ("FLOAT", TypeRoot::Float),
        ("DOUBLE", TypeRoot::Double),
        ("STRING", TypeRoot::String),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"type":"{name}"}}"#)).unwrap();
        assert_eq!(DataType::from_json(&v).unwrap(), DataType::nullable(root.clone()));
        assert_eq!(
            DataType::not_null(root).to_json().to_string(),
            format!(r#"{{"nullable":false,"type":"{name}"}}"#)
        );
    }
}

#[test]
fn kv_batch_from_pyfluss_decodes() {
    let bytes = hex(SPEC_KV_BATCH);
    assert_eq!(bytes.len(), 54);
    let b = KvRecordBatch::decode(&bytes).unwrap();
    assert_eq!(b.magic, 0);
    assert_eq!(b.crc, 0xcbc3_10f1);
    assert_eq!(b.schema_id, 1);
    assert_eq!(b.attributes, 0);
    assert_eq!(b.writer_id, 42);
    assert_eq!(b.batch_sequence, 0);
    assert!(b.is_idempotent());
    assert_eq!(
        b.records,
        vec![
            KvRecord { key: &[1], value: Some(&[0, 1, 1, b'a']) },
            KvRecord { key: &[1], value: Some(&[0, 1, 1, b'b']) },
            KvRecord { key: &[1], value: None },
        ]
    );
    let types = id_name_types();
    let row = decode_row(&types, b.records[1].value.unwrap()).unwrap();
    assert_eq!(row, Row(vec![int(1), string("b")]));
    assert_eq!(
        decode_key(&[DataType::not_null(TypeRoot::Int)], b.records[0].key).unwrap(),
        vec![int(1)]
    );
}

#[test]
fn kv_batch_encoder_reproduces_pyfluss_bytes() {
    let types = id_name_types();
    let key = encode_key(&[DataType::not_null(TypeRoot::Int)], &[int(1)]).unwrap();
    let a = encode_row(&types, &Row(vec![int(1), string("a")])).unwrap();
    let b = encode_row(&types, &Row(vec![int(1), string("b")])).unwrap();
    let mut builder = KvRecordBatchBuilder::new(1, 42, 0);
    builder.append(&key, Some(&a)).unwrap();
    builder.append(&key, Some(&b)).unwrap();
    builder.append(&key, None).unwrap();
    assert_eq!(builder.build().unwrap(), hex(SPEC_KV_BATCH));
}

#[test]
fn compacted_row_from_the_spec() {
    let types = vec![
        DataType::not_null(TypeRoot::Int),
        DataType::nullable(TypeRoot::String),
        DataType::nullable(TypeRoot::BigInt),
        DataType::nullable(TypeRoot::Double),
        DataType::nullable(TypeRoot::Boolean),
    ];
    let row = Row(vec![
        int(1),
        string("alice"),
        Datum::BigInt(1_000_000_000_000),
        Datum::Double(1.0 / 3.0),
        Datum::Boolean(false),
    ]);
    let expected = hex("00 | 01 | 05 616c696365 | 80a094a58d1d | 555555555555d53f | 00");
    assert_eq!(encode_row(&types, &row).unwrap(), expected);
    assert_eq!(decode_row(&types, &expected).unwrap(), row);

    // A NULL in column 2 sets bit 2 (04) and leaves the field out.
    let with_null = Row(vec![
        int(1),
        string("alice"),
        Datum::Null,
        Datum::Double(1.0 / 3.0),
        Datum::Boolean(false),
    ]);
    let expected = hex("04 | 01 | 05 616c696365 | 555555555555d53f | 00");
    assert_eq!(encode_row(&types, &with_null).unwrap(), expected);
    assert_eq!(decode_row(&types, &expected).unwrap(), with_null);
}

#[test]
fn null_bitset_spans_bytes() {
    let types = vec![DataType::nullable(TypeRoot::TinyInt); 10];
    let mut values = vec![Datum::TinyInt(-1); 10];
    values[9] = Datum::Null;
    let bytes = encode_row(&types, &Row(values.clone())).unwrap();
    assert_eq!(&bytes[..2], &[0x00, 0x02]);
    assert_eq!(bytes.len(), 2 + 9);
    assert_eq!(decode_row(&types, &bytes).unwrap(), Row(values));
}

#[test]
fn key_bytes_from_the_spec_and_the_java_reference() {
    let int_t = [DataType::not_null(TypeRoot::Int)];
    assert_eq!(encode_key(&int_t, &[int(1)]).unwrap(), vec![0x01]);
    assert_eq!(encode_key(&int_t, &[int(-5)]).unwrap(), hex("fb ff ff ff 0f"));
    assert_eq!(
        encode_key(&[DataType::not_null(TypeRoot::BigInt)], &[Datum::BigInt(-1)]).unwrap().len(),
        10
    );

    // The first fields of Fluss's encoded_key.hex reference (all types, Java-compatible).
    let types: Vec<DataType> = [
        TypeRoot::Boolean,
        TypeRoot::TinyInt,
        TypeRoot::SmallInt,
        TypeRoot::Int,
        TypeRoot::BigInt,
        TypeRoot::Float,
        TypeRoot::Double,
        TypeRoot::String,
    ]
    .into_iter()
    .map(DataType::not_null)
    .collect();
    let values = vec![
        Datum::Boolean(true),
        Datum::TinyInt(2),
        Datum::SmallInt(10),
        int(100),
        Datum::BigInt(-6101065172474983726),
        Datum::Float(13.2),
        Datum::Double(15.21),
        string("hello"),
    ];
    let expected =
        hex("01 02 0A00 64 D295FCD8CEB1AAAAAB01 33335341 EC51B81E856B2E40 05 68656C6C6F");
    assert_eq!(encode_key(&types, &values).unwrap(), expected);
    assert_eq!(decode_key(&types, &expected).unwrap(), values);
}

#[test]
fn murmur_and_bucket_vectors_from_the_reference() {
    assert_eq!(murmur_hash_bytes(&[]), 0x087F_CD5C);
    assert_eq!(murmur_hash_bytes(b"The quick brown fox jumps over the lazy dog"), 0x1BC6_F880);
    assert_eq!(murmur_hash_bytes(&[0x80, 0x01]), 0x660F_C139);
    assert_eq!(murmur_hash_bytes(&[0xBF, 0x84, 0x3D]), 0x5D80_2AB2);
    assert_eq!(murmur_hash_bytes(&[0x00, 0x0A, 0x0A, 0x0A, 0xFF]), 0x5229_8139);
    assert_eq!(murmur_hash_bytes("caf\u{e9}".as_bytes()), 0xAEE2_A634u32 as i32);
    assert_eq!(murmur_hash_bytes(&[0xFF; 4]), 0xA059_0E3Du32 as i32);
    assert_eq!(fluss_hash_i32(0), 0x2362_F9DE);
    assert_eq!(fluss_hash_i32(42), 0x43A4_6E1D);
    assert_eq!(fluss_hash_i32(-77), 0x2EEB_27DE);

    for (key, buckets, expected) in [
        (&[0u8, 10][..], 7, 1),
        (&[0, 10, 10, 10][..], 12, 0),
        (b"2bb87d68-baf9-4e64-90f9-f80910419fa6".as_slice(), 16, 6),
        (b"The quick brown fox jumps over the lazy dog".as_slice(), 8, 6),
        (&[0x80, 0x01][..], 7, 2),
        (&[0xBF, 0x84, 0x3D][..], 12, 3),
        (&[0x00, 0x0A, 0x0A, 0x0A, 0xFF][..], 16, 10),
        ("caf\u{e9}".as_bytes(), 8, 1),
        (&[0xFF; 4][..], 5, 1),
    ] {
        assert_eq!(bucket_of(key, buckets).unwrap(), expected, "key {key:?}");
    }
    assert!(bucket_of(&[], 3).is_err());
    assert!(bucket_of(&[1], 0).is_err());
}

#[test]
fn bucket_of_a_primary_key_uses_the_bucket_key_columns() {
    let schema = Schema::new(
        vec![
            Column::new(0, "region", DataType::nullable(TypeRoot::String)),
            Column::new(1, "id", DataType::nullable(TypeRoot::BigInt)),
            Column::new(2, "v", DataType::nullable(TypeRoot::Double)),
        ],
        vec!["region".into(), "id".into()],
    )
    .unwrap();
    let ts = TableSchema::new(1, &schema, &["region".to_string()]).unwrap();
    let row = Row(vec![string("eu"), Datum::BigInt(7), Datum::Null]);
    let pk = primary_key_of_row(&ts, &row).unwrap();
    assert_eq!(pk, hex("02 6575 07"));
    // The bucket key is a byte prefix of the primary key here.
    let expected = bucket_of(&hex("02 6575"), 16).unwrap();
    assert_eq!(bucket_of_primary_key(&ts, &pk, 16).unwrap(), expected);
    assert!(bucket_of_primary_key(&ts, &hex("02 65"), 16).is_err());
    // A bucket key outside the primary key is refused.
    assert!(TableSchema::new(1, &schema, &["v".to_string()]).is_err());
}

#[test]
fn value_batch_and_stored_value() {
    let types = id_name_types();
    let v1 = encode_stored_value(1, &encode_row(&types, &Row(vec![int(1), string("a")])).unwrap());
    let v2 = encode_stored_value(1, &encode_row(&types, &Row(vec![int(2), Datum::Null])).unwrap());
    assert_eq!(v1, hex("0100 00 01 01 61"));
    let batch = encode_value_batch([v1.as_slice(), v2.as_slice()]).unwrap();
    assert_eq!(batch, hex("17000000 00 02000000 06000000 0100 00 01 01 61 04000000 0100 02 02"));
    let values = decode_value_batch(&batch).unwrap();
    assert_eq!(values, vec![v1.as_slice(), v2.as_slice()]);
    let (schema_id, row) = decode_stored_value(values[1]).unwrap();
    assert_eq!(schema_id, 1);
    assert_eq!(decode_row(&types, row).unwrap(), Row(vec![int(2), Datum::Null]));
    assert_eq!(encode_value_batch([]).unwrap(), hex("05000000 00 00000000"));
}

fn id_name_columns() -> Vec<Column> {
    vec![
        Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
        Column::new(1, "name", DataType::nullable(TypeRoot::String)),
    ]
}

fn spec_changelog() -> Vec<LogRecord> {
    let a = Row(vec![int(1), string("a")]);
    let b = Row(vec![int(1), string("b")]);
    vec![
        LogRecord { change_type: ChangeType::Insert, row: a.clone() },
        LogRecord { change_type: ChangeType::UpdateBefore, row: a },
        LogRecord { change_type: ChangeType::UpdateAfter, row: b.clone() },
        LogRecord { change_type: ChangeType::Delete, row: b },
    ]
}

#[test]
fn log_batch_matches_the_mock_layout() {
    let meta = LogBatchMeta::changelog(0, 1_700_000_000_123, 1);
    let bytes = encode_log_batch(&meta, &id_name_columns(), None, &spec_changelog()).unwrap();
    // Same header as the mock's response; 296 bytes after Length, a 200-byte flatbuffer.
    assert_eq!(&bytes[0..13], &hex("0000000000000000 28010000 00")[..]);
    assert_eq!(&bytes[13..21], &1_700_000_000_123i64.to_le_bytes());
    assert_eq!(
        &bytes[25..52],
        &hex("0100 00 03000000 ffffffffffffffff ffffffff 04000000 01 02 03 04")[..]
    );
    assert_eq!(&bytes[52..60], &hex("ffffffff c8000000")[..]);
    assert_eq!(bytes.len(), 0x128 + 12);
    let crc = u32::from_le_bytes(bytes[21..25].try_into().unwrap());
    assert_eq!(crc, crc32c::crc32c(&bytes[25..]));

    let header = LogBatchHeader::read(&bytes).unwrap();
    assert_eq!(header.last_offset(), 3);
    assert!(!header.is_append_only());
    let (decoded, used) = decode_log_batch(&bytes, &id_name_columns()).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(decoded.records, spec_changelog());
    assert_eq!(decoded.header.commit_timestamp, 1_700_000_000_123);
}

#[test]
fn log_batch_projection_and_empty_batch() {
    let meta = LogBatchMeta::changelog(10, 0, 1);
    let cols = id_name_columns();
    let bytes = encode_log_batch(&meta, &cols, Some(&[1]), &spec_changelog()).unwrap();
    let (decoded, _) = decode_log_batch(&bytes, &cols[1..]).unwrap();
    let names: Vec<Row> = decoded.records.iter().map(|r| r.row.clone()).collect();
    assert_eq!(
        names,
        vec![
            Row(vec![string("a")]),
            Row(vec![string("a")]),
            Row(vec![string("b")]),
            Row(vec![string("b")])
        ]
    );
    assert!(encode_log_batch(&meta, &cols, Some(&[1, 0]), &spec_changelog()).is_err());
    assert!(encode_log_batch(&meta, &cols, Some(&[2]), &spec_changelog()).is_err());

    // A write with no change: 0 records, LastOffsetDelta 0, the offset still advances by one.
    let empty = encode_log_batch(&meta, &cols, None, &[]).unwrap();
    let header = LogBatchHeader::read(&empty).unwrap();
    assert_eq!((header.record_count, header.last_offset_delta, header.last_offset()), (0, 0, 10));
    let (decoded, _) = decode_log_batch(&empty, &cols).unwrap();
    assert!(decoded.records.is_empty());
}

#[test]
fn log_batch_offset_and_timestamp_can_be_patched() {
    let meta = LogBatchMeta::changelog(0, 0, 1);
    let mut bytes = encode_log_batch(&meta, &id_name_columns(), None, &spec_changelog()).unwrap();
    kvtablet_prod::format::log_record_batch::patch_offset_and_timestamp(&mut bytes, 77, 5).unwrap();
    let (decoded, _) = decode_log_batch(&bytes, &id_name_columns()).unwrap();
    assert_eq!(decoded.header.base_offset, 77);
    assert_eq!(decoded.header.commit_timestamp, 5);
    assert_eq!(decoded.header.last_offset(), 80);
}

#[test]
fn error_codes_are_corrupt_record() {
    let mut bytes = hex(SPEC_KV_BATCH);
    bytes[30] ^= 1;
    let err = KvRecordBatch::decode(&bytes).unwrap_err();
    assert_eq!(err.error_code().wire_code(), 14);
}

/// Prints a changelog batch of every type, with NULLs, for a cross-check with pyarrow:
/// `cargo test --release --test format_golden -- --ignored --nocapture dump`.
#[test]
#[ignore]
fn dump_all_types_log_batch() {
    let cols: Vec<Column> = TypeRoot::samples()
        .into_iter()
        .take(9)
        .enumerate()
        .map(|(i, t)| Column::new(i as i32, format!("c{i}"), DataType::nullable(t)))
        .collect();
    let full = Row(vec![
        Datum::Boolean(true),
        Datum::TinyInt(-3),
        Datum::SmallInt(300),
        int(-70000),
        Datum::BigInt(1 << 40),
        Datum::Float(1.5),
        Datum::Double(-0.25),
        string("héllo"),
    ]);
    let nulls = Row(vec![Datum::Null; 8]);
    let records = vec![
        LogRecord { change_type: ChangeType::Insert, row: full.clone() },
        LogRecord { change_type: ChangeType::UpdateBefore, row: nulls },
        LogRecord { change_type: ChangeType::Delete, row: full },
    ];
    let bytes =
        encode_log_batch(&LogBatchMeta::changelog(0, 0, 1), &cols, Some(&[0, 3, 7]), &records)
            .unwrap();
    println!("PROJECTED {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let bytes = encode_log_batch(&LogBatchMeta::changelog(0, 0, 1), &cols, None, &records).unwrap();
    println!("FULL {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
}

/// The compacted encoding of the parameterised scalar types, derived from Fluss's rules
/// (`fluss-common/.../row/BinaryWriter.java` `createValueSetter` onto
/// `row/compacted/CompactedRowWriter.java`): DECIMAL(p ≤ 18) is `writeLong` of the unscaled
/// value, a wider one `writeBytes(BigInteger.toByteArray())`; TIMESTAMP(p ≤ 3) is `writeLong`
/// of the millis, a finer one adds `writeInt` of the nanos of the milli; DATE and TIME are
/// `writeInt`; BINARY is written as BYTES and CHAR as STRING (varint length, then the bytes).
#[test]
fn parameterised_scalars_encode_as_fluss_compacted_rows() {
    let types = vec![
        DataType::nullable(TypeRoot::Decimal { precision: 10, scale: 2 }),
        DataType::nullable(TypeRoot::Decimal { precision: 20, scale: 0 }),
        DataType::nullable(TypeRoot::TimestampNtz { precision: 3 }),
        DataType::nullable(TypeRoot::TimestampNtz { precision: 9 }),
        DataType::nullable(TypeRoot::Date),
        DataType::nullable(TypeRoot::Time { precision: 3 }),
        DataType::nullable(TypeRoot::Bytes),
        DataType::nullable(TypeRoot::Binary { length: 2 }),
        DataType::nullable(TypeRoot::Char { length: 3 }),
        DataType::nullable(TypeRoot::TimestampLtz { precision: 6 }),
    ];
    let row = Row(vec![
        Datum::Decimal(1234),
        Datum::Decimal(-1),
        Datum::Timestamp(Timestamp::from_millis(1)),
        Datum::Timestamp(Timestamp { millis: -1, nanos_of_milli: 999_999 }),
        Datum::Date(19_782),
        Datum::Time(1000),
        Datum::Binary(vec![0]),
        Datum::Binary(vec![0xab, 0xcd]),
        Datum::String("é".to_string()),
        Datum::Null,
    ]);
    let expected =
        hex("0002 d209 01ff 01 ffffffffffffffffff01 bf843d c69a01 e807 0100 02abcd 02c3a9");
    let bytes = encode_row(&types, &row).unwrap();
    assert_eq!(bytes, expected);
    assert_eq!(decode_row(&types, &bytes).unwrap(), row);
}

#[test]
fn wide_decimals_are_minimal_twos_complement_in_keys() {
    let ty = DataType::not_null(TypeRoot::Decimal { precision: 38, scale: 0 });
    let key = |v: i128| encode_key(std::slice::from_ref(&ty), &[Datum::Decimal(v)]).unwrap();
    assert_eq!(key(0), hex("01 00"));
    assert_eq!(key(128), hex("02 0080"));
    assert_eq!(key(-129), hex("02 ff7f"));
    let max = 10i128.pow(38) - 1;
    assert_eq!(key(max), hex("10 4b3b4ca85a86c47a098a223fffffffff"));
    // A non-minimal form decodes but is not the canonical key (the validator refuses it).
    let padded = hex("02 0000");
    assert_eq!(decode_key(std::slice::from_ref(&ty), &padded).unwrap(), vec![Datum::Decimal(0)]);
    assert_eq!(
        decode_key(std::slice::from_ref(&ty), &key(max)).unwrap(),
        vec![Datum::Decimal(max)]
    );
}

#[test]
fn values_outside_their_type_are_refused_both_ways() {
    let bad = [
        (TypeRoot::Decimal { precision: 3, scale: 1 }, Datum::Decimal(1000), hex("e807")),
        (TypeRoot::Binary { length: 2 }, Datum::Binary(vec![1]), hex("0101")),
        (TypeRoot::Char { length: 1 }, Datum::String("ab".into()), hex("026162")),
        (TypeRoot::Time { precision: 0 }, Datum::Time(86_400_000), hex("80b89929")),
    ];
    for (root, value, bytes) in bad {
        let types = [DataType::not_null(root.clone())];
        assert!(encode_row(&types, &Row(vec![value.clone()])).is_err(), "{root:?} {value:?}");
        let mut row_bytes = vec![0];
        row_bytes.extend_from_slice(&bytes);
        assert!(decode_row(&types, &row_bytes).is_err(), "{root:?} {bytes:?}");
    }
    let ts3 = [DataType::not_null(TypeRoot::TimestampNtz { precision: 3 })];
    let with_nanos = Datum::Timestamp(Timestamp { millis: 0, nanos_of_milli: 1 });
    assert!(encode_row(&ts3, &Row(vec![with_nanos])).is_err());
}
