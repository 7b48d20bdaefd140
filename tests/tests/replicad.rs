//! `vault-replicad` runs by itself: it catches up at start, replicates each new snapshot as it
//! commits, and `vaultctl replication status` reports the lag while it is stopped.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::cli::workspace_bin;
use common::remote::{Pki, RemoteServer, TenantConf};
use common::{tree, Vault};

fn replicad() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("VAULT_REPLICAD_BIN", "tiervault-replicad", "vault-replicad"))
}

fn snapshots_in(dir: &Path) -> usize {
    fs::read_dir(dir.join("snapshots")).map_or(0, |rd| rd.count())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(config: &Path, log: &Path) -> Child {
    Command::new(replicad())
        .arg("--config")
        .arg(config)
        .env("REPLICAD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).expect("log file"))
        .spawn()
        .expect("starting vault-replicad")
}

fn stop(mut child: Child) {
    // SIGTERM: the service finishes its current step and exits cleanly.
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::Term).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "vault-replicad exited with {status}");
}

#[test]
fn the_service_catches_up_at_start_follows_new_snapshots_and_reports_lag() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let cert = pki.client("acme");
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 100, 1000..50_000, 0.5, 21);
    vault.backup(&[&src]);
    tree::bulk_files(&src.join("more"), 50, 1000..50_000, 0.5, 22);
    vault.backup(&[&src]);

    let before = vault.json(0, ["replication", "status"]);
    assert_eq!(before["pending_snapshots"], 2, "{before}");
    assert!(
        before["pending_bytes"].as_u64().unwrap_or(0) > 100_000,
        "{before}"
    );

    let config = vault.scratch("replicad.toml");
    fs::write(
        &config,
        format!(
            "version = 1\nvault = {:?}\nto = \"tiervault://127.0.0.1:{}\"\nca = {:?}\ncert = {:?}\nkey = {:?}\npoll-seconds = 1\nretry-seconds = 1\n",
            vault.dir,
            server.addr().port(),
            pki.ca_pem(),
            cert.cert,
            cert.key
        ),
    )
    .expect("config");
    let log = vault.scratch("replicad.log");
    let tenant = server.tenant_dir("acme");
    let svc = start(&config, &log);
    wait_for("the catch-up at start", Duration::from_secs(60), || {
        snapshots_in(&tenant) == 2
    });
    // A new snapshot is replicated without anyone asking.
    tree::bulk_files(&src.join("third"), 30, 1000..50_000, 0.5, 23);
    vault.backup(&[&src]);
    wait_for("the new snapshot", Duration::from_secs(60), || {
        snapshots_in(&tenant) == 3
    });
    wait_for("the status to say so", Duration::from_secs(10), || {
        vault.json(0, ["replication", "status"])["pending_snapshots"] == 0
    });
    stop(svc);

    // While it is stopped, the lag shows.
    tree::bulk_files(&src.join("fourth"), 30, 1000..50_000, 0.5, 24);
    vault.backup(&[&src]);
    let lag = vault.json(0, ["replication", "status"]);
    eprintln!("while stopped: {lag}");
    assert_eq!(lag["pending_snapshots"], 1, "{lag}");
    assert!(lag["pending_bytes"].as_u64().unwrap_or(0) > 10_000, "{lag}");
    assert!(lag["oldest_pending_age_s"].as_f64().is_some(), "{lag}");
    assert!(lag["last_success"].is_string(), "{lag}");

    let svc = start(&config, &log);
    wait_for(
        "the catch-up after restart",
        Duration::from_secs(60),
        || snapshots_in(&tenant) == 4,
    );
    stop(svc);
    let after = vault.json(0, ["replication", "status"]);
    assert_eq!(after["pending_snapshots"], 0, "{after}");
    vault.at(tenant).expect(0, ["verify"]);
}
