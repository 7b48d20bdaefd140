//! The manifest: the one file whose atomic replacement commits the index
//! (docs/chunkindex.md, "Manifest").

use crate::le::{le_u32, le_u64};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub(crate) const NAME: &str = "MANIFEST";
pub(crate) const TMP_NAME: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"TVCXMAN1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 48;
const RUN_LEN: usize = 24;
/// Longest caller watermark.
pub const MAX_WATERMARK: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunRef {
    pub(crate) seq: u64,
    pub(crate) entries: u64,
    pub(crate) file_len: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) generation: u64,
    pub(crate) next_seq: u64,
    /// Distinct keys in the committed index.
    pub(crate) len: u64,
    /// Oldest first: a key in a later run shadows the same key in an earlier one.
    pub(crate) runs: Vec<RunRef>,
    pub(crate) watermark: Vec<u8>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.runs.len() * RUN_LEN + self.watermark.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.watermark.len() as u32).to_le_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.seq.to_le_bytes());
            out.extend_from_slice(&r.entries.to_le_bytes());
            out.extend_from_slice(&r.file_len.to_le_bytes());
        }
        out.extend_from_slice(&self.watermark);
        let d = blake3::hash(&out);
        out.extend_from_slice(d.as_bytes());
        out
    }

    pub(crate) fn decode(path: &Path, b: &[u8]) -> Result<Manifest> {
        let bad = |what: &str| Error::corrupt(path, what.to_string());
        if b.len() < HEADER_LEN + 32 || &b[..8] != MAGIC {
            return Err(bad("not a chunk index manifest (bad magic)"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad("manifest checksum mismatch"));
        }
        if le_u32(&b[8..]) != VERSION {
            return Err(bad("unknown manifest version"));
        }
        let n_runs = le_u32(&b[40..]) as usize;
        let wm_len = le_u32(&b[44..]) as usize;
        if HEADER_LEN as u128 + n_runs as u128 * RUN_LEN as u128 + wm_len as u128
            != body.len() as u128
        {
            return Err(bad("manifest length does not match its counts"));
        }
        let runs: Vec<RunRef> = body[HEADER_LEN..HEADER_LEN + n_runs * RUN_LEN]
            .chunks_exact(RUN_LEN)
            .map(|r| RunRef {
                seq: le_u64(r),
                entries: le_u64(&r[8..]),
                file_len: le_u64(&r[16..]),
            })
            .collect();
        let m = Manifest {
            generation: le_u64(&b[16..]),
            next_seq: le_u64(&b[24..]),
            len: le_u64(&b[32..]),
            runs,
            watermark: body[HEADER_LEN + n_runs * RUN_LEN..].to_vec(),
        };
        if m.runs.windows(2).any(|w| w[0].seq >= w[1].seq)
            || m.runs.last().is_some_and(|r| r.seq >= m.next_seq)
        {
            return Err(bad("manifest run list out of order"));
        }
        Ok(m)
    }

    /// Read `dir/MANIFEST`; `None` when there is none (a fresh index).
    pub(crate) fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(NAME);
        match std::fs::read(&path) {
            Ok(b) => Manifest::decode(&path, &b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Commit: write `MANIFEST.tmp`, fsync, rename over `MANIFEST`, fsync the directory.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(TMP_NAME);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(&self.encode()).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        drop(f);
        let path = dir.join(NAME);
        std::fs::rename(&tmp, &path).ctx("rename", &path)?;
        sync_dir(dir)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let m = Manifest {
            generation: 3,
            next_seq: 9,
            len: 1234,
            runs: vec![
                RunRef {
                    seq: 2,
                    entries: 1000,
                    file_len: 5,
                },
                RunRef {
                    seq: 8,
                    entries: 300,
                    file_len: 6,
                },
            ],
            watermark: b"pack 17".to_vec(),
        };
        let b = m.encode();
        let p = Path::new("MANIFEST");
        assert_eq!(Manifest::decode(p, &b).expect("decode"), m);
        for i in [0, 20, b.len() - 40, b.len() - 1] {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(Manifest::decode(p, &bad).expect_err("damaged").is_damage());
        }
        assert!(Manifest::decode(p, &b[..b.len() - 1]).is_err());
    }
}
