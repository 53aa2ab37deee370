//! The table options that change bytes but not meaning: `table.kv.format` (how values are
//! stored), `table.datalake.format` (how keys are encoded and assigned to buckets, even with
//! lake tiering off) and `table.kv.format-version` (whether the primary key follows the lake
//! format). Fluss's `KeyEncoder.ofPrimaryKeyEncoder` / `ofBucketKeyEncoder` and
//! `BucketingFunction.of`, as fluss-rs 1.0.0 (`row/encode/mod.rs`) implements them:
//! - the bucket key is always in the lake format's key encoding;
//! - the primary key is too with format version 1, and with version 2 when the bucket key is
//!   the (physical) primary key; with version 2 and a bucket key that is a part of the
//!   primary key, the primary key is compacted (so that the compacted bucket-key columns are
//!   a byte prefix of it, for prefix lookups).

use std::collections::BTreeMap;

use super::bucket_function::BucketFunction;
use super::data_type::TypeRoot;
use super::error::SchemaError;
use super::indexed_row::unsupported_in_indexed_row;
use super::key_format::KeyFormat;
use super::lake_format::{LakeFormat, PROP_DATALAKE_FORMAT};
use super::row_format::{RowFormat, PROP_KV_FORMAT};
use super::schema::TableDescriptor;

/// The table property naming the KV format version.
pub const PROP_KV_FORMAT_VERSION: &str = "table.kv.format-version";

/// A table's encoding options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableEncoding {
    pub row_format: RowFormat,
    pub lake_format: Option<LakeFormat>,
    /// 1 or 2; a table without the property is version 1, as the clients read it.
    pub kv_format_version: u8,
}

impl Default for TableEncoding {
    /// CompactedRow values, no lake format, version 2 (what a new table gets).
    fn default() -> Self {
        TableEncoding { row_format: RowFormat::Compacted, lake_format: None, kv_format_version: 2 }
    }
}

impl TableEncoding {
    /// The options a stored table's properties set; a value no client understands is an
    /// error.
    pub fn from_properties(
        properties: &BTreeMap<String, String>,
    ) -> Result<TableEncoding, SchemaError> {
        Self::parse(properties, 1)
    }

    /// The options of a table being created: without a format version it gets version 2
    /// (the catalog adds the property, as Fluss's coordinator does).
    pub fn for_new_table(
        properties: &BTreeMap<String, String>,
    ) -> Result<TableEncoding, SchemaError> {
        Self::parse(properties, 2)
    }

    fn parse(
        properties: &BTreeMap<String, String>,
        version_when_absent: u8,
    ) -> Result<TableEncoding, SchemaError> {
        let row_format = properties.get(PROP_KV_FORMAT).map(|v| RowFormat::parse(v)).transpose()?;
        let lake_format =
            properties.get(PROP_DATALAKE_FORMAT).map(|v| LakeFormat::parse(v)).transpose()?;
        let kv_format_version = match properties.get(PROP_KV_FORMAT_VERSION).map(String::as_str) {
            None => version_when_absent,
            Some("1") => 1,
            Some("2") => 2,
            Some(other) => {
                return Err(SchemaError::InvalidProperty {
                    key: PROP_KV_FORMAT_VERSION,
                    value: other.to_string(),
                    allowed: "1 or 2",
                })
            }
        };
        Ok(TableEncoding {
            row_format: row_format.unwrap_or_default(),
            lake_format,
            kv_format_version,
        })
    }

    /// The encoding of bucket keys: the lake format's.
    pub fn bucket_key_format(self) -> KeyFormat {
        match self.lake_format {
            Some(LakeFormat::Paimon) => KeyFormat::Paimon,
            Some(LakeFormat::Iceberg) => KeyFormat::Iceberg,
            Some(LakeFormat::Lance) | None => KeyFormat::Compacted,
        }
    }

    /// The encoding of primary keys, the bytes rows are stored and looked up under.
    pub fn primary_key_format(self, default_bucket_key: bool) -> KeyFormat {
        if self.kv_format_version >= 2 && !default_bucket_key {
            KeyFormat::Compacted
        } else {
            self.bucket_key_format()
        }
    }

    /// How bucket keys are assigned to buckets.
    pub fn bucket_function(self) -> BucketFunction {
        match self.lake_format {
            Some(LakeFormat::Paimon) => BucketFunction::Paimon,
            Some(LakeFormat::Iceberg) => BucketFunction::Iceberg,
            Some(LakeFormat::Lance) | None => BucketFunction::Fluss,
        }
    }

    /// Checks that a table's columns can be encoded as these options say: the primary key
    /// and the bucket key in their key formats (an Iceberg key is one column of a hashable
    /// type), and every column in the row format. Its keys are the physical ones (less the
    /// partition keys), the bucket key resolved (empty is the physical primary key).
    pub fn check_descriptor(self, descriptor: &TableDescriptor) -> Result<(), SchemaError> {
        let schema = &descriptor.schema;
        let physical_key: Vec<&String> = schema
            .primary_key
            .iter()
            .filter(|name| !descriptor.partition_keys.contains(name))
            .collect();
        let bucket_key: Vec<&String> = if descriptor.bucket_keys.is_empty() {
            physical_key.clone()
        } else {
            descriptor.bucket_keys.iter().collect()
        };
        let roots = |names: &[&String]| -> Vec<&TypeRoot> {
            names
                .iter()
                .filter_map(|name| schema.columns.iter().find(|c| &&c.name == name))
                .map(|c| &c.data_type.root)
                .collect()
        };
        let lake = self.lake_format.map_or("none", LakeFormat::name);
        let refuse = |what: &str, reason: String| {
            SchemaError::UnsupportedEncoding(format!(
                "{PROP_DATALAKE_FORMAT}={lake}: the {what} cannot be encoded: {reason}"
            ))
        };
        let default_bucket_key = bucket_key == physical_key;
        if let Some(reason) =
            self.primary_key_format(default_bucket_key).unsupported(&roots(&physical_key))
        {
            return Err(refuse("primary key", reason));
        }
        if let Some(reason) = self.bucket_key_format().unsupported(&roots(&bucket_key)) {
            return Err(refuse("bucket key", reason));
        }
        if self.row_format == RowFormat::Indexed {
            if let Some(reason) =
                schema.columns.iter().find_map(|c| unsupported_in_indexed_row(&c.data_type.root))
            {
                return Err(SchemaError::UnsupportedEncoding(reason));
            }
        }
        Ok(())
    }
}
