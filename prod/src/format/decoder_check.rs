//! The decoder invariants the fuzz target `format_decoders` checks, here so that the tests
//! run them too: no decoder panics on any input, and whatever decodes re-encodes to
//! something that decodes to the same value. The first input byte picks the decoder; for
//! the checksummed batches a second variant fixes the CRC up so that the input gets past it.
//! [`check_put_kv_validation`] is the invariant of the fuzz target `put_kv_validation`.

use super::compacted_row::{decode_row, encode_row};
use super::data_type::{DataType, TypeRoot};
use super::key_encoding::{decode_key, encode_key, primary_key_of_row};
use super::kv_record_batch::{self, encode_kv_batch, KvRecordBatch, KvRecordBatchBuilder};
use super::log_record_batch::{
    self, decode_log_batch, encode_log_batch, ChangeType, LogBatchMeta, LogRecord,
};
use super::record_validator::RecordValidator;
use super::schema::{Column, Schema, TableDescriptor, TableSchema};
use super::value_record_batch::{decode_value_batch, encode_value_batch};

/// Every scalar sample, then every nested sample (ARRAY, MAP, ROW), so that the first
/// columns are the ones keys may have.
fn types() -> Vec<DataType> {
    TypeRoot::samples()
        .into_iter()
        .chain(TypeRoot::nested_samples())
        .enumerate()
        .map(|(i, root)| DataType { root, nullable: i % 3 != 0 })
        .collect()
}

fn columns() -> Vec<Column> {
    types()
        .into_iter()
        .enumerate()
        .map(|(i, t)| Column::new(i as i32, format!("c{i}"), t))
        .collect()
}

/// Runs one decoder on `input`; panics only if a round-trip invariant is broken.
pub fn check_decoders(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else { return };
    let types = types();
    match selector % 8 {
        0 | 1 => {
            let mut bytes = data.to_vec();
            if selector % 8 == 1 {
                let _ = kv_record_batch::recompute_crc(&mut bytes);
            }
            if let Ok(batch) = KvRecordBatch::decode(&bytes) {
                let again = encode_kv_batch(
                    batch.schema_id,
                    batch.writer_id,
                    batch.batch_sequence,
                    &batch.records,
                )
                .expect("re-encoding a decoded value");
                let re = KvRecordBatch::decode(&again).expect("re-encoding a decoded value");
                assert_eq!(re.records, batch.records);
            }
        }
        2 => {
            if let Ok(row) = decode_row(&types, data) {
                let again = encode_row(&types, &row).expect("re-encoding a decoded value");
                assert_eq!(decode_row(&types, &again).expect("re-encoding a decoded value"), row);
            }
        }
        3 => {
            let key_types: Vec<DataType> = types
                .iter()
                .filter(|t| t.root.allowed_in_keys())
                .map(|t| DataType::not_null(t.root.clone()))
                .collect();
            if let Ok(key) = decode_key(&key_types, data) {
                let again = encode_key(&key_types, &key).expect("re-encoding a decoded value");
                assert_eq!(
                    decode_key(&key_types, &again).expect("re-encoding a decoded value"),
                    key
                );
            }
        }
        4 => {
            if let Ok(values) = decode_value_batch(data) {
                let again = encode_value_batch(values.iter().copied())
                    .expect("re-encoding a decoded value");
                assert_eq!(again, data);
            }
        }
        5 | 6 => {
            let mut bytes = data.to_vec();
            if selector % 8 == 6 {
                let _ = log_record_batch::recompute_crc(&mut bytes);
            }
            let cols = columns();
            if let Ok((batch, _)) = decode_log_batch(&bytes, &cols) {
                let h = batch.header;
                let meta = LogBatchMeta {
                    base_offset: h.base_offset,
                    commit_timestamp: h.commit_timestamp,
                    schema_id: h.schema_id,
                    writer_id: h.writer_id,
                    batch_sequence: h.batch_sequence,
                    append_only: h.is_append_only(),
                };
                let again = encode_log_batch(&meta, &cols, None, &batch.records)
                    .expect("re-encoding a decoded value");
                let (re, _) = decode_log_batch(&again, &cols).expect("re-encoding a decoded value");
                assert_eq!(re.records, batch.records);
            }
        }
        _ => {
            if let Ok(d) = TableDescriptor::from_json_bytes(data) {
                assert_eq!(
                    TableDescriptor::from_json_str(&d.to_json_string())
                        .expect("re-encoding a decoded value"),
                    d
                );
            }
        }
    }
}

/// The schemas [`check_put_kv_validation`] picks from: every supported type (the nested ones
/// as value columns), with primary keys of one, two and three columns in various orders.
fn validation_schemas() -> Vec<TableSchema> {
    let names = |positions: &[usize]| positions.iter().map(|p| format!("c{p}")).collect();
    let wide = [vec![3], vec![7, 0], vec![4, 1, 2], vec![0, 1, 2, 3, 4, 5, 6, 7]]
        .into_iter()
        .filter_map(|key| Schema::new(columns(), names(&key)).ok());
    // An INT key and a few nested value columns: rows short enough for a fuzzer to complete.
    let nested = TypeRoot::nested_samples();
    let narrow = [vec![0, 2, 3], vec![4, 5], vec![6]].into_iter().filter_map(|picks| {
        let mut columns = vec![Column::new(0, "k", DataType::not_null(TypeRoot::Int))];
        for (i, pick) in picks.into_iter().enumerate() {
            let root = nested.get(pick)?.clone();
            columns.push(Column::new(i as i32 + 1, format!("n{i}"), DataType::nullable(root)));
        }
        Schema::new(columns, vec!["k".to_string()]).ok()
    });
    wide.chain(narrow)
        .enumerate()
        .filter_map(|(index, schema)| TableSchema::new(index as i16 + 1, &schema, &[]).ok())
        .collect()
}

/// PutKv validation on batches with a valid frame and CRC but arbitrary records: it never
/// panics, and what it accepts is what the readers can serve (every key decodes, every row
/// decodes and carries its record's key, the rows encode as a FetchLog batch).
///
/// The first byte picks the schema and the schema id the batch claims; then each record is a
/// flags byte (bit 0: a delete; bit 1: replace the key by the row's own key when the row
/// decodes, so that the row checks are reached), a key length byte, the key, a value length
/// byte and the value.
pub fn check_put_kv_validation(input: &[u8]) {
    let Some((&selector, mut data)) = input.split_first() else { return };
    let schemas = validation_schemas();
    let Some(schema) = schemas.get(usize::from(selector) % schemas.len()) else { return };
    let schema_id = if selector & 0x80 != 0 { schema.schema_id + 1 } else { schema.schema_id };
    let types = schema.data_types();
    let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    while let [flags, key_len, rest @ ..] = data {
        let key_len = usize::from(*key_len).min(rest.len());
        let (key, rest) = rest.split_at(key_len);
        let (value, rest) = match rest.split_first() {
            Some((&value_len, rest)) => rest.split_at(usize::from(value_len).min(rest.len())),
            None => (&[][..], rest),
        };
        data = rest;
        let mut key = key.to_vec();
        if flags & 2 != 0 {
            if let Ok(row) = decode_row(&types, value) {
                if let Ok(own_key) = primary_key_of_row(schema, &row) {
                    key = own_key;
                }
            }
        }
        let value = (flags & 1 == 0 && !value.is_empty()).then(|| value.to_vec());
        records.push((key, value));
    }
    let mut builder = KvRecordBatchBuilder::new(schema_id, -1, -1);
    for (key, value) in &records {
        builder.append(key, value.as_deref()).expect("any key and non-empty value append");
    }
    let bytes = builder.build().expect("a batch of short records builds");
    let batch = KvRecordBatch::decode(&bytes).expect("a built batch decodes");
    let validator = RecordValidator::new(schema).expect("every schema has a primary key");
    if validator.check_batch(&batch).is_err() {
        return;
    }
    assert_eq!(batch.schema_id, schema.schema_id, "another schema id was accepted");
    let key_types = schema.primary_key_types();
    let mut log_records = Vec::new();
    for record in &batch.records {
        decode_key(&key_types, record.key).expect("an accepted key decodes");
        let Some(value) = record.value else { continue };
        let row = decode_row(&types, value).expect("an accepted row decodes");
        assert_eq!(
            primary_key_of_row(schema, &row).expect("an accepted row has a key"),
            record.key,
            "an accepted row under another key"
        );
        log_records.push(LogRecord { change_type: ChangeType::Insert, row });
    }
    let meta = LogBatchMeta::changelog(0, 0, schema.schema_id);
    encode_log_batch(&meta, &schema.columns, None, &log_records)
        .expect("accepted rows encode as a changelog batch");
}
