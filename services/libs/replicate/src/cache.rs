//! The source-side cache of blob ids a target is known to hold, so a daily incremental asks
//! the target about new blobs only. It is a hint: a stale entry (the target collected the
//! blob since) makes the target refuse the snapshot, and the driver then asks again without
//! the cache. Eight bytes of each id are enough for that.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tiervault_store::Id;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"TVKNOWN1";

pub struct KnownCache {
    path: PathBuf,
    ids: HashSet<u64>,
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

    /// Load the cache; a missing or damaged file is an empty cache.
    pub fn load(path: PathBuf) -> KnownCache {
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
        KnownCache {
            path,
            ids,
            dirty: false,
        }
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
}
