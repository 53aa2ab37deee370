//! Partial updates of CompactedRow values: Fluss's `PartialUpdater`, behind `core`'s
//! [`PartialUpdateRule`] seam.
//!
//! A PutKv with target columns writes those columns only. The client sends whole rows with the
//! other columns NULL; the leader merges each into the key's current row:
//! - an upsert takes the targeted columns from the written row and the others from the old
//!   row (NULL for a new key); one that targets only the primary key leaves an existing row
//!   unchanged;
//! - a delete removes the row when every column it does not target is NULL, and otherwise sets
//!   its targeted non-key columns to NULL.
//!
//! The target columns must hold every primary-key column, and every column they omit must be
//! nullable (it is written as NULL), and a delete that would clear a NOT NULL column is
//! refused: `INVALID_TARGET_COLUMN` (35), before anything is written. (A written row that
//! leaves a targeted NOT NULL column NULL does not decode, and the PutKv's record check refuses
//! it as `CORRUPT_RECORD` first.)

use std::sync::Arc;

use kvtablet_core::kv::{KvError, MergedValue, PartialUpdateRule, RowMerger};

use super::compacted_row::{Datum, Row};
use super::data_type::DataType;
use super::row_format::RowFormat;
use super::schema::TableSchema;
use super::value_record_batch::{decode_stored_value, encode_stored_value};

/// The partial-update rule of a table of `schema`.
#[derive(Debug, Clone)]
pub struct CompactedPartialUpdates {
    schema: TableSchema,
}

impl CompactedPartialUpdates {
    pub fn new(schema: TableSchema) -> CompactedPartialUpdates {
        CompactedPartialUpdates { schema }
    }

    /// Checks `target_columns` against the schema: every primary-key column among them, each a
    /// column of the table and named once, every omitted column nullable.
    pub fn check_target_columns(&self, target_columns: &[u32]) -> Result<(), KvError> {
        let columns = &self.schema.columns;
        let name = |index: usize| columns.get(index).map_or("?", |c| c.name.as_str());
        if let Some(bad) = target_columns.iter().find(|index| **index as usize >= columns.len()) {
            return Err(KvError::InvalidTargetColumn(format!(
                "target column {bad} is not a column of the table ({} columns)",
                columns.len()
            )));
        }
        for (position, index) in target_columns.iter().enumerate() {
            if target_columns[..position].contains(index) {
                return Err(KvError::InvalidTargetColumn(format!(
                    "target column {} is named twice",
                    name(*index as usize)
                )));
            }
        }
        let targeted = |index: usize| target_columns.contains(&(index as u32));
        if let Some(missing) = self.schema.primary_key.iter().find(|index| !targeted(**index)) {
            return Err(KvError::InvalidTargetColumn(format!(
                "the target columns {:?} must contain the primary key column {}",
                target_columns.iter().map(|i| name(*i as usize)).collect::<Vec<_>>(),
                name(*missing)
            )));
        }
        if let Some((index, _)) = columns
            .iter()
            .enumerate()
            .find(|(index, column)| !targeted(*index) && !column.data_type.nullable)
        {
            return Err(KvError::InvalidTargetColumn(format!(
                "partial update requires every column omitted from the target columns to be \
                 nullable, but omitted column {} is NOT NULL",
                name(index)
            )));
        }
        Ok(())
    }
}

impl PartialUpdateRule for CompactedPartialUpdates {
    fn partial_updater(&self, target_columns: &[u32]) -> Result<Arc<dyn RowMerger>, KvError> {
        self.check_target_columns(target_columns)?;
        let column_count = self.schema.columns.len();
        let targeted: Vec<bool> =
            (0..column_count).map(|index| target_columns.contains(&(index as u32))).collect();
        let key_only = (0..column_count)
            .all(|index| targeted[index] == self.schema.primary_key.contains(&index));
        Ok(Arc::new(CompactedRowMerger {
            schema_id: self.schema.schema_id,
            row_format: self.schema.encoding.row_format,
            types: self.schema.data_types(),
            names: self.schema.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: self.schema.primary_key.clone(),
            targeted,
            key_only,
        }))
    }
}

/// One put's merger: the target columns resolved against the schema.
struct CompactedRowMerger {
    schema_id: i16,
    /// The table's value format: rows are decoded and re-encoded in it.
    row_format: RowFormat,
    types: Vec<DataType>,
    names: Vec<String>,
    primary_key: Vec<usize>,
    targeted: Vec<bool>,
    /// The target columns are exactly the primary key.
    key_only: bool,
}

impl CompactedRowMerger {
    fn decode(&self, value: &[u8]) -> Result<Row, KvError> {
        let corrupt = |detail: String| KvError::InvalidRecord(format!("stored row: {detail}"));
        let (schema_id, row) = decode_stored_value(value).map_err(|e| corrupt(e.to_string()))?;
        if schema_id != self.schema_id {
            return Err(corrupt(format!(
                "schema id {schema_id}, the table's is {}",
                self.schema_id
            )));
        }
        self.row_format.decode_row(&self.types, row).map_err(|e| corrupt(e.to_string()))
    }

    fn encode(&self, row: &Row) -> Result<Vec<u8>, KvError> {
        let bytes = self
            .row_format
            .encode_row(&self.types, row)
            .map_err(|error| KvError::InvalidTargetColumn(error.to_string()))?;
        Ok(encode_stored_value(self.schema_id, &bytes))
    }

    fn is_key(&self, index: usize) -> bool {
        self.primary_key.contains(&index)
    }
}

impl RowMerger for CompactedRowMerger {
    fn merge(&self, old: Option<&[u8]>, new: &[u8]) -> Result<MergedValue, KvError> {
        if self.key_only && old.is_some() {
            return Ok(MergedValue::Unchanged);
        }
        // A targeted NOT NULL column left NULL never gets here: the row does not decode.
        let new = self.decode(new)?;
        let old = old.map(|old| self.decode(old)).transpose()?;
        let merged = (0..self.types.len())
            .map(|index| {
                let source = if self.targeted[index] { Some(&new) } else { old.as_ref() };
                source.and_then(|row| row.get(index)).cloned().unwrap_or(Datum::Null)
            })
            .collect();
        Ok(MergedValue::Changed(self.encode(&Row::new(merged))?))
    }

    fn delete(&self, old: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let old = self.decode(old)?;
        let rest_is_null = (0..self.types.len())
            .all(|index| self.targeted[index] || old.get(index).is_none_or(Datum::is_null));
        if rest_is_null {
            return Ok(None);
        }
        let cleared = |index: usize| self.targeted[index] && !self.is_key(index);
        if let Some(index) = (0..self.types.len()).find(|i| cleared(*i) && !self.types[*i].nullable)
        {
            return Err(KvError::InvalidTargetColumn(format!(
                "a partial delete sets the target columns to NULL, but target column {} is \
                 NOT NULL",
                self.names[index]
            )));
        }
        let kept = (0..self.types.len())
            .map(|index| {
                if cleared(index) {
                    Datum::Null
                } else {
                    old.get(index).cloned().unwrap_or(Datum::Null)
                }
            })
            .collect();
        Ok(Some(self.encode(&Row::new(kept))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decode_row, encode_row, Column, Schema, TypeRoot};

    /// `id INT` (key), `name STRING`, `score BIGINT`, `tag STRING NOT NULL`.
    fn rule() -> CompactedPartialUpdates {
        let columns = vec![
            Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
            Column::new(1, "name", DataType::nullable(TypeRoot::String)),
            Column::new(2, "score", DataType::nullable(TypeRoot::BigInt)),
            Column::new(3, "tag", DataType::not_null(TypeRoot::String)),
        ];
        let schema = Schema::new(columns, vec!["id".to_string()]).expect("schema");
        CompactedPartialUpdates::new(TableSchema::new(1, &schema, &[]).expect("table schema"))
    }

    fn value(datums: Vec<Datum>) -> Vec<u8> {
        let rule = rule();
        encode_stored_value(1, &encode_row(&rule.schema.data_types(), &Row::new(datums)).unwrap())
    }

    fn row(value: &[u8]) -> Vec<Datum> {
        let (_, bytes) = decode_stored_value(value).unwrap();
        decode_row(&rule().schema.data_types(), bytes).unwrap().0
    }

    fn s(text: &str) -> Datum {
        Datum::String(text.to_string())
    }

    #[test]
    fn a_partial_upsert_keeps_what_it_does_not_target() {
        let merger = rule().partial_updater(&[0, 2, 3]).unwrap();
        let old = value(vec![Datum::Int(1), s("ann"), Datum::BigInt(5), s("a")]);
        let new = value(vec![Datum::Int(1), Datum::Null, Datum::BigInt(9), s("b")]);
        let MergedValue::Changed(merged) = merger.merge(Some(&old), &new).unwrap() else {
            panic!("changed")
        };
        assert_eq!(row(&merged), vec![Datum::Int(1), s("ann"), Datum::BigInt(9), s("b")]);
        let MergedValue::Changed(inserted) = merger.merge(None, &new).unwrap() else {
            panic!("changed")
        };
        assert_eq!(row(&inserted), vec![Datum::Int(1), Datum::Null, Datum::BigInt(9), s("b")]);
    }

    #[test]
    fn target_columns_are_refused_without_the_key_or_with_a_not_null_column_omitted() {
        let refused = |targets: &[u32]| {
            matches!(rule().partial_updater(targets), Err(KvError::InvalidTargetColumn(_)))
        };
        assert!(refused(&[1, 2, 3]), "the key column is missing");
        assert!(refused(&[0, 1]), "tag is NOT NULL and omitted");
        assert!(refused(&[0, 3, 3]), "named twice");
        assert!(refused(&[0, 3, 4]), "no column 4");
        assert!(!refused(&[0, 3]));
    }

    #[test]
    fn a_partial_delete_clears_its_columns_or_removes_a_row_with_nothing_else_left() {
        let merger = rule().partial_updater(&[0, 2, 3]).unwrap();
        let old = value(vec![Datum::Int(1), s("ann"), Datum::BigInt(5), s("a")]);
        // name is still set, and tag (targeted, NOT NULL) cannot be cleared.
        assert!(matches!(merger.delete(&old), Err(KvError::InvalidTargetColumn(_))));
        let without_name = value(vec![Datum::Int(1), Datum::Null, Datum::BigInt(5), s("a")]);
        assert_eq!(merger.delete(&without_name).unwrap(), None);
        let name_only = rule().partial_updater(&[0, 1, 3]).unwrap();
        let cleared = name_only.delete(&without_name);
        assert!(matches!(cleared, Err(KvError::InvalidTargetColumn(_))), "tag is NOT NULL");
    }

    #[test]
    fn a_partial_upsert_of_a_nested_column_keeps_the_other_nested_columns() {
        let tags = TypeRoot::Array(Box::new(DataType::nullable(TypeRoot::String)));
        let point = TypeRoot::Row(vec![
            crate::format::RowField::new("x", DataType::nullable(TypeRoot::BigInt)),
            crate::format::RowField::new("y", DataType::not_null(TypeRoot::String)),
        ]);
        let attrs = TypeRoot::Map {
            key: Box::new(DataType::not_null(TypeRoot::String)),
            value: Box::new(DataType::nullable(TypeRoot::Int)),
        };
        let columns = vec![
            Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
            Column::new(1, "tags", DataType::nullable(tags)),
            Column::new(2, "point", DataType::nullable(point)),
            Column::new(3, "attrs", DataType::nullable(attrs)),
        ];
        let schema = Schema::new(columns, vec!["id".to_string()]).unwrap();
        let rule = CompactedPartialUpdates::new(TableSchema::new(1, &schema, &[]).unwrap());
        let types = rule.schema.data_types();
        let encode = |datums: Vec<Datum>| {
            encode_stored_value(1, &encode_row(&types, &Row::new(datums)).unwrap())
        };
        let point = Datum::Row(vec![Datum::Null, s("origin")]);
        let attrs = Datum::Map(vec![(s("k"), Datum::Int(1)), (s("none"), Datum::Null)]);
        let old = encode(vec![
            Datum::Int(1),
            Datum::Array(vec![s("a"), Datum::Null]),
            point.clone(),
            attrs.clone(),
        ]);
        let new = encode(vec![Datum::Int(1), Datum::Array(vec![]), Datum::Null, Datum::Null]);
        let merger = rule.partial_updater(&[0, 1]).unwrap();
        let MergedValue::Changed(merged) = merger.merge(Some(&old), &new).unwrap() else {
            panic!("changed")
        };
        let (_, bytes) = decode_stored_value(&merged).unwrap();
        assert_eq!(
            decode_row(&types, bytes).unwrap().0,
            vec![Datum::Int(1), Datum::Array(vec![]), point, attrs]
        );
    }

    #[test]
    fn an_update_of_the_key_only_leaves_an_existing_row_unchanged() {
        let nullable_tag = {
            let columns = vec![
                Column::new(0, "id", DataType::not_null(TypeRoot::Int)),
                Column::new(1, "name", DataType::nullable(TypeRoot::String)),
            ];
            let schema = Schema::new(columns, vec!["id".to_string()]).unwrap();
            CompactedPartialUpdates::new(TableSchema::new(1, &schema, &[]).unwrap())
        };
        let merger = nullable_tag.partial_updater(&[0]).unwrap();
        let types = nullable_tag.schema.data_types();
        let old = encode_stored_value(
            1,
            &encode_row(&types, &Row::new(vec![Datum::Int(1), s("ann")])).unwrap(),
        );
        let new = encode_stored_value(
            1,
            &encode_row(&types, &Row::new(vec![Datum::Int(1), Datum::Null])).unwrap(),
        );
        assert_eq!(merger.merge(Some(&old), &new).unwrap(), MergedValue::Unchanged);
        let cleared = nullable_tag.partial_updater(&[0, 1]).unwrap().delete(&old).unwrap();
        assert_eq!(cleared, None, "name is targeted, nothing else is left");
    }
}
