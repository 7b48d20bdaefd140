//! Stage ceiling: each stage of the backup pipeline alone on one core, on the same bytes as the
//! end-to-end runs. Ceiling = cores ÷ Σ(seconds per byte), with the faster AES implementation.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// FastCDC 2020 sizes of the vault's default chunker (format.md section 2).
pub const CDC_MIN: u32 = 32 * 1024;
pub const CDC_AVG: u32 = 128 * 1024;
pub const CDC_MAX: u32 = 512 * 1024;
/// Default fixed chunk of `--image` backups.
pub const IMAGE_CHUNK: usize = 256 * 1024;
/// Long extents are chunked in independent 16 MiB segments (format.md section 8.2).
const SEGMENT: u64 = 16 << 20;

/// Where the sample's bytes came from, for the read stage.
enum Source {
    /// Whole files, read with open + read + close.
    Files(Vec<PathBuf>),
    /// Pieces (offset, length) of one file, read with pread.
    Extents(PathBuf, Vec<(u64, u64)>),
}

/// Bytes held in memory, cut into the units the chunker sees (files, or extent segments).
pub struct Sample {
    data: Vec<u8>,
    pieces: Vec<Range<usize>>,
    source: Source,
}

impl Sample {
    pub fn bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

fn list_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            list_files(&e.path(), out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Picks about `limit` of `total` bytes from pieces offered in order, spread evenly over them:
/// a piece is taken when the bytes taken so far, with it, stay within `limit / total` of the
/// bytes offered so far. The whole dataset's mix (text, records, random; which differ in zstd
/// speed by 5x) then shows in the sample, not that of its first half.
struct Spread {
    fraction: f64,
    offered: u64,
    taken: u64,
}

impl Spread {
    fn new(limit: u64, total: u64) -> Spread {
        Spread {
            fraction: if total > limit {
                limit as f64 / total as f64
            } else {
                1.0
            },
            offered: 0,
            taken: 0,
        }
    }

    fn take(&mut self, len: u64) -> bool {
        self.offered += len;
        let yes = (self.taken + len) as f64 <= self.fraction * self.offered as f64 + 1.0;
        if yes {
            self.taken += len;
        }
        yes
    }
}

/// About `limit` bytes of the tree's files (whole files, spread evenly over the sorted paths),
/// concatenated.
pub fn tree_sample(root: &Path, limit: u64) -> Result<Sample> {
    let mut all = Vec::new();
    list_files(root, &mut all)?;
    all.sort();
    let sizes: Vec<u64> = all
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("sizing the files under {}", root.display()))?;
    let mut spread = Spread::new(limit, sizes.iter().sum());
    let mut data = Vec::new();
    let mut pieces = Vec::new();
    let mut files = Vec::new();
    for (p, size) in all.into_iter().zip(sizes) {
        if !spread.take(size) {
            continue;
        }
        let start = data.len();
        fs::File::open(&p)
            .and_then(|mut f| f.read_to_end(&mut data))
            .with_context(|| format!("reading {}", p.display()))?;
        pieces.push(start..data.len());
        files.push(p);
    }
    Ok(Sample {
        data,
        pieces,
        source: Source::Files(files),
    })
}

/// About `limit` bytes of the image's data extents, cut at 16 MiB file offsets as a backup
/// cuts them, the segments spread evenly over the image.
pub fn image_sample(image: &Path, limit: u64) -> Result<Sample> {
    let mut segments = Vec::new();
    for (start, len) in super::image::data_extents(image)? {
        let mut off = start;
        while off < start + len {
            let n = (((off / SEGMENT) + 1) * SEGMENT).min(start + len) - off;
            segments.push((off, n));
            off += n;
        }
    }
    let mut spread = Spread::new(limit, segments.iter().map(|s| s.1).sum());
    segments.retain(|s| spread.take(s.1));
    let f = fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut data = Vec::new();
    let mut pieces = Vec::new();
    for &(off, n) in &segments {
        let at = data.len();
        data.resize(at + n as usize, 0);
        f.read_exact_at(&mut data[at..], off)
            .with_context(|| format!("reading {}", image.display()))?;
        pieces.push(at..data.len());
    }
    Ok(Sample {
        data,
        pieces,
        source: Source::Extents(image.to_path_buf(), segments),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// FastCDC v2020 with the vault's default sizes.
    Cdc,
    /// Fixed chunks of `IMAGE_CHUNK` bytes from each piece's start (`backup --image`).
    Fixed,
}

/// Seconds spent by each stage on one sample (one core each).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageTimes {
    pub bytes: u64,
    pub chunks: u64,
    /// Bytes after compression (each chunk stored compressed only when that is shorter).
    pub compressed_bytes: u64,
    pub read_s: f64,
    pub chunk_s: f64,
    pub hash_s: f64,
    pub zstd_s: f64,
    pub aes_ring_s: f64,
    pub aes_rustcrypto_s: f64,
}

impl StageTimes {
    pub fn aes_best_s(&self) -> f64 {
        self.aes_ring_s.min(self.aes_rustcrypto_s)
    }

    /// Σ seconds over the stages (with the faster AES).
    pub fn total_s(&self) -> f64 {
        self.read_s + self.chunk_s + self.hash_s + self.zstd_s + self.aes_best_s()
    }

    /// Logical MB/s of a stage time.
    pub fn mbps(&self, secs: f64) -> f64 {
        if secs > 0.0 {
            self.bytes as f64 / secs / 1e6
        } else {
            f64::INFINITY
        }
    }

    /// Ceiling in MB/s for `cores` cores.
    pub fn ceiling_mbps(&self, cores: usize) -> f64 {
        cores as f64 * self.mbps(self.total_s())
    }
}

fn time_read(sample: &Sample) -> Result<f64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let t = Instant::now();
    match &sample.source {
        Source::Files(files) => {
            for p in files {
                let mut f =
                    fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
            }
        }
        Source::Extents(path, reads) => {
            let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            for &(off, len) in reads {
                let mut o = off;
                while o < off + len {
                    let n = ((off + len - o) as usize).min(buf.len());
                    f.read_exact_at(&mut buf[..n], o)?;
                    o += n as u64;
                    total += n as u64;
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = black_box(total);
    Ok(secs)
}

/// Repetitions of the cheap stages (chunking, hashing, AES); the fastest one counts.
const REPS: usize = 3;

/// Seconds of the fastest of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Runs every stage on `sample`, one after the other on the calling thread.
pub fn measure(sample: &Sample, chunking: Chunking) -> Result<StageTimes> {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

    let mut st = StageTimes {
        bytes: sample.bytes(),
        ..StageTimes::default()
    };
    // (1) Read: the sample was just read, so the page cache is warm; read twice, keep the faster.
    st.read_s = time_read(sample)?.min(time_read(sample)?);

    // (2) Chunking.
    let mut chunks: Vec<Range<usize>> = Vec::with_capacity(sample.data.len() / 65536 + 16);
    st.chunk_s = best_of(REPS, || {
        chunks.clear();
        for piece in &sample.pieces {
            let base = piece.start;
            match chunking {
                Chunking::Cdc => {
                    let data = &sample.data[piece.clone()];
                    for c in fastcdc::v2020::FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX) {
                        chunks.push(base + c.offset..base + c.offset + c.length);
                    }
                }
                Chunking::Fixed => {
                    let mut o = piece.start;
                    while o < piece.end {
                        let e = (o + IMAGE_CHUNK).min(piece.end);
                        chunks.push(o..e);
                        o = e;
                    }
                }
            }
        }
        Ok(())
    })?;
    st.chunks = chunks.len() as u64;

    // (3) Keyed BLAKE3 of each chunk.
    let key = [0x42u8; 32];
    let mut ids: Vec<[u8; 32]> = Vec::with_capacity(chunks.len());
    st.hash_s = best_of(REPS, || {
        ids.clear();
        for c in &chunks {
            ids.push(*blake3::keyed_hash(&key, &sample.data[c.clone()]).as_bytes());
        }
        Ok(())
    })?;

    // (4) zstd level 3 into a reused buffer; the payload is the shorter of compressed and plain.
    // zstd dominates the sum, so it runs once; only the compress calls are timed.
    let max_chunk = chunks.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut comp = zstd::bulk::Compressor::new(3).context("zstd compressor")?;
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(max_chunk));
    let mut payloads: Vec<u8> = Vec::with_capacity(sample.data.len());
    let mut payload_ranges: Vec<Range<usize>> = Vec::with_capacity(chunks.len());
    let mut zstd_s = 0.0;
    for c in &chunks {
        let plain = &sample.data[c.clone()];
        out.clear();
        let t = Instant::now();
        let n = comp
            .compress_to_buffer(plain, &mut out)
            .context("zstd compress")?;
        zstd_s += t.elapsed().as_secs_f64();
        let at = payloads.len();
        if n < plain.len() {
            payloads.extend_from_slice(&out[..n]);
        } else {
            payloads.extend_from_slice(plain);
        }
        payload_ranges.push(at..payloads.len());
    }
    st.zstd_s = zstd_s;
    st.compressed_bytes = payloads.len() as u64;

    // (5) AES-256-GCM in place, aad = id ‖ 28-byte header, nonce = 0^4 ‖ counter.
    let mut aad = [0u8; 60];
    let aes_key = [0x17u8; 32];
    let ring_key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &aes_key)
            .map_err(|_| anyhow::anyhow!("ring: bad AES key"))?,
    );
    st.aes_ring_s = best_of(REPS, || {
        for (i, r) in payload_ranges.iter().enumerate() {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
            aad[..32].copy_from_slice(&ids[i]);
            let tag = ring_key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut payloads[r.clone()],
                )
                .map_err(|_| anyhow::anyhow!("ring: seal failed"))?;
            let _ = black_box(tag);
        }
        Ok(())
    })?;

    let rc = aes_gcm::Aes256Gcm::new_from_slice(&aes_key)
        .map_err(|_| anyhow::anyhow!("aes-gcm: bad key"))?;
    st.aes_rustcrypto_s = best_of(REPS, || {
        for (i, r) in payload_ranges.iter().enumerate() {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
            aad[..32].copy_from_slice(&ids[i]);
            let tag = rc
                .encrypt_in_place_detached(
                    aes_gcm::Nonce::from_slice(&nonce),
                    &aad,
                    &mut payloads[r.clone()],
                )
                .map_err(|_| anyhow::anyhow!("aes-gcm: encrypt failed"))?;
            let _ = black_box(tag);
        }
        Ok(())
    })?;
    let _ = black_box(&payloads);
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_run_on_a_small_sample() -> Result<()> {
        let mut rng = super::super::dataset::Rng::new(3);
        let mut data = vec![0u8; 3 << 20];
        rng.fill(&mut data[..2 << 20]);
        let s = Sample {
            pieces: vec![0..1 << 20, 1 << 20..data.len()],
            data,
            source: Source::Files(Vec::new()),
        };
        let cdc = measure(&s, Chunking::Cdc)?;
        assert_eq!(cdc.bytes, 3 << 20);
        assert!(cdc.chunks >= 6 && cdc.chunks <= 96, "{}", cdc.chunks);
        assert!(cdc.compressed_bytes < cdc.bytes);
        let fixed = measure(&s, Chunking::Fixed)?;
        assert_eq!(fixed.chunks, 12);
        assert!(fixed.ceiling_mbps(2) > 0.0);
        Ok(())
    }

    #[test]
    fn spread_takes_its_share_from_every_part() {
        // 1,000 pieces of 1-9 bytes; a third of the bytes wanted.
        let sizes: Vec<u64> = (0..1000u64).map(|i| 1 + i % 9).collect();
        let total: u64 = sizes.iter().sum();
        let mut s = Spread::new(total / 3, total);
        let taken: Vec<bool> = sizes.iter().map(|&n| s.take(n)).collect();
        let bytes = |r: std::ops::Range<usize>| -> u64 {
            r.filter(|&i| taken[i]).map(|i| sizes[i]).sum::<u64>()
        };
        let all = bytes(0..1000);
        assert!(
            all <= total / 3 + 1 && all + 10 >= total / 3,
            "{all} of {total}"
        );
        for q in 0..4 {
            let part = bytes(q * 250..(q + 1) * 250);
            assert!(
                part * 4 + 40 >= all && part * 4 <= all + 40,
                "quarter {q}: {part} of {all}"
            );
        }
        let mut everything = Spread::new(total * 2, total);
        assert!(sizes.iter().all(|&n| everything.take(n)));
    }
}
