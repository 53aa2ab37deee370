//! Errors of the byte formats and of the schema JSON. Decoding never panics: every malformed
//! input becomes one of these.

use kvtablet_core::error::{ApiError, ErrorCode};

/// A record, row or batch could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The input ended before a field that must be there.
    #[error("truncated {what}: need {needed} bytes, {available} available")]
    Truncated { what: &'static str, needed: usize, available: usize },
    /// The stored CRC-32C does not match the bytes it covers.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A magic byte this implementation does not know.
    #[error("unsupported magic {0}")]
    UnsupportedMagic(u8),
    /// Anything else that is structurally wrong with the bytes.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A value handed to an encoder does not fit the schema (a caller error, not bad bytes).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// Arrow refused to build or read a batch.
    #[error("arrow: {0}")]
    Arrow(String),
}

impl FormatError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Corrupt { what, detail: detail.into() }
    }

    /// The Fluss error a server answers with when a client sent these bytes: bad input is
    /// `CORRUPT_RECORD` (14); an encoder refusing our own value is a server bug.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            FormatError::InvalidValue(_) | FormatError::Arrow(_) => ErrorCode::UnknownServerError,
            _ => ErrorCode::CorruptRecord,
        }
    }

    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(self.error_code(), self.to_string())
    }
}

/// The table JSON or a schema is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid json: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("unknown data type `{0}`")]
    UnknownType(String),
    #[error("{type_name} {parameter} {value} is outside {min}..={max}")]
    InvalidTypeParameter {
        type_name: &'static str,
        parameter: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("data types nest deeper than {max} levels")]
    NestedTooDeep { max: usize },
    #[error("a ROW type with {count} fields; at most {max}")]
    TooManyRowFields { count: usize, max: usize },
    /// Fluss's `TableDescriptorValidation` message for a key column of a nested type.
    #[error(
        "{key_kind} column '{column}' has unsupported data type {type_name}. Currently, {} \
         column does not support types: [ARRAY, MAP, ROW].",
        .key_kind.to_lowercase()
    )]
    KeyTypeNotAllowed { key_kind: &'static str, column: String, type_name: &'static str },
    #[error("unknown column `{0}`")]
    UnknownColumn(String),
    #[error("duplicate column `{0}`")]
    DuplicateColumn(String),
    #[error("invalid schema: {0}")]
    Invalid(String),
    #[error("{0} are not supported by this server")]
    UnsupportedFeature(&'static str),
    #[error("{key}={value} is not supported; only {allowed}")]
    InvalidProperty { key: &'static str, value: String, allowed: &'static str },
    /// The table's options and its key or value columns do not go together.
    #[error("{0}")]
    UnsupportedEncoding(String),
}
