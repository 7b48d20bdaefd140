//! A backup worker: reads a segment of a file (or takes a buffer of a stream), cuts it into
//! chunks and stores the new ones. Each worker keeps its read buffer, zstd context and pack.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::blob::Kind;
use crate::config::ChunkerSizes;
use crate::error::{Error, Result};
use crate::tree::ChunkRef;
use crate::writer::{Sink, Writer};

use super::{Cancel, Progress};

/// Files are cut into independent segments at multiples of this (format.md 8.2).
pub const SEGMENT: u64 = 16 << 20;

/// Segments are read in pieces of this size, with a look at the cancel flag between pieces,
/// so a cancel waits for at most about one chunk's worth of reading (chunks are at most
/// 512 KiB by default).
const READ_PIECE: usize = 1 << 20;

pub enum Input {
    /// Read the whole file (small files without holes).
    Whole(Arc<PathBuf>),
    /// Read `len` bytes at `offset`.
    Range(Arc<PathBuf>, u64, u64),
    /// Bytes already read (a stream); `offset` is their position in the stream.
    Owned(Vec<u8>, u64),
}

pub struct Job {
    pub slot: usize,
    pub seg: usize,
    pub input: Input,
}

pub struct Done {
    pub slot: usize,
    pub seg: usize,
    pub result: std::result::Result<Segment, String>,
}

pub struct Segment {
    pub chunks: Vec<ChunkRef>,
    /// Bytes actually read (a whole-file read takes what is there at that moment).
    pub read: u64,
    /// The job read the whole file, so `read` is its size.
    pub whole: bool,
}

#[derive(Clone, Copy)]
pub enum Chunking {
    Cdc(ChunkerSizes),
    Fixed(u32),
}

pub struct Worker<'w, 'v> {
    pub writer: &'w Writer<'v>,
    pub chunking: Chunking,
    pub progress: &'w Progress,
    pub sink: Sink,
    pub buf: Vec<u8>,
    pub cancel: Cancel<'w>,
}

fn open_noatime(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOATIME spares a metadata write per file but is refused on files we do not own.
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        Err(e) => Err(e),
    }
}

impl Worker<'_, '_> {
    /// Process one job. `Err(String)` is a problem with the input file (skip it); `Err` of the
    /// outer result is a failure of the vault (abort the backup) or [`Error::Cancelled`]
    /// (the cancel flag is looked at between read pieces and between chunks).
    pub fn run(&mut self, job: Job) -> Result<std::result::Result<Segment, String>> {
        self.cancel.check()?;
        let whole = matches!(job.input, Input::Whole(_));
        let cancel = self.cancel;
        let (base, owned) = match job.input {
            Input::Whole(path) => {
                self.buf.clear();
                let r = open_noatime(&path).and_then(|f| read_whole(f, &mut self.buf, cancel));
                match r {
                    Ok(true) => {}
                    Ok(false) => return Err(Error::Cancelled),
                    Err(e) => return Ok(Err(e.to_string())),
                }
                (0, None)
            }
            Input::Range(path, offset, len) => {
                let n = len as usize;
                if self.buf.len() < n {
                    self.buf.resize(n, 0);
                } else {
                    self.buf.truncate(n);
                }
                let r = open_noatime(&path)
                    .and_then(|f| read_full_at(&f, &mut self.buf, offset, cancel));
                match r {
                    Ok(Some(n)) => self.buf.truncate(n),
                    Ok(None) => return Err(Error::Cancelled),
                    Err(e) => return Ok(Err(e.to_string())),
                }
                (offset, None)
            }
            Input::Owned(data, offset) => (offset, Some(data)),
        };
        let data = owned.as_deref().unwrap_or(&self.buf);
        let chunks = chunk_and_store(
            self.writer,
            &mut self.sink,
            self.chunking,
            data,
            base,
            cancel,
        )?;
        self.progress
            .bytes_done
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Ok(Segment {
            chunks,
            read: data.len() as u64,
            whole,
        }))
    }
}

/// Read a whole file into `buf` (whatever it holds at the moment); `false` when cancelled.
fn read_whole(mut f: File, buf: &mut Vec<u8>, cancel: Cancel<'_>) -> std::io::Result<bool> {
    // Room for the whole file up front, as `File::read_to_end` would make.
    if let Ok(md) = f.metadata() {
        buf.reserve(md.len() as usize);
    }
    loop {
        if cancel.is_set() {
            return Ok(false);
        }
        let n = (&mut f).take(READ_PIECE as u64).read_to_end(buf)?;
        if n < READ_PIECE {
            return Ok(true);
        }
    }
}

/// Fill `buf` from `offset` (short at end of file): the bytes read, or `None` when cancelled.
fn read_full_at(
    f: &File,
    buf: &mut [u8],
    offset: u64,
    cancel: Cancel<'_>,
) -> std::io::Result<Option<usize>> {
    let mut done = 0;
    while done < buf.len() {
        if cancel.is_set() {
            return Ok(None);
        }
        let end = buf.len().min(done + READ_PIECE);
        match f.read_at(&mut buf[done..end], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(done))
}

/// Cut `data` (which starts at `base` in its file) into chunks and store the new ones;
/// [`Error::Cancelled`] (with the chunks stored so far complete in the sink) once `cancel` is
/// set.
pub fn chunk_and_store(
    writer: &Writer<'_>,
    sink: &mut Sink,
    chunking: Chunking,
    data: &[u8],
    base: u64,
    cancel: Cancel<'_>,
) -> Result<Vec<ChunkRef>> {
    let mut out = Vec::new();
    let mut put = |off: usize, len: usize, sink: &mut Sink| -> Result<()> {
        cancel.check()?;
        let piece = &data[off..off + len];
        let (id, _) = writer.store(sink, Kind::Data, piece)?;
        out.push(ChunkRef(base + off as u64, id, len as u32));
        Ok(())
    };
    match chunking {
        Chunking::Cdc(s) => {
            if data.len() <= s.min as usize {
                if !data.is_empty() {
                    put(0, data.len(), sink)?;
                }
            } else {
                for c in fastcdc::v2020::FastCDC::new(data, s.min, s.avg, s.max) {
                    put(c.offset, c.length, sink)?;
                }
            }
        }
        Chunking::Fixed(n) => {
            let mut off = 0;
            while off < data.len() {
                let len = (n as usize).min(data.len() - off);
                put(off, len, sink)?;
                off += len;
            }
        }
    }
    Ok(out)
}
