//! Run files: immutable sorted runs of (key, value) entries in checksummed 4 KiB pages,
//! followed by the page fence table, the run's filter and a footer (docs/chunkindex.md,
//! "Run files").

use crate::le::{le_u16, le_u32, le_u64};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cache::PageCache;
use crate::error::{Error, IoContext, Result};
use crate::filter::{Filter, BLOCK_BYTES};
use crate::memtable::{prefix, Entry};

pub(crate) const PAGE: usize = 4096;
pub(crate) const ENTRY: usize = 48;
pub(crate) const PAGE_ENTRIES: usize = 85;
const TRAILER_AT: usize = PAGE_ENTRIES * ENTRY; // 4080
const CHECKSUM_AT: usize = PAGE - 4;
const MAGIC: &[u8; 8] = b"TVCXRUN1";
const VERSION: u32 = 1;
pub(crate) const FOOTER_LEN: usize = 80;
/// Written data is pushed to disk every this many bytes, so a long merge never holds more
/// dirty page cache than this (it would count against a memory cgroup).
const SYNC_EVERY: u64 = 64 << 20;
/// Pages read per call by sequential readers.
pub(crate) const READ_CHUNK_PAGES: usize = 32;

pub(crate) fn file_name(seq: u64) -> String {
    format!("run-{seq:016x}.tvr")
}

/// Parse `run-<16 hex>.tvr`.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("run-")?.strip_suffix(".tvr")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// CRC-32 (IEEE) of everything before the checksum field: media damage, torn writes and
/// misplaced pages, not tampering, is what a cache has to detect.
fn page_checksum(page: &[u8]) -> u32 {
    crc32fast::hash(&page[..CHECKSUM_AT])
}

/// Check a page read from disk: checksum, its own number, entry count. Returns the count.
fn check_page(path: &Path, seq: u64, no: u64, page: &[u8], last: bool) -> Result<usize> {
    if le_u32(&page[CHECKSUM_AT..]) != page_checksum(page) {
        return Err(Error::corrupt(
            path,
            format!("page {no}: checksum mismatch"),
        ));
    }
    if le_u32(&page[TRAILER_AT + 4..]) != no as u32 || le_u32(&page[TRAILER_AT + 8..]) != seq as u32
    {
        return Err(Error::corrupt(
            path,
            format!("page {no}: belongs elsewhere"),
        ));
    }
    let count = le_u16(&page[TRAILER_AT..]) as usize;
    if count == 0 || count > PAGE_ENTRIES || (!last && count != PAGE_ENTRIES) {
        return Err(Error::corrupt(
            path,
            format!("page {no}: bad entry count {count}"),
        ));
    }
    Ok(count)
}

fn entry_at(page: &[u8], i: usize) -> Entry {
    let e = &page[i * ENTRY..(i + 1) * ENTRY];
    let mut key = [0u8; 32];
    let mut value = [0u8; 16];
    key.copy_from_slice(&e[..32]);
    value.copy_from_slice(&e[32..]);
    Entry { key, value }
}

fn search_page(page: &[u8], count: usize, key: &[u8; 32]) -> Option<[u8; 16]> {
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let k = &page[mid * ENTRY..mid * ENTRY + 32];
        match k.cmp(&key[..]) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(entry_at(page, mid).value),
        }
    }
    None
}

/// In-memory bytes of a run's tables (fences, radix, filter).
pub(crate) fn table_bytes(pages: u64, filter_blocks: u64) -> u64 {
    pages * 8 + radix_len(pages) * 4 + filter_blocks * BLOCK_BYTES as u64
}

pub(crate) fn pages_for(entries: u64) -> u64 {
    entries.div_ceil(PAGE_ENTRIES as u64)
}

fn radix_bits(pages: u64) -> u32 {
    if pages < 2 {
        0
    } else {
        (63 - pages.leading_zeros()).min(28)
    }
}

fn radix_len(pages: u64) -> u64 {
    (1u64 << radix_bits(pages)) + 1
}

/// The footer's fixed fields.
struct Footer {
    seq: u64,
    entries: u64,
    pages: u64,
    filter_blocks: u64,
    bits_per_entry: u32,
    meta_digest: [u8; 16],
}

impl Footer {
    fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut f = [0u8; FOOTER_LEN];
        f[..8].copy_from_slice(MAGIC);
        f[8..12].copy_from_slice(&VERSION.to_le_bytes());
        f[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
        f[16..24].copy_from_slice(&self.seq.to_le_bytes());
        f[24..32].copy_from_slice(&self.entries.to_le_bytes());
        f[32..40].copy_from_slice(&self.pages.to_le_bytes());
        f[40..48].copy_from_slice(&self.filter_blocks.to_le_bytes());
        f[48..52].copy_from_slice(&self.bits_per_entry.to_le_bytes());
        f[56..72].copy_from_slice(&self.meta_digest);
        let d = blake3::hash(&f[..72]);
        f[72..80].copy_from_slice(&d.as_bytes()[..8]);
        f
    }

    fn decode(path: &Path, f: &[u8]) -> Result<Footer> {
        let bad = |what: &str| Error::corrupt(path, format!("footer: {what}"));
        if f.len() != FOOTER_LEN || &f[..8] != MAGIC {
            return Err(bad("bad magic"));
        }
        if blake3::hash(&f[..72]).as_bytes()[..8] != f[72..80] {
            return Err(bad("checksum mismatch"));
        }
        if le_u32(&f[8..]) != VERSION {
            return Err(bad(&format!("unknown version {}", le_u32(&f[8..]))));
        }
        if le_u32(&f[12..]) != PAGE as u32 {
            return Err(bad("unsupported page size"));
        }
        let mut meta_digest = [0u8; 16];
        meta_digest.copy_from_slice(&f[56..72]);
        Ok(Footer {
            seq: le_u64(&f[16..]),
            entries: le_u64(&f[24..]),
            pages: le_u64(&f[32..]),
            filter_blocks: le_u64(&f[40..]),
            bits_per_entry: le_u32(&f[48..]),
            meta_digest,
        })
    }

    /// The file length these counts imply (None on overflow).
    fn file_len(&self) -> Option<u64> {
        let pages = self.pages.checked_mul(PAGE as u64 + 8)?;
        let filter = self.filter_blocks.checked_mul(BLOCK_BYTES as u64)?;
        pages.checked_add(filter)?.checked_add(FOOTER_LEN as u64)
    }
}

/// What `open` needs to know of a run before loading it (for the budget check).
pub(crate) struct RunInfo {
    pub(crate) table_bytes: u64,
}

/// An open run: the file plus its in-memory fence table, radix table and filter.
pub(crate) struct Run {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) entries: u64,
    pages: u64,
    fences: Vec<u64>,
    radix: Vec<u32>,
    radix_bits: u32,
    pub(crate) filter: Filter,
}

impl Run {
    fn read_footer(path: &Path, file: &File, seq: u64) -> Result<Footer> {
        let len = file.metadata().ctx("stat", path)?.len();
        if len < FOOTER_LEN as u64 {
            return Err(Error::corrupt(path, "shorter than a footer"));
        }
        let mut f = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut f, len - FOOTER_LEN as u64)
            .ctx("read", path)?;
        let footer = Footer::decode(path, &f)?;
        if footer.seq != seq {
            return Err(Error::corrupt(path, "footer names another run"));
        }
        if footer.file_len() != Some(len) {
            return Err(Error::corrupt(
                path,
                "length does not match the footer's counts",
            ));
        }
        if footer.pages != pages_for(footer.entries) || footer.pages >= u32::MAX as u64 {
            return Err(Error::corrupt(
                path,
                "page count does not match the entry count",
            ));
        }
        Ok(footer)
    }

    fn open_file(path: &Path) -> Result<File> {
        File::open(path).ctx("open", path)
    }

    /// Read only the footer: memory the run's tables will take.
    pub(crate) fn probe(dir: &Path, seq: u64) -> Result<RunInfo> {
        let path = dir.join(file_name(seq));
        let file = Self::open_file(&path)?;
        let f = Self::read_footer(&path, &file, seq)?;
        Ok(RunInfo {
            table_bytes: table_bytes(f.pages, f.filter_blocks),
        })
    }

    /// Open a run and load its fence table and filter (checked against the footer's digest).
    pub(crate) fn open(dir: &Path, seq: u64) -> Result<Run> {
        let path = dir.join(file_name(seq));
        let file = Self::open_file(&path)?;
        let footer = Self::read_footer(&path, &file, seq)?;
        let mut digest = blake3::Hasher::new();
        let mut fences = Vec::with_capacity(footer.pages as usize);
        let mut filter = Filter::empty();
        filter.reserve_exact(footer.filter_blocks);
        let mut buf = vec![0u8; 1 << 20];
        // Fences, then filter blocks, read in 1 MiB pieces.
        let mut at = footer.pages * PAGE as u64;
        let mut left = footer.pages * 8;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at).ctx("read", &path)?;
            digest.update(&buf[..n]);
            fences.extend(buf[..n].chunks_exact(8).map(le_u64));
            at += n as u64;
            left -= n as u64;
        }
        let mut left = footer.filter_blocks * BLOCK_BYTES as u64;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at).ctx("read", &path)?;
            digest.update(&buf[..n]);
            filter.extend_from_bytes(&buf[..n]);
            at += n as u64;
            left -= n as u64;
        }
        if digest.finalize().as_bytes()[..16] != footer.meta_digest {
            return Err(Error::corrupt(
                &path,
                "fence table or filter checksum mismatch",
            ));
        }
        if fences.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::corrupt(&path, "fence table out of order"));
        }
        Ok(Run::assemble(
            seq,
            path,
            file,
            footer.entries,
            fences,
            filter,
        ))
    }

    fn assemble(
        seq: u64,
        path: PathBuf,
        file: File,
        entries: u64,
        fences: Vec<u64>,
        filter: Filter,
    ) -> Run {
        let pages = fences.len() as u64;
        let bits = radix_bits(pages);
        let buckets = 1usize << bits;
        let mut radix = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..=buckets as u64 {
            while i < fences.len() && bucket(fences[i], bits) < b {
                i += 1;
            }
            radix.push(i as u32);
        }
        Run {
            seq,
            path,
            file,
            entries,
            pages,
            fences,
            radix,
            radix_bits: bits,
            filter,
        }
    }

    /// Memory held by this run's tables.
    pub(crate) fn table_bytes(&self) -> u64 {
        self.fences.capacity() as u64 * 8 + self.radix.capacity() as u64 * 4 + self.filter.bytes()
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.pages * (PAGE as u64 + 8) + self.filter.bytes() + FOOTER_LEN as u64
    }

    /// Pages that may hold `key` (usually one): those whose first key's prefix is ≤ the key's
    /// and whose successor's is ≥ it (equal prefixes may straddle a page boundary).
    pub(crate) fn candidate_pages(&self, key: &[u8; 32]) -> std::ops::Range<u64> {
        if self.pages == 0 {
            return 0..0;
        }
        let p = prefix(key);
        let b = bucket(p, self.radix_bits) as usize;
        let lo = (self.radix[b] as usize).saturating_sub(1);
        let hi = self.radix[b + 1] as usize;
        let window = &self.fences[lo..hi];
        let first_ge = lo + window.partition_point(|&f| f < p);
        let end = lo + window.partition_point(|&f| f <= p);
        (first_ge.saturating_sub(1) as u64)..(end as u64)
    }

    /// Read and check page `no`.
    pub(crate) fn read_page(&self, no: u64, buf: &mut [u8]) -> Result<usize> {
        self.file
            .read_exact_at(&mut buf[..PAGE], no * PAGE as u64)
            .ctx("read", &self.path)?;
        let count = check_page(&self.path, self.seq, no, &buf[..PAGE], no + 1 == self.pages)?;
        let first = entry_at(buf, 0).key;
        if prefix(&first) != self.fences[no as usize] {
            return Err(Error::corrupt(
                &self.path,
                format!("page {no}: first key does not match the fence table"),
            ));
        }
        Ok(count)
    }

    /// Look `key` up in page `no` (through the cache).
    pub(crate) fn lookup_in_page(
        &self,
        no: u64,
        key: &[u8; 32],
        cache: &PageCache,
    ) -> Result<Option<[u8; 16]>> {
        if let Some(hit) = cache.with(self.seq, no, |p| {
            search_page(p, le_u16(&p[TRAILER_AT..]) as usize, key)
        }) {
            return Ok(hit);
        }
        let mut buf = [0u8; PAGE];
        let count = self.read_page(no, &mut buf)?;
        cache.put(self.seq, no, &buf);
        Ok(search_page(&buf, count, key))
    }

    /// Copy page `no` into `buf` from the cache, or read and check it (and cache it).
    /// Returns its entry count.
    pub(crate) fn load_page(&self, no: u64, buf: &mut [u8], cache: &PageCache) -> Result<usize> {
        if let Some(count) = cache.with(self.seq, no, |p| {
            buf[..PAGE].copy_from_slice(p);
            le_u16(&p[TRAILER_AT..]) as usize
        }) {
            return Ok(count);
        }
        let count = self.read_page(no, buf)?;
        cache.put(self.seq, no, &buf[..PAGE]);
        Ok(count)
    }

    /// Search a page loaded by [`load_page`](Self::load_page).
    pub(crate) fn search(page: &[u8], count: usize, key: &[u8; 32]) -> Option<[u8; 16]> {
        search_page(page, count, key)
    }

    /// Exact lookup in this run (the caller has checked the filter).
    pub(crate) fn lookup(&self, key: &[u8; 32], cache: &PageCache) -> Result<Option<[u8; 16]>> {
        // Last candidate first: it is the page whose first key is ≤ the key, the only one that
        // can hold it unless 8-byte prefixes tie across a page boundary.
        for no in self.candidate_pages(key).rev() {
            if let Some(v) = self.lookup_in_page(no, key, cache)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Free the in-memory tables (before a merge that replaces this run).
    pub(crate) fn drop_tables(&mut self) {
        self.fences = Vec::new();
        self.radix = Vec::new();
        self.filter = Filter::empty();
    }

    /// A sequential reader over all entries, checking every page.
    pub(crate) fn reader(&self, chunk_pages: usize) -> Result<RunReader> {
        Ok(RunReader {
            file: self.file.try_clone().ctx("dup", &self.path)?,
            path: self.path.clone(),
            seq: self.seq,
            pages: self.pages,
            entries: self.entries,
            buf: vec![0u8; chunk_pages.max(1) * PAGE],
            buf_pages: 0,
            next_page: 0,
            page_in_buf: 0,
            entry_in_page: 0,
            count_in_page: 0,
            seen: 0,
            last: None,
        })
    }
}

fn bucket(p: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        p >> (64 - bits)
    }
}

/// Sequential reader of a run's entries in key order.
pub(crate) struct RunReader {
    file: File,
    path: PathBuf,
    seq: u64,
    pages: u64,
    entries: u64,
    buf: Vec<u8>,
    buf_pages: usize,
    next_page: u64,
    page_in_buf: usize,
    entry_in_page: usize,
    count_in_page: usize,
    seen: u64,
    last: Option<[u8; 32]>,
}

impl RunReader {
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if self.entry_in_page < self.count_in_page {
                let off = self.page_in_buf * PAGE;
                let e = entry_at(&self.buf[off..off + PAGE], self.entry_in_page);
                self.entry_in_page += 1;
                if self.last.is_some_and(|l| l >= e.key) {
                    return Err(Error::corrupt(&self.path, "entries out of order"));
                }
                self.last = Some(e.key);
                self.seen += 1;
                return Ok(Some(e));
            }
            // Next page: from the buffer, or refill it.
            if self.count_in_page > 0 {
                self.page_in_buf += 1;
            }
            if self.page_in_buf >= self.buf_pages {
                let first = self.next_page;
                if first >= self.pages {
                    if self.seen != self.entries {
                        return Err(Error::corrupt(&self.path, "entry count mismatch"));
                    }
                    return Ok(None);
                }
                let n = ((self.pages - first) as usize).min(self.buf.len() / PAGE);
                self.file
                    .read_exact_at(&mut self.buf[..n * PAGE], first * PAGE as u64)
                    .ctx("read", &self.path)?;
                self.buf_pages = n;
                self.page_in_buf = 0;
                self.next_page += n as u64;
            }
            let no = self.next_page - (self.buf_pages - self.page_in_buf) as u64;
            let off = self.page_in_buf * PAGE;
            self.count_in_page = check_page(
                &self.path,
                self.seq,
                no,
                &self.buf[off..off + PAGE],
                no + 1 == self.pages,
            )?;
            self.entry_in_page = 0;
        }
    }
}

/// Writes a run file: entries must come in strictly increasing key order.
pub(crate) struct RunWriter {
    seq: u64,
    path: PathBuf,
    out: BufWriter<File>,
    page: Vec<u8>,
    in_page: usize,
    entries: u64,
    fences: Vec<u64>,
    filter: Filter,
    bits_per_entry: u32,
    last: Option<[u8; 32]>,
    unsynced: u64,
}

impl RunWriter {
    /// Start run `seq` in `dir`, sized for at most `max_entries` entries.
    pub(crate) fn create(
        dir: &Path,
        seq: u64,
        max_entries: u64,
        bits_per_entry: u32,
    ) -> Result<RunWriter> {
        let path = dir.join(file_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx("create", &path)?;
        Ok(RunWriter {
            seq,
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            page: vec![0u8; PAGE],
            in_page: 0,
            entries: 0,
            fences: Vec::with_capacity(pages_for(max_entries) as usize),
            filter: Filter::with_blocks(Filter::blocks_for(max_entries, bits_per_entry)),
            bits_per_entry,
            last: None,
            unsynced: 0,
        })
    }

    pub(crate) fn push(&mut self, key: &[u8; 32], value: &[u8; 16]) -> Result<()> {
        debug_assert!(self.last.is_none_or(|l| l < *key), "keys must increase");
        self.last = Some(*key);
        if self.in_page == 0 {
            self.fences.push(prefix(key));
        }
        let at = self.in_page * ENTRY;
        self.page[at..at + 32].copy_from_slice(key);
        self.page[at + 32..at + ENTRY].copy_from_slice(value);
        self.filter.insert(key);
        self.in_page += 1;
        self.entries += 1;
        if self.in_page == PAGE_ENTRIES {
            self.end_page()?;
        }
        Ok(())
    }

    fn end_page(&mut self) -> Result<()> {
        let no = self.fences.len() as u64 - 1;
        self.page[self.in_page * ENTRY..TRAILER_AT].fill(0);
        self.page[TRAILER_AT..TRAILER_AT + 2].copy_from_slice(&(self.in_page as u16).to_le_bytes());
        self.page[TRAILER_AT + 2..TRAILER_AT + 4].fill(0);
        self.page[TRAILER_AT + 4..TRAILER_AT + 8].copy_from_slice(&(no as u32).to_le_bytes());
        self.page[TRAILER_AT + 8..TRAILER_AT + 12]
            .copy_from_slice(&(self.seq as u32).to_le_bytes());
        let sum = page_checksum(&self.page);
        self.page[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        self.out.write_all(&self.page).ctx("write", &self.path)?;
        self.in_page = 0;
        self.unsynced += PAGE as u64;
        if self.unsynced >= SYNC_EVERY {
            self.out.flush().ctx("write", &self.path)?;
            self.out.get_ref().sync_data().ctx("fsync", &self.path)?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Write the tables and footer, fsync, and return the open run.
    pub(crate) fn finish(mut self) -> Result<Run> {
        if self.in_page > 0 {
            self.end_page()?;
        }
        self.out.flush().ctx("write", &self.path)?;
        // A filter sized for many more entries than were written (duplicates merged away,
        // entries dropped by `retain`) is rebuilt at its right size from the written pages.
        let right = Filter::blocks_for(self.entries, self.bits_per_entry);
        if right * 2 <= self.filter.block_count() {
            self.filter = Filter::empty();
            let mut f = Filter::with_blocks(right);
            let pages = self.fences.len() as u64;
            let mut buf = vec![0u8; READ_CHUNK_PAGES * PAGE];
            let file = self.out.get_ref();
            let mut p = 0;
            while p < pages {
                let n = ((pages - p) as usize).min(READ_CHUNK_PAGES);
                file.read_exact_at(&mut buf[..n * PAGE], p * PAGE as u64)
                    .ctx("read", &self.path)?;
                for page in buf[..n * PAGE].chunks_exact(PAGE) {
                    let count = le_u16(&page[TRAILER_AT..]) as usize;
                    for i in 0..count.min(PAGE_ENTRIES) {
                        f.insert(&entry_at(page, i).key);
                    }
                }
                p += n as u64;
            }
            self.filter = f;
        }
        self.fences.shrink_to_fit();
        let mut digest = blake3::Hasher::new();
        let mut chunk = Vec::with_capacity(64 << 10);
        for f in &self.fences {
            chunk.extend_from_slice(&f.to_le_bytes());
            if chunk.len() >= 64 << 10 {
                digest.update(&chunk);
                self.out.write_all(&chunk).ctx("write", &self.path)?;
                chunk.clear();
            }
        }
        let mut block = [0u8; BLOCK_BYTES];
        for i in 0..self.filter.block_count() as usize {
            self.filter.block_bytes(i, &mut block);
            chunk.extend_from_slice(&block);
            if chunk.len() >= 64 << 10 {
                digest.update(&chunk);
                self.out.write_all(&chunk).ctx("write", &self.path)?;
                chunk.clear();
            }
        }
        digest.update(&chunk);
        self.out.write_all(&chunk).ctx("write", &self.path)?;
        let mut meta_digest = [0u8; 16];
        meta_digest.copy_from_slice(&digest.finalize().as_bytes()[..16]);
        let footer = Footer {
            seq: self.seq,
            entries: self.entries,
            pages: self.fences.len() as u64,
            filter_blocks: self.filter.block_count(),
            bits_per_entry: self.bits_per_entry,
            meta_digest,
        };
        self.out
            .write_all(&footer.encode())
            .ctx("write", &self.path)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("write", &self.path, e.into_error()))?;
        file.sync_all().ctx("fsync", &self.path)?;
        Ok(Run::assemble(
            self.seq,
            self.path,
            file,
            self.entries,
            self.fences,
            self.filter,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// K-way merge of runs (oldest first): key order, the newest run's value wins.
pub(crate) struct Merge {
    readers: Vec<RunReader>,
    heads: Vec<Option<Entry>>,
}

impl Merge {
    pub(crate) fn new(mut readers: Vec<RunReader>) -> Result<Merge> {
        let heads = readers
            .iter_mut()
            .map(|r| r.next_entry())
            .collect::<Result<Vec<_>>>()?;
        Ok(Merge { readers, heads })
    }

    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        let mut best: Option<(usize, [u8; 32])> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some(e) = h {
                // `<=`: among equal keys the later (newer) reader wins.
                if best.is_none_or(|(_, k)| e.key <= k) {
                    best = Some((i, e.key));
                }
            }
        }
        let Some((win, key)) = best else {
            return Ok(None);
        };
        let out = self.heads[win];
        for i in 0..self.readers.len() {
            if self.heads[i].is_some_and(|e| e.key == key) {
                self.heads[i] = self.readers[i].next_entry()?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u8; 32] {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    fn write_run(dir: &Path, seq: u64, keys: &mut [[u8; 32]]) -> Run {
        keys.sort();
        let mut w = RunWriter::create(dir, seq, keys.len() as u64, 16).expect("create");
        for k in keys.iter() {
            w.push(k, &[k[5]; 16]).expect("push");
        }
        w.finish().expect("finish")
    }

    #[test]
    fn write_reopen_lookup_and_scan() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut keys: Vec<[u8; 32]> = (0..1000).map(key).collect();
        let run = write_run(dir.path(), 7, &mut keys);
        let cache = PageCache::new(0);
        let again = Run::open(dir.path(), 7).expect("open");
        for r in [&run, &again] {
            for k in &keys {
                assert_eq!(r.lookup(k, &cache).expect("lookup"), Some([k[5]; 16]));
            }
            assert_eq!(r.lookup(&key(5000), &cache).expect("lookup"), None);
        }
        let mut rd = again.reader(3).expect("reader");
        let mut n = 0;
        while let Some(e) = rd.next_entry().expect("scan") {
            assert_eq!(e.key, keys[n]);
            n += 1;
        }
        assert_eq!(n, 1000);
        assert_eq!(
            std::fs::metadata(&again.path).expect("stat").len(),
            again.file_len()
        );
    }

    #[test]
    fn equal_prefixes_across_a_page_boundary() {
        let dir = tempfile::tempdir().expect("tmp");
        // 200 keys sharing one 8-byte prefix straddle three pages.
        let mut keys: Vec<[u8; 32]> = (0..200u64)
            .map(|i| {
                let mut k = key(i);
                k[..8].copy_from_slice(&[0x42; 8]);
                k
            })
            .chain((0..300).map(|i| key(i + 10_000)))
            .collect();
        let run = write_run(dir.path(), 1, &mut keys);
        let cache = PageCache::new(0);
        for k in &keys {
            assert_eq!(run.lookup(k, &cache).expect("lookup"), Some([k[5]; 16]));
        }
        let mut absent = key(1);
        absent[..8].copy_from_slice(&[0x42; 8]);
        absent[8] ^= 0x80;
        if !keys.contains(&absent) {
            assert_eq!(run.lookup(&absent, &cache).expect("lookup"), None);
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_file_name("run-12.tvr"), None);
        assert_eq!(parse_file_name("MANIFEST"), None);
    }
}
