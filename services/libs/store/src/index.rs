//! The chunk index: index parts on disk (docs/format.md section 6) and the in-memory map
//! built from them. It is a cache over the packs' trailers; the tiers issue replaces the map
//! with a memory-budgeted one behind the same methods.

use crate::blob::Kind;
use crate::id::{Id, IdMap, PackId};
use crate::pack::PackEntry;

const MAGIC: &[u8; 8] = b"TVINDEX1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const PACK_LEN: usize = 32;
const ENTRY_LEN: usize = 48;

/// A pack as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: PackId,
    pub dir: u16,
    pub len: u64,
    pub entries: Vec<PackEntry>,
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Index into `Index::packs`.
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
    pub kind: Kind,
}

/// One pack's row in the index's pack table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRef {
    pub id: PackId,
    pub dir: u16,
    pub len: u64,
}

pub fn encode_part(packs: &[PackInfo]) -> Vec<u8> {
    let n_entries: usize = packs.iter().map(|p| p.entries.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + packs.len() * PACK_LEN + n_entries * ENTRY_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(n_entries as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.dir.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&p.len.to_le_bytes());
        out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
    }
    for (i, p) in packs.iter().enumerate() {
        for e in &p.entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&(i as u32).to_le_bytes());
            // Packs stay far below 4 GiB (a 32 MiB target plus at most one blob), so a u32
            // offset is exact.
            out.extend_from_slice(&(e.offset as u32).to_le_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
            out.push(e.kind as u8);
            out.extend_from_slice(&[0; 3]);
        }
    }
    out
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Decoded index part: its packs and entries (entry pack numbers index `packs`).
#[derive(Debug, Clone)]
pub struct Part {
    pub packs: Vec<PackRef>,
    pub entries: Vec<(Id, u32, u64, u32, Kind)>,
}

pub fn decode_part(b: &[u8]) -> Result<Part, String> {
    if b.len() < HEADER_LEN || &b[..8] != MAGIC {
        return Err("not an index part (bad magic)".into());
    }
    let version = le_u32(&b[8..]);
    if version != VERSION {
        return Err(format!("unknown index version {version}"));
    }
    let n_packs = le_u32(&b[12..]) as usize;
    let n_entries = le_u32(&b[16..]) as usize;
    let want = HEADER_LEN as u128
        + n_packs as u128 * PACK_LEN as u128
        + n_entries as u128 * ENTRY_LEN as u128;
    if want != b.len() as u128 {
        return Err(format!(
            "length {} does not match its counts ({n_packs} packs, {n_entries} entries)",
            b.len()
        ));
    }
    let mut packs = Vec::with_capacity(n_packs);
    let mut at = HEADER_LEN;
    for _ in 0..n_packs {
        let r = &b[at..at + PACK_LEN];
        packs.push(PackRef {
            id: PackId(r[..16].try_into().map_err(|_| "pack id")?),
            dir: u16::from_le_bytes([r[16], r[17]]),
            len: le_u64(&r[20..]),
        });
        at += PACK_LEN;
    }
    let mut entries = Vec::with_capacity(n_entries);
    for _ in 0..n_entries {
        let r = &b[at..at + ENTRY_LEN];
        let pack = le_u32(&r[32..]);
        if pack as usize >= n_packs {
            return Err(format!("entry names pack #{pack} of {n_packs}"));
        }
        let kind = Kind::from_u8(r[44]).ok_or("unknown blob kind")?;
        entries.push((
            Id(r[..32].try_into().map_err(|_| "id")?),
            pack,
            le_u32(&r[36..]) as u64,
            le_u32(&r[40..]),
            kind,
        ));
        at += ENTRY_LEN;
    }
    Ok(Part { packs, entries })
}

/// The in-memory chunk index and pack table.
#[derive(Default)]
pub struct Index {
    pub packs: Vec<PackRef>,
    pack_pos: std::collections::HashMap<PackId, u32>,
    map: IdMap<Location>,
}

impl Index {
    pub fn add_pack(&mut self, p: PackRef) -> u32 {
        if let Some(&i) = self.pack_pos.get(&p.id) {
            return i;
        }
        let i = self.packs.len() as u32;
        self.pack_pos.insert(p.id, i);
        self.packs.push(p);
        i
    }

    /// Add a part's packs and entries, leaving out the packs in `skip` (condemned by a
    /// garbage collection: this session must neither dedup against nor read them).
    pub fn add_part(&mut self, part: Part, skip: &std::collections::HashSet<PackId>) {
        let nums: Vec<Option<u32>> = part
            .packs
            .into_iter()
            .map(|p| (!skip.contains(&p.id)).then(|| self.add_pack(p)))
            .collect();
        self.map.reserve(part.entries.len());
        for (id, pack, offset, len, kind) in part.entries {
            let Some(pack) = nums[pack as usize] else {
                continue;
            };
            self.map.entry(id).or_insert(Location {
                pack,
                offset,
                len,
                kind,
            });
        }
    }

    pub fn add_pack_info(&mut self, p: &PackInfo) {
        let n = self.add_pack(PackRef {
            id: p.id,
            dir: p.dir,
            len: p.len,
        });
        for e in &p.entries {
            self.map.entry(e.id).or_insert(Location {
                pack: n,
                offset: e.offset,
                len: e.len,
                kind: e.kind,
            });
        }
    }

    pub fn get(&self, id: &Id) -> Option<Location> {
        self.map.get(id).copied()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.map.contains_key(id)
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_pos.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Location)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let part = decode_part(&bytes).expect("decode");
        let mut idx = Index::default();
        idx.add_part(part, &Default::default());
        assert_eq!(idx.len(), 3);
        let l = idx.get(&Id([3; 32])).expect("present");
        assert_eq!(idx.packs[l.pack as usize].id, PackId([2; 16]));
        assert_eq!(idx.packs[l.pack as usize].dir, 1);
        assert!(decode_part(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(decode_part(&bad).is_err());
    }
}
