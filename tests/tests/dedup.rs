//! Deduplication: backing up an unchanged tree again stores (almost) nothing, and editing a few
//! files stores about their compressed size. Sizes are measured on disk (all files under the
//! vault) and cross-checked with the snapshots' summaries.

mod common;

use std::fs;

use common::cli::snap_id;
use common::{assert_same_tree, fsx, gen, tree, Vault};

/// Few thousand small files (each below the 32 KiB minimum chunk: one chunk per file).
const FILES: usize = 2500;
/// Every 33rd file is rewritten: 3 %.
const EDIT_EVERY: usize = 33;

fn summary_u64(snap: &serde_json::Value, field: &str) -> u64 {
    snap["summary"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{field} is not an unsigned integer in {snap}"))
}

#[test]
fn unchanged_and_lightly_edited_trees_deduplicate() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    // Half text (compressible), half random; ~30 MB in all.
    let files = tree::bulk_files(&src, FILES, 512..24_576, 0.5, 42);
    let logical: u64 = files.iter().map(|(_, s)| s).sum();

    let v0 = fsx::file_bytes(&vault.dir);
    let s1 = vault.backup(&[&src]);
    let v1 = fsx::file_bytes(&vault.dir);
    let stored_first = v1 - v0;
    eprintln!("first backup: {FILES} files, {logical} logical bytes, vault grew by {stored_first} bytes (summary: {})", s1["summary"]);
    assert_eq!(
        summary_u64(&s1, "files"),
        FILES as u64,
        "summary.files of the first backup"
    );
    assert_eq!(
        summary_u64(&s1, "bytes"),
        logical,
        "summary.bytes of the first backup"
    );

    // (a) The same tree again, first with change detection, then reading every file.
    let limit = stored_first as f64 * 0.005;
    let s2 = vault.backup(&[&src]);
    let v2 = fsx::file_bytes(&vault.dir);
    eprintln!(
        "unchanged re-backup: vault grew by {} bytes (limit {limit:.0}); summary {}",
        v2 - v1,
        s2["summary"]
    );
    assert!(
        ((v2 - v1) as f64) < limit,
        "re-backup of an unchanged tree grew the vault by {} bytes, limit {limit:.0}",
        v2 - v1
    );
    assert_eq!(
        s2["parent"].as_str(),
        Some(snap_id(&s1).as_str()),
        "the second backup's parent is the first"
    );
    assert!(
        (summary_u64(&s2, "stored_bytes") as f64) < summary_u64(&s1, "stored_bytes") as f64 * 0.005,
        "summary.stored_bytes of the unchanged re-backup is not below 0.5% of the first's: {} vs {}",
        s2["summary"],
        s1["summary"]
    );
    let s3 = vault.json(
        0,
        [
            "backup".as_ref(),
            "--force-reread".as_ref(),
            src.as_os_str(),
        ],
    );
    let v3 = fsx::file_bytes(&vault.dir);
    eprintln!(
        "--force-reread re-backup: vault grew by {} bytes (limit {limit:.0}); summary {}",
        v3 - v2,
        s3["summary"]
    );
    assert!(
        ((v3 - v2) as f64) < limit,
        "--force-reread re-backup grew the vault by {} bytes, limit {limit:.0}",
        v3 - v2
    );

    // (b) Rewrite 3 % of the files with new content of the same size.
    let mut compressed_changed = 0u64;
    let mut changed = 0;
    for (i, (path, size)) in files
        .iter()
        .enumerate()
        .filter(|(i, _)| i % EDIT_EVERY == 0)
    {
        let data = gen::mixed(
            1_000_000 + i as u64,
            usize::try_from(*size).expect("fits"),
            0.5,
        );
        compressed_changed += zstd::bulk::compress(&data, 3).expect("zstd").len() as u64;
        fs::write(path, &data).unwrap_or_else(|e| panic!("rewriting {}: {e}", path.display()));
        changed += 1;
    }
    let s4 = vault.backup(&[&src]);
    let v4 = fsx::file_bytes(&vault.dir);
    let allowed = 1.2 * compressed_changed as f64 + 0.01 * stored_first as f64;
    eprintln!(
        "edited {changed} files: zstd-3 size of new content {compressed_changed}; vault grew by {} bytes (limit {allowed:.0}); summary {}",
        v4 - v3,
        s4["summary"]
    );
    assert!(
        ((v4 - v3) as f64) <= allowed,
        "backup after editing {changed} files grew the vault by {} bytes, limit {allowed:.0}",
        v4 - v3
    );

    // `snapshots --json` reports the same summaries as the backups did.
    let listed = vault.snapshots();
    let made = [&s1, &s2, &s3, &s4];
    assert_eq!(
        listed.len(),
        made.len(),
        "snapshots --json lists every backup"
    );
    for (l, m) in listed.iter().zip(made) {
        assert_eq!(l["id"], m["id"], "snapshots --json is not in backup order");
        assert_eq!(
            l["summary"], m["summary"],
            "snapshots --json and backup --json summaries differ"
        );
    }

    // The incremental snapshot is also right.
    let target = vault.scratch("restored");
    fs::create_dir(&target).expect("creating the restore target");
    vault.restore(&snap_id(&s4), &target);
    assert_same_tree(&src, &target.join("src"));
}
