//! File-system metadata in both directions: reading an entry's metadata for a tree, finding
//! a file's data extents, and applying metadata on restore.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_bytes::ByteBuf;

use crate::tree::{Entry, NodeType};

pub fn node_type(md: &Metadata) -> NodeType {
    let ft = md.file_type();
    if ft.is_dir() {
        NodeType::Dir
    } else if ft.is_symlink() {
        NodeType::Symlink
    } else if ft.is_char_device() {
        NodeType::CharDev
    } else if ft.is_block_device() {
        NodeType::BlockDev
    } else if ft.is_fifo() {
        NodeType::Fifo
    } else if ft.is_socket() {
        NodeType::Socket
    } else {
        NodeType::File
    }
}

/// A tree entry for `name` from its `lstat` metadata (content, subtree, target filled later).
pub fn entry_from(name: &[u8], md: &Metadata) -> Entry {
    let kind = node_type(md);
    Entry {
        name: ByteBuf::from(name.to_vec()),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        ino: md.ino(),
        dev: md.dev(),
        nlink: md.nlink(),
        size: (kind == NodeType::File).then_some(md.size()),
        content: None,
        subtree: None,
        target: None,
        rdev: matches!(kind, NodeType::CharDev | NodeType::BlockDev).then_some(md.rdev()),
        xattrs: Vec::new(),
    }
}

/// Extended attributes that can be read; unreadable ones are left out (the issue asks for
/// "xattrs where readable"), never failing the file.
pub fn read_xattrs(path: &Path) -> Vec<(ByteBuf, ByteBuf)> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0)
            }
            Err(_) => return Vec::new(),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 256];
        loop {
            match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut val) {
                Ok(k) => {
                    val.truncate(k);
                    out.push((ByteBuf::from(name.to_vec()), ByteBuf::from(val)));
                    break;
                }
                Err(rustix::io::Errno::RANGE) if val.len() < (1 << 20) => {
                    val.resize(val.len() * 8, 0)
                }
                Err(_) => break,
            }
        }
    }
    out.sort();
    out
}

/// The data extents of a file as `SEEK_DATA`/`SEEK_HOLE` report them, as (offset, len).
/// Files without holes (or file systems without the calls) give one extent.
pub fn data_extents(file: &File, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(file, SeekFrom::Data(pos as i64)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        if start >= size {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start as i64)) {
            Ok(e) => e.min(size),
            Err(_) => size,
        };
        if end <= start {
            break;
        }
        out.push((start, end - start));
        pos = end;
    }
    out
}

/// Whether a file's allocation suggests holes (worth asking for extents).
pub fn maybe_sparse(md: &Metadata) -> bool {
    md.blocks().saturating_mul(512) < md.size()
}

pub fn set_xattrs(path: &Path, xattrs: &[(ByteBuf, ByteBuf)]) -> std::io::Result<()> {
    for (k, v) in xattrs {
        rustix::fs::lsetxattr(
            path,
            OsStr::from_bytes(k),
            v,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}

fn timespec(ns: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Who restores, read once per restore: it decides which metadata calls a new file needs.
#[derive(Debug, Clone, Copy)]
pub struct Creds {
    pub as_root: bool,
    euid: u32,
    egid: u32,
    /// The process's umask (all bits when unknown, so that every mode is set explicitly).
    umask: u32,
}

impl Creds {
    pub fn current() -> Creds {
        // Reading the umask with umask(2) would change it for every thread for a moment.
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o7777);
        let euid = rustix::process::geteuid();
        Creds {
            as_root: euid.is_root(),
            euid: euid.as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask,
        }
    }

    /// The mode to create a regular file with, and whether that is already its final mode.
    /// Plain permission bits the umask leaves alone are given at creation (one system call
    /// less per file: most of a small-file restore is system calls). Set-id and sticky bits
    /// come afterwards, after the owner (chown clears them), and so does the mode of a file
    /// with xattrs (setting a user xattr needs write permission, which the final mode may
    /// not give).
    pub fn create_mode(&self, e: &Entry) -> (u32, bool) {
        if e.mode & 0o7000 == 0 && e.mode & self.umask == 0 && e.xattrs.is_empty() {
            (e.mode, true)
        } else {
            (0o600, false)
        }
    }

    fn owner_differs(&self, e: &Entry) -> bool {
        e.uid != self.euid || e.gid != self.egid
    }
}

/// As [`apply_metadata`], on an open regular file created by `creds` (no path lookups; owner
/// changed only when it differs from the creator's; mode only when it was not given at
/// creation).
pub fn apply_metadata_fd(
    f: &File,
    e: &Entry,
    creds: &Creds,
    mode_given: bool,
) -> std::io::Result<()> {
    use rustix::fs::{fchmod, futimens, Mode, Timestamps};
    if creds.as_root && creds.owner_differs(e) {
        std::os::unix::fs::fchown(f, Some(e.uid), Some(e.gid))?;
    }
    if !mode_given {
        fchmod(f, Mode::from_raw_mode(e.mode))?;
    }
    let ts = Timestamps {
        last_access: timespec(e.mtime),
        last_modification: timespec(e.mtime),
    };
    futimens(f, &ts)?;
    Ok(())
}

/// Owner (when running as root), mode (not for symlinks), then times, in that order because
/// chown clears set-id bits and every change moves ctime but not mtime.
pub fn apply_metadata(path: &Path, e: &Entry, as_root: bool) -> std::io::Result<()> {
    use rustix::fs::{chmodat, utimensat, AtFlags, Mode, Timestamps, CWD};
    if as_root {
        std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid))?;
    }
    if e.kind != NodeType::Symlink {
        chmodat(CWD, path, Mode::from_raw_mode(e.mode), AtFlags::empty())?;
    }
    let ts = Timestamps {
        last_access: timespec(e.mtime),
        last_modification: timespec(e.mtime),
    };
    utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32, xattrs: bool) -> Entry {
        let mut e = entry_from(b"f", &std::fs::metadata("/").expect("stat /"));
        e.kind = NodeType::File;
        e.mode = mode;
        if xattrs {
            e.xattrs.push((
                ByteBuf::from(b"user.a".to_vec()),
                ByteBuf::from(b"1".to_vec()),
            ));
        }
        e
    }

    #[test]
    fn only_plain_modes_without_xattrs_are_given_at_creation() {
        let c = Creds {
            as_root: false,
            euid: 1000,
            egid: 1000,
            umask: 0o022,
        };
        assert_eq!(c.create_mode(&file(0o644, false)), (0o644, true));
        assert_eq!(c.create_mode(&file(0o444, false)), (0o444, true));
        // The umask would clear bits, a set-id bit must follow the owner, a read-only file
        // with xattrs must stay writable until they are set.
        assert_eq!(c.create_mode(&file(0o666, false)), (0o600, false));
        assert_eq!(c.create_mode(&file(0o4755, false)), (0o600, false));
        assert_eq!(c.create_mode(&file(0o444, true)), (0o600, false));
    }
}
