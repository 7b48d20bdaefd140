//! Restore: the main thread recreates directories, links and special files and creates each
//! regular file at its full size (so holes stay holes); workers read, authenticate and write
//! the chunks in parallel and set each file's metadata once its last chunk is written.
//! Directory metadata is applied last, deepest first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::browse::{self, Found};
use crate::codec::Decoder;
use crate::error::{Error, IoContext, Result};
use crate::fsmeta;
use crate::io::{Aligned, ALIGN};
use crate::snapshot::Snapshot;
use crate::tree::{ChunkRef, Entry, NodeType, Tree};
use crate::vault::Vault;

/// At most this many chunks per worker job, so one large file spreads over all workers.
const JOB_CHUNKS: usize = 64;
/// Jobs travel to a worker in batches of up to this many (or `BATCH_BYTES` of content), so
/// a tree of small files costs a few thousand channel hand-offs and wake-ups, not one per file.
const BATCH_JOBS: usize = 32;
const BATCH_BYTES: u64 = 4 << 20;

pub enum Target {
    /// Restore under this directory.
    Dir(PathBuf),
    /// Restore every backed-up path where it came from.
    InPlace,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub overwrite: bool,
    pub threads: usize,
}

#[derive(Default, Debug)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Files whose content could not be restored intact: (path, reason).
    pub damaged: Vec<(PathBuf, String)>,
    /// Entries that could not be recreated (device nodes without privilege, …).
    pub warnings: Vec<(PathBuf, String)>,
}

/// One regular file. The worker that first needs it creates it (file creation is most of
/// the cost of restoring many small files, so it must not serialise on the planner thread).
struct FileTask {
    file: std::sync::OnceLock<std::result::Result<File, String>>,
    path: PathBuf,
    entry: Entry,
    remaining: AtomicUsize,
    /// Where the last written byte ends: the file needs its size set only when this falls
    /// short of it (a hole at the end).
    written_end: AtomicU64,
    /// The mode to create it with, and whether that is its final mode (`Creds::create_mode`).
    mode: (u32, bool),
    /// A second descriptor with `O_DIRECT` for large files (see [`DIRECT_MIN`]), opened by
    /// the first writer; `None` for small files and where the file system refuses.
    direct: std::sync::OnceLock<Option<File>>,
    /// Set when a direct write was refused after all.
    no_direct: std::sync::atomic::AtomicBool,
    /// Writers of one file take turns: two threads in `pwrite` on one ext4 file spin on its
    /// inode lock (measured: a third of the CPU), while a user-space lock lets one decode
    /// while the other writes.
    write_turn: Mutex<()>,
}

impl FileTask {
    /// The `O_DIRECT` descriptor to write aligned ranges with, if this file uses one (the
    /// file exists: the buffered descriptor created it).
    fn direct(&self) -> Option<&File> {
        if self.no_direct.load(Ordering::Relaxed) {
            return None;
        }
        self.direct
            .get_or_init(|| {
                if self.entry.size.unwrap_or(0) < DIRECT_MIN {
                    return None;
                }
                crate::io::direct::open_write(&self.path).unwrap_or_else(|e| {
                    tracing::debug!("{}: no O_DIRECT descriptor ({e})", self.path.display());
                    None
                })
            })
            .as_ref()
    }
}

struct Job {
    task: Arc<FileTask>,
    chunks: Vec<ChunkRef>,
}

pub fn restore(
    vault: &Vault,
    snap: &Snapshot,
    subpath: Option<&[u8]>,
    target: &Target,
    opts: &Options,
    progress: &Progress,
) -> Result<Report> {
    let sub = browse::components(subpath.unwrap_or(b""));
    // Each (entry, destination) pair to restore.
    let mut roots: Vec<(Entry, PathBuf)> = Vec::new();
    let root_tree = vault.read_tree(&snap.body.root)?;
    match target {
        Target::Dir(t) => {
            check_target(t, opts.overwrite)?;
            std::fs::create_dir_all(t).ctx("creating restore target", t)?;
            match browse::find(vault, snap, subpath.unwrap_or(b""))? {
                Found::Root(tree) => roots.extend(tree.entries.into_iter().map(|e| {
                    let d = t.join(OsStr::from_bytes(&e.name));
                    (e, d)
                })),
                Found::Entry(e) => {
                    let mut d = t.clone();
                    for c in &sub {
                        d.push(OsStr::from_bytes(c));
                    }
                    if let Some(parent) = d.parent() {
                        std::fs::create_dir_all(parent).ctx("creating", parent)?;
                    }
                    roots.push((*e, d));
                }
            }
        }
        Target::InPlace => {
            for (e, src) in root_tree
                .entries
                .iter()
                .zip(in_place_paths(snap, &root_tree))
            {
                if !sub.is_empty() && sub[0] != e.name.as_slice() {
                    continue;
                }
                let Some(src) = src else { continue };
                if sub.len() <= 1 {
                    roots.push((e.clone(), src));
                } else if let Found::Entry(found) =
                    browse::find(vault, snap, subpath.unwrap_or(b""))?
                {
                    let mut d = src;
                    for c in &sub[1..] {
                        d.push(OsStr::from_bytes(c));
                    }
                    roots.push((*found, d));
                }
            }
            if roots.is_empty() {
                return Err(Error::NoSuchPath {
                    snapshot: snap.short_id(),
                    path: String::from_utf8_lossy(subpath.unwrap_or(b"")).into_owned(),
                });
            }
        }
    }

    let threads = opts.threads.max(1);
    // Files of one directory are created by one worker ("lane"): two threads creating files in
    // one ext4 directory contend on its lock and the inode allocator, which was measured to
    // cost more than it gains. Later pieces of large files go to whichever worker is free.
    let (own_tx, own_rx): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| crossbeam_channel::bounded::<Vec<Job>>(4))
        .unzip();
    let (any_tx, any_rx) = crossbeam_channel::bounded::<Vec<Job>>(threads * 4);
    let damaged = Mutex::new(Vec::new());
    let meta_warnings = Mutex::new(Vec::new());
    let creds = fsmeta::Creds::current();
    let as_root = creds.as_root;
    let mut report = Report::default();
    let mut planner = Planner {
        vault,
        own: own_tx,
        any: any_tx,
        batch: Vec::new(),
        batch_bytes: 0,
        lane: 0,
        next_lane: 0,
        creds,
        as_root,
        overwrite: opts.overwrite || matches!(target, Target::InPlace),
        dirs: Vec::new(),
        links: HashMap::new(),
        hard_links: Vec::new(),
        report: &mut report,
        progress,
    };
    std::thread::scope(|s| -> Result<()> {
        for (i, own) in own_rx.into_iter().enumerate() {
            let any = any_rx.clone();
            let damaged = &damaged;
            let meta_warnings = &meta_warnings;
            std::thread::Builder::new()
                .name(format!("restore-{i}"))
                .spawn_scoped(s, move || {
                    let mut dec = Decoder::new();
                    let mut buf = Vec::new();
                    let mut run = Run::new();
                    let (mut own_open, mut any_open) = (true, true);
                    while own_open || any_open {
                        let (from_own, got) = if own_open && any_open {
                            crossbeam_channel::select! {
                                recv(own) -> r => (true, r),
                                recv(any) -> r => (false, r),
                            }
                        } else if own_open {
                            (true, own.recv())
                        } else {
                            (false, any.recv())
                        };
                        let Ok(batch) = got else {
                            if from_own {
                                own_open = false;
                            } else {
                                any_open = false;
                            }
                            continue;
                        };
                        for job in batch {
                            if let Err(e) =
                                write_job(vault, &job, &mut dec, &mut buf, &mut run, progress)
                            {
                                damaged
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((job.task.path.clone(), e.to_string()));
                            }
                            if job.task.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                finish_file(&job.task, &creds, meta_warnings);
                            }
                        }
                    }
                })
                .expect("spawning a restore worker");
        }
        drop(any_rx);
        let res = (|| {
            for (e, dest) in &roots {
                planner.restore_entry(e, dest)?;
            }
            planner.flush()
        })();
        // Closing the queues lets the workers finish.
        planner.own.clear();
        drop(std::mem::replace(
            &mut planner.any,
            crossbeam_channel::bounded(0).0,
        ));
        res
    })?;
    let hard_links = std::mem::take(&mut planner.hard_links);
    let dirs = std::mem::take(&mut planner.dirs);
    drop(planner);
    for (first, dest) in hard_links {
        std::fs::hard_link(&first, &dest).ctx("creating hard link", &dest)?;
    }
    // Directories last, deepest first, so their times are not moved by their children.
    for (path, e) in dirs.iter().rev() {
        if let Err(err) = fsmeta::apply_metadata(path, e, as_root) {
            report
                .warnings
                .push((path.clone(), format!("setting metadata: {err}")));
        }
    }
    report.warnings.extend(
        meta_warnings
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let mut d = damaged.into_inner().unwrap_or_else(|p| p.into_inner());
    d.sort();
    d.dedup_by(|a, b| a.0 == b.0);
    report.damaged = d;
    Ok(report)
}

/// Where each root entry was backed up from (for --in-place).
fn in_place_paths(snap: &Snapshot, root: &Tree) -> Vec<Option<PathBuf>> {
    root.entries
        .iter()
        .map(|e| {
            snap.body
                .paths
                .iter()
                .map(|p| PathBuf::from(OsStr::from_bytes(p)))
                .find(|p| p.file_name().map(|n| n.as_bytes()) == Some(e.name.as_slice()))
                .filter(|p| p.is_absolute())
        })
        .collect()
}

fn check_target(t: &Path, overwrite: bool) -> Result<()> {
    match std::fs::read_dir(t) {
        Ok(mut rd) => {
            if rd.next().is_some() && !overwrite {
                return Err(Error::TargetNotEmpty {
                    path: t.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("opening restore target", t, e)),
    }
}

struct Planner<'a, 'v> {
    vault: &'v Vault,
    own: Vec<crossbeam_channel::Sender<Vec<Job>>>,
    any: crossbeam_channel::Sender<Vec<Job>>,
    /// First jobs of files of the current lane, not yet handed over.
    batch: Vec<Job>,
    batch_bytes: u64,
    /// The worker creating the files of the directory being planned.
    lane: usize,
    next_lane: usize,
    creds: fsmeta::Creds,
    as_root: bool,
    overwrite: bool,
    dirs: Vec<(PathBuf, Entry)>,
    links: HashMap<(u64, u64), PathBuf>,
    /// (existing name, new name) pairs to link after the workers are done.
    hard_links: Vec<(PathBuf, PathBuf)>,
    report: &'a mut Report,
    progress: &'a Progress,
}

impl Planner<'_, '_> {
    fn warn(&mut self, path: &Path, msg: impl std::fmt::Display) {
        self.report
            .warnings
            .push((path.to_path_buf(), msg.to_string()));
    }

    /// Remove what is in the way of `dest`, unless it is a directory we will reuse.
    fn clear(&self, dest: &Path, keep_dir: bool) -> Result<()> {
        match std::fs::symlink_metadata(dest) {
            Ok(md) if md.is_dir() => {
                if !keep_dir {
                    std::fs::remove_dir_all(dest).ctx("replacing", dest)?;
                }
            }
            Ok(_) => std::fs::remove_file(dest).ctx("replacing", dest)?,
            Err(_) => {}
        }
        Ok(())
    }

    fn restore_entry(&mut self, e: &Entry, dest: &Path) -> Result<()> {
        if self.overwrite {
            self.clear(dest, e.kind == NodeType::Dir)?;
        }
        match e.kind {
            NodeType::Dir => {
                match std::fs::create_dir(dest) {
                    Ok(()) => {}
                    Err(err)
                        if err.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                    Err(err) => return Err(Error::io("creating directory", dest, err)),
                }
                self.report.dirs += 1;
                if !e.xattrs.is_empty() {
                    if let Err(err) = fsmeta::set_xattrs(dest, &e.xattrs) {
                        self.warn(dest, format!("setting xattrs: {err}"));
                    }
                }
                self.dirs.push((dest.to_path_buf(), e.clone()));
                if let Some(id) = e.subtree {
                    let tree = self.vault.read_tree(&id)?;
                    let outer = self.lane;
                    self.flush()?;
                    self.lane = self.next_lane % self.own.len().max(1);
                    self.next_lane += 1;
                    for c in &tree.entries {
                        self.restore_entry(c, &dest.join(OsStr::from_bytes(&c.name)))?;
                    }
                    self.flush()?;
                    self.lane = outer;
                }
            }
            NodeType::File => self.restore_file(e, dest)?,
            NodeType::Symlink => {
                let target: &[u8] = e.target.as_ref().map_or(&[], |t| t.as_slice());
                std::os::unix::fs::symlink(OsStr::from_bytes(target), dest)
                    .ctx("creating symlink", dest)?;
                self.finish_simple(e, dest);
            }
            NodeType::Fifo | NodeType::CharDev | NodeType::BlockDev => {
                use rustix::fs::{mknodat, FileType, Mode, CWD};
                let ft = match e.kind {
                    NodeType::Fifo => FileType::Fifo,
                    NodeType::CharDev => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                match mknodat(
                    CWD,
                    dest,
                    ft,
                    Mode::from_raw_mode(e.mode),
                    e.rdev.unwrap_or(0),
                ) {
                    Ok(()) => self.finish_simple(e, dest),
                    Err(err) => self.warn(dest, format!("creating {}: {err}", e.kind.name())),
                }
            }
            NodeType::Socket => self.warn(dest, "sockets are not restored"),
        }
        Ok(())
    }

    fn finish_simple(&mut self, e: &Entry, dest: &Path) {
        if let Err(err) = fsmeta::set_xattrs(dest, &e.xattrs)
            .and_then(|_| fsmeta::apply_metadata(dest, e, self.as_root))
        {
            self.warn(dest, format!("setting metadata: {err}"));
        }
    }

    fn restore_file(&mut self, e: &Entry, dest: &Path) -> Result<()> {
        if e.nlink > 1 {
            if let Some(first) = self.links.get(&(e.dev, e.ino)) {
                // Linked once the workers have created the first name.
                self.hard_links.push((first.clone(), dest.to_path_buf()));
                self.report.files += 1;
                return Ok(());
            }
            self.links.insert((e.dev, e.ino), dest.to_path_buf());
        }
        let size = e.size.unwrap_or(0);
        let chunks = match &e.content {
            Some(c) => self.vault.chunk_list(c)?,
            None => Vec::new(),
        };
        self.report.files += 1;
        self.report.bytes += size;
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes_total.fetch_add(size, Ordering::Relaxed);
        let groups: Vec<Vec<ChunkRef>> = chunks
            .chunks(JOB_CHUNKS)
            .map(<[ChunkRef]>::to_vec)
            .collect();
        let mut groups = groups;
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        let task = Arc::new(FileTask {
            file: std::sync::OnceLock::new(),
            path: dest.to_path_buf(),
            entry: e.clone(),
            remaining: AtomicUsize::new(groups.len()),
            written_end: AtomicU64::new(0),
            mode: self.creds.create_mode(e),
            direct: std::sync::OnceLock::new(),
            no_direct: std::sync::atomic::AtomicBool::new(false),
            write_turn: Mutex::new(()),
        });
        for (i, g) in groups.into_iter().enumerate() {
            let bytes: u64 = g.iter().map(|c| c.2 as u64).sum();
            let job = Job {
                task: task.clone(),
                chunks: g,
            };
            if i == 0 {
                self.batch.push(job);
                self.batch_bytes += bytes;
                if self.batch.len() >= BATCH_JOBS || self.batch_bytes >= BATCH_BYTES {
                    self.flush()?;
                }
            } else if self.any.send(vec![job]).is_err() {
                return Err(workers_stopped());
            }
        }
        Ok(())
    }

    /// Hand the batch of first jobs to the current lane's worker.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        let sent = match self.own.get(self.lane) {
            Some(lane) => lane.send(batch).is_ok(),
            None => self.any.send(batch).is_ok(),
        };
        if sent {
            Ok(())
        } else {
            Err(workers_stopped())
        }
    }
}

fn workers_stopped() -> Error {
    Error::Invalid("restore workers stopped".into())
}

/// Files at least this large write the aligned middle of each run with `O_DIRECT`: restoring
/// a disk image then neither floods the page cache nor pays for its pages (on the VMs we
/// measure on, buffered writes into fresh page-cache pages ran at a third of the speed of
/// direct ones), and what was restored is on the disk when the restore ends. Smaller files
/// stay buffered: a direct write waits for the disk.
const DIRECT_MIN: u64 = 8 << 20;

/// A run is written out once it holds this much.
const RUN_MAX: usize = 8 << 20;

/// Contiguous decoded bytes waiting to be written, placed so that the byte for file offset
/// `at + i` lies at an address congruent to it modulo [`ALIGN`]: the aligned middle of a run
/// goes to an `O_DIRECT` descriptor straight from the buffer.
struct Run {
    at: u64,
    len: usize,
    buf: Aligned,
}

impl Run {
    fn new() -> Run {
        Run {
            at: 0,
            len: 0,
            buf: Aligned::new(0),
        }
    }

    fn pad(&self) -> usize {
        (self.at % ALIGN as u64) as usize
    }

    fn end(&self) -> u64 {
        self.at + self.len as u64
    }

    /// The file range `[from, to)`, which must lie within the run.
    fn range(&self, from: u64, to: u64) -> &[u8] {
        let p = self.pad() + (from - self.at) as usize;
        &self.buf.get()[p..p + (to - from) as usize]
    }

    /// Start an empty run at file offset `at`.
    fn start(&mut self, at: u64) {
        self.at = at;
        self.len = 0;
    }

    fn push(&mut self, data: &[u8]) {
        let (p, need) = (self.pad(), self.pad() + self.len + data.len());
        if need > self.buf.get().len() {
            let mut bigger = Aligned::new(need.max(RUN_MAX + ALIGN).next_multiple_of(ALIGN));
            if self.len > 0 {
                bigger.get_mut()[p..p + self.len].copy_from_slice(&self.buf.get()[p..p + self.len]);
            }
            self.buf = bigger;
        }
        let at = p + self.len;
        self.buf.get_mut()[at..at + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    /// Drop the bytes before `from` (an aligned offset within the run).
    fn keep_from(&mut self, from: u64) {
        let (p, skip) = (self.pad(), (from - self.at) as usize);
        self.buf.get_mut().copy_within(p + skip..p + self.len, 0);
        self.len -= skip;
        self.at = from;
    }
}

/// Tests only: direct writes of files under this directory are refused with EINVAL, as by a
/// file system that accepts `O_DIRECT` at open and not at write (none here does); counted in
/// [`REFUSED_DIRECT`].
#[cfg(test)]
static REFUSE_DIRECT_UNDER: Mutex<Option<PathBuf>> = Mutex::new(None);
#[cfg(test)]
static REFUSED_DIRECT: AtomicU64 = AtomicU64::new(0);

fn write_direct(task: &FileTask, d: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    #[cfg(test)]
    if REFUSE_DIRECT_UNDER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|p| task.path.starts_with(p))
    {
        REFUSED_DIRECT.fetch_add(1, Ordering::Relaxed);
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    #[cfg(not(test))]
    let _ = task;
    d.write_all_at(buf, at)
}

/// Write out `run` (all of it, or with `all` false, up to its last aligned offset when part
/// goes direct, keeping the rest for the bytes that follow).
fn flush_run(job: &Job, file: &File, run: &mut Run, all: bool) -> Result<()> {
    if run.len == 0 {
        return Ok(());
    }
    let task = &job.task;
    let _turn = task.write_turn.lock().unwrap_or_else(|p| p.into_inner());
    let (start, end) = (run.at, run.end());
    let (a, b) = (
        start.next_multiple_of(ALIGN as u64),
        end / ALIGN as u64 * ALIGN as u64,
    );
    let direct = task.direct().filter(|_| b > a);
    let wrote_to = match direct {
        Some(d) => {
            if a > start {
                file.write_all_at(run.range(start, a), start)
                    .ctx("writing", &task.path)?;
            }
            match write_direct(task, d, run.range(a, b), a) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Refused despite the open: this file goes buffered from now on.
                    task.no_direct.store(true, Ordering::Relaxed);
                    file.write_all_at(run.range(a, b), a)
                        .ctx("writing", &task.path)?;
                }
                Err(e) => return Err(Error::io("writing", &task.path, e)),
            }
            if all && end > b {
                file.write_all_at(run.range(b, end), b)
                    .ctx("writing", &task.path)?;
            }
            if all {
                end
            } else {
                b
            }
        }
        None => {
            file.write_all_at(run.range(start, end), start)
                .ctx("writing", &task.path)?;
            end
        }
    };
    task.written_end.fetch_max(wrote_to, Ordering::Relaxed);
    if wrote_to == end {
        run.start(end);
    } else {
        run.keep_from(wrote_to);
    }
    Ok(())
}

fn write_job(
    vault: &Vault,
    job: &Job,
    dec: &mut Decoder,
    buf: &mut Vec<u8>,
    run: &mut Run,
    progress: &Progress,
) -> Result<()> {
    let file = match job.task.file.get_or_init(|| create(&job.task)) {
        Ok(f) => f,
        Err(e) => {
            return Err(Error::io(
                "creating file",
                &job.task.path,
                std::io::Error::other(e.clone()),
            ));
        }
    };
    run.start(job.chunks.first().map_or(0, |c| c.0));
    let mut first_err = None;
    for c in &job.chunks {
        let res = (|| -> Result<()> {
            let plain = {
                let loc = vault.index().get(&c.1)?.ok_or(Error::MissingBlob(c.1))?;
                vault.read_stored(&c.1, &loc, buf)?;
                dec.decode(vault.keys(), &c.1, buf)
                    .map_err(|reason| Error::CorruptBlob {
                        id: c.1,
                        pack: vault.index().pack(loc.pack).id.hex(),
                        reason,
                    })?
            };
            if plain.len() != c.2 as usize {
                return Err(Error::CorruptTree {
                    id: c.1,
                    reason: format!(
                        "chunk is {} bytes, the file's list says {}",
                        plain.len(),
                        c.2
                    ),
                });
            }
            if run.end() != c.0 {
                // A hole (or a failed chunk) in between: write what is pending first.
                flush_run(job, file, run, true)?;
                run.start(c.0);
            }
            run.push(plain);
            progress.bytes_done.fetch_add(c.2 as u64, Ordering::Relaxed);
            Ok(())
        })();
        if let Err(e) = res {
            // Keep going: the rest of the file is still worth restoring.
            first_err.get_or_insert(e);
        }
        if run.len >= RUN_MAX {
            if let Err(e) = flush_run(job, file, run, false) {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Err(e) = flush_run(job, file, run, true) {
        first_err.get_or_insert(e);
    }
    first_err.map_or(Ok(()), Err)
}

fn create(task: &FileTask) -> std::result::Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Not sized up front: writing into a truncated-up file makes the kernel zero the rest of
    // every partly written page. Ranges never written stay holes; the size is set at the end.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(task.mode.0)
        .open(&task.path)
        .map_err(|e| e.to_string())
}

fn finish_file(task: &FileTask, creds: &fsmeta::Creds, problems: &Mutex<Vec<(PathBuf, String)>>) {
    let e = &task.entry;
    let size = e.size.unwrap_or(0);
    let res = match task.file.get_or_init(|| create(task)) {
        Ok(f) => {
            let sized = if task.written_end.load(Ordering::Relaxed) == size {
                Ok(())
            } else {
                f.set_len(size)
            };
            sized
                .and_then(|_| fsmeta::set_xattrs(&task.path, &e.xattrs))
                .and_then(|_| fsmeta::apply_metadata_fd(f, e, creds, task.mode.1))
        }
        Err(msg) => Err(std::io::Error::other(msg.clone())),
    };
    if let Err(err) = res {
        problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((task.path.clone(), format!("setting metadata: {err}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{REFUSED_DIRECT, REFUSE_DIRECT_UNDER};
    use crate::backup::tests::{new_vault, opts, random_bytes, restore_undamaged, write};
    use crate::backup::{backup, Progress, Source};

    /// A large file's direct write refused after `O_DIRECT` was accepted at open: the run goes
    /// out through the buffered descriptor, the file stops using direct writes, and it
    /// restores exactly (a hole in the middle included).
    #[test]
    fn a_direct_write_refused_after_open_goes_buffered_and_restores_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = new_vault(&dir.path().join("vault"));
        let path = dir.path().join("src/big");
        let head = random_bytes(12 << 20, 1);
        let tail = random_bytes((5 << 20) + 1234, 2);
        write(&path, &head);
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            f.write_all_at(&tail, (16 << 20) as u64)
                .expect("write tail");
        }
        let snap = backup(
            &vault,
            Source::Paths(vec![dir.path().join("src")]),
            &opts(2),
            &Progress::default(),
        )
        .expect("backup");
        let target = dir.path().join("restored");
        std::fs::create_dir(&target).expect("mkdir");
        *REFUSE_DIRECT_UNDER.lock().expect("lock") = Some(target.clone());
        restore_undamaged(&vault, &snap, &target);
        *REFUSE_DIRECT_UNDER.lock().expect("lock") = None;
        assert_eq!(
            REFUSED_DIRECT.load(Ordering::Relaxed),
            1,
            "one refusal, then the file is written buffered"
        );
        let got = std::fs::read(target.join("src/big")).expect("read restored");
        let mut want = head;
        want.resize(16 << 20, 0);
        want.extend_from_slice(&tail);
        assert_eq!(got.len(), want.len(), "length");
        assert!(got == want, "content differs");
    }
}
