//! Kill the replicator, and separately the remote server, at random moments of a transfer;
//! restart; the transfer finishes, little is sent twice (at most what was in flight when the
//! process died), and the remote's copy verifies and restores.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::cli::snap_id;
use common::remote::{ClientCert, Pki, RemoteServer, TenantConf};
use common::{assert_same_tree, fsx, tree, Vault};
use tiervault_e2e::proxy::{Proxy, ProxyOptions};
use tiervault_e2e::rng::Rng;

const KILLS: usize = 10;
/// In-flight window of these runs: what one kill may force us to send again.
const WINDOW_MIB: u64 = 1;
/// Slow enough that the kills land mid-transfer (the data takes ~3 s).
const LIMIT: &str = "20MB/s";

fn spawn(vault: &Vault, url: &str, pki: &Pki, cert: &ClientCert) -> Child {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--json".into(),
        "replicate".into(),
        "--to".into(),
        url.into(),
        "--window-mib".into(),
        WINDOW_MIB.to_string().into(),
        "--limit".into(),
        LIMIT.into(),
    ];
    args.extend(cert.tls_args(pki));
    vault
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning vaultctl replicate")
}

fn dataset(vault: &Vault) -> (std::path::PathBuf, String, u64) {
    let src = vault.scratch("src");
    // Mostly incompressible: stored bytes ≈ 60 MB.
    tree::bulk_files(&src, 240, 150_000..350_000, 0.9, 5);
    let snap = vault.backup(&[&src]);
    let stored = fsx::file_bytes(&vault.dir.join("data"));
    (src, snap_id(&snap), stored)
}

fn check_remote(vault: &Vault, server: &RemoteServer, src: &std::path::Path, snap: &str) {
    let remote = vault.at(server.tenant_dir("acme"));
    remote.expect(0, ["verify"]);
    let target = vault.scratch(&format!("restored-{}", rand_suffix()));
    remote.restore(snap, &target);
    assert_same_tree(src, &target.join("src"));
}

/// Bytes under `dir`, 0 while it does not exist yet.
fn bytes_under(dir: &std::path::Path) -> u64 {
    if dir.exists() {
        fsx::file_bytes(dir)
    } else {
        0
    }
}

fn rand_suffix() -> u64 {
    Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64
}

#[test]
fn killing_the_replicator_resends_at_most_what_was_in_flight() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let proxy = Proxy::start(server.addr(), ProxyOptions::default()).expect("proxy");
    let url = format!("tiervault://127.0.0.1:{}", proxy.addr().port());
    let cert = pki.client("acme");
    let vault = Vault::new();
    let (src, snap, stored) = dataset(&vault);
    let mut rng = Rng::new(0x5eed);
    let mut mid = 0;
    for k in 0..KILLS {
        let before = bytes_under(&server.tenant_dir("acme"));
        let mut child = spawn(&vault, &url, &pki, &cert);
        std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
        let finished = child.try_wait().expect("try_wait").is_some();
        let _ = child.kill();
        let _ = child.wait();
        let after = bytes_under(&server.tenant_dir("acme"));
        eprintln!(
            "kill {k}: remote grew {before} → {after} bytes{}",
            if finished { " (had finished)" } else { "" }
        );
        if !finished && after < stored {
            mid += 1;
        }
    }
    assert!(mid >= KILLS / 2, "only {mid} kills landed mid-transfer");
    let out = spawn(&vault, &url, &pki, &cert)
        .wait_with_output()
        .expect("final run");
    assert!(
        out.status.success(),
        "final replication: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = proxy.bytes_up();
    // Every attempt opens a TLS session and asks about every id once: allow for that too.
    let allowance = (KILLS as u64 + 1) * ((WINDOW_MIB + 1) << 20);
    eprintln!(
        "{KILLS} kills ({mid} mid-transfer): {up} bytes sent in all for {stored} stored bytes; resent {} (allowed {allowance})",
        up.saturating_sub(stored)
    );
    assert!(
        up <= stored + allowance,
        "sent {up} bytes for {stored}: more than the in-flight window was resent"
    );
    check_remote(&vault, &server, &src, &snap);
}

#[test]
fn killing_the_server_loses_only_unacknowledged_blobs() {
    let pki = Pki::new();
    let mut server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let cert = pki.client("acme");
    let vault = Vault::new();
    let (src, snap, stored) = dataset(&vault);
    let mut rng = Rng::new(0xdead);
    let mut up = 0u64;
    let mut mid = 0;
    let mut done = false;
    for k in 0..KILLS {
        let proxy = Proxy::start(server.addr(), ProxyOptions::default()).expect("proxy");
        let url = format!("tiervault://127.0.0.1:{}", proxy.addr().port());
        let t0 = Instant::now();
        let child = spawn(&vault, &url, &pki, &cert);
        std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
        server.kill();
        let out = child.wait_with_output().expect("replicator");
        up += proxy.bytes_up();
        let on_disk = bytes_under(&server.tenant_dir("acme"));
        eprintln!(
            "server kill {k}: replicator exit {:?} after {:?}; remote holds {on_disk} bytes",
            out.status.code(),
            t0.elapsed()
        );
        if out.status.success() {
            done = true;
        } else {
            mid += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("connection") || err.contains("closed") || err.contains("refused"),
                "unclear error after the server died: {err}"
            );
        }
        server.restart();
    }
    assert!(mid >= KILLS / 2, "only {mid} kills landed mid-transfer");
    let proxy = Proxy::start(server.addr(), ProxyOptions::default()).expect("proxy");
    let url = format!("tiervault://127.0.0.1:{}", proxy.addr().port());
    let out = spawn(&vault, &url, &pki, &cert)
        .wait_with_output()
        .expect("final run");
    assert!(
        out.status.success(),
        "final replication: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    up += proxy.bytes_up();
    let allowance = (KILLS as u64 + 1) * ((WINDOW_MIB + 1) << 20);
    eprintln!(
        "{KILLS} server kills ({mid} mid-transfer, finished early: {done}): {up} bytes sent for {stored}; resent {} (allowed {allowance})",
        up.saturating_sub(stored)
    );
    assert!(up <= stored + allowance, "sent {up} bytes for {stored}");
    check_remote(&vault, &server, &src, &snap);
}
