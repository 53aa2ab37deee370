//! The decoder invariants the fuzz target `format_decoders` checks, here so that the tests
//! run them too: no decoder panics on any input, and whatever decodes re-encodes to
//! something that decodes to the same value. The first input byte picks the decoder; for
//! the checksummed batches a second variant fixes the CRC up so that the input gets past it.

use super::compacted_row::{decode_row, encode_row};
use super::data_type::{DataType, TypeRoot};
use super::key_encoding::{decode_key, encode_key};
use super::kv_record_batch::{self, encode_kv_batch, KvRecordBatch};
use super::log_record_batch::{self, decode_log_batch, encode_log_batch, LogBatchMeta};
use super::schema::{Column, TableDescriptor};
use super::value_record_batch::{decode_value_batch, encode_value_batch};

fn types() -> Vec<DataType> {
    TypeRoot::ALL
        .into_iter()
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
            let key_types: Vec<DataType> =
                types.iter().map(|t| DataType::not_null(t.root)).collect();
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
