//! The bucket of encoded bucket-key bytes, by lake format (Fluss's `BucketingFunction.of`;
//! fluss-rs 1.0.0 `bucketing/mod.rs`):
//! - no lake format, or Lance: `fluss_hash_i32(murmur_flink(key, 42)) % n`;
//! - Paimon: `abs(murmur_flink(key, 42) % n)`, what Paimon's `BinaryRow.hashCode` gives (its
//!   keys are whole words, so the tail rule of the Flink variant never applies);
//! - Iceberg: `(murmur3_32(key, seed 0) & i32::MAX) % n`, Iceberg's bucket transform (standard
//!   MurmurHash3 x86_32: the tail bytes form one little-endian block).

use super::error::FormatError;
use super::key_encoding::{fluss_hash_i32, murmur_hash_bytes};

/// How a table assigns bucket keys to buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BucketFunction {
    #[default]
    Fluss,
    Paimon,
    Iceberg,
}

// The MurmurHash3 rounds are key_encoding's (Flink's variant differs only in the seed and
// the tail).
use super::key_encoding::{fmix, mix_h1, mix_k1};

/// Standard MurmurHash3 x86_32 with seed 0 (Guava's `murmur3_32_fixed`, Iceberg's hash).
pub fn murmur3_32(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut h = 0u32;
    for c in &mut chunks {
        let mut block = [0u8; 4];
        block.copy_from_slice(c);
        h = mix_h1(h, mix_k1(u32::from_le_bytes(block)));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut block = [0u8; 4];
        block[..tail.len()].copy_from_slice(tail);
        h ^= mix_k1(u32::from_le_bytes(block));
    }
    fmix(h ^ (data.len() as u32))
}

impl BucketFunction {
    /// The bucket of `bucket_key` among `num_buckets`.
    pub fn bucket_of(self, bucket_key: &[u8], num_buckets: i32) -> Result<i32, FormatError> {
        if num_buckets <= 0 {
            return Err(FormatError::InvalidValue(format!("{num_buckets} buckets")));
        }
        if bucket_key.is_empty() {
            return Err(FormatError::InvalidValue("empty bucket key".to_string()));
        }
        Ok(match self {
            BucketFunction::Fluss => fluss_hash_i32(murmur_hash_bytes(bucket_key)) % num_buckets,
            BucketFunction::Paimon => (murmur_hash_bytes(bucket_key) % num_buckets).abs(),
            BucketFunction::Iceberg => (murmur3_32(bucket_key) as i32 & i32::MAX) % num_buckets,
        })
    }
}
