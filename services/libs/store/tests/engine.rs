//! The engine through its public API: back up, read, restore, verify, with both write engines.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{opts, pseudo_random, secret};
use tiervault_store::io::{Io, PlainIo};
use tiervault_store::{backup, browse, restore, verify, Secret, Vault};

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::write(root.join("a/small.txt"), b"hello world\n".repeat(10)).expect("write");
    std::fs::write(root.join("a/b/big.bin"), pseudo_random(3 << 20, 7)).expect("write");
    std::fs::write(root.join("empty"), b"").expect("write");
    std::os::unix::fs::symlink("a/small.txt", root.join("link")).expect("symlink");
    std::fs::set_permissions(
        root.join("a/small.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
}

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let p = e.expect("entry").path();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            if md.is_dir() {
                stack.push(p);
            } else if md.file_type().is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .display()
                        .to_string()
                        .into_bytes(),
                ));
            } else {
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn round_trip(io: Arc<dyn Io>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    make_tree(&src);
    let vault = Vault::init(&tmp.path().join("vault"), &secret(), &opts(), io).expect("init");
    let progress = backup::Progress::default();
    let snap = backup::backup(
        &vault,
        backup::Source::Paths(vec![src.clone()]),
        &backup::Options::default(),
        &progress,
    )
    .expect("backup");
    assert_eq!(snap.body.summary.files, 3);
    assert_eq!(snap.body.summary.skipped, 0);

    let again = backup::backup(
        &vault,
        backup::Source::Paths(vec![src.clone()]),
        &backup::Options::default(),
        &progress,
    )
    .expect("second backup");
    assert_eq!(
        again.body.summary.stored_bytes, 0,
        "unchanged tree stores nothing new"
    );
    assert_eq!(again.body.parent.as_deref(), Some(snap.id.hex().as_str()));

    let target = tmp.path().join("restore");
    let report = restore::restore(
        &vault,
        &again,
        None,
        &restore::Target::Dir(target.clone()),
        &restore::Options {
            overwrite: false,
            threads: 2,
        },
        &restore::Progress::default(),
    )
    .expect("restore");
    assert!(report.damaged.is_empty());
    assert_eq!(files(&src), files(&target.join("src")));

    let mut out = Vec::new();
    match browse::find(&vault, &again, b"src/a/small.txt").expect("find") {
        browse::Found::Entry(e) => browse::cat(&vault, &e, &mut out).expect("cat"),
        browse::Found::Root(_) => panic!("expected an entry"),
    };
    assert_eq!(out, b"hello world\n".repeat(10));

    let r = verify::verify(
        &vault,
        &verify::Options {
            quick: false,
            threads: 2,
        },
        &verify::Progress::default(),
    )
    .expect("verify");
    assert!(r.ok(), "{:?}", r.damage);
    assert_eq!(r.snapshots, 2);
}

#[test]
fn round_trip_with_pwrite() {
    round_trip(Arc::new(PlainIo::new(false)));
}

#[test]
fn round_trip_with_default_engine() {
    round_trip(tiervault_store::io::default_io());
}

#[test]
fn wrong_secret_and_non_vault_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vault");
    Vault::init(&dir, &secret(), &opts(), tiervault_store::io::default_io()).expect("init");
    let wrong = Secret::KeyFile(b"ffffffffffffffffffffffffffffffff".to_vec());
    let e = Vault::open(&dir, &wrong, tiervault_store::io::default_io())
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("wrong passphrase or key file"),
        "{e}"
    );
    let e = Vault::open(tmp.path(), &secret(), tiervault_store::io::default_io())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("is not a vault"), "{e}");
    let e = Vault::init(&dir, &secret(), &opts(), tiervault_store::io::default_io())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("non-empty"), "{e}");
}

/// Two commands each removing the other's key at once (two keys left): key changes take turns,
/// so exactly one removal succeeds and the vault keeps a key that opens it. Repeated, since
/// without the turn-taking both could see another key left and remove the last two.
#[test]
fn concurrent_key_removals_never_remove_the_last_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vault");
    let first = secret();
    let second = Secret::KeyFile(pseudo_random(32, 99));
    Vault::init(&dir, &first, &opts(), tiervault_store::io::default_io()).expect("init");
    for round in 0..50 {
        let a = Vault::open(&dir, &first, tiervault_store::io::default_io()).expect("open");
        a.add_key(&second, std::time::Duration::ZERO)
            .expect("add the second key");
        let b = Vault::open(&dir, &second, tiervault_store::io::default_io()).expect("open");
        let (ka, kb) = (a.key_name().to_owned(), b.key_name().to_owned());
        let barrier = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                barrier.wait();
                a.remove_key(&kb)
            });
            let tb = s.spawn(|| {
                barrier.wait();
                b.remove_key(&ka)
            });
            (ta.join().expect("thread a"), tb.join().expect("thread b"))
        });
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {round}: exactly one removal succeeds: {ra:?} / {rb:?}"
        );
        let second_left = rb.is_ok();
        let err = ra.err().or(rb.err()).expect("one failed").to_string();
        assert!(err.contains("only key"), "round {round}: {err}");
        drop((a, b));
        // The key left opens the vault; make `first` the only key again for the next round.
        if second_left {
            let v = Vault::open(&dir, &second, tiervault_store::io::default_io())
                .expect("the second key, left, opens the vault");
            v.add_key(&first, std::time::Duration::ZERO)
                .expect("add the first key again");
            let f = Vault::open(&dir, &first, tiervault_store::io::default_io()).expect("open");
            f.remove_key(&kb).expect("remove the second key");
        } else {
            Vault::open(&dir, &first, tiervault_store::io::default_io())
                .expect("the first key, left, opens the vault");
        }
    }
}
