//! Tier 2: the replication service on a private system bus with the project's bus policy,
//! driven by `busctl` and `gdbus` as root and as users in (and out of) the groups the policy
//! names: introspection against the checked-in API, the target's properties following the
//! runs, ReplicateNow with its PropertiesChanged, access control and the audit log.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bus::{self, busctl, gdbus, json_data, stderr, Bus, GUEST, SUPPORT};
use common::Vault;
use serde_json::Value;

const NAME: &str = "org.tiervault.Replication1";
const ROOT: &str = "/org/tiervault/Replication1";
const TARGET: &str = "/org/tiervault/Replication1/targets/0";
const IFACE: &str = "org.tiervault.Replication1.Target";

struct Fixture {
    vault: Vault,
    src: PathBuf,
    bus: Bus,
    replicad: Child,
    log: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.replicad.kill();
        let _ = self.replicad.wait();
    }
}

/// A vault with one snapshot, the bus, and vault-replicad on it replicating to a directory
/// with a poll interval of an hour: after its first run, only ReplicateNow makes it run.
fn fixture() -> Option<Fixture> {
    if let Some(why) = bus::missing() {
        common::skip(&why);
        return None;
    }
    bus::ensure_users();
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir_all(&src).expect("src");
    fs::write(src.join("a.txt"), b"the first file").expect("file");
    vault.backup(&[&src]);
    let replica = vault.scratch("replica");
    let config = vault.scratch("replicad.toml");
    fs::write(
        &config,
        format!(
            "version = 1\nvault = {:?}\nto = {:?}\npoll-seconds = 3600\nretry-seconds = 3600\n",
            vault.dir, replica
        ),
    )
    .expect("replicad.toml");
    let bus = Bus::start();
    let log = vault.scratch("replicad.log");
    let bin =
        common::cli::workspace_bin("VAULT_REPLICAD_BIN", "tiervault-replicad", "vault-replicad");
    let replicad = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&bus.address)
        .env("REPLICAD_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("vault-replicad");
    let mut f = Fixture {
        vault,
        src,
        bus,
        replicad,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if bus::has_owner(&f.bus.address, NAME) {
            return Some(f);
        }
        if let Ok(Some(st)) = f.replicad.try_wait() {
            panic!("vault-replicad exited ({st}):\n{}", f.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "vault-replicad did not take its name:\n{}",
            f.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Fixture {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A property of the target, read as root.
    fn get(&self, prop: &str) -> Value {
        json_data(&busctl(
            &self.bus.address,
            None,
            &["--json=short", "get-property", NAME, TARGET, IFACE, prop],
        ))
    }

    /// Waits until `(SnapshotsOnTarget, SnapshotsBehind)` is `want`.
    fn wait_counts(&self, want: (u64, u64), limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let on = self.get("SnapshotsOnTarget").as_u64().unwrap_or(0);
            let behind = self.get("SnapshotsBehind").as_u64().unwrap_or(0);
            if (on, behind) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "(on target, behind) is {:?}, not {want:?} after {limit:?}:\n{}",
                (on, behind),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn support_sees_the_lag_and_replicates_now() {
    let Some(f) = fixture() else { return };
    let a = f.bus.address.as_str();

    let out = busctl(a, None, &["introspect", NAME, TARGET]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for member in [".ReplicateNow", ".SnapshotsBehind", ".State", ".LastError"] {
        assert!(text.contains(member), "no {member}:\n{text}");
    }
    let out = busctl(a, None, &["introspect", NAME, ROOT]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("org.freedesktop.DBus.ObjectManager"),
        "no ObjectManager at {ROOT}"
    );

    // The first run, at start.
    f.wait_counts((1, 0), Duration::from_secs(120));
    let replica = f.vault.scratch("replica");
    assert_eq!(
        f.get("Target").as_str(),
        Some(replica.to_str().expect("utf-8"))
    );
    assert_eq!(f.get("LastError"), "");
    assert_eq!(f.get("State"), "idle");
    let first_success = f.get("LastSuccess").as_u64().expect("t");
    assert!(first_success > 0);
    assert!(f.get("LastAttempt").as_u64().expect("t") > 0);

    // A second snapshot: behind by one, and no run for it within the hour's poll.
    fs::write(f.src.join("b.txt"), b"after the first replication").expect("file");
    f.vault.backup(&[&f.src]);
    f.wait_counts((1, 1), Duration::from_secs(10));

    let monitor = bus::Monitor::start(a, NAME);

    // Not for everyone.
    let replicate_now = |user| {
        gdbus(
            a,
            Some(user),
            &[
                "call",
                "--dest",
                NAME,
                "--object-path",
                TARGET,
                "--method",
                &format!("{IFACE}.ReplicateNow"),
            ],
        )
    };
    let out = replicate_now(GUEST.0);
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = busctl(
        a,
        Some(GUEST.0),
        &["get-property", NAME, TARGET, IFACE, "SnapshotsBehind"],
    );
    assert!(
        stderr(&out).contains("Access denied") || stderr(&out).contains("AccessDenied"),
        "{}",
        stderr(&out)
    );
    f.wait_counts((1, 1), Duration::from_secs(1));

    // Support may.
    let out = replicate_now(SUPPORT.0);
    assert!(out.status.success(), "{}", stderr(&out));
    f.wait_counts((2, 0), Duration::from_secs(60));
    assert!(f.get("LastSuccess").as_u64().expect("t") > first_success);
    assert_eq!(f.get("State"), "idle");
    let out = busctl(
        a,
        Some(SUPPORT.0),
        &["--json=short", "get-property", NAME, TARGET, IFACE, "State"],
    );
    assert_eq!(json_data(&out), "idle");

    let signals = monitor.finish(Duration::from_millis(1500));
    assert!(
        signals.contains(&format!(
            "{TARGET}: org.freedesktop.DBus.Properties.PropertiesChanged ('{IFACE}'"
        )),
        "no PropertiesChanged for the target:\n{signals}"
    );
    assert!(
        signals.contains("'SnapshotsOnTarget'"),
        "the new count was not announced:\n{signals}"
    );

    // The audit log names the caller; the guest's call never reached the service.
    let audit = fs::read_to_string(f.vault.dir.join("replication/audit.log")).expect("audit");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{audit}");
    assert_eq!(lines[0]["user"], SUPPORT.0);
    assert_eq!(lines[0]["member"], "ReplicateNow");
    assert_eq!(lines[0]["ok"], true);
}

#[test]
fn introspection_matches_the_checked_in_api() {
    let Some(f) = fixture() else { return };
    let a = f.bus.address.as_str();
    let objects = [ROOT.to_string(), TARGET.to_string()];
    // The ingest service's files are checked by dbus_ingest.rs.
    let seen = bus::check_introspection(a, NAME, &objects, |f| f.starts_with(NAME));
    assert_eq!(seen, [IFACE]);
}
