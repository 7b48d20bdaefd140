//! The real file system, with file data written by io_uring or by `pwrite`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{direct, uring, Io, WriteFile};

pub struct PlainIo {
    uring: bool,
    direct: bool,
}

impl PlainIo {
    /// Buffered writes (through io_uring when `uring`); packs use `O_DIRECT` unless
    /// `TIERVAULT_NO_DIRECT=1`.
    pub fn new(uring: bool) -> PlainIo {
        PlainIo {
            uring,
            direct: direct::allowed(),
        }
    }
}

impl Io for PlainIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        if self.uring {
            match uring::UringFile::new(file) {
                Ok(f) => return Ok(Box::new(f)),
                Err((file, e)) => {
                    tracing::warn!(
                        "io_uring setup failed ({e}); writing {} with pwrite",
                        path.display()
                    );
                    return Ok(Box::new(PwriteFile { file, free: None }));
                }
            }
        }
        Ok(Box::new(PwriteFile { file, free: None }))
    }

    fn create_pack(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        if self.direct {
            if let Some(f) = direct::create(path)? {
                return Ok(Box::new(f));
            }
        }
        self.create(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn engine(&self) -> &'static str {
        match (self.uring, self.direct) {
            (true, true) => "io_uring+O_DIRECT",
            (true, false) => "io_uring",
            (false, true) => "pwrite+O_DIRECT",
            (false, false) => "pwrite",
        }
    }
}

pub(super) struct PwriteFile {
    pub(super) file: File,
    free: Option<Vec<u8>>,
}

impl WriteFile for PwriteFile {
    fn write_at(&mut self, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        self.file.write_all_at(&buf, offset)?;
        self.free = Some(buf);
        Ok(())
    }

    fn recycle(&mut self) -> Option<Vec<u8>> {
        self.free.take()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}
