//! Malformed input: truncated, bit-flipped and random bytes give typed errors, never panics.

use kvtablet_prod::format::compacted_row::{decode_row, encode_row, Datum, Row, Timestamp};
use kvtablet_prod::format::data_type::{DataType, TypeRoot};
use kvtablet_prod::format::error::{FormatError, SchemaError};
use kvtablet_prod::format::key_encoding::decode_key;
use kvtablet_prod::format::kv_record_batch::{encode_kv_batch, KvRecord, KvRecordBatch};
use kvtablet_prod::format::log_record_batch::{
    decode_log_batch, encode_log_batch, ChangeType, LogBatchHeader, LogBatchMeta, LogRecord,
};
use kvtablet_prod::format::schema::{Column, Schema, TableDescriptor};
use kvtablet_prod::format::value_record_batch::{decode_value_batch, encode_value_batch};
use proptest::prelude::*;

fn all_types() -> Vec<DataType> {
    TypeRoot::samples().into_iter().map(DataType::nullable).collect()
}

fn all_columns() -> Vec<Column> {
    all_types()
        .into_iter()
        .enumerate()
        .map(|(i, t)| Column::new(i as i32, format!("c{i}"), t))
        .collect()
}

fn sample_row() -> Row {
    Row(vec![
        Datum::Boolean(true),
        Datum::TinyInt(-3),
        Datum::Null,
        Datum::Int(-70000),
        Datum::BigInt(1 << 40),
        Datum::Float(1.5),
        Datum::Double(-0.25),
        Datum::String("héllo".to_string()),
        Datum::String("ab".to_string()),
        Datum::Binary(vec![1, 2, 3]),
        Datum::Binary(vec![0xff]),
        Datum::Decimal(-12_345),
        Datum::Decimal(10i128.pow(37)),
        Datum::Date(-1),
        Datum::Time(45_296_789),
        Datum::Timestamp(Timestamp::from_millis(-1)),
        Datum::Timestamp(Timestamp { millis: 1, nanos_of_milli: 999_999 }),
        Datum::Timestamp(Timestamp { millis: 2, nanos_of_milli: 1_000 }),
    ])
}

fn sample_kv_batch() -> Vec<u8> {
    let v = encode_row(&all_types(), &sample_row()).unwrap();
    encode_kv_batch(
        1,
        7,
        3,
        &[KvRecord { key: b"k1", value: Some(&v) }, KvRecord { key: b"k2", value: None }],
    )
    .unwrap()
}

fn sample_log_batch() -> Vec<u8> {
    let records = vec![
        LogRecord { change_type: ChangeType::Insert, row: sample_row() },
        LogRecord { change_type: ChangeType::Delete, row: sample_row() },
    ];
    encode_log_batch(&LogBatchMeta::changelog(5, 9, 1), &all_columns(), None, &records).unwrap()
}

#[test]
fn every_truncation_of_a_kv_batch_is_an_error() {
    let bytes = sample_kv_batch();
    for n in 0..bytes.len() {
        assert!(KvRecordBatch::decode(&bytes[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn every_bit_flip_of_a_kv_batch_is_an_error() {
    let bytes = sample_kv_batch();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(KvRecordBatch::decode(&b).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn kv_batch_specific_errors() {
    let bytes = sample_kv_batch();
    let mut b = bytes.clone();
    b[4] = 1;
    assert_eq!(KvRecordBatch::decode(&b).unwrap_err(), FormatError::UnsupportedMagic(1));
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(matches!(KvRecordBatch::decode(&b).unwrap_err(), FormatError::CrcMismatch { .. }));
    let mut b = bytes.clone();
    b[0..4].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(KvRecordBatch::decode(&b).unwrap_err(), FormatError::Corrupt { .. }));
    // A record count larger than the records, with a valid CRC.
    let mut b = bytes.clone();
    b[24..28].copy_from_slice(&1000i32.to_le_bytes());
    let crc = crc32c::crc32c(&b[9..]);
    b[5..9].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(KvRecordBatch::decode(&b).unwrap_err(), FormatError::Truncated { .. }));
    // A key length past the record end, with a valid CRC.
    let mut b = bytes;
    b[32] = 0x7f;
    let crc = crc32c::crc32c(&b[9..]);
    b[5..9].copy_from_slice(&crc.to_le_bytes());
    assert!(KvRecordBatch::decode(&b).is_err());
}

#[test]
fn every_truncation_and_crc_covered_flip_of_a_log_batch_is_an_error() {
    let bytes = sample_log_batch();
    let cols = all_columns();
    assert!(decode_log_batch(&bytes, &cols).is_ok());
    for n in 0..bytes.len() {
        assert!(decode_log_batch(&bytes[..n], &cols).is_err(), "prefix {n}");
    }
    for i in (8..13).chain(21..bytes.len()) {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        assert!(decode_log_batch(&b, &cols).is_err(), "byte {i}");
    }
}

#[test]
fn log_batch_with_valid_crc_but_bad_contents() {
    let bytes = sample_log_batch();
    let cols = all_columns();
    let fix = |b: &mut Vec<u8>| {
        let crc = crc32c::crc32c(&b[25..]);
        b[21..25].copy_from_slice(&crc.to_le_bytes());
    };
    // An unknown change type.
    let mut b = bytes.clone();
    b[48] = 9;
    fix(&mut b);
    assert!(decode_log_batch(&b, &cols).is_err());
    // A record count that disagrees with the Arrow rows.
    let mut b = bytes.clone();
    b[44..48].copy_from_slice(&1i32.to_le_bytes());
    b[28..32].copy_from_slice(&0i32.to_le_bytes());
    fix(&mut b);
    assert!(decode_log_batch(&b, &cols).is_err());
    // Decoding against the wrong schema.
    assert!(decode_log_batch(&bytes, &cols[1..]).is_err());
    // Every byte of the Arrow message flipped in turn, CRC fixed: an error or a batch.
    for i in 50..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xa5;
        fix(&mut b);
        if let Err(e) = decode_log_batch(&b, &cols) {
            assert!(!e.to_string().contains("panicked"), "byte {i}: {e}");
        }
    }
    assert!(LogBatchHeader::read(&bytes[..47]).is_err());
}

#[test]
fn rows_and_keys_reject_bad_bytes() {
    let types = all_types();
    let bytes = encode_row(&types, &sample_row()).unwrap();
    for n in 0..bytes.len() {
        assert!(decode_row(&types, &bytes[..n]).is_err(), "prefix {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_row(&types, &longer).is_err());
    // NULL in a NOT NULL column.
    let nn = [DataType::not_null(TypeRoot::Int)];
    assert!(decode_row(&nn, &[0x01]).is_err());
    // A boolean byte other than 0 or 1.
    assert!(decode_row(&[DataType::nullable(TypeRoot::Boolean)], &[0, 2]).is_err());
    // Invalid UTF-8.
    assert!(decode_row(&[DataType::nullable(TypeRoot::String)], &[0, 2, 0xff, 0xfe]).is_err());
    // Varints that never end.
    assert!(decode_key(&nn, &[0xff; 6]).is_err());
    assert!(decode_key(&[DataType::not_null(TypeRoot::BigInt)], &[0xff; 11]).is_err());
    // A huge string length.
    assert!(decode_key(&[DataType::not_null(TypeRoot::String)], &[0xff, 0xff, 0xff, 0xff, 0x07])
        .is_err());
    // Encoders refuse values that do not fit the schema.
    assert!(encode_row(&nn, &Row(vec![Datum::Null])).is_err());
    assert!(encode_row(&nn, &Row(vec![Datum::BigInt(1)])).is_err());
    assert!(encode_row(&nn, &Row(vec![])).is_err());
}

#[test]
fn value_batch_rejects_bad_bytes() {
    let bytes = encode_value_batch([&b"\x01\x00abc"[..], &b"\x01\x00"[..]]).unwrap();
    for n in 0..bytes.len() {
        assert!(decode_value_batch(&bytes[..n]).is_err(), "prefix {n}");
    }
    let mut b = bytes.clone();
    b[4] = 3;
    assert_eq!(decode_value_batch(&b).unwrap_err(), FormatError::UnsupportedMagic(3));
}

#[test]
fn bad_table_json_gives_typed_errors() {
    type Check = fn(&SchemaError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("not json", |e| matches!(e, SchemaError::Json(_))),
        ("[]", |e| matches!(e, SchemaError::WrongType { .. })),
        (r#"{"partition_key":[],"properties":{},"custom_properties":{}}"#, |e| {
            matches!(e, SchemaError::MissingField("schema"))
        }),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}}]},"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::MissingField("partition_key")),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"DECIMAL","precision":39}}]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::InvalidTypeParameter { parameter: "precision", .. }),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"WIDGET"}}]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::UnknownType(_)),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}}],"primary_key":["b"]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::UnknownColumn(_)),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}},{"name":"a","data_type":{"type":"INTEGER"}}]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::DuplicateColumn(_)),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER","nullable":"no"}}]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::WrongType { field: "nullable", .. }),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}}]},"partition_key":[],"properties":{"x":1},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::WrongType { field: "properties", .. }),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}}]},"partition_key":[],"bucket_count":0,"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::Invalid(_)),
        ),
        (
            r#"{"schema":{"columns":[]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::Invalid(_)),
        ),
        // Refused, never stored without it (it would be lost without a word).
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}},{"name":"s","data_type":{"type":"BIGINT"}}],"primary_key":["a"],"auto_increment_column":["s"]},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::UnsupportedFeature("auto-increment columns")),
        ),
        (
            r#"{"schema":{"columns":[{"name":"a","data_type":{"type":"INTEGER"}}],"auto_increment_column":"a"},"partition_key":[],"properties":{},"custom_properties":{}}"#,
            |e| matches!(e, SchemaError::WrongType { field: "auto_increment_column", .. }),
        ),
    ];
    for (text, check) in cases {
        let err = TableDescriptor::from_json_str(text).unwrap_err();
        assert!(check(&err), "{text}: {err:?}");
    }
    assert!(Schema::from_json_str(r#"{"columns":5}"#).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = KvRecordBatch::decode(&bytes);
        let _ = decode_value_batch(&bytes);
        let _ = decode_row(&all_types(), &bytes);
        let _ = decode_key(&all_types(), &bytes);
        let _ = decode_log_batch(&bytes, &all_columns());
        let _ = TableDescriptor::from_json_bytes(&bytes);
    }

    #[test]
    fn mutated_batches_never_panic(i in 0usize..400, x in 1u8..=255, fix_crc in any::<bool>()) {
        let mut kv = sample_kv_batch();
        let n = kv.len();
        kv[i % n] ^= x;
        if fix_crc {
            let crc = crc32c::crc32c(&kv[9..]);
            kv[5..9].copy_from_slice(&crc.to_le_bytes());
        }
        let _ = KvRecordBatch::decode(&kv);
        let mut log = sample_log_batch();
        let n = log.len();
        log[i % n] ^= x;
        if fix_crc {
            let crc = crc32c::crc32c(&log[25..]);
            log[21..25].copy_from_slice(&crc.to_le_bytes());
        }
        if let Err(e) = decode_log_batch(&log, &all_columns()) {
            prop_assert!(!e.to_string().contains("panicked"), "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The fuzz target's body (`format_decoders`) on random and on mutated valid inputs.
    #[test]
    fn fuzz_invariants_hold(
        selector in any::<u8>(),
        random in prop::collection::vec(any::<u8>(), 0..120),
        i in 0usize..400,
        x in any::<u8>(),
    ) {
        use kvtablet_prod::format::decoder_check::check_decoders;
        let mut input = vec![selector];
        input.extend_from_slice(&random);
        check_decoders(&input);
        let valid = match selector % 8 {
            0 | 1 => sample_kv_batch(),
            4 => encode_value_batch([&b"\x01\x00abc"[..]]).unwrap(),
            5 | 6 => sample_log_batch(),
            _ => return Ok(()),
        };
        let mut input = vec![selector];
        input.extend_from_slice(&valid);
        check_decoders(&input);
        let n = input.len();
        input[1 + i % (n - 1)] ^= x;
        check_decoders(&input);
    }

    /// The fuzz target's body (`put_kv_validation`) on random records, and on records whose
    /// key is the row's own key (flags 2) so that the row checks run: it never panics, and
    /// what it accepts the readers can serve.
    #[test]
    fn put_kv_validation_invariants_hold(
        selector in any::<u8>(),
        records in prop::collection::vec(
            (0u8..4, prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
    ) {
        use kvtablet_prod::format::decoder_check::check_put_kv_validation;
        let mut input = vec![selector];
        for (flags, key, value) in &records {
            input.push(*flags);
            input.push(key.len() as u8);
            input.extend_from_slice(key);
            input.push(value.len() as u8);
            input.extend_from_slice(value);
        }
        check_put_kv_validation(&input);
    }
}
