//! Pack data written through io_uring: writes are queued and the caller carries on chunking
//! and encrypting while the kernel copies; `sync` drains the queue and fsyncs.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring};

use super::aligned::Aligned;
use super::WriteFile;

const DEPTH: u32 = 4;

/// Whether io_uring can be used, probed once per process and logged once.
pub(super) fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        if std::env::var_os("TIERVAULT_NO_URING").is_some_and(|v| v != "0") {
            tracing::info!("TIERVAULT_NO_URING set: pack writes use pwrite");
            return false;
        }
        match IoUring::new(2) {
            Ok(_) => true,
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}): pack writes use pwrite");
                false
            }
        }
    })
}

pub(super) struct UringFile {
    file: File,
    ring: IoUring,
    /// Buffers owned by in-flight writes, indexed by the user_data of their entry.
    slots: Vec<Option<(u64, Vec<u8>)>>,
    inflight: usize,
    free: Vec<Vec<u8>>,
}

impl UringFile {
    pub(super) fn new(file: File) -> Result<UringFile, (File, io::Error)> {
        match IoUring::new(DEPTH) {
            Ok(ring) => Ok(UringFile {
                file,
                ring,
                slots: (0..DEPTH).map(|_| None).collect(),
                inflight: 0,
                free: Vec::new(),
            }),
            Err(e) => Err((file, e)),
        }
    }

    /// Wait for at least `min` completions and reap every finished one.
    fn reap(&mut self, min: usize) -> io::Result<()> {
        if min > 0 {
            self.ring.submit_and_wait(min)?;
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let mut first_err = None;
        for (slot, res) in done {
            let Some((offset, buf)) = self.slots.get_mut(slot as usize).and_then(Option::take)
            else {
                continue;
            };
            self.inflight -= 1;
            if res < 0 {
                first_err.get_or_insert(io::Error::from_raw_os_error(-res));
            } else if (res as usize) < buf.len() {
                // A short write to a regular file is rare (signal, near-full disk): finish it
                // synchronously, which also surfaces ENOSPC as an error.
                let n = res as usize;
                if let Err(e) = self.file.write_all_at(&buf[n..], offset + n as u64) {
                    first_err.get_or_insert(e);
                }
            }
            self.free.push(buf);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl WriteFile for UringFile {
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        if self.inflight == self.slots.len() {
            self.reap(1)?;
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| io::Error::other("io_uring slot accounting"))?;
        let len = u32::try_from(buf.len()).map_err(|_| io::Error::other("write over 4 GiB"))?;
        let entry = opcode::Write::new(types::Fd(self.file.as_raw_fd()), buf.as_ptr(), len)
            .offset(offset)
            .build()
            .user_data(slot as u64);
        self.slots[slot] = Some((offset, buf));
        // SAFETY: the buffer is owned by `self.slots[slot]` until its completion is reaped
        // (reap() or sync(), and Drop waits for all), so the kernel never sees freed memory;
        // the fd stays open as long as `self.file`.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.slots[slot] = None;
            return Err(io::Error::other("io_uring submission queue full"));
        }
        self.inflight += 1;
        self.ring.submit()?;
        self.reap(0)
    }

    fn recycle(&mut self) -> Option<Vec<u8>> {
        self.free.pop()
    }

    fn sync(&mut self) -> io::Result<()> {
        while self.inflight > 0 {
            self.reap(1)?;
        }
        self.file.sync_all()
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        // Buffers must outlive the kernel's use of them.
        while self.inflight > 0 {
            if self.reap(1).is_err() && self.ring.submit_and_wait(1).is_err() {
                break;
            }
        }
    }
}

/// `O_DIRECT` writes queued on an io_uring, so a backup worker goes on compressing while the
/// device writes its pack (synchronous direct writes kept each worker waiting for the disk a
/// sixth of a disk-image backup). A buffer belongs to the queue until its write completes.
pub(super) struct DirectQueue {
    ring: IoUring,
    /// (file offset, buffer, length) of each write in flight, indexed by user_data.
    slots: Vec<Option<(u64, Aligned, usize)>>,
    inflight: usize,
}

/// A finished queued write: its buffer back, and the error if it failed. A short write has
/// been completed synchronously already.
pub(super) struct Completed {
    pub offset: u64,
    pub buf: Aligned,
    pub len: usize,
    pub error: Option<io::Error>,
}

impl DirectQueue {
    /// A queue of `depth` writes, or `None` when io_uring is unavailable.
    pub(super) fn new(depth: u32) -> Option<DirectQueue> {
        if !available() {
            return None;
        }
        let ring = IoUring::new(depth).ok()?;
        Some(DirectQueue {
            ring,
            slots: (0..depth).map(|_| None).collect(),
            inflight: 0,
        })
    }

    pub(super) fn is_full(&self) -> bool {
        self.inflight == self.slots.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.inflight == 0
    }

    /// Queue `buf[..len]` (aligned length) to be written at `offset` (aligned) of `file`.
    /// The caller must not queue more than the depth (see [`Self::is_full`]).
    pub(super) fn submit(
        &mut self,
        file: &File,
        offset: u64,
        buf: Aligned,
        len: usize,
    ) -> io::Result<()> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| io::Error::other("io_uring queue full"))?;
        let n = u32::try_from(len).map_err(|_| io::Error::other("write over 4 GiB"))?;
        let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.get().as_ptr(), n)
            .offset(offset)
            .build()
            .user_data(slot as u64);
        self.slots[slot] = Some((offset, buf, len));
        // SAFETY: the buffer is owned by `self.slots[slot]` until its completion is reaped
        // (reap(), and Drop waits for all), and moving an `Aligned` does not move its heap
        // bytes, so the kernel never sees freed memory; the caller keeps `file` open until the
        // queue is drained.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.slots[slot] = None;
            return Err(io::Error::other("io_uring submission queue full"));
        }
        self.inflight += 1;
        self.ring.submit()?;
        Ok(())
    }

    /// Wait for at least `min` writes to finish; returns every finished one. A short write
    /// is completed here with a plain `pwrite` of the rest.
    pub(super) fn reap(&mut self, file: &File, min: usize) -> io::Result<Vec<Completed>> {
        if min > 0 {
            self.ring.submit_and_wait(min)?;
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let mut out = Vec::with_capacity(done.len());
        for (slot, res) in done {
            let Some((offset, buf, len)) = self.slots.get_mut(slot as usize).and_then(Option::take)
            else {
                continue;
            };
            self.inflight -= 1;
            let error = if res < 0 {
                Some(io::Error::from_raw_os_error(-res))
            } else if (res as usize) < len {
                let n = res as usize;
                file.write_all_at(&buf.get()[n..len], offset + n as u64)
                    .err()
            } else {
                None
            };
            out.push(Completed {
                offset,
                buf,
                len,
                error,
            });
        }
        Ok(out)
    }
}

impl Drop for DirectQueue {
    fn drop(&mut self) {
        // Buffers must outlive the kernel's use of them.
        while self.inflight > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                // Cannot tell when the kernel is done with them: never free them.
                for s in self.slots.drain(..).flatten() {
                    std::mem::forget(s);
                }
                break;
            }
            let done: Vec<u64> = self.ring.completion().map(|c| c.user_data()).collect();
            for slot in done {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    if s.take().is_some() {
                        self.inflight -= 1;
                    }
                }
            }
        }
    }
}
