//! `table.datalake.format`: the lake a table would be tiered to. kvtablet does no tiering
//! (`table.datalake.enabled=true` is refused), but the format alone changes how the clients
//! encode keys and pick buckets (Fluss's `KeyEncoder.of` and `BucketingFunction.of`), so the
//! server must know it to check the keys it is sent.

use std::fmt;

use super::error::SchemaError;

/// The table property naming the lake format.
pub const PROP_DATALAKE_FORMAT: &str = "table.datalake.format";

/// A lake format the clients know (fluss-rs 1.0.0 `DataLakeFormat`: paimon, lance, iceberg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LakeFormat {
    /// Keys in Paimon's BinaryRow layout, buckets by `abs(murmur(key) % n)`.
    Paimon,
    /// Keys in Iceberg's single-value form (one key column), buckets by standard murmur3.
    Iceberg,
    /// Keys and buckets as without a lake format.
    Lance,
}

impl LakeFormat {
    /// Parses a property value, ignoring ASCII case (as the clients do).
    pub fn parse(value: &str) -> Result<LakeFormat, SchemaError> {
        match value.to_ascii_lowercase().as_str() {
            "paimon" => Ok(LakeFormat::Paimon),
            "iceberg" => Ok(LakeFormat::Iceberg),
            "lance" => Ok(LakeFormat::Lance),
            _ => Err(SchemaError::InvalidProperty {
                key: PROP_DATALAKE_FORMAT,
                value: value.to_string(),
                allowed: "paimon, iceberg or lance",
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LakeFormat::Paimon => "paimon",
            LakeFormat::Iceberg => "iceberg",
            LakeFormat::Lance => "lance",
        }
    }
}

impl fmt::Display for LakeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_formats_parse_in_any_case_and_others_are_refused() {
        assert_eq!(LakeFormat::parse("paimon").unwrap(), LakeFormat::Paimon);
        assert_eq!(LakeFormat::parse("ICEBERG").unwrap(), LakeFormat::Iceberg);
        assert_eq!(LakeFormat::parse("Lance").unwrap(), LakeFormat::Lance);
        for bad in ["", "hudi", "delta", "paimon "] {
            assert!(matches!(
                LakeFormat::parse(bad),
                Err(SchemaError::InvalidProperty { key: PROP_DATALAKE_FORMAT, .. })
            ));
        }
    }
}
