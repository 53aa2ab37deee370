//! CompactedRow, the value encoding of a primary-key table (§5.4): a null bit-set of
//! `ceil(n/8)` bytes (bit `i` is `byte[i>>3] & (1 << (i&7))`), then the non-null fields in
//! column order. No row-kind byte. Also `Datum` and `Row`, the decoded values.

use super::byte_reader::{put_varint_u32, put_varint_u64, ByteReader};
use super::data_type::{
    nanos_per_arrow_unit, DataType, TypeRoot, DECIMAL_COMPACT_PRECISION_MAX,
    TIMESTAMP_COMPACT_PRECISION_MAX,
};
use super::error::FormatError;

/// A TIMESTAMP or TIMESTAMP_LTZ value as Fluss holds it (`TimestampNtz`, `TimestampLtz`):
/// milliseconds since the epoch (of the wall clock for TIMESTAMP, of UTC for TIMESTAMP_LTZ)
/// and the nanoseconds within that millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    pub millis: i64,
    /// 0..=999_999.
    pub nanos_of_milli: u32,
}

impl Timestamp {
    pub const NANOS_OF_MILLI_MAX: u32 = 999_999;

    pub fn from_millis(millis: i64) -> Self {
        Timestamp { millis, nanos_of_milli: 0 }
    }

    /// The value in units of `nanos_per_unit` since the epoch, as Fluss's Arrow timestamp
    /// writers compute it: seconds are `millis / 1000` (Java's division, toward zero), the
    /// finer units `millis * k + nanos_of_milli / (nanos_per_unit)`.
    pub fn to_unit(self, nanos_per_unit: i64) -> Option<i64> {
        if nanos_per_unit >= 1_000_000 {
            return Some(self.millis / (nanos_per_unit / 1_000_000));
        }
        let per_milli = 1_000_000 / nanos_per_unit;
        self.millis
            .checked_mul(per_milli)?
            .checked_add(i64::from(self.nanos_of_milli) / nanos_per_unit)
    }

    /// The inverse of [`Timestamp::to_unit`].
    pub fn from_unit(value: i64, nanos_per_unit: i64) -> Self {
        let nanos = i128::from(value) * i128::from(nanos_per_unit);
        let millis = nanos.div_euclid(1_000_000);
        Timestamp {
            millis: i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX }),
            nanos_of_milli: u32::try_from(nanos.rem_euclid(1_000_000)).unwrap_or(0),
        }
    }
}

/// One field value. The column type gives it its meaning: `String` is a CHAR or STRING,
/// `Binary` a BINARY or BYTES, `Decimal` the unscaled value of the column's DECIMAL(p, s),
/// `Timestamp` a TIMESTAMP or TIMESTAMP_LTZ.
#[derive(Debug, Clone)]
pub enum Datum {
    Null,
    Boolean(bool),
    TinyInt(i8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    String(String),
    Binary(Vec<u8>),
    /// The unscaled value: 12.34 in a DECIMAL(5, 2) is 1234.
    Decimal(i128),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds of the day, 0..86_400_000.
    Time(i32),
    Timestamp(Timestamp),
}

/// Floats compare by bit pattern, so that a NaN survives a round trip as an equal value.
impl PartialEq for Datum {
    fn eq(&self, other: &Self) -> bool {
        use Datum::*;
        match (self, other) {
            (Null, Null) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (TinyInt(a), TinyInt(b)) => a == b,
            (SmallInt(a), SmallInt(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (String(a), String(b)) => a == b,
            (Binary(a), Binary(b)) => a == b,
            (Decimal(a), Decimal(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Time(a), Time(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Datum {}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

/// Milliseconds in a day: TIME values are below it.
pub const MILLIS_PER_DAY: i32 = 86_400_000;

/// 10^digits, for digits up to 38.
pub fn pow10(digits: u8) -> i128 {
    (0..digits).fold(1i128, |acc, _| acc.saturating_mul(10))
}

/// Whether an unscaled value has at most `precision` digits (Fluss's `Decimal` refuses more).
pub fn decimal_fits(unscaled: i128, precision: u8) -> bool {
    unscaled.unsigned_abs() < pow10(precision).unsigned_abs()
}

/// `BigInteger.toByteArray()`: the shortest big-endian two's complement form (at least 1 byte).
pub(crate) fn decimal_unscaled_bytes(unscaled: i128) -> Vec<u8> {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (first, next) = (bytes[start], bytes[start + 1]);
        let redundant = (first == 0x00 && next & 0x80 == 0) || (first == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// `new BigInteger(bytes)` for at most 16 bytes.
pub(crate) fn decimal_from_unscaled_bytes(bytes: &[u8]) -> Result<i128, FormatError> {
    let Some(&first) = bytes.first() else {
        return Err(FormatError::corrupt("decimal field", "no unscaled bytes"));
    };
    if bytes.len() > 16 {
        return Err(FormatError::corrupt(
            "decimal field",
            format!("{} unscaled bytes", bytes.len()),
        ));
    }
    let mut full = if first & 0x80 != 0 { [0xffu8; 16] } else { [0u8; 16] };
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(full))
}

/// A row: one datum per column, in column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row(pub Vec<Datum>);

impl Row {
    pub fn new(values: Vec<Datum>) -> Self {
        Row(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Datum> {
        self.0.get(i)
    }

    /// The columns at `positions`, in that order.
    pub fn project(&self, positions: &[usize]) -> Result<Row, FormatError> {
        positions
            .iter()
            .map(|&p| {
                self.0.get(p).cloned().ok_or_else(|| {
                    FormatError::InvalidValue(format!("no column {p} in a row of {}", self.len()))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Row)
    }
}

fn put_length_prefixed(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), FormatError> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= i32::MAX as u32)
        .ok_or_else(|| FormatError::InvalidValue(format!("{what} too long")))?;
    put_varint_u32(out, len);
    out.extend_from_slice(bytes);
    Ok(())
}

fn read_length_prefixed<'a>(
    r: &mut ByteReader<'a>,
    what: &'static str,
) -> Result<&'a [u8], FormatError> {
    let len = r.varint_u32(what)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= i32::MAX as usize)
        .ok_or_else(|| FormatError::corrupt(what, format!("length {len}")))?;
    r.take(len, what)
}

/// Why `value` is not a valid value of `ty` (its variant, CHAR and BINARY lengths, DECIMAL
/// precision, TIME range, TIMESTAMP nanoseconds), or `None`. The one place these rules live:
/// the writer refuses such a value, the reader calls what it decoded corrupt.
pub fn value_violation(ty: &TypeRoot, value: &Datum) -> Option<String> {
    match (ty, value) {
        (TypeRoot::Boolean, Datum::Boolean(_))
        | (TypeRoot::TinyInt, Datum::TinyInt(_))
        | (TypeRoot::SmallInt, Datum::SmallInt(_))
        | (TypeRoot::Int, Datum::Int(_))
        | (TypeRoot::BigInt, Datum::BigInt(_))
        | (TypeRoot::Float, Datum::Float(_))
        | (TypeRoot::Double, Datum::Double(_))
        | (TypeRoot::String, Datum::String(_))
        | (TypeRoot::Bytes, Datum::Binary(_))
        | (TypeRoot::Date, Datum::Date(_)) => None,
        (TypeRoot::Char { length }, Datum::String(s)) => {
            let chars = s.chars().count();
            (chars > *length as usize).then(|| format!("{chars} characters in a CHAR({length})"))
        }
        (TypeRoot::Binary { length }, Datum::Binary(b)) => (b.len() != *length as usize)
            .then(|| format!("{} bytes in a BINARY({length})", b.len())),
        (TypeRoot::Decimal { precision, scale }, Datum::Decimal(v)) => {
            (!decimal_fits(*v, *precision))
                .then(|| format!("unscaled {v} does not fit DECIMAL({precision}, {scale})"))
        }
        (TypeRoot::Time { .. }, Datum::Time(ms)) => {
            (!(0..MILLIS_PER_DAY).contains(ms)).then(|| format!("TIME of {ms} ms is outside a day"))
        }
        (
            TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision },
            Datum::Timestamp(ts),
        ) => {
            if ts.nanos_of_milli > Timestamp::NANOS_OF_MILLI_MAX {
                Some(format!("{} nanoseconds of a millisecond", ts.nanos_of_milli))
            } else if *precision <= TIMESTAMP_COMPACT_PRECISION_MAX && ts.nanos_of_milli != 0 {
                Some(format!(
                    "{} nanoseconds of a millisecond in a precision-{precision} timestamp, which \
                     keeps milliseconds only",
                    ts.nanos_of_milli
                ))
            } else if ts.to_unit(nanos_per_arrow_unit(*precision)).is_none() {
                Some(format!(
                    "{ts:?} is outside the range of a precision-{precision} Arrow timestamp"
                ))
            } else {
                None
            }
        }
        (ty, Datum::Null) => Some(format!("NULL where a {} is needed", ty.json_name())),
        (ty, v) => Some(format!("a {v:?} value in a {} column", ty.json_name())),
    }
}

/// Appends one non-null field in the compacted field encoding (shared with keys). The
/// encoding per type is Fluss's `BinaryWriter.createValueSetter` onto `CompactedRowWriter`.
pub(crate) fn write_field(
    out: &mut Vec<u8>,
    ty: &TypeRoot,
    value: &Datum,
) -> Result<(), FormatError> {
    if let Some(violation) = value_violation(ty, value) {
        return Err(FormatError::InvalidValue(violation));
    }
    match (ty, value) {
        (_, Datum::Boolean(b)) => out.push(u8::from(*b)),
        (_, Datum::TinyInt(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (_, Datum::SmallInt(v)) => out.extend_from_slice(&v.to_le_bytes()),
        // INTEGER, DATE and TIME are all `writeInt`: an unsigned LEB128 varint of the bits.
        (_, Datum::Int(v) | Datum::Date(v) | Datum::Time(v)) => put_varint_u32(out, *v as u32),
        (_, Datum::BigInt(v)) => put_varint_u64(out, *v as u64),
        (_, Datum::Float(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (_, Datum::Double(v)) => out.extend_from_slice(&v.to_le_bytes()),
        // CHAR is written as STRING, BINARY as BYTES (`writeChar`, `writeBinary`).
        (_, Datum::String(s)) => put_length_prefixed(out, s.as_bytes(), "string")?,
        (_, Datum::Binary(b)) => put_length_prefixed(out, b, "bytes")?,
        (TypeRoot::Decimal { precision, .. }, Datum::Decimal(v)) => {
            if *precision <= DECIMAL_COMPACT_PRECISION_MAX {
                // `writeLong(toUnscaledLong())`; 18 digits always fit an i64.
                put_varint_u64(out, *v as i64 as u64);
            } else {
                put_length_prefixed(out, &decimal_unscaled_bytes(*v), "decimal")?;
            }
        }
        (
            TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision },
            Datum::Timestamp(ts),
        ) => {
            put_varint_u64(out, ts.millis as u64);
            if *precision > TIMESTAMP_COMPACT_PRECISION_MAX {
                put_varint_u32(out, ts.nanos_of_milli);
            }
        }
        (ty, v) => {
            return Err(FormatError::InvalidValue(format!(
                "a {v:?} value in a {} column",
                ty.json_name()
            )))
        }
    }
    Ok(())
}

/// Reads one non-null field; a value outside its type ([`value_violation`]) is corrupt.
pub(crate) fn read_field(r: &mut ByteReader<'_>, ty: &TypeRoot) -> Result<Datum, FormatError> {
    let datum = match ty {
        TypeRoot::Boolean => match r.u8("boolean field")? {
            0 => Datum::Boolean(false),
            1 => Datum::Boolean(true),
            b => return Err(FormatError::corrupt("boolean field", format!("byte {b}"))),
        },
        TypeRoot::TinyInt => Datum::TinyInt(r.u8("tinyint field")? as i8),
        TypeRoot::SmallInt => Datum::SmallInt(r.i16("smallint field")?),
        TypeRoot::Int => Datum::Int(r.varint_u32("int field")? as i32),
        TypeRoot::Date => Datum::Date(r.varint_u32("date field")? as i32),
        TypeRoot::Time { .. } => Datum::Time(r.varint_u32("time field")? as i32),
        TypeRoot::BigInt => Datum::BigInt(r.varint_u64("bigint field")? as i64),
        TypeRoot::Float => Datum::Float(r.f32("float field")?),
        TypeRoot::Double => Datum::Double(r.f64("double field")?),
        TypeRoot::Char { .. } | TypeRoot::String => {
            let bytes = read_length_prefixed(r, "string field")?;
            let s = std::str::from_utf8(bytes)
                .map_err(|e| FormatError::corrupt("string field", e.to_string()))?;
            Datum::String(s.to_string())
        }
        TypeRoot::Binary { .. } | TypeRoot::Bytes => {
            Datum::Binary(read_length_prefixed(r, "bytes field")?.to_vec())
        }
        TypeRoot::Decimal { precision, .. } => {
            if *precision <= DECIMAL_COMPACT_PRECISION_MAX {
                Datum::Decimal(i128::from(r.varint_u64("decimal field")? as i64))
            } else {
                Datum::Decimal(decimal_from_unscaled_bytes(read_length_prefixed(
                    r,
                    "decimal field",
                )?)?)
            }
        }
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision } => {
            let millis = r.varint_u64("timestamp millis")? as i64;
            let nanos_of_milli = if *precision > TIMESTAMP_COMPACT_PRECISION_MAX {
                r.varint_u32("timestamp nanos of milli")?
            } else {
                0
            };
            Datum::Timestamp(Timestamp { millis, nanos_of_milli })
        }
        TypeRoot::Array(_) | TypeRoot::Map { .. } | TypeRoot::Row(_) => {
            return Err(FormatError::corrupt(
                "compacted row",
                format!("{} fields are not supported yet", ty.json_name()),
            ))
        }
    };
    match value_violation(ty, &datum) {
        None => Ok(datum),
        Some(violation) => Err(FormatError::corrupt("compacted row field", violation)),
    }
}

/// Encodes a row; NULL in a NOT NULL column or a value of the wrong type is refused.
pub fn encode_row(types: &[DataType], row: &Row) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    encode_row_into(types, row, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `row` to `out`.
pub fn encode_row_into(
    types: &[DataType],
    row: &Row,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if row.len() != types.len() {
        return Err(FormatError::InvalidValue(format!(
            "row has {} fields, the schema {}",
            row.len(),
            types.len()
        )));
    }
    let bitset_start = out.len();
    out.resize(bitset_start + types.len().div_ceil(8), 0);
    for (i, (ty, value)) in types.iter().zip(&row.0).enumerate() {
        if value.is_null() {
            if !ty.nullable {
                return Err(FormatError::InvalidValue(format!("NULL in NOT NULL column {i}")));
            }
            if let Some(b) = out.get_mut(bitset_start + (i >> 3)) {
                *b |= 1 << (i & 7);
            }
        } else {
            write_field(out, &ty.root, value)?;
        }
    }
    Ok(())
}

/// Decodes a row that must fill `bytes` exactly. A NULL in a NOT NULL column is corrupt.
pub fn decode_row(types: &[DataType], bytes: &[u8]) -> Result<Row, FormatError> {
    let mut r = ByteReader::new(bytes);
    let row = decode_row_from(types, &mut r)?;
    if !r.is_empty() {
        return Err(FormatError::corrupt(
            "compacted row",
            format!("{} bytes after the last field", r.remaining()),
        ));
    }
    Ok(row)
}

/// Decodes a row from the reader, leaving whatever follows it.
pub fn decode_row_from(types: &[DataType], r: &mut ByteReader<'_>) -> Result<Row, FormatError> {
    let bitset = r.take(types.len().div_ceil(8), "null bit-set")?;
    let mut values = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let is_null = bitset.get(i >> 3).is_some_and(|b| b & (1 << (i & 7)) != 0);
        if is_null {
            if !ty.nullable {
                return Err(FormatError::corrupt(
                    "compacted row",
                    format!("NULL in NOT NULL column {i}"),
                ));
            }
            values.push(Datum::Null);
        } else {
            values.push(read_field(r, &ty.root)?);
        }
    }
    Ok(Row(values))
}
