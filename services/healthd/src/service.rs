//! One round of the health service: read the sources, judge what they say, keep the alerts in
//! step (raise what is found, clear what is no longer found), pass every change on to the
//! notification targets, and write the state for operators (`status.json`) and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tiervault_alerts::Alert;
use tiervault_bus::AlertBoard;
use tiervault_health::contract;
use tiervault_health::finding::{changes, Finding};
use tiervault_health::level::{alarms, Alarms, Level, Thresholds};
use tiervault_health::selftest::{self, DiskTests, TestKind};
use tiervault_health::sensor_rules::{
    assess_chassis, assess_sensor, limits_of, sel_finding, CLASS_SEL,
};
use tiervault_health::smart::SmartReport;
use tiervault_health::smart_rules;
use tiervault_ipmi::{Bmc, ChassisStatus, FruDevice, SelEntry, Sensor};
use tiervault_notify::{Dispatcher, Transition};

use crate::config::HealthConfig;
use crate::smartctl::SmartSource;

/// State files name disks and hosts: the service's group may read them, nobody else.
const STATE_MODE: u32 = 0o640;

/// The class of "a health source cannot be read" (the BMC, smartctl on one disk).
pub const CLASS_SOURCE: &str = "health.source";

/// What the service last read, for `status.json`, the bus and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub sensors: Vec<SensorView>,
    pub chassis: Option<ChassisStatus>,
    pub fru: Vec<FruDevice>,
    pub disks: Vec<SmartReport>,
    /// Source → the error of its last read (absent when it read fine).
    pub errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensorView {
    #[serde(flatten)]
    pub sensor: Sensor,
    pub level: Level,
    /// The limits in force: the configuration's where it sets them, else the SDR's.
    pub limits: Thresholds,
    pub alarms: Alarms,
}

/// Self-test times per disk serial, kept across restarts (`selftests.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TestLog {
    disks: BTreeMap<String, TestTimes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TestTimes {
    last_short_ns: Option<i64>,
    last_long_ns: Option<i64>,
}

pub struct Service {
    pub cfg: HealthConfig,
    pub alerts: AlertBoard,
    dispatcher: Option<Dispatcher>,
    bmc: Option<Box<dyn Bmc + Send>>,
    smart: Option<Box<dyn SmartSource>>,
    /// Each threshold sensor's level after the last reading (hysteresis needs it).
    levels: BTreeMap<String, Level>,
    /// The findings of each source at its last assessment ("sensors", "smart", ...).
    found: BTreeMap<&'static str, Vec<Finding>>,
    /// SEL record ids already raised (`sel-seen.json`): a restart raises nothing twice.
    sel_seen: BTreeSet<u16>,
    tests: TestLog,
    pub latest: Snapshot,
    /// The other services whose alerts go to the targets too.
    relays: Vec<crate::relay::Relay>,
    /// Called between BMC calls and disks: the loop's watchdog ping, so a round of many
    /// slow disks is not taken for a hang.
    tick: Box<dyn Fn()>,
}

fn now_ns() -> i64 {
    tiervault_alerts::now_ns()
}

impl Service {
    pub fn new(
        cfg: HealthConfig,
        alerts: AlertBoard,
        dispatcher: Option<Dispatcher>,
        bmc: Option<Box<dyn Bmc + Send>>,
        smart: Option<Box<dyn SmartSource>>,
    ) -> Service {
        let sel_seen = load_state(
            &cfg.state_dir,
            "sel-seen.json",
            "SEL records may be raised again",
        );
        let tests = load_state(&cfg.state_dir, "selftests.json", "self-tests may run early");
        let found = found_before(&alerts);
        Service {
            cfg,
            alerts,
            dispatcher,
            bmc,
            smart,
            levels: BTreeMap::new(),
            found,
            sel_seen,
            tests,
            latest: Snapshot::default(),
            tick: Box::new(|| {}),
            relays: Vec::new(),
        }
    }

    pub fn set_relays(&mut self, relays: Vec<crate::relay::Relay>) {
        self.relays = relays;
    }

    /// Passes the other services' alert changes on to the targets.
    pub fn poll_relays(&mut self) {
        for r in &mut self.relays {
            r.poll();
            let key = format!("relay {}", r.source);
            match &r.error {
                Some(e) => self.latest.errors.insert(key, e.clone()),
                None => self.latest.errors.remove(&key),
            };
        }
    }

    pub fn set_tick(&mut self, tick: Box<dyn Fn()>) {
        self.tick = tick;
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join(name)
    }

    fn save<T: Serialize>(&self, name: &str, value: &T) {
        let path = self.state_file(name);
        let result = serde_json::to_vec(value)
            .map_err(std::io::Error::other)
            .and_then(|b| tiervault_sys::durable::write_atomic(&path, &b, STATE_MODE));
        if let Err(e) = result {
            tracing::error!("writing {}: {e}", path.display());
        }
    }

    /// Passes an alert's change to the notification targets (spooled at once; delivered by
    /// [`Service::pump`]).
    fn notify(&mut self, alert: &Alert, transition: Transition) {
        if let Some(d) = &mut self.dispatcher {
            if let Err(e) = d.notify(alert, transition) {
                tracing::error!("queueing the notification of alert {}: {e}", alert.id);
            }
        }
    }

    fn raise(&mut self, f: &Finding) {
        let new = match f.to_new() {
            Ok(new) => new,
            Err(e) => {
                tracing::error!("{} {}: {e}", f.class, f.key);
                return;
            }
        };
        match self.alerts.ensure(new) {
            Ok(Some((before, now))) => {
                let t = Transition::of_raise(before.as_ref(), &now);
                // A reading that moves within its level updates the alert's text but is no
                // news for the MSP; an expired contract's daily reminder is.
                if t != Transition::ReRaised || f.class == contract::CLASS {
                    self.notify(&now, t);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("raising {} {}: {e}", f.class, f.key),
        }
    }

    fn clear(&mut self, class: &str, key: &str) {
        match self.alerts.clear_active(class, key) {
            Ok(Some(a)) => self.notify(&a, Transition::Cleared),
            Ok(None) => {}
            Err(e) => tracing::error!("clearing {class} {key}: {e}"),
        }
    }

    /// Makes the alerts of `source` match `now`.
    fn apply(&mut self, source: &'static str, now: Vec<Finding>) {
        let before = self.found.remove(source).unwrap_or_default();
        let (raise, clear) = changes(&before, &now);
        let raise: Vec<Finding> = raise.into_iter().cloned().collect();
        let clear: Vec<(&'static str, String)> =
            clear.into_iter().map(|(c, k)| (c, k.to_owned())).collect();
        for f in &raise {
            self.raise(f);
        }
        for (class, key) in clear {
            self.clear(class, &key);
        }
        self.found.insert(source, now);
    }

    fn source_error(&mut self, source: &str, key: &str, message: String) -> Finding {
        self.latest
            .errors
            .insert(source.to_owned(), message.clone());
        Finding {
            class: CLASS_SOURCE,
            key: key.to_owned(),
            severity: 6,
            summary: format!("cannot read {key}: {message}"),
            detail: "The health service goes on with the other sources; until this one reads \
                     again, its faults go unnoticed."
                .into(),
        }
    }

    /// Sensors, chassis status and the event log.
    pub fn poll_bmc(&mut self) {
        let Some(bmc) = self.bmc.take() else {
            return;
        };
        let mut findings = Vec::new();
        self.latest.errors.remove("bmc");
        match bmc.sensors() {
            Ok(sensors) => {
                let mut views = Vec::new();
                for s in sensors {
                    let prev = self.levels.get(&s.name).copied().unwrap_or(Level::Ok);
                    let (level, finding) = assess_sensor(&s, &self.cfg.sensors, prev);
                    self.levels.insert(s.name.clone(), level);
                    findings.extend(finding);
                    let limits = limits_of(&s, &self.cfg.sensors);
                    views.push(SensorView {
                        alarms: alarms(&limits, s.value, level),
                        sensor: s,
                        level,
                        limits,
                    });
                }
                self.latest.sensors = views;
            }
            Err(e) => findings.push(self.source_error("bmc", "bmc", e.to_string())),
        }
        (self.tick)();
        match bmc.chassis() {
            Ok(c) => {
                findings.extend(assess_chassis(&c));
                self.latest.chassis = Some(c);
            }
            Err(e) => tracing::warn!("chassis status: {e}"),
        }
        (self.tick)();
        if self.latest.fru.is_empty() {
            match bmc.fru() {
                Ok(f) => self.latest.fru = f,
                Err(e) => tracing::warn!("FRU inventory: {e}"),
            }
        }
        (self.tick)();
        match bmc.sel() {
            Ok(entries) => self.take_sel(&entries),
            Err(e) => tracing::warn!("event log: {e}"),
        }
        self.bmc = Some(bmc);
        self.apply("bmc", findings);
    }

    /// New SEL records: archived (the record outlives a cleared SEL), then raised.
    fn take_sel(&mut self, entries: &[SelEntry]) {
        let fresh: Vec<&SelEntry> = entries
            .iter()
            .filter(|e| !self.sel_seen.contains(&e.id))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let archive = self.state_file("sel-archive.jsonl");
        let lines: String = fresh
            .iter()
            .filter_map(|e| serde_json::to_string(&json!({"at_ns": now_ns(), "entry": e})).ok())
            .map(|l| l + "\n")
            .collect();
        if let Err(e) = append_durably(&archive, lines.as_bytes()) {
            // Not raised either: the next poll tries again, nothing is lost.
            tracing::error!("archiving the event log in {}: {e}", archive.display());
            return;
        }
        for e in fresh {
            self.raise(&sel_finding(e));
            self.sel_seen.insert(e.id);
        }
        self.save("sel-seen.json", &self.sel_seen);
    }

    /// Clears the BMC's event log (its records are in `sel-archive.jsonl`) and the alerts
    /// raised for them. Returns how many records were cleared.
    pub fn clear_sel(&mut self) -> anyhow::Result<usize> {
        let Some(bmc) = self.bmc.take() else {
            anyhow::bail!("no BMC is configured ([ipmi] in the health configuration)");
        };
        // Archive anything logged since the last poll before it is gone.
        let result = bmc
            .sel()
            .map(|e| self.take_sel(&e))
            .and_then(|()| bmc.sel_clear());
        self.bmc = Some(bmc);
        result?;
        let n = self.sel_seen.len();
        let keys: Vec<String> = self
            .alerts
            .snapshot()
            .into_iter()
            .filter(|a| a.is_active() && a.class == CLASS_SEL)
            .map(|a| a.key)
            .collect();
        for k in keys {
            self.clear(CLASS_SEL, &k);
        }
        self.sel_seen.clear();
        self.save("sel-seen.json", &self.sel_seen);
        Ok(n)
    }

    /// SMART of every disk, and the self-tests that are due.
    pub fn poll_smart(&mut self) {
        let Some(src) = self.smart.take() else {
            return;
        };
        let before = self.found.get("smart").cloned().unwrap_or_default();
        let mut findings = Vec::new();
        let mut reports = Vec::new();
        let mut tests = Vec::new();
        for disk in src.disks() {
            (self.tick)();
            let key = format!("smart {}", disk.device.display());
            match src.report(&disk) {
                Ok(r) => {
                    self.latest.errors.remove(&key);
                    let mine: Vec<Finding> = before
                        .iter()
                        .filter(|f| f.key == r.serial)
                        .cloned()
                        .collect();
                    findings.extend(smart_rules::assess(&r, &self.cfg.smart.limits, &mine));
                    let times = self.tests.disks.get(&r.serial).cloned().unwrap_or_default();
                    if !r.serial.is_empty() {
                        tests.push((
                            disk.clone(),
                            DiskTests {
                                serial: r.serial.clone(),
                                array: disk.array.clone(),
                                running: r.self_test_remaining.is_some_and(|p| p > 0),
                                last_short_ns: times.last_short_ns,
                                last_long_ns: times.last_long_ns,
                            },
                        ));
                    }
                    reports.push(r);
                }
                // A disk without SMART (virtio, USB bridges) is not a fault.
                Err(tiervault_health::smart::SmartError::Unsupported { .. }) => {}
                Err(e) => {
                    let dev = disk.device.display().to_string();
                    findings.push(self.source_error(&key, &dev, e.to_string()));
                }
            }
        }
        let states: Vec<DiskTests> = tests.iter().map(|(_, t)| t.clone()).collect();
        for (serial, kind) in selftest::due(&self.cfg.smart.self_tests, &states, now_ns()) {
            let Some((disk, _)) = tests.iter().find(|(_, t)| t.serial == serial) else {
                continue;
            };
            match src.start_test(disk, kind) {
                Ok(()) => {
                    tracing::info!(
                        "started a {kind:?} self-test on {serial} ({})",
                        disk.device.display()
                    );
                    let t = self.tests.disks.entry(serial).or_default();
                    match kind {
                        TestKind::Short => t.last_short_ns = Some(now_ns()),
                        TestKind::Long => t.last_long_ns = Some(now_ns()),
                    }
                }
                Err(e) => tracing::warn!("self-test on {serial}: {e}"),
            }
        }
        self.save("selftests.json", &self.tests);
        self.latest.disks = reports;
        self.smart = Some(src);
        self.apply("smart", findings);
    }

    /// Support-contract and warranty reminders for `today`.
    pub fn check_contracts(&mut self, today: time::Date) {
        let found: Vec<Finding> = self
            .cfg
            .contracts
            .iter()
            .filter_map(|c| contract::reminder(c, today))
            .collect();
        self.apply("contracts", found);
    }

    /// Delivers what is due to the notification targets: this service's notifications, then
    /// each relayed service's.
    pub fn pump(&mut self) {
        let mut all: Vec<&mut Dispatcher> = self.dispatcher.iter_mut().collect();
        all.extend(self.relays.iter_mut().map(|r| r.dispatcher()));
        for d in all {
            pump_one(d);
        }
    }

    /// Every dispatcher: this service's, then the relayed services'.
    pub fn dispatchers(&self) -> Vec<&Dispatcher> {
        let mut all: Vec<&Dispatcher> = self.dispatcher.iter().collect();
        all.extend(self.relays.iter().map(|r| r.dispatcher_ref()));
        all
    }

    /// `status.json`: what was read and the active alerts, replaced atomically.
    pub fn write_status(&self) {
        self.save("status.json", &self.status_doc());
    }

    /// What was read and the active alerts: `status.json`, the bus's `Status`.
    pub fn status_doc(&self) -> serde_json::Value {
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .snapshot()
            .iter()
            .filter(|a| a.is_active())
            .map(|a| {
                json!({"id": a.id, "class": a.class, "key": a.key, "severity": a.severity.get(),
                       "summary": a.summary})
            })
            .collect();
        json!({
            "updated_ns": now_ns(),
            "sensors": self.latest.sensors,
            "chassis": self.latest.chassis,
            "fru": self.latest.fru,
            "disks": self.latest.disks,
            "errors": self.latest.errors,
            "alerts": alerts,
        })
    }

    /// What the bus shows after this round.
    pub fn view(&self) -> crate::dbus::View {
        let active: Vec<Alert> = self
            .alerts
            .snapshot()
            .into_iter()
            .filter(Alert::is_active)
            .collect();
        crate::dbus::View {
            sensors: self
                .latest
                .sensors
                .iter()
                .map(|s| (s.sensor.name.clone(), s.clone()))
                .collect(),
            status: self.status_doc(),
            highest_severity: active.iter().map(|a| a.severity.get()).max().unwrap_or(0),
            active_alerts: u32::try_from(active.len()).unwrap_or(u32::MAX),
        }
    }
}

/// The classes each source raises (SEL records excepted: they clear with the SEL).
const SOURCES: [(&str, &[&str]); 3] = [
    (
        "bmc",
        &[
            "health.temperature",
            "health.fan",
            "health.voltage",
            "health.current",
            "health.power",
            "health.psu",
            "health.sensor",
            tiervault_health::sensor_rules::CLASS_CHASSIS,
        ],
    ),
    (
        "smart",
        &[
            smart_rules::CLASS_FAILING,
            smart_rules::CLASS_PREFAIL,
            smart_rules::CLASS_SECTORS,
            smart_rules::CLASS_MEDIA,
            smart_rules::CLASS_WEAR,
            smart_rules::CLASS_TEMPERATURE,
            smart_rules::CLASS_SELF_TEST,
        ],
    ),
    ("contracts", &[contract::CLASS]),
];

/// The findings behind the alerts still active from an earlier run, per source: what the
/// first assessment after a restart compares with, so a condition that ended while the
/// service was down is cleared.
fn found_before(alerts: &AlertBoard) -> BTreeMap<&'static str, Vec<Finding>> {
    let mut out: BTreeMap<&'static str, Vec<Finding>> = BTreeMap::new();
    for a in alerts.snapshot().into_iter().filter(Alert::is_active) {
        let source = if a.class == CLASS_SOURCE {
            // "bmc", or the device of a disk smartctl could not read.
            Some((if a.key == "bmc" { "bmc" } else { "smart" }, CLASS_SOURCE))
        } else {
            SOURCES.iter().find_map(|(src, classes)| {
                classes.iter().find(|c| **c == a.class).map(|c| (*src, *c))
            })
        };
        if let Some((src, class)) = source {
            out.entry(src).or_default().push(Finding {
                class,
                key: a.key,
                severity: a.severity.get(),
                summary: a.summary,
                detail: a.detail,
            });
        }
    }
    out
}

/// A state file of the service, or the default when it is absent; a damaged one is said in
/// the log with what starting over costs (`consequence`), not a reason to stop.
fn load_state<T: serde::de::DeserializeOwned + Default>(
    dir: &std::path::Path,
    name: &str,
    consequence: &str,
) -> T {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: damaged ({e}); starting over: {consequence}",
                path.display()
            );
            T::default()
        }),
        Err(_) => T::default(),
    }
}

/// One delivery attempt of what is due, logged when something happened.
fn pump_one(d: &mut Dispatcher) {
    let report = d.pump();
    for t in &report.targets {
        if t.delivered > 0 || t.set_aside > 0 || t.error.is_some() {
            tracing::info!(
                "notifications to {}: {} delivered, {} set aside, {} pending{}",
                t.target,
                t.delivered,
                t.set_aside,
                t.pending,
                t.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Appends `bytes` to `path` and makes them durable before returning.
fn append_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
