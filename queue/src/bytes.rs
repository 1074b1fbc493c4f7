//! Reading big-endian fields off a byte slice, for the two decoders (journal records in
//! [`crate::record`], queue frames in [`crate::wire`]); each maps [`Truncated`] to its own error.

/// Fewer bytes left than a field needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

/// The bytes not read yet.
#[derive(Clone, Copy, Debug)]
pub struct ByteReader<'a>(pub &'a [u8]);

impl<'a> ByteReader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.0.len() < n {
            return Err(Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_big_endian_and_a_short_read_takes_nothing() {
        let mut r = ByteReader(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!((r.u8(), r.u16(), r.u32()), (Ok(1), Ok(2), Ok(3)));
        assert_eq!(r.u16(), Err(Truncated));
        assert_eq!(r.remaining(), 1, "a failed read consumes nothing");
        assert_eq!(r.take(1), Ok(&[9u8][..]));
    }
}
