//! Transfer-drive seeding both ways: export what the remote lacks, import it on the remote;
//! and the reverse, a full export of the tenant's vault that restores at the customer site.

mod common;

use common::cli::snap_id;
use common::remote::{expect_remoted, Pki, RemoteServer, TenantConf};
use common::{assert_same_tree, tree, Vault};

#[test]
fn a_drive_carries_what_the_remote_lacks_and_a_full_copy_back() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let url = format!("tiervault://127.0.0.1:{}", server.addr().port());
    let cert = pki.client("acme");
    let tls = |args: &mut Vec<std::ffi::OsString>| args.extend(cert.tls_args(&pki));
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 200, 500..60_000, 0.5, 51);
    vault.backup(&[&src]);
    let mut args: Vec<std::ffi::OsString> =
        vec!["replicate".into(), "--to".into(), url.clone().into()];
    tls(&mut args);
    vault.json(0, &args);

    // A big second backup goes by drive instead of the WAN.
    tree::bulk_files(&src.join("bulk"), 150, 20_000..200_000, 0.9, 52);
    let second = vault.backup(&[&src]);
    let new_stored = second["summary"]["stored_bytes"].as_u64().expect("stored");
    let drive = vault.scratch("drive");
    let mut args: Vec<std::ffi::OsString> = vec![
        "export".into(),
        "--to".into(),
        drive.clone().into_os_string(),
        "--lacking-on".into(),
        url.clone().into(),
    ];
    tls(&mut args);
    let exported = vault.json(0, &args);
    eprintln!("export: {exported}; the backup stored {new_stored} new bytes");
    assert_eq!(exported["snapshots"], 1, "{exported}");
    assert!(
        exported["bytes"].as_u64().unwrap_or(u64::MAX) as f64 <= 1.05 * new_stored as f64,
        "the drive carries more than the new blobs: {exported}"
    );

    let out = expect_remoted(
        0,
        [
            "import".as_ref(),
            "--config".as_ref(),
            server.config_path().as_os_str(),
            "--tenant".as_ref(),
            "acme".as_ref(),
            "--from".as_ref(),
            drive.as_os_str(),
        ],
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    // Nothing left to send over the WAN.
    let mut args: Vec<std::ffi::OsString> = vec!["replicate".into(), "--to".into(), url.into()];
    tls(&mut args);
    let after = vault.json(0, &args);
    assert_eq!(after["snapshots_sent"], 0, "{after}");
    assert_eq!(after["bytes_sent"], 0, "{after}");
    let remote = vault.at(server.tenant_dir("acme"));
    remote.expect(0, ["verify"]);

    // The other way: the operator exports the whole tenant (no key needed) for a big restore.
    let back = vault.scratch("drive-back");
    let out = std::process::Command::new(common::vaultctl())
        .arg("--vault")
        .arg(server.tenant_dir("acme"))
        .args(["--quiet", "export", "--to"])
        .arg(&back)
        .env_remove("VAULT_PASSPHRASE")
        .output()
        .expect("vaultctl export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at_customer = vault.at(back);
    at_customer.expect(0, ["verify"]);
    let target = vault.scratch("restored");
    at_customer.restore(&snap_id(&second), &target);
    assert_same_tree(&src, &target.join("src"));
}
