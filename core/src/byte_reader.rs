//! A bounds-checked cursor over bytes read from a disk or a remote store: every read checks the
//! length against the bytes left before it takes or allocates anything, so damaged or hostile
//! bytes end in a [`Truncated`] error, never in a panic or a huge allocation.

/// The bytes ended before `what` did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("truncated {what}: {needed_bytes} bytes needed, {available_bytes} left")]
pub struct Truncated {
    pub what: &'static str,
    pub needed_bytes: usize,
    pub available_bytes: usize,
}

/// Little-endian reads from the front of a byte slice.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    rest: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteReader { rest: bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        if len > self.rest.len() {
            return Err(Truncated { what, needed_bytes: len, available_bytes: self.rest.len() });
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, Truncated> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A u32 length, then that many bytes.
    pub fn sized(&mut self, what: &'static str) -> Result<&'a [u8], Truncated> {
        let len = self.u32(what)?;
        // A length beyond usize is beyond the bytes left as well.
        self.take(usize::try_from(len).unwrap_or(usize::MAX), what)
    }

    /// A u32 item count, checked against the bytes left: each item takes at least
    /// `item_bytes_min` bytes, so a count the rest cannot hold is refused before anything is
    /// allocated for it.
    pub fn count(&mut self, item_bytes_min: usize, what: &'static str) -> Result<usize, Truncated> {
        let count = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        let needed_bytes = count.saturating_mul(item_bytes_min.max(1));
        if needed_bytes > self.rest.len() {
            return Err(Truncated { what, needed_bytes, available_bytes: self.rest.len() });
        }
        Ok(count)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Truncated> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }
}

/// Little-endian writes, the counterpart of [`ByteReader`].
#[derive(Debug, Default, Clone)]
pub struct ByteWriter {
    bytes: Vec<u8>,
}

impl ByteWriter {
    pub fn new() -> Self {
        ByteWriter::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u16(&mut self, value: u16) {
        self.raw(&value.to_le_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.raw(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.raw(&value.to_le_bytes());
    }

    pub fn i32(&mut self, value: i32) {
        self.raw(&value.to_le_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.raw(&value.to_le_bytes());
    }

    /// A u32 length, then the bytes. Panics on more than 4 GiB: callers bound what they write.
    pub fn sized(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("a sized field is under 4 GiB");
        self.u32(len);
        self.raw(bytes);
    }

    /// A u32 item count. Panics on more than u32::MAX items: callers bound what they write.
    pub fn count(&mut self, count: usize) {
        self.u32(u32::try_from(count).expect("a count fits in u32"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_writer_wrote() {
        let mut writer = ByteWriter::new();
        writer.u8(7);
        writer.u16(513);
        writer.u32(70_000);
        writer.u64(u64::MAX - 1);
        writer.i32(-5);
        writer.i64(i64::MIN);
        writer.sized(b"abc");
        writer.count(2);
        writer.u8(1);
        writer.u8(2);
        let bytes = writer.into_bytes();
        let mut reader = ByteReader::new(&bytes);
        assert_eq!(reader.u8("a").unwrap(), 7);
        assert_eq!(reader.u16("b").unwrap(), 513);
        assert_eq!(reader.u32("c").unwrap(), 70_000);
        assert_eq!(reader.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(reader.i32("e").unwrap(), -5);
        assert_eq!(reader.i64("f").unwrap(), i64::MIN);
        assert_eq!(reader.sized("g").unwrap(), b"abc");
        assert_eq!(reader.count(1, "h").unwrap(), 2);
        assert_eq!(reader.take(2, "items").unwrap(), &[1, 2]);
        assert!(reader.is_empty());
    }

    #[test]
    fn a_length_or_count_beyond_the_bytes_left_is_refused_before_allocating() {
        let mut writer = ByteWriter::new();
        writer.u32(u32::MAX);
        let bytes = writer.into_bytes();
        assert!(ByteReader::new(&bytes).sized("name").is_err());
        let error = ByteReader::new(&bytes).count(8, "files").unwrap_err();
        assert_eq!(error.what, "files");
        assert!(ByteReader::new(&[1, 2]).u32("word").is_err());
    }
}
