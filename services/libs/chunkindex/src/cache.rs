//! A bounded cache of verified pages, shared by lookup threads.
//!
//! Direct-mapped and sharded: a page goes to one slot chosen by (run, page number); a newer
//! page evicts the older one. Keys are uniform, so hits come from repeated lookups of the same
//! chunks (a backup of a tree seen before), not from locality; this keeps the cache's
//! bookkeeping at 16 bytes per 4 KiB slot and lock hold times at one page search.

use std::sync::Mutex;

use crate::run::PAGE;

const SHARDS: usize = 16;

struct Shard {
    /// (run sequence + 1, page number); 0 = empty. Sequences are never reused, so pages of a
    /// removed run are never hit again and need no invalidation.
    tags: Vec<(u64, u64)>,
    data: Vec<u8>,
}

pub(crate) struct PageCache {
    shards: Vec<Mutex<Shard>>,
    slots: usize,
}

impl PageCache {
    /// A cache of at most `bytes` (rounded down to whole slots; below one slot per shard it is
    /// off).
    pub(crate) fn new(bytes: u64) -> PageCache {
        let slots = (bytes / (PAGE as u64 + 16) / SHARDS as u64) as usize;
        let shards = if slots == 0 {
            Vec::new()
        } else {
            (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tags: vec![(0, 0); slots],
                        data: vec![0; slots * PAGE],
                    })
                })
                .collect()
        };
        PageCache { shards, slots }
    }

    pub(crate) fn bytes(&self) -> u64 {
        (self.shards.len() * self.slots * (PAGE + 16)) as u64
    }

    fn place(&self, seq: u64, page: u64) -> (usize, usize) {
        let h = (page ^ seq.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let h = (h >> 32) as usize;
        (h % SHARDS, (h / SHARDS) % self.slots)
    }

    /// Run `f` on the cached page, if present.
    pub(crate) fn with<R>(&self, seq: u64, page: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.shards.is_empty() {
            return None;
        }
        let (s, i) = self.place(seq, page);
        let shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
        (shard.tags[i] == (seq + 1, page)).then(|| f(&shard.data[i * PAGE..(i + 1) * PAGE]))
    }

    /// Store a page that passed its checks.
    pub(crate) fn put(&self, seq: u64, page: u64, bytes: &[u8]) {
        if self.shards.is_empty() {
            return;
        }
        let (s, i) = self.place(seq, page);
        let mut shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
        shard.tags[i] = (seq + 1, page);
        shard.data[i * PAGE..(i + 1) * PAGE].copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_off() {
        let c = PageCache::new(1 << 20);
        assert!(c.bytes() <= 1 << 20 && c.bytes() > 0);
        let page = vec![7u8; PAGE];
        c.put(3, 9, &page);
        assert_eq!(c.with(3, 9, |p| p[0]), Some(7));
        assert_eq!(c.with(4, 9, |p| p[0]), None);
        let off = PageCache::new(1000);
        off.put(3, 9, &page);
        assert_eq!(off.with(3, 9, |p| p[0]), None);
        assert_eq!(off.bytes(), 0);
    }
}
