//! An atomic group of engine writes.

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

/// Writes applied all or nothing, optionally with the changelog offset they bring the engine
/// up to. Storing that offset in the same atomic write is what lets a restart replay the
/// changelog from exactly the right place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    flushed_log_offset: Option<u64>,
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch::default()
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put { key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete { key: key.into() });
    }

    /// Marks the engine as holding every change below `offset` once this batch lands.
    pub fn set_flushed_log_offset(&mut self, offset: u64) {
        self.flushed_log_offset = Some(offset);
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    pub fn flushed_log_offset(&self) -> Option<u64> {
        self.flushed_log_offset
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.flushed_log_offset.is_none()
    }
}
