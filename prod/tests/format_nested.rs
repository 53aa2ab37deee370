//! ARRAY, MAP and ROW values in CompactedRows: their byte layouts (insta snapshots, reviewed
//! against Fluss's `BinaryArray` / `BinaryMap` / `CompactedRowWriter`), malformed bytes refused
//! with a typed error and without a large allocation, values outside their types refused by the
//! writer, and `value_violation`'s rules for nested values.

use kvtablet_prod::format::compacted_row::{
    decode_row, encode_row, value_violation, Datum, Row, Timestamp,
};
use kvtablet_prod::format::data_type::{DataType, RowField, TypeRoot};
use kvtablet_prod::format::error::FormatError;

fn nullable(root: TypeRoot) -> DataType {
    DataType::nullable(root)
}

fn not_null(root: TypeRoot) -> DataType {
    DataType::not_null(root)
}

fn array_of(element: DataType) -> TypeRoot {
    TypeRoot::Array(Box::new(element))
}

fn map_of(key: DataType, value: DataType) -> TypeRoot {
    TypeRoot::Map { key: Box::new(key), value: Box::new(value) }
}

fn row_of(fields: Vec<(&str, DataType)>) -> TypeRoot {
    TypeRoot::Row(fields.into_iter().map(|(name, ty)| RowField::new(name, ty)).collect())
}

fn string(s: &str) -> Datum {
    Datum::String(s.to_string())
}

/// Rows of 8 bytes, each with its offset: easy to read against the layout.
fn hex_rows(bytes: &[u8]) -> String {
    bytes
        .chunks(8)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:4}: {}", i * 8, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One nested column's value, encoded as a one-column CompactedRow, and decoded back.
fn layout(title: &str, root: TypeRoot, value: Datum) -> String {
    let types = vec![nullable(root)];
    let row = Row::new(vec![value]);
    let bytes = encode_row(&types, &row).expect("encodes");
    assert_eq!(decode_row(&types, &bytes).expect("decodes"), row, "{title}");
    format!("{title}: {} bytes\n{}", bytes.len(), hex_rows(&bytes))
}

#[test]
fn nested_values_have_fluss_byte_layouts() {
    let ts = |millis, nanos_of_milli| Datum::Timestamp(Timestamp { millis, nanos_of_milli });
    let cases = [
        layout(
            "ARRAY<INT> [1, NULL, -1]: null bit-set, varint length, size, null word, 4-byte \
             slots, padding",
            array_of(nullable(TypeRoot::Int)),
            Datum::Array(vec![Datum::Int(1), Datum::Null, Datum::Int(-1)]),
        ),
        layout(
            "ARRAY<STRING> ['abc', 'eight by', '']: 7 bytes or fewer inlined (0x80 | length in \
             the slot's top byte), longer in the variable part",
            array_of(nullable(TypeRoot::String)),
            Datum::Array(vec![string("abc"), string("eight by"), string("")]),
        ),
        layout(
            "ARRAY<BOOLEAN> []: the size alone, padded to a word",
            array_of(nullable(TypeRoot::Boolean)),
            Datum::Array(vec![]),
        ),
        layout(
            "ARRAY<DECIMAL(38, 2)> [-1.00, 1e30]: 16 bytes reserved per value, `offset << 32 | \
             length` of its unscaled bytes in the slot",
            array_of(nullable(TypeRoot::Decimal { precision: 38, scale: 2 })),
            Datum::Array(vec![Datum::Decimal(-100), Datum::Decimal(10i128.pow(32))]),
        ),
        layout(
            "ARRAY<TIMESTAMP(9)> [1 ms + 5 ns, NULL]: the millis in the variable part, the nanos \
             of the milli where the length would be",
            array_of(nullable(TypeRoot::TimestampNtz { precision: 9 })),
            Datum::Array(vec![ts(1, 5), Datum::Null]),
        ),
        layout(
            "MAP<STRING, INT> {'k': 7, 'v': NULL}: key array size in bytes, key array, value \
             array",
            map_of(not_null(TypeRoot::String), nullable(TypeRoot::Int)),
            Datum::Map(vec![(string("k"), Datum::Int(7)), (string("v"), Datum::Null)]),
        ),
        layout(
            "MAP<INT, INT> {}: two empty arrays",
            map_of(not_null(TypeRoot::Int), nullable(TypeRoot::Int)),
            Datum::Map(vec![]),
        ),
        layout(
            "ROW<a INT, b STRING> (300, NULL): a CompactedRow of its fields, length-prefixed",
            row_of(vec![("a", nullable(TypeRoot::Int)), ("b", nullable(TypeRoot::String))]),
            Datum::Row(vec![Datum::Int(300), Datum::Null]),
        ),
        layout(
            "ARRAY<ROW<x BIGINT>> [(5), NULL]: a nested row always in the variable part",
            array_of(nullable(row_of(vec![("x", nullable(TypeRoot::BigInt))]))),
            Datum::Array(vec![Datum::Row(vec![Datum::BigInt(5)]), Datum::Null]),
        ),
        layout(
            "MAP<STRING, ARRAY<INT>> {'a': [1, 2], 'b': []}: nested arrays in the value array's \
             variable part",
            map_of(not_null(TypeRoot::String), nullable(array_of(nullable(TypeRoot::Int)))),
            Datum::Map(vec![
                (string("a"), Datum::Array(vec![Datum::Int(1), Datum::Int(2)])),
                (string("b"), Datum::Array(vec![])),
            ]),
        ),
    ];
    insta::assert_snapshot!("nested_layouts", cases.join("\n\n"));
}

/// The stored value (schema id 1, then the CompactedRow) pyfluss 1.0.0 wrote for one upsert
/// into `(id INT PK, a ARRAY<INT>, s ARRAY<STRING>, e ARRAY<BOOLEAN>, d ARRAY<DECIMAL(38, 2)>,
/// t ARRAY<TIMESTAMP(9)>, m MAP<STRING, INT>, me MAP<INT, INT>, r ROW<a INT, b STRING>,
/// ar ARRAY<ROW<x BIGINT>>, ma MAP<STRING, ARRAY<INT>>)`, captured from a LimitScan.
const PYFLUSS_NESTED_VALUE: &str = "0100 0000 01
    18 03000000 02000000 01000000 00000000 ffffffff 00000000
    28 03000000 00000000 61626300 00000083 08000000 20000000 00000000 00000080
       65696768 74206279
    08 00000000 00000000
    38 02000000 00000000 01000000 18000000 0e000000 28000000 9c000000 00000000
       00000000 00000000 04ee2d6d 415b85ac ef810000 00000000
    20 02000000 02000000 00000000 18000000 00000000 00000000 01000000 00000000
    2c 18000000 02000000 00000000 6b000000 00000081 76000000 00000081 02000000
       02000000 07000000 00000000
    14 08000000 00000000 00000000 00000000 00000000
    03 02ac02
    20 02000000 02000000 02000000 18000000 00000000 00000000 00050000 00000000
    4c 18000000 02000000 00000000 61000000 00000081 62000000 00000081 02000000
       00000000 10000000 18000000 08000000 28000000 02000000 00000000 01000000
       02000000 00000000 00000000";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn nested_values_pyfluss_wrote_decode_and_reencode_to_the_same_bytes() {
    let int = || nullable(TypeRoot::Int);
    let types = vec![
        not_null(TypeRoot::Int),
        nullable(array_of(int())),
        nullable(array_of(nullable(TypeRoot::String))),
        nullable(array_of(nullable(TypeRoot::Boolean))),
        nullable(array_of(nullable(TypeRoot::Decimal { precision: 38, scale: 2 }))),
        nullable(array_of(nullable(TypeRoot::TimestampNtz { precision: 9 }))),
        nullable(map_of(not_null(TypeRoot::String), int())),
        nullable(map_of(not_null(TypeRoot::Int), int())),
        nullable(row_of(vec![("a", int()), ("b", nullable(TypeRoot::String))])),
        nullable(array_of(nullable(row_of(vec![("x", nullable(TypeRoot::BigInt))])))),
        nullable(map_of(not_null(TypeRoot::String), nullable(array_of(int())))),
    ];
    let stored = hex(PYFLUSS_NESTED_VALUE);
    let (schema_id, bytes) = stored.split_at(2);
    assert_eq!(schema_id, [1, 0]);
    let row = decode_row(&types, bytes).expect("pyfluss's row decodes");
    let ints = |values: &[i32]| Datum::Array(values.iter().map(|&v| Datum::Int(v)).collect());
    assert_eq!(
        row.0,
        vec![
            Datum::Int(1),
            Datum::Array(vec![Datum::Int(1), Datum::Null, Datum::Int(-1)]),
            Datum::Array(vec![string("abc"), string("eight by"), string("")]),
            Datum::Array(vec![]),
            Datum::Array(vec![Datum::Decimal(-100), Datum::Decimal(10i128.pow(32))]),
            Datum::Array(vec![Datum::Timestamp(Timestamp::from_millis(1)), Datum::Null]),
            Datum::Map(vec![(string("k"), Datum::Int(7)), (string("v"), Datum::Null)]),
            Datum::Map(vec![]),
            Datum::Row(vec![Datum::Int(300), Datum::Null]),
            Datum::Array(vec![Datum::Row(vec![Datum::BigInt(5)]), Datum::Null]),
            Datum::Map(vec![(string("a"), ints(&[1, 2])), (string("b"), ints(&[]))]),
        ]
    );
    assert_eq!(encode_row(&types, &row).expect("encodes"), bytes, "byte for byte as pyfluss");
}

/// A row of one nullable column of `root` whose bytes are `value` (the varint length added).
fn column_bytes(value: &[u8]) -> Vec<u8> {
    assert!(value.len() < 128, "one-byte varint");
    let mut bytes = vec![0x00, value.len() as u8];
    bytes.extend_from_slice(value);
    bytes
}

fn decode_one(root: TypeRoot, value: &[u8]) -> Result<Row, FormatError> {
    decode_row(&[nullable(root)], &column_bytes(value))
}

fn corrupt(result: Result<Row, FormatError>, expected: &str) {
    let message = match &result {
        Err(error @ (FormatError::Corrupt { .. } | FormatError::Truncated { .. })) => {
            error.to_string()
        }
        other => panic!("expected a corrupt-record error about {expected:?}, got {other:?}"),
    };
    assert!(
        message.to_lowercase().contains(&expected.to_lowercase()),
        "expected an error about {expected:?}, got {message:?}"
    );
}

/// `[size][null word][slots...]` of an ARRAY with `slots` (already laid out).
fn array_bytes(size: i32, nulls: u32, slots: &[u8]) -> Vec<u8> {
    let mut bytes = size.to_le_bytes().to_vec();
    bytes.extend_from_slice(&nulls.to_le_bytes());
    bytes.extend_from_slice(slots);
    bytes
}

fn slot(offset: u32, len: u32) -> [u8; 8] {
    ((u64::from(offset) << 32) | u64::from(len)).to_le_bytes()
}

#[test]
fn malformed_arrays_are_refused_with_a_corrupt_record_error() {
    let ints = || array_of(nullable(TypeRoot::Int));
    let strings = || array_of(nullable(TypeRoot::String));
    // A negative size.
    corrupt(decode_one(ints(), &array_bytes(-1, 0, &[])), "negative length");
    // A size whose slots cannot fit: refused before anything is allocated for them.
    corrupt(decode_one(ints(), &array_bytes(i32::MAX, 0, &[0; 8])), "do not fit");
    corrupt(decode_one(ints(), &array_bytes(3, 0, &[0; 8])), "do not fit");
    // Fewer than the 4 bytes of the size.
    corrupt(decode_one(ints(), &[1, 0]), "array size");
    // A string element whose region lies outside the array, or over the slots.
    corrupt(decode_one(strings(), &array_bytes(1, 0, &slot(16, 100))), "outside");
    corrupt(decode_one(strings(), &array_bytes(1, 0, &slot(0, 8))), "outside");
    // Two elements naming the same bytes.
    let mut two = array_bytes(2, 0, &[slot(24, 8), slot(24, 8)].concat());
    two.extend_from_slice(b"abcdefgh");
    corrupt(decode_one(strings(), &two), "share bytes");
    // An inlined length above 7.
    corrupt(decode_one(strings(), &array_bytes(1, 0, &[b'a', 0, 0, 0, 0, 0, 0, 0x88])), "inlined");
    // A nested array inlined in its slot, which readers would not find.
    let nested = array_of(nullable(array_of(nullable(TypeRoot::Int))));
    corrupt(decode_one(nested, &array_bytes(1, 0, &[0, 0, 0, 0, 0, 0, 0, 0x84])), "inlined");
    // A NULL element where the element type is NOT NULL.
    let required = array_of(not_null(TypeRoot::Int));
    corrupt(decode_one(required, &array_bytes(1, 1, &[7, 0, 0, 0, 0, 0, 0, 0])), "NOT NULL");
    // A BOOLEAN element other than 0 or 1.
    let booleans = array_of(nullable(TypeRoot::Boolean));
    corrupt(decode_one(booleans, &array_bytes(1, 0, &[2, 0, 0, 0, 0, 0, 0, 0])), "byte 2");
    // A TIMESTAMP(9) whose nanos of the milli are a million.
    let mut fine = array_bytes(1, 0, &slot(16, 1_000_000));
    fine.extend_from_slice(&0i64.to_le_bytes());
    let timestamps = array_of(nullable(TypeRoot::TimestampNtz { precision: 9 }));
    corrupt(decode_one(timestamps, &fine), "nanoseconds");
    // A string element that is not UTF-8.
    corrupt(decode_one(strings(), &array_bytes(1, 0, &[0xff, 0, 0, 0, 0, 0, 0, 0x81])), "utf-8");
}

#[test]
fn an_array_whose_elements_all_name_one_region_is_refused_before_decoding_them() {
    // 12 nested arrays that would all decode the same 1,000-element array: a value that
    // amplifies on decoding is refused, whatever the nesting.
    let nested = array_of(nullable(array_of(nullable(TypeRoot::Boolean))));
    let inner_len = 4 + 128 + 1000; // size, 32 null words, 1,000 one-byte slots
    let slots: Vec<u8> = (0..12).flat_map(|_| slot(104, inner_len)).collect();
    let mut bytes = array_bytes(12, 0, &slots);
    let mut inner = array_bytes(1000, 0, &[]);
    inner.resize(inner_len as usize, 0);
    bytes.extend_from_slice(&inner);
    let mut row = vec![0x00];
    let len = bytes.len();
    assert!(len < 1 << 14, "a two-byte varint");
    row.extend_from_slice(&[(len & 0x7f) as u8 | 0x80, (len >> 7) as u8]);
    row.extend_from_slice(&bytes);
    let result = decode_row(&[nullable(nested)], &row);
    assert!(
        matches!(&result, Err(FormatError::Corrupt { detail, .. }) if detail.contains("share bytes")),
        "{result:?}"
    );
}

#[test]
fn malformed_maps_and_rows_are_refused_with_a_corrupt_record_error() {
    let map = || map_of(not_null(TypeRoot::Int), nullable(TypeRoot::Int));
    let empty_array = array_bytes(0, 0, &[]);
    let one_int = array_bytes(1, 0, &[7, 0, 0, 0, 0, 0, 0, 0]);
    let with_keys = |keys: &[u8], values: &[u8]| {
        let mut bytes = (keys.len() as i32).to_le_bytes().to_vec();
        bytes.extend_from_slice(keys);
        bytes.extend_from_slice(values);
        bytes
    };
    // A key array longer than the map.
    let mut long = 100i32.to_le_bytes().to_vec();
    long.extend_from_slice(&one_int);
    corrupt(decode_one(map(), &long), "map key array");
    // One key and no value.
    corrupt(decode_one(map(), &with_keys(&one_int, &empty_array[..4])), "1 keys and 0 values");
    // A NULL key.
    let null_key = array_bytes(1, 1, &[0; 8]);
    let nullable_keys = map_of(nullable(TypeRoot::Int), nullable(TypeRoot::Int));
    corrupt(decode_one(nullable_keys, &with_keys(&null_key, &one_int)), "NULL key");
    // A nested row with a byte after its last field, and one cut short.
    let row = || row_of(vec![("a", nullable(TypeRoot::Int))]);
    corrupt(decode_one(row(), &[0x00, 0x05, 0x09]), "after the last field");
    corrupt(decode_one(row(), &[0x00]), "int field");
    // A NULL in a NOT NULL field of a nested row.
    let required = row_of(vec![("a", not_null(TypeRoot::Int))]);
    corrupt(decode_one(required, &[0x01]), "NOT NULL");
}

#[test]
fn random_bytes_in_nested_columns_never_panic() {
    let types: Vec<DataType> = TypeRoot::nested_samples().into_iter().map(nullable).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for length in 0..2_000usize {
        let bytes: Vec<u8> = (0..length % 300)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for ty in &types {
            let _ = decode_row(std::slice::from_ref(ty), &bytes);
        }
    }
}

#[test]
fn the_writer_refuses_nested_values_outside_their_types() {
    let refused = |root: TypeRoot, value: Datum| {
        let result = encode_row(&[nullable(root)], &Row::new(vec![value]));
        assert!(matches!(result, Err(FormatError::InvalidValue(_))), "{result:?}");
    };
    refused(array_of(not_null(TypeRoot::Int)), Datum::Array(vec![Datum::Null]));
    refused(array_of(nullable(TypeRoot::Int)), Datum::Array(vec![Datum::BigInt(1)]));
    refused(array_of(nullable(TypeRoot::Int)), Datum::Int(1));
    refused(
        map_of(not_null(TypeRoot::String), nullable(TypeRoot::Int)),
        Datum::Map(vec![(Datum::Null, Datum::Int(1))]),
    );
    refused(row_of(vec![("a", nullable(TypeRoot::Int))]), Datum::Row(vec![]));
    refused(row_of(vec![("a", not_null(TypeRoot::Int))]), Datum::Row(vec![Datum::Null]));
    refused(array_of(nullable(TypeRoot::Char { length: 2 })), Datum::Array(vec![string("abc")]));
}

#[test]
fn value_violation_names_the_element_field_or_entry_at_fault() {
    let violation =
        |root: &TypeRoot, value: &Datum| value_violation(root, value).unwrap_or_default();
    let tags = array_of(not_null(TypeRoot::String));
    assert_eq!(value_violation(&tags, &Datum::Array(vec![string("a")])), None);
    assert!(violation(&tags, &Datum::Array(vec![string("a"), Datum::Null]))
        .starts_with("array element 1"));
    let point = row_of(vec![("x", not_null(TypeRoot::BigInt))]);
    assert!(violation(&point, &Datum::Row(vec![Datum::Null])).starts_with("row field `x`"));
    let attrs =
        map_of(not_null(TypeRoot::Int), nullable(TypeRoot::Decimal { precision: 2, scale: 0 }));
    let entries =
        Datum::Map(vec![(Datum::Int(1), Datum::Decimal(99)), (Datum::Int(2), Datum::Decimal(100))]);
    assert!(violation(&attrs, &entries).starts_with("map entry 1"));
}

#[test]
fn nested_value_columns_are_accepted_and_nested_keys_refused_naming_the_column() {
    use kvtablet_prod::format::schema::TableDescriptor;
    let table = |key: &str, bucket_key: &str| {
        format!(
            r#"{{"schema":{{"columns":[
                {{"name":"id","data_type":{{"type":"INTEGER"}}}},
                {{"name":"tags","data_type":{{"type":"ARRAY","element_type":{{"type":"STRING"}}}}}},
                {{"name":"attrs","data_type":{{"type":"MAP","key_type":{{"type":"STRING"}},
                    "value_type":{{"type":"INTEGER"}}}}}},
                {{"name":"point","data_type":{{"type":"ROW","fields":[
                    {{"name":"x","field_type":{{"type":"BIGINT"}}}}]}}}}],
              "primary_key":[{key}]}},
              "bucket_key":[{bucket_key}],
              "partition_key":[],"properties":{{}},"custom_properties":{{}}}}"#
        )
    };
    let descriptor = TableDescriptor::from_json_str(&table(r#""id""#, "")).expect("parses");
    descriptor.check_column_types().expect("nested value columns are accepted");
    // A MAP's key type is NOT NULL, as Fluss's MapType makes it, and its JSON says so.
    let attrs = &descriptor.schema.columns[2].data_type;
    assert_eq!(attrs.to_json()["key_type"], serde_json::json!({"type":"STRING","nullable":false}));
    for (column, type_name) in [("tags", "ARRAY"), ("attrs", "MAP"), ("point", "ROW")] {
        let key = format!(r#""id","{column}""#);
        let as_primary_key = TableDescriptor::from_json_str(&table(&key, "")).expect("parses");
        assert_eq!(
            as_primary_key.check_column_types().expect_err("refused").to_string(),
            format!(
                "Primary key column '{column}' has unsupported data type {type_name}. Currently, \
                 primary key column does not support types: [ARRAY, MAP, ROW]."
            )
        );
        let bucket_key = format!(r#""{column}""#);
        let as_bucket_key =
            TableDescriptor::from_json_str(&table(&key, &bucket_key)).expect("parses");
        assert_eq!(
            as_bucket_key.check_column_types().expect_err("refused").to_string(),
            format!(
                "Bucket key column '{column}' has unsupported data type {type_name}. Currently, \
                 bucket key column does not support types: [ARRAY, MAP, ROW]."
            )
        );
    }
}
