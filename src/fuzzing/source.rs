//! Reads fuzzer bytes as a stream of small choices, for the structured drivers.
//!
//! Owns nothing but a cursor. Must never fail: once the bytes run out every read is zero, so any
//! input, however short, decodes to something.

/// A cursor over fuzzer bytes; reads past the end give zeros.
#[derive(Debug, Clone)]
pub struct ByteSource<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteSource<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        v.iter_mut().for_each(|b| *b = self.u8());
        u64::from_le_bytes(v)
    }

    /// A number below `n` (0 when `n` is 0), from one byte (two when `n` exceeds 256).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u16() as usize % n
        }
    }

    /// One element of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Every byte not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.at..).unwrap_or(&[]);
        self.at = self.bytes.len();
        rest
    }
}
