//! The byte form of a primary key or bucket key: Fluss's compacted key encoding, or a lake
//! format's (`KeyEncoder.of`: Paimon's BinaryRow, Iceberg's single value; Lance keeps the
//! compacted one). Which one a table's primary key and bucket key use is
//! [`TableEncoding`](super::table_encoding::TableEncoding)'s choice.

use super::compacted_row::Datum;
use super::data_type::{DataType, TypeRoot};
use super::error::FormatError;
use super::iceberg_key::{decode_iceberg_key, encode_iceberg_key, unsupported_in_iceberg_key};
use super::key_encoding::{decode_key, encode_key};
use super::paimon_key::{decode_paimon_key, encode_paimon_key, unsupported_in_paimon_key};

/// A key encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyFormat {
    /// The compacted field encoding of each column, no null bit-set (`CompactedKeyEncoder`).
    #[default]
    Compacted,
    /// Paimon's BinaryRow of the key columns (`PaimonKeyEncoder`).
    Paimon,
    /// Iceberg's binary form of the one key column (`IcebergKeyEncoder`).
    Iceberg,
}

impl KeyFormat {
    /// Encodes key values (one per key column, none NULL).
    pub fn encode(self, types: &[DataType], values: &[Datum]) -> Result<Vec<u8>, FormatError> {
        match self {
            KeyFormat::Compacted => encode_key(types, values),
            KeyFormat::Paimon => encode_paimon_key(types, values),
            KeyFormat::Iceberg => encode_iceberg_key(types, values),
        }
    }

    /// Decodes key bytes that must be exactly the key columns. The lake formats also refuse
    /// bytes that are not the canonical encoding of what they hold.
    pub fn decode(self, types: &[DataType], bytes: &[u8]) -> Result<Vec<Datum>, FormatError> {
        match self {
            KeyFormat::Compacted => decode_key(types, bytes),
            KeyFormat::Paimon => decode_paimon_key(types, bytes),
            KeyFormat::Iceberg => decode_iceberg_key(types, bytes),
        }
    }

    /// Why a key of columns of these types has no encoding in this format, if it has none.
    pub fn unsupported(self, types: &[&TypeRoot]) -> Option<String> {
        match self {
            KeyFormat::Compacted => None,
            KeyFormat::Paimon => types.iter().find_map(|ty| unsupported_in_paimon_key(ty)),
            KeyFormat::Iceberg => unsupported_in_iceberg_key(types),
        }
    }
}
