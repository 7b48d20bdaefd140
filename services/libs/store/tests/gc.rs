//! Garbage collection through the public API, including the race it exists to handle: a
//! session that was open before the collection condemned a pack dedups against a blob in it
//! and commits a snapshot; the collection must wait for it and rescue the blob.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{opts, pseudo_random, secret};
use tiervault_store::gc::{self, GcOptions};
use tiervault_store::{backup, restore, verify, Repo, Snapshot, Vault};

fn init(dir: &Path) -> Vault {
    Vault::init(dir, &secret(), &opts(), tiervault_store::io::default_io()).expect("init")
}

fn open(dir: &Path) -> Vault {
    Vault::open(dir, &secret(), tiervault_store::io::default_io()).expect("open")
}

fn backup_dir(v: &Vault, src: &Path) -> Snapshot {
    backup::backup(
        v,
        backup::Source::Paths(vec![src.to_path_buf()]),
        &backup::Options {
            force_reread: true,
            ..backup::Options::default()
        },
        &backup::Progress::default(),
    )
    .expect("backup")
}

fn check(v: &Vault, snap: &Snapshot, expect: &[u8], tmp: &Path) {
    let target = tmp.join(format!("restore-{}", snap.short_id()));
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
    assert!(r.damaged.is_empty());
    assert_eq!(std::fs::read(target.join("src/f")).expect("read"), expect);
}

fn verify_clean(v: &Vault) {
    let r = verify::verify(
        v,
        &verify::Options {
            quick: false,
            threads: 2,
        },
        &verify::Progress::default(),
    )
    .expect("verify");
    assert!(r.ok(), "{:?}", r.damage);
}

#[test]
fn forgotten_data_is_deleted_and_kept_data_survives() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("vault");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let v = init(&dir);
    std::fs::write(src.join("f"), pseudo_random(4 << 20, 1)).expect("write");
    let old = backup_dir(&v, &src);
    let keep_bytes = pseudo_random(4 << 20, 2);
    std::fs::write(src.join("f"), &keep_bytes).expect("write");
    let kept = backup_dir(&v, &src);
    gc::forget(&v, &[old.id]).expect("forget");
    drop(v);

    let repo = Repo::open(&dir, tiervault_store::io::default_io()).expect("open");
    let r = gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect("gc");
    assert_eq!(r.snapshots, 1);
    assert!(r.packs_deleted >= 1, "{r:?}");
    assert!(r.bytes_freed >= 4 << 20, "{r:?}");
    assert!(!r.resumed);
    drop(repo);

    let v = open(&dir);
    verify_clean(&v);
    check(&v, &kept, &keep_bytes, tmp.path());
    // Nothing left to collect.
    let repo = Repo::open(&dir, tiervault_store::io::default_io()).expect("open");
    let again = gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect("gc");
    assert_eq!(again.packs_deleted, 0, "{again:?}");
}

#[test]
fn an_older_session_that_dedups_against_condemned_data_is_waited_for_and_rescued() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("vault");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let v = init(&dir);
    let bytes = pseudo_random(3 << 20, 9);
    std::fs::write(src.join("f"), &bytes).expect("write");
    let first = backup_dir(&v, &src);
    gc::forget(&v, &[first.id]).expect("forget");
    // `v` stays open: it is the "older session". Its index still shows the blobs that are
    // about to be condemned.
    let dir2 = dir.clone();
    let collector = std::thread::spawn(move || {
        let repo = Repo::open(&dir2, tiervault_store::io::default_io()).expect("open");
        gc::collect(&repo, &GcOptions::default(), &|_: &str| {}).expect("gc")
    });
    // Wait until the collector has published its condemned list.
    let condemned = dir.join("condemned");
    for _ in 0..600 {
        if condemned.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        condemned.exists(),
        "the collector never condemned the packs"
    );
    assert!(!collector.is_finished(), "the collector must wait for us");

    // A new session hides the condemned packs and is refused forgetting meanwhile.
    let newer = open(&dir);
    assert!(
        newer.index().count().expect("count") == 0,
        "condemned packs must be invisible"
    );
    assert!(matches!(
        gc::forget(&newer, &[]),
        Err(tiervault_store::Error::GcPending(_))
    ));
    // Nor does it report the condemned packs (about to vanish) as damage.
    verify_clean(&newer);
    drop(newer);

    // The older session backs up the same bytes: dedup finds them in condemned packs.
    let second = backup_dir(&v, &src);
    assert!(
        second.body.summary.stored_bytes < 100_000,
        "deduplicated: {:?}",
        second.body.summary
    );
    drop(v);

    let report = collector.join().expect("collector");
    assert!(report.sessions_waited >= 1, "{report:?}");
    assert!(report.blobs_rescued >= 1, "{report:?}");
    assert!(!condemned.exists());

    let v = open(&dir);
    verify_clean(&v);
    check(&v, &second, &bytes, tmp.path());
}
