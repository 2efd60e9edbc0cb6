//! A bounds-checked little-endian cursor over untrusted bytes (crate-internal).
//!
//! Every read returns `None` instead of panicking when the input is too short; callers turn
//! that into their own typed error carrying [`Reader::offset`].

/// A cursor over a byte slice. Reads advance the offset only when they succeed.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at offset 0 of `buf`.
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next unread byte from the start of the buffer.
    pub(crate) const fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Take `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Take a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// A little-endian u16.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian u32.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian u64.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_fail_without_moving() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u32(), None);
        assert_eq!(r.offset(), 0);
        assert_eq!(r.bytes(2), Some(&[1u8, 0][..]));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.bytes(usize::MAX), None);
    }
}
