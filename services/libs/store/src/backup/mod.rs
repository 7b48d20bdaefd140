//! Backup: walk → segment jobs → workers (read, chunk, hash, dedup, compress, seal, pack) →
//! trees → reference list → durable packs and index → snapshot (docs/format.md section 9).
//!
//! Tree backups can be filtered ([`Filter`]) and any backup can be cancelled
//! ([`Options::cancel`]).

mod assemble;
mod filter;
mod scan;

pub use filter::Filter;
pub use scan::Prefetcher;
mod walk;
mod worker;

#[cfg(test)]
pub(crate) mod tests;

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_bytes::ByteBuf;

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::io::write_atomic;
use crate::snapshot::{self, Body, Header, Skipped, Snapshot};
use crate::tree::{Entry, NodeType};
use crate::vault::Vault;
use crate::writer::Writer;

use assemble::{Assembled, Assembler, Node};
use walk::Walker;
use worker::{Chunking, Done, Input, Job, Worker, SEGMENT};

pub use walk::segments;

/// Live counters for a progress display.
#[derive(Default, Debug)]
pub struct Progress {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub bytes_seen: AtomicU64,
    pub bytes_reused: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Set when the walk is over, so `bytes_seen` is the total.
    pub walk_done: AtomicU64,
    /// Entries the [`Filter`] left out (an excluded directory counts once: nothing below it
    /// is looked at). Not recorded in the snapshot.
    pub excluded: AtomicU64,
    /// Set when the backup commits: the plaintext bytes of the blobs it added, before
    /// compression (with the summary's bytes and stored bytes this gives the dedup and
    /// compression ratios). Not recorded in the snapshot.
    pub new_plain_bytes: AtomicU64,
}

/// What to back up.
pub enum Source {
    Paths(Vec<PathBuf>),
    Stream {
        name: String,
        reader: Box<dyn Read + Send>,
        expect: Option<u64>,
    },
    Image(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub force_reread: bool,
    pub hostname: String,
    pub username: String,
    pub threads: usize,
    /// Which entries below the roots of a [`Source::Paths`] backup are left out (default:
    /// none). A stream or image backup with a non-empty filter is refused
    /// ([`Error::Invalid`]).
    pub filter: Filter,
    /// Set it to abandon the backup: [`backup`] then returns [`Error::Cancelled`] promptly
    /// and writes no snapshot.
    ///
    /// The walk looks at the flag before each entry (and while waiting for a directory
    /// listing), the workers between reads of at most 1 MiB and between chunks, the tree
    /// building between entries, and once more before the snapshot is committed; a flag set
    /// after that last look is too late and the snapshot is returned. A stream source is
    /// looked at between 16 MiB segments, so a reader blocked on its input delays the cancel
    /// until it returns.
    ///
    /// What the backup had stored by then is kept: the packs being filled are completed and
    /// made durable and everything is indexed (as a later open would adopt the packs of a
    /// crashed backup), so the next backup of the same data stores only what is still
    /// missing. Those blobs belong to no snapshot until one references them; garbage
    /// collection removes them otherwise. Every thread the backup started has been joined
    /// when it returns.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            force_reread: false,
            hostname: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            username: user_name(rustix::process::getuid().as_raw()),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            filter: Filter::default(),
            cancel: None,
        }
    }
}

/// The caller's cancel flag, if any.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cancel<'a>(Option<&'a AtomicBool>);

impl Cancel<'_> {
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// `Err(Cancelled)` once the flag is set.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The name of `uid` from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map_or_else(|| uid.to_string(), |f| f[0].to_string())
}

/// Back up `source` into a new snapshot. Skipped files are listed in the snapshot.
pub fn backup(
    vault: &Vault,
    source: Source,
    opts: &Options,
    progress: &Progress,
) -> Result<Snapshot> {
    backup_prescanned(vault, source, opts, progress, None)
}

/// Start listing the directories of `source` before the vault is open (opening derives the
/// key from the passphrase, which takes about half a second): pass the result to
/// [`backup_prescanned`]. Lists everything: with a filter, use [`prescan_filtered`].
pub fn prescan(source: &Source) -> Option<Prefetcher> {
    prescan_filtered(source, &Filter::default())
}

/// As [`prescan`], listing only what `filter` keeps (pass the same filter in
/// [`Options::filter`]; a prefetcher made with another filter is not used).
pub fn prescan_filtered(source: &Source, filter: &Filter) -> Option<Prefetcher> {
    let Source::Paths(p) = source else {
        return None;
    };
    let (abs, _) = root_names(p).ok()?;
    let scan = Prefetcher::with_filter(SCANNERS, filter.clone());
    for a in abs.iter().filter(|a| a.is_dir()) {
        scan.request(a);
    }
    Some(scan)
}

const SCANNERS: usize = 2;

/// As [`backup`], with directory listings already under way.
pub fn backup_prescanned(
    vault: &Vault,
    source: Source,
    opts: &Options,
    progress: &Progress,
    scan: Option<Prefetcher>,
) -> Result<Snapshot> {
    let started = Instant::now();
    let time_ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let cfg = vault.config();
    let cancel = Cancel(opts.cancel.as_deref());
    if !opts.filter.is_empty() && !matches!(source, Source::Paths(_)) {
        return Err(Error::Invalid(
            "include/exclude patterns apply to file trees only, not to a stream or image backup"
                .into(),
        ));
    }
    let (kind, image, paths, names) = match &source {
        Source::Paths(p) => {
            let (abs, names) = root_names(p)?;
            ("tree", false, abs, names)
        }
        Source::Image(p) => {
            let (abs, names) = root_names(std::slice::from_ref(p))?;
            ("stream", true, abs, names)
        }
        Source::Stream { name, .. } => {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Error::Invalid(format!(
                    "stream name {name:?} must be a plain file name"
                )));
            }
            (
                "stream",
                false,
                vec![PathBuf::from(name)],
                vec![name.as_bytes().to_vec()],
            )
        }
    };
    let path_bytes: Vec<ByteBuf> = paths
        .iter()
        .map(|p| ByteBuf::from(p.as_os_str().as_bytes().to_vec()))
        .collect();
    let parent = match &source {
        Source::Stream { .. } => None,
        _ if opts.force_reread => None,
        _ => find_parent(vault, &path_bytes)?,
    };
    let parent_root = match &parent {
        Some(p) => vault.read_tree(&p.body.root).ok(),
        None => None,
    };
    let chunking = if image {
        Chunking::Fixed(cfg.image_chunker.fixed)
    } else {
        Chunking::Cdc(cfg.chunker)
    };

    // A prefetcher listing by other rules would hand the walk excluded entries.
    let scan = scan
        .filter(|s| *s.filter() == opts.filter)
        .unwrap_or_else(|| Prefetcher::with_filter(SCANNERS, opts.filter.clone()));
    cancel.check()?;
    let writer = Writer::new(vault);
    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Vec<Job>>(threads * 2);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Vec<Done>>();

    let outcome = std::thread::scope(|s| -> Result<(Assembled, Vec<Skipped>)> {
        let mut handles = Vec::new();
        for i in 0..threads {
            let rx = job_rx.clone();
            let tx = done_tx.clone();
            let writer = &writer;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("backup-{i}"))
                    .spawn_scoped(s, move || -> Result<()> {
                        let mut w = Worker {
                            writer,
                            chunking,
                            progress,
                            sink: writer.sink()?,
                            buf: Vec::new(),
                            cancel,
                        };
                        'batches: for batch in rx {
                            let mut done = Vec::with_capacity(batch.len());
                            for job in batch {
                                let (slot, seg) = (job.slot, job.seg);
                                let result = match w.run(job) {
                                    Ok(r) => r,
                                    // Stop reading; the queued jobs are dropped with `rx`
                                    // and the pack being filled is completed below.
                                    Err(Error::Cancelled) => break 'batches,
                                    Err(e) => return Err(e),
                                };
                                done.push(Done { slot, seg, result });
                            }
                            if tx.send(done).is_err() {
                                break;
                            }
                        }
                        writer.finish_sink(&mut w.sink)
                    })
                    .expect("spawning a backup worker"),
            );
        }
        drop(job_rx);
        drop(done_tx);

        let asm = Assembler::new(&writer, vault, done_rx, cancel)?;
        let mut walker = Walker::new(
            scan,
            vault,
            job_tx,
            progress,
            opts.force_reread,
            cancel,
            asm,
        );
        let walked = (|| -> Result<Vec<Node>> {
            let mut roots = Vec::new();
            match source {
                Source::Image(_) => {
                    let pe = parent_root.as_ref().and_then(|t| t.find(&names[0]));
                    roots.extend(walker.visit_image(&paths[0], &names[0], pe)?);
                }
                Source::Paths(_) => {
                    for (p, n) in paths.iter().zip(&names) {
                        let pe = parent_root.as_ref().and_then(|t| t.find(n));
                        roots.extend(walker.visit(p, n, pe)?);
                    }
                }
                Source::Stream {
                    name,
                    reader,
                    expect,
                } => roots.push(read_stream(&mut walker, name.as_bytes(), reader, expect)?),
            }
            Ok(roots)
        })();
        walker.flush_jobs();
        progress.walk_done.store(1, Ordering::Relaxed);
        let Walker {
            jobs,
            mut asm,
            mut skipped,
            ..
        } = walker;
        drop(jobs);
        asm.drain();
        let mut failed = None;
        for h in handles {
            let joined = h
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("a backup worker panicked".into())));
            if let Err(e) = joined {
                failed.get_or_insert(e);
            }
        }
        let result = walked.and_then(|roots| match failed {
            Some(e) => Err(e),
            None => asm.finish(roots),
        });
        if cancel.is_set() || matches!(result, Err(Error::Cancelled)) {
            // Complete the pack the trees went to, so it is kept with the rest.
            if let Err(e) = asm.complete() {
                tracing::warn!("completing a pack of the cancelled backup: {e}");
            }
            return Err(Error::Cancelled);
        }
        let assembled = result?;
        asm.complete()?;
        skipped.append(&mut asm.skipped);
        Ok((assembled, skipped))
    });
    let (assembled, skipped) = match outcome {
        Err(Error::Cancelled) => return Err(keep_and_cancel(writer)),
        Err(e) => {
            writer.abort();
            return Err(e);
        }
        Ok(v) => v,
    };
    let Assembled {
        root,
        refs,
        mut summary,
    } = assembled;
    // The last look: past it, the snapshot is committed.
    if cancel.is_set() {
        return Err(keep_and_cancel(writer));
    }
    let stats_stored = writer.stats.stored_bytes.load(Ordering::Relaxed);
    progress.new_plain_bytes.store(
        writer.stats.new_plain_bytes.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    let stats_new = writer.stats.new_blobs.load(Ordering::Relaxed);
    writer.commit()?;

    summary.stored_bytes = stats_stored;
    summary.new_blobs = stats_new;
    summary.skipped = skipped.len() as u64;
    summary.duration_ns = started.elapsed().as_nanos() as u64;
    let body = Body {
        version: 1,
        kind: kind.into(),
        paths: path_bytes,
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        root,
        parent: parent.map(|p| p.id.hex()),
        program: concat!("tiervault ", env!("CARGO_PKG_VERSION")).into(),
        summary,
        skipped,
        image,
    };
    let header = Header { time_ns, refs };
    let mut sealer = vault.keys().sealer();
    let bytes = snapshot::encode(&mut sealer, &header, &body)?;
    let id = Id::digest(&bytes);
    let dest = vault.root().join("snapshots").join(id.hex());
    write_atomic(&**vault.io(), &vault.tmp_dir().join(id.hex()), &dest, bytes)
        .ctx("writing snapshot", &dest)?;
    Ok(Snapshot { id, header, body })
}

/// End a cancelled backup: keep what was stored (the workers completed their packs; the
/// flusher makes them durable; one index part names them) and report the cancel. A failure to
/// keep it only costs the next backup the work of storing it again.
fn keep_and_cancel(writer: Writer<'_>) -> Error {
    match writer.commit() {
        Ok(packs) => tracing::info!(
            "backup cancelled; kept {} pack(s) of data stored so far",
            packs.len()
        ),
        Err(e) => tracing::warn!("backup cancelled; the data stored so far is lost: {e}"),
    }
    Error::Cancelled
}

/// Absolute source paths and their root names; refuses two paths with one base name.
fn root_names(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Vec<u8>>)> {
    let mut abs: Vec<PathBuf> = Vec::new();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for p in paths {
        let a = std::path::absolute(p).ctx("resolving", p)?;
        let a = normalize(&a);
        let name = match a.file_name() {
            Some(n) => n.as_bytes().to_vec(),
            None => {
                return Err(Error::Invalid(format!(
                    "{}: name a directory below / rather than / itself",
                    p.display()
                )))
            }
        };
        if let Some(i) = names.iter().position(|n| *n == name) {
            return Err(Error::DuplicateBaseName {
                name: String::from_utf8_lossy(&name).into_owned(),
                a: abs[i].clone(),
                b: a,
            });
        }
        names.push(name);
        abs.push(a);
    }
    Ok((abs, names))
}

/// Resolve `.` and `..` lexically (no symlinks followed: a symlink given as a path is backed
/// up as a symlink).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The newest snapshot of exactly the same set of paths.
fn find_parent(vault: &Vault, paths: &[ByteBuf]) -> Result<Option<Snapshot>> {
    let mut want: Vec<&[u8]> = paths.iter().map(|p| p.as_slice()).collect();
    want.sort();
    let (all, _) = vault.snapshots()?;
    Ok(all.into_iter().rev().find(|s| {
        let mut have: Vec<&[u8]> = s.body.paths.iter().map(|p| p.as_slice()).collect();
        have.sort();
        have == want
    }))
}

fn read_stream(
    walker: &mut Walker<'_>,
    name: &[u8],
    mut reader: Box<dyn Read + Send>,
    expect: Option<u64>,
) -> Result<Node> {
    let mut total = 0u64;
    let slot = walker
        .asm
        .new_slot(PathBuf::from(std::ffi::OsStr::from_bytes(name)), 0);
    loop {
        walker.cancel.check()?;
        let mut buf = Vec::with_capacity(SEGMENT as usize);
        let n = (&mut reader)
            .take(SEGMENT)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading", "standard input", e))?;
        if n == 0 {
            break;
        }
        let seg = walker.asm.add_segment(slot);
        walker
            .progress
            .bytes_seen
            .fetch_add(n as u64, Ordering::Relaxed);
        walker.queue(
            Job {
                slot,
                seg,
                input: Input::Owned(buf, total),
            },
            SEGMENT,
        );
        total += n as u64;
        if (n as u64) < SEGMENT {
            break;
        }
    }
    if let Some(want) = expect {
        if total != want {
            return Err(Error::TruncatedInput {
                got: total,
                expected: want,
            });
        }
    }
    walker.progress.files.fetch_add(1, Ordering::Relaxed);
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let entry = Entry {
        name: ByteBuf::from(name.to_vec()),
        kind: NodeType::File,
        mode: 0o644,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        mtime: now,
        ctime: now,
        ino: 0,
        dev: 0,
        nlink: 1,
        size: Some(total),
        content: None,
        subtree: None,
        target: None,
        rdev: None,
        xattrs: Vec::new(),
    };
    Ok(Node::File(entry, slot))
}
