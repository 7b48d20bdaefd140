//! Backups through the engine with filters and with cancellation.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{backup, backup_prescanned, prescan, Filter, Options, Progress, Source};
use crate::error::Error;
use crate::keyfile::Secret;
use crate::snapshot::Snapshot;
use crate::tree::NodeType;
use crate::vault::Vault;
use crate::{io, restore, verify, InitOptions};

/// The tests here that start backups run one at a time: the cancel test looks for leftover
/// backup threads by name in this process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn secret() -> Secret {
    Secret::KeyFile(b"0123456789abcdef0123456789abcdef".to_vec())
}

pub(crate) fn new_vault(dir: &Path) -> Vault {
    let opts = InitOptions {
        kdf_time: Duration::ZERO,
        ..InitOptions::default()
    };
    Vault::init(dir, &secret(), &opts, io::default_io()).expect("init")
}

/// Reproducible incompressible bytes.
pub(crate) fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub(crate) fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, data).expect("write");
}

pub(crate) fn opts(threads: usize) -> Options {
    Options {
        threads,
        ..Options::default()
    }
}

fn filter(include: &[&str], exclude: &[&str]) -> Filter {
    let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    Filter::new(&s(include), &s(exclude)).expect("valid patterns")
}

/// Restore all of `snap` under `target` with two workers; nothing may be damaged.
pub(crate) fn restore_undamaged(vault: &Vault, snap: &Snapshot, target: &Path) {
    let report = restore::restore(
        vault,
        snap,
        None,
        &restore::Target::Dir(target.to_path_buf()),
        &restore::Options {
            overwrite: false,
            threads: 2,
        },
        &restore::Progress::default(),
    )
    .expect("restore");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
}

/// Every path in the snapshot ("src/a/b"; non-UTF-8 bytes lossily), with "/" after dirs.
fn paths(vault: &Vault, snap: &Snapshot) -> Vec<String> {
    fn walk(vault: &Vault, id: &crate::id::Id, prefix: &str, out: &mut Vec<String>) {
        for e in vault.read_tree(id).expect("tree").entries {
            let p = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
            if e.kind == NodeType::Dir {
                out.push(format!("{p}/"));
                walk(
                    vault,
                    &e.subtree.expect("a dir has a subtree"),
                    &format!("{p}/"),
                    out,
                );
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(vault, &snap.body.root, "", &mut out);
    out.sort();
    out
}

/// A tree with things to exclude: temp files, a cache directory, node_modules, non-UTF-8 names.
fn filter_tree(src: &Path) {
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("a.tmp"), b"temp");
    for i in 0..20 {
        write(&src.join(format!("cache/c{i}")), b"cached");
    }
    write(&src.join("sub/x.tmp"), b"temp");
    write(&src.join("sub/y.txt"), b"y");
    write(&src.join("sub/doc.docx"), b"doc");
    write(&src.join("sub/node_modules/m/index.js"), b"js");
    write(
        &src.join(OsStr::from_bytes(b"sub/\xff.tmp")),
        b"latin1 temp",
    );
    write(
        &src.join(OsStr::from_bytes(b"sub/\xfe.txt")),
        b"latin1 text",
    );
    write(&src.join("proj/deep/a.bin"), b"bin");
    write(&src.join("proj/deep/b.tmp"), b"temp");
    std::fs::create_dir_all(src.join("empty")).expect("mkdir");
}

#[test]
fn excluded_entries_are_left_out_and_counted() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&tmp.path().join("vault"));
    let src = tmp.path().join("src");
    filter_tree(&src);
    let cache = src.join("cache").display().to_string();
    let o = Options {
        filter: filter(&[], &["*.tmp", &cache, "node_modules"]),
        ..opts(2)
    };
    let progress = Progress::default();
    let snap = backup(&vault, Source::Paths(vec![src.clone()]), &o, &progress).expect("backup");
    assert_eq!(
        paths(&vault, &snap),
        [
            "src/",
            "src/empty/",
            "src/keep.txt",
            "src/proj/",
            "src/proj/deep/",
            "src/proj/deep/a.bin",
            "src/sub/",
            "src/sub/doc.docx",
            "src/sub/y.txt",
            "src/sub/\u{fffd}.txt",
        ]
    );
    // a.tmp, cache (once: its 20 entries are never listed), x.tmp, \xff.tmp, node_modules,
    // b.tmp.
    assert_eq!(progress.excluded.load(Ordering::Relaxed), 6);
    assert!(snap.body.skipped.is_empty(), "{:?}", snap.body.skipped);
    assert_eq!(snap.body.summary.files, 5);
}

#[test]
fn include_keeps_matching_files_and_every_directory() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&tmp.path().join("vault"));
    let src = tmp.path().join("src");
    filter_tree(&src);
    let proj = src.join("proj").display().to_string();
    let o = Options {
        filter: filter(&["*.txt", "*.docx", &proj], &["*.tmp"]),
        ..opts(2)
    };
    let progress = Progress::default();
    let snap = backup(&vault, Source::Paths(vec![src.clone()]), &o, &progress).expect("backup");
    assert_eq!(
        paths(&vault, &snap),
        [
            "src/",
            "src/cache/",
            "src/empty/",
            "src/keep.txt",
            "src/proj/",
            "src/proj/deep/",
            // Below an included directory, everything not excluded.
            "src/proj/deep/a.bin",
            "src/sub/",
            "src/sub/doc.docx",
            "src/sub/node_modules/",
            "src/sub/node_modules/m/",
            "src/sub/y.txt",
            "src/sub/\u{fffd}.txt",
        ]
    );
    // a.tmp, 20 cache files, x.tmp, \xff.tmp, index.js, b.tmp.
    assert_eq!(progress.excluded.load(Ordering::Relaxed), 25);
}

#[test]
fn roots_are_never_filtered_and_other_prescans_are_not_used() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&tmp.path().join("vault"));
    let src = tmp.path().join("src");
    filter_tree(&src);
    let file = tmp.path().join("root.tmp");
    write(&file, b"a root file");
    let o = Options {
        // Matches both roots, and includes nothing.
        filter: filter(&["nothing-matches-this"], &["src", "*.tmp"]),
        ..opts(2)
    };
    let source = Source::Paths(vec![src.clone(), file.clone()]);
    // A prescan without the filter lists everything; the backup must not use it.
    let scan = prescan(&source);
    let progress = Progress::default();
    let snap = backup_prescanned(&vault, source, &o, &progress, scan).expect("backup");
    let got = paths(&vault, &snap);
    assert!(got.contains(&"root.tmp".to_string()), "{got:?}");
    assert!(got.contains(&"src/".to_string()), "{got:?}");
    assert!(!got.iter().any(|p| p.ends_with(".txt")), "{got:?}");
    assert!(!got.iter().any(|p| p.starts_with("src/cache/c")), "{got:?}");
}

#[test]
fn filters_are_refused_for_streams_and_images() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&tmp.path().join("vault"));
    let img = tmp.path().join("disk.img");
    write(&img, &[0u8; 4096]);
    let o = Options {
        filter: filter(&[], &["*.tmp"]),
        ..opts(1)
    };
    let stream = Source::Stream {
        name: "s".into(),
        reader: Box::new(std::io::empty()),
        expect: None,
    };
    for source in [Source::Image(img), stream] {
        let err = backup(&vault, source, &o, &Progress::default()).expect_err("refused");
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("stream or image")),
            "{err:?}"
        );
    }
    assert!(vault.snapshots().expect("list").0.is_empty());
}

/// Total size of the vault's pack files.
fn pack_bytes(vault_dir: &Path) -> u64 {
    let data = vault_dir.join("data");
    let mut n = 0;
    for sub in std::fs::read_dir(&data).expect("data dir") {
        let sub = sub.expect("entry").path();
        if sub.file_name() == Some(OsStr::new("tmp")) || !sub.is_dir() {
            continue;
        }
        for p in std::fs::read_dir(&sub).expect("pack dir") {
            n += p.expect("entry").metadata().expect("stat").len();
        }
    }
    n
}

/// Names of this process's threads that belong to a backup.
fn backup_threads() -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = t.expect("task").path().join("comm");
        // A thread may end between the listing and the read.
        if let Ok(name) = std::fs::read_to_string(comm) {
            let name = name.trim().to_string();
            if ["backup-", "scan-", "pack-flusher"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                out.push(name);
            }
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            out.push(e.expect("entry").path());
        }
    }
    out
}

#[test]
fn cancelled_backup_leaves_a_sound_vault_and_its_data_reusable() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault_dir = tmp.path().join("vault");
    let vault = new_vault(&vault_dir);

    // An earlier snapshot that must survive.
    let prev = tmp.path().join("prev");
    write(&prev.join("a.bin"), &random_bytes(3 << 20, 1));
    write(&prev.join("b.txt"), &b"earlier snapshot\n".repeat(1000));
    let prev_snap = backup(
        &vault,
        Source::Paths(vec![prev.clone()]),
        &opts(2),
        &Progress::default(),
    )
    .expect("earlier backup");

    // 256 MiB of incompressible data, in files larger than a segment.
    let big = tmp.path().join("big");
    const FILES: u64 = 8;
    const FILE_LEN: usize = 32 << 20;
    for i in 0..FILES {
        write(&big.join(format!("f{i}")), &random_bytes(FILE_LEN, 100 + i));
    }
    let total = FILES * FILE_LEN as u64;
    let packs_before = pack_bytes(&vault_dir);

    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Progress::default();
    let o = Options {
        cancel: Some(cancel.clone()),
        ..opts(4)
    };
    let (result, done_at_cancel, stop_time) = std::thread::scope(|s| {
        let h = s.spawn(|| backup(&vault, Source::Paths(vec![big.clone()]), &o, &progress));
        let deadline = Instant::now() + Duration::from_secs(600);
        while progress.bytes_done.load(Ordering::Relaxed) < 48 << 20 {
            assert!(!h.is_finished(), "the backup ended before it was cancelled");
            assert!(Instant::now() < deadline, "no progress: {progress:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let at = progress.bytes_done.load(Ordering::Relaxed);
        cancel.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let r = h.join().expect("the backup thread panicked");
        (r, at, t0.elapsed())
    });
    assert!(
        matches!(result, Err(Error::Cancelled)),
        "expected Err(Cancelled), got {:?}",
        result.map(|s| s.id)
    );
    assert_eq!(
        result.expect_err("cancelled").to_string(),
        "backup cancelled"
    );
    assert!(
        stop_time < Duration::from_secs(60),
        "the backup took {stop_time:?} to stop"
    );
    assert!(
        progress.bytes_done.load(Ordering::Relaxed) < total,
        "it stopped before reading everything"
    );
    // Every thread of the backup has ended; nothing is left half-written.
    let left = backup_threads();
    assert!(left.is_empty(), "threads left running: {left:?}");
    for t in [vault_dir.join("tmp"), vault_dir.join("data/tmp")] {
        assert!(
            files_under(&t).is_empty(),
            "left in {}: {:?}",
            t.display(),
            files_under(&t)
        );
    }
    assert_eq!(
        vault.snapshots().expect("list").0.len(),
        1,
        "no new snapshot"
    );
    let kept = pack_bytes(&vault_dir) - packs_before;
    assert!(
        kept >= done_at_cancel,
        "the {done_at_cancel} bytes done before the cancel are kept: {kept} bytes of packs"
    );
    drop(vault);

    // The vault opens and verifies clean; the earlier snapshot restores.
    let vault = Vault::open(&vault_dir, &secret(), io::default_io()).expect("open");
    let vopts = verify::Options {
        quick: false,
        threads: 2,
    };
    let report = verify::verify(&vault, &vopts, &verify::Progress::default()).expect("verify");
    assert!(report.ok(), "damage after a cancel: {:?}", report.damage);
    let out = tmp.path().join("restored");
    restore_undamaged(&vault, &prev_snap, &out);
    for f in ["a.bin", "b.txt"] {
        assert!(
            std::fs::read(out.join("prev").join(f)).expect("restored file")
                == std::fs::read(prev.join(f)).expect("source file"),
            "{f} differs after restore"
        );
    }

    // The same backup again: it completes and stores only what the cancelled one had not.
    let again = backup(
        &vault,
        Source::Paths(vec![big.clone()]),
        &opts(4),
        &Progress::default(),
    )
    .expect("backup after the cancel");
    let stored = again.body.summary.stored_bytes;
    eprintln!(
        "cancelled after {done_at_cancel} bytes done, stopped in {stop_time:?}, kept {kept} \
         bytes of packs; the next backup stored {stored} of {total} bytes"
    );
    assert!(
        stored < total,
        "nothing was reused: {stored} of {total} bytes stored"
    );
    assert!(
        stored + kept <= total + total / 50,
        "the {kept} bytes kept were not all reused: {stored} bytes stored of {total}"
    );
    assert_eq!(again.body.summary.files, FILES);
    let report = verify::verify(&vault, &vopts, &verify::Progress::default()).expect("verify");
    assert!(
        report.ok(),
        "damage after the second backup: {:?}",
        report.damage
    );
}

#[test]
fn a_backup_cancelled_before_it_starts_writes_nothing() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault_dir = tmp.path().join("vault");
    let vault = new_vault(&vault_dir);
    let src = tmp.path().join("src");
    filter_tree(&src);
    let o = Options {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..opts(2)
    };
    let err =
        backup(&vault, Source::Paths(vec![src]), &o, &Progress::default()).expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(vault.snapshots().expect("list").0.is_empty());
    assert_eq!(pack_bytes(&vault_dir), 0);
    assert!(backup_threads().is_empty(), "{:?}", backup_threads());
}

/// Trees are stored while the backup runs: a wide tree is never held whole (only the files and
/// directories in flight), and hard links across distant directories keep their content.
#[test]
fn trees_are_assembled_as_the_walk_goes() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&tmp.path().join("vault"));
    let src = tmp.path().join("src");
    let (dirs, per_dir) = (150, 40);
    for d in 0..dirs {
        for f in 0..per_dir {
            let p = src.join(format!("d{d:03}/sub/f{f:03}"));
            write(&p, format!("{d}/{f}").repeat(1 + f).as_bytes());
        }
    }
    let first = src.join("d000/sub/f000");
    std::fs::hard_link(&first, src.join("d149/link")).expect("hard link");
    let snap = backup(
        &vault,
        Source::Paths(vec![src.clone()]),
        &opts(2),
        &Progress::default(),
    )
    .expect("backup");
    let held = super::assemble::LAST_PEAK_HELD.load(Ordering::Relaxed);
    let total = dirs * (per_dir + 2);
    assert!(held * 4 < total, "held {held} of {total} entries at once");
    assert_eq!(snap.body.summary.files, (dirs * per_dir + 1) as u64);
    assert_eq!(snap.body.summary.dirs, (2 * dirs + 1) as u64);
    let listed = paths(&vault, &snap);
    assert_eq!(listed.len(), total + 2, "{:?}", &listed[..5]);
    let target = tmp.path().join("restored");
    restore_undamaged(&vault, &snap, &target);
    for d in [0, 77, 149] {
        let p = format!("d{d:03}/sub/f039");
        let want = std::fs::read(src.join(&p)).expect("source");
        assert_eq!(
            std::fs::read(target.join("src").join(&p)).expect("restored"),
            want
        );
    }
    let a = std::fs::metadata(target.join("src/d000/sub/f000")).expect("first name");
    let b = std::fs::metadata(target.join("src/d149/link")).expect("second name");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&a),
        std::os::unix::fs::MetadataExt::ino(&b)
    );
}
