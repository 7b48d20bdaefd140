//! Reading a snapshot's tree: finding a path, listing, streaming a file, comparing two trees.

use std::io::Write;

use crate::codec::Decoder;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::Snapshot;
use crate::tree::{Entry, NodeType, Tree};
use crate::vault::Vault;

/// Split a snapshot path ("src/a/b") into components; empty means the root.
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// What a path names inside a snapshot.
pub enum Found {
    Root(Tree),
    Entry(Box<Entry>),
}

pub fn find(vault: &Vault, snap: &Snapshot, path: &[u8]) -> Result<Found> {
    let comps = components(path);
    let mut tree = vault.read_tree(&snap.body.root)?;
    if comps.is_empty() {
        return Ok(Found::Root(tree));
    }
    let missing = || Error::NoSuchPath {
        snapshot: snap.short_id(),
        path: String::from_utf8_lossy(path).into_owned(),
    };
    for (i, c) in comps.iter().enumerate() {
        let e = tree.find(c).ok_or_else(missing)?.clone();
        if i + 1 == comps.len() {
            return Ok(Found::Entry(Box::new(e)));
        }
        match (e.kind, e.subtree) {
            (NodeType::Dir, Some(id)) => tree = vault.read_tree(&id)?,
            _ => return Err(missing()),
        }
    }
    Err(missing())
}

/// Visit every entry under `tree` depth-first in name order, with its path relative to the
/// snapshot root.
pub fn walk(
    vault: &Vault,
    tree: &Tree,
    prefix: &[u8],
    f: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    for e in &tree.entries {
        let path = join(prefix, &e.name);
        f(&path, e)?;
        if let (NodeType::Dir, Some(id)) = (e.kind, e.subtree) {
            let sub = vault.read_tree(&id)?;
            walk(vault, &sub, &path, f)?;
        }
    }
    Ok(())
}

pub fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + name.len() + 1);
    p.extend_from_slice(prefix);
    if !prefix.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Write a file's content to `out`, holes as zeros, checking every chunk.
pub fn cat(vault: &Vault, e: &Entry, out: &mut dyn Write) -> Result<u64> {
    let chunks = match &e.content {
        Some(c) => vault.chunk_list(c)?,
        None => Vec::new(),
    };
    let mut dec = Decoder::new();
    let mut buf = Vec::new();
    let mut pos = 0u64;
    let zeros = vec![0u8; 64 * 1024];
    let fill = |out: &mut dyn Write, mut n: u64| -> Result<()> {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..k])
                .map_err(|e| Error::io("writing", "standard output", e))?;
            n -= k as u64;
        }
        Ok(())
    };
    for c in chunks {
        if c.0 > pos {
            fill(out, c.0 - pos)?;
        }
        let plain = vault.read_blob(&c.1, &mut dec, &mut buf)?;
        out.write_all(&plain)
            .map_err(|e| Error::io("writing", "standard output", e))?;
        pos = c.0 + plain.len() as u64;
    }
    let size = e.size.unwrap_or(pos);
    if size > pos {
        fill(out, size - pos)?;
    }
    Ok(size)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Modified,
}

fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.size == b.size
        && a.content == b.content
        && a.target == b.target
        && a.rdev == b.rdev
        && a.xattrs == b.xattrs
}

/// Compare two trees; identical subtrees (same id) are skipped without reading them.
pub fn diff(
    vault: &Vault,
    a: &Id,
    b: &Id,
    prefix: &[u8],
    out: &mut Vec<(Vec<u8>, Change)>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = vault.read_tree(a)?;
    let tb = vault.read_tree(b)?;
    let (mut i, mut j) = (0, 0);
    while i < ta.entries.len() || j < tb.entries.len() {
        let ea = ta.entries.get(i);
        let eb = tb.entries.get(j);
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let x = ea.expect("ordered");
                all_under(vault, x, prefix, Change::Removed, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let y = eb.expect("ordered");
                all_under(vault, y, prefix, Change::Added, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (ea.expect("ordered"), eb.expect("ordered"));
                let path = join(prefix, &x.name);
                match (x.subtree, y.subtree) {
                    (Some(sa), Some(sb)) => {
                        if !same_entry(x, y) {
                            out.push((path.clone(), Change::Modified));
                        }
                        diff(vault, &sa, &sb, &path, out)?;
                    }
                    _ if x.kind != y.kind => {
                        all_under(vault, x, prefix, Change::Removed, out)?;
                        all_under(vault, y, prefix, Change::Added, out)?;
                    }
                    _ => {
                        if !same_entry(x, y) {
                            out.push((path, Change::Modified));
                        }
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn all_under(
    vault: &Vault,
    e: &Entry,
    prefix: &[u8],
    ch: Change,
    out: &mut Vec<(Vec<u8>, Change)>,
) -> Result<()> {
    let path = join(prefix, &e.name);
    out.push((path.clone(), ch));
    if let Some(id) = e.subtree {
        let t = vault.read_tree(&id)?;
        walk(vault, &t, &path, &mut |p, _| {
            out.push((p.to_vec(), ch));
            Ok(())
        })?;
    }
    Ok(())
}
