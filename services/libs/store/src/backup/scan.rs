//! Directory scanning ahead of the walker: reading a directory and the metadata of its
//! entries is almost all system calls, so a small pool lists the directories the walker will
//! need next while it works on the current one.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_bytes::ByteBuf;

use crate::fsmeta;

use super::filter::Filter;

/// One directory entry with everything the walker needs from the file system.
pub struct Listed {
    pub name: OsString,
    pub meta: std::io::Result<Metadata>,
    pub xattrs: Vec<(ByteBuf, ByteBuf)>,
    pub target: Option<std::io::Result<PathBuf>>,
}

/// A directory's entries in name-byte order, and the error that cut the listing short.
#[derive(Default)]
pub struct Listing {
    pub entries: Vec<Listed>,
    pub error: Option<std::io::Error>,
    /// Entries the filter left out (not stat'ed, not in `entries`).
    pub excluded: u64,
}

pub fn stat_entry(path: &Path, name: OsString) -> Listed {
    let meta = std::fs::symlink_metadata(path);
    let (xattrs, target) = match &meta {
        Ok(m) => (
            fsmeta::read_xattrs(path),
            m.file_type().is_symlink().then(|| std::fs::read_link(path)),
        ),
        Err(_) => (Vec::new(), None),
    };
    Listed {
        name,
        meta,
        xattrs,
        target,
    }
}

/// List `path` and stat what `filter` keeps of it. Excluded entries are only counted: the
/// filter decides on the path (and, for include patterns, on the entry type the directory
/// itself reports), so nothing is stat'ed or read below an excluded directory. Gives up
/// early, with a partial listing, once `stop` is set.
pub fn list_dir(path: &Path, filter: &Filter, stop: &AtomicBool) -> Listing {
    let mut out = Listing::default();
    let mut names = Vec::new();
    let covered = filter.covers(path);
    match std::fs::read_dir(path) {
        Ok(rd) => {
            for de in rd {
                match de {
                    Ok(de) => {
                        let name = de.file_name();
                        if !filter.is_empty() {
                            let p = path.join(&name);
                            // The type from the directory entry (no stat on most file systems);
                            // an entry that vanished meanwhile is no directory.
                            let is_dir = covered || de.file_type().is_ok_and(|t| t.is_dir());
                            if !filter.keeps(&p, is_dir, covered) {
                                out.excluded += 1;
                                continue;
                            }
                        }
                        names.push(name);
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
            }
        }
        Err(e) => out.error = Some(e),
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.entries = Vec::with_capacity(names.len());
    for n in names {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let p = path.join(&n);
        out.entries.push(stat_entry(&p, n));
    }
    out
}

/// Listings ready to be taken, and the directories already asked for.
struct Shared {
    ready: Mutex<HashMap<PathBuf, Listing>>,
    cv: Condvar,
    requested: Mutex<HashSet<PathBuf>>,
    /// Entries listed but not yet taken; the scanners stop working ahead past a bound, so a
    /// huge tree cannot fill memory with listings.
    buffered: AtomicUsize,
    tx: Mutex<Option<Sender<PathBuf>>>,
    stop: AtomicBool,
    filter: Filter,
}

/// At most this many listed entries wait for the walker before scanners stop running ahead.
const AHEAD: usize = 20_000;

/// How often a walker waiting for a listing looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Shared {
    fn request(&self, dir: &Path) {
        if !self
            .requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir.to_path_buf())
        {
            return;
        }
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            // The receivers live until the scanners stop, after the sender is dropped.
            let _ = tx.send(dir.to_path_buf());
        }
    }
}

/// Lists directories on background threads, ahead of the walker: every directory it lists
/// queues its subdirectories, so the whole tree is read in parallel with whatever the caller
/// does meanwhile (the passphrase KDF, for one).
pub struct Prefetcher {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    /// A prefetcher that lists everything (no filter).
    pub fn new(threads: usize) -> Prefetcher {
        Self::with_filter(threads, Filter::default())
    }

    /// A prefetcher whose listings leave out what `filter` excludes, and which never lists
    /// an excluded directory.
    pub fn with_filter(threads: usize, filter: Filter) -> Prefetcher {
        let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
        let shared = Arc::new(Shared {
            ready: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            requested: Mutex::new(HashSet::new()),
            buffered: AtomicUsize::new(0),
            tx: Mutex::new(Some(tx)),
            stop: AtomicBool::new(false),
            filter,
        });
        let handles = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("scan-{i}"))
                    .spawn(move || {
                        for p in rx {
                            if shared.stop.load(Ordering::Relaxed) {
                                continue;
                            }
                            let l = list_dir(&p, &shared.filter, &shared.stop);
                            let n = l.entries.len();
                            if shared.buffered.fetch_add(n, Ordering::Relaxed) + n < AHEAD {
                                for e in &l.entries {
                                    if matches!(&e.meta, Ok(m) if m.is_dir()) {
                                        shared.request(&p.join(&e.name));
                                    }
                                }
                            }
                            shared
                                .ready
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(p, l);
                            shared.cv.notify_all();
                        }
                    })
                    .expect("spawning a directory scanner")
            })
            .collect();
        Prefetcher {
            shared,
            threads: handles,
        }
    }

    /// Ask for `dir` to be listed (again asking is harmless); every `take` must follow a
    /// `request` of the same path.
    pub fn request(&self, dir: &Path) {
        self.shared.request(dir);
    }

    /// The filter the listings follow.
    pub fn filter(&self) -> &Filter {
        &self.shared.filter
    }

    pub fn take(&self, dir: &Path) -> Listing {
        self.take_unless(dir, || false)
            .expect("a take that cannot be cancelled returns a listing")
    }

    /// As `take`, but `None` as soon as `cancelled()` (polled while waiting) says so.
    pub fn take_unless(&self, dir: &Path, cancelled: impl Fn() -> bool) -> Option<Listing> {
        let mut g = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = g.remove(dir) {
                self.shared
                    .buffered
                    .fetch_sub(l.entries.len(), Ordering::Relaxed);
                return Some(l);
            }
            if cancelled() {
                return None;
            }
            g = self
                .shared
                .cv
                .wait_timeout(g, CANCEL_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        drop(
            self.shared
                .tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
