//! Writes queued on an io_uring: the caller carries on chunking and encrypting while the
//! kernel writes. Buffered files (`UringFile`: index parts, snapshots, packs where `O_DIRECT`
//! is refused) and the `O_DIRECT` pack writer (`io/direct.rs`) share one queue of writes that
//! own their buffers until they complete.
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

/// A buffer a queued write can own: its bytes stay where they are when it is moved.
pub(super) trait Owned: Send {
    fn bytes(&self) -> &[u8];
}

impl Owned for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Owned for Aligned {
    fn bytes(&self) -> &[u8] {
        self.get()
    }
}

/// A finished queued write: its buffer back, and the error if it failed. A short write has
/// been completed synchronously already.
pub(super) struct Completed<B> {
    pub offset: u64,
    pub buf: B,
    pub len: usize,
    pub error: Option<io::Error>,
}

/// Writes in flight on one ring; each owns its buffer until its completion is reaped.
pub(super) struct Queue<B: Owned> {
    ring: IoUring,
    /// (file offset, buffer, length) of each write in flight, indexed by user_data.
    slots: Vec<Option<(u64, B, usize)>>,
    inflight: usize,
}

impl<B: Owned> Queue<B> {
    pub(super) fn new(depth: u32) -> io::Result<Queue<B>> {
        Ok(Queue {
            ring: IoUring::new(depth)?,
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

    /// Queue `buf.bytes()[..len]` to be written at `offset` of `file` (the caller keeps
    /// `file` open until the queue is drained, and reaps before exceeding the depth).
    pub(super) fn submit(
        &mut self,
        file: &File,
        offset: u64,
        buf: B,
        len: usize,
    ) -> io::Result<()> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| io::Error::other("io_uring queue full"))?;
        let n = u32::try_from(len).map_err(|_| io::Error::other("write over 4 GiB"))?;
        let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.bytes().as_ptr(), n)
            .offset(offset)
            .build()
            .user_data(slot as u64);
        self.slots[slot] = Some((offset, buf, len));
        // SAFETY: the buffer is owned by `self.slots[slot]` until its completion is reaped
        // (reap(), and Drop waits for all or leaks them), and moving a buffer does not move
        // its heap bytes (`Owned`), so the kernel never sees freed memory.
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
    pub(super) fn reap(&mut self, file: &File, min: usize) -> io::Result<Vec<Completed<B>>> {
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
                // Rare (a signal, a nearly full disk); finishing it here also surfaces ENOSPC.
                let n = res as usize;
                file.write_all_at(&buf.bytes()[n..len], offset + n as u64)
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

impl<B: Owned> Drop for Queue<B> {
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

/// The queue of `O_DIRECT` pack writes, or `None` when io_uring is unavailable.
pub(super) fn direct_queue(depth: u32) -> Option<Queue<Aligned>> {
    if !available() {
        return None;
    }
    Queue::new(depth).ok()
}

/// A buffered file written through io_uring.
pub(super) struct UringFile {
    /// First, so it is dropped (waiting for its writes) before the file is closed.
    queue: Queue<Vec<u8>>,
    file: File,
    free: Vec<Vec<u8>>,
}

impl UringFile {
    pub(super) fn new(file: File) -> Result<UringFile, (File, io::Error)> {
        match Queue::new(DEPTH) {
            Ok(queue) => Ok(UringFile {
                file,
                queue,
                free: Vec::new(),
            }),
            Err(e) => Err((file, e)),
        }
    }

    /// Wait for at least `min` completions; keeps their buffers for reuse.
    fn reap(&mut self, min: usize) -> io::Result<()> {
        let mut first_err = None;
        for c in self.queue.reap(&self.file, min)? {
            if let Some(e) = c.error {
                first_err.get_or_insert(e);
            }
            self.free.push(c.buf);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl WriteFile for UringFile {
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        if self.queue.is_full() {
            self.reap(1)?;
        }
        let len = buf.len();
        self.queue.submit(&self.file, offset, buf, len)?;
        self.reap(0)
    }

    fn recycle(&mut self) -> Option<Vec<u8>> {
        self.free.pop()
    }

    fn sync(&mut self) -> io::Result<()> {
        while !self.queue.is_empty() {
            self.reap(1)?;
        }
        self.file.sync_all()
    }
}
