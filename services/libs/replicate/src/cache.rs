//! The source-side cache of blob ids a target is known to hold, so a daily incremental asks
//! the target about new blobs only. It is a hint: a stale entry (the target collected the
//! blob since) makes the target refuse the snapshot, and the driver then asks again without
//! the cache. Eight bytes of each id are enough for that.
//!
//! Its memory is bounded by the hardware tier's dedup cache size (the seed's Table 9, in the
//! appliance config `vaultctl provision` writes): past the bound, arbitrary entries are
//! dropped, which only costs Have queries for them later.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tiervault_store::Id;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"TVKNOWN1";

/// Bytes of memory one cached id is accounted at (a hash set of u64: the key, its control
/// byte, the load factor and growth slack).
pub const BYTES_PER_ENTRY: u64 = 16;

/// The bound when no appliance config names one: Table 9's smallest size (4 GB).
pub const DEFAULT_BUDGET_BYTES: u64 = 4 << 30;

/// Where a cache bound came from (for logs and `--json`).
pub use tiervault_model::SettingSource as BudgetSource;

/// The cache's memory bound: `explicit` if given, else the appliance config's dedup cache
/// size (the tier's Table 9 figure) when `appliance` exists, else the default.
pub fn budget(explicit: Option<u64>, appliance: &Path) -> Result<(u64, BudgetSource)> {
    Ok(tiervault_model::setting(
        explicit,
        appliance,
        |plan| plan.dedup_cache_bytes,
        DEFAULT_BUDGET_BYTES,
    )?)
}

pub struct KnownCache {
    path: PathBuf,
    ids: HashSet<u64>,
    max_entries: usize,
    dirty: bool,
}

fn key(id: &Id) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(a)
}

impl KnownCache {
    /// The cache file for `target` inside vault `root` (`replication/<hash>.known`).
    pub fn path_for(root: &Path, target: &str) -> PathBuf {
        let h = blake3::hash(target.as_bytes());
        root.join("replication")
            .join(format!("{}.known", hex::encode(&h.as_bytes()[..8])))
    }

    /// Load the cache bounded by [`DEFAULT_BUDGET_BYTES`]; a missing or damaged file is an
    /// empty cache.
    pub fn load(path: PathBuf) -> KnownCache {
        Self::load_within(path, DEFAULT_BUDGET_BYTES)
    }

    /// Load the cache, keeping at most `budget_bytes` of memory for it.
    pub fn load_within(path: PathBuf, budget_bytes: u64) -> KnownCache {
        let ids = match std::fs::read(&path) {
            Ok(b) if b.len() >= 8 && &b[..8] == MAGIC && (b.len() - 8) % 8 == 0 => b[8..]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Ok(_) => {
                tracing::warn!(
                    "{}: damaged replication cache, starting empty",
                    path.display()
                );
                HashSet::new()
            }
            Err(_) => HashSet::new(),
        };
        let max_entries = usize::try_from(budget_bytes / BYTES_PER_ENTRY).unwrap_or(usize::MAX);
        let mut c = KnownCache {
            path,
            ids,
            max_entries,
            dirty: false,
        };
        c.trim();
        c
    }

    /// The most ids this cache keeps.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Drop arbitrary entries beyond the bound (ids are uniform, so the set's iteration order
    /// is as good as random).
    fn trim(&mut self) {
        let excess = self.ids.len().saturating_sub(self.max_entries);
        if excess == 0 {
            return;
        }
        let victims: Vec<u64> = self.ids.iter().take(excess).copied().collect();
        for v in victims {
            self.ids.remove(&v);
        }
        self.ids.shrink_to(self.max_entries);
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.ids.contains(&key(id))
    }

    pub fn insert_all<'a>(&mut self, ids: impl IntoIterator<Item = &'a Id>) {
        for id in ids {
            self.dirty |= self.ids.insert(key(id));
        }
        self.trim();
    }

    pub fn remove_all<'a>(&mut self, ids: impl IntoIterator<Item = &'a Id>) {
        for id in ids {
            self.dirty |= self.ids.remove(&key(id));
        }
    }

    /// Write the cache (tmp + rename: a crash leaves the old or the new one, never a mix).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let io = |op, path: &Path, source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        }
        let mut keys: Vec<u64> = self.ids.iter().copied().collect();
        keys.sort_unstable();
        let mut b = Vec::with_capacity(8 + keys.len() * 8);
        b.extend_from_slice(MAGIC);
        for k in keys {
            b.extend_from_slice(&k.to_le_bytes());
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, &b).map_err(|e| io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("renaming", &self.path, e))?;
        // No fsync: a cache lost in a crash is only a slower next run.
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = KnownCache::path_for(tmp.path(), "remote://x");
        let mut c = KnownCache::load(path.clone());
        assert!(c.is_empty());
        c.insert_all(&[Id([1; 32]), Id([2; 32])]);
        c.save().expect("save");
        let mut d = KnownCache::load(path.clone());
        assert!(d.contains(&Id([1; 32])) && d.contains(&Id([2; 32])));
        d.remove_all(&[Id([1; 32])]);
        d.save().expect("save");
        assert!(!KnownCache::load(path.clone()).contains(&Id([1; 32])));
        std::fs::write(&path, b"garbage").expect("write");
        assert!(KnownCache::load(path).is_empty());
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_fits() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("c.known");
        let id = |i: u32| Id(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let mut c = KnownCache::load_within(path.clone(), 100 * BYTES_PER_ENTRY);
        assert_eq!(c.capacity(), 100);
        let first: Vec<Id> = (0..60).map(id).collect();
        c.insert_all(&first);
        assert!(
            first.iter().all(|i| c.contains(i)),
            "under the bound nothing is dropped"
        );
        let more: Vec<Id> = (60..1000).map(id).collect();
        c.insert_all(&more);
        assert_eq!(c.len(), 100);
        let known = (0..1000).map(id).filter(|i| c.contains(i)).count();
        assert_eq!(known, 100, "every kept entry is one that was inserted");
        c.save().expect("save");
        // A smaller bound on load trims the file's contents too.
        let d = KnownCache::load_within(path, 10 * BYTES_PER_ENTRY);
        assert_eq!(d.len(), 10);
    }
}
