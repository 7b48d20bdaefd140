//! Deterministic file contents: the same (kind, seed, length) always gives the same bytes, so a
//! generated tree can be rebuilt from its proptest value and shrunk.

/// SplitMix64: tiny, fast even unoptimised, and good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// What a generated file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Incompressible bytes.
    Random,
    /// English-like words: zstd shrinks it several times.
    Text,
    /// Explicitly written zeros (allocated data, not holes).
    Zeros,
}

/// `len` bytes of `kind` content for `seed`.
pub fn content(kind: Kind, seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    match kind {
        Kind::Random => Rng::new(seed).fill(&mut buf),
        Kind::Text => fill_text(&mut Rng::new(seed), &mut buf),
        Kind::Zeros => {}
    }
    buf
}

const WORDS: &[&[u8]] = &[
    b"vault",
    b"backup",
    b"the",
    b"of",
    b"and",
    b"snapshot",
    b"chunk",
    b"pack",
    b"index",
    b"restore",
    b"a",
    b"to",
    b"in",
    b"is",
    b"that",
    b"tier",
    b"storage",
    b"data",
    b"with",
    b"compress",
    b"encrypt",
    b"key",
    b"for",
    b"on",
    b"file",
    b"tree",
    b"blob",
    b"verify",
    b"as",
    b"by",
    b"zstd",
    b"hash",
];

/// Fills `buf` with words separated by spaces and, now and then, newlines.
fn fill_text(rng: &mut Rng, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let r = rng.next_u64();
        let word = WORDS[(r % WORDS.len() as u64) as usize];
        // A sentence ends about every 11 words (`match`: is_multiple_of needs Rust 1.87).
        let sep: &[u8] = match (r >> 32) % 11 {
            0 => b".\n",
            _ => b" ",
        };
        for &b in word.iter().chain(sep) {
            if i == buf.len() {
                break;
            }
            buf[i] = b;
            i += 1;
        }
    }
}

/// A "mixed" file as the bigger tests use: random or text depending on the seed.
pub fn mixed(seed: u64, len: usize, random_share: f64) -> Vec<u8> {
    let kind = if Rng::new(seed ^ 0xabcd).unit() < random_share {
        Kind::Random
    } else {
        Kind::Text
    };
    content(kind, seed, len)
}
