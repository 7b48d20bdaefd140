//! Low-level file-system facts and actions shared by the generator, the comparator and the
//! tests: hole maps, xattrs, nanosecond times, ownership, tree copies and vault listings.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
use rustix::io::Errno;

/// True when running with effective uid 0 (DAC does not stop reads; ownership is settable).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Path bytes shown with `\xNN` escapes for anything but printable ASCII (names in these tests
/// contain newlines and non-UTF-8 bytes).
pub fn show(path: &[u8]) -> String {
    let mut s = String::new();
    for &b in path {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Shorthand for [`show`] of a path.
pub fn show_path(path: &Path) -> String {
    show(path.as_os_str().as_bytes())
}

/// Data extents of a regular file as `[start, end)` pairs, from `SEEK_DATA`/`SEEK_HOLE`.
/// Everything outside them is a hole.
pub fn data_extents(path: &Path) -> io::Result<Vec<(u64, u64)>> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut extents = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(to_i64(pos))) {
            Ok(s) => s,
            // ENXIO: no data at or after pos; the rest of the file is a hole.
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(to_i64(start)))?;
        extents.push((start, end.min(len)));
        pos = end;
    }
    Ok(extents)
}

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).expect("file offsets in these tests fit in i64")
}

/// Extended attributes of a path (not following symlinks), name → value. `security.*` is left
/// out: labels there are assigned by the system on creation, not by the tree's owner.
pub fn xattrs(path: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let size = match rustix::fs::llistxattr(path, &mut []) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(out);
    }
    let mut raw = vec![0; size];
    let n = rustix::fs::llistxattr(path, &mut raw)?;
    // The buffer is of c_char, i8 or u8 depending on the target: reinterpret each as a byte.
    #[allow(clippy::unnecessary_cast)]
    let names: Vec<u8> = raw[..n].iter().map(|&c| c as u8).collect();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"security.") {
            continue;
        }
        let len = rustix::fs::lgetxattr(path, name, &mut [])?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, name, &mut value)?;
        value.truncate(got);
        out.insert(name.to_vec(), value);
    }
    Ok(out)
}

/// Sets a `user.` xattr. Returns false (and says so once on stderr) when the file system does
/// not support xattrs, so generators can carry on without them.
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<bool> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    match rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOTSUP) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "note: the file system under {} refuses xattrs; trees are generated without them",
                    show_path(path)
                );
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets atime and mtime of `path` (not following symlinks) to `sec` + `nsec`.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    let t = Timespec {
        tv_sec: sec as _,
        tv_nsec: nsec as _,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// (seconds, nanoseconds) of a path's mtime as `lstat` reports it.
pub fn mtime_of(md: &fs::Metadata) -> (i64, i64) {
    (md.mtime(), md.mtime_nsec())
}

/// Metadata that travels with an inode and that copies and restores must keep.
#[derive(Clone, Debug)]
pub struct InodeMeta {
    pub mode: u32,
    pub mtime: (i64, u32),
    /// Applied only when running as root.
    pub owner: Option<(u32, u32)>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Applies `meta` to `path` in the order that keeps every piece: owner first (chown clears
/// set-id bits), xattrs before the mode (an unprivileged owner needs write permission to set
/// them), then the mode, and the mtime last (the others change ctime only). Symlinks get owner
/// and mtime only: Linux has no symlink modes and refuses `user.` xattrs on them.
pub fn apply_meta(path: &Path, meta: &InodeMeta, is_symlink: bool) -> io::Result<()> {
    if let Some((uid, gid)) = meta.owner {
        if is_root() {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
    }
    if !is_symlink {
        for (name, value) in &meta.xattrs {
            if !set_xattr(path, name, value)? {
                break;
            }
        }
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))?;
    }
    set_mtime(path, meta.mtime.0, meta.mtime.1)
}

/// Reads the metadata of `path` as an [`InodeMeta`] (owner included only as root).
pub fn read_meta(path: &Path) -> io::Result<InodeMeta> {
    let md = fs::symlink_metadata(path)?;
    let nsec = u32::try_from(md.mtime_nsec()).expect("nanoseconds are below 1e9");
    Ok(InodeMeta {
        mode: md.mode() & 0o7777,
        mtime: (md.mtime(), nsec),
        owner: is_root().then(|| (md.uid(), md.gid())),
        xattrs: xattrs(path)?.into_iter().collect(),
    })
}

/// Writes `data` at `offset` of an open file.
pub fn write_at(f: &mut File, offset: u64, data: &[u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

/// Copies a regular file's content keeping its holes: only the data extents are written.
pub fn copy_sparse(src: &Path, dst: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let mut buf = vec![0u8; 1 << 20];
    for (start, end) in data_extents(src)? {
        from.seek(SeekFrom::Start(start))?;
        to.seek(SeekFrom::Start(start))?;
        let mut left = end - start;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).expect("bounded by the buffer");
            from.read_exact(&mut buf[..n])?;
            to.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    to.set_len(from.metadata()?.len())?;
    Ok(())
}

/// `cp -a` in Rust: copies the tree `src` to `dst` (which must not exist) keeping content,
/// holes, types, modes, nanosecond mtimes, xattrs, symlink targets, hard-link groups, fifos,
/// and ownership when root. Used to keep reference copies and by the comparator's own test.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_entry(src, dst, &mut links)
}

fn copy_entry(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = md.file_type();
    let meta = read_meta(src)?;
    if ft.is_dir() {
        fs::create_dir(dst)?;
        let mut names: Vec<_> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            copy_entry(&src.join(&name), &dst.join(&name), links)?;
        }
        // Last, so that creating the children does not move the directory's mtime.
        return apply_meta(dst, &meta, false);
    }
    if ft.is_file() && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            return fs::hard_link(first, dst);
        }
        links.insert((md.dev(), md.ino()), dst.to_path_buf());
    }
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        return apply_meta(dst, &meta, true);
    }
    if ft.is_file() {
        copy_sparse(src, dst)?;
    } else if ft.is_fifo() {
        make_fifo(dst)?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("copy_tree: unsupported file type at {}", show_path(src)),
        ));
    }
    apply_meta(dst, &meta, false)
}

/// Creates a fifo (mode fixed later by [`apply_meta`]).
pub fn make_fifo(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )?;
    Ok(())
}

/// One entry of a [`listing`]: the facts that change when a file is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub is_dir: bool,
    /// Files only (directory sizes are file-system noise).
    pub size: u64,
    /// Files only.
    pub mtime: (i64, i64),
}

/// Every path under `root` (relative) with type, and size + mtime for files: two equal
/// listings mean nothing was added, removed or rewritten.
pub fn listing(root: &Path) -> BTreeMap<PathBuf, Listed> {
    let mut out = BTreeMap::new();
    walk(root, &mut |path, md| {
        let rel = path
            .strip_prefix(root)
            .expect("walk stays under its root")
            .to_path_buf();
        let is_dir = md.is_dir();
        let (size, mtime) = if is_dir {
            (0, (0, 0))
        } else {
            (md.len(), mtime_of(md))
        };
        out.insert(
            rel,
            Listed {
                is_dir,
                size,
                mtime,
            },
        );
    });
    out
}

/// Total bytes of the regular files under `root` (the on-disk size of a vault).
pub fn file_bytes(root: &Path) -> u64 {
    let mut total = 0;
    walk(root, &mut |_, md| {
        if md.is_file() {
            total += md.len();
        }
    });
    total
}

/// Regular files under `root`, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(root, &mut |path, md| {
        if md.is_file() {
            out.push(path.to_path_buf());
        }
    });
    out.sort();
    out
}

/// Visits every entry under `root` (not `root` itself), not following symlinks, with its
/// `lstat`. Panics on I/O errors: the walked trees are the tests' own. Entries that vanish
/// while walked are skipped (a server still cleaning up after a killed client).
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if gone(&e) => return,
        Err(e) => panic!("reading directory {}: {e}", show_path(root)),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("listing {}: {e}", show_path(root)))
                .path()
        })
        .collect();
    paths.sort();
    for p in paths {
        let md = match fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(e) if gone(&e) => continue,
            Err(e) => panic!("lstat {}: {e}", show_path(&p)),
        };
        f(&p, &md);
        if md.is_dir() {
            walk(&p, f);
        }
    }
}

/// Flips every bit of the byte at `offset` of `path` in place (files in a vault are typically
/// read-only, so the mode is opened up for the write and put back after).
pub fn flip_byte(path: &Path, offset: u64) {
    let mode = fs::metadata(path)
        .expect("stat of the file to corrupt")
        .permissions()
        .mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o600))
        .expect("making the file writable");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("opening the file to corrupt");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))
        .expect("seek to the byte to flip");
    f.read_exact(&mut b).expect("reading the byte to flip");
    b[0] ^= 0xff;
    write_at(&mut f, offset, &b).expect("writing the flipped byte");
    f.sync_all().expect("syncing the corrupted file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("restoring the file's mode");
}
