//! The store's maps by key, and the hash they use: a keyed folded multiply (the construction of
//! wyhash and foldhash), 16 bytes a step. std's SipHash-1-3 took a twentieth of a drop-in start
//! (a lazy open hashes each of the file's keys once, MACE's keys are 100 to 200 bytes long); this
//! is several times faster on such keys. Each map's two 64-bit keys come from std's random
//! source, so a file cannot be written to make its keys collide: no input makes the maps
//! quadratic.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map by byte-string key, hashed with [`KeyHash`].
pub(crate) type KeyMap<V> = HashMap<Vec<u8>, V, KeyHash>;

/// An empty [`KeyMap`] with room for `n` keys.
pub(crate) fn key_map_with_capacity<V>(n: usize) -> KeyMap<V> {
    HashMap::with_capacity_and_hasher(n, KeyHash::default())
}

/// The 128-bit product of `a` and `b`, its halves xored: every bit of the result depends on most
/// bits of both.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// An odd constant with no pattern in its bits (the fractional part of pi), for the finish.
const PI: u64 = 0x243f_6a88_85a3_08d3;

/// Builds [`KeyHasher`]s that share one map's random keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHash {
    seed: [u64; 2],
}

impl Default for KeyHash {
    /// New random keys, drawn from std's source (the keys std seeds its own maps with).
    fn default() -> Self {
        let random = std::collections::hash_map::RandomState::new();
        KeyHash {
            seed: [random.hash_one(1u8), random.hash_one(2u8) | 1],
        }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            acc: self.seed[0],
            seed: self.seed,
        }
    }
}

/// The state of one hash: everything written so far, folded into one word.
pub(crate) struct KeyHasher {
    acc: u64,
    seed: [u64; 2],
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, a: u64, b: u64) {
        self.acc = fold_mul(a ^ self.acc ^ self.seed[0], b ^ self.seed[1]);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let (a, b) = c.split_at(8);
            self.mix(word(a), word(b));
        }
        let rest = chunks.remainder();
        // The tail, zero-padded, with its length: "ab" and "ab\0" differ in the second word.
        let (a, b) = rest.split_at(rest.len().min(8));
        self.mix(word(a), word(b) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n, PI);
    }

    fn finish(&self) -> u64 {
        fold_mul(self.acc ^ self.seed[1], self.seed[0] ^ PI)
    }
}

/// Up to 8 bytes as a little-endian word, zero-padded.
#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash(h: &KeyHash, key: &[u8]) -> u64 {
        h.hash_one(key)
    }

    #[test]
    fn equal_keys_hash_equal_and_a_map_finds_them() {
        let mut m: KeyMap<usize> = key_map_with_capacity(4);
        for i in 0..1000usize {
            m.insert(format!("program_{i} -DX={i}").into_bytes(), i);
        }
        for i in 0..1000usize {
            assert_eq!(m.get(format!("program_{i} -DX={i}").as_bytes()), Some(&i));
        }
        assert_eq!(m.get(&b"program_1000 -DX=1000"[..]), None);
        let h = KeyHash::default();
        assert_eq!(hash(&h, b"same key"), hash(&h, b"same key"));
    }

    #[test]
    fn keys_that_differ_in_one_bit_or_in_trailing_zeros_hash_apart() {
        let h = KeyHash::default();
        let base = vec![0x5au8; 77];
        let mut seen = HashSet::new();
        assert!(seen.insert(hash(&h, &base)));
        for byte in 0..base.len() {
            for bit in 0..8 {
                let mut k = base.clone();
                k[byte] ^= 1 << bit;
                assert!(seen.insert(hash(&h, &k)), "byte {byte} bit {bit}");
            }
        }
        let mut zeros = HashSet::new();
        for n in 0..64 {
            assert!(zeros.insert(hash(&h, &vec![0u8; n])), "{n} zero bytes");
        }
    }

    #[test]
    fn every_bucket_bit_is_used_by_similar_keys() {
        // hashbrown takes the bucket from the low bits and a tag from the top 7: keys that differ
        // only in a counter must spread over both.
        let h = KeyHash::default();
        let hashes: Vec<u64> = (0..4096u32)
            .map(|i| hash(&h, format!("program_hash_ kernel -DN={i:08}").as_bytes()))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|x| x & 0xfff).collect();
        let top: HashSet<u64> = hashes.iter().map(|x| x >> 57).collect();
        assert!(low.len() > 2400, "{} of 4096 low-bit buckets", low.len());
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn two_maps_hash_the_same_key_apart() {
        let (a, b) = (KeyHash::default(), KeyHash::default());
        assert_ne!(hash(&a, b"a key"), hash(&b, b"a key"));
    }
}
