//! Directory scanning ahead of the walker: reading a directory and the metadata of its
//! entries is almost all system calls, so a small pool lists the directories the walker will
//! need next while it works on the current one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

type Ready = Arc<(Mutex<HashMap<PathBuf, Listing>>, Condvar)>;

/// Lists requested directories on background threads.
pub struct Prefetcher {
    tx: Option<Sender<PathBuf>>,
    ready: Ready,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    pub fn new(threads: usize) -> Prefetcher {
        let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
        let ready: Ready = Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
        let handles = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let ready = ready.clone();
                std::thread::Builder::new()
                    .name(format!("scan-{i}"))
                    .spawn(move || {
                        for p in rx {
                            let l = list_dir(&p);
                            let (m, cv) = &*ready;
                            m.lock().unwrap_or_else(|e| e.into_inner()).insert(p, l);
                            cv.notify_all();
                        }
                    })
                    .expect("spawning a directory scanner")
            })
            .collect();
        Prefetcher {
            tx: Some(tx),
            ready,
            threads: handles,
        }
    }

    /// Ask for `dir` to be listed; every `take` must follow a `request` of the same path.
    pub fn request(&self, dir: &Path) {
        if let Some(tx) = &self.tx {
            // The scanners live as long as `self`, so the channel is open.
            let _ = tx.send(dir.to_path_buf());
        }
    }

    pub fn take(&self, dir: &Path) -> Listing {
        let (m, cv) = &*self.ready;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = g.remove(dir) {
                return l;
            }
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
