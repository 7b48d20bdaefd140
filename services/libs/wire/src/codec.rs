//! Primitive readers and writers for message bodies. Both carry the message type's name so
//! that every error says which message and field was at fault without each call site
//! building the context itself.

use crate::{WireError, MAX_FRAME};

/// Appends fields to a frame being built. Limit checks live here so that the encoder refuses
/// exactly what the decoder refuses.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    message: &'static str,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, message: &'static str) -> Self {
        Self { out, message }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }

    pub(crate) fn flag(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    pub(crate) fn str(
        &mut self,
        field: &'static str,
        s: &str,
        max: usize,
    ) -> Result<(), WireError> {
        if s.len() > max {
            return Err(WireError::StringTooLong {
                message: self.message,
                field,
                len: s.len(),
                max,
            });
        }
        // max is always below u16::MAX, so the length fits.
        self.u16(s.len() as u16);
        self.raw(s.as_bytes());
        Ok(())
    }

    pub(crate) fn bytes(&mut self, field: &'static str, b: &[u8]) -> Result<(), WireError> {
        // Checked here, not only at the frame level, so that a huge buffer is refused
        // before it is copied and its length never wraps in the u32 cast.
        if b.len() > MAX_FRAME {
            return Err(WireError::BytesTooLong {
                message: self.message,
                field,
                len: b.len(),
                max: MAX_FRAME,
            });
        }
        self.u32(b.len() as u32);
        self.raw(b);
        Ok(())
    }

    pub(crate) fn count32(
        &mut self,
        field: &'static str,
        n: usize,
        max: u32,
    ) -> Result<(), WireError> {
        let v = self.checked_count(field, n, u64::from(max))?;
        self.u32(v as u32);
        Ok(())
    }

    pub(crate) fn count16(
        &mut self,
        field: &'static str,
        n: usize,
        max: u16,
    ) -> Result<(), WireError> {
        let v = self.checked_count(field, n, u64::from(max))?;
        self.u16(v as u16);
        Ok(())
    }

    fn checked_count(&self, field: &'static str, n: usize, max: u64) -> Result<u64, WireError> {
        let count = n as u64;
        if count > max {
            return Err(WireError::CountTooLarge {
                message: self.message,
                field,
                count,
                max,
            });
        }
        Ok(count)
    }
}

/// Reads fields from the body of one frame, front to back.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8], message: &'static str) -> Self {
        Self {
            rest: body,
            message,
        }
    }

    pub(crate) fn message(&self) -> &'static str {
        self.message
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated {
                message: self.message,
                field,
                needed: n,
                available: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(WireError::BadFlag {
                message: self.message,
                field,
                value,
            }),
        }
    }

    pub(crate) fn str(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::StringTooLong {
                message: self.message,
                field,
                len,
                max,
            });
        }
        let raw = self.take(field, len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(WireError::BadUtf8 {
                message: self.message,
                field,
            }),
        }
    }

    /// A `u32`-prefixed byte string, returned as a slice so the caller copies it once.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(field)? as usize;
        self.take(field, len)
    }

    /// Reads a `u32` count and checks it against `max` and against the bytes left, assuming
    /// each item takes at least `min_item` bytes, so that a caller may allocate `count` items.
    pub(crate) fn count32(
        &mut self,
        field: &'static str,
        max: u32,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let count = self.u32(field)?;
        self.check_count(field, u64::from(count), u64::from(max), min_item)
    }

    /// As [`Reader::count32`], for a `u16` count.
    pub(crate) fn count16(
        &mut self,
        field: &'static str,
        max: u16,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let count = self.u16(field)?;
        self.check_count(field, u64::from(count), u64::from(max), min_item)
    }

    fn check_count(
        &self,
        field: &'static str,
        count: u64,
        max: u64,
        min_item: usize,
    ) -> Result<usize, WireError> {
        if count > max {
            return Err(WireError::CountTooLarge {
                message: self.message,
                field,
                count,
                max,
            });
        }
        // count ≤ u32::MAX and min_item is a small constant: the product cannot overflow.
        let min_bytes = count * min_item as u64;
        if min_bytes > self.rest.len() as u64 {
            return Err(WireError::CountExceedsBody {
                message: self.message,
                field,
                count,
                min_bytes,
                available: self.rest.len(),
            });
        }
        Ok(count as usize)
    }

    /// Fixed-size slice whose length the caller computed from an already-checked count.
    pub(crate) fn slice(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        self.take(field, n)
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                message: self.message,
                len: self.rest.len(),
            })
        }
    }
}
