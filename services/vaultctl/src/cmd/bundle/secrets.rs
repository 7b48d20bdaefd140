//! Known secret values: where they came from, the forms they take when they leak into text
//! (as is, JSON-escaped, hex, base64 at any alignment), and finding every occurrence.
//!
//! The matcher indexes needles by their first four bytes, so one pass over a 64 MiB journal
//! costs a table look-up per byte whatever the number of secrets.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// What replaces a secret in the bundle.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not searched for: redacting every "admin" or "1234" in the logs would
/// destroy them while protecting little. The manifest lists the values left unsearched.
pub const MIN_SECRET_LEN: usize = 6;

/// Binary files larger than this are not key material worth searching for.
const MAX_BINARY_SECRET: usize = 64 * 1024;

/// Lines of one text secret file taken as values (a PEM key has about 50).
const MAX_SECRET_LINES: usize = 1000;

/// A set of byte strings to find, each tied to the source it came from.
#[derive(Default)]
pub struct Needles {
    needles: Vec<(Vec<u8>, usize)>,
    seen: HashSet<Vec<u8>>,
    /// One bit per hash of a 4-byte prefix: most positions of a text are rejected here.
    filter: Vec<u64>,
    by_prefix: HashMap<u32, Vec<usize>>,
}

/// One occurrence: where, and which source's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub range: Range<usize>,
    pub source: usize,
}

const FILTER_BITS: u32 = 16;

fn prefix(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn bucket(p: u32) -> usize {
    (p.wrapping_mul(0x9E37_79B1) >> (32 - FILTER_BITS)) as usize
}

impl Needles {
    /// Adds `bytes` (at least 4 long; shorter ones are ignored) found as `source`.
    pub fn add(&mut self, bytes: &[u8], source: usize) {
        if bytes.len() < 4 || !self.seen.insert(bytes.to_vec()) {
            return;
        }
        if self.filter.is_empty() {
            self.filter = vec![0; (1 << FILTER_BITS) / 64];
        }
        let p = prefix(bytes);
        let b = bucket(p);
        self.filter[b / 64] |= 1 << (b % 64);
        self.by_prefix
            .entry(p)
            .or_default()
            .push(self.needles.len());
        self.needles.push((bytes.to_vec(), source));
    }

    /// Every position where a needle starts, with the longest needle there. Overlapping hits
    /// are all reported: callers merge them, so no part of a secret is left behind.
    pub fn find(&self, hay: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.needles.is_empty() || hay.len() < 4 {
            return hits;
        }
        for i in 0..=hay.len() - 4 {
            let p = prefix(&hay[i..]);
            let b = bucket(p);
            if self.filter[b / 64] & (1 << (b % 64)) == 0 {
                continue;
            }
            let Some(list) = self.by_prefix.get(&p) else {
                continue;
            };
            let best = list
                .iter()
                .map(|&n| &self.needles[n])
                .filter(|(bytes, _)| hay[i..].starts_with(bytes))
                .max_by_key(|(bytes, _)| bytes.len());
            if let Some((bytes, source)) = best {
                hits.push(Hit {
                    range: i..i + bytes.len(),
                    source: *source,
                });
            }
        }
        hits
    }
}

/// The known secret values of this machine and where each came from.
#[derive(Default)]
pub struct Secrets {
    sources: Vec<String>,
    needles: Needles,
    /// (source, why it is not searched for).
    unsearched: Vec<(String, String)>,
}

impl Secrets {
    fn source(&mut self, label: &str) -> usize {
        match self.sources.iter().position(|s| s == label) {
            Some(i) => i,
            None => {
                self.sources.push(label.to_owned());
                self.sources.len() - 1
            }
        }
    }

    /// A value given in text (a password, a token, one line of a key file).
    pub fn add_value(&mut self, label: &str, value: &[u8]) {
        let value = value.trim_ascii();
        if value.is_empty() {
            return;
        }
        if value.len() < MIN_SECRET_LEN {
            self.note_unsearched(
                label,
                &format!("a value shorter than {MIN_SECRET_LEN} bytes is not searched for"),
            );
            return;
        }
        let s = self.source(label);
        for form in text_forms(value) {
            self.needles.add(&form, s);
        }
    }

    /// The content of a file that holds a secret: binary key material as a whole, text line
    /// by line (a passphrase file, a token file, a PEM key).
    pub fn add_file(&mut self, label: &str, content: &[u8]) {
        if is_binary(content) {
            if content.len() > MAX_BINARY_SECRET {
                self.note_unsearched(label, "binary and larger than 64 KiB: not searched for");
                return;
            }
            let s = self.source(label);
            for form in binary_forms(content) {
                self.needles.add(&form, s);
            }
            return;
        }
        for line in content.split(|&b| b == b'\n').take(MAX_SECRET_LINES) {
            self.add_value(label, line);
        }
    }

    pub fn note_unsearched(&mut self, label: &str, why: &str) {
        let entry = (label.to_owned(), why.to_owned());
        if !self.unsearched.contains(&entry) {
            self.unsearched.push(entry);
        }
    }

    pub fn find(&self, hay: &[u8]) -> Vec<Hit> {
        self.needles.find(hay)
    }

    pub fn label(&self, source: usize) -> &str {
        self.sources.get(source).map_or("?", String::as_str)
    }

    pub fn unsearched(&self) -> &[(String, String)] {
        &self.unsearched
    }
}

/// Not text: a NUL, invalid UTF-8, or control characters other than tab, CR and LF.
pub fn is_binary(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_err()
        || b.iter()
            .any(|&c| (c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f)
}

fn is_hex(v: &[u8]) -> bool {
    v.len().is_multiple_of(2) && v.iter().all(u8::is_ascii_hexdigit)
}

/// The forms a text value takes: as is, JSON-escaped, base64 at any offset, and, when it is
/// itself hex or base64 of key material, the other encodings of those bytes.
fn text_forms(v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![v.to_vec()];
    if let Ok(s) = std::str::from_utf8(v) {
        if let Ok(j) = serde_json::to_string(s) {
            out.push(j.trim_matches('"').as_bytes().to_vec());
        }
    }
    base64_forms(v, &mut out);
    if v.len() >= 32 && is_hex(v) {
        if let Ok(raw) = hex::decode(v) {
            out.extend(binary_forms(&raw));
        }
    } else if v.len() >= 16 {
        let decoded = [STANDARD, URL_SAFE]
            .iter()
            .find_map(|e| e.decode(v).ok())
            .or_else(|| {
                [STANDARD_NO_PAD, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|e| e.decode(v).ok())
            });
        if let Some(raw) = decoded.filter(|r| r.len() >= 12) {
            out.push(hex::encode(&raw).into_bytes());
            out.push(hex::encode_upper(&raw).into_bytes());
            out.push(raw);
        }
    }
    out
}

/// Key material: the raw bytes, hex in both cases, base64 at any offset.
fn binary_forms(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        raw.to_vec(),
        hex::encode(raw).into_bytes(),
        hex::encode_upper(raw).into_bytes(),
    ];
    base64_forms(raw, &mut out);
    out
}

/// The characters base64 (standard and URL-safe) gives the value wherever it starts within
/// a longer string: for each of the three alignments, the groups made only of its bytes.
fn base64_forms(v: &[u8], out: &mut Vec<Vec<u8>>) {
    for skip in 0..3 {
        let Some(t) = v.get(skip..) else { continue };
        let t = &t[..t.len() / 3 * 3];
        if t.len() < MIN_SECRET_LEN {
            continue;
        }
        out.push(STANDARD_NO_PAD.encode(t).into_bytes());
        out.push(URL_SAFE_NO_PAD.encode(t).into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets_with(value: &[u8]) -> Secrets {
        let mut s = Secrets::default();
        s.add_file("f", value);
        s
    }

    #[test]
    fn finds_a_value_and_its_encodings_anywhere() {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(5))
            .collect();
        let s = secrets_with(&key);
        let hexed = format!("key={}!", hex::encode(&key));
        assert_eq!(s.find(hexed.as_bytes()).len(), 1);
        let upper = format!("x{}", hex::encode_upper(&key));
        assert_eq!(s.find(upper.as_bytes()).len(), 1);
        // base64 of the key inside a longer encoded string, at every alignment.
        for pad in 0..3 {
            let mut framed = vec![b'z'; pad];
            framed.extend_from_slice(&key);
            framed.extend_from_slice(b"tail");
            let b64 = STANDARD.encode(&framed);
            assert!(!s.find(b64.as_bytes()).is_empty(), "alignment {pad}: {b64}");
        }
        assert!(s.find(b"nothing to see here, nothing at all").is_empty());
    }

    #[test]
    fn text_secrets_line_by_line_and_short_ones_noted() {
        let s = secrets_with(b"first-line-secret\nabc\n\nsecond-line-secret\n");
        let hits = s.find(b"a first-line-secret and second-line-secret");
        assert_eq!(hits.len(), 2);
        assert_eq!(s.label(hits[0].source), "f");
        assert_eq!(s.unsearched().len(), 1, "abc is too short");
    }

    #[test]
    fn hex_key_file_text_also_matches_its_base64() {
        let raw = [7u8; 32];
        let s = secrets_with(format!("{}\n", hex::encode(raw)).as_bytes());
        let b64 = STANDARD.encode(raw);
        assert!(!s.find(b64.as_bytes()).is_empty());
    }

    #[test]
    fn json_escaped_form_is_found() {
        let s = secrets_with(b"pa\"ss\\word-1");
        let json = serde_json::to_string("pa\"ss\\word-1").expect("json");
        assert!(!s.find(json.as_bytes()).is_empty());
    }
}
