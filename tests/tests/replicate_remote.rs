//! Replication to a real `vault-remoted` over mutual TLS on loopback: bytes on the wire
//! (counted by a TCP proxy, not by the replicator) for an incremental, a bit-identical restore
//! from the remote's copy, and zero knowledge of the remote's data directory.

mod common;

use std::fs;
use std::path::Path;

use common::cli::snap_id;
use common::remote::{ClientCert, Pki, RemoteServer, TenantConf};
use common::{assert_same_tree, gen, tree, Vault};
use tiervault_e2e::proxy::{Proxy, ProxyOptions};

fn replicate(vault: &Vault, url: &str, pki: &Pki, cert: &ClientCert) -> serde_json::Value {
    let mut args: Vec<std::ffi::OsString> = vec!["replicate".into(), "--to".into(), url.into()];
    args.extend(cert.tls_args(pki));
    vault.json(0, &args)
}

fn u(v: &serde_json::Value, f: &str) -> u64 {
    v[f].as_u64()
        .unwrap_or_else(|| panic!("{f} is not an unsigned integer in {v}"))
}

#[test]
fn incremental_sends_little_more_than_the_new_blobs_and_the_remote_copy_restores() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme").retention("30d")]);
    let proxy = Proxy::start(server.addr(), ProxyOptions::default()).expect("proxy");
    let url = format!("tiervault://127.0.0.1:{}", proxy.addr().port());
    let cert = pki.client("acme");

    let vault = Vault::new();
    let src = vault.scratch("src");
    let files = tree::bulk_files(&src, 1500, 512..40_000, 0.5, 11);
    vault.backup(&[&src]);
    let first = replicate(&vault, &url, &pki, &cert);
    eprintln!(
        "first: {first}; wire up {} down {}",
        proxy.bytes_up(),
        proxy.bytes_down()
    );
    assert_eq!(u(&first, "snapshots_sent"), 1);
    // A tenant this run created holds nothing: nothing to ask about before sending.
    assert_eq!(u(&first, "have_queries"), 0, "first replication: {first}");

    for (i, (path, size)) in files.iter().enumerate().filter(|(i, _)| i % 33 == 0) {
        let data = gen::mixed(
            77_000 + i as u64,
            usize::try_from(*size).expect("fits"),
            0.5,
        );
        fs::write(path, data).unwrap_or_else(|e| panic!("rewriting {}: {e}", path.display()));
    }
    let second = vault.backup(&[&src]);
    let new_stored = second["summary"]["stored_bytes"].as_u64().expect("stored");
    proxy.reset_counts();
    let r = replicate(&vault, &url, &pki, &cert);
    // Both directions, TLS and framing included.
    let wire = proxy.bytes_up() + proxy.bytes_down();
    eprintln!(
        "incremental: {r}; new stored bytes {new_stored}; on the wire {wire} (up {}, down {}) = {:.3}x",
        proxy.bytes_up(),
        proxy.bytes_down(),
        wire as f64 / new_stored as f64
    );
    assert_eq!(u(&r, "snapshots_sent"), 1);
    assert!(u(&r, "have_queries") >= 1, "incremental: {r}");
    assert!(
        wire as f64 <= 1.1 * new_stored as f64,
        "{wire} bytes on the wire for {new_stored} new stored bytes"
    );

    // The remote's tenant directory is a vault the same key opens.
    let remote = vault.at(server.tenant_dir("acme"));
    remote.expect(0, ["verify"]);
    let target = vault.scratch("restored");
    remote.restore(&snap_id(&second), &target);
    assert_same_tree(&src, &target.join("src"));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("readdir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_remote_learns_no_names_no_contents_and_no_key() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let url = format!("tiervault://127.0.0.1:{}", server.addr().port());
    let cert = pki.client("acme");
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir_all(src.join("Quarterly-Payroll-Dir")).expect("mkdir");
    let content_marker = b"CONFIDENTIAL-MARKER-7f3a9c";
    let name_marker = "Salaries-Of-Executives-2026.xlsx";
    let mut body = Vec::new();
    for i in 0..20_000 {
        body.extend_from_slice(content_marker);
        body.extend_from_slice(format!(" line {i}\n").as_bytes());
    }
    fs::write(src.join("Quarterly-Payroll-Dir").join(name_marker), &body).expect("write");
    fs::write(src.join("short.txt"), content_marker).expect("write");
    vault.backup(&[&src]);
    replicate(&vault, &url, &pki, &cert);

    let key_text = fs::read(vault.key_file().expect("key-file vault")).expect("key file");
    let key_text = String::from_utf8_lossy(&key_text).trim().to_string();
    let key_raw = hex::decode(&key_text).unwrap_or_default();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("content marker", content_marker.to_vec()),
        ("file name", name_marker.as_bytes().to_vec()),
        ("directory name", b"Quarterly-Payroll-Dir".to_vec()),
        ("source path", src.to_string_lossy().as_bytes().to_vec()),
        ("key file text", key_text.as_bytes().to_vec()),
        ("raw key bytes", key_raw),
    ];
    let root = server.data_dir();
    let all = files_under(root);
    assert!(all.len() > 5, "the remote holds the vault: {all:?}");
    for f in all {
        let bytes = match fs::read(&f) {
            Ok(b) => b,
            // A session file of the connection the server is still closing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", f.display()),
        };
        for (what, n) in &needles {
            assert!(
                !contains(&bytes, n),
                "the {what} appears in {} on the remote",
                f.display()
            );
        }
    }
}

#[test]
fn a_lost_vault_is_pulled_back_from_the_remote_and_restores() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme").retention("30d")]);
    let url = format!("tiervault://127.0.0.1:{}", server.addr().port());
    let cert = pki.client("acme");
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 300, 500..80_000, 0.5, 31);
    let first = vault.backup(&[&src]);
    tree::bulk_files(&src.join("later"), 50, 500..80_000, 0.5, 32);
    let second = vault.backup(&[&src]);
    replicate(&vault, &url, &pki, &cert);

    // The appliance's disks are gone: only the key (file) survives.
    fs::remove_dir_all(&vault.dir).expect("losing the vault");
    let mut args: Vec<std::ffi::OsString> =
        vec!["pull".into(), "--from".into(), url.clone().into()];
    args.extend(cert.tls_args(&pki));
    args.extend([
        "--snapshot".into(),
        snap_id(&second)[..12].to_string().into(),
    ]);
    let pulled = vault.json(0, &args);
    eprintln!("pulled: {pulled}");
    assert_eq!(pulled["created"], true);
    assert_eq!(pulled["snapshots"], 1);
    let target = vault.scratch("restored");
    vault.restore(&snap_id(&second), &target);
    assert_same_tree(&src, &target.join("src"));

    // The rest comes on a second pull, sending only what is missing.
    let mut args: Vec<std::ffi::OsString> = vec!["pull".into(), "--from".into(), url.into()];
    args.extend(cert.tls_args(&pki));
    let more = vault.json(0, &args);
    assert_eq!(more["created"], false);
    assert_eq!(more["snapshots"], 1, "{more}");
    assert!(
        more["bytes"].as_u64().unwrap_or(u64::MAX) < pulled["bytes"].as_u64().unwrap_or(0),
        "the second pull re-fetched shared blobs: {more} vs {pulled}"
    );
    vault.expect(0, ["verify"]);
    assert_eq!(vault.snapshots().len(), 2);
    let _ = first;
}

#[test]
fn the_remote_replicates_a_tenant_on_to_a_secondary_vault_without_the_key() {
    let pki = Pki::new();
    let primary = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let secondary = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let cert = pki.client("acme");
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 200, 500..60_000, 0.5, 41);
    let snap = vault.backup(&[&src]);
    let url1 = format!("tiervault://127.0.0.1:{}", primary.addr().port());
    replicate(&vault, &url1, &pki, &cert);

    // On the primary, without any key: the tenant's directory is the source.
    let url2 = format!("tiervault://127.0.0.1:{}", secondary.addr().port());
    let mut cmd = std::process::Command::new(common::vaultctl());
    cmd.arg("--vault")
        .arg(primary.tenant_dir("acme"))
        .args(["--json", "replicate", "--to", &url2])
        .args(cert.tls_args(&pki))
        .env_remove("VAULT_PASSPHRASE");
    let out = cmd.output().expect("vaultctl");
    assert!(
        out.status.success(),
        "chained replication: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = vault.scratch("restored");
    let copy = vault.at(secondary.tenant_dir("acme"));
    copy.expect(0, ["verify"]);
    copy.restore(&snap_id(&snap), &target);
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn the_remote_applies_its_own_keep_rules_without_keys_but_never_inside_the_lock() {
    let pki = Pki::new();
    let server = RemoteServer::start(
        &pki,
        &[
            TenantConf::new("acme").keep("last = 1"),
            TenantConf::new("globex").keep("last = 1").retention("30d"),
        ],
    );
    let url = format!("tiervault://127.0.0.1:{}", server.addr().port());
    for tenant in ["acme", "globex"] {
        let cert = pki.client(tenant);
        let vault = Vault::new();
        let src = vault.scratch("src");
        let mut last = None;
        for round in 0..3u64 {
            tree::bulk_files(
                &src.join(format!("r{round}")),
                40,
                500..30_000,
                0.5,
                60 + round,
            );
            last = Some(vault.backup(&[&src]));
        }
        replicate(&vault, &url, &pki, &cert);
        let out = server.operator("prune", &["--tenant", tenant]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "prune {tenant}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let forgotten = text.lines().filter(|l| l.starts_with("forgot")).count();
        let left = fs::read_dir(server.tenant_dir(tenant).join("snapshots"))
            .expect("snapshots")
            .count();
        eprintln!("{tenant}: forgot {forgotten}, {left} left");
        if tenant == "acme" {
            assert_eq!((forgotten, left), (2, 1));
            let remote = vault.at(server.tenant_dir(tenant));
            remote.expect(0, ["verify"]);
            let target = vault.scratch("restored");
            remote.restore(&snap_id(last.as_ref().expect("a backup")), &target);
            assert_same_tree(&src, &target.join("src"));
        } else {
            assert_eq!(
                (forgotten, left),
                (0, 3),
                "retention-locked snapshots were forgotten"
            );
        }
    }
}
