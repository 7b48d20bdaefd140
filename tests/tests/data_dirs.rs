//! `vaultctl` with several data directories (one per data array on an appliance): `init
//! --data-dir`, `data-dir list|add|mark`, packs spread over the directories, and an array
//! that goes missing: the vault still opens and backs up, `verify` names the missing packs,
//! their directory and exactly the snapshots that need them, the other snapshots restore, and
//! a heal from a replica plus `data-dir mark` bring everything back.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::cli::snap_id;
use common::{assert_same_tree, tree, Vault};

const MARKER: &str = "tiervault-data";

/// A key-file vault whose data directories are `n` directories outside it.
fn multi(n: usize) -> (Vault, Vec<PathBuf>) {
    let base = Vault::new();
    let v = base.at(base.scratch("multi"));
    let dirs: Vec<PathBuf> = (0..n).map(|i| base.scratch(&format!("array{i}"))).collect();
    let mut args: Vec<OsString> = vec!["init".into()];
    for d in &dirs {
        args.push("--data-dir".into());
        args.push(d.into());
    }
    let init = v.json(0, &args);
    let listed: Vec<String> = init["data_dirs"]
        .as_array()
        .unwrap_or_else(|| panic!("init --json without data_dirs: {init}"))
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_owned())
        .collect();
    let want: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    assert_eq!(listed, want);
    (v, dirs)
}

fn list(v: &Vault) -> Vec<Value> {
    match v.json(0, ["data-dir", "list"]) {
        Value::Array(a) => a,
        other => panic!("`data-dir list --json` printed a non-array: {other}"),
    }
}

fn restore_to(v: &Vault, snap: &str, name: &str) -> (std::process::Output, PathBuf) {
    let target = v.scratch(name);
    let out = v.run([
        "restore".as_ref(),
        snap.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    (out, target)
}

fn backup(v: &Vault, src: &Path) -> String {
    snap_id(&v.backup(&[src]))
}

fn hide_marker(dir: &Path) {
    fs::rename(dir.join(MARKER), dir.join("marker.off")).expect("hiding the marker");
}

fn show_marker(dir: &Path) {
    fs::rename(dir.join("marker.off"), dir.join(MARKER)).expect("restoring the marker");
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |rd| rd.count())
}

#[test]
fn init_with_three_data_dirs_lists_spreads_and_restores() {
    let (v, dirs) = multi(3);
    for (i, d) in dirs.iter().enumerate() {
        assert!(d.join(MARKER).is_file(), "no marker in data dir {i}");
        assert!(d.join("tmp").is_dir());
    }
    let l = list(&v);
    assert_eq!(l.len(), 3);
    for (i, d) in l.iter().enumerate() {
        assert_eq!(d["dir"], i, "{d}");
        assert_eq!(d["available"], true, "{d}");
        assert!(d["free_bytes"].as_u64().is_some_and(|f| f > 0), "{d}");
        assert!(d["total_bytes"].as_u64().is_some_and(|f| f > 0), "{d}");
        assert_eq!(d["packs"], 0, "{d}");
    }
    let src = v.scratch("src");
    // About 100 MB, mostly incompressible: a few packs per worker's worth.
    tree::bulk_files(&src, 60, 1_000_000..2_400_000, 0.9, 7);
    let snap = backup(&v, &src);
    let l = list(&v);
    let used = l.iter().filter(|d| d["packs"].as_u64() > Some(0)).count();
    assert!(used >= 2, "packs did not spread: {l:?}");
    let total: u64 = l.iter().filter_map(|d| d["pack_bytes"].as_u64()).sum();
    assert!(total > 50_000_000, "{l:?}");
    let (out, target) = restore_to(&v, &snap, "restored");
    common::check_exit(&out, 0, "restore");
    assert_same_tree(&src, &target.join("src"));
    v.expect(0, ["verify"]);
    // Adding a directory needs the vault idle (it is) and only appends.
    let extra = v.scratch("array3");
    let added = v.json(0, ["data-dir".as_ref(), "add".as_ref(), extra.as_os_str()]);
    assert_eq!(added["dir"], 3, "{added}");
    assert_eq!(list(&v).len(), 4);
    let out = v.run(["data-dir".as_ref(), "add".as_ref(), extra.as_os_str()]);
    common::check_exit(&out, 1, "adding the same directory twice");
    v.expect(0, ["verify"]);
}

#[test]
fn a_missing_array_is_named_by_verify_and_healed_from_a_replica() {
    let (v, dirs) = multi(2);
    let src_a = v.scratch("src-a");
    tree::bulk_files(&src_a, 20, 10_000..400_000, 0.8, 11);
    let src_b = v.scratch("src-b");
    tree::bulk_files(&src_b, 20, 10_000..400_000, 0.8, 12);
    // A lands on array1 only, B on array0 only.
    hide_marker(&dirs[0]);
    let a = backup(&v, &src_a);
    show_marker(&dirs[0]);
    hide_marker(&dirs[1]);
    let b = backup(&v, &src_b);
    show_marker(&dirs[1]);
    let rep = v.scratch("replica");
    v.expect(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);

    // array1 is lost: its mount point is an empty directory.
    fs::remove_dir_all(&dirs[1]).expect("losing array1");
    fs::create_dir(&dirs[1]).expect("the empty mount point");
    let l = list(&v);
    assert_eq!(l[1]["available"], false, "{l:?}");
    assert!(
        l[1]["problem"].as_str().is_some_and(|p| p.contains(MARKER)),
        "{l:?}"
    );
    assert!(l[1]["packs"].as_u64() > Some(0), "{l:?}");

    let r = v.json(4, ["verify"]);
    assert_eq!(r["ok"], false);
    assert_eq!(
        r["unavailable_dirs"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    assert_eq!(r["unavailable_dirs"][0]["dir"], 1, "{r}");
    assert_eq!(r["affected_snapshots"], serde_json::json!([a]), "{r}");
    let damage = r["damage"].as_array().expect("damage array");
    assert!(damage
        .iter()
        .filter(|d| d["pack"].is_string())
        .all(|d| d["dir"] == 1));
    assert!(damage.iter().any(|d| d["pack"].is_string()
        && d["blob"].is_null()
        && d["error"]
            .as_str()
            .is_some_and(|e| e.contains("data directory 1"))));

    // B restores intact; A cannot (exit 4 names the files).
    let (out, target) = restore_to(&v, &b, "restored-b");
    common::check_exit(&out, 0, "restore of B");
    assert_same_tree(&src_b, &target.join("src-b"));
    let (out, _) = restore_to(&v, &a, "restored-a-broken");
    assert_ne!(out.status.code(), Some(0), "A restored without its array");
    // Backups keep going, and never into the unmarked mount point.
    let src_c = v.scratch("src-c");
    tree::bulk_files(&src_c, 10, 10_000..100_000, 0.8, 13);
    let c = backup(&v, &src_c);
    assert_eq!(entries(&dirs[1]), 0, "wrote into the empty mount point");
    // Marking refuses a directory with anything in it.
    fs::write(dirs[1].join("stray"), b"x").expect("write");
    let out = v.run(["data-dir", "mark", "1"]);
    common::check_exit(&out, 1, "marking a non-empty directory");
    fs::remove_file(dirs[1].join("stray")).expect("rm");

    // Heal from the replica (the copies go to array0), then mark the new, empty array.
    let healed = v.json(
        4,
        ["verify".as_ref(), "--heal-from".as_ref(), rep.as_os_str()],
    );
    assert!(
        healed["healed"].as_array().is_some_and(|h| !h.is_empty()),
        "{healed}"
    );
    assert_eq!(healed["unavailable"], serde_json::json!([]), "{healed}");
    assert_eq!(
        healed["affected_snapshots"],
        serde_json::json!([]),
        "{healed}"
    );
    assert_eq!(healed["unavailable_dirs"][0]["dir"], 1, "{healed}");
    let marked = v.json(0, ["data-dir", "mark", "1"]);
    assert_eq!(marked["dir"], 1, "{marked}");
    v.expect(0, ["verify"]);
    for (snap, src, name) in [
        (&a, &src_a, "src-a"),
        (&b, &src_b, "src-b"),
        (&c, &src_c, "src-c"),
    ] {
        let (out, target) = restore_to(&v, snap, &format!("final-{name}"));
        common::check_exit(&out, 0, "restore after the heal");
        assert_same_tree(src, &target.join(name));
    }
}
