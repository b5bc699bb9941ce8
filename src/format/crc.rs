//! Checksumming ranges of an input without reading them a second time.
//!
//! Verifying a file costs a CRC pass over all of it. Done after the file is read, that pass reads
//! the whole buffer back from memory; done while the file is read, on each piece as it arrives, it
//! reads the CPU's cache instead. [`CrcIndex`] keeps the CRC-32 of every prefix of the input that
//! ends on a multiple of [`GRANULE`], gathered in that pass; the decoders then get the CRC of any
//! range by combining two prefix states (CRC-32 is linear) and hashing only the few bytes between
//! the range's ends and the nearest boundaries.

use crc32fast::Hasher;
use std::ops::Range;

/// Distance between two kept prefix states, in bytes.
const GRANULE: usize = 8192;
/// Inputs shorter than this are not indexed: they are still in the CPU's cache after being read,
/// so checksumming them directly costs less than indexing them.
const INDEX_MIN: usize = 1 << 20;

/// The CRC-32 of every prefix of an input that ends on a multiple of [`GRANULE`] bytes, built from
/// the input's bytes in order with [`CrcIndex::update`] (typically as they are read from the file).
#[derive(Clone)]
pub(crate) struct CrcIndex {
    /// `states[i]`: the CRC-32 of the first `i * GRANULE` bytes.
    states: Vec<u32>,
    /// Running CRC of every byte seen.
    running: Hasher,
    /// Bytes seen.
    len: usize,
}

impl CrcIndex {
    /// An index of no bytes yet.
    pub(crate) fn new() -> Self {
        CrcIndex {
            states: vec![0],
            running: Hasher::new(),
            len: 0,
        }
    }

    /// Takes the input read so far (each call's `prefix` extends the previous one's): indexes its
    /// new bytes, or nothing while the input is shorter than [`INDEX_MIN`] (the decoder then
    /// checksums it directly).
    pub(crate) fn observe(&mut self, prefix: &[u8]) {
        if prefix.len() >= INDEX_MIN && prefix.len() > self.len {
            self.update(&prefix[self.len..]);
        }
    }

    /// Takes the next bytes of the input.
    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (GRANULE - self.len % GRANULE).min(bytes.len());
            self.running.update(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
            if self.len % GRANULE == 0 {
                self.states.push(self.running.clone().finalize());
            }
        }
    }

    /// How many bytes the index covers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

/// `crc` as if `n` zero bytes had been appended to its input, minus their own CRC: the linear part
/// of `crc(a || b) = shift(crc(a), len(b)) ^ crc(b)`.
fn shift(crc: u32, n: usize) -> u32 {
    let mut h = Hasher::new_with_initial_len(crc, 0);
    h.combine(&Hasher::new_with_initial_len(0, n as u64));
    h.finalize()
}

/// How a decoder checksums a range of its input: directly, or with an index of exactly that input.
#[derive(Clone, Copy)]
pub(crate) struct Crc<'a> {
    index: Option<&'a CrcIndex>,
}

impl<'a> Crc<'a> {
    /// Checksums every range directly.
    pub(crate) fn direct() -> Self {
        Crc { index: None }
    }

    /// Uses `index` when it was built from exactly `input`'s bytes (its length is the check the
    /// caller can make; the index must come from the same bytes), directly otherwise.
    pub(crate) fn with_index(index: &'a CrcIndex, input: &[u8]) -> Self {
        Crc {
            index: (index.len == input.len()).then_some(index),
        }
    }

    /// The CRC state of `input[range]`, as a hasher that has hashed exactly those bytes.
    pub(crate) fn hasher(&self, input: &[u8], range: Range<usize>) -> Hasher {
        let (a, b) = (range.start, range.end);
        let mut h = Hasher::new();
        let Some(index) = self.index.filter(|i| i.len == input.len()) else {
            h.update(&input[a..b]);
            return h;
        };
        let (c1, c2) = (a.div_ceil(GRANULE) * GRANULE, b / GRANULE * GRANULE);
        if c2 <= c1 {
            h.update(&input[a..b]);
            return h;
        }
        let (p1, p2) = (index.states[c1 / GRANULE], index.states[c2 / GRANULE]);
        h.update(&input[a..c1]);
        h.combine(&Hasher::new_with_initial_len(
            p2 ^ shift(p1, c2 - c1),
            (c2 - c1) as u64,
        ));
        let mut tail = Hasher::new();
        tail.update(&input[c2..b]);
        h.combine(&tail);
        h
    }

    /// The CRC-32 of `input[range]`.
    pub(crate) fn of(&self, input: &[u8], range: Range<usize>) -> u32 {
        self.hasher(input, range).finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_rng::Rng;
    use super::*;

    #[test]
    fn every_range_matches_a_direct_crc() {
        let input: Vec<u8> = (0..5 * GRANULE + 123)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut index = CrcIndex::new();
        // Pieces of odd sizes, as reads return them.
        for piece in input.chunks(3000) {
            index.update(piece);
        }
        assert_eq!(index.len(), input.len());
        let crc = Crc::with_index(&index, &input);
        let points = [
            0,
            1,
            GRANULE - 1,
            GRANULE,
            GRANULE + 1,
            2 * GRANULE,
            3 * GRANULE + 5,
            5 * GRANULE,
            input.len() - 1,
            input.len(),
        ];
        for &a in &points {
            for &b in points.iter().filter(|&&b| b >= a) {
                let h = crc.hasher(&input, a..b);
                assert_eq!(
                    h.clone().finalize(),
                    crc32fast::hash(&input[a..b]),
                    "{a}..{b}"
                );
                // The hasher continues like one that hashed the range itself.
                let mut direct = Hasher::new();
                direct.update(&input[a..b]);
                let (mut x, mut y) = (h, direct);
                x.update(b"more");
                y.update(b"more");
                assert_eq!(x.finalize(), y.finalize());
            }
        }
    }

    fn same(
        a: &Result<crate::format::Decoded, crate::format::NotACache>,
        b: &Result<crate::format::Decoded, crate::format::NotACache>,
    ) {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.format, b.format);
                assert_eq!(a.entries, b.entries);
                assert_eq!(a.damage, b.damage);
                assert_eq!(a.checked, b.checked);
                assert_eq!(a.generation, b.generation);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("one decoder accepted what the other refused: {a:?} / {b:?}"),
        }
    }

    /// The indexed decode decides exactly what the plain one does, on intact and damaged files of
    /// every format, with values that straddle granules, whatever the pieces the index was fed.
    #[test]
    fn indexed_decode_decides_exactly_what_the_plain_decode_does() {
        use crate::format::{
            decode, decode_indexed, encode, EntryIn, Format, ValueKind, WriteParams,
            PLATFORM_INFO_KEY,
        };
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (0..12)
            .map(|i| {
                let len = [0, 1, 100, 8191, 8192, 8193, 20_000, 40_000][i % 8] + rng.below(50);
                let key = format!("conv_2d_1x1 -DBIAS -DCMD_DATA_TYPE=f -DK{i}").into_bytes();
                (key, (0..len).map(|_| rng.next() as u8).collect())
            })
            .collect();
        entries.push((
            PLATFORM_INFO_KEY.to_vec(),
            b"PoCL, FULL_PROFILE, 1.1.1".to_vec(),
        ));
        let ins: Vec<EntryIn> = entries
            .iter()
            .map(|(k, v)| EntryIn::new(k, v, ValueKind::Bytes))
            .collect();
        for f in Format::WRITABLE {
            let file = encode(f, &ins, WriteParams::next(0)).unwrap().out.to_vec();
            let mut cases = vec![file.clone()];
            for _ in 0..120 {
                let mut d = file.clone();
                let at = rng.below(d.len());
                match rng.below(4) {
                    0 => d[at] ^= 1 << rng.below(8),
                    1 => d.truncate(at),
                    2 => {
                        let n = rng.below(64).min(d.len() - at);
                        for b in &mut d[at..at + n] {
                            *b = rng.next() as u8;
                        }
                    }
                    _ => d.insert(at, rng.next() as u8),
                }
                cases.push(d);
            }
            for (i, bytes) in cases.iter().enumerate() {
                let plain = decode(bytes);
                if i == 0 {
                    let d = plain.as_ref().unwrap();
                    assert!(d.damage.intact, "{f}: {:?}", d.damage);
                    assert_eq!(d.entries.len(), entries.len());
                }
                for piece in [1 + rng.below(5000), GRANULE, 256 * 1024] {
                    let mut index = CrcIndex::new();
                    for p in bytes.chunks(piece) {
                        index.update(p);
                    }
                    same(&plain, &decode_indexed(bytes, &index));
                }
            }
        }
    }

    #[test]
    fn only_inputs_worth_it_are_indexed() {
        let small = vec![3u8; INDEX_MIN - 1];
        let mut index = CrcIndex::new();
        index.observe(&small[..1000]);
        index.observe(&small);
        assert_eq!(index.len(), 0, "checksummed directly");
        let big: Vec<u8> = (0..INDEX_MIN + 3 * GRANULE + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut index = CrcIndex::new();
        for end in [1000, INDEX_MIN - 1, INDEX_MIN, INDEX_MIN + 5, big.len()] {
            index.observe(&big[..end]);
        }
        assert_eq!(index.len(), big.len());
        let crc = Crc::with_index(&index, &big);
        let r = 100..big.len() - 100;
        assert_eq!(crc.of(&big, r.clone()), crc32fast::hash(&big[r]));
    }

    #[test]
    fn an_index_of_other_bytes_is_not_used() {
        let input = vec![7u8; 3 * GRANULE];
        let mut index = CrcIndex::new();
        index.update(&input[..GRANULE]);
        let crc = Crc::with_index(&index, &input);
        assert_eq!(crc.of(&input, 0..input.len()), crc32fast::hash(&input));
    }
}
