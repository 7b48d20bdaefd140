//! The health service on D-Bus: name `org.tiervault.Health1`, objects under
//! `/org/tiervault/Health1` (an ObjectManager lists them). Sensors follow OpenBMC's
//! `xyz.openbmc_project.Sensor.Value` and `Sensor.Threshold.*`, so tools written for a BMC's
//! D-Bus read them the same way:
//!
//! | path | interface | what |
//! |---|---|---|
//! | `/org/tiervault/Health1` | `org.tiervault.Health1.Manager` | the whole state as JSON, highest active severity, `ClearSel` |
//! | `…/sensors/<name>` | `org.tiervault.Health1.Sensor.Value` | reading, unit, kind, level, asserted discrete states |
//! | `…/sensors/<name>` | `org.tiervault.Health1.Sensor.Threshold.Warning` | non-critical limits, alarms, alarm signals |
//! | `…/sensors/<name>` | `org.tiervault.Health1.Sensor.Threshold.Critical` | critical limits, alarms, alarm signals |
//! | `…/sensors/<name>` | `org.tiervault.Health1.Sensor.Threshold.HardShutdown` | non-recoverable limits, alarms, alarm signals |
//! | `…/alerts/<id>` | `org.tiervault.Alert1` | an alert, with `Acknowledge` |
//!
//! A threshold interface is present only on sensors with a limit of its level. Objects read the
//! service's last round from [`Shared`]; the [`Publisher`] (run by the loop after each round)
//! announces what changed and emits `…AlarmAsserted`/`…AlarmDeasserted` as alarms flip.
//! `ClearSel` is carried out by the loop, which owns the BMC: the call waits for it (other
//! callers are answered meanwhile).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

use tiervault_bus::reply::{oneshot, Answer};
use tiervault_bus::{path_element, prop, AlertBoard, Audit, BusError, Caller, Mirror, Props};
use tiervault_health::level::Alarms;
use tiervault_ipmi::SensorStatus;
use zbus::interface;
use zbus::object_server::SignalEmitter;

use crate::service::SensorView;

pub const NAME: &str = "org.tiervault.Health1";
pub const ROOT: &str = "/org/tiervault/Health1";
pub const MANAGER_INTERFACE: &str = "org.tiervault.Health1.Manager";
pub const VALUE_INTERFACE: &str = "org.tiervault.Health1.Sensor.Value";

pub fn sensor_path(name: &str) -> String {
    format!("{ROOT}/sensors/{}", path_element(name))
}

/// What the bus shows: the last round, replaced whole by the loop.
#[derive(Debug, Default)]
pub struct View {
    pub sensors: BTreeMap<String, SensorView>,
    /// `status.json`'s document.
    pub status: serde_json::Value,
    pub highest_severity: u8,
    pub active_alerts: u32,
}

pub type Shared = Arc<RwLock<View>>;

/// Work only the loop can do, asked for from the bus.
pub enum Request {
    /// Clear the BMC's event log; the answer is the number of records archived, or the error.
    ClearSel(Answer<Result<usize, String>>),
}

fn read(view: &Shared) -> std::sync::RwLockReadGuard<'_, View> {
    view.read().unwrap_or_else(|p| p.into_inner())
}

/// OpenBMC's unit names where one fits (`DegreesC`, `RPMS`, `Volts`, `Amperes`, `Watts`),
/// else the BMC's own words.
pub fn unit_name(ipmitool_unit: &str) -> String {
    match ipmitool_unit.to_ascii_lowercase().as_str() {
        "degrees c" => "DegreesC".into(),
        "rpm" => "RPMS".into(),
        "volts" => "Volts".into(),
        "amps" => "Amperes".into(),
        "watts" => "Watts".into(),
        "percent" => "Percent".into(),
        _ => ipmitool_unit.to_owned(),
    }
}

fn kind_name(s: &SensorView) -> String {
    serde_json::to_value(s.sensor.kind)
        .ok()
        .and_then(|k| k.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn asserted_states(s: &SensorView) -> Vec<String> {
    match &s.sensor.status {
        SensorStatus::Discrete { states, .. } => states.clone(),
        _ => Vec::new(),
    }
}

fn value_props(s: &SensorView) -> Props {
    Props::from([
        ("Value", prop(s.sensor.value.unwrap_or(f64::NAN))),
        ("Unit", prop(unit_name(&s.sensor.unit))),
        ("Kind", prop(kind_name(s))),
        ("Level", prop(s.level.name())),
        ("Available", prop(s.sensor.value.is_some())),
        ("States", prop(asserted_states(s))),
    ])
}

pub struct Manager {
    view: Shared,
    requests: Mutex<mpsc::Sender<Request>>,
    audit: Arc<Audit>,
}

impl Manager {
    pub fn new(view: Shared, requests: mpsc::Sender<Request>, audit: Arc<Audit>) -> Manager {
        Manager {
            view,
            requests: Mutex::new(requests),
            audit,
        }
    }

    /// Hands the work to the loop and waits for it without holding up other callers.
    async fn clear_sel_now(&self) -> Result<usize, String> {
        let (answer, pending) = oneshot();
        let stopping = || "the health service is stopping".to_owned();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::ClearSel(answer))
            .map_err(|_| stopping())?;
        pending.await.ok_or_else(stopping)?
    }
}

/// The health service. Errors are named `org.tiervault.Error.*`: NotConfigured when no BMC
/// is configured, Failed when the BMC refuses (the message says why).
#[interface(name = "org.tiervault.Health1.Manager")]
impl Manager {
    /// The highest severity (1-10) of the service's active alerts; 0 when there are none.
    #[zbus(property)]
    fn highest_severity(&self) -> u8 {
        read(&self.view).highest_severity
    }

    /// The number of the service's active alerts.
    #[zbus(property)]
    fn active_alerts(&self) -> u32 {
        read(&self.view).active_alerts
    }

    /// Everything the last round read, as `vaultctl health status --json` prints it:
    /// sensors (reading, unit, level, limits, alarms), chassis, FRU inventory, disks (SMART),
    /// source errors and active alerts.
    fn status(&self) -> Result<String, BusError> {
        let view = read(&self.view);
        if view.status.is_null() {
            return Err(BusError::Failed(
                "the first round has not finished yet".into(),
            ));
        }
        serde_json::to_string(&view.status).map_err(|e| BusError::Failed(e.to_string()))
    }

    /// Clears the BMC's event log after archiving its records (`sel-archive.jsonl`) and
    /// clears the alerts raised for them. Returns the number of records archived.
    async fn clear_sel(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<u32, BusError> {
        let caller = Caller::identify(conn, &header).await;
        let result = self.clear_sel_now().await;
        let logged = result
            .as_ref()
            .map(|n| format!("{n} records archived, event log cleared"))
            .map_err(Clone::clone);
        if let Err(e) = self.audit.record(
            &caller,
            ROOT,
            MANAGER_INTERFACE,
            "ClearSel",
            serde_json::json!({}),
            &logged,
        ) {
            tracing::error!("{e}");
        }
        match result {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) if e.contains("no BMC") => Err(BusError::NotConfigured(e)),
            Err(e) => Err(BusError::Failed(e)),
        }
    }
}

pub struct SensorValue {
    view: Shared,
    name: String,
}

fn gone(name: &str) -> zbus::fdo::Error {
    zbus::fdo::Error::UnknownObject(format!("sensor {name} is gone"))
}

impl SensorValue {
    fn get<T>(&self, f: impl FnOnce(&SensorView) -> T) -> zbus::fdo::Result<T> {
        read(&self.view)
            .sensors
            .get(&self.name)
            .map(f)
            .ok_or_else(|| gone(&self.name))
    }
}

/// One BMC sensor. Value is NaN when the BMC gives no reading (then Available is false);
/// Level is ok, non-critical, critical or non-recoverable, with hysteresis.
#[interface(name = "org.tiervault.Health1.Sensor.Value")]
impl SensorValue {
    /// The SDR's name (`CPU_Temp`, `FAN1`).
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }
    /// The reading in Unit.
    #[zbus(property)]
    fn value(&self) -> zbus::fdo::Result<f64> {
        self.get(|s| s.sensor.value.unwrap_or(f64::NAN))
    }
    /// DegreesC, RPMS, Volts, Amperes, Watts, Percent, or the BMC's own word (`discrete`).
    #[zbus(property)]
    fn unit(&self) -> zbus::fdo::Result<String> {
        self.get(|s| unit_name(&s.sensor.unit))
    }
    /// temperature, fan, voltage, current, power, power-supply, other.
    #[zbus(property)]
    fn kind(&self) -> zbus::fdo::Result<String> {
        self.get(kind_name)
    }
    /// ok, non-critical, critical, non-recoverable: the reading against the limits in force
    /// (the configuration's, else the SDR's), with hysteresis.
    #[zbus(property)]
    fn level(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.level.name().to_owned())
    }
    /// Whether the BMC gave a reading.
    #[zbus(property)]
    fn available(&self) -> zbus::fdo::Result<bool> {
        self.get(|s| s.sensor.value.is_some())
    }
    /// The asserted states of a discrete sensor (`Presence detected`, `Failure detected`).
    #[zbus(property)]
    fn states(&self) -> zbus::fdo::Result<Vec<String>> {
        self.get(asserted_states)
    }
}

/// One threshold interface per level, as OpenBMC has them: limits (NaN when not set),
/// alarms, and a signal when an alarm is asserted or deasserted (with the reading).
/// The signals have an empty body only because items made by `macro_rules!` must parse as
/// Rust: zbus replaces it with the emitting code.
macro_rules! threshold_interface {
    (
        $ty:ident, $iface:literal, $const:ident,
        high: $high:literal = $lim_high:ident, low: $low:literal = $lim_low:ident,
        alarm_high: $ahigh:literal = $al_high:ident, alarm_low: $alow:literal = $al_low:ident,
        signals: $ha:literal, $hd:literal, $la:literal, $ld:literal
    ) => {
        pub const $const: &str = $iface;

        pub struct $ty {
            view: Shared,
            name: String,
        }

        impl $ty {
            fn get<T>(&self, f: impl FnOnce(&SensorView) -> T) -> zbus::fdo::Result<T> {
                read(&self.view)
                    .sensors
                    .get(&self.name)
                    .map(f)
                    .ok_or_else(|| gone(&self.name))
            }

            fn props(s: &SensorView) -> Props {
                Props::from([
                    ($high, prop(s.limits.$lim_high.unwrap_or(f64::NAN))),
                    ($low, prop(s.limits.$lim_low.unwrap_or(f64::NAN))),
                    ($ahigh, prop(s.alarms.$al_high)),
                    ($alow, prop(s.alarms.$al_low)),
                ])
            }

            fn applies(s: &SensorView) -> bool {
                s.limits.$lim_high.is_some() || s.limits.$lim_low.is_some()
            }

            /// Emits the signals of the alarms that differ between `before` and `now`.
            async fn emit(
                emitter: &SignalEmitter<'_>,
                before: &Alarms,
                now: &Alarms,
                value: f64,
            ) -> zbus::Result<()> {
                match (before.$al_high, now.$al_high) {
                    (false, true) => Self::high_asserted(emitter, value).await?,
                    (true, false) => Self::high_deasserted(emitter, value).await?,
                    _ => {}
                }
                match (before.$al_low, now.$al_low) {
                    (false, true) => Self::low_asserted(emitter, value).await?,
                    (true, false) => Self::low_deasserted(emitter, value).await?,
                    _ => {}
                }
                Ok(())
            }
        }

        #[interface(name = $iface)]
        impl $ty {
            /// The upper limit of this level; NaN when the sensor has none.
            #[zbus(property, name = $high)]
            fn high(&self) -> zbus::fdo::Result<f64> {
                self.get(|s| s.limits.$lim_high.unwrap_or(f64::NAN))
            }
            /// The lower limit of this level; NaN when the sensor has none.
            #[zbus(property, name = $low)]
            fn low(&self) -> zbus::fdo::Result<f64> {
                self.get(|s| s.limits.$lim_low.unwrap_or(f64::NAN))
            }
            /// The reading is at or above the upper limit (or held there by hysteresis).
            #[zbus(property, name = $ahigh)]
            fn alarm_high(&self) -> zbus::fdo::Result<bool> {
                self.get(|s| s.alarms.$al_high)
            }
            /// The reading is at or below the lower limit (or held there by hysteresis).
            #[zbus(property, name = $alow)]
            fn alarm_low(&self) -> zbus::fdo::Result<bool> {
                self.get(|s| s.alarms.$al_low)
            }
            /// The upper alarm was asserted; `value` is the reading.
            #[zbus(signal, name = $ha)]
            async fn high_asserted(emitter: &SignalEmitter<'_>, value: f64) -> zbus::Result<()> {}
            /// The upper alarm was deasserted; `value` is the reading.
            #[zbus(signal, name = $hd)]
            async fn high_deasserted(emitter: &SignalEmitter<'_>, value: f64) -> zbus::Result<()> {}
            /// The lower alarm was asserted; `value` is the reading.
            #[zbus(signal, name = $la)]
            async fn low_asserted(emitter: &SignalEmitter<'_>, value: f64) -> zbus::Result<()> {}
            /// The lower alarm was deasserted; `value` is the reading.
            #[zbus(signal, name = $ld)]
            async fn low_deasserted(emitter: &SignalEmitter<'_>, value: f64) -> zbus::Result<()> {}
        }
    };
}

threshold_interface!(
    Warning, "org.tiervault.Health1.Sensor.Threshold.Warning", WARNING,
    high: "WarningHigh" = unc, low: "WarningLow" = lnc,
    alarm_high: "WarningAlarmHigh" = warning_high, alarm_low: "WarningAlarmLow" = warning_low,
    signals: "WarningHighAlarmAsserted", "WarningHighAlarmDeasserted",
        "WarningLowAlarmAsserted", "WarningLowAlarmDeasserted"
);
threshold_interface!(
    Critical, "org.tiervault.Health1.Sensor.Threshold.Critical", CRITICAL,
    high: "CriticalHigh" = ucr, low: "CriticalLow" = lcr,
    alarm_high: "CriticalAlarmHigh" = critical_high, alarm_low: "CriticalAlarmLow" = critical_low,
    signals: "CriticalHighAlarmAsserted", "CriticalHighAlarmDeasserted",
        "CriticalLowAlarmAsserted", "CriticalLowAlarmDeasserted"
);
threshold_interface!(
    HardShutdown, "org.tiervault.Health1.Sensor.Threshold.HardShutdown", HARD_SHUTDOWN,
    high: "HardShutdownHigh" = unr, low: "HardShutdownLow" = lnr,
    alarm_high: "HardShutdownAlarmHigh" = hard_shutdown_high,
    alarm_low: "HardShutdownAlarmLow" = hard_shutdown_low,
    signals: "HardShutdownHighAlarmAsserted", "HardShutdownHighAlarmDeasserted",
        "HardShutdownLowAlarmAsserted", "HardShutdownLowAlarmDeasserted"
);

/// Keeps one interface of the sensor objects in step with `current`.
async fn sync_sensors<I: zbus::object_server::Interface>(
    mirror: &mut Mirror<String>,
    conn: &zbus::Connection,
    current: Current,
    view: &Shared,
    make: impl Fn(Shared, String) -> I,
) -> zbus::Result<()> {
    mirror
        .sync(conn, current, |name| make(view.clone(), name.clone()))
        .await
}

/// Announces the service's state on the bus; owned by the loop.
pub struct Publisher {
    view: Shared,
    alerts: AlertBoard,
    values: Mirror<String>,
    warning: Mirror<String>,
    critical: Mirror<String>,
    hard_shutdown: Mirror<String>,
    manager: Mirror<()>,
    /// The alarms announced per sensor, to signal the ones that flip.
    alarms: BTreeMap<String, Alarms>,
    requests: mpsc::Sender<Request>,
    audit: Arc<Audit>,
}

type Current = BTreeMap<String, (String, Props)>;

impl Publisher {
    pub fn new(
        view: Shared,
        alerts: AlertBoard,
        requests: mpsc::Sender<Request>,
        audit: Arc<Audit>,
    ) -> Publisher {
        Publisher {
            view,
            alerts,
            values: Mirror::new(VALUE_INTERFACE),
            warning: Mirror::new(WARNING),
            critical: Mirror::new(CRITICAL),
            hard_shutdown: Mirror::new(HARD_SHUTDOWN),
            manager: Mirror::new(MANAGER_INTERFACE),
            alarms: BTreeMap::new(),
            requests,
            audit,
        }
    }

    pub async fn publish(&mut self, conn: &zbus::Connection) -> zbus::Result<()> {
        let (values, warning, critical, hard, manager, flips) = {
            let view = read(&self.view);
            let mut sets: [Current; 4] = Default::default();
            for (name, s) in &view.sensors {
                let path = sensor_path(name);
                sets[0].insert(name.clone(), (path.clone(), value_props(s)));
                if Warning::applies(s) {
                    sets[1].insert(name.clone(), (path.clone(), Warning::props(s)));
                }
                if Critical::applies(s) {
                    sets[2].insert(name.clone(), (path.clone(), Critical::props(s)));
                }
                if HardShutdown::applies(s) {
                    sets[3].insert(name.clone(), (path, HardShutdown::props(s)));
                }
            }
            let flips: Vec<(String, Alarms, Alarms, f64)> = view
                .sensors
                .iter()
                .filter_map(|(name, s)| {
                    let before = self.alarms.get(name).copied().unwrap_or_default();
                    (before != s.alarms).then(|| {
                        let v = s.sensor.value.unwrap_or(f64::NAN);
                        (name.clone(), before, s.alarms, v)
                    })
                })
                .collect();
            self.alarms = view
                .sensors
                .iter()
                .map(|(n, s)| (n.clone(), s.alarms))
                .collect();
            let manager = BTreeMap::from([(
                (),
                (
                    ROOT.to_owned(),
                    Props::from([
                        ("HighestSeverity", prop(view.highest_severity)),
                        ("ActiveAlerts", prop(view.active_alerts)),
                    ]),
                ),
            )]);
            let [v, w, c, h] = sets;
            (v, w, c, h, manager, flips)
        };
        let view = &self.view;
        sync_sensors(&mut self.values, conn, values, view, |view, name| {
            SensorValue { view, name }
        })
        .await?;
        sync_sensors(&mut self.warning, conn, warning, view, |view, name| {
            Warning { view, name }
        })
        .await?;
        sync_sensors(&mut self.critical, conn, critical, view, |view, name| {
            Critical { view, name }
        })
        .await?;
        sync_sensors(&mut self.hard_shutdown, conn, hard, view, |view, name| {
            HardShutdown { view, name }
        })
        .await?;
        let view = self.view.clone();
        let (requests, audit) = (self.requests.clone(), self.audit.clone());
        self.manager
            .sync(conn, manager, |_| {
                Manager::new(view.clone(), requests.clone(), audit.clone())
            })
            .await?;
        for (name, before, now, value) in flips {
            let emitter = SignalEmitter::new(conn, sensor_path(&name))?;
            Warning::emit(&emitter, &before, &now, value).await?;
            Critical::emit(&emitter, &before, &now, value).await?;
            HardShutdown::emit(&emitter, &before, &now, value).await?;
        }
        if self.alerts.take_dirty() {
            self.alerts.publish(conn).await?;
        }
        Ok(())
    }
}
