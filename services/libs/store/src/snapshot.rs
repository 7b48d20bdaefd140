//! Snapshot files (docs/format.md section 7): a plaintext header a keyless holder can read,
//! and an encrypted CBOR body.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::blob::{Kind, HEADER_LEN};
use crate::crypto::{Keys, Sealer};
use crate::error::Result;
use crate::id::Id;
use crate::tree::{from_cbor, to_cbor};

const MAGIC: &[u8; 8] = b"TVSNAP01";
const VERSION: u32 = 1;
const FIXED_LEN: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub new_blobs: u64,
    pub skipped: u64,
    pub duration_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub path: ByteBuf,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub version: u32,
    pub kind: String,
    pub paths: Vec<ByteBuf>,
    pub hostname: String,
    pub username: String,
    pub root: Id,
    pub parent: Option<String>,
    pub program: String,
    pub summary: Summary,
    pub skipped: Vec<Skipped>,
    pub image: bool,
}

/// The header fields a keyless holder can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub time_ns: i64,
    pub refs: Vec<Id>,
}

/// A snapshot as read from disk.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: Id,
    pub header: Header,
    pub body: Body,
}

impl Snapshot {
    pub fn short_id(&self) -> String {
        self.id.short()
    }

    pub fn has_warnings(&self) -> bool {
        self.body.summary.skipped > 0
    }
}

/// Encode a snapshot file; returns its bytes (the id is the digest of them).
pub fn encode(sealer: &mut Sealer, header: &Header, body: &Body) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header.time_ns.to_le_bytes());
    out.extend_from_slice(&(header.refs.len() as u32).to_le_bytes());
    let body_len_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    for r in &header.refs {
        out.extend_from_slice(&r.0);
    }
    let plain = to_cbor(body);
    let mut z = zstd::bulk::compress(&plain, 3).unwrap_or_default();
    let compressed = !z.is_empty() && z.len() < plain.len();
    if !compressed {
        z = plain;
    }
    // The body's AAD is everything before it, with the body length already filled in.
    let body_len = (HEADER_LEN + z.len() + crate::crypto::TAG_LEN) as u32;
    out[body_len_at..body_len_at + 4].copy_from_slice(&body_len.to_le_bytes());
    let prefix = out.clone();
    sealer.seal_into(&prefix, Kind::Meta, compressed, &z, &mut out)?;
    Ok(out)
}

/// Parse the plaintext header (no key needed). Returns the header and the body offset.
pub fn decode_header(b: &[u8]) -> std::result::Result<(Header, usize), String> {
    if b.len() < FIXED_LEN || &b[..8] != MAGIC {
        return Err("not a snapshot file (bad magic)".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if u32_at(8) != VERSION {
        return Err(format!("unknown snapshot version {}", u32_at(8)));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[16..24]);
    let time_ns = i64::from_le_bytes(t);
    let n = u32_at(24) as usize;
    let body_len = u32_at(28) as usize;
    let body_at = FIXED_LEN + n * 32;
    if body_at.checked_add(body_len) != Some(b.len()) {
        return Err(format!("length {} does not match its header", b.len()));
    }
    let refs = b[FIXED_LEN..body_at]
        .chunks_exact(32)
        .map(|c| {
            let mut a = [0u8; 32];
            a.copy_from_slice(c);
            Id(a)
        })
        .collect();
    Ok((Header { time_ns, refs }, body_at))
}

/// Parse and decrypt a whole snapshot file whose name is `name`.
pub fn decode(keys: &Keys, name: &str, bytes: &mut [u8]) -> std::result::Result<Snapshot, String> {
    let id = Id::digest(bytes);
    if id.hex() != name {
        return Err("content does not match the file name (damaged or truncated)".into());
    }
    let (header, body_at) = decode_header(bytes)?;
    let (prefix, body) = bytes.split_at_mut(body_at);
    let (hdr, plain) = keys.open(prefix, body)?;
    let plain = if hdr.compressed {
        zstd::bulk::decompress(plain, 64 << 20).map_err(|e| format!("body: zstd: {e}"))?
    } else {
        plain.to_vec()
    };
    let body: Body = from_cbor(&plain)?;
    if body.version != 1 {
        return Err(format!("unknown body version {}", body.version));
    }
    Ok(Snapshot { id, header, body })
}
