//! Tier 2: the health service `vault-healthd` (the real binary) reading OpenIPMI's `ipmi_sim`
//! over IPMI-over-LAN (common/ipmisim.rs), with its alerts delivered to a webhook receiver on
//! loopback. Rounds are driven one at a time with `--once` so each step is deterministic:
//! nominal readings raise nothing; a fan failure, an over-temperature and a PSU failure each
//! raise an alert of the right class and severity and their SEL records become alerts; a fan
//! back just above its limit stays alerted (hysteresis); recovery clears the sensor alerts but
//! not the SEL's; `--clear-sel` archives and clears those; every raise and clear reached the
//! receiver once, in order. The daemon then serves the readings as Prometheus metrics.
//! Each test says SKIPPED when ipmi_sim or ipmitool is missing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::ipmisim::{self, IpmiSim, PSU_FAILURE, PSU_STATUS};
use serde_json::Value;

fn healthd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        common::cli::workspace_bin("VAULT_HEALTHD_BIN", "tiervault-healthd", "vault-healthd")
    })
}

/// A webhook receiver: HTTP/1.1 on loopback, answers 200 to every POST and keeps the bodies.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || serve(conn, &kept));
            }
        });
        Receiver { port, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }
}

fn serve(conn: std::net::TcpStream, kept: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice(&body) {
            kept.lock().expect("lock").push(v);
        }
        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
}

fn setup(sim: &IpmiSim, receiver: &Receiver, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = dir.path().join("healthd.toml");
    std::fs::write(
        &config,
        format!(
            r#"state-dir = "{state}"
poll-seconds = 1
pool-status = "{dir}/no-pool.json"
{extra}
[appliance]
id = "msp-test-01"
hostname = "vault-test"
site = "lab"
[ipmi]
timeout-secs = 30
[ipmi.transport]
kind = "lan"
host = "127.0.0.1"
port = {port}
user = "{user}"
password-file = "{pw}"
session-timeout-secs = 1
session-retries = 1
[smart]
enabled = false
[notify]
spool-dir = "{dir}/spool"
[[notify.webhook]]
name = "noc"
url = "http://127.0.0.1:{hook}/alerts"
"#,
            state = state.display(),
            dir = dir.path().display(),
            port = sim.lan_port,
            user = ipmisim::USER,
            pw = sim.password_file.display(),
            hook = receiver.port,
        ),
    )
    .expect("write config");
    Setup {
        _dir: dir,
        config,
        state,
    }
}

fn run(s: &Setup, args: &[&str]) -> String {
    let out = Command::new(healthd())
        .arg("--config")
        .arg(&s.config)
        .args(args)
        .env("HEALTHD_LOG", "info")
        .output()
        .expect("vault-healthd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "vault-healthd {args:?}: {}\n{text}",
        out.status
    );
    text
}

/// `vaultctl ARGS --state-dir <the service's>` (no health service on the bus): its stdout.
fn vaultctl(s: &Setup, args: &[&str]) -> String {
    let state = s.state.display().to_string();
    let all: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--state-dir", &state])
        .collect();
    vaultctl_run(&all)
}

/// `vaultctl --bus ADDRESS ARGS` (as root): its stdout.
fn vaultctl_on(address: &str, args: &[&str]) -> String {
    let all: Vec<&str> = ["--bus", address]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    vaultctl_run(&all)
}

fn vaultctl_run(args: &[&str]) -> String {
    let out = Command::new(common::cli::vaultctl())
        .args(args)
        .output()
        .expect("vaultctl");
    assert!(
        out.status.success(),
        "vaultctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(s: &Setup) -> Value {
    let bytes = std::fs::read(s.state.join("status.json")).expect("status.json");
    serde_json::from_slice(&bytes).expect("status.json is JSON")
}

/// The active alerts as (class, key, severity).
fn alerts(s: &Setup) -> Vec<(String, String, u64)> {
    status(s)["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["class"].as_str().unwrap_or_default().to_owned(),
                a["key"].as_str().unwrap_or_default().to_owned(),
                a["severity"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn has(alerts: &[(String, String, u64)], class: &str, key: &str) -> Option<u64> {
    alerts
        .iter()
        .find(|(c, k, _)| c == class && k == key)
        .map(|(_, _, s)| *s)
}

fn sim_or_skip(test: &str) -> Option<IpmiSim> {
    match ipmisim::available() {
        Ok(()) => Some(IpmiSim::start()),
        Err(reason) => {
            common::skip(&format!("{test} (tier 2, ipmi_sim): {reason}"));
            None
        }
    }
}

#[test]
fn faults_become_alerts_that_reach_the_webhook_and_clear() {
    let Some(sim) = sim_or_skip("faults_become_alerts_that_reach_the_webhook_and_clear") else {
        return;
    };
    let receiver = Receiver::start();
    // vault-poold's alerts (another service without a network) go out through health.
    let pool_dir = tempfile::tempdir().expect("tempdir");
    let pool_alerts = pool_dir.path().join("alerts.json");
    let s = setup(
        &sim,
        &receiver,
        &format!(
            "[[relay]]\nsource = \"poold\"\nalerts = \"{}\"\n",
            pool_alerts.display()
        ),
    );
    let (mut pool, _) =
        tiervault_alerts::AlertStore::open(&pool_alerts, "poold", 10).expect("poold's store");
    // The simulator logs its power-supply presence at start: clear that first.
    run(&s, &["--clear-sel"]);

    run(&s, &["--once"]);
    let st = status(&s);
    let names: Vec<&str> = st["sensors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for n in ["CPU_Temp", "FAN1", "PSU1_Power", "PSU1_Status"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(
        st["fru"].to_string().contains(ipmisim::CHASSIS_SERIAL),
        "FRU inventory: {}",
        st["fru"]
    );
    assert_eq!(alerts(&s), [], "nominal readings raised alerts");

    // A fan stops, the CPU overheats, a power supply fails.
    sim.set_reading("FAN1", 300.0);
    sim.set_reading("CPU_Temp", 90.0);
    sim.set_state(PSU_STATUS.1, PSU_FAILURE, true);
    pool.raise(
        tiervault_alerts::NewAlert {
            class: "pool.degraded".into(),
            key: "vault-data0".into(),
            severity: tiervault_alerts::Severity::try_from(9).expect("severity"),
            summary: "vault-data0 is degraded: VD2 failed".into(),
            detail: String::new(),
        },
        tiervault_alerts::now_ns(),
    )
    .expect("raise");
    run(&s, &["--once"]);
    let a = alerts(&s);
    assert_eq!(has(&a, "health.fan", "FAN1"), Some(8), "{a:?}");
    assert_eq!(has(&a, "health.temperature", "CPU_Temp"), Some(8), "{a:?}");
    assert_eq!(has(&a, "health.psu", PSU_STATUS.1), Some(8), "{a:?}");
    let sel: Vec<&(String, String, u64)> = a.iter().filter(|(c, ..)| c == "health.sel").collect();
    assert!(
        sel.iter().any(|(.., sev)| *sev == 7),
        "the SEL's critical records are alerts of severity 7: {a:?}"
    );
    // The operator's view without the service running: its status file.
    let out = vaultctl(&s, &["health", "status"]);
    for want in [
        "active alerts, highest severity 8",
        "FAN1",
        "300 RPM",
        "critical",
        "limits: lnr 200, lcr 500, lnc 1000",
        "health.psu",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let sensors: Value =
        serde_json::from_str(&vaultctl(&s, &["health", "sensors", "--json"])).expect("JSON");
    let fan = sensors
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "FAN1"))
        .expect("FAN1");
    assert_eq!(fan["value"], 300.0);
    assert_eq!(fan["level"], "critical");
    assert_eq!(fan["alarms"]["critical_low"], true);
    let fru = vaultctl(&s, &["health", "fru"]);
    assert!(fru.contains(ipmisim::PSU_SERIAL), "{fru}");
    let archived = std::fs::read_to_string(s.state.join("sel-archive.jsonl")).expect("archive");
    assert!(archived.contains("FAN1"), "SEL archive: {archived}");

    // The fan spins up to 600 RPM: above its critical limit (500) but within the hysteresis.
    sim.set_reading("FAN1", 600.0);
    run(&s, &["--once"]);
    assert_eq!(
        has(&alerts(&s), "health.fan", "FAN1"),
        Some(8),
        "cleared without hysteresis"
    );

    // Recovery.
    sim.set_reading("FAN1", 4800.0);
    sim.set_reading("CPU_Temp", 45.0);
    sim.set_state(PSU_STATUS.1, PSU_FAILURE, false);
    pool.clear("pool.degraded", "vault-data0", tiervault_alerts::now_ns())
        .expect("clear");
    run(&s, &["--once"]);
    let a = alerts(&s);
    for (class, key) in [
        ("health.fan", "FAN1"),
        ("health.temperature", "CPU_Temp"),
        ("health.psu", PSU_STATUS.1),
    ] {
        assert_eq!(
            has(&a, class, key),
            None,
            "{class} {key} not cleared: {a:?}"
        );
    }
    assert!(
        a.iter().any(|(c, ..)| c == "health.sel"),
        "SEL alerts cleared too early"
    );

    // The operator clears the SEL: its alerts go, its records stay archived.
    let out = run(&s, &["--clear-sel"]);
    assert!(out.contains("cleared the BMC event log"), "{out}");
    assert_eq!(alerts(&s).len(), 0, "{:?}", alerts(&s));
    let left = sim.ipmitool(&["sel", "elist"]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the BMC's SEL was not cleared: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    // Every change reached the receiver once, in order.
    let got = receiver.bodies();
    let ids: Vec<&str> = got.iter().filter_map(|b| b["event_id"].as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "duplicates: {ids:?}");
    // Each service's notifications are numbered and delivered in order.
    for source in ["healthd", "poold"] {
        let seq: Vec<u64> = got
            .iter()
            .filter(|b| b["alert"]["source"] == source)
            .filter_map(|b| b["sequence"].as_u64())
            .collect();
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "{source} out of order: {seq:?}"
        );
    }
    let pool: Vec<(&str, &str)> = got
        .iter()
        .filter(|b| b["alert"]["source"] == "poold")
        .filter_map(|b| Some((b["transition"].as_str()?, b["event_id"].as_str()?)))
        .collect();
    assert_eq!(pool.len(), 2, "poold's alert relayed: {pool:?}");
    assert_eq!((pool[0].0, pool[1].0), ("raised", "cleared"), "{pool:?}");
    assert!(
        pool[0].1.starts_with("msp-test-01:poold:"),
        "event id {}",
        pool[0].1
    );
    let fan: Vec<&str> = got
        .iter()
        .filter(|b| b["alert"]["class"] == "health.fan")
        .filter_map(|b| b["transition"].as_str())
        .collect();
    assert_eq!(fan, ["raised", "cleared"], "fan notifications");
    assert!(got.iter().all(|b| b["appliance"]["id"] == "msp-test-01"));
    eprintln!(
        "healthd_ipmi: {} notifications delivered, {} SEL records archived",
        got.len(),
        archived.lines().count()
    );
}

#[test]
fn the_daemon_serves_readings_as_prometheus_metrics_and_stops_on_sigterm() {
    let Some(sim) = sim_or_skip("the_daemon_serves_readings_as_prometheus_metrics") else {
        return;
    };
    let receiver = Receiver::start();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let s = setup(
        &sim,
        &receiver,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut child = Command::new(healthd())
        .arg("--config")
        .arg(&s.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vault-healthd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let body = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut c| {
                c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
                let mut t = String::new();
                c.read_to_string(&mut t)?;
                Ok(t)
            })
            .unwrap_or_default();
        if body.contains("tiervault_sensor_value{") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let pid = child.id() as i32;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let started = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut log));
    assert!(
        text.contains("tiervault_sensor_value{sensor=\"FAN1\",kind=\"fan\",unit=\"RPM\"} 4800"),
        "metrics:\n{text}\nlog:\n{log}"
    );
    assert!(
        text.contains("tiervault_sensor_level{sensor=\"CPU_Temp\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("tiervault_alerts_active{priority=\"P1\"}"),
        "{text}"
    );
    assert!(st.success(), "exit after SIGTERM: {st}\n{log}");
    eprintln!(
        "healthd metrics: stopped {} ms after SIGTERM",
        started.elapsed().as_millis()
    );
}

const NAME: &str = "org.tiervault.Health1";
const ROOT: &str = "/org/tiervault/Health1";
const VALUE: &str = "org.tiervault.Health1.Sensor.Value";
const WARNING: &str = "org.tiervault.Health1.Sensor.Threshold.Warning";
const CRITICAL: &str = "org.tiervault.Health1.Sensor.Threshold.Critical";
const HARD: &str = "org.tiervault.Health1.Sensor.Threshold.HardShutdown";
const ALERT: &str = "org.tiervault.Alert1";

/// Waits up to `limit` for `f` to hold on the service's objects; returns them and the time.
fn wait_objects(
    address: &str,
    limit: Duration,
    what: &str,
    log: &Path,
    f: impl Fn(&common::bus::Objects) -> bool,
) -> (common::bus::Objects, Duration) {
    let started = Instant::now();
    loop {
        if common::bus::has_owner(address, NAME) {
            let all = common::bus::managed_objects(address, NAME, ROOT);
            if f(&all) {
                return (all, started.elapsed());
            }
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not after {limit:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sensors_are_dbus_objects_with_alarm_signals_and_the_sel_clears_from_the_bus() {
    let test = "sensors_are_dbus_objects_with_alarm_signals";
    let Some(sim) = sim_or_skip(test) else {
        return;
    };
    if let Some(reason) = common::bus::missing() {
        common::skip(&format!("{test} (tier 2, D-Bus): {reason}"));
        return;
    }
    common::bus::ensure_users();
    let bus = common::bus::Bus::start();
    let a = bus.address.as_str();
    let receiver = Receiver::start();
    let s = setup(&sim, &receiver, &format!("bus = \"{a}\"\n"));
    // The simulator logs its power-supply presence at start: clear that first.
    run(&s, &["--clear-sel"]);
    let log = s.state.join("../healthd.log");
    let mut child = Command::new(healthd())
        .arg("--config")
        .arg(&s.config)
        .env("HEALTHD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("vault-healthd");

    let prop = |all: &common::bus::Objects, name: &str, iface: &str, p: &str| -> Value {
        all.get(&format!("{ROOT}/sensors/{name}"))
            .and_then(|i| i.get(iface))
            .and_then(|props| props.get(p))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (all, t) = wait_objects(a, Duration::from_secs(60), "FAN1 on the bus", &log, |all| {
        prop(all, "FAN1", VALUE, "Value").as_f64().is_some()
    });
    eprintln!("sensors on the bus {} ms after start", t.as_millis());

    // The API is the checked-in one.
    let objects = [
        ROOT.to_owned(),
        format!("{ROOT}/sensors/FAN1"),
        format!("{ROOT}/sensors/CPU_5fTemp"),
    ];
    let seen = common::bus::check_introspection(a, NAME, &objects, |n| n.starts_with(NAME));
    let mine: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with(NAME))
        .collect();
    assert_eq!(
        mine,
        [
            "org.tiervault.Health1.Manager",
            CRITICAL,
            HARD,
            WARNING,
            VALUE
        ]
    );

    // Values, units and limits as the SDR gives them (FAN1: lower 1000/500/200 RPM).
    assert_eq!(prop(&all, "FAN1", VALUE, "Value"), 4800.0);
    assert_eq!(prop(&all, "FAN1", VALUE, "Unit"), "RPMS");
    assert_eq!(prop(&all, "FAN1", VALUE, "Kind"), "fan");
    assert_eq!(prop(&all, "FAN1", VALUE, "Level"), "ok");
    assert_eq!(prop(&all, "FAN1", WARNING, "WarningLow"), 1000.0);
    assert_eq!(prop(&all, "FAN1", CRITICAL, "CriticalLow"), 500.0);
    assert_eq!(prop(&all, "FAN1", HARD, "HardShutdownLow"), 200.0);
    assert_eq!(prop(&all, "FAN1", CRITICAL, "CriticalAlarmLow"), false);
    assert_eq!(prop(&all, "CPU_5fTemp", VALUE, "Unit"), "DegreesC");
    assert_eq!(prop(&all, "CPU_5fTemp", CRITICAL, "CriticalHigh"), 85.0);
    assert_eq!(prop(&all, "PSU1_5fStatus", VALUE, "Unit"), "discrete");
    assert!(
        !all[&format!("{ROOT}/sensors/PSU1_5fStatus")].contains_key(CRITICAL),
        "a discrete sensor has no threshold interface"
    );

    // The fan fails: alarms, signals, an alert object.
    let monitor = common::bus::Monitor::start(a, NAME);
    let failed = Instant::now();
    sim.set_reading("FAN1", 300.0);
    let (all, t) = wait_objects(a, Duration::from_secs(60), "FAN1 critical", &log, |all| {
        prop(all, "FAN1", VALUE, "Level") == "critical"
    });
    eprintln!(
        "FAN1 critical on the bus {} ms after the fan failed",
        t.as_millis()
    );
    assert_eq!(prop(&all, "FAN1", VALUE, "Value"), 300.0);
    assert_eq!(prop(&all, "FAN1", WARNING, "WarningAlarmLow"), true);
    assert_eq!(prop(&all, "FAN1", CRITICAL, "CriticalAlarmLow"), true);
    assert_eq!(prop(&all, "FAN1", HARD, "HardShutdownAlarmLow"), false);
    assert_eq!(prop(&all, "FAN1", CRITICAL, "CriticalAlarmHigh"), false);
    let fan_alert = all
        .iter()
        .find(|(_, i)| i.get(ALERT).is_some_and(|p| p["Class"] == "health.fan"))
        .map(|(path, i)| (path.clone(), i[ALERT].clone()))
        .expect("an alert object for the fan");
    assert_eq!(fan_alert.1["Severity"], 8, "{:?}", fan_alert.1);
    assert_eq!(fan_alert.1["Key"], "FAN1");
    let highest = common::bus::json_data(&common::bus::busctl(
        a,
        None,
        &[
            "--json=short",
            "get-property",
            NAME,
            ROOT,
            "org.tiervault.Health1.Manager",
            "HighestSeverity",
        ],
    ));
    assert!(highest.as_u64().is_some_and(|s| s >= 8), "{highest}");

    // An administrator acknowledges it.
    let out = common::bus::call_as(
        a,
        Some(common::bus::ADMIN.0),
        NAME,
        &fan_alert.0,
        &format!("{ALERT}.Acknowledge"),
        &["'fan ordered'"],
    );
    assert!(
        out.status.success(),
        "Acknowledge: {}",
        common::bus::stderr(&out)
    );
    wait_objects(a, Duration::from_secs(10), "acknowledged", &log, |all| {
        all.get(&fan_alert.0)
            .and_then(|i| i.get(ALERT))
            .is_some_and(|p| p["Acknowledged"] == true)
    });

    // The fan is replaced: the alarms are deasserted.
    sim.set_reading("FAN1", 4800.0);
    wait_objects(a, Duration::from_secs(60), "FAN1 ok again", &log, |all| {
        prop(all, "FAN1", VALUE, "Level") == "ok"
    });
    let signals = monitor.finish(Duration::from_millis(500));
    let fan_path = format!("{ROOT}/sensors/FAN1");
    for (iface, member) in [
        (WARNING, "WarningLowAlarmAsserted"),
        (CRITICAL, "CriticalLowAlarmAsserted"),
        (CRITICAL, "CriticalLowAlarmDeasserted"),
        (WARNING, "WarningLowAlarmDeasserted"),
    ] {
        let line = format!("{fan_path}: {iface}.{member}");
        assert!(
            signals.lines().any(|l| l.starts_with(&line)),
            "no {line} in:\n{signals}"
        );
    }
    assert!(
        signals.contains(&format!("{CRITICAL}.CriticalLowAlarmAsserted (300.0,)")),
        "the asserted signal carries the reading:\n{signals}"
    );
    assert!(
        !signals.contains("HardShutdownLowAlarmAsserted"),
        "300 RPM is above the non-recoverable limit:\n{signals}"
    );
    eprintln!(
        "alarm signals seen for a fan failure and recovery {} ms apart",
        failed.elapsed().as_millis()
    );

    // Support may read the whole state, not clear the event log.
    let out = common::bus::busctl(
        a,
        Some(common::bus::SUPPORT.0),
        &[
            "--json=short",
            "call",
            NAME,
            ROOT,
            "org.tiervault.Health1.Manager",
            "Status",
        ],
    );
    let doc: Value =
        serde_json::from_str(common::bus::json_data(&out)[0].as_str().expect("a string"))
            .expect("Status is JSON");
    assert!(doc["sensors"].to_string().contains("FAN1"), "{doc}");
    assert!(doc["alerts"].to_string().contains("health.sel"), "{doc}");
    // The same through vaultctl.
    let disks: Value =
        serde_json::from_str(&vaultctl_on(a, &["--json", "health", "disks"])).expect("JSON");
    assert_eq!(disks, doc["disks"]);
    let text = vaultctl_on(a, &["health", "status"]);
    assert!(
        text.contains("FAN1") && text.contains("health.sel"),
        "{text}"
    );
    let manager = "org.tiervault.Health1.Manager";
    let out = common::bus::busctl(
        a,
        Some(common::bus::SUPPORT.0),
        &["call", NAME, ROOT, manager, "ClearSel"],
    );
    assert!(!out.status.success(), "support cleared the SEL");
    assert!(
        common::bus::stderr(&out).contains("ccess denied"),
        "{}",
        common::bus::stderr(&out)
    );

    // An administrator clears it: archived, cleared on the BMC, its alerts cleared.
    let out = common::bus::busctl(
        a,
        Some(common::bus::ADMIN.0),
        &["--json=short", "call", NAME, ROOT, manager, "ClearSel"],
    );
    let cleared = common::bus::json_data(&out)[0].as_u64().expect("u");
    assert!(cleared >= 2, "records archived: {cleared}");
    let left = sim.ipmitool(&["sel", "elist"]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the BMC's SEL was not cleared: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let st = status(&s);
    assert!(
        !st["alerts"].to_string().contains("health.sel"),
        "SEL alerts left: {}",
        st["alerts"]
    );
    let again: Value =
        serde_json::from_str(&vaultctl_on(a, &["--json", "health", "clear-sel"])).expect("JSON");
    assert_eq!(again["archived"], 0, "nothing new since the last clear");
    let audit = std::fs::read_to_string(s.state.join("audit.log")).expect("audit.log");
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .filter(|r: &Value| r["member"] == "ClearSel")
        .collect();
    let who: Vec<(&str, bool)> = records
        .iter()
        .filter_map(|r| Some((r["user"].as_str()?, r["ok"].as_bool()?)))
        .collect();
    assert_eq!(
        who,
        [(common::bus::ADMIN.0, true), ("root", true)],
        "{audit}"
    );

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let st = child.wait().expect("wait");
    assert!(
        st.success(),
        "exit: {st}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
