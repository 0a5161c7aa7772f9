//! Little-endian, length-prefixed primitives shared by the log-entry and snapshot
//! encodings. Every read is bounds-checked and reports where it ran out; none panics.

use bytes::{BufMut, Bytes, BytesMut};

/// A read ran past the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated {
    /// Where the read started.
    pub(crate) offset: usize,
    /// How many bytes it needed.
    pub(crate) needed: usize,
}

/// A cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
        let truncated = Truncated {
            offset: self.pos,
            needed: len,
        };
        let end = self.pos.checked_add(len).ok_or(truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes(
            raw.try_into().expect("take(4) returns 4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        let raw = self.take(8)?;
        Ok(u64::from_le_bytes(
            raw.try_into().expect("take(8) returns 8 bytes"),
        ))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Truncated> {
        let raw = self.take(8)?;
        Ok(i64::from_le_bytes(
            raw.try_into().expect("take(8) returns 8 bytes"),
        ))
    }

    /// A `u32` length then that many bytes, copied out. The length is checked against what
    /// remains before anything is allocated.
    pub(crate) fn bytes(&mut self) -> Result<Bytes, Truncated> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }

    /// A `u32` length then that many bytes, borrowed from the input.
    pub(crate) fn slice(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u32()?;
        let len = usize::try_from(len).expect("u32 fits in usize on supported targets");
        self.take(len)
    }
}

/// Writes `data` with a `u32` length prefix.
///
/// # Panics
/// If `data` is 4 GiB or longer: callers cap keys and values far below that, so this is
/// a broken invariant, not an input error.
pub(crate) fn put_bytes(out: &mut BytesMut, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("keys and values are capped far below 4 GiB");
    out.put_u32_le(len);
    out.put_slice(data);
}

/// Writes a count with a `u32` width (same panic rule as [`put_bytes`]).
pub(crate) fn put_count(out: &mut BytesMut, count: usize) {
    out.put_u32_le(u32::try_from(count).expect("element counts are capped far below 2^32"));
}
