//! Pack files written with `O_DIRECT`. Copying pack data into the page cache is the largest
//! single CPU cost of a writer on the machines we measured (512 MB: 1.5 s of system time
//! buffered, 0.1 s direct), and a freshly written pack is not read back soon, so caching it
//! buys nothing. `O_DIRECT` needs every write's offset, length and buffer aligned; packs are
//! written front to back, so the bytes are staged in an aligned buffer, written out in
//! aligned runs, and the last partial block is written zero-padded and cut to length by
//! `set_len` before the fsync. A file system that refuses `O_DIRECT` (tmpfs, some FUSE) gets
//! buffered writes instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::aligned::{Aligned, ALIGN};
use super::uring::{direct_queue, Queue};
use super::WriteFile;

/// Staging capacity, and the size of each queued write: a pack writer hands over about 1 MiB
/// at a time.
const CAP: usize = 2 << 20;

/// Whether `O_DIRECT` pack writes are allowed in this process.
/// `TIERVAULT_NO_DIRECT=1` forces buffered writes (tests run both).
pub fn allowed() -> bool {
    std::env::var_os("TIERVAULT_NO_DIRECT").is_none_or(|v| v == "0")
}

/// Open `path` for writing with `O_DIRECT`, or `None` when the file system refuses it.
pub(super) fn create(path: &Path) -> io::Result<Option<DirectFile>> {
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match opened {
        Ok(file) => Ok(Some(DirectFile::new(file))),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            warn_once(path, &e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Open an existing file for `O_DIRECT` writes next to a buffered descriptor (restores write
/// the aligned middle of large files through it); `None` when not allowed in this process or
/// refused by the file system.
pub fn open_write(path: &Path) -> io::Result<Option<File>> {
    if !allowed() {
        return Ok(None);
    }
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            warn_once(path, &e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn warn_once(path: &Path, e: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::info!(
            "O_DIRECT refused for {} ({e}): data goes through the page cache",
            path.display()
        );
    }
}

pub(super) struct DirectFile {
    /// Full buffers written asynchronously (`None`: io_uring unavailable, synchronous
    /// direct writes of what is staged after each `write_at`). First, so it is dropped
    /// (waiting for its writes) before the file is closed.
    queue: Option<Queue<Aligned>>,
    file: File,
    buf: Aligned,
    /// Bytes staged in `buf`; they belong at file offset `pos`.
    len: usize,
    /// File offset of `buf`'s first byte, always a multiple of `ALIGN` while `direct`.
    pos: u64,
    /// False once the file system refused an aligned write: from then on plain `pwrite`.
    direct: bool,
    free: Option<Vec<u8>>,
    /// Buffers whose writes have finished, for reuse.
    spare: Vec<Aligned>,
    /// Tests only: direct writes reaching this file offset are refused with EINVAL, as by a
    /// file system that accepts `O_DIRECT` at open and not at write (none here does).
    #[cfg(test)]
    refuse_from: Option<u64>,
}

/// Writes in flight per pack file (each of `CAP` bytes).
const DEPTH: u32 = 2;

impl DirectFile {
    fn new(file: File) -> DirectFile {
        Self::with_queue(file, direct_queue(DEPTH))
    }

    fn with_queue(file: File, queue: Option<Queue<Aligned>>) -> DirectFile {
        DirectFile {
            file,
            buf: Aligned::new(CAP),
            len: 0,
            pos: 0,
            direct: true,
            free: None,
            queue,
            spare: Vec::new(),
            #[cfg(test)]
            refuse_from: None,
        }
    }

    /// Whether the (test-only) simulated refusal applies to a direct write of `len` bytes at
    /// `offset`.
    #[cfg(test)]
    fn refused(&self, offset: u64, len: usize) -> bool {
        self.direct && self.refuse_from.is_some_and(|r| offset + len as u64 > r)
    }

    #[cfg(not(test))]
    fn refused(&self, _offset: u64, _len: usize) -> bool {
        false
    }

    /// Tests only: finished direct writes the simulated refusal covers become EINVAL, their
    /// range overwritten with garbage first (a refused write wrote nothing; the fallback must
    /// write it again).
    #[cfg(test)]
    fn simulate_refusals(
        &self,
        mut done: Vec<super::uring::Completed<Aligned>>,
    ) -> Vec<super::uring::Completed<Aligned>> {
        for c in done.iter_mut().filter(|c| c.error.is_none()) {
            if self
                .refuse_from
                .is_some_and(|r| c.offset + c.len as u64 > r)
            {
                tests::scribble(&self.file, c.offset, c.len);
                c.error = Some(io::Error::from_raw_os_error(libc::EINVAL));
            }
        }
        done
    }

    /// Write the aligned prefix of the staged bytes and keep the rest (< ALIGN) at the front.
    fn write_aligned(&mut self) -> io::Result<()> {
        let n = self.len / ALIGN * ALIGN;
        if n == 0 {
            return Ok(());
        }
        if self.queue.is_some() {
            return self.submit();
        }
        self.write_direct(n)?;
        if !self.direct {
            return Ok(());
        }
        self.pos += n as u64;
        self.buf.get_mut().copy_within(n..self.len, 0);
        self.len -= n;
        Ok(())
    }

    /// Queue the aligned prefix of the staged bytes and stage on in a free buffer.
    fn submit(&mut self) -> io::Result<()> {
        let mut next = self.free_buffer()?;
        // Waiting for a buffer may have found a refused write and gone buffered.
        let n = self.len / ALIGN * ALIGN;
        if !self.direct || n == 0 {
            self.spare.push(next);
            return Ok(());
        }
        next.get_mut()[..self.len - n].copy_from_slice(&self.buf.get()[n..self.len]);
        let full = std::mem::replace(&mut self.buf, next);
        if let Some(q) = &mut self.queue {
            q.submit(&self.file, self.pos, full, n)?;
        }
        self.pos += n as u64;
        self.len -= n;
        Ok(())
    }

    /// A buffer no write is using: a spare one, a new one while the queue has room, else the
    /// first to finish.
    fn free_buffer(&mut self) -> io::Result<Aligned> {
        loop {
            if let Some(b) = self.spare.pop() {
                return Ok(b);
            }
            match &self.queue {
                Some(q) if q.is_full() => self.reap(1)?,
                _ => return Ok(Aligned::new(CAP)),
            }
        }
    }

    /// Take finished writes (waiting for at least `min`); a write the file system refused
    /// is done again buffered, and so is everything after it.
    fn reap(&mut self, min: usize) -> io::Result<()> {
        let Some(q) = &mut self.queue else {
            return Ok(());
        };
        let done = q.reap(&self.file, min)?;
        #[cfg(test)]
        let done = self.simulate_refusals(done);
        let mut first_err = None;
        for c in done {
            match c.error {
                None => {}
                Some(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if self.direct {
                        self.clear_direct(&e)?;
                    }
                    if let Err(e) = self.file.write_all_at(&c.buf.get()[..c.len], c.offset) {
                        first_err.get_or_insert(e);
                    }
                }
                Some(e) => {
                    first_err.get_or_insert(e);
                }
            }
            self.spare.push(c.buf);
        }
        if !self.direct && self.len > 0 {
            // What is staged goes out buffered too.
            if let Err(e) = self
                .file
                .write_all_at(&self.buf.get()[..self.len], self.pos)
            {
                first_err.get_or_insert(e);
            }
            self.pos += self.len as u64;
            self.len = 0;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Wait for every queued write.
    fn drain(&mut self) -> io::Result<()> {
        while self.queue.as_ref().is_some_and(|q| !q.is_empty()) {
            self.reap(1)?;
        }
        Ok(())
    }

    /// Write `buf[..n]` (n a multiple of ALIGN) at `pos`; on EINVAL fall back to buffered
    /// writes of everything staged.
    fn write_direct(&mut self, n: usize) -> io::Result<()> {
        let written = if self.refused(self.pos, n) {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            self.file.write_all_at(&self.buf.get()[..n], self.pos)
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.fall_back_to_buffered(&e),
            Err(e) => Err(e),
        }
    }

    fn clear_direct(&mut self, why: &io::Error) -> io::Result<()> {
        let flags = rustix::fs::fcntl_getfl(&self.file)?;
        rustix::fs::fcntl_setfl(&self.file, flags - rustix::fs::OFlags::DIRECT)?;
        self.direct = false;
        tracing::info!("an O_DIRECT write was refused ({why}): writing this pack buffered");
        Ok(())
    }

    fn fall_back_to_buffered(&mut self, why: &io::Error) -> io::Result<()> {
        if self.direct {
            self.clear_direct(why)?;
        }
        self.file
            .write_all_at(&self.buf.get()[..self.len], self.pos)?;
        self.pos += self.len as u64;
        self.len = 0;
        Ok(())
    }

    fn stage(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && self.direct {
            let n = (CAP - self.len).min(data.len());
            self.buf.get_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == CAP {
                self.write_aligned()?;
            }
        }
        if !data.is_empty() {
            self.file.write_all_at(data, self.pos)?;
            self.pos += data.len() as u64;
        }
        Ok(())
    }
}

impl WriteFile for DirectFile {
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        if offset != self.pos + self.len as u64 {
            // Only front-to-back writing keeps the staging simple; anything else is written
            // buffered (no caller does this today).
            self.drain()?;
            if self.direct {
                self.fall_back_to_buffered(&io::Error::other("write out of sequence"))?;
            }
            self.file.write_all_at(&buf, offset)?;
            self.pos = self.pos.max(offset + buf.len() as u64);
            self.free = Some(buf);
            return Ok(());
        }
        self.stage(&buf)?;
        // Queued writes go out in whole buffers (`stage` submits each full one); synchronous
        // ones as soon as an aligned run is staged.
        if self.direct && self.queue.is_none() {
            self.write_aligned()?;
        }
        // Take whatever finished meanwhile, without waiting.
        self.reap(0)?;
        self.free = Some(buf);
        Ok(())
    }

    fn recycle(&mut self) -> Option<Vec<u8>> {
        self.free.take()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.drain()?;
        if self.direct && self.len > 0 {
            // The tail block goes out zero-padded; set_len cuts the padding and the fsync
            // below makes the length durable together with the data.
            let padded = self.len.div_ceil(ALIGN) * ALIGN;
            let len = self.len;
            self.buf.get_mut()[len..padded].fill(0);
            self.write_direct(padded)?;
            if self.direct {
                self.file.set_len(self.pos + len as u64)?;
            }
        }
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file at `path` opened for direct writes, queued through io_uring (`queued`) or
    /// synchronous; `None` (with a note) where either is unavailable.
    fn open(path: &Path, queued: bool) -> Option<DirectFile> {
        let Some(f) = create(path).expect("open") else {
            eprintln!("SKIP: the file system under the temp dir refuses O_DIRECT");
            return None;
        };
        let queue = if queued {
            let q = direct_queue(DEPTH);
            if q.is_none() {
                eprintln!("SKIP: io_uring is unavailable here");
                return None;
            }
            q
        } else {
            None
        };
        Some(DirectFile::with_queue(f.file, queue))
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn unaligned_sequential_writes_read_back_exactly() {
        for queued in [false, true] {
            unaligned_sequential_writes(queued);
        }
    }

    fn unaligned_sequential_writes(queued: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack");
        let Some(mut f) = open(&path, queued) else {
            return;
        };
        let mut want = Vec::new();
        // Sizes around the alignment and the staging capacity, as a pack writer produces.
        for (i, n) in [1, 4095, 4097, 1 << 20, CAP - 3, CAP + 5, 17, 3 * CAP + 1]
            .into_iter()
            .enumerate()
        {
            let chunk = pattern(n, i as u8);
            let off = want.len() as u64;
            want.extend_from_slice(&chunk);
            f.write_at(off, chunk).expect("write");
        }
        f.sync().expect("sync");
        assert!(
            f.direct,
            "the temp file system accepted O_DIRECT at open, then refused"
        );
        drop(f);
        assert_eq!(std::fs::read(&path).expect("read"), want);
    }

    #[test]
    fn aligned_total_needs_no_padding_and_empty_file_stays_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (queued, total) in [false, true]
            .into_iter()
            .flat_map(|q| [0usize, ALIGN, 2 * CAP, 5 * CAP].map(|t| (q, t)))
        {
            let path = dir.path().join(format!("p{total}-{queued}"));
            let Some(mut f) = open(&path, queued) else {
                return;
            };
            if total > 0 {
                f.write_at(0, pattern(total, 7)).expect("write");
            }
            f.sync().expect("sync");
            drop(f);
            assert_eq!(std::fs::read(&path).expect("read"), pattern(total, 7));
        }
    }

    #[test]
    fn out_of_sequence_write_falls_back_to_buffered_and_stays_correct() {
        for queued in [false, true] {
            out_of_sequence_write(queued);
        }
    }

    fn out_of_sequence_write(queued: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack");
        let Some(mut f) = open(&path, queued) else {
            return;
        };
        // With a queue, whole buffers are in flight when the odd write comes.
        f.write_at(0, pattern(3 * CAP, 9)).expect("write");
        f.write_at(3 * CAP as u64, pattern(10_000, 1))
            .expect("write");
        let base = 3 * CAP as u64;
        f.write_at(base + 20_000, pattern(100, 2)).expect("write");
        f.write_at(base + 10_000, pattern(10_000, 3))
            .expect("write");
        f.sync().expect("sync");
        assert!(!f.direct);
        drop(f);
        let mut want = pattern(3 * CAP, 9);
        want.extend(pattern(10_000, 1));
        want.extend(pattern(10_000, 3));
        want.extend(pattern(100, 2));
        assert_eq!(std::fs::read(&path).expect("read"), want);
    }

    /// Overwrite `len` bytes at `offset` of the file behind `file` with garbage, through a
    /// second, buffered descriptor.
    pub(super) fn scribble(file: &File, offset: u64, len: usize) {
        use std::os::fd::AsRawFd;
        let other = OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("reopening the pack buffered");
        other
            .write_all_at(&vec![0xEE; len], offset)
            .expect("scribbling");
    }

    #[test]
    fn a_direct_write_refused_after_open_goes_buffered_and_loses_nothing() {
        // Sizes as in `unaligned_sequential_writes`: 8,392,713 bytes in all.
        let sizes = [1, 4095, 4097, 1 << 20, CAP - 3, CAP + 5, 17, 3 * CAP + 1];
        let total: usize = sizes.iter().sum();
        // Refused from the first write, inside a staged buffer, at a buffer boundary, and
        // only for the zero-padded tail block written by `sync`.
        let points = [0, 3 * ALIGN as u64 + 100, CAP as u64, (total - 1) as u64];
        for queued in [false, true] {
            for refuse_from in points {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("pack");
                let Some(mut f) = open(&path, queued) else {
                    return;
                };
                f.refuse_from = Some(refuse_from);
                let mut want = Vec::new();
                for (i, n) in sizes.into_iter().enumerate() {
                    let chunk = pattern(n, i as u8);
                    let off = want.len() as u64;
                    want.extend_from_slice(&chunk);
                    f.write_at(off, chunk).expect("write");
                }
                f.sync().expect("sync");
                let what = format!("queued {queued}, refused from {refuse_from}");
                assert!(!f.direct, "{what}: still direct");
                drop(f);
                let got = std::fs::read(&path).expect("read");
                assert_eq!(got.len(), want.len(), "{what}: length");
                assert!(got == want, "{what}: content differs");
            }
        }
    }
}
