//! Verify: every pack's footer and trailer, every blob's digest, tag and id (unless quick),
//! the index against the packs, and every snapshot's trees and references. Damage is mapped
//! to the snapshots and files it affects. Interrupted writes under tmp/ are not damage.

use std::collections::{HashMap, HashSet};
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
    pub blob: Option<String>,
    pub error: String,
    pub snapshots: Vec<String>,
    pub files: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub packs: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub snapshots: u64,
    pub damage: Vec<Damage>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.damage.is_empty()
    }
}

struct PackCheck {
    id: PackId,
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
    id: PackId,
    path: &PathBuf,
    quick: bool,
    dec: &mut Decoder,
) -> PackCheck {
    let mut out = PackCheck {
        id,
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
    let mut index_problems = vault.open_problems().to_vec();
    for p in vault.check_index_parts()? {
        if !index_problems.contains(&p) {
            index_problems.push(p);
        }
    }
    for p in index_problems {
        report.damage.push(Damage {
            error: p,
            ..Damage::default()
        });
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
                    let Some((_, id, path)) = next else { break };
                    let r = check_pack(vault, *id, path, opts.quick, &mut dec);
                    progress.packs_done.fetch_add(1, Ordering::Relaxed);
                    progress.bytes_done.fetch_add(r.bytes, Ordering::Relaxed);
                    results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());

    // bad id → (pack, reason)
    let mut bad: IdMap<(Option<String>, String)> = IdMap::default();
    // Per pack: (healthy, trailer entries the index locates there).
    let mut checked: HashMap<PackId, (bool, u64)> = HashMap::new();
    for r in &results {
        report.packs += 1;
        report.bytes += r.bytes;
        if let Some(err) = &r.error {
            report.damage.push(Damage {
                pack: Some(r.id.hex()),
                error: err.clone(),
                ..Damage::default()
            });
        }
        report.blobs += r.entries.unwrap_or(0);
        for (id, reason) in &r.bad {
            bad.insert(*id, (Some(r.id.hex()), reason.clone()));
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
                    let why = if on {
                        "its pack is damaged"
                    } else {
                        "its pack is missing"
                    };
                    bad.insert(*id, (Some(pref.id.hex()), why.into()));
                    if !on && broken_packs.insert(pref.id) {
                        report.damage.push(Damage {
                            pack: Some(pref.id.hex()),
                            error: "pack named by the index is missing".into(),
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
                    bad.insert(
                        *id,
                        (
                            Some(index.pack(loc.pack).id.hex()),
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
            }
        }
    }
    let mut ids: Vec<&Id> = bad.keys().collect();
    ids.sort();
    for id in ids {
        let (pack, reason) = &bad[id];
        let (snapshots, mut files) = affected.get(id).cloned().unwrap_or_default();
        files.sort();
        files.dedup();
        report.damage.push(Damage {
            pack: pack.clone(),
            blob: Some(id.hex()),
            error: reason.clone(),
            snapshots,
            files,
        });
    }
    Ok(report)
}

struct Scanner<'a> {
    vault: &'a Vault,
    bad: &'a mut IdMap<(Option<String>, String)>,
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
        self.bad.insert(*id, (None, why));
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
                        .insert(*id, (None, format!("tree does not decode: {e}")));
                    None
                }
            },
            Err(e) => {
                self.bad.insert(*id, (None, e.to_string()));
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
                        self.bad
                            .insert(*id, (None, format!("chunk list does not decode: {e}")));
                        bad_lists.push(*id);
                    }
                },
                Err(e) => {
                    self.bad.insert(*id, (None, e.to_string()));
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
