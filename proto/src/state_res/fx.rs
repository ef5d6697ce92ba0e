//! A small, fast, non-cryptographic hasher for the maps state resolution
//! builds (event IDs, state keys, interned indices).
//!
//! Resolution of a large room hashes every entry of every state set; the
//! standard library's SipHash costs several times more per key than this
//! multiply-rotate hash (the one rustc uses). Keys here are event IDs, which
//! are themselves hashes, and state keys bounded to 255 bytes.

use std::hash::{BuildHasherDefault, Hasher};

/// The multiplier of rustc's `FxHasher` (a 64-bit odd constant close to
/// 2^64 / golden ratio).
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Multiply-rotate hasher; see the module docs.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // Mixing in the length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The product's high bits are the well mixed ones; hash tables pick
        // buckets with the low bits, so rotate the good bits down.
        self.hash.rotate_left(26)
    }
}

/// [`FxHasher`] starting from a random state, for maps keyed by data an
/// attacker could grind (event IDs) to collide under a fixed function.
#[derive(Clone, Copy)]
pub(crate) struct SeededFx(u64);

impl SeededFx {
    pub(crate) fn random() -> Self {
        use std::hash::BuildHasher;
        SeededFx(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }
}

impl std::hash::BuildHasher for SeededFx {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher { hash: self.0 }
    }
}

/// `BuildHasher` for [`FxHasher`]; what [`super::StateMap`] uses.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;
pub(crate) type FxHashSet<K> = std::collections::HashSet<K, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn h<T: Hash>(t: T) -> u64 {
        FxBuildHasher::default().hash_one(t)
    }

    #[test]
    fn distinguishes_nearby_keys() {
        assert_ne!(h(("m.room.member", "@a:x")), h(("m.room.member", "@b:x")));
        assert_ne!(h(("ab", "")), h(("a", "b")));
        assert_ne!(h(b"ab".as_slice()), h(b"ab\0".as_slice()));
        assert_eq!(h("same"), h(String::from("same")));
    }
}
