//! How a write combines with the value its key already holds.
//!
//! Values are opaque to `core`, so the rule of a partial update (which columns a write
//! targets, how a row is decoded) belongs to whoever knows the table's schema: production's
//! compacted-row merger, the simulator's own row format. `core` applies the rule at the one
//! place where the key's latest value is known, under the tablet's put lock: a merge against
//! anything older (the engine while the pre-write buffer holds a newer value, or no value at
//! all) would silently overwrite columns the write did not target.
//!
//! Fluss's shape (`RowMerger`, `PartialUpdater`): an upsert is merged with the old value (none
//! for a new key) and logged as `+I`, or as `-U`/`+U` unless the merger answers that nothing
//! changed; a delete of a present key asks the merger what remains (nothing: `-D`; a row with
//! the targeted columns cleared: `-U`/`+U`); a delete of a missing key logs nothing.

use std::fmt;
use std::sync::Arc;

use crate::kv::kv_error::KvError;

/// What an upsert leaves in its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergedValue {
    /// The old value stays as it is: nothing is logged (Fluss: an update of the primary key
    /// columns only).
    Unchanged,
    /// The key's new value.
    Changed(Vec<u8>),
}

/// The merge rule of one put (a partial update's target columns are fixed for the request).
pub trait RowMerger: Send + Sync {
    /// The value after upserting `new` over `old` (`None` for a new key).
    fn merge(&self, old: Option<&[u8]>, new: &[u8]) -> Result<MergedValue, KvError>;
    /// What remains of `old` after a delete of its key: `None` removes the key.
    fn delete(&self, old: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
}

/// A table's partial updates: makes the merger of a put that targets `target_columns`
/// (indexes into the table's columns), or refuses them (`KvError::InvalidTargetColumn`).
pub trait PartialUpdateRule: Send + Sync {
    fn partial_updater(&self, target_columns: &[u32]) -> Result<Arc<dyn RowMerger>, KvError>;
}

/// A table's [`PartialUpdateRule`], as a table's configuration holds it (compared by
/// identity).
#[derive(Clone)]
pub struct PartialUpdates(pub Arc<dyn PartialUpdateRule>);

impl fmt::Debug for PartialUpdates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartialUpdates(..)")
    }
}

impl PartialEq for PartialUpdates {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PartialUpdates {}
