//! The comparator's own test: it must accept faithful copies and catch each kind of difference
//! a broken restore could make. Copies are made with `fsx::copy_tree` (`cp -a` in Rust).

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::compare::compare_trees;
use common::fsx;
use common::tree;

/// A small tree holding one of everything the mutations below touch.
fn fixture(root: &Path) {
    fs::create_dir(root).expect("mkdir root");
    fs::write(root.join("a.txt"), b"hello, vault\n".repeat(100)).expect("write a.txt");
    let mut sparse = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(root.join("sparse.bin"))
        .expect("create sparse.bin");
    fsx::write_at(&mut sparse, 1 << 20, &[7u8; 10_000]).expect("write sparse data");
    sparse.set_len(3 << 20).expect("extend sparse.bin");
    drop(sparse);
    fs::create_dir(root.join("dir")).expect("mkdir dir");
    fs::write(root.join("link1"), b"linked content").expect("write link1");
    fs::hard_link(root.join("link1"), root.join("dir/link2")).expect("hard link");
    std::os::unix::fs::symlink("a.txt", root.join("sym")).expect("symlink");
    fsx::set_xattr(&root.join("a.txt"), b"user.color", b"blue").expect("set xattr");
    for (p, mode) in [("a.txt", 0o644), ("dir", 0o750)] {
        fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    for (i, p) in ["a.txt", "sparse.bin", "link1", "sym", "dir", ""]
        .iter()
        .enumerate()
    {
        fsx::set_mtime(&root.join(p), 1_600_000_000 + i as i64, 123_456_789).expect("set mtime");
    }
}

/// Copies the fixture, applies `mutate` to the copy and returns the comparator's verdict.
fn verdict_after(mutate: impl FnOnce(&Path)) -> Result<(), String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, copy) = (tmp.path().join("src"), tmp.path().join("copy"));
    fixture(&src);
    fsx::copy_tree(&src, &copy).expect("copy_tree");
    mutate(&copy);
    compare_trees(&src, &copy, &[])
}

/// Runs `f` on `path` and then puts its parent directory's mtime back, so that a mutation
/// is reported for itself and not also as a directory change.
fn keeping_parent_mtime(path: &Path, f: impl FnOnce(&Path)) {
    let parent: PathBuf = path.parent().expect("a parent").to_path_buf();
    let md = fs::symlink_metadata(&parent).expect("lstat parent");
    let (s, ns) = fsx::mtime_of(&md);
    f(path);
    fsx::set_mtime(&parent, s, u32::try_from(ns).expect("ns < 1e9")).expect("reset parent mtime");
}

/// Sets `path`'s mtime back to what it was before `f`.
fn keeping_mtime(path: &Path, f: impl FnOnce(&Path)) {
    let (s, ns) = fsx::mtime_of(&fs::symlink_metadata(path).expect("lstat"));
    f(path);
    fsx::set_mtime(path, s, u32::try_from(ns).expect("ns < 1e9")).expect("reset mtime");
}

fn assert_caught(verdict: Result<(), String>, words: &[&str]) {
    let msg = verdict.expect_err("the comparator accepted a mutated copy");
    for w in words {
        assert!(
            msg.contains(w),
            "the comparator's report lacks {w:?}:\n{msg}"
        );
    }
}

#[test]
fn accepts_a_faithful_copy() {
    verdict_after(|_| {}).expect("a faithful copy must compare equal");
}

#[test]
fn accepts_copies_of_random_trees() {
    // The generator, copy_tree and the comparator agree on what "the same" is.
    for seed in 0..6 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, copy) = (tmp.path().join("src"), tmp.path().join("copy"));
        tree::build(&tree::sample(seed), &src).expect("building a sample tree");
        fsx::copy_tree(&src, &copy).expect("copy_tree");
        if let Err(e) = compare_trees(&src, &copy, &[]) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn catches_a_changed_byte() {
    assert_caught(
        verdict_after(|c| {
            keeping_mtime(&c.join("a.txt"), |p| {
                let mut f = OpenOptions::new().write(true).open(p).expect("open");
                fsx::write_at(&mut f, 700, b"X").expect("write");
            })
        }),
        &["a.txt", "content differs at byte 700"],
    );
}

#[test]
fn catches_a_changed_mode() {
    assert_caught(
        verdict_after(|c| {
            fs::set_permissions(c.join("a.txt"), fs::Permissions::from_mode(0o640)).expect("chmod")
        }),
        &["a.txt", "mode 644 vs 640"],
    );
}

#[test]
fn catches_a_changed_mtime() {
    assert_caught(
        verdict_after(|c| {
            fsx::set_mtime(&c.join("a.txt"), 1_600_000_000, 123_456_790).expect("touch")
        }),
        &["a.txt", "mtime"],
    );
}

#[test]
fn catches_a_changed_directory_or_symlink_mtime() {
    assert_caught(
        verdict_after(|c| fsx::set_mtime(&c.join("dir"), 1, 0).expect("touch dir")),
        &["dir: mtime"],
    );
    assert_caught(
        verdict_after(|c| fsx::set_mtime(&c.join("sym"), 1, 0).expect("touch symlink")),
        &["sym: mtime"],
    );
}

#[test]
fn catches_a_filled_hole() {
    // Same bytes, but the hole is now written zeros: only the hole map differs.
    assert_caught(
        verdict_after(|c| {
            keeping_mtime(&c.join("sparse.bin"), |p| {
                let mut f = OpenOptions::new().write(true).open(p).expect("open");
                fsx::write_at(&mut f, 0, &vec![0u8; 1 << 20]).expect("fill the hole");
            })
        }),
        &["sparse.bin", "hole map differs"],
    );
}

#[test]
fn catches_a_broken_hard_link_group() {
    assert_caught(
        verdict_after(|c| {
            keeping_parent_mtime(&c.join("dir/link2"), |p| {
                // An identical file, but a separate inode.
                let meta = fsx::read_meta(p).expect("read meta");
                fs::remove_file(p).expect("unlink");
                fs::write(p, b"linked content").expect("rewrite");
                fsx::apply_meta(p, &meta, false).expect("apply meta");
            })
        }),
        &["hard-link group", "link1", "dir/link2"],
    );
}

#[test]
fn catches_xattr_target_and_presence_changes() {
    assert_caught(
        verdict_after(|c| {
            fsx::set_xattr(&c.join("a.txt"), b"user.color", b"red").expect("set xattr");
        }),
        &["a.txt: xattrs"],
    );
    assert_caught(
        verdict_after(|c| {
            keeping_parent_mtime(&c.join("sym"), |p| {
                fs::remove_file(p).expect("unlink");
                std::os::unix::fs::symlink("elsewhere", p).expect("symlink");
                fsx::set_mtime(p, 1_600_000_003, 123_456_789).expect("mtime");
            })
        }),
        &["sym: symlink target a.txt vs elsewhere"],
    );
    assert_caught(
        verdict_after(|c| {
            keeping_parent_mtime(&c.join("a.txt"), |p| fs::remove_file(p).expect("unlink"))
        }),
        &["a.txt: missing"],
    );
}

#[test]
fn skip_list_ignores_named_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, copy) = (tmp.path().join("src"), tmp.path().join("copy"));
    fixture(&src);
    fsx::copy_tree(&src, &copy).expect("copy_tree");
    keeping_parent_mtime(&copy.join("a.txt"), |p| fs::remove_file(p).expect("unlink"));
    compare_trees(&src, &copy, &[b"a.txt"]).expect("a skipped path must not count");
}
