//! Pack files (docs/format.md section 5): blobs appended back to back, then a trailer listing
//! them and a footer that makes a complete pack recognisable.

use std::path::PathBuf;

use crate::blob::Kind;
use crate::id::{Id, PackId};
use crate::io::WriteFile;

pub const TARGET_SIZE: u64 = 32 << 20;
pub const ENTRY_LEN: usize = 56;
pub const FOOTER_LEN: usize = 72;
const MAGIC: &[u8; 8] = b"TVPACK01";
const VERSION: u32 = 1;
/// Staged bytes are handed to the file in writes of about this size.
const WRITE_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: Id,
    /// BLAKE3 of the stored blob, truncated to 16 bytes: enough to catch transfer and media
    /// errors without the key (AEAD and the keyed id catch tampering).
    pub digest: [u8; 16],
    pub offset: u64,
    pub len: u32,
    pub kind: Kind,
}

impl PackEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.len.to_le_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&[0; 3]);
    }

    /// Decode an entry; blobs lie back to back, so its offset is where the previous one ended.
    fn decode(b: &[u8], offset: u64) -> Result<PackEntry, String> {
        let id = Id(b[0..32].try_into().map_err(|_| "entry id")?);
        let digest: [u8; 16] = b[32..48].try_into().map_err(|_| "entry digest")?;
        let len = u32::from_le_bytes(b[48..52].try_into().map_err(|_| "entry length")?);
        let kind = Kind::from_u8(b[52])
            .ok_or_else(|| format!("entry for {id}: unknown kind {}", b[52]))?;
        if b[53..56] != [0, 0, 0] {
            return Err(format!("entry for {id}: reserved bytes are not zero"));
        }
        Ok(PackEntry {
            id,
            digest,
            offset,
            len,
            kind,
        })
    }
}

/// The per-blob digest of the trailer (format.md 5).
pub fn digest16(stored: &[u8]) -> [u8; 16] {
    let mut d = [0u8; 16];
    d.copy_from_slice(&blake3::hash(stored).as_bytes()[..16]);
    d
}

/// Read the trailer of a complete pack, given the file's length and a reader of byte ranges.
/// Any failure means "not a complete, intact pack" and says why.
pub fn read_trailer(
    pack: &PackId,
    file_len: u64,
    read_at: impl Fn(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<PackEntry>, String> {
    if file_len < FOOTER_LEN as u64 {
        return Err(format!("{file_len} bytes is too short for a pack footer"));
    }
    let footer = read_at(file_len - FOOTER_LEN as u64, FOOTER_LEN)
        .map_err(|e| format!("reading footer: {e}"))?;
    let (count, trailer_off) = parse_footer(pack, &footer)?;
    let trailer_len = count as u64 * ENTRY_LEN as u64;
    if trailer_off.checked_add(trailer_len) != Some(file_len - FOOTER_LEN as u64) {
        return Err("footer's trailer offset and count do not match the file length".into());
    }
    let trailer =
        read_at(trailer_off, trailer_len as usize).map_err(|e| format!("reading trailer: {e}"))?;
    let digest = &footer[40..72];
    if blake3::hash(&trailer).as_bytes() != digest {
        return Err("trailer digest mismatch".into());
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut expect = 0u64;
    for raw in trailer.chunks_exact(ENTRY_LEN) {
        let e = PackEntry::decode(raw, expect)?;
        expect = e.offset + e.len as u64;
        entries.push(e);
    }
    if expect != trailer_off {
        return Err("blobs do not end where the trailer starts".into());
    }
    Ok(entries)
}

fn parse_footer(pack: &PackId, f: &[u8]) -> Result<(u32, u64), String> {
    if &f[0..8] != MAGIC {
        return Err("no pack footer (bad magic)".into());
    }
    let version = u32::from_le_bytes(f[8..12].try_into().map_err(|_| "footer")?);
    if version != VERSION {
        return Err(format!("unknown pack version {version}"));
    }
    let count = u32::from_le_bytes(f[12..16].try_into().map_err(|_| "footer")?);
    let off = u64::from_le_bytes(f[16..24].try_into().map_err(|_| "footer")?);
    if f[24..40] != pack.0 {
        return Err("footer names another pack id than the file name".into());
    }
    Ok((count, off))
}

/// A pack that has been fully written but not yet made durable.
pub struct FinishedPack {
    pub id: PackId,
    /// The data directory it is written in (its `tmp/` holds `tmp_path`).
    pub dir: u16,
    pub file: Box<dyn WriteFile>,
    pub tmp_path: PathBuf,
    pub len: u64,
    pub entries: Vec<PackEntry>,
}

impl FinishedPack {
    /// Make the pack durable and visible: fsync, rename into `<base>/<xx>/` (`base` = its
    /// data directory, the parent of its `tmp/`: one file system, so the rename is atomic),
    /// fsync the directories (format.md 9, step 1). On failure returns the path the pack is
    /// left at.
    pub fn publish(
        mut self,
        io: &dyn crate::io::Io,
        base: &std::path::Path,
    ) -> Result<crate::index::PackInfo, (PathBuf, std::io::Error)> {
        let dir = self.dir;
        let hex = self.id.hex();
        let sub = base.join(&hex[..2]);
        let dest = sub.join(&hex);
        let tmp = self.tmp_path.clone();
        let res = (|| -> std::io::Result<()> {
            self.file.sync()?;
            drop(self.file);
            if !sub.exists() {
                io.create_dir_all(&sub)?;
            }
            // Always, not only when this process created `sub`: another writer may have
            // created it and not yet made it durable.
            io.sync_dir(base)?;
            io.rename(&tmp, &dest)?;
            io.sync_dir(&sub)
        })();
        match res {
            Ok(()) => Ok(crate::index::PackInfo {
                id: self.id,
                dir,
                len: self.len,
                entries: self.entries,
            }),
            Err(e) => Err((if dest.exists() { dest } else { tmp }, e)),
        }
    }
}

/// Appends stored blobs to one open pack file, staging them into large writes.
pub struct PackWriter {
    pub id: PackId,
    /// The data directory the pack goes to.
    pub dir: u16,
    file: Box<dyn WriteFile>,
    tmp_path: PathBuf,
    staged: Vec<u8>,
    written: u64,
    entries: Vec<PackEntry>,
}

impl PackWriter {
    pub fn new(id: PackId, dir: u16, file: Box<dyn WriteFile>, tmp_path: PathBuf) -> PackWriter {
        PackWriter {
            id,
            dir,
            file,
            tmp_path,
            staged: Vec::with_capacity(2 * WRITE_SIZE),
            written: 0,
            entries: Vec::new(),
        }
    }

    pub fn tmp_path(&self) -> &std::path::Path {
        &self.tmp_path
    }

    pub fn size(&self) -> u64 {
        self.written + self.staged.len() as u64
    }

    pub fn is_full(&self) -> bool {
        self.size() >= TARGET_SIZE
    }

    /// The buffer to append the next stored blob to; call `commit_blob` after appending.
    pub fn staging(&mut self) -> &mut Vec<u8> {
        &mut self.staged
    }

    /// Record the blob appended to the staging buffer since `start` (a staging length).
    pub fn commit_blob(&mut self, id: Id, kind: Kind, start: usize) -> std::io::Result<()> {
        let digest = digest16(&self.staged[start..]);
        self.commit_digested(id, kind, start, digest)
    }

    fn commit_digested(
        &mut self,
        id: Id,
        kind: Kind,
        start: usize,
        digest: [u8; 16],
    ) -> std::io::Result<()> {
        let entry = PackEntry {
            id,
            digest,
            offset: self.written + start as u64,
            len: (self.staged.len() - start) as u32,
            kind,
        };
        self.entries.push(entry);
        if self.staged.len() >= WRITE_SIZE {
            self.flush_staged()?;
        }
        Ok(())
    }

    /// Append an already stored blob (replication, garbage collection) whose `digest16`
    /// the caller has checked.
    pub fn push_stored(
        &mut self,
        id: Id,
        kind: Kind,
        digest: [u8; 16],
        stored: &[u8],
    ) -> std::io::Result<()> {
        let start = self.staged.len();
        self.staged.extend_from_slice(stored);
        self.commit_digested(id, kind, start, digest)
    }

    fn flush_staged(&mut self) -> std::io::Result<()> {
        let next = self
            .file
            .recycle()
            .map(|mut b| {
                b.clear();
                b
            })
            .unwrap_or_else(|| Vec::with_capacity(2 * WRITE_SIZE));
        let buf = std::mem::replace(&mut self.staged, next);
        let n = buf.len() as u64;
        self.file.write_at(self.written, buf)?;
        self.written += n;
        Ok(())
    }

    /// Append trailer and footer and hand the pack over for fsync and rename.
    pub fn finish(mut self) -> std::io::Result<FinishedPack> {
        let trailer_off = self.size();
        let mut trailer = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            e.encode(&mut trailer);
        }
        let digest = blake3::hash(&trailer);
        self.staged.extend_from_slice(&trailer);
        self.staged.extend_from_slice(MAGIC);
        self.staged.extend_from_slice(&VERSION.to_le_bytes());
        self.staged
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.staged.extend_from_slice(&trailer_off.to_le_bytes());
        self.staged.extend_from_slice(&self.id.0);
        self.staged.extend_from_slice(digest.as_bytes());
        self.flush_staged()?;
        Ok(FinishedPack {
            id: self.id,
            dir: self.dir,
            file: self.file,
            tmp_path: self.tmp_path,
            len: self.written,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Io, PlainIo};

    #[test]
    fn written_pack_reads_back_and_damage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let io = PlainIo::new(false);
        let id = PackId::random();
        let mut w = PackWriter::new(id, 0, io.create(&path).expect("create"), path.clone());
        for i in 0..100u32 {
            let data = vec![i as u8; 1000 + i as usize];
            w.push_stored(Id::digest(&data), Kind::Data, digest16(&data), &data)
                .expect("push");
        }
        let mut fin = w.finish().expect("finish");
        fin.file.sync().expect("sync");
        let bytes = std::fs::read(&path).expect("read");
        let reader = |b: &[u8]| {
            let b = b.to_vec();
            move |off: u64, len: usize| Ok(b[off as usize..off as usize + len].to_vec())
        };
        let entries = read_trailer(&id, bytes.len() as u64, reader(&bytes)).expect("trailer");
        assert_eq!(entries, fin.entries);
        assert_eq!(entries.len(), 100);
        for e in &entries {
            let blob = &bytes[e.offset as usize..(e.offset + e.len as u64) as usize];
            assert_eq!(digest16(blob), e.digest);
        }
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 80] ^= 1;
        assert!(read_trailer(&id, n as u64, reader(&bad)).is_err());
        let truncated = &bytes[..n - 1];
        assert!(read_trailer(&id, truncated.len() as u64, reader(truncated)).is_err());
        assert!(read_trailer(&PackId::random(), n as u64, reader(&bytes)).is_err());
    }
}
