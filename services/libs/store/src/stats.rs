//! Vault statistics: logical size of all snapshots, stored size, dedup and compression ratios.

use crate::error::Result;
use crate::id::IdMap;
use crate::tree::NodeType;
use crate::vault::Vault;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub snapshots: u64,
    /// Sum of the sizes of every file in every snapshot.
    pub logical_bytes: u64,
    /// Bytes of unique chunk plaintext (after dedup, before compression).
    pub unique_bytes: u64,
    /// Bytes of all pack files.
    pub stored_bytes: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    pub chunks: u64,
    pub blobs: u64,
    pub packs: u64,
}

pub fn stats(vault: &Vault) -> Result<Stats> {
    let (snaps, _) = vault.snapshots()?;
    let mut chunks: IdMap<u32> = IdMap::default();
    let mut st = Stats {
        snapshots: snaps.len() as u64,
        ..Stats::default()
    };
    let mut seen_trees = crate::id::IdSet::default();
    for s in &snaps {
        st.logical_bytes += s.body.summary.bytes;
        let mut stack = vec![s.body.root];
        while let Some(t) = stack.pop() {
            if !seen_trees.insert(t) {
                continue;
            }
            let tree = vault.read_tree(&t)?;
            for e in &tree.entries {
                if let Some(c) = &e.content {
                    for ch in vault.chunk_list(c)? {
                        chunks.insert(ch.1, ch.2);
                    }
                }
                if let (NodeType::Dir, Some(sub)) = (e.kind, e.subtree) {
                    stack.push(sub);
                }
            }
        }
    }
    st.chunks = chunks.len() as u64;
    st.unique_bytes = chunks.values().map(|&l| l as u64).sum();
    let mut data_stored = 0u64;
    let mut blobs = 0u64;
    vault.index().for_each(|_, loc| {
        blobs += 1;
        if loc.kind == crate::blob::Kind::Data {
            data_stored += loc.len as u64;
        }
    })?;
    st.blobs = blobs;
    st.packs = vault.index().live_packs().count() as u64;
    st.stored_bytes = vault.index().live_packs().map(|p| p.len).sum();
    st.dedup_ratio = if st.unique_bytes > 0 {
        st.logical_bytes as f64 / st.unique_bytes as f64
    } else {
        1.0
    };
    st.compression_ratio = if data_stored > 0 {
        st.unique_bytes as f64 / data_stored as f64
    } else {
        1.0
    };
    Ok(st)
}
