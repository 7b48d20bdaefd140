//! Power cuts: the store's fsync order, checked under a simulated disk.
//!
//! SIGKILL keeps the page cache, so it cannot show that the store makes things durable in the
//! right order. Here every write of the store goes through `CrashFs` (tests/src/crashfs.rs),
//! which records writes, fsyncs and directory operations; after a run of backups, many cut
//! points are replayed into fresh directories holding only what had been made durable, with
//! everything unsynced dropped, kept or torn at random. Each such vault must open (running the
//! store's recovery), verify clean, list every snapshot committed before the cut, and restore
//! every snapshot it lists to exactly the tree that was backed up.
//!
//! `TIERVAULT_POWERCUT_SEED` replays a run's choices (the tree, the cut points and the crash
//! states; pack ids and thread interleavings still vary from run to run).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiervault_e2e::crashfs::{CrashFs, OpInfo, OpKind, Rng};
use tiervault_store::{backup, io, restore, verify, ChunkerSizes, InitOptions, Secret, Vault};

const DEFAULT_SEED: u64 = 0x7e57_c0ff_ee00_0001;
/// Cut points checked (at least).
const CUTS: usize = 36;
const THREADS: usize = 2;

fn secret() -> Secret {
    Secret::KeyFile(b"0123456789abcdef0123456789abcdef".to_vec())
}

fn seed() -> u64 {
    match std::env::var("TIERVAULT_POWERCUT_SEED") {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.expect("TIERVAULT_POWERCUT_SEED must be a number (decimal or 0x-hex)")
        }
        Err(_) => DEFAULT_SEED,
    }
}

// ---------------------------------------------------------------------------------------------
// The tree that is backed up, and its in-memory model.

const WORDS: [&str; 16] = [
    "vault", "snapshot", "pack", "index", "chunk", "blob", "durable", "fsync", "rename", "tier",
    "backup", "restore", "verify", "power", "cut", "disk",
];

/// Text-like (compressible) bytes.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next_u64();
        for k in 0..4 {
            let w = WORDS[((r >> (k * 4)) & 15) as usize];
            out.extend_from_slice(w.as_bytes());
            out.push(if (r >> (16 + k)) & 7 == 0 {
                b'\n'
            } else {
                b' '
            });
        }
        if (r >> 40) & 3 == 0 {
            out.extend_from_slice(format!("{} ", r >> 44).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn random(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn write_file(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Files of the tree, relative to its root, for picking edits.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let model = capture(root);
    model
        .into_iter()
        .filter(|(_, n)| matches!(n, Node::File { .. }))
        .map(|(p, _)| p)
        .collect()
}

/// About 47 MB: ~250 small text files, ~60 small random ones, eight 3–6 MiB random files and
/// two 3 MiB text files, an empty directory, symlinks. The random bulk (~40 MB) fills more than
/// one 32 MiB pack in the single-threaded first backup.
fn make_tree(root: &Path, rng: &mut Rng) {
    for i in 0..250u64 {
        let len = match i % 10 {
            0 => 0,
            1..=6 => rng.below(8 << 10) as usize,
            _ => rng.below(40 << 10) as usize,
        };
        write_file(
            &root.join(format!("docs/d{:02}/f{i:03}.txt", i % 12)),
            &text(rng, len),
        );
    }
    for i in 0..60u64 {
        let len = 1 + rng.below(64 << 10) as usize;
        write_file(&root.join(format!("bin/r{i:02}.dat")), &random(rng, len));
    }
    for i in 0..8u64 {
        let len = (3 << 20) + rng.below(3 << 20) as usize;
        write_file(&root.join(format!("big/big{i}.bin")), &random(rng, len));
    }
    for i in 0..2u64 {
        write_file(&root.join(format!("big/log{i}.txt")), &text(rng, 3 << 20));
    }
    fs::create_dir_all(root.join("empty")).expect("mkdir empty");
    fs::create_dir_all(root.join("links")).expect("mkdir links");
    std::os::unix::fs::symlink("../docs/d00/f000.txt", root.join("links/to-doc")).expect("symlink");
    std::os::unix::fs::symlink("nowhere/at/all", root.join("links/dangling")).expect("symlink");
    fs::set_permissions(root.join("bin/r00.dat"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
}

/// Edits between backups: rewrite and grow big files, rewrite, add and delete small ones,
/// chmod, retarget a symlink, add a directory. About 10–14 MB of new data per round.
fn edit_tree(root: &Path, rng: &mut Rng, round: u64) {
    let bigs: Vec<PathBuf> = (0..8)
        .map(|i| root.join(format!("big/big{i}.bin")))
        .collect();
    let rewrite = &bigs[(round as usize * 3) % bigs.len()];
    let len = fs::metadata(rewrite).expect("stat big").len() as usize;
    write_file(rewrite, &random(rng, len));
    let grow = &bigs[(round as usize * 3 + 1) % bigs.len()];
    let mut data = fs::read(grow).expect("read big");
    data.extend(random(rng, 1 << 20));
    // Also change a few bytes in the middle: the chunks around them are new.
    let mid = data.len() / 2;
    data[mid..mid + 64].copy_from_slice(&random(rng, 64));
    write_file(grow, &data);
    write_file(
        &root.join(format!("big/new{round}.bin")),
        &random(rng, 2 << 20),
    );

    let mut files = files_under(root);
    for _ in 0..15 {
        let f = &files[rng.below(files.len() as u64) as usize];
        if f.starts_with("big") {
            continue;
        }
        let len = rng.below(30 << 10) as usize;
        write_file(&root.join(f), &text(rng, len));
    }
    for _ in 0..8 {
        let k = rng.below(files.len() as u64) as usize;
        let f = files.swap_remove(k);
        if f.starts_with("big") {
            continue;
        }
        fs::remove_file(root.join(&f)).expect("remove");
    }
    for i in 0..20 {
        let len = rng.below(20 << 10) as usize;
        let data = if i % 3 == 0 {
            random(rng, len)
        } else {
            text(rng, len)
        };
        write_file(&root.join(format!("round{round}/n{i:02}.txt")), &data);
    }
    for _ in 0..3 {
        let f = &files[rng.below(files.len() as u64) as usize];
        let mode = [0o600, 0o640, 0o755][rng.below(3) as usize];
        fs::set_permissions(root.join(f), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let link = root.join("links/to-doc");
    fs::remove_file(&link).expect("remove symlink");
    std::os::unix::fs::symlink(format!("../round{round}/n00.txt"), &link).expect("symlink");
}

#[derive(Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        data: Vec<u8>,
    },
    Link {
        target: PathBuf,
    },
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::Dir { mode, mtime } => format!("dir mode {mode:o} mtime {mtime:?}"),
            Node::File { mode, mtime, data } => {
                format!("file mode {mode:o} mtime {mtime:?} {} bytes", data.len())
            }
            Node::Link { target } => format!("symlink to {}", target.display()),
        }
    }
}

type Model = BTreeMap<PathBuf, Node>;

/// The tree under `root` (root itself as ""), with contents.
fn capture(root: &Path) -> Model {
    let mut out = Model::new();
    capture_into(root, Path::new(""), &mut out);
    out
}

fn capture_into(path: &Path, rel: &Path, out: &mut Model) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let mode = md.mode() & 0o7777;
    let mtime = (md.mtime(), md.mtime_nsec());
    let ft = md.file_type();
    if ft.is_symlink() {
        let target =
            fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
        out.insert(rel.to_path_buf(), Node::Link { target });
    } else if ft.is_file() {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        out.insert(rel.to_path_buf(), Node::File { mode, mtime, data });
    } else if ft.is_dir() {
        out.insert(rel.to_path_buf(), Node::Dir { mode, mtime });
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("listing {}: {e}", path.display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for n in names {
            capture_into(&path.join(&n), &rel.join(&n), out);
        }
    } else {
        panic!("{}: unexpected file type", path.display());
    }
}

/// Differences between the expected and the restored tree (at most a few).
fn diff(want: &Model, got: &Model) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&PathBuf> = want.keys().chain(got.keys()).collect();
    for k in keys {
        match (want.get(k), got.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let mut s = format!(
                    "{}: backed up {}, restored {}",
                    k.display(),
                    a.describe(),
                    b.describe()
                );
                if let (Node::File { data: x, .. }, Node::File { data: y, .. }) = (a, b) {
                    if let Some(i) = x.iter().zip(y).position(|(p, q)| p != q) {
                        s.push_str(&format!(" (first differing byte at {i})"));
                    }
                }
                out.push(s);
            }
            (Some(a), None) => out.push(format!("{}: {} not restored", k.display(), a.describe())),
            (None, Some(b)) => out.push(format!(
                "{}: restored {} that was not backed up",
                k.display(),
                b.describe()
            )),
            (None, None) => {}
        }
        if out.len() >= 8 {
            out.push("…".into());
            break;
        }
    }
    out
}

/// A temporary directory, on tmpfs when there is one: the crash states and their restores
/// write a few GB in all, and on a busy disk that I/O, not the checks, would set the runtime.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// Recording.

struct Committed {
    id: String,
    /// Op count when `backup` returned: every cut at or after it must hold the snapshot.
    mark: usize,
    model: Model,
}

fn backup_tree(vault: &Vault, src: &Path, threads: usize) -> tiervault_store::Snapshot {
    let opts = backup::Options {
        threads,
        ..backup::Options::default()
    };
    backup::backup(
        vault,
        backup::Source::Paths(vec![src.to_path_buf()]),
        &opts,
        &backup::Progress::default(),
    )
    .expect("backup through CrashFs")
}

/// A backup that fails after its packs are written and renamed into place: a stream shorter
/// than announced. The writer aborts and removes its packs (unsynced removals).
fn failed_backup(vault: &Vault, rng: &mut Rng) {
    let data = random(rng, 6 << 20);
    let len = data.len() as u64;
    let source = backup::Source::Stream {
        name: "stream.bin".into(),
        reader: Box::new(std::io::Cursor::new(data)),
        expect: Some(len + 1),
    };
    let opts = backup::Options {
        threads: THREADS,
        ..backup::Options::default()
    };
    let res = backup::backup(vault, source, &opts, &backup::Progress::default());
    assert!(res.is_err(), "a stream shorter than expected must fail");
}

// ---------------------------------------------------------------------------------------------
// Cut points.

fn choose_cuts(
    ops: &[OpInfo],
    marks: &[(usize, String)],
    data_dirs: &[&str],
    cut_count: usize,
    rng: &mut Rng,
) -> BTreeMap<usize, String> {
    let n = ops.len();
    let mut cuts: BTreeMap<usize, String> = BTreeMap::new();
    let add = |cuts: &mut BTreeMap<usize, String>, c: usize, why: String| {
        if c <= n {
            cuts.entry(c).or_insert(why);
        }
    };
    add(&mut cuts, 0, "nothing recorded".into());
    add(&mut cuts, n, "everything recorded".into());
    let under = |o: &OpInfo, dir: &str| o.to.as_deref().unwrap_or(&o.path).starts_with(dir);
    for (m, label) in marks {
        add(&mut cuts, *m, format!("right after {label}"));
        if *m > 0 {
            add(
                &mut cuts,
                m - 1,
                format!("right before {label} (its last op not issued)"),
            );
        }
        // The snapshot file's rename: before it, and after it but before `snapshots/` is synced.
        if let Some(r) = (0..*m)
            .rev()
            .find(|&i| ops[i].kind == OpKind::Rename && under(&ops[i], "snapshots"))
        {
            add(
                &mut cuts,
                r,
                format!("before the snapshot rename of {label}"),
            );
            add(
                &mut cuts,
                r + 1,
                format!("after the snapshot rename of {label}, before its dir sync"),
            );
        }
    }
    let of = |pred: &dyn Fn(&OpInfo) -> bool| -> Vec<usize> {
        (0..n).filter(|&i| pred(&ops[i])).collect()
    };
    // Under `<data dir>/tmp/` of any data directory.
    let in_pack_tmp = |p: &Path| {
        data_dirs
            .iter()
            .any(|d| p.starts_with(Path::new(d).join("tmp")))
    };
    let pack_writes = of(&|o| o.kind == OpKind::Write && in_pack_tmp(&o.path));
    let pack_renames = of(&|o| o.kind == OpKind::Rename && in_pack_tmp(&o.path));
    let index_renames = of(&|o| o.kind == OpKind::Rename && under(o, "index"));
    let removes = of(&|o| o.kind == OpKind::Remove);
    let mkdirs = of(&|o| o.kind == OpKind::Mkdir);
    let mut pick =
        |cuts: &mut BTreeMap<usize, String>, from: &[usize], k: usize, offset: usize, why: &str| {
            for _ in 0..k.min(from.len()) {
                let i = from[rng.below(from.len() as u64) as usize];
                add(cuts, i + offset, format!("{why}: {}", ops[i]));
            }
        };
    pick(
        &mut cuts,
        &pack_writes,
        8,
        1,
        "in the middle of a pack, after",
    );
    pick(&mut cuts, &pack_renames, 3, 0, "before pack rename");
    pick(
        &mut cuts,
        &pack_renames,
        3,
        1,
        "after pack rename, before dir sync",
    );
    pick(
        &mut cuts,
        &index_renames,
        2,
        1,
        "after index part rename, before dir sync",
    );
    pick(
        &mut cuts,
        &removes,
        2,
        1,
        "after removal of an aborted pack",
    );
    pick(&mut cuts, &mkdirs, 2, 1, "after creating pack directory");
    while cuts.len() < cut_count {
        let c = rng.below(n as u64 + 1) as usize;
        add(&mut cuts, c, "random".into());
    }
    cuts
}

// ---------------------------------------------------------------------------------------------
// Checking one crash state.

/// Files left in a directory (absent directory: none).
fn leftovers(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Everything that must hold for the vault materialised at `cut`; returns a summary line or
/// every problem found.
fn check_state(
    dir: &Path,
    cut: usize,
    committed: &[Committed],
    tiny_src: &Path,
    data_dirs: &[&str],
) -> Result<String, Vec<String>> {
    let vault_dir = dir.join("vault");
    let mut problems = Vec::new();
    let t = Instant::now();
    let vault = Vault::open(&vault_dir, &secret(), io::default_io())
        .map_err(|e| vec![format!("Vault::open failed (vault left unopenable): {e}")])?;
    // Recovery ran (this process holds the only lock): interrupted writes are gone.
    let tmps = std::iter::once(vault_dir.join("tmp"))
        .chain(data_dirs.iter().map(|d| vault_dir.join(d).join("tmp")));
    for t in tmps {
        let left = leftovers(&t);
        if !left.is_empty() {
            problems.push(format!("{} still holds {left:?} after open", t.display()));
        }
    }
    let t_open = t.elapsed();
    let vopts = verify::Options {
        quick: false,
        threads: THREADS,
    };
    match verify::verify(&vault, &vopts, &verify::Progress::default()) {
        Ok(report) if report.damage.is_empty() => {}
        Ok(report) => {
            for d in report.damage.iter().take(10) {
                problems.push(format!("verify damage: {d:?}"));
            }
            if report.damage.len() > 10 {
                problems.push(format!(
                    "… {} more damage entries",
                    report.damage.len() - 10
                ));
            }
        }
        Err(e) => problems.push(format!("verify failed: {e}")),
    }
    let (snaps, unreadable) = match vault.snapshots() {
        Ok(s) => s,
        Err(e) => return Err([problems, vec![format!("listing snapshots: {e}")]].concat()),
    };
    for (name, e) in &unreadable {
        problems.push(format!("unreadable snapshot {name}: {e}"));
    }
    let t_verify = t.elapsed();
    let listed: BTreeSet<String> = snaps.iter().map(|s| s.id.hex()).collect();
    for c in committed.iter().filter(|c| c.mark <= cut) {
        if !listed.contains(&c.id) {
            problems.push(format!(
                "snapshot {} committed at op {} is missing",
                c.id, c.mark
            ));
        }
    }
    let mut restored = 0;
    let mut uncommitted = 0;
    for s in &snaps {
        let id = s.id.hex();
        let Some(c) = committed.iter().find(|c| c.id == id) else {
            problems.push(format!("snapshot {id} was never made by a backup"));
            continue;
        };
        if c.mark > cut {
            uncommitted += 1;
        }
        let target = dir.join(format!("restore-{}", s.short_id()));
        let ropts = restore::Options {
            overwrite: false,
            threads: THREADS,
        };
        match restore::restore(
            &vault,
            s,
            None,
            &restore::Target::Dir(target.clone()),
            &ropts,
            &restore::Progress::default(),
        ) {
            Ok(r) if !r.damaged.is_empty() => {
                problems.push(format!("restore of {id} damaged: {:?}", r.damaged))
            }
            Ok(_) => {
                let got = capture(&target.join("src"));
                for d in diff(&c.model, &got) {
                    problems.push(format!("restore of {id}: {d}"));
                }
                restored += 1;
            }
            Err(e) => problems.push(format!("restore of {id} failed: {e}")),
        }
        let _ = fs::remove_dir_all(&target);
    }
    let t_restore = t.elapsed();
    // The recovered vault still takes backups.
    let opts = backup::Options {
        threads: THREADS,
        ..backup::Options::default()
    };
    match backup::backup(
        &vault,
        backup::Source::Paths(vec![tiny_src.to_path_buf()]),
        &opts,
        &backup::Progress::default(),
    ) {
        Ok(s) => match vault.snapshots() {
            Ok((all, _)) if all.iter().any(|x| x.id == s.id) => {}
            _ => problems.push("the backup taken after recovery is not listed".into()),
        },
        Err(e) => problems.push(format!("backup after recovery failed: {e}")),
    }
    if problems.is_empty() {
        Ok(format!(
            "{} snapshot(s), {restored} restored identical ({uncommitted} not yet committed); \
             open {t_open:.1?}, verify {:.1?}, restores {:.1?}, new backup {:.1?}",
            snaps.len(),
            t_verify - t_open,
            t_restore - t_verify,
            t.elapsed() - t_restore
        ))
    } else {
        Err(problems)
    }
}

#[test]
fn power_cuts_during_backups_lose_nothing_committed() {
    power_cuts_during_backups(&["data"], CUTS, 4);
}

/// The same with two data directories (inside the vault, so `CrashFs` records both): packs
/// are placed in both, each renamed and synced within its own directory.
#[test]
fn power_cuts_with_two_data_dirs_lose_nothing_committed() {
    power_cuts_during_backups(&["data", "data1"], CUTS / 2, 3);
}

fn power_cuts_during_backups(data_dirs: &[&str], cut_count: usize, rounds: u64) {
    let started = Instant::now();
    let seed = seed();
    println!("powercut: seed {seed:#x} (TIERVAULT_POWERCUT_SEED={seed:#x} replays the choices)");
    let mut rng = Rng::new(seed);
    let tmp = scratch_dir();
    let src = tmp.path().join("src");
    make_tree(&src, &mut rng);
    let tiny_src = tmp.path().join("tiny");
    write_file(
        &tiny_src.join("after-recovery.txt"),
        b"written after the power cut",
    );

    let vault_dir = tmp.path().join("vault");
    let fs = Arc::new(CrashFs::passthrough(&vault_dir, io::default_io()));
    let opts = InitOptions {
        kdf_time: Duration::ZERO,
        // Smaller chunks than the default: more blobs per pack.
        chunker: ChunkerSizes {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        },
        data_dirs: data_dirs.iter().map(PathBuf::from).collect(),
        ..InitOptions::default()
    };
    drop(Vault::init(&vault_dir, &secret(), &opts, fs.clone()).expect("init"));
    // The baseline: the initialised vault (including `lock`, written with std::fs).
    fs.start_recording().expect("start recording");

    let mut committed = Vec::new();
    for round in 0..rounds {
        if round > 0 {
            edit_tree(&src, &mut rng, round);
        }
        // One open per backup, as `vaultctl` does (the open's recovery is recorded too). A
        // handle's in-memory index does not learn the packs its own backups add, so a second
        // backup through the same handle would store every blob again.
        let vault = Vault::open(&vault_dir, &secret(), fs.clone()).expect("open through CrashFs");
        if round == 2 {
            failed_backup(&vault, &mut rng);
            fs.mark("aborted stream backup");
        }
        let model = capture(&src);
        // The first backup is single-threaded, so one pack fills up and rotates mid-backup.
        let snap = backup_tree(&vault, &src, if round == 0 { 1 } else { THREADS });
        let id = snap.id.hex();
        let mark = fs.mark(&format!("committed snapshot {}", snap.short_id()));
        println!(
            "round {round}: snapshot {} committed at op {mark} ({} new blobs, {} bytes stored)",
            snap.short_id(),
            snap.body.summary.new_blobs,
            snap.body.summary.stored_bytes
        );
        committed.push(Committed { id, mark, model });
    }

    let ops = fs.ops();
    let stored: u64 = ops
        .iter()
        .filter(|o| o.kind == OpKind::Write)
        .map(|o| o.len)
        .sum();
    let count = |k: OpKind| ops.iter().filter(|o| o.kind == k).count();
    println!(
        "recorded {} ops in {:.1?}: {} writes ({stored} bytes), {} file syncs, {} renames, {} dir syncs, {} removes, {} mkdirs",
        ops.len(),
        started.elapsed(),
        count(OpKind::Write),
        count(OpKind::FileSync),
        count(OpKind::Rename),
        count(OpKind::SyncDir),
        count(OpKind::Remove),
        count(OpKind::Mkdir)
    );
    let marks = fs.marks();
    let cuts = choose_cuts(&ops, &marks, data_dirs, cut_count, &mut rng);
    for d in data_dirs {
        let renamed_into = ops.iter().any(|o| {
            o.kind == OpKind::Rename
                && o.path.starts_with(Path::new(d).join("tmp"))
                && o.to.as_deref().is_some_and(|t| t.starts_with(d))
        });
        assert!(renamed_into, "no pack was placed in data directory {d}");
    }
    println!("checking {} cut points", cuts.len());

    let mut failures = Vec::new();
    for (k, (&cut, why)) in cuts.iter().enumerate() {
        let state_seed = seed ^ (cut as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64;
        let dir = tmp.path().join(format!("cut-{cut}"));
        let t = Instant::now();
        let rep = fs
            .materialize(cut, state_seed, &dir.join("vault"))
            .expect("materialize");
        let result = check_state(&dir, cut, &committed, &tiny_src, data_dirs);
        match &result {
            Ok(summary) => println!(
                "cut {cut:>4} ({why}): ok, {summary} [{:.1?}]\n          {rep}",
                t.elapsed()
            ),
            Err(problems) => {
                println!("cut {cut:>4} ({why}): FAILED\n          {rep}");
                for p in problems {
                    println!("          - {p}");
                }
                failures.push(format!(
                    "cut {cut} (state seed {state_seed:#x}, {why}): {}",
                    problems.join("; ")
                ));
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
    println!(
        "powercut: {} cut points, {} failed, {:.1?} in all",
        cuts.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: {} of {} crash states broke the vault:\n{}",
        failures.len(),
        cuts.len(),
        failures.join("\n")
    );
}

/// Power cuts while `Vault::init` runs: a directory without a durable `config` is not a vault;
/// one with a durable `config` opens, verifies and takes a backup.
///
/// Ignored until the store is fixed; it fails on two gaps in `Vault::init`'s fsync order:
/// - `data/tmp` is created but `data` is never fsynced, so after a cut right after a
///   successful init `data/tmp` may be gone, and every later backup fails with "creating pack:
///   No such file or directory" (nothing recreates it);
/// - `config` is renamed into the vault directory before that directory is fsynced for the
///   `mkdir`s of `keys/`, `index/`, `snapshots/`, `tmp/` and `data/`, so a cut between that
///   rename and the final `sync_dir` can leave a `config` without, e.g., `keys/`: a directory
///   that claims to be a vault but cannot be opened.
#[test]
fn power_cuts_during_init_leave_no_half_vault() {
    const SEEDS: u64 = 8;
    let seed = seed();
    let tmp = scratch_dir();
    let vault_dir = tmp.path().join("vault");
    let tiny_src = tmp.path().join("tiny");
    write_file(
        &tiny_src.join("after-recovery.txt"),
        b"written after the power cut",
    );
    let fs = Arc::new(CrashFs::new(&vault_dir, io::default_io()).expect("CrashFs::new"));
    let opts = InitOptions {
        kdf_time: Duration::ZERO,
        ..InitOptions::default()
    };
    drop(Vault::init(&vault_dir, &secret(), &opts, fs.clone()).expect("init"));
    let ops = fs.ops();
    for (i, o) in ops.iter().enumerate() {
        println!("init op {i:>2}: {o}");
    }
    let mut failures = Vec::new();
    let (mut vaults, mut not_vaults, mut lock_missing) = (0, 0, 0);
    for cut in 0..=ops.len() {
        for k in 0..SEEDS {
            let state_seed = seed ^ (cut as u64) << 8 ^ k;
            let dir = tmp.path().join(format!("cut-{cut}-{k}"));
            let root = dir.join("vault");
            fs.materialize(cut, state_seed, &root).expect("materialize");
            let mut problems = Vec::new();
            if !root.join("config").exists() {
                not_vaults += 1;
                match Vault::open(&root, &secret(), io::default_io()) {
                    Err(tiervault_store::Error::NotAVault(_)) => {}
                    Err(e) => problems.push(format!(
                        "without config, open failed with {e} rather than NotAVault"
                    )),
                    Ok(_) => problems.push("opened a vault without config".into()),
                }
            } else {
                vaults += 1;
                // `lock` is written with std::fs, outside `Io`: the log cannot know it exists.
                // It is created before `config` is renamed and both are made durable by the
                // same `sync_dir` of the vault directory, so supply it here.
                if !root.join("lock").exists() {
                    lock_missing += 1;
                    fs::write(root.join("lock"), b"").expect("creating lock");
                }
                match Vault::open(&root, &secret(), io::default_io()) {
                    Err(e) => problems.push(format!("config is durable but open failed: {e}")),
                    Ok(vault) => {
                        let vopts = verify::Options {
                            quick: false,
                            threads: THREADS,
                        };
                        match verify::verify(&vault, &vopts, &verify::Progress::default()) {
                            Ok(r) if r.damage.is_empty() => {}
                            Ok(r) => problems.push(format!("verify damage: {:?}", r.damage)),
                            Err(e) => problems.push(format!("verify failed: {e}")),
                        }
                        let bopts = backup::Options {
                            threads: THREADS,
                            ..backup::Options::default()
                        };
                        let source = backup::Source::Paths(vec![tiny_src.clone()]);
                        if let Err(e) =
                            backup::backup(&vault, source, &bopts, &backup::Progress::default())
                        {
                            problems.push(format!("first backup failed: {e}"));
                        }
                    }
                }
            }
            if !problems.is_empty() {
                let mut names = Vec::new();
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                        let p = e.path();
                        names.push(p.strip_prefix(&root).unwrap_or(&p).display().to_string());
                        if p.is_dir() {
                            stack.push(p);
                        }
                    }
                }
                names.sort();
                failures.push(format!(
                    "cut {cut} (state seed {state_seed:#x}): {}; state holds {names:?}",
                    problems.join("; ")
                ));
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    println!(
        "init: {} ops, {} states: {vaults} with config ({lock_missing} needed `lock` supplied), {not_vaults} without; {} failed",
        ops.len(),
        (ops.len() + 1) as u64 * SEEDS,
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: {} crash states during init broke the vault:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
