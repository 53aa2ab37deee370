//! The simulated table's rows and their partial-update rule.
//!
//! A row has three columns: the key (column 0, the primary key) and two value columns, `a`
//! (1) and `b` (2). Stored as the schema id (2 bytes, little endian), then
//! `key|a|b`, a NULL column written as `~` (keys and tags hold neither `|` nor `~`). The key
//! comes first so that the oracles can read it back out of a scanned value.
//!
//! The rule is Fluss's `PartialUpdater`: an upsert writes the targeted columns and keeps the
//! others from the old row (NULL for a new key); an upsert that targets only the key leaves an
//! existing row unchanged; a delete removes the row when every column it does not target is
//! NULL, and otherwise sets the targeted value columns to NULL. The target columns must hold
//! the key. Both the tablet (through [`SimPartialUpdates`]) and the model apply this one
//! implementation: the oracle checks that `core` merged against the right old row and logged
//! the result, not the rule itself.

use std::sync::Arc;

use kvtablet_core::kv::{KvError, MergedValue, PartialUpdateRule, RowMerger};

use crate::client::SCHEMA_ID;

/// Columns of a row: the key, `a` and `b`.
pub const COLUMN_COUNT: usize = 3;
/// The key column: every partial update must target it.
pub const KEY_COLUMN: u32 = 0;
const NULL: &[u8] = b"~";
const SEPARATOR: u8 = b'|';

/// A full row: the key, and `tag` in both value columns.
pub fn full_row(key: &[u8], tag: &str) -> Vec<u8> {
    encode(&[Some(key), Some(tag.as_bytes()), Some(tag.as_bytes())])
}

/// The row a partial upsert sends: the key, `tag` in the targeted value columns, NULL in the
/// others.
pub fn partial_row(key: &[u8], tag: &str, target_columns: &[u32]) -> Vec<u8> {
    let column = |index: u32| target_columns.contains(&index).then_some(tag.as_bytes());
    encode(&[Some(key), column(1), column(2)])
}

fn encode(columns: &[Option<&[u8]>; COLUMN_COUNT]) -> Vec<u8> {
    let mut value = SCHEMA_ID.to_le_bytes().to_vec();
    for (index, column) in columns.iter().enumerate() {
        if index > 0 {
            value.push(SEPARATOR);
        }
        value.extend_from_slice(column.unwrap_or(NULL));
    }
    value
}

/// The columns of a stored row (`None` for NULL), or `None` if `value` is not a row.
fn decode(value: &[u8]) -> Option<[Option<&[u8]>; COLUMN_COUNT]> {
    let body = value.get(2..)?;
    let mut parts = body.split(|byte| *byte == SEPARATOR);
    let mut columns = [None; COLUMN_COUNT];
    for column in &mut columns {
        let part = parts.next()?;
        *column = (part != NULL).then_some(part);
    }
    parts.next().is_none().then_some(columns)
}

fn corrupt(value: &[u8]) -> KvError {
    KvError::InvalidRecord(format!("not a row of the simulated table: {value:?}"))
}

/// Checks a partial update's target columns as Fluss does: the key among them, each a
/// column of the table, none twice.
pub fn check_target_columns(target_columns: &[u32]) -> Result<(), KvError> {
    if !target_columns.contains(&KEY_COLUMN) {
        return Err(KvError::InvalidTargetColumn(format!(
            "the target columns {target_columns:?} must contain the primary key column {KEY_COLUMN}"
        )));
    }
    if let Some(bad) = target_columns.iter().find(|index| **index as usize >= COLUMN_COUNT) {
        return Err(KvError::InvalidTargetColumn(format!(
            "target column {bad} is not a column of the table ({COLUMN_COUNT} columns)"
        )));
    }
    let mut sorted = target_columns.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != target_columns.len() {
        return Err(KvError::InvalidTargetColumn(format!(
            "the target columns {target_columns:?} name a column twice"
        )));
    }
    Ok(())
}

/// An upsert of `new` over `old` that writes `target_columns` only.
pub fn merge(
    target_columns: &[u32],
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<MergedValue, KvError> {
    let new_columns = decode(new).ok_or_else(|| corrupt(new))?;
    let old_columns = match old {
        Some(old) => Some(decode(old).ok_or_else(|| corrupt(old))?),
        None => None,
    };
    if old_columns.is_some() && target_columns == [KEY_COLUMN] {
        return Ok(MergedValue::Unchanged);
    }
    let mut merged = [None; COLUMN_COUNT];
    for (index, column) in merged.iter_mut().enumerate() {
        *column = if target_columns.contains(&(index as u32)) {
            new_columns[index]
        } else {
            old_columns.and_then(|old| old[index])
        };
    }
    Ok(MergedValue::Changed(encode(&merged)))
}

/// What remains of `old` after a delete that targets `target_columns`: nothing when every
/// other column is NULL, else the row with its targeted value columns set to NULL.
pub fn delete(target_columns: &[u32], old: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
    let mut columns = decode(old).ok_or_else(|| corrupt(old))?;
    let targeted = |index: usize| target_columns.contains(&(index as u32));
    if (0..COLUMN_COUNT).all(|index| targeted(index) || columns[index].is_none()) {
        return Ok(None);
    }
    for (index, column) in columns.iter_mut().enumerate() {
        if targeted(index) && index as u32 != KEY_COLUMN {
            *column = None;
        }
    }
    Ok(Some(encode(&columns)))
}

/// The simulated table's [`PartialUpdateRule`].
#[derive(Debug, Default)]
pub struct SimPartialUpdates;

impl PartialUpdateRule for SimPartialUpdates {
    fn partial_updater(&self, target_columns: &[u32]) -> Result<Arc<dyn RowMerger>, KvError> {
        check_target_columns(target_columns)?;
        Ok(Arc::new(SimRowMerger { target_columns: target_columns.to_vec() }))
    }
}

struct SimRowMerger {
    target_columns: Vec<u32>,
}

impl RowMerger for SimRowMerger {
    fn merge(&self, old: Option<&[u8]>, new: &[u8]) -> Result<MergedValue, KvError> {
        merge(&self.target_columns, old, new)
    }

    fn delete(&self, old: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        delete(&self.target_columns, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(merged: MergedValue) -> Vec<u8> {
        match merged {
            MergedValue::Changed(value) => value,
            MergedValue::Unchanged => panic!("expected a change"),
        }
    }

    #[test]
    fn a_partial_upsert_keeps_the_columns_it_does_not_target() {
        let old = full_row(b"k", "t1");
        let new = partial_row(b"k", "t2", &[0, 2]);
        let merged = changed(merge(&[0, 2], Some(&old), &new).unwrap());
        assert_eq!(decode(&merged).unwrap(), [Some(&b"k"[..]), Some(&b"t1"[..]), Some(&b"t2"[..])]);
    }

    #[test]
    fn a_partial_upsert_of_a_new_key_leaves_the_other_columns_null() {
        let new = partial_row(b"k", "t2", &[0, 1]);
        let merged = changed(merge(&[0, 1], None, &new).unwrap());
        assert_eq!(decode(&merged).unwrap(), [Some(&b"k"[..]), Some(&b"t2"[..]), None]);
    }

    #[test]
    fn an_upsert_of_the_key_only_leaves_an_existing_row_unchanged() {
        let old = full_row(b"k", "t1");
        let new = partial_row(b"k", "t2", &[0]);
        assert_eq!(merge(&[0], Some(&old), &new).unwrap(), MergedValue::Unchanged);
    }

    #[test]
    fn a_partial_delete_clears_its_columns_and_removes_the_row_once_the_rest_is_null() {
        let old = full_row(b"k", "t1");
        let cleared = delete(&[0, 1], &old).unwrap().expect("b still holds a value");
        assert_eq!(decode(&cleared).unwrap(), [Some(&b"k"[..]), None, Some(&b"t1"[..])]);
        assert_eq!(delete(&[0, 2], &cleared).unwrap(), None);
    }

    #[test]
    fn target_columns_without_the_key_or_outside_the_table_are_refused() {
        for bad in [&[1u32][..], &[0, 3], &[0, 1, 1], &[]] {
            assert!(matches!(
                SimPartialUpdates.partial_updater(bad),
                Err(KvError::InvalidTargetColumn(_))
            ));
        }
        assert!(SimPartialUpdates.partial_updater(&[0, 1, 2]).is_ok());
    }
}
