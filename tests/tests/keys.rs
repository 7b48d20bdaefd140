//! `vaultctl key`: listing keys without a secret, adding a passphrase or key file, replacing
//! the key a command was opened with, and the refusals that keep a vault from being locked.

mod common;

use common::cli::{check_exit, Auth};
use common::Vault;

/// The same vault opened with `auth`.
fn with(vault: &Vault, auth: Auth) -> Vault {
    let mut v = vault.at(vault.dir.clone());
    v.auth = auth;
    v
}

fn pass(p: &str) -> Auth {
    Auth::Passphrase(p.into())
}

/// `key list --json`: (name, kind, t) of each key.
fn keys(vault: &Vault) -> Vec<(String, String, Option<u64>)> {
    let listed = vault.json(0, ["key", "list"]);
    listed
        .as_array()
        .unwrap_or_else(|| panic!("key list --json printed a non-array: {listed}"))
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap_or_default().to_string(),
                k["kind"].as_str().unwrap_or_default().to_string(),
                k["t"].as_u64(),
            )
        })
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Opening with `vault`'s credentials fails and says the key is wrong.
fn refused(vault: &Vault, why: &str) {
    let out = vault.run(["snapshots"]);
    assert_ne!(out.status.code(), Some(0), "{why}: the vault still opened");
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("passphrase") || err.contains("key"),
        "{why}: the error does not say the key is wrong: {err}"
    );
}

#[test]
fn keys_are_added_replaced_and_removed_without_locking_the_vault() {
    let old = Vault::with_passphrase("old passphrase");
    let src = old.scratch("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"kept under every key").expect("write");
    old.backup(&[&src]);

    // Listing needs no secret, and shows the Argon2id parameters.
    let nobody = with(&old, pass("not the passphrase"));
    let listed = keys(&nobody);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].1, "passphrase");
    assert!(listed[0].2.is_some_and(|t| t >= 1), "{listed:?}");
    let first = listed[0].0.clone();

    // A second passphrase opens the same data.
    let mut add = old.command(["key", "add", "--kdf-time-ms", "20"]);
    add.env("VAULT_NEW_PASSPHRASE", "second passphrase");
    let out = add.output().expect("running key add");
    check_exit(&out, 0, "key add");
    let second = with(&old, pass("second passphrase"));
    assert_eq!(second.snapshots().len(), 1);
    assert_eq!(keys(&old).len(), 2);

    // The key a command is opened with is never removed by it; an unknown name is named.
    let out = old.expect(1, ["key", "remove", first.as_str()]);
    assert!(
        stderr(&out).contains(&first) && stderr(&out).contains("opened with"),
        "{}",
        stderr(&out)
    );
    let out = old.expect(1, ["key", "remove", "no-such-key"]);
    assert!(
        stderr(&out).contains("no-such-key") && stderr(&out).contains("key list"),
        "{}",
        stderr(&out)
    );

    // Removing the first key through the second: the old passphrase stops working.
    second.expect(0, ["key", "remove", first.as_str()]);
    refused(&old, "the removed passphrase");

    // The only key left can be replaced but not removed.
    let only = keys(&second)[0].0.clone();
    let out = second.expect(1, ["key", "remove", only.as_str()]);
    assert!(stderr(&out).contains(&only), "{}", stderr(&out));

    // passwd to a key file: the file is created, opens the vault, the passphrase no longer.
    let key_file = old.scratch("new.key");
    let replaced = second.json(
        0,
        [
            "key".as_ref(),
            "passwd".as_ref(),
            "--new-key-file".as_ref(),
            key_file.as_os_str(),
        ],
    );
    assert_eq!(replaced["removed"], only.as_str(), "{replaced}");
    assert_eq!(replaced["kind"], "keyfile", "{replaced}");
    let by_file = with(&old, Auth::KeyFile(key_file.clone()));
    assert_eq!(by_file.snapshots().len(), 1);
    refused(&second, "the replaced passphrase");
    let listed = keys(&by_file);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].1, "keyfile");

    // passwd back to a passphrase from a file, calibrated anew; the data is all there.
    let pass_file = old.scratch("pass.txt");
    std::fs::write(&pass_file, "third passphrase\n").expect("write");
    by_file.expect(
        0,
        [
            "key".as_ref(),
            "passwd".as_ref(),
            "--new-passphrase-file".as_ref(),
            pass_file.as_os_str(),
            "--kdf-time-ms".as_ref(),
            "20".as_ref(),
        ],
    );
    let third = with(&old, pass("third passphrase"));
    let target = old.scratch("restored");
    std::fs::create_dir(&target).expect("mkdir");
    third.restore("latest", &target);
    assert_eq!(
        std::fs::read(target.join("src/a.txt")).expect("restored"),
        b"kept under every key"
    );
    refused(&by_file, "the replaced key file");
}

#[test]
fn a_new_key_needs_a_new_secret_and_a_vault() {
    let v = Vault::with_passphrase("p");
    let out = v.expect(1, ["key", "add"]);
    assert!(
        stderr(&out).contains("VAULT_NEW_PASSPHRASE") && stderr(&out).contains("--new-key-file"),
        "{}",
        stderr(&out)
    );
    let empty = v.scratch("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let out = v.expect(
        1,
        [
            "key".as_ref(),
            "add".as_ref(),
            "--new-passphrase-file".as_ref(),
            empty.as_os_str(),
        ],
    );
    assert!(
        stderr(&out).contains(&empty.display().to_string()),
        "{}",
        stderr(&out)
    );
    let elsewhere = v.at(v.scratch("not-a-vault"));
    std::fs::create_dir(&elsewhere.dir).expect("mkdir");
    let out = elsewhere.expect(1, ["key", "list"]);
    assert!(
        stderr(&out).contains(&elsewhere.dir.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(keys(&v).len(), 1, "a failed add left a key behind");
}
