//! BinaryArray, the encoding of an ARRAY value inside a CompactedRow (Fluss's `BinaryArray` and
//! `BinaryArrayWriter`; fluss-rust's `FlussArray` and `FlussArrayWriter` write the same bytes).
//! All integers little-endian, offsets counted from the array's first byte:
//!
//! ```text
//! size: i32 | null bits: ceil(size/32) 4-byte words (element i is byte[4 + i/8] bit i%8)
//!           | fixed part: one slot per element | zeros up to a multiple of 8
//!           | variable-length part: regions, each padded to a multiple of 8
//! ```
//!
//! A slot is 1 byte (BOOLEAN, TINYINT), 2 (SMALLINT), 4 (INTEGER, FLOAT, DATE, TIME) or 8 (the
//! rest). BIGINT, DOUBLE, a compact DECIMAL (its unscaled long) and a compact TIMESTAMP (its
//! millis) sit in the slot; the other types keep `offset << 32 | length` of a region there:
//! - a STRING, CHAR, BYTES or BINARY of at most 7 bytes is inlined instead: its bytes in the
//!   slot's first bytes and `0x80 | length` in its last;
//! - a wide DECIMAL's region is its unscaled two's complement bytes (the writer reserves 16);
//! - a fine TIMESTAMP's region is its millis (an i64), and its nanos of the milli take the
//!   length's place;
//! - an ARRAY, MAP or ROW (a CompactedRow of its fields) always lies in a region.
//!
//! A NULL element has its bit set and a zero slot. Decoding checks what the readers assume: the
//! slots fit, every region lies after them and inside the array, and no two regions overlap,
//! so no byte is decoded twice and a value decodes to at most about one element per input byte,
//! however deep it nests. Every element is checked against its type ([`element_violation`]).

use super::binary_map::{decode_map, encode_map};
use super::byte_reader::ByteReader;
use super::compacted_row::{
    decimal_from_unscaled_bytes, decimal_unscaled_bytes, decode_fields, encode_fields, is_nested,
    value_violation, Datum, Timestamp,
};
use super::data_type::{
    DataType, TypeRoot, DECIMAL_COMPACT_PRECISION_MAX, TIMESTAMP_COMPACT_PRECISION_MAX,
};
use super::error::FormatError;

/// The most bytes a STRING, CHAR, BYTES or BINARY element inlined in its slot may have.
const INLINE_LEN_MAX: usize = 7;
/// The slot's top bit: set when the bytes are inlined.
const INLINE_MARK: u64 = 1 << 63;
/// The bytes a writer reserves for a wide DECIMAL's unscaled bytes.
const WIDE_DECIMAL_RESERVED: usize = 16;
/// A fine TIMESTAMP's region: its millis.
const TIMESTAMP_MILLIS_LEN: usize = 8;

/// The size and null bits: `4 + ceil(elements / 32) * 4` bytes.
fn header_len(elements: usize) -> Option<usize> {
    elements.checked_add(31).map(|n| n / 32 * 4).and_then(|bits| bits.checked_add(4))
}

/// The bytes of one element's slot (`BinaryArray.calculateFixLengthPartSize`).
fn slot_len(ty: &TypeRoot) -> usize {
    match ty {
        TypeRoot::Boolean | TypeRoot::TinyInt => 1,
        TypeRoot::SmallInt => 2,
        TypeRoot::Int | TypeRoot::Float | TypeRoot::Date | TypeRoot::Time { .. } => 4,
        _ => 8,
    }
}

fn round_to_word(len: usize) -> usize {
    len.div_ceil(8).saturating_mul(8)
}

fn is_wide_decimal(ty: &TypeRoot) -> bool {
    matches!(ty, TypeRoot::Decimal { precision, .. } if *precision > DECIMAL_COMPACT_PRECISION_MAX)
}

fn is_fine_timestamp(ty: &TypeRoot) -> bool {
    matches!(
        ty,
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision }
            if *precision > TIMESTAMP_COMPACT_PRECISION_MAX
    )
}

/// Whether an element of `ty` may be inlined in its slot.
fn may_inline(ty: &TypeRoot) -> bool {
    matches!(
        ty,
        TypeRoot::Char { .. } | TypeRoot::String | TypeRoot::Binary { .. } | TypeRoot::Bytes
    )
}

/// Whether a non-NULL element of `ty` may point at a region.
fn has_region(ty: &TypeRoot) -> bool {
    may_inline(ty) || is_nested(ty) || is_wide_decimal(ty) || is_fine_timestamp(ty)
}

/// Encodes an ARRAY of `element`s. A NULL where `element` is NOT NULL, or an element outside
/// its type, is refused.
pub(crate) fn encode_array(element: &DataType, items: &[Datum]) -> Result<Vec<u8>, FormatError> {
    encode_elements(element, items.iter(), "array element")
}

/// Encodes the elements `items` yields as one BinaryArray (`what` names them in errors): an
/// ARRAY's elements, or a MAP's keys or values.
pub(crate) fn encode_elements<'a>(
    element: &DataType,
    items: impl ExactSizeIterator<Item = &'a Datum>,
    what: &str,
) -> Result<Vec<u8>, FormatError> {
    let count = items.len();
    let size = i32::try_from(count)
        .map_err(|_| FormatError::InvalidValue(format!("an array of {count} elements")))?;
    let slot = slot_len(&element.root);
    let too_large = || FormatError::InvalidValue(format!("an array of {count} elements"));
    let header = header_len(count).ok_or_else(too_large)?;
    let fixed =
        count.checked_mul(slot).and_then(|s| s.checked_add(header)).ok_or_else(too_large)?;
    let mut out = vec![0u8; round_to_word(fixed)];
    put(&mut out, 0, &size.to_le_bytes())?;
    for (i, item) in items.enumerate() {
        if item.is_null() {
            if !element.nullable {
                return Err(FormatError::InvalidValue(format!("NULL in NOT NULL {what} {i}")));
            }
            if let Some(bits) = out.get_mut(4 + (i >> 3)) {
                *bits |= 1 << (i & 7);
            }
            continue;
        }
        write_element(&mut out, header + i * slot, &element.root, item)?;
    }
    Ok(out)
}

/// Copies `bytes` into `out` at `at`.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), FormatError> {
    let end = at.saturating_add(bytes.len());
    let available = out.len();
    out.get_mut(at..end)
        .ok_or(FormatError::Truncated { what: "array slot", needed: end, available })?
        .copy_from_slice(bytes);
    Ok(())
}

/// Appends a region holding `bytes` (padded to a word) and returns its slot value.
fn append_region(
    out: &mut Vec<u8>,
    bytes: &[u8],
    low_word: Option<u32>,
) -> Result<u64, FormatError> {
    let start = out.len();
    let too_large =
        || FormatError::InvalidValue(format!("an array of more than {} bytes", i32::MAX));
    let offset =
        u32::try_from(start).ok().filter(|&o| o <= i32::MAX as u32).ok_or_else(too_large)?;
    let len = match low_word {
        Some(word) => word,
        None => u32::try_from(bytes.len())
            .ok()
            .filter(|&l| l <= i32::MAX as u32)
            .ok_or_else(too_large)?,
    };
    out.extend_from_slice(bytes);
    out.resize(start + round_to_word(bytes.len()), 0);
    Ok((u64::from(offset) << 32) | u64::from(len))
}

/// Writes bytes of a STRING, CHAR, BYTES or BINARY element: inlined when they fit the slot.
fn write_var_bytes(out: &mut Vec<u8>, at: usize, bytes: &[u8]) -> Result<(), FormatError> {
    let slot = if bytes.len() <= INLINE_LEN_MAX {
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        slot[7] = 0x80 | bytes.len() as u8;
        u64::from_le_bytes(slot)
    } else {
        append_region(out, bytes, None)?
    };
    put(out, at, &slot.to_le_bytes())
}

/// Writes one non-NULL element into its slot (and, for a region, at the end of `out`).
fn write_element(
    out: &mut Vec<u8>,
    at: usize,
    ty: &TypeRoot,
    value: &Datum,
) -> Result<(), FormatError> {
    if !is_nested(ty) {
        if let Some(violation) = value_violation(ty, value) {
            return Err(FormatError::InvalidValue(violation));
        }
    }
    let slot = match (ty, value) {
        (TypeRoot::Array(element), Datum::Array(items)) => {
            append_region(out, &encode_array(element, items)?, None)?
        }
        (TypeRoot::Map { key, value }, Datum::Map(entries)) => {
            append_region(out, &encode_map(key, value, entries)?, None)?
        }
        (TypeRoot::Row(fields), Datum::Row(values)) => {
            let mut row = Vec::new();
            encode_fields(fields.iter().map(|f| &f.data_type), values, &mut row, "row field")?;
            append_region(out, &row, None)?
        }
        (ty, v) if is_nested(ty) => {
            return Err(FormatError::InvalidValue(format!(
                "a {} element in an ARRAY<{}>",
                v.summary(),
                ty.json_name()
            )))
        }
        (_, Datum::Boolean(b)) => return put(out, at, &[u8::from(*b)]),
        (_, Datum::TinyInt(v)) => return put(out, at, &v.to_le_bytes()),
        (_, Datum::SmallInt(v)) => return put(out, at, &v.to_le_bytes()),
        (_, Datum::Int(v) | Datum::Date(v) | Datum::Time(v)) => {
            return put(out, at, &v.to_le_bytes())
        }
        (_, Datum::Float(v)) => return put(out, at, &v.to_le_bytes()),
        (_, Datum::BigInt(v)) => return put(out, at, &v.to_le_bytes()),
        (_, Datum::Double(v)) => return put(out, at, &v.to_le_bytes()),
        (_, Datum::String(s)) => return write_var_bytes(out, at, s.as_bytes()),
        (_, Datum::Binary(b)) => return write_var_bytes(out, at, b),
        (ty, Datum::Decimal(v)) if is_wide_decimal(ty) => {
            let unscaled = decimal_unscaled_bytes(*v);
            let mut reserved = [0u8; WIDE_DECIMAL_RESERVED];
            let len = unscaled.len().min(WIDE_DECIMAL_RESERVED);
            reserved[..len].copy_from_slice(&unscaled[..len]);
            append_region(out, &reserved, Some(len as u32))?
        }
        // `toUnscaledLong`: a precision of at most 18 digits always fits.
        (_, Datum::Decimal(v)) => return put(out, at, &(*v as i64).to_le_bytes()),
        (ty, Datum::Timestamp(ts)) if is_fine_timestamp(ty) => {
            append_region(out, &ts.millis.to_le_bytes(), Some(ts.nanos_of_milli))?
        }
        (_, Datum::Timestamp(ts)) => return put(out, at, &ts.millis.to_le_bytes()),
        (ty, v) => {
            return Err(FormatError::InvalidValue(format!(
                "a {} element in an ARRAY<{}>",
                v.summary(),
                ty.json_name()
            )))
        }
    };
    put(out, at, &slot.to_le_bytes())
}

/// Decodes an ARRAY of `element`s that fills `bytes`.
pub(crate) fn decode_array(element: &DataType, bytes: &[u8]) -> Result<Vec<Datum>, FormatError> {
    decode_elements(element, bytes, "array element")
}

/// Decodes one BinaryArray (`what` names its elements in errors): an ARRAY's elements, or a
/// MAP's keys or values.
pub(crate) fn decode_elements(
    element: &DataType,
    bytes: &[u8],
    what: &str,
) -> Result<Vec<Datum>, FormatError> {
    let count = ByteReader::new(bytes).len_i32("array size")?;
    let slot = slot_len(&element.root);
    let header = header_len(count);
    let fixed_end = header
        .and_then(|h| count.checked_mul(slot).and_then(|s| s.checked_add(h)))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            FormatError::corrupt(
                "array",
                format!("{count} elements do not fit in {} bytes", bytes.len()),
            )
        })?;
    let header = header.unwrap_or(fixed_end);
    let is_null = |i: usize| bytes.get(4 + (i >> 3)).is_some_and(|b| b & (1 << (i & 7)) != 0);
    let slot_at = |i: usize| bytes.get(header + i * slot..header + (i + 1) * slot).unwrap_or(&[]);
    // First every region, so that overlapping ones are refused before anything is decoded.
    if has_region(&element.root) {
        let mut regions = Vec::new();
        for i in (0..count).filter(|&i| !is_null(i)) {
            if let Some(region) =
                region_of(&element.root, slot_word(slot_at(i))?, fixed_end, bytes)?
            {
                regions.push(region);
            }
        }
        regions.sort_unstable();
        if regions.windows(2).any(|pair| pair[1].0 < pair[0].1) {
            return Err(FormatError::corrupt("array", "two elements share bytes"));
        }
    }
    let mut items = Vec::with_capacity(count);
    for i in 0..count {
        if is_null(i) {
            if !element.nullable {
                return Err(FormatError::corrupt("array", format!("NULL in NOT NULL {what} {i}")));
            }
            items.push(Datum::Null);
        } else {
            items.push(read_element(&element.root, slot_at(i), fixed_end, bytes)?);
        }
    }
    Ok(items)
}

fn slot_word(slot: &[u8]) -> Result<u64, FormatError> {
    let word: [u8; 8] = slot.try_into().map_err(|_| FormatError::Truncated {
        what: "array slot",
        needed: 8,
        available: slot.len(),
    })?;
    Ok(u64::from_le_bytes(word))
}

/// The region `[start, end)` an element's slot points at, or `None` for inlined bytes. The
/// region must lie after the slots (`fixed_end`) and inside the array.
fn region_of(
    ty: &TypeRoot,
    word: u64,
    fixed_end: usize,
    bytes: &[u8],
) -> Result<Option<(usize, usize)>, FormatError> {
    if word & INLINE_MARK != 0 {
        if !may_inline(ty) {
            return Err(FormatError::corrupt(
                "array",
                format!("a {} element inlined in its slot", ty.json_name()),
            ));
        }
        return Ok(None);
    }
    let start = usize::try_from(word >> 32).unwrap_or(usize::MAX);
    let low = word & 0xffff_ffff;
    let len = if is_fine_timestamp(ty) {
        TIMESTAMP_MILLIS_LEN
    } else {
        usize::try_from(low)
            .ok()
            .filter(|&l| l <= i32::MAX as usize)
            .ok_or_else(|| FormatError::corrupt("array", format!("an element of {low} bytes")))?
    };
    match start.checked_add(len) {
        Some(end) if start >= fixed_end && end <= bytes.len() => Ok(Some((start, end))),
        _ => Err(FormatError::corrupt(
            "array",
            format!(
                "an element at bytes {start}..+{len} outside the variable part {fixed_end}..{}",
                bytes.len()
            ),
        )),
    }
}

/// The bytes an element's slot names: inlined in the slot or in its region.
fn var_bytes<'a>(
    ty: &TypeRoot,
    slot: &'a [u8],
    fixed_end: usize,
    bytes: &'a [u8],
) -> Result<&'a [u8], FormatError> {
    let word = slot_word(slot)?;
    match region_of(ty, word, fixed_end, bytes)? {
        Some((start, end)) => bytes.get(start..end).ok_or(FormatError::Truncated {
            what: "array element",
            needed: end,
            available: bytes.len(),
        }),
        None => {
            let len = ((word >> 56) & 0x7f) as usize;
            slot.get(..len).filter(|_| len <= INLINE_LEN_MAX).ok_or_else(|| {
                FormatError::corrupt("array", format!("{len} bytes inlined in an 8-byte slot"))
            })
        }
    }
}

fn fixed<const N: usize>(slot: &[u8]) -> Result<[u8; N], FormatError> {
    slot.get(..N).and_then(|s| s.try_into().ok()).ok_or(FormatError::Truncated {
        what: "array slot",
        needed: N,
        available: slot.len(),
    })
}

/// Reads one non-NULL element; a value outside its type is corrupt.
fn read_element(
    ty: &TypeRoot,
    slot: &[u8],
    fixed_end: usize,
    bytes: &[u8],
) -> Result<Datum, FormatError> {
    let datum = match ty {
        TypeRoot::Boolean => match fixed::<1>(slot)? {
            [0] => Datum::Boolean(false),
            [1] => Datum::Boolean(true),
            [b] => return Err(FormatError::corrupt("boolean element", format!("byte {b}"))),
        },
        TypeRoot::TinyInt => Datum::TinyInt(i8::from_le_bytes(fixed(slot)?)),
        TypeRoot::SmallInt => Datum::SmallInt(i16::from_le_bytes(fixed(slot)?)),
        TypeRoot::Int => Datum::Int(i32::from_le_bytes(fixed(slot)?)),
        TypeRoot::Date => Datum::Date(i32::from_le_bytes(fixed(slot)?)),
        TypeRoot::Time { .. } => Datum::Time(i32::from_le_bytes(fixed(slot)?)),
        TypeRoot::Float => Datum::Float(f32::from_le_bytes(fixed(slot)?)),
        TypeRoot::BigInt => Datum::BigInt(i64::from_le_bytes(fixed(slot)?)),
        TypeRoot::Double => Datum::Double(f64::from_le_bytes(fixed(slot)?)),
        TypeRoot::Char { .. } | TypeRoot::String => {
            let text = std::str::from_utf8(var_bytes(ty, slot, fixed_end, bytes)?)
                .map_err(|e| FormatError::corrupt("string element", e.to_string()))?;
            Datum::String(text.to_string())
        }
        TypeRoot::Binary { .. } | TypeRoot::Bytes => {
            Datum::Binary(var_bytes(ty, slot, fixed_end, bytes)?.to_vec())
        }
        TypeRoot::Decimal { .. } if is_wide_decimal(ty) => {
            Datum::Decimal(decimal_from_unscaled_bytes(var_bytes(ty, slot, fixed_end, bytes)?)?)
        }
        TypeRoot::Decimal { .. } => Datum::Decimal(i128::from(i64::from_le_bytes(fixed(slot)?))),
        TypeRoot::TimestampNtz { .. } | TypeRoot::TimestampLtz { .. } if is_fine_timestamp(ty) => {
            let word = slot_word(slot)?;
            let millis = i64::from_le_bytes(fixed(var_bytes(ty, slot, fixed_end, bytes)?)?);
            // The nanos of the milli take the length's place; a negative i32 there is corrupt.
            let nanos_of_milli = u32::try_from(word & 0xffff_ffff).unwrap_or(u32::MAX);
            Datum::Timestamp(Timestamp { millis, nanos_of_milli })
        }
        TypeRoot::TimestampNtz { .. } | TypeRoot::TimestampLtz { .. } => {
            Datum::Timestamp(Timestamp::from_millis(i64::from_le_bytes(fixed(slot)?)))
        }
        TypeRoot::Array(element) => {
            return Ok(Datum::Array(decode_array(element, var_bytes(ty, slot, fixed_end, bytes)?)?))
        }
        TypeRoot::Map { key, value } => {
            return Ok(Datum::Map(decode_map(key, value, var_bytes(ty, slot, fixed_end, bytes)?)?))
        }
        TypeRoot::Row(fields) => {
            let mut r = ByteReader::new(var_bytes(ty, slot, fixed_end, bytes)?);
            let values = decode_fields(fields.iter().map(|f| &f.data_type), &mut r, "row field")?;
            if !r.is_empty() {
                return Err(FormatError::corrupt(
                    "nested row",
                    format!("{} bytes after the last field", r.remaining()),
                ));
            }
            return Ok(Datum::Row(values));
        }
    };
    match value_violation(ty, &datum) {
        None => Ok(datum),
        Some(violation) => Err(FormatError::corrupt("array element", violation)),
    }
}
