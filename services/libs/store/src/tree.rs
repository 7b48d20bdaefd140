//! Trees: the CBOR meta blobs that describe directories (docs/format.md section 8).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::id::Id;

/// Files with more chunks than this keep their chunk list in chunk-list blobs.
pub const INLINE_CHUNKS: usize = 1024;
/// A chunk-list piece never holds more chunks than this.
pub const MAX_LIST_PIECE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

impl From<NodeType> for u8 {
    fn from(t: NodeType) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for NodeType {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Ok(match v {
            0 => NodeType::File,
            1 => NodeType::Dir,
            2 => NodeType::Symlink,
            3 => NodeType::CharDev,
            4 => NodeType::BlockDev,
            5 => NodeType::Fifo,
            6 => NodeType::Socket,
            _ => return Err(format!("unknown node type {v}")),
        })
    }
}

impl NodeType {
    pub fn name(self) -> &'static str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::CharDev => "chardev",
            NodeType::BlockDev => "blockdev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
        }
    }
}

/// One chunk of a file: where it starts, which blob, how many plaintext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef(pub u64, pub Id, pub u32);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<ChunkRef>>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<Id>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(rename = "n")]
    pub name: ByteBuf,
    #[serde(rename = "t")]
    pub kind: NodeType,
    #[serde(rename = "m")]
    pub mode: u32,
    #[serde(rename = "u")]
    pub uid: u32,
    #[serde(rename = "g")]
    pub gid: u32,
    #[serde(rename = "mt")]
    pub mtime: i64,
    #[serde(rename = "ct")]
    pub ctime: i64,
    pub ino: u64,
    pub dev: u64,
    #[serde(rename = "nl")]
    pub nlink: u64,
    #[serde(rename = "sz", default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(rename = "sub", default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    #[serde(rename = "tg", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ByteBuf>,
    #[serde(rename = "rd", default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    #[serde(rename = "x", default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(ByteBuf, ByteBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub v: u32,
    #[serde(rename = "e")]
    pub entries: Vec<Entry>,
}

pub fn to_cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serialising our own plain structs into a Vec cannot fail.
    ciborium::into_writer(v, &mut out).expect("CBOR encoding into memory");
    out
}

pub fn from_cbor<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, String> {
    ciborium::from_reader(b).map_err(|e| format!("malformed CBOR: {e}"))
}

impl Tree {
    pub fn new(mut entries: Vec<Entry>) -> Tree {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Tree { v: 1, entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    pub fn decode(b: &[u8]) -> Result<Tree, String> {
        let t: Tree = from_cbor(b)?;
        if t.v != 1 {
            return Err(format!("unknown tree version {}", t.v));
        }
        for w in t.entries.windows(2) {
            if w[0].name >= w[1].name {
                return Err("entries are not sorted by name or not unique".into());
            }
        }
        for e in &t.entries {
            if e.name.is_empty()
                || e.name.contains(&b'/')
                || e.name.contains(&0)
                || &e.name[..] == b"."
                || &e.name[..] == b".."
            {
                return Err(format!(
                    "invalid entry name {:?}",
                    String::from_utf8_lossy(&e.name)
                ));
            }
        }
        Ok(t)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Cut a chunk list into content-defined pieces (format.md 8.3).
pub fn split_chunk_list(chunks: &[ChunkRef]) -> Vec<&[ChunkRef]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in chunks.iter().enumerate() {
        if c.1.is_list_cut() || i + 1 - start >= MAX_LIST_PIECE {
            out.push(&chunks[start..=i]);
            start = i + 1;
        }
    }
    if start < chunks.len() {
        out.push(&chunks[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8]) -> Entry {
        Entry {
            name: ByteBuf::from(name.to_vec()),
            kind: NodeType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000_123_456_789,
            ctime: 0,
            ino: 1,
            dev: 2,
            nlink: 1,
            size: Some(3),
            content: Some(Content {
                chunks: Some(vec![ChunkRef(0, Id([7; 32]), 3)]),
                lists: None,
            }),
            subtree: None,
            target: None,
            rdev: None,
            xattrs: vec![(
                ByteBuf::from(b"user.a".to_vec()),
                ByteBuf::from(vec![0, 255]),
            )],
        }
    }

    #[test]
    fn tree_round_trip_sorted_with_raw_names() {
        let t = Tree::new(vec![entry(b"\xff\xfe"), entry(b"a b"), entry(b"-x")]);
        let b = t.encode();
        let back = Tree::decode(&b).expect("decode");
        assert_eq!(back, t);
        assert!(back.find(b"\xff\xfe").is_some());
        assert!(back.find(b"nope").is_none());
    }

    #[test]
    fn invalid_names_and_order_are_rejected() {
        let mut t = Tree::new(vec![entry(b"a"), entry(b"b")]);
        t.entries.swap(0, 1);
        assert!(Tree::decode(&t.encode()).is_err());
        let t = Tree::new(vec![entry(b"a/b")]);
        assert!(Tree::decode(&t.encode()).is_err());
        assert!(Tree::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn chunk_list_split_is_content_defined() {
        let ids: Vec<ChunkRef> = (0..20_000u32)
            .map(|i| ChunkRef(i as u64, Id::digest(&i.to_le_bytes()), 1))
            .collect();
        let pieces = split_chunk_list(&ids);
        assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), ids.len());
        assert!(pieces.iter().all(|p| p.len() <= MAX_LIST_PIECE));
        // Dropping the first element only changes the first piece.
        let pieces2 = split_chunk_list(&ids[1..]);
        assert_eq!(pieces[1..], pieces2[1..]);
    }
}
