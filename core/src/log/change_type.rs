//! The kind of a changelog record.

/// Fluss's `ChangeType`, with its byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeType {
    /// `+A`: a row of an append-only log table.
    AppendOnly,
    /// `+I`: a key that did not exist now has a value.
    Insert,
    /// `-U`: the old value of an updated key; always followed by its `+U`.
    UpdateBefore,
    /// `+U`: the new value of an updated key.
    UpdateAfter,
    /// `-D`: a key was deleted; the record carries the value it had.
    Delete,
}

impl ChangeType {
    pub fn to_byte(self) -> u8 {
        match self {
            ChangeType::AppendOnly => 0,
            ChangeType::Insert => 1,
            ChangeType::UpdateBefore => 2,
            ChangeType::UpdateAfter => 3,
            ChangeType::Delete => 4,
        }
    }

    pub fn from_byte(byte: u8) -> Option<ChangeType> {
        match byte {
            0 => Some(ChangeType::AppendOnly),
            1 => Some(ChangeType::Insert),
            2 => Some(ChangeType::UpdateBefore),
            3 => Some(ChangeType::UpdateAfter),
            4 => Some(ChangeType::Delete),
            _ => None,
        }
    }

    /// Fluss's short form: `+I`, `-U`, `+U`, `-D`, `+A`.
    pub fn short_name(self) -> &'static str {
        match self {
            ChangeType::AppendOnly => "+A",
            ChangeType::Insert => "+I",
            ChangeType::UpdateBefore => "-U",
            ChangeType::UpdateAfter => "+U",
            ChangeType::Delete => "-D",
        }
    }

    /// The value a key holds after this record, if the record changes it.
    pub fn sets_value(self) -> bool {
        matches!(self, ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly)
    }
}
