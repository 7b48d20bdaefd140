//! Several data directories (one per data array on an appliance): packs spread by free
//! space, a missing directory costs only its packs (verify names them and exactly the
//! snapshots that need them), nothing is ever written into an unmarked directory, garbage
//! collection leaves an unavailable directory's packs alone, and a heal restores what a lost
//! array held.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{opts, pseudo_random, secret};
use tiervault_store::datadir::{SpaceProbe, MARKER};
use tiervault_store::gc::{self, GcOptions};
use tiervault_store::heal::{self, BlobSource};
use tiervault_store::{
    backup, io, restore, verify, Error, Id, Ingest, InitOptions, Kind, Repo, Snapshot, Vault,
};

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dirs: Vec<PathBuf>,
    scratch: PathBuf,
}

/// A vault with `n` data directories: the first relative to the vault ("data"), the others
/// absolute, outside it (as an appliance's array mount points are).
fn setup(n: usize) -> Setup {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("vault");
    let mut given = vec![PathBuf::from("data")];
    given.extend((1..n).map(|i| tmp.path().join(format!("array{i}"))));
    let o = InitOptions {
        data_dirs: given.clone(),
        ..opts()
    };
    drop(Vault::init(&root, &secret(), &o, io::default_io()).expect("init"));
    let dirs = given
        .iter()
        .map(|d| {
            if d.is_absolute() {
                d.clone()
            } else {
                root.join(d)
            }
        })
        .collect();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    Setup {
        _tmp: tmp,
        root,
        dirs,
        scratch,
    }
}

fn open(root: &Path) -> Vault {
    Vault::open(root, &secret(), io::default_io()).expect("open")
}

/// A source tree of `files` files of `size` incompressible bytes each.
fn tree(at: &Path, files: usize, size: usize, seed: u64) -> PathBuf {
    let src = at.join(format!("src-{seed}"));
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    for i in 0..files {
        let p = if i % 2 == 0 {
            src.join(format!("f{i}"))
        } else {
            src.join("sub").join(format!("g{i}"))
        };
        std::fs::write(p, pseudo_random(size, seed * 1000 + i as u64)).expect("write");
    }
    src
}

fn backup_of(v: &Vault, src: &Path) -> Snapshot {
    backup::backup(
        v,
        backup::Source::Paths(vec![src.to_path_buf()]),
        &backup::Options {
            threads: 4,
            ..backup::Options::default()
        },
        &backup::Progress::default(),
    )
    .expect("backup")
}

/// Restore `snap` and compare it byte for byte with `src`; returns the damaged files.
fn restore_cmp(v: &Vault, snap: &Snapshot, src: &Path, scratch: &Path) -> Vec<(PathBuf, String)> {
    static N: AtomicU64 = AtomicU64::new(0);
    let target = scratch.join(format!(
        "restore-{}-{}",
        snap.short_id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let r = restore::restore(
        v,
        snap,
        None,
        &restore::Target::Dir(target.clone()),
        &restore::Options {
            overwrite: false,
            threads: 2,
        },
        &restore::Progress::default(),
    )
    .expect("restore");
    if r.damaged.is_empty() {
        let name = src.file_name().expect("name");
        assert_same(src, &target.join(name));
    }
    let _ = std::fs::remove_dir_all(&target);
    r.damaged
}

fn assert_same(a: &Path, b: &Path) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (x, y) = (a.join(&rel), b.join(&rel));
        if x.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&x)
                .expect("ls")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            let mut other: Vec<_> = std::fs::read_dir(&y)
                .unwrap_or_else(|e| panic!("{}: {e}", y.display()))
                .map(|e| e.expect("entry").file_name())
                .collect();
            other.sort();
            assert_eq!(names, other, "{}", rel.display());
            stack.extend(names.into_iter().map(|n| rel.join(n)));
        } else {
            let (dx, dy) = (
                std::fs::read(&x).expect("read"),
                std::fs::read(&y).expect("read"),
            );
            assert!(dx == dy, "{} differs after restore", rel.display());
        }
    }
}

/// Pack files per data directory number.
fn packs_per_dir(v: &Repo) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for (d, ..) in v.packs_on_disk().expect("packs") {
        *out.entry(d).or_default() += 1;
    }
    out
}

/// Pack files under a directory (any `xx/` subdirectory).
fn pack_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().len() == 2 && e.path().is_dir())
        .map(|e| std::fs::read_dir(e.path()).map_or(0, |r| r.count()))
        .sum()
}

/// Packs the index parts place in each data directory (what a collection must not lose).
fn indexed_per_dir(v: &Repo) -> BTreeMap<u16, usize> {
    v.indexed_packs_per_dir()
        .expect("parts")
        .iter()
        .enumerate()
        .filter(|(_, t)| t.0 > 0)
        .map(|(d, t)| (d as u16, t.0 as usize))
        .collect()
}

fn hide_marker(dir: &Path) {
    std::fs::rename(dir.join(MARKER), dir.join("marker.off")).expect("hide marker");
}

fn show_marker(dir: &Path) {
    std::fs::rename(dir.join("marker.off"), dir.join(MARKER)).expect("restore marker");
}

fn verify_report(v: &Vault) -> verify::Report {
    verify::verify(
        v,
        &verify::Options {
            quick: false,
            threads: 2,
        },
        &verify::Progress::default(),
    )
    .expect("verify")
}

#[test]
fn init_makes_marked_dirs_and_a_backup_spreads_over_them() {
    let s = setup(3);
    for (i, d) in s.dirs.iter().enumerate() {
        assert!(d.join("tmp").is_dir(), "{}", d.display());
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(MARKER)).expect("marker")).expect("json");
        assert_eq!(m["dir"], i);
    }
    let v = open(&s.root);
    assert!(v.open_problems().is_empty(), "{:?}", v.open_problems());
    assert!(!v.degraded());
    assert_eq!(v.config().data_dirs[0], "data");
    assert!(Path::new(&v.config().data_dirs[1]).is_absolute());
    // 96 MiB: three packs' worth, written by four workers.
    let src = tree(&s.scratch, 12, 8 << 20, 1);
    let snap = backup_of(&v, &src);
    let per = packs_per_dir(&v);
    assert_eq!(
        per.len(),
        3,
        "packs should spread over all three dirs: {per:?}"
    );
    // What the index records is where the packs are.
    drop(v);
    let v = open(&s.root);
    for (d, _, path) in v.packs_on_disk().expect("packs") {
        assert!(path.starts_with(&s.dirs[d as usize]));
    }
    for p in v.index().live_packs() {
        assert!(
            v.pack_path_in(p.dir, &p.id).exists(),
            "pack {} not in its dir",
            p.id.hex()
        );
    }
    assert_eq!(indexed_per_dir(&v), per);
    assert!(restore_cmp(&v, &snap, &src, &s.scratch).is_empty());
    assert!(verify_report(&v).ok());
    // Each data directory's tmp/ is empty after the backup.
    for d in &s.dirs {
        assert_eq!(std::fs::read_dir(d.join("tmp")).expect("ls").count(), 0);
    }
}

/// Free space as a test says.
struct Figures(Vec<u64>);

impl SpaceProbe for Figures {
    fn free_bytes(&self, dir: u16, _: &Path) -> std::io::Result<u64> {
        Ok(self.0[dir as usize])
    }
}

#[test]
fn new_packs_go_where_the_free_space_is() {
    let s = setup(3);
    let v = open(&s.root);
    // Dir 2 has far more room than the others: every pack of a backup goes there.
    v.set_space_probe(Arc::new(Figures(vec![1 << 30, 2 << 30, 1 << 50])));
    let src = tree(&s.scratch, 6, 4 << 20, 2);
    let snap = backup_of(&v, &src);
    assert_eq!(
        packs_per_dir(&v),
        BTreeMap::from([(2, packs_per_dir(&v)[&2])])
    );
    // Then dir 0.
    v.set_space_probe(Arc::new(Figures(vec![1 << 50, 2 << 30, 1 << 30])));
    let src2 = tree(&s.scratch, 3, 4 << 20, 3);
    let snap2 = backup_of(&v, &src2);
    let per = packs_per_dir(&v);
    assert!(per[&0] > 0 && !per.contains_key(&1), "{per:?}");
    drop(v);
    let v = open(&s.root);
    assert!(restore_cmp(&v, &snap, &src, &s.scratch).is_empty());
    assert!(restore_cmp(&v, &snap2, &src2, &s.scratch).is_empty());
}

#[test]
fn a_missing_dir_costs_only_its_packs_and_comes_back_clean() {
    let s = setup(3);
    let src_a = tree(&s.scratch, 4, 3 << 20, 10);
    let src_b = tree(&s.scratch, 4, 3 << 20, 11);
    // Snapshot A entirely on dir 1: the other two are unusable while it is taken (and, as
    // unmarked directories, must receive nothing).
    hide_marker(&s.dirs[0]);
    hide_marker(&s.dirs[2]);
    let before: Vec<usize> = s.dirs.iter().map(|d| pack_files(d)).collect();
    let v = open(&s.root);
    assert!(v.degraded());
    assert_eq!(v.open_problems().len(), 2, "{:?}", v.open_problems());
    assert!(v.open_problems()[0].contains("data directory 0"));
    let snap_a = backup_of(&v, &src_a);
    drop(v);
    assert_eq!(
        pack_files(&s.dirs[0]),
        before[0],
        "written into unmarked dir 0"
    );
    assert_eq!(
        pack_files(&s.dirs[2]),
        before[2],
        "written into unmarked dir 2"
    );
    assert!(pack_files(&s.dirs[1]) > 0);
    show_marker(&s.dirs[0]);
    show_marker(&s.dirs[2]);
    // B never touches dir 1.
    hide_marker(&s.dirs[1]);
    let v = open(&s.root);
    let snap_b = backup_of(&v, &src_b);
    drop(v);
    show_marker(&s.dirs[1]);
    // C shares a file with A (deduplicated against A's blobs on dir 1).
    let src_c = s.scratch.join("src-c");
    std::fs::create_dir_all(&src_c).expect("mkdir");
    std::fs::copy(src_a.join("f0"), src_c.join("shared")).expect("copy");
    std::fs::write(src_c.join("own"), pseudo_random(1 << 20, 99)).expect("write");
    let v = open(&s.root);
    let snap_c = backup_of(&v, &src_c);
    assert!(
        snap_c.body.summary.stored_bytes < 2 << 20,
        "C should dedup against A: {:?}",
        snap_c.body.summary
    );
    let dir1_indexed = indexed_per_dir(&v)[&1];
    drop(v);

    // The array behind dir 1 goes away: its mount point is an empty directory.
    let away = s.scratch.join("array1-away");
    std::fs::rename(&s.dirs[1], &away).expect("unmount");
    std::fs::create_dir(&s.dirs[1]).expect("empty mount point");

    let v = open(&s.root);
    assert!(v.degraded());
    assert_eq!(v.open_problems().len(), 1);
    assert!(
        v.open_problems()[0].contains("data directory 1") && v.open_problems()[0].contains(MARKER),
        "{:?}",
        v.open_problems()
    );
    let r = verify_report(&v);
    assert!(!r.ok());
    assert_eq!(r.unavailable_dirs.len(), 1);
    assert_eq!(r.unavailable_dirs[0].dir, 1);
    assert_eq!(r.unavailable_dirs[0].packs as usize, dir1_indexed);
    let want: BTreeSet<String> = [&snap_a, &snap_c].iter().map(|s| s.id.hex()).collect();
    let got: BTreeSet<String> = r.affected_snapshots.iter().cloned().collect();
    assert_eq!(got, want, "exactly the snapshots that need dir 1");
    let missing: Vec<_> = r
        .damage
        .iter()
        .filter(|d| d.pack.is_some() && d.blob.is_none())
        .collect();
    assert!(!missing.is_empty());
    // A pack's list names the snapshots known to need it (a snapshot whose own reference
    // list is on the missing dir is named on that list's pack).
    let mut named = BTreeSet::new();
    for d in &missing {
        assert_eq!(d.dir, Some(1), "{d:?}");
        assert!(d.error.contains("data directory 1"), "{}", d.error);
        named.extend(d.snapshots.iter().cloned());
    }
    assert_eq!(named, want);
    for d in r.damage.iter().filter(|d| d.blob.is_some()) {
        assert_eq!(d.dir, Some(1), "{d:?}");
    }
    // B restores bit-identical; A cannot, and says which pack and directory.
    assert!(restore_cmp(&v, &snap_b, &src_b, &s.scratch).is_empty());
    let err = match v.read_tree(&snap_a.body.root) {
        Err(e) => e,
        Ok(_) => panic!("A's root tree is on the missing dir"),
    };
    assert!(
        matches!(err, Error::PackUnavailable { dir: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("data directory 1"), "{err}");
    // Backups keep going, to the other dirs; a backup of A's tree (A is its parent) reads
    // the files again rather than reusing chunk lists that live only on dir 1.
    let snap_a2 = backup_of(&v, &src_a);
    assert_eq!(
        std::fs::read_dir(&s.dirs[1]).expect("ls").count(),
        0,
        "wrote into the empty mount point"
    );
    assert!(restore_cmp(&v, &snap_a2, &src_a, &s.scratch).is_empty());
    // A collection cannot know what A references: it refuses and deletes nothing.
    drop(v);
    let repo = Repo::open(&s.root, io::default_io()).expect("open");
    let e = gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect_err("gc");
    assert!(e.to_string().contains("cannot be read"), "{e}");
    assert_eq!(indexed_per_dir(&repo)[&1], dir1_indexed);
    drop(repo);

    // The array is back: everything verifies and restores.
    std::fs::remove_dir(&s.dirs[1]).expect("rmdir");
    std::fs::rename(&away, &s.dirs[1]).expect("mount again");
    let v = open(&s.root);
    assert!(!v.degraded());
    let r = verify_report(&v);
    assert!(r.ok(), "{:?}", r.damage);
    for (snap, src) in [
        (&snap_a, &src_a),
        (&snap_b, &src_b),
        (&snap_c, &src_c),
        (&snap_a2, &src_a),
    ] {
        assert!(restore_cmp(&v, snap, src, &s.scratch).is_empty());
    }
}

#[test]
fn a_backup_while_a_dir_is_missing_does_not_reuse_chunks_only_it_holds() {
    let s = setup(2);
    let src = tree(&s.scratch, 3, 1 << 20, 60);
    let v = open(&s.root);
    // Dir 1 a little emptier: the data pack (placed first) goes there, the pack of trees
    // and reference lists (placed next, after the first pack's bytes are counted) to dir 0.
    v.set_space_probe(Arc::new(Figures(vec![(1 << 40) - 1, 1 << 40])));
    let opts1 = backup::Options {
        threads: 1,
        ..backup::Options::default()
    };
    let parent = backup::backup(
        &v,
        backup::Source::Paths(vec![src.clone()]),
        &opts1,
        &backup::Progress::default(),
    )
    .expect("backup");
    let root_dir = {
        let idx = v.index();
        let loc = idx
            .get(&parent.body.root)
            .expect("lookup")
            .expect("root tree");
        idx.pack(loc.pack).dir
    };
    assert_eq!(
        root_dir,
        0,
        "the trees should be on dir 0: {:?}",
        packs_per_dir(&v)
    );
    assert!(packs_per_dir(&v).get(&1).is_some_and(|n| *n > 0));
    drop(v);

    // With both dirs there, an unchanged file's chunk list is reused.
    let v = open(&s.root);
    let p = backup::Progress::default();
    let same =
        backup::backup(&v, backup::Source::Paths(vec![src.clone()]), &opts1, &p).expect("backup");
    assert!(p.bytes_reused.load(Ordering::Relaxed) > 0);
    assert_eq!(same.body.root, parent.body.root);
    drop(v);

    // Dir 1 missing: the parent's trees are readable, its chunks are not: read again.
    hide_marker(&s.dirs[1]);
    let v = open(&s.root);
    let p = backup::Progress::default();
    let snap =
        backup::backup(&v, backup::Source::Paths(vec![src.clone()]), &opts1, &p).expect("backup");
    assert_eq!(p.bytes_reused.load(Ordering::Relaxed), 0);
    assert!(restore_cmp(&v, &snap, &src, &s.scratch).is_empty());
    let r = verify_report(&v);
    assert!(
        !r.affected_snapshots.contains(&snap.id.hex()),
        "{:?}",
        r.damage
    );
    drop(v);
    show_marker(&s.dirs[1]);
    let v = open(&s.root);
    assert!(verify_report(&v).ok());
}

#[test]
fn gc_keeps_the_index_entries_of_an_unavailable_dir() {
    let s = setup(2);
    let src_a = tree(&s.scratch, 3, 2 << 20, 20);
    let src_b = tree(&s.scratch, 3, 2 << 20, 21);
    hide_marker(&s.dirs[0]);
    let v = open(&s.root);
    let snap_a = backup_of(&v, &src_a);
    drop(v);
    show_marker(&s.dirs[0]);
    hide_marker(&s.dirs[1]);
    let v = open(&s.root);
    let snap_b = backup_of(&v, &src_b);
    drop(v);
    show_marker(&s.dirs[1]);
    let v = open(&s.root);
    let before = indexed_per_dir(&v);
    assert!(before[&0] > 0 && before[&1] > 0, "{before:?}");
    gc::forget(&v, &[snap_a.id]).expect("forget");
    drop(v);

    // A's packs (garbage now) are all on dir 1, which is not mounted.
    hide_marker(&s.dirs[1]);
    let repo = Repo::open(&s.root, io::default_io()).expect("open");
    let report = gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect("gc");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(report.bytes_freed, 0, "{report:?}");
    drop(repo);
    let repo = Repo::open(&s.root, io::default_io()).expect("open");
    assert_eq!(
        indexed_per_dir(&repo),
        before,
        "the index lost dir 1's packs"
    );
    drop(repo);
    assert!(pack_files(&s.dirs[1]) >= before[&1]);

    // Back: nothing is missing, and now the collection deletes A's packs.
    show_marker(&s.dirs[1]);
    let v = open(&s.root);
    assert!(verify_report(&v).ok());
    drop(v);
    let repo = Repo::open(&s.root, io::default_io()).expect("open");
    let report = gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect("gc");
    assert_eq!(report.packs_deleted as usize, before[&1], "{report:?}");
    drop(repo);
    let v = open(&s.root);
    assert!(
        !indexed_per_dir(&v).contains_key(&1),
        "{:?} {report:?}",
        indexed_per_dir(&v)
    );
    assert!(verify_report(&v).ok());
    assert!(restore_cmp(&v, &snap_b, &src_b, &s.scratch).is_empty());
}

/// Blobs fetched from another vault (a replica made below).
struct FromRepo(Repo);

impl BlobSource for FromRepo {
    fn fetch(&mut self, ids: &[Id]) -> Result<Vec<(Id, Kind, Vec<u8>)>, String> {
        let mut out = Vec::new();
        for id in ids {
            if let Ok((loc, bytes)) = self.0.read_stored_checked(id) {
                out.push((*id, loc.kind, bytes));
            }
        }
        Ok(out)
    }
}

/// Copy every snapshot of `from` into a new replica at `to` (what replication does).
fn replicate(from: &Repo, to: &Path) -> Repo {
    let replica = Repo::create_replica(
        to,
        &from.config_bytes().expect("config"),
        from.key_file_bytes().expect("keys"),
        io::default_io(),
    )
    .expect("replica");
    let mut ing = Ingest::new(&replica);
    let (snaps, _) = from.snapshot_files().expect("snapshots");
    for s in &snaps {
        for id in from.referenced(&s.header).expect("referenced") {
            let (loc, bytes) = from.read_stored_checked(&id).expect("read");
            let digest = tiervault_store::digest16(&bytes);
            ing.put(&replica, &id, loc.kind, &digest, &bytes)
                .expect("put");
        }
        let file = from.read_snapshot_file(&s.id).expect("snapshot file");
        ing.put_snapshot(&replica, &s.id, &file)
            .expect("put snapshot");
    }
    replica
}

#[test]
fn a_lost_array_is_healed_from_a_replica_and_marked_again() {
    let s = setup(2);
    let src_a = tree(&s.scratch, 3, 2 << 20, 30);
    let src_b = tree(&s.scratch, 3, 2 << 20, 31);
    hide_marker(&s.dirs[0]);
    let v = open(&s.root);
    let snap_a = backup_of(&v, &src_a);
    drop(v);
    show_marker(&s.dirs[0]);
    let v = open(&s.root);
    let snap_b = backup_of(&v, &src_b);
    let replica = replicate(&v, &s.scratch.join("replica"));
    drop(v);

    // Dir 1's array dies; a new, empty file system is mounted in its place.
    std::fs::remove_dir_all(&s.dirs[1]).expect("lose array");
    std::fs::create_dir_all(s.dirs[1].join("lost+found")).expect("new fs");
    let v = open(&s.root);
    let found = verify_report(&v);
    assert!(found.affected_snapshots.contains(&snap_a.id.hex()));
    let report =
        heal::heal(&v, &found, &mut FromRepo(replica), "replica", &|_: &str| {}).expect("heal");
    assert!(report.unavailable.is_empty(), "{report:?}");
    assert!(!report.healed.is_empty());
    // The copies went to dir 0: the empty file system is not written to unmarked.
    assert_eq!(pack_files(&s.dirs[1]), 0);
    drop(v);
    let v = open(&s.root);
    let r = verify_report(&v);
    // Only the unmarked directory itself is left to report.
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert!(r.affected_snapshots.is_empty());
    assert!(restore_cmp(&v, &snap_a, &src_a, &s.scratch).is_empty());
    drop(v);
    // Marking it makes it usable again; a directory with content is never marked.
    std::fs::write(s.dirs[1].join("stray"), b"x").expect("write");
    assert!(Repo::mark_data_dir(&s.root, 1, io::default_io()).is_err());
    std::fs::remove_file(s.dirs[1].join("stray")).expect("rm");
    Repo::mark_data_dir(&s.root, 1, io::default_io()).expect("mark");
    assert!(Repo::mark_data_dir(&s.root, 5, io::default_io()).is_err());
    let v = open(&s.root);
    assert!(!v.degraded());
    assert!(verify_report(&v).ok());
    assert!(restore_cmp(&v, &snap_b, &src_b, &s.scratch).is_empty());
}

#[test]
fn a_data_dir_is_added_only_to_an_idle_vault_and_only_appended() {
    let s = setup(1);
    let extra = s.scratch.join("array-new");
    let v = open(&s.root);
    let src = tree(&s.scratch, 2, 1 << 20, 40);
    let snap = backup_of(&v, &src);
    match Repo::add_data_dir(&s.root, &extra, io::default_io()) {
        Err(Error::Busy { .. }) => {}
        other => panic!("added while open: {other:?}"),
    }
    drop(v);
    let n = Repo::add_data_dir(&s.root, &extra, io::default_io()).expect("add");
    assert_eq!(n, 1);
    assert!(extra.join(MARKER).is_file() && extra.join("tmp").is_dir());
    // Again, or nested, or a non-empty directory: refused.
    assert!(Repo::add_data_dir(&s.root, &extra, io::default_io()).is_err());
    assert!(Repo::add_data_dir(&s.root, &extra.join("x"), io::default_io()).is_err());
    let full = s.scratch.join("full");
    std::fs::create_dir_all(&full).expect("mkdir");
    std::fs::write(full.join("a"), b"a").expect("write");
    assert!(Repo::add_data_dir(&s.root, &full, io::default_io()).is_err());
    assert!(Repo::add_data_dir(&s.root, Path::new("index"), io::default_io()).is_err());
    let v = open(&s.root);
    assert_eq!(v.config().data_dirs.len(), 2);
    assert_eq!(v.config().data_dirs[0], "data");
    // The new (emptier on a real appliance; here a tie is broken by the bytes just placed)
    // directory takes packs from now on.
    v.set_space_probe(Arc::new(Figures(vec![1 << 30, 1 << 40])));
    let src2 = tree(&s.scratch, 2, 1 << 20, 41);
    let snap2 = backup_of(&v, &src2);
    assert!(pack_files(&extra) > 0);
    drop(v);
    let v = open(&s.root);
    assert!(verify_report(&v).ok());
    assert!(restore_cmp(&v, &snap, &src, &s.scratch).is_empty());
    assert!(restore_cmp(&v, &snap2, &src2, &s.scratch).is_empty());
}

#[test]
fn init_refuses_a_non_empty_or_foreign_data_dir() {
    let tmp = tempfile::tempdir().expect("tmp");
    let used = tmp.path().join("used");
    std::fs::create_dir_all(&used).expect("mkdir");
    std::fs::write(used.join("file"), b"x").expect("write");
    let root = tmp.path().join("v1");
    let o = InitOptions {
        data_dirs: vec!["data".into(), used.clone()],
        ..opts()
    };
    let e = Vault::init(&root, &secret(), &o, io::default_io())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("non-empty"), "{e}");
    assert!(!root.join("config").exists());
    // A directory that another vault marked is refused too, and left as it was.
    let theirs = tmp.path().join("theirs");
    let other = tmp.path().join("other");
    let o = InitOptions {
        data_dirs: vec![theirs.clone()],
        ..opts()
    };
    drop(Vault::init(&other, &secret(), &o, io::default_io()).expect("init other"));
    let marker = std::fs::read(theirs.join(MARKER)).expect("marker");
    let e = Vault::init(&root, &secret(), &o, io::default_io())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("another vault"), "{e}");
    assert_eq!(std::fs::read(theirs.join(MARKER)).expect("marker"), marker);
    // Duplicates and reserved names.
    for dirs in [vec!["a".into(), "a/".into()], vec!["snapshots".into()]] {
        let o = InitOptions {
            data_dirs: dirs,
            ..opts()
        };
        assert!(Vault::init(&root, &secret(), &o, io::default_io()).is_err());
    }
    // A fresh file system's lost+found is fine.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(fresh.join("lost+found")).expect("mkdir");
    let o = InitOptions {
        data_dirs: vec![fresh.clone()],
        ..opts()
    };
    let v = Vault::init(&root, &secret(), &o, io::default_io()).expect("init");
    assert_eq!(v.config().data_dirs, [fresh.display().to_string()]);
}

#[test]
fn a_vault_from_before_markers_opens_and_gets_its_marker() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("v");
    let v = Vault::init(&root, &secret(), &opts(), io::default_io()).expect("init");
    let src = tree(tmp.path(), 2, 1 << 20, 50);
    let snap = backup_of(&v, &src);
    drop(v);
    // What an older version left: `data/` without a marker.
    std::fs::remove_file(root.join("data").join(MARKER)).expect("rm marker");
    let v = open(&root);
    assert!(!v.degraded(), "{:?}", v.open_problems());
    assert!(
        root.join("data").join(MARKER).is_file(),
        "marker written on open"
    );
    assert!(verify_report(&v).ok());
    assert!(restore_cmp(&v, &snap, &src, tmp.path()).is_empty());
}
