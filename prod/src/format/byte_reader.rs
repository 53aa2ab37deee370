//! A bounds-checked cursor over input bytes, and the varint and little-endian writers that
//! mirror it. Every read returns a typed error instead of panicking.

use super::error::FormatError;

/// Reads little-endian integers and unsigned LEB128 varints from a slice.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).ok_or(FormatError::Truncated {
            what,
            needed: n,
            available: self.remaining(),
        })?;
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(FormatError::Truncated { what, needed: n, available: self.remaining() }),
        }
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }
    pub fn i16(&mut self, what: &'static str) -> Result<i16, FormatError> {
        Ok(i16::from_le_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: &'static str) -> Result<f64, FormatError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// An unsigned varint of at most 5 bytes (Java's `readInt`): the bits above 32 of the
    /// fifth byte are ignored, a continuation bit on it is an error.
    pub fn varint_u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7f).wrapping_shl(7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::corrupt(what, "varint longer than 5 bytes"))
    }

    /// An unsigned varint of at most 10 bytes (Java's `readLong`).
    pub fn varint_u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(what)?;
            value |= u64::from(b & 0x7f).wrapping_shl(7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::corrupt(what, "varint longer than 10 bytes"))
    }

    /// A length field that is an `i32` and must be non-negative.
    pub fn len_i32(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| FormatError::corrupt(what, format!("negative length {n}")))
    }
}

pub fn put_varint_u32(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_varint_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length as the `i32` the formats carry; lengths beyond `i32::MAX` cannot be encoded.
pub fn len_to_i32(len: usize, what: &str) -> Result<i32, FormatError> {
    i32::try_from(len).map_err(|_| FormatError::InvalidValue(format!("{what} too long: {len}")))
}

/// Writes the CRC-32C of `batch[covered_from..]` into `batch[crc_offset..covered_from]` (the
/// two batch formats keep their CRC just before the bytes it covers).
pub fn write_crc32c(
    batch: &mut [u8],
    crc_offset: usize,
    covered_from: usize,
    what: &'static str,
) -> Result<(), FormatError> {
    debug_assert_eq!(crc_offset + 4, covered_from, "the CRC sits just before what it covers");
    let available = batch.len();
    let covered = batch.get(covered_from..).ok_or(FormatError::Truncated {
        what,
        needed: covered_from,
        available,
    })?;
    let crc = crc32c::crc32c(covered);
    if let Some(field) = batch.get_mut(crc_offset..covered_from) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}
