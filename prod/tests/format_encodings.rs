//! The encodings a table's options choose (`table.datalake.format`, `table.kv.format`,
//! `table.kv.format-version`): Paimon and Iceberg keys, their bucket functions, IndexedRow
//! values, and which key encoding a table's primary key and bucket key use. Byte vectors are
//! taken from the reference implementations; each says where from.

use kvtablet_prod::format::bucket_function::murmur3_32;
use kvtablet_prod::format::compacted_row::{Datum, Row, Timestamp};
use kvtablet_prod::format::iceberg_key::{decode_iceberg_key, encode_iceberg_key};
use kvtablet_prod::format::indexed_row::{decode_indexed_row, encode_indexed_row};
use kvtablet_prod::format::key_encoding::{
    bucket_key_of_primary_key, bucket_of_primary_key, primary_key_of_row,
};
use kvtablet_prod::format::paimon_key::{decode_paimon_key, encode_paimon_key};
use kvtablet_prod::format::{
    BucketFunction, Column, DataType, FormatError, KeyFormat, LakeFormat, RowFormat, Schema,
    SchemaError, TableDescriptor, TableEncoding, TableSchema, TypeRoot,
};
use std::collections::BTreeMap;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .flat_map(|w| w.as_bytes().chunks(2))
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(8)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn nn(root: TypeRoot) -> DataType {
    DataType::not_null(root)
}

fn s(v: &str) -> Datum {
    Datum::String(v.to_string())
}

#[test]
fn paimon_keys_match_the_fluss_rs_vectors() {
    // fluss-rs 1.0.0 row/encode/paimon_key_encoder.rs `encode_single_int_key_has_insert_header`:
    // 8 bytes of row kind (INSERT = 0) and null bits, then INT 42 little-endian in an 8-byte slot.
    let int = [nn(TypeRoot::Int)];
    let key = encode_paimon_key(&int, &[Datum::Int(42)]).unwrap();
    assert_eq!(key, hex("00 00 00 00 00 00 00 00  2a 00 00 00 00 00 00 00"));
    assert_eq!(decode_paimon_key(&int, &key).unwrap(), vec![Datum::Int(42)]);
    // `encode_multi_field_key`: INT 7, then "hi" inline with 0x80 | 2 in the slot's last byte.
    let two = [nn(TypeRoot::Int), nn(TypeRoot::String)];
    let key = encode_paimon_key(&two, &[Datum::Int(7), s("hi")]).unwrap();
    assert_eq!(
        key,
        hex("00 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00  68 69 00 00 00 00 00 82")
    );
    // paimon_binary_row_writer.rs `write_long_string_in_var_part`: 21 bytes at offset 16,
    // the slot `16 << 32 | 21`, the value padded to 24 bytes.
    let string = [nn(TypeRoot::String)];
    let long = "this_is_a_long_string";
    let key = encode_paimon_key(&string, &[s(long)]).unwrap();
    let mut want = hex("00 00 00 00 00 00 00 00  15 00 00 00 10 00 00 00");
    want.extend_from_slice(long.as_bytes());
    want.extend_from_slice(&[0, 0, 0]);
    assert_eq!(key, want);
    assert_eq!(decode_paimon_key(&string, &key).unwrap(), vec![s(long)]);
}

#[test]
fn paimon_keys_of_every_scalar_type_round_trip_in_one_canonical_form() {
    // The layout of Fluss's PaimonBinaryRowWriter (writeDecimal: a zeroed 16-byte region,
    // writeTimestampNtz: the millis in the variable part, `offset << 32 | nanos` in the slot).
    let types = [
        nn(TypeRoot::Boolean),
        nn(TypeRoot::TinyInt),
        nn(TypeRoot::SmallInt),
        nn(TypeRoot::BigInt),
        nn(TypeRoot::Float),
        nn(TypeRoot::Double),
        nn(TypeRoot::Char { length: 4 }),
        nn(TypeRoot::Binary { length: 2 }),
        nn(TypeRoot::Bytes),
        nn(TypeRoot::Decimal { precision: 10, scale: 2 }),
        nn(TypeRoot::Decimal { precision: 30, scale: 0 }),
        nn(TypeRoot::Date),
        nn(TypeRoot::Time { precision: 3 }),
        nn(TypeRoot::TimestampNtz { precision: 3 }),
        nn(TypeRoot::TimestampNtz { precision: 9 }),
        nn(TypeRoot::TimestampLtz { precision: 6 }),
    ];
    let values = vec![
        Datum::Boolean(true),
        Datum::TinyInt(-2),
        Datum::SmallInt(-300),
        Datum::BigInt(-1),
        Datum::Float(1.5),
        Datum::Double(-0.25),
        s("née"),
        Datum::Binary(vec![0xab, 0x00]),
        Datum::Binary(vec![1, 2, 3, 4, 5, 6, 7, 8, 9]),
        Datum::Decimal(-12345),
        Datum::Decimal(-10i128.pow(29)),
        Datum::Date(-1),
        Datum::Time(86_399_999),
        Datum::Timestamp(Timestamp::from_millis(-1)),
        Datum::Timestamp(Timestamp { millis: 1_698_235_273_182, nanos_of_milli: 999_999 }),
        Datum::Timestamp(Timestamp { millis: 5, nanos_of_milli: 1_000 }),
    ];
    let key = encode_paimon_key(&types, &values).unwrap();
    assert_eq!(key.len() % 8, 0);
    assert_eq!(decode_paimon_key(&types, &key).unwrap(), values);
    insta::assert_snapshot!("paimon_key_every_type", dump(&key));
}

#[test]
fn malformed_paimon_keys_are_refused_with_typed_errors() {
    let two = [nn(TypeRoot::Int), nn(TypeRoot::String)];
    let good = encode_paimon_key(&two, &[Datum::Int(7), s("a long string value")]).unwrap();
    assert!(matches!(decode_paimon_key(&two, &good[..20]), Err(FormatError::Truncated { .. })));
    let mut kind = good.clone();
    kind[0] = 2; // UPDATE_AFTER: keys are always INSERT
    let mut null_bit = good.clone();
    null_bit[1] = 1; // a NULL key column
    let mut padding = good.clone();
    *padding.last_mut().unwrap() = 1; // padding of the variable part must be zero
    let mut high = good.clone();
    high[12] = 1; // the high half of an INT slot must be zero
    let mut offset = good.clone();
    offset[20] = 0xff; // the string's offset points past the end
    let mut inline = good[..24].to_vec();
    inline.extend_from_slice(&hex("61 62 00 00 00 00 00 89")); // inline length 9 > 7
    for (what, bytes) in [
        ("row kind", kind),
        ("null bit", null_bit),
        ("padding", padding),
        ("slot high half", high),
        ("offset", offset),
        ("inline length", inline),
    ] {
        assert!(
            matches!(decode_paimon_key(&two, &bytes), Err(FormatError::Corrupt { .. })),
            "{what}"
        );
    }
    let mut bad_utf8 = encode_paimon_key(&[nn(TypeRoot::String)], &[s("ab")]).unwrap();
    bad_utf8[8] = 0xff;
    assert!(decode_paimon_key(&[nn(TypeRoot::String)], &bad_utf8).is_err());
}

#[test]
fn iceberg_keys_hash_to_the_iceberg_spec_vectors() {
    // Iceberg spec, Appendix B (32-bit hash requirements), as fluss-rs 1.0.0
    // row/encode/iceberg_key_encoder.rs `hashes_iceberg_appendix_b_vectors` checks them.
    let cases: Vec<(TypeRoot, Datum, i32)> = vec![
        (TypeRoot::Int, Datum::Int(34), 2_017_239_379),
        (TypeRoot::BigInt, Datum::BigInt(34), 2_017_239_379),
        (TypeRoot::Decimal { precision: 4, scale: 2 }, Datum::Decimal(1_420), -500_754_589),
        (TypeRoot::Date, Datum::Date(17_486), -653_330_422),
        (TypeRoot::Time { precision: 3 }, Datum::Time(81_068_000), -662_762_989),
        (
            TypeRoot::TimestampNtz { precision: 6 },
            Datum::Timestamp(Timestamp::from_millis(1_510_871_468_000)),
            -2_047_944_441,
        ),
        (
            TypeRoot::TimestampNtz { precision: 6 },
            Datum::Timestamp(Timestamp { millis: 1_510_871_468_000, nanos_of_milli: 1_000 }),
            -1_207_196_810,
        ),
        (TypeRoot::String, s("iceberg"), 1_210_000_089),
        (TypeRoot::Binary { length: 4 }, Datum::Binary(vec![0, 1, 2, 3]), -188_683_207),
        (TypeRoot::Bytes, Datum::Binary(vec![0, 1, 2, 3]), -188_683_207),
    ];
    for (root, value, hash) in cases {
        let types = [nn(root.clone())];
        let key = encode_iceberg_key(&types, std::slice::from_ref(&value)).unwrap();
        assert_eq!(murmur3_32(&key) as i32, hash, "{root:?} {value:?}");
        assert_eq!(decode_iceberg_key(&types, &key).unwrap(), vec![value], "{root:?}");
        // With i32::MAX buckets the bucket is the hash with its sign bit cleared (fluss-rs).
        assert_eq!(
            BucketFunction::Iceberg.bucket_of(&key, i32::MAX).unwrap(),
            (hash & i32::MAX) % i32::MAX
        );
    }
    // fluss-rs iceberg_binary_row_writer.rs: INT widened to i64, TIME in microseconds.
    assert_eq!(encode_iceberg_key(&[nn(TypeRoot::Int)], &[Datum::Int(-1)]).unwrap(), vec![0xff; 8]);
    assert_eq!(
        encode_iceberg_key(&[nn(TypeRoot::Time { precision: 0 })], &[Datum::Time(1000)]).unwrap(),
        1_000_000i64.to_le_bytes().to_vec()
    );
}

#[test]
fn iceberg_keys_refuse_what_iceberg_cannot_hash_and_malformed_bytes() {
    let two = [nn(TypeRoot::Int), nn(TypeRoot::Int)];
    assert!(encode_iceberg_key(&two, &[Datum::Int(1), Datum::Int(2)]).is_err());
    for root in [
        TypeRoot::Boolean,
        TypeRoot::TinyInt,
        TypeRoot::SmallInt,
        TypeRoot::TimestampLtz { precision: 3 },
    ] {
        assert!(
            matches!(
                decode_iceberg_key(&[nn(root.clone())], &[0; 8]),
                Err(FormatError::Corrupt { .. })
            ),
            "{root:?}"
        );
    }
    let int = [nn(TypeRoot::Int)];
    for bytes in [vec![0u8; 7], vec![0u8; 9], (1i64 << 40).to_le_bytes().to_vec()] {
        assert!(
            matches!(decode_iceberg_key(&int, &bytes), Err(FormatError::Corrupt { .. })),
            "{bytes:?}"
        );
    }
    let time = [nn(TypeRoot::Time { precision: 3 })];
    assert!(decode_iceberg_key(&time, &1_001i64.to_le_bytes()).is_err(), "a partial millisecond");
    let ts3 = [nn(TypeRoot::TimestampNtz { precision: 3 })];
    assert!(decode_iceberg_key(&ts3, &1_001i64.to_le_bytes()).is_err(), "micros in TIMESTAMP(3)");
    let dec = [nn(TypeRoot::Decimal { precision: 4, scale: 2 })];
    assert!(decode_iceberg_key(&dec, &[]).is_err(), "no unscaled bytes");
    assert!(decode_iceberg_key(&dec, &[0x00, 0x01]).is_err(), "not minimal");
    assert!(decode_iceberg_key(&dec, &[0x27, 0x10]).is_err(), "10000 has 5 digits");
    assert!(decode_iceberg_key(&[nn(TypeRoot::String)], &[0xc3]).is_err(), "not UTF-8");
}

#[test]
fn lake_bucket_functions_match_the_fluss_rs_vectors() {
    // fluss-rs 1.0.0 bucketing/mod.rs: test_default_bucketing, test_paimon_bucketing,
    // test_iceberg_bucketing, test_lance_bucketing.
    let uuid = b"2bb87d68-baf9-4e64-90f9-f80910419fa6".as_slice();
    let fox = b"The quick brown fox jumps over the lazy dog".as_slice();
    let cases: [(&[u8], i32, [i32; 3]); 4] = [
        (&[0, 10], 7, [1, 1, 3]),
        (&[0, 10, 10, 10], 12, [0, 11, 4]),
        (uuid, 16, [6, 12, 12]),
        (fox, 8, [6, 0, 3]),
    ];
    for (key, buckets, [fluss, paimon, iceberg]) in cases {
        assert_eq!(BucketFunction::Fluss.bucket_of(key, buckets).unwrap(), fluss);
        assert_eq!(BucketFunction::Paimon.bucket_of(key, buckets).unwrap(), paimon);
        assert_eq!(BucketFunction::Iceberg.bucket_of(key, buckets).unwrap(), iceberg);
    }
    // fluss-rs util/murmur_hash.rs test_murmur3: standard murmur3 with seed 0.
    assert_eq!(murmur3_32(&[]), 0);
    assert_eq!(murmur3_32(fox), 0x2E4F_F723);
    for f in [BucketFunction::Fluss, BucketFunction::Paimon, BucketFunction::Iceberg] {
        assert!(f.bucket_of(&[], 3).is_err());
        assert!(f.bucket_of(&[1], 0).is_err());
    }
}

/// INT, STRING, BIGINT (NULL), DECIMAL(20, 0), TIMESTAMP(6), CHAR(3), BINARY(2), BOOLEAN.
fn indexed_types() -> Vec<DataType> {
    let mut types = vec![nn(TypeRoot::Int)];
    types.extend(
        [
            TypeRoot::String,
            TypeRoot::BigInt,
            TypeRoot::Decimal { precision: 20, scale: 0 },
            TypeRoot::TimestampNtz { precision: 6 },
            TypeRoot::Char { length: 3 },
            TypeRoot::Binary { length: 2 },
            TypeRoot::Boolean,
        ]
        .into_iter()
        .map(DataType::nullable),
    );
    types
}

#[test]
fn indexed_rows_follow_fluss_indexed_row_writer() {
    // Fluss IndexedRowWriter / IndexedRow: the null bit-set (column 2 NULL), a length slot
    // for each variable-length column (STRING, DECIMAL(20, 0)) filled in order, then the
    // values little-endian: writeInt, writeString, writeDecimal (BigInteger bytes of 10),
    // writeTimestampNtz (millis, then nanos as an int), writeChar (3 bytes, zero-padded),
    // writeBinary (2 bytes), writeBoolean.
    let row = Row(vec![
        Datum::Int(1000),
        s("hello"),
        Datum::Null,
        Datum::Decimal(10),
        Datum::Timestamp(Timestamp { millis: 1_698_235_273_182, nanos_of_milli: 500 }),
        s("ab"),
        Datum::Binary(vec![0xab, 0x00]),
        Datum::Boolean(true),
    ]);
    let want = hex("04  05 00 00 00  01 00 00 00  e8 03 00 00  68 65 6c 6c 6f  0a \
         de cf b5 66 8b 01 00 00  f4 01 00 00  61 62 00  ab 00  01");
    let types = indexed_types();
    assert_eq!(encode_indexed_row(&types, &row).unwrap(), want);
    assert_eq!(decode_indexed_row(&types, &want).unwrap(), row);
    assert_eq!(RowFormat::Indexed.decode_row(&types, &want).unwrap(), row);
    // IndexedRow.java: `IndexedRow(1, 2)` is stored as the bit-set then 1 then 2; a NULL
    // variable-length column takes no length (its slot stays zero, after the used ones).
    let ints = [DataType::nullable(TypeRoot::TinyInt), DataType::nullable(TypeRoot::TinyInt)];
    assert_eq!(
        encode_indexed_row(&ints, &Row(vec![Datum::TinyInt(1), Datum::TinyInt(2)])).unwrap(),
        vec![0, 1, 2]
    );
    let strings = [DataType::nullable(TypeRoot::String), DataType::nullable(TypeRoot::String)];
    let one_null = Row(vec![Datum::Null, s("x")]);
    assert_eq!(
        encode_indexed_row(&strings, &one_null).unwrap(),
        hex("01  01 00 00 00  00 00 00 00  78")
    );
    assert_eq!(
        decode_indexed_row(&strings, &hex("01 01 00 00 00 00 00 00 00 78")).unwrap(),
        one_null
    );
}

#[test]
fn malformed_indexed_rows_are_refused_with_typed_errors() {
    let types = indexed_types();
    let good = hex("04  05 00 00 00  01 00 00 00  e8 03 00 00  68 65 6c 6c 6f  0a \
         de cf b5 66 8b 01 00 00  f4 01 00 00  61 62 00  ab 00  01");
    for n in 0..good.len() {
        assert!(decode_indexed_row(&types, &good[..n]).is_err(), "prefix {n}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(decode_indexed_row(&types, &longer), Err(FormatError::Corrupt { .. })));
    let mut negative = good.clone();
    negative[1..5].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(decode_indexed_row(&types, &negative), Err(FormatError::Corrupt { .. })));
    let mut not_null_int = good.clone();
    not_null_int[0] |= 1;
    assert!(decode_indexed_row(&types, &not_null_int).is_err(), "NULL in the NOT NULL INT");
    let mut boolean = good.clone();
    *boolean.last_mut().unwrap() = 2;
    assert!(decode_indexed_row(&types, &boolean).is_err());
    let mut nanos = good.clone();
    nanos[27..31].copy_from_slice(&1_000_000i32.to_le_bytes());
    assert!(decode_indexed_row(&types, &nanos).is_err(), "a million nanoseconds of a millisecond");
    let mut utf8 = good.clone();
    utf8[13] = 0xff;
    assert!(decode_indexed_row(&types, &utf8).is_err());
    // A CHAR(1) holds one UTF-8 byte: a two-byte character does not fit.
    let char1 = [DataType::nullable(TypeRoot::Char { length: 1 })];
    assert!(encode_indexed_row(&char1, &Row(vec![s("é")])).is_err());
    // Nested types have no IndexedRow encoding here yet.
    let array = [DataType::nullable(TypeRoot::Array(Box::new(DataType::nullable(TypeRoot::Int))))];
    assert!(decode_indexed_row(&array, &[0, 0, 0, 0, 0]).is_err());
}

fn properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn the_primary_key_follows_the_lake_format_unless_version_2_needs_prefix_lookups() {
    let paimon = |version: &str| {
        TableEncoding::from_properties(&properties(&[
            ("table.datalake.format", "paimon"),
            ("table.kv.format-version", version),
        ]))
        .unwrap()
    };
    // Fluss KeyEncoder.ofPrimaryKeyEncoder / fluss-rs KeyEncoderFactory::of_primary_key_encoder.
    assert_eq!(paimon("1").primary_key_format(false), KeyFormat::Paimon);
    assert_eq!(paimon("1").primary_key_format(true), KeyFormat::Paimon);
    assert_eq!(paimon("2").primary_key_format(true), KeyFormat::Paimon);
    assert_eq!(paimon("2").primary_key_format(false), KeyFormat::Compacted);
    assert_eq!(paimon("2").bucket_key_format(), KeyFormat::Paimon);
    assert_eq!(paimon("2").bucket_function(), BucketFunction::Paimon);
    let none = TableEncoding::from_properties(&BTreeMap::new()).unwrap();
    assert_eq!(none.kv_format_version, 1, "a table without the property is version 1");
    assert_eq!(none.primary_key_format(true), KeyFormat::Compacted);
    assert_eq!(none.row_format, RowFormat::Compacted);
    let lance =
        TableEncoding::from_properties(&properties(&[("table.datalake.format", "lance")])).unwrap();
    assert_eq!(lance.lake_format, Some(LakeFormat::Lance));
    assert_eq!(
        (lance.bucket_key_format(), lance.bucket_function()),
        (KeyFormat::Compacted, BucketFunction::Fluss)
    );
    let iceberg = TableEncoding::for_new_table(&properties(&[
        ("table.datalake.format", "ICEBERG"),
        ("table.kv.format", "indexed"),
    ]))
    .unwrap();
    assert_eq!(iceberg.kv_format_version, 2, "a new table gets version 2");
    assert_eq!(iceberg.bucket_function(), BucketFunction::Iceberg);
    assert_eq!(iceberg.row_format, RowFormat::Indexed);
    for bad in [
        ("table.datalake.format", "hudi"),
        ("table.kv.format", "ALIGNED"),
        ("table.kv.format-version", "3"),
    ] {
        assert!(
            matches!(
                TableEncoding::from_properties(&properties(&[bad])),
                Err(SchemaError::InvalidProperty { .. })
            ),
            "{bad:?}"
        );
    }
}

fn descriptor(
    columns: &[(&str, TypeRoot)],
    pk: &[&str],
    bucket: &[&str],
    props: &[(&str, &str)],
) -> TableDescriptor {
    let columns = columns
        .iter()
        .enumerate()
        .map(|(i, (name, root))| Column::new(i as i32, *name, DataType::nullable(root.clone())))
        .collect();
    TableDescriptor {
        schema: Schema::new(columns, pk.iter().map(|s| s.to_string()).collect()).unwrap(),
        comment: None,
        partition_keys: Vec::new(),
        bucket_keys: bucket.iter().map(|s| s.to_string()).collect(),
        bucket_count: Some(3),
        properties: properties(props),
        custom_properties: BTreeMap::new(),
    }
}

#[test]
fn create_table_refuses_keys_and_values_the_chosen_formats_cannot_encode() {
    let check = |d: &TableDescriptor| {
        TableEncoding::for_new_table(&d.properties).unwrap().check_descriptor(d)
    };
    let iceberg = [("table.datalake.format", "iceberg")];
    let cols = [("a", TypeRoot::Int), ("b", TypeRoot::String), ("c", TypeRoot::Boolean)];
    // Iceberg: one bucket-key column of a hashable type; a composite primary key only with a
    // one-column bucket key and version 2 (the primary key is then compacted).
    assert!(check(&descriptor(&cols, &["a"], &[], &iceberg)).is_ok());
    assert!(check(&descriptor(&cols, &["a", "b"], &["b"], &iceberg)).is_ok());
    let composite = check(&descriptor(&cols, &["a", "b"], &[], &iceberg));
    assert!(
        matches!(composite, Err(SchemaError::UnsupportedEncoding(ref m)) if m.contains("exactly one column")),
        "{composite:?}"
    );
    let v1 = [("table.datalake.format", "iceberg"), ("table.kv.format-version", "1")];
    assert!(
        check(&descriptor(&cols, &["a", "b"], &["b"], &v1)).is_err(),
        "version 1 encodes the whole primary key"
    );
    assert!(check(&descriptor(&cols, &["c"], &[], &iceberg)).is_err(), "BOOLEAN");
    // Paimon encodes any scalar key.
    assert!(check(&descriptor(
        &cols,
        &["a", "b", "c"],
        &["c"],
        &[("table.datalake.format", "paimon")]
    ))
    .is_ok());
    // INDEXED values: scalar columns only, for now.
    let nested =
        [("a", TypeRoot::Int), ("n", TypeRoot::Array(Box::new(DataType::nullable(TypeRoot::Int))))];
    assert!(check(&descriptor(&nested, &["a"], &[], &[("table.kv.format", "INDEXED")])).is_err());
    assert!(check(&descriptor(&cols, &["a"], &[], &[("table.kv.format", "INDEXED")])).is_ok());
}

#[test]
fn a_table_schema_encodes_its_keys_and_picks_buckets_by_its_lake_format() {
    let d = descriptor(
        &[("id", TypeRoot::Int), ("name", TypeRoot::String), ("v", TypeRoot::Double)],
        &["id", "name"],
        &["id"],
        &[("table.datalake.format", "paimon"), ("table.kv.format-version", "2")],
    );
    let schema = TableSchema::from_descriptor(1, &d).unwrap();
    let row = Row(vec![Datum::Int(42), s("x"), Datum::Double(1.0)]);
    // Version 2 with a bucket key that is part of the primary key: the primary key is
    // compacted (INT 42 is the varint 2a, then "x" with its length), the bucket key Paimon's.
    let pk = primary_key_of_row(&schema, &row).unwrap();
    assert_eq!(pk, hex("2a 01 78"));
    let bucket_key = bucket_key_of_primary_key(&schema, &pk).unwrap();
    assert_eq!(bucket_key, hex("00 00 00 00 00 00 00 00  2a 00 00 00 00 00 00 00"));
    assert_eq!(
        bucket_of_primary_key(&schema, &pk, 7).unwrap(),
        BucketFunction::Paimon.bucket_of(&bucket_key, 7).unwrap()
    );
    let default_key = descriptor(
        &[("id", TypeRoot::Int), ("v", TypeRoot::Double)],
        &["id"],
        &[],
        &[("table.datalake.format", "paimon"), ("table.kv.format-version", "2")],
    );
    let schema = TableSchema::from_descriptor(1, &default_key).unwrap();
    assert_eq!(schema.primary_key_format(), KeyFormat::Paimon);
    let pk = primary_key_of_row(&schema, &Row(vec![Datum::Int(42), Datum::Null])).unwrap();
    assert_eq!(pk, hex("00 00 00 00 00 00 00 00  2a 00 00 00 00 00 00 00"));
}

fn key_types() -> Vec<DataType> {
    vec![
        nn(TypeRoot::Int),
        nn(TypeRoot::String),
        nn(TypeRoot::Decimal { precision: 30, scale: 2 }),
        nn(TypeRoot::TimestampLtz { precision: 9 }),
        nn(TypeRoot::Bytes),
    ]
}

proptest::proptest! {
    #[test]
    fn the_new_decoders_never_panic_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let _ = decode_indexed_row(&indexed_types(), &bytes);
        let _ = decode_paimon_key(&key_types(), &bytes);
        for ty in key_types() {
            let _ = decode_iceberg_key(std::slice::from_ref(&ty), &bytes);
            let _ = decode_paimon_key(std::slice::from_ref(&ty), &bytes);
        }
    }

    #[test]
    fn keys_and_indexed_rows_round_trip(
        id in proptest::prelude::any::<i32>(),
        text in "\\PC{0,20}",
        unscaled in -(10i128.pow(30) - 1)..10i128.pow(30),
        millis in -9_000_000_000_000i64..9_000_000_000_000,
        nanos in 0u32..1_000_000,
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
    ) {
        let values = vec![
            Datum::Int(id),
            Datum::String(text.clone()),
            Datum::Decimal(unscaled),
            Datum::Timestamp(Timestamp { millis, nanos_of_milli: nanos }),
            Datum::Binary(raw),
        ];
        let types = key_types();
        let paimon = encode_paimon_key(&types, &values).unwrap();
        proptest::prop_assert_eq!(decode_paimon_key(&types, &paimon).unwrap(), values.clone());
        for (ty, value) in types.iter().zip(&values) {
            if let Ok(key) = encode_iceberg_key(std::slice::from_ref(ty), std::slice::from_ref(value)) {
                let decoded = decode_iceberg_key(std::slice::from_ref(ty), &key).unwrap();
                proptest::prop_assert_eq!(encode_iceberg_key(std::slice::from_ref(ty), &decoded).unwrap(), key);
            }
        }
        let row = Row(values);
        let nullable: Vec<DataType> = types.iter().map(|t| DataType::nullable(t.root.clone())).collect();
        let bytes = encode_indexed_row(&nullable, &row).unwrap();
        proptest::prop_assert_eq!(decode_indexed_row(&nullable, &bytes).unwrap(), row);
    }
}
