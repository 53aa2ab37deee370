//! Property tests: every format round-trips random rows of every type, with NULLs (nested
//! ARRAY, MAP and ROW values too, with NULL and empty elements).

use kvtablet_prod::format::compacted_row::{decode_row, encode_row, Datum, Row, Timestamp};
use kvtablet_prod::format::data_type::{DataType, TypeRoot};
use kvtablet_prod::format::key_encoding::{
    bucket_key_of_primary_key, bucket_key_of_row, bucket_of, decode_key, encode_key,
    primary_key_of_row,
};
use kvtablet_prod::format::kv_record_batch::{encode_kv_batch, KvRecord, KvRecordBatch};
use kvtablet_prod::format::log_record_batch::{
    decode_log_batch, encode_log_batch, project_columns, ChangeType, LogBatchMeta, LogRecord,
};
use kvtablet_prod::format::schema::{Column, Schema, TableDescriptor, TableSchema};
use kvtablet_prod::format::value_record_batch::{decode_value_batch, encode_value_batch};
use proptest::prelude::*;

/// The types a key column may have.
fn type_root() -> impl Strategy<Value = TypeRoot> {
    prop::sample::select(TypeRoot::samples())
}

fn data_type() -> impl Strategy<Value = DataType> {
    (type_root(), any::<bool>()).prop_map(|(root, nullable)| DataType { root, nullable })
}

/// The types a value column may have: the key types, ARRAY, MAP and ROW.
fn value_data_type() -> impl Strategy<Value = DataType> {
    let roots: Vec<TypeRoot> =
        TypeRoot::samples().into_iter().chain(TypeRoot::nested_samples()).collect();
    (prop::sample::select(roots), any::<bool>())
        .prop_map(|(root, nullable)| DataType { root, nullable })
}

fn value(root: TypeRoot) -> BoxedStrategy<Datum> {
    match root {
        TypeRoot::Boolean => any::<bool>().prop_map(Datum::Boolean).boxed(),
        TypeRoot::TinyInt => any::<i8>().prop_map(Datum::TinyInt).boxed(),
        TypeRoot::SmallInt => any::<i16>().prop_map(Datum::SmallInt).boxed(),
        TypeRoot::Int => any::<i32>().prop_map(Datum::Int).boxed(),
        TypeRoot::BigInt => any::<i64>().prop_map(Datum::BigInt).boxed(),
        TypeRoot::Float => any::<u32>().prop_map(|b| Datum::Float(f32::from_bits(b))).boxed(),
        TypeRoot::Double => any::<u64>().prop_map(|b| Datum::Double(f64::from_bits(b))).boxed(),
        TypeRoot::String => ".{0,20}".prop_map(Datum::String).boxed(),
        TypeRoot::Char { length } => prop::collection::vec(any::<char>(), 0..=length as usize)
            .prop_map(|chars| Datum::String(chars.into_iter().collect()))
            .boxed(),
        TypeRoot::Bytes => {
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Datum::Binary).boxed()
        }
        TypeRoot::Binary { length } => {
            prop::collection::vec(any::<u8>(), length as usize).prop_map(Datum::Binary).boxed()
        }
        TypeRoot::Decimal { precision, .. } => {
            let max = 10i128.pow(u32::from(precision)) - 1;
            (-max..=max).prop_map(Datum::Decimal).boxed()
        }
        TypeRoot::Date => any::<i32>().prop_map(Datum::Date).boxed(),
        TypeRoot::Time { .. } => (0..86_400_000i32).prop_map(Datum::Time).boxed(),
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision } => {
            // Whole units of the precision: what Arrow carries (finer nanos are truncated).
            let unit = 10u32.pow(9 - u32::from(precision.max(3)));
            (-9_000_000_000_000i64..9_000_000_000_000, 0..=999_999u32)
                .prop_map(move |(millis, nanos)| {
                    let nanos_of_milli = if precision <= 3 { 0 } else { nanos / unit * unit };
                    Datum::Timestamp(Timestamp { millis, nanos_of_milli })
                })
                .boxed()
        }
        TypeRoot::Array(element) => {
            prop::collection::vec(datum(*element), 0..4).prop_map(Datum::Array).boxed()
        }
        TypeRoot::Map { key, value: values } => {
            prop::collection::vec((value(key.root), datum(*values)), 0..4)
                .prop_map(Datum::Map)
                .boxed()
        }
        TypeRoot::Row(fields) => fields
            .into_iter()
            .map(|field| datum(field.data_type))
            .collect::<Vec<_>>()
            .prop_map(Datum::Row)
            .boxed(),
    }
}

fn datum(ty: DataType) -> BoxedStrategy<Datum> {
    if ty.nullable {
        prop_oneof![1 => Just(Datum::Null), 3 => value(ty.root.clone())].boxed()
    } else {
        value(ty.root.clone())
    }
}

fn row(types: &[DataType]) -> BoxedStrategy<Row> {
    types.iter().map(|t| datum(t.clone())).collect::<Vec<_>>().prop_map(Row).boxed()
}

fn types_and_rows() -> impl Strategy<Value = (Vec<DataType>, Vec<Row>)> {
    prop::collection::vec(value_data_type(), 1..12).prop_flat_map(|types| {
        let rows = prop::collection::vec(row(&types), 0..8);
        (Just(types), rows)
    })
}

fn columns(types: &[DataType]) -> Vec<Column> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| Column::new(i as i32, format!("c{i}"), t.clone()))
        .collect()
}

fn change_type() -> impl Strategy<Value = ChangeType> {
    prop::sample::select(vec![
        ChangeType::Insert,
        ChangeType::UpdateBefore,
        ChangeType::UpdateAfter,
        ChangeType::Delete,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compacted_row_round_trips((types, rows) in types_and_rows()) {
        for r in rows {
            let bytes = encode_row(&types, &r).unwrap();
            prop_assert_eq!(decode_row(&types, &bytes).unwrap(), r);
        }
    }

    #[test]
    fn keys_round_trip_and_buckets_are_in_range(
        (types, rows) in prop::collection::vec(type_root(), 1..5).prop_flat_map(|roots| {
            let types: Vec<DataType> = roots.into_iter().map(DataType::not_null).collect();
            let rows = prop::collection::vec(row(&types), 1..4);
            (Just(types), rows)
        }),
        buckets in 1i32..64,
    ) {
        for r in rows {
            let key = encode_key(&types, &r.0).unwrap();
            prop_assert_eq!(decode_key(&types, &key).unwrap(), r.0.clone());
            let b = bucket_of(&key, buckets).unwrap();
            prop_assert!((0..buckets).contains(&b));
        }
    }

    #[test]
    fn bucket_key_from_primary_key_matches_bucket_key_from_row(
        (types, rows) in prop::collection::vec(data_type(), 2..6).prop_flat_map(|types| {
            let rows = prop::collection::vec(row(&types), 1..4);
            (Just(types), rows)
        }),
        pk_len in 1usize..3,
        bk_len in 1usize..3,
    ) {
        let cols = columns(&types);
        let pk_len = pk_len.min(types.len());
        let pk: Vec<String> = (0..pk_len).rev().map(|i| format!("c{i}")).collect();
        let bk: Vec<String> = pk.iter().take(bk_len.min(pk_len)).cloned().collect();
        let schema = Schema::new(cols, pk).unwrap();
        let ts = TableSchema::new(3, &schema, &bk).unwrap();
        for mut r in rows {
            // Primary-key columns are NOT NULL: give NULLs a value.
            for &k in &ts.primary_key {
                if r.0[k].is_null() {
                    r.0[k] = match &ts.columns[k].data_type.root {
                        TypeRoot::Boolean => Datum::Boolean(true),
                        TypeRoot::TinyInt => Datum::TinyInt(1),
                        TypeRoot::SmallInt => Datum::SmallInt(1),
                        TypeRoot::Int => Datum::Int(1),
                        TypeRoot::BigInt => Datum::BigInt(1),
                        TypeRoot::Float => Datum::Float(1.0),
                        TypeRoot::Double => Datum::Double(1.0),
                        TypeRoot::String | TypeRoot::Char { .. } => Datum::String("x".into()),
                        TypeRoot::Binary { length } => Datum::Binary(vec![7; *length as usize]),
                        TypeRoot::Bytes => Datum::Binary(vec![7]),
                        TypeRoot::Decimal { .. } => Datum::Decimal(-1),
                        TypeRoot::Date => Datum::Date(-1),
                        TypeRoot::Time { .. } => Datum::Time(1),
                        TypeRoot::TimestampNtz { .. } | TypeRoot::TimestampLtz { .. } => {
                            Datum::Timestamp(Timestamp::from_millis(-1))
                        }
                        other => panic!("no key value for {other:?}"),
                    };
                }
            }
            let pk_bytes = primary_key_of_row(&ts, &r).unwrap();
            prop_assert_eq!(
                bucket_key_of_primary_key(&ts, &pk_bytes).unwrap(),
                bucket_key_of_row(&ts, &r).unwrap()
            );
        }
    }

    #[test]
    fn kv_batch_round_trips(
        records in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..20),
             prop::option::of(prop::collection::vec(any::<u8>(), 1..40))),
            0..20),
        schema_id in any::<i16>(),
        writer_id in any::<i64>(),
        seq in any::<i32>(),
    ) {
        let recs: Vec<KvRecord<'_>> = records
            .iter()
            .map(|(k, v)| KvRecord { key: k, value: v.as_deref() })
            .collect();
        let bytes = encode_kv_batch(schema_id, writer_id, seq, &recs).unwrap();
        let b = KvRecordBatch::decode(&bytes).unwrap();
        prop_assert_eq!(b.schema_id, schema_id);
        prop_assert_eq!(b.writer_id, writer_id);
        prop_assert_eq!(b.batch_sequence, seq);
        prop_assert_eq!(b.records, recs);
        // A batch followed by more bytes decodes as a prefix.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[9, 9]);
        let (_, used) = KvRecordBatch::decode_prefix(&longer).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert!(KvRecordBatch::decode(&longer).is_err());
    }

    #[test]
    fn value_batch_round_trips(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 0..20)) {
        let bytes = encode_value_batch(values.iter().map(Vec::as_slice)).unwrap();
        let decoded = decode_value_batch(&bytes).unwrap();
        prop_assert_eq!(decoded, values.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn log_batch_round_trips_with_projection(
        (types, rows) in types_and_rows(),
        kinds in prop::collection::vec(change_type(), 8),
        mask in any::<u16>(),
        base in 0i64..1 << 40,
        ts in any::<i64>(),
        schema_id in any::<i16>(),
    ) {
        let cols = columns(&types);
        let records: Vec<LogRecord> = rows
            .into_iter()
            .zip(kinds)
            .map(|(row, change_type)| LogRecord { change_type, row })
            .collect();
        let projection: Vec<usize> = (0..types.len()).filter(|i| mask & (1 << i) != 0).collect();
        let meta = LogBatchMeta::changelog(base, ts, schema_id);
        let bytes = encode_log_batch(&meta, &cols, Some(&projection), &records).unwrap();
        let projected = project_columns(&cols, Some(&projection)).unwrap();
        let (decoded, used) = decode_log_batch(&bytes, &projected).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded.header.base_offset, base);
        prop_assert_eq!(decoded.header.commit_timestamp, ts);
        prop_assert_eq!(decoded.header.schema_id, schema_id);
        prop_assert_eq!(decoded.header.record_count as usize, records.len());
        let expected: Vec<LogRecord> = records
            .iter()
            .map(|r| LogRecord { change_type: r.change_type, row: r.row.project(&projection).unwrap() })
            .collect();
        prop_assert_eq!(decoded.records, expected);
    }

    #[test]
    fn table_descriptor_json_round_trips(
        types in prop::collection::vec(value_data_type(), 1..8),
        pk_len in 0usize..3,
        buckets in prop::option::of(1i32..100),
        props in prop::collection::btree_map("[a-z.]{1,8}", ".{0,8}", 0..3),
    ) {
        let cols = columns(&types);
        let pk: Vec<String> = (0..pk_len.min(types.len())).map(|i| format!("c{i}")).collect();
        let schema = Schema::new(cols, pk.clone()).unwrap();
        let d = TableDescriptor {
            schema,
            comment: None,
            partition_keys: vec![],
            bucket_keys: pk,
            bucket_count: buckets,
            properties: props.clone(),
            custom_properties: props,
        };
        let text = d.to_json_string();
        prop_assert_eq!(TableDescriptor::from_json_str(&text).unwrap(), d);
    }
}
