//! The chunk index: where each blob is stored. The durable truth is the index parts
//! (`part`, docs/format.md section 6); lookups go to the index cache (`cache`: on disk,
//! within a memory budget, section 6.2) and to an in-memory overlay of what this session
//! wrote or could not absorb into the cache.

use crate::blob::Kind;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::id::{Id, IdMap, PackId};
use crate::pack::PackEntry;

pub(crate) mod cache;
pub(crate) mod part;

pub use cache::{CacheStatus, RefreshReport, MIN_BUDGET};
pub(crate) use part::encode_part;

/// A pack as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: PackId,
    pub dir: u16,
    pub len: u64,
    pub entries: Vec<PackEntry>,
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// A row of the index's pack table ([`Index::pack`]).
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
    pub kind: Kind,
}

/// One pack's row in the index's pack table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRef {
    pub id: PackId,
    pub dir: u16,
    pub len: u64,
}

/// Memory budget of the index cache when nothing sets one: enough for ~100 M blobs
/// (12 TiB at 128 KiB chunks). Appliances set their tier's budget ([`set_budget`]).
pub const DEFAULT_BUDGET: u64 = 256 << 20;
static BUDGET: AtomicU64 = AtomicU64::new(DEFAULT_BUDGET);

/// Set the index cache's memory budget for vaults opened from now on in this process
/// (the tier's `index-budget`; at least [`MIN_BUDGET`]).
pub fn set_budget(bytes: u64) {
    BUDGET.store(bytes.max(MIN_BUDGET), Ordering::Relaxed);
}

pub fn budget() -> u64 {
    BUDGET.load(Ordering::Relaxed)
}

/// Bytes of heap per overlay entry and per pack row (map slot, key, value, growth slack).
const OVERLAY_ENTRY_BYTES: u64 = 80;
const ROW_BYTES: u64 = 80;

/// Where every blob is: the index cache's committed entries, hidden packs (condemned by a
/// pending collection, or deleted by a finished one the cache has not caught up with), and
/// the overlay. Pack numbers in [`Location`] are rows of one table shared by both.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackRef>,
    pack_pos: HashMap<PackId, u32>,
    hidden: Vec<bool>,
    cache: Option<cache::View>,
    overlay: IdMap<Location>,
    /// Per data directory: unusable in this session (its packs cannot be read now).
    dir_down: Vec<bool>,
    /// Some data directory is down: lookups prefer copies elsewhere. False keeps the
    /// common case at one branch per lookup.
    degraded: bool,
}

impl Index {
    /// The index over the cache `view` (if any) and the parts named `current` in
    /// `index_dir`: parts the cache has not absorbed go to the overlay. Returns the problems
    /// met (unreadable parts).
    pub(crate) fn build(
        index_dir: &Path,
        view: Option<cache::View>,
        current: &BTreeSet<String>,
        condemned: &HashSet<PackId>,
    ) -> Result<(Index, Vec<String>)> {
        let mut idx = Index::default();
        let mut absorbed = BTreeSet::new();
        if let Some(mut v) = view {
            idx.packs = std::mem::take(&mut v.rows);
            idx.pack_pos = idx
                .packs
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id, i as u32))
                .collect();
            idx.hidden = vec![false; idx.packs.len()];
            absorbed = std::mem::take(&mut v.absorbed);
            // Parts created after we listed are live; only vanished ones are gone.
            let gone = absorbed
                .iter()
                .any(|n| !current.contains(n) && !index_dir.join(n).exists());
            if gone {
                let existing: BTreeSet<String> = absorbed
                    .iter()
                    .filter(|n| current.contains(*n) || index_dir.join(n).exists())
                    .chain(current.iter())
                    .cloned()
                    .collect();
                let live = cache::live_rows(index_dir, &existing, &idx.pack_pos, idx.packs.len())?;
                for (h, l) in idx.hidden.iter_mut().zip(live) {
                    *h = !l;
                }
            }
            idx.cache = Some(v);
        }
        for p in condemned {
            if let Some(&r) = idx.pack_pos.get(p) {
                idx.hidden[r as usize] = true;
            }
        }
        let mut problems = Vec::new();
        for name in current.difference(&absorbed) {
            // Checked whole first: entries of a damaged part must not be used.
            let packs = match part::scan_part(index_dir, name, None) {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    problems.push(format!("index part {name}: {e}"));
                    continue;
                }
                // Replaced by a collection since we listed: its successor is listed too or
                // was absorbed.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            idx.add_part(index_dir, name, packs, condemned)?;
        }
        Ok((idx, problems))
    }

    fn add_pack(&mut self, p: PackRef) -> u32 {
        if let Some(&i) = self.pack_pos.get(&p.id) {
            return i;
        }
        let i = self.packs.len() as u32;
        self.pack_pos.insert(p.id, i);
        self.packs.push(p);
        self.hidden.push(false);
        i
    }

    /// Add a checked part's packs and entries to the overlay, leaving out the packs in
    /// `skip` (condemned by a garbage collection: this session must neither dedup against
    /// nor read them).
    fn add_part(
        &mut self,
        index_dir: &Path,
        name: &str,
        packs: Vec<PackRef>,
        skip: &HashSet<PackId>,
    ) -> Result<()> {
        let nums: Vec<Option<u32>> = packs
            .into_iter()
            .map(|p| (!skip.contains(&p.id)).then(|| self.add_pack(p)))
            .collect();
        let overlay = &mut self.overlay;
        let mut add = |(id, pack, offset, len, kind): part::PartEntry| {
            if let Some(pack) = nums[pack as usize] {
                overlay.entry(id).or_insert(Location {
                    pack,
                    offset,
                    len,
                    kind,
                });
            }
            Ok(())
        };
        match part::scan_part(index_dir, name, Some(&mut add))? {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::CorruptIndex {
                name: name.to_string(),
                reason: format!("changed while being read: {e}"),
            }),
        }
    }

    /// Make a pack this session wrote visible.
    pub fn add_pack_info(&mut self, p: &PackInfo) {
        let n = self.add_pack(PackRef {
            id: p.id,
            dir: p.dir,
            len: p.len,
        });
        for e in &p.entries {
            self.overlay.entry(e.id).or_insert(Location {
                pack: n,
                offset: e.offset,
                len: e.len,
                kind: e.kind,
            });
        }
    }

    fn is_hidden(&self, row: u32) -> bool {
        self.hidden.get(row as usize).copied().unwrap_or(true)
    }

    /// Mark the data directories this session cannot use (`down[d]`): their packs stay
    /// visible (a missing mount is not a deleted pack) but every lookup prefers a copy
    /// elsewhere, and [`Index::get_available`] ignores them.
    pub(crate) fn set_unavailable_dirs(&mut self, down: Vec<bool>) {
        self.degraded = down.iter().any(|d| *d);
        self.dir_down = down;
    }

    /// True when the pack in `row` lies in a data directory this session cannot use (one
    /// the config does not list counts as such).
    pub fn row_unavailable(&self, row: u32) -> bool {
        self.degraded
            && self
                .packs
                .get(row as usize)
                .is_none_or(|p| self.dir_down.get(p.dir as usize).copied().unwrap_or(true))
    }

    /// The cache's value for `id` as a location in a visible pack (its other copies are
    /// tried when the first is hidden), preferring one in a usable data directory.
    fn resolve(&self, c: &cache::View, id: &[u8; 32], v: [u8; 16]) -> Result<Option<Location>> {
        if self.degraded {
            let usable = |row| self.is_hidden(row) || self.row_unavailable(row);
            if let Some(l) = self.resolve_with(c, id, v, &usable)? {
                return Ok(Some(l));
            }
        }
        self.resolve_with(c, id, v, &|row| self.is_hidden(row))
    }

    /// As `resolve`, hiding the rows `hidden` names.
    fn resolve_with(
        &self,
        c: &cache::View,
        id: &[u8; 32],
        v: [u8; 16],
        hidden: &dyn Fn(u32) -> bool,
    ) -> Result<Option<Location>> {
        let visible = |v: &[u8; 16]| cache::decode_value(v).is_some_and(|l| !hidden(l.pack));
        let v = if visible(&v) {
            v
        } else {
            match cache::live_alt(&c.alts, id, &visible)? {
                Some(a) => a,
                None => return Ok(None),
            }
        };
        match cache::decode_value(&v) {
            Some(l) if (l.pack as usize) < self.packs.len() => Ok(Some(l)),
            _ => Err(Error::CorruptIndex {
                name: cache::DIR.into(),
                reason: format!("entry of blob {} names no pack", Id(*id).hex()),
            }),
        }
    }

    pub fn get(&self, id: &Id) -> Result<Option<Location>> {
        self.get_with(id, &|row| self.is_hidden(row))
    }

    /// Where `id` is, in a usable data directory; `None` also when its only copies are in
    /// unusable ones. Dedup asks this: a blob whose array is not mounted is stored again,
    /// so what is written now does not depend on that array.
    pub fn get_available(&self, id: &Id) -> Result<Option<Location>> {
        Ok(self.get(id)?.filter(|l| !self.row_unavailable(l.pack)))
    }

    /// True when `id` has a copy in a usable data directory (see [`Index::get_available`]).
    pub fn contains_available(&self, id: &Id) -> Result<bool> {
        Ok(self.get_available(id)?.is_some())
    }

    /// Where `id` is, among the packs `hidden` does not name (a collection hides the packs
    /// it condemns; `|_| false` finds condemned and dead copies too). A copy in a usable
    /// data directory is preferred.
    pub fn get_with(&self, id: &Id, hidden: &dyn Fn(u32) -> bool) -> Result<Option<Location>> {
        if self.degraded {
            let usable = |row| hidden(row) || self.row_unavailable(row);
            if let Some(l) = self.get_with_plain(id, &usable)? {
                return Ok(Some(l));
            }
        }
        self.get_with_plain(id, hidden)
    }

    fn get_with_plain(&self, id: &Id, hidden: &dyn Fn(u32) -> bool) -> Result<Option<Location>> {
        if let Some(l) = self.overlay.get(id) {
            if !hidden(l.pack) {
                return Ok(Some(*l));
            }
        }
        let Some(c) = &self.cache else {
            return Ok(None);
        };
        match c.primary.get(&id.0).map_err(Error::IndexCache)? {
            Some(v) => self.resolve_with(c, &id.0, v, hidden),
            None => Ok(None),
        }
    }

    /// Where each of `ids` is (visible packs only), for ids in ascending order: one pass
    /// over the cache in key order instead of a lookup each (a collection's live set).
    pub fn join_sorted(
        &self,
        ids: impl Iterator<Item = Result<Id>>,
        mut f: impl FnMut(&Id, Option<Location>),
    ) -> Result<()> {
        let mut cached = match &self.cache {
            Some(c) => Some((c, c.primary.iter_committed().map_err(Error::IndexCache)?)),
            None => None,
        };
        let mut head: Option<([u8; 32], [u8; 16])> = None;
        for id in ids {
            let id = id?;
            let mut loc = self
                .overlay
                .get(&id)
                .copied()
                .filter(|l| !self.is_hidden(l.pack));
            // An overlay copy in an unusable directory: the cache may know a usable one.
            let fallback = loc.filter(|l| self.row_unavailable(l.pack));
            if fallback.is_some() {
                loc = None;
            }
            if let (None, Some((c, it))) = (loc, cached.as_mut()) {
                while head.as_ref().is_none_or(|(k, _)| *k < id.0) {
                    match it.next() {
                        Some(e) => head = Some(e.map_err(Error::IndexCache)?),
                        None => break,
                    }
                }
                if let Some((k, v)) = head {
                    if k == id.0 {
                        loc = self.resolve(c, &k, v)?;
                    }
                }
            }
            if loc.is_none_or(|l| self.row_unavailable(l.pack)) {
                loc = fallback.or(loc);
            }
            f(&id, loc);
        }
        Ok(())
    }

    /// Look many ids up at once: the cache reads each page once for all the ids on it, with
    /// several reads in flight.
    pub fn get_many(&self, ids: &[Id]) -> Result<Vec<Option<Location>>> {
        if self.degraded {
            // Rare (an array is missing): the preference logic of `get` per id.
            return ids.iter().map(|id| self.get(id)).collect();
        }
        let mut out = vec![None; ids.len()];
        let mut ask = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match self.overlay.get(id) {
                Some(l) if !self.is_hidden(l.pack) => out[i] = Some(*l),
                _ => ask.push(i),
            }
        }
        if let Some(c) = &self.cache {
            let keys: Vec<[u8; 32]> = ask.iter().map(|&i| ids[i].0).collect();
            let got = c.primary.get_many(&keys).map_err(Error::IndexCache)?;
            for (&i, v) in ask.iter().zip(got) {
                if let Some(v) = v {
                    out[i] = self.resolve(c, &ids[i].0, v)?;
                }
            }
        }
        Ok(out)
    }

    /// The row of the pack with this id, visible or not.
    pub fn pack_row(&self, id: &PackId) -> Option<u32> {
        self.pack_pos.get(id).copied()
    }

    /// Rows in the pack table (visible or not).
    pub fn pack_rows(&self) -> usize {
        self.packs.len()
    }

    pub fn contains(&self, id: &Id) -> Result<bool> {
        Ok(self.get(id)?.is_some())
    }

    /// A pack row (the `pack` of a [`Location`] this index returned).
    pub fn pack(&self, row: u32) -> &PackRef {
        &self.packs[row as usize]
    }

    /// A pack row, `None` when out of range.
    pub fn pack_ref(&self, row: u32) -> Option<&PackRef> {
        self.packs.get(row as usize)
    }

    /// True when a visible pack has this id.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_pos.get(id).is_some_and(|&r| !self.is_hidden(r))
    }

    /// The packs this session can read.
    pub fn live_packs(&self) -> impl Iterator<Item = &PackRef> {
        self.packs
            .iter()
            .zip(&self.hidden)
            .filter(|(_, h)| !**h)
            .map(|(p, _)| p)
    }

    /// Every visible blob once, in no particular order (a full scan of the cache).
    pub fn for_each(&self, mut f: impl FnMut(&Id, &Location)) -> Result<()> {
        for (id, l) in &self.overlay {
            if self.is_hidden(l.pack) {
                continue;
            }
            if self.row_unavailable(l.pack) {
                // The cache may hold a copy in a usable directory (`get` prefers it).
                if let Some(better) = self.get(id)? {
                    f(id, &better);
                }
                continue;
            }
            f(id, l);
        }
        if let Some(c) = &self.cache {
            for e in c.primary.iter_committed().map_err(Error::IndexCache)? {
                let (k, v) = e.map_err(Error::IndexCache)?;
                let id = Id(k);
                if self.overlay.contains_key(&id) {
                    continue;
                }
                if let Some(l) = self.resolve(c, &k, v)? {
                    f(&id, &l);
                }
            }
        }
        Ok(())
    }

    /// Entries held, counting hidden ones and ids held twice (no scan: for sizing).
    pub fn approx_len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.primary.len()) + self.overlay.len() as u64
    }

    /// Visible blobs (a full scan).
    pub fn count(&self) -> Result<u64> {
        let mut n = 0;
        self.for_each(|_, _| n += 1)?;
        Ok(n)
    }

    /// Heap bytes held: the cache's tables and buffers, the overlay and the pack table.
    pub fn memory_used(&self) -> u64 {
        self.cache.as_ref().map_or(0, cache::View::memory_used)
            + self.overlay.len() as u64 * OVERLAY_ENTRY_BYTES
            + self.packs.len() as u64 * ROW_BYTES
    }

    /// True when lookups go to the on-disk cache (false: everything is in the overlay).
    pub fn cached(&self) -> bool {
        self.cache.is_some()
    }
}

#[cfg(test)]
mod tests;
