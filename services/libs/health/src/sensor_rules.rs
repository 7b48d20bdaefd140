//! What the BMC's sensors, chassis status and event log mean for the MSP.
//!
//! Threshold sensors are judged against their SDR limits (configuration may override any limit
//! per sensor), with hysteresis per kind of sensor so a value hovering at a limit raises one
//! alert, not one per poll. Where a sensor has no reading or no limits, the BMC's own status
//! (`nc`/`cr`/`nr`) is taken. Power supplies are discrete sensors: a failure state is a lost
//! redundancy (the appliance runs on the other one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tiervault_ipmi::{ChassisStatus, EventDirection, SelEntry, Sensor, SensorKind, SensorStatus};

use crate::finding::Finding;
use crate::level::{has_limits, level_after, overridden, Level, Thresholds};

pub const CLASS_CHASSIS: &str = "health.chassis";
pub const CLASS_SEL: &str = "health.sel";

/// `[sensors]` of the health configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct SensorPolicy {
    /// How far back past a limit a temperature must come before its alert clears, °C.
    pub temperature_hysteresis: f64,
    /// The same for fans, RPM.
    pub fan_hysteresis: f64,
    /// The same for voltages, V.
    pub voltage_hysteresis: f64,
    /// The same for power, W.
    pub power_hysteresis: f64,
    /// The same for currents, A, and sensors of other kinds (in their unit).
    pub other_hysteresis: f64,
    /// Limits per sensor name that replace the SDR's (`[sensors.limits."CPU Temp"] ucr = 85.0`).
    pub limits: BTreeMap<String, Thresholds>,
    /// Sensors not judged at all (a header the chassis does not populate).
    pub ignore: Vec<String>,
}

impl Default for SensorPolicy {
    fn default() -> Self {
        SensorPolicy {
            temperature_hysteresis: 2.0,
            fan_hysteresis: 150.0,
            voltage_hysteresis: 0.1,
            power_hysteresis: 20.0,
            other_hysteresis: 0.5,
            limits: BTreeMap::new(),
            ignore: Vec::new(),
        }
    }
}

impl SensorPolicy {
    fn hysteresis(&self, kind: SensorKind) -> f64 {
        match kind {
            SensorKind::Temperature => self.temperature_hysteresis,
            SensorKind::Fan => self.fan_hysteresis,
            SensorKind::Voltage => self.voltage_hysteresis,
            SensorKind::Power => self.power_hysteresis,
            _ => self.other_hysteresis,
        }
    }
}

/// The alert class of a sensor kind.
pub fn class_of(kind: SensorKind) -> &'static str {
    match kind {
        SensorKind::Temperature => "health.temperature",
        SensorKind::Fan => "health.fan",
        SensorKind::Voltage => "health.voltage",
        SensorKind::Current => "health.current",
        SensorKind::Power => "health.power",
        SensorKind::PowerSupply => "health.psu",
        SensorKind::Other => "health.sensor",
    }
}

/// The seed's severities for a level: non-critical is P3, critical P2 (the appliance still
/// works, something must be done today), non-recoverable P1.
pub fn severity_of(level: Level) -> u8 {
    match level {
        Level::Ok => 1,
        Level::NonCritical => 5,
        Level::Critical => 8,
        Level::NonRecoverable => 10,
    }
}

fn bmc_level(status: &SensorStatus) -> Level {
    match status {
        SensorStatus::NonCritical => Level::NonCritical,
        SensorStatus::Critical => Level::Critical,
        SensorStatus::NonRecoverable => Level::NonRecoverable,
        _ => Level::Ok,
    }
}

/// Discrete power-supply states that mean it no longer supplies power (IPMI sensor type 08h).
const PSU_FAULTS: [&str; 4] = [
    "Failure detected",
    "Power Supply AC lost",
    "AC lost or out-of-range",
    "AC out-of-range, but present",
];

/// The limit a value has crossed, for the alert's words.
fn crossed(t: &Thresholds, value: f64, level: Level) -> String {
    let pick = |upper: Option<f64>, lower: Option<f64>, name: &str| {
        if upper.is_some_and(|u| value >= u) {
            upper.map(|u| format!("at or above its {name} limit {u}"))
        } else if lower.is_some_and(|l| value <= l) {
            lower.map(|l| format!("at or below its {name} limit {l}"))
        } else {
            None
        }
    };
    match level {
        Level::NonRecoverable => pick(t.unr, t.lnr, "non-recoverable"),
        Level::Critical => pick(t.ucr, t.lcr, "critical"),
        Level::NonCritical => pick(t.unc, t.lnc, "non-critical"),
        Level::Ok => None,
    }
    .unwrap_or_else(|| "within the limits it had, held by hysteresis".into())
}

/// The limits `s` is judged by: the configuration's where it sets them, else the SDR's.
pub fn limits_of(s: &Sensor, policy: &SensorPolicy) -> Thresholds {
    match policy.limits.get(&s.name) {
        Some(cfg) => overridden(&s.thresholds, cfg),
        None => s.thresholds,
    }
}

/// One sensor judged: its level now (to pass back as `previous` next time) and the finding
/// while it is not ok.
pub fn assess_sensor(
    s: &Sensor,
    policy: &SensorPolicy,
    previous: Level,
) -> (Level, Option<Finding>) {
    if policy.ignore.iter().any(|n| n == &s.name) {
        return (Level::Ok, None);
    }
    let (level, words) = if s.kind == SensorKind::PowerSupply {
        let faults: Vec<&str> = PSU_FAULTS
            .iter()
            .copied()
            .filter(|f| s.has_state(f))
            .collect();
        if faults.is_empty() {
            (Level::Ok, String::new())
        } else {
            (Level::Critical, faults.join(", "))
        }
    } else {
        let limits = limits_of(s, policy);
        match s.value {
            Some(v) if has_limits(&limits) => {
                let level = level_after(&limits, v, previous, policy.hysteresis(s.kind));
                (
                    level,
                    format!("reads {v} {}, {}", s.unit, crossed(&limits, v, level)),
                )
            }
            // No reading or no limits of ours: the BMC's own judgement.
            _ => {
                let level = bmc_level(&s.status);
                (level, format!("the BMC reports it {}", level.name()))
            }
        }
    };
    if level == Level::Ok {
        return (level, None);
    }
    let what = match s.kind {
        SensorKind::Temperature => "temperature",
        SensorKind::Fan => "fan",
        SensorKind::Voltage => "voltage",
        SensorKind::Current => "current",
        SensorKind::Power => "power",
        SensorKind::PowerSupply => "power supply",
        SensorKind::Other => "sensor",
    };
    let detail = match s.kind {
        SensorKind::PowerSupply => {
            "The appliance runs on its other power supply without redundancy: check the feed \
             and the cable, then replace the supply (FRU inventory has its serial)."
        }
        SensorKind::Fan => {
            "A failed fan lets disks and CPUs overheat: replace it (hot-swappable on these \
             chassis) and watch the temperatures."
        }
        SensorKind::Temperature => {
            "Check the fans, the room's cooling and blocked vents; the BMC powers the server off \
             at its non-recoverable limit."
        }
        _ => "Check the component against the BMC's sensor list (`ipmitool sensor list`).",
    };
    let finding = Finding {
        class: class_of(s.kind),
        key: s.name.clone(),
        severity: if s.kind == SensorKind::PowerSupply {
            8
        } else {
            severity_of(level)
        },
        summary: format!("{what} {} {} ({words})", s.name, level.name()),
        detail: detail.into(),
    };
    (level, Some(finding))
}

/// The chassis status's faults, one finding each.
pub fn assess_chassis(c: &ChassisStatus) -> Vec<Finding> {
    let faults: [(bool, &str, u8, &str); 5] = [
        (
            c.intrusion,
            "intrusion",
            7,
            "the chassis was opened (intrusion sensor); if no visit was planned, treat it as a security incident",
        ),
        (
            c.fan_fault,
            "fan-fault",
            8,
            "the BMC reports a cooling/fan fault",
        ),
        (
            c.power_overload,
            "power-overload",
            8,
            "the BMC reports a power overload",
        ),
        (
            c.main_power_fault,
            "main-power-fault",
            8,
            "the BMC reports a main power fault",
        ),
        (
            c.drive_fault,
            "drive-fault",
            7,
            "the BMC reports a drive fault",
        ),
    ];
    faults
        .iter()
        .filter(|(on, ..)| *on)
        .map(|(_, key, severity, what)| Finding {
            class: CLASS_CHASSIS,
            key: (*key).into(),
            severity: *severity,
            summary: format!("chassis: {what}"),
            detail: "From `ipmitool chassis status`; the sensors and the SEL say more.".into(),
        })
        .collect()
}

/// A SEL record as an alert: stays until the operator clears the SEL (after it is archived).
/// Deassertions (a condition ending) are recorded but notify nobody.
pub fn sel_finding(e: &SelEntry) -> Finding {
    let text = format!("{} {}", e.event, e.detail.as_deref().unwrap_or(""));
    let lower = text.to_ascii_lowercase();
    let severity = if e.direction == Some(EventDirection::Deasserted) {
        2
    } else if [
        "non-recoverable",
        "critical",
        "failure",
        "ac lost",
        "uncorrectable",
        "fault",
    ]
    .iter()
    .any(|w| lower.contains(w) && !lower.contains("non-critical"))
    {
        7
    } else if lower.contains("non-critical") || lower.contains("predictive") {
        5
    } else {
        3
    };
    Finding {
        class: CLASS_SEL,
        key: format!("{:04x}", e.id),
        severity,
        summary: format!(
            "BMC event log: {}: {}{}",
            e.sensor,
            e.event,
            match e.direction {
                Some(EventDirection::Deasserted) => " (deasserted)",
                _ => "",
            }
        ),
        detail: format!(
            "SEL record 0x{:04x} at {}{}. Cleared when the SEL is cleared \
             (`vaultctl health sel-clear`, after it is archived).",
            e.id,
            if e.timestamp.is_empty() {
                "an unknown time"
            } else {
                &e.timestamp
            },
            e.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(name: &str, kind: SensorKind, value: Option<f64>, t: Thresholds) -> Sensor {
        Sensor {
            name: name.into(),
            kind,
            value,
            unit: match kind {
                SensorKind::Fan => "RPM".into(),
                _ => "degrees C".into(),
            },
            status: SensorStatus::Ok,
            thresholds: t,
            anomaly: None,
        }
    }

    fn fan_limits() -> Thresholds {
        Thresholds {
            lcr: Some(500.0),
            lnc: Some(800.0),
            ..Thresholds::default()
        }
    }

    #[test]
    fn a_stopped_fan_is_critical_and_recovers_with_hysteresis() {
        let p = SensorPolicy::default();
        let (lv, f) = assess_sensor(
            &sensor("FAN1", SensorKind::Fan, Some(300.0), fan_limits()),
            &p,
            Level::Ok,
        );
        let f = f.expect("finding");
        assert_eq!(
            (lv, f.class, f.severity),
            (Level::Critical, "health.fan", 8)
        );
        assert!(
            f.summary.contains("FAN1") && f.summary.contains("critical limit 500"),
            "{}",
            f.summary
        );
        // Back to 550 RPM: within 150 RPM of the limit, still critical.
        let (lv, _) = assess_sensor(
            &sensor("FAN1", SensorKind::Fan, Some(550.0), fan_limits()),
            &p,
            lv,
        );
        assert_eq!(lv, Level::Critical);
        let (lv, f) = assess_sensor(
            &sensor("FAN1", SensorKind::Fan, Some(4000.0), fan_limits()),
            &p,
            lv,
        );
        assert_eq!((lv, f), (Level::Ok, None));
    }

    #[test]
    fn configured_limits_override_the_sdr_and_ignored_sensors_say_nothing() {
        let mut p = SensorPolicy::default();
        let sdr = Thresholds {
            ucr: Some(90.0),
            ..Thresholds::default()
        };
        let s = sensor("CPU Temp", SensorKind::Temperature, Some(82.0), sdr);
        assert_eq!(assess_sensor(&s, &p, Level::Ok).0, Level::Ok);
        p.limits.insert(
            "CPU Temp".into(),
            Thresholds {
                ucr: Some(80.0),
                ..Thresholds::default()
            },
        );
        assert_eq!(assess_sensor(&s, &p, Level::Ok).0, Level::Critical);
        p.ignore.push("CPU Temp".into());
        assert_eq!(assess_sensor(&s, &p, Level::Ok), (Level::Ok, None));
    }

    #[test]
    fn without_a_reading_the_bmcs_status_counts() {
        let mut s = sensor(
            "Inlet",
            SensorKind::Temperature,
            None,
            Thresholds::default(),
        );
        s.status = SensorStatus::NonRecoverable;
        let (lv, f) = assess_sensor(&s, &SensorPolicy::default(), Level::Ok);
        assert_eq!(lv, Level::NonRecoverable);
        assert_eq!(f.map(|f| f.severity), Some(10));
        s.status = SensorStatus::NotAvailable;
        assert_eq!(
            assess_sensor(&s, &SensorPolicy::default(), Level::Ok).1,
            None
        );
    }

    #[test]
    fn a_failed_power_supply_is_a_lost_redundancy() {
        let mut s = sensor(
            "PSU2 Status",
            SensorKind::PowerSupply,
            None,
            Thresholds::default(),
        );
        s.status = SensorStatus::Discrete {
            bits: 0b11,
            states: vec!["Presence detected".into(), "Failure detected".into()],
        };
        let (_, f) = assess_sensor(&s, &SensorPolicy::default(), Level::Ok);
        let f = f.expect("finding");
        assert_eq!((f.class, f.severity), ("health.psu", 8));
        assert!(f.summary.contains("Failure detected"), "{}", f.summary);
        s.status = SensorStatus::Discrete {
            bits: 0b1,
            states: vec!["Presence detected".into()],
        };
        assert_eq!(
            assess_sensor(&s, &SensorPolicy::default(), Level::Ok).1,
            None
        );
    }

    #[test]
    fn chassis_faults_and_sel_records() {
        let c = ChassisStatus {
            power_on: true,
            power_overload: false,
            power_interlock: false,
            main_power_fault: false,
            power_control_fault: false,
            power_restore_policy: "previous".into(),
            last_power_event: String::new(),
            intrusion: true,
            front_panel_lockout: false,
            drive_fault: false,
            fan_fault: true,
        };
        let f = assess_chassis(&c);
        assert_eq!(
            f.iter()
                .map(|f| (f.key.as_str(), f.severity))
                .collect::<Vec<_>>(),
            [("intrusion", 7), ("fan-fault", 8)]
        );
        let e = |event: &str, dir| SelEntry {
            id: 0x1a,
            timestamp: "11/23/26 08:37:15 UTC".into(),
            unix_time: None,
            sensor: "Fan FAN1".into(),
            sensor_type: Some("Fan".into()),
            sensor_name: Some("FAN1".into()),
            event: event.into(),
            direction: Some(dir),
            detail: None,
        };
        let f = sel_finding(&e("Lower Critical going low", EventDirection::Asserted));
        assert_eq!(
            (f.class, f.key.as_str(), f.severity),
            (CLASS_SEL, "001a", 7)
        );
        assert_eq!(
            sel_finding(&e("Lower Non-critical going low", EventDirection::Asserted)).severity,
            5
        );
        assert_eq!(
            sel_finding(&e("Lower Critical going low", EventDirection::Deasserted)).severity,
            2
        );
    }
}
