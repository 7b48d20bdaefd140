//! `vaultctl backup --exclude/--include/--exclude-from`: what a filtered backup holds (seen
//! through `ls` and a restore), non-UTF-8 names, precedence, and bad patterns as usage errors.

mod common;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::{check_exit, fsx, gen, Vault};

/// The source tree, at `<tmp>/src`:
///
/// ```text
/// keep.txt  a.tmp  big.bin
/// sub/      c.txt  b.tmp  \xff.tmp  \xfe.dat
/// cache/    x.bin  y.txt  fifo  deeper/z.txt
/// node_modules/m/index.js
/// docs/     report.docx  notes.md
/// ```
fn source(vault: &Vault) -> PathBuf {
    let src = vault.scratch("src");
    let files: &[(&[u8], Vec<u8>)] = &[
        (b"keep.txt", gen::content(gen::Kind::Text, 1, 20_000)),
        (b"a.tmp", b"scratch".to_vec()),
        (b"big.bin", gen::content(gen::Kind::Random, 2, 300_000)),
        (b"sub/c.txt", gen::content(gen::Kind::Text, 3, 5_000)),
        (b"sub/b.tmp", b"scratch".to_vec()),
        (b"sub/\xff.tmp", b"latin-1 scratch".to_vec()),
        (b"sub/\xfe.dat", gen::content(gen::Kind::Random, 4, 10_000)),
        (b"cache/x.bin", gen::content(gen::Kind::Random, 5, 50_000)),
        (b"cache/y.txt", b"cached text".to_vec()),
        (b"cache/deeper/z.txt", b"deeper".to_vec()),
        (
            b"node_modules/m/index.js",
            b"module.exports = 1;\n".to_vec(),
        ),
        (
            b"docs/report.docx",
            gen::content(gen::Kind::Random, 6, 8_000),
        ),
        (b"docs/notes.md", b"# notes\n".to_vec()),
    ];
    for (rel, data) in files {
        let p = src.join(OsStr::from_bytes(rel));
        fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
    }
    fsx::make_fifo(&src.join("cache/fifo")).expect("mkfifo");
    src
}

/// `backup SRC ARGS… --json`, expecting exit 0; the printed object.
fn backup(vault: &Vault, src: &Path, args: &[&OsStr]) -> Value {
    let mut all: Vec<OsString> = vec!["backup".into(), src.into()];
    all.extend(args.iter().map(|a| a.to_os_string()));
    let b = vault.json(0, all);
    assert_eq!(
        b["status"], "complete",
        "a filtered backup has no warnings: {b}"
    );
    assert!(
        b["skipped_files"].as_array().is_some_and(|a| a.is_empty()),
        "excluded entries are not skipped files: {b}"
    );
    b
}

fn excluded(b: &Value) -> u64 {
    b["excluded"]
        .as_u64()
        .unwrap_or_else(|| panic!("backup --json without a numeric \"excluded\": {b}"))
}

/// The paths of `ls latest --json` ("src/sub/" for directories).
fn ls_latest(vault: &Vault) -> BTreeSet<String> {
    let v = vault.json(0, ["ls", "latest"]);
    v.as_array()
        .unwrap_or_else(|| panic!("ls --json printed a non-array: {v}"))
        .iter()
        .map(|e| {
            let p = e["path"].as_str().expect("a string path").to_owned();
            if e["type"] == "dir" {
                format!("{p}/")
            } else {
                p
            }
        })
        .collect()
}

/// Restores `latest` into a fresh directory; returns the restored paths (as `ls` shows them)
/// after checking every restored file against the source.
fn restore_and_check(vault: &Vault, src: &Path, name: &str) -> BTreeSet<String> {
    let target = vault.scratch(name);
    fs::create_dir(&target).expect("creating the restore target");
    vault.restore("latest", &target);
    let mut out = BTreeSet::new();
    fsx::walk(&target, &mut |path, md| {
        let rel = path.strip_prefix(&target).expect("below the target");
        let shown = fsx::show_path(rel);
        if md.is_dir() {
            out.insert(format!("{shown}/"));
        } else {
            out.insert(shown);
            if md.is_file() {
                let orig = src.join(rel.strip_prefix("src").expect("below src"));
                assert!(
                    fs::read(path).expect("restored file") == fs::read(&orig).expect("source"),
                    "{} differs from its source",
                    fsx::show_path(rel)
                );
            }
        }
    });
    out
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// Restores the permissions of a directory made unreadable, so the fixture can be removed.
struct Unlock(PathBuf);

impl Drop for Unlock {
    fn drop(&mut self) {
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn exclude_leaves_out_names_anywhere_and_absolute_paths() {
    let vault = Vault::new();
    let src = source(&vault);
    let cache = src.join("cache");
    let b = backup(
        &vault,
        &src,
        &[
            "--exclude".as_ref(),
            "*.tmp".as_ref(),
            "--exclude".as_ref(),
            cache.as_os_str(),
        ],
    );
    // a.tmp, sub/b.tmp, sub/\xff.tmp, and cache (once: nothing below it is looked at).
    assert_eq!(excluded(&b), 4, "{b}");
    let want = set(&[
        "src/",
        "src/big.bin",
        "src/docs/",
        "src/docs/notes.md",
        "src/docs/report.docx",
        "src/keep.txt",
        "src/node_modules/",
        "src/node_modules/m/",
        "src/node_modules/m/index.js",
        "src/sub/",
        "src/sub/\\xfe.dat",
        "src/sub/c.txt",
    ]);
    assert_eq!(ls_latest(&vault), want, "ls after --exclude");
    assert_eq!(
        restore_and_check(&vault, &src, "restored"),
        want,
        "restore after --exclude"
    );
}

#[test]
fn an_excluded_unreadable_directory_is_never_listed() {
    const NOBODY: u32 = 65534;
    let root = fsx::is_root();
    // As root DAC does not stop reads: run vaultctl as nobody for this test.
    if root && !common::cli::can_run_as(NOBODY, NOBODY) {
        return common::skip(
            "running as root but cannot switch to uid 65534 to make a directory unreadable",
        );
    }
    let vault = if root {
        Vault::as_user(NOBODY, NOBODY)
    } else {
        Vault::new()
    };
    let src = source(&vault);
    let cache = src.join("cache");
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let _unlock = Unlock(cache.clone());
    // Control: without the exclude, listing it fails and the snapshot has a warning.
    let out = vault.run(["backup".as_ref(), src.as_os_str()]);
    check_exit(&out, 3, "backup of a tree with an unreadable directory");
    // Excluded by name: never opened, so no warning at all.
    let b = backup(&vault, &src, &["--exclude".as_ref(), "cache".as_ref()]);
    assert_eq!(excluded(&b), 1, "{b}");
    let listed = ls_latest(&vault);
    assert!(
        !listed.iter().any(|p| p.starts_with("src/cache")),
        "the excluded directory is in the snapshot: {listed:?}"
    );
    assert!(listed.contains("src/sub/c.txt"), "{listed:?}");
}

#[test]
fn include_only_keeps_matches_below_every_directory() {
    let vault = Vault::new();
    let src = source(&vault);
    let docs = src.join("docs");
    let b = backup(
        &vault,
        &src,
        &[
            "--include".as_ref(),
            "*.txt".as_ref(),
            "--include".as_ref(),
            docs.as_os_str(),
            // Exclude wins over include, even below an included directory.
            "--exclude".as_ref(),
            "notes.md".as_ref(),
        ],
    );
    // a.tmp, big.bin, sub/{b.tmp, \xff.tmp, \xfe.dat}, cache/{x.bin, fifo},
    // node_modules/m/index.js, docs/notes.md.
    assert_eq!(excluded(&b), 9, "{b}");
    // Every directory stays, even those left empty (cache/deeper keeps z.txt).
    let want = set(&[
        "src/",
        "src/cache/",
        "src/cache/deeper/",
        "src/cache/deeper/z.txt",
        "src/cache/y.txt",
        "src/docs/",
        "src/docs/report.docx",
        "src/keep.txt",
        "src/node_modules/",
        "src/node_modules/m/",
        "src/sub/",
        "src/sub/c.txt",
    ]);
    assert_eq!(ls_latest(&vault), want, "ls after --include");
    assert_eq!(
        restore_and_check(&vault, &src, "restored"),
        want,
        "restore after --include"
    );
}

#[test]
fn exclude_from_reads_patterns_skipping_comments_and_blank_lines() {
    let vault = Vault::new();
    let src = source(&vault);
    let list = vault.scratch("excludes");
    let mut text = b"# build output\n\nnode_modules\n   *.tmp   \n\n# the cache\n".to_vec();
    text.extend_from_slice(src.join("cache").as_os_str().as_bytes());
    text.extend_from_slice(b"/\n");
    fs::write(&list, text).expect("writing the pattern file");
    let b = backup(
        &vault,
        &src,
        &[
            "--exclude-from".as_ref(),
            list.as_os_str(),
            "--exclude".as_ref(),
            "big.bin".as_ref(),
        ],
    );
    // node_modules, a.tmp, sub/b.tmp, sub/\xff.tmp, cache, big.bin.
    assert_eq!(excluded(&b), 6, "{b}");
    let want = set(&[
        "src/",
        "src/docs/",
        "src/docs/notes.md",
        "src/docs/report.docx",
        "src/keep.txt",
        "src/sub/",
        "src/sub/\\xfe.dat",
        "src/sub/c.txt",
    ]);
    assert_eq!(ls_latest(&vault), want, "ls after --exclude-from");
}

#[test]
fn an_unfiltered_backup_reports_nothing_excluded() {
    let vault = Vault::new();
    let src = source(&vault);
    let b = backup(&vault, &src, &[]);
    assert_eq!(excluded(&b), 0, "{b}");
    assert!(ls_latest(&vault).contains("src/cache/deeper/z.txt"));
}

#[test]
fn bad_patterns_are_usage_errors_naming_the_pattern() {
    let vault = Vault::new();
    let src = source(&vault);
    let list = vault.scratch("bad-excludes");
    fs::write(&list, "# fine so far\n*.tmp\n{unclosed\n").expect("write");
    let absent = vault.scratch("no-such-list");
    let cases: Vec<(Vec<&OsStr>, Vec<&str>)> = vec![
        (vec!["--exclude".as_ref(), "[oops".as_ref()], vec!["[oops"]),
        (
            vec!["--include".as_ref(), "a/../b".as_ref()],
            vec!["a/../b"],
        ),
        (
            vec!["--exclude".as_ref(), "".as_ref()],
            vec!["empty pattern"],
        ),
        (
            vec!["--exclude-from".as_ref(), list.as_os_str()],
            vec!["{unclosed", "line 3"],
        ),
        (
            vec!["--exclude-from".as_ref(), absent.as_os_str()],
            vec!["no-such-list"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args: Vec<&OsStr> = vec!["backup".as_ref(), src.as_os_str()];
        args.extend(&flags);
        let out = vault.run(&args);
        let what = format!("vaultctl {:?}", args);
        check_exit(&out, 2, &what);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(
                stderr.contains(n),
                "{what}: stderr does not name {n:?}: {stderr}"
            );
        }
    }
    assert!(
        vault.snapshots().is_empty(),
        "a refused backup committed a snapshot"
    );
}

#[test]
fn filters_are_refused_for_streams_and_images() {
    let vault = Vault::new();
    let img = vault.scratch("disk.img");
    fs::write(&img, vec![7u8; 100_000]).expect("write");
    for args in [
        vec![
            OsStr::new("backup"),
            "--stdin".as_ref(),
            "--name".as_ref(),
            "s".as_ref(),
            "--exclude".as_ref(),
            "*.tmp".as_ref(),
        ],
        vec![
            OsStr::new("backup"),
            "--image".as_ref(),
            img.as_os_str(),
            "--include".as_ref(),
            "*.img".as_ref(),
        ],
    ] {
        let out = vault.run_with_stdin(&args, b"data");
        check_exit(&out, 2, &format!("vaultctl {args:?}"));
    }
    assert!(vault.snapshots().is_empty());
}
