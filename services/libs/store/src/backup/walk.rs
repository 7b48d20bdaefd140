//! The walker: reads directories and metadata in name order, reuses unchanged files' chunk
//! lists from the parent snapshot, and hands everything else to the workers as segment jobs.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::error::Result;
use crate::fsmeta;
use crate::snapshot::Skipped;
use crate::tree::{Entry, NodeType, Tree};
use crate::vault::Vault;

use super::assemble::{Assembler, Node};
use super::scan::{self, Prefetcher};
use super::worker::{Input, Job, SEGMENT};
use super::{Cancel, Progress};

const BATCH_JOBS: usize = 64;
const BATCH_BYTES: u64 = 2 << 20;

pub struct Walker<'a> {
    pub vault: &'a Vault,
    /// Takes each directory once walked and stores its tree when its files are read.
    pub asm: Assembler<'a, 'a>,
    pub jobs: Sender<Vec<Job>>,
    /// Jobs not yet handed over: small files travel in batches, so a 60k-file tree costs a
    /// few thousand channel hand-offs and wake-ups rather than 60k.
    batch: Vec<Job>,
    batch_bytes: u64,
    pub skipped: Vec<Skipped>,
    pub progress: &'a Progress,
    pub force_reread: bool,
    /// Files already seen in this backup, by (dev, ino): later hard links share their slot
    /// (the table holds a use of the slot, so it outlives its first name's directory).
    links: HashMap<(u64, u64), Node>,
    scan: Prefetcher,
    pub cancel: Cancel<'a>,
    /// A data directory is unavailable: reuse only what has a copy elsewhere.
    degraded: bool,
}

fn path_bytes(p: &Path) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(p.as_os_str().as_bytes().to_vec())
}

impl<'a> Walker<'a> {
    pub fn new(
        scan: Prefetcher,
        vault: &'a Vault,
        jobs: Sender<Vec<Job>>,
        progress: &'a Progress,
        force_reread: bool,
        cancel: Cancel<'a>,
        asm: Assembler<'a, 'a>,
    ) -> Self {
        Walker {
            vault,
            asm,
            jobs,
            batch: Vec::new(),
            batch_bytes: 0,
            skipped: Vec::new(),
            progress,
            force_reread,
            links: HashMap::new(),
            scan,
            cancel,
            degraded: vault.degraded(),
        }
    }

    /// Whether the parent's chunk list of an unchanged file may be reused. Always, unless a
    /// data directory is unavailable: then only when every blob it names has a copy in a
    /// usable one (one index lookup per chunk, paid only in that state), so that a backup
    /// taken while an array is missing does not depend on that array; otherwise the file is
    /// read again.
    fn reusable(&self, p: &Entry) -> bool {
        if !self.degraded {
            return true;
        }
        let Some(c) = &p.content else {
            return false;
        };
        let mut ids: Vec<crate::id::Id> = c.lists.iter().flatten().copied().collect();
        match self.vault.chunk_list(c) {
            Ok(chunks) => ids.extend(chunks.iter().map(|ch| ch.1)),
            Err(_) => return false,
        }
        let index = self.vault.index();
        ids.iter()
            .all(|id| index.contains_available(id).unwrap_or(false))
    }

    pub fn skip(&mut self, path: &Path, error: impl std::fmt::Display) {
        tracing::debug!("skipping {}: {error}", path.display());
        self.skipped.push(Skipped {
            path: path_bytes(path),
            error: error.to_string(),
        });
    }

    /// Walk `path` (stored under `name`), with the parent snapshot's entry of the same name.
    /// `None` when the path had to be skipped.
    pub fn visit(
        &mut self,
        path: &Path,
        name: &[u8],
        parent: Option<&Entry>,
    ) -> Result<Option<Node>> {
        let listed = scan::stat_entry(path, std::ffi::OsStr::from_bytes(name).to_os_string());
        if matches!(&listed.meta, Ok(m) if m.is_dir()) {
            self.scan.request(path);
        }
        self.visit_listed(path, listed, parent)
    }

    fn visit_listed(
        &mut self,
        path: &Path,
        listed: scan::Listed,
        parent: Option<&Entry>,
    ) -> Result<Option<Node>> {
        self.cancel.check()?;
        let md = match listed.meta {
            Ok(m) => m,
            Err(e) => {
                self.skip(path, e);
                return Ok(None);
            }
        };
        let mut entry = fsmeta::entry_from(listed.name.as_bytes(), &md);
        entry.xattrs = listed.xattrs;
        match entry.kind {
            NodeType::Dir => self.visit_dir(path, entry, parent).map(Some),
            NodeType::Symlink => match listed.target {
                Some(Ok(t)) => {
                    entry.target = Some(path_bytes(&t));
                    Ok(Some(Node::Done(entry)))
                }
                Some(Err(e)) => {
                    self.skip(path, e);
                    Ok(None)
                }
                None => {
                    self.skip(path, "symlink target was not read");
                    Ok(None)
                }
            },
            NodeType::File => Ok(self.visit_file(path, entry, &md, parent)),
            _ => Ok(Some(Node::Done(entry))),
        }
    }

    /// `path` was requested from the scanner before this call.
    fn visit_dir(&mut self, path: &Path, entry: Entry, parent: Option<&Entry>) -> Result<Node> {
        let parent_tree = match parent
            .filter(|p| p.kind == NodeType::Dir)
            .and_then(|p| p.subtree)
        {
            Some(id) => match self.vault.read_tree(&id) {
                Ok(t) => Some((id, t)),
                Err(e) => {
                    // A damaged parent only costs change detection: read everything below.
                    tracing::warn!(
                        "parent tree of {} unreadable ({e}); reading all files",
                        path.display()
                    );
                    None
                }
            },
            None => None,
        };
        let cancel = self.cancel;
        let listing = self
            .scan
            .take_unless(path, || cancel.is_set())
            .ok_or(crate::error::Error::Cancelled)?;
        self.progress
            .excluded
            .fetch_add(listing.excluded, Ordering::Relaxed);
        if let Some(e) = listing.error {
            // The directory itself is kept (its metadata is readable); what could not be
            // listed is reported.
            self.skip(path, e);
        }
        // Queue the subdirectories now so the scanners work ahead of this walk.
        for l in &listing.entries {
            if matches!(&l.meta, Ok(m) if m.is_dir()) {
                self.scan.request(&path.join(&l.name));
            }
        }
        self.progress.dirs.fetch_add(1, Ordering::Relaxed);
        let mut children = Vec::with_capacity(listing.entries.len());
        for l in listing.entries {
            let child = path.join(&l.name);
            let pe = parent_tree
                .as_ref()
                .and_then(|(_, t): &(_, Tree)| t.find(l.name.as_bytes()));
            if let Some(node) = self.visit_listed(&child, l, pe)? {
                children.push(node);
            }
        }
        let node = self.asm.close(entry, children, parent_tree);
        self.asm.pump()?;
        Ok(node)
    }

    /// A disk image or block device, stored as one regular file whatever its type.
    pub fn visit_image(
        &mut self,
        path: &Path,
        name: &[u8],
        parent: Option<&Entry>,
    ) -> Result<Option<Node>> {
        use std::io::{Seek, SeekFrom};
        let opened = std::fs::File::open(path).and_then(|mut f| {
            let md = f.metadata()?;
            let size = f.seek(SeekFrom::End(0))?;
            Ok((md, size))
        });
        let (md, size) = match opened {
            Ok(v) => v,
            Err(e) => return Err(crate::error::Error::io("opening image", path, e)),
        };
        let mut entry = fsmeta::entry_from(name, &md);
        entry.kind = NodeType::File;
        entry.size = Some(size);
        entry.rdev = None;
        Ok(self.visit_file(path, entry, &md, parent))
    }

    fn visit_file(
        &mut self,
        path: &Path,
        mut entry: Entry,
        md: &std::fs::Metadata,
        parent: Option<&Entry>,
    ) -> Option<Node> {
        let size = entry.size.unwrap_or(0);
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes_seen.fetch_add(size, Ordering::Relaxed);
        let key = (entry.dev, entry.ino);
        if entry.nlink > 1 {
            if let Some(prev) = self.links.get(&key) {
                return Some(match prev {
                    Node::File(_, slot) => {
                        self.asm.add_user(*slot);
                        Node::File(entry, *slot)
                    }
                    Node::Done(p) => {
                        entry.content = p.content.clone();
                        Node::Done(entry)
                    }
                    Node::Dir(_) => Node::Done(entry),
                });
            }
        }
        if let Some(p) = parent.filter(|p| {
            !self.force_reread && md.is_file() && unchanged(p, &entry) && self.reusable(p)
        }) {
            entry.content = p.content.clone();
            self.progress
                .bytes_reused
                .fetch_add(size, Ordering::Relaxed);
            let node = Node::Done(entry);
            self.remember_link(key, &node);
            return Some(node);
        }
        let arc = Arc::new(path.to_path_buf());
        let mut inputs = Vec::new();
        if size <= SEGMENT && md.is_file() && !fsmeta::maybe_sparse(md) {
            inputs.push(Input::Whole(arc));
        } else {
            let extents = match std::fs::File::open(path) {
                Ok(f) if md.is_file() => fsmeta::data_extents(&f, size),
                // Block devices have no holes to ask about.
                Ok(_) => vec![(0, size)],
                Err(e) => {
                    self.skip(path, e);
                    return None;
                }
            };
            for (off, len) in extents {
                for (o, l) in segments(off, len) {
                    inputs.push(Input::Range(arc.clone(), o, l));
                }
            }
        }
        let slot = self.asm.new_slot(path.to_path_buf(), inputs.len());
        for (seg, input) in inputs.into_iter().enumerate() {
            let bytes = match &input {
                Input::Range(_, _, len) => *len,
                _ => size,
            };
            self.queue(Job { slot, seg, input }, bytes);
        }
        let node = Node::File(entry, slot);
        self.remember_link(key, &node);
        Some(node)
    }

    /// Queue a job; the batch goes to the workers once it holds enough work.
    pub fn queue(&mut self, job: Job, bytes: u64) {
        self.batch.push(job);
        self.batch_bytes += bytes;
        if self.batch.len() >= BATCH_JOBS || self.batch_bytes >= BATCH_BYTES {
            self.flush_jobs();
        }
    }

    pub fn flush_jobs(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        // A closed channel means the workers stopped on an error; the caller reports it.
        let _ = self.jobs.send(std::mem::take(&mut self.batch));
    }

    fn remember_link(&mut self, key: (u64, u64), node: &Node) {
        let copy = match node {
            Node::File(e, s) if e.nlink > 1 => {
                self.asm.add_user(*s);
                Node::File(e.clone(), *s)
            }
            Node::Done(e) if e.nlink > 1 => Node::Done(e.clone()),
            _ => return,
        };
        self.links.insert(key, copy);
    }
}

/// The file matches its parent-snapshot entry closely enough to reuse its chunk list.
fn unchanged(p: &Entry, e: &Entry) -> bool {
    p.kind == NodeType::File
        && p.content.is_some()
        && p.size == e.size
        && p.mtime == e.mtime
        && p.ctime == e.ctime
        && p.ino == e.ino
}

/// Split an extent at multiples of SEGMENT from the start of the file.
pub fn segments(off: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let end = off + len;
    let mut pos = off;
    while pos < end {
        let next = ((pos / SEGMENT) + 1) * SEGMENT;
        let stop = next.min(end);
        out.push((pos, stop - pos));
        pos = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cut_at_absolute_multiples() {
        assert_eq!(segments(0, 10), vec![(0, 10)]);
        assert_eq!(
            segments(SEGMENT - 5, 10),
            vec![(SEGMENT - 5, 5), (SEGMENT, 5)]
        );
        assert_eq!(segments(0, 2 * SEGMENT).len(), 2);
        assert!(segments(7, 0).is_empty());
    }
}
