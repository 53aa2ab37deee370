//! `table.kv.format`: how a primary-key table's values are stored and sent, CompactedRow (the
//! default) or IndexedRow. Every path that decodes or builds a value goes through here.

use super::compacted_row::{decode_row, encode_row, Row};
use super::data_type::DataType;
use super::error::{FormatError, SchemaError};
use super::indexed_row::{decode_indexed_row, encode_indexed_row};

/// The table property naming the value format.
pub const PROP_KV_FORMAT: &str = "table.kv.format";

/// The value format of a table (Fluss's `KvFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RowFormat {
    #[default]
    Compacted,
    Indexed,
}

impl RowFormat {
    /// Parses a property value, ignoring ASCII case (as Fluss's configuration does).
    pub fn parse(value: &str) -> Result<RowFormat, SchemaError> {
        match value.to_ascii_uppercase().as_str() {
            "COMPACTED" => Ok(RowFormat::Compacted),
            "INDEXED" => Ok(RowFormat::Indexed),
            _ => Err(SchemaError::InvalidProperty {
                key: PROP_KV_FORMAT,
                value: value.to_string(),
                allowed: "COMPACTED or INDEXED",
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RowFormat::Compacted => "COMPACTED",
            RowFormat::Indexed => "INDEXED",
        }
    }

    /// Decodes a row that must fill `bytes` exactly.
    pub fn decode_row(self, types: &[DataType], bytes: &[u8]) -> Result<Row, FormatError> {
        match self {
            RowFormat::Compacted => decode_row(types, bytes),
            RowFormat::Indexed => decode_indexed_row(types, bytes),
        }
    }

    /// Encodes a row; NULL in a NOT NULL column or a value of the wrong type is refused.
    pub fn encode_row(self, types: &[DataType], row: &Row) -> Result<Vec<u8>, FormatError> {
        match self {
            RowFormat::Compacted => encode_row(types, row),
            RowFormat::Indexed => encode_indexed_row(types, row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_formats_parse_in_any_case_and_others_are_refused() {
        assert_eq!(RowFormat::parse("COMPACTED").unwrap(), RowFormat::Compacted);
        assert_eq!(RowFormat::parse("indexed").unwrap(), RowFormat::Indexed);
        assert!(matches!(
            RowFormat::parse("ALIGNED"),
            Err(SchemaError::InvalidProperty { key: PROP_KV_FORMAT, .. })
        ));
    }
}
