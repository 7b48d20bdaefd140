//! Plaintext ⇄ stored blob: compress and seal on the way in; authenticate, decompress and
//! check the id on the way out. Each worker owns one `Encoder`/`Decoder`, so zstd contexts and
//! buffers are reused rather than allocated per chunk.

use std::sync::Arc;

use crate::blob::{BlobHeader, Kind, HEADER_LEN};
use crate::crypto::{Keys, Sealer};
use crate::error::{Error, Result};
use crate::id::Id;

/// Largest plaintext a blob may have (chunk lists and trees included).
pub const MAX_BLOB: usize = 256 << 20;

pub struct Encoder {
    sealer: Sealer,
    zstd: zstd::bulk::Compressor<'static>,
    /// Level-1 compressor for probing samples of large chunks.
    probe: zstd::bulk::Compressor<'static>,
    zbuf: Vec<u8>,
    pbuf: Vec<u8>,
}

/// Chunks at least this large are probed before compression.
const PROBE_MIN: usize = 64 * 1024;
const PROBE_SAMPLE: usize = 2048;
/// Evenly spread samples, so a chunk that is only partly compressible is still compressed.
const PROBES: usize = 8;

impl Encoder {
    pub fn new(keys: &Arc<Keys>, level: i32) -> Result<Encoder> {
        let zstd = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::Invalid(format!("zstd level {level}: {e}")))?;
        let probe = zstd::bulk::Compressor::new(1)
            .map_err(|e| Error::Invalid(format!("zstd level 1: {e}")))?;
        Ok(Encoder {
            sealer: keys.sealer(),
            zstd,
            probe,
            zbuf: Vec::new(),
            pbuf: Vec::with_capacity(zstd::zstd_safe::compress_bound(PROBE_SAMPLE)),
        })
    }

    /// Whether `plain` is worth compressing. Trying zstd on incompressible data (media,
    /// encrypted or already compressed files) costs nearly as much as compressing text and
    /// gains nothing, so eight 2 KiB samples are tried at level 1 first: if none shrinks by 1%,
    /// the chunk is stored raw.
    fn worth_compressing(&mut self, plain: &[u8]) -> bool {
        if plain.len() < PROBE_MIN {
            return true;
        }
        let last = plain.len() - PROBE_SAMPLE;
        (0..PROBES).any(|i| {
            let at = last * i / (PROBES - 1);
            let sample = &plain[at..at + PROBE_SAMPLE];
            self.pbuf.clear();
            match self.probe.compress_to_buffer(sample, &mut self.pbuf) {
                Ok(n) => n * 100 < PROBE_SAMPLE * 99,
                Err(_) => true,
            }
        })
    }

    pub fn keys(&self) -> &Arc<Keys> {
        self.sealer.keys()
    }

    /// Append the stored form of `plain` (kind data or meta) to `out`; returns the stored length.
    pub fn encode(
        &mut self,
        id: &Id,
        kind: Kind,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        let start = out.len();
        let bound = zstd::zstd_safe::compress_bound(plain.len());
        self.zbuf.clear();
        self.zbuf.reserve(bound);
        let compressed = self.worth_compressing(plain)
            && match self.zstd.compress_to_buffer(plain, &mut self.zbuf) {
                Ok(n) => n < plain.len(),
                Err(_) => false,
            };
        let payload: &[u8] = if compressed { &self.zbuf } else { plain };
        self.sealer
            .seal_into(&id.0, kind, compressed, payload, out)?;
        Ok(out.len() - start)
    }
}

/// The stored form of a refs blob: header and plaintext.
pub fn encode_refs(plain: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&BlobHeader::refs().encode());
    out.extend_from_slice(plain);
}

/// The plaintext of a stored refs blob.
pub fn refs_payload(stored: &[u8]) -> std::result::Result<&[u8], String> {
    let hdr = BlobHeader::decode(stored)?;
    if hdr.kind != Kind::Refs {
        return Err(format!("expected a refs blob, found kind {:?}", hdr.kind));
    }
    Ok(&stored[HEADER_LEN..])
}

/// What a keyless holder can check of a stored blob it is given: the header parses and
/// agrees with `kind`, the bytes match the transfer digest, and a refs blob matches its id.
/// (The AEAD tag and the keyed id of data and meta blobs need the key.)
pub fn check_keyless(
    id: &Id,
    kind: Kind,
    digest: &[u8; 16],
    stored: &[u8],
) -> std::result::Result<(), String> {
    if crate::pack::digest16(stored) != *digest {
        return Err("stored bytes do not match their digest".into());
    }
    let hdr = BlobHeader::decode(stored)?;
    if hdr.kind != kind {
        return Err(format!(
            "header says kind {:?}, the sender said {kind:?}",
            hdr.kind
        ));
    }
    if kind == Kind::Refs && Id::digest(&stored[HEADER_LEN..]) != *id {
        return Err("refs blob content does not match its id".into());
    }
    if kind != Kind::Refs && stored.len() < HEADER_LEN + crate::crypto::TAG_LEN {
        return Err("too short for a sealed blob".into());
    }
    Ok(())
}

#[derive(Default)]
pub struct Decoder {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Authenticate, decompress and check `stored` against `id`; returns the plaintext.
    /// `stored` is decrypted in place. The error text says which check failed.
    pub fn decode<'a>(
        &'a mut self,
        keys: &Keys,
        id: &Id,
        stored: &'a mut [u8],
    ) -> std::result::Result<&'a [u8], String> {
        let hdr = BlobHeader::decode(stored)?;
        if hdr.kind == Kind::Refs {
            let plain = &stored[HEADER_LEN..];
            if Id::digest(plain) != *id {
                return Err("content does not match its id".into());
            }
            return Ok(plain);
        }
        let (hdr, payload) = keys.open(&id.0, stored)?;
        let plain: &[u8] = if hdr.compressed {
            self.decompress(payload)?;
            &self.buf
        } else {
            payload
        };
        if keys.blob_id(plain) != *id {
            return Err("content does not match its id".into());
        }
        Ok(plain)
    }

    /// Decompress a zstd frame into the reusable buffer.
    pub fn decompress(&mut self, frame: &[u8]) -> std::result::Result<(), String> {
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n as usize <= MAX_BLOB => n as usize,
            Ok(Some(_)) => return Err("compressed blob declares an oversized content".into()),
            _ => return Err("compressed blob has no valid zstd frame header".into()),
        };
        let z = match &mut self.zstd {
            Some(z) => z,
            None => self
                .zstd
                .insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd context: {e}"))?),
        };
        self.buf.clear();
        self.buf.reserve(size);
        let n = z
            .decompress_to_buffer(frame, &mut self.buf)
            .map_err(|e| format!("zstd: {e}"))?;
        if n != size {
            return Err("decompressed size differs from the frame header".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keys> {
        Arc::new(Keys::new([1; 32], [2; 32]))
    }

    #[test]
    fn round_trip_compressible_and_incompressible() {
        let k = keys();
        let mut enc = Encoder::new(&k, 3).expect("encoder");
        let mut dec = Decoder::new();
        let text = b"hello hello hello hello hello hello hello".repeat(100);
        let mut random = vec![0u8; 5000];
        crate::crypto::fill_random(&mut random);
        for plain in [&text[..], &random[..], &[][..]] {
            let id = k.blob_id(plain);
            let mut out = Vec::new();
            enc.encode(&id, Kind::Data, plain, &mut out)
                .expect("encode");
            let hdr = BlobHeader::decode(&out).expect("header");
            assert_eq!(hdr.compressed, plain == &text[..]);
            assert_eq!(dec.decode(&k, &id, &mut out).expect("decode"), plain);
        }
    }

    #[test]
    fn flipped_byte_wrong_id_and_wrong_key_fail() {
        let k = keys();
        let mut enc = Encoder::new(&k, 3).expect("encoder");
        let mut dec = Decoder::new();
        let plain = vec![9u8; 1000];
        let id = k.blob_id(&plain);
        let mut out = Vec::new();
        enc.encode(&id, Kind::Data, &plain, &mut out)
            .expect("encode");
        for i in [0usize, 5, 27, 28, out.len() - 1] {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(
                dec.decode(&k, &id, &mut bad).is_err(),
                "flip at {i} undetected"
            );
        }
        let mut other = out.clone();
        assert!(dec.decode(&k, &Id([0; 32]), &mut other).is_err());
        let k2 = Keys::new([3; 32], [2; 32]);
        let mut again = out.clone();
        assert!(dec.decode(&k2, &id, &mut again).is_err());
    }

    #[test]
    fn incompressible_chunks_skip_compression_and_mixed_ones_do_not() {
        let k = keys();
        let mut enc = Encoder::new(&k, 3).expect("encoder");
        let mut random = vec![0u8; 256 * 1024];
        crate::crypto::fill_random(&mut random);
        assert!(!enc.worth_compressing(&random));
        let mut mixed = random.clone();
        mixed[100_000..140_000].fill(7);
        assert!(enc.worth_compressing(&mixed));
        let mut tail = random.clone();
        let n = tail.len();
        tail[n - 5000..].fill(b'a');
        assert!(enc.worth_compressing(&tail));
        assert!(enc.worth_compressing(&random[..1000]));
    }

    #[test]
    fn nonces_advance_per_blob() {
        let k = keys();
        let mut enc = Encoder::new(&k, 3).expect("encoder");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let id = k.blob_id(b"x");
        enc.encode(&id, Kind::Data, b"x", &mut a).expect("encode");
        enc.encode(&id, Kind::Data, b"x", &mut b).expect("encode");
        let (ha, hb) = (
            BlobHeader::decode(&a).expect("a"),
            BlobHeader::decode(&b).expect("b"),
        );
        assert_eq!(ha.key_id, hb.key_id);
        assert_eq!(hb.counter, ha.counter + 1);
        assert_ne!(a, b);
    }
}
