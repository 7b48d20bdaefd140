//! The insert buffer: an open-addressing table with linear probing, fixed capacity.
//!
//! Keys are uniform, so the home slot is the key's first 8 bytes scaled to the capacity (no
//! hashing). Its memory is exactly `capacity × 48` bytes plus one bit per slot; it is never
//! resized, only replaced by a new one after a flush. Flushing compacts the occupied slots to
//! the front and sorts them in place: no second buffer.

pub(crate) const ENTRY_BYTES: u64 = 48;
/// Flush when this share of the slots (in 1/8) is occupied: linear probing stays short.
const MAX_LOAD_EIGHTHS: usize = 6;

#[derive(Clone, Copy, Default)]
pub(crate) struct Entry {
    pub(crate) key: [u8; 32],
    pub(crate) value: [u8; 16],
}

pub(crate) struct MemTable {
    slots: Vec<Entry>,
    used: Vec<u64>,
    len: usize,
}

pub(crate) fn prefix(key: &[u8; 32]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[..8]);
    u64::from_be_bytes(a)
}

impl MemTable {
    pub(crate) fn with_capacity(slots: usize) -> MemTable {
        MemTable {
            slots: vec![Entry::default(); slots],
            used: vec![0; slots.div_ceil(64)],
            len: 0,
        }
    }

    /// Memory held for `slots` slots.
    pub(crate) fn bytes_for(slots: u64) -> u64 {
        slots * ENTRY_BYTES + slots.div_ceil(64) * 8
    }

    pub(crate) fn bytes(&self) -> u64 {
        Self::bytes_for(self.slots.len() as u64)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Entries the table takes before it must be flushed.
    pub(crate) fn limit_for(slots: usize) -> usize {
        slots / 8 * MAX_LOAD_EIGHTHS
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= Self::limit_for(self.slots.len())
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    /// The slot holding `key`, or the empty slot where it would go. The table is never full
    /// (`is_full` triggers a flush first), so the probe ends.
    fn find(&self, key: &[u8; 32]) -> (usize, bool) {
        let n = self.slots.len();
        let mut i = ((prefix(key) as u128 * n as u128) >> 64) as usize;
        loop {
            if !self.is_used(i) {
                return (i, false);
            }
            if self.slots[i].key == *key {
                return (i, true);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<[u8; 16]> {
        // An empty table (just after open or a flush) costs no memory access.
        if self.len == 0 {
            return None;
        }
        match self.find(key) {
            (i, true) => Some(self.slots[i].value),
            _ => None,
        }
    }

    /// Insert or overwrite; true when the key was not in the table. The caller checks
    /// `is_full` before (a table of capacity 0 takes nothing).
    pub(crate) fn insert(&mut self, key: &[u8; 32], value: [u8; 16]) -> bool {
        debug_assert!(self.len < self.slots.len());
        let (i, found) = self.find(key);
        self.slots[i] = Entry { key: *key, value };
        if !found {
            self.used[i / 64] |= 1 << (i % 64);
            self.len += 1;
        }
        !found
    }

    /// Compact and sort in place; the table is unusable as a hash table afterwards (the caller
    /// drops it).
    pub(crate) fn into_sorted(mut self) -> SortedEntries {
        let mut w = 0;
        for r in 0..self.slots.len() {
            if self.is_used(r) {
                self.slots.swap(w, r);
                w += 1;
            }
        }
        self.slots.truncate(w);
        self.slots.sort_unstable_by_key(|e| e.key);
        SortedEntries(self.slots)
    }
}

pub(crate) struct SortedEntries(pub(crate) Vec<Entry>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_overwrite_and_sort() {
        let mut m = MemTable::with_capacity(64);
        let k = |i: u8| {
            let mut k = [0u8; 32];
            k[0] = i.wrapping_mul(37);
            k[31] = i;
            k
        };
        for i in 0..48u8 {
            assert!(m.insert(&k(i), [i; 16]));
        }
        assert!(!m.insert(&k(3), [99; 16]));
        assert_eq!(m.len(), 48);
        assert_eq!(m.get(&k(3)), Some([99; 16]));
        assert_eq!(m.get(&k(200)), None);
        assert!(m.is_full());
        let sorted = m.into_sorted().0;
        assert_eq!(sorted.len(), 48);
        assert!(sorted.windows(2).all(|w| w[0].key < w[1].key));
    }
}
