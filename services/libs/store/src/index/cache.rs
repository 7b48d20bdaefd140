//! The index cache (`index.cache/`, docs/format.md section 6.2): the entries of the index
//! parts absorbed into on-disk chunk indexes, so a session looks blobs up within a memory
//! budget instead of loading every part. It is derived data: its watermark says exactly
//! which parts it holds, anything inconsistent is rebuilt from the parts, and lookups hide
//! packs that are condemned or no longer named by any part.
//!
//! Files: `primary/` (id → location), `alts/` (other copies of ids stored more than once, so
//! a hidden copy never hides a live one), `packs` (the pack table, append-only rows), and
//! `parts-<blake3>` (the sorted names of the absorbed parts). Both indexes commit the same
//! watermark, which names the row count, the rows' hash and the parts list's hash.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tiervault_chunkindex::{ChunkIndex, Error as CiError, Options};

use super::part::{read_part_packs, scan_part, PartEntry};
use super::{Location, PackRef};
use crate::blob::Kind;
use crate::error::{Error, IoContext, Result};
use crate::id::PackId;

pub(crate) const DIR: &str = "index.cache";
const PRIMARY: &str = "primary";
const ALTS: &str = "alts";
const PACKS: &str = "packs";
const PARTS_PREFIX: &str = "parts-";
const WM_MAGIC: &[u8; 8] = b"TVICACH1";
const WM_LEN: usize = 8 + 8 + 32 + 32;
const ROW_LEN: usize = 32;
/// Other copies remembered per id (a blob stored by two concurrent backups and copied by a
/// collection has three).
pub(crate) const MAX_ALTS: u8 = 4;
/// Smallest budget the cache accepts: two indexes' fixed I/O reserves and caches.
pub const MIN_BUDGET: u64 = 16 << 20;

/// The 16-byte value of an entry: pack row, offset, length, kind.
pub(crate) fn encode_value(l: &Location) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&l.pack.to_le_bytes());
    // Packs stay far below 4 GiB (section 5), so offsets fit in 32 bits.
    v[4..8].copy_from_slice(&(l.offset as u32).to_le_bytes());
    v[8..12].copy_from_slice(&l.len.to_le_bytes());
    v[12] = l.kind as u8;
    v
}

pub(crate) fn decode_value(v: &[u8; 16]) -> Option<Location> {
    let u = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    Some(Location {
        pack: u(0),
        offset: u(4) as u64,
        len: u(8),
        kind: Kind::from_u8(v[12])?,
    })
}

fn row_of(v: &[u8; 16]) -> usize {
    u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize
}

/// Key of the `k`-th other copy of `id` in `alts/`: the id with its last byte changed. Ids
/// are uniform, so these keys are too, and they cannot meet another blob's id in practice.
pub(crate) fn alt_key(id: &[u8; 32], k: u8) -> [u8; 32] {
    let mut a = *id;
    a[31] ^= k + 1;
    a
}

/// Part of the budget kept for reading index parts (`scan_part`'s buffers).
const PART_READ_RESERVE: u64 = 3 << 20;

fn options(budget: u64, which: &str) -> Options {
    // The alternatives are few (duplicates only): an eighth of the budget, and at least
    // what an index needs to open (its I/O reserve and a small cache).
    let alts = (budget / 8).max(6 << 20);
    Options::with_budget(if which == ALTS {
        alts
    } else {
        budget.saturating_sub(alts + PART_READ_RESERVE)
    })
}

fn ci_err(e: CiError) -> Error {
    Error::IndexCache(e)
}

struct Watermark {
    rows: u64,
    rows_hash: [u8; 32],
    parts_hash: [u8; 32],
}

impl Watermark {
    fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(WM_LEN);
        w.extend_from_slice(WM_MAGIC);
        w.extend_from_slice(&self.rows.to_le_bytes());
        w.extend_from_slice(&self.rows_hash);
        w.extend_from_slice(&self.parts_hash);
        w
    }

    fn decode(b: &[u8]) -> Option<Watermark> {
        if b.len() != WM_LEN || &b[..8] != WM_MAGIC {
            return None;
        }
        Some(Watermark {
            rows: u64::from_le_bytes(b[8..16].try_into().ok()?),
            rows_hash: b[16..48].try_into().ok()?,
            parts_hash: b[48..80].try_into().ok()?,
        })
    }
}

fn encode_rows(rows: &[PackRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * ROW_LEN);
    for r in rows {
        out.extend_from_slice(&r.id.0);
        out.extend_from_slice(&r.len.to_le_bytes());
        out.extend_from_slice(&r.dir.to_le_bytes());
        out.extend_from_slice(&[0; 6]);
    }
    out
}

fn decode_rows(b: &[u8]) -> Vec<PackRef> {
    b.chunks_exact(ROW_LEN)
        .map(|r| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&r[..16]);
            let mut len = [0u8; 8];
            len.copy_from_slice(&r[16..24]);
            PackRef {
                id: PackId(id),
                len: u64::from_le_bytes(len),
                dir: u16::from_le_bytes([r[24], r[25]]),
            }
        })
        .collect()
}

fn parts_text(absorbed: &BTreeSet<String>) -> Vec<u8> {
    let mut t = Vec::with_capacity(absorbed.len() * 65);
    for n in absorbed {
        t.extend_from_slice(n.as_bytes());
        t.push(b'\n');
    }
    t
}

/// What a committed cache holds besides its entries. `None` from `read` means the files do
/// not match the watermark (a crash between writes, or damage): rebuild.
struct State {
    rows: Vec<PackRef>,
    absorbed: BTreeSet<String>,
}

impl State {
    fn read(dir: &Path, wm: &[u8]) -> Result<Option<State>> {
        if wm.is_empty() {
            return Ok(Some(State {
                rows: Vec::new(),
                absorbed: BTreeSet::new(),
            }));
        }
        let Some(wm) = Watermark::decode(wm) else {
            return Ok(None);
        };
        let rows = match read_prefix(&dir.join(PACKS), wm.rows as usize * ROW_LEN)? {
            Some(b) if *blake3::hash(&b).as_bytes() == wm.rows_hash => decode_rows(&b),
            _ => return Ok(None),
        };
        let parts_path = dir.join(format!("{PARTS_PREFIX}{}", hex::encode(wm.parts_hash)));
        let text = match std::fs::read(&parts_path) {
            Ok(t) if *blake3::hash(&t).as_bytes() == wm.parts_hash => t,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", parts_path, e)),
        };
        let Ok(text) = String::from_utf8(text) else {
            return Ok(None);
        };
        Ok(Some(State {
            rows,
            absorbed: text.lines().map(str::to_string).collect(),
        }))
    }
}

/// The first `n` bytes of a file, `None` when it is shorter or missing.
fn read_prefix(path: &Path, n: usize) -> Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    let mut b = vec![0u8; n];
    match f.read_exact_at(&mut b, 0) {
        Ok(()) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// The cache as of its last commit, opened for lookups.
pub(crate) struct View {
    pub(crate) primary: ChunkIndex,
    pub(crate) alts: ChunkIndex,
    pub(crate) rows: Vec<PackRef>,
    pub(crate) absorbed: BTreeSet<String>,
}

impl View {
    /// Open the committed cache under `root`. `Ok(None)`: there is none that can be trusted
    /// (absent, half-written, damaged, or bigger than the budget allows); the caller
    /// refreshes it or does without.
    pub(crate) fn open(root: &Path, budget: u64) -> Result<Option<View>> {
        let dir = root.join(DIR);
        if !dir.join(PRIMARY).exists() {
            return Ok(None);
        }
        // A writer commits alts then primary, then removes the old parts list: a reader in
        // between sees different watermarks or a missing list, and looks again.
        for _ in 0..20 {
            let primary = match ChunkIndex::open_reader(dir.join(PRIMARY), options(budget, PRIMARY))
            {
                Ok(i) => i,
                Err(e) => return unusable(&dir, e),
            };
            let alts = match ChunkIndex::open_reader(dir.join(ALTS), options(budget, ALTS)) {
                Ok(i) => i,
                Err(e) => return unusable(&dir, e),
            };
            if primary.watermark() == alts.watermark() {
                if let Some(s) = State::read(&dir, primary.watermark())? {
                    return Ok(Some(View {
                        primary,
                        alts,
                        rows: s.rows,
                        absorbed: s.absorbed,
                    }));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::warn!("{}: inconsistent index cache", dir.display());
        Ok(None)
    }

    /// Heap bytes the two indexes hold.
    pub(crate) fn memory_used(&self) -> u64 {
        self.primary.memory_used() + self.alts.memory_used()
    }
}

fn unusable<T>(dir: &Path, e: CiError) -> Result<Option<T>> {
    match e {
        CiError::Io { ref source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
            Err(ci_err(e))
        }
        e => {
            tracing::warn!("{}: index cache not usable: {e}", dir.display());
            Ok(None)
        }
    }
}

/// The index cache as `vaultctl index status` shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStatus {
    /// A committed cache exists and matches its files.
    pub usable: bool,
    /// Its parts list equals the parts in `index/`.
    pub up_to_date: bool,
    pub entries: u64,
    /// Other copies of ids stored more than once.
    pub other_copies: u64,
    pub runs: usize,
    pub disk_bytes: u64,
    pub pack_rows: u64,
    pub parts: usize,
    pub parts_absorbed: usize,
}

pub(crate) fn status(root: &Path, current: &BTreeSet<String>, budget: u64) -> Result<CacheStatus> {
    let Some(v) = View::open(root, budget)? else {
        return Ok(CacheStatus {
            parts: current.len(),
            ..CacheStatus::default()
        });
    };
    let (p, a) = (v.primary.stats(), v.alts.stats());
    Ok(CacheStatus {
        usable: true,
        up_to_date: v.absorbed == *current,
        entries: p.entries,
        other_copies: a.entries,
        runs: p.runs + a.runs,
        disk_bytes: p.disk_bytes + a.disk_bytes,
        pack_rows: v.rows.len() as u64,
        parts: current.len(),
        parts_absorbed: v.absorbed.len(),
    })
}

/// What a refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefreshReport {
    /// The cache was dropped and rebuilt from every part.
    pub rebuilt: bool,
    pub parts_absorbed: usize,
    pub entries_absorbed: u64,
    /// Parts a collection replaced: their dead packs' entries were compacted away.
    pub parts_gone: usize,
    pub entries_dropped: u64,
    /// Other copies recorded (ids stored more than once).
    pub alternatives: u64,
    /// Parts that could not be read (named in the messages; `verify` reports them too).
    pub problems: Vec<String>,
}

/// Bring the cache under `root` up to date with the parts in `index/` (`current`, sorted
/// names). `Ok(None)`: another process is refreshing it now. With `rebuild`, start from
/// nothing whatever the cache holds.
pub(crate) fn refresh(
    root: &Path,
    current: &BTreeSet<String>,
    budget: u64,
    rebuild: bool,
) -> Result<Option<RefreshReport>> {
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let open = |which: &str| {
        let mut o = options(budget, which);
        // Start small: most refreshes absorb one backup's part.
        o.max_buffer_entries = Some(0);
        ChunkIndex::open(dir.join(which), o)
    };
    let mut damaged = false;
    let (mut primary, mut alts) = match (open(PRIMARY), open(ALTS)) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(CiError::Locked { .. }), _) | (_, Err(CiError::Locked { .. })) => return Ok(None),
        (Err(e), _) | (_, Err(e)) if e.is_damage() => {
            tracing::warn!("{}: index cache damaged ({e}); rebuilding", dir.display());
            damaged = true;
            for which in [PRIMARY, ALTS] {
                let d = dir.join(which);
                if d.exists() {
                    std::fs::remove_dir_all(&d).ctx("removing damaged index cache", &d)?;
                }
            }
            match (open(PRIMARY), open(ALTS)) {
                (Ok(p), Ok(a)) => (p, a),
                (Err(e), _) | (_, Err(e)) => return Err(ci_err(e)),
            }
        }
        (Err(e), _) | (_, Err(e)) => return Err(ci_err(e)),
    };
    let mut report = RefreshReport::default();
    let state = if rebuild || damaged || primary.watermark() != alts.watermark() {
        None
    } else {
        State::read(&dir, primary.watermark())?
    };
    let (mut rows, mut absorbed) = match state {
        Some(s) => (s.rows, s.absorbed),
        None => {
            report.rebuilt = true;
            primary.clear().map_err(ci_err)?;
            alts.clear().map_err(ci_err)?;
            (Vec::new(), BTreeSet::new())
        }
    };
    let new: Vec<String> = current.difference(&absorbed).cloned().collect();
    let gone: Vec<String> = absorbed.difference(current).cloned().collect();
    if new.is_empty() && gone.is_empty() && !report.rebuilt {
        return Ok(Some(report));
    }
    let index_dir = root.join("index");
    let mut hint = 0u64;
    for name in &new {
        if let Ok(Ok((_, n))) = read_part_packs(&index_dir.join(name)) {
            hint += n as u64;
        }
    }
    primary.set_max_buffer_entries(Some(hint));
    alts.set_max_buffer_entries(Some(hint.min(1 << 16)));
    let mut pos: HashMap<PackId, u32> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i as u32))
        .collect();
    if !gone.is_empty() {
        let live = live_rows(&index_dir, current, &pos, rows.len())?;
        report.entries_dropped = compact(&mut primary, &mut alts, &live)?;
        report.parts_gone = gone.len();
        for g in &gone {
            absorbed.remove(g);
        }
    }
    for name in new {
        // Checked whole first: entries of a damaged part must not reach the cache.
        let packs = match scan_part(&index_dir, &name, None) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                report.problems.push(format!("index part {name}: {e}"));
                continue;
            }
            // Replaced by a collection since we listed: the next refresh sees its successor.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let nums: Vec<u32> = packs
            .iter()
            .map(|p| {
                *pos.entry(p.id).or_insert_with(|| {
                    rows.push(p.clone());
                    rows.len() as u32 - 1
                })
            })
            .collect();
        let mut absorb = |(id, pack, offset, len, kind): PartEntry| -> Result<()> {
            let v = encode_value(&Location {
                pack: nums[pack as usize],
                offset,
                len,
                kind,
            });
            if let Some(old) = primary.insert(&id.0, v).map_err(ci_err)? {
                if old != v && add_alt(&mut alts, &id.0, old)? {
                    report.alternatives += 1;
                }
            }
            report.entries_absorbed += 1;
            Ok(())
        };
        if let Ok(Err(e)) = scan_part(&index_dir, &name, Some(&mut absorb)) {
            // It passed the check a moment ago: someone is rewriting parts in place, which
            // nothing of ours does. Commit nothing.
            return Err(Error::CorruptIndex {
                name,
                reason: format!("changed while being read: {e}"),
            });
        }
        report.parts_absorbed += 1;
        absorbed.insert(name);
    }
    let rows_bytes = encode_rows(&rows);
    write_rows(&dir, &rows_bytes)?;
    let text = parts_text(&absorbed);
    let parts_hash = *blake3::hash(&text).as_bytes();
    let parts_name = format!("{PARTS_PREFIX}{}", hex::encode(parts_hash));
    write_durably(&dir, &parts_name, &text)?;
    let wm = Watermark {
        rows: rows.len() as u64,
        rows_hash: *blake3::hash(&rows_bytes).as_bytes(),
        parts_hash,
    }
    .encode();
    alts.commit(&wm).map_err(ci_err)?;
    primary.commit(&wm).map_err(ci_err)?;
    for name in crate::repo::list_dir(&dir)? {
        if name.starts_with(PARTS_PREFIX) && name != parts_name {
            let p = dir.join(&name);
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::debug!("{}: {e}", p.display());
            }
        }
    }
    Ok(Some(report))
}

/// Rows of packs some current part names (the others were deleted by a collection).
pub(crate) fn live_rows(
    index_dir: &Path,
    current: &BTreeSet<String>,
    pos: &HashMap<PackId, u32>,
    n_rows: usize,
) -> Result<Vec<bool>> {
    let mut live = vec![false; n_rows];
    for name in current {
        let path = index_dir.join(name);
        match read_part_packs(&path) {
            Ok(Ok((packs, _))) => {
                for p in packs {
                    if let Some(&r) = pos.get(&p.id) {
                        live[r as usize] = true;
                    }
                }
            }
            // Damaged parts are reported where they are read in full.
            Ok(Err(_)) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("reading index part", path, e)),
        }
    }
    Ok(live)
}

/// Drop entries of dead packs; an id whose entry pointed at a dead copy gets one of its
/// live other copies instead. Returns the entries dropped.
fn compact(primary: &mut ChunkIndex, alts: &mut ChunkIndex, live: &[bool]) -> Result<u64> {
    let is_live = |v: &[u8; 16]| live.get(row_of(v)).copied().unwrap_or(true);
    let mut repoint = Vec::new();
    let mut failure = None;
    let dropped = {
        let alts = &*alts;
        primary
            .retain(|k, v| {
                if is_live(v) {
                    return true;
                }
                match live_alt(alts, k, &is_live) {
                    Ok(Some(a)) => repoint.push((*k, a)),
                    Ok(None) => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
                false
            })
            .map_err(ci_err)?
    };
    if let Some(e) = failure {
        return Err(e);
    }
    alts.retain(|_, v| is_live(v)).map_err(ci_err)?;
    for (k, v) in &repoint {
        primary.insert(k, *v).map_err(ci_err)?;
    }
    Ok(dropped - repoint.len() as u64)
}

/// The first other copy of `id` that `ok` accepts.
pub(crate) fn live_alt(
    alts: &ChunkIndex,
    id: &[u8; 32],
    ok: &dyn Fn(&[u8; 16]) -> bool,
) -> Result<Option<[u8; 16]>> {
    for k in 0..MAX_ALTS {
        match alts.get(&alt_key(id, k)).map_err(ci_err)? {
            Some(v) if ok(&v) => return Ok(Some(v)),
            Some(_) => {}
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Remember `v` as another copy of `id`; false when it was known or every slot is taken.
fn add_alt(alts: &mut ChunkIndex, id: &[u8; 32], v: [u8; 16]) -> Result<bool> {
    for k in 0..MAX_ALTS {
        let key = alt_key(id, k);
        match alts.get(&key).map_err(ci_err)? {
            Some(x) if x == v => return Ok(false),
            Some(_) => {}
            None => {
                alts.insert(&key, v).map_err(ci_err)?;
                return Ok(true);
            }
        }
    }
    tracing::debug!(
        "blob {} has more than {MAX_ALTS} other copies",
        hex::encode(id)
    );
    Ok(false)
}

/// Make `packs` hold exactly `bytes`: rows are only ever appended, so usually this writes
/// the new tail; anything else (a crash mid-write, a rebuild) rewrites the file.
fn write_rows(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = dir.join(PACKS);
    let have = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as usize;
    let prefix_ok = have <= bytes.len()
        && match read_prefix(&path, have)? {
            Some(old) => old == bytes[..have],
            None => have == 0,
        };
    if !prefix_ok {
        return write_durably(dir, PACKS, bytes);
    }
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ctx("opening", &path)?;
    f.write_all(&bytes[have..]).ctx("writing", &path)?;
    f.sync_all().ctx("syncing", &path)?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Write, fsync, rename, fsync the directory.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    let mut f = File::create(&tmp).ctx("creating", &tmp)?;
    f.write_all(bytes).ctx("writing", &tmp)?;
    f.sync_all().ctx("syncing", &tmp)?;
    drop(f);
    std::fs::rename(&tmp, &dest).ctx("renaming", &dest)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("syncing", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_watermarks_round_trip() {
        let l = Location {
            pack: 7,
            offset: 1 << 30,
            len: 12345,
            kind: Kind::Refs,
        };
        assert_eq!(decode_value(&encode_value(&l)), Some(l));
        let mut bad = encode_value(&l);
        bad[12] = 9;
        assert_eq!(decode_value(&bad), None);
        let w = Watermark {
            rows: 3,
            rows_hash: [1; 32],
            parts_hash: [2; 32],
        };
        let back = Watermark::decode(&w.encode()).expect("decodes");
        assert_eq!(
            (back.rows, back.rows_hash, back.parts_hash),
            (3, [1; 32], [2; 32])
        );
        assert!(Watermark::decode(b"short").is_none());
        let id = [5u8; 32];
        let keys: BTreeSet<[u8; 32]> = (0..MAX_ALTS).map(|k| alt_key(&id, k)).collect();
        assert_eq!(keys.len(), MAX_ALTS as usize);
        assert!(!keys.contains(&id));
    }

    #[test]
    fn rows_append_and_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = |n: u8| PackRef {
            id: PackId([n; 16]),
            dir: n as u16,
            len: n as u64 * 1000,
        };
        let one = encode_rows(&[r(1)]);
        write_rows(dir.path(), &one).expect("write");
        let two = encode_rows(&[r(1), r(2)]);
        write_rows(dir.path(), &two).expect("append");
        assert_eq!(std::fs::read(dir.path().join(PACKS)).expect("read"), two);
        // A rebuild renumbers: the file is rewritten, not appended to.
        let other = encode_rows(&[r(3)]);
        write_rows(dir.path(), &other).expect("rewrite");
        assert_eq!(std::fs::read(dir.path().join(PACKS)).expect("read"), other);
        assert_eq!(decode_rows(&other)[0], r(3));
    }
}
