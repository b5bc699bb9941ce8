//! Bounds-checked little-endian and protobuf wire primitives. Every read returns `None` instead of
//! reading past the end, so parsers built on it cannot over-read or panic.

/// A cursor over a byte slice that never reads past its end.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, or `None` if fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }

    /// A protobuf base-128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A varint length that fits in what remains of the buffer.
    pub(crate) fn len_prefix(&mut self) -> Option<usize> {
        let n = self.varint()?;
        if n > self.remaining() as u64 {
            return None;
        }
        Some(n as usize)
    }
}

/// Protobuf wire types.
pub(crate) const WT_VARINT: u64 = 0;
pub(crate) const WT_I64: u64 = 1;
pub(crate) const WT_LEN: u64 = 2;
pub(crate) const WT_I32: u64 = 5;

/// One protobuf field, its payload located in the buffer.
pub(crate) enum Field<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

/// Reads one field (tag and payload) of a protobuf message; `None` on malformed input.
pub(crate) fn read_field<'a>(r: &mut Reader<'a>) -> Option<(u64, Field<'a>)> {
    let tag = r.varint()?;
    let number = tag >> 3;
    if number == 0 {
        return None;
    }
    let field = match tag & 7 {
        WT_VARINT => Field::Varint(r.varint()?),
        WT_LEN => {
            let n = r.len_prefix()?;
            Field::Len(r.take(n)?)
        }
        WT_I64 => {
            r.take(8)?;
            Field::Fixed
        }
        WT_I32 => {
            r.take(4)?;
            Field::Fixed
        }
        _ => return None, // groups are not used by MACE's messages
    };
    Some((number, field))
}

/// Appends `v` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field tag.
pub(crate) fn put_tag(out: &mut Vec<u8>, number: u64, wire_type: u64) {
    put_varint(out, (number << 3) | wire_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_length() {
        for v in [0u64, 1, 127, 128, 300, 1 << 21, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b, 0).varint(), Some(v));
        }
    }

    #[test]
    fn reads_stop_at_the_end() {
        let b = [0x80u8, 0x80];
        assert_eq!(Reader::new(&b, 0).varint(), None);
        assert_eq!(Reader::new(&b, 0).u32_le(), None);
        let mut r = Reader::new(&[5u8, 1, 2], 0);
        assert_eq!(r.len_prefix(), None);
        assert!(Reader::new(&b, 7).take(1).is_none());
    }
}
