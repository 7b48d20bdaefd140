//! Tier 2: the replication service on a private system bus with the project's bus policy,
//! driven by `busctl` and `gdbus` as root and as users in (and out of) the groups the policy
//! names: introspection against the checked-in API, the target's properties following the
//! runs, ReplicateNow with its PropertiesChanged, access control and the audit log; the
//! replication alerts (lag over a threshold, failing attempts) raised while the target is
//! down, acknowledged, and cleared when it catches up.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bus::{self, busctl, gdbus, json_data, stderr, Bus, ADMIN, GUEST, SUPPORT};
use common::Vault;
use serde_json::Value;

const NAME: &str = "org.tiervault.Replication1";
const ROOT: &str = "/org/tiervault/Replication1";
const TARGET: &str = "/org/tiervault/Replication1/targets/0";
const IFACE: &str = "org.tiervault.Replication1.Target";
const ALERT: &str = "org.tiervault.Alert1";

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
    fixture_with(
        |vault| vault.scratch("replica"),
        "poll-seconds = 3600\nretry-seconds = 3600\n",
    )
}

/// As [`fixture`], replicating to `to(&vault)` with `settings` (TOML lines) in the config.
fn fixture_with(to: impl FnOnce(&Vault) -> PathBuf, settings: &str) -> Option<Fixture> {
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
    let replica = to(&vault);
    let config = vault.scratch("replicad.toml");
    fs::write(
        &config,
        format!(
            "version = 1\nvault = {:?}\nto = {:?}\n{settings}",
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

    /// Every alert object: path → property → value, as root.
    fn alerts(&self) -> BTreeMap<String, BTreeMap<String, Value>> {
        common::bus::managed_objects(&self.bus.address, NAME, ROOT)
            .into_iter()
            .filter_map(|(path, mut ifaces)| ifaces.remove(ALERT).map(|p| (path, p)))
            .collect()
    }

    /// Waits until an alert of `class` satisfies `ok`; returns its path and properties.
    fn wait_alert(
        &self,
        class: &str,
        limit: Duration,
        ok: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> (String, BTreeMap<String, Value>) {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.alerts();
            if let Some((p, a)) = all
                .iter()
                .find(|(_, a)| a.get("Class").and_then(Value::as_str) == Some(class) && ok(a))
            {
                return (p.clone(), a.clone());
            }
            assert!(
                Instant::now() < deadline,
                "no {class} alert as expected after {limit:?}: {all:#?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The alerts file: class → the alert's JSON, for the latest alert of each class.
    fn alerts_file(&self) -> BTreeMap<String, Value> {
        let text = fs::read_to_string(self.vault.dir.join("replication/alerts.json"))
            .expect("replication/alerts.json");
        let doc: Value = serde_json::from_str(&text).expect("json");
        let mut by_class = BTreeMap::new();
        for a in doc["alerts"].as_array().expect("alerts") {
            by_class.insert(a["class"].as_str().expect("class").to_string(), a.clone());
        }
        by_class
    }
}

fn active(a: &BTreeMap<String, Value>) -> bool {
    a.get("Active").and_then(Value::as_bool) == Some(true)
}

fn severity(a: &BTreeMap<String, Value>) -> u64 {
    a.get("Severity").and_then(Value::as_u64).unwrap_or(0)
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
        bus::call_as(
            a,
            Some(user),
            NAME,
            TARGET,
            &format!("{IFACE}.ReplicateNow"),
            &[],
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

/// The target is down (its parent is a file) and the snapshot older than the thresholds
/// (3 s): replication.lag (7, then 8 at three times the threshold) and replication.failing
/// (7) are raised, on the bus and in replication/alerts.json; an administrator acknowledges,
/// support may not; the target comes back, ReplicateNow catches up, and both alerts clear.
#[test]
fn a_target_down_raises_lag_and_failing_alerts_that_catching_up_clears() {
    let Some(f) = fixture_with(
        |vault| {
            let blocker = vault.scratch("blocker");
            fs::write(&blocker, b"not a directory").expect("blocker");
            blocker.join("replica")
        },
        "poll-seconds = 3600\nretry-seconds = 3600\n\
         lag-alert-minutes = 0.05\nfailing-alert-minutes = 0.05\n",
    ) else {
        return;
    };
    let a = f.bus.address.as_str();
    let target = f.vault.scratch("blocker").join("replica");
    let target = target.to_str().expect("utf-8");

    let (lag_path, lag) = f.wait_alert("replication.lag", Duration::from_secs(60), active);
    assert!(severity(&lag) == 7 || severity(&lag) == 8, "{lag:?}");
    assert_eq!(lag["Key"], target);
    assert_eq!(lag["Source"], "replicad");
    assert_eq!(lag["Priority"], "P2");
    let summary = lag["Summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(target) && summary.contains("1 snapshot(s)"),
        "{summary}"
    );
    let (fail_path, failing) = f.wait_alert("replication.failing", Duration::from_secs(60), active);
    assert_eq!(severity(&failing), 7);
    assert!(
        failing["Detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Last success: never"),
        "{failing:?}"
    );
    assert_eq!(f.get("State"), "retrying");
    // Older than three times the threshold: the lag rises to 8.
    f.wait_alert("replication.lag", Duration::from_secs(60), |a| {
        active(a) && severity(a) == 8
    });

    // Also in the alerts file, which vault-healthd relays.
    let file = f.alerts_file();
    assert_eq!(file["replication.lag"]["source"], "replicad");
    assert_eq!(file["replication.lag"]["severity"], 8);
    assert_eq!(file["replication.lag"]["key"], target);
    assert!(file["replication.lag"]["cleared_ns"].is_null());
    assert!(file["replication.failing"]["cleared_ns"].is_null());

    // Support reads alerts but may not acknowledge them; an administrator may.
    let acknowledge = |user| {
        let method = format!("{ALERT}.Acknowledge");
        bus::call_as(
            a,
            Some(user),
            NAME,
            &lag_path,
            &method,
            &["seen, link down"],
        )
    };
    let out = busctl(
        a,
        Some(SUPPORT.0),
        &[
            "--json=short",
            "get-property",
            NAME,
            &lag_path,
            ALERT,
            "Class",
        ],
    );
    assert_eq!(json_data(&out), "replication.lag");
    let out = acknowledge(SUPPORT.0);
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = acknowledge(ADMIN.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, acked) = f.wait_alert("replication.lag", Duration::from_secs(10), |a| {
        a.get("Acknowledged").and_then(Value::as_bool) == Some(true)
    });
    assert_eq!(acked["AcknowledgeComment"], "seen, link down");

    // The target comes back; support asks for a run instead of waiting out the retry.
    fs::remove_file(f.vault.scratch("blocker")).expect("unblock");
    let out = gdbus(
        a,
        Some(SUPPORT.0),
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            TARGET,
            "--method",
            &format!("{IFACE}.ReplicateNow"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    f.wait_counts((1, 0), Duration::from_secs(60));
    let cleared = |a: &BTreeMap<String, Value>| {
        !active(a) && a.get("Cleared").and_then(Value::as_u64).unwrap_or(0) > 0
    };
    let (p, _) = f.wait_alert("replication.lag", Duration::from_secs(10), cleared);
    assert_eq!(p, lag_path, "the same alert object, cleared");
    let (p, _) = f.wait_alert("replication.failing", Duration::from_secs(10), cleared);
    assert_eq!(p, fail_path);
    let file = f.alerts_file();
    assert!(file["replication.lag"]["cleared_ns"].is_i64(), "{file:?}");
    assert!(
        file["replication.failing"]["cleared_ns"].is_i64(),
        "{file:?}"
    );
    assert!(f.alerts().values().all(|a| !active(a)));

    // The status file carries the lag for the other services: caught up.
    let status: Value = serde_json::from_slice(
        &fs::read(f.vault.dir.join("replication/status.json")).expect("status"),
    )
    .expect("json");
    assert_eq!(status["pending_snapshots"], 0, "{status}");
    assert!(status["lag_computed_ns"].is_i64(), "{status}");
    assert!(status["failing_since_ns"].is_null(), "{status}");

    // The acknowledgement is audited with the administrator's name.
    let audit = fs::read_to_string(f.vault.dir.join("replication/audit.log")).expect("audit");
    let acks: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|l| l["member"] == "Acknowledge")
        .collect();
    assert_eq!(acks.len(), 1, "{audit}");
    assert_eq!(acks[0]["user"], ADMIN.0);

    // An alert object matches the checked-in Alert1 API (shared with the other services).
    let seen = bus::check_introspection(a, NAME, std::slice::from_ref(&lag_path), |_| false);
    assert_eq!(seen, [ALERT]);
}
