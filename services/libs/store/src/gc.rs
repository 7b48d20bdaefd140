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
use crate::index::part::PartEntry;
use crate::index::PackRef;
use crate::ingest::Ingest;

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

/// What the index parts say about some packs and some blobs (condemned packs included),
/// read by streaming every part: the entries of the packs asked for, and every copy of the
/// blobs asked for. Memory grows with what was asked, not with the vault.
pub(crate) struct View {
    pub(crate) packs: HashMap<PackId, PackRef>,
    /// Every copy of each blob asked for: (pack, offset, len, kind).
    pub(crate) copies: IdMap<Vec<(PackId, u64, u32, Kind)>>,
    /// The entries of each pack asked for.
    pub(crate) contents: HashMap<PackId, Vec<(Id, u64, u32, Kind)>>,
}

impl View {
    pub(crate) fn load_for(repo: &Repo, packs: &HashSet<PackId>, ids: &IdSet) -> Result<View> {
        let mut v = View {
            packs: HashMap::new(),
            copies: IdMap::default(),
            contents: HashMap::new(),
        };
        let dir = repo.root().join("index");
        let mut seen: HashSet<PackId> = HashSet::new();
        for name in crate::repo::list_dir(&dir)? {
            let part_packs = part_packs(&dir, &name)?;
            // A pack named by two parts (adopted twice) is counted once.
            let fresh: Vec<bool> = part_packs.iter().map(|p| seen.insert(p.id)).collect();
            let mut add = |(id, pack, off, len, kind): PartEntry| {
                let pref = &part_packs[pack as usize];
                if !fresh[pack as usize] {
                    return Ok(());
                }
                let want_pack = packs.contains(&pref.id);
                let want_id = ids.contains(&id);
                if want_pack {
                    v.contents
                        .entry(pref.id)
                        .or_default()
                        .push((id, off, len, kind));
                }
                if want_id {
                    v.copies
                        .entry(id)
                        .or_default()
                        .push((pref.id, off, len, kind));
                }
                if want_pack || want_id {
                    v.packs.entry(pref.id).or_insert_with(|| pref.clone());
                }
                Ok(())
            };
            scan_checked(&dir, &name, &mut add)?;
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
}

/// Run a collection (or finish one an interrupted run started).
pub fn collect(repo: &Repo, opts: &GcOptions, progress: &dyn GcProgress) -> Result<GcReport> {
    let _lock = lock(repo)?;
    let mut report = GcReport::default();
    let mut condemned = read_condemned(repo.root())?;
    report.resumed = !condemned.is_empty();
    if condemned.is_empty() {
        progress.stage("marking referenced blobs");
        let live = Live::mark(repo, &mut report)?;
        condemned = plan(repo, &live, opts, &mut report)?;
        if opts.dry_run || condemned.is_empty() {
            return Ok(report);
        }
        progress.stage("copying live blobs out of packs to delete");
        copy_live(repo, &live, &mut condemned, &mut report, false)?;
        drop(live);
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

/// Directory of the live set's temporary chunk index.
const LIVE_DIR: &str = "gc.live";

/// Every blob the snapshot files reference, as a temporary on-disk chunk index (in
/// `gc.live/`, within the index memory budget): the live set of a vault of any size.
struct Live {
    ids: tiervault_chunkindex::ChunkIndex,
    dir: std::path::PathBuf,
}

impl Live {
    fn mark(repo: &Repo, report: &mut GcReport) -> Result<Live> {
        let dir = repo.root().join(LIVE_DIR);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ctx("removing an old live set", &dir)?;
        }
        let mut opts = tiervault_chunkindex::Options::with_budget(crate::index::budget());
        // About as many live ids as the index holds: no bigger buffer than that needs.
        opts.max_buffer_entries = Some(repo.index().approx_len() + (64 << 10));
        let ids = tiervault_chunkindex::ChunkIndex::open(&dir, opts).map_err(Error::IndexCache)?;
        let mut live = Live { ids, dir };
        let (snaps, bad) = repo.snapshot_files()?;
        if let Some((name, reason)) = bad.first() {
            return Err(Error::CorruptSnapshot {
                name: name.clone(),
                reason: format!("{reason}; a collection needs every snapshot readable"),
            });
        }
        // After listing the snapshots: the blobs of every one listed are in index parts
        // that exist now (a snapshot is written after its parts), which the index must see.
        repo.reload_index()?;
        for s in &snaps {
            for r in &s.header.refs {
                live.insert(r)?;
                let ids = read_refs_any(repo, r).map_err(|e| Error::CorruptSnapshot {
                    name: s.id.hex(),
                    reason: match e {
                        // Not damage: nothing can be deleted until every snapshot's
                        // references are known, so wait for the array to be back.
                        Error::PackUnavailable { .. } => format!(
                            "its reference list blob {r} cannot be read ({e}); a collection \
                             needs every snapshot's references"
                        ),
                        _ => format!(
                            "its reference list blob {r} is missing or damaged ({e}); run verify"
                        ),
                    },
                })?;
                for id in &ids {
                    live.insert(id)?;
                }
            }
        }
        // Sorted iteration (`plan`) needs the buffer in a run.
        live.ids.commit(b"").map_err(Error::IndexCache)?;
        report.snapshots = snaps.len() as u64;
        report.live_blobs = live.ids.len();
        Ok(live)
    }

    fn insert(&mut self, id: &Id) -> Result<()> {
        self.ids
            .insert(&id.0, [0; 16])
            .map(|_| ())
            .map_err(Error::IndexCache)
    }

    fn contains(&self, id: &Id) -> Result<bool> {
        self.ids.contains(&id.0).map_err(Error::IndexCache)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("removing the live set {}: {e}", self.dir.display());
        }
    }
}

/// The ids a refs blob lists: from a visible copy, else from any copy (a resumed collection
/// hides the packs it condemned, which may hold the only one).
fn read_refs_any(repo: &Repo, id: &Id) -> Result<Vec<Id>> {
    match repo.read_refs(id) {
        Err(Error::MissingBlob(_)) | Err(Error::CorruptBlob { .. }) => {
            let loc = repo
                .index()
                .get_with(id, &|_| false)?
                .ok_or(Error::MissingBlob(*id))?;
            repo.read_refs_at(id, &loc)
        }
        other => other,
    }
}

/// Every index part's packs, each once (a pack two parts name counts for the first), with
/// the bytes of its entries. A damaged part is an error: it may name live packs. Packs this
/// session's index does not know (written since it opened) are left for the next collection.
fn pack_totals(repo: &Repo) -> Result<HashMap<PackId, (PackRef, u64)>> {
    let dir = repo.root().join("index");
    let mut out: HashMap<PackId, (PackRef, u64)> = HashMap::new();
    for name in crate::repo::list_dir(&dir)? {
        let packs: Vec<PackRef> = part_packs(&dir, &name)?;
        let fresh: Vec<bool> = {
            let index = repo.index();
            packs
                .iter()
                .map(|p| !out.contains_key(&p.id) && index.has_pack(&p.id))
                .collect()
        };
        for (p, _) in packs.iter().zip(&fresh).filter(|(_, f)| **f) {
            out.insert(p.id, (p.clone(), 0));
        }
        let mut add = |(_, pack, _, len, _): PartEntry| {
            if fresh[pack as usize] {
                if let Some(t) = out.get_mut(&packs[pack as usize].id) {
                    t.1 += len as u64;
                }
            }
            Ok(())
        };
        scan_checked(&dir, &name, &mut add)?;
    }
    Ok(out)
}

/// A part's packs; a damaged part is an error (deleting with it unread is unsafe).
fn part_packs(dir: &Path, name: &str) -> Result<Vec<PackRef>> {
    match crate::index::part::read_part_packs(&dir.join(name)) {
        Ok(Ok((p, _))) => Ok(p),
        Ok(Err(e)) => Err(damaged_part(name, e)),
        Err(e) => Err(Error::io("reading index part", dir.join(name), e)),
    }
}

fn damaged_part(name: &str, e: String) -> Error {
    Error::CorruptIndex {
        name: name.to_string(),
        reason: format!("{e}; run verify and rebuild the index before collecting"),
    }
}

/// Stream a part's entries through `f`, failing on a damaged part.
fn scan_checked(dir: &Path, name: &str, f: &mut dyn FnMut(PartEntry) -> Result<()>) -> Result<()> {
    match crate::index::part::scan_part(dir, name, Some(f))? {
        Ok(_) => Ok(()),
        Err(e) => Err(damaged_part(name, e)),
    }
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
    // A collection never deletes a pack whose data directory went away since it planned
    // (it could not rescue its blobs, and the array may come back): such packs stay
    // indexed and are visible again once `condemned` is removed. A heal (`quarantine`)
    // replaces its packs whatever their directory: every blob in them has a new copy.
    let condemned = if quarantine {
        condemned.clone()
    } else {
        let kept = on_unusable_dirs(repo, condemned)?;
        if !kept.is_empty() {
            tracing::warn!(
                "{}: keeping {} condemned pack(s) whose data directory is unavailable",
                repo.root().display(),
                kept.len()
            );
            report.packs_deleted = report.packs_deleted.saturating_sub(kept.len() as u64);
        }
        condemned.difference(&kept).copied().collect()
    };
    let condemned = &condemned;
    progress.stage("rescuing blobs referenced meanwhile");
    let live = Live::mark(repo, report)?;
    let mut still = condemned.clone();
    copy_live(repo, &live, &mut still, report, true)?;
    drop(live);
    progress.stage("deleting condemned packs");
    sweep(repo, condemned, report, quarantine)?;
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

/// Which of `packs` the index parts place in a data directory that is not usable now.
fn on_unusable_dirs(repo: &Repo, packs: &HashSet<PackId>) -> Result<HashSet<PackId>> {
    let usable = repo.usable_dirs_now();
    if usable.iter().all(|u| *u) {
        return Ok(HashSet::new());
    }
    let dir = repo.root().join("index");
    let mut out = HashSet::new();
    for name in crate::repo::list_dir(&dir)? {
        for p in part_packs(&dir, &name)? {
            if packs.contains(&p.id) && !usable.get(p.dir as usize).copied().unwrap_or(false) {
                out.insert(p.id);
            }
        }
    }
    Ok(out)
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Which packs to delete: unreferenced ones, and those mostly unreferenced. One copy of
/// each live blob counts as live (the one the index answers with): other copies (two
/// concurrent writers stored the same chunk) are garbage too.
fn plan(
    repo: &Repo,
    live: &Live,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<HashSet<PackId>> {
    let totals = pack_totals(repo)?;
    report.packs_before = totals.len() as u64;
    // A pack in a data directory that is not there now is neither garbage nor free space:
    // its array may just not be mounted. It is left alone (and stays indexed).
    let usable = repo.usable_dirs_now();
    let on_usable = |p: &PackRef| usable.get(p.dir as usize).copied().unwrap_or(false);
    let mut live_bytes: HashMap<PackId, u64> = HashMap::new();
    let index = repo.index();
    let mut missing = 0u64;
    let ids = live
        .ids
        .iter_committed()
        .map_err(Error::IndexCache)?
        .map(|e| e.map(|(k, _)| Id(k)).map_err(Error::IndexCache));
    index.join_sorted(ids, |_, loc| match loc {
        Some(l) => *live_bytes.entry(index.pack(l.pack).id).or_default() += l.len as u64,
        None => missing += 1,
    })?;
    report.missing_blobs = missing;
    let mut out = HashSet::new();
    let mut packs: Vec<&PackId> = totals.keys().collect();
    packs.sort();
    for pack in packs {
        let (pref, total) = &totals[pack];
        if !on_usable(pref) {
            continue;
        }
        let live = live_bytes.get(pack).copied().unwrap_or(0).min(*total);
        let unused = total - live;
        if live == 0 || (*total > 0 && unused as f64 >= opts.max_unused * *total as f64) {
            out.insert(*pack);
            report.bytes_freed += pref.len;
            report.packs_deleted += 1;
            if live > 0 {
                report.packs_rewritten += 1;
            }
        }
    }
    Ok(out)
}

/// Copy the live blobs that only condemned packs hold into new packs, pack by pack as the
/// index parts name them. Before publishing (`published` false) a pack holding such a blob
/// that fails its trailer digest is not condemned after all: we never trade a damaged copy
/// for none. After publishing (a rescue) another condemned copy is tried instead.
fn copy_live(
    repo: &Repo,
    live: &Live,
    condemned: &mut HashSet<PackId>,
    report: &mut GcReport,
    published: bool,
) -> Result<()> {
    let mut ing = Ingest::for_copying(repo);
    let dir = repo.root().join("index");
    for name in crate::repo::list_dir(&dir)? {
        let packs = part_packs(&dir, &name)?;
        if !packs.iter().any(|p| condemned.contains(&p.id)) {
            continue;
        }
        // The pack whose entries are being read (entries come pack by pack), opened once:
        // its trailer digests and file (`None` inside: unreadable).
        let mut open: Option<OpenPack> = None;
        let mut copy = |(id, pack, off, len, kind): PartEntry| -> Result<()> {
            let pref = &packs[pack as usize];
            if !condemned.contains(&pref.id) || !live.contains(&id)? {
                return Ok(());
            }
            if ing.has(repo, &id)? || has_safe_copy(repo, &id, condemned)? {
                return Ok(());
            }
            if open.as_ref().is_some_and(|o| o.id != pref.id) {
                open = None;
            }
            let o = open.get_or_insert_with(|| OpenPack {
                id: pref.id,
                digests: trailer_digests_of(repo, pref),
                file: File::open(repo.pack_path(pref)).ok(),
            });
            let digest = o.digests.as_ref().and_then(|d| d.get(&off).copied());
            let stored = o.file.as_ref().and_then(|f| {
                let mut b = vec![0u8; len as usize];
                f.read_exact_at(&mut b, off).ok().map(|()| b)
            });
            match (stored, digest) {
                (Some(b), Some(d)) if crate::pack::digest16(&b) == d => {
                    if ing.put_checked(repo, &id, kind, d, &b)? {
                        if published {
                            report.blobs_rescued += 1;
                        } else {
                            report.blobs_copied += 1;
                            report.bytes_copied += b.len() as u64;
                        }
                    }
                }
                _ if published => {
                    tracing::warn!("pack {}: copy of blob {id} is damaged", pref.id.hex());
                }
                _ => {
                    tracing::warn!(
                        "pack {}: live blob {id} is damaged; keeping the pack",
                        pref.id.hex()
                    );
                    condemned.remove(&pref.id);
                    report.packs_deleted -= 1;
                    report.packs_rewritten -= 1;
                    report.bytes_freed -= pref.len;
                }
            }
            Ok(())
        };
        scan_checked(&dir, &name, &mut copy)?;
    }
    ing.flush(repo)?;
    Ok(())
}

/// True when `id` has a copy the index knows outside `condemned` (and outside the packs
/// this session hides, and the data directories it cannot use: a copy on an array that is
/// missing may be lost with it). An index that does not know every copy only costs an
/// extra copy.
fn has_safe_copy(repo: &Repo, id: &Id, condemned: &HashSet<PackId>) -> Result<bool> {
    let index = repo.index();
    let hidden = |row: u32| {
        index.row_unavailable(row)
            || index
                .pack_ref(row)
                .is_none_or(|p| condemned.contains(&p.id) || !index.has_pack(&p.id))
    };
    Ok(index.get_with(id, &hidden)?.is_some())
}

/// A condemned pack being copied from.
struct OpenPack {
    id: PackId,
    digests: Option<Digests>,
    file: Option<File>,
}

/// Offset → digest of a pack's trailer entries.
type Digests = HashMap<u64, [u8; 16]>;

fn trailer_digests_of(repo: &Repo, pref: &PackRef) -> Option<Digests> {
    let (_, entries) = repo
        .read_pack_trailer(&pref.id, &repo.pack_path(pref))
        .ok()?;
    Some(entries.iter().map(|e| (e.offset, e.digest)).collect())
}

/// Offset → digest of a pack's trailer.
pub(crate) fn trailer_digests(
    repo: &Repo,
    view: &View,
    pack: &PackId,
) -> Option<HashMap<u64, [u8; 16]>> {
    trailer_digests_of(repo, view.packs.get(pack)?)
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

/// Rewrite the index parts without the condemned packs, then delete the packs.
fn sweep(
    repo: &Repo,
    condemned: &HashSet<PackId>,
    report: &mut GcReport,
    quarantine: bool,
) -> Result<()> {
    let dir = repo.root().join("index");
    let mut prefs: HashMap<PackId, PackRef> = HashMap::new();
    for name in crate::repo::list_dir(&dir)? {
        let packs = part_packs(&dir, &name)?;
        if !packs.iter().any(|p| condemned.contains(&p.id)) {
            continue;
        }
        for p in packs.iter().filter(|p| condemned.contains(&p.id)) {
            prefs.insert(p.id, p.clone());
        }
        rewrite_part(repo, &dir, &name, &packs, condemned)?;
        let path = dir.join(&name);
        match repo.io().remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing index part", path, e)),
        }
    }
    repo.io().sync_dir(&dir).ctx("syncing", &dir)?;
    let mut subdirs = HashSet::new();
    for pack in condemned {
        let Some(pref) = prefs.get(pack) else {
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
            Ok(()) => {
                if let Some(p) = path.parent() {
                    subdirs.insert(p.to_path_buf());
                }
            }
            // Gone already (an interrupted sweep): nothing to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing pack", path, e)),
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

/// Write part `name` again without the packs in `drop` (streamed: one pass counts, one
/// writes), durably, under its new name. Nothing is written when no pack is left.
fn rewrite_part(
    repo: &Repo,
    dir: &Path,
    name: &str,
    packs: &[PackRef],
    without: &HashSet<PackId>,
) -> Result<()> {
    use crate::index::part::{encode_entry, encode_header, encode_pack_row};
    let mut blobs = vec![0usize; packs.len()];
    scan_checked(dir, name, &mut |(_, pack, ..): PartEntry| {
        blobs[pack as usize] += 1;
        Ok(())
    })?;
    let kept: Vec<usize> = (0..packs.len())
        .filter(|&i| !without.contains(&packs[i].id))
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    let mut renumber = vec![u32::MAX; packs.len()];
    for (new, &old) in kept.iter().enumerate() {
        renumber[old] = new as u32;
    }
    let mut head = Vec::new();
    encode_header(&mut head, kept.len(), kept.iter().map(|&i| blobs[i]).sum());
    for &i in &kept {
        encode_pack_row(&mut head, &packs[i], blobs[i]);
    }
    let tmp = repo.tmp_dir().join(format!("part-{name}"));
    let mut out = PartWriter {
        file: repo.io().create(&tmp).ctx("writing index part", &tmp)?,
        hasher: blake3::Hasher::new(),
        at: 0,
        path: tmp.clone(),
    };
    out.put(head)?;
    let mut buf = Vec::with_capacity(1 << 20);
    scan_checked(dir, name, &mut |(id, pack, off, len, kind): PartEntry| {
        let new = renumber[pack as usize];
        if new != u32::MAX {
            encode_entry(&mut buf, &(id, new, off, len, kind));
            if buf.len() >= 1 << 20 {
                out.put(std::mem::replace(&mut buf, Vec::with_capacity(1 << 20)))?;
            }
        }
        Ok(())
    })?;
    out.put(buf)?;
    out.file.sync().ctx("syncing index part", &tmp)?;
    let dest = dir.join(out.hasher.finalize().to_hex().as_str());
    drop(out);
    repo.io()
        .rename(&tmp, &dest)
        .ctx("writing index part", &dest)
}

/// A part written front to back, hashed as it goes (its name is the hash).
struct PartWriter {
    file: Box<dyn crate::io::WriteFile>,
    hasher: blake3::Hasher,
    at: u64,
    path: std::path::PathBuf,
}

impl PartWriter {
    fn put(&mut self, buf: Vec<u8>) -> Result<()> {
        self.hasher.update(&buf);
        let n = buf.len() as u64;
        self.file
            .write_at(self.at, buf)
            .ctx("writing index part", &self.path)?;
        self.at += n;
        Ok(())
    }
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
}
