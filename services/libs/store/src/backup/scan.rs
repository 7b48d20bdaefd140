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

use crossbeam_channel::Sender;
use serde_bytes::ByteBuf;

use crate::fsmeta;

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

pub fn list_dir(path: &Path) -> Listing {
    let mut out = Listing::default();
    let mut names = Vec::new();
    match std::fs::read_dir(path) {
        Ok(rd) => {
            for de in rd {
                match de {
                    Ok(de) => names.push(de.file_name()),
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
    out.entries = names
        .into_iter()
        .map(|n| {
            let p = path.join(&n);
            stat_entry(&p, n)
        })
        .collect();
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
}

/// At most this many listed entries wait for the walker before scanners stop running ahead.
const AHEAD: usize = 20_000;

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
    pub fn new(threads: usize) -> Prefetcher {
        let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
        let shared = Arc::new(Shared {
            ready: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            requested: Mutex::new(HashSet::new()),
            buffered: AtomicUsize::new(0),
            tx: Mutex::new(Some(tx)),
            stop: AtomicBool::new(false),
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
                            let l = list_dir(&p);
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

    pub fn take(&self, dir: &Path) -> Listing {
        let mut g = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = g.remove(dir) {
                self.shared
                    .buffered
                    .fetch_sub(l.entries.len(), Ordering::Relaxed);
                return l;
            }
            g = self.shared.cv.wait(g).unwrap_or_else(|e| e.into_inner());
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
