//! `CrashFs`: a test-only [`Io`] layer that simulates power cuts.
//!
//! Every operation is performed on the real file system through an inner [`Io`] (so the vault
//! works normally while it is being recorded) and appended to a shared op log. Afterwards,
//! [`CrashFs::materialize`] rebuilds, in a fresh directory, one state the disk could hold if
//! power had been cut after the first `cut` ops: only what had been made durable is certain,
//! everything else is decided by a seeded random generator.
//!
//! # The model
//!
//! Files are modelled by inode, not by path. Paths in the log are relative to the recorded
//! root; the root itself always exists.
//!
//! * **Baseline.** [`CrashFs::start_recording`] copies the root's tree into memory. Those
//!   directories and files (e.g. `lock`, which the store writes with `std::fs`) are durable.
//! * **File data.** `create(path)` of a fresh name makes a new inode (an entry op in the parent
//!   directory); `create` of a name that already holds an inode truncates that inode (a data
//!   op, like a write). `write_at` records (inode, offset, bytes). `WriteFile::sync` makes
//!   every earlier data op of that inode durable. A data op not covered by a later sync is, at
//!   random: dropped, applied whole, torn to a prefix (half the time cut at a 4 KiB file-offset
//!   boundary), or applied page by page with each 4 KiB page kept or lost independently
//!   (writeback order is not program order). A truncate not covered by a sync is applied or
//!   not.
//! * **Directory entries.** `create` (of a fresh name), `create_dir_all` (one op per directory
//!   it actually creates), `rename` and `remove_file` are entry ops. `sync_dir(d)` makes every
//!   earlier entry op *in `d`* durable. A rename is treated as one atomic (journalled) op that
//!   is durable once its *destination* directory was synced after it; otherwise it is applied
//!   or not at random, as a whole. When an applied rename's source directory was not synced
//!   after it, the old name may survive too (a second link to the same inode), a legal outcome
//!   that only ever adds names. An unsynced create, mkdir or remove is applied or not at random,
//!   independently of the others. Entry ops are replayed in log order, so a rename moves
//!   whichever inode it moved when recorded, and a remove only removes the inode it removed.
//! * **Directories are strict:** a directory created by `create_dir_all` survives only if its
//!   mkdir survived (durable after a `sync_dir` of its parent, else random) and so did every
//!   ancestor; a file or directory whose parent did not survive is lost (what fsck would move
//!   to `lost+found`). This is stricter than "a directory is durable once a file is durably
//!   placed in it", and catches a store that forgets to sync a new directory's parent.
//! * **Sync coverage.** A `sync`/`sync_dir` covers only the ops recorded *before the call
//!   started*: an op another thread records while an fsync is in flight is not assumed to be
//!   covered by it. Every op is recorded after the real call returned, so the log order is
//!   consistent with the order each thread saw.
//!
//! Not modelled: directory renames or removals (the store makes neither), symlinks (not
//! recorded in the baseline), and files the store writes outside [`Io`] after recording
//! started (they are invisible to the log, hence absent from every materialised state).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tiervault_store::io::{Io, WriteFile};

/// Sector/page size used for torn writes.
const PAGE: u64 = 4096;

pub use crate::rng::Rng;

type Ino = u64;

/// One recorded operation. Paths are relative to the recorded root.
#[derive(Debug, Clone)]
enum Op {
    /// A new inode named `path` (entry op in `path`'s parent).
    Create {
        path: PathBuf,
        ino: Ino,
    },
    /// `create` of a name that already held `ino`: its data is cut to length 0.
    Truncate {
        ino: Ino,
    },
    Write {
        ino: Ino,
        offset: u64,
        data: Vec<u8>,
    },
    /// fsync of `ino`: its data ops recorded before index `covers` are durable.
    FileSync {
        ino: Ino,
        covers: usize,
    },
    /// `ino` is the inode `from` named when recorded (`None`: a name the log does not know).
    Rename {
        from: PathBuf,
        to: PathBuf,
        ino: Option<Ino>,
    },
    Remove {
        path: PathBuf,
        ino: Option<Ino>,
    },
    Mkdir {
        path: PathBuf,
    },
    /// fsync of directory `dir`: its entry ops recorded before index `covers` are durable.
    SyncDir {
        dir: PathBuf,
        covers: usize,
    },
}

/// What kind of operation an op-log entry is (see [`CrashFs::ops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Truncate,
    Write,
    FileSync,
    Rename,
    Remove,
    Mkdir,
    SyncDir,
}

/// A data-free description of one op-log entry, for choosing cut points.
#[derive(Debug, Clone)]
pub struct OpInfo {
    pub kind: OpKind,
    /// The file or directory concerned; for data ops and file syncs, the name the inode was
    /// created under (e.g. `data/tmp/<pack id>`); for a rename, its source.
    pub path: PathBuf,
    /// A rename's destination.
    pub to: Option<PathBuf>,
    /// A write's offset and length.
    pub offset: u64,
    pub len: u64,
}

impl fmt::Display for OpInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.path.display())?;
        if let Some(to) = &self.to {
            write!(f, " -> {}", to.display())?;
        }
        if self.kind == OpKind::Write {
            write!(f, " [{}..{}]", self.offset, self.offset + self.len)?;
        }
        Ok(())
    }
}

/// What one materialised crash state kept and lost.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    pub cut: usize,
    pub seed: u64,
    /// Data ops (writes, truncates) before the cut that a file sync covered.
    pub data_durable: usize,
    /// Unsynced data ops: dropped, applied whole, torn to a prefix, applied page by page.
    pub data_dropped: usize,
    pub data_whole: usize,
    pub data_torn: usize,
    pub data_pages: usize,
    /// Entry ops before the cut that a directory sync covered.
    pub entries_durable: usize,
    /// Unsynced entry ops that were applied anyway / lost.
    pub entries_applied: usize,
    pub entries_lost: usize,
    /// Renamed files whose old name survived as well.
    pub both_names: usize,
    /// Files and directories written out, and names lost because their directory was.
    pub files: usize,
    pub dirs: usize,
    pub orphaned: usize,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut {} seed {:#x}: data {} durable, unsynced {} dropped/{} whole/{} torn/{} paged; \
             entries {} durable, unsynced {} applied/{} lost, {} kept both names; \
             wrote {} files in {} dirs, {} orphaned",
            self.cut,
            self.seed,
            self.data_durable,
            self.data_dropped,
            self.data_whole,
            self.data_torn,
            self.data_pages,
            self.entries_durable,
            self.entries_applied,
            self.entries_lost,
            self.both_names,
            self.files,
            self.dirs,
            self.orphaned
        )
    }
}

#[derive(Default)]
struct State {
    recording: bool,
    /// Baseline directories (always containing the root, "").
    base_dirs: BTreeSet<PathBuf>,
    /// Baseline files: name → inode, and the inodes' contents.
    base_names: BTreeMap<PathBuf, Ino>,
    base_data: HashMap<Ino, Vec<u8>>,
    ops: Vec<Op>,
    marks: Vec<(usize, String)>,
    /// The live namespace as the log sees it (files only).
    names: HashMap<PathBuf, Ino>,
    /// The name each inode was created under, for [`OpInfo`].
    born_as: HashMap<Ino, PathBuf>,
    next_ino: Ino,
}

impl State {
    fn new_ino(&mut self, path: &Path) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.born_as.insert(ino, path.to_path_buf());
        ino
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recording [`Io`]. Share it as `Arc<CrashFs>`; pass a clone to the store as
/// `Arc<dyn Io>`.
pub struct CrashFs {
    root: PathBuf,
    inner: Arc<dyn Io>,
    state: Arc<Mutex<State>>,
}

impl CrashFs {
    /// A layer over `inner` for the tree at `root`, recording from now on: the baseline is
    /// the tree's current content (empty when `root` does not exist yet).
    pub fn new(root: &Path, inner: Arc<dyn Io>) -> io::Result<CrashFs> {
        let fs = CrashFs::passthrough(root, inner);
        fs.start_recording()?;
        Ok(fs)
    }

    /// A layer that only passes operations through until [`CrashFs::start_recording`].
    pub fn passthrough(root: &Path, inner: Arc<dyn Io>) -> CrashFs {
        CrashFs {
            root: root.to_path_buf(),
            inner,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Take the baseline (a copy of the tree under the root, all of it durable) and start
    /// recording; forgets any earlier log. Files opened before this call stay unrecorded.
    pub fn start_recording(&self) -> io::Result<()> {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::new());
        let mut files = BTreeMap::new();
        if self.root.exists() {
            read_tree(&self.root, Path::new(""), &mut dirs, &mut files)?;
        }
        let mut st = lock(&self.state);
        *st = State::default();
        for (path, data) in files {
            let ino = st.new_ino(&path);
            st.base_names.insert(path.clone(), ino);
            st.names.insert(path, ino);
            st.base_data.insert(ino, data);
        }
        st.base_dirs = dirs;
        st.recording = true;
        Ok(())
    }

    /// Record a named moment; returns the number of ops recorded so far, i.e. the smallest
    /// cut whose state includes everything done before this call.
    pub fn mark(&self, label: &str) -> usize {
        let mut st = lock(&self.state);
        let n = st.ops.len();
        st.marks.push((n, label.to_string()));
        n
    }

    /// The marks, in order: (op count, label).
    pub fn marks(&self) -> Vec<(usize, String)> {
        lock(&self.state).marks.clone()
    }

    /// Number of ops recorded; cut points range over `0..=op_count()`.
    pub fn op_count(&self) -> usize {
        lock(&self.state).ops.len()
    }

    /// A description of every recorded op, in log order.
    pub fn ops(&self) -> Vec<OpInfo> {
        let st = lock(&self.state);
        let born = |ino: &Ino| st.born_as.get(ino).cloned().unwrap_or_default();
        st.ops
            .iter()
            .map(|op| {
                let mut info = OpInfo {
                    kind: OpKind::Create,
                    path: PathBuf::new(),
                    to: None,
                    offset: 0,
                    len: 0,
                };
                match op {
                    Op::Create { path, .. } => info.path = path.clone(),
                    Op::Truncate { ino } => {
                        info.kind = OpKind::Truncate;
                        info.path = born(ino);
                    }
                    Op::Write { ino, offset, data } => {
                        info.kind = OpKind::Write;
                        info.path = born(ino);
                        info.offset = *offset;
                        info.len = data.len() as u64;
                    }
                    Op::FileSync { ino, .. } => {
                        info.kind = OpKind::FileSync;
                        info.path = born(ino);
                    }
                    Op::Rename { from, to, .. } => {
                        info.kind = OpKind::Rename;
                        info.path = from.clone();
                        info.to = Some(to.clone());
                    }
                    Op::Remove { path, .. } => {
                        info.kind = OpKind::Remove;
                        info.path = path.clone();
                    }
                    Op::Mkdir { path } => {
                        info.kind = OpKind::Mkdir;
                        info.path = path.clone();
                    }
                    Op::SyncDir { dir, .. } => {
                        info.kind = OpKind::SyncDir;
                        info.path = dir.clone();
                    }
                }
                info
            })
            .collect()
    }

    fn rel(&self, path: &Path) -> io::Result<PathBuf> {
        path.strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .map_err(|_| {
                io::Error::other(format!(
                    "CrashFs records only under {}; refusing {}",
                    self.root.display(),
                    path.display()
                ))
            })
    }

    /// Build, in `out_dir` (created; must not exist or be empty), the state the disk could be
    /// in after a power cut following the first `cut` ops. Unsynced ops are decided by a
    /// generator seeded with `rng_seed`: the same log, cut and seed give the same state.
    pub fn materialize(
        &self,
        cut: usize,
        rng_seed: u64,
        out_dir: &Path,
    ) -> io::Result<CrashReport> {
        let st = lock(&self.state);
        if cut > st.ops.len() {
            return Err(io::Error::other(format!(
                "cut {cut} is past the {} recorded ops",
                st.ops.len()
            )));
        }
        let ops = &st.ops[..cut];
        let mut rng = Rng::new(rng_seed);
        let mut rep = CrashReport {
            cut,
            seed: rng_seed,
            ..CrashReport::default()
        };

        // How far each file's and each directory's syncs reach.
        let mut file_synced: HashMap<Ino, usize> = HashMap::new();
        let mut dir_synced: HashMap<&Path, usize> = HashMap::new();
        for op in ops {
            match op {
                Op::FileSync { ino, covers } => {
                    let e = file_synced.entry(*ino).or_insert(0);
                    *e = (*e).max(*covers);
                }
                Op::SyncDir { dir, covers } => {
                    let e = dir_synced.entry(dir.as_path()).or_insert(0);
                    *e = (*e).max(*covers);
                }
                _ => {}
            }
        }
        let dir_durable = |path: &Path, i: usize| -> bool {
            let parent = path.parent().unwrap_or(Path::new(""));
            dir_synced.get(parent).is_some_and(|&c| i < c)
        };

        // 1. The namespace, replaying entry ops in log order.
        let mut names: BTreeMap<PathBuf, Ino> = st.base_names.clone();
        let mut dirs: BTreeSet<PathBuf> = st.base_dirs.clone();
        for (i, op) in ops.iter().enumerate() {
            let apply = |rng: &mut Rng, rep: &mut CrashReport, durable: bool| -> bool {
                if durable {
                    rep.entries_durable += 1;
                    true
                } else if rng.chance(1, 2) {
                    rep.entries_applied += 1;
                    true
                } else {
                    rep.entries_lost += 1;
                    false
                }
            };
            match op {
                Op::Create { path, ino } => {
                    if apply(&mut rng, &mut rep, dir_durable(path, i)) {
                        names.insert(path.clone(), *ino);
                    }
                }
                Op::Mkdir { path } => {
                    if apply(&mut rng, &mut rep, dir_durable(path, i)) {
                        dirs.insert(path.clone());
                    }
                }
                Op::Rename { from, to, ino } => {
                    if apply(&mut rng, &mut rep, dir_durable(to, i)) {
                        let moved = match ino {
                            Some(ino) => Some(*ino),
                            None => names.get(from).copied(),
                        };
                        if let Some(moved) = moved {
                            names.insert(to.clone(), moved);
                            if names.get(from) == Some(&moved) {
                                if dir_durable(from, i) || rng.chance(3, 4) {
                                    names.remove(from);
                                } else {
                                    rep.both_names += 1;
                                }
                            }
                        }
                    }
                }
                Op::Remove { path, ino } => {
                    if apply(&mut rng, &mut rep, dir_durable(path, i))
                        && (ino.is_none() || names.get(path) == ino.as_ref())
                    {
                        names.remove(path);
                    }
                }
                Op::Truncate { .. }
                | Op::Write { .. }
                | Op::FileSync { .. }
                | Op::SyncDir { .. } => {}
            }
        }

        // 2. Which names survive: every ancestor directory must have survived.
        let reachable =
            |p: &Path, dirs: &BTreeSet<PathBuf>| p.ancestors().skip(1).all(|a| dirs.contains(a));
        let live_dirs: Vec<&PathBuf> = dirs.iter().filter(|d| reachable(d, &dirs)).collect();
        let mut live: Vec<(&PathBuf, Ino)> = Vec::new();
        for (p, ino) in &names {
            if reachable(p, &dirs) && !dirs.contains(p) {
                live.push((p, *ino));
            } else {
                rep.orphaned += 1;
            }
        }
        rep.orphaned += dirs.len() - live_dirs.len();

        // 3. The content of each surviving inode.
        let wanted: BTreeSet<Ino> = live.iter().map(|(_, ino)| *ino).collect();
        let mut data: HashMap<Ino, Vec<u8>> = wanted
            .iter()
            .map(|ino| (*ino, st.base_data.get(ino).cloned().unwrap_or_default()))
            .collect();
        for (i, op) in ops.iter().enumerate() {
            let (ino, write) = match op {
                Op::Truncate { ino } => (*ino, None),
                Op::Write { ino, offset, data } => (*ino, Some((*offset, data))),
                _ => continue,
            };
            let Some(content) = data.get_mut(&ino) else {
                continue;
            };
            let durable = file_synced.get(&ino).is_some_and(|&c| i < c);
            match write {
                None => {
                    if durable {
                        rep.data_durable += 1;
                        content.clear();
                    } else if rng.chance(1, 2) {
                        rep.data_whole += 1;
                        content.clear();
                    } else {
                        rep.data_dropped += 1;
                    }
                }
                Some((off, bytes)) => {
                    if durable {
                        rep.data_durable += 1;
                        put(content, off, bytes);
                        continue;
                    }
                    match rng.below(10) {
                        0..=2 => rep.data_dropped += 1,
                        3..=5 => {
                            rep.data_whole += 1;
                            put(content, off, bytes);
                        }
                        6 | 7 => {
                            rep.data_torn += 1;
                            let len = bytes.len() as u64;
                            let mut n = rng.below(len);
                            if rng.chance(1, 2) {
                                let end = off + n;
                                n = (end - end % PAGE).saturating_sub(off);
                            }
                            put(content, off, &bytes[..n as usize]);
                        }
                        _ => {
                            rep.data_pages += 1;
                            let end = off + bytes.len() as u64;
                            let mut p = off;
                            while p < end {
                                let next = ((p / PAGE) + 1) * PAGE;
                                let next = next.min(end);
                                if rng.chance(1, 2) {
                                    put(
                                        content,
                                        p,
                                        &bytes[(p - off) as usize..(next - off) as usize],
                                    );
                                }
                                p = next;
                            }
                        }
                    }
                }
            }
        }
        drop(st);

        // 4. Write it out.
        std::fs::create_dir_all(out_dir)?;
        for d in &live_dirs {
            if !d.as_os_str().is_empty() {
                std::fs::create_dir(out_dir.join(d))?;
                rep.dirs += 1;
            }
        }
        let mut first_name: HashMap<Ino, PathBuf> = HashMap::new();
        for (p, ino) in live {
            let dest = out_dir.join(p);
            if let Some(first) = first_name.get(&ino) {
                std::fs::hard_link(first, &dest)?;
            } else {
                let content = data.get(&ino).map(Vec::as_slice).unwrap_or(&[]);
                std::fs::write(&dest, content)?;
                first_name.insert(ino, dest);
            }
            rep.files += 1;
        }
        Ok(rep)
    }
}

/// Write `bytes` at `off`, extending `content` with zeros as needed.
fn put(content: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    let off = off as usize;
    let end = off + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[off..end].copy_from_slice(bytes);
}

/// Read the tree under `dir` (relative name `rel`) into `dirs` and `files`; symlinks and
/// special files are skipped.
fn read_tree(
    dir: &Path,
    rel: &Path,
    dirs: &mut BTreeSet<PathBuf>,
    files: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            dirs.insert(r.clone());
            read_tree(&e.path(), &r, dirs, files)?;
        } else if ft.is_file() {
            files.insert(r, std::fs::read(e.path())?);
        }
    }
    Ok(())
}

impl Io for CrashFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let rel = self.rel(path)?;
        let file = self.inner.create(path)?;
        let mut st = lock(&self.state);
        if !st.recording {
            return Ok(Box::new(CrashFile {
                inner: file,
                ino: None,
                state: self.state.clone(),
            }));
        }
        let ino = match st.names.get(&rel).copied() {
            Some(ino) => {
                st.ops.push(Op::Truncate { ino });
                ino
            }
            None => {
                let ino = st.new_ino(&rel);
                st.names.insert(rel.clone(), ino);
                st.ops.push(Op::Create { path: rel, ino });
                ino
            }
        };
        Ok(Box::new(CrashFile {
            inner: file,
            ino: Some(ino),
            state: self.state.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (rf, rt) = (self.rel(from)?, self.rel(to)?);
        self.inner.rename(from, to)?;
        let mut st = lock(&self.state);
        if st.recording {
            let ino = st.names.remove(&rf);
            match ino {
                Some(i) => st.names.insert(rt.clone(), i),
                None => st.names.remove(&rt),
            };
            st.ops.push(Op::Rename {
                from: rf,
                to: rt,
                ino,
            });
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let rel = self.rel(dir)?;
        let covers = lock(&self.state).ops.len();
        self.inner.sync_dir(dir)?;
        let mut st = lock(&self.state);
        if st.recording {
            st.ops.push(Op::SyncDir { dir: rel, covers });
        }
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let rel = self.rel(dir)?;
        // The directories this call creates, outermost first.
        let mut missing: Vec<PathBuf> = rel
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty() && !self.root.join(a).exists())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        self.inner.create_dir_all(dir)?;
        let mut st = lock(&self.state);
        if st.recording {
            for path in missing {
                st.ops.push(Op::Mkdir { path });
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let rel = self.rel(path)?;
        self.inner.remove_file(path)?;
        let mut st = lock(&self.state);
        if st.recording {
            let ino = st.names.remove(&rel);
            st.ops.push(Op::Remove { path: rel, ino });
        }
        Ok(())
    }

    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
}

/// A file opened through [`CrashFs`]; `ino` is `None` when it was opened before recording.
struct CrashFile {
    inner: Box<dyn WriteFile>,
    ino: Option<Ino>,
    state: Arc<Mutex<State>>,
}

impl WriteFile for CrashFile {
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        let copy = self.ino.map(|_| buf.clone());
        self.inner.write_at(offset, buf)?;
        if let (Some(ino), Some(data)) = (self.ino, copy) {
            let mut st = lock(&self.state);
            if st.recording {
                st.ops.push(Op::Write { ino, offset, data });
            }
        }
        Ok(())
    }

    fn recycle(&mut self) -> Option<Vec<u8>> {
        self.inner.recycle()
    }

    fn sync(&mut self) -> io::Result<()> {
        let covers = lock(&self.state).ops.len();
        self.inner.sync()?;
        if let Some(ino) = self.ino {
            let mut st = lock(&self.state);
            if st.recording {
                st.ops.push(Op::FileSync { ino, covers });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiervault_store::io::PlainIo;

    const SEEDS: u64 = 64;

    fn setup() -> (tempfile::TempDir, PathBuf, CrashFs) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir tmp");
        std::fs::create_dir_all(root.join("dest")).expect("mkdir dest");
        std::fs::write(root.join("old"), b"baseline").expect("write baseline");
        let fs = CrashFs::new(&root, Arc::new(PlainIo::new(false))).expect("CrashFs::new");
        (tmp, root, fs)
    }

    /// Materialise `cut` under every seed; returns what `rel` held in each state.
    fn outcomes(tmp: &Path, fs: &CrashFs, cut: usize, rel: &str) -> Vec<Option<Vec<u8>>> {
        (0..SEEDS)
            .map(|seed| {
                let out = tmp.join(format!("out-{cut}-{seed}"));
                fs.materialize(cut, seed, &out).expect("materialize");
                let got = std::fs::read(out.join(rel)).ok();
                std::fs::remove_dir_all(&out).expect("cleanup");
                got
            })
            .collect()
    }

    fn write(fs: &CrashFs, path: &Path, data: &[u8], sync: bool) {
        let mut f = fs.create(path).expect("create");
        f.write_at(0, data.to_vec()).expect("write");
        if sync {
            f.sync().expect("sync");
        }
    }

    #[test]
    fn unsynced_write_is_sometimes_absent_and_sometimes_torn() {
        let (tmp, root, fs) = setup();
        let data: Vec<u8> = (0..3 * PAGE as usize + 100)
            .map(|i| (i % 251) as u8 + 1)
            .collect();
        write(&fs, &root.join("tmp/f"), &data, false);
        fs.sync_dir(&root.join("tmp")).expect("sync_dir");
        let got = outcomes(tmp.path(), &fs, fs.op_count(), "tmp/f");
        assert!(got.iter().all(Option::is_some), "the name was made durable");
        let contents: Vec<Vec<u8>> = got.into_iter().flatten().collect();
        assert!(
            contents.iter().any(|c| c.is_empty()),
            "an unsynced write should sometimes be lost"
        );
        assert!(
            contents.contains(&data),
            "an unsynced write should sometimes survive"
        );
        assert!(
            contents.iter().any(|c| !c.is_empty() && *c != data),
            "an unsynced write should sometimes be torn"
        );
        for c in &contents {
            assert!(c.len() <= data.len());
            for (i, b) in c.iter().enumerate() {
                assert!(
                    *b == 0 || *b == data[i],
                    "byte {i} neither written nor a hole"
                );
            }
        }
    }

    #[test]
    fn synced_rename_with_dir_sync_is_always_present() {
        let (tmp, root, fs) = setup();
        write(&fs, &root.join("tmp/f"), b"committed", true);
        fs.rename(&root.join("tmp/f"), &root.join("dest/f"))
            .expect("rename");
        fs.sync_dir(&root.join("dest")).expect("sync_dir");
        let n = fs.op_count();
        for got in outcomes(tmp.path(), &fs, n, "dest/f") {
            assert_eq!(got.as_deref(), Some(&b"committed"[..]));
        }
        // Before the directory sync, the rename may or may not have happened.
        let before = outcomes(tmp.path(), &fs, n - 1, "dest/f");
        assert!(
            before.iter().any(Option::is_none),
            "an unsynced rename should sometimes be lost"
        );
        assert!(
            before.iter().any(Option::is_some),
            "an unsynced rename should sometimes persist"
        );
        for got in before.into_iter().flatten() {
            assert_eq!(got, b"committed", "a renamed file holds its synced data");
        }
    }

    #[test]
    fn rename_over_unsynced_source_dir_keeps_the_file_somewhere() {
        let (tmp, root, fs) = setup();
        write(&fs, &root.join("tmp/f"), b"x", true);
        fs.sync_dir(&root.join("tmp")).expect("sync tmp");
        fs.rename(&root.join("tmp/f"), &root.join("dest/f"))
            .expect("rename");
        let n = fs.op_count();
        for seed in 0..SEEDS {
            let out = tmp.path().join(format!("o{seed}"));
            fs.materialize(n, seed, &out).expect("materialize");
            let a = out.join("tmp/f").exists();
            let b = out.join("dest/f").exists();
            assert!(a || b, "seed {seed}: the file vanished from both names");
        }
    }

    #[test]
    fn files_in_an_unsynced_new_directory_may_be_lost() {
        let (tmp, root, fs) = setup();
        fs.create_dir_all(&root.join("dest/ab/cd")).expect("mkdir");
        write(&fs, &root.join("dest/ab/cd/f"), b"x", true);
        fs.sync_dir(&root.join("dest/ab/cd")).expect("sync leaf");
        let n = fs.op_count();
        let got = outcomes(tmp.path(), &fs, n, "dest/ab/cd/f");
        assert!(
            got.iter().any(Option::is_none),
            "parents never synced: the file may be lost"
        );
        assert!(got.iter().any(Option::is_some));
        // Syncing each parent makes the whole path durable.
        fs.sync_dir(&root.join("dest")).expect("sync dest");
        fs.sync_dir(&root.join("dest/ab")).expect("sync ab");
        let n = fs.op_count();
        for got in outcomes(tmp.path(), &fs, n, "dest/ab/cd/f") {
            assert_eq!(got.as_deref(), Some(&b"x"[..]));
        }
    }

    #[test]
    fn removals_and_truncations_follow_syncs() {
        let (tmp, root, fs) = setup();
        fs.remove_file(&root.join("old")).expect("remove");
        let n = fs.op_count();
        let got = outcomes(tmp.path(), &fs, n, "old");
        assert!(got.iter().any(Option::is_none) && got.iter().any(Option::is_some));
        for g in got.into_iter().flatten() {
            assert_eq!(g, b"baseline", "a baseline file is durable");
        }
        fs.sync_dir(&root).expect("sync root");
        assert!(outcomes(tmp.path(), &fs, fs.op_count(), "old")
            .iter()
            .all(Option::is_none));

        write(&fs, &root.join("tmp/t"), b"first version", true);
        fs.sync_dir(&root.join("tmp")).expect("sync tmp");
        write(&fs, &root.join("tmp/t"), b"second", false);
        let n = fs.op_count();
        let got: Vec<Vec<u8>> = outcomes(tmp.path(), &fs, n, "tmp/t")
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got.len() as u64, SEEDS, "the name was durable");
        assert!(
            got.iter().any(|g| g == b"first version"),
            "truncate and write may both be lost"
        );
        assert!(
            got.iter().any(|g| g == b"second"),
            "truncate and write may both persist"
        );
        write(&fs, &root.join("tmp/t"), b"third", true);
        for g in outcomes(tmp.path(), &fs, fs.op_count(), "tmp/t") {
            assert_eq!(g.as_deref(), Some(&b"third"[..]));
        }
    }

    #[test]
    fn marks_count_ops_and_states_are_reproducible() {
        let (tmp, root, fs) = setup();
        assert_eq!(fs.mark("start"), 0);
        write(&fs, &root.join("tmp/a"), &[7u8; 10_000], false);
        assert_eq!(fs.mark("written"), 2);
        assert_eq!(
            fs.marks(),
            vec![(0, "start".to_string()), (2, "written".to_string())]
        );
        let kinds: Vec<OpKind> = fs.ops().iter().map(|o| o.kind).collect();
        assert_eq!(kinds, vec![OpKind::Create, OpKind::Write]);
        let a = outcomes(tmp.path(), &fs, 2, "tmp/a");
        let b = outcomes(tmp.path(), &fs, 2, "tmp/a");
        assert_eq!(a, b, "same cut and seed, same state");
        // Cut 0 is the baseline.
        let out = tmp.path().join("zero");
        fs.materialize(0, 1, &out).expect("materialize");
        assert_eq!(
            std::fs::read(out.join("old")).expect("baseline file"),
            b"baseline"
        );
        assert!(!out.join("tmp/a").exists());
        assert!(fs.materialize(3, 1, &tmp.path().join("past")).is_err());
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let (tmp, _root, fs) = setup();
        assert!(fs.create(&tmp.path().join("elsewhere")).is_err());
    }
}
