//! Tier 2: the disk-pool service `vault-poold` (the real binary) on a private system bus with
//! the project's bus policy, on a fake machine: the tier-test pool (three assembled md arrays,
//! twelve disks) laid out as sysfs, /dev and /proc files (common/fakemd.rs), which the tests
//! rewrite the way the kernel does. The host kernel has no md; the real md behaviour is
//! tested in the tier-3 VM. Here: the objects and their introspection against docs/dbus/,
//! state changes announced with PropertiesChanged and the alerts they raise and clear (a
//! rebuild onto the spare, a RAID5 losing two members, a filling file system), the methods
//! with their named errors, access control, the audit log, and SIGTERM.
//!
//! The service notices changes of these regular files by its rescan (once a second here; md
//! sysfs attributes would also wake it through poll()), so the delays printed below are that
//! period plus the time to read the tree and publish.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::bus::{self, busctl, gdbus, json_data, stderr, Bus, ADMIN, GUEST, SUPPORT};
use common::fakemd::{FakeMachine, SYNC_SECTORS};
use serde_json::Value;

const NAME: &str = "org.tiervault.Pools1";
const ROOT: &str = "/org/tiervault/Pools1";
const MANAGER: &str = "org.tiervault.Pools1.Manager";
const ARRAY: &str = "org.tiervault.Pools1.Array";
const DISK: &str = "org.tiervault.Pools1.Disk";
const ALERT: &str = "org.tiervault.Alert1";

/// How long a change may take to show on the bus: a rescan period (1 s) and a generous
/// margin for a loaded test machine.
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

fn poold() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        common::cli::workspace_bin("VAULT_POOLD_BIN", "tiervault-poold", "vault-poold")
    })
}

/// An object path element as tiervault-bus makes it (`vault-data0` → `vault_2ddata0`).
fn path_element(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect()
}

fn array_path(name: &str) -> String {
    format!("{ROOT}/arrays/{}", path_element(name))
}

fn disk_path(serial: &str) -> String {
    format!("{ROOT}/disks/{}", path_element(serial))
}

/// The fake machine, the bus and vault-poold on it.
struct Fixture {
    machine: FakeMachine,
    bus: Bus,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- vault-poold log\n{}", self.log_text());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn fixture() -> Option<Fixture> {
    if let Some(why) = bus::missing() {
        eprintln!("SKIP dbus_poold: {why}");
        common::skip(&why);
        return None;
    }
    bus::ensure_users();
    let bin = poold();
    let bus = Bus::start();
    let machine = FakeMachine::tier_test(&bus.address);
    let log = machine.dir.path().join("poold.log");
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&machine.config)
        .env("POOLD_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("vault-poold");
    let mut f = Fixture {
        machine,
        bus,
        child: Some(child),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if bus::has_owner(&f.bus.address, NAME) {
            eprintln!(
                "vault-poold took {NAME} {} ms after its start",
                started.elapsed().as_millis()
            );
            return Some(f);
        }
        if let Some(Ok(Some(st))) = f.child.as_mut().map(|c| c.try_wait()) {
            panic!("vault-poold exited ({st}):\n{}", f.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "vault-poold did not take its name:\n{}",
            f.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An alert object as GetManagedObjects lists it.
#[derive(Debug, Clone)]
struct AlertInfo {
    path: String,
    class: String,
    key: String,
    severity: u64,
    active: bool,
    summary: String,
    detail: String,
}

impl Fixture {
    fn addr(&self) -> &str {
        &self.bus.address
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A property, read as root.
    fn get(&self, path: &str, iface: &str, prop: &str) -> Value {
        let out = busctl(
            self.addr(),
            None,
            &["--json=short", "get-property", NAME, path, iface, prop],
        );
        assert!(
            out.status.success(),
            "get {path} {prop}: {}\n{}",
            stderr(&out),
            self.log_text()
        );
        json_data(&out)
    }

    fn array(&self, name: &str, prop: &str) -> Value {
        self.get(&array_path(name), ARRAY, prop)
    }

    /// Path → interface → property → value, as root.
    fn objects(&self) -> bus::Objects {
        bus::managed_objects(self.addr(), NAME, ROOT)
    }

    fn alerts(&self) -> Vec<AlertInfo> {
        self.objects()
            .into_iter()
            .filter_map(|(path, ifaces)| {
                let p = ifaces.get(ALERT)?;
                let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                Some(AlertInfo {
                    path,
                    class: s("Class"),
                    key: s("Key"),
                    severity: p["Severity"].as_u64().unwrap_or(0),
                    active: p["Active"].as_bool().unwrap_or(false),
                    summary: s("Summary"),
                    detail: s("Detail"),
                })
            })
            .collect()
    }

    /// Waits until the active alert of (class, key) exists and `ok` holds for it.
    fn wait_alert(
        &self,
        class: &str,
        key: &str,
        ok: impl Fn(&AlertInfo) -> bool,
        since: Instant,
    ) -> AlertInfo {
        let (a, _) = self.wait_for(&format!("alert {class} {key}"), || {
            self.alerts()
                .into_iter()
                .find(|a| a.class == class && a.key == key && a.active && ok(a))
        });
        eprintln!(
            "alert {class} {key} severity {} on the bus {} ms after the change: {}",
            a.severity,
            since.elapsed().as_millis(),
            a.summary
        );
        a
    }

    /// Polls `f` until it answers; panics with the service's log after [`SHOWS_WITHIN`].
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return (v, start.elapsed());
            }
            assert!(
                start.elapsed() < SHOWS_WITHIN,
                "{what}: not seen within {SHOWS_WITHIN:?}; alerts: {:#?}\n--- vault-poold log\n{}",
                self.alerts(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until property `prop` of `path` is `want`.
    fn wait_prop(&self, path: &str, iface: &str, prop: &str, want: Value) -> Duration {
        self.wait_for(&format!("{path} {prop} = {want}"), || {
            (self.get(path, iface, prop) == want).then_some(())
        })
        .1
    }

    /// A Manager method through gdbus (which prints the D-Bus error's name), as `user`.
    fn call(&self, user: Option<&str>, method: &str, args: &[&str]) -> Output {
        let m = format!("{MANAGER}.{method}");
        let mut a = vec![
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            m.as_str(),
        ];
        a.extend_from_slice(args);
        gdbus(self.addr(), user, &a)
    }

    fn audit(&self) -> Vec<Value> {
        let path = self.machine.state_dir.join("audit.log");
        fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
            .collect()
    }

    /// SIGTERM; the exit status and how long the stop took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut c = self.child.take().expect("running");
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return (st, start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("vault-poold ignored SIGTERM for 30 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `gdbus monitor` of the service's signals, read as they come, each line with the time it
/// arrived.
struct Signals {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Signals {
    fn start(address: &str) -> Signals {
        let mut child = Command::new("gdbus")
            .args(["monitor", "--address", address, "--dest", NAME])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gdbus monitor");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line));
            }
        });
        let s = Signals { child, lines };
        // gdbus subscribes once it has found the name's owner, which it then prints.
        let start = Instant::now();
        while !s.text().contains("is owned by") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "gdbus monitor did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        s
    }

    fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The values announced by PropertiesChanged for `iface` on `path` since `since`,
    /// merged (later values win), as gdbus prints them (`'rebuilding'`, `25.0`, `uint64 7`);
    /// and when the last of them arrived.
    fn merged(
        &self,
        path: &str,
        iface: &str,
        since: Instant,
    ) -> (BTreeMap<String, String>, Option<Instant>) {
        let head =
            format!("{path}: org.freedesktop.DBus.Properties.PropertiesChanged ('{iface}', {{");
        let mut out = BTreeMap::new();
        let mut last = None;
        for (t, line) in self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if *t < since {
                continue;
            }
            let Some(rest) = line.strip_prefix(&head) else {
                continue;
            };
            for (k, v) in gvariant_dict(rest) {
                out.insert(k, v);
            }
            last = Some(*t);
        }
        (out, last)
    }

    /// Waits until the merged announcements of `path` satisfy `ok`; returns when the
    /// announcement that completed them arrived.
    fn wait(
        &self,
        path: &str,
        iface: &str,
        since: Instant,
        ok: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> (BTreeMap<String, String>, Instant) {
        loop {
            let (m, last) = self.merged(path, iface, since);
            if let (true, Some(t)) = (ok(&m), last) {
                return (m, t);
            }
            assert!(
                since.elapsed() < SHOWS_WITHIN,
                "no PropertiesChanged of {path} completing the change within {SHOWS_WITHIN:?}; merged {m:?}; signals:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entries of a GVariant text dictionary `'Name': <value>, ...}` (gdbus's printing) up to
/// its closing brace; values as printed. Enough for the flat values of the pool's objects.
fn gvariant_dict(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.strip_prefix('\'') {
        let Some(end) = start.find('\'') else { break };
        let key = &start[..end];
        let Some(value) = start[end + 1..].strip_prefix(": <") else {
            break;
        };
        // The value ends at the `>` that closes it (strings may hold `>` and quotes).
        let (mut depth, mut quoted, mut close) = (1, false, None);
        for (i, c) in value.char_indices() {
            match c {
                '\'' => quoted = !quoted,
                '<' if !quoted => depth += 1,
                '>' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { break };
        out.push((key.to_string(), value[..close].to_string()));
        rest = value[close + 1..].trim_start_matches([',', ' ']);
    }
    out
}

/// A number as gdbus prints it (`25.0`, `uint64 151`, `-1`).
fn gnum(v: Option<&String>) -> Option<f64> {
    v?.rsplit(' ').next()?.parse().ok()
}

/// The `vaultctl` binary when it builds now (others are editing it), else why not.
fn vaultctl_if_it_builds() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VAULTCTL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let workspace = bus::repo_root();
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "vaultctl", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"));
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo build failed");
        return Err(format!("`cargo build -p vaultctl` failed: {first}"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| workspace.join(d))
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("vaultctl"))
}

/// Start: the name, the checked-in API, every array and disk with the plan's values, the
/// whole status as JSON (also through `vaultctl pool status --bus`).
#[test]
fn lists_the_pool_as_the_kernel_shows_it() {
    let Some(f) = fixture() else { return };
    let a = f.addr();

    let objects = [
        ROOT.to_string(),
        array_path("vault-data0"),
        disk_path("VD1"),
    ];
    // The ingest and replication services' files are checked by their own tests.
    let seen = bus::check_introspection(a, NAME, &objects, |n| n.starts_with(NAME));
    assert_eq!(seen, [ARRAY, DISK, MANAGER]);
    let out = busctl(a, None, &["introspect", NAME, ROOT]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("org.freedesktop.DBus.ObjectManager"),
        "no ObjectManager at {ROOT}"
    );

    assert_eq!(f.get(ROOT, MANAGER, "Tier"), "tier-test");
    assert_eq!(f.get(ROOT, MANAGER, "State"), "healthy");

    let all = f.objects();
    let arrays: BTreeMap<&str, &BTreeMap<String, Value>> = all
        .iter()
        .filter_map(|(p, i)| Some((p.as_str(), i.get(ARRAY)?)))
        .collect();
    let disks: BTreeMap<&str, &BTreeMap<String, Value>> = all
        .iter()
        .filter_map(|(p, i)| Some((p.as_str(), i.get(DISK)?)))
        .collect();
    eprintln!(
        "GetManagedObjects: {} objects, {} arrays, {} disks",
        all.len(),
        arrays.len(),
        disks.len()
    );
    let others: Vec<&String> = all
        .iter()
        .filter(|(_, i)| !i.contains_key(ARRAY) && !i.contains_key(DISK))
        .map(|(p, _)| p)
        .collect();
    eprintln!("other objects: {others:?}");
    assert_eq!(arrays.len(), 3, "{arrays:#?}");
    for (name, dev, level, raid_disks) in [
        ("vault-ddb", "md127", "raid10", 4),
        ("vault-data0", "md126", "raid5", 3),
        ("vault-data1", "md125", "raid5", 3),
    ] {
        let p = arrays
            .get(array_path(name).as_str())
            .unwrap_or_else(|| panic!("no object for {name}: {arrays:#?}"));
        assert_eq!(p["Name"], name);
        assert_eq!(p["State"], "healthy", "{name}");
        assert_eq!(p["Level"], level, "{name}");
        assert_eq!(p["Device"], dev, "{name}");
        assert_eq!(p["RaidDisks"], raid_disks, "{name}");
        assert_eq!(p["Degraded"], 0, "{name}");
        assert_eq!(p["SyncAction"], "idle", "{name}");
        assert_eq!(p["SyncPercent"], -1.0, "{name}");
        assert_eq!(p["MountPoint"], "", "{name}");
        let size = f.machine.array(name).size_sectors() * 512;
        assert_eq!(p["Size"], size, "{name}");
    }
    assert_eq!(disks.len(), 12, "{disks:#?}");
    let mut want: Vec<(String, String, &str, &str, i64)> = Vec::new();
    for i in 0..4 {
        want.push((
            format!("NV{i}"),
            format!("nvme{i}n1"),
            "vault-ddb",
            "active",
            i,
        ));
    }
    want.push(("NV4".into(), "nvme4n1".into(), "vault-ddb", "spare", -1));
    for (i, dev) in ["vdb", "vdc", "vdd"].iter().enumerate() {
        want.push((
            format!("VD{i}"),
            dev.to_string(),
            "vault-data0",
            "active",
            i as i64,
        ));
    }
    for (i, dev) in ["vde", "vdf", "vdg"].iter().enumerate() {
        want.push((
            format!("VD{}", i + 3),
            dev.to_string(),
            "vault-data1",
            "active",
            i as i64,
        ));
    }
    // The shared data spare lives in the first array it serves.
    want.push(("VD6".into(), "vdh".into(), "vault-data0", "spare", -1));
    for (serial, dev, array, state, slot) in &want {
        let p = disks
            .get(disk_path(serial).as_str())
            .unwrap_or_else(|| panic!("no object for disk {serial}: {disks:#?}"));
        let got = (
            p["Serial"].clone(),
            p["Device"].clone(),
            p["Array"].clone(),
            p["State"].clone(),
            p["Slot"].clone(),
            p["Size"].clone(),
        );
        let expected = (
            Value::from(serial.as_str()),
            Value::from(dev.as_str()),
            Value::from(*array),
            Value::from(*state),
            Value::from(*slot),
            Value::from(common::fakemd::DISK_BYTES),
        );
        assert_eq!(got, expected, "disk {serial}");
    }
    assert!(f.alerts().is_empty(), "alerts at start: {:#?}", f.alerts());

    // The whole status as one JSON document.
    let out = busctl(
        a,
        None,
        &["--json=short", "call", NAME, ROOT, MANAGER, "Status"],
    );
    let text = json_data(&out)[0].as_str().expect("s").to_string();
    let status: Value = serde_json::from_str(&text).expect("Status is JSON");
    assert_eq!(status["tier"], "tier-test");
    assert_eq!(status["state"], "healthy");
    let states: Vec<(&str, &str)> = status["arrays"]
        .as_array()
        .expect("arrays")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default(),
                a["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("vault-ddb", "healthy"),
            ("vault-data0", "healthy"),
            ("vault-data1", "healthy")
        ]
    );
    assert_eq!(status["disks"].as_array().map(Vec::len), Some(12));

    match vaultctl_if_it_builds() {
        Ok(bin) => {
            let out = Command::new(&bin)
                .args(["pool", "status", "--bus", a, "--json"])
                .output()
                .expect("vaultctl");
            assert!(
                out.status.success(),
                "vaultctl pool status: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "vaultctl pool status --json: {e}: {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            });
            assert_eq!(printed, status, "vaultctl prints the service's status");
            eprintln!("vaultctl pool status --bus --json printed the service's Status");
        }
        Err(why) => eprintln!("SKIP the vaultctl part: {why}"),
    }
    // The fake machine reads without a complaint.
    let log = f.log_text();
    assert!(!log.contains("ERROR"), "{log}");
}

/// A member fails and the spare rebuilds: announced with PropertiesChanged, alerts raised,
/// then the rebuild ends: healthy, the degraded alert cleared, "rebuild finished" raised.
#[test]
fn a_failed_member_is_rebuilt_onto_the_spare() {
    let Some(f) = fixture() else { return };
    let m = &f.machine;
    let data0 = array_path("vault-data0");
    let signals = Signals::start(f.addr());

    // vdc (VD1, slot 1) fails; md recovers onto the spare vdh, a quarter done.
    let t0 = Instant::now();
    m.fail("vault-data0", "vdc");
    m.start_recovery("vault-data0", "vdc", "vdh", SYNC_SECTORS / 4, 640);
    let (seen, at) = signals.wait(&data0, ARRAY, t0, |p| {
        p.get("State").map(String::as_str) == Some("'rebuilding'")
            && gnum(p.get("SyncPercent")).is_some_and(|v| (v - 25.0).abs() < 0.5)
            && gnum(p.get("SyncEtaSeconds")).is_some_and(|v| v > 0.0)
    });
    eprintln!(
        "PropertiesChanged State=rebuilding SyncPercent={} SyncEtaSeconds={} {} ms after the change",
        seen["SyncPercent"],
        gnum(seen.get("SyncEtaSeconds")).unwrap_or(0.0),
        at.duration_since(t0).as_millis()
    );
    // 3/4 of the component at 640 KiB/s.
    let eta = (SYNC_SECTORS - SYNC_SECTORS / 4) * 512 / (640 * 1024);
    assert_eq!(f.array("vault-data0", "SyncEtaSeconds"), eta);
    assert_eq!(f.array("vault-data0", "SyncAction"), "recover");
    assert_eq!(f.array("vault-data0", "Degraded"), 1);
    assert_eq!(f.get(&disk_path("VD1"), DISK, "State"), "faulty");
    assert_eq!(f.get(&disk_path("VD1"), DISK, "Slot"), -1);
    assert_eq!(f.get(&disk_path("VD6"), DISK, "State"), "rebuilding");
    assert_eq!(f.get(&disk_path("VD6"), DISK, "Slot"), 1);
    assert_eq!(f.get(ROOT, MANAGER, "State"), "rebuilding");
    let degraded = f.wait_alert("pool.degraded", "vault-data0", |a| a.severity == 8, t0);
    assert!(
        degraded.detail.contains("VD1 (/dev/vdc, faulty)"),
        "{degraded:#?}"
    );
    let faulty = f.wait_alert("pool.disk-faulty", "VD1", |a| a.severity == 7, t0);
    assert!(faulty.summary.contains("/dev/vdc"), "{faulty:#?}");

    // An administrator acknowledges the disk's alert: announced although the pool did not
    // change.
    let t_ack = Instant::now();
    let out = gdbus(
        f.addr(),
        Some(ADMIN.0),
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            &faulty.path,
            "--method",
            &format!("{ALERT}.Acknowledge"),
            "'a new disk is on its way'",
        ],
    );
    assert!(out.status.success(), "Acknowledge: {}", stderr(&out));
    let (ack, at) = signals.wait(&faulty.path, ALERT, t_ack, |p| {
        p.get("Acknowledged").map(String::as_str) == Some("true")
    });
    eprintln!(
        "PropertiesChanged Acknowledged=true {} ms after Acknowledge",
        at.duration_since(t_ack).as_millis()
    );
    assert!(
        ack.get("AcknowledgedBy")
            .is_some_and(|b| b.contains(ADMIN.0)),
        "{ack:?}"
    );
    let audit = f.audit();
    let last = audit.last().expect("audited");
    assert_eq!(
        (&last["member"], &last["user"], &last["ok"]),
        (
            &Value::from("Acknowledge"),
            &Value::from(ADMIN.0),
            &Value::from(true)
        ),
        "{last:#?}"
    );
    // The other arrays are not affected.
    assert_eq!(f.array("vault-data1", "State"), "healthy");
    assert_eq!(f.array("vault-ddb", "State"), "healthy");

    // Progress is announced.
    let t1 = Instant::now();
    m.progress("vault-data0", SYNC_SECTORS / 2, 700);
    let (_, at) = signals.wait(&data0, ARRAY, t1, |p| {
        gnum(p.get("SyncPercent")).is_some_and(|v| (v - 50.0).abs() < 0.5)
    });
    eprintln!(
        "PropertiesChanged SyncPercent=50.0 {} ms after the change",
        at.duration_since(t1).as_millis()
    );

    // The rebuild ends.
    let t2 = Instant::now();
    m.recovery_done("vault-data0", "vdh");
    f.wait_prop(&data0, ARRAY, "Degraded", Value::from(0));
    assert_eq!(f.array("vault-data0", "State"), "rebuilding");
    let t3 = Instant::now();
    m.sync_idle("vault-data0");
    let (_, at) = signals.wait(&data0, ARRAY, t3, |p| {
        p.get("State").map(String::as_str) == Some("'healthy'")
    });
    eprintln!(
        "PropertiesChanged State=healthy {} ms after sync_action went idle ({} ms after the \
         spare was in sync)",
        at.duration_since(t3).as_millis(),
        at.duration_since(t2).as_millis()
    );
    assert_eq!(f.array("vault-data0", "SyncPercent"), -1.0);
    assert_eq!(f.array("vault-data0", "SyncEtaSeconds"), 0);
    assert_eq!(f.get(&disk_path("VD6"), DISK, "State"), "active");
    assert_eq!(f.get(&disk_path("VD6"), DISK, "Slot"), 1);
    assert_eq!(f.get(&disk_path("VD1"), DISK, "State"), "faulty");
    assert_eq!(f.get(ROOT, MANAGER, "State"), "healthy");
    let rebuilt = f.wait_alert(
        "pool.rebuild-finished",
        "vault-data0",
        |a| a.severity == 3,
        t2,
    );
    assert!(rebuilt.summary.contains("rebuilt"), "{rebuilt:#?}");
    // The degraded alert is the same object, now cleared.
    let (cleared, _) = f.wait_for("the degraded alert cleared", || {
        f.alerts()
            .into_iter()
            .find(|a| a.path == degraded.path && !a.active)
    });
    assert_eq!(cleared.class, "pool.degraded");
    assert!(
        f.get(&degraded.path, ALERT, "Cleared")
            .as_u64()
            .unwrap_or(0)
            > 0,
        "Cleared time"
    );
    // The disk is still faulty: its alert stays until it is replaced.
    assert!(
        f.alerts()
            .iter()
            .any(|a| a.class == "pool.disk-faulty" && a.key == "VD1" && a.active),
        "{:#?}",
        f.alerts()
    );
    let text = signals.text();
    assert!(
        text.contains("org.freedesktop.DBus.ObjectManager.InterfacesAdded") && text.contains(ALERT),
        "the alert objects were not announced:\n{text}"
    );
}

/// A RAID5 that loses two members has failed; the alert names the lost disks; the other
/// arrays stay healthy.
#[test]
fn a_raid5_losing_two_members_has_failed() {
    let Some(f) = fixture() else { return };
    let m = &f.machine;
    let t0 = Instant::now();
    m.fail("vault-data1", "vde");
    m.fail_second("vault-data1", "vdf");
    let took = f.wait_prop(
        &array_path("vault-data1"),
        ARRAY,
        "State",
        Value::from("failed"),
    );
    eprintln!(
        "vault-data1 State=failed {} ms after the change",
        took.as_millis()
    );
    assert_eq!(f.array("vault-data1", "Degraded"), 2);
    let failed = f.wait_alert("pool.failed", "vault-data1", |a| a.severity == 10, t0);
    for lost in ["VD3 (/dev/vde, faulty)", "VD4 (/dev/vdf, faulty)"] {
        assert!(failed.detail.contains(lost), "{lost}: {failed:#?}");
    }
    assert!(failed.summary.contains("2 of 3"), "{failed:#?}");
    for serial in ["VD3", "VD4"] {
        assert_eq!(f.get(&disk_path(serial), DISK, "State"), "faulty");
    }
    assert_eq!(f.get(&disk_path("VD5"), DISK, "State"), "active");
    assert_eq!(f.array("vault-data0", "State"), "healthy");
    assert_eq!(f.array("vault-ddb", "State"), "healthy");
    assert_eq!(f.get(ROOT, MANAGER, "State"), "failed");
    // No alert about the healthy arrays.
    let others: Vec<AlertInfo> = f
        .alerts()
        .into_iter()
        .filter(|a| a.key == "vault-data0" || a.key == "vault-ddb")
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}

/// A tmpfs mounted for the test and unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    /// The file system's size in blocks (statvfs f_blocks, f_frsize).
    fn blocks(&self) -> (u64, u64) {
        let st = rustix::fs::statvfs(&self.0).expect("statvfs");
        (st.f_blocks, st.f_frsize)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The data array's file system fills: 85 % raises a severity-5 alert, 96 % severity 9; freed,
/// the alert clears.
#[test]
fn a_filling_file_system_raises_alerts() {
    let Some(mut f) = fixture() else { return };
    let at = f.machine.dir.path().join("mnt-data0");
    let fs_ = match Tmpfs::mount(&at, "1m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIP a_filling_file_system_raises_alerts: {why}");
            common::skip(&why);
            return;
        }
    };
    // RealHost statvfs()s the mount point mountinfo names for the array's md device.
    f.machine.mount("vault-data0", &at);
    let data0 = array_path("vault-data0");
    f.wait_prop(
        &data0,
        ARRAY,
        "MountPoint",
        Value::from(at.display().to_string()),
    );
    assert_eq!(f.array("vault-data0", "UsedPercent"), 0);
    let (blocks, bsize) = fs_.blocks();
    let fill = |percent: u64| {
        let want = (blocks * percent).div_ceil(100);
        let file = at.join("fill");
        fs::write(&file, vec![0x55u8; (want * bsize) as usize]).expect("fill");
        let used = blocks - rustix::fs::statvfs(&at).expect("statvfs").f_bavail;
        eprintln!("filled {used} of {blocks} blocks of {bsize} B");
        (used * 100).div_ceil(blocks)
    };

    let t0 = Instant::now();
    let pct = fill(85);
    f.wait_prop(&data0, ARRAY, "UsedPercent", Value::from(pct));
    let a = f.wait_alert(
        "pool.filesystem-full",
        "vault-data0",
        |a| a.severity == 5,
        t0,
    );
    assert!(a.summary.contains(&format!("{pct}% full")), "{a:#?}");

    let t1 = Instant::now();
    let pct = fill(96);
    f.wait_prop(&data0, ARRAY, "UsedPercent", Value::from(pct));
    let b = f.wait_alert(
        "pool.filesystem-full",
        "vault-data0",
        |a| a.severity == 9,
        t1,
    );
    assert_eq!(a.path, b.path, "the same alert, raised in severity");
    assert!(b.summary.contains("≥ 95%"), "{b:#?}");

    let t2 = Instant::now();
    fs::remove_file(at.join("fill")).expect("rm");
    f.wait_for("the full alert cleared", || {
        f.alerts()
            .into_iter()
            .find(|x| x.path == b.path && !x.active)
    });
    eprintln!(
        "pool.filesystem-full cleared {} ms after the space was freed",
        t2.elapsed().as_millis()
    );
    assert_eq!(f.array("vault-data0", "UsedPercent"), 0);
}

/// Scrub, StopScrub and Replace with their named errors, who may call them, and the audit log.
#[test]
fn methods_answer_with_named_errors_and_are_audited() {
    let Some(f) = fixture() else { return };
    let m = &f.machine;

    // Scrub writes `check` into the array's sync_action.
    let out = f.call(None, "Scrub", &["'vault-data0'"]);
    assert!(out.status.success(), "Scrub: {}", stderr(&out));
    assert_eq!(m.read("vault-data0", "sync_action"), "check");
    let took = f.wait_prop(
        &array_path("vault-data0"),
        ARRAY,
        "State",
        Value::from("checking"),
    );
    eprintln!(
        "Scrub: State=checking on the bus {} ms after the reply",
        took.as_millis()
    );

    // Not twice.
    let out = f.call(None, "Scrub", &["'vault-data0'"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("org.tiervault.Error.Busy") && stderr(&out).contains("check"),
        "{}",
        stderr(&out)
    );
    // An array the pool does not have.
    let out = f.call(None, "Scrub", &["'vault-nope'"]);
    assert!(
        stderr(&out).contains("org.tiervault.Error.NotFound")
            && stderr(&out).contains("vault-nope"),
        "{}",
        stderr(&out)
    );
    // A disk that is not there.
    let out = f.call(None, "Replace", &["'VD1'", "'XX-NO-SUCH-DISK'", "false"]);
    assert!(
        stderr(&out).contains("org.tiervault.Error.InvalidArgument")
            && stderr(&out).contains("XX-NO-SUCH-DISK"),
        "{}",
        stderr(&out)
    );
    // StopScrub sets it idle again.
    let out = f.call(None, "StopScrub", &["'vault-data0'"]);
    assert!(out.status.success(), "StopScrub: {}", stderr(&out));
    assert_eq!(m.read("vault-data0", "sync_action"), "idle");
    f.wait_prop(
        &array_path("vault-data0"),
        ARRAY,
        "State",
        Value::from("healthy"),
    );

    // Access control is the bus policy's (systemd/dbus/system.d/org.tiervault.Pools1.conf):
    // support reads the state and Status but changes nothing; others only introspect;
    // vault-admin may call everything.
    let out = f.call(Some(SUPPORT.0), "Scrub", &["'vault-data1'"]);
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = busctl(
        f.addr(),
        Some(SUPPORT.0),
        &[
            "--json=short",
            "get-property",
            NAME,
            &array_path("vault-data1"),
            ARRAY,
            "State",
        ],
    );
    assert_eq!(json_data(&out), "healthy");
    let out = f.call(Some(SUPPORT.0), "Status", &[]);
    assert!(out.status.success(), "support Status: {}", stderr(&out));
    let out = f.call(Some(GUEST.0), "Scrub", &["'vault-data1'"]);
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = busctl(
        f.addr(),
        Some(GUEST.0),
        &[
            "get-property",
            NAME,
            &array_path("vault-data1"),
            ARRAY,
            "State",
        ],
    );
    assert!(
        stderr(&out).contains("Access denied") || stderr(&out).contains("AccessDenied"),
        "the policy lets others introspect only: {}",
        stderr(&out)
    );
    // (`--xml-interface`: plain `busctl introspect` also reads every property.)
    let out = busctl(
        f.addr(),
        Some(GUEST.0),
        &["--xml-interface", "introspect", NAME, ROOT],
    );
    assert!(out.status.success(), "guest introspect: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(MANAGER));
    assert_eq!(m.read("vault-data1", "sync_action"), "idle");
    let out = f.call(Some(ADMIN.0), "Scrub", &["'vault-data1'"]);
    assert!(out.status.success(), "admin Scrub: {}", stderr(&out));
    assert_eq!(m.read("vault-data1", "sync_action"), "check");

    // Every call that reached the service, accepted or refused, with its caller.
    let audit = f.audit();
    let rows: Vec<(String, String, String, bool)> = audit
        .iter()
        .map(|l| {
            (
                l["user"].as_str().unwrap_or_default().to_string(),
                l["member"].as_str().unwrap_or_default().to_string(),
                l["args"].to_string(),
                l["ok"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let row = |user: &str, member: &str, arg: &str, ok: bool| {
        (user.to_string(), member.to_string(), arg.to_string(), ok)
    };
    assert_eq!(
        rows,
        [
            row("root", "Scrub", r#"{"array":"vault-data0"}"#, true),
            row("root", "Scrub", r#"{"array":"vault-data0"}"#, false),
            row("root", "Scrub", r#"{"array":"vault-nope"}"#, false),
            row(
                "root",
                "Replace",
                r#"{"new":"XX-NO-SUCH-DISK","old":"VD1","wipe":false}"#,
                false
            ),
            row("root", "StopScrub", r#"{"array":"vault-data0"}"#, true),
            row(ADMIN.0, "Scrub", r#"{"array":"vault-data1"}"#, true),
        ],
        "{audit:#?}"
    );
    assert!(
        audit[1]["result"]
            .as_str()
            .unwrap_or_default()
            .contains("busy"),
        "{:#?}",
        audit[1]
    );
    assert!(
        audit[3]["result"]
            .as_str()
            .unwrap_or_default()
            .contains("XX-NO-SUCH-DISK"),
        "{:#?}",
        audit[3]
    );
    assert_eq!(audit[0]["interface"], MANAGER);
    assert_eq!(audit[0]["uid"], 0);
}

/// SIGTERM stops the service promptly with exit status 0 and releases the name.
#[test]
fn sigterm_stops_promptly() {
    let Some(mut f) = fixture() else { return };
    // Busy with a sync, as it is when polled more often.
    f.machine.set(
        "vault-ddb",
        &[
            ("sync_completed", &format!("1000 / {SYNC_SECTORS}")),
            ("sync_speed", "1000"),
            ("sync_action", "check"),
        ],
    );
    f.wait_prop(
        &array_path("vault-ddb"),
        ARRAY,
        "State",
        Value::from("checking"),
    );
    let (status, took) = f.terminate();
    eprintln!(
        "SIGTERM: vault-poold exited ({status}) after {} ms",
        took.as_millis()
    );
    assert!(status.success(), "{status}:\n{}", f.log_text());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!bus::has_owner(f.addr(), NAME));
    assert!(f.log_text().contains("stopping"), "{}", f.log_text());
}
