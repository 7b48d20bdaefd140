//! [`ChunkIndex`]: the memtable, the runs, the manifest and the memory budget together.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::cache::PageCache;
use crate::error::{Error, IoContext, Result};
use crate::filter::Filter;
use crate::manifest::{self, Manifest, RunRef};
use crate::memtable::MemTable;
use crate::run::{self, Merge, Run, RunWriter, PAGE};

/// Fixed allowance for I/O buffers (a run writer's 1 MiB, merge and scan read buffers, the
/// loader's 1 MiB): counted in [`ChunkIndex::memory_used`] from the start.
pub const IO_RESERVE: u64 = 3 << 20;
/// Smallest insert buffer worth having (slots).
const MIN_SLOTS: u64 = 1024;
/// Read buffers of merges and scans, shared among their inputs.
const READ_BUFFERS: u64 = 512 << 10;
const LOCK_NAME: &str = "LOCK";

/// Options for [`ChunkIndex::open`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Everything the index holds in memory stays within this many bytes.
    pub budget_bytes: u64,
    /// Filter bits per entry (6..=32). 16 gives about 0.1 % false positives per run.
    pub bits_per_entry: u32,
    /// Bytes of the page cache (part of the budget). `None`: 1/32 of the budget, at most
    /// 16 MiB.
    pub cache_bytes: Option<u64>,
    /// Threads `get_many` reads pages with: the reads in flight. Default 8; devices with
    /// deep queues (NVMe) gain from more.
    pub read_threads: usize,
    /// Most entries the insert buffer holds before it is flushed (`None`: as many as the
    /// budget allows). A writer that will insert few entries sets it so that opening does not
    /// allocate the whole budget.
    pub max_buffer_entries: Option<u64>,
}

impl Options {
    pub fn with_budget(budget_bytes: u64) -> Options {
        Options {
            budget_bytes,
            bits_per_entry: 16,
            cache_bytes: None,
            read_threads: 8,
            max_buffer_entries: None,
        }
    }
}

/// Sizes for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub runs: usize,
    /// Entries in the insert buffer (not yet in a run file).
    pub buffered: usize,
    pub memory_used: u64,
    /// The part of `memory_used` that grows with the entries: filters, fence and radix tables.
    pub table_bytes: u64,
    pub disk_bytes: u64,
}

/// An on-disk map from 32-byte uniform keys (keyed BLAKE3 chunk ids) to 16-byte values.
///
/// Lookups take `&self` and may run on several threads at once; `insert`, `commit`, `retain`
/// and `clear` take `&mut self` (callers that mix the two across threads put the index in a
/// `RwLock`).
pub struct ChunkIndex {
    dir: PathBuf,
    /// The directory's exclusive lock; None for a reader (`open_reader`).
    lock: Option<File>,
    opts: Options,
    /// Oldest first; a key in a later run shadows the same key in an earlier one.
    runs: Vec<Run>,
    mem: MemTable,
    cache: PageCache,
    /// Distinct keys (buffered ones included).
    len: u64,
    committed: Manifest,
    next_seq: u64,
    poisoned: bool,
}

impl ChunkIndex {
    /// Open (or create) the index in `dir` for reading and writing; one such handle per
    /// directory at a time (`Locked` otherwise). Files not named by the last committed
    /// manifest are removed: the index comes back exactly as of its last
    /// [`commit`](Self::commit).
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<ChunkIndex> {
        let dir = dir.as_ref().to_path_buf();
        check_options(&opts)?;
        std::fs::create_dir_all(&dir).ctx("create", &dir)?;
        let lock = lock_dir(&dir)?;
        let committed = Manifest::load(&dir)?.unwrap_or(Manifest {
            next_seq: 1,
            ..Manifest::default()
        });
        remove_strays(&dir, &committed)?;
        Self::load(dir, opts, committed, Some(lock))
    }

    /// Open the index as of its last commit for lookups only, beside the one writer (any
    /// number of readers; no lock taken, nothing removed). A writer's later commits are not
    /// seen (open again for that); run files it deletes stay readable through the open
    /// descriptors. A missing directory is an empty index.
    pub fn open_reader(dir: impl AsRef<Path>, opts: Options) -> Result<ChunkIndex> {
        let dir = dir.as_ref().to_path_buf();
        check_options(&opts)?;
        let mut attempts = 0;
        loop {
            let committed = match Manifest::load(&dir) {
                Ok(m) => m.unwrap_or_default(),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Manifest::default()
                }
                Err(e) => return Err(e),
            };
            match Self::load(dir.clone(), opts.clone(), committed, None) {
                // A writer replaced a run between our reading the manifest and opening it.
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempts < 8 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    fn load(
        dir: PathBuf,
        opts: Options,
        committed: Manifest,
        lock: Option<File>,
    ) -> Result<ChunkIndex> {
        let cache_bytes = opts
            .cache_bytes
            .unwrap_or((opts.budget_bytes / 32).min(16 << 20));
        let mut tables = 0u64;
        for r in &committed.runs {
            tables += Run::probe(&dir, r.seq)?.table_bytes;
        }
        let cache = PageCache::new(cache_bytes);
        // The insert buffer gets what is left; with nothing left the index still answers
        // lookups and `insert` reports `BudgetExhausted`.
        let needed = tables + cache.bytes() + IO_RESERVE;
        if needed > opts.budget_bytes {
            return Err(Error::BudgetTooSmall {
                budget: opts.budget_bytes,
                needed,
                entries: committed.len,
            });
        }
        let mut runs = Vec::with_capacity(committed.runs.len());
        for r in &committed.runs {
            let run = Run::open(&dir, r.seq)?;
            if run.entries != r.entries || run.file_len() != r.file_len {
                return Err(Error::corrupt(
                    &run.path,
                    "entry count or length differs from the manifest",
                ));
            }
            runs.push(run);
        }
        let mut index = ChunkIndex {
            dir,
            lock,
            len: committed.len,
            next_seq: committed.next_seq,
            committed,
            opts,
            runs,
            mem: MemTable::with_capacity(0),
            cache,
            poisoned: false,
        };
        if index.lock.is_some() {
            index.mem = MemTable::with_capacity(index.mem_slots() as usize);
        }
        Ok(index)
    }

    /// Bytes of memory held now (filters, page tables, insert buffer, cache, I/O reserve).
    /// Never above the budget.
    pub fn memory_used(&self) -> u64 {
        self.fixed_bytes() + self.mem.bytes()
    }

    pub fn budget(&self) -> u64 {
        self.opts.budget_bytes
    }

    /// Distinct keys, including inserted but not yet committed ones.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The watermark of the last commit (empty for a fresh index).
    pub fn watermark(&self) -> &[u8] {
        &self.committed.watermark
    }

    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.len,
            runs: self.runs.len(),
            buffered: self.mem.len(),
            memory_used: self.memory_used(),
            table_bytes: self.runs.iter().map(Run::table_bytes).sum(),
            disk_bytes: self.runs.iter().map(Run::file_len).sum(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check()?;
        if self.lock.is_none() {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn fixed_bytes(&self) -> u64 {
        self.runs.iter().map(Run::table_bytes).sum::<u64>() + self.cache.bytes() + IO_RESERVE
    }

    /// Largest insert buffer (slots) that, together with the run it flushes into, fits the
    /// budget next to what is held already; 0 if none of useful size does.
    fn mem_slots(&self) -> u64 {
        let avail = self.opts.budget_bytes.saturating_sub(self.fixed_bytes());
        let (mut lo, mut hi) = (0u64, avail / 48 + 1);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if slots_need(mid, self.opts.bits_per_entry) <= avail {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if let Some(max) = self.opts.max_buffer_entries {
            lo = lo.min((max.saturating_mul(8) / 6 + 1).max(MIN_SLOTS));
        }
        if lo < MIN_SLOTS {
            0
        } else {
            lo
        }
    }

    /// Change [`Options::max_buffer_entries`]. An empty insert buffer is resized at once;
    /// a filled one at its next flush.
    pub fn set_max_buffer_entries(&mut self, max: Option<u64>) {
        self.opts.max_buffer_entries = max;
        if self.lock.is_some() && self.mem.len() == 0 {
            self.mem = MemTable::with_capacity(0);
            self.mem = MemTable::with_capacity(self.mem_slots() as usize);
        }
    }

    /// Insert or overwrite `key`. Returns the value it replaced (`None` when the key is new).
    /// Buffered in memory; durable after the next [`commit`](Self::commit). May flush the
    /// buffer to a run file (and merge runs), and reads the disk when a filter cannot rule
    /// the key out.
    pub fn insert(&mut self, key: &[u8; 32], value: [u8; 16]) -> Result<Option<[u8; 16]>> {
        self.check_writable()?;
        if self.mem.capacity() == 0 {
            let slots = self.mem_slots();
            if slots == 0 {
                return Err(Error::BudgetExhausted {
                    budget: self.opts.budget_bytes,
                    entries: self.len,
                });
            }
            self.mem = MemTable::with_capacity(slots as usize);
        }
        let old = match self.mem.get(key) {
            Some(v) => Some(v),
            None => self.get_from_runs(key)?,
        };
        self.mem.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        if self.mem.is_full() {
            self.flush()?;
        }
        Ok(old)
    }

    /// The value of `key`. A "present" answer always comes from the full key, read back from
    /// its page (or the insert buffer): a filter false positive costs a read, never a wrong
    /// answer.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<[u8; 16]>> {
        self.check()?;
        if let Some(v) = self.mem.get(key) {
            return Ok(Some(v));
        }
        self.get_from_runs(key)
    }

    pub fn contains(&self, key: &[u8; 32]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    fn get_from_runs(&self, key: &[u8; 32]) -> Result<Option<[u8; 16]>> {
        for run in self.runs.iter().rev() {
            if run.filter.may_contain(key) {
                if let Some(v) = run.lookup(key, &self.cache)? {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    /// The newest run below `below` whose filter may hold `key`.
    fn next_candidate(&self, key: &[u8; 32], below: usize) -> Option<usize> {
        (0..below)
            .rev()
            .find(|&r| self.runs[r].filter.may_contain(key))
    }

    /// Look up many keys at once: reads are sorted by run and page (one read per page however
    /// many of the keys it answers) and spread over `read_threads` threads, so several reads
    /// are in flight.
    pub fn get_many(&self, keys: &[[u8; 32]]) -> Result<Vec<Option<[u8; 16]>>> {
        self.check()?;
        let mut out = vec![None; keys.len()];
        // (run, first candidate page, key index)
        let mut pending: Vec<(usize, u64, usize)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = self.mem.get(k) {
                out[i] = Some(v);
            } else if let Some(r) = self.next_candidate(k, self.runs.len()) {
                pending.push((r, self.runs[r].candidate_pages(k).start, i));
            }
        }
        while !pending.is_empty() {
            pending.sort_unstable();
            let threads = self
                .opts
                .read_threads
                .max(1)
                .min(pending.len().div_ceil(64));
            let results: Vec<Answer> = if threads <= 1 {
                self.resolve(&pending, keys)?
            } else {
                let per = pending.len().div_ceil(threads);
                std::thread::scope(|s| {
                    let handles: Vec<_> = pending
                        .chunks(per)
                        .map(|part| s.spawn(move || self.resolve(part, keys)))
                        .collect();
                    let mut all = Vec::with_capacity(pending.len());
                    for h in handles {
                        match h.join() {
                            Ok(r) => all.extend(r?),
                            Err(p) => std::panic::resume_unwind(p),
                        }
                    }
                    Ok::<_, Error>(all)
                })?
            };
            pending.clear();
            for (r, i, v) in results {
                match v {
                    Some(v) => out[i] = Some(v),
                    None => {
                        if let Some(r) = self.next_candidate(&keys[i], r) {
                            pending.push((r, self.runs[r].candidate_pages(&keys[i]).start, i));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Answer sorted (run, page, key) items; consecutive items on one page share one read.
    fn resolve(&self, items: &[(usize, u64, usize)], keys: &[[u8; 32]]) -> Result<Vec<Answer>> {
        let mut out = Vec::with_capacity(items.len());
        let mut page = vec![0u8; PAGE];
        let mut held: Option<(usize, u64, usize)> = None; // run, page number, entry count
        for &(r, _, i) in items {
            let run = &self.runs[r];
            let pages = run.candidate_pages(&keys[i]);
            let v = if pages.end - pages.start == 1 {
                let count = match held {
                    Some((hr, hp, count)) if hr == r && hp == pages.start => count,
                    _ => {
                        let count = run.load_page(pages.start, &mut page, &self.cache)?;
                        held = Some((r, pages.start, count));
                        count
                    }
                };
                Run::search(&page, count, &keys[i])
            } else {
                run.lookup(&keys[i], &self.cache)?
            };
            out.push((r, i, v));
        }
        Ok(out)
    }

    /// Flush buffered inserts to run files, then atomically replace the manifest with one
    /// naming the live runs and `watermark` (at most 64 KiB; opaque to the index). On return
    /// the index as it is now survives a crash.
    pub fn commit(&mut self, watermark: &[u8]) -> Result<()> {
        self.check_writable()?;
        if watermark.len() > manifest::MAX_WATERMARK {
            return Err(Error::Invalid("watermark longer than 64 KiB"));
        }
        self.flush()?;
        let m = Manifest {
            generation: self.committed.generation + 1,
            next_seq: self.next_seq,
            len: self.len,
            runs: self
                .runs
                .iter()
                .map(|r| RunRef {
                    seq: r.seq,
                    entries: r.entries,
                    file_len: r.file_len(),
                })
                .collect(),
            watermark: watermark.to_vec(),
        };
        m.store(&self.dir)?;
        // Runs the previous manifest named and this one does not are garbage now.
        let old = std::mem::replace(&mut self.committed, m);
        for r in old.runs {
            if !self.committed.runs.iter().any(|n| n.seq == r.seq) {
                remove_file(&self.dir.join(run::file_name(r.seq)))?;
            }
        }
        Ok(())
    }

    /// Keep only the entries for which `keep` returns true, rewriting all runs into one (a
    /// full compaction). Returns the number of entries dropped. Durable at the next commit.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8; 32], &[u8; 16]) -> bool) -> Result<u64> {
        self.check_writable()?;
        self.flush()?;
        if self.runs.is_empty() {
            return Ok(0);
        }
        let before = self.len;
        self.merge_from(0, &mut keep)?;
        self.len = self.runs.iter().map(|r| r.entries).sum();
        self.mem = MemTable::with_capacity(self.mem_slots() as usize);
        Ok(before - self.len)
    }

    /// Drop every entry (the start of a rebuild: clear, insert everything, commit).
    /// Durable at the next commit.
    pub fn clear(&mut self) -> Result<()> {
        self.check_writable()?;
        for run in std::mem::take(&mut self.runs) {
            self.discard(run)?;
        }
        self.len = 0;
        self.mem = MemTable::with_capacity(0);
        self.mem = MemTable::with_capacity(self.mem_slots() as usize);
        Ok(())
    }

    /// All entries in key order (flushes the insert buffer first). Every page read is
    /// checked; damage ends the iteration with an error.
    pub fn iter(&mut self) -> Result<Iter<'_>> {
        self.check()?;
        self.flush()?;
        self.iter_committed()
    }

    /// All entries in key order, through a shared reference: for readers (`open_reader`) and
    /// writers whose insert buffer is empty (`Invalid` otherwise: commit first).
    pub fn iter_committed(&self) -> Result<Iter<'_>> {
        self.check()?;
        if self.mem.len() != 0 {
            return Err(Error::Invalid("buffered inserts: commit before iterating"));
        }
        let chunk = chunk_pages(self.runs.len());
        let readers = self
            .runs
            .iter()
            .map(|r| r.reader(chunk))
            .collect::<Result<Vec<_>>>()?;
        Ok(Iter {
            merge: Some(Merge::new(readers)?),
            _index: std::marker::PhantomData,
        })
    }

    /// Write the insert buffer to a new run, then merge the two newest runs while the older
    /// is not of a higher size class (floor(log2(entries))) than the newer: size classes
    /// strictly decrease from the oldest run to the newest, so there are at most
    /// log2(entries / buffer) + 1 runs and each entry is rewritten about that often.
    fn flush(&mut self) -> Result<()> {
        if self.mem.len() == 0 {
            return Ok(());
        }
        self.poisoned = true;
        let mem = std::mem::replace(&mut self.mem, MemTable::with_capacity(0));
        let sorted = mem.into_sorted();
        let seq = self.take_seq();
        let mut w = RunWriter::create(
            &self.dir,
            seq,
            sorted.0.len() as u64,
            self.opts.bits_per_entry,
        )?;
        for e in &sorted.0 {
            w.push(&e.key, &e.value)?;
        }
        drop(sorted);
        self.runs.push(w.finish()?);
        while self.runs.len() >= 2
            && level(self.runs[self.runs.len() - 2].entries)
                <= level(self.runs[self.runs.len() - 1].entries)
        {
            self.merge_from(self.runs.len() - 2, &mut |_, _| true)?;
        }
        self.mem = MemTable::with_capacity(self.mem_slots() as usize);
        self.poisoned = false;
        Ok(())
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Merge `runs[start..]` into one new run, newest value winning, dropping entries `keep`
    /// refuses. The inputs' tables are freed before the output's are built, so the merge
    /// stays within the budget.
    fn merge_from(
        &mut self,
        start: usize,
        keep: &mut dyn FnMut(&[u8; 32], &[u8; 16]) -> bool,
    ) -> Result<()> {
        self.poisoned = true;
        let mut inputs = self.runs.split_off(start);
        let total: u64 = inputs.iter().map(|r| r.entries).sum();
        let chunk = chunk_pages(inputs.len());
        let readers = inputs
            .iter()
            .map(|r| r.reader(chunk))
            .collect::<Result<Vec<_>>>()?;
        for r in &mut inputs {
            r.drop_tables();
        }
        let seq = self.take_seq();
        let mut w = RunWriter::create(&self.dir, seq, total, self.opts.bits_per_entry)?;
        let mut merge = Merge::new(readers)?;
        let mut kept = 0u64;
        while let Some(e) = merge.next_entry()? {
            if keep(&e.key, &e.value) {
                w.push(&e.key, &e.value)?;
                kept += 1;
            }
        }
        drop(merge);
        let out = if kept == 0 {
            let path = w.path().to_path_buf();
            drop(w);
            remove_file(&path)?;
            None
        } else {
            Some(w.finish()?)
        };
        for r in inputs {
            self.discard(r)?;
        }
        self.runs.extend(out);
        self.poisoned = false;
        Ok(())
    }

    /// Forget a run: its file goes now unless the committed manifest names it (then at the
    /// next commit).
    fn discard(&self, run: Run) -> Result<()> {
        let named = self.committed.runs.iter().any(|r| r.seq == run.seq);
        let path = run.path.clone();
        drop(run);
        if !named {
            remove_file(&path)?;
        }
        Ok(())
    }
}

/// A `get_many` answer from one run: (run, key index, value if the run holds the key).
type Answer = (usize, usize, Option<[u8; 16]>);

/// Size class of a run: floor(log2(entries)).
fn level(entries: u64) -> u32 {
    63 - entries.max(1).leading_zeros()
}

/// Memory an insert buffer of `slots` slots needs, with the tables of the run it flushes to.
fn slots_need(slots: u64, bits_per_entry: u32) -> u64 {
    let n = MemTable::limit_for(slots as usize) as u64;
    let pages = run::pages_for(n);
    MemTable::bytes_for(slots) + Filter::bytes_for(n, bits_per_entry) + pages * 12 + 8
}

fn chunk_pages(inputs: usize) -> usize {
    ((READ_BUFFERS as usize / PAGE) / inputs.max(1)).clamp(1, run::READ_CHUNK_PAGES)
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn check_options(opts: &Options) -> Result<()> {
    if !(6..=32).contains(&opts.bits_per_entry) {
        return Err(Error::Invalid("bits_per_entry must be within 6..=32"));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx("open", &path)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked { path }),
        Err(e) => Err(Error::io("lock", path, e.into())),
    }
}

/// Remove run files the manifest does not name and leftover temporary files. Other files
/// are left alone (the directory may be shared by mistake; nothing else is ours to delete).
fn remove_strays(dir: &Path, m: &Manifest) -> Result<()> {
    let mut removed = false;
    for ent in std::fs::read_dir(dir).ctx("list", dir)? {
        let ent = ent.ctx("list", dir)?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let stray = match run::parse_file_name(name) {
            Some(seq) => !m.runs.iter().any(|r| r.seq == seq),
            None => name == manifest::TMP_NAME,
        };
        if stray {
            remove_file(&ent.path())?;
            removed = true;
        }
    }
    if removed {
        manifest::sync_dir(dir)?;
    }
    Ok(())
}

/// Iterator over all entries in key order; see [`ChunkIndex::iter`].
pub struct Iter<'a> {
    merge: Option<Merge>,
    _index: std::marker::PhantomData<&'a ChunkIndex>,
}

impl Iterator for Iter<'_> {
    type Item = Result<([u8; 32], [u8; 16])>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.merge.as_mut()?.next_entry() {
            Ok(Some(e)) => Some(Ok((e.key, e.value))),
            Ok(None) => {
                self.merge = None;
                None
            }
            Err(e) => {
                self.merge = None;
                Some(Err(e))
            }
        }
    }
}
