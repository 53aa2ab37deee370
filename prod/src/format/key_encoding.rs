//! Primary-key and bucket-key bytes and the bucket function (§5.2).
//!
//! A key is the compacted field encoding of the key columns in key order, with no null
//! bit-set (key columns are never NULL, nor ARRAY, MAP or ROW: Fluss refuses those as keys).
//! The bucket of a key is `fluss_hash_i32(murmur3_flink(bucket_key_bytes, seed 42)) %
//! num_buckets` (no lake format). A table with a lake format encodes its keys and picks
//! buckets otherwise (`table_encoding.rs`); the functions taking a `TableSchema` follow its
//! options.

use super::byte_reader::ByteReader;
use super::compacted_row::{read_field, write_field, Datum, Row};
use super::data_type::DataType;
use super::error::FormatError;
use super::schema::TableSchema;

/// Encodes key values (one per key column, none NULL).
pub fn encode_key(types: &[DataType], values: &[Datum]) -> Result<Vec<u8>, FormatError> {
    if types.len() != values.len() {
        return Err(FormatError::InvalidValue(format!(
            "key has {} fields, the key columns are {}",
            values.len(),
            types.len()
        )));
    }
    if let Some(ty) = types.iter().find(|ty| !ty.root.allowed_in_keys()) {
        return Err(FormatError::InvalidValue(format!(
            "a key column of type {}, which keys do not support",
            ty.root.json_name()
        )));
    }
    let mut out = Vec::new();
    for (i, (ty, v)) in types.iter().zip(values).enumerate() {
        if v.is_null() {
            return Err(FormatError::InvalidValue(format!("NULL in key field {i}")));
        }
        write_field(&mut out, &ty.root, v)?;
    }
    Ok(out)
}

/// Decodes key bytes that must be exactly the key columns.
pub fn decode_key(types: &[DataType], bytes: &[u8]) -> Result<Vec<Datum>, FormatError> {
    if let Some(ty) = types.iter().find(|ty| !ty.root.allowed_in_keys()) {
        return Err(FormatError::corrupt(
            "key",
            format!("a key column of type {}, which keys do not support", ty.root.json_name()),
        ));
    }
    let mut r = ByteReader::new(bytes);
    let values =
        types.iter().map(|ty| read_field(&mut r, &ty.root)).collect::<Result<Vec<_>, _>>()?;
    if !r.is_empty() {
        return Err(FormatError::corrupt(
            "key",
            format!("{} bytes after the last field", r.remaining()),
        ));
    }
    Ok(values)
}

/// The primary-key bytes of a full row, in the table's primary-key encoding.
pub fn primary_key_of_row(schema: &TableSchema, row: &Row) -> Result<Vec<u8>, FormatError> {
    schema
        .primary_key_format()
        .encode(&schema.primary_key_types(), &row.project(&schema.primary_key)?.0)
}

/// The bucket-key bytes of a full row, in the table's bucket-key encoding.
pub fn bucket_key_of_row(schema: &TableSchema, row: &Row) -> Result<Vec<u8>, FormatError> {
    schema
        .bucket_key_format()
        .encode(&schema.bucket_key_types(), &row.project(&schema.bucket_key)?.0)
}

/// The bucket-key bytes of a primary key as a client sent it (decodes it, so a malformed
/// key is an error).
pub fn bucket_key_of_primary_key(schema: &TableSchema, pk: &[u8]) -> Result<Vec<u8>, FormatError> {
    let values = schema.primary_key_format().decode(&schema.primary_key_types(), pk)?;
    let bucket_values = schema
        .bucket_key
        .iter()
        .map(|col| {
            schema
                .primary_key
                .iter()
                .position(|p| p == col)
                .and_then(|i| values.get(i).cloned())
                .ok_or_else(|| FormatError::InvalidValue(format!("bucket column {col} not in key")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    schema.bucket_key_format().encode(&schema.bucket_key_types(), &bucket_values)
}

/// The bucket a primary key belongs to; the server checks it against the request's bucket.
pub fn bucket_of_primary_key(
    schema: &TableSchema,
    pk: &[u8],
    num_buckets: i32,
) -> Result<i32, FormatError> {
    schema
        .encoding
        .bucket_function()
        .bucket_of(&bucket_key_of_primary_key(schema, pk)?, num_buckets)
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;
const SEED: u32 = 42;

pub(super) fn mix_k1(k1: u32) -> u32 {
    k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

pub(super) fn mix_h1(h1: u32, k1: u32) -> u32 {
    (h1 ^ k1).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

pub(super) fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Flink's MurmurHash3 variant with seed 42: 4-byte little-endian blocks, then each tail
/// byte mixed on its own as a *sign-extended* Java byte, then `h ^ len` and fmix32.
pub fn murmur_hash_bytes(data: &[u8]) -> i32 {
    let mut chunks = data.chunks_exact(4);
    let mut h = SEED;
    for c in &mut chunks {
        let mut block = [0u8; 4];
        block.copy_from_slice(c);
        h = mix_h1(h, mix_k1(u32::from_le_bytes(block)));
    }
    for &b in chunks.remainder() {
        h = mix_h1(h, mix_k1(b as i8 as i32 as u32));
    }
    fmix(h ^ (data.len() as u32)) as i32
}

/// Flink's `MathUtils.murmurHash(int)`: one block step with `^4` and fmix, then `abs`
/// (`i32::MIN` maps to 0).
pub fn fluss_hash_i32(input: i32) -> i32 {
    let h = mix_h1(0, mix_k1(input as u32));
    let out = fmix(h ^ 4) as i32;
    if out >= 0 {
        out
    } else if out != i32::MIN {
        -out
    } else {
        0
    }
}

/// The bucket of encoded bucket-key bytes, without a lake format.
pub fn bucket_of(bucket_key: &[u8], num_buckets: i32) -> Result<i32, FormatError> {
    if num_buckets <= 0 {
        return Err(FormatError::InvalidValue(format!("{num_buckets} buckets")));
    }
    if bucket_key.is_empty() {
        return Err(FormatError::InvalidValue("empty bucket key".to_string()));
    }
    Ok(fluss_hash_i32(murmur_hash_bytes(bucket_key)) % num_buckets)
}
