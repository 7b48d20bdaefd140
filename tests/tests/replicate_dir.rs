//! `vaultctl replicate --to DIR`: a replica directory receives only the blobs it lacks, opens
//! with the same key, and a directory holding another vault is refused.

mod common;

use std::fs;

use common::cli::snap_id;
use common::{assert_same_tree, gen, tree, Vault};

fn u(v: &serde_json::Value, f: &str) -> u64 {
    v[f].as_u64()
        .unwrap_or_else(|| panic!("{f} is not an unsigned integer in {v}"))
}

#[test]
fn replicas_receive_only_missing_blobs_and_restore_identically() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    let files = tree::bulk_files(&src, 1500, 512..40_000, 0.5, 7);
    let first = vault.backup(&[&src]);
    let rep = vault.scratch("replica");
    let replica = vault.at(rep.clone());

    let r1 = vault.json(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);
    eprintln!("first replication: {r1}");
    assert_eq!(u(&r1, "snapshots_sent"), 1);
    let stored_first = first["summary"]["stored_bytes"].as_u64().expect("stored");
    assert!(
        u(&r1, "bytes_sent") >= stored_first,
        "a first replication sends every blob: {r1} vs {stored_first}"
    );
    let listed = replica.snapshots();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], first["id"]);

    // 3 % of the files change.
    for (i, (path, size)) in files.iter().enumerate().filter(|(i, _)| i % 33 == 0) {
        let data = gen::mixed(9_000 + i as u64, usize::try_from(*size).expect("fits"), 0.5);
        fs::write(path, data).unwrap_or_else(|e| panic!("rewriting {}: {e}", path.display()));
    }
    let second = vault.backup(&[&src]);
    let new_stored = second["summary"]["stored_bytes"].as_u64().expect("stored");
    let r2 = vault.json(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);
    eprintln!("incremental replication: {r2}; the backup stored {new_stored} new bytes");
    assert_eq!(u(&r2, "snapshots_sent"), 1);
    assert_eq!(u(&r2, "snapshots_present"), 1);
    assert!(
        u(&r2, "bytes_sent") as f64 <= 1.1 * new_stored as f64,
        "sent {} bytes for {new_stored} new stored bytes",
        u(&r2, "bytes_sent")
    );
    assert!(
        u(&r2, "blobs_cached") > 0,
        "the cache of ids the replica holds was not used: {r2}"
    );

    // Nothing new: nothing sent.
    let r3 = vault.json(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);
    assert_eq!(u(&r3, "snapshots_sent"), 0, "{r3}");
    assert_eq!(u(&r3, "bytes_sent"), 0, "{r3}");

    // The replica opens with the same key, verifies clean and restores bit-identically.
    replica.expect(0, ["verify"]);
    let target = vault.scratch("restored");
    replica.restore(&snap_id(&second), &target);
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn a_directory_holding_another_vault_is_refused_and_left_alone() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 20, 100..2000, 0.5, 1);
    vault.backup(&[&src]);
    let other = Vault::new();
    let before = other.snapshots().len();
    let out = vault.expect(
        1,
        ["replicate".as_ref(), "--to".as_ref(), other.dir.as_os_str()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another vault"), "unclear error: {err}");
    assert_eq!(other.snapshots().len(), before);

    let plain = vault.scratch("not-empty");
    fs::create_dir_all(&plain).expect("mkdir");
    fs::write(plain.join("x"), b"x").expect("write");
    let out = vault.expect(
        1,
        ["replicate".as_ref(), "--to".as_ref(), plain.as_os_str()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-empty"),
        "error does not name the directory: {err}"
    );
    assert!(fs::read(plain.join("x")).is_ok());
}

/// The cache of ids a target holds is bounded by the hardware tier's dedup cache size (the
/// appliance config `vaultctl provision` writes), by `--cache-mib`, or by the default.
#[test]
fn the_known_ids_cache_is_bounded_by_the_tier_or_the_flag() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 50, 512..4_000, 0.5, 3);
    vault.backup(&[&src]);

    // An appliance provisioned as tier-5 (recorded hardware, the repository's profiles).
    let appliance = vault.scratch("appliance.toml");
    let provisioned = vault.json(
        0,
        [
            "provision".as_ref(),
            "--tier".as_ref(),
            "tier-5".as_ref(),
            "--profiles".as_ref(),
            workspace.join("hardware-profiles").as_os_str(),
            "--hardware".as_ref(),
            workspace
                .join("services/libs/model/testdata/hardware/tier-5.toml")
                .as_os_str(),
            "--config".as_ref(),
            appliance.as_os_str(),
        ],
    );
    let tier_bytes = provisioned["plan"]["dedup-cache-bytes"]
        .as_u64()
        .or_else(|| provisioned["plan"]["dedup_cache_bytes"].as_u64())
        .unwrap_or_else(|| panic!("no dedup cache size in {provisioned}"));

    let replicate = |to: &str, extra: &[&std::ffi::OsStr]| {
        let rep = vault.scratch(to);
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()];
        args.extend_from_slice(extra);
        vault.json(0, args)["cache"].clone()
    };
    let from_tier = replicate(
        "r1",
        &["--appliance-config".as_ref(), appliance.as_os_str()],
    );
    assert_eq!(from_tier["bound_bytes"], tier_bytes, "{from_tier}");
    assert_eq!(
        from_tier["bound_from"],
        appliance.display().to_string(),
        "{from_tier}"
    );
    assert!(
        from_tier["ids"].as_u64().is_some_and(|n| n > 0),
        "{from_tier}"
    );

    let flag = replicate(
        "r2",
        &[
            "--cache-mib".as_ref(),
            "1".as_ref(),
            "--appliance-config".as_ref(),
            appliance.as_os_str(),
        ],
    );
    assert_eq!(flag["bound_bytes"], 1 << 20, "{flag}");
    assert_eq!(flag["bound_from"], "--cache-mib", "{flag}");

    let none = vault.scratch("no-such-appliance.toml");
    let default = replicate("r3", &["--appliance-config".as_ref(), none.as_os_str()]);
    assert_eq!(default["bound_bytes"], 4u64 << 30, "{default}");
    assert_eq!(default["bound_from"], "default", "{default}");

    // A damaged appliance config is named, not silently replaced by the default.
    let bad = vault.scratch("bad-appliance.toml");
    fs::write(&bad, "version = 1\n[plan]\ntier = 5\n").expect("writing a bad config");
    let rep = vault.scratch("r4");
    let out = vault.run([
        "replicate".as_ref(),
        "--to".as_ref(),
        rep.as_os_str(),
        "--appliance-config".as_ref(),
        bad.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&bad.display().to_string()),
        "a bad appliance config must fail naming it: {err}"
    );
    let zero = vault.run(["replicate", "--to", "x", "--cache-mib", "0"]);
    let err = String::from_utf8_lossy(&zero.stderr);
    assert!(
        !zero.status.success() && err.contains("--cache-mib"),
        "--cache-mib 0 must be refused naming the flag: {err}"
    );
}
