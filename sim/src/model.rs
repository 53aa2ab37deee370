//! The reference model: every bucket's state by log offset, rebuilt from the changelog itself
//! (the simulator's god view of the shared log), with the changelog checked for consistency as
//! it is read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kvtablet_core::kv::{KvError, MergedValue};
use kvtablet_core::log::{ChangeType, LogBatch, LogTablet, WriterBatch};
use kvtablet_core::message::KvWrite;
use kvtablet_core::TableBucket;

use crate::sim_row;

/// Every change to a key, as `(offset of the record, value after it)`; the state at offset `o`
/// holds every change whose record offset is below `o`.
type KeyHistory = Vec<(u64, Option<Vec<u8>>)>;

#[derive(Debug, Default)]
struct BucketModel {
    /// The log has been read up to here (exclusive).
    read_offset: u64,
    history: BTreeMap<Vec<u8>, KeyHistory>,
    /// State at `read_offset`.
    current: BTreeMap<Vec<u8>, Vec<u8>>,
    last_epoch: u32,
    /// The highest flushed offset any current leader has reported; never goes back.
    flushed_floor: u64,
    /// Where each writer batch was appended: no batch may land twice.
    writer_batches: BTreeMap<WriterBatch, u64>,
    /// Every batch the model has read, by base offset: what later logs must still hold.
    batches: BTreeMap<u64, LogBatch>,
}

/// The model of all buckets. A violation found while reading the log is returned as text.
#[derive(Debug, Default)]
pub struct Model {
    buckets: BTreeMap<TableBucket, BucketModel>,
}

impl Model {
    pub fn new() -> Self {
        Model::default()
    }

    /// Reads whatever the log holds beyond what the model has seen, checking that the
    /// changelog is self-consistent and that epochs never go backwards.
    /// What retention deleted locally is read from the remote tier, through `tiered` (the
    /// batches from an offset on, of the remote segment that holds it).
    pub fn catch_up(
        &mut self,
        log: &LogTablet,
        tiered: &dyn Fn(u64) -> Result<Vec<LogBatch>, String>,
    ) -> Result<(), String> {
        let bucket = log.bucket();
        let model = self.buckets.entry(bucket).or_default();
        let end = log.log_end_offset();
        while model.read_offset < end {
            let batches = if model.read_offset < log.log_start_offset() {
                tiered(model.read_offset).map_err(|e| {
                    format!("{bucket}: the changelog lost data the model had not read: {e}")
                })?
            } else {
                log.read(model.read_offset, 1024 * 1024).map_err(|e| {
                    format!("{bucket}: the changelog lost data the model had not read: {e}")
                })?
            };
            if batches.is_empty() {
                return Err(format!(
                    "{bucket}: log read at {} returned nothing",
                    model.read_offset
                ));
            }
            for batch in batches {
                model.apply(bucket, batch)?;
            }
        }
        Ok(())
    }

    /// Checks that `log` (the bucket's log at quiescence, on whichever replica leads then)
    /// still holds every batch the model read, unchanged: a committed batch is never lost or
    /// rewritten, whichever replica it was read from.
    pub fn check_history(&self, log: &LogTablet) -> Result<(), String> {
        let bucket = log.bucket();
        let Some(model) = self.buckets.get(&bucket) else { return Ok(()) };
        if log.log_end_offset() < model.read_offset {
            return Err(format!(
                "{bucket}: the log ends at {} but offsets up to {} were committed and read: acknowledged data lost",
                log.log_end_offset(),
                model.read_offset
            ));
        }
        let start = log.log_start_offset();
        let mut offset = model.batches.range(start..).next().map_or(model.read_offset, |(b, _)| *b);
        while offset < model.read_offset {
            let batches = log
                .read(offset, 1024 * 1024)
                .map_err(|e| format!("{bucket}: log unreadable at quiescence at {offset}: {e}"))?;
            if batches.is_empty() {
                return Err(format!("{bucket}: log read at {offset} returned nothing"));
            }
            for batch in batches.iter().take_while(|batch| batch.base_offset < model.read_offset) {
                match model.batches.get(&batch.base_offset) {
                    Some(seen) if seen == batch => {}
                    Some(seen) => {
                        return Err(format!(
                            "{bucket}: the batch at {} changed after it was committed (epoch {} -> {}, {} -> {} records): acknowledged data lost",
                            batch.base_offset,
                            seen.leader_epoch,
                            batch.leader_epoch,
                            seen.records.len(),
                            batch.records.len()
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{bucket}: the log holds a batch at {} where none began",
                            batch.base_offset
                        ))
                    }
                }
                offset = batch.end_offset();
            }
        }
        Ok(())
    }

    /// Checks that the batches of a remote segment are, one for one, the batches the model
    /// read at their offsets.
    pub fn check_tiered(&self, bucket: TableBucket, batches: &[LogBatch]) -> Result<(), String> {
        let Some(model) = self.buckets.get(&bucket) else { return Ok(()) };
        for batch in batches {
            if batch.base_offset >= model.read_offset {
                return Err(format!(
                    "{bucket}: the remote tier holds a batch at {}, beyond the committed log the model read ({})",
                    batch.base_offset, model.read_offset
                ));
            }
            match model.batches.get(&batch.base_offset) {
                Some(seen) if seen == batch => {}
                Some(_) => {
                    return Err(format!(
                        "{bucket}: the remote tier's batch at {} differs from the committed one",
                        batch.base_offset
                    ))
                }
                None => {
                    return Err(format!(
                        "{bucket}: the remote tier holds a batch at {} where none began",
                        batch.base_offset
                    ))
                }
            }
        }
        Ok(())
    }

    /// The log end as the model has read it.
    pub fn read_offset(&self, bucket: TableBucket) -> u64 {
        self.buckets.get(&bucket).map_or(0, |m| m.read_offset)
    }

    /// The key's value at `offset`, borrowed from the model.
    pub fn value_at(&self, bucket: TableBucket, key: &[u8], offset: u64) -> Option<&[u8]> {
        let history = self.buckets.get(&bucket)?.history.get(key)?;
        value_in(history, offset).map(Vec::as_slice)
    }

    /// Keys and values at `offset`, in key order, as copies.
    pub fn state_at(&self, bucket: TableBucket, offset: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.rows_at(bucket, offset).map(|(key, value)| (key.to_vec(), value.to_vec())).collect()
    }

    /// Keys and values at `offset`, in key order, borrowed from the model: a check that only
    /// compares rows walks the histories once and copies nothing.
    pub fn rows_at(
        &self,
        bucket: TableBucket,
        offset: u64,
    ) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.buckets.get(&bucket).into_iter().flat_map(move |model| {
            model.history.iter().filter_map(move |(key, changes)| {
                Some((key.as_slice(), value_in(changes, offset)?.as_slice()))
            })
        })
    }

    /// Whether `rows` (in key order) are exactly the keys and values at `offset`.
    pub fn state_is<'a>(
        &self,
        bucket: TableBucket,
        offset: u64,
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> bool {
        let mut expected = self.rows_at(bucket, offset);
        rows.into_iter().all(|row| expected.next() == Some(row)) && expected.next().is_none()
    }

    /// Records a flushed offset seen on a current leader; returns the floor after it.
    pub fn raise_flushed_floor(&mut self, bucket: TableBucket, flushed_offset: u64) -> u64 {
        let model = self.buckets.entry(bucket).or_default();
        model.flushed_floor = model.flushed_floor.max(flushed_offset);
        model.flushed_floor
    }

    pub fn flushed_floor(&self, bucket: TableBucket) -> u64 {
        self.buckets.get(&bucket).map_or(0, |m| m.flushed_floor)
    }

    /// Checks that an acknowledged put is in the log at the offsets the server reported: the
    /// model's state at `end_offset` is its state at `base_offset` with `writes` applied.
    pub fn check_acked_put(
        &self,
        bucket: TableBucket,
        writes: &[KvWrite],
        target_columns: Option<&[u32]>,
        base_offset: u64,
        end_offset: u64,
    ) -> Result<(), String> {
        if end_offset <= base_offset || end_offset > self.read_offset(bucket) {
            return Err(format!(
                "{bucket}: put acknowledged at [{base_offset}, {end_offset}) but the log holds up to {}",
                self.read_offset(bucket)
            ));
        }
        // Every key's value at the end is its value at the base, or what the put's writes made
        // of it in order (the last one, unless a partial update merged them into the row).
        // Compared key by key through borrowed histories: this runs for every acknowledgement.
        let empty = BTreeMap::new();
        let history = self.buckets.get(&bucket).map_or(&empty, |model| &model.history);
        let mut written: BTreeMap<&[u8], Option<Cow<'_, [u8]>>> = BTreeMap::new();
        for write in writes {
            let value = match target_columns {
                None => write.value.as_deref().map(Cow::Borrowed),
                Some(targets) => {
                    let before: Option<Cow<'_, [u8]>> = match written.get(write.key.as_slice()) {
                        Some(value) => value.clone(),
                        None => history
                            .get(&write.key)
                            .and_then(|changes| value_in(changes, base_offset))
                            .map(|value| Cow::Borrowed(value.as_slice())),
                    };
                    merged(targets, before, write.value.as_deref())
                        .map_err(|error| format!("{bucket}: the model cannot merge: {error}"))?
                }
            };
            written.insert(write.key.as_slice(), value);
        }
        let mismatch = history.iter().find(|(key, changes)| {
            let expected = match written.get(key.as_slice()) {
                Some(value) => value.as_deref(),
                None => value_in(changes, base_offset).map(Vec::as_slice),
            };
            value_in(changes, end_offset).map(Vec::as_slice) != expected
        });
        let unlogged =
            written.iter().find(|(key, value)| value.is_some() && !history.contains_key(**key));
        if mismatch.is_some() || unlogged.is_some() {
            return Err(format!(
                "{bucket}: acknowledged put at [{base_offset}, {end_offset}) is not what the log holds there"
            ));
        }
        Ok(())
    }
}

impl BucketModel {
    /// Applies `batch`, then keeps it (moved, not copied) among the batches read.
    fn apply(&mut self, bucket: TableBucket, batch: LogBatch) -> Result<(), String> {
        if batch.base_offset != self.read_offset {
            return Err(format!(
                "{bucket}: batch at {} after offset {}",
                batch.base_offset, self.read_offset
            ));
        }
        if batch.leader_epoch < self.last_epoch {
            return Err(format!(
                "{bucket}: write accepted under stale epoch {} after epoch {} (offset {})",
                batch.leader_epoch, self.last_epoch, batch.base_offset
            ));
        }
        self.last_epoch = batch.leader_epoch;
        if let Some(writer) = batch.writer {
            // The same batch read again (its first reading stopped at an inconsistent
            // record) is not a second append.
            let first = self.writer_batches.insert(writer, batch.base_offset);
            if let Some(first) = first.filter(|first| *first != batch.base_offset) {
                return Err(format!(
                    "{bucket}: batch {} of writer {:#x} appended twice, at {first} and {}",
                    writer.batch_sequence, writer.writer_id, batch.base_offset
                ));
            }
        }
        let mut pending_update: Option<&[u8]> = None;
        for record in &batch.records {
            let key = record.key.as_slice();
            let current = self.current.get(key);
            let consistent = match record.change_type {
                ChangeType::Insert => current.is_none() && pending_update.is_none(),
                ChangeType::UpdateBefore => {
                    current == Some(&record.value) && pending_update.is_none()
                }
                ChangeType::UpdateAfter => pending_update == Some(key),
                ChangeType::Delete => current == Some(&record.value) && pending_update.is_none(),
                ChangeType::AppendOnly => false,
            };
            if !consistent {
                return Err(format!(
                    "{bucket}: inconsistent changelog at offset {}: {} of key {:?} while the key holds {:?}",
                    record.offset,
                    record.change_type.short_name(),
                    String::from_utf8_lossy(key),
                    current.map(|v| String::from_utf8_lossy(v).into_owned())
                ));
            }
            pending_update = (record.change_type == ChangeType::UpdateBefore).then_some(key);
            let new_value = match record.change_type {
                ChangeType::Insert | ChangeType::UpdateAfter => Some(record.value.clone()),
                ChangeType::Delete => None,
                ChangeType::UpdateBefore | ChangeType::AppendOnly => continue,
            };
            // Keys are copied only when they are new to a map.
            let change = (record.offset, new_value.clone());
            match self.history.get_mut(key) {
                Some(changes) => changes.push(change),
                None => {
                    self.history.insert(key.to_vec(), vec![change]);
                }
            }
            match (new_value, self.current.get_mut(key)) {
                (Some(value), Some(slot)) => *slot = value,
                (Some(value), None) => {
                    self.current.insert(key.to_vec(), value);
                }
                (None, _) => {
                    self.current.remove(key);
                }
            }
        }
        if pending_update.is_some() {
            return Err(format!(
                "{bucket}: batch at {} ends inside an update pair",
                batch.base_offset
            ));
        }
        self.read_offset = batch.end_offset();
        self.batches.insert(batch.base_offset, batch);
        Ok(())
    }
}

/// The value a key's history gives it at `offset`: the last change that took effect strictly
/// below it.
fn value_in(history: &KeyHistory, offset: u64) -> Option<&Vec<u8>> {
    let index = history.partition_point(|(at, _)| *at < offset);
    history.get(index.checked_sub(1)?)?.1.as_ref()
}

/// A partial update's write applied to `before` (the key's value, if any), by the simulated
/// table's rule: `None` when the key ends up absent.
fn merged<'a>(
    target_columns: &[u32],
    before: Option<Cow<'a, [u8]>>,
    new: Option<&[u8]>,
) -> Result<Option<Cow<'a, [u8]>>, KvError> {
    Ok(match (new, before) {
        (Some(new), before) => match sim_row::merge(target_columns, before.as_deref(), new)? {
            MergedValue::Unchanged => before,
            MergedValue::Changed(value) => Some(Cow::Owned(value)),
        },
        (None, Some(old)) => sim_row::delete(target_columns, &old)?.map(Cow::Owned),
        (None, None) => None,
    })
}
