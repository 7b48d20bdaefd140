//! Forgetting snapshots and collecting the garbage they leave, while backups, replication and
//! imports keep running (docs/format.md section 10).
//!
//! The scheme in one paragraph: the collector computes the live set (every blob a snapshot
//! references, from the plaintext refs lists: no key needed), copies the live blobs out of the
//! packs it will delete, indexes the copies, then *publishes* the list of condemned packs.
//! Every session opened after that hides condemned packs (it neither dedups against nor reads
//! them), so only sessions that were already open can still come to reference a blob that
//! exists only in a condemned pack. The collector waits until each of those has ended, looks
//! at the snapshots again, rescues (copies) any condemned-only blob that became referenced,
//! then rewrites the index parts without the condemned packs and deletes them. It never takes
//! the vault's exclusive lock; a second collector is kept out by `gc.lock`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::blob::Kind;
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, IdMap, IdSet, PackId};
use crate::index::{PackInfo, PackRef, Part};
use crate::ingest::Ingest;

use crate::pack::PackEntry;
use crate::repo::Repo;

const CONDEMNED: &str = "condemned";
const MAGIC: &[u8; 8] = b"TVCONDM1";
const GC_LOCK: &str = "gc.lock";
/// Damaged packs replaced by a heal are kept here for inspection, not deleted.
pub(crate) const QUARANTINE: &str = "quarantine";

/// Tuning of a collection.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// A pack whose unreferenced bytes reach this fraction of its size is rewritten (its live
    /// blobs copied, the pack deleted); fully unreferenced packs are always deleted.
    pub max_unused: f64,
    /// How often to check whether older sessions have ended.
    pub poll: Duration,
    /// Stop waiting for older sessions after this long (None: wait as long as it takes).
    pub max_wait: Option<Duration>,
    /// Plan only: report what would be deleted, change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            max_unused: 0.25,
            poll: Duration::from_millis(100),
            max_wait: None,
            dry_run: false,
        }
    }
}

/// What a collection did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub snapshots: u64,
    pub live_blobs: u64,
    pub packs_before: u64,
    pub packs_deleted: u64,
    /// Of the deleted packs, those that still held live blobs (copied first).
    pub packs_rewritten: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Condemned-only blobs that a session older than the condemnation came to reference.
    pub blobs_rescued: u64,
    pub bytes_freed: u64,
    /// Sessions that were open when the packs were condemned and had to finish first.
    pub sessions_waited: u64,
    /// Referenced blobs found nowhere (damage `verify` will report; nothing is deleted for it).
    pub missing_blobs: u64,
    /// True when this run finished a collection an earlier run had started.
    pub resumed: bool,
}

/// Progress messages for a long collection (waiting for sessions can take hours).
pub trait GcProgress {
    fn stage(&self, what: &str);
}

impl<F: Fn(&str)> GcProgress for F {
    fn stage(&self, what: &str) {
        self(what)
    }
}

/// The condemned packs published by an unfinished collection (empty when none).
pub(crate) fn read_condemned(root: &Path) -> Result<HashSet<PackId>> {
    let path = root.join(CONDEMNED);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    decode_condemned(&b).map_err(|reason| Error::CorruptIndex {
        name: CONDEMNED.into(),
        reason,
    })
}

fn encode_condemned(packs: &HashSet<PackId>, time_ns: i64) -> Vec<u8> {
    let mut ids: Vec<&PackId> = packs.iter().collect();
    ids.sort();
    let mut out = Vec::with_capacity(24 + 16 * ids.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    out.extend_from_slice(&time_ns.to_le_bytes());
    for p in ids {
        out.extend_from_slice(&p.0);
    }
    out
}

fn decode_condemned(b: &[u8]) -> std::result::Result<HashSet<PackId>, String> {
    if b.len() < 24 || &b[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version != 1 {
        return Err(format!("unknown version {version}"));
    }
    let n = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    if b.len() != 24 + 16 * n {
        return Err(format!("length {} does not match {n} packs", b.len()));
    }
    Ok(b[24..]
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            PackId(a)
        })
        .collect())
}

/// Delete snapshot files. Refused while a collection is pending: a session that opened after
/// the condemnation may use one of those snapshots as its parent.
pub fn forget(repo: &Repo, ids: &[Id]) -> Result<()> {
    if repo.root().join(CONDEMNED).exists() {
        return Err(Error::GcPending(repo.root().to_path_buf()));
    }
    let dir = repo.root().join("snapshots");
    for id in ids {
        let path = dir.join(id.hex());
        match repo.io().remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing snapshot", path, e)),
        }
    }
    repo.io().sync_dir(&dir).ctx("syncing", &dir)
}

/// Every pack and blob the index parts name, condemned packs included.
pub(crate) struct View {
    parts: Vec<(String, Part)>,
    pub(crate) packs: HashMap<PackId, PackRef>,
    /// Every copy of every blob: (pack, offset, len, kind).
    pub(crate) copies: IdMap<Vec<(PackId, u64, u32, Kind)>>,
    /// Per pack: its entries.
    pub(crate) contents: HashMap<PackId, Vec<(Id, u64, u32, Kind)>>,
}

impl View {
    pub(crate) fn load(repo: &Repo) -> Result<View> {
        let (parts, problems) = repo.index_parts()?;
        if let Some(p) = problems.first() {
            // A damaged part may name live packs we cannot see: deleting is unsafe.
            return Err(Error::CorruptIndex {
                name: "(collection)".into(),
                reason: format!("{p}; run verify and rebuild the index before collecting"),
            });
        }
        let mut v = View {
            parts: Vec::new(),
            packs: HashMap::new(),
            copies: IdMap::default(),
            contents: HashMap::new(),
        };
        for (name, part) in parts {
            // A pack named by two parts (adopted twice) is counted once.
            let fresh: Vec<bool> = part
                .packs
                .iter()
                .map(|p| v.packs.insert(p.id, p.clone()).is_none())
                .collect();
            for (id, pack, off, len, kind) in &part.entries {
                if !fresh[*pack as usize] {
                    continue;
                }
                let pid = part.packs[*pack as usize].id;
                v.contents
                    .entry(pid)
                    .or_default()
                    .push((*id, *off, *len, *kind));
                v.copies
                    .entry(*id)
                    .or_default()
                    .push((pid, *off, *len, *kind));
            }
            v.parts.push((name, part));
        }
        Ok(v)
    }

    pub(crate) fn read(
        &self,
        repo: &Repo,
        pack: &PackId,
        off: u64,
        len: u32,
    ) -> std::io::Result<Vec<u8>> {
        let pref = self
            .packs
            .get(pack)
            .ok_or_else(|| std::io::Error::other("pack not in the index"))?;
        let f = File::open(repo.pack_path(pref))?;
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, off)?;
        Ok(b)
    }

    /// The ids a refs blob lists, from any readable copy.
    fn refs(&self, repo: &Repo, id: &Id) -> Option<Vec<Id>> {
        for (pack, off, len, _) in self.copies.get(id)? {
            let Ok(stored) = self.read(repo, pack, *off, *len) else {
                continue;
            };
            let Ok(payload) = crate::codec::refs_payload(&stored) else {
                continue;
            };
            if Id::digest(payload) == *id {
                if let Ok(ids) = crate::refs::parse(payload) {
                    return Some(ids);
                }
            }
        }
        None
    }

    /// The live set: every blob the current snapshot files reference.
    fn mark(&self, repo: &Repo) -> Result<(IdSet, u64, u64)> {
        let (snaps, bad) = repo.snapshot_files()?;
        if let Some((name, reason)) = bad.first() {
            return Err(Error::CorruptSnapshot {
                name: name.clone(),
                reason: format!("{reason}; a collection needs every snapshot readable"),
            });
        }
        let mut live = IdSet::default();
        let mut missing = 0u64;
        for s in &snaps {
            for r in &s.header.refs {
                live.insert(*r);
                match self.refs(repo, r) {
                    Some(ids) => live.extend(ids),
                    None => {
                        // We cannot know what this snapshot references: deleting anything
                        // could destroy its data.
                        return Err(Error::CorruptSnapshot {
                            name: s.id.hex(),
                            reason: format!(
                                "its reference list blob {r} is missing or damaged; run verify"
                            ),
                        });
                    }
                }
            }
        }
        for id in &live {
            if !self.copies.contains_key(id) {
                missing += 1;
            }
        }
        Ok((live, snaps.len() as u64, missing))
    }
}

/// Run a collection (or finish one an interrupted run started).
pub fn collect(repo: &Repo, opts: &GcOptions, progress: &dyn GcProgress) -> Result<GcReport> {
    let _lock = lock(repo)?;
    let mut report = GcReport::default();
    let mut condemned = read_condemned(repo.root())?;
    report.resumed = !condemned.is_empty();
    if condemned.is_empty() {
        progress.stage("marking referenced blobs");
        let view = View::load(repo)?;
        let (live, snaps, missing) = view.mark(repo)?;
        report.snapshots = snaps;
        report.live_blobs = live.len() as u64;
        report.missing_blobs = missing;
        report.packs_before = view.packs.len() as u64;
        condemned = plan(&view, &live, opts, &mut report);
        if opts.dry_run || condemned.is_empty() {
            return Ok(report);
        }
        progress.stage("copying live blobs out of packs to delete");
        copy_live(repo, &view, &live, &mut condemned, &mut report)?;
        if condemned.is_empty() {
            return Ok(report);
        }
        publish(repo, &condemned)?;
    } else if opts.dry_run {
        return Ok(report);
    }
    finish(repo, &condemned, opts, progress, &mut report, false)?;
    Ok(report)
}

/// Keep a second collector (or healer) out for as long as the returned file is held.
pub(crate) fn lock(repo: &Repo) -> Result<File> {
    let lock_path = repo.root().join(GC_LOCK);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx("opening", &lock_path)?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Error::GcRunning(repo.root().to_path_buf()));
    }
    Ok(lock)
}

/// Step 4: publish the condemned list.
pub(crate) fn publish(repo: &Repo, condemned: &HashSet<PackId>) -> Result<()> {
    let bytes = encode_condemned(condemned, now_ns());
    let tmp = repo.root().join("tmp").join(CONDEMNED);
    crate::io::write_atomic(&**repo.io(), &tmp, &repo.root().join(CONDEMNED), bytes).ctx(
        "publishing the condemned pack list",
        &repo.root().join(CONDEMNED),
    )
}

/// Steps 5-7: wait for older sessions, rescue, sweep. With `quarantine`, condemned packs are
/// moved to `quarantine/` instead of deleted (damaged packs replaced by a heal).
pub(crate) fn finish(
    repo: &Repo,
    condemned: &HashSet<PackId>,
    opts: &GcOptions,
    progress: &dyn GcProgress,
    report: &mut GcReport,
    quarantine: bool,
) -> Result<()> {
    wait_for_older_sessions(repo, opts, progress, report)?;
    progress.stage("rescuing blobs referenced meanwhile");
    let view = View::load(repo)?;
    let (live, snaps, missing) = view.mark(repo)?;
    report.snapshots = snaps;
    report.live_blobs = live.len() as u64;
    report.missing_blobs = missing;
    if report.packs_before == 0 {
        report.packs_before = view.packs.len() as u64;
    }
    rescue(repo, &view, &live, condemned, report)?;
    progress.stage("deleting condemned packs");
    sweep(repo, &view, condemned, report, quarantine)?;
    let path = repo.root().join(CONDEMNED);
    repo.io()
        .remove_file(&path)
        .ctx("removing the condemned pack list", &path)?;
    repo.io()
        .sync_dir(repo.root())
        .ctx("syncing", repo.root())?;
    progress.stage("updating the index cache");
    repo.update_index_cache()
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Which packs to delete: unreferenced ones, and those mostly unreferenced.
fn plan(view: &View, live: &IdSet, opts: &GcOptions, report: &mut GcReport) -> HashSet<PackId> {
    // One copy of each live blob counts as live: duplicates (two concurrent writers stored
    // the same chunk) are garbage too.
    let mut kept: IdSet = IdSet::default();
    let mut out = HashSet::new();
    let mut packs: Vec<&PackId> = view.contents.keys().collect();
    packs.sort();
    for pack in packs {
        let entries = &view.contents[pack];
        let total: u64 = entries.iter().map(|e| e.2 as u64).sum();
        let live_bytes: u64 = entries
            .iter()
            .filter(|e| live.contains(&e.0) && kept.insert(e.0))
            .map(|e| e.2 as u64)
            .sum();
        let unused = total - live_bytes;
        if live_bytes == 0 || (total > 0 && unused as f64 >= opts.max_unused * total as f64) {
            out.insert(*pack);
            let len = view.packs.get(pack).map_or(total, |p| p.len);
            report.bytes_freed += len;
            report.packs_deleted += 1;
            if live_bytes > 0 {
                report.packs_rewritten += 1;
            }
        }
    }
    out
}

/// True when `id` has a copy outside `condemned`.
fn has_safe_copy(
    view: &View,
    id: &Id,
    condemned: &HashSet<PackId>,
    ing: &Ingest,
    repo: &Repo,
) -> bool {
    // A failed index lookup counts as "no copy": the blob is copied once more, never lost.
    ing.has(repo, id).unwrap_or(false)
        || view
            .copies
            .get(id)
            .is_some_and(|c| c.iter().any(|(p, ..)| !condemned.contains(p)))
}

/// Copy the live blobs of packs about to be condemned into new packs. A pack holding a
/// live blob that fails its trailer digest is not condemned: we never trade a damaged copy
/// for none.
fn copy_live(
    repo: &Repo,
    view: &View,
    live: &IdSet,
    condemned: &mut HashSet<PackId>,
    report: &mut GcReport,
) -> Result<()> {
    let mut ing = Ingest::for_copying(repo);
    let mut order: Vec<PackId> = condemned.iter().copied().collect();
    order.sort();
    for pack in order {
        let wanted: Vec<&(Id, u64, u32, Kind)> = view.contents[&pack]
            .iter()
            .filter(|e| live.contains(&e.0) && !has_safe_copy(view, &e.0, condemned, &ing, repo))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let digests = trailer_digests(repo, view, &pack);
        for (id, off, len, kind) in wanted {
            let stored = view.read(repo, &pack, *off, *len).ok();
            let digest = digests.as_ref().and_then(|d| d.get(off)).copied();
            let good = match (stored, digest) {
                (Some(b), Some(d)) if crate::pack::digest16(&b) == d => Some((b, d)),
                _ => None,
            };
            let Some((stored, digest)) = good else {
                tracing::warn!(
                    "pack {}: live blob {id} is damaged; keeping the pack",
                    pack.hex()
                );
                condemned.remove(&pack);
                report.packs_deleted -= 1;
                report.packs_rewritten -= 1;
                report.bytes_freed -= view.packs.get(&pack).map_or(0, |p| p.len);
                break;
            };
            if ing.put_checked(repo, id, *kind, digest, &stored)? {
                report.blobs_copied += 1;
                report.bytes_copied += stored.len() as u64;
            }
        }
    }
    ing.flush(repo)?;
    Ok(())
}

/// Offset → digest of a pack's trailer.
pub(crate) fn trailer_digests(
    repo: &Repo,
    view: &View,
    pack: &PackId,
) -> Option<HashMap<u64, [u8; 16]>> {
    let pref = view.packs.get(pack)?;
    let (_, entries) = repo.read_pack_trailer(pack, &repo.pack_path(pref)).ok()?;
    Some(
        entries
            .iter()
            .map(|e: &PackEntry| (e.offset, e.digest))
            .collect(),
    )
}

fn wait_for_older_sessions(
    repo: &Repo,
    opts: &GcOptions,
    progress: &dyn GcProgress,
    report: &mut GcReport,
) -> Result<()> {
    let own = repo.session_name().map(str::to_string);
    let sessions_of = || -> Result<Vec<String>> {
        Ok(crate::session::live(repo.root())
            .ctx("listing sessions", &repo.root().join(crate::session::DIR))?
            .into_iter()
            .filter(|s| Some(s) != own.as_ref())
            .collect())
    };
    let mut older = sessions_of()?;
    report.sessions_waited = older.len() as u64;
    let start = std::time::Instant::now();
    while !older.is_empty() {
        progress.stage(&format!(
            "waiting for {} session(s) opened before the condemnation to finish",
            older.len()
        ));
        if opts.max_wait.is_some_and(|m| start.elapsed() >= m) {
            return Err(Error::GcPending(repo.root().to_path_buf()));
        }
        std::thread::sleep(opts.poll);
        older.retain(|s| crate::session::alive(repo.root(), s));
    }
    Ok(())
}

/// Copy condemned-only blobs that became referenced (by sessions older than the condemnation).
fn rescue(
    repo: &Repo,
    view: &View,
    live: &IdSet,
    condemned: &HashSet<PackId>,
    report: &mut GcReport,
) -> Result<()> {
    let mut ing = Ingest::for_copying(repo);
    let mut ids: Vec<&Id> = live.iter().collect();
    ids.sort();
    for id in ids {
        if has_safe_copy(view, id, condemned, &ing, repo) {
            continue;
        }
        let Some(copies) = view.copies.get(id) else {
            continue;
        };
        for (pack, off, len, kind) in copies {
            let Ok(stored) = view.read(repo, pack, *off, *len) else {
                continue;
            };
            let digest = trailer_digests(repo, view, pack)
                .and_then(|d| d.get(off).copied())
                .filter(|d| *d == crate::pack::digest16(&stored));
            if let Some(d) = digest {
                ing.put_checked(repo, id, *kind, d, &stored)?;
                report.blobs_rescued += 1;
                break;
            }
        }
    }
    ing.flush(repo)?;
    Ok(())
}

/// Rewrite the index parts without the condemned packs, then delete the packs.
fn sweep(
    repo: &Repo,
    view: &View,
    condemned: &HashSet<PackId>,
    report: &mut GcReport,
    quarantine: bool,
) -> Result<()> {
    let dir = repo.root().join("index");
    for (name, part) in &view.parts {
        if !part.packs.iter().any(|p| condemned.contains(&p.id)) {
            continue;
        }
        let kept = without(part, condemned);
        if !kept.is_empty() {
            repo.write_index_part(&kept)?;
        }
        let path = dir.join(name);
        match repo.io().remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing index part", path, e)),
        }
    }
    repo.io().sync_dir(&dir).ctx("syncing", &dir)?;
    let mut subdirs = HashSet::new();
    for pack in condemned {
        let Some(pref) = view.packs.get(pack) else {
            continue;
        };
        let path = repo.pack_path(pref);
        if quarantine && path.exists() {
            let q = repo.root().join(QUARANTINE);
            repo.io().create_dir_all(&q).ctx("creating", &q)?;
            let dest = q.join(pack.hex());
            repo.io()
                .rename(&path, &dest)
                .ctx("moving a damaged pack to quarantine", &path)?;
            repo.io().sync_dir(&q).ctx("syncing", &q)?;
            if let Some(p) = path.parent() {
                subdirs.insert(p.to_path_buf());
            }
            continue;
        }
        match repo.io().remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing pack", path, e)),
        }
        if let Some(p) = path.parent() {
            subdirs.insert(p.to_path_buf());
        }
    }
    for d in subdirs {
        repo.io().sync_dir(&d).ctx("syncing", &d)?;
    }
    if report.packs_deleted == 0 {
        report.packs_deleted = condemned.len() as u64;
    }
    Ok(())
}

/// An index part's packs (with their entries) minus `drop`.
fn without(part: &Part, drop: &HashSet<PackId>) -> Vec<PackInfo> {
    let mut out: Vec<PackInfo> = part
        .packs
        .iter()
        .map(|p| PackInfo {
            id: p.id,
            dir: p.dir,
            len: p.len,
            entries: Vec::new(),
        })
        .collect();
    for (id, pack, offset, len, kind) in &part.entries {
        out[*pack as usize].entries.push(PackEntry {
            id: *id,
            digest: [0; 16],
            offset: *offset,
            len: *len,
            kind: *kind,
        });
    }
    out.retain(|p| !drop.contains(&p.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condemned_list_round_trips_and_rejects_damage() {
        let set: HashSet<PackId> = [PackId([1; 16]), PackId([9; 16])].into_iter().collect();
        let b = encode_condemned(&set, 42);
        assert_eq!(decode_condemned(&b).expect("decode"), set);
        assert!(decode_condemned(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(decode_condemned(&bad).is_err());
    }

    #[test]
    fn without_drops_packs_and_their_entries() {
        use crate::index;
        let part = index::decode_part(&index::encode_part(&[
            PackInfo {
                id: PackId([1; 16]),
                dir: 0,
                len: 10,
                entries: vec![PackEntry {
                    id: Id([1; 32]),
                    digest: [0; 16],
                    offset: 0,
                    len: 10,
                    kind: Kind::Data,
                }],
            },
            PackInfo {
                id: PackId([2; 16]),
                dir: 0,
                len: 20,
                entries: vec![PackEntry {
                    id: Id([2; 32]),
                    digest: [0; 16],
                    offset: 0,
                    len: 20,
                    kind: Kind::Meta,
                }],
            },
        ]))
        .expect("part");
        let kept = without(&part, &[PackId([1; 16])].into_iter().collect());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, PackId([2; 16]));
        assert_eq!(kept[0].entries[0].id, Id([2; 32]));
    }
}
