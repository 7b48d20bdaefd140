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
    let s = setup(&sim, &receiver, "");
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
    let seq: Vec<u64> = got.iter().filter_map(|b| b["sequence"].as_u64()).collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "out of order: {seq:?}");
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
