//! Index parts: the durable, immutable files in `index/` that name packs and the blobs in
//! them (docs/format.md section 6). Everything else about the index is rebuilt from them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{PackInfo, PackRef};
use crate::blob::Kind;
use crate::id::{Id, PackId};

const MAGIC: &[u8; 8] = b"TVINDEX1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const PACK_LEN: usize = 32;
const ENTRY_LEN: usize = 48;

/// One entry of a part: blob id, pack number (into the part's packs), offset, length, kind.
pub type PartEntry = (Id, u32, u64, u32, Kind);

pub fn encode_part(packs: &[PackInfo]) -> Vec<u8> {
    let n_entries: usize = packs.iter().map(|p| p.entries.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + packs.len() * PACK_LEN + n_entries * ENTRY_LEN);
    encode_header(&mut out, packs.len(), n_entries);
    for p in packs {
        encode_pack_row(
            &mut out,
            &PackRef {
                id: p.id,
                dir: p.dir,
                len: p.len,
            },
            p.entries.len(),
        );
    }
    for (i, p) in packs.iter().enumerate() {
        for e in &p.entries {
            encode_entry(&mut out, &(e.id, i as u32, e.offset, e.len, e.kind));
        }
    }
    out
}

pub fn encode_header(out: &mut Vec<u8>, n_packs: usize, n_entries: usize) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(n_packs as u32).to_le_bytes());
    out.extend_from_slice(&(n_entries as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

pub fn encode_pack_row(out: &mut Vec<u8>, p: &PackRef, blobs: usize) {
    out.extend_from_slice(&p.id.0);
    out.extend_from_slice(&p.dir.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&p.len.to_le_bytes());
    out.extend_from_slice(&(blobs as u32).to_le_bytes());
}

pub fn encode_entry(out: &mut Vec<u8>, (id, pack, offset, len, kind): &PartEntry) {
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&pack.to_le_bytes());
    // Packs stay far below 4 GiB (a 32 MiB target plus at most one blob), so a u32 offset
    // is exact.
    out.extend_from_slice(&(*offset as u32).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.push(*kind as u8);
    out.extend_from_slice(&[0; 3]);
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Pack and entry counts from a part's header.
fn header(b: &[u8]) -> Result<(usize, usize), String> {
    if b.len() < HEADER_LEN || &b[..8] != MAGIC {
        return Err("not an index part (bad magic)".into());
    }
    let version = le_u32(&b[8..]);
    if version != VERSION {
        return Err(format!("unknown index version {version}"));
    }
    Ok((le_u32(&b[12..]) as usize, le_u32(&b[16..]) as usize))
}

fn decode_packs(b: &[u8], n_packs: usize) -> Result<Vec<PackRef>, String> {
    let mut packs = Vec::with_capacity(n_packs);
    for r in b.chunks_exact(PACK_LEN).take(n_packs) {
        packs.push(PackRef {
            id: PackId(r[..16].try_into().map_err(|_| "pack id")?),
            dir: u16::from_le_bytes([r[16], r[17]]),
            len: le_u64(&r[20..]),
        });
    }
    if packs.len() != n_packs {
        return Err(format!("{n_packs} packs announced, fewer present"));
    }
    Ok(packs)
}

/// Decode checked entries (48 bytes each).
fn entries_of(b: &[u8]) -> impl Iterator<Item = PartEntry> + '_ {
    b.chunks_exact(ENTRY_LEN).map(|r| {
        let mut id = [0u8; 32];
        id.copy_from_slice(&r[..32]);
        (
            Id(id),
            le_u32(&r[32..]),
            le_u32(&r[36..]) as u64,
            le_u32(&r[40..]),
            // Checked by the caller.
            Kind::from_u8(r[44]).unwrap_or(Kind::Data),
        )
    })
}

/// The packs a part file names and its entry count, read without its entries.
pub fn read_part_packs(path: &Path) -> std::io::Result<Result<(Vec<PackRef>, usize), String>> {
    let f = File::open(path)?;
    let mut head = [0u8; HEADER_LEN];
    if f.read_exact_at(&mut head, 0).is_err() {
        return Ok(Err("shorter than its header".into()));
    }
    let (n_packs, n_entries) = match header(&head) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let mut b = vec![0u8; n_packs.min(1 << 24) * PACK_LEN];
    if f.read_exact_at(&mut b, HEADER_LEN as u64).is_err() {
        return Ok(Err("shorter than its pack table".into()));
    }
    Ok(decode_packs(&b, n_packs).map(|p| (p, n_entries)))
}

/// Entries read per call while streaming a part (48 B each: 1.5 MiB).
const STREAM_ENTRIES: usize = 32 << 10;

/// Read the part file `name` in `dir` front to back in bounded memory, checking its content
/// against its name and its structure, and hand every entry to `on_entry` as it goes. The
/// outer error is I/O; the inner one says what is wrong with the part. Entries handed over
/// before a problem is found belong to a damaged part: callers that must not use them check
/// the part first (`on_entry` = `None`).
pub fn scan_part(
    dir: &Path,
    name: &str,
    mut on_entry: Option<&mut dyn FnMut(PartEntry) -> crate::Result<()>>,
) -> crate::Result<Result<Vec<PackRef>, String>> {
    use std::io::Read;
    let path = dir.join(name);
    let io_err = |e| crate::Error::io("reading index part", &path, e);
    let mut f = std::io::BufReader::with_capacity(1 << 20, File::open(&path).map_err(io_err)?);
    let mut hasher = blake3::Hasher::new();
    let mut read = |buf: &mut [u8]| -> crate::Result<bool> {
        match f.read_exact(buf) {
            Ok(()) => {
                hasher.update(buf);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    };
    let mut head = [0u8; HEADER_LEN];
    if !read(&mut head)? {
        return Ok(Err("shorter than its header".into()));
    }
    let (n_packs, n_entries) = match header(&head) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let mut table = vec![0u8; n_packs.min(1 << 24) * PACK_LEN];
    if !read(&mut table)? {
        return Ok(Err(format!("{n_packs} packs announced, fewer present")));
    }
    let packs = match decode_packs(&table, n_packs) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let mut left = n_entries;
    let mut buf = vec![0u8; STREAM_ENTRIES.min(n_entries.max(1)) * ENTRY_LEN];
    while left > 0 {
        let n = left.min(STREAM_ENTRIES);
        let chunk = &mut buf[..n * ENTRY_LEN];
        if !read(chunk)? {
            return Ok(Err(format!("{n_entries} entries announced, fewer present")));
        }
        for r in chunk.chunks_exact(ENTRY_LEN) {
            let pack = le_u32(&r[32..]);
            if pack as usize >= n_packs {
                return Ok(Err(format!("entry names pack #{pack} of {n_packs}")));
            }
            if Kind::from_u8(r[44]).is_none() {
                return Ok(Err("unknown blob kind".into()));
            }
        }
        if let Some(cb) = on_entry.as_mut() {
            for e in entries_of(chunk) {
                cb(e)?;
            }
        }
        left -= n;
    }
    let mut extra = [0u8; 1];
    if read(&mut extra)? {
        return Ok(Err("longer than its counts".into()));
    }
    if hex::encode(hasher.finalize().as_bytes()) != name {
        return Ok(Err("content does not match its name".into()));
    }
    Ok(Ok(packs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackEntry;

    #[test]
    fn part_round_trip_and_length_check() {
        let e = |n: u8, off: u64| PackEntry {
            id: Id([n; 32]),
            digest: [0; 16],
            offset: off,
            len: 10,
            kind: Kind::Data,
        };
        let packs = vec![
            PackInfo {
                id: PackId([1; 16]),
                dir: 0,
                len: 100,
                entries: vec![e(1, 0), e(2, 10)],
            },
            PackInfo {
                id: PackId([2; 16]),
                dir: 1,
                len: 50,
                entries: vec![e(3, 0)],
            },
        ];
        let bytes = encode_part(&packs);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part");
        std::fs::write(&path, &bytes).expect("write");
        let (ps, n) = read_part_packs(&path).expect("read").expect("valid");
        assert_eq!((ps.len(), n), (2, 3));
        assert_eq!((ps[1].id, ps[1].dir), (PackId([2; 16]), 1));
        std::fs::write(&path, &bytes[..30]).expect("write");
        assert!(read_part_packs(&path).expect("read").is_err());

        // Streaming: the same entries; a wrong name or a truncated file is a problem.
        let name = Id::digest(&bytes).hex();
        std::fs::write(dir.path().join(&name), &bytes).expect("write");
        let mut seen = Vec::new();
        let mut push = |e: PartEntry| {
            seen.push(e);
            Ok(())
        };
        let packs = scan_part(dir.path(), &name, Some(&mut push))
            .expect("io")
            .expect("valid");
        assert_eq!(packs.len(), 2);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2], (Id([3; 32]), 1, 0, 10, Kind::Data));
        // Damage of any kind is a problem, never an entry: magic, a kind, a length.
        for (what, at, to) in [("magic", 0usize, b'X'), ("kind", bytes.len() - 4, 9u8)] {
            let mut bad = bytes.clone();
            bad[at] = to;
            let bad_name = Id::digest(&bad).hex();
            std::fs::write(dir.path().join(&bad_name), &bad).expect("write");
            assert!(
                scan_part(dir.path(), &bad_name, None).expect("io").is_err(),
                "{what}"
            );
        }
        std::fs::write(dir.path().join("0".repeat(64)), &bytes).expect("write");
        let wrong = scan_part(dir.path(), &"0".repeat(64), None).expect("io");
        assert_eq!(wrong, Err("content does not match its name".into()));
        std::fs::write(dir.path().join(&name), &bytes[..bytes.len() - 48]).expect("write");
        assert!(scan_part(dir.path(), &name, None).expect("io").is_err());
    }
}
