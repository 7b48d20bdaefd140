//! Verify: every pack's footer and trailer, every blob's digest, tag and id (unless quick),
//! the index against the packs, and every snapshot's trees and references. Damage is mapped
//! to the snapshots and files it affects. Interrupted writes under tmp/ are not damage.
//! An unavailable data directory (not mounted, wrong marker) is reported, and so is each pack
//! the index places there, with the snapshots that need it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::browse::join;
use crate::codec::Decoder;
use crate::error::Result;
use crate::id::{Id, IdMap, IdSet, PackId};
use crate::pack::PackEntry;
use crate::tree::{from_cbor, ChunkRef, NodeType, Tree};
use crate::vault::Vault;

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub threads: usize,
}

#[derive(Default, Debug)]
pub struct Progress {
    pub packs_total: AtomicU64,
    pub packs_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damage {
    pub pack: Option<String>,
    /// The data directory of `pack` (or the unavailable data directory this item is about).
    pub dir: Option<u16>,
    pub blob: Option<String>,
    pub error: String,
    /// Snapshots that need what is damaged (for a pack: any of its damaged blobs).
    pub snapshots: Vec<String>,
    pub files: Vec<String>,
}

/// A data directory that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableDir {
    pub dir: u16,
    pub path: PathBuf,
    pub reason: String,
    /// Packs the index places there (all unreadable now).
    pub packs: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub packs: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub snapshots: u64,
    pub damage: Vec<Damage>,
    /// Data directories that are not usable (each is also a `damage` item).
    pub unavailable_dirs: Vec<UnavailableDir>,
    /// Every snapshot some damage touches, sorted (the union of the items' `snapshots`).
    pub affected_snapshots: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.damage.is_empty()
    }
}

struct PackCheck {
    id: PackId,
    dir: u16,
    /// Trailer entries (None: the trailer is unreadable).
    entries: Option<u64>,
    /// Trailer entries the index locates in this pack (at the trailer's place or not).
    indexed_here: u64,
    bad: Vec<(Id, String)>,
    error: Option<String>,
    bytes: u64,
}

fn check_pack(
    vault: &Vault,
    (dir, id, path): (u16, PackId, &PathBuf),
    quick: bool,
    dec: &mut Decoder,
) -> PackCheck {
    let mut out = PackCheck {
        id,
        dir,
        entries: None,
        indexed_here: 0,
        bad: Vec::new(),
        error: None,
        bytes: 0,
    };
    if quick {
        match vault.read_pack_trailer(&id, path) {
            Ok((_, e)) => against_index(vault, &mut out, &e),
            Err(e) => out.error = Some(e),
        }
        return out;
    }
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            out.error = Some(format!("cannot read {}: {e}", path.display()));
            return out;
        }
    };
    out.bytes = data.len() as u64;
    let entries = {
        let d = &data;
        crate::pack::read_trailer(&id, d.len() as u64, |off, n| {
            d.get(off as usize..off as usize + n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| std::io::Error::other("range outside file"))
        })
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    for e in &entries {
        let range = e.offset as usize..e.offset as usize + e.len as usize;
        let stored = &mut data[range];
        if crate::pack::digest16(stored) != e.digest {
            out.bad
                .push((e.id, "stored bytes do not match their digest".into()));
            continue;
        }
        if let Err(reason) = dec.decode(vault.keys(), &e.id, stored) {
            out.bad.push((e.id, reason));
        }
    }
    against_index(vault, &mut out, &entries);
    out
}

/// Compare a pack's trailer with the index: every entry the index locates in this pack must
/// sit where the trailer says. Counts them, so the index scan can tell whether the index
/// locates anything else here.
fn against_index(vault: &Vault, out: &mut PackCheck, entries: &[PackEntry]) {
    out.entries = Some(entries.len() as u64);
    let index = vault.index();
    let Some(row) = index.pack_row(&out.id) else {
        return;
    };
    let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
    let found = match index.get_many(&ids) {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(format!("looking its blobs up in the index failed: {e}"));
            return;
        }
    };
    for (e, loc) in entries.iter().zip(found) {
        let Some(loc) = loc.filter(|l| l.pack == row) else {
            continue;
        };
        out.indexed_here += 1;
        if (loc.offset, loc.len) != (e.offset, e.len) {
            out.bad.push((
                e.id,
                "the index entry disagrees with the pack's trailer".into(),
            ));
        }
    }
}

pub fn verify(vault: &Vault, opts: &Options, progress: &Progress) -> Result<Report> {
    let mut report = Report::default();
    let mut index_problems = vault.index_open_problems().to_vec();
    for p in vault.check_index_parts()? {
        if !index_problems.contains(&p) {
            index_problems.push(p);
        }
    }
    let dir_problems = vault.data_dir_problems_now();
    for p in index_problems {
        report.damage.push(Damage {
            error: p,
            ..Damage::default()
        });
    }
    if dir_problems.iter().any(Option::is_some) {
        let per_dir = vault.indexed_packs_per_dir()?;
        for (i, problem) in dir_problems.iter().enumerate() {
            let Some(problem) = problem else { continue };
            let packs = per_dir.get(i).map_or(0, |t| t.0);
            let path = vault.data_dirs()[i].clone();
            report.damage.push(Damage {
                dir: Some(i as u16),
                error: format!(
                    "data directory {i} ({}) is unavailable: {problem}; the index places {packs} \
                     pack(s) there",
                    path.display()
                ),
                ..Damage::default()
            });
            report.unavailable_dirs.push(UnavailableDir {
                dir: i as u16,
                path,
                reason: problem.to_string(),
                packs,
            });
        }
    }
    // Condemned packs may vanish while we read them (a collection is finishing); they hold
    // nothing this session may use.
    let on_disk: Vec<_> = vault
        .packs_on_disk()?
        .into_iter()
        .filter(|(_, id, _)| !vault.is_condemned(id))
        .collect();
    progress
        .packs_total
        .store(on_disk.len() as u64, Ordering::Relaxed);

    // 1. Packs, in parallel.
    let queue = Mutex::new(on_disk.iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                let mut dec = Decoder::new();
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((dir, id, path)) = next else { break };
                    let r = check_pack(vault, (*dir, *id, path), opts.quick, &mut dec);
                    progress.packs_done.fetch_add(1, Ordering::Relaxed);
                    progress.bytes_done.fetch_add(r.bytes, Ordering::Relaxed);
                    results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());

    let mut bad: IdMap<Bad> = IdMap::default();
    // Per pack: (healthy, trailer entries the index locates there).
    let mut checked: HashMap<PackId, (bool, u64)> = HashMap::new();
    for r in &results {
        report.packs += 1;
        report.bytes += r.bytes;
        if let Some(err) = &r.error {
            report.damage.push(Damage {
                pack: Some(r.id.hex()),
                dir: Some(r.dir),
                error: err.clone(),
                ..Damage::default()
            });
        }
        report.blobs += r.entries.unwrap_or(0);
        for (id, reason) in &r.bad {
            bad.insert(*id, Bad::new(Some((r.id, r.dir)), reason.clone()));
        }
        checked.insert(r.id, (r.entries.is_some(), r.indexed_here));
    }

    // 2. The index against the packs, in one scan (no pack's trailer is held): an entry
    // whose pack is missing or damaged is bad; a pack the index locates more entries in than
    // its trailer accounts for is looked at again below.
    let mut broken_packs: HashSet<PackId> = HashSet::new();
    let index = vault.index();
    let mut per_row = vec![0u64; index.pack_rows()];
    index.for_each(|id, loc| {
        let pref = index.pack(loc.pack);
        match checked.get(&pref.id) {
            Some((true, _)) => per_row[loc.pack as usize] += 1,
            Some((false, _)) | None => {
                if !bad.contains_key(id) {
                    let on = checked.contains_key(&pref.id);
                    let unusable = dir_problems
                        .get(pref.dir as usize)
                        .map_or(Some(&crate::datadir::Problem::Unknown), Option::as_ref);
                    let why = match (on, unusable) {
                        (true, _) => "its pack is damaged".to_string(),
                        (false, Some(_)) => format!(
                            "its pack is on data directory {}, which is unavailable",
                            pref.dir
                        ),
                        (false, None) => "its pack is missing".to_string(),
                    };
                    bad.insert(*id, Bad::new(Some((pref.id, pref.dir)), why));
                    if !on && broken_packs.insert(pref.id) {
                        // The directory is in `dir`; the text stays what it always was for a
                        // pack missing from a usable directory.
                        let error = match unusable {
                            Some(p) => format!(
                                "pack named by the index is missing: its data directory {} \
                                 ({}) is unavailable: {p}",
                                pref.dir,
                                vault
                                    .data_dirs()
                                    .get(pref.dir as usize)
                                    .map_or_else(|| "?".into(), |d| d.display().to_string())
                            ),
                            None => "pack named by the index is missing".to_string(),
                        };
                        report.damage.push(Damage {
                            pack: Some(pref.id.hex()),
                            dir: Some(pref.dir),
                            error,
                            ..Damage::default()
                        });
                    }
                }
            }
        }
    })?;
    let strays: HashSet<u32> = per_row
        .iter()
        .enumerate()
        .filter(|(row, n)| {
            let id = index.pack(*row as u32).id;
            checked
                .get(&id)
                .is_some_and(|(ok, here)| *ok && **n > *here)
        })
        .map(|(row, _)| row as u32)
        .collect();
    if !strays.is_empty() {
        // Entries located in a healthy pack whose trailer does not list them (damage of the
        // index, rare): name them, reading only these packs' trailers.
        let mut trailers: HashMap<u32, HashSet<Id>> = HashMap::new();
        for &row in &strays {
            let pref = index.pack(row);
            let ids = vault
                .read_pack_trailer(&pref.id, &vault.pack_path(pref))
                .map(|(_, e)| e.into_iter().map(|e| e.id).collect())
                .unwrap_or_default();
            trailers.insert(row, ids);
        }
        index.for_each(|id, loc| {
            if let Some(t) = trailers.get(&loc.pack) {
                if !t.contains(id) && !bad.contains_key(id) {
                    let pref = index.pack(loc.pack);
                    bad.insert(
                        *id,
                        Bad::new(
                            Some((pref.id, pref.dir)),
                            "the index entry disagrees with the pack's trailer".into(),
                        ),
                    );
                }
            }
        })?;
    }
    drop(index);

    // 3. Snapshots, trees and references; map bad ids to snapshots and files.
    let (snaps, unreadable) = vault.snapshots()?;
    for (name, e) in unreadable {
        report.damage.push(Damage {
            error: format!("snapshot file {name}: {e}"),
            ..Damage::default()
        });
    }
    report.snapshots = snaps.len() as u64;
    let mut scan = Scanner {
        vault,
        bad: &mut bad,
        memo: IdMap::default(),
        dec: Decoder::new(),
        buf: Vec::new(),
    };
    let mut affected: IdMap<(Vec<String>, Vec<String>)> = IdMap::default();
    for s in &snaps {
        for r in &s.header.refs {
            scan.check_ref(r);
        }
        if scan.tree_bad(&s.body.root) {
            let mut hits = Vec::new();
            scan.collect(&s.body.root, b"", &mut hits);
            for (id, path) in hits {
                let a = affected.entry(id).or_default();
                if !a.0.contains(&s.id.hex()) {
                    a.0.push(s.id.hex());
                }
                a.1.push(path);
            }
        }
        for r in &s.header.refs {
            if scan.bad.contains_key(r) {
                affected.entry(*r).or_default().0.push(s.id.hex());
                continue;
            }
            // The reference list names every blob the snapshot needs, also those below a
            // tree that cannot be read (a missing data directory often holds both).
            if let Ok(ids) = vault.read_refs(r) {
                for id in ids.iter().filter(|i| scan.bad.contains_key(*i)) {
                    let a = affected.entry(*id).or_default();
                    if !a.0.contains(&s.id.hex()) {
                        a.0.push(s.id.hex());
                    }
                }
            }
        }
    }
    let mut ids: Vec<&Id> = bad.keys().collect();
    ids.sort();
    // Pack → the snapshots that need one of its damaged blobs.
    let mut per_pack: HashMap<String, BTreeSet<String>> = HashMap::new();
    for id in ids {
        let b = &bad[id];
        let (snapshots, mut files) = affected.get(id).cloned().unwrap_or_default();
        files.sort();
        files.dedup();
        if let Some(p) = &b.pack {
            per_pack
                .entry(p.clone())
                .or_default()
                .extend(snapshots.iter().cloned());
        }
        report.damage.push(Damage {
            pack: b.pack.clone(),
            dir: b.dir,
            blob: Some(id.hex()),
            error: b.reason.clone(),
            snapshots,
            files,
        });
    }
    let mut all: BTreeSet<String> = BTreeSet::new();
    for d in &mut report.damage {
        if let (None, Some(p)) = (&d.blob, &d.pack) {
            if let Some(snaps) = per_pack.get(p) {
                d.snapshots = snaps.iter().cloned().collect();
            }
        }
        all.extend(d.snapshots.iter().cloned());
    }
    report.affected_snapshots = all.into_iter().collect();
    Ok(report)
}

/// Why a blob is bad, and where it is.
struct Bad {
    pack: Option<String>,
    dir: Option<u16>,
    reason: String,
}

impl Bad {
    fn new(at: Option<(PackId, u16)>, reason: String) -> Bad {
        Bad {
            pack: at.map(|(p, _)| p.hex()),
            dir: at.map(|(_, d)| d),
            reason,
        }
    }

    fn unplaced(reason: String) -> Bad {
        Bad {
            pack: None,
            dir: None,
            reason,
        }
    }
}

struct Scanner<'a> {
    vault: &'a Vault,
    bad: &'a mut IdMap<Bad>,
    /// Tree id → whether anything under it is bad.
    memo: IdMap<bool>,
    dec: Decoder,
    buf: Vec<u8>,
}

impl Scanner<'_> {
    fn check_ref(&mut self, id: &Id) -> bool {
        if self.bad.contains_key(id) {
            return true;
        }
        let why = match self.vault.index().contains(id) {
            Ok(true) => return false,
            Ok(false) => "referenced blob is missing from the vault".to_string(),
            Err(e) => format!("looking the blob up failed: {e}"),
        };
        self.bad.insert(*id, Bad::unplaced(why));
        true
    }

    fn load_tree(&mut self, id: &Id) -> Option<Tree> {
        if self.check_ref(id) {
            return None;
        }
        match self.vault.read_blob(id, &mut self.dec, &mut self.buf) {
            Ok(p) => match Tree::decode(&p) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.bad
                        .insert(*id, Bad::unplaced(format!("tree does not decode: {e}")));
                    None
                }
            },
            Err(e) => {
                self.bad.insert(*id, Bad::unplaced(e.to_string()));
                None
            }
        }
    }

    fn chunks(&mut self, c: &crate::tree::Content) -> (Vec<ChunkRef>, Vec<Id>) {
        if let Some(ch) = &c.chunks {
            return (ch.clone(), Vec::new());
        }
        let mut out = Vec::new();
        let mut bad_lists = Vec::new();
        for id in c.lists.iter().flatten() {
            if self.check_ref(id) {
                bad_lists.push(*id);
                continue;
            }
            match self.vault.read_blob(id, &mut self.dec, &mut self.buf) {
                Ok(p) => match from_cbor::<Vec<ChunkRef>>(&p) {
                    Ok(v) => out.extend(v),
                    Err(e) => {
                        self.bad.insert(
                            *id,
                            Bad::unplaced(format!("chunk list does not decode: {e}")),
                        );
                        bad_lists.push(*id);
                    }
                },
                Err(e) => {
                    self.bad.insert(*id, Bad::unplaced(e.to_string()));
                    bad_lists.push(*id);
                }
            }
        }
        (out, bad_lists)
    }

    fn tree_bad(&mut self, id: &Id) -> bool {
        if let Some(&b) = self.memo.get(id) {
            return b;
        }
        let mut any = false;
        match self.load_tree(id) {
            None => any = true,
            Some(t) => {
                for e in &t.entries {
                    if let Some(c) = &e.content {
                        let (chunks, bad_lists) = self.chunks(c);
                        any |= !bad_lists.is_empty();
                        for ch in chunks {
                            any |= self.check_ref(&ch.1);
                        }
                    }
                    if let (NodeType::Dir, Some(sub)) = (e.kind, e.subtree) {
                        any |= self.tree_bad(&sub);
                    }
                }
            }
        }
        self.memo.insert(*id, any);
        any
    }

    /// (bad id, path) for every file or tree under `id` touched by a bad id.
    fn collect(&mut self, id: &Id, prefix: &[u8], out: &mut Vec<(Id, String)>) {
        let Some(t) = self.load_tree(id) else {
            out.push((
                *id,
                format!("{}/ (directory listing)", String::from_utf8_lossy(prefix)),
            ));
            return;
        };
        for e in &t.entries {
            let path = join(prefix, &e.name);
            if let Some(c) = &e.content {
                let (chunks, bad_lists) = self.chunks(c);
                let shown = String::from_utf8_lossy(&path).into_owned();
                for l in bad_lists {
                    out.push((l, shown.clone()));
                }
                let mut seen = IdSet::default();
                for ch in chunks {
                    if self.bad.contains_key(&ch.1) && seen.insert(ch.1) {
                        out.push((ch.1, shown.clone()));
                    }
                }
            }
            if let (NodeType::Dir, Some(sub)) = (e.kind, e.subtree) {
                if self.tree_bad(&sub) {
                    self.collect(&sub, &path, out);
                }
            }
        }
    }
}
