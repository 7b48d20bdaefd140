//! Bad input: each case exits non-zero with one `error: ` line on stderr naming the problem,
//! and leaves the vault as it was (same paths, sizes and mtimes). Also: damaged metadata is
//! reported by `verify` rather than crashing it, and unreadable files become warnings.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::{bare_command, snap_id};
use common::{check_exit, describe, error_line, fsx, gen, Vault};

/// A small tree to back up: `<dir>/src/{a.txt, sub/b.bin}`.
fn small_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("a.txt"), gen::content(gen::Kind::Text, 1, 20_000)).expect("write");
    fs::write(
        src.join("sub/b.bin"),
        gen::content(gen::Kind::Random, 2, 70_000),
    )
    .expect("write");
    src
}

/// A vault holding one snapshot of [`small_tree`]; returns the vault, the tree and the id.
fn vault_with_snapshot() -> (Vault, PathBuf, String) {
    let vault = Vault::new();
    let src = small_tree(vault.tmp.path());
    let id = snap_id(&vault.backup(&[&src]));
    (vault, src, id)
}

/// Asserts the contract for a refused command: `code` (or any failure when None), one
/// `error: ` line containing every word of `words` (case-insensitive); returns the line.
fn refused(out: &Output, code: Option<i32>, what: &str, words: &[&str]) -> String {
    match code {
        Some(c) => check_exit(out, c, what),
        None => assert!(
            !out.status.success() && out.status.code().is_some(),
            "{what}: expected a failure exit; {}",
            describe(out)
        ),
    }
    let line = error_line(out, what);
    eprintln!("{what}: {line}");
    for w in words {
        assert!(
            line.to_lowercase().contains(&w.to_lowercase()),
            "{what}: the error line does not name {w:?}: {line}"
        );
    }
    line
}

/// Runs `f` and asserts that no file under `dir` was added, removed or rewritten. Directory
/// changes (e.g. an empty pack directory left behind) are reported on stderr but tolerated.
fn unchanged<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let before = fsx::listing(dir);
    let r = f();
    let after = fsx::listing(dir);
    let mut changes = Vec::new();
    for (p, b) in &before {
        match after.get(p) {
            None => changes.push(format!("removed {}", p.display())),
            Some(a) if a != b => changes.push(format!("changed {}: {b:?} -> {a:?}", p.display())),
            Some(_) => {}
        }
    }
    changes.extend(
        after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .map(|p| format!("added {}", p.display())),
    );
    let is_dir = |p: &Path| before.get(p).or(after.get(p)).is_some_and(|l| l.is_dir);
    let (dirs, files): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| {
        let path = c
            .split_once(' ')
            .map(|(_, p)| p.split(':').next().unwrap_or(p))
            .unwrap_or_default();
        is_dir(Path::new(path))
    });
    if !dirs.is_empty() {
        eprintln!(
            "note: directories under {} changed: {}",
            dir.display(),
            dirs.join("; ")
        );
    }
    assert!(
        files.is_empty(),
        "{} changed:\n  {}",
        dir.display(),
        files.join("\n  ")
    );
    r
}

#[test]
fn wrong_passphrase_is_refused_and_the_right_one_works() {
    let vault = Vault::with_passphrase("correct horse battery staple");
    let src = small_tree(vault.tmp.path());
    vault.backup(&[&src]);
    // --passphrase-file reads the first line.
    let pass_file = vault.scratch("pass.txt");
    fs::write(
        &pass_file,
        "correct horse battery staple\nsecond line is ignored\n",
    )
    .expect("write");
    let out = bare_command(&vault.bin)
        .arg("--vault")
        .arg(&vault.dir)
        .arg("--passphrase-file")
        .arg(&pass_file)
        .args(["snapshots", "--json"])
        .output()
        .expect("running vaultctl");
    check_exit(&out, 0, "snapshots with --passphrase-file");

    unchanged(&vault.dir, || {
        for args in [
            vec!["snapshots"],
            vec!["backup", src.to_str().expect("utf-8 temp path")],
        ] {
            let out = vault
                .command(&args)
                .env("VAULT_PASSPHRASE", "wrong")
                .output()
                .expect("running vaultctl");
            refused(
                &out,
                Some(1),
                &format!("{} with a wrong passphrase", args[0]),
                &["passphrase"],
            );
        }
    });
}

#[test]
fn a_directory_that_is_not_a_vault_is_refused() {
    let vault = Vault::new();
    let not_vault = vault.scratch("not-a-vault");
    fs::create_dir(&not_vault).expect("mkdir");
    fs::write(not_vault.join("notes.txt"), "just a file").expect("write");
    let other = vault.at(not_vault.clone());
    let shown = not_vault.to_string_lossy().into_owned();
    unchanged(&not_vault, || {
        for args in [vec!["snapshots"], vec!["verify"]] {
            refused(
                &other.run(&args),
                Some(1),
                &format!("{} on a non-vault", args[0]),
                &[&shown],
            );
        }
    });
}

#[test]
fn unknown_snapshot_is_named() {
    let (vault, _, id) = vault_with_snapshot();
    let target = vault.scratch("target");
    fs::create_dir(&target).expect("mkdir");
    unchanged(&vault.dir, || {
        let t = target.to_str().expect("utf-8 temp path");
        for args in [
            vec!["restore", "deadbeef", "--target", t],
            vec!["ls", "deadbeef"],
            vec!["cat", "deadbeef", "src/a.txt"],
            vec!["diff", "deadbeef", &id],
        ] {
            refused(
                &vault.run(&args),
                Some(1),
                &format!("{} deadbeef", args[0]),
                &["deadbeef"],
            );
        }
    });
    assert_eq!(
        fs::read_dir(&target).expect("list target").count(),
        0,
        "a failed restore wrote into the target"
    );
}

#[test]
fn unknown_path_in_a_snapshot_is_named() {
    let (vault, _, id) = vault_with_snapshot();
    let target = vault.scratch("target");
    fs::create_dir(&target).expect("mkdir");
    let t = target.to_str().expect("utf-8 temp path");
    unchanged(&vault.dir, || {
        for args in [
            vec!["cat", &id, "src/no-such-file"],
            vec!["ls", &id, "src/no-such-file"],
            vec!["restore", &id, "--path", "src/no-such-file", "--target", t],
        ] {
            let what = format!("{} of a path not in the snapshot", args[0]);
            refused(&vault.run(&args), Some(1), &what, &["no-such-file"]);
        }
    });
    let out = vault.run(["cat", &id, "src/sub"]);
    refused(&out, Some(1), "cat of a directory", &["src/sub"]);
}

/// True when `line` holds `word` as a token of its own (not inside a longer hex string).
fn names_token(line: &str, word: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| t == word)
}

#[test]
fn ambiguous_and_unknown_prefixes_are_refused() {
    let (vault, src, first) = vault_with_snapshot();
    let mut ids = vec![first];
    // Back up until two ids share their first hex digit (at most 17 snapshots).
    let shared = loop {
        let id = snap_id(&vault.json(
            0,
            [
                "backup".as_ref(),
                "--force-reread".as_ref(),
                src.as_os_str(),
            ],
        ));
        let c = id[..1].to_owned();
        if ids.iter().any(|i| i.starts_with(&c)) {
            break c;
        }
        ids.push(id);
        assert!(
            ids.len() <= 16,
            "17 ids cannot all differ in their first hex digit"
        );
    };
    let unknown = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| !ids.iter().any(|i| i.starts_with(p)))
        .expect("a free prefix");
    unchanged(&vault.dir, || {
        for prefix in [&shared, &unknown] {
            let out = vault.run(["ls", prefix.as_str()]);
            let line = refused(&out, Some(1), &format!("ls {prefix}"), &[]);
            assert!(
                names_token(&line, prefix),
                "ls {prefix}: the error line does not name the prefix: {line}"
            );
        }
    });
}

#[test]
fn non_empty_restore_target_needs_overwrite() {
    let (vault, src, id) = vault_with_snapshot();
    let target = vault.scratch("target");
    fs::create_dir_all(target.join("src")).expect("mkdir");
    fs::write(target.join("keep.txt"), "not from the vault").expect("write");
    fs::write(target.join("src/a.txt"), "an older a.txt").expect("write");
    let args = [
        "restore".as_ref(),
        id.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ];
    unchanged(&target, || {
        unchanged(&vault.dir, || {
            refused(
                &vault.run(args),
                None,
                "restore into a non-empty target",
                &[&target.to_string_lossy()],
            );
        })
    });
    let mut with_overwrite = args.to_vec();
    with_overwrite.push("--overwrite".as_ref());
    vault.expect(0, with_overwrite);
    common::assert_same_tree(&src, &target.join("src"));
    assert!(
        target.join("keep.txt").exists(),
        "--overwrite removed a file that is not in the snapshot"
    );
}

#[test]
fn truncated_stdin_commits_nothing() {
    let (vault, _, _) = vault_with_snapshot();
    let before = vault.snapshots().len();
    unchanged(&vault.dir, || {
        let out = vault.run_with_stdin(
            ["backup", "--stdin", "--name", "x", "--stdin-size", "1000"],
            b"0123456789",
        );
        refused(
            &out,
            Some(1),
            "backup --stdin --stdin-size 1000 fed 10 bytes",
            &["1000"],
        );
    });
    assert_eq!(
        vault.snapshots().len(),
        before,
        "a truncated stream was committed"
    );
}

#[test]
fn init_without_a_key_or_passphrase_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vault");
    fs::create_dir(&dir).expect("mkdir");
    let out = unchanged(tmp.path(), || {
        bare_command(common::vaultctl())
            .arg("--vault")
            .arg(&dir)
            .arg("init")
            .output()
            .expect("running vaultctl")
    });
    refused(
        &out,
        Some(1),
        "init without passphrase or key file",
        &["passphrase"],
    );
}

#[test]
fn init_on_a_non_empty_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("full");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("precious.txt"), "do not touch").expect("write");
    let out = unchanged(&dir, || {
        bare_command(common::vaultctl())
            .arg("--vault")
            .arg(&dir)
            .arg("--key-file")
            .arg(tmp.path().join("key"))
            .arg("init")
            .output()
            .expect("running vaultctl")
    });
    refused(
        &out,
        Some(1),
        "init on a non-empty directory",
        &[&dir.to_string_lossy()],
    );
}

#[test]
fn two_paths_with_one_base_name_are_a_usage_error() {
    let vault = Vault::new();
    let (a, b) = (
        small_tree(&vault.scratch("a")),
        small_tree(&vault.scratch("b")),
    );
    unchanged(&vault.dir, || {
        let out = vault.run(["backup".as_ref(), a.as_os_str(), b.as_os_str()]);
        refused(&out, Some(2), "backup of two paths named src", &["src"]);
    });
    assert!(
        vault.snapshots().is_empty(),
        "a refused backup committed a snapshot"
    );
}

/// Flips a byte in the middle of the only file under `<vault>/<sub>/`; returns its name.
fn corrupt_only_file(vault: &Path, sub: &str) -> String {
    let files: Vec<PathBuf> = fsx::files_under(&vault.join(sub));
    assert!(!files.is_empty(), "no file under {}/{sub}", vault.display());
    let f = &files[0];
    let len = fs::metadata(f).expect("stat").len();
    fsx::flip_byte(f, len / 2);
    f.file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

/// `verify --json` must exit 4 (not crash) and its report or error output must name `name`.
fn verify_names(vault: &Vault, name: &str, what: &str) {
    let out = vault.run(["verify", "--json"]);
    check_exit(&out, 4, &format!("verify with a corrupt {what}"));
    let report = common::json_of(&out, "verify --json");
    let text = format!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(name),
        "verify does not name the corrupt {what} {name}: {}",
        describe(&out)
    );
}

#[test]
fn corrupt_index_part_is_reported_by_verify() {
    let (vault, _, _) = vault_with_snapshot();
    let name = corrupt_only_file(&vault.dir, "index");
    verify_names(&vault, &name, "index part");
}

#[test]
fn corrupt_snapshot_file_is_reported_by_verify() {
    let (vault, _, id) = vault_with_snapshot();
    let name = corrupt_only_file(&vault.dir, "snapshots");
    assert_eq!(name, id, "the snapshot file is named by the snapshot id");
    verify_names(&vault, &name, "snapshot file");
}

#[test]
fn unreadable_files_are_skipped_with_warnings() {
    const NOBODY: u32 = 65534;
    let root = fsx::is_root();
    // As root DAC does not stop reads: run vaultctl as nobody for this test.
    if root && !common::cli::can_run_as(NOBODY, NOBODY) {
        return common::skip(
            "running as root but cannot switch to uid 65534 to make files unreadable",
        );
    }
    let vault = if root {
        Vault::as_user(NOBODY, NOBODY)
    } else {
        Vault::new()
    };
    let src = small_tree(vault.tmp.path());
    for d in [&src, &src.join("sub")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fs::write(src.join("secret.txt"), "unreadable").expect("write");
    fs::create_dir(src.join("locked")).expect("mkdir");
    fs::write(src.join("locked/inner.txt"), "behind a locked door").expect("write");
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).expect("chmod");

    let out = vault.run(["backup".as_ref(), src.as_os_str(), "--json".as_ref()]);
    // Unlock before asserting so that the temporary directory can always be removed.
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o755)).expect("chmod");
    check_exit(&out, 3, "backup of a tree with unreadable entries");
    let snap = common::json_of(&out, "backup --json");
    let skipped = snap["skipped_files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for name in ["secret.txt", "locked"] {
        assert!(
            skipped
                .iter()
                .any(|s| s["path"].as_str().is_some_and(|p| p.contains(name))
                    && s["error"].is_string()),
            "skipped_files does not list {name}: {snap}"
        );
    }
    let listed = vault.snapshots();
    let last = listed
        .last()
        .expect("the backup with warnings was committed");
    assert_eq!(last["status"], "warnings", "snapshot status: {last}");
    assert!(
        last["summary"]["skipped"].as_u64().is_some_and(|n| n >= 2),
        "summary.skipped: {last}"
    );

    let target = vault.scratch("restored");
    fs::create_dir(&target).expect("mkdir");
    if root {
        std::os::unix::fs::chown(&target, Some(NOBODY), Some(NOBODY)).expect("chown target");
    }
    vault.restore(&snap_id(last), &target);
    for f in ["a.txt", "sub/b.bin"] {
        common::assert_same_file_data(&src.join(f), &target.join("src").join(f));
    }
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o644)).expect("chmod");
    // The unreadable directory may come back (empty, mode 000): open it so that an
    // unprivileged run can remove the temporary directory.
    let restored_locked = target.join("src/locked");
    if restored_locked.is_dir() {
        fs::set_permissions(&restored_locked, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn bad_init_settings_and_short_key_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("key");
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--chunk-min", "10"], &["chunk min 10"]),
        (
            &["--chunk-min", "262144", "--chunk-avg", "131072"],
            &["min <= avg <= max"],
        ),
        (&["--compression", "30"], &["compression level 30"]),
        (&["--image-chunk", "5000"], &["image chunk 5000"]),
    ];
    for (args, words) in cases {
        let dir = tmp.path().join("v");
        let out = unchanged(tmp.path(), || {
            bare_command(common::vaultctl())
                .arg("--vault")
                .arg(&dir)
                .arg("--key-file")
                .arg(&key)
                .arg("init")
                .args(args)
                .output()
                .expect("running vaultctl")
        });
        refused(&out, Some(1), &format!("init {args:?}"), words);
        assert!(!dir.exists(), "init {args:?} created {}", dir.display());
    }

    let short = tmp.path().join("short.key");
    fs::write(&short, "tooshort").expect("write");
    let dir = tmp.path().join("v2");
    let out = unchanged(tmp.path(), || {
        bare_command(common::vaultctl())
            .arg("--vault")
            .arg(&dir)
            .arg("--key-file")
            .arg(&short)
            .arg("init")
            .output()
            .expect("running vaultctl")
    });
    refused(
        &out,
        Some(1),
        "init with an 8-byte key file",
        &["short.key", "at least 32"],
    );
}

#[test]
fn health_without_a_readable_status_names_the_file_and_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("healthd");
    let health = |args: &[&str]| {
        bare_command(common::vaultctl())
            .args(args)
            .output()
            .expect("vaultctl")
    };
    let state_arg = state.display().to_string();
    let out = health(&["health", "status", "--state-dir", &state_arg]);
    refused(
        &out,
        Some(1),
        "no status file",
        &["status.json", "vault-healthd"],
    );
    fs::create_dir_all(&state).expect("mkdir");
    fs::write(state.join("status.json"), b"{\"sensors\": [tru").expect("write");
    let out = health(&["health", "sensors", "--state-dir", &state_arg]);
    refused(
        &out,
        Some(1),
        "damaged status file",
        &["status.json", "not JSON"],
    );
    let out = health(&["--bus", "unix:path=/nonexistent/bus", "health", "clear-sel"]);
    refused(&out, Some(1), "no such bus", &["/nonexistent/bus"]);
}
