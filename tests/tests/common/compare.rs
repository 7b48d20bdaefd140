//! The tree comparator: is a restored tree bit-identical to its source?
//!
//! Compared per path: type, content, hole map (data extents), permission bits, mtime to the
//! nanosecond (directories and symlinks included, via lstat), xattrs (but `security.*`),
//! symlink targets, uid/gid when running as root; and across paths, the hard-link groups (the
//! partition of paths into inodes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::fsx::{self, show};

/// Everything the comparator knows about one path.
#[derive(Debug)]
struct Entry {
    abs: PathBuf,
    kind: &'static str,
    mode: u32,
    mtime: (i64, i64),
    uid: u32,
    gid: u32,
    size: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    target: Option<Vec<u8>>,
    inode: (u64, u64),
}

/// Relative path bytes (empty for the root) → entry.
fn scan(root: &Path) -> io::Result<BTreeMap<Vec<u8>, Entry>> {
    let mut out = BTreeMap::new();
    scan_into(root, Vec::new(), &mut out)?;
    Ok(out)
}

fn scan_into(abs: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Entry>) -> io::Result<()> {
    let md = fs::symlink_metadata(abs)?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "chardev"
    } else {
        "blockdev"
    };
    let target = if ft.is_symlink() {
        Some(fs::read_link(abs)?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    out.insert(
        rel.clone(),
        Entry {
            abs: abs.to_path_buf(),
            kind,
            mode: md.mode() & 0o7777,
            mtime: fsx::mtime_of(&md),
            uid: md.uid(),
            gid: md.gid(),
            size: md.len(),
            xattrs: fsx::xattrs(abs)?,
            target,
            inode: (md.dev(), md.ino()),
        },
    );
    if ft.is_dir() {
        for e in fs::read_dir(abs)? {
            let name = e?.file_name();
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            scan_into(&abs.join(&name), child, out)?;
        }
    }
    Ok(())
}

/// Compares the trees at `a` and `b`, ignoring the relative paths in `skip` (absent or not,
/// different or not). Returns every difference found, one per line, or Ok.
pub fn compare_trees(a: &Path, b: &Path, skip: &[&[u8]]) -> Result<(), String> {
    let ta = scan(a).map_err(|e| format!("scanning {}: {e}", fsx::show_path(a)))?;
    let tb = scan(b).map_err(|e| format!("scanning {}: {e}", fsx::show_path(b)))?;
    let skipped = |p: &[u8]| skip.contains(&p);
    let mut diffs = Vec::new();
    for (path, ea) in &ta {
        if skipped(path) {
            continue;
        }
        match tb.get(path) {
            None => diffs.push(format!("{}: missing in {}", shown(path), fsx::show_path(b))),
            Some(eb) => compare_entry(path, ea, eb, &mut diffs),
        }
    }
    for path in tb.keys().filter(|p| !ta.contains_key(*p) && !skipped(p)) {
        diffs.push(format!("{}: extra in {}", shown(path), fsx::show_path(b)));
    }
    let (ga, gb) = (link_groups(&ta, &skipped), link_groups(&tb, &skipped));
    for g in ga.difference(&gb) {
        diffs.push(format!(
            "hard-link group {} of {} is not a group in {}",
            show_group(g),
            fsx::show_path(a),
            fsx::show_path(b)
        ));
    }
    for g in gb.difference(&ga) {
        diffs.push(format!(
            "hard-link group {} of {} is not a group in {}",
            show_group(g),
            fsx::show_path(b),
            fsx::show_path(a)
        ));
    }
    if diffs.is_empty() {
        return Ok(());
    }
    let total = diffs.len();
    diffs.truncate(30);
    Err(format!(
        "trees {} and {} differ ({total} differences):\n  {}",
        fsx::show_path(a),
        fsx::show_path(b),
        diffs.join("\n  ")
    ))
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_owned()
    } else {
        show(path)
    }
}

fn show_group(g: &[Vec<u8>]) -> String {
    let names: Vec<String> = g.iter().map(|p| shown(p)).collect();
    format!("[{}]", names.join(", "))
}

fn compare_entry(path: &[u8], a: &Entry, b: &Entry, diffs: &mut Vec<String>) {
    let p = shown(path);
    if a.kind != b.kind {
        diffs.push(format!("{p}: type {} vs {}", a.kind, b.kind));
        return;
    }
    if a.kind != "symlink" && a.mode != b.mode {
        diffs.push(format!("{p}: mode {:o} vs {:o}", a.mode, b.mode));
    }
    if a.mtime != b.mtime {
        diffs.push(format!(
            "{p}: mtime {}.{:09} vs {}.{:09}",
            a.mtime.0, a.mtime.1, b.mtime.0, b.mtime.1
        ));
    }
    if fsx::is_root() && (a.uid, a.gid) != (b.uid, b.gid) {
        diffs.push(format!(
            "{p}: owner {}:{} vs {}:{}",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if a.xattrs != b.xattrs {
        diffs.push(format!(
            "{p}: xattrs {} vs {}",
            show_xattrs(&a.xattrs),
            show_xattrs(&b.xattrs)
        ));
    }
    if a.target != b.target {
        let t = |t: &Option<Vec<u8>>| t.as_deref().map(show).unwrap_or_default();
        diffs.push(format!(
            "{p}: symlink target {} vs {}",
            t(&a.target),
            t(&b.target)
        ));
    }
    if a.kind == "file" {
        if let Err(e) = compare_file_data(&a.abs, &b.abs) {
            diffs.push(format!("{p}: {e}"));
        }
    }
}

fn show_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let items: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{}={}", show(k), show(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Hard-link groups: sets of ≥ 2 non-directory paths sharing an inode.
fn link_groups(
    tree: &BTreeMap<Vec<u8>, Entry>,
    skipped: &dyn Fn(&[u8]) -> bool,
) -> BTreeSet<Vec<Vec<u8>>> {
    let mut by_inode: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (path, e) in tree {
        if e.kind != "dir" && !skipped(path) {
            by_inode.entry(e.inode).or_default().push(path.clone());
        }
    }
    by_inode
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

/// Compares two regular files' size, bytes and hole maps. Err describes the first difference.
pub fn compare_file_data(a: &Path, b: &Path) -> Result<(), String> {
    let io_err = |p: &Path, e: io::Error| format!("reading {}: {e}", fsx::show_path(p));
    let (la, lb) = (
        fs::metadata(a).map_err(|e| io_err(a, e))?.len(),
        fs::metadata(b).map_err(|e| io_err(b, e))?.len(),
    );
    if la != lb {
        return Err(format!("size {la} vs {lb}"));
    }
    let (mut fa, mut fb) = (
        File::open(a).map_err(|e| io_err(a, e))?,
        File::open(b).map_err(|e| io_err(b, e))?,
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(|e| io_err(a, e))?;
        let m = read_full(&mut fb, &mut bb).map_err(|e| io_err(b, e))?;
        if ba[..n] != bb[..m] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..m])
                .position(|(x, y)| x != y)
                .unwrap_or(n.min(m));
            return Err(format!("content differs at byte {}", offset + i as u64));
        }
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    let ea = fsx::data_extents(a).map_err(|e| io_err(a, e))?;
    let eb = fsx::data_extents(b).map_err(|e| io_err(b, e))?;
    if ea != eb {
        return Err(format!(
            "hole map differs: data extents {} vs {}",
            show_extents(&ea),
            show_extents(&eb)
        ));
    }
    Ok(())
}

fn show_extents(e: &[(u64, u64)]) -> String {
    let items: Vec<String> = e.iter().take(8).map(|(s, t)| format!("{s}..{t}")).collect();
    let more = if e.len() > 8 {
        format!(", … ({} in all)", e.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", items.join(", "))
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Panics, naming every difference, unless the trees `a` and `b` are identical.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if let Err(e) = compare_trees(a, b, &[]) {
        panic!("{e}");
    }
}

/// Like [`assert_same_tree`] but ignoring the relative paths in `skip`.
pub fn assert_same_tree_except(a: &Path, b: &Path, skip: &[&[u8]]) {
    if let Err(e) = compare_trees(a, b, skip) {
        panic!("{e}");
    }
}

/// Panics unless the regular files `a` and `b` have the same bytes and hole map.
pub fn assert_same_file_data(a: &Path, b: &Path) {
    if let Err(e) = compare_file_data(a, b) {
        panic!("{} vs {}: {e}", fsx::show_path(a), fsx::show_path(b));
    }
}
