//! The command-line contract of docs/cli.md: JSON shapes and types, global flags, snapshot
//! references, `ls`, `diff`, `stats`, help and usage errors.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use common::cli::{bare_command, snap_id};
use common::{check_exit, fsx, gen, pack, Vault};

/// `<dir>/<name>/{a.txt, b.bin, sub/c.txt, sub/deeper/d.txt}`; returns the root.
fn tree_at(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let root = dir.join(name);
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::write(
        root.join("a.txt"),
        gen::content(gen::Kind::Text, seed, 30_000),
    )
    .expect("write");
    fs::write(
        root.join("b.bin"),
        gen::content(gen::Kind::Random, seed + 1, 200_000),
    )
    .expect("write");
    fs::write(
        root.join("sub/c.txt"),
        gen::content(gen::Kind::Text, seed + 2, 5_000),
    )
    .expect("write");
    fs::write(
        root.join("sub/deeper/d.txt"),
        gen::content(gen::Kind::Text, seed + 3, 700),
    )
    .expect("write");
    root
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn rfc3339(v: &Value, what: &str) -> OffsetDateTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    OffsetDateTime::parse(s, &Rfc3339)
        .unwrap_or_else(|e| panic!("{what} {s:?} is not RFC 3339: {e}"))
}

fn u64_field(obj: &Value, field: &str) -> u64 {
    obj[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned integer in {obj}"))
}

fn f64_field(obj: &Value, field: &str) -> f64 {
    obj[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {obj}"))
}

fn array(v: Value, what: &str) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("{what} is not an array: {other}"),
    }
}

#[test]
fn init_json_and_new_key_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, key) = (tmp.path().join("vault"), tmp.path().join("key"));
    let out = bare_command(common::vaultctl())
        .arg("--vault")
        .arg(&dir)
        .arg("--key-file")
        .arg(&key)
        .args(["init", "--json"])
        .output()
        .expect("running vaultctl");
    check_exit(&out, 0, "init --key-file (absent) --json");
    let v = common::json_of(&out, "init --json");
    assert!(v["vault"].is_string(), "init --json: vault: {v}");
    assert!(
        v["id"].as_str().is_some_and(|s| is_hex(s, 64)),
        "init --json: id is not 64 hex digits: {v}"
    );
    assert!(
        v["kdf"].is_object(),
        "init --json: kdf is not an object: {v}"
    );
    let md = fs::metadata(&key).expect("init writes the absent key file");
    assert_eq!(
        md.permissions().mode() & 0o777,
        0o600,
        "the new key file's mode"
    );
    assert!(
        md.len() >= 32,
        "the new key file holds {} bytes, fewer than 32",
        md.len()
    );
    let config: Value =
        serde_json::from_slice(&fs::read(dir.join("config")).expect("reading config"))
            .expect("config is JSON");
    assert_eq!(config["format"], "tiervault-vault", "config: {config}");
    assert_eq!(
        config["id"], v["id"],
        "init --json id is the vault id of config"
    );
}

#[test]
fn snapshots_json_has_the_documented_fields() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 1);
    let other = tree_at(&vault.scratch("y"), "other", 10);
    let from_backup = [vault.backup(&[&src]), vault.backup(&[&other])];
    let snaps = vault.snapshots();
    assert_eq!(snaps.len(), 2, "two backups, two snapshots: {snaps:?}");
    for (s, b) in snaps.iter().zip(&from_backup) {
        let id = s["id"].as_str().unwrap_or_default();
        assert!(is_hex(id, 64), "id is not 64 lower-case hex digits: {s}");
        let short = s["short_id"].as_str().unwrap_or_default();
        assert!(
            short.len() == 8 && id.starts_with(short),
            "short_id is not the first 8 digits of id: {s}"
        );
        rfc3339(&s["time"], "time");
        assert!(
            s["paths"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p[0].is_string()),
            "paths: {s}"
        );
        assert!(s["hostname"].is_string(), "hostname: {s}");
        assert_eq!(s["kind"], "tree", "kind: {s}");
        assert_eq!(s["status"], "complete", "status: {s}");
        assert!(
            s["parent"].is_null() || s["parent"].is_string(),
            "parent: {s}"
        );
        for f in [
            "files",
            "dirs",
            "bytes",
            "stored_bytes",
            "new_blobs",
            "skipped",
        ] {
            u64_field(&s["summary"], f);
        }
        // backup --json prints the same object plus skipped_files.
        assert!(
            b["skipped_files"].as_array().is_some_and(|a| a.is_empty()),
            "backup --json skipped_files: {b}"
        );
        for (k, v) in s.as_object().expect("an object") {
            assert_eq!(&b[k], v, "backup --json and snapshots --json differ in {k}");
        }
    }
    // Oldest first.
    assert_eq!(
        snap_id(&snaps[0]),
        snap_id(&from_backup[0]),
        "snapshots are not listed oldest first"
    );
    assert!(
        rfc3339(&snaps[0]["time"], "time") <= rfc3339(&snaps[1]["time"], "time"),
        "times are not ascending"
    );
    assert_eq!(
        snaps[0]["paths"][0].as_str(),
        src.to_str(),
        "paths holds the path as given"
    );
    let s = &snaps[0]["summary"];
    assert_eq!(u64_field(s, "files"), 4, "summary.files: {s}");
    assert_eq!(
        u64_field(s, "bytes"),
        30_000 + 200_000 + 5_000 + 700,
        "summary.bytes: {s}"
    );
    assert!(u64_field(s, "dirs") >= 2, "summary.dirs: {s}");
}

#[test]
fn global_flags_work_before_and_after_the_subcommand() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 1);
    vault.backup(&[&src]);
    let key = vault.key_file().expect("a key-file vault");
    let before = bare_command(&vault.bin)
        .arg("--json")
        .arg("--vault")
        .arg(&vault.dir)
        .arg("--key-file")
        .arg(key)
        .arg("--quiet")
        .arg("snapshots")
        .output()
        .expect("running vaultctl");
    let after = bare_command(&vault.bin)
        .arg("snapshots")
        .arg("--vault")
        .arg(&vault.dir)
        .arg("--key-file")
        .arg(key)
        .arg("--json")
        .arg("-q")
        .output()
        .expect("running vaultctl");
    let from_env = bare_command(&vault.bin)
        .env("VAULT_DIR", &vault.dir)
        .arg("snapshots")
        .arg("--key-file")
        .arg(key)
        .arg("--json")
        .output()
        .expect("running vaultctl");
    for (out, what) in [
        (&before, "global flags first"),
        (&after, "global flags last"),
        (&from_env, "$VAULT_DIR"),
    ] {
        check_exit(out, 0, what);
    }
    let jb = common::json_of(&before, "flags first");
    assert_eq!(
        jb,
        common::json_of(&after, "flags last"),
        "global flags mean the same before and after the subcommand"
    );
    assert_eq!(
        jb,
        common::json_of(&from_env, "$VAULT_DIR"),
        "$VAULT_DIR is the default vault"
    );
}

#[test]
fn snapshot_references_resolve() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 1);
    let first = snap_id(&vault.backup(&[&src]));
    fs::write(src.join("new.txt"), "added later").expect("write");
    let second = vault.backup(&[&src]);
    let id = snap_id(&second);
    // The shortest prefix of the newest id that no other id shares.
    let unique = (1..=64)
        .map(|n| &id[..n])
        .find(|p| !first.starts_with(p))
        .expect("ids differ");
    let reference = vault.json(0, ["ls", id.as_str()]);
    for r in [
        "latest",
        second["short_id"].as_str().expect("short_id"),
        unique,
    ] {
        assert_eq!(
            vault.json(0, ["ls", r]),
            reference,
            "`ls {r}` does not list snapshot {id}"
        );
    }
    assert_ne!(
        vault.json(0, ["ls", first.as_str()]),
        reference,
        "the two snapshots differ (new.txt)"
    );
}

#[test]
fn latest_is_narrowed_by_path() {
    let vault = Vault::new();
    let src = tree_at(&vault.scratch("x"), "src", 1);
    let other = tree_at(&vault.scratch("y"), "other", 2);
    let of_src = snap_id(&vault.backup(&[&src]));
    vault.backup(&[&other]);
    let listed = array(
        vault.json(
            0,
            ["snapshots".as_ref(), "--path".as_ref(), src.as_os_str()],
        ),
        "snapshots --path",
    );
    let ids: Vec<String> = listed.iter().map(snap_id).collect();
    assert_eq!(
        ids,
        vec![of_src],
        "snapshots --path {} lists only the snapshot of that path",
        src.display()
    );
    // Without --path, latest is the snapshot of `other`; with it, the newest one holding src.
    let target = vault.scratch("restored");
    fs::create_dir(&target).expect("mkdir");
    vault.expect(
        0,
        [
            "restore".as_ref(),
            "latest".as_ref(),
            "--path".as_ref(),
            "src".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    );
    common::assert_same_tree(&src, &target.join("src"));
    // A path no snapshot holds: the error says so and what the newest snapshot holds, rather
    // than that no snapshot matches "latest".
    for path in ["nope", "/nope/src"] {
        let out = vault.expect(1, ["ls", "latest", path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("no snapshot holds {path:?}"))
                && err.contains(&format!("holds other (from {})", other.display())),
            "ls latest {path}: {err}"
        );
    }
}

#[test]
fn a_path_is_stored_and_restored_under_its_base_name() {
    let vault = Vault::new();
    let src = tree_at(&vault.scratch("x"), "src", 3);
    let snap = vault.backup(&[&src]);
    for e in array(vault.json(0, ["ls", snap_id(&snap).as_str()]), "ls --json") {
        let p = e["path"].as_str().unwrap_or_default();
        assert!(
            p == "src" || p.starts_with("src/"),
            "ls path {p:?} is not under the base name src"
        );
    }
    let target = vault.scratch("restored");
    fs::create_dir(&target).expect("mkdir");
    vault.restore("latest", &target);
    common::assert_same_tree(&src, &target.join("src"));

    // A single file and a directory in one backup: both at the snapshot root.
    let file = vault.scratch("y").join("notes.txt");
    fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    fs::write(&file, "a lone file").expect("write");
    let both = snap_id(&vault.backup(&[&src, &file]));
    let target = vault.scratch("restored-both");
    fs::create_dir(&target).expect("mkdir");
    vault.restore(&both, &target);
    common::assert_same_tree(&src, &target.join("src"));
    common::assert_same_file_data(&file, &target.join("notes.txt"));
}

#[test]
fn restore_in_place_puts_files_back() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 4);
    vault.backup(&[&src]);
    let reference = vault.scratch("reference");
    fsx::copy_tree(&src, &reference).expect("keeping a copy");
    fs::write(src.join("a.txt"), "clobbered").expect("write");
    fs::remove_file(src.join("sub/c.txt")).expect("rm");
    fs::set_permissions(src.join("b.bin"), fs::Permissions::from_mode(0o600)).expect("chmod");
    vault.expect(0, ["restore", "latest", "--in-place"]);
    common::assert_same_tree(&reference, &src);
}

#[test]
fn quickstart_runs_end_to_end() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 6);
    // Run from a scratch directory: quickstart may leave files in its working directory.
    let cwd = vault.scratch("cwd");
    fs::create_dir(&cwd).expect("mkdir");
    let out = vault
        .command(["quickstart".as_ref(), "--source".as_ref(), src.as_os_str()])
        .current_dir(&cwd)
        .output()
        .expect("running vaultctl");
    check_exit(&out, 0, "quickstart --source");
    let snaps = vault.snapshots();
    assert_eq!(snaps.len(), 1, "quickstart makes one snapshot: {snaps:?}");
    vault.expect(0, ["verify"]);
}

#[test]
fn ls_and_cat_follow_the_contract() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 5);
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    fsx::set_mtime(&src.join("a.txt"), 1_700_000_000, 5).expect("touch");
    std::os::unix::fs::symlink("sub/c.txt", src.join("link")).expect("symlink");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(src.join(odd), "latin-1 name").expect("write");
    let id = snap_id(&vault.backup(&[&src]));

    let entries = array(vault.json(0, ["ls", id.as_str()]), "ls --json");
    let find = |p: &str| {
        entries
            .iter()
            .find(|e| e["path"] == p)
            .unwrap_or_else(|| panic!("ls --json lacks {p:?}: {entries:?}"))
            .clone()
    };
    let a = find("src/a.txt");
    assert_eq!(a["type"], "file");
    assert_eq!(u64_field(&a, "size"), 30_000);
    let mode = a["mode"]
        .as_str()
        .and_then(|m| u32::from_str_radix(m, 8).ok());
    assert_eq!(
        mode,
        Some(0o640),
        "mode is not the octal string of the permission bits: {a}"
    );
    // The contract does not promise nanoseconds in `ls`; seconds must be exact.
    assert_eq!(
        rfc3339(&a["mtime"], "mtime").unix_timestamp(),
        1_700_000_000,
        "mtime: {a}"
    );
    let md = fs::metadata(src.join("a.txt")).expect("stat");
    assert_eq!(
        (u64_field(&a, "uid"), u64_field(&a, "gid")),
        (u64::from(md.uid()), u64::from(md.gid())),
        "uid/gid: {a}"
    );
    assert_eq!(find("src/sub")["type"], "dir");
    let link = find("src/link");
    assert_eq!(
        (link["type"].as_str(), link["target"].as_str()),
        (Some("symlink"), Some("sub/c.txt")),
        "symlink: {link}"
    );
    find("src/caf\\xe9.txt");

    let sub: BTreeSet<String> = array(
        vault.json(0, ["ls", id.as_str(), "src/sub"]),
        "ls PATH --json",
    )
    .iter()
    .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
    .collect();
    let expected: BTreeSet<String> = ["src/sub/c.txt", "src/sub/deeper", "src/sub/deeper/d.txt"]
        .map(String::from)
        .into();
    assert!(
        sub.is_superset(&expected) && sub.iter().all(|p| p.starts_with("src/sub")),
        "ls SNAP src/sub listed {sub:?}"
    );
    let human = vault.expect(0, ["ls", id.as_str()]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("src/sub/deeper/d.txt"),
        "human ls lacks a path"
    );

    let cat = vault.expect(0, ["cat", id.as_str(), "src/sub/c.txt"]);
    assert!(
        cat.stdout == fs::read(src.join("sub/c.txt")).expect("read"),
        "cat differs from the file"
    );
}

#[test]
fn diff_lists_added_removed_and_modified() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir(&src).expect("mkdir");
    for f in ["same.txt", "old.txt", "changed.txt", "meta.txt"] {
        fs::write(src.join(f), format!("content of {f}")).expect("write");
    }
    let a = snap_id(&vault.backup(&[&src]));
    fs::write(src.join("new.txt"), "new").expect("write");
    fs::remove_file(src.join("old.txt")).expect("rm");
    fs::write(src.join("changed.txt"), "content of CHANGED").expect("write");
    fs::set_permissions(src.join("meta.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let b = snap_id(&vault.backup(&[&src]));

    let human = vault.expect(0, ["diff", a.as_str(), b.as_str()]);
    let lines: BTreeSet<String> = String::from_utf8_lossy(&human.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let expected = [
        ("+", "added", "src/new.txt"),
        ("-", "removed", "src/old.txt"),
        ("M", "modified", "src/changed.txt"),
        ("M", "modified", "src/meta.txt"),
    ];
    for (sign, _, p) in expected {
        assert!(
            lines.contains(&format!("{sign} {p}")),
            "diff lacks `{sign} {p}`: {lines:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("same.txt")),
        "diff lists an unchanged file: {lines:?}"
    );

    let json = array(
        vault.json(0, ["diff", a.as_str(), b.as_str()]),
        "diff --json",
    );
    for (_, change, p) in expected {
        assert!(
            json.iter().any(|e| e["path"] == p && e["change"] == change),
            "diff --json lacks {p} {change}: {json:?}"
        );
    }
    assert!(
        !json.iter().any(|e| e["path"] == "src/same.txt"),
        "diff --json lists an unchanged file"
    );
}

#[test]
fn stats_json_fields_and_ratios() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir(&src).expect("mkdir");
    let mut logical = 0u64;
    for i in 0..20u64 {
        let data = gen::content(gen::Kind::Text, i, 150_000 + i as usize * 1000);
        logical += data.len() as u64;
        fs::write(src.join(format!("t{i}.txt")), data).expect("write");
    }
    vault.backup(&[&src]);
    vault.json(
        0,
        [
            "backup".as_ref(),
            "--force-reread".as_ref(),
            src.as_os_str(),
        ],
    );
    let s = vault.json(0, ["stats"]);
    eprintln!("stats: {s}");
    assert_eq!(u64_field(&s, "snapshots"), 2, "stats.snapshots");
    assert_eq!(
        u64_field(&s, "logical_bytes"),
        2 * logical,
        "stats.logical_bytes: two snapshots of {logical} bytes"
    );
    let stored = u64_field(&s, "stored_bytes");
    assert!(
        stored > 0 && stored <= fsx::file_bytes(&vault.dir),
        "stats.stored_bytes {stored} vs the vault's size"
    );
    let dedup = f64_field(&s, "dedup_ratio");
    assert!(
        (1.8..=2.2).contains(&dedup),
        "dedup_ratio {dedup} for two identical snapshots"
    );
    let compression = f64_field(&s, "compression_ratio");
    assert!(
        compression > 2.0,
        "compression_ratio {compression} for plain text"
    );
    assert!(
        u64_field(&s, "chunks") >= 20,
        "stats.chunks: at least one per file"
    );
    assert_eq!(
        u64_field(&s, "packs"),
        pack::all(&vault.dir).len() as u64,
        "stats.packs vs packs on disk"
    );
}

#[test]
fn help_exits_0_and_usage_errors_exit_2() {
    let bin = common::vaultctl();
    for args in [
        vec!["--help"],
        vec!["backup", "--help"],
        vec!["restore", "--help"],
    ] {
        let out = bare_command(bin)
            .args(&args)
            .output()
            .expect("running vaultctl");
        check_exit(&out, 0, &format!("vaultctl {}", args.join(" ")));
        assert!(
            !out.stdout.is_empty(),
            "vaultctl {} printed nothing",
            args.join(" ")
        );
    }
    for args in [
        vec!["--no-such-flag"],
        vec!["snapshots", "--bogus"],
        vec!["frobnicate"],
        vec!["restore", "latest"],
    ] {
        let out = bare_command(bin)
            .args(&args)
            .output()
            .expect("running vaultctl");
        check_exit(&out, 2, &format!("vaultctl {}", args.join(" ")));
    }
}

/// A reader that goes away (`vaultctl ls … | head`) ends the command as SIGPIPE ends `cat`:
/// status 141, nothing on stderr (no panic, no error line), and the vault still verifies.
#[test]
fn a_closed_standard_output_ends_the_command_quietly_with_141() {
    let vault = Vault::new();
    let src = tree_at(vault.tmp.path(), "src", 9);
    let id = snap_id(&vault.backup(&[&src]));
    let commands: [&[&str]; 5] = [
        &["ls", &id],
        &["ls", &id, "--json"],
        &["snapshots", "--json"],
        &["cat", &id, "src/b.bin"],
        &["diff", &id, &id, "--json"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = vault
            .command(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("running vaultctl");
        assert_eq!(
            out.status.code(),
            Some(141),
            "vaultctl {args:?} into a closed pipe: {}",
            common::cli::describe(&out)
        );
        assert!(
            out.stderr.is_empty(),
            "vaultctl {args:?} into a closed pipe printed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vault.expect(0, ["verify"]);
}
