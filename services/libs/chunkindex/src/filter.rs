//! A blocked Bloom filter over uniform keys (docs/chunkindex.md, "Filter").
//!
//! One 64-byte block (a cache line) per lookup: the block is chosen by key bytes 16..24 and
//! one bit is set in each of the block's eight 64-bit words, chosen by 6-bit fields of key bytes
//! 24..30. Keys are keyed BLAKE3 outputs, so their bytes serve directly as the hash.

use crate::le::le_u64;

/// Bits set per key (one per word of a block).
pub(crate) const WORDS: usize = 8;
pub(crate) const BLOCK_BYTES: usize = WORDS * 8;

pub(crate) struct Filter {
    blocks: Vec<[u64; WORDS]>,
}

impl Filter {
    /// Number of blocks for `entries` keys at `bits_per_entry` (at least one).
    pub(crate) fn blocks_for(entries: u64, bits_per_entry: u32) -> u64 {
        (entries.saturating_mul(bits_per_entry as u64))
            .div_ceil(BLOCK_BYTES as u64 * 8)
            .max(1)
    }

    pub(crate) fn bytes_for(entries: u64, bits_per_entry: u32) -> u64 {
        Self::blocks_for(entries, bits_per_entry) * BLOCK_BYTES as u64
    }

    pub(crate) fn with_blocks(blocks: u64) -> Filter {
        Filter {
            blocks: vec![[0u64; WORDS]; blocks as usize],
        }
    }

    pub(crate) fn empty() -> Filter {
        Filter { blocks: Vec::new() }
    }

    pub(crate) fn block_count(&self) -> u64 {
        self.blocks.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK_BYTES as u64
    }

    #[inline]
    fn locate(&self, key: &[u8; 32]) -> (usize, u64) {
        let h = le_u64(&key[16..24]);
        let block = ((h as u128 * self.blocks.len() as u128) >> 64) as usize;
        (block, le_u64(&key[24..32]))
    }

    pub(crate) fn insert(&mut self, key: &[u8; 32]) {
        let (b, bits) = self.locate(key);
        let block = &mut self.blocks[b];
        for (w, word) in block.iter_mut().enumerate() {
            *word |= 1u64 << ((bits >> (6 * w)) & 63);
        }
    }

    /// False means certainly absent; true means "read the run to find out".
    #[inline]
    pub(crate) fn may_contain(&self, key: &[u8; 32]) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let (b, bits) = self.locate(key);
        let block = &self.blocks[b];
        let mut all = true;
        for (w, word) in block.iter().enumerate() {
            all &= word & (1u64 << ((bits >> (6 * w)) & 63)) != 0;
        }
        all
    }

    /// Serialise block `i` (eight little-endian u64 words).
    pub(crate) fn block_bytes(&self, i: usize, out: &mut [u8; BLOCK_BYTES]) {
        for (w, word) in self.blocks[i].iter().enumerate() {
            out[w * 8..w * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
    }

    /// Append blocks decoded from `bytes` (a multiple of [`BLOCK_BYTES`]).
    pub(crate) fn extend_from_bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks_exact(BLOCK_BYTES) {
            let mut block = [0u64; WORDS];
            for (w, word) in block.iter_mut().enumerate() {
                *word = le_u64(&chunk[w * 8..]);
            }
            self.blocks.push(block);
        }
    }

    pub(crate) fn reserve_exact(&mut self, blocks: u64) {
        self.blocks.reserve_exact(blocks as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u8; 32] {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    #[test]
    fn no_false_negatives_and_low_false_positive_rate() {
        let n = 200_000u64;
        let mut f = Filter::with_blocks(Filter::blocks_for(n, 16));
        for i in 0..n {
            f.insert(&key(i));
        }
        assert!((0..n).all(|i| f.may_contain(&key(i))));
        let fp = (n..3 * n).filter(|&i| f.may_contain(&key(i))).count();
        let rate = fp as f64 / (2 * n) as f64;
        // Expected ≈ 0.1 % at 16 bits per entry; allow generous slack.
        assert!(rate < 0.004, "false positive rate {rate}");
    }

    #[test]
    fn bytes_round_trip() {
        let mut f = Filter::with_blocks(3);
        f.insert(&key(1));
        f.insert(&key(2));
        let mut g = Filter::empty();
        let mut buf = [0u8; BLOCK_BYTES];
        for i in 0..3 {
            f.block_bytes(i, &mut buf);
            g.extend_from_bytes(&buf);
        }
        assert!(g.may_contain(&key(1)) && g.may_contain(&key(2)));
        assert_eq!(g.block_count(), 3);
    }
}
