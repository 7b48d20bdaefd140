//! Everything the store writes goes through [`Io`], so durability is one narrow seam: the
//! real engines (io_uring, with a plain `pwrite` fallback chosen at run time) and the test
//! layer that simulates power cuts implement the same trait. Reads use `std::fs` directly:
//! they cannot affect what survives a crash.

use std::io;
use std::path::Path;
use std::sync::Arc;

mod aligned;
pub(crate) mod direct;
mod plain;
mod uring;

pub(crate) use aligned::{Aligned, ALIGN};
pub use plain::PlainIo;

/// File-system operations whose order decides crash safety.
pub trait Io: Send + Sync {
    /// Create (or truncate) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Create a pack file: large, written front to back, not read back soon. The real
    /// engine bypasses the page cache (`O_DIRECT`) where the file system allows.
    fn create_pack(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.create(path)
    }
    /// Atomically rename; durable only after `sync_dir` of the target's directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync a directory, making the renames and creations in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Which engine writes file data ("io_uring" or "pwrite").
    fn engine(&self) -> &'static str;
}

/// A file being written.
pub trait WriteFile: Send {
    /// Queue `buf` to be written at `offset`. The write may finish later (io_uring).
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()>;
    /// A buffer whose write has finished, for reuse (avoids a large allocation per write).
    fn recycle(&mut self) -> Option<Vec<u8>>;
    /// Wait for every queued write, then fsync the file.
    fn sync(&mut self) -> io::Result<()>;
}

/// The engine for this process: io_uring when the kernel allows it, else plain writes.
/// `TIERVAULT_NO_URING=1` forces the fallback (tests run both).
pub fn default_io() -> Arc<dyn Io> {
    Arc::new(PlainIo::new(uring::available()))
}

/// Write a whole small file durably: tmp file, fsync, rename, fsync the directory.
pub fn write_atomic(io: &dyn Io, tmp: &Path, dest: &Path, data: Vec<u8>) -> io::Result<()> {
    let mut f = io.create(tmp)?;
    f.write_at(0, data)?;
    f.sync()?;
    drop(f);
    io.rename(tmp, dest)?;
    io.sync_dir(dest.parent().unwrap_or(Path::new(".")))
}
