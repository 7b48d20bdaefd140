//! Assembling the snapshot's trees while the backup runs. The walk closes a directory once it
//! has visited all of it; the directory's tree is stored as soon as the workers have returned
//! the contents of its files. Directories close in post-order (children first) and are
//! finished in that order, so memory holds the directories and files in flight, not the whole
//! tree: a backup of millions of files needs no more than one of thousands.

use std::collections::{HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crossbeam_channel::Receiver;
use serde_bytes::ByteBuf;

use crate::blob::Kind;
use crate::error::Result;
use crate::id::Id;
use crate::snapshot::{Skipped, Summary};
use crate::tree::{split_chunk_list, to_cbor, ChunkRef, Content, Entry, Tree, INLINE_CHUNKS};
use crate::vault::Vault;
use crate::writer::{Sink, Writer};

use super::worker::{Done, SEGMENT};
use super::Cancel;

/// What the walk found, before content and subtrees are known.
pub enum Node {
    /// A directory the walk has closed (index given by [`Assembler::close`]).
    Dir(usize),
    /// A file whose content comes from the workers (its slot).
    File(Entry, usize),
    /// Anything complete already: symlinks, devices, files reused from the parent.
    Done(Entry),
}

/// A file being read by the workers.
struct Slot {
    path: PathBuf,
    segs: Vec<Option<Vec<ChunkRef>>>,
    /// Segments queued and not yet returned.
    pending: usize,
    error: Option<String>,
    /// Bytes read by a whole-file job (the file may have changed since its stat).
    whole_read: Option<u64>,
    /// Nodes (and the hard-link table) that still need the slot.
    users: usize,
}

struct Closed {
    index: usize,
    entry: Entry,
    children: Vec<Node>,
    /// The parent snapshot's tree of this directory: when the new one turns out equal, its
    /// id is reused (no encoding, hashing or lookup; most directories of an incremental
    /// backup are unchanged).
    parent: Option<(Id, Tree)>,
    /// Children before this one are known to be complete.
    ready: usize,
}

/// The snapshot's root tree and what it references.
pub struct Assembled {
    pub root: Id,
    pub refs: Vec<Id>,
    pub summary: Summary,
}

pub struct Assembler<'a, 'v> {
    writer: &'a Writer<'v>,
    vault: &'v Vault,
    sink: Sink,
    done: Receiver<Vec<Done>>,
    slots: HashMap<usize, Slot>,
    next_slot: usize,
    closed: VecDeque<Closed>,
    next_dir: usize,
    /// Entries of finished directories, until their parent takes them.
    built: HashMap<usize, Entry>,
    pub skipped: Vec<Skipped>,
    refs: Vec<Id>,
    summary: Summary,
    cancel: Cancel<'a>,
    /// The most files and directories held at once (tests check that it stays bounded).
    peak_held: usize,
}

/// `peak_held` of the last finished assembly in this process.
#[cfg(test)]
pub(super) static LAST_PEAK_HELD: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

impl<'a, 'v> Assembler<'a, 'v> {
    pub fn new(
        writer: &'a Writer<'v>,
        vault: &'v Vault,
        done: Receiver<Vec<Done>>,
        cancel: Cancel<'a>,
    ) -> Result<Self> {
        Ok(Assembler {
            writer,
            vault,
            sink: writer.sink()?,
            done,
            slots: HashMap::new(),
            next_slot: 0,
            closed: VecDeque::new(),
            next_dir: 0,
            built: HashMap::new(),
            skipped: Vec::new(),
            refs: Vec::new(),
            summary: Summary::default(),
            cancel,
            peak_held: 0,
        })
    }

    /// A slot for a file of `segments` segments (more may be added with [`Self::add_segment`]).
    pub fn new_slot(&mut self, path: PathBuf, segments: usize) -> usize {
        let n = self.next_slot;
        self.next_slot += 1;
        self.slots.insert(
            n,
            Slot {
                path,
                segs: (0..segments).map(|_| None).collect(),
                pending: segments,
                error: None,
                whole_read: None,
                users: 1,
            },
        );
        n
    }

    /// One more segment of a stream's slot; returns its index.
    pub fn add_segment(&mut self, slot: usize) -> usize {
        let s = self.slot_mut(slot);
        s.segs.push(None);
        s.pending += 1;
        s.segs.len() - 1
    }

    /// Another node (a hard link, or the link table) needs `slot` until it is finished.
    pub fn add_user(&mut self, slot: usize) {
        self.slot_mut(slot).users += 1;
    }

    fn slot_mut(&mut self, slot: usize) -> &mut Slot {
        self.slots
            .get_mut(&slot)
            .expect("a slot lives while a node or the link table holds it")
    }

    /// The walk has visited all of a directory: it is finished once its files are.
    pub fn close(&mut self, entry: Entry, children: Vec<Node>, parent: Option<(Id, Tree)>) -> Node {
        let index = self.next_dir;
        self.next_dir += 1;
        self.closed.push_back(Closed {
            index,
            entry,
            children,
            parent,
            ready: 0,
        });
        Node::Dir(index)
    }

    /// Take the workers' results that have arrived and store every directory they complete.
    pub fn pump(&mut self) -> Result<()> {
        self.peak_held = self.peak_held.max(self.slots.len() + self.closed.len());
        while let Ok(batch) = self.done.try_recv() {
            self.absorb(batch);
        }
        self.finish_ready()
    }

    fn absorb(&mut self, batch: Vec<Done>) {
        for d in batch {
            let Some(slot) = self.slots.get_mut(&d.slot) else {
                continue;
            };
            slot.pending -= 1;
            match d.result {
                Ok(seg) => {
                    if seg.whole {
                        slot.whole_read = Some(seg.read);
                    }
                    slot.segs[d.seg] = Some(seg.chunks);
                }
                Err(e) => {
                    slot.error.get_or_insert(e);
                }
            }
        }
    }

    /// Whether a child of the oldest closed directory is complete. Its subdirectories closed
    /// before it, so they are finished already.
    fn is_ready(&self, node: &Node) -> bool {
        match node {
            Node::File(_, slot) => self.slots.get(slot).is_none_or(|s| s.pending == 0),
            Node::Dir(_) | Node::Done(_) => true,
        }
    }

    fn finish_ready(&mut self) -> Result<()> {
        while let Some(front) = self.closed.front() {
            let mut ready = front.ready;
            while ready < front.children.len() && self.is_ready(&front.children[ready]) {
                ready += 1;
            }
            let complete = ready == front.children.len();
            let Some(front) = self.closed.front_mut() else {
                break;
            };
            front.ready = ready;
            if !complete {
                break;
            }
            let Some(dir) = self.closed.pop_front() else {
                break;
            };
            let mut entry = dir.entry;
            let tree = Tree::new(self.entries(dir.children)?);
            entry.subtree = Some(match dir.parent {
                Some((id, before)) if before == tree => {
                    self.refs.push(id);
                    id
                }
                _ => self.store_tree(tree)?,
            });
            self.summary.dirs += 1;
            self.built.insert(dir.index, entry);
        }
        Ok(())
    }

    /// Take every result still to come: returns once all workers have stopped sending.
    pub fn drain(&mut self) {
        while let Ok(batch) = self.done.recv() {
            self.absorb(batch);
        }
    }

    /// After [`Self::drain`]: store the remaining directories and the root tree over `roots`.
    pub fn finish(&mut self, roots: Vec<Node>) -> Result<Assembled> {
        self.finish_ready()?;
        if let Some(stuck) = self.closed.front() {
            // Only when a worker stopped early, which the caller has reported already.
            return Err(crate::error::Error::Invalid(format!(
                "backup ended with files of {} not read",
                String::from_utf8_lossy(&stuck.entry.name)
            )));
        }
        #[cfg(test)]
        LAST_PEAK_HELD.store(self.peak_held, std::sync::atomic::Ordering::Relaxed);
        let entries = self.entries(roots)?;
        let root = self.store_tree(Tree::new(entries))?;
        let mut refs = Vec::new();
        for piece in crate::refs::pieces(std::mem::take(&mut self.refs)) {
            refs.push(self.writer.store_refs(&mut self.sink, &piece)?);
        }
        Ok(Assembled {
            root,
            refs,
            summary: std::mem::take(&mut self.summary),
        })
    }

    /// Complete the pack the trees went to and queue it to be made durable.
    pub fn complete(&mut self) -> Result<()> {
        self.writer.finish_sink(&mut self.sink)
    }

    fn entries(&mut self, nodes: Vec<Node>) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            if let Some(e) = self.entry(n)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn store_tree(&mut self, tree: Tree) -> Result<Id> {
        let (id, _) = self
            .writer
            .store(&mut self.sink, Kind::Meta, &tree.encode())?;
        self.refs.push(id);
        Ok(id)
    }

    /// The finished entry of a complete node; `None` when it was skipped.
    fn entry(&mut self, node: Node) -> Result<Option<Entry>> {
        self.cancel.check()?;
        match node {
            Node::Dir(i) => Ok(self.built.remove(&i)),
            Node::Done(e) => {
                if let Some(c) = &e.content {
                    self.summary.files += 1;
                    self.summary.bytes += e.size.unwrap_or(0);
                    if let Some(chunks) = &c.chunks {
                        self.refs.extend(chunks.iter().map(|c| c.1));
                    } else {
                        self.refs.extend(c.lists.iter().flatten().copied());
                        for ch in self.vault.chunk_list(c)? {
                            self.refs.push(ch.1);
                        }
                    }
                }
                Ok(Some(e))
            }
            Node::File(mut e, slot) => {
                let Some(s) = self.slots.get_mut(&slot) else {
                    return Err(crate::error::Error::Invalid(format!(
                        "backup lost track of the content of {}",
                        String::from_utf8_lossy(&e.name)
                    )));
                };
                s.users -= 1;
                let (chunks, error, whole_read, path) = if s.users == 0 {
                    let s = self.slots.remove(&slot).expect("just looked up");
                    (s.segs, s.error, s.whole_read, s.path)
                } else {
                    // A hard link whose other names still need the slot.
                    (
                        s.segs.clone(),
                        s.error.clone(),
                        s.whole_read,
                        s.path.clone(),
                    )
                };
                if let Some(error) = error {
                    self.skipped.push(Skipped {
                        path: ByteBuf::from(path.as_os_str().as_bytes().to_vec()),
                        error,
                    });
                    return Ok(None);
                }
                let chunks: Vec<ChunkRef> = chunks.into_iter().flatten().flatten().collect();
                if let Some(n) = whole_read {
                    if e.size.is_some_and(|sz| sz <= SEGMENT) {
                        e.size = Some(n);
                    }
                }
                self.refs.extend(chunks.iter().map(|c| c.1));
                e.content = Some(self.content(chunks)?);
                self.summary.files += 1;
                self.summary.bytes += e.size.unwrap_or(0);
                Ok(Some(e))
            }
        }
    }

    fn content(&mut self, chunks: Vec<ChunkRef>) -> Result<Content> {
        if chunks.len() <= INLINE_CHUNKS {
            return Ok(Content {
                chunks: Some(chunks),
                lists: None,
            });
        }
        let mut lists = Vec::new();
        for piece in split_chunk_list(&chunks) {
            let (id, _) = self
                .writer
                .store(&mut self.sink, Kind::Meta, &to_cbor(&piece))?;
            self.refs.push(id);
            lists.push(id);
        }
        Ok(Content {
            chunks: None,
            lists: Some(lists),
        })
    }
}
