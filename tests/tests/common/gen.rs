//! Deterministic file contents: the same (kind, seed, length) always gives the same bytes, so a
//! generated tree can be rebuilt from its proptest value and shrunk.

pub use tiervault_e2e::rng::Rng;

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
