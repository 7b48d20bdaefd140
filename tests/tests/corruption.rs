//! Damage detection: one flipped byte in a pack is found by `verify`, which names the pack, the
//! blob, the snapshots and the files it hurts; `restore` still brings back everything else.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::cli::snap_id;
use common::pack::{self, Pack, BLOB_HEADER_LEN, TAG_LEN};
use common::{assert_same_tree_except, check_exit, describe, fsx, gen, Vault};

/// A backed-up tree of random files below the minimum chunk size, each of a distinct size: a
/// file is one data blob, and the blob's stored length (header + payload + tag: random bytes
/// do not compress) tells which file it holds.
struct Fixture {
    vault: Vault,
    src: PathBuf,
    /// (path relative to the snapshot root, e.g. `src/sub/f07.bin`, size)
    files: Vec<(String, u64)>,
    snaps: Vec<String>,
}

fn fixture(backups: usize) -> Fixture {
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let mut files = Vec::new();
    for i in 0..40u64 {
        let rel = if i % 2 == 0 {
            format!("f{i:02}.bin")
        } else {
            format!("sub/f{i:02}.bin")
        };
        let size = 2000 + 613 * i;
        fs::write(
            src.join(&rel),
            gen::content(gen::Kind::Random, 500 + i, size as usize),
        )
        .expect("write");
        files.push((format!("src/{rel}"), size));
    }
    let mut snaps = vec![snap_id(&vault.backup(&[&src]))];
    for _ in 1..backups {
        // Reads every file again: the second snapshot references the very same blobs.
        let s = vault.json(
            0,
            [
                "backup".as_ref(),
                "--force-reread".as_ref(),
                src.as_os_str(),
            ],
        );
        snaps.push(snap_id(&s));
    }
    Fixture {
        vault,
        src,
        files,
        snaps,
    }
}

/// A data blob that holds one of the fixture's files, with that file.
fn blob_of_a_file<'a>(
    packs: &'a [Pack],
    files: &'a [(String, u64)],
) -> (&'a Pack, &'a pack::Entry, &'a str) {
    for p in packs {
        for e in p.entries.iter().filter(|e| e.kind == 0) {
            let payload = u64::from(e.stored_len).saturating_sub(BLOB_HEADER_LEN + TAG_LEN);
            if let Some((rel, _)) = files.iter().find(|(_, size)| *size == payload) {
                return (p, e, rel);
            }
        }
    }
    panic!(
        "no data blob has the stored length of a fixture file (size + {})",
        BLOB_HEADER_LEN + TAG_LEN
    );
}

/// `verify --json`, expecting exit 4; returns the damage entries.
fn verify_damage(vault: &Vault, quick: bool) -> Vec<Value> {
    let args: &[&str] = if quick {
        &["verify", "--quick", "--json"]
    } else {
        &["verify", "--json"]
    };
    let out = vault.run(args);
    check_exit(&out, 4, &format!("vaultctl {}", args.join(" ")));
    let report = common::json_of(&out, "verify --json");
    assert_eq!(
        report["ok"],
        Value::Bool(false),
        "verify found damage but says ok: {report}"
    );
    match &report["damage"] {
        Value::Array(d) if !d.is_empty() => d.clone(),
        other => panic!("verify exited 4 without damage entries: {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn damaged_blob_is_named_and_the_rest_still_restores() {
    let fx = fixture(2);
    let packs = pack::all(&fx.vault.dir);
    assert!(
        !packs.is_empty(),
        "no pack under {}/data",
        fx.vault.dir.display()
    );
    let (p, e, rel) = blob_of_a_file(&packs, &fx.files);
    let blob = hex::encode(e.id);
    let payload = u64::from(e.stored_len) - BLOB_HEADER_LEN;
    fsx::flip_byte(&p.path, e.offset + BLOB_HEADER_LEN + payload / 2);
    eprintln!(
        "flipped a byte of blob {blob} (file {rel}) in pack {}",
        p.id
    );

    let damage = verify_damage(&fx.vault, false);
    let hit = damage
        .iter()
        .find(|d| d["blob"].as_str() == Some(blob.as_str()))
        .unwrap_or_else(|| panic!("verify does not name blob {blob}: {damage:?}"));
    let named_pack = hit["pack"].as_str().unwrap_or_default();
    assert!(
        named_pack.contains(&p.id),
        "damage entry names pack {named_pack:?}, expected {}: {hit}",
        p.id
    );
    let snaps = strings(&hit["snapshots"]);
    for id in &fx.snaps {
        assert!(
            snaps
                .iter()
                .any(|s| s.len() >= 8 && id.starts_with(s.as_str())),
            "damage entry does not name snapshot {id}: {hit}"
        );
    }
    let files = strings(&hit["files"]);
    assert!(
        files.iter().any(|f| f.ends_with(rel)),
        "damage entry does not name file {rel}: {hit}"
    );

    // Restore: exit 4, the damaged file named, every other file restored identically.
    let target = fx.vault.scratch("restored");
    fs::create_dir(&target).expect("creating the restore target");
    let out = fx.vault.run([
        "restore".as_ref(),
        fx.snaps[1].as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    check_exit(&out, 4, "restore of a snapshot with a damaged blob");
    let name = Path::new(rel)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&name),
        "restore does not name the damaged file {rel}; {}",
        describe(&out)
    );
    let skip = rel.strip_prefix("src/").expect("under src/");
    assert_same_tree_except(&fx.src, &target.join("src"), &[skip.as_bytes()]);
}

#[test]
fn damaged_trailer_or_footer_is_reported() {
    for (what, at) in [("trailer", 0u64), ("footer", 1u64)] {
        let fx = fixture(1);
        let packs = pack::all(&fx.vault.dir);
        let p = packs
            .first()
            .unwrap_or_else(|| panic!("no pack under {}/data", fx.vault.dir.display()));
        // In the trailer: a byte of the first entry's digest. In the footer: the trailer digest.
        let offset = if at == 0 {
            p.trailer_offset + 40
        } else {
            p.len - 10
        };
        fsx::flip_byte(&p.path, offset);
        for quick in [true, false] {
            let damage = verify_damage(&fx.vault, quick);
            assert!(
                damage
                    .iter()
                    .any(|d| d["pack"].as_str().is_some_and(|s| s.contains(&p.id))),
                "verify{} does not name pack {} after a flipped {what} byte: {damage:?}",
                if quick { " --quick" } else { "" },
                p.id
            );
        }
    }
}

#[test]
fn a_missing_pack_is_named_with_its_blobs() {
    let fx = fixture(1);
    let packs = pack::all(&fx.vault.dir);
    let p = packs.first().expect("a pack");
    fs::remove_file(&p.path).expect("remove pack");
    let damage = verify_damage(&fx.vault, false);
    assert!(
        damage
            .iter()
            .any(|d| d["pack"].as_str() == Some(p.id.as_str())
                && d["error"].as_str() == Some("pack named by the index is missing")),
        "{damage:?}"
    );
    let lost: Vec<&Value> = damage
        .iter()
        .filter(|d| d["error"].as_str() == Some("its pack is missing"))
        .collect();
    assert_eq!(
        lost.len(),
        p.entries.len(),
        "one line per blob of the pack: {damage:?}"
    );
}

/// An index part (docs/format.md section 6) naming `pack` with one entry, `id`.
fn stray_part(vault_dir: &Path, pack: &Pack, id: [u8; 32]) {
    let mut b = Vec::new();
    b.extend_from_slice(b"TVINDEX1");
    for n in [1u32, 1, 1, 0] {
        b.extend_from_slice(&n.to_le_bytes());
    }
    let mut pid = [0u8; 16];
    hex::decode_to_slice(&pack.id, &mut pid).expect("pack id is hex");
    b.extend_from_slice(&pid);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&pack.len.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&id);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&100u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    let name = blake3::hash(&b).to_hex().to_string();
    fs::write(vault_dir.join("index").join(name), b).expect("write part");
}

#[test]
fn an_index_entry_its_pack_does_not_hold_is_named() {
    let fx = fixture(1);
    let packs = pack::all(&fx.vault.dir);
    let p = packs.first().expect("a pack");
    let stray = [0x5a; 32];
    stray_part(&fx.vault.dir, p, stray);
    for quick in [true, false] {
        let damage = verify_damage(&fx.vault, quick);
        assert!(
            damage
                .iter()
                .any(|d| d["blob"].as_str() == Some(hex::encode(stray).as_str())
                    && d["pack"].as_str() == Some(p.id.as_str())
                    && d["error"].as_str()
                        == Some("the index entry disagrees with the pack's trailer")),
            "verify{} misses the stray entry: {damage:?}",
            if quick { " --quick" } else { "" }
        );
    }
}
