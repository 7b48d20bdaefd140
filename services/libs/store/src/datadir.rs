//! Data directories (docs/format.md sections 1, 2 and 5): which ones may be used, how much room
//! each has, and which one takes the next pack.
//!
//! On an appliance each data directory is the mount point of its own md array. An array that
//! failed, or was not mounted at boot, leaves an empty directory on the root file system; a
//! pack written there would fill the root file system and vanish once the array is mounted
//! again. So every data directory holds a marker file naming the vault and the directory's
//! number, and a directory without a matching marker is *unavailable*: never written to,
//! never searched for packs, never cleaned, and its packs are reported missing rather than
//! forgotten.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::io::{write_atomic, Io};

/// The marker file's name inside a data directory.
pub const MARKER: &str = "tiervault-data";
const MARKER_FORMAT: &str = "tiervault-data";
/// The data directory of a vault created without a list.
pub const DEFAULT_DIR: &str = "data";
/// Names at the top of a vault that a relative data directory must not take.
const RESERVED: [&str; 14] = [
    "config",
    "keys",
    "lock",
    "index",
    "index.cache",
    "snapshots",
    "tmp",
    "sessions",
    "condemned",
    "gc.lock",
    "gc.live",
    "replication",
    "quarantine",
    "lost+found",
];
/// How long a free-space figure is trusted before `statvfs` is asked again. Placement runs
/// once per pack (~32 MiB), so this bounds the calls to a few per second whatever the speed.
const REMEASURE: Duration = Duration::from_secs(1);

/// The marker file's content (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    format: String,
    vault: String,
    dir: u16,
}

/// The bytes of the marker of data directory `dir` of vault `vault_hex`.
pub(crate) fn marker_bytes(vault_hex: &str, dir: u16) -> Vec<u8> {
    let m = Marker {
        format: MARKER_FORMAT.into(),
        vault: vault_hex.into(),
        dir,
    };
    // Serialising a struct of strings and an integer cannot fail.
    let mut out = serde_json::to_vec_pretty(&m).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Write the marker durably: into the directory's `tmp/` (same file system, so the rename is
/// atomic), fsync, rename, fsync the data directory. The temporary name is unique: two
/// processes upgrading an old vault at once must not write into one file.
pub(crate) fn write_marker(
    io: &dyn Io,
    path: &Path,
    vault_hex: &str,
    dir: u16,
) -> std::io::Result<()> {
    let tmp = path
        .join("tmp")
        .join(format!("{MARKER}.{}", crate::id::PackId::random().hex()));
    write_atomic(io, &tmp, &path.join(MARKER), marker_bytes(vault_hex, dir))
}

/// Why a data directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The directory does not exist.
    Absent,
    NotADirectory,
    /// No marker file: typically the array's file system is not mounted.
    NoMarker,
    /// The marker cannot be read or parsed.
    BadMarker(String),
    /// The marker names another vault (its id).
    OtherVault(String),
    /// The marker names another position in `data_dirs` (mount points swapped?).
    OtherNumber(u16),
    /// `statvfs` failed.
    NoSpaceInfo(String),
    /// An index part names a data directory the config does not list.
    Unknown,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Absent => write!(f, "the directory does not exist"),
            Problem::NotADirectory => write!(f, "it is not a directory"),
            Problem::NoMarker => write!(
                f,
                "it has no marker file {MARKER} (is its file system mounted?)"
            ),
            Problem::BadMarker(e) => write!(f, "its marker file {MARKER} is unreadable: {e}"),
            Problem::OtherVault(id) => write!(
                f,
                "its marker file belongs to another vault ({})",
                &id[..id.len().min(16)]
            ),
            Problem::OtherNumber(n) => write!(
                f,
                "its marker file names data directory {n} (mount points swapped?)"
            ),
            Problem::NoSpaceInfo(e) => write!(f, "statvfs failed: {e}"),
            Problem::Unknown => write!(f, "the vault's config lists no such data directory"),
        }
    }
}

/// Whether `path` is data directory number `dir` of vault `vault_hex`.
pub(crate) fn check(path: &Path, vault_hex: &str, dir: u16) -> Result<(), Problem> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Problem::NotADirectory),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Problem::Absent),
        Err(e) => return Err(Problem::BadMarker(format!("stat of the directory: {e}"))),
    }
    let raw = match std::fs::read(path.join(MARKER)) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Problem::NoMarker),
        Err(e) => return Err(Problem::BadMarker(e.to_string())),
    };
    let m: Marker = serde_json::from_slice(&raw).map_err(|e| Problem::BadMarker(e.to_string()))?;
    if m.format != MARKER_FORMAT {
        return Err(Problem::BadMarker(format!("format {:?}", m.format)));
    }
    if !m.vault.eq_ignore_ascii_case(vault_hex) {
        return Err(Problem::OtherVault(m.vault));
    }
    if m.dir != dir {
        return Err(Problem::OtherNumber(m.dir));
    }
    Ok(())
}

/// True for the config of a vault that may predate markers: the single default `data/`.
pub(crate) fn is_legacy(configured: &[String]) -> bool {
    configured.len() == 1 && configured[0] == DEFAULT_DIR
}

/// As [`check`], but with `legacy` (see [`is_legacy`]) data directory 0 without a marker is
/// usable when it holds anything: it lies inside the vault and was made by a version that
/// wrote no marker. `Ok(false)`: usable, but the marker is missing.
pub(crate) fn check_legacy(
    path: &Path,
    vault_hex: &str,
    dir: u16,
    legacy: bool,
) -> Result<bool, Problem> {
    match check(path, vault_hex, dir) {
        Ok(()) => Ok(true),
        Err(Problem::NoMarker)
            if legacy
                && dir == 0
                && std::fs::read_dir(path).is_ok_and(|mut rd| rd.next().is_some()) =>
        {
            Ok(false)
        }
        Err(p) => Err(p),
    }
}

/// A data directory's path: absolute as configured, else relative to the vault.
pub(crate) fn resolve(root: &Path, configured: &str) -> PathBuf {
    let p = Path::new(configured);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Check a data directory given to `init` or `data-dir add` and return it as `config`
/// stores it (normalised: no `.` components or trailing `/`).
pub(crate) fn config_entry(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let mut norm = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Normal(_) => norm.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("data directory {shown}: `..` is not allowed"))
            }
            Component::Prefix(_) => return Err(format!("data directory {shown}: bad path")),
        }
    }
    if norm.as_os_str().is_empty() || norm == Path::new("/") {
        return Err(format!("data directory {shown:?} names no directory"));
    }
    if !norm.is_absolute() {
        if let Some(Component::Normal(first)) = norm.components().next() {
            if RESERVED.iter().any(|r| first == *r) {
                return Err(format!(
                    "data directory {shown}: {:?} is a name the vault itself uses",
                    first
                ));
            }
        }
    }
    norm.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("data directory {shown}: the path is not UTF-8"))
}

/// Refuse data directories that are the same, nested in one another, or nested with the
/// vault directory (a pack listing of one would walk into the other).
pub(crate) fn check_layout(root: &Path, resolved: &[PathBuf]) -> Result<(), String> {
    let norm = |p: &Path| -> PathBuf {
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        abs.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    };
    let root_n = norm(root);
    let all: Vec<PathBuf> = resolved.iter().map(|p| norm(p)).collect();
    for (i, a) in all.iter().enumerate() {
        if root_n.starts_with(a) {
            return Err(format!(
                "data directory {} contains the vault directory",
                resolved[i].display()
            ));
        }
        for (j, b) in all.iter().enumerate().skip(i + 1) {
            if a.starts_with(b) || b.starts_with(a) {
                return Err(format!(
                    "data directories {} and {} overlap",
                    resolved[i].display(),
                    resolved[j].display()
                ));
            }
        }
    }
    Ok(())
}

/// May `path` become data directory `dir` of vault `vault_hex`? It must be absent or empty
/// (a fresh file system's `lost+found` aside), or hold exactly what an interrupted attempt to
/// add it left (this vault's marker for `dir` and `tmp/`).
pub(crate) fn check_fresh(path: &Path, vault_hex: &str, dir: u16) -> Result<(), String> {
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: listing: {e}", path.display())),
    };
    let ours = check(path, vault_hex, dir).is_ok();
    for e in rd {
        let e = e.map_err(|e| format!("{}: listing: {e}", path.display()))?;
        let name = e.file_name();
        let ok = name == "lost+found" || (ours && (name == MARKER || name == "tmp"));
        if !ok {
            let why = match check(path, vault_hex, dir) {
                Err(p @ (Problem::OtherVault(_) | Problem::OtherNumber(_))) => p.to_string(),
                _ => format!("it holds {:?}", name),
            };
            return Err(format!(
                "{}: refusing to use a non-empty directory as a data directory: {why}",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Size figures of the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Space {
    /// Bytes an unprivileged writer may still use (`f_bavail * f_frsize`).
    pub free: u64,
    /// Size of the file system (`f_blocks * f_frsize`).
    pub total: u64,
}

/// `statvfs` of `path`.
pub fn space(path: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path)?;
    Ok(Space {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

/// A data directory as `vaultctl data-dir list` shows it.
#[derive(Debug, Clone)]
pub struct DataDirInfo {
    pub dir: u16,
    /// As written in `config` (relative to the vault, or absolute).
    pub configured: String,
    pub path: PathBuf,
    /// Why it is unusable now (`None`: usable).
    pub problem: Option<Problem>,
    /// Its file system's size figures (`None`: `statvfs` failed).
    pub space: Option<Space>,
    /// Packs the index places there, and their bytes.
    pub packs: u64,
    pub pack_bytes: u64,
}

/// Where free-space figures come from: `statvfs` ([`Statvfs`]), or a test's own figures.
pub trait SpaceProbe: Send + Sync {
    /// Bytes new packs may take in data directory `dir` (at `path`).
    fn free_bytes(&self, dir: u16, path: &Path) -> std::io::Result<u64>;
}

/// The real probe.
pub struct Statvfs;

impl SpaceProbe for Statvfs {
    fn free_bytes(&self, _dir: u16, path: &Path) -> std::io::Result<u64> {
        space(path).map(|s| s.free)
    }
}

/// One data directory as the placement rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub dir: u16,
    pub available: bool,
    pub free: u64,
}

/// The placement rule: the available data directory with the most free bytes; a tie goes to
/// the lowest number. `None` when no directory is available.
pub fn choose(candidates: &[Candidate]) -> Option<u16> {
    candidates
        .iter()
        .filter(|c| c.available)
        .max_by(|a, b| a.free.cmp(&b.free).then(b.dir.cmp(&a.dir)))
        .map(|c| c.dir)
}

/// Chooses the data directory of each new pack. One per open vault, shared by its writers;
/// asked once per pack (never per blob), so its lock is off the backup's hot path.
pub(crate) struct Placement {
    dirs: Vec<PathBuf>,
    vault: String,
    legacy: bool,
    state: Mutex<PlaceState>,
}

struct PlaceState {
    probe: Arc<dyn SpaceProbe>,
    measured: Option<Instant>,
    /// Per data directory: free bytes when last measured, less what this process placed
    /// there since (so packs opened within one measurement spread out); `Err`: unavailable.
    free: Vec<Result<u64, Problem>>,
}

impl Placement {
    pub(crate) fn new(dirs: Vec<PathBuf>, vault_hex: String, legacy: bool) -> Placement {
        Placement {
            dirs,
            vault: vault_hex,
            legacy,
            state: Mutex::new(PlaceState {
                probe: Arc::new(Statvfs),
                measured: None,
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_probe(&self, probe: Arc<dyn SpaceProbe>) {
        let mut s = self.lock();
        s.probe = probe;
        s.measured = None;
    }

    /// Measure again at the next placement (a write to a data directory failed).
    pub(crate) fn invalidate(&self) {
        self.lock().measured = None;
    }

    /// The data directory for a new pack of about `expect` bytes, or why there is none. The
    /// markers are checked again with each measurement, so a file system that goes away
    /// during a long backup stops receiving packs within a second.
    pub(crate) fn place(&self, expect: u64) -> Result<u16, String> {
        let mut s = self.lock();
        if s.measured.is_none_or(|t| t.elapsed() >= REMEASURE) {
            let probe = s.probe.clone();
            s.free = self
                .dirs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let i = i as u16;
                    check_legacy(p, &self.vault, i, self.legacy)?;
                    probe
                        .free_bytes(i, p)
                        .map_err(|e| Problem::NoSpaceInfo(e.to_string()))
                })
                .collect();
            s.measured = Some(Instant::now());
        }
        let candidates: Vec<Candidate> = s
            .free
            .iter()
            .enumerate()
            .map(|(i, f)| Candidate {
                dir: i as u16,
                available: f.is_ok(),
                free: *f.as_ref().unwrap_or(&0),
            })
            .collect();
        match choose(&candidates) {
            Some(d) => {
                if let Some(Ok(f)) = s.free.get_mut(d as usize) {
                    *f = f.saturating_sub(expect);
                }
                Ok(d)
            }
            None => Err(s
                .free
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    f.as_ref()
                        .err()
                        .map(|p| format!("{} ({}): {p}", i, self.dirs[i].display()))
                })
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(dir: u16, available: bool, free: u64) -> Candidate {
        Candidate {
            dir,
            available,
            free,
        }
    }

    #[test]
    fn the_available_dir_with_most_room_wins() {
        assert_eq!(
            choose(&[c(0, true, 10), c(1, true, 30), c(2, true, 20)]),
            Some(1)
        );
        // Unavailable directories never win, however empty they are.
        assert_eq!(choose(&[c(0, true, 10), c(1, false, 1 << 40)]), Some(0));
        // Ties go to the lowest number.
        assert_eq!(
            choose(&[c(0, true, 5), c(1, true, 7), c(2, true, 7)]),
            Some(1)
        );
        // A full but available directory is still a place (the write reports ENOSPC).
        assert_eq!(choose(&[c(0, true, 0), c(1, false, 9)]), Some(0));
        assert_eq!(choose(&[c(0, false, 9), c(1, false, 9)]), None);
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn config_entries_are_normalised_and_checked() {
        assert_eq!(config_entry(Path::new("data1/")).as_deref(), Ok("data1"));
        assert_eq!(
            config_entry(Path::new("/var/lib/tv/./data0")).as_deref(),
            Ok("/var/lib/tv/data0")
        );
        for bad in ["", "/", "..", "a/../b", "index", "tmp/x", "snapshots"] {
            assert!(config_entry(Path::new(bad)).is_err(), "{bad:?} accepted");
        }
        let root = Path::new("/v");
        let r = |v: &[&str]| -> Vec<PathBuf> { v.iter().map(|s| resolve(root, s)).collect() };
        assert!(check_layout(root, &r(&["data", "/d1", "/d2"])).is_ok());
        assert!(check_layout(root, &r(&["data", "/v/data"])).is_err());
        assert!(check_layout(root, &r(&["/d1", "/d1/x"])).is_err());
        assert!(check_layout(root, &r(&["/"])).is_err());
    }

    #[test]
    fn markers_name_vault_and_number() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("d");
        let io = crate::io::PlainIo::new(false);
        assert_eq!(check(&d, "ab", 0), Err(Problem::Absent));
        std::fs::create_dir_all(d.join("tmp")).expect("mkdir");
        assert_eq!(check(&d, "ab", 0), Err(Problem::NoMarker));
        assert!(
            check_fresh(&d, "ab", 1).is_err(),
            "tmp/ without a marker is not fresh"
        );
        write_marker(&io, &d, "ab", 1).expect("marker");
        assert_eq!(check(&d, "ab", 1), Ok(()));
        assert_eq!(check(&d, "AB", 1), Ok(()));
        assert_eq!(check(&d, "cd", 1), Err(Problem::OtherVault("ab".into())));
        assert_eq!(check(&d, "ab", 2), Err(Problem::OtherNumber(1)));
        // The temporary file is gone: only the marker and tmp/ remain.
        assert_eq!(std::fs::read_dir(d.join("tmp")).expect("ls").count(), 0);
        assert!(
            check_fresh(&d, "ab", 1).is_ok(),
            "an interrupted add may be repeated"
        );
        assert!(check_fresh(&d, "cd", 1).is_err());
        std::fs::write(d.join("x"), b"").expect("write");
        assert!(check_fresh(&d, "ab", 1).is_err());
        let e = t.path().join("e");
        std::fs::create_dir_all(e.join("lost+found")).expect("mkdir");
        assert!(check_fresh(&e, "ab", 0).is_ok());
        std::fs::write(d.join(MARKER), b"{").expect("write");
        assert!(matches!(check(&d, "ab", 1), Err(Problem::BadMarker(_))));
    }

    struct Fixed(Vec<u64>);
    impl SpaceProbe for Fixed {
        fn free_bytes(&self, dir: u16, _: &Path) -> std::io::Result<u64> {
            Ok(self.0[dir as usize])
        }
    }

    #[test]
    fn placement_follows_free_space_and_skips_unmarked_dirs() {
        let t = tempfile::tempdir().expect("tmp");
        let io = crate::io::PlainIo::new(false);
        let dirs: Vec<PathBuf> = (0..3).map(|i| t.path().join(format!("d{i}"))).collect();
        for (i, d) in dirs.iter().enumerate() {
            std::fs::create_dir_all(d.join("tmp")).expect("mkdir");
            write_marker(&io, d, "ab", i as u16).expect("marker");
        }
        let p = Placement::new(dirs.clone(), "ab".into(), false);
        p.set_probe(Arc::new(Fixed(vec![100, 300, 200])));
        // 300 → 1 (now 250), 250 → 1 (200), then 0/1/2 = 100/200/200: 1 wins the tie ...
        let got: Vec<u16> = (0..5).map(|_| p.place(50).expect("place")).collect();
        assert_eq!(got, [1, 1, 1, 2, 1]);
        // Without its marker a directory gets nothing, however much room it has.
        std::fs::remove_file(dirs[1].join(MARKER)).expect("rm");
        p.set_probe(Arc::new(Fixed(vec![100, 1 << 40, 200])));
        assert_eq!(p.place(50), Ok(2));
        std::fs::remove_file(dirs[0].join(MARKER)).expect("rm");
        std::fs::remove_file(dirs[2].join(MARKER)).expect("rm");
        p.invalidate();
        let e = p.place(50).expect_err("no dir left");
        assert!(e.contains("no marker file"), "{e}");
    }
}
